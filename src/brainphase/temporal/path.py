"""Peak lags, alignment score and the computational-path statistic.

From ``r`` (n_layers, n_lags), the cross-validated decoding scores of
:func:`brainphase.temporal.lagged_ridge.lag_layer_scores`:

* peak lag of layer l: ``times[argmax_t r(l, t)]``;
* alignment score: ``(1/L) sum_l max_t r(l, t)``;
* path statistic: Spearman rho between layer depth and peak lag, with a
  one-sided permutation p-value (H1: deeper layers peak later, rho > 0).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import scipy.stats

# Permutation statistics within this of the observed one count as "at least
# as large": tied peak lags make distinct permutations give the same rho up
# to round-off.
_RHO_TOL = 1e-12


def peak_lags(r: np.ndarray, times: Sequence[float]) -> np.ndarray:
    """Time (s) of each layer's maximal score; NaN for a layer with no finite score.

    Parameters
    ----------
    r : array (n_layers, n_lags)
    times : array (n_lags,), seconds relative to word onset

    Returns
    -------
    array (n_layers,), float64. Ties go to the earliest lag (``argmax``).
    """
    r = np.atleast_2d(np.asarray(r, dtype=np.float64))
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (r.shape[1],):
        raise ValueError(f"times must be ({r.shape[1]},), got shape {times.shape}")
    finite = np.isfinite(r)
    idx = np.argmax(np.where(finite, r, -np.inf), axis=1)
    out = times[idx]
    out[~finite.any(axis=1)] = np.nan
    return out


def alignment_score(r: np.ndarray) -> float:
    """Mean over layers of the maximum over lags of ``r``.

    NaN scores (undefined columns) are ignored within a layer; a layer with
    no finite score makes the result NaN.
    """
    r = np.atleast_2d(np.asarray(r, dtype=np.float64))
    finite = np.isfinite(r)
    if not finite.any(axis=1).all():
        return float("nan")
    return float(np.mean(np.max(np.where(finite, r, -np.inf), axis=1)))


def _centred_ranks(x: np.ndarray) -> np.ndarray:
    rk = scipy.stats.rankdata(x)  # average ranks for ties, as spearmanr
    return rk - rk.mean()


def path_statistic(
    peak_lags: Sequence[float],
    depths: Sequence[float] | None = None,
    n_perm: int = 10000,
    seed: int = 0,
) -> tuple[float, float]:
    """Spearman rho between layer depth and peak lag, one-sided permutation p.

    Parameters
    ----------
    peak_lags : array (n_layers,), seconds (from :func:`peak_lags`)
    depths : array (n_layers,) or None
        Depth of each layer (e.g. index, or index / n_layers to compare models
        of different depth); None: ``0, 1, ..., n_layers - 1``.
    n_perm : int
        Permutations of the layer order. When ``n_layers! <= n_perm`` every
        permutation is enumerated once (identity included) and
        ``p = #{rho_perm >= rho} / n_layers!``, the exact null distribution;
        otherwise ``n_perm`` random permutations from
        ``np.random.default_rng(seed)`` and ``p = (1 + #{rho_perm >= rho}) /
        (n_perm + 1)``.
    seed : int

    Returns
    -------
    rho, p : float
        H1: rho > 0 (deeper layers peak later). Ties in peak lags (or depths)
        get average ranks (``scipy.stats.spearmanr``), and a permutation
        counts as extreme when its rho is within 1e-12 of the observed one,
        so ties never lower p. Layers with a NaN peak lag are left out. When
        fewer than 2 layers remain, or the peak lags or the depths are all
        equal, rho is undefined: returns ``(nan, 1.0)`` (no evidence for a
        path).
    """
    lags = np.asarray(peak_lags, dtype=np.float64).ravel()
    depths = np.arange(lags.size, dtype=np.float64) if depths is None else np.asarray(depths, np.float64).ravel()
    if depths.shape != lags.shape:
        raise ValueError(f"depths {depths.shape} and peak_lags {lags.shape} differ in shape")
    if n_perm < 1:
        raise ValueError("n_perm must be positive")
    keep = np.isfinite(lags) & np.isfinite(depths)
    lags, depths = lags[keep], depths[keep]
    n = lags.size
    if n < 2 or np.ptp(lags) == 0 or np.ptp(depths) == 0:
        return float("nan"), 1.0

    rho = float(scipy.stats.spearmanr(depths, lags).statistic)
    # Spearman rho is the Pearson r of ranks; permuting the layer order
    # permutes the lag ranks, and their norm does not change.
    rd, rl = _centred_ranks(depths), _centred_ranks(lags)
    norm = np.sqrt((rd @ rd) * (rl @ rl))
    rho_obs = float(rd @ rl / norm)
    if math.factorial(n) <= n_perm:
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.intp)
        count = int(np.count_nonzero(rl[perms] @ rd / norm >= rho_obs - _RHO_TOL))
        return rho, count / len(perms)
    rng = np.random.default_rng(seed)
    count = 0
    for b0 in range(0, n_perm, 4096):  # bounded memory for many layers
        nb = min(4096, n_perm - b0)
        perms = rng.permuted(np.tile(np.arange(n), (nb, 1)), axis=1)
        count += int(np.count_nonzero(rl[perms] @ rd / norm >= rho_obs - _RHO_TOL))
    return rho, (1 + count) / (n_perm + 1)
