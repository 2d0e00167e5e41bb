"""Neurons -> answer: a linear classifier from the activation to the correct choice."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

DEFAULT_CS = np.logspace(-4, 2, 7)


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
        makes thousands of small matrix products, for which threading costs
        more in synchronisation than it gains, and workflow jobs already run
        in parallel.
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
