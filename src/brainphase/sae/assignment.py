"""Exact maximum-cosine assignment between two dictionaries without the dense cosine matrix.

The dense route (every cosine, then the Hungarian algorithm) needs
16·n_a·n_b bytes: 69 GB at 65,536 latents a side. Here the cosines are
computed once, in float32 row chunks (:mod:`brainphase.sae.cosine_scan`), and
only a reserve of the RESERVE strongest pairs of every row and every column is
kept, with the last kept value of each row (``rt``) and column (``ct``) as a
bound on everything dropped. The assignment is solved on a sparse candidate
graph (``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` with
weights 2 − cos ∈ [1, 3]: no weight is 0, and the matching size being fixed at
min(n_a, n_b), the least total weight is the largest total cosine), then
proved optimal on the dense problem by an LP-dual certificate, and repaired
where the proof fails:

* potentials d under which every edge of the residual graph of the sparse
  matching has reduced cost 2 − cos + d_i − d_j ≥ 0 (rows, columns and one node
  standing for the n_b − n_a dummy rows of the square extension). They exist
  because the matching is optimal on its graph (no negative cycle), and
  label-correcting relaxation finds them (:func:`potentials`). scipy's
  ``shortest_path(method="BF")`` gives the same distances but took 3.6, 19 and
  63 s at 4,096, 8,192 and 16,384 latents a side (8 candidates per latent; ~17
  min at 65,536), the relaxation, all edges at once in numpy, 0.1, 0.2 and 0.7 s;
* the matching is optimal on the dense problem iff no pair outside the graph
  has a negative reduced cost. Reserve pairs are priced with their float32
  cosine widened by ``Cosines.err``, a bound on |cos32 − cos64|; every other
  pair is bounded by min(rt_i, ct_j) + err, checked for all pairs at once by
  sorting the columns by d (:func:`suspects`); the rows this bound cannot
  clear are scanned again against every column (:func:`rescan`). A pair that
  may violate joins the candidates with its exact cosine and the graph is
  solved again; the loop ends when a check finds none, and it ends because
  the candidates only grow. A graph without a full matching is completed with
  arbitrary pairs first (:func:`solve`).

Exactness rests on the certificate, not on the candidate choice: every pair
left out has a float64 reduced cost ≥ ``TOL`` > 0, every candidate ≥ −10⁻¹²,
and candidate weights are float64 cosines computed from the inputs. So the
result is the optimum of the float64 cosine matrix, the one the dense
Hungarian algorithm finds (ties closer than 10⁻⁹ aside). The work is one
float32 pass over all pairs plus passes over the rows rescanned, a few solves
of the sparse graph, and no memory that grows with n_a·n_b.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_bipartite_matching, min_weight_full_bipartite_matching

from .cosine_scan import SUB, Cosines, row_top, scan

RESERVE = 64  # strongest pairs kept per row and per column from the first pass
SEED = 8  # of which the strongest form the first candidate graph
RESCAN = 128  # pairs of least reduced cost kept per row when a row is scanned again
TOL = 1e-9  # a pair whose reduced cost may be below this joins the candidates
MAX_CHUNK = 2048  # rows per float32 block: larger gains nothing in the matrix product
EDGE_BYTES = 160  # per candidate edge: pair arrays, CSR copies, sort and relaxation temporaries
PAIR_BYTES = 48  # per reserve pair: (row, col, cos32) and the copies made when merging


def expected_edges(n_a: int, n_b: int) -> int:
    """Candidate edges the budget plans for: twice the most seen (8 per latent, on random decoders)."""
    return 2 * SEED * (n_a + n_b)


def fixed_bytes(n_a: int, n_b: int, d: int) -> int:
    """Memory held whatever the chunk size: float32 inputs, reserve, candidate graph, per-block temporaries."""
    inputs = 4 * d * (n_a + n_b)
    reserve = PAIR_BYTES * (RESERVE * (n_a + n_b) + RESCAN * n_a)
    block = SUB * max(n_a, n_b) * (8 + 8 + 4 + 4 + 3) + 2**23  # float64 reduced costs, masks; exact-pair batches
    return inputs + reserve + EDGE_BYTES * expected_edges(n_a, n_b) + block


def chunk_rows(n_a: int, n_b: int, d: int, budget_bytes: int | None) -> int:
    """Rows of float32 cosines computed at once: as many as the budget leaves room for (64 at least)."""
    n_a, n_b = min(n_a, n_b), max(n_a, n_b)
    if budget_bytes is None:
        return min(MAX_CHUNK, max(n_a, 1))
    rows = (budget_bytes - fixed_bytes(n_a, n_b, d)) // (4 * n_b)
    if rows < SUB:
        need = fixed_bytes(n_a, n_b, d) + 4 * n_b * SUB
        raise ValueError(f"matching {n_a} x {n_b} latents (d = {d}) needs at least {need / 2**30:.2f} GiB; "
                         f"the budget is {budget_bytes / 2**30:.2f} GiB: raise the job's mem_mb")
    return int(min(rows, MAX_CHUNK, max(n_a, SUB)))


def assignment_peak_bytes(n_a: int, n_b: int, d: int, budget_bytes: int | None) -> int:
    """Peak bytes of :func:`max_cosine_assignment` on float32 inputs, the inputs included."""
    rows = chunk_rows(n_a, n_b, d, budget_bytes)
    return fixed_bytes(min(n_a, n_b), max(n_a, n_b), d) + 4 * max(n_a, n_b) * rows


class Pairs:
    """A set of (row, col) pairs, kept as sorted keys row·n_cols + col, each with a value."""

    def __init__(self, n_cols: int, dtype=np.float64):
        self.n_cols = n_cols
        self.keys = np.zeros(0, np.int64)
        self.vals = np.zeros(0, dtype)

    @property
    def rows(self) -> np.ndarray:
        return self.keys // self.n_cols

    @property
    def cols(self) -> np.ndarray:
        return self.keys % self.n_cols

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Position of each key, −1 where absent."""
        pos = np.searchsorted(self.keys, keys)
        hit = pos < len(self.keys)
        hit[hit] = self.keys[pos[hit]] == keys[hit]
        return np.where(hit, pos, -1)

    def add(self, keys: np.ndarray, vals: np.ndarray) -> None:
        """Add pairs not yet present (``keys`` unique)."""
        new = np.argsort(keys, kind="stable")
        keys = np.concatenate([self.keys, keys[new]])
        order = np.argsort(keys, kind="stable")  # a merge of two sorted runs
        self.keys, self.vals = keys[order], np.concatenate([self.vals, vals[new]])[order]

    def drop(self, mask: np.ndarray) -> None:
        self.keys, self.vals = self.keys[~mask], self.vals[~mask]


def _new_candidates(cand: Pairs, reserve: Pairs, cos: Cosines, keys: np.ndarray) -> int:
    """Make the pairs ``keys`` candidates (exact cosines), taking them out of the reserve; how many were new."""
    keys = np.unique(keys)
    keys = keys[cand.find(keys) < 0]
    if len(keys):
        cand.add(keys, cos.exact(keys // cand.n_cols, keys % cand.n_cols))
        pos = reserve.find(keys)
        if (pos >= 0).any():
            mask = np.zeros(len(reserve.keys), bool)
            mask[pos[pos >= 0]] = True
            reserve.drop(mask)
    return len(keys)


def solve(n_a: int, n_b: int, cand: Pairs, reserve: Pairs, cos: Cosines) -> np.ndarray:
    """Column of each row in the least-weight full matching of the candidate graph.

    When the graph has no full matching, a maximum matching is completed with arbitrary pairs
    (rows left over to columns left over); the certificate then replaces them where they are not optimal.
    """
    while True:
        g = sp.csr_matrix((2.0 - cand.vals, (cand.rows, cand.cols)), shape=(n_a, n_b))
        try:
            return min_weight_full_bipartite_matching(g)[1]
        except ValueError:
            match = maximum_bipartite_matching(g, perm_type="column")
            rows = np.flatnonzero(match < 0)
            cols = np.setdiff1d(np.arange(n_b), match[match >= 0])[:len(rows)]
            if not len(rows):
                raise
            _new_candidates(cand, reserve, cos, rows * n_b + cols)


def potentials(n_a: int, n_b: int, cand: Pairs, mcol: np.ndarray, start=None) -> tuple[np.ndarray, np.ndarray]:
    """Potentials (rows, columns) under which every residual edge has reduced cost ≥ 0.

    Residual edges: row → col of weight w = 2 − cos for unmatched candidates, matched col → row of
    weight −w, free col → dummy and dummy → col of weight 0. Label-correcting relaxation
    (d_v ← min(d_v, d_u + w_uv), all edges at once) from ``start``, or from d = 0, the distances
    from a virtual source with 0-weight edges to every node, converges without a negative cycle
    (the matching is optimal on these edges) in at most one pass per node; in practice in ~100.
    """
    rows, cols, w = cand.rows, cand.cols, 2.0 - cand.vals
    matched = mcol[rows] == cols
    w_match = np.empty(n_a)
    w_match[rows[matched]] = w[matched]
    order = np.argsort(cols[~matched], kind="stable")
    ur, uc, uw = rows[~matched][order], cols[~matched][order], w[~matched][order]
    starts = np.flatnonzero(np.r_[True, uc[1:] != uc[:-1]]) if len(uc) else np.zeros(0, np.int64)
    has_in = uc[starts]
    free = np.ones(n_b, bool)
    free[mcol] = False
    if start is None:
        d_row, d_col, d_dummy = np.zeros(n_a), np.zeros(n_b), 0.0
    else:
        d_row, d_col = start
        d_dummy = d_col.max()
    for _ in range(n_a + n_b + 2):
        new_col = d_col.copy()
        if len(uc):
            new_col[has_in] = np.minimum(new_col[has_in], np.minimum.reduceat(d_row[ur] + uw, starts))
        if free.any():
            np.minimum(new_col, d_dummy, out=new_col)
            d_dummy = min(d_dummy, new_col[free].min())
        new_row = np.minimum(d_row, new_col[mcol] - w_match)
        change = max((d_col - new_col).max(initial=0.0), (d_row - new_row).max(initial=0.0))
        d_row, d_col = new_row, new_col
        if change <= 1e-12:  # rounding can leave cycles of −1e−16: they are ties, not improvements
            return d_row, d_col
    raise RuntimeError("residual graph has a negative cycle: the sparse matching was not optimal")


def suspects(d_row, d_col, rt, ct, err: float, records: list) -> np.ndarray:
    """Rows that may hold a pair outside the candidates and the reserve with reduced cost < TOL.

    Such a pair has cos ≤ min(rt_i, ct_j) + err, so it can violate only if d_j ≥ a_i and
    d_j + ct_j ≥ b_i (below): one sort of the columns by d answers it for every row. A row
    scanned again is also cleared by its record: every pair not kept then had reduced cost
    ≥ ρ_i under the potentials of that time, so it still has ≥ ρ_i − err + Δd_i − max_j Δd_j.
    """
    a = d_row + 2.0 - err - TOL - rt
    b = d_row + 2.0 - err - TOL
    order = np.argsort(d_col)
    reach = np.maximum.accumulate((d_col + ct)[order][::-1])[::-1]
    reach = np.append(reach, -np.inf)
    bad = reach[np.searchsorted(d_col[order], a, side="left")] >= b
    for rows, d0_row, rho, d0_col in records:
        shift = (d_col - d0_col).max()
        bad[rows[rho - err - 2 * TOL + (d_row[rows] - d0_row) - shift >= 0]] = False
    return np.flatnonzero(bad)


def rescan(cos: Cosines, rows: np.ndarray, d_row, d_col, cand: Pairs, reserve: Pairs, per_chunk: int):
    """Scan ``rows`` again against every column and keep, per row, the RESCAN pairs of least reduced
    cost outside the candidates: those that may violate become candidates, the others join the
    reserve. Returns (new candidates, record of the bound ρ on the pairs not kept).

    Within a row the reduced cost 2 − cos + d_i − d_j falls as cos + d_j rises, so the pairs are
    chosen on x = cos + d_j in float32 (off by at most ``slack``) and priced exactly in float64.
    """
    n_b = len(d_col)
    K = min(RESCAN, n_b)
    d_col32 = d_col.astype(np.float32)
    slack = 4 * 2.0**-24 * (1.0 + np.abs(d_col).max())
    rho = np.full(len(rows), np.inf)
    violators, kept, kept_vals = [], [], []
    for c0 in range(0, len(rows), per_chunk):
        C = cos.rows(rows[c0:c0 + per_chunk])
        for s0 in range(0, len(C), SUB):
            S = C[s0:s0 + SUB]
            idx = rows[c0 + s0:c0 + s0 + len(S)]
            X = S + d_col32[None, :]
            lo, hi = np.searchsorted(cand.keys, idx * n_b), np.searchsorted(cand.keys, (idx + 1) * n_b)
            mine = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]).astype(np.int64)
            floor = X.min() - 1  # candidates sink below every other pair
            X[np.repeat(np.arange(len(idx)), hi - lo), cand.keys[mine] % n_b] = floor
            x, keep, _ = row_top(X, K)
            if K < n_b:
                rho[c0 + s0:c0 + s0 + len(idx)] = 2.0 + d_row[idx] - x[:, -1] - slack
            local = np.arange(len(idx))[:, None]
            red = (2.0 - S[local, keep].astype(np.float64)) + d_row[idx, None] - d_col[keep]
            keys = (idx[:, None] * n_b + keep).ravel()
            ok = (x > floor).ravel()
            violates = ok & (red - cos.err < TOL).ravel()
            violators.append(keys[violates])
            kept.append(keys[ok & ~violates])
            kept_vals.append(S[local, keep].ravel()[ok & ~violates])
        del C, S
    # Added once at the end: each addition re-sorts the whole set.
    new = _new_candidates(cand, reserve, cos, np.concatenate(violators))
    keys, first = np.unique(np.concatenate(kept), return_index=True)
    fresh = reserve.find(keys) < 0
    reserve.add(keys[fresh], np.concatenate(kept_vals)[first][fresh])
    return new, (rows, d_row[rows].copy(), rho, d_col.copy())


def max_cosine_assignment(A: np.ndarray, B: np.ndarray, budget_bytes: int | None = None,
                          stats: dict | None = None):
    """Optimal one-to-one assignment of the rows of A (n_a × d) to the rows of B (n_b × d)
    maximising the total cosine, within ``budget_bytes`` (None: no limit).

    Returns (rows, cols, cosine) like ``linear_sum_assignment(cos, maximize=True)`` with the
    float64 cosine of each pair: min(n_a, n_b) pairs sorted by row. ``stats``, if given, receives
    the work done: seconds per phase, solves, pairs priced in, rows scanned again, candidate edges.
    """
    if len(A) > len(B):
        cols, rows, c = max_cosine_assignment(B, A, budget_bytes, stats)
        order = np.argsort(rows)
        return rows[order], cols[order], c[order]
    stats = {} if stats is None else stats
    clock = _Clock(stats)
    cos = Cosines(A, B)
    n_a, n_b = len(A), len(B)
    if n_a == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    per_chunk = chunk_rows(n_a, n_b, A.shape[1], budget_bytes)
    with clock("scan"):
        row_vals, row_cols, col_vals, col_rows = scan(cos, RESERVE, per_chunk)
        rt, ct = row_vals[:, -1].astype(np.float64), col_vals[:, -1].astype(np.float64)
        cand, reserve = _seed(cos, row_vals, row_cols, col_vals, col_rows)
        del row_vals, row_cols, col_vals, col_rows
    records, start = [], None
    stats.update(chunk_rows=per_chunk, solves=0, priced=0, rescans=0, rescanned_rows=0)
    while True:
        with clock("solve"):
            mcol = solve(n_a, n_b, cand, reserve, cos)
            # Any start relaxes to feasible potentials; the last ones are close and only fall.
            start = d_row, d_col = potentials(n_a, n_b, cand, mcol, start)
        stats["solves"] += 1
        with clock("price"):
            priced = (2.0 - reserve.vals.astype(np.float64) - cos.err) + d_row[reserve.rows] - d_col[reserve.cols]
            priced = reserve.keys[priced < TOL]
            if len(priced):
                stats["priced"] += _new_candidates(cand, reserve, cos, priced)
                continue
            bad = suspects(d_row, d_col, rt, ct, cos.err, records)
        if not len(bad):
            break
        with clock("rescan"):
            new, record = rescan(cos, bad, d_row, d_col, cand, reserve, per_chunk)
        records.append(record)
        stats["rescans"] += 1
        stats["rescanned_rows"] += len(bad)
        if not new:
            break
    stats["candidates"] = len(cand.keys)
    rows = np.arange(n_a)
    return rows, mcol.astype(np.int64), cand.vals[cand.find(rows * n_b + mcol)]


def _seed(cos: Cosines, row_vals, row_cols, col_vals, col_rows) -> tuple[Pairs, Pairs]:
    """Candidates: the SEED strongest pairs of every row and column; reserve: the rest of the first pass."""
    n_a, n_b = len(row_vals), len(col_vals)
    cand, reserve = Pairs(n_b), Pairs(n_b, np.float32)
    from_rows = np.arange(n_a)[:, None] * n_b + row_cols
    from_cols = col_rows * n_b + np.arange(n_b)[:, None]
    keys, first = np.unique(np.concatenate([from_rows.ravel(), from_cols.ravel()]), return_index=True)
    reserve.add(keys, np.concatenate([row_vals.ravel(), col_vals.ravel()])[first])
    _new_candidates(cand, reserve, cos, np.concatenate([from_rows[:, :SEED].ravel(), from_cols[:, :SEED].ravel()]))
    return cand, reserve


class _Clock:
    """``with clock(name):`` adds the block's seconds to ``stats[name + "_s"]``."""

    def __init__(self, stats: dict):
        self.stats = stats

    def __call__(self, name: str):
        self.name = name
        return self

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        key = f"{self.name}_s"
        self.stats[key] = self.stats.get(key, 0.0) + time.perf_counter() - self.t0
