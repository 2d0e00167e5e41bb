"""Per-fold factorisations of ridge training sets, and held-out scores from them.

Each fold diagonalises its training Gram matrix once: ``X^T X`` when features
are fewer than training samples (:class:`PrimalFactors`), else the linear
kernel ``X X^T`` (:class:`DualFactors`), as himalaya's RidgeCV / KernelRidgeCV
split. The held-out predictions of every alpha are then ``A diag(1 / (lam + a)) B``
with alpha-independent ``A`` and ``B``, and :func:`held_out_r2` scores them
without forming them. Eigendecompositions run in float64; the products that
scale with the number of targets run in ``dtype``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backends import Backend

# Elements of each (alphas x factor rows, targets) product block: ~16 MB in
# float32 keeps the sum-of-squares pass in cache and the GEMM efficient.
_PREDICTION_BLOCK_ELEMENTS = 2**22
# Rows of the triangular factor per product: small enough to skip most of
# its zero half, large enough for an efficient GEMM.
_TRIANGLE_BLOCK_ROWS = 64
# Values of the scaled triangles built at once (a batch of alphas): ~256 MB in float32.
_TRIANGLE_ELEMENTS = 2**26


@dataclass
class Basis:
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


class PrimalFactors:
    """Training sets factorised through the feature Gram matrix ``X^T X``.

    Training-set sums and products are the full-data ones minus the held-out
    part, so ``X^T Y`` is computed once rather than once per fold.
    """

    def __init__(self, ops: Backend, X, dtype: str, fit_intercept: bool):
        self.ops, self.X, self.dtype = ops, X, dtype
        self.fit_intercept = fit_intercept
        self.X64 = ops.cast(X, "float64")
        self.G = self.X64.T @ self.X64
        self.x_sum = self.X64.sum(0)
        self.Y = self.XY = self.y_sum = None

    def set_targets(self, Y) -> None:
        """The (centred) targets every later :meth:`targets` call reads; ``X^T Y`` once for all folds.

        None releases them (and ``X^T Y``) once a chunk of targets is done.
        """
        if Y is None:
            self.Y = self.y_sum = self.XY = None
            return
        self.Y, self.y_sum, self.XY = Y, self.ops.sum64(Y, 0), self.X.T @ Y

    def basis(self, train=None, test=None) -> Basis:
        ops = self.ops
        if test is None:
            n, x_sum, G = self.X.shape[0], self.x_sum, self.G
        else:
            Xte64 = self.X64[test]
            n, x_sum, G = len(train), self.x_sum - Xte64.sum(0), self.G - Xte64.T @ Xte64
        x_mean = x_sum / n if self.fit_intercept else 0 * x_sum
        lam, V = ops.eigh(G - n * (x_mean[:, None] * x_mean[None, :]))
        lam[lam < 0] = 0  # round-off on a PSD matrix
        b = Basis(n=n, lam=lam, x_mean=x_mean, train=train, test=test)
        b.extra["V"] = ops.cast(V, self.dtype)
        b.extra["u"] = x_mean @ V  # the training mean in the eigenbasis
        if test is not None:
            XteV = Xte64 @ V
            b.A = XteV - b.extra["u"][None, :]
            b.R = ops.triangular_factor(b.A)
            b.extra["XteV"] = ops.cast(XteV, self.dtype)
            b.extra["XteV_sum"] = XteV.sum(0)
        return b

    def targets(self, b: Basis, cols: slice):
        """``B`` (rank x n_cols), training mean of Y, centred held-out Y (or None), and ``C = A^T Yte_c``.

        ``B = V^T (X_tr^T Y_tr - n m_x m_y^T)`` with ``X_tr^T Y_tr`` the full
        product minus the held-out one; the held-out product in the
        eigenbasis, ``(X_te V)^T Y_te``, also gives ``C`` after rank-one
        centring terms, so each fold multiplies the held-out targets once.
        """
        ops, dtype = self.ops, self.dtype
        VtXY = b.extra["V"].T @ self.XY[:, cols]
        u = b.extra["u"]
        if b.test is None:
            y_mean = self.y_sum[cols] / b.n
            if not self.fit_intercept:
                y_mean = 0 * y_mean
            return VtXY - ops.cast(b.n * (u[:, None] * y_mean[None, :]), dtype), y_mean, None, None
        Yte = self.Y[b.test, cols]
        y_te_sum = ops.sum64(Yte, 0)
        y_mean = (self.y_sum[cols] - y_te_sum) / b.n
        if not self.fit_intercept:
            y_mean = 0 * y_mean
        P = b.extra["XteV"].T @ Yte
        B = VtXY - P - ops.cast(b.n * (u[:, None] * y_mean[None, :]), dtype)
        n_te = Yte.shape[0]
        centring = (n_te * u[:, None] - b.extra["XteV_sum"][:, None]) * y_mean[None, :] - u[:, None] * y_te_sum[None, :]
        C = P + ops.cast(centring, dtype)
        return B, y_mean, Yte - ops.cast(y_mean, dtype), C

    def lift(self, b: Basis, Z):
        """Weights from coordinates in the eigenbasis."""
        return b.extra["V"] @ Z


class DualFactors:
    """Training sets factorised through the linear kernel ``X X^T`` (n_features > n_train).

    The kernel is computed once; per-fold centring acts on its blocks, as
    ``(Xa - 1 m^T)(Xb - 1 m^T)^T`` needs only row means of ``K``.
    """

    def __init__(self, ops: Backend, X, dtype: str, fit_intercept: bool):
        self.ops, self.X, self.dtype = ops, X, dtype
        self.fit_intercept = fit_intercept
        X64 = ops.cast(X, "float64")
        self.K = X64 @ X64.T
        self.x_sum = X64.sum(0)
        self.Y = None

    def set_targets(self, Y) -> None:
        """The (centred) targets every later :meth:`targets` call reads."""
        self.Y = Y

    def basis(self, train=None, test=None) -> Basis:
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
        b = Basis(n=n, lam=lam, x_mean=x_mean, train=train, test=test)
        b.extra["Q"] = ops.cast(Q, self.dtype)
        if test is not None:
            b.A = K_te @ Q
            b.R = ops.triangular_factor(b.A)
        return b

    def targets(self, b: Basis, cols: slice):
        ops = self.ops
        Ytr = self.Y[:, cols] if b.train is None else self.Y[b.train, cols]
        y_mean = ops.sum64(Ytr, 0) / b.n
        if not self.fit_intercept:
            y_mean = 0 * y_mean
        y_mean_d = ops.cast(y_mean, self.dtype)
        B = b.extra["Q"].T @ (Ytr - y_mean_d)
        Yte_c = None if b.test is None else self.Y[b.test, cols] - y_mean_d
        return B, y_mean, Yte_c, None

    def lift(self, b: Basis, Z):
        if "Xc" not in b.extra:  # full-data basis only: training mean removed
            b.extra["Xc"] = self.X - self.ops.cast(b.x_mean, self.dtype)
        return b.extra["Xc"].T @ (b.extra["Q"] @ Z)


FACTORS = {"primal": PrimalFactors, "dual": DualFactors}


def held_out_r2(ops: Backend, b: Basis, B, Yte_c, alphas, dtype: str,
                n_alphas_batch: int | None = None, C=None) -> np.ndarray:
    """Held-out R² for every (alpha, target) of one fold and chunk of targets.

    The predictions ``A diag(d_a) B`` (``d_a = 1 / (lam + a)``) are never
    formed: ``SS_res = |y|^2 - 2 <y, yhat_a> + |yhat_a|^2`` where the cross
    term is ``sum_j d_a[j] (A^T y)_j B_j`` and ``|yhat_a| = |R diag(d_a) B|``
    with ``R^T R = A^T A`` triangular. Skipping the zero blocks of ``R``
    roughly halves the dominant product, and no (n_alphas x n_test x
    n_targets) array is materialised. ``n_alphas_batch``: alphas stacked in
    one product (None: all); ``C``: ``A^T Yte_c`` when already known.
    """
    n_te, n_targets = Yte_c.shape
    n_alphas = alphas.shape[0]
    yy = ops.to_numpy(ops.sum_squares_cols(Yte_c))
    ss_tot = yy - n_te * (ops.to_numpy(ops.sum64(Yte_c, 0)) / n_te) ** 2
    # A target constant on this fold leaves only round-off in SS_tot.
    constant = ss_tot <= 10 * np.finfo(dtype).eps * yy

    if "D" not in b.extra:  # per fold, shared by all chunks of targets
        b.extra["D64"] = 1.0 / (b.lam[None, :] + alphas[:, None])  # (n_alphas, rank)
        b.extra["D"] = ops.cast(b.extra["D64"], dtype)
    if C is None:  # ``A^T Yte_c``, unless the factors had it already
        if "A" not in b.extra:
            b.extra["A"] = ops.cast(b.A, dtype)
        C = b.extra["A"].T @ Yte_c
    cross = ops.to_numpy(b.extra["D"] @ (C * B)).astype(np.float64)
    del C

    ss_hat = np.zeros((n_alphas, n_targets))
    # The scaled triangle of a batch of alphas is built per call and dropped:
    # n_alphas x rank^2 / 2 values would be the largest array of a wide
    # design, and building them costs a fraction 1 / n_targets of using them.
    r = b.R.shape[0]
    n_ab = n_alphas_batch or max(1, min(n_alphas, _TRIANGLE_ELEMENTS // max(1, r * b.R.shape[1] // 2)))
    for a0 in range(0, n_alphas, n_ab):
        blocks = _triangle_blocks(ops, b.R, b.extra["D64"][a0: a0 + n_ab], dtype)
        max_rows = max(RD.shape[0] for _, RD, _ in blocks)
        n_tb = max(1, min(n_targets, _PREDICTION_BLOCK_ELEMENTS // max_rows))
        buf = ops.empty(max_rows * n_tb, dtype)
        for t0 in range(0, n_targets, n_tb):
            n_t = min(n_tb, n_targets - t0)
            t_sl = slice(t0, t0 + n_t)
            for i0, RD, n_a in blocks:
                rows = RD.shape[0]
                P = ops.matmul(RD, B[i0:, t_sl], out=buf[: rows * n_t].reshape(rows, n_t))
                ss_hat[a0: a0 + n_a, t_sl] += ops.to_numpy(ops.sum_squares(P.reshape(n_a, -1, n_t)))
        del blocks, buf
    scores = 1.0 - (yy[None, :] - 2 * cross + ss_hat) / np.where(constant, 1.0, ss_tot)
    scores[:, constant] = 0.0  # R² undefined there: no alpha is preferred
    return scores


def _triangle_blocks(ops: Backend, R, D, dtype: str):
    """Row blocks of ``R diag(d_a)`` for the alphas of ``D`` (n_alphas x rank), without their zero part.

    Row block [i0, i1) of an upper-trapezoidal R is zero left of column
    i0; alphas are stacked along rows so one GEMM serves all of them.
    Returns ``(i0, block, n_alphas)`` triples.
    """
    r, k = R.shape
    bs = min(r, _TRIANGLE_BLOCK_ROWS)
    blocks = []
    for i0 in range(0, r, bs):
        RD = R[None, i0: i0 + bs, i0:] * D[:, None, i0:]
        blocks.append((i0, ops.cast(RD.reshape(-1, k - i0), dtype), RD.shape[0]))
    return blocks
