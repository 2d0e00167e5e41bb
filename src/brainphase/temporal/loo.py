"""Efficient leave-one-out choice of the ridge alpha, for many lags and target columns at once.

For the thin SVD ``X_t = U_t S_t V_t^T`` of each lag's centred design and
alpha a, with ``f = s^2 / (s^2 + a)`` and ``Z = U^T Y``, the leave-one-out
residual of ridge with an unpenalised intercept is
``e_i = (y_i - yhat_i) / (1 - 1/n - h_i)`` with leverages
``h_i = sum_j U_ij^2 f_j`` (Rifkin & Lippert 2007; the long-X SVD branch of
scikit-learn's ``_RidgeGCV``). Its sum of squares expands into matrix
products, so no (alphas x n_train x columns) residual array is formed.
"""

from __future__ import annotations

import numpy as np


def loo_best(U: np.ndarray, s: np.ndarray, Y: np.ndarray, Y2: np.ndarray,
             alphas: np.ndarray, max_elements: int,
             Y32: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out alpha index of every (lag, column), and ``Z = U^T Y``.

    U (L, n, k), s (L, k): thin SVD of the centred training designs of L lags;
    Y (n, m): training targets centred on their mean; Y2 = Y**2.
    Y32: Y in float32 to compute the weighted products as ``U^T Y`` (float64)
    plus ``U^T diag(w - 1) Y`` in float32 (w - 1 ~ 2 h is small, so the
    float32 rounding only touches a small correction); None: all float64.
    Returns best (L, m) indices into ``alphas`` and Z (L, k, m).
    """
    L, n, k = U.shape
    m = Y.shape[1]
    n_a = alphas.size
    s2 = s**2
    f = s2[:, None, :] / (s2[:, None, :] + alphas[None, :, None])  # (L, A, k)
    Ut = np.ascontiguousarray(U.transpose(0, 2, 1))  # (L, k, n)
    Z = (Ut.reshape(L * k, n) @ Y).reshape(L, k, m)
    h = (U * U) @ f.transpose(0, 2, 1)  # (L, n, A) leverages
    # 1/n: the unpenalised intercept's share of the hat matrix (X is centred)
    w = np.ascontiguousarray((1.0 / (1.0 - 1.0 / n - h) ** 2).transpose(0, 2, 1))  # (L, A, n)
    if Y32 is None:
        WU = w[:, :, None, :] * Ut[:, None, :, :]  # (L, A, k, n)
        Q = (WU.reshape(L, n_a * k, n) @ U).reshape(L, n_a, k, k)  # U^T diag(w) U
    else:
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
        if Y32 is None:
            P = (WU @ Y[:, cols]).reshape(L, n_a, k, mc)  # U^T diag(w) Y
        else:
            P = (WU @ Y32[:, cols]).reshape(L, n_a, k, mc).astype(np.float64)
            P += Z[:, None, :, cols]
        FZ = f[..., None] * Z[:, None, :, cols]  # (L, A, k, mc) coordinates of the fit
        sse = (w @ Y2[:, cols]).reshape(L, n_a, mc)
        sse -= 2.0 * np.einsum("lajc,lajc->lac", FZ, P)
        del P
        sse += np.einsum("lajc,lajc->lac", FZ, Q @ FZ)
        best[:, cols] = np.argmin(sse, axis=1)  # first minimiser, as RidgeCV
    return best, Z
