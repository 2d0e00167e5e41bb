"""Breakpoints of the trajectories: the point estimate and its bootstrap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hinge import check_inputs, select_breakpoints
from .segments import Segmentation, fit_segments


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
    """Segmented regression of trajectories on the log-token axis (see :mod:`brainphase.phases.hinge`).

    Parameters
    ----------
    x : (n_checkpoints,) log10(tokens), strictly increasing.
    y : (n_checkpoints,) or (n_checkpoints, n_series) trajectories; several
        columns are segmented jointly (shared breakpoints, own lines).
    se : same shape as ``y``, the standard error of each value (the std of
        its bootstrap replicates); zeros are floored (see :func:`brainphase.phases.hinge.check_inputs`).
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
    x, Y, SE = check_inputs(x, y, se)
    if min_size < 2:
        raise ValueError("min_size must be >= 2 (a line needs two points)")
    n, m = Y.shape
    max_k = max_breakpoints if n_breakpoints is None else max(max_breakpoints, n_breakpoints)
    sel = select_breakpoints(x, Y[None], SE, max_k, min_size, continuous, dispersion, se is not None)
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
    segs, fitted, tau_se = fit_segments(x, Y, SE, bkps, tau, continuous, phi)
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
    x, _, SE = check_inputs(x, Yb.mean(axis=0), se)
    if not np.isfinite(Yb).all():
        raise ValueError("replicates must be finite")
    max_k = max(max_breakpoints, n_breakpoints)
    n_boot = Yb.shape[0]
    sel = select_breakpoints(x, Yb, SE, max_k, min_size, continuous, dispersion, True)
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
