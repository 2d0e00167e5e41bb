"""Per-fold factorisations of ridge training sets.

Each fold diagonalises its training Gram matrix once: ``X^T X`` when features
are fewer than training samples (:class:`PrimalFactors`), else the linear
kernel ``X X^T`` (:class:`DualFactors`), as himalaya's RidgeCV / KernelRidgeCV
split. The held-out predictions of every alpha are then ``A diag(1 / (lam + a)) B``
with alpha-independent ``A`` and ``B``, which :mod:`.scoring` scores without
forming them. Eigendecompositions run in float64;
the products that scale with the number of targets run in ``dtype``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends import Backend


@dataclass
class Basis:
    """Target-independent factors of one training set.

    ``lam``: eigenvalues of its centred Gram matrix, ascending; for a
    held-out fold, ``A`` (n_test x rank, float64) maps ``diag(1 / (lam + a)) B``
    to held-out predictions. ``extra`` holds backend arrays reused by every
    chunk of targets (eigenvectors in ``dtype``, the scoring factors of
    :func:`held_out_r2`).
    """

    n: int
    lam: object
    x_mean: object
    train: object = None
    test: object = None
    A: object = None
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

        ``X^T Y`` gets two spare rows, filled per fold with the training mean
        and held-out sum of Y, so that each fold's rank-one centring terms
        ride along in its projection product (see :meth:`targets`). None
        releases the targets (and ``X^T Y``) once a chunk of targets is done.
        """
        if Y is None:
            self.Y = self.y_sum = self.XY = None
            return
        ops = self.ops
        f, v = self.X.shape[1], Y.shape[1]
        self.XY = ops.empty((f + 2) * v, self.dtype).reshape(f + 2, v)
        ops.matmul(self.X.T, Y, out=self.XY[:f])
        self.Y, self.y_sum = Y, ops.sum64(Y, 0)

    def _training_mean(self, train, test):
        """Training-set size, feature mean and held-out rows (float64; None for all samples)."""
        if test is None:
            n, x_sum, Xte64 = self.X.shape[0], self.x_sum, None
        else:
            Xte64 = self.X64[test]
            n, x_sum = len(train), self.x_sum - Xte64.sum(0)
        return n, (x_sum / n if self.fit_intercept else 0 * x_sum), Xte64

    def centred_gram(self, train=None, test=None):
        """The training set's centred ``X^T X``, the matrix :meth:`basis` diagonalises."""
        n, x_mean, Xte64 = self._training_mean(train, test)
        G = self.G if Xte64 is None else self.G - Xte64.T @ Xte64
        return G - n * (x_mean[:, None] * x_mean[None, :])

    def basis(self, train=None, test=None, eig=None) -> Basis:
        """The training set's factors; ``eig``: ``eigh`` of :meth:`centred_gram`, when already computed."""
        ops = self.ops
        n, x_mean, Xte64 = self._training_mean(train, test)
        lam, V = eig if eig is not None else ops.eigh(self.centred_gram(train, test))
        lam[lam < 0] = 0  # round-off on a PSD matrix
        b = Basis(n=n, lam=lam, x_mean=x_mean, train=train, test=test)
        u = x_mean @ V  # the training mean in the eigenbasis
        # B = V^T (X^T Y - X_te^T Y_te) - n u m^T with m the training mean of
        # Y; the held-out product is shared with C (below), which leaves
        # B = [V^T | c_m | -u] [X^T Y; m; y_te_sum] - C.
        zero = 0 * u[:, None]
        if test is None:
            c_m, c_s = -n * u[:, None], zero
            b.extra["V"] = ops.cast(V, self.dtype)  # for the lift to weights
        else:
            XteV = Xte64 @ V
            b.A = XteV - u[None, :]
            s = XteV.sum(0)
            n_te = Xte64.shape[0]
            c_m, c_s = ((n_te - n) * u - s)[:, None], -u[:, None]
            # C = A^T (Y_te - 1 m^T) = [X_te V | n_te u - s | -u]^T [Y_te; m; y_te_sum].
            b.extra["Cproj"] = ops.cast(ops.xp.concatenate([XteV.T, (n_te * u - s)[:, None], -u[:, None]], 1),
                                        self.dtype)
        b.extra["Bproj"] = ops.cast(ops.xp.concatenate([V.T, c_m, c_s], 1), self.dtype)
        return b

    def targets(self, b: Basis, cols: slice):
        """``B`` (rank x n_cols), training mean of Y, centred held-out Y (or None), and ``C = A^T Yte_c``.

        ``B = V^T (X_tr^T Y_tr - n m_x m_y^T)`` with ``X_tr^T Y_tr`` the full
        product minus the held-out one; the held-out product in the
        eigenbasis, ``(X_te V)^T Y_te``, also gives ``C``, so each fold
        multiplies the held-out targets once. The rank-one centring terms
        are extra columns of the projections and rows of the targets, so
        each of ``B`` and ``C`` is one matrix product.
        """
        ops, dtype, XY = self.ops, self.dtype, self.XY
        f = self.X.shape[1]
        if b.test is None:
            y_mean = self.y_sum[cols] / b.n
            if not self.fit_intercept:
                y_mean = 0 * y_mean
            XY[f, cols], XY[f + 1, cols] = ops.cast(y_mean, dtype), 0.0
            return b.extra["Bproj"] @ XY[:, cols], y_mean, None, None
        n_te = b.A.shape[0]
        Yte = ops.empty((n_te + 2) * XY[:, cols].shape[1], dtype).reshape(n_te + 2, -1)
        Yte[:n_te] = self.Y[b.test, cols]
        y_te_sum = ops.sum64(Yte[:n_te], 0)
        y_mean = (self.y_sum[cols] - y_te_sum) / b.n
        if not self.fit_intercept:
            y_mean = 0 * y_mean
        XY[f, cols] = Yte[n_te] = ops.cast(y_mean, dtype)
        XY[f + 1, cols] = Yte[n_te + 1] = ops.cast(y_te_sum, dtype)
        C = b.extra["Cproj"] @ Yte
        B = b.extra["Bproj"] @ XY[:, cols]
        B -= C
        Yte_c = Yte[:n_te]
        Yte_c -= Yte[n_te][None, :]
        return B, y_mean, Yte_c, C

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

    def _centred(self, K_tr):
        """``K_tr`` with its training mean removed on both sides (as it is without an intercept)."""
        if not self.fit_intercept:
            return K_tr
        m_tr = K_tr.mean(1)
        return K_tr - m_tr[:, None] - m_tr[None, :] + K_tr.mean()

    def centred_gram(self, train=None, test=None):
        """The training set's centred kernel, the matrix :meth:`basis` diagonalises."""
        return self._centred(self.K if train is None else self.K[train][:, train])

    def basis(self, train=None, test=None, eig=None) -> Basis:
        """The training set's factors; ``eig``: ``eigh`` of :meth:`centred_gram`, when already computed."""
        ops = self.ops
        K_tr = self.K if train is None else self.K[train][:, train]
        K_te = None if test is None else self.K[test][:, train]
        if self.fit_intercept and K_te is not None:
            m_tr, mu = K_tr.mean(1), K_tr.mean()
            K_te = K_te - K_te.mean(1)[:, None] - m_tr[None, :] + mu
        lam, Q = eig if eig is not None else ops.eigh(self._centred(K_tr))
        lam[lam < 0] = 0
        n = K_tr.shape[0]
        x_mean = None  # only the full-data basis needs it (lift, intercept)
        if train is None:
            x_mean = self.x_sum / n if self.fit_intercept else 0 * self.x_sum
        b = Basis(n=n, lam=lam, x_mean=x_mean, train=train, test=test)
        b.extra["Q"] = ops.cast(Q, self.dtype)
        if test is not None:
            b.A = K_te @ Q
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
