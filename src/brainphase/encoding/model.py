"""One voxelwise encoding fit: ridge on training runs, scored on the test set."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ridge import GroupedRidgeCV
from .stats import block_bootstrap_totals, block_permutation_pvalues, constant_columns, fdr_bh


@dataclass
class EncodingResult:
    """Per-voxel results; excluded voxels have NaN r/p/q/alpha and are never significant."""

    r: np.ndarray  # Pearson r of predicted vs measured test BOLD
    p: np.ndarray  # one-sided block-permutation p-value
    q: np.ndarray  # Benjamini–Hochberg q-value over non-excluded voxels
    significant: np.ndarray  # q <= the requested FDR level
    alpha: np.ndarray  # ridge alpha chosen by grouped CV
    excluded: np.ndarray  # constant in train or test (or constant prediction)
    # (n_boot,) mean r over the scored voxels in TR-block bootstrap replicates of the test set
    boot_mean_r: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def summary(self) -> dict:
        """Mean r over scored voxels, mean r over significant ones, fraction significant."""
        scored = ~self.excluded
        n = int(scored.sum())
        sig = self.significant
        return {
            "n_voxels": int(self.r.size),
            "n_scored": n,
            "mean_r": float(np.mean(self.r[scored])) if n else float("nan"),
            "mean_r_significant": float(np.mean(self.r[sig])) if sig.any() else float("nan"),
            "fraction_significant": float(sig.sum() / n) if n else float("nan"),
        }


def fit_encoding(
    train_X: np.ndarray,
    train_Y: np.ndarray,
    train_groups: np.ndarray,
    test_X: np.ndarray,
    test_Y: np.ndarray,
    alphas=np.logspace(1, 4, 10),
    n_perm: int = 1000,
    block_size: int = 10,
    q: float = 0.05,
    seed: int = 0,
    backend: str = "auto",
    n_splits: int = 5,
    dtype: str = "float32",
    n_boot: int = 0,
    voxel_chunk: int | None = None,
) -> EncodingResult:
    """Fit :class:`GroupedRidgeCV` on the training runs and score every voxel on the test set.

    Voxels constant in the training or the test responses are excluded from
    the fit (their CV score and correlation are undefined); so are voxels
    whose test prediction comes out constant. Excluded voxels are reported
    with NaN r and ``significant=False``; FDR runs over the others only.
    ``test_Y`` is used as given (average repeats upstream).

    ``n_boot`` > 0 adds ``boot_mean_r``: the mean r over the scored voxels
    in TR-block bootstrap replicates of the test set (blocks of
    ``block_size`` TRs, draws fixed by ``seed``; see
    :func:`~brainphase.encoding.stats.block_bootstrap_mean_r`).

    ``voxel_chunk``: voxels fitted and scored together (None: all at once).
    The design is factorised once; every chunk goes through the same folds,
    alphas, permutations and bootstrap draws, so the result does not depend
    on the chunking beyond float rounding. Memory then grows with the chunk,
    not with the subject (:func:`brainphase.encoding.memory.plan_encoding`).
    """
    if np.ndim(train_Y) != 2 or np.ndim(test_Y) != 2 or np.shape(train_Y)[1] != np.shape(test_Y)[1]:
        raise ValueError(f"train_Y {np.shape(train_Y)} and test_Y {np.shape(test_Y)} must be 2-D with the same "
                         "voxels")
    n_vox = train_Y.shape[1]
    chunk = n_vox if not voxel_chunk else int(voxel_chunk)
    n_chunks = -(-n_vox // max(chunk, 1))
    folds = GroupedRidgeCV(alphas=alphas, n_splits=n_splits, backend=backend,
                           dtype=dtype).factorise(train_X, train_groups, keep_bases=n_chunks > 1)
    test_X = np.asarray(test_X, dtype=np.float64)
    out = {k: np.full(n_vox, np.nan) for k in ("r", "p", "alpha")}
    excluded = np.zeros(n_vox, dtype=bool)
    total, count = np.zeros(int(n_boot)), np.zeros(int(n_boot))
    for start in range(0, n_vox, chunk):
        cols = slice(start, min(start + chunk, n_vox))
        score = _fit_chunk(folds, test_X, train_Y[:, cols], test_Y[:, cols], n_perm, block_size, seed, n_boot)
        for k in out:
            out[k][cols] = score[k]
        excluded[cols] = score["excluded"]
        total += score["boot_total"]
        count += score["boot_count"]
    with np.errstate(invalid="ignore"):
        boot = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    qvalues, significant = fdr_bh(out["p"], q)
    return EncodingResult(r=out["r"], p=out["p"], q=qvalues, significant=significant, alpha=out["alpha"],
                          excluded=excluded, boot_mean_r=boot)


def _fit_chunk(folds, test_X, train_Y, test_Y, n_perm, block_size, seed, n_boot) -> dict:
    """r, p, alpha and exclusions of one chunk of voxels, plus its bootstrap totals."""
    n_vox = train_Y.shape[1]
    excluded = constant_columns(train_Y) | constant_columns(test_Y)
    out = {k: np.full(n_vox, np.nan) for k in ("r", "p", "alpha")}
    total, count = np.zeros(int(n_boot)), np.zeros(int(n_boot))
    keep = np.flatnonzero(~excluded)
    if keep.size:
        _, best_alphas, coef, intercept = folds.fit_targets(np.asarray(train_Y[:, keep]))
        pred = test_X @ coef.astype(np.float64) + intercept
        del coef
        y_test = np.asarray(test_Y[:, keep])
        r_k, p_k = block_permutation_pvalues(y_test, pred, n_perm=n_perm, block_size=block_size, seed=seed)
        out["r"][keep], out["p"][keep], out["alpha"][keep] = r_k, p_k, best_alphas
        unscorable = keep[np.isnan(r_k)]
        excluded[unscorable] = True
        out["alpha"][unscorable] = np.nan
        if n_boot:
            total, count = block_bootstrap_totals(y_test, pred, block_size, n_boot, seed=seed,
                                                  voxels=np.isfinite(r_k))
    return {**out, "excluded": excluded, "boot_total": total, "boot_count": count}
