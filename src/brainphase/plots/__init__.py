"""Figures a paper would carry. Nothing imports this module but workflow scripts."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..io import atomic_path  # noqa: E402

sns.set_theme(context="paper", style="ticks", font_scale=1.1)


def _register_japanese_font() -> None:
    # The demo's second language is written in kana, and real studies in
    # Japanese: DejaVu has no such glyphs, so IPAexGothic (bundled by
    # matplotlib-fontja) is the fallback for any glyph DejaVu lacks.
    from matplotlib import font_manager

    try:
        from matplotlib_fontja import get_font_ttf_path  # importing it also switches the family: reset below
    except ImportError:
        return
    font_manager.fontManager.addfont(get_font_ttf_path())
    plt.rcParams["font.family"] = ["DejaVu Sans", "IPAexGothic"]


_register_japanese_font()


def save_figure(fig, paths, dpi: int = 150) -> None:
    for p in paths:
        p = Path(p)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip("."), dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def token_positions(tokens: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Place step 0 (no tokens) half a decade left of the first trained checkpoint on a log axis."""
    tokens = np.asarray(tokens, float)
    pos = tokens[tokens > 0]
    init_x = pos.min() / 10**0.5 if len(pos) else 1.0
    return np.where(tokens > 0, tokens, init_x), (init_x if (tokens == 0).any() else None)


def _token_axis(ax, init_x: float | None) -> None:
    """Log token axis; the untrained checkpoint sits left of a thin break, labelled 'init'."""
    ax.set_xscale("log")
    ax.set_xlabel("training tokens")
    if init_x is not None:
        ax.axvline(init_x * 10**0.25, color="0.85", lw=0.8, zorder=0)
        hi = ax.get_xlim()[1]
        ticks = [t for t in ax.get_xticks() if init_x * 10**0.25 < t <= hi]
        ax.set_xticks([init_x, *ticks])
        ax.set_xticklabels(["init", *[f"$10^{{{int(round(np.log10(t)))}}}$" for t in ticks]])
        ax.set_xlim(init_x / 10**0.25, hi)


def finish_token_axes(fig, axes, x: np.ndarray, init_x: float | None):
    """Common x range (a quarter decade of margin), the token axis on each of ``axes``, despine, tight layout."""
    for ax in axes:
        ax.set_xlim(np.min(x) / 10**0.25, np.max(x) * 10**0.25)
        _token_axis(ax, init_x)
    sns.despine(fig)
    fig.tight_layout()
    return fig


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
            _token_axis(ax, init_x)
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


def drawable_coords(coords: np.ndarray) -> np.ndarray:
    """Coordinates a map can be drawn on: a dataset without voxel positions (one column, the
    voxel index, e.g. LeBel without a pycortex mask) is laid out row by row on a square sheet."""
    coords = np.asarray(coords)
    if coords.ndim == 2 and coords.shape[1] == 1:
        idx = coords[:, 0].astype(int)
        width = int(np.ceil(np.sqrt(idx.max() + 1))) if idx.size else 1
        return np.column_stack([idx // width, idx % width])
    return coords


def sheet_image(values: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Put per-voxel values on the 2-D voxel sheet (NaN where no voxel)."""
    coords = np.asarray(coords, int)
    img = np.full(coords.max(0) + 1, np.nan)
    img[coords[:, 0], coords[:, 1]] = values
    return img


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


SERIES_STYLE = {
    "encoding": ("brain encoding (test r)", "#1b7837"),
    "benchmark": ("benchmark accuracy", "#2166ac"),
    "probing": ("probing (mean neuron r)", "#b2182b"),
}


def phase_trajectory(traj: pd.DataFrame, phases: pd.DataFrame, chance: float | None = None):
    """Seed 000 Fig. 2: the three trajectories on one log-token axis, phases shaded."""
    names = [s for s in SERIES_STYLE if s in set(traj["series"])]
    fig, axes = plt.subplots(len(names), 1, figsize=(6.4, 2.1 * len(names)), sharex=True, squeeze=False)
    shades = sns.color_palette("Set2", max(1, len(phases)))
    x_all, init_x = token_positions(np.sort(traj["tokens"].unique()))
    for ax, name in zip(axes[:, 0], names):
        d = traj[traj["series"] == name].sort_values("tokens")
        x, _ = token_positions(d["tokens"].to_numpy())
        label, color = SERIES_STYLE[name]
        ax.fill_between(x, d["low"], d["high"], color=color, alpha=0.2, lw=0)
        ax.plot(x, d["value"], "o-", color=color, ms=3.5, lw=1.5)
        ax.set_ylabel(label + (f"\nlayer {d['layer'].iloc[0]}" if d["layer"].iloc[0] >= 0 else ""),
                      fontsize=9)
        if name == "benchmark" and chance is not None:
            ax.axhline(chance, color="0.5", ls="--", lw=0.8)
            ax.text(x.max(), chance, " chance", va="center", fontsize=7, color="0.4")
        for k, ph in phases.reset_index(drop=True).iterrows():
            ax.axvspan(ph["start_tokens"], ph["end_tokens"], color=shades[k % len(shades)], alpha=0.18, lw=0)
            if np.isfinite(ph.get("break_low_tokens", np.nan)):
                ax.axvspan(ph["break_low_tokens"], ph["break_high_tokens"], color="0.3", alpha=0.08,
                           hatch="///", lw=0)
    top = axes[0, 0]
    for k, ph in phases.reset_index(drop=True).iterrows():
        mid = np.sqrt(ph["start_tokens"] * ph["end_tokens"])
        top.text(mid, 1.02, ph["label"], transform=top.get_xaxis_transform(), ha="center",
                 va="bottom", fontsize=7, wrap=True)
    ax = axes[-1, 0]
    ax.set_xlim(x_all.min() / 10**0.25, x_all.max() * 10**0.25)
    _token_axis(ax, init_x)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def probing_histogram(neurons: pd.DataFrame, before: str, after: str, layer: int, bin_width: float = 0.01):
    """Seed 000 Fig. 4: per-neuron probing r at the start and end of a phase (bins of 0.01)."""
    d = neurons[neurons["layer"] == layer]
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    r = d["r"].to_numpy()
    edges = np.arange(np.floor(r.min() / bin_width) * bin_width, r.max() + 2 * bin_width, bin_width)
    for step, color in ((before, "#999999"), (after, "#b2182b")):
        v = d[d["step"] == step]["r"]
        ax.hist(v, bins=edges, color=color, alpha=0.6, label=f"{step} (mean {v.mean():.3f})")
    ax.axvline(0, color="0.3", lw=0.6)
    ax.set_xlabel("per-neuron r (answer matrix → neuron, held-out items)")
    ax.set_ylabel("neurons")
    ax.set_title(f"probing, layer {layer}", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    sns.despine(fig)
    fig.tight_layout()
    return fig
