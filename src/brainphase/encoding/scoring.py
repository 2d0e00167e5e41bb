"""Held-out R² of every alpha from one fold's factors, without forming predictions.

A fold's factors (:mod:`.factors`) give its held-out predictions for alpha
``a`` as ``A diag(1 / (lam + a)) B``; :func:`held_out_r2` scores all alphas
from them, by partial fractions in the eigenvalues or by a triangular
factor of ``A^T A``, whichever is cheaper for the fold and the device.
"""

from __future__ import annotations

import numpy as np

from .backends import Backend
from .factors import Basis

# Elements of each (alphas x factor rows, targets) product block: ~16 MB in
# float32 keeps the sum-of-squares pass in cache and the GEMM efficient.
_PREDICTION_BLOCK_ELEMENTS = 2**22
# Rows of the triangular factor per product: small enough to skip most of
# its zero half, large enough for an efficient GEMM.
_TRIANGLE_BLOCK_ROWS = 64
# Values of the scaled triangles built at once (a batch of alphas): ~256 MB in float32.
_TRIANGLE_ELEMENTS = 2**26
# Eigenvalues closer than this fraction of (eigenvalue + largest alpha) are
# scored together directly: the partial-fraction terms of a pair amplify
# float64 round-off by at most about 2 / _CLUSTER_GAP (~1e-9 relative), far
# below the float32 products that feed them.
_CLUSTER_GAP = 1e-7


def held_out_r2(ops: Backend, b: Basis, B, Yte_c, alphas, dtype: str,
                n_alphas_batch: int | None = None, C=None, method: str = "auto") -> np.ndarray:
    """Held-out R² for every (alpha, target) of one fold and chunk of targets.

    The predictions ``A diag(d_a) B`` (``d_a = 1 / (lam + a)``) are never
    formed: ``SS_res = |y|^2 - 2 <y, yhat_a> + |yhat_a|^2`` where the cross
    term is ``sum_j d_a[j] (A^T y)_j B_j`` and ``|yhat_a|^2 = b^T D_a G D_a b``
    with ``G = A^T A``. Two exact ways to evaluate that quadratic form:

    * ``"partial_fractions"``: ``d_a[i] d_a[j] = (d_a[i] - d_a[j]) / (lam_j - lam_i)``
      splits it into ``sum_i d_a[i] (g_ii d_a[i] b_i^2 + 2 b_i z_i)`` with
      ``z = H b`` and ``H_ij = G_ij / (lam_j - lam_i)``, independent of the
      alpha: one float64 product of rank^2 per target for all alphas.
      Eigenvalues too close for the division (ties, the null space) are
      grouped and their block scored directly.
    * ``"triangle"``: ``|R diag(d_a) B|`` with ``R^T R = G`` triangular, one
      float32 product of about rank^2 / 2 per target and alpha.

    ``"auto"`` takes the cheaper for the fold's shape (partial fractions
    from about 5 alphas on a square ``A``). ``n_alphas_batch``: alphas
    stacked in one triangular product (None: as many as fit); ``C``:
    ``A^T Yte_c`` when already known.
    """
    n_te, n_targets = Yte_c.shape
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

    if method == "auto":
        if "method" not in b.extra:
            b.extra["method"] = _fold_scoring_method(ops, b, alphas)
        method = b.extra["method"]
    if method == "partial_fractions":
        ss_hat = _ss_hat_partial_fractions(ops, b, B, alphas, dtype, n_alphas_batch)
    elif method == "triangle":
        if "R" not in b.extra:
            b.extra["R"] = ops.triangular_factor(b.A)
        ss_hat = _ss_hat_triangle(ops, b.extra["R"], B, b.extra["D64"], dtype, n_alphas_batch)
    else:
        raise ValueError(f"method must be 'auto', 'partial_fractions' or 'triangle', got {method!r}")
    scores = 1.0 - (yy[None, :] - 2 * cross + ss_hat) / np.where(constant, 1.0, ss_tot)
    scores[:, constant] = 0.0  # R² undefined there: no alpha is preferred
    return scores


def scoring_costs(n_test: int, rank: int, n_alphas: int, float64_cost: float = 2.0) -> dict[str, float]:
    """Multiply-adds per target of each exact evaluation of ``|yhat_a|^2`` (see :func:`held_out_r2`).

    Partial fractions make one float64 product of ``rank^2``, weighted by
    ``float64_cost``, the time of a float64 multiply-add in float32 ones (2 on
    CPUs, see :attr:`Backend.float64_cost`); the triangle makes one float32
    product per alpha over the nonzero part of an ``n_test x rank`` trapezoid.
    """
    rows = min(n_test, rank)
    return {"partial_fractions": float64_cost * rank * rank, "triangle": n_alphas * (rows * rank - rows * rows / 2)}


def scoring_method(n_test: int, rank: int, n_alphas: int, float64_cost: float = 2.0,
                   cluster_sizes: tuple[int, ...] = ()) -> str:
    """The cheaper of :func:`scoring_costs` for one fold; partial fractions score each cluster of tied
    eigenvalues (``cluster_sizes``) by the triangle as well."""
    costs = scoring_costs(n_test, rank, n_alphas, float64_cost)
    costs["partial_fractions"] += sum(scoring_costs(n_test, c, n_alphas)["triangle"] for c in cluster_sizes)
    return min(costs, key=costs.get)


def _fold_scoring_method(ops: Backend, b: Basis, alphas) -> str:
    """:func:`scoring_method` of the fold, with its clusters of tied eigenvalues."""
    n_te, r = b.A.shape
    sizes = tuple(e - s for s, e in _clusters(ops, b, alphas))
    return scoring_method(n_te, r, alphas.shape[0], ops.float64_cost, sizes)


def _clusters(ops: Backend, b: Basis, alphas) -> list[tuple[int, int]]:
    if "clusters" not in b.extra:
        b.extra["clusters"] = eigenvalue_clusters(ops.to_numpy(b.lam), float(ops.to_numpy(alphas).max()))
    return b.extra["clusters"]


def eigenvalue_clusters(lam: np.ndarray, alpha_max: float) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of ascending eigenvalues whose neighbours are too close to divide by.

    Two neighbours join when their gap is at most ``_CLUSTER_GAP`` times
    (the larger + ``alpha_max``); runs of one eigenvalue are left out.
    Between eigenvalues of different runs the gap is at least that bound,
    which caps the round-off amplification of the partial fractions.
    """
    joined = np.diff(lam) <= _CLUSTER_GAP * (lam[1:] + alpha_max)
    clusters, start = [], None
    for i, j in enumerate(joined):
        if j and start is None:
            start = i
        elif not j and start is not None:
            clusters.append((start, i + 1))
            start = None
    if start is not None:
        clusters.append((start, len(lam)))
    return clusters


def _partial_fraction_factors(ops: Backend, b: Basis, alphas):
    """``H`` (rank x rank, float64, zero within clusters), ``diag(G)`` outside clusters, and each cluster's triangle."""
    A = b.A
    r = A.shape[1]
    clusters = _clusters(ops, b, alphas)
    g = ops.sum_squares_cols(A)  # diag(G)
    H = A.T @ A  # G, overwritten by H
    gap = b.lam[None, :] - b.lam[:, None]  # lam_j - lam_i
    tri = []
    for s, e in clusters:
        gap[s:e, s:e] = 1.0
        tri.append((s, e, ops.triangular_factor(A[:, s:e])))
    diag = ops.index(np.arange(r))
    gap[diag, diag] = 1.0
    H /= gap
    del gap
    H[diag, diag] = 0.0
    for s, e, _ in tri:
        H[s:e, s:e] = 0.0
        g[s:e] = 0.0
    return H, g, tri


def _ss_hat_partial_fractions(ops: Backend, b: Basis, B, alphas, dtype: str, n_alphas_batch) -> np.ndarray:
    """``|yhat_a|^2`` for every (alpha, target) by partial fractions (see :func:`held_out_r2`)."""
    if "H" not in b.extra:
        b.extra["H"], b.extra["g"], b.extra["triangles"] = _partial_fraction_factors(ops, b, alphas)
    H, g, clusters = b.extra["H"], b.extra["g"], b.extra["triangles"]
    D64 = b.extra["D64"]
    if "pf_weights" not in b.extra:  # [d^2 g | 2 d] per alpha: both sums of squares in one product
        b.extra["pf_weights"] = ops.xp.concatenate([D64 * D64 * g[None, :], 2.0 * D64], 1)
    weights = b.extra["pf_weights"]
    r, n_targets = B.shape
    ss_hat = np.zeros((D64.shape[0], n_targets))
    n_tb = max(1, min(n_targets, _PREDICTION_BLOCK_ELEMENTS // max(1, 2 * r)))
    # One float64 buffer per block of targets: B (cast) on top, z = H b below,
    # then b^2 and b * z in place, weighted by one (alphas x 2 rank) product.
    buf = ops.empty(2 * r * n_tb, "float64")
    for t0 in range(0, n_targets, n_tb):
        t_sl = slice(t0, min(t0 + n_tb, n_targets))
        W = buf[: 2 * r * (t_sl.stop - t0)].reshape(2 * r, -1)
        W[:r] = B[:, t_sl]
        ops.matmul(H, W[:r], out=W[r:])
        W[r:] *= W[:r]
        W[:r] *= W[:r]
        ss_hat[:, t_sl] = ops.to_numpy(weights @ W)
    del buf
    for s, e, R in clusters:
        ss_hat += _ss_hat_triangle(ops, R, B[s:e], D64[:, s:e], dtype, n_alphas_batch)
    return ss_hat


def _ss_hat_triangle(ops: Backend, R, B, D64, dtype: str, n_alphas_batch) -> np.ndarray:
    """``|R diag(d_a) B|^2`` for every alpha (rows of ``D64``) and target, from row blocks of ``R``.

    Skipping the zero blocks of ``R`` roughly halves the product, and no
    (n_alphas x n_test x n_targets) array is materialised.
    """
    n_alphas, n_targets = D64.shape[0], B.shape[1]
    ss_hat = np.zeros((n_alphas, n_targets))
    # The scaled triangle of a batch of alphas is built per call and dropped:
    # n_alphas x rank^2 / 2 values would be the largest array of a wide
    # design, and building them costs a fraction 1 / n_targets of using them.
    r = R.shape[0]
    n_ab = n_alphas_batch or max(1, min(n_alphas, _TRIANGLE_ELEMENTS // max(1, r * R.shape[1] // 2)))
    for a0 in range(0, n_alphas, n_ab):
        blocks = _triangle_blocks(ops, R, D64[a0: a0 + n_ab], dtype)
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
    return ss_hat


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
