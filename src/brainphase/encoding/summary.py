"""Per-voxel encoding results -> tidy metric tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["model", "step", "tokens", "dataset", "subject", "site", "layer"]
TIDY = ["analysis", "model", "step", "tokens", "layer", "site", "dataset", "subject", "task",
        "lang", "metric", "value"]


def _tidy(wide: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Long format; a metric that was not measurable (no significant voxel, no
    repeats for a ceiling) has no row rather than a NaN."""
    long = wide.melt(id_vars=keys, value_vars=metrics, var_name="metric", value_name="value")
    long = long[long["value"].notna()]
    long["analysis"] = "encoding"
    for c in ("task", "lang"):
        long[c] = None
    extra = [k for k in keys if k not in TIDY]
    return long[TIDY + extra].sort_values(["model", "tokens", "site", "layer", "metric"],
                                           ignore_index=True)


def scored_voxels(voxels: pd.DataFrame) -> pd.DataFrame:
    """The per-voxel table without excluded (constant) voxels: no NaN r reaches the tables."""
    return voxels[~voxels["excluded"]].drop(columns="excluded").reset_index(drop=True)


def summarise_voxels(voxels: pd.DataFrame, min_ceiling: float = 0.1) -> pd.DataFrame:
    """Mean r, mean r of significant voxels, fraction significant, ceiling-normalised r."""
    v = voxels[~voxels["excluded"]].copy()
    if "ceiling_r" in v:
        ok = v["ceiling_r"] > min_ceiling
        v["r_norm"] = np.where(ok, v["r"] / v["ceiling_r"].where(ok), np.nan)
    else:
        v["r_norm"] = np.nan

    def agg(g: pd.DataFrame) -> pd.Series:
        sig = g["significant"].astype(bool)
        return pd.Series({
            "mean_r": g["r"].mean(),
            "mean_r_significant": g.loc[sig, "r"].mean() if sig.any() else np.nan,
            "frac_significant": sig.mean(),
            "mean_r_normalised": g["r_norm"].mean(),
            "n_voxels": float(len(g)),
        })

    wide = v.groupby(KEYS, sort=False).apply(agg, include_groups=False).reset_index()
    n_ex = voxels.groupby(KEYS, sort=False)["excluded"].sum().rename("n_excluded").reset_index()
    wide = wide.merge(n_ex, on=KEYS, how="right")
    metrics = ["mean_r", "mean_r_significant", "frac_significant", "mean_r_normalised",
               "n_voxels", "n_excluded"]
    return _tidy(wide, KEYS, metrics)


def group_trajectories(voxels: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per planted voxel group: mean r per layer, and the best layer's r at each checkpoint."""
    v = voxels[~voxels["excluded"]].merge(truth[["dataset", "subject", "voxel", "group"]],
                                          on=["dataset", "subject", "voxel"], how="inner")
    keys = KEYS + ["group"]
    outer = [k for k in keys if k != "layer"]
    per_layer = v.groupby(keys, sort=False)["r"].mean().rename("mean_r").reset_index()
    best = per_layer.loc[per_layer.groupby(outer, sort=False)["mean_r"].idxmax()]
    best = best.rename(columns={"mean_r": "best_layer_r"})
    return pd.concat([
        _tidy(per_layer, keys, ["mean_r"]),
        _tidy(best, keys, ["best_layer_r"]),
    ], ignore_index=True)
