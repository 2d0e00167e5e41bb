"""The stimulus and brain-data contracts: read, write and check them.

Stimulus set ``results/stimuli/{stimset}.parquet``: one row per text unit
(unit_id, run, text, lang, onset, offset, ...). Brain dataset
``results/brain/{dataset}/{subject}.h5``: one group per run holding ``data``
(time x channels, float32), attrs ``split`` and optional ``repeats``
(repeats x time x channels); dataset ``coords`` (channel positions) and one
file attr giving the clock: ``tr`` (fMRI: volume i is centred at (i + 0.5) TR)
or ``sfreq`` (MEG/EEG: sample i is at i / sfreq). Both clocks start with the
run, on the time axis of the stimulus onsets. An optional ``events`` group
(unit_id, run, onset, offset) holds the subject's own timing of the units when
it differs between subjects (real recordings start at different moments); it
overrides the stimulus set's onsets for that subject (:func:`subject_view`).

What :func:`read_stimuli` accepts: a parquet table with at least one row and
the columns of :data:`STIMULUS_COLUMNS`. ``word_index`` (the unit's position in
its run) may be left out: it is then derived from the table's row order within
each run, which is the order the units were heard in. Timings are seconds on the
run's clock and either absent from the whole table (an untimed set: benchmark
prompts, text corpora; onset and offset null on every row) or present on every
row: finite, offset >= onset, and onsets never decreasing along a run. A run's
``split`` attribute in a brain file is one of :data:`SPLITS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .io import atomic_path

STIMULUS_COLUMNS = ("unit_id", "run", "text", "lang", "onset", "offset")
SPLITS = ("train", "test")  # the values of a brain run's split attribute
# How far past an fMRI run's last volume a word may be heard and still count: the
# Lanczos window (``encoding.resample.lanczos_resample`` window=3, cutoff 1/TR, as
# HuthLab/deep-fMRI-dataset encoding/feature_spaces.py downsample_word_vectors
# uses it). A word later than that has zero weight on every volume.
WORD_REACH_TRS = 3


class DataError(ValueError):
    """Bad input data; the message names the file and the fix."""


def utf8_error(path: str | Path, fix: str) -> DataError:
    """The error for a text file that is not UTF-8: the first bad byte's offset and line, and ``fix``.

    Readers that decode in chunks (pandas) report offsets within a chunk, so the
    file is decoded again here to name the byte in the file.
    """
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return DataError(f"{path}: not valid UTF-8 at byte {err.start} (line {line}, byte "
                         f"{raw[err.start:err.start + 1].hex(' ')}); {fix}")
    return DataError(f"{path}: cannot be decoded as text; {fix}")


def _bad_utf8_cell(path: Path) -> str | None:
    """Where a parquet file's first string value that is not UTF-8 is (column, row, byte), if any."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError):
        return None
    for name in table.column_names:
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        row = 0
        for chunk in col.chunks:
            binary = pa.large_binary() if pa.types.is_large_string(col.type) else pa.binary()
            for value in chunk.view(binary).to_pylist():
                if value is not None:
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError as err:
                        return f"column {name!r}, row {row}, byte {err.start} of the value"
                row += 1
    return None


def read_parquet(path: str | Path, fix: str) -> pd.DataFrame:
    """A parquet table, or a :class:`DataError` naming the file (and a cell that is not UTF-8) and ``fix``."""
    import pyarrow as pa

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file missing; {fix}")
    import pyarrow.parquet as pq

    try:
        # Full validation checks that string columns are UTF-8: pandas' Arrow-backed strings would only fail
        # when a bad value is first touched, deep inside a later step.
        pq.read_table(path).validate(full=True)
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        where = _bad_utf8_cell(path)
        if where is not None:
            raise DataError(f"{path}: text that is not valid UTF-8 ({where}); write the table's text as UTF-8 "
                            f"strings — {fix}") from err
        raise DataError(f"{path}: cannot be read as a parquet table ({type(err).__name__}: {err}); {fix}") from err


def show_value(value) -> str:
    """A table cell as a user would write it: numbers plainly, missing as n/a, text quoted."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(float(value))
    return repr(value)


def _where(units: pd.DataFrame, rows: np.ndarray) -> str:
    """'run r, row i (unit_id u)' of the first of ``rows`` (positions in ``units``)."""
    i = int(rows[0])
    uid = f" (unit_id {units['unit_id'].iloc[i]})" if "unit_id" in units.columns else ""
    return f"run {units['run'].iloc[i]}, row {i}{uid}"


def check_timings(units: pd.DataFrame, source: str | Path, timed: bool | None = None) -> None:
    """Onsets and offsets usable on a run's clock, or a :class:`DataError` naming ``source``, run, row and count.

    ``timed=None``: a table whose onsets and offsets are all null is an untimed
    set and passes; otherwise (and with ``timed=True``) every row needs a finite
    onset and offset, offset >= onset, and onsets that never decrease along a run
    (in ``word_index`` order when the table has it). One missing time would
    otherwise vanish in a maximum or turn every TR of its run into NaN.
    """
    onset = pd.to_numeric(units["onset"], errors="coerce").to_numpy(float)
    offset = pd.to_numeric(units["offset"], errors="coerce").to_numpy(float)
    finite = np.isfinite(onset) & np.isfinite(offset)
    if timed is None:
        timed = bool(units["onset"].notna().any() or units["offset"].notna().any())
    if not timed:
        return
    bad = np.flatnonzero(~finite)
    if bad.size:
        i = bad[0]
        raise DataError(f"{source}: {bad.size} of {len(units)} units have no finite onset/offset (first: "
                        f"{_where(units, bad)}: onset {show_value(units['onset'].iloc[i])}, offset "
                        f"{show_value(units['offset'].iloc[i])}); "
                        "every unit of a timed set needs both, in seconds — fix those rows' times or drop the rows")
    bad = np.flatnonzero(offset < onset)
    if bad.size:
        i = bad[0]
        raise DataError(f"{source}: {bad.size} unit(s) end before they start (first: {_where(units, bad)}: onset "
                        f"{onset[i]}, offset {offset[i]}); fix those rows' offsets")
    order = np.lexsort((units["word_index"].to_numpy(), pd.factorize(units["run"])[0])) \
        if "word_index" in units.columns else np.argsort(pd.factorize(units["run"])[0], kind="stable")
    runs = pd.factorize(units["run"])[0][order]
    back = np.flatnonzero((np.diff(onset[order]) < 0) & (runs[1:] == runs[:-1]))
    if back.size:
        i, prev = order[back[0] + 1], order[back[0]]
        raise DataError(f"{source}: {back.size} unit(s) start before the unit before them in their run (first: "
                        f"{_where(units, np.array([i]))}: onset {onset[i]} s, the unit before starts at "
                        f"{onset[prev]} s); a run's units "
                        "must be in the order they were heard — sort each run by onset (and renumber word_index)")


@dataclass
class BrainRun:
    data: np.ndarray  # (T, V)
    split: str
    repeats: np.ndarray | None = None  # (R, T, V)


@dataclass
class BrainData:
    runs: dict[str, BrainRun]
    tr: float | None  # seconds per volume (fMRI); None for time-resolved data
    coords: np.ndarray  # (V, k): sheet, voxel or sensor coordinates for maps
    attrs: dict = field(default_factory=dict)
    sfreq: float | None = None  # samples per second (MEG/EEG); None for fMRI
    events: pd.DataFrame | None = None  # this subject's unit_id, run, onset, offset; None: the stimulus set's

    @property
    def n_channels(self) -> int:
        return self.coords.shape[0]

    @property
    def time_resolved(self) -> bool:
        return self.sfreq is not None

    def tr_times(self, run: str) -> np.ndarray:
        # Mid-TR, as the Huth-lab code times a volume (trigger + TR/2).
        if self.tr is None:
            raise ValueError("tr_times needs fMRI data (a TR); this dataset has a sampling rate")
        return (np.arange(self.runs[run].data.shape[0]) + 0.5) * self.tr

    def duration(self, run: str) -> float:
        """Seconds of data in ``run``."""
        n = self.runs[run].data.shape[0]
        return n / self.sfreq if self.time_resolved else n * self.tr


EVENT_COLUMNS = ("unit_id", "run", "onset", "offset")


def write_brain(path: str | Path, runs: dict[str, BrainRun], tr: float | None, coords: np.ndarray,
                attrs: dict | None = None, sfreq: float | None = None, events: pd.DataFrame | None = None) -> None:
    """Write the brain contract; give ``tr`` for fMRI or ``sfreq`` (and ``tr=None``) for MEG/EEG.

    ``events`` (unit_id, run, onset, offset): the subject's own unit timings, when
    they differ from the stimulus set's.
    """
    if (tr is None) == (sfreq is None):
        raise ValueError(f"{path}: give exactly one of tr (fMRI) and sfreq (MEG/EEG), got tr={tr}, sfreq={sfreq}")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            if tr is not None:
                f.attrs["tr"] = float(tr)
            else:
                f.attrs["sfreq"] = float(sfreq)
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            f.create_dataset("coords", data=np.asarray(coords))
            for name, run in runs.items():
                g = f.create_group(f"runs/{name}")
                g.attrs["split"] = run.split
                g.create_dataset("data", data=np.asarray(run.data, np.float32))
                if run.repeats is not None:
                    g.create_dataset("repeats", data=np.asarray(run.repeats, np.float32))
            if events is not None:
                missing = [c for c in EVENT_COLUMNS if c not in events.columns]
                if missing:
                    raise ValueError(f"{path}: events lack columns {missing}; give {list(EVENT_COLUMNS)}")
                g = f.create_group("events")
                for col in ("unit_id", "run"):
                    g.create_dataset(col, data=events[col].astype(str).to_numpy().astype(object),
                                     dtype=h5py.string_dtype())
                for col in ("onset", "offset"):
                    g.create_dataset(col, data=events[col].to_numpy(np.float64))


def dataset_subject(path: str | Path) -> tuple[str, str]:
    """(dataset, subject) of a brain-contract path ``.../brain/{dataset}/{subject}.<suffix>``."""
    path = Path(path)
    return path.parent.name, path.name.split(".")[0]


def read_coords(paths) -> dict[tuple[str, str], np.ndarray]:
    """Voxel coordinates per (dataset, subject) for maps."""
    return {dataset_subject(p): read_brain(p).coords for p in paths}


def read_brain(path: str | Path) -> BrainData:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: brain file missing; rerun the rule that writes it")
    runs = {}
    with h5py.File(path, "r") as f:
        if ("tr" in f.attrs) == ("sfreq" in f.attrs):
            raise DataError(f"{path}: the file needs exactly one clock attribute, tr (fMRI) or sfreq (MEG/EEG); "
                            f"it has {sorted(f.attrs)}. Rewrite it with brainphase.stimuli.write_brain")
        tr = float(f.attrs["tr"]) if "tr" in f.attrs else None
        sfreq = float(f.attrs["sfreq"]) if "sfreq" in f.attrs else None
        coords = f["coords"][()]
        attrs = {k: f.attrs[k] for k in f.attrs if k not in ("tr", "sfreq")}
        for name, g in f["runs"].items():
            data = g["data"][()]
            if data.ndim != 2 or data.shape[1] != coords.shape[0]:
                raise DataError(f"{path}: run {name} has shape {data.shape}, expected (time, "
                                f"{coords.shape[0]} channels as in coords)")
            if not np.isfinite(data).all():
                raise DataError(f"{path}: run {name} contains NaN or inf; mask or interpolate "
                                "those samples in preprocessing")
            reps = g["repeats"][()] if "repeats" in g else None
            if "split" not in g.attrs:
                raise DataError(f"{path}: run {name} has no split attribute; set it to one of {list(SPLITS)} "
                                "(write the file with brainphase.stimuli.write_brain)")
            split = g.attrs["split"]
            split = split.decode() if isinstance(split, bytes) else str(split)
            if split not in SPLITS:
                raise DataError(f"{path}: run {name} has split {split!r}; it must be one of {list(SPLITS)} "
                                "(lower case) — rewrite the attribute")
            runs[name] = BrainRun(data, split, reps)
        events = None
        if "events" in f:
            g = f["events"]
            events = pd.DataFrame({c: g[c].asstr()[()] if c in ("unit_id", "run") else g[c][()]
                                   for c in EVENT_COLUMNS})
            check_timings(events, f"{path} (events)", timed=True)
    return BrainData(runs, tr, coords, attrs, sfreq, events)


def read_stimuli(path: str | Path) -> pd.DataFrame:
    """The stimulus table at ``path``, checked (see the module doc); ``word_index`` derived when absent."""
    df = read_parquet(path, "rerun the rule that writes the stimulus set, or write it with "
                            "pandas.DataFrame.to_parquet")
    missing = [c for c in STIMULUS_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: stimulus table lacks columns {missing}; "
                        f"the contract needs {list(STIMULUS_COLUMNS)}")
    if df.empty:
        # Zero rows would flow on into activation caches and scores that look finished but hold nothing.
        raise DataError(f"{path}: the stimulus table has no rows; a stimulus set needs at least one unit — check "
                        "the dataset's source (an events filter that matches nothing, an empty task) and rerun "
                        "the rule that writes it")
    if "word_index" not in df.columns:
        df["word_index"] = df.groupby("run", sort=False, dropna=False).cumcount().to_numpy()
    check_timings(df, path)
    return df


def text_corpus(path: str | Path, text_column: str = "text", lang_column: str | None = None,
                max_documents: int | None = None) -> pd.DataFrame:
    """A text corpus (parquet, jsonl or txt with one document per line) as a word-level stimulus set.

    Words are whitespace-separated pieces (an unsegmented Japanese sentence
    stays one piece: only the word-level truth needs words, and a real corpus
    brings none; tokens are still mapped to the piece they fall in). Runs are
    ``doc{i:06d}``; ``lang`` comes from ``lang_column`` or is left empty.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: corpus file not found; set sae.corpus.path to a parquet, jsonl or txt file")
    if path.suffix == ".parquet":
        docs = pd.read_parquet(path)
    elif path.suffix in (".jsonl", ".json"):
        docs = pd.read_json(path, lines=path.suffix == ".jsonl")
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise utf8_error(path, "save the corpus as UTF-8") from err
        docs = pd.DataFrame({text_column: [line for line in text.splitlines() if line.strip()]})
    if text_column not in docs.columns:
        raise DataError(f"{path}: no column {text_column!r} (it has {list(docs.columns)}); "
                        f"set sae.corpus.text_column")
    if lang_column is not None and lang_column not in docs.columns:
        raise DataError(f"{path}: no column {lang_column!r}; set sae.corpus.lang_column or drop it")
    docs = docs[docs[text_column].astype(str).str.strip() != ""].reset_index(drop=True)
    if max_documents is not None:
        docs = docs.iloc[:max_documents]
    if len(docs) < 3:
        raise DataError(f"{path}: {len(docs)} non-empty documents; a train/val/test split needs at least 3")
    frames = []
    for i, row in docs.iterrows():
        words = str(row[text_column]).split()
        run = f"doc{i:06d}"
        frames.append(pd.DataFrame({
            "unit_id": [f"{run}_{j:05d}" for j in range(len(words))], "run": run,
            "word_index": np.arange(len(words)), "text": words,
            "lang": str(row[lang_column]) if lang_column else "", "onset": np.nan, "offset": np.nan}))
    return pd.concat(frames, ignore_index=True)


def subject_view(stimuli: pd.DataFrame, brain: BrainData, stim_path: str,
                 brain_path: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The stimulus rows this subject heard, on this subject's clock, and their positions in ``stimuli``.

    Without per-subject events the table is returned whole (positions None).
    With them, only the units the subject's file times are kept, in the
    stimulus set's order, with the subject's onsets and offsets; index the
    activation rows of the whole set with the positions.
    """
    if brain.events is None:
        return stimuli, None
    ev = brain.events.drop_duplicates("unit_id").set_index("unit_id")
    unknown = ev.index.difference(pd.Index(stimuli["unit_id"]))
    if len(unknown):
        raise DataError(f"{brain_path}: times {len(unknown)} units that {stim_path} lacks (e.g. "
                        f"{list(unknown[:3])}); the stimulus set was built from other brain files — rerun the "
                        "dataset's stimulus rule")
    rows = np.flatnonzero(stimuli["unit_id"].isin(ev.index).to_numpy())
    view = stimuli.iloc[rows].copy()
    mine = ev.loc[view["unit_id"]]
    if (mine["run"].to_numpy() != view["run"].astype(str).to_numpy()).any():
        raise DataError(f"{brain_path}: its events put units in other runs than {stim_path} does; rerun the "
                        "dataset's stimulus rule")
    view["onset"] = mine["onset"].to_numpy()
    view["offset"] = mine["offset"].to_numpy()
    return view.reset_index(drop=True), rows


def check_alignment(stimuli: pd.DataFrame, brain: BrainData, stim_path: str, brain_path: str) -> None:
    """Every run needs both stimulus timings and brain data, and the words must fit in the run.

    MEG/EEG: every word must end within the recording (its epochs are cut from
    it). fMRI: every word must start less than :data:`WORD_REACH_TRS` TRs after
    the run's end. A word heard just after the last volume still reaches the
    last volumes through the Lanczos window, and a study's stored responses may
    end before its story does (LeBel et al.'s are trimmed by 5 TRs at the end),
    so such words belong to the run; a word starting later could not touch any
    volume and means the run is truncated or the timings are another run's.
    """
    check_timings(stimuli, stim_path, timed=True)
    stim_runs = set(stimuli["run"].unique())
    missing = sorted(stim_runs - set(brain.runs))
    if missing:
        raise DataError(f"{brain_path}: no brain data for runs {missing} of {stim_path}; "
                        "drop those runs from the stimulus set or add their data")
    for run, words in stimuli.groupby("run"):
        n = brain.runs[run].data.shape[0]
        end = float(words["offset"].max())
        if brain.time_resolved:
            fits, allowed = end <= brain.duration(run), ""
        else:
            reach = WORD_REACH_TRS * brain.tr
            fits = float(words["onset"].max()) < brain.duration(run) + reach
            allowed = (f" (words may start up to {WORD_REACH_TRS} TRs = {reach:.1f} s after the last volume, "
                       "the Lanczos window, no later)")
        if not fits:
            clock = f"{n} samples at {brain.sfreq} Hz" if brain.time_resolved else f"{n} TRs at TR {brain.tr} s"
            raise DataError(
                f"{brain_path}: run {run} has {clock} ({brain.duration(run):.1f} s) but "
                f"its words in {stim_path} go on to {end:.1f} s{allowed}; the run is truncated or the "
                "timings belong to another run — fix the run length or the word onsets")
