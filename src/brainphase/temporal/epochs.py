"""Word-locked epochs of time-resolved brain data, cut by MNE.

Each run of a :class:`~brainphase.contracts.brain.BrainData` with a sampling rate becomes
an ``mne.io.RawArray`` (the data unchanged: no unit scaling, no projection), each
word onset an event at sample ``round(onset * sfreq)``, and ``mne.Epochs`` does the
indexing, baseline correction and decimation, with MNE's conventions:

- the window holds the samples ``round(tmin * sfreq) … round(tmax * sfreq)``
  around the onset sample, both ends included;
- ``baseline=(a, b)`` subtracts, per epoch and channel, the mean over the samples
  with ``a <= t <= b`` (``None`` means the window's edge), computed at the full
  rate *before* decimation;
- ``decim=k`` keeps every k-th sample counted from the onset sample (t = 0 is
  always kept). Decimation does not low-pass: filter first (the loaders take
  ``h_freq``); MNE warns about aliasing unless ``brain.attrs["lowpass"]`` (Hz)
  says the data are band-limited to at most a third of the new sampling rate.

Words whose window does not fit inside their run are dropped (``epochs.selection``
tells which survived). Two words on the same sample share one MNE event and are
both returned with the same epoch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path
from ..contracts.brain import BrainData
from ..contracts.stimuli import DataError

# Channel types for which MNE's RawArray keeps values as given and Epochs applies the baseline.
CH_TYPES = ("mag", "grad", "eeg", "seeg", "ecog", "misc")


@dataclass
class WordEpochs:
    data: np.ndarray  # (n_words_kept, n_channels, n_times) float32, in the brain data's units
    times: np.ndarray  # (n_times,) seconds relative to the word onset
    rows: np.ndarray  # (n_words_kept,) int: positional indices into the stimulus table (stimuli.iloc[rows])
    run: np.ndarray  # (n_words_kept,) str: run of each kept word
    sfreq: float  # samples per second of ``data`` (after decimation)

    def __len__(self) -> int:
        return len(self.rows)


def epoch_words(stimuli: pd.DataFrame) -> np.ndarray:
    """Positional indices of the rows that are epoched: a timed onset and not punctuation."""
    keep = stimuli["onset"].notna().to_numpy()
    if "category" in stimuli.columns:
        keep = keep & (stimuli["category"] != "punct").to_numpy()
    return np.flatnonzero(keep)


def word_epochs(brain: BrainData, stimuli: pd.DataFrame, tmin: float, tmax: float,
                baseline: tuple[float | None, float | None] | None = None, decim: int = 1, *,
                stim_path: str = "the stimulus table", brain_path: str = "the brain data") -> WordEpochs:
    """Cut a window ``[tmin, tmax]`` s around every word onset of ``stimuli`` out of ``brain``.

    Only rows with an onset and (when a ``category`` column exists) category
    other than ``"punct"`` are epoched; function words stay. ``stim_path`` and
    ``brain_path`` name the inputs in error messages. The kept words come back in
    the order of the table.
    """
    import mne

    decim = _check_request(brain, stimuli, tmin, tmax, decim, stim_path, brain_path)
    sel = epoch_words(stimuli)
    words = stimuli.iloc[sel]
    runs = words["run"].astype(str).to_numpy()
    absent = sorted(set(runs) - set(brain.runs))
    if absent:
        raise DataError(f"{brain_path}: no brain data for runs {absent} that {stim_path} times words in "
                        f"(brain runs: {sorted(brain.runs)}); drop those runs from the stimulus set or add "
                        "their recordings")
    sfreq = float(brain.sfreq)
    samples = np.round(words["onset"].to_numpy(float) * sfreq).astype(np.int64)

    chunks, kept_rows, kept_runs, times = [], [], [], None
    # MNE warns once per run (e.g. about aliasing); pass each distinct warning on once.
    with mne.utils.use_log_level("WARNING"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for run in dict.fromkeys(runs):  # runs in order of first appearance
            in_run = np.flatnonzero(runs == run)
            n_times = brain.runs[run].data.shape[0]
            ok = in_run[(samples[in_run] >= 0) & (samples[in_run] < n_times)]
            if len(ok) == 0:
                continue
            times, ep, good = _epoch_run(mne, brain, run, samples[ok], tmin, tmax, baseline, decim)
            if ep is None:
                continue
            chunks.append(ep)
            kept_rows.append(sel[ok[good]])
            kept_runs.append(np.full(int(good.sum()), run, dtype=object))
    for msg in dict.fromkeys((str(w.message), w.category) for w in caught):
        warnings.warn(msg[0], msg[1], stacklevel=2)
    if times is None:  # no word fell inside any run: the time axis MNE would have given
        n0, n1 = int(round(tmin * sfreq)), int(round(tmax * sfreq))
        start = (-n0) % decim
        times = (np.arange(n0, n1 + 1) / sfreq)[start::decim]
    data, rows, run_of = _in_table_order(chunks, kept_rows, kept_runs, (brain.n_channels, len(times)))
    return WordEpochs(np.ascontiguousarray(data), np.asarray(times, float), rows, run_of, sfreq / decim)


def _check_request(brain: BrainData, stimuli: pd.DataFrame, tmin: float, tmax: float, decim: int,
                   stim_path: str, brain_path: str) -> int:
    """Raise on data or a window that cannot be epoched; ``decim`` as an int."""
    if not brain.time_resolved:
        raise DataError(f"{brain_path}: word epochs need time-resolved (MEG/EEG) data with a sampling rate; "
                        f"this dataset has a TR of {brain.tr} s (fMRI). Use the encoding analysis for fMRI, "
                        "or write the MEG data with write_brain(..., tr=None, sfreq=...)")
    if not tmin < tmax:
        raise ValueError(f"epoch window needs tmin < tmax, got tmin={tmin}, tmax={tmax}")
    if int(decim) != decim or decim < 1:
        raise ValueError(f"decim must be a positive integer, got {decim!r}")
    missing = [c for c in ("run", "onset") if c not in stimuli.columns]
    if missing:
        raise DataError(f"{stim_path}: stimulus table lacks columns {missing}; word epochs need run and onset")
    return int(decim)


def _epoch_run(mne, brain: BrainData, run: str, samples: np.ndarray, tmin: float, tmax: float, baseline,
               decim: int):
    """One run's epochs at the word onset ``samples`` (all inside the run), cut by ``mne.Epochs``.

    Returns the epochs' times, the (n_kept, n_channels, n_times) float32 data of
    the words MNE kept (None when it kept none) and which of ``samples`` they are.
    """
    data = brain.runs[run].data
    sfreq = float(brain.sfreq)
    ch_type = str(brain.attrs.get("ch_type", "mag"))
    if ch_type not in CH_TYPES:
        ch_type = "mag"
    lowpass = brain.attrs.get("lowpass")
    info = mne.create_info([f"ch{i:04d}" for i in range(data.shape[1])], sfreq, ch_type)
    if lowpass is not None and 0 < float(lowpass) <= sfreq / 2:
        with info._unlock():
            info["lowpass"] = float(lowpass)
    raw = mne.io.RawArray(np.asarray(data, np.float64).T, info, verbose=False)
    uniq, inverse = np.unique(samples, return_inverse=True)
    events = np.column_stack([uniq, np.zeros_like(uniq), np.ones_like(uniq)])
    epochs = mne.Epochs(raw, events, event_id={"word": 1}, tmin=tmin, tmax=tmax, baseline=baseline,
                        picks="all", preload=True, reject=None, flat=None, proj=False, decim=decim,
                        reject_by_annotation=False, event_repeated="error", on_outside="raise",
                        verbose=False)
    if len(epochs.selection) == 0:
        return epochs.times, None, None
    ep = epochs.get_data(copy=False)
    pos = np.full(len(uniq), -1)
    pos[epochs.selection] = np.arange(len(epochs.selection))
    word_pos = pos[inverse]
    good = word_pos >= 0
    return epochs.times, ep[word_pos[good]].astype(np.float32), good


def _in_table_order(chunks: list, kept_rows: list, kept_runs: list, shape: tuple[int, int]):
    """Concatenate the runs' epochs, rows and run names, sorted by stimulus-table row."""
    if not chunks:
        return np.zeros((0, *shape), np.float32), np.zeros(0, np.int64), np.zeros(0, dtype=object)
    data = np.concatenate(chunks)
    rows = np.concatenate(kept_rows).astype(np.int64)
    run_of = np.concatenate(kept_runs)
    order = np.argsort(rows, kind="stable")
    return data[order], rows[order], run_of[order]


def write_epochs(path: str | Path, epochs: WordEpochs, attrs: dict | None = None) -> None:
    """Store word epochs as HDF5 (datasets data, times, rows, run; attr sfreq), atomically."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["sfreq"] = float(epochs.sfreq)
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            f.create_dataset("data", data=np.asarray(epochs.data, np.float32))
            f.create_dataset("times", data=np.asarray(epochs.times, float))
            f.create_dataset("rows", data=np.asarray(epochs.rows, np.int64))
            f.create_dataset("run", data=np.asarray(epochs.run, dtype=object).astype(str).astype("S"))


def read_epochs(path: str | Path) -> WordEpochs:
    """Word epochs written by :func:`write_epochs`."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: epochs file missing; rerun the word_epochs rule that writes it")
    with h5py.File(path, "r") as f:
        missing = [k for k in ("data", "times", "rows", "run") if k not in f] + (
            [] if "sfreq" in f.attrs else ["sfreq attr"])
        if missing:
            raise DataError(f"{path}: not a word-epochs file (lacks {missing}); rerun the word_epochs rule")
        data, times, rows = f["data"][()], f["times"][()], f["rows"][()]
        run = np.array([r.decode() for r in f["run"][()]], dtype=object)
        sfreq = float(f.attrs["sfreq"])
    if data.ndim != 3 or data.shape[0] != len(rows) or data.shape[2] != len(times) or len(run) != len(rows):
        raise DataError(f"{path}: inconsistent shapes data {data.shape}, times {times.shape}, rows {rows.shape}, "
                        f"run {run.shape}; rerun the word_epochs rule")
    return WordEpochs(data, times, rows, run, sfreq)
