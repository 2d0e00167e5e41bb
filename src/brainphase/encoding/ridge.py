"""Voxelwise ridge regression, alpha chosen per voxel by run-grouped CV (METHODS §3.4).

Penalty convention as in himalaya / scikit-learn: minimise
``||Y - X W - b||^2 + alpha ||W||^2`` (himalaya's alpha = Huth's alpha^2).

Written by hand rather than on ``himalaya.ridge.RidgeCV``: himalaya forms,
per fold, the (n_alphas, n_test, n_train) matrices ``Xtest (XtX + a I)^-1
Xtrain^T`` and multiplies them with ``Ytrain``, which costs
``n_alphas * n_test * n_train * n_voxels`` per fold (~25 s for 3000 x 512 ->
5000 voxels on 2 cores). Here each fold diagonalises the training Gram
matrix once (``X^T X`` when features are fewer than training samples, else
the linear kernel ``X X^T``) and predicts every alpha from the shared factors
``A diag(1 / (lambda + a)) B``: ``n_alphas * n_test * rank * n_voxels`` per
fold, with the alpha-independent products (``X^T Y`` and the factors) computed
once. All eigendecompositions run in float64; only the products that scale
with the number of voxels run in ``dtype``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

# Elements of the (n_alphas_batch * n_test, n_targets_batch) prediction block
# computed at once when n_targets_batch is None. Blocks of ~16 MB keep the
# residual pass in cache and are still large enough for an efficient GEMM.
_PREDICTION_BLOCK_ELEMENTS = 2**22

BACKENDS = ("auto", "numpy", "torch", "torch_cuda")


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


class _Backend:
    """The few array operations the solver needs, on numpy or torch (CPU/CUDA).

    Everything else (``@``, ``.T``, slicing, broadcasting arithmetic) is
    spelled the same in both libraries.
    """

    def __init__(self, name: str):
        if name not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
        if name == "auto":
            name = "numpy"
            try:
                import torch

                if torch.cuda.is_available():
                    name = "torch_cuda"
            except ImportError:
                pass
        self.name = name
        if name == "numpy":
            self.xp = np
        else:
            import torch

            self.xp = torch
            self.device = torch.device("cuda" if name == "torch_cuda" else "cpu")
            if name == "torch_cuda" and not torch.cuda.is_available():
                raise RuntimeError("backend='torch_cuda' but CUDA is not available")

    def dtype(self, name: str):
        return getattr(self.xp, name)

    def asarray(self, x, dtype: str):
        if self.xp is np:
            return np.asarray(x, dtype=dtype)
        torch = self.xp
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        return torch.as_tensor(x).to(device=self.device, dtype=self.dtype(dtype))

    def index(self, idx: np.ndarray):
        return idx if self.xp is np else self.xp.as_tensor(idx, device=self.device)

    def cast(self, x, dtype: str):
        if self.xp is np:
            return x.astype(dtype, copy=False)
        return x.to(self.dtype(dtype))

    def to_numpy(self, x) -> np.ndarray:
        return x if self.xp is np else x.detach().cpu().numpy()

    def empty(self, n: int, dtype: str):
        if self.xp is np:
            return np.empty(n, dtype=dtype)
        return self.xp.empty(n, dtype=self.dtype(dtype), device=self.device)

    def zeros(self, shape, dtype: str):
        if self.xp is np:
            return np.zeros(shape, dtype=dtype)
        return self.xp.zeros(shape, dtype=self.dtype(dtype), device=self.device)

    def sum64(self, x, axis: int):
        if self.xp is np:
            return x.sum(axis=axis, dtype=np.float64)
        return x.sum(dim=axis, dtype=self.xp.float64)

    def eigh(self, a):
        return self.xp.linalg.eigh(a)

    def matmul(self, a, b, out):
        return self.xp.matmul(a, b, out=out)

    def square_(self, x):
        if self.xp is np:
            return np.square(x, out=x)
        return x.square_()


class _PrimalFactors:
    """Folds factorised through the feature Gram matrix ``X^T X`` (n_train >= n_features).

    Per-fold training quantities are the full-data ones minus the test part,
    so ``X^T Y`` is computed once instead of once per fold.
    """

    def __init__(self, ops: _Backend, X, Y, dtype: str, fit_intercept: bool):
        self.ops, self.X, self.Y, self.dtype = ops, X, Y, dtype
        self.fit_intercept = fit_intercept
        self.X64 = ops.cast(X, "float64")
        self.G = self.X64.T @ self.X64
        self.XY = X.T @ Y
        self.x_sum = self.X64.sum(0)
        self.y_sum = ops.sum64(Y, 0)

    def _factors(self, n, x_mean, y_mean, G, XY):
        ops = self.ops
        G = G - n * (x_mean[:, None] * x_mean[None, :])
        lam, V = ops.eigh(G)
        R = XY - ops.cast(n * (x_mean[:, None] * y_mean[None, :]), self.dtype)
        return lam, V, ops.cast(V, self.dtype).T @ R

    def fold(self, train, test):
        ops = self.ops
        Xte, Yte, Xte64 = self.X[test], self.Y[test], self.X64[test]
        n = len(train)
        x_mean = (self.x_sum - Xte64.sum(0)) / n
        y_mean = (self.y_sum - ops.sum64(Yte, 0)) / n
        if not self.fit_intercept:
            x_mean, y_mean = 0 * x_mean, 0 * y_mean
        lam, V, B = self._factors(n, x_mean, y_mean, self.G - Xte64.T @ Xte64, self.XY - Xte.T @ Yte)
        A = (Xte64 - x_mean) @ V
        return A, lam, B, Yte - ops.cast(y_mean, self.dtype)

    def refit(self, alphas, best):
        ops = self.ops
        n = self.X.shape[0]
        x_mean, y_mean = self.x_sum / n, self.y_sum / n
        if not self.fit_intercept:
            x_mean, y_mean = 0 * x_mean, 0 * y_mean
        lam, V, B = self._factors(n, x_mean, y_mean, self.G, self.XY)
        lam[lam < 0] = 0
        Vd = ops.cast(V, self.dtype)
        coef = ops.zeros(B.shape, self.dtype)
        for i in np.unique(best):
            cols = ops.index(np.flatnonzero(best == i))
            d = ops.cast(1.0 / (lam + alphas[i]), self.dtype)
            coef[:, cols] = Vd @ (d[:, None] * B[:, cols])
        return coef, x_mean, y_mean


class _DualFactors:
    """Folds factorised through the linear kernel ``X X^T`` (n_features > n_train).

    The kernel is computed once; per-fold centring is done on its blocks:
    ``(Xa - 1 m^T)(Xb - 1 m^T)^T`` needs only ``K`` row means.
    """

    def __init__(self, ops: _Backend, X, Y, dtype: str, fit_intercept: bool):
        self.ops, self.X, self.Y, self.dtype = ops, X, Y, dtype
        self.fit_intercept = fit_intercept
        X64 = ops.cast(X, "float64")
        self.K = X64 @ X64.T

    def _centre(self, K_tr, K_te):
        if not self.fit_intercept:
            return K_tr, K_te
        m_tr, m_te, mu = K_tr.mean(1), K_te.mean(1), K_tr.mean()
        K_tr = K_tr - m_tr[:, None] - m_tr[None, :] + mu
        K_te = K_te - m_te[:, None] - m_tr[None, :] + mu
        return K_tr, K_te

    def _y_mean(self, Ytr):
        m = self.ops.sum64(Ytr, 0) / Ytr.shape[0]
        return m if self.fit_intercept else 0 * m

    def fold(self, train, test):
        ops = self.ops
        K_tr, K_te = self._centre(self.K[train][:, train], self.K[test][:, train])
        lam, Q = ops.eigh(K_tr)
        Ytr = self.Y[train]
        y_mean = self._y_mean(Ytr)
        y_mean = ops.cast(y_mean, self.dtype)
        B = ops.cast(Q, self.dtype).T @ (Ytr - y_mean)
        return K_te @ Q, lam, B, self.Y[test] - y_mean

    def refit(self, alphas, best):
        ops = self.ops
        K, _ = self._centre(self.K, self.K[:1])
        lam, Q = ops.eigh(K)
        lam[lam < 0] = 0
        y_mean = self._y_mean(self.Y)
        x_mean = ops.sum64(self.X, 0) / self.X.shape[0]
        if not self.fit_intercept:
            x_mean = 0 * x_mean
        Qd = ops.cast(Q, self.dtype)
        B = Qd.T @ (self.Y - ops.cast(y_mean, self.dtype))
        X = self.X - ops.cast(x_mean, self.dtype)
        coef = ops.zeros((X.shape[1], B.shape[1]), self.dtype)
        for i in np.unique(best):
            cols = ops.index(np.flatnonzero(best == i))
            d = ops.cast(1.0 / (lam + alphas[i]), self.dtype)
            coef[:, cols] = X.T @ (Qd @ (d[:, None] * B[:, cols]))
        return coef, x_mean, y_mean


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
        "auto" is torch on CUDA when available, else numpy.
    dtype : {"float32", "float64"}
        Precision of the per-voxel products; eigendecompositions are float64.
    n_targets_batch, n_alphas_batch : int or None
        Targets / alphas per prediction block (memory bound); None picks
        blocks of about 2^22 elements.

    Attributes
    ----------
    best_alphas_ : array (n_targets,)
    cv_scores_ : array (n_alphas, n_targets), mean CV R² per alpha
    coef_ : array (n_features, n_targets)
    intercept_ : array (n_targets,)
    n_splits_ : int, number of CV folds used
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
        if X.ndim != 2 or X.shape[0] != Y.shape[0] or len(groups) != X.shape[0]:
            raise ValueError(f"inconsistent shapes X{X.shape}, Y{Y.shape}, groups({len(groups)})")
        if not (np.isfinite(X).all() and np.isfinite(Y).all()):
            raise ValueError("X and Y must be finite")
        if self.dtype not in ("float32", "float64"):
            raise ValueError("dtype must be 'float32' or 'float64'")
        alphas = np.asarray(self.alphas, dtype=np.float64).ravel()
        if alphas.size == 0 or np.any(alphas <= 0):
            raise ValueError("alphas must be positive")
        splits = grouped_splits(groups, self.n_splits)
        ops = _Backend(self.backend)
        dtype = self.dtype

        # Centring once on the full data keeps float32 sums well conditioned;
        # the per-fold means left over are small corrections.
        if self.fit_intercept:
            x_offset, y_offset = X.mean(0, dtype=np.float64), Y.mean(0, dtype=np.float64)
            Xb = ops.asarray(X - x_offset, dtype)
            Yb = ops.asarray(Y - y_offset, dtype)
        else:
            x_offset, y_offset = np.zeros(X.shape[1]), np.zeros(Y.shape[1])
            Xb, Yb = ops.asarray(X, dtype), ops.asarray(Y, dtype)

        solver = self.solver
        min_train = min(len(tr) for tr, _ in splits)
        if solver == "auto":
            solver = "primal" if X.shape[1] <= min_train else "dual"
        if solver not in ("primal", "dual"):
            raise ValueError(f"solver must be 'auto', 'primal' or 'dual', got {self.solver!r}")
        factors = (_PrimalFactors if solver == "primal" else _DualFactors)(
            ops, Xb, Yb, dtype, self.fit_intercept
        )

        scores = np.zeros((alphas.size, Y.shape[1]))
        for train, test in splits:
            train, test = ops.index(train), ops.index(test)
            A, lam, B, Yte_c = factors.fold(train, test)
            Yte = Yb[test]
            ss_tot = ops.to_numpy(ops.sum64(ops.square_(Yte - ops.cast(ops.sum64(Yte, 0) / Yte.shape[0], dtype)), 0))
            scores += self._fold_scores(ops, A, lam, B, Yte_c, ss_tot, alphas)
        scores /= len(splits)

        best = np.argmax(scores, axis=0)
        coef, x_mean, y_mean = (ops.to_numpy(a) for a in factors.refit(ops.asarray(alphas, "float64"), best))
        x_mean = x_offset + x_mean
        y_mean = y_offset + y_mean
        self.cv_scores_ = scores
        self.best_alphas_ = alphas[best]
        self.coef_ = coef
        self.intercept_ = (y_mean - x_mean @ coef.astype(np.float64)).astype(coef.dtype)
        self.n_splits_ = len(splits)
        self.n_features_in_ = X.shape[1]
        self.solver_ = solver
        if ravel:
            self.coef_, self.intercept_ = self.coef_[:, 0], self.intercept_[0]
            self.best_alphas_, self.cv_scores_ = self.best_alphas_[0], self.cv_scores_[:, 0]
        return self

    def _fold_scores(self, ops, A, lam, B, Yte_c, ss_tot, alphas) -> np.ndarray:
        """Held-out R² for every (alpha, target) from one fold's factors."""
        dtype = self.dtype
        n_te, n_targets = A.shape[0], B.shape[1]
        lam[lam < 0] = 0  # float round-off on a PSD Gram matrix
        n_ab = self.n_alphas_batch or alphas.size
        n_ab = min(n_ab, alphas.size)
        n_tb = self.n_targets_batch or max(1, _PREDICTION_BLOCK_ELEMENTS // (n_ab * n_te))
        n_tb = min(n_tb, n_targets)
        buf = ops.empty(n_ab * n_te * n_tb, dtype)
        alphas_b = ops.asarray(alphas, "float64")
        constant = ss_tot <= 0
        ss_tot = np.where(constant, 1.0, ss_tot)
        out = np.empty((alphas.size, n_targets))
        for a0 in range(0, alphas.size, n_ab):
            a_sl = slice(a0, a0 + n_ab)
            d = 1.0 / (lam[None, :] + alphas_b[a_sl, None])
            # All alphas of the batch share one GEMM against B.
            AD = ops.cast((A[None, :, :] * d[:, None, :]).reshape(-1, A.shape[1]), dtype)
            rows = AD.shape[0]
            for t0 in range(0, n_targets, n_tb):
                t_sl = slice(t0, t0 + n_tb)
                n_t = min(n_tb, n_targets - t0)
                P = ops.matmul(AD, B[:, t_sl], out=buf[: rows * n_t].reshape(rows, n_t))
                P = P.reshape(-1, n_te, n_t)
                P -= Yte_c[None, :, t_sl]
                ss_res = ops.to_numpy(ops.sum64(ops.square_(P), 1))
                out[a_sl, t_sl] = 1.0 - ss_res / ss_tot[t_sl]
        out[:, constant] = 0.0
        return out

    def predict(self, X) -> np.ndarray:
        """Predictions ``X coef_ + intercept_``."""
        X = np.asarray(X, dtype=np.float64)
        return X @ self.coef_.astype(np.float64) + self.intercept_
