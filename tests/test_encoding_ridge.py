"""GroupedRidgeCV against closed forms, brute-force grouped CV and scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from brainphase.encoding.ridge import GroupedRidgeCV, grouped_splits

torch.set_num_threads(1)

BACKENDS = ["numpy", "torch"]
SCORE_METHODS = ["partial_fractions", "triangle"]


def make_data(n_samples, n_features, n_targets, n_runs, seed=0, offset=2.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)) + offset
    W = rng.standard_normal((n_features, n_targets)) * rng.uniform(0.0, 0.5, n_targets)
    # different noise levels -> different best alphas per target
    noise = rng.standard_normal((n_samples, n_targets)) * np.linspace(0.3, 5.0, n_targets)
    Y = X @ W + noise + 3.0
    groups = np.repeat(np.arange(n_runs), -(-n_samples // n_runs))[:n_samples]
    return X, Y, groups


def closed_form(X, Y, alpha, fit_intercept=True):
    if fit_intercept:
        xm, ym = X.mean(0), Y.mean(0)
    else:
        xm, ym = np.zeros(X.shape[1]), np.zeros(Y.shape[1])
    Xc, Yc = X - xm, Y - ym
    W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ Yc)
    return W, ym - xm @ W


def brute_force_cv(X, Y, folds, alphas):
    """Mean over folds of held-out R² (SS_tot around the fold mean), by direct solves."""
    scores = np.zeros((len(alphas), Y.shape[1]))
    for train, test in folds:
        for i, alpha in enumerate(alphas):
            W, b = closed_form(X[train], Y[train], alpha)
            resid = Y[test] - (X[test] @ W + b)
            ss_tot = ((Y[test] - Y[test].mean(0)) ** 2).sum(0)
            scores[i] += 1 - (resid**2).sum(0) / ss_tot
    return scores / len(folds)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(90, 8), (40, 70)], ids=["primal", "dual"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_closed_form(backend, shape, fit_intercept):
    X, Y, groups = make_data(*shape, n_targets=5, n_runs=4)
    alpha = 7.5
    model = GroupedRidgeCV(alphas=[alpha], backend=backend, dtype="float64", fit_intercept=fit_intercept)
    model.fit(X, Y, groups)
    W, b = closed_form(X, Y, alpha, fit_intercept)
    assert model.solver_ == ("primal" if shape[0] > shape[1] else "dual")
    np.testing.assert_allclose(model.coef_, W, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(model.intercept_, b, rtol=1e-9, atol=1e-10)
    assert model.coef_.shape == (shape[1], 5)


@pytest.mark.parametrize("score_method", SCORE_METHODS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_alpha_is_argmax_of_brute_force_leave_one_run_out(backend, solver, score_method):
    X, Y, groups = make_data(80, 10, 12, n_runs=4, seed=1)
    alphas = np.logspace(-1, 3, 9)
    # 4 runs <= n_splits = 5: leave one run out
    folds = [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in np.unique(groups)]
    expected = brute_force_cv(X, Y, folds, alphas)
    model = GroupedRidgeCV(alphas=alphas, backend=backend, dtype="float64", solver=solver,
                           score_method=score_method).fit(X, Y, groups)
    assert model.n_splits_ == 4
    np.testing.assert_allclose(model.cv_scores_, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(model.best_alphas_, alphas[expected.argmax(0)])
    assert np.unique(model.best_alphas_).size > 2  # the test exercises per-target alphas
    W = np.stack([closed_form(X, Y[:, [v]], a)[0][:, 0] for v, a in enumerate(model.best_alphas_)], 1)
    np.testing.assert_allclose(model.coef_, W, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    "n_samples, n_features, n_runs",
    [(200, 50, 10), (60, 90, 4), (100, 12, 5)],
    ids=["test-fold-smaller-than-features", "dual", "rank-deficient"],
)
@pytest.mark.parametrize("score_method", SCORE_METHODS)
def test_alpha_is_argmax_of_brute_force_other_shapes(n_samples, n_features, n_runs, score_method):
    X, Y, groups = make_data(n_samples, n_features, 8, n_runs=n_runs, seed=7)
    if n_features == 12:
        X[:, 3] = X[:, 2]  # duplicated feature
        X[:, 5] = 1.0  # constant feature: zero eigenvalues after centring
    alphas = np.logspace(-1, 3, 7)
    folds = [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in np.unique(groups)]
    folds = folds if n_runs <= 5 else list(GroupKFold(n_splits=5).split(X, Y, groups))
    expected = brute_force_cv(X, Y, folds, alphas)
    model = GroupedRidgeCV(alphas=alphas, dtype="float64", score_method=score_method).fit(X, Y, groups)
    np.testing.assert_allclose(model.cv_scores_, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(model.best_alphas_, alphas[expected.argmax(0)])
    W = np.stack([closed_form(X, Y[:, [v]], a)[0][:, 0] for v, a in enumerate(model.best_alphas_)], 1)
    np.testing.assert_allclose(model.coef_, W, rtol=1e-8, atol=1e-10)


def test_alpha_is_argmax_of_brute_force_group_kfold():
    X, Y, groups = make_data(120, 6, 10, n_runs=8, seed=2)
    alphas = np.logspace(0, 3, 7)
    folds = list(GroupKFold(n_splits=3).split(X, Y, groups))
    expected = brute_force_cv(X, Y, folds, alphas)
    model = GroupedRidgeCV(alphas=alphas, n_splits=3, backend="numpy", dtype="float64").fit(X, Y, groups)
    assert model.n_splits_ == 3
    np.testing.assert_allclose(model.cv_scores_, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(model.best_alphas_, alphas[expected.argmax(0)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(300, 40), (60, 150)], ids=["primal", "dual"])
def test_fixed_alpha_predictions_equal_sklearn_ridge_float32(backend, shape):
    X, Y, groups = make_data(*shape, n_targets=30, n_runs=5, seed=3)
    X = (X - X.mean(0)) / X.std(0)
    Y = (Y - Y.mean(0)) / Y.std(0)
    Xtest = np.random.default_rng(9).standard_normal((50, shape[1]))
    for alpha in [1.0, 100.0, 1e4]:
        ours = GroupedRidgeCV(alphas=[alpha], backend=backend).fit(X, Y, groups)  # default float32
        ref = Ridge(alpha=alpha).fit(X, Y)
        np.testing.assert_allclose(ours.predict(Xtest), ref.predict(Xtest), rtol=0, atol=1e-4)


def test_float32_and_float64_choose_the_same_alphas():
    X, Y, groups = make_data(200, 20, 40, n_runs=5, seed=4)
    alphas = np.logspace(-1, 4, 6)  # coarse grid: no near-ties
    m32 = GroupedRidgeCV(alphas=alphas).fit(X, Y, groups)
    m64 = GroupedRidgeCV(alphas=alphas, dtype="float64").fit(X, Y, groups)
    np.testing.assert_allclose(m32.cv_scores_, m64.cv_scores_, atol=1e-4)
    np.testing.assert_array_equal(m32.best_alphas_, m64.best_alphas_)
    assert m32.coef_.dtype == np.float32


def test_batching_does_not_change_results():
    X, Y, groups = make_data(100, 12, 23, n_runs=5, seed=5)
    alphas = np.logspace(-1, 3, 7)
    ref = GroupedRidgeCV(alphas=alphas, dtype="float64").fit(X, Y, groups)
    small = GroupedRidgeCV(alphas=alphas, dtype="float64", n_targets_batch=4, n_alphas_batch=3).fit(X, Y, groups)
    np.testing.assert_allclose(small.cv_scores_, ref.cv_scores_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(small.coef_, ref.coef_, rtol=1e-12, atol=1e-12)


def test_grouped_splits_keep_runs_whole():
    groups = np.repeat([3, 1, 4, 0, 5, 9, 2], 7)
    splits = grouped_splits(groups, n_splits=5)  # 7 runs > 5: GroupKFold
    assert len(splits) == 5
    seen = np.concatenate([te for _, te in splits])
    np.testing.assert_array_equal(np.sort(seen), np.arange(groups.size))
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert np.all(np.diff(test) > 0)  # time order kept
    logo = grouped_splits(groups[:21], n_splits=5)  # 3 runs: leave one out
    assert len(logo) == 3
    with pytest.raises(ValueError):
        grouped_splits(np.zeros(10), 5)


def test_constant_target_and_1d_target_do_not_crash():
    X, Y, groups = make_data(60, 5, 3, n_runs=3, seed=6)
    Y[:, 1] = 2.0  # constant everywhere
    Y[groups == 0, 2] = -1.0  # constant on one held-out run
    model = GroupedRidgeCV(alphas=[0.1, 10.0]).fit(X, Y, groups)
    assert np.all(np.isfinite(model.cv_scores_))
    np.testing.assert_allclose(model.cv_scores_[:, 1], 0.0)
    np.testing.assert_allclose(model.coef_[:, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(model.predict(X)[:, 1], 2.0, atol=1e-5)
    m1 = GroupedRidgeCV(alphas=[0.1, 10.0], dtype="float64").fit(X, Y[:, 0], groups)
    W, b = closed_form(X, Y[:, [0]], m1.best_alphas_)
    np.testing.assert_allclose(m1.coef_, W[:, 0], rtol=1e-9)
    assert m1.predict(X).shape == (60,)


def test_sklearn_api_and_input_checks():
    model = GroupedRidgeCV(alphas=[1.0, 2.0], n_splits=3)
    assert clone(model).get_params()["n_splits"] == 3
    X, Y, groups = make_data(30, 3, 2, n_runs=3)
    with pytest.raises(ValueError):
        GroupedRidgeCV(alphas=[0.0]).fit(X, Y, groups)
    with pytest.raises(ValueError):
        GroupedRidgeCV(backend="jax").fit(X, Y, groups)
    with pytest.raises(ValueError, match="score_method"):
        GroupedRidgeCV(score_method="lanczos").fit(X, Y, groups)
    Y[0, 0] = np.nan
    with pytest.raises(ValueError):
        GroupedRidgeCV().fit(X, Y, groups)


def test_eigh_many_runs_at_once_and_equals_single_threaded_eigh():
    """Several BLAS threads: one decomposition per thread, each bit for bit the single-threaded one."""
    from threadpoolctl import threadpool_limits

    from brainphase.encoding.backends import Backend

    rng = np.random.default_rng(7)
    mats = [(lambda a: a.T @ a)(rng.standard_normal((80, 60))) for _ in range(4)]
    with threadpool_limits(limits=1, user_api="blas"):
        ref = [np.linalg.eigh(m) for m in mats]
    with threadpool_limits(limits=2, user_api="blas"):
        assert Backend.blas_threads() == 2
        got = Backend("numpy").eigh_many(mats)
    for (lam_ref, V_ref), (lam, V) in zip(ref, got, strict=True):
        np.testing.assert_array_equal(lam, lam_ref)
        np.testing.assert_array_equal(V, V_ref)


@pytest.mark.parametrize("shape", [(300, 40), (60, 90)], ids=["primal", "dual"])
def test_folds_diagonalised_together_fit_as_one_at_a_time(shape, monkeypatch):
    """With two BLAS threads every fold and the refit are diagonalised in one batch; the fit equals
    the one-thread fit, which diagonalises them one at a time."""
    from threadpoolctl import threadpool_limits

    from brainphase.encoding.backends import Backend

    batches = []
    eigh_many = Backend.eigh_many
    monkeypatch.setattr(Backend, "eigh_many", lambda self, mats: batches.append(len(mats)) or eigh_many(self, mats))
    X, Y, groups = make_data(*shape, n_targets=7, n_runs=5, seed=6)
    alphas = np.logspace(-1, 3, 5)
    with threadpool_limits(limits=1, user_api="blas"):
        one = GroupedRidgeCV(alphas=alphas, dtype="float64").fit(X, Y, groups)
    assert batches == []
    with threadpool_limits(limits=2, user_api="blas"):
        two = GroupedRidgeCV(alphas=alphas, dtype="float64").fit(X, Y, groups)
    assert batches == [6]  # 5 folds and all samples
    np.testing.assert_array_equal(two.best_alphas_, one.best_alphas_)
    np.testing.assert_allclose(two.cv_scores_, one.cv_scores_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(two.coef_, one.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(two.intercept_, one.intercept_, rtol=1e-9, atol=1e-12)
