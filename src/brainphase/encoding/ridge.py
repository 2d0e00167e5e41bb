"""Voxelwise ridge regression, alpha chosen per voxel by run-grouped CV (METHODS §3.4).

Penalty convention as in himalaya / scikit-learn: minimise
``||Y - X W - b||^2 + alpha ||W||^2`` (himalaya's alpha = Huth's alpha^2).

Written by hand rather than on ``himalaya.ridge.RidgeCV``: per fold,
himalaya forms the (n_alphas, n_test, n_train) matrices
``Xtest (Xtrain^T Xtrain + a I)^-1 Xtrain^T`` and multiplies them with
``Ytrain``, ``n_alphas * n_test * n_train * n_voxels`` multiply-adds per fold
(benchmarks/encoding.py: ~8.5 s against ~1.8 s here for 3000 x 512 -> 5000
voxels, 9 alphas, 5 folds on 2 cores). Here each fold
diagonalises its training Gram matrix once (``X^T X`` when features are fewer
than training samples, else the linear kernel ``X X^T``, as himalaya's
RidgeCV / KernelRidgeCV split); the held-out predictions of every alpha are
``A diag(1 / (lambda + a)) B`` with alpha-independent ``A`` and ``B``, and
their residual norms are obtained without forming them (``_fold_scores``):
about ``n_alphas * rank^2 / 2 * n_voxels`` per fold. ``X^T Y`` over all
samples is computed once; each fold subtracts its held-out part.
Eigendecompositions run in float64;
the products that scale with the number of voxels run in ``dtype``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
from threadpoolctl import threadpool_limits

# Targets processed together when n_targets_batch is None: about this many
# elements of per-chunk temporaries (copies of Y and several rank x targets
# arrays), ~256 MB in float32.
_CHUNK_ELEMENTS = 2**26
# Elements of each (alphas x factor rows, targets) product block: ~16 MB in
# float32 keeps the sum-of-squares pass in cache and the GEMM efficient.
_PREDICTION_BLOCK_ELEMENTS = 2**22
# Rows of the triangular factor per product: small enough to skip most of
# its zero half, large enough for an efficient GEMM.
_TRIANGLE_BLOCK_ROWS = 64

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
        if self.xp is np:
            # LAPACK's tridiagonalisation is a long chain of level-2 BLAS
            # calls: threads gain ~20% on an idle machine but make it ~10x
            # slower when another process holds one of the cores.
            with threadpool_limits(limits=1, user_api="blas"):
                return np.linalg.eigh(a)
        return self.xp.linalg.eigh(a)

    def matmul(self, a, b, out):
        return self.xp.matmul(a, b, out=out)

    def sum_squares(self, P):
        """``(P ** 2).sum(1)`` for P (a, t, v); may overwrite P."""
        if self.xp is np:
            return np.einsum("atv,atv->av", P, P)
        return P.square_().sum(1)

    def triangular_factor(self, A):
        """Upper-trapezoidal R with ``R^T R = A^T A``.

        Cholesky of ``A^T A`` when A has at least as many rows as columns
        (twice as fast as QR here), QR when A is wide or numerically rank
        deficient (Cholesky fails).
        """
        xp = self.xp
        if A.shape[0] >= A.shape[1]:
            try:
                if xp is np:
                    return np.linalg.cholesky(A.T @ A).T
                L, info = xp.linalg.cholesky_ex(A.T @ A)
                if int(info) == 0:
                    return L.T
            except np.linalg.LinAlgError:
                pass
        if xp is np:
            return np.linalg.qr(A, mode="r")
        return xp.linalg.qr(A, mode="r")[1]

    def sum_squares_cols(self, x):
        """Column sums of squares, accumulated in float64."""
        if self.xp is np:
            return np.einsum("tv,tv->v", x, x, dtype=np.float64)
        return (x * x).sum(0, dtype=self.xp.float64)


@dataclass
class _Basis:
    """Target-independent factors of one training set.

    ``lam``: eigenvalues of its centred Gram matrix; for a held-out fold,
    ``A`` (n_test x rank, float64) maps ``diag(1 / (lam + a)) B`` to
    held-out predictions and ``R`` is its triangular factor. ``extra`` holds
    backend arrays reused by every chunk of targets (eigenvectors in
    ``dtype``, scoring blocks).
    """

    n: int
    lam: object
    x_mean: object
    train: object = None
    test: object = None
    A: object = None
    R: object = None
    extra: dict = field(default_factory=dict)


class _PrimalFactors:
    """Training sets factorised through the feature Gram matrix ``X^T X``.

    Training-set sums and products are the full-data ones minus the held-out
    part, so ``X^T Y`` is computed once rather than once per fold.
    """

    def __init__(self, ops: _Backend, X, Y, dtype: str, fit_intercept: bool):
        self.ops, self.X, self.Y, self.dtype = ops, X, Y, dtype
        self.fit_intercept = fit_intercept
        self.X64 = ops.cast(X, "float64")
        self.G = self.X64.T @ self.X64
        self.x_sum = self.X64.sum(0)
        self.y_sum = ops.sum64(Y, 0)
        self.XY = X.T @ Y

    def basis(self, train=None, test=None) -> _Basis:
        ops = self.ops
        if test is None:
            n, x_sum, G = self.X.shape[0], self.x_sum, self.G
        else:
            Xte64 = self.X64[test]
            n, x_sum, G = len(train), self.x_sum - Xte64.sum(0), self.G - Xte64.T @ Xte64
        x_mean = x_sum / n if self.fit_intercept else 0 * x_sum
        lam, V = ops.eigh(G - n * (x_mean[:, None] * x_mean[None, :]))
        lam[lam < 0] = 0  # round-off on a PSD matrix
        b = _Basis(n=n, lam=lam, x_mean=x_mean, train=train, test=test)
        b.extra["V"] = ops.cast(V, self.dtype)
        if test is not None:
            b.A = (Xte64 - x_mean) @ V
            b.R = ops.triangular_factor(b.A)
            b.extra["Xte"] = self.X[test]
        return b

    def targets(self, b: _Basis, cols: slice):
        """``B`` (rank x n_cols), training mean of Y, centred held-out Y (or None)."""
        ops = self.ops
        XY = self.XY[:, cols]
        Yte_c = None
        if b.test is None:
            y_mean = self.y_sum[cols] / b.n
        else:
            Yte = self.Y[b.test, cols]
            y_mean = (self.y_sum[cols] - ops.sum64(Yte, 0)) / b.n
            XY = XY - b.extra["Xte"].T @ Yte
        if not self.fit_intercept:
            y_mean = 0 * y_mean
        R = XY - ops.cast(b.n * (b.x_mean[:, None] * y_mean[None, :]), self.dtype)
        if b.test is not None:
            Yte_c = Yte - ops.cast(y_mean, self.dtype)
        return b.extra["V"].T @ R, y_mean, Yte_c

    def lift(self, b: _Basis, Z):
        """Weights from coordinates in the eigenbasis."""
        return b.extra["V"] @ Z


class _DualFactors:
    """Training sets factorised through the linear kernel ``X X^T`` (n_features > n_train).

    The kernel is computed once; per-fold centring acts on its blocks, as
    ``(Xa - 1 m^T)(Xb - 1 m^T)^T`` needs only row means of ``K``.
    """

    def __init__(self, ops: _Backend, X, Y, dtype: str, fit_intercept: bool):
        self.ops, self.X, self.Y, self.dtype = ops, X, Y, dtype
        self.fit_intercept = fit_intercept
        X64 = ops.cast(X, "float64")
        self.K = X64 @ X64.T
        self.x_sum = X64.sum(0)

    def basis(self, train=None, test=None) -> _Basis:
        ops = self.ops
        K_tr = self.K if train is None else self.K[train][:, train]
        K_te = None if test is None else self.K[test][:, train]
        if self.fit_intercept:
            m_tr, mu = K_tr.mean(1), K_tr.mean()
            if K_te is not None:
                K_te = K_te - K_te.mean(1)[:, None] - m_tr[None, :] + mu
            K_tr = K_tr - m_tr[:, None] - m_tr[None, :] + mu
        lam, Q = ops.eigh(K_tr)
        lam[lam < 0] = 0
        n = K_tr.shape[0]
        x_mean = None  # only the full-data basis needs it (lift, intercept)
        if train is None:
            x_mean = self.x_sum / n if self.fit_intercept else 0 * self.x_sum
        b = _Basis(n=n, lam=lam, x_mean=x_mean, train=train, test=test)
        b.extra["Q"] = ops.cast(Q, self.dtype)
        if test is not None:
            b.A = K_te @ Q
            b.R = ops.triangular_factor(b.A)
        return b

    def targets(self, b: _Basis, cols: slice):
        ops = self.ops
        Ytr = self.Y[:, cols] if b.train is None else self.Y[b.train, cols]
        y_mean = ops.sum64(Ytr, 0) / b.n
        if not self.fit_intercept:
            y_mean = 0 * y_mean
        y_mean_d = ops.cast(y_mean, self.dtype)
        B = b.extra["Q"].T @ (Ytr - y_mean_d)
        Yte_c = None if b.test is None else self.Y[b.test, cols] - y_mean_d
        return B, y_mean, Yte_c

    def lift(self, b: _Basis, Z):
        if "Xc" not in b.extra:  # full-data basis only: training mean removed
            b.extra["Xc"] = self.X - self.ops.cast(b.x_mean, self.dtype)
        return b.extra["Xc"].T @ (b.extra["Q"] @ Z)


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
        if X.ndim != 2 or X.shape[0] != Y.shape[0] or len(groups) != X.shape[0]:
            raise ValueError(f"inconsistent shapes X{X.shape}, Y{Y.shape}, groups({len(groups)})")
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
        x_offset, y_offset = X.mean(0, dtype=np.float64), Y.mean(0, dtype=np.float64)
        if not (np.isfinite(x_offset).all() and np.isfinite(y_offset).all()):
            raise ValueError("X and Y must be finite")
        if not self.fit_intercept:
            x_offset, y_offset = np.zeros_like(x_offset), np.zeros_like(y_offset)
        Xb = ops.asarray(np.subtract(X, x_offset, dtype=dtype), dtype)
        Yb = ops.asarray(np.subtract(Y, y_offset, dtype=dtype), dtype)

        solver = self.solver
        min_train = min(len(tr) for tr, _ in splits)
        if solver == "auto":
            solver = "primal" if X.shape[1] <= min_train else "dual"
        if solver not in ("primal", "dual"):
            raise ValueError(f"solver must be 'auto', 'primal' or 'dual', got {self.solver!r}")
        factors = (_PrimalFactors if solver == "primal" else _DualFactors)(
            ops, Xb, Yb, dtype, self.fit_intercept
        )

        n_targets = Y.shape[1]
        step = self.n_targets_batch or max(1, _CHUNK_ELEMENTS // (X.shape[0] + 5 * X.shape[1]))
        chunks = [slice(t0, min(t0 + step, n_targets)) for t0 in range(0, n_targets, step)]
        alphas_b = ops.asarray(alphas, "float64")

        scores = np.zeros((alphas.size, n_targets))
        for train, test in splits:
            basis = factors.basis(ops.index(train), ops.index(test))
            for cols in chunks:
                B, _, Yte_c = factors.targets(basis, cols)
                scores[:, cols] += self._fold_scores(ops, basis, B, Yte_c, alphas_b)
            del basis
        scores /= len(splits)
        best = np.argmax(scores, axis=0)

        full = factors.basis()
        x_mean = x_offset + ops.to_numpy(full.x_mean)
        coef = np.empty((X.shape[1], n_targets), dtype=dtype)
        intercept = np.empty(n_targets)
        for cols in chunks:
            B, y_mean, _ = factors.targets(full, cols)
            W = ops.zeros((X.shape[1], B.shape[1]), dtype)
            best_c = best[cols]
            for i in np.unique(best_c):
                t = ops.index(np.flatnonzero(best_c == i))
                d = ops.cast(1.0 / (full.lam + alphas_b[i]), dtype)
                W[:, t] = factors.lift(full, d[:, None] * B[:, t])
            coef[:, cols] = ops.to_numpy(W)
            intercept[cols] = y_offset[cols] + ops.to_numpy(y_mean) - x_mean @ coef[:, cols].astype(np.float64)

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

    def _fold_scores(self, ops, b: _Basis, B, Yte_c, alphas) -> np.ndarray:
        """Held-out R² for every (alpha, target) of one fold and chunk of targets.

        The predictions ``A diag(d_a) B`` (``d_a = 1 / (lam + a)``) are never
        formed: ``SS_res = |y|^2 - 2 <y, yhat_a> + |yhat_a|^2`` where the cross
        term is ``sum_j d_a[j] (A^T y)_j B_j`` and ``|yhat_a| = |R diag(d_a) B|``
        with ``R^T R = A^T A`` triangular. Skipping the zero blocks of ``R``
        roughly halves the dominant product, and no (n_alphas x n_test x
        n_targets) array is materialised.
        """
        dtype = self.dtype
        n_te, n_targets = Yte_c.shape
        n_alphas = alphas.shape[0]
        yy = ops.to_numpy(ops.sum_squares_cols(Yte_c))
        ss_tot = yy - n_te * (ops.to_numpy(ops.sum64(Yte_c, 0)) / n_te) ** 2
        # A target constant on this fold leaves only round-off in SS_tot.
        constant = ss_tot <= 10 * np.finfo(dtype).eps * yy

        if "D" not in b.extra:  # per fold, shared by all chunks of targets
            D = 1.0 / (b.lam[None, :] + alphas[:, None])  # (n_alphas, rank)
            b.extra["D"] = ops.cast(D, dtype)
            b.extra["A"] = ops.cast(b.A, dtype)
            b.extra["blocks"] = self._triangle_blocks(ops, b.R, D)
        C = b.extra["A"].T @ Yte_c
        cross = ops.to_numpy(b.extra["D"] @ (C * B)).astype(np.float64)
        del C

        blocks = b.extra["blocks"]
        max_rows = max(RD.shape[0] for _, _, RD, _ in blocks)
        n_tb = max(1, min(n_targets, _PREDICTION_BLOCK_ELEMENTS // max_rows))
        buf = ops.empty(max_rows * n_tb, dtype)
        ss_hat = np.zeros((n_alphas, n_targets))
        for t0 in range(0, n_targets, n_tb):
            n_t = min(n_tb, n_targets - t0)
            t_sl = slice(t0, t0 + n_t)
            for a0, i0, RD, n_a in blocks:
                rows = RD.shape[0]
                P = ops.matmul(RD, B[i0:, t_sl], out=buf[: rows * n_t].reshape(rows, n_t))
                ss_hat[a0 : a0 + n_a, t_sl] += ops.to_numpy(ops.sum_squares(P.reshape(n_a, -1, n_t)))
        scores = 1.0 - (yy[None, :] - 2 * cross + ss_hat) / np.where(constant, 1.0, ss_tot)
        scores[:, constant] = 0.0  # R² undefined there: no alpha is preferred
        return scores

    def _triangle_blocks(self, ops, R, D):
        """Row blocks of ``R diag(d_a)`` for all alphas, without their zero part.

        Row block [i0, i1) of an upper-trapezoidal R is zero left of column
        i0; alphas are stacked along rows so one GEMM serves a batch of them.
        """
        r, k = R.shape
        n_alphas = D.shape[0]
        n_ab = min(self.n_alphas_batch or n_alphas, n_alphas)
        bs = min(r, _TRIANGLE_BLOCK_ROWS)
        blocks = []
        for a0 in range(0, n_alphas, n_ab):
            for i0 in range(0, r, bs):
                RD = R[None, i0 : i0 + bs, i0:] * D[a0 : a0 + n_ab, None, i0:]
                blocks.append((a0, i0, ops.cast(RD.reshape(-1, k - i0), self.dtype), RD.shape[0]))
        return blocks

    def predict(self, X) -> np.ndarray:
        """Predictions ``X coef_ + intercept_``."""
        X = np.asarray(X, dtype=np.float64)
        return X @ self.coef_.astype(np.float64) + self.intercept_
