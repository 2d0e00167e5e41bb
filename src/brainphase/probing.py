"""Probing the layer activations for benchmark answers (METHODS §5).

Two directions, both scored on held-out items of one fixed split:

* the paper's direction (seed 000 §2.6): from the *answer matrix*
  (items x choices, 1 = correct choice, 0 = others) predict every neuron of a
  layer by ridge regression; the score is the Pearson r per neuron on the
  test items, summarised by its mean over neurons and by its histogram
  (Fig. 4, bins of 0.01);
* the standard direction: a linear classifier from the activation to the
  index of the correct choice; the score is held-out accuracy, reported with
  its chance levels.

Arrays in, arrays out: the caller extracts the last-token activations of the
question prompts and the correct-choice indices.
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
    """

    r: np.ndarray
    alpha: float
    mean_r: float
    n_excluded: int


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
    return NeuronProbeResult(r=r, alpha=float(model.alpha_), mean_r=mean_r, n_excluded=int((~finite).sum()))


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
