"""Efficient leave-one-out choice of the ridge alpha, for many lags and target columns at once.

For the thin SVD ``X_t = U_t S_t V_t^T`` of each lag's centred design and
alpha a, with ``f = s^2 / (s^2 + a)`` and ``Z = U^T Y``, the leave-one-out
residual of ridge with an unpenalised intercept is
``e_i = r_i / (1 - 1/n - h_i)`` with ``r = Y - U diag(f) Z`` and leverages
``h_i = sum_j U_ij^2 f_j`` (Rifkin & Lippert 2007; the long-X SVD branch of
scikit-learn's ``_RidgeGCV``). With ``w = (1 - 1/n - h)^-2`` the criterion
``SSE = sum_i w_i r_i^2`` expands into matrix products, so no
(alphas x n_train x columns) residual array is formed.

float64 (``_best_exact``), exact: write ``w = 1 + delta`` and ``yhat = U FZ``
with ``FZ = f * Z``; then ``SSE = sum r^2 + sum delta y^2 - 2 sum delta y yhat
+ sum delta yhat^2``. The first term is closed form (U has orthonormal
columns), the second one product (alphas x n_train) @ (n_train x columns).
The last two need ``U^T diag(delta_a) Y`` for every alpha, the costly
product (n_alphas x channels x n_train x columns multiply-adds). The
alphas' weights are smooth in alpha and nearly low-rank (singular values
falling ~10x per rank), so there ``delta ~ C B`` with a few rows B, and the
product becomes ``sum_r C_ar U^T diag(B_r) Y``: rank x instead of n_alphas x,
run in float32 over blocks of training words. The truncation ``E = delta -
C B`` is formed explicitly and the float32 rounding has a worst-case bound,
which together bound the error of every (alpha, column) SSE rigorously
(:func:`_screen`). An alpha whose SSE interval lies above the best interval
cannot be the minimiser; where several alphas remain, their SSE is computed
directly from the residuals with the full weights, in float64
(:func:`_certified_argmin`). The choice is the exact criterion's (first
minimiser in ``alphas`` order, as ``RidgeCV``), not an approximation's.

float32 (``dtype="float32"``): all alphas' weighted products ``U^T diag(w -
1) Y`` in float32 (``_best_float32``); an alpha may flip where two alphas
nearly tie. The workflow's tables are computed this way.
"""

from __future__ import annotations

import numpy as np

# Largest |E| the rank of delta is raised until. Lower: more ranks in the
# costly product; higher: more columns left to the direct check. On the
# benchmark's data (gaps between the best two alphas' SSE ~1e-4 relative at
# the median) 3e-4 needs 2.7 of 13 ranks on average and leaves 3% of the
# columns with (two) alphas to check; the run time is flat from 1e-4 to 1e-3.
_SCREEN_TOL = 3e-4
# Slack for round-off in the expanded SSE, relative to |y|^2 (its terms are
# O(|y|^2); float64 sums of n_train terms err by ~1e-14 of that).
_ROUND_OFF = 1e-12
# Residual rows of the direct check formed at once (a few MB).
_PAIRS = 128
# Unit round-off of float32, and the training words per float32 partial sum
# of the screening product (its rounding bound grows with the block).
_U32 = 2.0**-24
_K32 = 512


def tall_svd(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of a stack of tall matrices (L, n, k), as ``np.linalg.svd(X, full_matrices=False)``.

    Cholesky QR twice (``X = Q R``, orthogonal to round-off for condition
    numbers up to ~1e7; Fukaya et al. 2014), then the SVD of the small R: a
    few (k x n) products instead of LAPACK's per-matrix reduction. Falls back
    to ``np.linalg.svd`` when the first pass is far from orthonormal or a
    Gram matrix is not numerically positive definite (condition number
    beyond ~1e7, or rank-deficient).
    """
    try:
        R1 = np.linalg.cholesky(X.transpose(0, 2, 1) @ X).transpose(0, 2, 1)  # G = R1^T R1
        Q = X @ np.linalg.inv(R1)
        G = Q.transpose(0, 2, 1) @ Q
        # the second pass is exact to round-off when the first Q is this close to orthonormal
        if np.abs(G - np.eye(X.shape[2])).max() > 0.1:
            raise np.linalg.LinAlgError("ill-conditioned")
        R2 = np.linalg.cholesky(G).transpose(0, 2, 1)
    except np.linalg.LinAlgError:
        return np.linalg.svd(X, full_matrices=False)
    a, s, Vt = np.linalg.svd(R2 @ R1)
    return Q @ (np.linalg.inv(R2) @ a), s, Vt


def loo_best(U: np.ndarray, s: np.ndarray, Y: np.ndarray, Y2: np.ndarray,
             alphas: np.ndarray, max_elements: int,
             Y32: np.ndarray | None = None, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out alpha index of every (lag, column), and ``Z = U^T Y``.

    U (L, n, k), s (L, k): thin SVD of the centred training designs of L lags;
    Y (n, m): training targets centred on their mean; Y2 = Y**2.
    Y32: Y in float32. dtype "float64": the exact criterion (module
    docstring), whose screening product runs in float32 when Y32 is given
    (its rounding enters the bound). dtype "float32": all alphas' weighted
    products as ``U^T Y`` (float64) plus ``U^T diag(w - 1) Y`` in float32
    (w - 1 ~ 2 h is small, so the rounding only touches a small
    correction), Y32 required.
    max_elements bounds the elements of the largest temporary.
    Returns best (L, m) indices into ``alphas`` and Z (L, k, m).
    """
    L, n, k = U.shape
    m = Y.shape[1]
    s2 = s**2
    f = s2[:, None, :] / (s2[:, None, :] + alphas[None, :, None])  # (L, A, k)
    Ut = np.ascontiguousarray(U.transpose(0, 2, 1))  # (L, k, n)
    Z = (Ut.reshape(L * k, n) @ Y).reshape(L, k, m)
    h = (U * U) @ f.transpose(0, 2, 1)  # (L, n, A) leverages
    if dtype == "float32":
        return _best_float32(U, Ut, f, h, Z, Y, Y2, Y32, max_elements), Z
    return _best_exact(U, Ut, f, h, Z, Y, Y2, Y32, max_elements), Z


def _best_float32(U, Ut, f, h, Z, Y, Y2, Y32, max_elements):
    """All alphas' products at once, the ``w - 1`` correction in float32."""
    L, n, k = U.shape
    m = Y.shape[1]
    n_a = f.shape[1]
    # 1/n: the unpenalised intercept's share of the hat matrix (X is centred)
    w = np.ascontiguousarray((1.0 / (1.0 - 1.0 / n - h) ** 2).transpose(0, 2, 1))  # (L, A, n)
    WU = (w - 1.0).astype(np.float32)[:, :, None, :] * Ut.astype(np.float32)[:, None, :, :]
    Q = (WU.reshape(L, n_a * k, n) @ U.astype(np.float32)).reshape(L, n_a, k, k)
    Q = Q.astype(np.float64) + (Ut @ U)[:, None]
    WU = WU.reshape(L * n_a * k, n)
    w = w.reshape(L * n_a, n)

    best = np.empty((L, m), dtype=np.intp)
    step = max(1, (max_elements // 2) // (L * n_a * k))
    for c0 in range(0, m, step):
        cols = slice(c0, min(c0 + step, m))
        mc = cols.stop - cols.start
        P = (WU @ Y32[:, cols]).reshape(L, n_a, k, mc).astype(np.float64)
        P += Z[:, None, :, cols]  # U^T diag(w) Y
        FZ = f[..., None] * Z[:, None, :, cols]  # (L, A, k, mc) coordinates of the fit
        sse = (w @ Y2[:, cols]).reshape(L, n_a, mc)
        sse -= 2.0 * np.einsum("lajc,lajc->lac", FZ, P)
        del P
        sse += np.einsum("lajc,lajc->lac", FZ, Q @ FZ)
        best[:, cols] = np.argmin(sse, axis=1)  # first minimiser, as RidgeCV
    return best


def low_rank_weights(delta: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``delta ~ C @ B`` with the fewest rows B such that every ``max_i |E_ai| <= tol``.

    delta (A, n). The rows span the top eigenvectors of ``delta delta^T``
    (any basis would do: the bounds use the residual E formed here, not the
    singular values). Returns C (A, R), B (R, n) and the residual E (A, n).
    """
    _, V = np.linalg.eigh(delta @ delta.T)
    V = V[:, ::-1]
    B = V.T @ delta
    E = delta.copy()
    for R in range(1, delta.shape[0] + 1):
        E -= np.outer(V[:, R - 1], B[R - 1])
        if np.abs(E).max() <= tol:
            break
    return V[:, :R], B[:R], E


def _lag_basis(U, Ut, delta, dtype):
    """One lag's truncated weights: C, the rows ``B_r U_j`` (R k, n) in ``dtype``, ``U^T diag(C B) U``
    per alpha, ``max|E_a|``, ``|E_a U_j|``, ``sum_r |C_ar| |B_r U_j|`` (A, k) and E^2 (A, n)."""
    n, k = U.shape
    C, B, E = low_rank_weights(delta, _SCREEN_TOL)
    BU = (B[:, None, :] * Ut[None]).reshape(-1, n)
    Qd = (C @ (BU @ U).reshape(len(B), k * k)).reshape(-1, k, k)
    K = np.abs(C) @ np.sqrt(np.einsum("ri,ri->r", BU, BU)).reshape(len(B), k)
    E2 = np.square(E, out=E)
    return C, BU.astype(dtype, copy=False), Qd, np.sqrt(E2.max(axis=1)), np.sqrt(E2 @ (U * U)), K, E2


def _best_exact(U, Ut, f, h, Z, Y, Y2, Y32, max_elements):
    """The exact LOO alpha of every (lag, column): U (L, n, k), f (L, A, k), h (L, n, A), Z (L, k, m)."""
    L, n, k = U.shape
    n_a, m = f.shape[1], Y.shape[1]
    q = h.transpose(0, 2, 1) + 1.0 / n  # (L, A, n); 1/n: the intercept's share of the hat matrix
    delta = q * (2.0 - q) / (1.0 - q) ** 2  # w - 1, without cancellation
    # float32 products over blocks of _K32 training words: their worst-case
    # rounding, gamma |B_r U_j| |y| whatever the BLAS's summation order
    # (inputs, block sums, sum of blocks), must stay well inside the
    # truncation's; else float64. Of sums of non-negative terms (delta y^2,
    # E^2 y^2) the error is at most gamma times the sum.
    nb = min(n, _K32)
    g = nb + -(-n // nb) + 5
    gamma = g * _U32 / (1.0 - g * _U32)
    if Y32 is None or gamma * np.abs(delta).max() > _SCREEN_TOL / 16:
        Y32, gamma = None, 0.0
    dtype = np.float64 if Y32 is None else np.float32
    bases = [_lag_basis(U[t], Ut[t], delta[t], dtype) for t in range(L)]
    W = np.concatenate([delta.reshape(L * n_a, n)] + [b[-1] for b in bases]).astype(dtype)  # [delta; E^2]
    ysq = Y2.sum(0)
    best = np.empty((L, m), dtype=np.intp)
    step = max(1, max_elements // (2 * L * n_a + 7 * n_a * k + 2 * n))
    for c0 in range(0, m, step):
        cols = slice(c0, min(c0 + step, m))
        if Y32 is None:
            S = W @ Y2[:, cols]
        else:
            S = _blocked_product(W, np.square(Y32[:, cols]), nb)
        S = S.reshape(2, L, n_a, -1)  # sum_i delta_i y_i^2, sum_i E_i^2 y_i^2
        screens = []
        for t in range(L):
            C, BU, Qd, err, EU, K, _ = bases[t]
            P = (BU @ Y[:, cols]) if Y32 is None else _blocked_product(BU, Y32[:, cols], nb)
            P = P.reshape(C.shape[1], k, -1)
            bounds = (err, EU, S[1, t] / (1.0 - gamma), gamma * K, gamma / (1.0 - gamma))
            screens.append(_screen(f[t], Z[t][:, cols], ysq[cols], S[0, t], P, C, Qd, bounds))
        # one gather of the columns any lag leaves open (a column gather is slow; rows are not)
        alive = [_alive(*sc) for sc in screens]
        union = np.flatnonzero(np.any([a.sum(axis=0) > 1 for a in alive], axis=0))
        YT = np.ascontiguousarray(Y[:, cols][:, union].T)
        for t in range(L):
            best[t, cols] = _certified_argmin(alive[t], Ut[t], f[t], Z[t][:, cols], YT, union, 1.0 + delta[t])
    return best


def _blocked_product(A32: np.ndarray, B32: np.ndarray, nb: int) -> np.ndarray:
    """``A32 @ B32`` as float64, summed over blocks of nb rows of B32: its rounding is that of a sum of
    nb products plus one of ``ceil(rows / nb)`` partial sums, not of all rows."""
    out = A32[:, :nb] @ B32[:nb]
    for i in range(nb, B32.shape[0], nb):
        out += A32[:, i:i + nb] @ B32[i:i + nb]
    return out.astype(np.float64)


def _screen(f, Zc, ysq, sse0, P, C, Qd, bounds):
    """SSE of every (alpha, column) with delta ~ C B in the terms that hold the fit, and its error bound.

    ``SSE = sum r^2 + sum delta y^2 - 2 sum delta y yhat + sum delta yhat^2``
    with ``yhat = U FZ``, ``FZ = f Z``; the first two are exact (the second
    up to its rounding, ``rel_sse0 sse0``), so with E = delta - C B the error
    is ``sum E yhat^2 - 2 sum E y yhat``. Bounds: ``|sum E yhat^2| <= max|E|
    |yhat|^2``; ``|sum E y yhat|`` by the least of ``max|E| |y| |yhat|``,
    ``|y| sum_j |FZ_j| |E U_j|`` and ``|E y| |yhat|`` (Cauchy-Schwarz), plus
    ``|y| sum_j |FZ_j| rounding_j`` for the rounding of P.
    P (R, k, mc): ``U^T diag(B_r) y`` as computed; Qd (A, k, k):
    ``U^T diag(C_a B) U``; bounds: max|E| (A,), |E U_j| (A, k), an upper
    bound of |E y|^2 (A, mc), rounding (A, k), rel_sse0. f >= 0.
    """
    err, EU, EY2, rounding, rel_sse0 = bounds
    n_a, k = f.shape
    Z2 = Zc * Zc
    fit2 = (f * f) @ Z2  # |yhat|^2
    rsq = np.maximum(ysq - 2.0 * (f @ Z2) + fit2, 0.0)  # sum r^2 (U^T U = I)
    cross = np.einsum("ar,rac->ac", C, np.matmul(f, Zc * P))  # sum_j FZ_j (U^T diag(C B) y)_j
    M = (f[:, :, None] * Qd * f[:, None, :]).reshape(n_a * k, k)
    quad = np.einsum("ajc,jc->ac", (M @ Zc).reshape(n_a, k, -1), Zc)  # FZ^T Qd FZ
    sse = rsq + sse0 - 2.0 * cross + quad
    absZ, ynorm, yhat = np.abs(Zc), np.sqrt(ysq), np.sqrt(fit2)
    bound = np.minimum(np.minimum(err[:, None] * yhat, (f * EU) @ absZ) * ynorm, np.sqrt(EY2) * yhat)
    bound += ynorm * ((f * rounding) @ absZ)
    slack = err[:, None] * fit2 + 2.0 * bound + rel_sse0 * np.abs(sse0) + _ROUND_OFF * ysq
    return sse, slack


def _alive(sse: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """(A, mc) alphas that can be the minimiser given ``|SSE - sse| <= slack``: lower bound under the
    smallest upper bound."""
    return sse - slack <= (sse + slack).min(axis=0)


def _certified_argmin(alive: np.ndarray, Ut: np.ndarray, f: np.ndarray, Zc: np.ndarray, YT: np.ndarray,
                      rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """First minimiser over the alphas ``alive`` (A, mc) of the exact SSE.

    Where several alphas are alive, their SSE is computed directly:
    ``w_a^T (y - U diag(f_a) Z)^2`` with the full weights w (A, n); YT holds
    ``y`` of the columns ``rows`` (sorted), which include every such column.
    """
    best = np.argmax(alive, axis=0)
    open_ = np.flatnonzero(alive.sum(axis=0) > 1)
    if open_.size == 0:
        return best
    a_p, c_p = np.nonzero(alive[:, open_])  # the (alpha, column) pairs to check
    exact = np.full((alive.shape[0], open_.size), np.inf)
    for p0 in range(0, a_p.size, _PAIRS):
        a, c = a_p[p0:p0 + _PAIRS], open_[c_p[p0:p0 + _PAIRS]]
        r = (f[a] * Zc[:, c].T) @ Ut  # fitted values, (pairs, n)
        r -= YT[np.searchsorted(rows, c)]
        exact[a, c_p[p0:p0 + _PAIRS]] = (np.square(r, out=r) @ w.T)[np.arange(a.size), a]
    best[open_] = np.argmin(exact, axis=0)  # first minimiser, as RidgeCV
    return best
