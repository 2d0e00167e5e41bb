"""Voxelwise ridge regression, alpha chosen per voxel by run-grouped cross-validation.

Penalty convention as in himalaya / scikit-learn: minimise
``||Y - X W - b||^2 + alpha ||W||^2`` (himalaya's alpha = Huth's alpha^2).

Written by hand rather than on ``himalaya.ridge.RidgeCV``: per fold,
himalaya forms the (n_alphas, n_test, n_train) matrices
``Xtest (Xtrain^T Xtrain + a I)^-1 Xtrain^T`` and multiplies them with
``Ytrain``, ``n_alphas * n_test * n_train * n_voxels`` multiply-adds per fold.
Here each fold diagonalises its training Gram matrix once and scores every
alpha from the factors (:mod:`.factors`), about
``n_alphas * rank^2 / 2 * n_voxels`` per fold; ``benchmarks/encoding.py``
compares the two. ``X^T Y`` over all samples is computed once; each fold
subtracts its held-out part. The array library is a seam (:mod:`.backends`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

from .backends import Backend
from .factors import FACTORS, held_out_r2

# Targets processed together when n_targets_batch is None: about this many
# elements of per-chunk temporaries (copies of Y and several rank x targets
# arrays), ~256 MB in float32.
_CHUNK_ELEMENTS = 2**26


def grouped_splits(groups: Sequence, n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs that keep each run/story whole.

    Leave-one-group-out when there are at most ``n_splits`` groups, else
    ``GroupKFold(n_splits)`` (no shuffling; samples keep their time order).
    """
    groups = np.asarray(groups)
    n_groups = np.unique(groups).size
    if n_groups < 2:
        raise ValueError("grouped cross-validation needs at least 2 groups (runs)")
    cv = LeaveOneGroupOut() if n_groups <= n_splits else GroupKFold(n_splits=n_splits)
    dummy = np.zeros((groups.size, 1))
    return [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(dummy, groups=groups)]



class GroupedRidgeCV(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Ridge with one alpha per target, chosen by run-grouped cross-validation.

    CV score: R² on each held-out fold, ``1 - SS_res / SS_tot`` with SS_tot
    around the fold's own mean (as ``sklearn.metrics.r2_score``), averaged
    over folds. R² rather than Pearson r because r ignores the scale of the
    prediction and so cannot tell under- from over-shrinkage. A fold where a
    target is constant scores 0 for every alpha; exclude constant targets
    beforehand (``stats.constant_columns``). The best alpha per target is the
    first maximiser in ``alphas`` order; the model is then refit on all
    samples with each target's own alpha.

    Parameters
    ----------
    alphas : array (n_alphas,)
        Penalties ``alpha ||w||^2`` (himalaya/scikit-learn convention).
    n_splits : int
        Leave-one-run-out when there are at most ``n_splits`` runs, else
        ``GroupKFold(n_splits)`` (see :func:`grouped_splits`).
    fit_intercept : bool
        Centre X and Y on each training set (and the full data for the refit).
    solver : {"auto", "primal", "dual"}
        Diagonalise ``X^T X`` ("primal") or ``X X^T`` ("dual"); "auto" takes
        the smaller of n_features and the smallest training-set size.
    backend : {"auto", "numpy", "torch", "torch_cuda"}
        "auto" is torch on CUDA when available, else numpy (faster than
        torch on CPU for these shapes).
    dtype : {"float32", "float64"}
        Precision of the per-voxel products; eigendecompositions are float64.
    n_targets_batch : int or None
        Targets processed together (memory bound). Each fold is factorised
        once and reused by all chunks. None: about 2^26 elements of
        temporaries per chunk.
    n_alphas_batch : int or None
        Alphas stacked in one product when scoring (None: all).

    Attributes
    ----------
    best_alphas_ : array (n_targets,)
    cv_scores_ : array (n_alphas, n_targets), mean CV R² per alpha
    coef_ : array (n_features, n_targets)
    intercept_ : array (n_targets,)
    n_splits_ : int, number of CV folds used
    solver_ : str, "primal" or "dual"
    """

    def __init__(
        self,
        alphas=np.logspace(1, 4, 10),
        n_splits: int = 5,
        fit_intercept: bool = True,
        solver: str = "auto",
        backend: str = "auto",
        dtype: str = "float32",
        n_targets_batch: int | None = None,
        n_alphas_batch: int | None = None,
    ):
        self.alphas = alphas
        self.n_splits = n_splits
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.backend = backend
        self.dtype = dtype
        self.n_targets_batch = n_targets_batch
        self.n_alphas_batch = n_alphas_batch


    def fit(self, X, Y, groups):
        """Choose each target's alpha by grouped CV, then refit on all samples.

        Parameters
        ----------
        X : array (n_samples, n_features)
        Y : array (n_samples,) or (n_samples, n_targets)
        groups : array (n_samples,), run/story label of each sample
        """
        X = np.asarray(X, dtype=np.float64 if self.dtype == "float64" else None)
        Y = np.asarray(Y)
        ravel = Y.ndim == 1
        if ravel:
            Y = Y[:, None]
        alphas = self._check(X, Y, groups)
        splits = grouped_splits(groups, self.n_splits)
        ops = Backend(self.backend)
        dtype = self.dtype

        # Centring once on the full data keeps float32 sums well conditioned;
        # the per-fold means left over are small corrections.
        x_offset, y_offset = X.mean(0, dtype=np.float64), Y.mean(0, dtype=np.float64)
        if not (np.isfinite(x_offset).all() and np.isfinite(y_offset).all()):
            raise ValueError("X and Y must be finite")
        if not self.fit_intercept:
            x_offset, y_offset = np.zeros_like(x_offset), np.zeros_like(y_offset)
        Xb = ops.asarray(np.subtract(X, x_offset, dtype=dtype), dtype)
        Yb = ops.asarray(np.subtract(Y, y_offset, dtype=dtype), dtype)

        solver = self._solver(X.shape[1], min(len(tr) for tr, _ in splits))
        factors = FACTORS[solver](ops, Xb, Yb, dtype, self.fit_intercept)
        n_targets = Y.shape[1]
        step = self.n_targets_batch or max(1, _CHUNK_ELEMENTS // (X.shape[0] + 5 * X.shape[1]))
        chunks = [slice(t0, min(t0 + step, n_targets)) for t0 in range(0, n_targets, step)]
        alphas_b = ops.asarray(alphas, "float64")

        scores = self._cv_scores(ops, factors, splits, chunks, alphas_b, n_targets)
        best = np.argmax(scores, axis=0)
        coef, intercept = self._refit(ops, factors, chunks, alphas_b, best, x_offset, y_offset)

        self.cv_scores_ = scores
        self.best_alphas_ = alphas[best]
        self.coef_ = coef
        self.intercept_ = intercept.astype(dtype)
        self.n_splits_ = len(splits)
        self.n_features_in_ = X.shape[1]
        self.solver_ = solver
        if ravel:
            self.coef_, self.intercept_ = self.coef_[:, 0], self.intercept_[0]
            self.best_alphas_, self.cv_scores_ = self.best_alphas_[0], self.cv_scores_[:, 0]
        return self

    def _check(self, X: np.ndarray, Y: np.ndarray, groups) -> np.ndarray:
        """Raise on inconsistent inputs or settings; the alphas as a float64 vector."""
        if X.ndim != 2 or X.shape[0] != Y.shape[0] or len(groups) != X.shape[0]:
            raise ValueError(f"inconsistent shapes X{X.shape}, Y{Y.shape}, groups({len(groups)})")
        if self.dtype not in ("float32", "float64"):
            raise ValueError("dtype must be 'float32' or 'float64'")
        alphas = np.asarray(self.alphas, dtype=np.float64).ravel()
        if alphas.size == 0 or np.any(alphas <= 0):
            raise ValueError("alphas must be positive")
        return alphas

    def _solver(self, n_features: int, min_train: int) -> str:
        """The factorisation: "auto" takes the smaller Gram matrix of any training set."""
        solver = self.solver
        if solver == "auto":
            solver = "primal" if n_features <= min_train else "dual"
        if solver not in ("primal", "dual"):
            raise ValueError(f"solver must be 'auto', 'primal' or 'dual', got {self.solver!r}")
        return solver

    def _cv_scores(self, ops, factors, splits, chunks, alphas_b, n_targets: int) -> np.ndarray:
        """(n_alphas, n_targets) held-out R² averaged over folds; each fold is factorised once."""
        scores = np.zeros((alphas_b.shape[0], n_targets))
        for train, test in splits:
            basis = factors.basis(ops.index(train), ops.index(test))
            for cols in chunks:
                B, _, Yte_c = factors.targets(basis, cols)
                scores[:, cols] += held_out_r2(ops, basis, B, Yte_c, alphas_b, self.dtype, self.n_alphas_batch)
            del basis
        scores /= len(splits)
        return scores

    def _refit(self, ops, factors, chunks, alphas_b, best, x_offset, y_offset):
        """Weights and intercepts on all samples, each target with its own alpha."""
        dtype = self.dtype
        full = factors.basis()
        x_mean = x_offset + ops.to_numpy(full.x_mean)
        n_features, n_targets = x_offset.shape[0], best.shape[0]
        coef = np.empty((n_features, n_targets), dtype=dtype)
        intercept = np.empty(n_targets)
        for cols in chunks:
            B, y_mean, _ = factors.targets(full, cols)
            W = ops.zeros((n_features, B.shape[1]), dtype)
            best_c = best[cols]
            for i in np.unique(best_c):
                t = ops.index(np.flatnonzero(best_c == i))
                d = ops.cast(1.0 / (full.lam + alphas_b[i]), dtype)
                W[:, t] = factors.lift(full, d[:, None] * B[:, t])
            coef[:, cols] = ops.to_numpy(W)
            intercept[cols] = y_offset[cols] + ops.to_numpy(y_mean) - x_mean @ coef[:, cols].astype(np.float64)
        return coef, intercept

    def predict(self, X) -> np.ndarray:
        """Predictions ``X coef_ + intercept_``."""
        X = np.asarray(X, dtype=np.float64)
        return X @ self.coef_.astype(np.float64) + self.intercept_
