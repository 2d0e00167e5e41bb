"""Crosscoder figures: r_i histograms, class fractions over training, brain decoder maps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainphase.figures import drawable_coords, finish_token_axes, plt, sheet_image, sns, token_positions

CLASS_STYLE = {"shared": ("shared", "#7570b3"), "brain": ("brain-dominant", "#d95f02"),
               "lm": ("LM-dominant", "#1b9e77")}


def ri_histograms(latents: pd.DataFrame, steps: list[str], thresholds: dict | None = None):
    """Relative decoder norm r_i of the alive latents, real vs time-shuffled, at the given checkpoints."""
    th = thresholds or {"brain": 0.5, "lm": -0.5, "shared": 0.2}
    fig, axes = plt.subplots(1, len(steps), figsize=(3.4 * len(steps), 2.8), squeeze=False, sharey=True)
    bins = np.linspace(-1, 1, 41)
    for ax, step in zip(axes[0], steps):
        for fit, color in (("real", "#2c7fb8"), ("shuffled", "#999999")):
            d = latents[(latents["step"] == step) & (latents["fit"] == fit) & latents["alive"]]
            shared = np.mean(np.abs(d["r"]) < th["shared"]) if len(d) else np.nan
            ax.hist(d["r"], bins=bins, color=color, alpha=0.6, label=f"{fit} (shared {shared:.0%})")
        for x in (th["lm"], -th["shared"], th["shared"], th["brain"]):
            ax.axvline(x, color="0.6", lw=0.6, ls=":")
        ax.set_title(step, fontsize=9)
        ax.set_xlabel("$r_i$ (LM-dominant ← → brain-dominant)")
        ax.legend(frameon=False, fontsize=7)
    axes[0, 0].set_ylabel("latents")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def class_fractions(metrics: pd.DataFrame):
    """Shared / brain / LM fractions and test reconstruction r against training tokens, real and shuffled."""
    wide = metrics.pivot_table(index="tokens", columns="metric", values="value").sort_index()
    x, init_x = token_positions(wide.index.to_numpy())
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 2.9), squeeze=False)
    ax = axes[0, 0]
    for c, (label, color) in CLASS_STYLE.items():
        ax.plot(x, wide[f"real_fraction_{c}"], "o-", color=color, ms=3.5, label=label)
        ax.plot(x, wide[f"shuffled_fraction_{c}"], "--", color=color, lw=1, alpha=0.8)
    ax.set_ylabel("fraction of alive latents")
    ax.legend(frameon=False, fontsize=7, title="solid: real, dashed: shuffled", title_fontsize=7)
    ax = axes[0, 1]
    for side, color in (("brain", "#d95f02"), ("lm", "#1b9e77")):
        ax.plot(x, wide[f"real_test_r_{side}"], "o-", color=color, ms=3.5, label=f"{side} (real)")
        ax.plot(x, wide[f"shuffled_test_r_{side}"], "--", color=color, lw=1, label=f"{side} (shuffled)")
    ax.set_ylabel("test reconstruction r")
    ax.legend(frameon=False, fontsize=7)
    return finish_token_axes(fig, axes[0], x, init_x)


def decoder_maps(weights: pd.DataFrame, coords: np.ndarray, step: str):
    """Brain decoder weights of the strongest latents of each class on the voxel layout."""
    shown = weights[["latent", "class", "r"]].drop_duplicates()
    shown = shown[shown["class"].isin(CLASS_STYLE)]
    ncols = max(1, shown.groupby("class").size().max()) if len(shown) else 1
    classes = [c for c in CLASS_STYLE if c in set(shown["class"])] or ["shared"]
    coords = drawable_coords(coords)
    fig, axes = plt.subplots(len(classes), ncols, figsize=(2.6 * ncols, 2.4 * len(classes)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, c in enumerate(classes):
        for j, (lat, r) in enumerate(shown[shown["class"] == c][["latent", "r"]].itertuples(index=False)):
            w = weights[weights["latent"] == lat].sort_values("voxel")["weight"].to_numpy()
            lim = np.abs(w).max() or 1.0
            ax = axes[i, j]
            if coords.shape[1] == 2:
                im = ax.imshow(sheet_image(w, coords), cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
            else:
                im = ax.scatter(coords[:, 0], coords[:, 1], c=w, cmap="RdBu_r", vmin=-lim, vmax=lim, s=6)
            ax.set_title(f"{CLASS_STYLE[c][0]} #{lat}\n$r_i$ = {r:.2f}", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(f"brain decoder weights at {step}", fontsize=10)
    fig.tight_layout()
    return fig
