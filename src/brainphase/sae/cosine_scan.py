"""Cosines between two dictionaries in float32 row chunks, and the strongest pairs of each row and column.

The first pass of :mod:`brainphase.sae.assignment`: it computes every cosine
once, in chunks of rows, and keeps only each row's and each column's K largest,
whose K-th values bound everything dropped. Top-K selection avoids sorting
rows: a lower bound from group maxima (:func:`group_floor`) leaves a few
entries per row or column to sort.
"""

from __future__ import annotations

import logging

import numpy as np

from ..progress import Progress

logger = logging.getLogger(__name__)

SUB = 64  # rows per block of the per-element work (masks, float64 reduced costs)


class Cosines:
    """Cosines between the rows of A (n_a × d) and B (n_b × d): float32 blocks and exact float64 pairs."""

    def __init__(self, A: np.ndarray, B: np.ndarray):
        if A.shape[1] != B.shape[1]:
            raise ValueError(f"decoders live in different spaces: d = {A.shape[1]} vs {B.shape[1]}")
        self.A, self.B = A, B
        self.A32 = A if A.dtype == np.float32 else A.astype(np.float32)
        self.B32 = B if B.dtype == np.float32 else B.astype(np.float32)
        self.inv_a, self.inv_b = _inverse_norms(A), _inverse_norms(B)
        self.inv_a32, self.inv_b32 = self.inv_a.astype(np.float32), self.inv_b.astype(np.float32)
        # |cos32 − cos64| ≤ γ_d ≈ d·u for the float32 dot product of unit-norm-scaled vectors in
        # any summation order, plus the rounding of float64 inputs and of the two scalings:
        # (d + 6)·u, doubled for safety; it also covers the 10⁻¹⁰ misorder of _top_per_group.
        self.err = 2.0 * (A.shape[1] + 6) * 2.0**-24

    def block(self, r0: int, r1: int) -> np.ndarray:
        return self.rows(slice(r0, r1))

    def rows(self, idx) -> np.ndarray:
        """Float32 cosines of rows ``idx`` (a slice or indices) with every row of B."""
        C = self.A32[idx] @ self.B32.T
        C *= self.inv_a32[idx, None]
        C *= self.inv_b32[None, :]
        return C

    def exact(self, rows: np.ndarray, cols: np.ndarray, per: int = 2**22) -> np.ndarray:
        """Float64 cosine of each (row, col) pair, as the dense matrix would hold it."""
        out = np.empty(len(rows))
        step = max(1, per // (8 * self.A.shape[1]))
        for e0 in range(0, len(rows), step):
            a = self.A[rows[e0:e0 + step]].astype(np.float64, copy=False)
            b = self.B[cols[e0:e0 + step]].astype(np.float64, copy=False)
            out[e0:e0 + step] = np.einsum("ij,ij->i", a, b)
        out *= self.inv_a[rows] * self.inv_b[cols]
        return np.clip(out, -1.0, 1.0, out=out)


def _inverse_norms(X: np.ndarray, step: int = 4096) -> np.ndarray:
    norms = np.concatenate([np.sqrt(np.einsum("ij,ij->i", x, x)) for x in
                            (X[i:i + step].astype(np.float64) for i in range(0, len(X), step))] or [np.zeros(0)])
    out = np.zeros_like(norms)
    np.divide(1.0, norms, out=out, where=norms > 0)
    return out


def _top_per_group(groups: np.ndarray, values: np.ndarray, ids: np.ndarray, K: int, kind: str = "quicksort"):
    """Positions of the K largest values of each group in ``ids`` (each holding ≥ K), largest first.

    One argsort of the key group·span + (max − value) instead of a two-key sort: five times
    faster. Its float64 rounding can misorder values closer than 2⁻⁵²·span·n_groups (< 10⁻¹⁰
    here), far below the float32 error ``Cosines.err`` that every bound built on them adds anyway.
    ``kind="stable"`` merges in linear time when the input is a few sorted runs.
    """
    if not len(values):
        return np.zeros(0, np.int64)
    v = values.astype(np.float64)
    hi = v.max()
    order = np.argsort(groups * (hi - v.min() + 1.0) + (hi - v), kind=kind)
    starts = np.searchsorted(groups[order], ids)
    return order[(starts[:, None] + np.arange(K)).ravel()]


def row_top(S: np.ndarray, K: int, thr: np.ndarray | None = None):
    """Each row's K largest entries (values, columns; largest first), and the entries that clear
    the row's bound or, if given, the column threshold ``thr`` (rows, columns, values)."""
    tau = group_floor(S, K, axis=1)
    if tau is None:
        tau = np.full(len(S), S.min() - 1, S.dtype)
    mask = S >= tau[:, None]
    if thr is not None:
        mask |= S >= thr[None, :]
    flat = np.flatnonzero(mask)
    ri, cj = np.divmod(flat, S.shape[1])
    v = S.ravel()[flat]
    mine = v >= tau[ri]
    pick = _top_per_group(ri[mine], v[mine], np.arange(len(S)), K)
    return v[mine][pick].reshape(len(S), K), cj[mine][pick].reshape(len(S), K), (ri, cj, v)


def group_floor(X: np.ndarray, K: int, axis: int) -> np.ndarray | None:
    """A lower bound on the K-th largest value along ``axis``, without sorting.

    Split the axis into 4K groups: the K-th largest group maximum is ≤ the K-th largest value
    (K groups each hold a value at least that large), and few values clear it.
    """
    n = X.shape[axis]
    g = n // (4 * K)
    if g < 1:
        return None
    if axis == 1:
        gmax = X[:, :4 * K * g].reshape(len(X), 4 * K, g).max(axis=2)
    else:
        gmax = X[:4 * K * g].reshape(4 * K, g, X.shape[1]).max(axis=1)
    return np.partition(gmax, 3 * K, axis=axis).take(3 * K, axis=axis)


class ColumnTop:
    """Running K largest entries of every column over the row blocks seen so far, largest first."""

    def __init__(self, n: int, K: int):
        self.K = K
        self.vals = np.full((n, K), -2.0, np.float32)  # below every cosine: any entry displaces it
        self.rows = np.full((n, K), -1, np.int64)
        self.pending: list[tuple] = []
        self.n_pending = 0

    @property
    def threshold(self) -> np.ndarray:
        return self.vals[:, -1]

    def offer(self, cj: np.ndarray, v: np.ndarray, rows: np.ndarray) -> None:
        """Queue entries; they are merged when as many wait as are kept (a merge costs as much as
        the kept lists), so the number of merges grows with the log of the number of blocks."""
        self.pending.append((cj, v, rows))
        self.n_pending += len(cj)
        if self.n_pending > self.vals.size:
            self.merge()

    def merge(self) -> None:
        if not self.pending:
            return
        cj, v, r = (np.concatenate(x) for x in zip(*self.pending))
        self.pending, self.n_pending = [], 0
        U = np.flatnonzero(np.bincount(cj, minlength=len(self.vals)))
        new = np.argsort(cj * 4.0 + (1.0 - v.astype(np.float64)))
        # Kept lists are sorted, so are the queued entries now: the stable sort below is a merge.
        allc = np.concatenate([np.repeat(U, self.K), cj[new]])
        allv = np.concatenate([self.vals[U].ravel(), v[new]])
        allr = np.concatenate([self.rows[U].ravel(), r[new]])
        pick = _top_per_group(allc, allv, U, self.K, kind="stable")
        self.vals[U] = allv[pick].reshape(len(U), self.K)
        self.rows[U] = allr[pick].reshape(len(U), self.K)


def scan(cos: Cosines, K: int, rows_per_chunk: int):
    """First pass: every row's and every column's K strongest pairs, strongest first.

    Returns (row_vals, row_cols) of shape (n_a, K) and (col_vals, col_rows) of shape (n_b, K),
    K clipped to the other side's size; float32 cosines. Per block of rows, one mask keeps the
    entries that clear the row's bound (:func:`group_floor`) or the column's running K-th value.
    """
    n_a, n_b = len(cos.A), len(cos.B)
    Kr, Kc = min(K, n_b), min(K, n_a)
    row_vals = np.empty((n_a, Kr), np.float32)
    row_cols = np.empty((n_a, Kr), np.int64)
    top = ColumnTop(n_b, Kc)
    progress = Progress(logger, "cosine scan", n_a, "latents")
    for r0 in range(0, n_a, rows_per_chunk):
        C = cos.block(r0, min(n_a, r0 + rows_per_chunk))
        thr = top.threshold
        if r0 == 0 and (floor := group_floor(C, Kc, axis=0)) is not None:
            thr = np.maximum(thr, floor)
        for s0 in range(0, len(C), SUB):
            S = C[s0:s0 + SUB]
            rows = slice(r0 + s0, r0 + s0 + len(S))
            row_vals[rows], row_cols[rows], (ri, cj, v) = row_top(S, Kr, thr)
            theirs = v >= thr[cj]
            top.offer(cj[theirs], v[theirs], ri[theirs] + r0 + s0)
        del C, S  # before the next block is computed, or two blocks are held at once
        progress.update(min(n_a, r0 + rows_per_chunk) - r0)
    top.merge()
    return row_vals, row_cols, top.vals, top.rows
