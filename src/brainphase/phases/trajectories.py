"""The three per-checkpoint trajectories of the phase analysis, with bootstrap replicates.

Encoding (mean test r over voxels at one layer), benchmark accuracy (mean item
correctness) and probing (mean per-neuron r at one layer), each on
log10(tokens). Each series' replicates resample what is independent in it,
with the same draws at every checkpoint so that the trajectories stay paired:

* encoding: blocks of TRs of the test data (made in the encoding job, which
  holds the predictions; ``tables/encoding_bootstrap.parquet``), averaged
  over subjects;
* benchmark: items (made here from ``tables/benchmark_items.parquet``);
* probing: test items (made in the probing job;
  ``tables/probing_bootstrap.parquet``), averaged over tasks.

Voxels or neurons are not resampled: they share the noise of the TRs or items
they are scored on, so they are not independent units.

The standard error of a point is the std of its replicates; it weights the
segmented regression of :mod:`brainphase.phases.hinge`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.stats

SERIES = ("encoding", "benchmark", "probing")
log = logging.getLogger(__name__)


def best_layer(table: pd.DataFrame, value: str) -> int:
    """The layer with the highest mean ``value`` at the last checkpoint."""
    last = table[table["tokens"] == table["tokens"].max()]
    return int(last.groupby("layer")[value].mean().idxmax())


def resolve_layer(choice, table: pd.DataFrame, value: str, key: str) -> int:
    """``best`` or an integer layer, checked against the layers in ``table``.

    ``key`` names the config key in the error (e.g. ``phases.encoding_layer``).
    """
    layers = sorted(int(v) for v in table["layer"].unique())
    if not layers:
        raise ValueError(f"{key}: no layers in the table")
    if choice == "best":
        return best_layer(table, value)
    if isinstance(choice, bool) or not isinstance(choice, (int, np.integer)):
        raise ValueError(f"{key} must be 'best' or an integer layer, got {choice!r}")
    if int(choice) not in layers:
        raise ValueError(f"{key} = {choice}: not a layer of the results; valid layers are "
                         f"{layers[0]}..{layers[-1]}" + ("" if layers == list(range(layers[0], layers[-1] + 1))
                                                         else f" ({layers})"))
    return int(choice)


def _paired_matrix(df: pd.DataFrame, unit: str, value: str) -> tuple[np.ndarray, np.ndarray]:
    """(checkpoints x units) matrix of ``value``, checkpoints sorted by tokens; units seen everywhere."""
    wide = df.pivot_table(index="tokens", columns=unit, values=value, aggfunc="mean").sort_index()
    wide = wide.dropna(axis=1)
    return wide.index.to_numpy(float), wide.to_numpy(float)


def resample_units(mat: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_checkpoints) means over units drawn with replacement, the same draw at every checkpoint."""
    idx = rng.integers(0, mat.shape[1], size=(n_boot, mat.shape[1]))
    return mat[:, idx].mean(axis=2).T


def group_mean(df: pd.DataFrame, groups: list[str], value: str) -> pd.Series:
    """Per-checkpoint mean of ``value`` within each group (subject, task), then over groups."""
    return df.groupby(["tokens", *groups])[value].mean().groupby("tokens").mean().sort_index()


def replicate_matrix(boot: pd.DataFrame, groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap table -> (tokens (n,), replicates (n_boot, n)).

    ``boot`` holds one checkpoint's replicate per row (columns tokens,
    replicate, value and the ``groups``, e.g. dataset and subject); replicate
    ``i`` of a checkpoint is the mean of replicate ``i`` over the groups.
    Replicates missing at some checkpoint are dropped.
    """
    per_group = boot.groupby(["tokens", "replicate", *groups])["value"].mean()
    wide = per_group.groupby(["tokens", "replicate"]).mean().unstack("replicate").sort_index()
    wide = wide.dropna(axis=1)
    return wide.index.to_numpy(float), wide.to_numpy(float).T


def _interval(value, se, level=0.95):
    z = scipy.stats.norm.ppf(0.5 * (1 + level))
    return value - z * se, value + z * se


def build_trajectories(voxels: pd.DataFrame, items: pd.DataFrame, neurons: pd.DataFrame,
                       encoding_boot: pd.DataFrame, probing_boot: pd.DataFrame, *,
                       encoding_layer="best", probing_layer="best", n_boot: int = 200,
                       seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict]:
    """The three series of one model.

    Parameters
    ----------
    voxels : per-voxel encoding results (model's rows; tokens, dataset,
        subject, layer, r): point values and the best layer.
    items : per-item benchmark results (tokens, task, doc_id, correct).
    neurons : per-neuron probing results (tokens, task, layer, r).
    encoding_boot : TR-block replicates of mean r (tokens, dataset, subject,
        layer, replicate, value).
    probing_boot : test-item replicates of mean per-neuron r (tokens, task,
        layer, replicate, value).
    n_boot : benchmark item replicates; all series are cut to the fewest
        replicates any of them has.

    Returns (table, tokens, replicates (n_boot, n_checkpoints, 3), chosen
    layers). The table has one row per (series, checkpoint): value, se (std
    of the replicates), low/high (value -/+ 1.96 se, the noise the phase fit
    assumes), layer, n_boot. Only checkpoints present in all sources are kept.
    """
    rng = np.random.default_rng(seed)
    layers = {
        "encoding": resolve_layer(encoding_layer, voxels, "r", "phases.encoding_layer"),
        "probing": resolve_layer(probing_layer, neurons, "r", "phases.probing_layer"),
    }
    v = voxels[voxels["layer"] == layers["encoding"]]
    nr = neurons[neurons["layer"] == layers["probing"]]
    eb = encoding_boot[encoding_boot["layer"] == layers["encoding"]]
    pb = probing_boot[probing_boot["layer"] == layers["probing"]]
    for name, b in (("encoding", eb), ("probing", pb)):
        if b.empty:
            raise ValueError(f"no {name} bootstrap replicates at layer {layers[name]} "
                             f"(tables/{name}_bootstrap.parquet)")
    point = {"encoding": group_mean(v, ["dataset", "subject"], "r"), "probing": group_mean(nr, ["task"], "r")}
    it = items.assign(unit=lambda d: d["task"] + "/" + d["doc_id"].astype(str),
                      correct=lambda d: d["correct"].astype(float))
    t_items, item_mat = _paired_matrix(it, "unit", "correct")
    point["benchmark"] = pd.Series(item_mat.mean(axis=1), index=t_items)
    reps = {"encoding": replicate_matrix(eb, ["dataset", "subject"]), "probing": replicate_matrix(pb, ["task"])}
    common = set(t_items)
    for name in SERIES:
        common &= set(point[name].index)
        if name in reps:
            common &= set(reps[name][0])
    tokens = np.array(sorted(common), float)
    item_boot = resample_units(item_mat[np.isin(t_items, tokens)], n_boot, rng)
    mats = {"benchmark": item_boot}
    for name in ("encoding", "probing"):
        t, m = reps[name]
        mats[name] = m[:, np.isin(t, tokens)]
    b = min(m.shape[0] for m in mats.values())
    if b < 2:
        raise ValueError(f"at least 2 bootstrap replicates needed in every series, got "
                         f"{ {k: m.shape[0] for k, m in mats.items()} }")
    if len({m.shape[0] for m in mats.values()}) > 1:
        log.warning("replicates per series differ (%s); using the first %d of each",
                    {k: m.shape[0] for k, m in mats.items()}, b)
    rows, stack = [], []
    for name in SERIES:
        boot = mats[name][:b]
        value = point[name].loc[tokens].to_numpy(float)
        se = boot.std(axis=0, ddof=1)
        lo, hi = _interval(value, se)
        stack.append(boot)
        rows.append(pd.DataFrame({"series": name, "tokens": tokens, "value": value, "se": se, "low": lo,
                                  "high": hi, "layer": layers.get(name, -1), "n_boot": b}))
    return pd.concat(rows, ignore_index=True), tokens, np.stack(stack, axis=2), layers
