"""Probing the layer activations for benchmark answers.

Two directions, both scored on held-out items of one fixed split:

* the paper's direction: from the *answer matrix* (items x choices, 1 =
  correct choice, 0 = others) predict every neuron of a layer by ridge
  regression; the score is the Pearson r per neuron on the test items,
  summarised by its mean over neurons and by its histogram (bins of 0.01);
  its uncertainty is an item bootstrap (test items resampled with
  replacement, the same draws at every checkpoint, so checkpoints are paired);
* the standard direction: a linear classifier from the activation to the
  index of the correct choice; the score is held-out accuracy, reported with
  its chance levels.

Arrays in, arrays out: the caller extracts the last-token activations of the
question prompts (as lm-eval renders them, see
:mod:`brainphase.evals.prompts`) and the correct-choice indices;
:func:`align_items` matches them by unit id and :func:`probe_task` runs every
layer.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.stats
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from brainphase.encoding.stats import constant_columns, pearson_columns

DEFAULT_ALPHAS = np.logspace(-2, 4, 13)
DEFAULT_CS = np.logspace(-4, 2, 7)


# --------------------------------------------------------------------------- split
def split_items(n_items: int, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train/test split of benchmark items, fixed by ``seed``.

    The same seed gives the same split for every checkpoint and layer, so
    probing scores along training are compared on the same test items.

    Returns
    -------
    train_idx, test_idx : sorted int arrays, disjoint, covering ``range(n_items)``
    """
    n_items = int(n_items)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(n_items * test_fraction))
    if n_test < 1 or n_test >= n_items:
        raise ValueError(f"{n_items} items cannot be split with test_fraction={test_fraction}")
    perm = np.random.default_rng(seed).permutation(n_items)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def answer_matrix(targets: np.ndarray, n_choices: int) -> np.ndarray:
    """One-hot answer matrix: 1 at the correct choice of each item, 0 elsewhere.

    Parameters
    ----------
    targets : int array (n_items,), index of the correct choice
    n_choices : number of choices per item (4 for MMLU, 5 for CSQA)

    Returns
    -------
    array (n_items, n_choices), float64
    """
    targets = np.asarray(targets)
    if targets.ndim != 1:
        raise ValueError("targets must be 1-D")
    if targets.size and (targets.min() < 0 or targets.max() >= n_choices):
        raise ValueError(f"targets must lie in [0, {n_choices})")
    A = np.zeros((targets.size, int(n_choices)), dtype=np.float64)
    A[np.arange(targets.size), targets.astype(int)] = 1.0
    return A


# --------------------------------------------------------------------------- answers -> neurons
class NeuronProbeResult(NamedTuple):
    """Answer-matrix -> neuron ridge probe, scored on held-out items.

    r : (n_neurons,) Pearson r per neuron on the test items; NaN for neurons
        that cannot be scored (constant on the train or test items, or with a
        constant prediction, e.g. when all test items share one answer).
    alpha : ridge penalty chosen by leave-one-out CV on the training items.
    mean_r : mean of r over the scored neurons (the paper's probing score).
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
    """Predict every neuron of a layer from the answer matrix (the paper's probe).

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
    """Histogram of per-neuron r with fixed-width bins on [-1, 1] (Fig. 4).

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


# --------------------------------------------------------------------------- neurons -> answer
class ChoiceProbeResult(NamedTuple):
    """Activation -> correct-choice classifier, scored on held-out items.

    accuracy : held-out accuracy.
    chance : majority-class rate of the test items (what a constant guess of
        the most frequent test answer scores; the honest chance level when
        answer positions are unbalanced).
    chance_uniform : 1 / n_choices.
    p_value : one-sided binomial p of ``accuracy`` against ``chance``.
    C : inverse regularisation chosen by CV on the training items.
    n_test : number of test items.
    predictions : (n_test,) predicted choice per test item.
    """

    accuracy: float
    chance: float
    chance_uniform: float
    p_value: float
    C: float
    n_test: int
    predictions: np.ndarray


def choice_probe(
    acts: np.ndarray,
    targets: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    Cs: np.ndarray = DEFAULT_CS,
    n_choices: int | None = None,
    n_folds: int = 5,
    max_iter: int = 1000,
    seed: int = 0,
    blas_threads: int | None = 1,
) -> ChoiceProbeResult:
    """Linear classifier from the activation to the index of the correct choice.

    Features are standardised inside each CV fold (pipeline), C is chosen by
    stratified k-fold CV on the training items, the model refitted on all
    training items is scored on the test items.

    Parameters
    ----------
    acts : (n_items, n_neurons) activations
    targets : (n_items,) int index of the correct choice
    n_choices : number of choices (for ``chance_uniform``); default
        ``max(targets) + 1``.
    blas_threads : BLAS threads during the fits (None: leave as is). lbfgs
        makes thousands of small matrix products; threading them costs more
        than it gains (10x slower measured with 2 threads on a busy 2-core
        machine), and workflow jobs already run in parallel.
    """
    acts = np.asarray(acts, dtype=np.float64)
    targets = np.asarray(targets).astype(int)
    train_idx, test_idx = np.asarray(train_idx), np.asarray(test_idx)
    if n_choices is None:
        n_choices = int(targets.max()) + 1
    X_tr, y_tr = acts[train_idx], targets[train_idx]
    X_te, y_te = acts[test_idx], targets[test_idx]

    with threadpool_limits(limits=blas_threads, user_api="blas"):
        pred, best_C = _fit_predict_choice(X_tr, y_tr, X_te, Cs, n_folds, max_iter, seed)

    n_test = int(y_te.size)
    n_correct = int((pred == y_te).sum())
    accuracy = n_correct / n_test
    chance = float(np.bincount(y_te).max() / n_test)
    p_value = float(scipy.stats.binomtest(n_correct, n_test, chance, alternative="greater").pvalue)
    return ChoiceProbeResult(
        accuracy=float(accuracy),
        chance=chance,
        chance_uniform=1.0 / n_choices,
        p_value=p_value,
        C=best_C,
        n_test=n_test,
        predictions=np.asarray(pred),
    )


def _fit_predict_choice(X_tr, y_tr, X_te, Cs, n_folds, max_iter, seed):
    """CV over C on the training items, refit, predict the test items."""
    classes, counts = np.unique(y_tr, return_counts=True)
    if classes.size < 2:
        # One answer in training: the only thing to learn is that answer.
        pred, best_C = np.full(X_te.shape[0], classes[0]), float("nan")
    else:
        # Folds cannot outnumber the members of the rarest class.
        k = int(min(n_folds, counts.min()))
        pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
        grid = {"logisticregression__C": list(np.asarray(Cs, dtype=np.float64))}
        if k >= 2:
            search = GridSearchCV(pipe, grid, cv=StratifiedKFold(k, shuffle=True, random_state=seed))
            search.fit(X_tr, y_tr)
            model, best_C = search.best_estimator_, float(search.best_params_["logisticregression__C"])
        else:
            # Too few items of some class for CV: fall back to the median C.
            best_C = float(np.median(Cs))
            model = pipe.set_params(logisticregression__C=best_C).fit(X_tr, y_tr)
        pred = model.predict(X_te)
    return pred, best_C


# --------------------------------------------------------------------------- one task, every layer
class AlignedItems(NamedTuple):
    """Benchmark items matched to the rows of an activation file.

    items : the stimulus rows that have activations, in the file's row order.
    train_idx, test_idx : row indices of ``items``; the split is drawn over the
        whole stimulus set (so dropping an over-long item moves no other item
        between train and test) and restricted to the kept items.
    n_dropped : items without activations (longer than the model's positions).
    """

    items: "pd.DataFrame"
    train_idx: np.ndarray
    test_idx: np.ndarray
    n_dropped: int


def align_items(items, meta: dict, test_fraction: float, seed: int, where: str = "activations") -> AlignedItems:
    """Match the stimulus table ``items`` to an activation file's ``meta`` by unit id.

    Every stimulus unit must be either a row of the file (``unit_ids``) or
    listed as dropped (``dropped_unit_ids``); anything else means the cache
    and the stimulus set disagree (stale cache) and raises.
    """
    from brainphase.stimuli import DataError

    kept = [str(u) for u in meta["unit_ids"]]
    dropped = [str(u) for u in meta.get("dropped_unit_ids", [])]
    ids = items["unit_id"].astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise DataError(f"{where}: the stimulus set repeats unit ids; rebuild it")
    if set(kept) & set(dropped) or set(kept) | set(dropped) != set(ids) or len(kept) + len(dropped) != len(ids):
        raise DataError(f"{where}: its unit ids (kept + dropped) differ from the stimulus set's; the activation "
                        f"cache is stale — delete it and rerun")
    row_of = {u: i for i, u in enumerate(ids)}
    kept_rows = np.array([row_of[u] for u in kept], dtype=int)
    pos = np.full(len(ids), -1)
    pos[kept_rows] = np.arange(len(kept))
    train_all, test_all = split_items(len(ids), test_fraction, seed)
    train = np.sort(pos[train_all][pos[train_all] >= 0])
    test = np.sort(pos[test_all][pos[test_all] >= 0])
    if len(train) < 2 or len(test) < 2:
        raise DataError(f"{where}: {len(kept)} items kept ({len(dropped)} dropped as over-long) leave "
                        f"{len(train)} training and {len(test)} test items; too few to probe")
    return AlignedItems(items.iloc[kept_rows].reset_index(drop=True), train, test, len(dropped))


def probe_task(acts: dict[str, np.ndarray], aligned: AlignedItems, n_boot: int, seed: int,
               log=None) -> tuple["pd.DataFrame", "pd.DataFrame", "pd.DataFrame"]:
    """Both probes at every ``{site}.{layer}`` of ``acts``, plus the item bootstrap of the neuron probe.

    ``acts`` rows follow ``aligned.items``. Returns ``(summary, neurons,
    boot)``: summary has one row per (site, layer, metric) with metrics
    neuron_mean_r, choice_accuracy, choice_chance, choice_p_value; neurons one
    row per scored neuron (site, layer, neuron, r); boot one row per (site,
    layer, replicate) with the replicate's mean r (``value``). The bootstrap
    draws come from ``seed`` alone, so they are the same at every checkpoint.
    """
    import pandas as pd

    items, train, test = aligned.items, aligned.train_idx, aligned.test_idx
    targets = items["target"].to_numpy().astype(int)
    n_choices = int(items["n_choices"].max())
    answers = answer_matrix(targets, n_choices)
    rows, neurons, boots = [], [], []
    for name in sorted(acts, key=lambda n: (n.split(".")[0], int(n.split(".")[1]))):
        a = acts[name]
        if a.shape[0] != len(items):
            raise ValueError(f"{name}: {a.shape[0]} rows for {len(items)} items")
        site, layer = name.split(".")[0], int(name.split(".")[1])
        nr = neuron_probe(answers, a, train, test)
        cp = choice_probe(a, targets, train, test, n_choices=n_choices, seed=seed)
        for metric, value in [("neuron_mean_r", nr.mean_r), ("choice_accuracy", cp.accuracy),
                              ("choice_chance", cp.chance), ("choice_p_value", cp.p_value)]:
            rows.append({"site": site, "layer": layer, "metric": metric, "value": float(value)})
        neurons.append(pd.DataFrame({"site": site, "layer": layer, "neuron": np.arange(len(nr.r)),
                                     "r": nr.r}).dropna())
        reps = item_bootstrap(a[test], nr.pred, n_boot, seed, nr.excluded)
        boots.append(pd.DataFrame({"site": site, "layer": layer, "replicate": np.arange(len(reps)),
                                   "value": reps}))
        if log is not None:
            log.info("%s: neuron mean r %.3f (bootstrap sd %.3f), choice accuracy %.3f (chance %.3f)", name,
                     nr.mean_r, np.nanstd(reps), cp.accuracy, cp.chance)
    return (pd.DataFrame(rows), pd.concat(neurons, ignore_index=True), pd.concat(boots, ignore_index=True))
