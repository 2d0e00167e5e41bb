"""Phases of training: breakpoints on the log-token axis.

Per checkpoint we have trajectories (encoding mean r at the chosen layer,
benchmark accuracy, probing score), each with a standard error from its
bootstrap replicates. Three transitions are read in them:

1. encoding and benchmark rise -- *brain alignment & instruction following*;
2. encoding falls while the benchmark stagnates -- *brain detachment &
   stagnation*;
3. benchmark and probing rise, encoding recovers -- *brain realignment &
   consolidation*.

Here the transitions are found, not assumed.

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

Slopes and labels
    Each series' slope in each segment comes with a standard error from the
    covariance of the WLS fit (times phi) with the break positions as
    parameters too, so a slope next to an uncertain break is less certain.
    A slope is flat when its ``level`` interval covers zero, else rising or
    falling; the labels are read from these signs. Breakpoint uncertainty
    comes from refitting bootstrap replicates of the trajectories
    (:func:`bootstrap_breakpoints`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
import scipy.stats

ALIGNMENT = "brain alignment & instruction following"
DETACHMENT = "brain detachment & stagnation"
REALIGNMENT = "brain realignment & consolidation"

_ARROWS = {1: "↑", 0: "→", -1: "↓"}
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


def _prepare(x, y, se):
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


def _select(x, Yb, SE, max_k, min_size, continuous, dispersion, known_noise):
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


# --------------------------------------------------------------------------- segmentation
class Segment(NamedTuple):
    """One segment of a segmentation; ``stop`` is exclusive."""

    start: int
    stop: int
    x_start: float
    x_stop: float  # x of the last checkpoint in the segment
    slopes: np.ndarray  # (n_series,) change per unit x (per decade of tokens)
    slope_se: np.ndarray  # (n_series,) standard error of the slopes
    intercepts: np.ndarray  # (n_series,) the segment's line at x = 0


@dataclass
class Segmentation:
    """Result of :func:`detect_breakpoints`.

    breakpoints : (n_breakpoints,) index of the first checkpoint of each new segment.
    breakpoints_x : (n_breakpoints,) position in x: within the gap before the
        breakpoint, profiled on a grid (continuous model), or the gap's midpoint (free).
    breakpoints_se : (n_breakpoints,) standard error of the positions from the
        joint covariance (continuous model; NaN for free segments).
    n_breakpoints : number chosen by BIC (or imposed).
    bic : (max_breakpoints + 1,) BIC per number of breakpoints (inf where infeasible).
    chi2 : (max_breakpoints + 1,) sum of squared standardised residuals / phi per count.
    breakpoints_by_count : list, the best breakpoints for each count (None where infeasible).
    dispersion : (n_series,) phi, the factor by which the residual variance exceeds SE^2 (>= 1).
    segments : list of :class:`Segment`, in order along x.
    fitted : (n_checkpoints, n_series) the fitted trajectories.
    level : coverage of the slope intervals.
    """

    breakpoints: np.ndarray
    breakpoints_x: np.ndarray
    breakpoints_se: np.ndarray
    n_breakpoints: int
    bic: np.ndarray
    chi2: np.ndarray
    breakpoints_by_count: list
    dispersion: np.ndarray
    segments: list = field(default_factory=list)
    fitted: np.ndarray | None = None
    x: np.ndarray | None = None
    continuous: bool = True
    level: float = 0.99

    @property
    def slopes(self) -> np.ndarray:
        """(n_segments, n_series) slopes per segment."""
        return np.array([s.slopes for s in self.segments])

    @property
    def slope_se(self) -> np.ndarray:
        """(n_segments, n_series) standard errors of the slopes."""
        return np.array([s.slope_se for s in self.segments])

    def slope_interval(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high), each (n_segments, n_series): the ``level`` interval of each slope."""
        z = scipy.stats.norm.ppf(0.5 * (1 + self.level))
        return self.slopes - z * self.slope_se, self.slopes + z * self.slope_se

    def signs(self, min_slope: float | Sequence[float] | None = None) -> np.ndarray:
        """(n_segments, n_series) +1 / 0 / -1: rising, flat (interval covers 0), falling.

        ``min_slope``: optionally, a slope whose magnitude stays under this
        effect size (per series, per decade of tokens) counts as flat too.
        """
        lo, hi = self.slope_interval()
        return slope_signs(self.slopes, lo, hi, min_slope)


def slope_signs(slope, low, high, min_slope=None) -> np.ndarray:
    """+1 where the interval is above 0, -1 where below, 0 where it covers 0 (or |slope| < min_slope)."""
    slope, low, high = (np.asarray(a, dtype=np.float64) for a in (slope, low, high))
    sign = np.where(low > 0, 1, np.where(high < 0, -1, 0))
    if min_slope is not None:
        sign = np.where(np.abs(slope) < np.asarray(min_slope, dtype=np.float64), 0, sign)
    return sign.astype(int)


def _fit_segments(x, Y, SE, combo, tau, continuous, phi):
    """WLS fit of one segmentation.

    Returns the segments (slopes with their SEs), the fitted values and the
    SEs of the break positions (NaN for free segments). For the continuous
    model the covariance is that of all parameters at once, the shared break
    positions included (linearised in tau: d fit / d tau_j = -c_j 1(x > tau_j)),
    so that a slope's SE carries the uncertainty of where its segment starts
    and ends; for free segments it is conditional on the breakpoints.
    """
    combo = np.asarray(combo, dtype=int)
    tau = np.asarray(tau, dtype=np.float64)
    k = combo.size
    X = design(x, combo[None], continuous, tau[None])[0]  # (n, p)
    S, A = segment_maps(x, combo, continuous, tau)
    n, m = Y.shape
    p = X.shape[1]
    W = 1.0 / SE**2
    beta = np.zeros((m, p))
    for s in range(m):
        G = X.T @ (W[:, s, None] * X)
        beta[s] = np.linalg.pinv(G, hermitian=True) @ (X.T @ (W[:, s] * Y[:, s]))
    fitted = (X @ beta.T)
    # Joint information matrix of (beta_1, ..., beta_m, tau), weights 1 / (phi SE^2).
    n_tau = k if continuous else 0
    info = np.zeros((m * p + n_tau, m * p + n_tau))
    above = (x[:, None] > tau[None, :]).astype(float) if n_tau else np.zeros((n, 0))
    for s in range(m):
        J = np.zeros((n, m * p + n_tau))
        J[:, s * p : (s + 1) * p] = X
        if n_tau:
            J[:, m * p :] = -beta[s, 2:][None, :] * above
        info += J.T @ ((W[:, s] / phi[s])[:, None] * J)
    cov = np.linalg.pinv(info, hermitian=True)
    slopes = np.zeros((k + 1, m))
    slope_se = np.zeros_like(slopes)
    inter = np.zeros_like(slopes)
    for s in range(m):
        blk = cov[s * p : (s + 1) * p, s * p : (s + 1) * p]
        slopes[:, s] = S @ beta[s]
        inter[:, s] = A @ beta[s]
        slope_se[:, s] = np.sqrt(np.maximum(np.einsum("jp,pq,jq->j", S, blk, S), 0.0))
    tau_se = np.sqrt(np.maximum(np.diag(cov)[m * p :], 0.0)) if n_tau else np.full(k, np.nan)
    edges = [0, *combo.tolist(), n]
    segs = [Segment(a, b, float(x[a]), float(x[b - 1]), slopes[j].copy(), slope_se[j].copy(), inter[j].copy())
            for j, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    return segs, fitted, tau_se


def detect_breakpoints(
    x: np.ndarray,
    y: np.ndarray,
    se: np.ndarray | None = None,
    max_breakpoints: int = 3,
    min_size: int = 2,
    n_breakpoints: int | None = None,
    continuous: bool = True,
    dispersion: str = "series",
    level: float = 0.99,
) -> Segmentation:
    """Segmented regression of trajectories on the log-token axis (see the module docstring).

    Parameters
    ----------
    x : (n_checkpoints,) log10(tokens), strictly increasing.
    y : (n_checkpoints,) or (n_checkpoints, n_series) trajectories; several
        columns are segmented jointly (shared breakpoints, own lines).
    se : same shape as ``y``, the standard error of each value (the std of
        its bootstrap replicates); zeros are floored (see :func:`_floor_se`).
        None: the noise is unknown, one level per series, estimated from the
        residuals of the richest model (needs ``dispersion != 'none'``).
    max_breakpoints : largest number of breakpoints considered.
    min_size : fewest checkpoints in a segment (>= 2).
    n_breakpoints : impose this count instead of choosing it by BIC.
    continuous : lines joined at the breakpoints (hinge model) or independent.
    dispersion : "series" (default): ``phi_s = max(1, chi2_s / dof_s)`` per
        series from the richest model; "joint": one phi for all series;
        "none": the SEs are taken as the whole noise (phi = 1).
    level : coverage of the slope intervals that decide rising / flat / falling.
        The labels combine some nine such decisions (three series, three
        segments), and a detachment needs a benchmark slope called flat: at
        0.95 a truly flat series is called rising or falling in one segment
        of twenty, at 0.99 in one of a hundred, for little loss of power on
        real trends (see tests/test_phases.py).
    """
    x, Y, SE = _prepare(x, y, se)
    if min_size < 2:
        raise ValueError("min_size must be >= 2 (a line needs two points)")
    n, m = Y.shape
    max_k = max_breakpoints if n_breakpoints is None else max(max_breakpoints, n_breakpoints)
    sel = _select(x, Y[None], SE, max_k, min_size, continuous, dispersion, se is not None)
    bic = sel["bic"][0]
    if n_breakpoints is None:
        if not np.isfinite(bic).any():
            raise ValueError(f"too few checkpoints ({n}) for any segmentation")
        k_best = int(np.argmin(bic))
    else:
        if sel["combos"][n_breakpoints] is None:
            raise ValueError(f"{n_breakpoints} breakpoints with min_size={min_size} need more than {n} checkpoints")
        k_best = int(n_breakpoints)
    by_count = [None if c is None else c[0] for c in sel["combos"]]
    bkps = by_count[k_best]
    tau = sel["tau"][k_best][0]
    phi = sel["phi"][0]
    segs, fitted, tau_se = _fit_segments(x, Y, SE, bkps, tau, continuous, phi)
    return Segmentation(
        breakpoints=bkps,
        breakpoints_x=tau,
        breakpoints_se=tau_se,
        n_breakpoints=k_best,
        bic=bic,
        chi2=sel["chi2"][0],
        breakpoints_by_count=by_count,
        dispersion=phi,
        segments=segs,
        fitted=fitted,
        x=x,
        continuous=continuous,
        level=level,
    )


# --------------------------------------------------------------------------- bootstrap
@dataclass
class BootstrapBreakpoints:
    """Bootstrap distribution of breakpoints (see :func:`bootstrap_breakpoints`).

    indices : (n_boot, n_breakpoints) breakpoint indices per replicate, with
        the count imposed (so every replicate has a position for each break).
    positions_x : (n_boot, n_breakpoints) the same in x units.
    interval_x, interval_index : (n_breakpoints, 2) percentile intervals.
    bic_counts : (n_boot,) the number of breakpoints BIC picks per replicate.
    count_distribution : (max_breakpoints + 1,) fraction of replicates per BIC count.
    fraction_with_break : fraction of replicates where BIC picks >= 1 breakpoint.
    fraction_with_all : fraction where BIC picks >= n_breakpoints.
    """

    indices: np.ndarray
    positions_x: np.ndarray
    interval_x: np.ndarray
    interval_index: np.ndarray
    bic_counts: np.ndarray
    count_distribution: np.ndarray
    fraction_with_break: float
    fraction_with_all: float
    level: float


def bootstrap_breakpoints(
    x: np.ndarray,
    y_replicates: np.ndarray,
    n_breakpoints: int,
    se: np.ndarray | None = None,
    max_breakpoints: int = 3,
    min_size: int = 2,
    level: float = 0.95,
    continuous: bool = True,
    dispersion: str = "series",
) -> BootstrapBreakpoints:
    """Uncertainty of breakpoints from bootstrap replicates of the trajectories.

    Parameters
    ----------
    x : (n_checkpoints,) log10(tokens).
    y_replicates : (n_boot, n_checkpoints) or (n_boot, n_checkpoints, n_series);
        the caller makes them by resampling benchmark items, TR blocks or test
        items and recomputing the per-checkpoint scores.
    n_breakpoints : the count whose positions are bootstrapped (usually the
        one BIC picked on the full data). Each replicate is segmented with
        this count imposed; separately, BIC picks a count per replicate, so
        that a break present only because it was imposed shows up as a low
        ``fraction_with_break``.
    se : (n_checkpoints[, n_series]) the SEs used as weights (as for the
        point estimate); None: the std over the replicates.
    level : coverage of the percentile intervals.

    A replicate scatters around the point estimate, which itself scatters
    around the truth, so its residuals exceed the SEs; the per-replicate
    dispersion absorbs that (unless ``dispersion='none'``).
    """
    Yb = np.asarray(y_replicates, dtype=np.float64)
    if Yb.ndim == 2:
        Yb = Yb[:, :, None]
    if Yb.ndim != 3:
        raise ValueError("y_replicates must be (n_boot, n_checkpoints[, n_series])")
    x = np.asarray(x, dtype=np.float64)
    if se is None:
        se = Yb.std(axis=0, ddof=1)
    x, _, SE = _prepare(x, Yb.mean(axis=0), se)
    if not np.isfinite(Yb).all():
        raise ValueError("replicates must be finite")
    max_k = max(max_breakpoints, n_breakpoints)
    n_boot = Yb.shape[0]
    sel = _select(x, Yb, SE, max_k, min_size, continuous, dispersion, True)
    counts = np.argmin(sel["bic"][:, : max_breakpoints + 1], axis=1)
    if n_breakpoints:
        if sel["combos"][n_breakpoints] is None:
            raise ValueError(f"{n_breakpoints} breakpoints with min_size={min_size} need more than "
                             f"{x.size} checkpoints")
        idx = sel["combos"][n_breakpoints]
    else:
        idx = np.zeros((n_boot, 0), dtype=int)
    pos = sel["tau"][n_breakpoints] if n_breakpoints else np.zeros((n_boot, 0))
    q = [50 * (1 - level), 50 * (1 + level)]
    if n_breakpoints:
        interval_x = np.percentile(pos, q, axis=0).T
        # Indices stay integers, rounded outwards (a conservative interval).
        interval_i = np.column_stack([np.percentile(idx, q[0], axis=0, method="lower"),
                                      np.percentile(idx, q[1], axis=0, method="higher")]).astype(int)
    else:
        interval_x, interval_i = np.zeros((0, 2)), np.zeros((0, 2), dtype=int)
    return BootstrapBreakpoints(
        indices=idx,
        positions_x=pos,
        interval_x=interval_x,
        interval_index=interval_i,
        bic_counts=counts,
        count_distribution=np.bincount(counts, minlength=max_breakpoints + 1) / n_boot,
        fraction_with_break=float(np.mean(counts >= 1)),
        fraction_with_all=float(np.mean(counts >= n_breakpoints)),
        level=level,
    )


# --------------------------------------------------------------------------- labels
def label_phases(signs: Mapping[str, np.ndarray]) -> list[str]:
    """Name each segment from the signs of its slopes.

    Parameters
    ----------
    signs : series name -> (n_segments,) +1 rising, 0 flat, -1 falling (see
        :meth:`Segmentation.signs`). The names used are 'encoding',
        'benchmark' and 'probing'.

    Rules:

    * encoding ↑ and benchmark ↑ -> brain alignment & instruction following;
    * encoding ↓ and benchmark → -> brain detachment & stagnation;
    * benchmark ↑, probing ↑, encoding ↑ or → -> brain realignment & consolidation.

    A segment fitting both the first and the third pattern (everything
    rising) is a *re*-alignment only once a detachment has been seen before
    it, else an alignment. Any other pattern gets a neutral label listing the
    signs, e.g. 'encoding ↑, benchmark →, probing ↓'.
    """
    sg = {k: np.atleast_1d(np.asarray(v, dtype=int)) for k, v in signs.items()}
    lengths = {len(v) for v in sg.values()}
    if len(lengths) > 1:
        raise ValueError(f"signs of different lengths: { {k: len(v) for k, v in sg.items()} }")
    n = lengths.pop() if lengths else 0
    for k, v in sg.items():
        if not np.isin(v, [-1, 0, 1]).all():
            raise ValueError(f"signs[{k!r}] must be -1, 0 or 1")
    get = lambda name, i: sg[name][i] if name in sg else None  # noqa: E731

    labels, seen_detachment = [], False
    for i in range(n):
        enc, bench, probe = get("encoding", i), get("benchmark", i), get("probing", i)
        is_align = enc == 1 and bench == 1
        is_detach = enc == -1 and bench == 0
        is_realign = bench == 1 and probe == 1 and enc in (0, 1)
        if is_align and is_realign:
            label = REALIGNMENT if seen_detachment else ALIGNMENT
        elif is_align:
            label = ALIGNMENT
        elif is_detach:
            label = DETACHMENT
        elif is_realign:
            label = REALIGNMENT
        else:
            label = ", ".join(f"{k} {_ARROWS[int(sg[k][i])]}" for k in sg)
        seen_detachment |= label == DETACHMENT
        labels.append(label)
    return labels


# --------------------------------------------------------------------------- table
def phase_table(
    segmentation: Segmentation,
    series_names: Sequence[str],
    bootstrap: BootstrapBreakpoints | None = None,
    min_slope: float | Mapping[str, float] | None = None,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per phase (segment) of a segmentation.

    Columns: phase, label, start_index, end_index (inclusive), start_tokens,
    end_tokens (10**x of the first/last checkpoint), break_tokens of the
    breakpoint that *ends* the phase and its bootstrap interval
    (break_low_tokens, break_high_tokens; NaN for the last phase or without
    bootstrap), and per series: slope_<name> (per decade of tokens), its
    standard error slope_<name>_se, interval slope_<name>_low/high (at the
    segmentation's level) and sign_<name> (+1/0/-1; 0 when the interval
    covers 0, or |slope| < min_slope).
    """
    segs = segmentation.segments
    names = list(series_names)
    if segs and len(segs[0].slopes) != len(names):
        raise ValueError(f"{len(names)} names for {len(segs[0].slopes)} series")
    if isinstance(min_slope, Mapping):
        min_slope = [min_slope.get(nm, 0.0) for nm in names]
    lo, hi = segmentation.slope_interval()
    signs = segmentation.signs(min_slope)
    if labels is None:
        labels = label_phases({nm: signs[:, j] for j, nm in enumerate(names)})
    use_boot = bootstrap is not None and bootstrap.interval_x.shape[0] == segmentation.n_breakpoints
    rows = []
    for i, s in enumerate(segs):
        last = i == len(segs) - 1
        bx = np.nan if last else float(segmentation.breakpoints_x[i])
        blo = bhi = np.nan
        if use_boot and not last:
            blo, bhi = (float(v) for v in bootstrap.interval_x[i])
        row = {
            "phase": i,
            "label": labels[i],
            "start_index": s.start,
            "end_index": s.stop - 1,
            "start_tokens": 10.0 ** s.x_start,
            "end_tokens": 10.0 ** s.x_stop,
            "break_tokens": 10.0 ** bx,
            "break_low_tokens": 10.0 ** blo,
            "break_high_tokens": 10.0 ** bhi,
        }
        for j, nm in enumerate(names):
            row[f"slope_{nm}"] = float(s.slopes[j])
            row[f"slope_{nm}_se"] = float(s.slope_se[j])
            row[f"slope_{nm}_low"] = float(lo[i, j])
            row[f"slope_{nm}_high"] = float(hi[i, j])
            row[f"sign_{nm}"] = int(signs[i, j])
        rows.append(row)
    return pd.DataFrame(rows)
