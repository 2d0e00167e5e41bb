"""Bring word- or annotation-level features onto the fMRI TR grid."""

from __future__ import annotations

import numpy as np

# Rows of the kernel matrix built at once; bounds memory for long stimuli
# (n_new x n_old float64 would be ~1 GB for 4000 TRs x 30000 words).
_MAX_KERNEL_ELEMENTS = 2**23


def lanczos_kernel(x: np.ndarray, window: int = 3) -> np.ndarray:
    """Lanczos kernel ``window sin(pi x) sin(pi x / window) / (pi^2 x^2)``.

    ``x`` is the time difference in units of the cutoff period. The kernel is
    1 at ``x == 0`` and 0 for ``|x| > window``, as in Huth et al.'s
    ``lanczosfun``.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = window * np.sin(np.pi * x) * np.sin(np.pi * x / window) / (np.pi**2 * x**2)
    val[x == 0] = 1.0
    val[np.abs(x) > window] = 0.0
    return val


def lanczos_resample(
    data: np.ndarray,
    old_times: np.ndarray,
    new_times: np.ndarray,
    window: int = 3,
    cutoff_mult: float = 1.0,
) -> np.ndarray:
    """Lanczos-interpolate ``data`` sampled at ``old_times`` onto ``new_times``.

    Same as ``interpdata.lanczosinterp2D`` (Huth et al. 2016; LeBel et al.
    2023): cutoff = ``cutoff_mult / mean(diff(new_times))`` and each new
    sample is the kernel-weighted *sum* (not mean) of the old samples, so a
    TR with more words gets a larger feature vector, as in the original.

    Parameters
    ----------
    data : array (n_old,) or (n_old, n_features)
        One row per word; word time = (onset + offset) / 2, computed by the caller.
    old_times : array (n_old,)
    new_times : array (n_new,)
        TR times (at least two, so the cutoff is defined).

    Returns
    -------
    array (n_new,) or (n_new, n_features), float64
    """
    data = np.asarray(data, dtype=np.float64)
    old_times = np.asarray(old_times, dtype=np.float64)
    new_times = np.asarray(new_times, dtype=np.float64)
    if data.shape[0] != old_times.shape[0]:
        raise ValueError(f"data has {data.shape[0]} rows but old_times has {old_times.shape[0]}")
    if new_times.ndim != 1 or new_times.size < 2:
        raise ValueError("new_times must be 1-D with at least two samples")
    cutoff = cutoff_mult / np.mean(np.diff(new_times))

    out = np.zeros((new_times.size,) + data.shape[1:], dtype=np.float64)
    rows = max(1, _MAX_KERNEL_ELEMENTS // max(1, old_times.size))
    for start in range(0, new_times.size, rows):
        dt = new_times[start : start + rows, None] - old_times[None, :]
        out[start : start + rows] = lanczos_kernel(dt * cutoff, window) @ data
    return out


def overlap_mean(
    data: np.ndarray,
    onsets: np.ndarray,
    offsets: np.ndarray,
    tr_times: np.ndarray,
    tr: float,
) -> np.ndarray:
    """Mean of the annotation units that overlap each TR; 0 where none does.

    TR ``i`` covers ``[tr_times[i] - tr/2, tr_times[i] + tr/2)``: ``tr_times``
    are TR centres, as in Huth/LeBel (trigger time + TR/2). A unit
    ``[onset, offset)`` overlaps a TR when the intervals intersect with
    positive length; a zero-length unit counts for the TR containing its onset.

    Parameters
    ----------
    data : array (n_units,) or (n_units, n_features)
    onsets, offsets : arrays (n_units,), seconds
    tr_times : array (n_tr,), seconds
    tr : float, seconds

    Returns
    -------
    array (n_tr,) or (n_tr, n_features), float64
    """
    data = np.asarray(data, dtype=np.float64)
    onsets = np.asarray(onsets, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    tr_times = np.asarray(tr_times, dtype=np.float64)
    if not (data.shape[0] == onsets.size == offsets.size):
        raise ValueError("data, onsets and offsets must have the same number of units")
    if np.any(offsets < onsets):
        raise ValueError("offsets must not precede onsets")
    start = tr_times[:, None] - tr / 2
    stop = tr_times[:, None] + tr / 2
    on, off = onsets[None, :], offsets[None, :]
    overlaps = (on < stop) & (off > start)
    point = (on == off) & (on >= start) & (on < stop)
    weights = (overlaps | point).astype(np.float64)
    counts = weights.sum(axis=1)
    summed = weights @ data
    counts = counts.reshape((-1,) + (1,) * (data.ndim - 1))
    return np.divide(summed, counts, out=np.zeros_like(summed), where=counts > 0)
