"""Export SAE features for people: a CSV labelling sheet and a static HTML page.

Without a dictionary, labelling a sample of features by hand is the only way
to tell the granularity of a real corpus's features. The sheet lists each
feature's automatic labels, its strongest contexts and an empty ``label``
column to fill in. The HTML page shows each feature as a card of contexts
whose activating token is shaded in proportion to its activation. Neither
needs JS or external resources.
"""

from __future__ import annotations

import html
import os

import numpy as np
import pandas as pd

from brainphase.io import atomic_path

from .features import GRANULARITIES

SEPARATOR = " ‖ "
_MARK = ("⟦", "⟧")  # brackets the activating token in the sheet's plain-text examples
_COLOUR = "255, 140, 0"  # activating-token shading, alpha = value / the feature's max value

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.3em; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 0.9em; margin: 0.8em 0; }
.card h2 { font-size: 1em; margin: 0 0 0.4em 0; }
.tag { display: inline-block; font-size: 0.8em; padding: 0 0.5em; margin-right: 0.3em; border-radius: 3px;
       background: #eef; }
ol { margin: 0.3em 0 0 0; padding-left: 2.2em; }
li { font-family: monospace; white-space: pre-wrap; margin: 0.1em 0; }
.ctx { color: #666; }
.act { border-radius: 2px; color: #000; outline: 1px solid rgba(200, 100, 0, 0.4); }
.val { color: #999; font-size: 0.8em; margin-left: 0.6em; }
"""


def _auto_label(granularity: str) -> str:
    return granularity if granularity in GRANULARITIES else ""


def _one_line(text: str) -> str:
    return str(text).replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎")


class _Examples:
    """A feature's contexts, strongest first, sliced out of one sorted table."""

    def __init__(self, ctx: pd.DataFrame):
        ctx = ctx.sort_values(["latent", "rank"], kind="stable")
        self.latent = ctx["latent"].to_numpy(dtype=np.int64)
        self.cols = {c: ctx[c].to_numpy(dtype=object) for c in ("left", "token", "right")}
        self.value = ctx["value"].to_numpy(dtype=np.float64)

    def get(self, latent: int, n: int) -> tuple[list, list, list, np.ndarray, float]:
        """(left, token, right, value) of the first ``n`` contexts, and the feature's largest value."""
        s, e = np.searchsorted(self.latent, [latent, latent + 1])
        m = min(e, s + n)
        vmax = float(self.value[s:e].max()) if e > s else float("nan")
        return (*(list(self.cols[c][s:m]) for c in ("left", "token", "right")), self.value[s:m], vmax)


def labelling_sheet(features: pd.DataFrame, ctx: pd.DataFrame, n_contexts: int = 10,
                    include_rare: bool = False) -> pd.DataFrame:
    """One row per feature with examples (rare ones only with ``include_rare``), for hand labelling.

    Columns: latent, n_examples, language, granularity (the automatic label,
    "" where there is none), top_token, label (empty, for the human) and
    examples — the feature's first ``n_contexts`` contexts, strongest first,
    the activating token bracketed ⟦like this⟧, joined with " ‖ ".
    """
    ex = _Examples(ctx)
    feats = features[features["n_examples"] > 0]
    if not include_rare:
        feats = feats[feats["granularity"] != "rare"]
    feats = feats.sort_values("latent")
    rows = []
    for f in feats.itertuples(index=False):
        left, token, right, _, _ = ex.get(int(f.latent), n_contexts)
        if not token:
            continue
        texts = [_one_line(f"{lft}{_MARK[0]}{t}{_MARK[1]}{r}") for lft, t, r in zip(left, token, right)]
        rows.append({"latent": int(f.latent), "n_examples": int(f.n_examples), "language": f.language,
                     "granularity": _auto_label(f.granularity),
                     "top_token": "" if f.top_token is None or pd.isna(f.top_token) else _one_line(f.top_token),
                     "label": "", "examples": SEPARATOR.join(texts)})
    columns = ["latent", "n_examples", "language", "granularity", "top_token", "label", "examples"]
    return pd.DataFrame(rows, columns=columns)


def feature_html(ctx: pd.DataFrame, features: pd.DataFrame, title: str, max_features: int = 200,
                 n_contexts: int = 20) -> str:
    """A standalone HTML page: one card per feature with examples (classified first, then rare).

    Each context shows the activating token on a background whose alpha is
    its value / the feature's largest value, so the strongest example is
    fully shaded. All text is escaped.
    """
    ex = _Examples(ctx)
    feats = features[features["n_examples"] > 0].assign(_rare=lambda d: d["granularity"] == "rare")
    feats = feats.sort_values(["_rare", "latent"]).head(max_features)
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="ja"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>",
             f"<p>{len(feats)} of {int((features['n_examples'] > 0).sum())} active features "
             f"({len(features)} latents). Shading of the activating token = activation / the feature's "
             "largest activation.</p>"]
    for f in feats.itertuples(index=False):
        left, token, right, value, vmax = ex.get(int(f.latent), n_contexts)
        if not token:
            continue
        top = "" if f.top_token is None or pd.isna(f.top_token) else str(f.top_token)
        parts.append(f'<div class="card" id="feature-{int(f.latent)}">')
        parts.append(f"<h2>Feature {int(f.latent)}</h2>"
                     f'<span class="tag">language: {esc(str(f.language))}</span>'
                     f'<span class="tag">granularity: {esc(str(f.granularity))}</span>'
                     f'<span class="tag">examples: {int(f.n_examples)}</span>'
                     f'<span class="tag">top token: {esc(top)} ({f.top_token_share:.0%})</span>')
        parts.append("<ol>")
        for lft, t, r, v in zip(left, token, right, value):
            alpha = float(np.clip(v / vmax, 0.0, 1.0)) if vmax > 0 else 0.0
            shade = f"background-color: rgba({_COLOUR}, {alpha:.3f})"
            parts.append(f'<li><span class="ctx">{esc(str(lft))}</span>'
                         f'<span class="act" style="{shade}">{esc(str(t))}</span>'
                         f'<span class="ctx">{esc(str(r))}</span><span class="val">{float(v):.3g}</span></li>')
        parts.append("</ol></div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_sheet(path_csv: str | os.PathLike, path_html: str | os.PathLike, features: pd.DataFrame,
                ctx: pd.DataFrame, title: str) -> None:
    """Write the labelling sheet (CSV) and the feature page (HTML), each atomically."""
    sheet = labelling_sheet(features, ctx)
    page = feature_html(ctx, features, title)
    with atomic_path(path_csv) as tmp:
        sheet.to_csv(tmp, index=False)
    with atomic_path(path_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
