"""One voxelwise encoding fit: ridge on training runs, scored on the test set."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ridge import GroupedRidgeCV
from .stats import block_bootstrap_mean_r, block_permutation_pvalues, constant_columns, fdr_bh


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
    """
    train_Y = np.asarray(train_Y)
    test_Y = np.asarray(test_Y)
    if train_Y.ndim != 2 or test_Y.ndim != 2 or train_Y.shape[1] != test_Y.shape[1]:
        raise ValueError(f"train_Y {train_Y.shape} and test_Y {test_Y.shape} must be 2-D with the same voxels")
    n_vox = train_Y.shape[1]
    excluded = constant_columns(train_Y) | constant_columns(test_Y)
    r = np.full(n_vox, np.nan)
    p = np.full(n_vox, np.nan)
    alpha = np.full(n_vox, np.nan)
    boot = np.full(int(n_boot), np.nan)

    keep = np.flatnonzero(~excluded)
    if keep.size:
        model = GroupedRidgeCV(alphas=alphas, n_splits=n_splits, backend=backend, dtype=dtype)
        model.fit(train_X, train_Y[:, keep], train_groups)
        pred = model.predict(test_X)
        r_k, p_k = block_permutation_pvalues(test_Y[:, keep], pred, n_perm=n_perm, block_size=block_size, seed=seed)
        r[keep], p[keep], alpha[keep] = r_k, p_k, model.best_alphas_
        unscorable = keep[np.isnan(r_k)]
        excluded[unscorable] = True
        alpha[unscorable] = np.nan
        if n_boot:
            boot = block_bootstrap_mean_r(test_Y[:, keep], pred, block_size, n_boot, seed=seed,
                                          voxels=np.isfinite(r_k))

    qvalues, significant = fdr_bh(p, q)
    return EncodingResult(r=r, p=p, q=qvalues, significant=significant, alpha=alpha, excluded=excluded,
                          boot_mean_r=boot)
