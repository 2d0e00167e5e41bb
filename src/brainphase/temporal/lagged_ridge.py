"""Decoding layer activations from word-locked MEG at every lag.

For every lag t of the epochs, ridge regression with intercept maps the
channels at that lag, ``X_t = brain[:, :, t]`` (z-scored per channel with the
training fold's mean and std, as ``StandardScaler``), to all target columns
of all layers at once. Each target column gets its own alpha, chosen on the
training fold by efficient leave-one-out, exactly the criterion of
``sklearn.linear_model.RidgeCV(alphas, alpha_per_target=True)`` (mean squared
LOO error, unpenalised intercept, first minimiser in ``alphas`` order). The
outer cross-validation keeps stories whole (:func:`grouped_splits`), and
``r(l, t)`` is the mean over layer l's columns of the Pearson r between the
held-out predictions (all folds concatenated) and the targets.

Written by hand rather than as a loop over (layer, lag, fold) of
``make_pipeline(StandardScaler(), RidgeCV(...))``: that loop refactorises the
same X_t once per layer, runs several passes over an (n_train x n_columns)
array per alpha, and makes ``n_layers * n_lags * n_splits`` calls
(``benchmarks/temporal.py`` compares the two). Here, per fold and per chunk
of lags:

* one batched thin SVD of the stacked centred designs ``X_t = U_t S_t
  V_t^T`` (shared by every layer and column; Cholesky QR then the small SVD,
  :func:`brainphase.temporal.loo.tall_svd`, or LAPACK's with
  ``dtype="float32"``);
* for alpha a, with ``f = s^2 / (s^2 + a)``, ``Z = U^T Y`` (Y centred on the
  training mean), fitted values ``U diag(f) Z`` and leverages
  ``h_i = sum_j U_ij^2 f_j``, the LOO residual with an intercept is
  ``e_i = (y_i - yhat_i) / (1 - 1/n - h_i)`` (Rifkin & Lippert 2007; the
  long-X SVD branch of sklearn's ``_RidgeGCV``). With ``w = (1 - 1/n - h)^-2``
  its sum of squares expands into matrix products::

      SSE = w^T Y^2 - 2 sum_j f_j Z_j (U^T diag(w) Y)_j
            + (f Z)^T (U^T diag(w) U) (f Z)

  so no (alphas x n_train x columns) residual array is formed. The
  costly part, ``U^T diag(w_a) Y`` for every alpha (``n_alphas *
  n_channels * n_train * n_columns`` multiply-adds per lag and fold, the
  count of sklearn's per-alpha products), runs on a low-rank form of the
  alphas' weights with a rigorous error bound, and an exact check of the
  alphas the bound leaves close (:mod:`brainphase.temporal.loo`): ~3 ranks
  instead of 13 alphas, the same choice;
* held-out predictions ``((X_test - mean) / std) V diag(s / (s^2 + a_c)) Z``
  plus the training mean, with each column's own alpha gathered, not looped.

Pearson r is accumulated from per-fold sums (targets centred once on all
words), so predictions are never stored for all lags unless asked for, and
the epochs are taken as float64 one chunk of lags at a time. The alphas
match sklearn's choice by default; ``dtype="float32"`` computes every
alpha's product with its small ``w - 1`` correction in float32 instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..encoding.ridge import grouped_splits
from ..progress import Progress
from .held_out import HeldOutSums
from .loo import loo_best, tall_svd
from .memory import DEFAULT_MAX_ELEMENTS, TemporalShape, chunk_elements, default_lags, lags_per_chunk

logger = logging.getLogger(__name__)

DEFAULT_ALPHAS = np.logspace(-1, 5, 13)


@dataclass
class LagScores:
    """Cross-validated decoding scores of every (layer, lag).

    Attributes
    ----------
    r : array (n_layers, n_lags)
        Mean over the layer's target columns of the held-out Pearson r
        (NaN columns, see ``r_columns``, are left out of the mean).
    r_columns : array (n_lags, n_columns)
        Pearson r of each original target column; NaN where the target column
        is constant (``encoding.stats.constant_columns``) or the
        cross-validated prediction has no variance.
    best_alpha : array (n_folds, n_lags, n_fit_columns)
        Alpha chosen by leave-one-out on each training fold for each fitted
        column (the original columns, or each layer's principal components
        when ``pca`` is set).
    alphas : array (n_alphas,)
    layer_columns : list of slice
        Columns of each layer among the stacked original targets.
    fit_columns : list of slice
        Columns of each layer among the fitted columns (``best_alpha``).
    splits : list of (train, test) index arrays
        The grouped outer folds (no story in both parts).
    predictions : array (n_lags, n_words, n_columns) or None
        Held-out predictions (only with ``return_predictions=True``).
    """

    r: np.ndarray
    r_columns: np.ndarray
    best_alpha: np.ndarray
    alphas: np.ndarray
    layer_columns: list
    fit_columns: list
    splits: list
    predictions: np.ndarray | None = None

    @property
    def layer_alpha(self) -> np.ndarray:
        """(n_layers, n_lags) median over folds and fitted columns of the chosen alpha
        (median of log alpha, so a geometric summary on the grid)."""
        log_a = np.log10(self.best_alpha)
        return np.stack(
            [10 ** np.median(log_a[:, :, sl], axis=(0, 2)) for sl in self.fit_columns]
        )

    @property
    def edge_fraction(self) -> float:
        """Fraction of (fold, lag, column) choices at either end of the alpha grid
        (large values: widen the grid)."""
        edges = np.isin(self.best_alpha, [self.alphas.min(), self.alphas.max()])
        return float(edges.mean())


def _as_layers(targets, n_words: int) -> list[np.ndarray]:
    if isinstance(targets, np.ndarray):
        if targets.ndim == 2:
            targets = [targets]
        elif targets.ndim == 3:
            targets = list(targets)
        else:
            raise ValueError(f"targets array must be 2-D or 3-D, got shape {targets.shape}")
    layers = []
    for i, Y in enumerate(targets):
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2 or Y.shape[0] != n_words or Y.shape[1] == 0:
            raise ValueError(f"targets[{i}] must be (n_words={n_words}, d), got shape {Y.shape}")
        layers.append(Y)
    if not layers:
        raise ValueError("targets is empty")
    return layers


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-(lag, channel) mean and scale over axis 1, as ``StandardScaler``:
    population std, 1 for (numerically) constant channels."""
    n = X.shape[1]
    mean = X.mean(axis=1, keepdims=True)
    var = ((X - mean) ** 2).mean(axis=1, keepdims=True)
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    return mean, np.where(constant, 1.0, np.sqrt(var))


class _FoldTargets:
    """Fitted targets of one training fold: the centred columns or, with
    ``pca``, each layer's top principal-component scores, and the map from
    fitted-column predictions back to the original columns."""

    def __init__(self, Yall: np.ndarray, layer_cols: list, train: np.ndarray, pca: int | None):
        Y = Yall[train]
        self.mean = Y.mean(0)
        Y -= self.mean
        if pca is None:
            self.components = None
        else:
            self.components = []
            for sl in layer_cols:
                _, V = np.linalg.eigh(Y[:, sl].T @ Y[:, sl])
                k = min(pca, sl.stop - sl.start)
                V = V[:, ::-1][:, :k]
                # deterministic sign: largest-magnitude loading positive
                V = V * np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(k)])
                self.components.append(V)
            Y = np.concatenate([Y[:, sl] @ V for sl, V in zip(layer_cols, self.components)], axis=1)
        self.Y = Y
        self.Y2 = Y**2

    def back_project(self, P: np.ndarray, layer_cols, fit_cols) -> np.ndarray:
        """(..., n_fit_columns) predictions around the training mean -> (..., n_columns).
        Without PCA, P is shifted in place."""
        if self.components is None:
            P += self.mean
            return P
        out = np.empty(P.shape[:-1] + (layer_cols[-1].stop,))
        for lc, fc, V in zip(layer_cols, fit_cols, self.components):
            out[..., lc] = P[..., fc] @ V.T + self.mean[lc]
        return out


def lag_layer_scores(
    brain: np.ndarray,
    targets: Sequence[np.ndarray] | np.ndarray,
    groups: Sequence,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_splits: int = 5,
    pca: int | None = None,
    return_predictions: bool = False,
    dtype: str = "float64",
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    budget_bytes: int | None = None,
) -> LagScores:
    """Cross-validated r of decoding each layer's activations from the brain at each lag.

    Parameters
    ----------
    brain : array (n_words, n_channels, n_lags)
        Word-locked epochs; lag t is the epoch's t-th time sample.
    targets : list of arrays (n_words, d_l), one per layer (d may differ),
        or one (n_words, d) / (n_layers, n_words, d) array.
    groups : array (n_words,)
        Story/run of each word; outer folds keep stories whole
        (``GroupKFold(n_splits)``, deterministic; leave-one-story-out when
        there are at most ``n_splits`` stories).
    alphas : array (n_alphas,)
        Ridge penalties ``alpha ||w||^2``; each fitted column gets its own,
        by leave-one-out on the training fold (as ``RidgeCV(alphas,
        alpha_per_target=True)``).
    n_splits : int
    pca : int or None
        Fit each layer's top-``pca`` principal components (of the training
        fold's activations) instead of its columns; predictions are projected
        back and scored against the original columns, so ``r`` keeps its
        meaning and the held-out folds concatenate consistently.
    return_predictions : bool
        Keep the held-out predictions, (n_lags, n_words, n_columns) float64.
    dtype : {"float64", "float32"}
        The leave-one-out criterion (:mod:`brainphase.temporal.loo`).
        "float64": exact, alphas and predictions equal sklearn's ``RidgeCV``
        to round-off. "float32": every alpha's ``w - 1`` correction product
        in float32 (~1e-8 relative error on the LOO errors), so an alpha may
        differ from float64's where two alphas nearly tie; slower than
        "float64". SVDs, predictions and r stay float64.
    max_elements : int
        Memory bound: elements of the largest per-chunk product (float64).
    budget_bytes : int or None
        Memory budget of the whole fit, inputs included
        (:mod:`brainphase.temporal.memory`): lags are fitted in chunks small
        enough to stay within it; MemoryError when one lag does not fit.

    Returns
    -------
    LagScores
    """
    brain, layers, groups, alphas = _checked(brain, targets, groups, alphas, pca, dtype)
    widths = [Y.shape[1] for Y in layers]
    layer_cols = _column_slices(widths)
    fit_cols = _column_slices(widths if pca is None else [min(int(pca), d) for d in widths])

    # Ridge with an intercept is invariant to shifting Y; centring on all
    # words first keeps the accumulated Pearson sums well conditioned.
    Yall = np.concatenate(layers, axis=1) if len(layers) > 1 else layers[0].copy()
    del layers
    offsets = Yall.mean(0)
    Yall -= offsets

    splits = grouped_splits(groups, n_splits)
    shape = TemporalShape(*brain.shape, Yall.shape[1], fit_cols[-1].stop, max(len(tr) for tr, _ in splits),
                          max(len(te) for _, te in splits), alphas.size, len(splits), brain.itemsize,
                          pca is not None, return_predictions)
    best_alpha, sums, predictions = _cross_validate(brain, Yall, splits, layer_cols, fit_cols, alphas, pca, dtype,
                                                    _bounds(shape, budget_bytes, max_elements), return_predictions)
    if predictions is not None:
        predictions += offsets  # undo the global centring
    r_columns, r = sums.correlations(Yall, layer_cols)
    return LagScores(r=r, r_columns=r_columns, best_alpha=best_alpha, alphas=alphas, layer_columns=layer_cols,
                     fit_columns=fit_cols, splits=splits, predictions=predictions)


def _bounds(shape: TemporalShape, budget_bytes: int | None, max_elements: int) -> tuple[int, int]:
    """(max_elements, most lags per chunk) of a fit that stays within ``budget_bytes`` (None: no budget)."""
    if budget_bytes is None:
        return max_elements, shape.n_lags
    lags = min(lags_per_chunk(shape, budget_bytes), default_lags(shape, max_elements))
    return min(max_elements, chunk_elements(shape, lags)), lags


def _cross_validate(brain: np.ndarray, Yall: np.ndarray, splits: list, layer_cols: list, fit_cols: list,
                    alphas: np.ndarray, pca: int | None, dtype: str, bounds: tuple, return_predictions: bool):
    """Fit every outer fold, chunk by chunk of lags.

    brain (n_words, n_channels, n_lags), any float dtype: each chunk's lags are
    taken as float64 when fitted, so no float64 copy of all lags is held;
    Yall (n_words, n_columns) centred; bounds: (max_elements, most lags per chunk).
    Returns the chosen alphas (n_folds, n_lags, n_fit_columns), the sums of
    the held-out predictions (:class:`HeldOutSums`), and the predictions
    themselves (or None). The exact criterion's folds add their sums from the
    prediction's factors when no prediction is kept; the float32 criterion's
    form P, whose sums the workflow's tables were computed with.
    """
    n_words, n_channels, n_lags = brain.shape
    max_elements, max_lags = bounds
    n_cols = layer_cols[-1].stop
    best_alpha = np.empty((len(splits), n_lags, fit_cols[-1].stop))
    sums = HeldOutSums(n_lags, n_cols)
    factored = dtype == "float64" and pca is None and not return_predictions
    predictions = np.empty((n_lags, n_words, n_cols)) if return_predictions else None
    progress = Progress(logger, "temporal fit", len(splits) * n_lags, "fold-lags")
    for k_fold, (train, test) in enumerate(splits):
        fold = _FoldTargets(Yall, layer_cols, train, None if pca is None else int(pca))
        Yte = Yall[test]
        Y32 = fold.Y.astype(np.float32)
        n_tr, rank = len(train), min(len(train), n_channels)
        step = max(1, min(max_lags, max_elements // (alphas.size * rank * n_tr)))
        for t0 in range(0, n_lags, step):
            lags = slice(t0, min(t0 + step, n_lags))
            X = np.ascontiguousarray(brain[:, :, lags].transpose(2, 0, 1), dtype=np.float64)  # (L, words, channels)
            best, A, W = _fit_predict(X, train, test, fold, alphas, max_elements, Y32, dtype)
            best_alpha[k_fold, lags] = alphas[best]
            if factored:
                sums.add_factored(lags, A, W, fold.mean, Yte)
            else:
                P = fold.back_project(A @ W, layer_cols, fit_cols)  # (L, n_test, n_cols)
                sums.add(lags, P, Yte)
                if predictions is not None:
                    predictions[lags][:, test] = P
                del P
            del X, A, W
            progress.update(lags.stop - lags.start)
        del fold, Y32, Yte  # before the next fold's copies
    return best_alpha, sums, predictions


def _checked(brain, targets, groups, alphas, pca, dtype):
    """The inputs of :func:`lag_layer_scores` (brain kept at its float dtype, the rest float64);
    ValueError on a bad one."""
    brain = np.asarray(brain)
    if not np.issubdtype(brain.dtype, np.floating):
        brain = brain.astype(np.float64)
    if brain.ndim != 3:
        raise ValueError(f"brain must be (n_words, n_channels, n_lags), got shape {brain.shape}")
    n_words = brain.shape[0]
    layers = _as_layers(targets, n_words)
    groups = np.asarray(groups)
    if groups.shape != (n_words,):
        raise ValueError(f"groups must be ({n_words},), got shape {groups.shape}")
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if alphas.size == 0 or not np.all(alphas > 0) or not np.all(np.isfinite(alphas)):
        raise ValueError("alphas must be positive and finite")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if pca is not None and (int(pca) != pca or pca < 1):
        raise ValueError(f"pca must be a positive integer or None, got {pca!r}")
    finite = all(np.isfinite(brain[:, :, t:t + 8]).all() for t in range(0, brain.shape[2], 8))  # no full mask
    if not finite or not all(np.isfinite(Y).all() for Y in layers):
        raise ValueError("brain and targets must be finite")
    return brain, layers, groups, alphas


def _column_slices(widths: Sequence[int]) -> list[slice]:
    """Consecutive column blocks of the given widths."""
    bounds = np.concatenate([[0], np.cumsum(widths)])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _fit_predict(X: np.ndarray, train: np.ndarray, test: np.ndarray, fold: _FoldTargets, alphas: np.ndarray,
                 max_elements: int, Y32: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit one fold at a chunk of lags; the chosen alphas and the held-out predictions' factors.

    X (L, n_words, n_channels): the brain at L lags. Returns best (L, n_fit)
    indices into ``alphas``, and A (L, n_test, k) and W (L, k, n_fit) with
    ``A @ W`` the predictions around the training mean of the fitted columns.
    """
    Xtr = X[:, train]
    mean, scale = _standardise(Xtr)
    Xs = (Xtr - mean) / scale
    # float32 keeps LAPACK's SVD, which the workflow's tables were computed with
    U, s, Vt = tall_svd(Xs) if dtype == "float64" else np.linalg.svd(Xs, full_matrices=False)
    del Xtr, Xs
    best, Z = loo_best(U, s, fold.Y, fold.Y2, alphas, max_elements, Y32, dtype)
    del U
    # held-out predictions, each column with its own alpha
    d = s[:, None, :] / (s[:, None, :] ** 2 + alphas[None, :, None])  # (L, A, k)
    d = np.where(np.isfinite(d), d, 0.0)
    L = d.shape[0]
    d_sel = d[np.arange(L)[:, None], best, :].transpose(0, 2, 1)  # (L, k, m)
    Xte = (X[:, test] - mean) / scale
    return best, Xte @ Vt.transpose(0, 2, 1), d_sel * Z
