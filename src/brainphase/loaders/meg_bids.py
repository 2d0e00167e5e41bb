"""MEG (or EEG) recordings in BIDS, read through MNE-BIDS, as the stimulus and brain contracts.

``load_meg_bids`` finds a subject's recordings (one per session/task/acquisition/
run), reads each with ``mne_bids.read_raw_bids``, keeps the MEG channels
(magnetometers and gradiometers, no reference sensors; EEG when a recording has
no MEG), optionally band-passes and resamples, and returns per run a (samples x
channels) float32 array **in the units MNE gives** — tesla for magnetometers,
tesla/metre for gradiometers, volt for EEG; nothing is rescaled, so standardise
downstream. Sample 0 of a run is its first recorded sample (``raw.first_samp``
in MNE), which is also time 0 of the run's word onsets.

Word onsets come from the recording's ``*_events.tsv``, whose ``onset`` column
BIDS defines in seconds from the first data sample — the run's own clock (in
``raw.annotations`` MNE adds ``raw.first_time`` to the same numbers). Two
layouts are recognised by :func:`default_word_filter`:

- MEG-MASC (Gwilliams et al. 2023): ``trial_type`` holds a Python-dict-like
  string, ``"{'kind': 'word', 'word': 'the', 'story': 'lw1', ...}"``; the rows of
  kind ``word`` are words, the dict's other keys become extra columns;
- Armeni et al. 2022 and similar: a ``trial_type`` (or ``type``) column marks
  word rows as ``word``, ``word_onset`` or ``word_onset_01``, and the word sits in
  a ``word`` column or else in ``value``.

Any other layout: pass ``word_filter``, a callable from the events table (as read
by pandas) to a table of words with columns ``onset`` (s), ``text`` and
optionally ``duration`` (s) plus any extra columns to keep.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..contracts.brain import BrainRun
from ..contracts.stimuli import DataError
from .types import MEGBids
from .words import OWN_COLUMNS, clean_extras, parse_times, read_events_tsv, words_to_stimuli

log = logging.getLogger(__name__)

# Raw-data extensions of MEG/EEG recordings in BIDS (sidecars and marker files are not recordings).
RECORDING_EXTENSIONS = (".fif", ".ds", ".con", ".sqd", ".pdf", ".bin", ".edf", ".bdf", ".vhdr", ".set", ".eeg")
# BIDS entities that tell one recording of a subject from another, in run-name order.
RUN_ENTITIES = (("ses", "session"), ("task", "task"), ("acq", "acquisition"), ("run", "run"),
                ("proc", "processing"), ("rec", "recording"))
BARE_FLOAT = re.compile(r"(:\s*)(-?nan|-?inf)(\s*[,}])")
WORD_TYPE = re.compile(r"^word(_onset)?(_\d+)?$", re.IGNORECASE)


def _as_list(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (str, int)):
        return [str(value)]
    return [str(v) for v in value]


def _parse_dict(value) -> dict | None:
    if not isinstance(value, str) or not value.lstrip().startswith("{"):
        return None
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:  # a dict written from pandas may hold bare nan/inf values, which literal_eval refuses
            parsed = ast.literal_eval(BARE_FLOAT.sub(r"\1None\3", value))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return parsed if isinstance(parsed, dict) else None


def _unquote(text) -> str:
    return str(text).strip().strip('"').strip("'")


def default_word_filter(events: pd.DataFrame) -> pd.DataFrame:
    """Word rows of a BIDS events table in the MEG-MASC or the Armeni layout (see the module doc).

    Returns columns onset, duration, text (+ extras), indexed by the events' rows (so errors can name
    the file's line); an empty table when no row is a word.
    """
    if "trial_type" in events.columns:
        parsed = [_parse_dict(v) for v in events["trial_type"]]
        if any(p is not None for p in parsed):  # MEG-MASC: dict strings
            idx = [i for i, p in enumerate(parsed) if p is not None and str(p.get("kind", "")).lower() == "word"]
            rows = [parsed[i] for i in idx]
            out = pd.DataFrame({
                "onset": events["onset"].to_numpy()[idx] if idx else [],
                "duration": events["duration"].to_numpy()[idx] if "duration" in events and idx else np.nan,
                "text": [_unquote(r.get("word", "")) for r in rows]}, index=events.index[idx])
            keys = dict.fromkeys(k for r in rows for k in r if k not in ("kind", "word"))
            for k in keys:
                name = f"event_{k}" if k in OWN_COLUMNS else str(k)
                out[name] = [r.get(k) for r in rows]
            return out
    for col in ("trial_type", "type"):
        if col not in events.columns:
            continue
        mask = events[col].astype(str).str.strip().str.match(WORD_TYPE).to_numpy()
        if not mask.any():
            continue
        words = events[mask]
        if "word" in events.columns and words["word"].notna().all():
            text = words["word"]
        elif "value" in events.columns:
            text = words["value"]
        else:
            continue
        return pd.DataFrame({"onset": words["onset"].to_numpy(),
                             "duration": words["duration"].to_numpy() if "duration" in words else np.nan,
                             "text": [_unquote(t) for t in text]}, index=words.index)
    return pd.DataFrame({"onset": [], "duration": [], "text": []})


def _run_name(bp) -> str:
    parts = [f"{key}-{getattr(bp, attr)}" for key, attr in RUN_ENTITIES if getattr(bp, attr) is not None]
    return "_".join(parts) or "run-1"


def _find_recordings(root: Path, subject: str, task, session, runs) -> list:
    import mne_bids

    if not root.is_dir():
        raise DataError(f"{root}: BIDS root not found (looking for subject {subject!r}); set the dataset's "
                        "bids_root to the folder that holds dataset_description.json and the sub-* folders")
    subjects = mne_bids.get_entity_vals(root, "subject")
    if subject not in subjects:
        raise DataError(f"{root}: no subject {subject!r} in this BIDS dataset (subjects found: "
                        f"{subjects[:20]}{' ...' if len(subjects) > 20 else ''}); check the dataset's bids_root "
                        "and the subject label (without 'sub-')")
    found = []
    for datatype in ("meg", "eeg"):
        paths = mne_bids.find_matching_paths(root, subjects=subject, sessions=_as_list(session),
                                             tasks=_as_list(task), runs=_as_list(runs), datatypes=datatype,
                                             suffixes=datatype, extensions=list(RECORDING_EXTENSIONS))
        # A FIF recording split in several files is read from its first part.
        found = [p for p in paths if p.split in (None, "01")]
        if found:
            break
    if not found:
        every = mne_bids.find_matching_paths(root, subjects=subject, datatypes=["meg", "eeg"],
                                             extensions=list(RECORDING_EXTENSIONS))
        seen = sorted({p.basename for p in every})
        raise DataError(f"{root}: no MEG/EEG recording of subject {subject!r} with task={task!r}, "
                        f"session={session!r}, runs={runs!r}; recordings of this subject: "
                        f"{seen[:20] or 'none'}. Fix the dataset's task/session/runs or the subject")
    found.sort(key=lambda p: tuple(str(getattr(p, a) or "") for _, a in RUN_ENTITIES))
    return found


def _topomap_coords(info) -> np.ndarray:
    """Sensor positions flattened to 2-D as MNE does for a topomap; x, y of the 3-D position as a fallback."""
    locs = np.array([ch["loc"][:3] for ch in info["chs"]], float)
    try:
        from mne.channels.layout import _find_topomap_coords  # no public equivalent for arbitrary sensors

        xy = np.asarray(_find_topomap_coords(info, picks=list(range(len(locs))), ignore_overlap=True), float)
        if xy.shape == (len(locs), 2) and np.isfinite(xy).all():
            return xy
    except Exception as err:  # noqa: BLE001 - positions are for plots only
        log.warning("could not project sensor positions with MNE (%s); using their x, y", err)
    return np.nan_to_num(locs[:, :2])


def _word_table(events_file: Path, word_filter, run: str, lang: str, run_end: float) -> pd.DataFrame:
    if not events_file.exists():
        raise DataError(f"{events_file}: events file missing; the word onsets come from it. Add the recording's "
                        "*_events.tsv or restrict the dataset's task/session/runs to recordings that have one")
    events = read_events_tsv(events_file)
    if "onset" not in events.columns:
        raise DataError(f"{events_file}: no onset column (it has {list(events.columns)}); a BIDS events file "
                        "needs onset in seconds")
    words = (word_filter or default_word_filter)(events)
    missing = [c for c in ("onset", "text") if c not in words.columns]
    if missing:
        raise DataError(f"{events_file}: the word filter returned no {missing} column(s); it must return "
                        "onset (s) and text, optionally duration")
    if words.empty:
        col = next((c for c in ("trial_type", "type", "value") if c in events.columns), None)
        seen = list(dict.fromkeys(events[col].astype(str)))[:10] if col else []
        raise DataError(f"{events_file}: no word events; {col or 'trial_type'} values seen: {seen}. The default "
                        "filter knows MEG-MASC dict strings with kind 'word' and Armeni-style 'word_onset' "
                        "rows; pass a word_filter for other layouts")
    # The default filter keeps the events' row index, so the error can name the file's line.
    words = parse_times(words, events_file, lines=word_filter is None,
                        fix=", or pass a word_filter that drops those rows")
    return words_to_stimuli(words, run, lang, run_end, "train", events_file)


def _labels(value) -> set[str] | None:
    # BIDS labels compare as written and without zero padding (run 1 is run-01).
    values = _as_list(value)
    return None if values is None else {v for x in values for v in (x, x.lstrip("0") or "0")}


def meg_bids_inputs(bids_root: str | Path, subject: str, task: str | Sequence[str] | None = None,
                    session: str | Sequence[str] | None = None, runs: str | Sequence[str] | None = None,
                    **_other) -> list[Path]:
    """The files :func:`load_meg_bids` reads for ``subject`` with the same options, those on disk only.

    Every file of the subject's ``meg`` folders (``eeg`` when there is no MEG
    recording, as the loader falls back) whose session, task and run fit the
    options: the recordings (all parts of a split FIF, the files inside a CTF
    ``.ds`` folder), their sidecars, channels.tsv (bad channels), events.tsv (the
    words) and the coordinate files. The workflow declares them as the load
    job's inputs so that an edited file loads the subject again. Read by MNE-BIDS
    but left out: participants.tsv and scans.tsv, which only fill subject and
    date fields the loader does not keep (a new subject would otherwise reload
    every other one). A missing folder gives no files.
    """
    sub_dir = Path(bids_root) / f"sub-{str(subject).removeprefix('sub-')}"
    wanted = {"task": _labels(task), "ses": _labels(session), "run": _labels(runs)}

    def fits(name: str) -> bool:
        ents = dict(part.split("-", 1) for part in name.split(".")[0].split("_") if "-" in part)
        for key, labels in wanted.items():
            value = ents.get(key)
            if labels is not None and value is not None and not {value, value.lstrip("0") or "0"} & labels:
                return False
        return True

    for datatype in ("meg", "eeg"):
        folders = [d for d in [sub_dir / datatype, *sorted(sub_dir.glob(f"ses-*/{datatype}"))] if d.is_dir()]
        entries = [p for d in folders for p in sorted(d.iterdir()) if fits(p.name)]
        recordings = [p for p in entries if p.name.split(".")[0].endswith(f"_{datatype}")
                      and p.name.endswith(RECORDING_EXTENSIONS)]
        if recordings:
            files = []
            for p in entries:
                files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
            return files
    return []


def load_meg_bids(bids_root: str | Path, subject: str, task: str | Sequence[str] | None = None,
                  session: str | Sequence[str] | None = None, runs: str | Sequence[str] | None = None,
                  word_filter: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                  l_freq: float | None = None, h_freq: float | None = None, resample_sfreq: float | None = None,
                  lang: str = "", drop_bads: bool = True) -> MEGBids:
    """Words and MEG of one subject of a BIDS dataset; see the module doc.

    ``task``, ``session`` and ``runs`` restrict the recordings (a label or a list
    of labels; None keeps all). Each recording becomes a run named by its BIDS
    entities, e.g. ``ses-0_task-1`` or ``ses-001_task-compr_run-2``; its words get
    unit_id ``{run}_{i:05d}``, split ``train`` (the workflow splits later) and
    ``lang``. ``l_freq``/``h_freq`` band-pass (MNE's FIR defaults), then
    ``resample_sfreq`` resamples. With ``drop_bads`` the channels marked bad in
    any run (channels.tsv) are dropped from all, so every run has the same channels.
    Returns :class:`MEGBids` (a named tuple: stimuli, runs, sfreq, coords, ch_names).
    """
    import mne
    import mne_bids

    root = Path(bids_root)
    subject = str(subject).removeprefix("sub-")
    recordings = _find_recordings(root, subject, task, session, runs)
    raws, names = [], []
    with mne.utils.use_log_level("WARNING"):
        for bp in recordings:
            raw = mne_bids.read_raw_bids(bp, verbose=False)
            picks = mne.pick_types(raw.info, meg=True, ref_meg=False, exclude=[])
            if len(picks) == 0:
                picks = mne.pick_types(raw.info, eeg=True, exclude=[])
            if len(picks) == 0:
                raise DataError(f"{bp.fpath}: no MEG or EEG channels (channel types: "
                                f"{sorted(set(raw.get_channel_types()))}); fix channels.tsv or drop the recording")
            raw.pick(picks)
            raws.append((bp, raw))
            names.append(_run_name(bp))
        if len(set(names)) != len(names):
            raise DataError(f"{root}: recordings of subject {subject!r} share run names {names}; restrict "
                            "task/session/runs so each recording is named once")
        bads = sorted({ch for _, raw in raws for ch in raw.info["bads"]}) if drop_bads else []
        out_runs, words, sfreq, ch_names, coords = {}, [], None, None, None
        for i, name in enumerate(names):
            (bp, raw), raws[i] = raws[i], None  # hold one loaded recording at a time
            if bads:
                raw.drop_channels([ch for ch in bads if ch in raw.ch_names])
            raw.info["bads"] = []
            if ch_names is None:
                ch_names, coords = list(raw.ch_names), _topomap_coords(raw.info)
            elif list(raw.ch_names) != ch_names:
                raise DataError(f"{bp.fpath}: channels differ from the subject's first recording "
                                f"({len(raw.ch_names)} vs {len(ch_names)}, e.g. "
                                f"{sorted(set(raw.ch_names) ^ set(ch_names))[:5]}); mark the odd channels bad "
                                "in channels.tsv (drop_bads) or load the recordings separately")
            if l_freq is not None or h_freq is not None or resample_sfreq is not None:
                raw.load_data()
            if l_freq is not None or h_freq is not None:
                raw.filter(l_freq, h_freq, picks="all", n_jobs=1)
            if resample_sfreq is not None and raw.info["sfreq"] != resample_sfreq:
                raw.resample(resample_sfreq)
            if sfreq is None:
                sfreq = float(raw.info["sfreq"])
            elif float(raw.info["sfreq"]) != sfreq:
                raise DataError(f"{bp.fpath}: sampling rate {raw.info['sfreq']} Hz differs from the subject's "
                                f"first recording ({sfreq} Hz); set resample_sfreq")
            data = raw.get_data().T.astype(np.float32)
            if not np.isfinite(data).all():
                raise DataError(f"{bp.fpath}: data contain NaN or inf after reading/filtering; mark the channel "
                                "bad or repair the recording")
            out_runs[name] = BrainRun(np.ascontiguousarray(data), "train")
            events_file = Path(bp.copy().update(suffix="events", extension=".tsv", split=None).fpath)
            words.append(_word_table(events_file, word_filter, name, lang, data.shape[0] / sfreq))
    stimuli = clean_extras(pd.concat(words, ignore_index=True))
    return MEGBids(stimuli, out_runs, sfreq, coords, ch_names)
