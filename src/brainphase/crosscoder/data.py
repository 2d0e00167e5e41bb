"""Per-TR inputs of the brain–LM crosscoder from word activations and BOLD.

x_lm(t) is the mean of the layer's Lanczos-resampled word features at t − 2,
−4, −6 and −8 s (the hemodynamic lag, as one vector rather than the encoding
model's concatenated FIR copies, so the crosscoder sees one LM vector per TR);
x_brain(t) the BOLD at t. Both are z-scored per run and trimmed like the
encoding model's inputs. Runs are whole stories in one split: training
stories feed training and validation, the test stories (repeats averaged)
the test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import check_trim
from ..encoding.delays import delays_in_trs, fir_delays, trim, zscore_runs
from ..encoding.runs import features_per_run, runs_by_split
from .store import RowStore, zscore_into


@dataclass
class CrosscoderInputs:
    x_brain: np.ndarray | RowStore  # (n_trs, n_voxels): an array, or the job's RowStore
    x_lm: np.ndarray  # (n_trs, d)
    run: np.ndarray  # run name of each row
    time: np.ndarray  # acquisition time (s) of each row's TR
    split: dict[str, np.ndarray]  # train / val / test row indices


def delayed_mean(runs: Sequence[np.ndarray], delays: Sequence[int]) -> list[np.ndarray]:
    """Per run, the mean of the copies shifted by ``delays`` TRs (zero padded, never across runs)."""
    out = []
    for r in runs:
        d = r.shape[1]
        out.append(fir_delays(r, delays).reshape(len(r), len(delays), d).mean(axis=1))
    return out


def kept_trs(brain, runs: Sequence[str], n_trim: int) -> int:
    """Rows of the crosscoder's inputs: every run's TRs less ``n_trim`` at each end."""
    check_trim({r: brain.runs[r].data.shape[0] for r in runs}, n_trim, "crosscoder.trim", "the subject's brain data")
    return sum(brain.runs[r].data.shape[0] - 2 * n_trim for r in runs)


def lm_inputs(acts: np.ndarray, stimuli: pd.DataFrame, brain, runs: Sequence[str], delays_s: Sequence[float],
              n_trim: int, resample: str = "lanczos") -> np.ndarray:
    """x_lm (float32, one row per kept TR of ``runs`` in order), built one run at a time."""
    delays = delays_in_trs(delays_s, brain.tr)
    x_lm = np.empty((kept_trs(brain, runs, n_trim), acts.shape[1]), dtype=np.float32)
    lo = 0
    for run in runs:
        (features,) = features_per_run(acts, stimuli, brain, [run], resample)
        (lm,) = trim(delayed_mean(zscore_runs([features]), delays), n_trim)
        x_lm[lo:lo + len(lm)] = lm
        lo += len(lm)
    return x_lm


def brain_inputs(x_lm: np.ndarray, brain, train_runs: Sequence[str], test_runs: Sequence[str], n_trim: int,
                 val_fraction: float, seed: int, store: RowStore | None = None) -> CrosscoderInputs:
    """Pair ``x_lm`` with the z-scored, trimmed brain data of the same runs, written into ``store``.

    Without ``store`` the brain rows go to a new in-memory float32 array.
    """
    runs = list(train_runs) + list(test_runs)
    n = kept_trs(brain, runs, n_trim)
    if len(x_lm) != n:
        raise ValueError(f"LM features ({len(x_lm)} TRs) and brain data ({n} TRs) disagree; "
                         f"check the stimulus timings against the runs")
    target = store if store is not None else RowStore(n, brain.runs[runs[0]].data.shape[1])
    index = zscore_into(target, [brain.runs[r].data for r in runs], n_trim, [f"brain run {r}" for r in runs])
    run = np.array(runs, dtype=object)[index]
    times = np.concatenate([tt[n_trim: len(tt) - n_trim] for tt in (brain.tr_times(r) for r in runs)])
    rng = np.random.default_rng(seed)
    n_val = max(1, round(val_fraction * len(train_runs)))
    if len(train_runs) - n_val < 1:
        raise ValueError(f"{len(train_runs)} training stories cannot give both training and validation stories")
    val_runs = set(rng.choice(train_runs, size=n_val, replace=False))
    split = {
        "train": np.flatnonzero([r in train_runs and r not in val_runs for r in run]),
        "val": np.flatnonzero([r in val_runs for r in run]),
        "test": np.flatnonzero([r in test_runs for r in run]),
    }
    return CrosscoderInputs(target if store is not None else target.array, x_lm, run, times, split)


def crosscoder_inputs(acts: np.ndarray, stimuli: pd.DataFrame, brain, delays_s: Sequence[float] = (2, 4, 6, 8),
                      n_trim: int = 5, val_fraction: float = 0.15, seed: int = 0,
                      resample: str = "lanczos", store: RowStore | None = None) -> CrosscoderInputs:
    """Rows: every kept TR of every run, training runs first; ``split`` by story.

    ``acts`` is one layer's unit activations, rows following ``stimuli``; ``resample``
    as in :func:`brainphase.encoding.runs.features_per_run` (words or annotations).
    ``store``: where the brain rows go (:func:`brain_inputs`).
    """
    train_runs, test_runs = runs_by_split(stimuli, brain)
    x_lm = lm_inputs(acts, stimuli, brain, train_runs + test_runs, delays_s, n_trim, resample)
    return brain_inputs(x_lm, brain, train_runs, test_runs, n_trim, val_fraction, seed, store)


def heard_before(stimuli: pd.DataFrame, run: str, t: float, window_s: float = 8.0) -> str:
    """The words of ``run`` whose onset lies in the ``window_s`` seconds up to ``t``."""
    w = stimuli[(stimuli["run"] == run) & (stimuli["onset"] > t - window_s) & (stimuli["onset"] <= t)]
    return " ".join(w.sort_values("onset")["text"].astype(str))


def top_windows(z: np.ndarray, inputs: CrosscoderInputs, rows: np.ndarray, stimuli: pd.DataFrame,
                latents: Sequence[int], window_s: float = 8.0) -> pd.DataFrame:
    """Per latent and test story: the TR of maximum activation and the text heard in the 8 s up to it."""
    out = []
    runs = inputs.run[rows]
    for lat in latents:
        for story in dict.fromkeys(runs):
            sel = np.flatnonzero(runs == story)
            best = sel[np.argmax(z[sel, lat])]
            if z[best, lat] <= 0:
                continue
            t = float(inputs.time[rows[best]])
            out.append({"latent": int(lat), "run": story, "time": t, "activation": float(z[best, lat]),
                        "text": heard_before(stimuli, story, t, window_s)})
    return pd.DataFrame(out, columns=["latent", "run", "time", "activation", "text"])
