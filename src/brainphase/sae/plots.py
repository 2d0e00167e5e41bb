"""SAE figures: language and granularity shares of the features, SAE quality, matching, feature cards."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainphase.figures import finish_token_axes, plt, sns, token_axis, token_positions

LANGUAGE_STYLE = {"ja": ("Japanese", "#d95f02"), "en": ("English", "#1b9e77"), "mixed": ("mixed", "#7570b3")}
GRANULARITY_STYLE = {
    "token": ("token-level", "#66c2a5"),
    "concept_synonym": ("concept (synonym)", "#fc8d62"),
    "concept_related": ("concept (related)", "#8da0cb"),
    "unrelated": ("unrelated", "#bbbbbb"),
}
QUALITY = (("test_fvu", "FVU (test)"), ("test_l0", "L0"), ("test_dead_fraction", "dead fraction"),
           ("ce_loss_recovered", "CE loss recovered"))


def _checkpoint_labels(d: pd.DataFrame) -> list[str]:
    return [f"{s}\n{t:.1e}" if t else f"{s}\ninit" for s, t in zip(d["step"], d["tokens"])]


def feature_shares(metrics: pd.DataFrame, column: str, seed: int):
    """Stacked bars: share of each label among classified features at every checkpoint."""
    style = LANGUAGE_STYLE if column == "language" else GRANULARITY_STYLE
    d = metrics[(metrics["seed"] == seed) & metrics["metric"].str.startswith(f"share_{column}_")]
    wide = d.assign(label=d["metric"].str.removeprefix(f"share_{column}_")).pivot_table(
        index=["tokens", "step"], columns="label", values="value").reset_index().sort_values("tokens")
    n = metrics[(metrics["seed"] == seed) & (metrics["metric"] == "n_classified")].set_index("tokens")["value"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(wide), 3.2))
    bottom = np.zeros(len(wide))
    x = np.arange(len(wide))
    for label, (name, color) in style.items():
        v = wide[label].to_numpy() if label in wide else np.zeros(len(wide))
        ax.bar(x, v, bottom=bottom, color=color, label=name, width=0.75)
        bottom += v
    for xi, t in zip(x, wide["tokens"]):
        ax.text(xi, 1.01, f"n={int(n.get(t, 0))}", ha="center", va="bottom", fontsize=6, color="0.4")
    ax.set_xticks(x, _checkpoint_labels(wide), fontsize=7)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(f"share of features ({'language' if column == 'language' else 'granularity'})")
    ax.set_xlabel("checkpoint (step, training tokens)")
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    sns.despine(fig)
    fig.tight_layout()
    return fig


def sae_quality(metrics: pd.DataFrame, seed: int):
    """FVU, L0, dead fraction and CE loss recovered against training tokens."""
    d = metrics[metrics["seed"] == seed]
    fig, axes = plt.subplots(1, len(QUALITY), figsize=(3.0 * len(QUALITY), 2.6), squeeze=False)
    for ax, (metric, label) in zip(axes[0], QUALITY):
        m = d[d["metric"] == metric].sort_values("tokens")
        x, init_x = token_positions(m["tokens"].to_numpy())
        ax.plot(x, m["value"], "o-", color="#2c7fb8", ms=3.5)
        others = metrics[(metrics["seed"] != seed) & (metrics["metric"] == metric)]
        if len(others):
            xo, _ = token_positions(np.r_[m["tokens"].to_numpy(), others["tokens"].to_numpy()])
            ax.plot(xo[len(m):], others["value"], "x", color="0.3", ms=5, label="other seed")
            ax.legend(frameon=False, fontsize=7)
        ax.set_ylabel(label)
    return finish_token_axes(fig, axes.ravel(), x, init_x)


def sae_matching(matching: pd.DataFrame):
    """Match rate of features between consecutive checkpoints, with the seed-to-seed baseline."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.8), squeeze=False)
    cons = matching[matching["comparison"] == "checkpoint"].sort_values("tokens_b")
    seeds = matching[matching["comparison"] == "seed"]
    x, init_x = token_positions(cons["tokens_b"].to_numpy())
    for ax, col, label in ((axes[0, 0], "match_rate", "match rate"), (axes[0, 1], "mean_cosine",
                                                                      "mean decoder cosine")):
        ax.plot(x, cons[col], "o-", color="#2c7fb8", ms=3.5, label="previous checkpoint")
        for _, r in seeds.iterrows():
            ax.axhline(r[col], color="#d95f02", ls="--", lw=1)
            ax.text(x.max(), r[col], f" two seeds at {r['step_b']}", va="bottom", ha="right", fontsize=7,
                    color="#d95f02")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.05)
        ax.set_xlim(x.min() / 10**0.25, x.max() * 10**0.25)
        token_axis(ax, init_x)
    axes[0, 0].legend(frameon=False, fontsize=7, loc="lower right")
    sns.despine(fig)
    fig.tight_layout()
    return fig


def feature_cards(contexts: dict[str, pd.DataFrame], features: dict[str, pd.DataFrame], n_features: int = 4,
                  n_contexts: int = 5):
    """Example features at a few checkpoints: their top contexts, the activating token shaded."""
    cols = list(contexts)
    fig, axes = plt.subplots(n_features, len(cols), figsize=(4.3 * len(cols), 1.45 * n_features), squeeze=False)
    for j, step in enumerate(cols):
        f = features[step]
        f = f[~f["granularity"].isin(["rare", "none"])].sort_values(["n_examples", "max_activation"],
                                                                       ascending=False)
        # The strongest feature of each granularity first, then the most active others.
        picks = list(f.drop_duplicates("granularity")["latent"])[:n_features]
        picks += [lat for lat in f["latent"] if lat not in picks][: n_features - len(picks)]
        ctx = contexts[step]
        for i in range(n_features):
            ax = axes[i, j]
            ax.axis("off")
            if i >= len(picks):
                continue
            lat = picks[i]
            row = f[f["latent"] == lat].iloc[0]
            ax.set_title(f"{step} · #{lat} · {row['language']} · {row['granularity']}", fontsize=7, loc="left")
            c = ctx[ctx["latent"] == lat].sort_values("rank").head(n_contexts)
            vmax = max(float(c["value"].max()), 1e-9)
            for k, (_, r) in enumerate(c.iterrows()):
                y = 1 - (k + 0.5) / n_contexts
                left = ax.text(0.0, y, str(r["left"])[-28:], fontsize=6.5, va="center", transform=ax.transAxes)
                token = ax.annotate(str(r["token"]), xy=(1, 0.5), xycoords=left, va="center", fontsize=6.5,
                                    bbox=dict(boxstyle="square,pad=0.1",
                                              fc=(0.85, 0.2, 0.1, 0.15 + 0.75 * r["value"] / vmax), lw=0))
                ax.annotate(str(r["right"])[:16], xy=(1, 0.5), xycoords=token, va="center", fontsize=6.5,
                            color="0.55")
    fig.tight_layout()
    return fig
