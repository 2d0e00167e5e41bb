"""The brain-data HDF5 file: one subject's recordings, its writer, reader and alignment checks.

A brain dataset ``results/brain/{dataset}/{subject}.h5`` holds one group per run
with ``data`` (time x channels, float32), attrs ``split`` (one of
:data:`SPLITS`) and optional ``repeats`` (repeats x time x channels); dataset
``coords`` (channel positions) and one file attr giving the clock: ``tr``
(fMRI: volume i is centred at (i + 0.5) TR) or ``sfreq`` (MEG/EEG: sample i is
at i / sfreq). Both clocks start with the run, on the time axis of the stimulus
onsets. An optional ``events`` group (unit_id, run, onset, offset) holds the
subject's own timing of the units when it differs between subjects (real
recordings start at different moments); it overrides the stimulus set's onsets
for that subject (:func:`subject_view`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..io import atomic_path
from .stimuli import DataError, check_timings

SPLITS = ("train", "test")  # the values of a brain run's split attribute
# How far past an fMRI run's last volume a word may be heard and still count: the
# Lanczos window (``encoding.resample.lanczos_resample`` window=3, cutoff 1/TR, as
# HuthLab/deep-fMRI-dataset encoding/feature_spaces.py downsample_word_vectors
# uses it). A word later than that has zero weight on every volume.
WORD_REACH_TRS = 3


@dataclass
class BrainRun:
    """One run of a subject's recording."""

    data: np.ndarray  # (T, V)
    split: str
    repeats: np.ndarray | None = None  # (R, T, V)

class RunOnDisk:
    """One run's (T, V) data left in the brain file: shape and length known, values read when indexed.

    ``np.asarray(run)`` reads the whole run; ``run[rows, cols]`` reads that
    block only. A job that z-scores runs one at a time (``prepare_responses``)
    then never holds more than one raw run besides its output.
    """

    def __init__(self, path: Path, name: str, shape: tuple, dtype, dataset: str = "data"):
        self.path, self.name, self.shape, self.dtype = path, name, tuple(shape), np.dtype(dtype)
        self.dataset = dataset
        self.ndim = len(self.shape)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        with h5py.File(self.path, "r") as f:
            return f["runs"][self.name][self.dataset][index]

    def __array__(self, dtype=None, copy=None):
        a = self[()]
        return a if dtype is None else a.astype(dtype, copy=False)


@dataclass
class BrainData:
    """A subject's brain file as read: its runs, clock, channel positions and own unit timings."""

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
    """Voxel coordinates per (dataset, subject) for maps; the runs are not read."""
    out = {}
    for p in paths:
        if not Path(p).exists():
            raise DataError(f"{p}: brain file missing; rerun the rule that writes it")
        with h5py.File(p, "r") as f:
            out[dataset_subject(p)] = f["coords"][()]
    return out

def read_brain(path: str | Path, on_disk: bool = False) -> BrainData:
    """The brain file at ``path``, checked; ``on_disk``: runs' data and repeats as :class:`RunOnDisk`
    (read when used), for jobs that stream them within a memory budget.

    Either way every run is checked for NaN or inf here, one run (on disk: one block of rows) at a time.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: brain file missing; rerun the rule that writes it")
    runs = {}
    with h5py.File(path, "r") as f:
        if ("tr" in f.attrs) == ("sfreq" in f.attrs):
            raise DataError(f"{path}: the file needs exactly one clock attribute, tr (fMRI) or sfreq (MEG/EEG); "
                            f"it has {sorted(f.attrs)}. Rewrite it with brainphase.contracts.brain.write_brain")
        tr = float(f.attrs["tr"]) if "tr" in f.attrs else None
        sfreq = float(f.attrs["sfreq"]) if "sfreq" in f.attrs else None
        coords = f["coords"][()]
        attrs = {k: f.attrs[k] for k in f.attrs if k not in ("tr", "sfreq")}
        for name, g in f["runs"].items():
            data = g["data"]
            if data.ndim != 2 or data.shape[1] != coords.shape[0]:
                raise DataError(f"{path}: run {name} has shape {data.shape}, expected (time, "
                                f"{coords.shape[0]} channels as in coords)")
            if on_disk:
                # Checked a block of rows at a time, so a run left on disk is never held whole here.
                step = max(1, 2**27 // (data.dtype.itemsize * max(1, data.shape[1])))
                finite = all(np.isfinite(data[a:a + step]).all() for a in range(0, data.shape[0], step))
                reps = RunOnDisk(path, name, g["repeats"].shape, g["repeats"].dtype, "repeats") \
                    if "repeats" in g else None
                data = RunOnDisk(path, name, data.shape, data.dtype)
            else:
                data = data[()]
                finite = np.isfinite(data).all()
                reps = g["repeats"][()] if "repeats" in g else None
            if not finite:
                raise DataError(f"{path}: run {name} contains NaN or inf; mask or interpolate "
                                "those samples in preprocessing")
            if "split" not in g.attrs:
                raise DataError(f"{path}: run {name} has no split attribute; set it to one of {list(SPLITS)} "
                                "(write the file with brainphase.contracts.brain.write_brain)")
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
