"""Segmented (hinge) regression shared by every series: design, weighted fits, breakpoint search.

Model
    Segmented (hinge) regression against x = log10(tokens): every series
    ``s`` is ``y_s = a_s + b_s x + sum_j c_sj (x - tau_j)_+``, i.e. straight
    lines joined at the breakpoints ``tau_j``, which all series share. A
    trajectory over training is continuous in the tokens seen, so the lines
    are joined; independent (discontinuous) lines per segment stay available
    (``continuous=False``), at twice the parameters per break.

Fit
    Weighted least squares with weights 1 / SE^2 per checkpoint and series,
    the SEs being the standard deviations of the bootstrap replicates. The
    breakpoints are searched exhaustively: every combination of gaps between
    checkpoints whose segments hold at least ``min_size`` checkpoints, each
    break at its gap's midpoint, with one WLS solve per combination and
    series (all combinations and replicates at once; the Gram matrices do not
    depend on the data). For the continuous model, the best combination's
    positions are then profiled within their gaps (both end checkpoints, the
    quarters and the midpoint, all combinations jointly): a break that sits
    on a checkpoint would otherwise be approximated by two midpoint hinges,
    and at low noise BIC pays for that extra break. A
    breakpoint ``b`` is the index of the first checkpoint of the new segment;
    its reported position in x is the refined one (continuous) or the gap's
    midpoint (free segments, whose fit does not depend on it).

Number of breakpoints
    BIC with known noise: ``chi2 + k log N`` where ``chi2 = sum
    (residual / SE)^2 / phi`` over all checkpoints and series, N = checkpoints
    x series and k counts the parameters (per series an intercept, a slope and
    one slope change per break -- two per segment without continuity -- plus
    one position per break). The bootstrap SEs measure only the sampling
    noise of items, TR blocks or test items; checkpoints of one training run
    also scatter around a smooth trend for reasons no resampling sees, and
    chi2 then grows with the number of checkpoints, buying breakpoints. A
    dispersion ``phi_s = max(1, chi2_s / (n - k_s))`` per series, estimated
    on the richest model (the most breakpoints tried), absorbs that extra
    variance: with correct SEs it stays near 1 and changes nothing; with
    SEs that are too small it keeps the false-break rate of a straight line
    low (see tests/test_phases.py). It is per series because one series'
    SEs can be too small alone (a single pooled phi then lets that series
    buy breaks); ``dispersion='joint'`` pools, ``'none'`` trusts the SEs.
"""

from __future__ import annotations

import itertools

import numpy as np

DISPERSIONS = ("series", "joint", "none")

# Elements of the (replicates x combinations x series x parameters) arrays
# built at once during the search.
_MAX_CHUNK = 2**22


# --------------------------------------------------------------------------- design
def breakpoint_combinations(n: int, n_breakpoints: int, min_size: int) -> np.ndarray:
    """All breakpoint index combinations with every segment >= ``min_size`` checkpoints.

    A breakpoint ``b`` is the index of the first checkpoint of the new
    segment. Returns (n_combinations, n_breakpoints) ints, lexicographic.
    """
    k = int(n_breakpoints)
    if k == 0:
        return np.zeros((1 if n >= min_size else 0, 0), dtype=int)
    if (k + 1) * min_size > n:
        return np.zeros((0, k), dtype=int)
    # Shift trick: b_j = min_size * (j + 1) + s_j with 0 <= s_1 <= ... <= s_k <= n - (k + 1) * min_size.
    free = n - (k + 1) * min_size
    shifts = np.array(list(itertools.combinations_with_replacement(range(free + 1), k)), dtype=int)
    return shifts + min_size * np.arange(1, k + 1)


def break_positions(x: np.ndarray, breakpoints: np.ndarray) -> np.ndarray:
    """Midpoint in x of the gap before each breakpoint index (any leading shape)."""
    b = np.asarray(breakpoints, dtype=int)
    return 0.5 * (x[b - 1] + x[b]) if b.size else np.zeros(b.shape)


def n_params_per_series(n_breakpoints: int, continuous: bool) -> int:
    return 2 + n_breakpoints if continuous else 2 * (n_breakpoints + 1)


def n_params(n_breakpoints: int, n_series: int, continuous: bool) -> int:
    """Parameters of a segmentation: lines of every series plus the shared positions."""
    return n_series * n_params_per_series(n_breakpoints, continuous) + n_breakpoints


def design(x: np.ndarray, combos: np.ndarray, continuous: bool, tau: np.ndarray | None = None) -> np.ndarray:
    """Design matrices (n_combinations, n_checkpoints, n_params_per_series).

    Continuous: columns ``1, x - mean(x), (x - tau_1)_+, ...`` with ``tau``
    (n_combinations, n_breakpoints) the break positions (default: the gap
    midpoints of ``combos``). Free: per segment ``1, x - mean(x)`` masked to
    the segment.
    """
    combos = np.asarray(combos, dtype=int)
    c, k = combos.shape
    xc = x - x.mean()
    if continuous:
        tau = break_positions(x, combos) if tau is None else np.asarray(tau, dtype=np.float64)
        hinge = np.maximum(xc[None, :, None] - (tau - x.mean())[:, None, :], 0.0)  # (C, n, k)
        base = np.broadcast_to(np.column_stack([np.ones_like(xc), xc]), (c, x.size, 2))
        return np.concatenate([base, hinge], axis=2)
    seg = (np.arange(x.size)[None, :, None] >= combos[:, None, :]).sum(axis=2)  # (C, n)
    member = (seg[:, :, None] == np.arange(k + 1)).astype(float)  # (C, n, k + 1)
    out = np.empty((c, x.size, 2 * (k + 1)))
    out[:, :, 0::2] = member
    out[:, :, 1::2] = member * xc[None, :, None]
    return out


def segment_maps(x: np.ndarray, combo: np.ndarray, continuous: bool,
                 tau: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Linear maps from the coefficients of one design to per-segment lines.

    Returns ``S`` and ``A``, both (n_segments, n_params_per_series): the
    slope of segment j is ``S[j] @ beta`` and its intercept (value at x = 0)
    ``A[j] @ beta``.
    """
    combo = np.asarray(combo, dtype=int)
    k = combo.size
    xm = x.mean()
    p = n_params_per_series(k, continuous)
    S, A = np.zeros((k + 1, p)), np.zeros((k + 1, p))
    if continuous:
        tau = break_positions(x, combo) if tau is None else np.asarray(tau, dtype=np.float64)
        for j in range(k + 1):
            S[j, 1] = 1.0
            S[j, 2 : 2 + j] = 1.0
            A[j, 0], A[j, 1] = 1.0, -xm
            A[j, 2 : 2 + j] = -tau[:j]
    else:
        for j in range(k + 1):
            S[j, 2 * j + 1] = 1.0
            A[j, 2 * j], A[j, 2 * j + 1] = 1.0, -xm
    return S, A


# --------------------------------------------------------------------------- weighted fits
def _gram_inverse(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(X^T W_s X)^-1 per combination and series: (C, m, p, p)."""
    G = np.einsum("cnp,ns,cnq->cspq", X, W, X, optimize=True)
    try:
        return np.linalg.inv(G)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(G, hermitian=True)


def _chi2_per_series(X: np.ndarray, Ginv: np.ndarray, Z: np.ndarray, wyy: np.ndarray) -> np.ndarray:
    """Weighted residual sum of squares (B, C, m) for every replicate and combination.

    ``Z = W * Y`` (B, n, m), ``wyy = sum_n W Y^2`` (B, m): chi2 = wyy - rhs' G^-1 rhs.
    """
    rhs = np.tensordot(X, Z, axes=([1], [1])).transpose(2, 0, 3, 1)  # (B, C, m, p)
    beta = np.einsum("cspq,bcsq->bcsp", Ginv, rhs, optimize=True)
    chi2 = wyy[:, None, :] - (rhs * beta).sum(axis=3)
    return np.maximum(chi2, 0.0)


def _search(x, Z, wyy, W, combos, continuous, phi):
    """Best combination per replicate: (index into combos (B,), chi2 per series there (B, m)).

    The search minimises ``sum_s chi2_s / phi_s``; ``phi`` (B, m).
    """
    B, _, m = Z.shape
    p = combos.shape[1] + 2 if continuous else 2 * (combos.shape[1] + 1)
    best = np.full(B, np.inf)
    best_idx = np.zeros(B, dtype=int)
    best_chi2 = np.full((B, m), np.inf)
    step = max(1, _MAX_CHUNK // max(1, B * m * p * 2))
    for start in range(0, len(combos), step):
        cc = combos[start : start + step]
        X = design(x, cc, continuous)
        chi2 = _chi2_per_series(X, _gram_inverse(X, W), Z, wyy)  # (B, c, m)
        total = (chi2 / phi[:, None, :]).sum(axis=2)
        i = np.argmin(total, axis=1)
        val = total[np.arange(B), i]
        better = val < best
        best[better] = val[better]
        best_idx[better] = start + i[better]
        best_chi2[better] = chi2[np.arange(B), i][better]
    return best_idx, best_chi2


# Positions tried for a break within its gap, as fractions of the gap: the
# checkpoints at both ends, the midpoint and the quarters.
REFINE_GRID = np.linspace(0.0, 1.0, 5)


def _refine(x, Z, wyy, W, combos, phi):
    """Profile each replicate's breaks within their gaps on :data:`REFINE_GRID`.

    ``combos`` (B, k): the gaps each replicate's search chose. All
    ``len(REFINE_GRID) ** k`` position combinations are fitted jointly.
    Returns tau (B, k) and chi2 per series there (B, m).
    """
    B, k = combos.shape
    m = Z.shape[2]
    left, right = x[combos - 1], x[combos]  # (B, k)
    grid = np.array(list(itertools.product(REFINE_GRID, repeat=k)))  # (G, k)
    g = len(grid)
    tau_all = left[:, None, :] + grid[None] * (right - left)[:, None, :]  # (B, G, k)
    tau_best = np.empty((B, k))
    chi2_best = np.empty((B, m))
    p = k + 2
    step = max(1, _MAX_CHUNK // max(1, g * m * p * p * 2))
    for start in range(0, B, step):
        sl = slice(start, start + step)
        nb = len(range(*sl.indices(B)))
        X = design(x, np.repeat(combos[sl], g, axis=0), True, tau_all[sl].reshape(-1, k)).reshape(nb, g, x.size, p)
        G = np.einsum("bgnp,ns,bgnq->bgspq", X, W, X, optimize=True)
        rhs = np.einsum("bgnp,bns->bgsp", X, Z[sl], optimize=True)
        beta = np.linalg.solve(G, rhs[..., None])[..., 0]
        chi2 = np.maximum(wyy[sl, None, :] - (rhs * beta).sum(axis=3), 0.0)  # (nb, G, m)
        i = np.argmin((chi2 / phi[sl, None, :]).sum(axis=2), axis=1)
        tau_best[sl] = tau_all[sl][np.arange(nb), i]
        chi2_best[sl] = chi2[np.arange(nb), i]
    return tau_best, chi2_best


def _floor_se(se: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """SE with zeros and tiny values raised to a floor.

    An SE of 0 is real (every replicate of a checkpoint scoring 100 % of its
    items) but would give that checkpoint infinite weight; the floor is a
    tenth of the series' median positive SE, or a millionth of its scale when
    no SE is positive.
    """
    se = np.where(np.isfinite(se), se, 0.0)
    out = np.empty_like(se)
    for s in range(se.shape[1]):
        pos = se[:, s][se[:, s] > 0]
        scale = max(float(np.std(Y[:, s])), float(np.abs(Y[:, s]).max()), 1.0e-300)
        floor = 0.1 * float(np.median(pos)) if pos.size else 1e-6 * scale
        out[:, s] = np.maximum(se[:, s], floor)
    return out


def check_inputs(x, y, se):
    """Validated float arrays ``x`` (n,), ``Y`` (n, m) and ``SE`` (n, m), the SEs floored (:func:`_floor_se`)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("x must be 1-D")
    Y = y[:, None] if y.ndim == 1 else y
    if Y.ndim != 2 or Y.shape[0] != x.size:
        raise ValueError(f"y has {Y.shape[0]} rows for {x.size} checkpoints")
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be strictly increasing (sort checkpoints by tokens)")
    if not np.isfinite(Y).all() or not np.isfinite(x).all():
        raise ValueError("x and y must be finite")
    if se is None:
        SE = np.ones_like(Y)
    else:
        SE = np.asarray(se, dtype=np.float64)
        SE = SE[:, None] if SE.ndim == 1 else SE
        if SE.shape != Y.shape:
            raise ValueError(f"se has shape {SE.shape}, y {Y.shape}")
        if np.any(SE < 0):
            raise ValueError("standard errors must be >= 0")
        SE = _floor_se(SE, Y)
    return x, Y, SE


def select_breakpoints(x, Yb, SE, max_k, min_size, continuous, dispersion, known_noise):
    """Best breakpoints for every count and BIC, for each replicate in ``Yb`` (B, n, m).

    Returns dict with per-count lists of (B, k) combos and tau (positions), chi2 (B, K+1) (scaled
    by phi), chi2 per series (B, K+1, m) unscaled, bic (B, K+1), phi (B, m).
    """
    if dispersion not in DISPERSIONS:
        raise ValueError(f"unknown dispersion {dispersion!r}; one of {DISPERSIONS}")
    B, n, m = Yb.shape
    W = 1.0 / SE**2
    # Centering each series (intercepts are in every model) keeps wyy small
    # next to the chi2 it is subtracted to.
    Yc = Yb - (W * Yb).sum(axis=1, keepdims=True) / W.sum(axis=0)
    Z = W[None] * Yc
    wyy = (Z * Yc).sum(axis=1)  # (B, m)
    N = n * m
    ks = [k for k in range(max_k + 1)
          if (k + 1) * min_size <= n and n_params(k, m, continuous) < N
          and n_params_per_series(k, continuous) <= n]
    combos = {k: breakpoint_combinations(n, k, min_size) for k in ks}
    phi = np.ones((B, m))
    if dispersion != "none" and ks:
        # Dispersion from the richest model; with unknown noise (no SEs) it
        # is the residual variance itself, else at least 1.
        k_r = max((k for k in ks if n - n_params_per_series(k, continuous) - k / m > 0), default=None)
        if k_r is None:
            raise ValueError(f"too few checkpoints ({n}) to estimate the dispersion")
        i, c2 = _search(x, Z, wyy, W, combos[k_r], continuous, phi)
        if continuous and k_r:
            _, c2 = _refine(x, Z, wyy, W, combos[k_r][i], phi)
        if dispersion == "series":
            dof = n - n_params_per_series(k_r, continuous) - k_r / m
            phi = c2 / dof
        else:
            phi = np.repeat(c2.sum(axis=1, keepdims=True) / (N - n_params(k_r, m, continuous)), m, axis=1)
        phi = np.maximum(phi, np.finfo(float).tiny) if not known_noise else np.maximum(phi, 1.0)
    elif not known_noise:
        raise ValueError("without standard errors the noise level must be estimated (dispersion != 'none')")
    K = max_k + 1
    out = {"combos": [None] * K, "tau": [None] * K, "chi2": np.full((B, K), np.inf),
           "chi2_series": np.full((B, K, m), np.inf),
           "bic": np.full((B, K), np.inf), "phi": phi}
    for k in ks:
        idx, c2 = _search(x, Z, wyy, W, combos[k], continuous, phi)
        out["combos"][k] = combos[k][idx]
        out["tau"][k] = break_positions(x, out["combos"][k])
        if continuous and k:
            out["tau"][k], c2 = _refine(x, Z, wyy, W, out["combos"][k], phi)
        out["chi2_series"][:, k] = c2
        out["chi2"][:, k] = (c2 / phi).sum(axis=1)
        out["bic"][:, k] = out["chi2"][:, k] + n_params(k, m, continuous) * np.log(N)
    return out
