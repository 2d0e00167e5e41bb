"""Voxelwise ridge regression, alpha chosen per voxel by run-grouped cross-validation.

Penalty convention as in himalaya / scikit-learn: minimise
``||Y - X W - b||^2 + alpha ||W||^2`` (himalaya's alpha = Huth's alpha^2).

Written by hand rather than on ``himalaya.ridge.RidgeCV``: per fold,
himalaya forms the (n_alphas, n_test, n_train) matrices
``Xtest (Xtrain^T Xtrain + a I)^-1 Xtrain^T`` and multiplies them with
``Ytrain``, ``n_alphas * n_test * n_train * n_voxels`` multiply-adds per fold.
Here each fold diagonalises its training Gram matrix once and scores every
alpha from the factors (:mod:`.factors`): by partial fractions in the
eigenvalues, one ``rank^2 * n_voxels`` product per fold whatever the number
of alphas; ``benchmarks/encoding.py`` compares the two. ``X^T Y`` over all
samples is computed once; each fold
subtracts its held-out part. The array library is a seam (:mod:`.backends`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

from .backends import CONCURRENT_EIGH_MAX_RANK, Backend
from .factors import FACTORS, Basis
from .scoring import held_out_r2

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
        Alphas stacked in one triangular product when scoring (None: all).
    score_method : {"auto", "partial_fractions", "triangle"}
        How held-out predictions are scored for every alpha without forming
        them (:func:`~brainphase.encoding.scoring.held_out_r2`); both exact.
        "auto" takes the cheaper for each fold's shape.

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
        score_method: str = "auto",
    ):
        self.alphas = alphas
        self.n_splits = n_splits
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.backend = backend
        self.dtype = dtype
        self.n_targets_batch = n_targets_batch
        self.n_alphas_batch = n_alphas_batch
        self.score_method = score_method


    def fit(self, X, Y, groups):
        """Choose each target's alpha by grouped CV, then refit on all samples.

        Parameters
        ----------
        X : array (n_samples, n_features)
        Y : array (n_samples,) or (n_samples, n_targets)
        groups : array (n_samples,), run/story label of each sample
        """
        Y = np.asarray(Y)
        ravel = Y.ndim == 1
        if ravel:
            Y = Y[:, None]
        folds = self.factorise(X, groups)
        self.cv_scores_, self.best_alphas_, self.coef_, self.intercept_ = folds.fit_targets(Y)
        self.n_splits_ = len(folds.splits)
        self.n_features_in_ = folds.n_features
        self.solver_ = folds.solver
        if ravel:
            self.coef_, self.intercept_ = self.coef_[:, 0], self.intercept_[0]
            self.best_alphas_, self.cv_scores_ = self.best_alphas_[0], self.cv_scores_[:, 0]
        return self

    def factorise(self, X, groups, keep_bases: bool = False) -> RidgeFolds:
        """The design's folds, factorised once for any number of target chunks (:class:`RidgeFolds`).

        ``keep_bases`` keeps every fold's factors after first use, so that
        later chunks of targets skip the eigendecompositions (memory: one
        basis per fold, see :mod:`brainphase.encoding.memory`).
        """
        return RidgeFolds(self, X, groups, keep_bases)

    def _check(self, X: np.ndarray, groups) -> np.ndarray:
        """Raise on inconsistent inputs or settings; the alphas as a float64 vector."""
        if X.ndim != 2 or len(groups) != X.shape[0]:
            raise ValueError(f"inconsistent shapes X{X.shape}, groups({len(groups)})")
        if self.dtype not in ("float32", "float64"):
            raise ValueError("dtype must be 'float32' or 'float64'")
        if self.score_method not in ("auto", "partial_fractions", "triangle"):
            raise ValueError(f"score_method must be 'auto', 'partial_fractions' or 'triangle', got {self.score_method!r}")
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

    def predict(self, X) -> np.ndarray:
        """Predictions ``X coef_ + intercept_``."""
        X = np.asarray(X, dtype=np.float64)
        return X @ self.coef_.astype(np.float64) + self.intercept_


class RidgeFolds:
    """One design's grouped-CV folds, factorised once and applied to chunks of targets.

    Built by :meth:`GroupedRidgeCV.factorise`. Targets are independent of
    each other, so fitting the voxels of a subject chunk by chunk through
    one ``RidgeFolds`` gives the same alphas and weights as one fit of all
    of them, with memory bounded by the chunk.
    """

    def __init__(self, model: GroupedRidgeCV, X, groups, keep_bases: bool = False):
        self.dtype = dtype = model.dtype
        X = np.asarray(X, dtype=np.float64 if dtype == "float64" else None)
        self.alphas = model._check(X, groups)
        self.splits = grouped_splits(groups, model.n_splits)
        self.ops = ops = Backend(model.backend)
        self.fit_intercept = model.fit_intercept
        self.n_alphas_batch = model.n_alphas_batch
        self.score_method = model.score_method
        self.n_targets_batch = model.n_targets_batch
        self.n_samples, self.n_features = X.shape
        # Centring once on the full data keeps float32 sums well conditioned;
        # the per-fold means left over are small corrections.
        x_offset = X.mean(0, dtype=np.float64)
        if not np.isfinite(x_offset).all():
            raise ValueError("X and Y must be finite")
        self.x_offset = x_offset if self.fit_intercept else np.zeros_like(x_offset)
        self.solver = model._solver(X.shape[1], min(len(tr) for tr, _ in self.splits))
        self.factors = FACTORS[self.solver](ops, ops.asarray(np.subtract(X, self.x_offset, dtype=dtype), dtype),
                                            dtype, self.fit_intercept)
        self.alphas_b = ops.asarray(self.alphas, "float64")
        self._bases = {} if keep_bases else None
        self._eig = {}  # eigendecompositions made together, until their fold's basis is built

    def _fold_sets(self, i: int | None):
        if i is None:
            return None, None
        train, test = self.splits[i]
        return self.ops.index(train), self.ops.index(test)

    def diagonalise_together(self) -> None:
        """Eigendecompose every fold not yet factorised (and all samples) at once, for :meth:`basis`,
        where :meth:`Backend.eigh_many` is faster for this rank (at most ``CONCURRENT_EIGH_MAX_RANK``:
        the matrices are held together)."""
        if min(self.n_features, self.n_samples) > CONCURRENT_EIGH_MAX_RANK:
            return
        todo = [i for i in [*range(len(self.splits)), None]
                if (self._bases is None or i not in self._bases) and i not in self._eig]
        if self.ops.eigh_workers(len(todo)) > 1:
            grams = [self.factors.centred_gram(*self._fold_sets(i)) for i in todo]
            self._eig.update(zip(todo, self.ops.eigh_many(grams)))

    def basis(self, i: int | None) -> Basis:
        """Fold ``i``'s factors (None: all samples), from the cache when kept."""
        if self._bases is not None and i in self._bases:
            return self._bases[i]
        b = self.factors.basis(*self._fold_sets(i), eig=self._eig.pop(i, None))
        if self._bases is not None:
            self._bases[i] = b
        return b

    def fit_targets(self, Y: np.ndarray):
        """``(cv_scores, best_alphas, coef, intercept)`` of the targets ``Y`` (n_samples x n_targets)."""
        ops, dtype = self.ops, self.dtype
        if Y.ndim != 2 or Y.shape[0] != self.n_samples:
            raise ValueError(f"Y has shape {Y.shape}; expected ({self.n_samples}, n_targets)")
        y_offset = Y.mean(0, dtype=np.float64)
        if not np.isfinite(y_offset).all():
            raise ValueError("X and Y must be finite")
        if not self.fit_intercept:
            y_offset = np.zeros_like(y_offset)
        self.factors.set_targets(ops.asarray(np.subtract(Y, y_offset.astype(dtype), dtype=dtype), dtype))
        n_targets = Y.shape[1]
        step = self.n_targets_batch or max(1, _CHUNK_ELEMENTS // (self.n_samples + 5 * self.n_features))
        chunks = [slice(t0, min(t0 + step, n_targets)) for t0 in range(0, n_targets, step)]
        scores = self._cv_scores(chunks, n_targets)
        best = np.argmax(scores, axis=0)
        coef, intercept = self._refit(chunks, best, y_offset)
        self.factors.set_targets(None)
        return scores, self.alphas[best], coef, intercept.astype(dtype)

    def _cv_scores(self, chunks, n_targets: int) -> np.ndarray:
        """(n_alphas, n_targets) held-out R² averaged over folds."""
        scores = np.zeros((self.alphas.shape[0], n_targets))
        self.diagonalise_together()
        for i in range(len(self.splits)):
            basis = self.basis(i)
            for cols in chunks:
                B, _, Yte_c, C = self.factors.targets(basis, cols)
                scores[:, cols] += held_out_r2(self.ops, basis, B, Yte_c, self.alphas_b, self.dtype,
                                               self.n_alphas_batch, C, self.score_method)
            del basis
        scores /= len(self.splits)
        return scores

    def _refit(self, chunks, best, y_offset):
        """Weights and intercepts on all samples, each target with its own alpha.

        The per-target shrinkage ``1 / (lam + alpha_t)`` is gathered into one
        (rank x targets) matrix, so the lift back to feature space is a
        single matrix product per chunk.
        """
        ops, dtype, factors = self.ops, self.dtype, self.factors
        full = self.basis(None)
        x_mean = self.x_offset + ops.to_numpy(full.x_mean)
        coef = np.empty((self.n_features, best.shape[0]), dtype=dtype)
        intercept = np.empty(best.shape[0])
        shrink = ops.cast(1.0 / (full.lam[:, None] + self.alphas_b[None, :]), dtype)  # (rank, n_alphas)
        for cols in chunks:
            B, y_mean, _, _ = factors.targets(full, cols)
            coef[:, cols] = ops.to_numpy(factors.lift(full, shrink[:, ops.index(best[cols])] * B))
            intercept[cols] = y_offset[cols] + ops.to_numpy(y_mean) - x_mean @ coef[:, cols].astype(np.float64)
        return coef, intercept
