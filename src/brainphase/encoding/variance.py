"""Variance partitioning between an LM layer and low-level stimulus features.

Per voxel, three ridge fits on the same training runs, scored on the same
held-out test runs (R², ``1 - SS_res / SS_tot``):

- ``r2_lm``: the LM band alone, ``r2_lowlevel``: the low-level band alone
  (``himalaya.ridge.RidgeCV``, one alpha per voxel);
- ``r2_joint``: both bands in one banded ridge (``himalaya.ridge.BandedRidgeCV``,
  one penalty per band and voxel, chosen by random search over band weights).

The partition is the set-theoretic one of separate fits (de Heer et al. 2017):
``unique_lm = r2_joint - r2_lowlevel``, ``unique_lowlevel = r2_joint - r2_lm``,
``shared = r2_lm + r2_lowlevel - r2_joint``, so
``unique_lm + unique_lowlevel + shared = r2_joint``. Out-of-sample noise can
make a part slightly negative; it is kept, not clipped, so means stay unbiased.
The joint fit's predictions are also split per band with
``himalaya.scoring.r2_score_split`` (product measure, ``split_lm +
split_lowlevel = r2_joint``): how much of the joint prediction each band carries.

Low-level band, per TR: word rate (the Lanczos-resampled count of words, as
Huth-lab code builds ``wordrate``), letter rate (the resampled count of
letters) and mean word length (letters per word of the words whose midpoint
falls in the TR; 0 where none). Both bands go through the encoding analysis'
preprocessing: per-run z-scoring, FIR delays, trimming.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .delays import prepare_design, prepare_responses
from .runs import features_per_run, runs_by_split
from .settings import EncodingSettings
from .variance_memory import VarianceShape, plan_variance

log = logging.getLogger(__name__)

LOWLEVEL_FEATURES = ("word_rate", "letter_rate", "mean_word_length")
PARTS = ("r2_joint", "r2_lm", "r2_lowlevel", "unique_lm", "unique_lowlevel", "shared", "split_lm", "split_lowlevel")


def words_and_letters(texts: pd.Series) -> np.ndarray:
    """Per unit: words (whitespace-separated pieces holding a letter) and letters (alphabetic characters).

    A word unit counts 1 word (punctuation 0); an annotation unit counts the
    words of its text. ``str.isalpha`` counts kana and kanji as letters.
    """
    texts = texts.fillna("").astype(str)
    words = texts.map(lambda t: sum(any(c.isalpha() for c in piece) for piece in t.split()))
    letters = texts.map(lambda t: sum(c.isalpha() for c in t))
    return np.column_stack([words.to_numpy(float), letters.to_numpy(float)])


def mean_word_length(counts: np.ndarray, midpoints: np.ndarray, tr_times: np.ndarray, tr: float) -> np.ndarray:
    """Letters per word of the units whose midpoint falls in each TR (centred at ``tr_times``); 0 where none."""
    edges = np.append(tr_times - tr / 2, tr_times[-1] + tr / 2)
    which = np.digitize(midpoints, edges) - 1
    inside = (which >= 0) & (which < len(tr_times))
    words = np.bincount(which[inside], counts[inside, 0], minlength=len(tr_times))
    letters = np.bincount(which[inside], counts[inside, 1], minlength=len(tr_times))
    return np.divide(letters, words, out=np.zeros_like(letters), where=words > 0)


def lowlevel_per_run(stimuli: pd.DataFrame, brain, runs: list[str], resample: str = "lanczos") -> list[np.ndarray]:
    """The low-level band on each run's TR grid: (n_TR, 3) arrays, columns as :data:`LOWLEVEL_FEATURES`."""
    counts = words_and_letters(stimuli["text"])
    rates = features_per_run(counts, stimuli, brain, runs, resample)
    out = []
    for run, rate in zip(runs, rates):
        rows = np.flatnonzero(stimuli["run"].to_numpy() == run)
        w = stimuli.iloc[rows]
        mid = ((w["onset"] + w["offset"]) / 2).to_numpy(float)
        length = mean_word_length(counts[rows], mid, brain.tr_times(run), brain.tr)
        out.append(np.column_stack([rate, length]))
    return out


def band_weights(n_iter: int, seed: int) -> np.ndarray:
    """(n_iter, 2) weights of the (LM, low-level) bands tried by the random search, rows summing to 1.

    Equal weights and both near-single-band corners first, so the joint model
    can always fall back on one band (its CV score never loses to a single
    band for want of a draw); the rest Dirichlet draws. himalaya's own search
    starts from equal weights only (gallantlab/himalaya
    himalaya/ridge/_random_search.py) and takes such an array as ``n_iter``.
    """
    if n_iter < 3:
        raise ValueError(f"variance.n_iter must be at least 3 (equal weights and both corners), got {n_iter}")
    eps = 1e-3
    fixed = np.array([[0.5, 0.5], [1 - eps, eps], [eps, 1 - eps]])
    rng = np.random.default_rng(seed)
    drawn = rng.dirichlet([1.0, 1.0], size=n_iter - 3)
    return np.vstack([fixed, drawn])


@dataclass
class VariancePartition:
    """Per-voxel test R² of each fit and the parts they imply (arrays of shape (n_voxels,))."""

    r2_joint: np.ndarray
    r2_lm: np.ndarray
    r2_lowlevel: np.ndarray
    split_lm: np.ndarray
    split_lowlevel: np.ndarray
    p_joint: np.ndarray
    """Block-permutation p-value of the joint prediction's test r (NaN without permutations)."""

    @property
    def unique_lm(self) -> np.ndarray:
        return self.r2_joint - self.r2_lowlevel

    @property
    def unique_lowlevel(self) -> np.ndarray:
        return self.r2_joint - self.r2_lm

    @property
    def shared(self) -> np.ndarray:
        return self.r2_lm + self.r2_lowlevel - self.r2_joint

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({p: getattr(self, p) for p in PARTS})


def himalaya_backend(name: str) -> str:
    """The himalaya backend for an encoding ``backend`` setting ("auto": torch_cuda when CUDA is there, else numpy)."""
    from .backends import Backend

    # Without an NVIDIA driver CUDA cannot be there: "auto" is numpy without
    # importing torch, which would cost a CPU job more than its fits.
    if name == "auto" and "torch" not in sys.modules and not Path("/proc/driver/nvidia").exists():
        return "numpy"
    return Backend(name).name


def _centred(a: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """float32 ``a - mean`` without a float64 temporary of ``a``'s size."""
    out = np.array(a, dtype=np.float32)
    out -= mean.astype(np.float32)
    return out


def partition_variance(x_lm: np.ndarray, x_low: np.ndarray, y: np.ndarray, groups: np.ndarray,
                       x_lm_test: np.ndarray, x_low_test: np.ndarray, y_test: np.ndarray, *, alphas: np.ndarray,
                       n_iter: int = 10, n_splits: int = 5, seed: int = 0, backend: str = "numpy",
                       voxels: np.ndarray | None = None, voxel_chunk: int | None = None, n_perm: int = 0,
                       block_size: int = 10, alphas_batch: int | None = None) -> VariancePartition:
    """Fit LM alone, low-level alone and both bands (banded ridge); score all three on the test runs.

    Hyperparameters (one alpha per voxel, and the band weights of the joint
    model) are chosen by cross-validation over the training runs grouped by
    ``groups`` (runs never split). Features and responses are centred on their
    training means and the models have no intercept: himalaya splits a
    prediction per band only without one (``GroupRidgeCV.predict``,
    gallantlab/himalaya himalaya/ridge/_sklearn_api.py). The test responses
    are centred on their own mean, which ``r2_score_split`` assumes
    (himalaya/scoring.py); its parts then sum to ``1 - SS_res / SS_tot``.

    ``voxels``: the columns of ``y``/``y_test`` to fit (None: all), taken
    ``voxel_chunk`` at a time (None: all at once) and centred per chunk, so
    no full-size copy of the responses is made. Chunking is exact: himalaya
    scores, selects and refits every voxel on its own, given the folds, the
    alphas and the band weightings, which :func:`band_weights` fixes before
    any voxel is seen. ``n_perm`` > 0: ``p_joint`` from block permutations
    of the test series, the same draws for every chunk. ``alphas_batch``:
    alphas whose resolution matrices himalaya builds at once (None: all).
    """
    from himalaya.backend import get_backend, set_backend

    from .ridge import grouped_splits

    voxels = np.arange(y.shape[1]) if voxels is None else np.asarray(voxels)
    chunk = max(1, int(voxel_chunk or len(voxels)))
    previous = get_backend().name
    xp = set_backend(himalaya_backend(backend), on_error="raise")
    try:
        fit = dict(cv=grouped_splits(groups, n_splits), alphas=np.asarray(alphas), seed=seed,
                   weights=band_weights(n_iter, seed), n_perm=n_perm, block_size=block_size,
                   alphas_batch=alphas_batch)
        mu_lm, mu_low = x_lm.mean(0), x_low.mean(0)
        train = [xp.asarray(_centred(a, mu)) for a, mu in ((x_lm, mu_lm), (x_low, mu_low))]
        test = [xp.asarray(_centred(a, mu)) for a, mu in ((x_lm_test, mu_lm), (x_low_test, mu_low))]
        chunks = []
        for start in range(0, len(voxels), chunk):
            cols = voxels[start:start + chunk]
            y_c, y_test_c = np.take(y, cols, axis=1).astype(np.float32), np.take(y_test, cols, axis=1)
            y_c -= y_c.mean(0)
            y_test_c = _centred(y_test_c, y_test_c.mean(0))
            chunks.append(_fit_chunk(xp, train, test, y_c, y_test_c, **fit))
            del y_c, y_test_c
        out = {k: np.concatenate([c[k] for c in chunks]) if chunks else np.zeros(0) for k in _FITTED}
        return VariancePartition(**out)
    finally:
        set_backend(previous)


_FITTED = ("r2_joint", "r2_lm", "r2_lowlevel", "split_lm", "split_lowlevel", "p_joint")


def _fit_chunk(xp, train, test, y, y_test, *, cv, alphas, seed, weights, n_perm, block_size, alphas_batch) -> dict:
    """The three fits of one chunk of voxels (centred float32 responses) and the joint model's p-values."""
    from himalaya.ridge import BandedRidgeCV, RidgeCV
    from himalaya.scoring import r2_score, r2_score_split

    from .stats import block_permutation_pvalues

    n = y.shape[1]
    # Fewer alphas per batch: the same products, fewer (features x training
    # TRs) resolution matrices alive at once.
    batches = dict(n_targets_batch=n, n_targets_batch_refit=n, n_alphas_batch=alphas_batch)
    a_y, t_y = xp.asarray(y), xp.asarray(y_test)
    out = {}
    for name, a, t in (("r2_lm", train[0], test[0]), ("r2_lowlevel", train[1], test[1])):
        model = RidgeCV(alphas=alphas, cv=cv, solver_params=batches).fit(a, a_y)
        out[name] = xp.to_numpy(r2_score(t_y, xp.asarray(model.predict(t))))
        del model
    joint = BandedRidgeCV(groups="input", cv=cv, random_state=seed, solver_params=dict(
        n_iter=weights, alphas=alphas, progress_bar=False, **batches)).fit(train, a_y)
    parts = xp.asarray(joint.predict(test, split=True))
    del joint
    split = xp.to_numpy(r2_score_split(t_y, parts))
    out.update(r2_joint=split.sum(0), split_lm=split[0], split_lowlevel=split[1], p_joint=np.full(n, np.nan))
    if n_perm:
        _, out["p_joint"] = block_permutation_pvalues(y_test, xp.to_numpy(parts.sum(0)), n_perm=n_perm,
                                                      block_size=block_size, seed=seed)
    return out


def job_shape(a, brain, y_train: np.ndarray, y_test: np.ndarray, settings: EncodingSettings, *, n_iter: int,
              n_perm: int, n_layers: int) -> VarianceShape:
    """The sizes of this job for its memory plan (``a``: one layer of the activation cache)."""
    runs = brain.runs.values()
    # Runs read into memory count whole; runs left on disk one at a time (the largest), as they are read.
    held = sum(r.data.nbytes for r in runs if isinstance(r.data, np.ndarray))
    held += max((r.data.nbytes for r in runs if not isinstance(r.data, np.ndarray)), default=0)
    d = len(settings.delays)
    return VarianceShape(n_train=y_train.shape[0], n_test=y_test.shape[0], n_lm=a.shape[1] * d,
                         n_low=len(LOWLEVEL_FEATURES) * d, n_voxels=y_train.shape[1],
                         n_alphas=len(settings.alphas), n_folds=settings.cv_splits, n_iter=n_iter, n_perm=n_perm,
                         n_layers=n_layers, n_units=a.shape[0], d_model=a.shape[1], brain_bytes=held,
                         solver_on_host=himalaya_backend(settings.backend) != "torch_cuda")


def partition_layers(acts, stimuli: pd.DataFrame, brain, settings: EncodingSettings, *, n_iter: int,
                     n_perm: int, layers=None, budget_bytes: int | None = None) -> pd.DataFrame:
    """One row per (site, layer, voxel) of ``acts`` (keys ``site.layer``): the R² parts and the joint model's test.

    ``layers`` (None: every layer in ``acts``) keeps only those layer indices.
    ``significant``: the joint prediction's test r beats block permutations of
    the test series (``n_perm`` draws, Benjamini–Hochberg at ``settings.fdr_q``
    over all the layer's voxels). ``budget_bytes`` bounds the job's memory:
    voxels are fitted in chunks planned by
    :func:`~brainphase.encoding.variance_memory.plan_variance` (None: all at once).
    """
    from .stats import constant_columns, fdr_bh

    s = settings
    train_runs, test_runs = runs_by_split(stimuli, brain)
    y_train, _ = prepare_responses([brain.runs[r].data for r in train_runs], s.trim, dtype=np.float32)
    y_test, _ = prepare_responses([brain.runs[r].data for r in test_runs], s.trim, dtype=np.float32)
    dead = constant_columns(y_train) | constant_columns(y_test)
    if dead.any():
        log.warning("%d constant voxel(s) left out of the fits (R² NaN): %s", dead.sum(), np.flatnonzero(dead)[:20])
    keep = np.flatnonzero(~dead)
    x_low, groups = prepare_design(lowlevel_per_run(stimuli, brain, train_runs, s.resample), s.delays, s.trim)
    x_low_test, _ = prepare_design(lowlevel_per_run(stimuli, brain, test_runs, s.resample), s.delays, s.trim)
    names = [n for n in acts if layers is None or int(n.split(".")[1]) in set(layers)]
    if not names:
        raise ValueError(f"variance.layers {list(layers)} selects none of the cached layers {list(acts)}; "
                         "set variance.layers to `all` or to indices among them")
    frames, plan = [], None
    for name in names:
        t0 = time.perf_counter()
        a = np.asarray(acts[name], dtype=np.float32)
        if plan is None:
            shape = job_shape(a, brain, y_train, y_test, s, n_iter=n_iter, n_perm=n_perm, n_layers=len(names))
            plan = plan_variance(shape, budget_bytes)
            log.info("memory plan: %d of %d voxels per chunk, %d alpha(s) per batch, peak %.2f GB (budget %s)",
                     plan.voxel_chunk, len(keep), plan.alphas_batch, plan.peak_bytes / 1e9,
                     "none" if budget_bytes is None else f"{budget_bytes / 1e9:.2f} GB")
        x_lm, _ = prepare_design(features_per_run(a, stimuli, brain, train_runs, s.resample), s.delays, s.trim)
        x_lm_test, _ = prepare_design(features_per_run(a, stimuli, brain, test_runs, s.resample), s.delays, s.trim)
        del a
        part = partition_variance(x_lm, x_low, y_train, groups, x_lm_test, x_low_test, y_test, alphas=s.alphas,
                                  n_iter=n_iter, n_splits=s.cv_splits, seed=s.seed, backend=s.backend,
                                  voxels=keep, voxel_chunk=plan.voxel_chunk, n_perm=n_perm,
                                  block_size=s.block_size, alphas_batch=plan.alphas_batch)
        del x_lm, x_lm_test
        _, significant = fdr_bh(part.p_joint, s.fdr_q)
        df = pd.DataFrame(np.nan, index=np.arange(y_train.shape[1]), columns=list(PARTS))
        df.loc[keep, list(PARTS)] = part.table().to_numpy()
        df["significant"] = False
        df.loc[keep, "significant"] = significant
        site, layer = name.split(".")
        df.insert(0, "voxel", np.arange(y_train.shape[1]))
        df.insert(0, "layer", int(layer))
        df.insert(0, "site", site)
        frames.append(df)
        log.info("%s: mean R² joint %.3f, LM-unique %.3f, low-level-unique %.3f, shared %.3f (%.1fs)", name,
                 *(np.nanmean(df[c]) for c in ("r2_joint", "unique_lm", "unique_lowlevel", "shared")),
                 time.perf_counter() - t0)
    return pd.concat(frames, ignore_index=True)
