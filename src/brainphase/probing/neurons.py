"""Answers -> neurons: the ridge probe of every neuron from the answer matrix, its item bootstrap, its histogram."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.linear_model import RidgeCV

from brainphase.encoding.stats import constant_columns, pearson_columns

DEFAULT_ALPHAS = np.logspace(-2, 4, 13)


class NeuronProbeResult(NamedTuple):
    """Answer-matrix -> neuron ridge probe, scored on held-out items.

    r : (n_neurons,) Pearson r per neuron on the test items; NaN for neurons
        that cannot be scored (constant on the train or test items, or with a
        constant prediction, e.g. when all test items share one answer).
    alpha : ridge penalty chosen by leave-one-out CV on the training items.
    mean_r : mean of r over the scored neurons (the probing score of the phase analysis).
    n_excluded : number of NaN neurons left out of ``mean_r``.
    pred : (n_test, n_neurons) predicted activations of the test items (in
        training z-units; r is scale-free), for resampling the test items
        (:func:`item_bootstrap`).
    excluded : (n_neurons,) bool, neurons unscorable before any resampling
        (constant on the training items).
    """

    r: np.ndarray
    alpha: float
    mean_r: float
    n_excluded: int
    pred: np.ndarray | None = None
    excluded: np.ndarray | None = None


def neuron_probe(
    answers: np.ndarray,
    acts: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    alphas: np.ndarray = DEFAULT_ALPHAS,
) -> NeuronProbeResult:
    """Predict every neuron of a layer from the answer matrix (the probe of Nakagi et al. 2025).

    Parameters
    ----------
    answers : (n_items, n_choices) answer matrix (see :func:`answer_matrix`)
    acts : (n_items, n_neurons) last-token activations of the question prompts
    train_idx, test_idx : item indices (see :func:`split_items`)
    alphas : ridge penalties tried; one alpha is shared by all neurons of the
        layer and chosen by efficient leave-one-out CV on the training items.

    Returns
    -------
    NeuronProbeResult
    """
    answers = np.asarray(answers, dtype=np.float64)
    acts = np.asarray(acts, dtype=np.float64)
    if answers.ndim != 2 or acts.ndim != 2 or answers.shape[0] != acts.shape[0]:
        raise ValueError(f"need answers (n, c) and acts (n, p) with matching n, got {answers.shape}, {acts.shape}")
    train_idx, test_idx = np.asarray(train_idx), np.asarray(test_idx)

    Y_train = acts[train_idx]
    # Neurons constant on the training items cannot be predicted (ridge gives
    # a flat prediction); they are scored NaN rather than silently as 0.
    const_train = constant_columns(Y_train)
    # z-score neurons with training statistics: Pearson r is scale-free, but
    # the shared alpha is picked by the summed LOO error, which LLM outlier
    # dimensions (activations 100x the rest) would otherwise dominate.
    mu = Y_train.mean(axis=0)
    sd = np.where(const_train, 1.0, Y_train.std(axis=0))
    Z_train = np.where(const_train, 0.0, (Y_train - mu) / sd)

    # The one-hot rows sum to 1, so the answer columns are collinear with the
    # intercept; the ridge penalty makes the fit well-posed anyway.
    model = RidgeCV(alphas=np.asarray(alphas, dtype=np.float64), fit_intercept=True)
    model.fit(answers[train_idx], Z_train)
    pred = model.predict(answers[test_idx])
    pred = np.asarray(pred).reshape(len(test_idx), -1)

    r = pearson_columns(acts[test_idx], pred)
    r[const_train] = np.nan
    finite = np.isfinite(r)
    mean_r = float(r[finite].mean()) if finite.any() else float("nan")
    return NeuronProbeResult(r=r, alpha=float(model.alpha_), mean_r=mean_r, n_excluded=int((~finite).sum()),
                             pred=pred, excluded=const_train)


def bootstrap_draws(n_items: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_items) counts: how often each test item enters each replicate (resampled with replacement).

    The draws depend on ``seed`` and ``n_items`` only, so every checkpoint of
    a model (same items, same split) gets the same replicates: differences
    between checkpoints are paired item by item.
    """
    idx = np.random.default_rng(seed).integers(0, int(n_items), size=(int(n_boot), int(n_items)))
    counts = np.zeros((int(n_boot), int(n_items)), dtype=np.float64)
    np.add.at(counts, (np.arange(int(n_boot))[:, None], idx), 1.0)
    return counts


def item_bootstrap(acts_test: np.ndarray, pred_test: np.ndarray, n_boot: int, seed: int,
                   excluded: np.ndarray | None = None) -> np.ndarray:
    """Mean per-neuron test r with the test items resampled with replacement, per replicate.

    Parameters
    ----------
    acts_test : (n_test, n_neurons) activations of the test items
    pred_test : (n_test, n_neurons) their predictions (``NeuronProbeResult.pred``)
    n_boot : replicates; seed : fixes the draws (see :func:`bootstrap_draws`)
    excluded : neurons left out of every replicate (``NeuronProbeResult.excluded``);
        a neuron constant within one replicate is left out of that replicate only.

    Returns
    -------
    (n_boot,) mean r over the neurons scored in each replicate (NaN if none).
    """
    x = np.asarray(acts_test, dtype=np.float64)
    y = np.asarray(pred_test, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"need acts_test and pred_test of one (n_test, n_neurons) shape, got {x.shape}, {y.shape}")
    n = x.shape[0]
    # A replicate's r from weighted sums (weights = draw counts): one matrix
    # product per moment instead of n_boot copies of the data. Centring first
    # keeps the moments' differences well conditioned.
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    W = bootstrap_draws(n, n_boot, seed) / n
    mx, my = W @ x, W @ y
    vx = W @ (x * x) - mx**2
    vy = W @ (y * y) - my**2
    cxy = W @ (x * y) - mx * my
    scale_x = np.maximum((x * x).mean(axis=0), np.finfo(float).tiny)
    scale_y = np.maximum((y * y).mean(axis=0), np.finfo(float).tiny)
    ok = (vx > 1e-10 * scale_x) & (vy > 1e-10 * scale_y)
    if excluded is not None:
        ok &= ~np.asarray(excluded, dtype=bool)[None, :]
    r = np.where(ok, cxy / np.sqrt(np.where(ok, vx * vy, 1.0)), np.nan)
    n_ok = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_ok > 0, np.nansum(r, axis=1) / n_ok, np.nan)


def r_histogram(r: np.ndarray, bin_width: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of per-neuron r with fixed-width bins on [-1, 1].

    Fixed edges (multiples of ``bin_width``) make histograms of different
    checkpoints directly comparable and stackable. NaN neurons are left out.

    Returns
    -------
    edges : (n_bins + 1,) bin edges; counts : (n_bins,) int neuron counts
    """
    r = np.asarray(r, dtype=np.float64).ravel()
    n_bins = int(round(2.0 / bin_width))
    edges = np.linspace(-1.0, 1.0, n_bins + 1)
    counts, _ = np.histogram(r[np.isfinite(r)], bins=edges)
    return edges, counts
