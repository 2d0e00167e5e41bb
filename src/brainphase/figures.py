"""What every figure shares: the matplotlib backend and fonts, saving, the log-token axis, the voxel sheet,
and which model, subject or checkpoint a figure shows.

Each analysis draws its figures in its own ``plots`` module (``brainphase.encoding.plots``,
``brainphase.phases.plots``, ...), which only workflow plot scripts import: a compute job never
loads matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402

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


def token_axis(ax, init_x: float | None) -> None:
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
        token_axis(ax, init_x)
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


# --------------------------------------------------------------------------- what a figure shows
@dataclass(frozen=True)
class FigureSelection:
    """The model, dataset, subject ... a figure shows, where the tables hold all of them."""

    values: dict[str, Any]
    """Column -> the value shown, e.g. ``{"model": "pythia-70m"}``."""

    @classmethod
    def first(cls, table: pd.DataFrame, keys: Sequence[str]) -> "FigureSelection":
        """The first combination of the ``keys`` columns in sorted order: the same choice on every rerun."""
        keys = list(keys)
        first = table[keys].drop_duplicates().sort_values(keys).iloc[0]
        return cls({k: first[k] for k in keys})

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``table`` that match every selected column."""
        mask = np.ones(len(table), dtype=bool)
        for key, value in self.values.items():
            mask &= (table[key] == value).to_numpy()
        return table[mask]


def steps_by_tokens(table: pd.DataFrame) -> list[str]:
    """The checkpoints (``step``) of ``table`` in training order (by ``tokens``)."""
    return table[["step", "tokens"]].drop_duplicates().sort_values("tokens")["step"].tolist()


def nearest_step(table: pd.DataFrame, tokens: float) -> str:
    """The checkpoint of ``table`` whose token count is closest to ``tokens``."""
    steps = table[["step", "tokens"]].drop_duplicates().set_index("tokens")["step"]
    return steps.loc[min(steps.index, key=lambda t: abs(t - tokens))]
