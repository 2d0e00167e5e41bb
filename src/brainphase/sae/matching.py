"""Match SAE features between two dictionaries by decoder cosine.

Each latent's decoder column is its direction in the LM's activation space;
two SAEs (consecutive checkpoints, or two seeds of one checkpoint) share a
feature when their columns point the same way. The optimal one-to-one
assignment (Hungarian, maximising total cosine) pairs the latents; the match
rate is the share of A's latents whose partner clears a cosine threshold.
The seed-to-seed rate is the baseline: TopK features are only partly stable
across seeds, so a checkpoint-to-checkpoint rate means little without it.

Small problems build the dense cosine matrix and run scipy's
``linear_sum_assignment``; above ``DENSE_MAX_PAIRS`` pairs (where the sparse
route is faster) or when the dense matrix would not fit ``budget_bytes``,
:func:`~brainphase.sae.assignment.max_cosine_assignment` finds the same
assignment from float32 row chunks and a sparse candidate graph, proved optimal
on the dense problem by an LP-dual certificate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from .assignment import assignment_peak_bytes, max_cosine_assignment

# Up to 2048 x 2048 latents the dense Hungarian algorithm is as fast as the sparse route.
DENSE_MAX_PAIRS = 2**22
# What a matching job holds besides its arrays: the interpreter with numpy, scipy, pandas and torch
# (0.32 GB measured), with room for the allocator's fragmentation.
JOB_OVERHEAD_BYTES = 768 * 2**20


def _unit_columns(W: np.ndarray) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"decoder must be (d, n_latents), got shape {W.shape}")
    norms = np.linalg.norm(W, axis=0)
    out = np.zeros_like(W)
    ok = norms > 0
    out[:, ok] = W[:, ok] / norms[ok]
    return out


def decoder_cosine(W_a: np.ndarray, W_b: np.ndarray) -> np.ndarray:
    """(n_a × n_b) cosine similarity between the columns of two (d × n) decoders; zero columns give 0."""
    A, B = _unit_columns(W_a), _unit_columns(W_b)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"decoders live in different spaces: d = {A.shape[0]} vs {B.shape[0]}")
    C = A.T @ B
    return np.clip(C, -1.0, 1.0, out=C)


def dense_peak_bytes(n_a: int, n_b: int, d: int) -> int:
    """Peak bytes of the dense route: float32 decoders and their live columns, float64 unit copies,
    the cosine matrix and the copy ``linear_sum_assignment`` makes of it."""
    return 8 * d * (n_a + n_b) + 16 * d * max(n_a, n_b) + 16 * n_a * n_b


def uses_dense(n_a: int, n_b: int, d: int, budget_bytes: int | None) -> bool:
    return n_a * n_b <= DENSE_MAX_PAIRS and (budget_bytes is None or dense_peak_bytes(n_a, n_b, d) <= budget_bytes)


def matching_peak_bytes(n_a: int, n_b: int, d: int, budget_bytes: int | None) -> int:
    """Peak bytes of :func:`match_features` on float32 decoders with n_a and n_b alive latents of
    dimension d, the decoders included and the interpreter (``JOB_OVERHEAD_BYTES``) not."""
    if uses_dense(n_a, n_b, d, budget_bytes):
        return dense_peak_bytes(n_a, n_b, d)
    return assignment_peak_bytes(n_a, n_b, d, budget_bytes)


def _latent_major(W: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(n, d) rows of the latents ``ids``: a view when W is a transposed C-contiguous array."""
    if len(ids) == W.shape[1] and W.T.flags.c_contiguous:
        return W.T
    return np.ascontiguousarray(W.T[ids])


def match_features(W_a: np.ndarray, W_b: np.ndarray, threshold: float = 0.7, alive_a: np.ndarray | None = None,
                   alive_b: np.ndarray | None = None, budget_bytes: int | None = None) -> tuple[pd.DataFrame, dict]:
    """One-to-one matching of A's latents to B's maximising the total decoder cosine.

    ``alive_a``/``alive_b`` (boolean masks over latents) drop dead latents
    from both sides. Returns (pairs, summary): pairs has latent_a, latent_b
    (original latent ids) and cosine, one row per assigned pair, sorted by
    latent_a; summary has match_rate (share of A's alive latents whose partner
    has cosine ≥ ``threshold``; unassigned latents count as unmatched when A
    is larger), n_matched, mean_cosine and median_cosine of the assigned
    pairs, n_a, n_b and threshold.

    ``budget_bytes`` bounds the memory of the matching, the decoders included
    (:func:`matching_peak_bytes`); None: no bound. Float32 decoders whose
    transpose is C-contiguous, with no dead latents, are used without a copy.
    """
    W_a, W_b = np.asarray(W_a), np.asarray(W_b)
    for name, W in (("W_a", W_a), ("W_b", W_b)):
        if W.ndim != 2:
            raise ValueError(f"decoder {name} must be (d, n_latents), got shape {W.shape}")
        if not np.isfinite(np.sum(W, dtype=np.float64)):  # a sum: no n x d mask of a large decoder
            raise ValueError(f"decoder {name} has non-finite entries: the SAE diverged; retrain it or leave it out")
    if W_a.shape[0] != W_b.shape[0]:
        raise ValueError(f"decoders live in different spaces: d = {W_a.shape[0]} vs {W_b.shape[0]}")
    ids_a = np.arange(W_a.shape[1]) if alive_a is None else np.flatnonzero(_mask(alive_a, W_a.shape[1]))
    ids_b = np.arange(W_b.shape[1]) if alive_b is None else np.flatnonzero(_mask(alive_b, W_b.shape[1]))
    n_a, n_b = len(ids_a), len(ids_b)
    if n_a and n_b and uses_dense(n_a, n_b, W_a.shape[0], budget_bytes):
        cos = decoder_cosine(W_a[:, ids_a], W_b[:, ids_b])
        ra, cb = linear_sum_assignment(cos, maximize=True)
        c = cos[ra, cb]
    elif n_a and n_b:
        ra, cb, c = max_cosine_assignment(_latent_major(W_a, ids_a), _latent_major(W_b, ids_b), budget_bytes)
    else:
        ra = cb = np.zeros(0, dtype=np.int64)
        c = np.zeros(0)
    pairs = pd.DataFrame({"latent_a": ids_a[ra].astype(np.int64), "latent_b": ids_b[cb].astype(np.int64),
                          "cosine": c}).sort_values("latent_a", ignore_index=True)
    n_matched = int((c >= threshold).sum())
    summary = {
        "match_rate": n_matched / n_a if n_a else float("nan"),
        "n_matched": n_matched,
        "mean_cosine": float(c.mean()) if len(c) else float("nan"),
        "median_cosine": float(np.median(c)) if len(c) else float("nan"),
        "n_a": int(n_a),
        "n_b": int(n_b),
        "threshold": float(threshold),
    }
    return pairs, summary


def _decoder(sae: dict) -> np.ndarray:
    return sae["decoder"]() if callable(sae["decoder"]) else sae["decoder"]


def _mask(alive, n: int) -> np.ndarray:
    alive = np.asarray(alive, dtype=bool)
    if alive.shape != (n,):
        raise ValueError(f"alive mask must have one entry per latent ({n}), got shape {alive.shape}")
    return alive


def match_table(saes: list[dict], threshold: float = 0.7, budget_bytes: int | None = None) -> pd.DataFrame:
    """Match rates between consecutive checkpoints (per model and seed) and between seeds (per checkpoint).

    ``saes`` holds one dict per SAE with model, step, tokens (training tokens
    of the checkpoint, which orders the steps), seed, decoder (d × n_latents,
    or a function returning it: then it is loaded for each comparison and
    dropped after, so that only the two decoders compared are held) and
    optionally alive (boolean mask of live latents). Returns one row per
    comparison: comparison ("checkpoint" or "seed"), model, step_a, step_b,
    tokens_a, tokens_b, seed_a, seed_b and :func:`match_features`' summary.
    "checkpoint" rows pair each checkpoint with the next one of the same
    model and seed; "seed" rows pair every further seed of a checkpoint with
    its lowest seed.
    """
    rows = []

    def add(kind: str, a: dict, b: dict) -> None:
        _, summary = match_features(_decoder(a), _decoder(b), threshold, a.get("alive"), b.get("alive"), budget_bytes)
        rows.append({"comparison": kind, "model": a["model"], "step_a": a["step"], "step_b": b["step"],
                     "tokens_a": a["tokens"], "tokens_b": b["tokens"], "seed_a": a["seed"], "seed_b": b["seed"],
                     **summary})

    groups: dict[tuple, list[dict]] = {}
    for s in saes:
        groups.setdefault((s["model"], s["seed"]), []).append(s)
    for key in sorted(groups, key=str):
        chain = sorted(groups[key], key=lambda s: s["tokens"])
        for a, b in zip(chain[:-1], chain[1:]):
            add("checkpoint", a, b)
    groups = {}
    for s in saes:
        groups.setdefault((s["model"], s["step"]), []).append(s)
    for key in sorted(groups, key=str):
        same = sorted(groups[key], key=lambda s: s["seed"])
        for b in same[1:]:
            add("seed", same[0], b)
    columns = ["comparison", "model", "step_a", "step_b", "tokens_a", "tokens_b", "seed_a", "seed_b", "match_rate",
               "n_matched", "mean_cosine", "median_cosine", "n_a", "n_b", "threshold"]
    return pd.DataFrame(rows, columns=columns)
