"""Phase figures: the three trajectories with their phases, the per-neuron probing histogram."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainphase.figures import plt, sns, token_axis, token_positions

SERIES_STYLE = {
    "encoding": ("brain encoding (test r)", "#1b7837"),
    "benchmark": ("benchmark accuracy", "#2166ac"),
    "probing": ("probing (mean neuron r)", "#b2182b"),
}


def phase_trajectory(traj: pd.DataFrame, phases: pd.DataFrame, chance: float | None = None):
    """The three trajectories on one log-token axis, phases shaded, breakpoint intervals hatched."""
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
    token_axis(ax, init_x)
    sns.despine(fig)
    fig.tight_layout()
    return fig


def probing_histogram(neurons: pd.DataFrame, before: str, after: str, layer: int, bin_width: float = 0.01):
    """Per-neuron probing r at the start and end of a phase (bins of 0.01)."""
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
