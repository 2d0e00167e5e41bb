"""The three per-checkpoint trajectories of the phase analysis, with bootstrap replicates.

Encoding (mean test r at one layer), benchmark accuracy and probing (mean
per-neuron r at one layer), each on log10(tokens). Replicates resample the
units each score averages over, with the same draw at every checkpoint so that
the trajectories stay paired: benchmark items, voxels and neurons. (METHODS
§6 names TR blocks for encoding; per-TR predictions are not kept, so voxels
stand in for them.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SERIES = ("encoding", "benchmark", "probing")


def best_layer(table: pd.DataFrame, value: str) -> int:
    """The layer with the highest mean ``value`` at the last checkpoint."""
    last = table[table["tokens"] == table["tokens"].max()]
    return int(last.groupby("layer")[value].mean().idxmax())


def _paired_matrix(df: pd.DataFrame, unit: str, value: str) -> tuple[np.ndarray, np.ndarray]:
    """(checkpoints x units) matrix of ``value``, checkpoints sorted by tokens; units seen everywhere."""
    wide = df.pivot_table(index="tokens", columns=unit, values=value, aggfunc="mean").sort_index()
    wide = wide.dropna(axis=1)
    return wide.index.to_numpy(float), wide.to_numpy(float)


def _bootstrap(mat: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, mat.shape[1], size=(n_boot, mat.shape[1]))
    return mat[:, idx].mean(axis=2).T  # (n_boot, n_checkpoints)


def build_trajectories(voxels: pd.DataFrame, items: pd.DataFrame, neurons: pd.DataFrame, *,
                       encoding_layer="best", probing_layer="best", n_boot: int = 200,
                       seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict]:
    """Returns (table, tokens, replicates (n_boot, n_checkpoints, 3), chosen layers).

    The table has one row per (series, checkpoint): value, bootstrap 2.5/97.5 %.
    Only checkpoints present in all three sources are kept.
    """
    rng = np.random.default_rng(seed)
    layers = {
        "encoding": best_layer(voxels, "r") if encoding_layer == "best" else int(encoding_layer),
        "probing": best_layer(neurons, "r") if probing_layer == "best" else int(probing_layer),
    }
    v = voxels[voxels["layer"] == layers["encoding"]].assign(
        unit=lambda d: d["dataset"] + "/" + d["subject"] + "/" + d["voxel"].astype(str))
    it = items.assign(unit=lambda d: d["task"] + "/" + d["doc_id"].astype(str),
                      correct=lambda d: d["correct"].astype(float))
    nr = neurons[neurons["layer"] == layers["probing"]].assign(
        unit=lambda d: d["task"] + "/" + d["neuron"].astype(str))
    mats = {"encoding": _paired_matrix(v, "unit", "r"), "benchmark": _paired_matrix(it, "unit", "correct"),
            "probing": _paired_matrix(nr, "unit", "r")}
    common = sorted(set.intersection(*(set(t) for t, _ in mats.values())))
    tokens = np.array(common, float)
    rows, reps = [], []
    for name in SERIES:
        t, m = mats[name]
        m = m[np.isin(t, tokens)]
        boot = _bootstrap(m, n_boot, rng)
        reps.append(boot)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        rows.append(pd.DataFrame({"series": name, "tokens": tokens, "value": m.mean(1), "low": lo,
                                  "high": hi, "layer": layers.get(name, -1), "n_units": m.shape[1]}))
    return pd.concat(rows, ignore_index=True), tokens, np.stack(reps, axis=2), layers
