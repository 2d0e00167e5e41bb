"""Phases of training: breakpoints on the log-token axis (METHODS §6).

Per checkpoint we have trajectories (encoding mean r at the chosen layer,
benchmark accuracy, probing score). Seed 000 reads three transitions in them:

1. encoding and benchmark rise -- *brain alignment & instruction following*;
2. encoding falls while the benchmark stagnates -- *brain detachment &
   stagnation*;
3. benchmark and probing rise, encoding recovers -- *brain realignment &
   consolidation*.

Here the transitions are found, not assumed: an exact piecewise-linear
segmentation of the trajectories against x = log10(tokens) (dynamic
programming, :class:`ruptures.Dynp` with ``jump=1``), the number of
breakpoints chosen by BIC, the breakpoints' uncertainty from bootstrap
replicates of the trajectories, and each segment labelled from the signs of
its slopes.

Breakpoint convention (ruptures'): a breakpoint ``b`` is the index of the
first checkpoint of the new segment; the change happens between checkpoints
``b - 1`` and ``b``, and its position in x is reported as their midpoint.

Several series (columns of ``y``) are segmented *jointly*: one set of
breakpoints shared by all series, each series with its own line per segment,
the cost being the sum of the per-series residual sums of squares. ruptures'
own ``CostLinear`` cannot do this: it takes column 0 as the only response and
every further column as a regressor, so stacking ``[y1, y2, x, 1]`` would
regress y1 on y2. :class:`CostLinearJoint` does the sum instead (for one
series it equals ``CostLinear`` on ``[y, x, 1]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
import ruptures as rpt
from ruptures.base import BaseCost
from ruptures.costs import NotEnoughPoints

ALIGNMENT = "brain alignment & instruction following"
DETACHMENT = "brain detachment & stagnation"
REALIGNMENT = "brain realignment & consolidation"

_ARROWS = {1: "↑", 0: "→", -1: "↓"}


# --------------------------------------------------------------------------- cost
class CostLinearJoint(BaseCost):
    """Piecewise-linear cost summed over several responses sharing the breakpoints.

    ``signal`` columns: the first ``n_series`` are responses, the rest the
    regressors (here ``[x, 1]``). The cost of a segment is the total residual
    sum of squares of the per-response least-squares fits on the regressors.
    """

    model = "linear_joint"

    def __init__(self, n_series: int = 1):
        self.n_series = int(n_series)
        self.signal = None
        self.covar = None
        self.min_size = 2

    def fit(self, signal) -> "CostLinearJoint":
        signal = np.asarray(signal, dtype=np.float64)
        if signal.ndim != 2 or signal.shape[1] <= self.n_series:
            raise ValueError("signal must be (n_samples, n_series + n_regressors)")
        self.signal = signal[:, : self.n_series]
        self.covar = signal[:, self.n_series :]
        return self

    def error(self, start, end) -> float:
        if end - start < self.min_size:
            raise NotEnoughPoints
        return _segment_rss(self.covar[start:end], self.signal[start:end])


def _segment_rss(X: np.ndarray, Y: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(X, Y, rcond=None)
    # Residuals computed explicitly: lstsq returns an empty residual array
    # for exactly determined (2 points, 2 parameters) or rank-deficient fits.
    return float(((Y - X @ coef) ** 2).sum())


# --------------------------------------------------------------------------- segmentation
class Segment(NamedTuple):
    """One segment of a segmentation; ``stop`` is exclusive."""

    start: int
    stop: int
    x_start: float
    x_stop: float  # x of the last checkpoint in the segment
    slopes: np.ndarray  # (n_series,) change per unit x (per decade of tokens)
    intercepts: np.ndarray  # (n_series,)


@dataclass
class Segmentation:
    """Result of :func:`detect_breakpoints`.

    breakpoints : (n_breakpoints,) index of the first checkpoint of each new segment.
    breakpoints_x : (n_breakpoints,) position in x (midpoint of the two checkpoints around the break).
    n_breakpoints : number chosen by BIC (or imposed).
    bic : (max_breakpoints + 1,) BIC per number of breakpoints (inf where infeasible).
    rss : (max_breakpoints + 1,) residual sum of squares per number of breakpoints.
    breakpoints_by_count : list, the optimal breakpoints for each count.
    segments : list of :class:`Segment`, in order along x.
    x : (n_checkpoints,) the x used.
    """

    breakpoints: np.ndarray
    breakpoints_x: np.ndarray
    n_breakpoints: int
    bic: np.ndarray
    rss: np.ndarray
    breakpoints_by_count: list
    segments: list = field(default_factory=list)
    x: np.ndarray | None = None

    @property
    def slopes(self) -> np.ndarray:
        """(n_segments, n_series) slopes per segment."""
        return np.array([s.slopes for s in self.segments])


def _prepare(x, y, standardize):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("x must be 1-D")
    Y = y[:, None] if y.ndim == 1 else y
    if Y.shape[0] != x.size:
        raise ValueError(f"y has {Y.shape[0]} rows for {x.size} checkpoints")
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be strictly increasing (sort checkpoints by tokens)")
    if not np.isfinite(Y).all() or not np.isfinite(x).all():
        raise ValueError("x and y must be finite")
    if standardize:
        # Joint cost sums raw RSS, i.e. assumes one noise level for all
        # series; dividing each by its std puts accuracy (0-1) and mean r
        # (~0.05) on equal footing. Irrelevant for a single series.
        sd = Y.std(axis=0)
        Y = Y / np.where(sd > 0, sd, 1.0)
    return x, Y


def _fit_segments(x, Y, bkps):
    """Least-squares line per segment for each series (original units)."""
    edges = [0, *[int(b) for b in bkps], x.size]
    segs = []
    for a, b in zip(edges[:-1], edges[1:]):
        X = np.column_stack([x[a:b], np.ones(b - a)])
        coef, *_ = np.linalg.lstsq(X, Y[a:b], rcond=None)
        segs.append(Segment(a, b, float(x[a]), float(x[b - 1]), coef[0].copy(), coef[1].copy()))
    return segs


def _bic(rss, n_obs, n_params, floor, criterion="bic_dof"):
    # An exact fit (e.g. all segments of two points) gives RSS = 0 and
    # log(0) = -inf; the floor keeps BIC finite so the parameter penalty decides.
    if criterion == "bic":
        denom = n_obs
    elif criterion == "bic_dof":
        # Residual variance estimated with n - k degrees of freedom: with a
        # dozen checkpoints, the plain n in the denominator lets the search
        # over breakpoint positions buy exact fits of short segments (a line
        # through 2 points has no residual), and BIC then finds breaks in a
        # straight noisy line (simulated, 12 points, min_size=2: 70% pick 3
        # breaks with "bic", 2.5% with "bic_dof").
        denom = n_obs - n_params
        if denom <= 0:
            return np.inf
    else:
        raise ValueError(f"unknown criterion {criterion!r}")
    return n_obs * np.log(max(rss, floor) / denom) + n_params * np.log(n_obs)


def _segment_all_counts(x, Y, max_breakpoints, min_size):
    """Optimal breakpoints and total RSS for every count 0..max_breakpoints."""
    n, m = Y.shape
    signal = np.column_stack([Y, x, np.ones_like(x)])
    cost = CostLinearJoint(n_series=m)
    cost.min_size = min_size
    algo = rpt.Dynp(custom_cost=cost, min_size=min_size, jump=1).fit(signal)
    by_count, rss = [], []
    for k in range(max_breakpoints + 1):
        if (k + 1) * min_size > n:
            by_count.append(None)
            rss.append(np.inf)
            continue
        if k == 0:
            bkps = []
        else:
            bkps = algo.predict(n_bkps=k)[:-1]  # drop the final n
        by_count.append(np.asarray(bkps, dtype=int))
        edges = [0, *bkps, n]
        rss.append(sum(cost.error(a, b) for a, b in zip(edges[:-1], edges[1:])))
    return by_count, np.asarray(rss)


def detect_breakpoints(
    x: np.ndarray,
    y: np.ndarray,
    max_breakpoints: int = 3,
    min_size: int = 2,
    n_breakpoints: int | None = None,
    standardize: bool = True,
    criterion: str = "bic_dof",
) -> Segmentation:
    """Exact piecewise-linear segmentation of trajectories on the log-token axis.

    Parameters
    ----------
    x : (n_checkpoints,) log10(tokens), strictly increasing.
    y : (n_checkpoints,) or (n_checkpoints, n_series) trajectories; several
        columns are segmented jointly (shared breakpoints, own lines).
    max_breakpoints : largest number of breakpoints considered.
    min_size : fewest checkpoints in a segment (>= 2: a line needs two points).
    n_breakpoints : impose this count instead of choosing it by BIC.
    standardize : divide each series by its std before the joint fit (the
        reported slopes are always in the original units).

    criterion : "bic": BIC = N log(RSS / N) + k log(N), with
        N = n_checkpoints * n_series observations, RSS summed over series
        (one pooled noise variance) and k = 2 * n_series * (n_breakpoints + 1)
        + n_breakpoints (slope and intercept per segment and series, plus the
        breakpoint positions). "bic_dof" (default): the same with the
        residual variance RSS / (N - k), i.e. N log(RSS / (N - k)) + k log(N);
        counts with k >= N are not allowed. With the few checkpoints of a
        training run, plain BIC over-segments (see :func:`_bic`).
    """
    x, Y = _prepare(x, y, standardize)
    Y_raw = np.asarray(y, dtype=np.float64)
    Y_raw = Y_raw[:, None] if Y_raw.ndim == 1 else Y_raw
    if min_size < 2:
        raise ValueError("min_size must be >= 2 (a line needs two points)")
    n, m = Y.shape
    max_k = max_breakpoints if n_breakpoints is None else max(max_breakpoints, n_breakpoints)
    by_count, rss = _segment_all_counts(x, Y, max_k, min_size)

    n_obs = n * m
    X0 = np.column_stack([x, np.ones_like(x)])
    tss = _segment_rss(X0, Y)  # RSS of one line: the scale for the floor
    floor = max(tss, np.finfo(float).tiny) * 1e-10
    bic = np.array([
        _bic(r, n_obs, 2 * m * (k + 1) + k, floor, criterion) if np.isfinite(r) else np.inf
        for k, r in enumerate(rss)
    ])
    if n_breakpoints is None:
        k_best = int(np.argmin(bic))
    else:
        if by_count[n_breakpoints] is None:
            raise ValueError(f"{n_breakpoints} breakpoints with min_size={min_size} need more than {n} checkpoints")
        k_best = int(n_breakpoints)
    if not np.isfinite(bic[k_best]) and n_breakpoints is None:
        raise ValueError(f"too few checkpoints ({n}) for any segmentation")
    bkps = by_count[k_best]
    return Segmentation(
        breakpoints=bkps,
        breakpoints_x=_break_x(x, bkps),
        n_breakpoints=k_best,
        bic=bic,
        rss=rss,
        breakpoints_by_count=by_count,
        segments=_fit_segments(x, Y_raw, bkps),
        x=x,
    )


def _break_x(x, bkps):
    bkps = np.asarray(bkps, dtype=int)
    return 0.5 * (x[bkps - 1] + x[bkps]) if bkps.size else np.zeros(0)


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
    max_breakpoints: int = 3,
    min_size: int = 2,
    level: float = 0.95,
    standardize: bool = True,
    criterion: str = "bic_dof",
) -> BootstrapBreakpoints:
    """Uncertainty of breakpoints from bootstrap replicates of the trajectories.

    Parameters
    ----------
    x : (n_checkpoints,) log10(tokens).
    y_replicates : (n_boot, n_checkpoints) or (n_boot, n_checkpoints, n_series);
        the caller makes them by resampling benchmark items or TR blocks and
        recomputing the per-checkpoint scores.
    n_breakpoints : the count whose positions are bootstrapped (usually the
        one BIC picked on the full data). Each replicate is segmented with
        this count imposed; separately, BIC picks a count per replicate, so
        that a break present only because it was imposed shows up as a low
        ``fraction_with_break``.
    level : coverage of the percentile intervals.
    """
    Yb = np.asarray(y_replicates, dtype=np.float64)
    if Yb.ndim not in (2, 3):
        raise ValueError("y_replicates must be (n_boot, n_checkpoints[, n_series])")
    x = np.asarray(x, dtype=np.float64)
    max_k = max(max_breakpoints, n_breakpoints)
    n_boot = Yb.shape[0]
    idx = np.zeros((n_boot, n_breakpoints), dtype=int)
    counts = np.zeros(n_boot, dtype=int)
    for b in range(n_boot):
        seg = detect_breakpoints(x, Yb[b], max_breakpoints=max_k, min_size=min_size,
                                 standardize=standardize, criterion=criterion)
        counts[b] = seg.n_breakpoints if seg.n_breakpoints <= max_breakpoints else int(np.argmin(seg.bic[: max_breakpoints + 1]))
        if n_breakpoints:
            idx[b] = seg.breakpoints_by_count[n_breakpoints]
    pos = np.stack([_break_x(x, row) for row in idx]) if n_breakpoints else np.zeros((n_boot, 0))
    q = [50 * (1 - level), 50 * (1 + level)]
    interval_x = np.percentile(pos, q, axis=0).T if n_breakpoints else np.zeros((0, 2))
    if n_breakpoints:
        # Indices stay integers, rounded outwards (a conservative interval).
        interval_i = np.column_stack([np.percentile(idx, q[0], axis=0, method="lower"),
                                      np.percentile(idx, q[1], axis=0, method="higher")]).astype(int)
    else:
        interval_i = np.zeros((0, 2), dtype=int)
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
def _signs(slopes: Mapping[str, np.ndarray], tol) -> dict[str, np.ndarray]:
    out = {}
    for name, s in slopes.items():
        t = tol[name] if isinstance(tol, Mapping) else tol
        s = np.asarray(s, dtype=np.float64)
        out[name] = np.where(s > t, 1, np.where(s < -t, -1, 0))
    return out


def label_phases(
    segments: Sequence | int,
    slopes: Mapping[str, np.ndarray],
    tol: float | Mapping[str, float] = 0.0,
) -> list[str]:
    """Name each segment from the signs of its slopes.

    Parameters
    ----------
    segments : the segments (or their number) to label.
    slopes : series name -> (n_segments,) slope per segment (per decade of
        tokens). The paper's names use 'encoding', 'benchmark' and 'probing'.
    tol : |slope| <= tol counts as flat; a float or one per series (their
        units differ: mean r vs accuracy).

    Rules (seed 000 §3.1):

    * encoding ↑ and benchmark ↑ -> brain alignment & instruction following;
    * encoding ↓ and benchmark → -> brain detachment & stagnation;
    * benchmark ↑, probing ↑, encoding ↑ or → -> brain realignment & consolidation.

    A segment fitting both the first and the third pattern (everything
    rising) is a *re*-alignment only once a detachment has been seen before
    it, else an alignment. Any other pattern gets a neutral label listing the
    signs, e.g. 'encoding ↑, benchmark →, probing ↓'.
    """
    n = segments if isinstance(segments, (int, np.integer)) else len(segments)
    for name, s in slopes.items():
        if len(np.atleast_1d(s)) != n:
            raise ValueError(f"slopes[{name!r}] has {len(np.atleast_1d(s))} values for {n} segments")
    sg = _signs({k: np.atleast_1d(v) for k, v in slopes.items()}, tol)
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
    tol: float | Mapping[str, float] = 0.0,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per phase (segment) of a segmentation.

    Columns: phase, label, start_index, end_index (inclusive), start_tokens,
    end_tokens (10**x of the first/last checkpoint), break_x / break_tokens of
    the breakpoint that *ends* the phase and its bootstrap interval
    (break_low_tokens, break_high_tokens, NaN for the last phase or without
    bootstrap), and slope_<name> per series (per decade of tokens).
    """
    segs = segmentation.segments
    names = list(series_names)
    if segs and len(segs[0].slopes) != len(names):
        raise ValueError(f"{len(names)} names for {len(segs[0].slopes)} series")
    slopes = {nm: np.array([s.slopes[j] for s in segs]) for j, nm in enumerate(names)}
    if labels is None:
        labels = label_phases(segs, slopes, tol)
    use_boot = bootstrap is not None and bootstrap.interval_x.shape[0] == segmentation.n_breakpoints
    rows = []
    for i, s in enumerate(segs):
        last = i == len(segs) - 1
        bx = np.nan if last else float(segmentation.breakpoints_x[i])
        lo = hi = np.nan
        if use_boot and not last:
            lo, hi = (float(v) for v in bootstrap.interval_x[i])
        row = {
            "phase": i,
            "label": labels[i],
            "start_index": s.start,
            "end_index": s.stop - 1,
            "start_tokens": 10.0 ** s.x_start,
            "end_tokens": 10.0 ** s.x_stop,
            "break_tokens": 10.0 ** bx,
            "break_low_tokens": 10.0 ** lo,
            "break_high_tokens": 10.0 ** hi,
        }
        for nm in names:
            row[f"slope_{nm}"] = float(slopes[nm][i])
        rows.append(row)
    return pd.DataFrame(rows)
