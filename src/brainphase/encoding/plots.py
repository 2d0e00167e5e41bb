"""Encoding figures: accuracy over training per layer, per-voxel maps at two checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainphase.figures import drawable_coords, plt, sheet_image, sns, token_axis, token_positions

GROUP_ORDER = ("lowlevel", "semantic", "narrative", "hidden", "null")


def encoding_trajectory(summary: pd.DataFrame, groups: pd.DataFrame | None = None,
                        metric: str = "mean_r", ncols: int = 3):
    """Encoding accuracy against training tokens, one line per layer.

    One panel for all voxels, then (when the dataset has ground truth) one per
    planted voxel group; one row of panels per (model, dataset, subject, site).
    """
    s = summary[summary["metric"] == metric]
    panels = [("all voxels", s)]
    if groups is not None and len(groups):
        g = groups[groups["metric"] == "mean_r"]
        names = [n for n in GROUP_ORDER if n in set(g["group"])]
        names += sorted(set(g["group"]) - set(names))
        panels += [(f"{name} voxels", g[g["group"] == name]) for name in names]
    keys = list(s[["model", "dataset", "subject", "site"]].drop_duplicates().itertuples(index=False))
    ncols = min(ncols, len(panels))
    nrows_per_key = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows_per_key * len(keys), ncols,
                             figsize=(3.6 * ncols, 2.9 * nrows_per_key * len(keys)), squeeze=False)
    for i, (model, dataset, subject, site) in enumerate(keys):
        for j, (title, d) in enumerate(panels):
            ax = axes[i * nrows_per_key + j // ncols, j % ncols]
            d = d[(d["model"] == model) & (d["dataset"] == dataset) & (d["subject"] == subject)
                  & (d["site"] == site)]
            layers = sorted(d["layer"].unique())
            colors = sns.color_palette("viridis", len(layers))
            init_x, x_max = None, 1.0
            for c, layer in zip(colors, layers):
                dl = d[d["layer"] == layer].sort_values("tokens")
                x, init_x = token_positions(dl["tokens"].to_numpy())
                x_max = max(x_max, x.max())
                ax.plot(x, dl["value"], "o-", ms=3, lw=1.3, color=c, label=f"{layer}")
            ax.axhline(0, color="0.6", lw=0.6)
            ax.set_xlim(None, x_max * 10**0.25)
            token_axis(ax, init_x)
            ax.set_title(f"{title}" + (f"\n{model} · {dataset}/{subject} · {site}" if j == 0 else ""),
                         fontsize=10)
            if j % ncols == 0:
                ax.set_ylabel("test r (mean over voxels)")
        for j in range(len(panels), nrows_per_key * ncols):
            axes[i * nrows_per_key + j // ncols, j % ncols].set_visible(False)
    axes[0, ncols - 1].legend(title="layer", fontsize=7, title_fontsize=8, frameon=False,
                              bbox_to_anchor=(1.02, 1), loc="upper left")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def _per_voxel(v: pd.DataFrame, n_voxels: int) -> np.ndarray:
    """r by voxel index; voxels missing from the table (excluded) stay NaN, drawn blank."""
    out = np.full(n_voxels, np.nan)
    out[v["voxel"].to_numpy()] = v["r"].to_numpy()
    return out


def encoding_maps(voxels: pd.DataFrame, coords: dict[tuple[str, str], np.ndarray], layer_of):
    """Per-voxel r at the first and last checkpoint and their difference, on the voxel layout."""
    rows = voxels[["model", "dataset", "subject", "site"]].drop_duplicates().to_records(index=False)
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.2 * len(rows)), squeeze=False)
    for i, (model, dataset, subject, site) in enumerate(rows):
        v = voxels[(voxels["model"] == model) & (voxels["dataset"] == dataset)
                   & (voxels["subject"] == subject) & (voxels["site"] == site)]
        layer = layer_of(v)
        v = v[v["layer"] == layer]
        order = v[["step", "tokens"]].drop_duplicates().sort_values("tokens")
        first, last = order["step"].iloc[0], order["step"].iloc[-1]
        xy = drawable_coords(coords[(dataset, subject)])
        r0, r1 = (_per_voxel(v[v["step"] == s], len(xy)) for s in (first, last))
        lim = np.nanmax(np.abs(np.concatenate([r0, r1])))
        dlim = np.nanmax(np.abs(r1 - r0))
        for ax, vals, title, cmap, vl in [
            (axes[i, 0], r0, f"{first}", "RdBu_r", lim),
            (axes[i, 1], r1, f"{last}", "RdBu_r", lim),
            (axes[i, 2], r1 - r0, f"{last} − {first}", "PuOr_r", dlim),
        ]:
            if xy.shape[1] == 2:
                im = ax.imshow(sheet_image(vals, xy), cmap=cmap, vmin=-vl, vmax=vl, origin="lower")
            else:  # volumetric coordinates: a glass-brain-like projection on x, y
                im = ax.scatter(xy[:, 0], xy[:, 1], c=vals, cmap=cmap, vmin=-vl, vmax=vl, s=6)
            ax.set_title(f"{model} L{layer} {title}")
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8, label="test r" if "−" not in title else "Δr")
        axes[i, 0].set_ylabel(f"{dataset}/{subject}")
    fig.tight_layout()
    return fig
