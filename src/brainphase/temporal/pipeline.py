"""One checkpoint's layer-latency alignment: epochs and layer activations in, a tidy table out.

Rows (column ``metric``): ``r`` per (layer, lag); ``peak_lag`` and ``peak_r``
per layer; ``alignment``, ``path_rho``, ``path_p``, ``n_words`` per fit. The
workflow script adds the ids (model, step, tokens, context …) and writes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .epochs import WordEpochs
from .lagged_ridge import DEFAULT_ALPHAS, lag_layer_scores
from .path import alignment_score, path_statistic, peak_lags


def temporal_table(epochs: WordEpochs, layers: Sequence[np.ndarray], stimuli: pd.DataFrame,
                   alphas: Sequence[float] = DEFAULT_ALPHAS, n_splits: int = 5, pca: int | None = None,
                   n_perm: int = 10000, seed: int = 0, dtype: str = "float32") -> pd.DataFrame:
    """Decode every layer (rows follow ``stimuli``) from the sensors at every lag of ``epochs``.

    Folds keep stories whole (the words' runs); layer depth is the position in ``layers``.
    ``dtype`` float32 runs the leave-one-out criterion about 1.7x faster than
    float64 and chose the same alphas on the demo; float64 equals scikit-learn
    to round-off (tests/test_temporal.py, benchmarks/temporal.py).
    """
    if len(epochs) == 0:
        raise ValueError("no epoched words: every word's window fell outside its run; shorten tmin/tmax")
    n_rows = len(stimuli)
    bad = [i for i, a in enumerate(layers) if len(a) != n_rows]
    if bad:
        raise ValueError(f"layers {bad} have a row count other than the stimulus table's {n_rows}")
    targets = [np.asarray(a, dtype=np.float64)[epochs.rows] for a in layers]
    scores = lag_layer_scores(epochs.data, targets, epochs.run, alphas=alphas, n_splits=n_splits, pca=pca,
                              dtype=dtype)
    peaks = peak_lags(scores.r, epochs.times)
    rho, p = path_statistic(peaks, n_perm=n_perm, seed=seed)
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
