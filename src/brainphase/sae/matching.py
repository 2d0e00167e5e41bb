"""Match SAE features between two dictionaries by decoder cosine.

Each latent's decoder column is its direction in the LM's activation space;
two SAEs (consecutive checkpoints, or two seeds of one checkpoint) share a
feature when their columns point the same way. The optimal one-to-one
assignment (Hungarian, maximising total cosine) pairs the latents; the match
rate is the share of A's latents whose partner clears a cosine threshold.
The seed-to-seed rate is the baseline: TopK features are only partly stable
across seeds, so a checkpoint-to-checkpoint rate means little without it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment


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
    return np.clip(A.T @ B, -1.0, 1.0)


def match_features(W_a: np.ndarray, W_b: np.ndarray, threshold: float = 0.7, alive_a: np.ndarray | None = None,
                   alive_b: np.ndarray | None = None) -> tuple[pd.DataFrame, dict]:
    """One-to-one matching of A's latents to B's maximising the total decoder cosine.

    ``alive_a``/``alive_b`` (boolean masks over latents) drop dead latents
    from both sides. Returns (pairs, summary): pairs has latent_a, latent_b
    (original latent ids) and cosine, one row per assigned pair, sorted by
    latent_a; summary has match_rate (share of A's alive latents whose partner
    has cosine ≥ ``threshold``; unassigned latents count as unmatched when A
    is larger), n_matched, mean_cosine and median_cosine of the assigned
    pairs, n_a, n_b and threshold.
    """
    W_a, W_b = np.asarray(W_a), np.asarray(W_b)
    ids_a = np.arange(W_a.shape[1]) if alive_a is None else np.flatnonzero(_mask(alive_a, W_a.shape[1]))
    ids_b = np.arange(W_b.shape[1]) if alive_b is None else np.flatnonzero(_mask(alive_b, W_b.shape[1]))
    n_a, n_b = len(ids_a), len(ids_b)
    if n_a and n_b:
        cos = decoder_cosine(W_a[:, ids_a], W_b[:, ids_b])
        ra, cb = linear_sum_assignment(cos, maximize=True)
        c = cos[ra, cb]
    else:
        if W_a.shape[0] != W_b.shape[0]:
            raise ValueError(f"decoders live in different spaces: d = {W_a.shape[0]} vs {W_b.shape[0]}")
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


def _mask(alive, n: int) -> np.ndarray:
    alive = np.asarray(alive, dtype=bool)
    if alive.shape != (n,):
        raise ValueError(f"alive mask must have one entry per latent ({n}), got shape {alive.shape}")
    return alive


def match_table(saes: list[dict], threshold: float = 0.7) -> pd.DataFrame:
    """Match rates between consecutive checkpoints (per model and seed) and between seeds (per checkpoint).

    ``saes`` holds one dict per SAE with model, step, tokens (training tokens
    of the checkpoint, which orders the steps), seed, decoder (d × n_latents)
    and optionally alive (boolean mask of live latents). Returns one row per
    comparison: comparison ("checkpoint" or "seed"), model, step_a, step_b,
    tokens_a, tokens_b, seed_a, seed_b and :func:`match_features`' summary.
    "checkpoint" rows pair each checkpoint with the next one of the same
    model and seed; "seed" rows pair every further seed of a checkpoint with
    its lowest seed.
    """
    rows = []

    def add(kind: str, a: dict, b: dict) -> None:
        _, summary = match_features(a["decoder"], b["decoder"], threshold, a.get("alive"), b.get("alive"))
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
