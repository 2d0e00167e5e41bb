"""Segments of a segmentation: slopes with standard errors, and their signs.

Slopes and labels
    Each series' slope in each segment comes with a standard error from the
    covariance of the WLS fit (times phi) with the break positions as
    parameters too, so a slope next to an uncertain break is less certain.
    A slope is flat when its ``level`` interval covers zero, else rising or
    falling; the labels are read from these signs. Breakpoint uncertainty
    comes from refitting bootstrap replicates of the trajectories
    (:func:`brainphase.phases.detect.bootstrap_breakpoints`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
import scipy.stats

from .hinge import design, segment_maps


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


def fit_segments(x, Y, SE, combo, tau, continuous, phi):
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
