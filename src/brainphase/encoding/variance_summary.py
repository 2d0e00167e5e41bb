"""Variance partitions per voxel -> per voxel group over training, and the LM-unique figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .variance import PARTS

KEYS = ["model", "step", "tokens", "dataset", "subject", "site", "layer"]
GROUP_ORDER = ("all voxels", "significant voxels", "lowlevel", "semantic", "narrative", "hidden", "null")


def summarise_partition(voxels: pd.DataFrame, truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tidy rows (KEYS, group, part, statistic, value, n_voxels): each R² part over a voxel group.

    Groups: all scored voxels and the voxels whose joint prediction is
    significant (medians: a real cortex is mostly voxels near 0, and a few
    outliers would steer a mean), and, with ground truth (``truth``: dataset,
    subject, voxel, group), each planted group (means: the planted groups are
    homogeneous, and a mean keeps the parts adding up).
    """
    v = voxels.dropna(subset=["r2_joint"])
    frames = [_over(v, "all voxels", "median"), _over(v[v["significant"]], "significant voxels", "median")]
    if truth is not None and len(truth):
        planted = v.merge(truth[["dataset", "subject", "voxel", "group"]], on=["dataset", "subject", "voxel"])
        for name, g in planted.groupby("group", sort=False):
            frames.append(_over(g, name, "mean"))
    out = pd.concat([f for f in frames if len(f)], ignore_index=True)
    return out.sort_values(KEYS[:1] + ["tokens"] + KEYS[3:] + ["group", "part"], kind="stable", ignore_index=True)


def _over(v: pd.DataFrame, group: str, statistic: str) -> pd.DataFrame:
    if not len(v):
        return pd.DataFrame()
    g = v.groupby(KEYS, sort=False)
    stats = g[list(PARTS)].agg(statistic)
    stats["n_voxels"] = g.size()
    long = stats.reset_index().melt(id_vars=KEYS + ["n_voxels"], value_vars=list(PARTS), var_name="part")
    return long.assign(group=group, statistic=statistic)


def best_layer(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, subject, site): the layer of highest joint R² over all voxels at the last checkpoint."""
    s = summary[(summary["group"] == "all voxels") & (summary["part"] == "r2_joint")]
    last = s[s["tokens"] == s.groupby(["model", "dataset", "subject", "site"])["tokens"].transform("max")]
    return last.loc[last.groupby(["model", "dataset", "subject", "site"])["value"].idxmax(),
                    ["model", "dataset", "subject", "site", "layer"]]


def lm_unique_trajectory(summary: pd.DataFrame, ncols: int = 4):
    """LM-unique R² (and the low-level band's unique and shared parts) against training tokens.

    One panel per voxel group at the best layer (:func:`best_layer`); one row
    of panels per (model, dataset, subject, site).
    """
    from brainphase.figures import plt, sns, token_axis, token_positions

    best = best_layer(summary)
    s = summary.merge(best, on=list(best.columns))
    names = [n for n in GROUP_ORDER if n in set(s["group"])] + sorted(set(s["group"]) - set(GROUP_ORDER))
    ncols = min(ncols, len(names))
    rows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(rows * len(best), ncols, figsize=(3.4 * ncols, 2.8 * rows * len(best)), squeeze=False)
    styles = {"unique_lm": ("C0", "LM-unique"), "unique_lowlevel": ("C1", "low-level-unique"),
              "shared": ("0.5", "shared")}
    for i, key in enumerate(best.itertuples(index=False)):
        d = s[(s["model"] == key.model) & (s["dataset"] == key.dataset) & (s["subject"] == key.subject)
              & (s["site"] == key.site)]
        for j, name in enumerate(names):
            ax = axes[i * rows + j // ncols, j % ncols]
            dg = d[d["group"] == name]
            init_x = None
            for part, (color, label) in styles.items():
                dp = dg[dg["part"] == part].sort_values("tokens")
                x, init_x = token_positions(dp["tokens"].to_numpy())
                ax.plot(x, dp["value"], "o-", ms=3, lw=1.3, color=color, label=label)
            ax.axhline(0, color="0.7", lw=0.6)
            if len(dg):
                token_axis(ax, init_x)
            title = name + (f"\n{key.model} · {key.dataset}/{key.subject} · {key.site}.{key.layer}" if j == 0 else "")
            ax.set_title(title, fontsize=9)
            if j % ncols == 0:
                ax.set_ylabel("test R² (fraction of variance)")
        for j in range(len(names), rows * ncols):
            axes[i * rows + j // ncols, j % ncols].set_visible(False)
    axes[0, ncols - 1].legend(fontsize=7, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
    sns.despine(fig)
    fig.tight_layout()
    return fig
