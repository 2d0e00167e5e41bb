"""Figures of the MEG layer-latency analysis: r(layer, lag), the path, and its trajectories.

All take the tidy table of ``tables/temporal.parquet``: one row per
measurement with model, step, tokens, n_params, context (NaN = the whole
story), layer, lag (seconds), metric, value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainphase.figures import finish_token_axes, plt, sns, token_positions

SUMMARY = ["alignment", "path_rho", "path_p"]  # NaN rho (a flat path) must not drop the column


def _full_context(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["context"].isna()]


def _model_order(df: pd.DataFrame) -> list[str]:
    # Largest model first: it is the study's main model.
    sizes = df.groupby("model")["n_params"].max().sort_values(ascending=False)
    return sizes.index.tolist()


def _grid(df: pd.DataFrame, model: str, step: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = df[(df["model"] == model) & (df["step"] == step) & (df["metric"] == "r")]
    grid = r.pivot_table(index="layer", columns="lag", values="value").sort_index()
    return grid.to_numpy(), grid.index.to_numpy(int), grid.columns.to_numpy(float)


def heatmaps(scores: pd.DataFrame):
    """r(layer, lag) at the first and last checkpoint of each model, each layer's peak marked."""
    df = _full_context(scores)
    models = _model_order(df)
    fig, axes = plt.subplots(len(models), 2, figsize=(8.0, 2.3 * len(models)), squeeze=False)
    vmax = float(np.nanmax(np.abs(df.loc[df["metric"] == "r", "value"]))) or 1.0
    for row, model in zip(axes, models):
        order = df[df["model"] == model][["step", "tokens"]].drop_duplicates().sort_values("tokens")
        for ax, (step, tokens) in zip(row, [order.iloc[0], order.iloc[-1]]):
            grid, layers, lags = _grid(df, model, step)
            dt = lags[1] - lags[0] if len(lags) > 1 else 0.01
            im = ax.imshow(grid, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                           extent=(lags[0] - dt / 2, lags[-1] + dt / 2, layers[0] - 0.5, layers[-1] + 0.5))
            ax.plot(lags[np.nanargmax(grid, axis=1)], layers, "o", color="white", mec="black", ms=4)
            ax.axvline(0, color="0.3", lw=0.6, ls=":")
            ax.set_title(f"{model} {step} ({tokens:.3g} tokens)", fontsize=9)
            ax.set_xlabel("lag after word onset (s)")
            ax.set_ylabel("layer")
            ax.set_yticks(layers)
            fig.colorbar(im, ax=ax, label="decoding r", fraction=0.046, pad=0.03)
    fig.tight_layout()
    return fig


def path(scores: pd.DataFrame):
    """Peak lag against layer depth, one line per checkpoint (colour: training tokens), one panel per model."""
    df = _full_context(scores)
    models = _model_order(df)
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.0), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        m = df[df["model"] == model]
        order = m[["step", "tokens"]].drop_duplicates().sort_values("tokens")
        colors = sns.color_palette("viridis", len(order))
        for color, (step, tokens) in zip(colors, order.itertuples(index=False)):
            peaks = m[(m["step"] == step) & (m["metric"] == "peak_lag")].sort_values("layer")
            stats = m[(m["step"] == step) & m["metric"].isin(["path_rho", "path_p"])].set_index("metric")["value"]
            ax.plot(peaks["layer"], peaks["value"], "o-", color=color, ms=3.5,
                    label=f"{tokens:.2g}: ρ={stats.get('path_rho', np.nan):.2f}, p={stats.get('path_p', np.nan):.2g}")
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("layer")
        ax.legend(frameon=False, fontsize=6, title="tokens", title_fontsize=6)
    axes[0, 0].set_ylabel("peak lag (s)")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def trajectory(scores: pd.DataFrame):
    """Alignment score and path ρ against training tokens, one line per model."""
    df = _full_context(scores)
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 2.9), squeeze=False)
    all_tokens = df["tokens"].unique()
    _, init_x = token_positions(all_tokens)
    for model, color in zip(_model_order(df), sns.color_palette("colorblind")):
        wide = (df[df["model"] == model].pivot_table(index="tokens", columns="metric", values="value", dropna=False)
                .reindex(columns=SUMMARY).sort_index())
        x = np.where(wide.index > 0, wide.index, init_x if init_x else 1.0)
        axes[0, 0].plot(x, wide["alignment"], "o-", color=color, ms=3.5, label=model)
        # rho is undefined when every layer peaks at the same lag: drawn at 0, hollow.
        flat = wide["path_rho"].isna().to_numpy()
        rho = wide["path_rho"].fillna(0.0).to_numpy()
        axes[0, 1].plot(x, rho, "-", color=color, lw=1)
        axes[0, 1].plot(x[~flat], rho[~flat], "o", color=color, ms=3.5, label=model)
        axes[0, 1].plot(x[flat], rho[flat], "o", mfc="white", mec=color, ms=4.5)
        sig = (wide["path_p"] < 0.05).to_numpy()
        axes[0, 1].plot(x[sig], rho[sig], "*", color=color, ms=9)
    axes[0, 0].set_ylabel("alignment score\n(mean over layers of max r)")
    axes[0, 1].set_ylabel("path ρ (layer depth vs peak lag)")
    axes[0, 1].axhline(0, color="0.7", lw=0.6)
    axes[0, 1].set_ylim(-1.05, 1.05)
    axes[0, 0].legend(frameon=False, fontsize=7)
    axes[0, 1].text(0.02, 0.02, "★ p < 0.05;  ○ all layers peak at one lag (ρ undefined)",
                    transform=axes[0, 1].transAxes, fontsize=7)
    pos = np.where(all_tokens > 0, all_tokens, init_x if init_x else 1.0)
    return finish_token_axes(fig, axes[0], pos, init_x)


def sweeps(scores: pd.DataFrame):
    """Alignment and path ρ against context length (each model's last checkpoint) and model size (equal tokens)."""
    fig, axes = plt.subplots(1, 3, figsize=(10.0, 2.9), squeeze=False)
    last = scores.loc[scores.groupby("model")["tokens"].transform("max") == scores["tokens"]]
    models = _model_order(scores)
    colors = dict(zip(models, sns.color_palette("colorblind")))
    for model in models:
        m = last[(last["model"] == model) & last["metric"].isin(["alignment", "path_rho", "path_p"])]
        wide = (m.pivot_table(index=m["context"].fillna(np.inf), columns="metric", values="value", dropna=False)
                .reindex(columns=SUMMARY).sort_index())
        x = np.arange(len(wide))
        labels = ["full" if np.isinf(c) else str(int(c)) for c in wide.index]
        axes[0, 0].plot(x, wide["alignment"], "o-", color=colors[model], ms=3.5, label=model)
        axes[0, 1].plot(x, wide["path_rho"], "o-", color=colors[model], ms=3.5, label=model)
        for ax in axes[0, :2]:
            ax.set_xticks(x)
            ax.set_xticklabels(labels)
            ax.set_xlabel("context (tokens before the word)")
    axes[0, 0].set_ylabel("alignment score")
    axes[0, 1].set_ylabel("path ρ")
    axes[0, 1].set_ylim(-1.05, 1.05)
    axes[0, 0].legend(frameon=False, fontsize=7)
    # Models compared at the most training tokens they all reached (their schedules may differ in length).
    full = _full_context(scores)
    shared_tokens = min(full.groupby("model")["tokens"].max())
    full = full[full["tokens"] == shared_tokens]
    size = (full[full["metric"].isin(SUMMARY)]
            .pivot_table(index=["model", "n_params"], columns="metric", values="value", dropna=False)
            .reindex(columns=SUMMARY).reset_index().sort_values("n_params"))
    ax = axes[0, 2]
    ax.plot(size["n_params"], size["alignment"], "o-", color="0.3", label="alignment")
    ax2 = ax.twinx()
    ax2.plot(size["n_params"], size["path_rho"], "s--", color="#d95f02", label="path ρ")
    for _, row in size.iterrows():
        ax.annotate(row["model"], (row["n_params"], row["alignment"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("alignment score")
    ax2.set_ylabel("path ρ", color="#d95f02")
    ax2.set_ylim(-1.05, 1.05)
    ax.set_title(f"model size ({shared_tokens:.2g} tokens, full context)", fontsize=9)
    sns.despine(fig, right=False)
    fig.tight_layout()
    return fig
