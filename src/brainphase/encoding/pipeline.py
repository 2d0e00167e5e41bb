"""From cached word activations and a subject's BOLD to per-voxel encoding results.

Per layer: resampling to TRs, per-run z-scoring, FIR delays (in TRs),
trimming, grouped-CV ridge, test r, block permutations, FDR, noise ceiling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..config import check_trim
from ..progress import Progress
from .delays import prepare_design, prepare_responses
from .memory import EncodingShape, plan_encoding
from .model import fit_encoding
from .runs import features_per_run, runs_by_split
from .settings import EncodingSettings
from .stats import noise_ceiling

log = logging.getLogger(__name__)


def ceiling_per_voxel(brain, test_runs: list[str], trim: int) -> np.ndarray | None:
    """Noise-ceiling r per voxel from the test runs' repeats (trimmed); None when a test run has none."""
    reps = [brain.runs[r].repeats for r in test_runs]
    if any(r is None for r in reps):
        return None
    sl = slice(trim, -trim if trim else None)
    stacked = np.concatenate([r[:, sl] for r in reps], axis=1)  # (R, T, V)
    return noise_ceiling(stacked).r_ceiling


def job_shape(a: np.ndarray, brain, y_train: np.ndarray, y_test: np.ndarray, s: EncodingSettings) -> EncodingShape:
    """The sizes of this job for its memory plan (one layer of ``a`` at a time)."""
    # Runs read into memory count whole; runs left on disk one at a time (the
    # largest), as prepare_responses reads them.
    runs = brain.runs.values()
    held = sum((r.data.nbytes if isinstance(r.data, np.ndarray) else 0)
               + (r.repeats.nbytes if r.repeats is not None else 0) for r in runs)
    held += max((r.data.nbytes for r in runs if not isinstance(r.data, np.ndarray)), default=0)
    return EncodingShape(n_train=y_train.shape[0], n_test=y_test.shape[0], n_features=a.shape[1] * len(s.delays),
                         n_voxels=y_train.shape[1], n_alphas=len(s.alphas), n_folds=s.cv_splits, n_perm=s.n_perm,
                         n_units=a.shape[0], d_model=a.shape[1], brain_bytes=held)


def encode_layers(acts: Mapping[str, np.ndarray], stimuli: pd.DataFrame, brain, settings: EncodingSettings,
                  budget_bytes: int | None = None):
    """One row per (site, layer, voxel) of ``acts`` (keys ``site.layer``, rows following ``stimuli``).

    ``settings.delays`` are in TRs. With ``settings.n_boot`` > 0, returns
    ``(voxels, bootstrap)``: the second table has one row per (site, layer,
    replicate) with ``value``, the mean test r over the scored voxels in a
    TR-block bootstrap replicate of the test set (blocks of ``block_size``
    TRs; the draws depend on ``seed`` only, so they are the same at every
    checkpoint).

    ``acts`` may read each layer on access (``LayerReader``): one layer is
    held at a time. ``budget_bytes`` bounds the job's memory: voxels are
    fitted in chunks planned by :func:`~brainphase.encoding.memory.plan_encoding`
    (None: all at once).
    """
    s = settings
    trim, n_boot = s.trim, s.n_boot
    train_runs, test_runs = runs_by_split(stimuli, brain)
    check_trim({r: len(brain.runs[r].data) for r in train_runs + test_runs}, trim, "encoding.trim",
               "the subject's brain data")
    y_train, _ = prepare_responses([brain.runs[r].data for r in train_runs], trim, dtype=np.float32)
    y_test, _ = prepare_responses([brain.runs[r].data for r in test_runs], trim, dtype=np.float32)
    ceiling = ceiling_per_voxel(brain, test_runs, trim)
    frames, boots = [], []
    plan = None
    progress = Progress(log, "encoding", len(acts), "layers", every_s=0)
    for name in acts:
        a = acts[name]
        site, layer = name.split(".")
        t0 = time.perf_counter()
        if plan is None:
            plan = plan_encoding(job_shape(a, brain, y_train, y_test, s), budget_bytes)
            log.info("memory plan: %d voxels per chunk (%d voxels), folds %s, peak %.2f GB (budget %s)",
                     plan.voxel_chunk, y_train.shape[1],
                     "factorised once" if plan.voxel_chunk >= y_train.shape[1]
                     else "kept across chunks" if plan.keep_bases else "recomputed per chunk",
                     plan.peak_bytes / 1e9, "none" if budget_bytes is None else f"{budget_bytes / 1e9:.2f} GB")
        x_train, groups = prepare_design(features_per_run(a, stimuli, brain, train_runs, s.resample), s.delays, trim)
        x_test, _ = prepare_design(features_per_run(a, stimuli, brain, test_runs, s.resample), s.delays, trim)
        res = fit_encoding(x_train, y_train, groups, x_test, y_test, alphas=s.alphas, n_splits=s.cv_splits,
                           n_perm=s.n_perm, block_size=s.block_size, q=s.fdr_q, seed=s.seed, backend=s.backend,
                           n_boot=n_boot, voxel_chunk=plan.voxel_chunk)
        df = pd.DataFrame({
            "site": site, "layer": int(layer), "voxel": np.arange(y_train.shape[1]),
            "r": res.r, "p": res.p, "q": res.q, "significant": res.significant,
            "alpha": res.alpha, "excluded": res.excluded,
        })
        if ceiling is not None:  # no repeated test runs, no ceiling column
            df["ceiling_r"] = ceiling
        frames.append(df)
        if n_boot:
            boots.append(pd.DataFrame({"site": site, "layer": int(layer), "replicate": np.arange(n_boot),
                                       "value": res.boot_mean_r}))
        log.info("%s: mean r %.3f, %.1f%% significant, %d excluded (%.1fs)", name,
                 np.nanmean(res.r), 100 * np.mean(res.significant), res.excluded.sum(),
                 time.perf_counter() - t0)
        progress.update()
    voxels = pd.concat(frames, ignore_index=True)
    if n_boot:
        return voxels, pd.concat(boots, ignore_index=True)
    return voxels
