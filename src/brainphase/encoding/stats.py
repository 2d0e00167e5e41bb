"""Scores and significance for voxelwise encoding models."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse
import scipy.stats

# Relative tolerance under which a column's std counts as zero. float32 data
# that are constant in exact arithmetic keep a std ~1e-8 of their magnitude.
DEFAULT_CONSTANT_RTOL = 1e-6

# Elements of the (block x block x voxel) table built at once.
_MAX_BLOCK_TABLE = 2**22


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def constant_columns(Y: np.ndarray, tol: float = DEFAULT_CONSTANT_RTOL, block: int = 1024) -> np.ndarray:
    """Boolean mask of columns that are (numerically) constant.

    A column is constant when its std is at most ``tol * max(1, max|column|)``
    (relative for large values, absolute near zero), or when it holds a
    non-finite value (it cannot be scored either). Columns are checked
    ``block`` at a time, so the float64 temporaries stay small whatever the
    number of voxels.
    """
    Y = np.asarray(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    out = np.empty(Y.shape[1], dtype=bool)
    for start in range(0, Y.shape[1], block):
        cols = slice(start, start + block)
        y = np.asarray(Y[:, cols], dtype=np.float64)
        if y.shape[0] == 0:
            out[cols] = True
            continue
        finite = np.isfinite(y).all(axis=0)
        safe = np.where(np.isfinite(y), y, 0.0)
        scale = np.maximum(1.0, np.abs(safe).max(axis=0))
        out[cols] = ~finite | (safe.std(axis=0) <= tol * scale)
    return out


def _standardise(A: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred and scaled to unit population std; constant columns flagged."""
    const = constant_columns(A, tol)
    centred = A - A.mean(axis=0)
    std = centred.std(axis=0)
    z = np.divide(centred, std, out=np.zeros_like(centred), where=~const)
    return z, const


def pearson_columns(A: np.ndarray, B: np.ndarray, tol: float = DEFAULT_CONSTANT_RTOL) -> np.ndarray:
    """Pearson r between matching columns of ``A`` and ``B``.

    r is NaN where either column is constant (see :func:`constant_columns`):
    correlation is undefined there, and reporting 0 would silently bias mean
    r over voxels. Callers exclude NaN voxels explicitly.

    Returns
    -------
    array (n_columns,), float64
    """
    A, B = _as_2d(A), _as_2d(B)
    if A.shape != B.shape:
        raise ValueError(f"shape mismatch {A.shape} vs {B.shape}")
    za, ca = _standardise(A, tol)
    zb, cb = _standardise(B, tol)
    r = np.einsum("tv,tv->v", za, zb) / A.shape[0]
    r = np.clip(r, -1.0, 1.0)
    r[ca | cb] = np.nan
    return r


def _block_permutations(n_blocks: int, n_perm: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_perm, n_blocks)), axis=1)


def block_permutation_pvalues(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_perm: int = 1000,
    block_size: int = 10,
    seed: int = 0,
    tol: float = DEFAULT_CONSTANT_RTOL,
    return_null: bool = False,
):
    """One-sided block-permutation p-values of the per-voxel Pearson r.

    The measured series is cut into consecutive blocks of ``block_size`` TRs
    whose order is permuted (the same permutation for all voxels in a draw),
    keeping within-block autocorrelation. p = (1 + #{r_perm >= r}) /
    (1 + n_perm). When the length is not a multiple of ``block_size``, the
    trailing partial block stays in place (it cannot swap with full blocks
    without shifting them), which makes p slightly conservative.

    Each r_perm is a sum of block-by-block dot products: the table of all
    (prediction block, measured block) products is computed once per voxel
    chunk, and all draws are one sparse selection from it (n_blocks
    additions per voxel and draw instead of n_TR multiply-adds).

    Returns
    -------
    r : array (n_voxels,), observed r (NaN for constant columns)
    p : array (n_voxels,), NaN where r is NaN
    null : array (n_perm, n_voxels), only if ``return_null``
    """
    y_true, y_pred = _as_2d(y_true), _as_2d(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch {y_true.shape} vs {y_pred.shape}")
    n_t, n_v = y_true.shape
    block_size = int(block_size)
    n_blocks = n_t // block_size
    if n_blocks < 2:
        raise ValueError(f"need at least 2 blocks of {block_size} TRs, got {n_t} TRs")
    zt, ct = _standardise(y_true, tol)
    zp, cp = _standardise(y_pred, tol)
    bad = ct | cp
    perms = _block_permutations(n_blocks, n_perm, seed)

    n_full = n_blocks * block_size
    # Row 0 is the identity: r and every r_perm come out of the same sparse
    # product, so a draw that happens to be the identity ties r exactly.
    orders = np.vstack([np.arange(n_blocks), perms])
    cols = (np.arange(n_blocks)[None, :] * n_blocks + orders).ravel()
    rows = np.repeat(np.arange(n_perm + 1), n_blocks)
    select = scipy.sparse.csr_matrix(
        (np.ones(cols.size), (rows, cols)), shape=(n_perm + 1, n_blocks * n_blocks)
    )
    sums = np.empty((n_perm + 1, n_v))
    chunk = max(1, _MAX_BLOCK_TABLE // (n_blocks * n_blocks))
    for start in range(0, n_v, chunk):
        sl = slice(start, start + chunk)
        pb = zp[:n_full, sl].reshape(n_blocks, block_size, -1)
        tb = zt[:n_full, sl].reshape(n_blocks, block_size, -1)
        # table[b, c, v] = <prediction block b, measured block c> for voxel v
        table = np.einsum("bsv,csv->bcv", pb, tb, optimize=True)
        tail = np.einsum("tv,tv->v", zp[n_full:, sl], zt[n_full:, sl])
        sums[:, sl] = select @ table.reshape(n_blocks * n_blocks, -1) + tail
    r, null = sums[0], sums[1:]
    r /= n_t
    null /= n_t
    p = (1.0 + (null >= r).sum(axis=0)) / (1.0 + n_perm)
    r[bad] = np.nan
    p[bad] = np.nan
    if return_null:
        null[:, bad] = np.nan
        return r, p, null
    return r, p


def fdr_bh(pvalues: np.ndarray, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini–Hochberg q-values and the mask of voxels significant at ``q``.

    NaN p-values (excluded voxels) are left out of the correction, get NaN
    q-values and are never significant.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    qvalues = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        qvalues[ok] = scipy.stats.false_discovery_control(p[ok], method="bh")
    significant = np.zeros(p.shape, dtype=bool)
    significant[ok] = qvalues[ok] <= q
    return qvalues, significant


class NoiseCeiling(NamedTuple):
    ev: np.ndarray  # explainable variance, uncorrected
    ev_corrected: np.ndarray  # ev - (1 - ev) / (n_repeats - 1)
    r_ceiling: np.ndarray  # sqrt(clip(ev_corrected, 0, 1)): max expected Pearson r


def noise_ceiling(repeats: np.ndarray) -> NoiseCeiling:
    """Explainable variance of repeated presentations, per voxel.

    ``ev = var_t(mean over repeats) / mean over repeats(var_t)`` with the
    small-sample correction ``ev - (1 - ev) / (n_repeats - 1)``, as in
    voxelwise_tutorials ``explainable_variance`` and brain-score. Variances
    are population variances over time. Voxels constant in every repeat get NaN.

    Parameters
    ----------
    repeats : array (n_repeats, n_times, n_voxels), n_repeats >= 2
    """
    data = np.asarray(repeats, dtype=np.float64)
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3 or data.shape[0] < 2:
        raise ValueError("repeats must be (n_repeats >= 2, n_times, n_voxels)")
    n_rep = data.shape[0]
    mean_var = data.var(axis=1).mean(axis=0)
    var_mean = data.mean(axis=0).var(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ev = np.where(mean_var > 0, var_mean / mean_var, np.nan)
    ev_corrected = ev - (1.0 - ev) / (n_rep - 1)
    r_ceiling = np.sqrt(np.clip(ev_corrected, 0.0, 1.0))
    return NoiseCeiling(ev, ev_corrected, r_ceiling)


# --------------------------------------------------------------------------- TR-block bootstrap
def block_edges(n_t: int, block_size: int) -> np.ndarray:
    """Start indices of consecutive blocks of ``block_size`` TRs, plus ``n_t``.

    A trailing partial block is a block of its own (shorter), so no TR is lost.
    """
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    starts = np.arange(0, n_t, block_size)
    return np.append(starts, n_t)


def block_bootstrap_draws(n_blocks: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_blocks) block indices drawn with replacement.

    A function of (n_blocks, n_boot, seed) alone: every checkpoint of a
    subject has the same test TRs, so it gets the same draws, and the
    replicates are paired across checkpoints. The stream is separate from the
    permutations' (which use the same seed).
    """
    rng = np.random.default_rng([int(seed), 0xB007])
    return rng.integers(0, n_blocks, size=(int(n_boot), int(n_blocks)))


def _block_sums(zt: np.ndarray, zp: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per block and voxel: n, sum pred, sum obs, sum pred^2, sum obs^2, sum pred*obs -> (6, n_blocks, n_voxels)."""
    idx = edges[:-1]
    n = np.diff(edges).astype(np.float64)
    out = np.empty((6, len(idx), zt.shape[1]))
    out[0] = n[:, None]
    for i, a in enumerate((zp, zt, zp * zp, zt * zt, zp * zt), start=1):
        out[i] = np.add.reduceat(a, idx, axis=0)
    return out


def _r_from_sums(s: np.ndarray) -> np.ndarray:
    """Pearson r from the six pooled sums (leading axis); NaN where either side is constant."""
    n, sp, so, spp, soo, spo = s
    cov = n * spo - sp * so
    vp = n * spp - sp * sp
    vo = n * soo - so * so
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(vp * vo)
    # Relative to n^2 (the variances of z-scores are ~1 per TR), a resampled
    # set of blocks that is constant leaves rounding noise only.
    bad = (vp <= 1e-12 * n * n) | (vo <= 1e-12 * n * n)
    return np.where(bad, np.nan, np.clip(r, -1.0, 1.0))


def block_bootstrap_r(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    block_size: int,
    n_boot: int,
    seed: int = 0,
    draws: np.ndarray | None = None,
    tol: float = DEFAULT_CONSTANT_RTOL,
) -> np.ndarray:
    """Per-voxel test r of TR-block bootstrap replicates: (n_boot, n_voxels).

    The test series is cut into consecutive blocks of ``block_size`` TRs
    (see :func:`block_edges`); a replicate draws as many blocks with
    replacement (:func:`block_bootstrap_draws`, or ``draws``) and computes r
    on their concatenation. Blocks keep the autocorrelation of BOLD within
    them; resampling voxels instead would treat voxels that share the
    stimulus-driven time course as independent and give intervals far too
    narrow. r is recomputed from per-block sums, so a replicate costs one
    small matrix product, not a pass over the TRs. Columns are z-scored
    first (r is unchanged; the sums stay well-conditioned). NaN for voxels
    constant in the data (see :func:`constant_columns`) or in a replicate.
    """
    y_true, y_pred = _as_2d(y_true), _as_2d(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch {y_true.shape} vs {y_pred.shape}")
    edges = block_edges(y_true.shape[0], block_size)
    n_blocks = len(edges) - 1
    if n_blocks < 2:
        raise ValueError(f"need at least 2 blocks of {block_size} TRs, got {y_true.shape[0]} TRs")
    if draws is None:
        draws = block_bootstrap_draws(n_blocks, n_boot, seed)
    draws = np.asarray(draws, dtype=int)
    counts = np.stack([np.bincount(d, minlength=n_blocks) for d in draws]).astype(np.float64)
    zt, ct = _standardise(y_true, tol)
    zp, cp = _standardise(y_pred, tol)
    sums = _block_sums(zt, zp, edges)  # (6, n_blocks, n_voxels)
    r = _r_from_sums(np.einsum("bk,qkv->qbv", counts, sums, optimize=True))
    r[:, ct | cp] = np.nan
    return r


def block_bootstrap_mean_r(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    block_size: int,
    n_boot: int,
    seed: int = 0,
    voxels: np.ndarray | None = None,
    chunk: int = 4096,
) -> np.ndarray:
    """(n_boot,) mean over voxels of the TR-block bootstrap r (see :func:`block_bootstrap_r`).

    ``voxels``: boolean mask of the voxels averaged (default: those with a
    finite r on the full data). Voxels are processed in chunks, so the
    per-block sums (6 x blocks x chunk) are the largest array held. Voxels
    whose r is undefined in a replicate are left out of that replicate's mean.
    """
    total, count = block_bootstrap_totals(y_true, y_pred, block_size, n_boot, seed, voxels, chunk)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def block_bootstrap_totals(y_true, y_pred, block_size: int, n_boot: int, seed: int = 0,
                           voxels: np.ndarray | None = None, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate, the sum of the finite bootstrap r over voxels and their count: (n_boot,), (n_boot,).

    The draws depend on (test length, ``block_size``, ``n_boot``, ``seed``)
    only, so the totals of disjoint sets of voxels add up to those of their
    union: a subject's voxels can be scored chunk by chunk.
    """
    y_true, y_pred = _as_2d(y_true), _as_2d(y_pred)
    n_t, n_v = y_true.shape
    n_blocks = len(block_edges(n_t, block_size)) - 1
    draws = block_bootstrap_draws(n_blocks, n_boot, seed)
    mask = np.ones(n_v, dtype=bool) if voxels is None else np.asarray(voxels, dtype=bool)
    total = np.zeros(int(n_boot))
    count = np.zeros(int(n_boot))
    for start in range(0, n_v, chunk):
        sl = slice(start, start + chunk)
        keep = mask[sl]
        if not keep.any():
            continue
        r = block_bootstrap_r(y_true[:, sl][:, keep], y_pred[:, sl][:, keep], block_size, n_boot, draws=draws)
        ok = np.isfinite(r)
        total += np.where(ok, r, 0.0).sum(axis=1)
        count += ok.sum(axis=1)
    return total, count
