"""Pearson r of held-out predictions, accumulated fold by fold from sums.

The cross-validated predictions P of a (lag, column) are never stored for
all lags: each fold adds its ``sum P``, ``sum P^2`` and ``sum P y`` over its
held-out words, and r follows from the sums once every word was held out.
A fold whose predictions are a product ``P = A W + mean`` (A the held-out
words' design coordinates, W each column's weights) adds its sums without
forming P: ``1^T A W``, ``diag(W^T (A^T A) W)`` and ``diag(W^T (A^T y))``.
"""

from __future__ import annotations

import numpy as np

from ..encoding.stats import constant_columns


class HeldOutSums:
    """``sum P``, ``sum P^2`` and ``sum P y`` per (lag, column) over the held-out words so far."""

    def __init__(self, n_lags: int, n_cols: int):
        self.p = np.zeros((n_lags, n_cols))
        self.pp = np.zeros((n_lags, n_cols))
        self.py = np.zeros((n_lags, n_cols))

    def add(self, lags: slice, P: np.ndarray, Y: np.ndarray) -> None:
        """Predictions P (L, n_test, n_cols) of the held-out targets Y (n_test, n_cols)."""
        self.p[lags] += P.sum(axis=1)
        self.pp[lags] += np.einsum("lnc,lnc->lc", P, P)
        self.py[lags] += np.einsum("lnc,nc->lc", P, Y)

    def add_factored(self, lags: slice, A: np.ndarray, W: np.ndarray, mean: np.ndarray, Y: np.ndarray) -> None:
        """Predictions ``A @ W + mean``: A (L, n_test, k), W (L, k, n_cols), mean (n_cols,)."""
        n = A.shape[1]
        p0 = np.einsum("lk,lkc->lc", A.sum(axis=1), W)
        pp0 = np.einsum("lkc,lkc->lc", (A.transpose(0, 2, 1) @ A) @ W, W)
        py0 = np.einsum("lkc,lkc->lc", A.transpose(0, 2, 1) @ Y, W)
        self.p[lags] += p0 + n * mean
        self.pp[lags] += pp0 + 2.0 * mean * p0 + n * mean**2
        self.py[lags] += py0 + mean * Y.sum(axis=0)

    def correlations(self, Yall: np.ndarray, layer_cols: list) -> tuple[np.ndarray, np.ndarray]:
        """Pearson r per (lag, column) against all words' targets Yall, and its mean per (layer, lag)."""
        n = float(Yall.shape[0])
        var_p = self.pp - self.p**2 / n
        var_y = np.einsum("nc,nc->c", Yall, Yall) - Yall.sum(0) ** 2 / n
        cov = self.py - self.p * Yall.sum(0) / n
        with np.errstate(invalid="ignore", divide="ignore"):
            r_columns = np.clip(cov / np.sqrt(var_p * var_y), -1.0, 1.0)
        undefined = (var_p <= 0) | constant_columns(Yall)[None, :]
        r_columns[undefined] = np.nan
        r = np.full((len(layer_cols), r_columns.shape[0]), np.nan)
        for i, sl in enumerate(layer_cols):
            block = r_columns[:, sl]
            ok = np.isfinite(block).any(axis=1)
            r[i, ok] = np.nanmean(block[ok], axis=1)
        return r_columns, r
