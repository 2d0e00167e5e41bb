"""One checkpoint's layer-latency alignment: epochs and layer activations in, a tidy table out.

Rows (column ``metric``): ``r`` per (layer, lag); ``peak_lag`` and ``peak_r``
per layer; ``alignment``, ``path_rho``, ``path_p``, ``n_words`` per fit. The
workflow script adds the ids (model, step, tokens, context …) and writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..encoding.settings import alpha_grid
from .epochs import WordEpochs
from .lagged_ridge import DEFAULT_ALPHAS, lag_layer_scores
from .path import alignment_score, path_statistic, peak_lags


@dataclass
class TemporalSettings:
    """How :func:`temporal_table` decodes the layers and tests their path."""

    alphas: np.ndarray = field(default_factory=lambda: DEFAULT_ALPHAS.copy())
    """Ridge penalties; each target column gets its own by leave-one-out on the training fold."""
    n_splits: int = 5
    """Outer folds, each keeping stories whole (leave-one-story-out with at most this many stories)."""
    pca: int | None = None
    """Fit each layer's top principal components instead of its columns (None: all columns)."""
    n_perm: int = 10000
    """Permutations of the layer order for the path statistic's p-value."""
    seed: int = 0
    """Seed of those permutations."""
    dtype: str = "float32"
    """Precision of the leave-one-out criterion's dominant product; "float64" equals
    scikit-learn's ``RidgeCV`` to round-off."""
    budget_bytes: int | None = None
    """Memory the fit may hold (the job's ``mem_mb``); it fits as many lags at once as stay
    within it and raises MemoryError when one lag does not (None: a fixed bound on its products)."""

    @classmethod
    def from_config(cls, cfg: dict, seed: int, budget_bytes: int | None = None) -> TemporalSettings:
        """Settings from the config's ``temporal`` section (``dtype`` keeps its default)."""
        return cls(alphas=alpha_grid(cfg), n_splits=cfg["cv_splits"], pca=cfg["pca"], n_perm=cfg["n_perm"],
                   seed=seed, budget_bytes=budget_bytes)


def temporal_table(epochs: WordEpochs, layers: Sequence[np.ndarray], stimuli: pd.DataFrame,
                   settings: TemporalSettings | None = None) -> pd.DataFrame:
    """Decode every layer (rows follow ``stimuli``) from the sensors at every lag of ``epochs``.

    Folds keep stories whole (the words' runs); layer depth is the position in
    ``layers``. ``settings``: :class:`TemporalSettings` (None: its defaults).
    """
    s = settings or TemporalSettings()
    if len(epochs) == 0:
        raise ValueError("no epoched words: every word's window fell outside its run; shorten tmin/tmax")
    n_rows = len(stimuli)
    bad = [i for i, a in enumerate(layers) if len(a) != n_rows]
    if bad:
        raise ValueError(f"layers {bad} have a row count other than the stimulus table's {n_rows}")
    targets = [np.asarray(a, dtype=np.float64)[epochs.rows] for a in layers]
    scores = lag_layer_scores(epochs.data, targets, epochs.run, alphas=s.alphas, n_splits=s.n_splits, pca=s.pca,
                              dtype=s.dtype, budget_bytes=s.budget_bytes)
    peaks = peak_lags(scores.r, epochs.times)
    rho, p = path_statistic(peaks, n_perm=s.n_perm, seed=s.seed)
    n_layers, n_lags = scores.r.shape
    frames = [
        pd.DataFrame({"layer": np.repeat(np.arange(n_layers), n_lags), "lag": np.tile(epochs.times, n_layers),
                      "metric": "r", "value": scores.r.ravel()}),
        pd.DataFrame({"layer": np.arange(n_layers), "lag": np.nan, "metric": "peak_lag", "value": peaks}),
        pd.DataFrame({"layer": np.arange(n_layers), "lag": np.nan, "metric": "peak_r",
                      "value": np.nanmax(np.where(np.isfinite(scores.r), scores.r, np.nan), axis=1)}),
        pd.DataFrame({"layer": np.nan, "lag": np.nan,
                      "metric": ["alignment", "path_rho", "path_p", "n_words", "alpha_edge_fraction"],
                      "value": [alignment_score(scores.r), rho, p, len(epochs), scores.edge_fraction]}),
    ]
    return pd.concat(frames, ignore_index=True)
