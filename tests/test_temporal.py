"""Lag x layer decoding and the computational-path statistic."""

import itertools
import math

import numpy as np
import pytest
import scipy.stats
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainphase.encoding.stats import pearson_columns
from brainphase.temporal.lagged_ridge import LagScores, lag_layer_scores
from brainphase.temporal.path import alignment_score, path_statistic, peak_lags

SFREQ = 100.0
LATENCIES = [0.1, 0.3, 0.5, 0.7, 0.9]  # 5 layers: exact permutation p = 1/120


def simulate(latencies=LATENCIES, n_words=1200, n_stories=12, n_channels=16, d=6,
             tmin=-0.1, tmax=1.0, width=0.03, noise=1.0, seed=0):
    """Word-locked epochs where feature group g (a 'layer') appears in the
    sensors as a Gaussian bump at ``latencies[g]``."""
    rng = np.random.default_rng(seed)
    times = np.arange(round(tmin * SFREQ), round(tmax * SFREQ) + 1) / SFREQ
    groups = np.repeat(np.arange(n_stories), -(-n_words // n_stories))[:n_words]
    brain = noise * rng.standard_normal((n_words, n_channels, times.size))
    features = []
    for lat in latencies:
        F = rng.standard_normal((n_words, d)) * np.linspace(2.0, 0.5, d)  # decaying variance
        mixing = rng.standard_normal((n_channels, d)) / np.sqrt(d)
        brain += (F @ mixing.T)[:, :, None] * np.exp(-0.5 * ((times - lat) / width) ** 2)
        features.append(F)
    return brain, features, groups, times


@pytest.fixture(scope="module")
def planted():
    brain, features, groups, times = simulate()
    return brain, features, groups, times, lag_layer_scores(brain, features, groups)


# ---------------------------------------------------------------- closed form


def test_loo_alphas_and_predictions_equal_sklearn_ridgecv():
    rng = np.random.default_rng(1)
    # few words and a fine alpha grid: the intercept's 1/n in the LOO
    # denominator and the per-column choice both change which alpha wins
    n, p, T, m = 96, 5, 4, 12
    # channels with offsets and scales: the per-fold z-scoring matters
    brain = rng.standard_normal((n, p, T)) * rng.uniform(0.5, 5.0, (1, p, 1)) + rng.uniform(-3, 3, (1, p, 1))
    groups = np.repeat(np.arange(8), n // 8)
    W = rng.standard_normal((p, m)) * rng.uniform(0.0, 0.3, m)
    Y = brain[:, :, 1] @ W + rng.standard_normal((n, m)) * np.linspace(0.3, 5.0, m) + 2.0
    Y[:, 3] += 0.5 * brain[:, 0, 2]
    targets = [Y[:, :5], Y[:, 5:]]
    alphas = np.logspace(-2, 4, 25)
    res = lag_layer_scores(brain, targets, groups, alphas=alphas, n_splits=4, return_predictions=True)
    assert isinstance(res, LagScores)
    assert res.r.shape == (2, T) and res.best_alpha.shape == (4, T, m)
    assert res.predictions.shape == (T, n, m)

    pred = np.empty((T, n, m))
    for k, (train, test) in enumerate(res.splits):
        for t in range(T):
            for sl in res.layer_columns:
                model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, alpha_per_target=True))
                model.fit(brain[train, :, t], Y[train, sl])
                np.testing.assert_allclose(res.best_alpha[k, t, sl], np.atleast_1d(model[-1].alpha_), rtol=1e-6)
                pred[t][np.ix_(test, np.arange(sl.start, sl.stop))] = model.predict(brain[test, :, t])
    assert np.unique(res.best_alpha).size >= 4  # the alphas really differ by column / lag
    np.testing.assert_allclose(res.predictions, pred, rtol=1e-6, atol=1e-9 * np.abs(pred).max())
    r_ref = np.array([[np.mean(pearson_columns(Y[:, sl], pred[t][:, sl])) for t in range(T)]
                      for sl in res.layer_columns])
    np.testing.assert_allclose(res.r, r_ref, atol=1e-9)
    np.testing.assert_allclose(res.r_columns, [pearson_columns(Y, pred[t]) for t in range(T)], atol=1e-9)
    # without predictions kept, the held-out sums come from the prediction's factors
    plain = lag_layer_scores(brain, targets, groups, alphas=alphas, n_splits=4)
    np.testing.assert_array_equal(plain.best_alpha, res.best_alpha)
    np.testing.assert_allclose(plain.r_columns, res.r_columns, atol=1e-12)


def test_chunking_over_lags_and_columns_does_not_change_results(planted):
    brain, features, groups, times, full = planted
    # a tiny memory bound forces one lag per chunk and several column blocks
    small = lag_layer_scores(brain[:, :, ::10], features, groups, max_elements=20_000)
    ref = lag_layer_scores(brain[:, :, ::10], features, groups)
    np.testing.assert_array_equal(small.best_alpha, ref.best_alpha)
    np.testing.assert_allclose(small.r, ref.r, atol=1e-12)
    np.testing.assert_allclose(ref.r, full.r[:, ::10], atol=1e-12)


def test_float32_criterion_agrees_with_float64(planted):
    brain, features, groups, times, ref = planted
    res = lag_layer_scores(brain, features, groups, dtype="float32")
    assert np.mean(res.best_alpha == ref.best_alpha) > 0.99
    np.testing.assert_allclose(res.r, ref.r, atol=1e-4)
    with pytest.raises(ValueError):
        lag_layer_scores(brain, features, groups, dtype="float16")


# ---------------------------------------------------------------- planted path


def test_planted_path_recovered(planted):
    brain, features, groups, times, res = planted
    assert res.r.shape == (len(LATENCIES), times.size)
    peaks = peak_lags(res.r, times)
    np.testing.assert_allclose(peaks, LATENCIES, atol=1.0 / SFREQ + 1e-9)
    rho, p = path_statistic(peaks)
    assert rho > 0.99
    assert p == pytest.approx(1 / math.factorial(len(LATENCIES)))  # exact: only the identity is as extreme
    assert p < 0.05
    # decodable at the planted latency, not before word onset
    assert res.r.max(axis=1).min() > 0.4
    assert np.abs(res.r[:, times < 0]).max() < 0.1
    assert alignment_score(res.r) == pytest.approx(res.r.max(axis=1).mean())


def test_reversed_layer_order_is_not_a_path(planted):
    brain, features, groups, times, res = planted
    rho, p = path_statistic(peak_lags(res.r[::-1], times))
    assert rho < -0.99 and p == 1.0


def test_null_targets_give_no_score_and_no_path(planted):
    brain, features, groups, times, _ = planted
    rng = np.random.default_rng(123)
    null = [rng.standard_normal(F.shape) for F in features]
    res = lag_layer_scores(brain, null, groups)
    assert np.abs(res.r).max() < 0.1  # planted: ~0.8
    assert abs(alignment_score(res.r)) < 0.05
    rho, p = path_statistic(peak_lags(res.r, times))
    assert p > 0.05


def test_pca_reduces_columns_and_finds_the_peaks(planted):
    brain, features, groups, times, _ = planted
    res = lag_layer_scores(brain, features, groups, pca=2)
    assert res.best_alpha.shape == (len(res.splits), times.size, 2 * len(features))
    assert [sl.stop - sl.start for sl in res.fit_columns] == [2] * len(features)
    assert res.r_columns.shape == (times.size, sum(F.shape[1] for F in features))  # scored on the originals
    np.testing.assert_allclose(peak_lags(res.r, times), LATENCIES, atol=1.0 / SFREQ + 1e-9)
    # pca >= d keeps every direction: the same scores up to the per-column alpha choice
    full = lag_layer_scores(brain[:, :, 15:25], features, groups, pca=100)
    assert full.best_alpha.shape[-1] == sum(F.shape[1] for F in features)
    plain = lag_layer_scores(brain[:, :, 15:25], features, groups)
    np.testing.assert_allclose(full.r, plain.r, atol=0.03)


# ---------------------------------------------------------------- grouped CV


def test_grouped_cv_never_puts_a_story_in_train_and_test(planted):
    brain, features, groups, times, res = planted
    assert len(res.splits) == 5
    tested = np.concatenate([test for _, test in res.splits])
    np.testing.assert_array_equal(np.sort(tested), np.arange(groups.size))  # each word held out once
    for train, test in res.splits:
        assert np.intersect1d(groups[train], groups[test]).size == 0
        assert train.size + test.size == groups.size


def test_story_identity_does_not_leak_into_scores():
    """Brain and target both carry a story-level constant, unrelated across
    stories: with whole stories held out it cannot be predicted; a CV that
    split stories would score r ~ 0.9."""
    rng = np.random.default_rng(7)
    n_stories, per, n_channels = 30, 30, 40  # channels >= stories: story offsets can be memorised
    groups = np.repeat(np.arange(n_stories), per)
    brain = rng.standard_normal((groups.size, n_channels, 3))
    brain += 3.0 * rng.standard_normal((n_stories, n_channels, 1))[groups]
    targets = rng.standard_normal((n_stories, 8))[groups] + 0.1 * rng.standard_normal((groups.size, 8))
    res = lag_layer_scores(brain, [targets], groups, n_splits=5)
    assert np.abs(res.r).max() < 0.3
    # the leak is real: folds that split stories find it
    mixed = lag_layer_scores(brain, [targets], np.arange(groups.size) % 5, n_splits=5)
    assert mixed.r.min() > 0.8


# ---------------------------------------------------------------- path statistic


def test_path_statistic_exact_values():
    assert path_statistic([0.1, 0.3, 0.5, 0.7]) == pytest.approx((1.0, 1 / 24))
    assert path_statistic([0.7, 0.5, 0.3, 0.1]) == pytest.approx((-1.0, 1.0))
    # ties: average ranks; 2 of the 6 orders put the late layer last
    rho, p = path_statistic([0.1, 0.1, 0.3])
    assert rho == pytest.approx(scipy.stats.spearmanr([0, 1, 2], [0.1, 0.1, 0.3]).statistic)
    assert p == pytest.approx(2 / 6)
    # custom depths (e.g. relative depth) only enter through their ranks
    assert path_statistic([0.2, 0.1, 0.4], depths=[0.5, 0.25, 1.0]) == pytest.approx((1.0, 1 / 6))


def test_path_statistic_exact_matches_brute_force():
    rng = np.random.default_rng(3)
    lags = rng.choice([0.1, 0.2, 0.3, 0.4], size=6)  # with ties
    rho, p = path_statistic(lags)
    null = [scipy.stats.spearmanr(np.arange(6), lags[list(perm)]).statistic
            for perm in itertools.permutations(range(6))]
    assert p == pytest.approx(np.mean(np.asarray(null) >= rho - 1e-12))


def test_path_statistic_degenerate_cases():
    rho, p = path_statistic([0.3, 0.3, 0.3, 0.3])  # constant peak lags
    assert np.isnan(rho) and p == 1.0
    rho, p = path_statistic([0.3])
    assert np.isnan(rho) and p == 1.0
    # NaN peak lags (layers with no finite score) are left out
    assert path_statistic([0.1, np.nan, 0.2, 0.3, 0.4]) == pytest.approx(path_statistic([0.1, 0.2, 0.3, 0.4]))


def test_path_statistic_monte_carlo_branch():
    lags = np.linspace(0.0, 1.0, 9)  # 9! > n_perm
    rho, p = path_statistic(lags, n_perm=2000, seed=5)
    assert rho == pytest.approx(1.0) and p == pytest.approx(1 / 2001)
    shuffled = np.random.default_rng(0).permutation(lags)
    assert path_statistic(shuffled, n_perm=2000, seed=5) == path_statistic(shuffled, n_perm=2000, seed=5)
    rho, p = path_statistic(shuffled, n_perm=2000, seed=5)
    null = np.array([scipy.stats.spearmanr(np.arange(9), np.random.default_rng(s).permutation(shuffled)).statistic
                     for s in range(2000)])
    assert abs(p - np.mean(null >= rho)) < 0.03


def test_path_statistic_is_calibrated_under_the_null():
    rng = np.random.default_rng(11)
    pvals = np.array([path_statistic(rng.random(5))[1] for _ in range(600)])
    assert np.mean(pvals <= 0.05) <= 0.05 + 0.025  # level holds (exact test)
    assert 0.4 < np.mean(pvals <= 0.5) < 0.6  # and is not trivially conservative


def test_peak_lags_and_alignment_score():
    times = np.array([-0.1, 0.0, 0.1, 0.2])
    r = np.array([[0.0, 0.5, 0.2, 0.1], [0.1, 0.1, 0.2, 0.3], [np.nan, 0.2, np.nan, 0.1]])
    np.testing.assert_allclose(peak_lags(r, times), [0.0, 0.2, 0.0])
    assert alignment_score(r) == pytest.approx((0.5 + 0.3 + 0.2) / 3)
    assert np.isnan(peak_lags(np.full((1, 4), np.nan), times)[0])
    with pytest.raises(ValueError):
        peak_lags(r, times[:3])


def test_held_out_targets_do_not_enter_their_own_fold(planted):
    """Predictions of a held-out fold depend on training words only: PCA,
    centring and alpha choice are fitted without the held-out targets."""
    brain, features, groups, times, _ = planted
    brain = brain[:, :, 35:45]
    ref = lag_layer_scores(brain, features, groups, pca=2, return_predictions=True)
    test = ref.splits[0][1]
    rng = np.random.default_rng(0)
    changed = [F.copy() for F in features]
    for F in changed:
        F[test] = 10.0 * rng.standard_normal((test.size, F.shape[1])) + 5.0
    res = lag_layer_scores(brain, changed, groups, pca=2, return_predictions=True)
    np.testing.assert_allclose(res.predictions[:, test], ref.predictions[:, test], rtol=1e-9, atol=1e-9)
    assert not np.allclose(res.predictions, ref.predictions)  # the other folds train on them


def test_temporal_table_rows_follow_the_stimulus_table():
    """The pipeline picks each epoched word's activation row (words dropped at run edges are skipped)."""
    import pandas as pd

    from brainphase.temporal.epochs import WordEpochs
    from brainphase.temporal.pipeline import TemporalSettings, temporal_table

    brain, features, groups, times = simulate(latencies=[0.1, 0.3, 0.5, 0.7], n_words=600, n_stories=6)
    # The stimulus table has 40 more rows (e.g. punctuation, edge words) than the epochs keep.
    rows = np.sort(np.random.default_rng(1).choice(640, 600, replace=False))
    layers = []
    for F in features:
        full = np.random.default_rng(2).standard_normal((640, F.shape[1]))
        full[rows] = F
        layers.append(full)
    stimuli = pd.DataFrame({"unit_id": np.arange(640)})
    ep = WordEpochs(brain.astype(np.float32), times, rows, np.asarray(groups).astype(str), SFREQ)
    table = temporal_table(ep, layers, stimuli, TemporalSettings(n_perm=1000))
    peaks = table[table["metric"] == "peak_lag"].sort_values("layer")["value"].to_numpy()
    assert np.allclose(peaks, [0.1, 0.3, 0.5, 0.7], atol=0.0101)
    summary = table[table["layer"].isna()].set_index("metric")["value"]
    assert summary["path_rho"] > 0.99 and summary["path_p"] == pytest.approx(1 / 24)
    assert summary["n_words"] == 600
    r = table[table["metric"] == "r"]
    assert len(r) == 4 * len(times) and r["value"].between(-1, 1).all()
    with pytest.raises(ValueError, match="row count"):
        temporal_table(ep, [layers[0][:-1]], stimuli)


# ---------------------------------------------------------------- exact criterion, memory budget


def _direct_sse(U, s, Y, alphas):
    """(L, A, m) LOO sum of squares from the residuals themselves, with the full weights."""
    n = U.shape[1]
    out = np.empty((U.shape[0], alphas.size, Y.shape[1]))
    for t in range(U.shape[0]):
        f = s[t] ** 2 / (s[t] ** 2 + alphas[:, None])
        Z = U[t].T @ Y
        for a in range(alphas.size):
            w = (1.0 - 1.0 / n - (U[t] ** 2) @ f[a]) ** -2
            out[t, a] = w @ (Y - U[t] @ (f[a][:, None] * Z)) ** 2
    return out


@pytest.mark.parametrize("tol", [1e-1, 3e-4, 1e-7])
def test_screening_bound_holds_and_the_choice_is_the_exact_argmin(monkeypatch, tol):
    """The low-rank screen's SSE is within its slack of the direct SSE, and the chosen alpha is the
    direct argmin; a loose tolerance leaves most columns to the exact check, a tight one (float64
    product) almost none."""
    from brainphase.temporal import loo

    rng = np.random.default_rng(4)
    L, n, k, m = 3, 300, 8, 60
    X = rng.standard_normal((L, n, k)) * rng.uniform(0.2, 3.0, (1, 1, k))
    X -= X.mean(axis=1, keepdims=True)
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    Y = X[0] @ rng.standard_normal((k, m)) * rng.uniform(0.0, 0.3, m) + rng.standard_normal((n, m))
    Y -= Y.mean(0)
    alphas = np.logspace(-1, 5, 13)
    seen = []
    alive = loo._alive
    monkeypatch.setattr(loo, "_SCREEN_TOL", tol)
    monkeypatch.setattr(loo, "_alive", lambda sse, slack: seen.append((sse, slack)) or alive(sse, slack))
    best, Z = loo.loo_best(U, s, Y, Y**2, alphas, 2**24, Y.astype(np.float32))
    exact = _direct_sse(U, s, Y, alphas)
    np.testing.assert_array_equal(best, np.argmin(exact, axis=1))
    np.testing.assert_allclose(Z, U.transpose(0, 2, 1) @ Y, rtol=1e-12, atol=1e-12)
    sse, slack = np.stack([a for a, _ in seen]), np.stack([b for _, b in seen])
    assert np.all(np.abs(sse - exact) <= slack)
    open_ = np.mean([(alive(a, b).sum(axis=0) > 1).mean() for a, b in seen])
    assert (open_ > 0.3) if tol == 1e-1 else (open_ < 0.1)


@pytest.mark.parametrize("spread", [1.0, 1e5, 1e12, "rank-deficient"])
def test_tall_svd_equals_lapack(spread):
    """Cholesky QR twice where the design is well enough conditioned, LAPACK's SVD otherwise."""
    from brainphase.temporal.loo import tall_svd

    rng = np.random.default_rng(2)
    X = rng.standard_normal((3, 500, 12))
    if spread == "rank-deficient":
        X[..., 5] = X[..., 4]
    else:
        X *= np.logspace(0, np.log10(spread), 12)
    X -= X.mean(axis=1, keepdims=True)
    U, s, Vt = tall_svd(X)
    s0 = np.linalg.svd(X, compute_uv=False)
    np.testing.assert_allclose(s, s0, rtol=0, atol=1e-13 * s0.max())
    np.testing.assert_allclose(U.transpose(0, 2, 1) @ U, np.broadcast_to(np.eye(12), (3, 12, 12)), atol=1e-13)
    np.testing.assert_allclose((U * s[:, None, :]) @ Vt, X, atol=1e-13 * np.abs(X).max())


def test_low_rank_weights_residual_is_within_tolerance():
    from brainphase.temporal.loo import low_rank_weights

    rng = np.random.default_rng(0)
    h = rng.random((200, 4)) @ (4.0 / (4.0 + np.logspace(-1, 3, 9)[None, :] * rng.uniform(0.5, 2.0, (4, 1)))) / 50
    delta = ((1.0 - h.T) ** -2) - 1.0
    ranks = []
    for tol in (1e-2, 1e-5, 1e-9):
        C, B, E = low_rank_weights(delta, tol)
        np.testing.assert_allclose(C @ B + E, delta, atol=1e-14)
        assert np.abs(E).max() <= tol
        ranks.append(B.shape[0])
    assert ranks[0] < ranks[1] < ranks[2] and ranks[1] < delta.shape[0]


def test_float32_epochs_give_the_float64_results(planted):
    brain, features, groups, times, _ = planted
    b32 = brain[:, :, ::12].astype(np.float32)
    a = lag_layer_scores(b32, features, groups)
    b = lag_layer_scores(b32.astype(np.float64), features, groups)
    np.testing.assert_array_equal(a.best_alpha, b.best_alpha)
    np.testing.assert_array_equal(a.r, b.r)


# Peak RSS from VmHWM: ru_maxrss of a child process also holds its parent's peak
# (Linux folds the pre-exec memory's high-water mark into it), here pytest's.
_BUDGET_JOB = """
import json, sys
import numpy as np
from brainphase.temporal.lagged_ridge import lag_layer_scores
rng = np.random.default_rng(0)
n, c, t, layers, d = 3000, 64, 24, 2, 50
brain = rng.standard_normal((n, c, t)).astype(np.float32)
targets = [rng.standard_normal((n, d)) for _ in range(layers)]
groups = np.repeat(np.arange(20), n // 20)
budget = None if sys.argv[1] == "none" else int(sys.argv[1])
res = lag_layer_scores(brain, targets, groups, alphas=[1.0, 100.0], dtype=sys.argv[2], budget_bytes=budget)
np.save(sys.argv[3], np.concatenate([res.r.ravel(), res.best_alpha.ravel()]))
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps(int(hwm.split()[1]) * 1024))
"""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_fit_given_a_budget_stays_under_it(tmp_path, dtype):
    """Peak RSS of a fit in its own process: under its budget (which the unbudgeted fit exceeds),
    under the predicted peak, with the unbudgeted fit's results."""
    import os
    import subprocess
    import sys

    from brainphase.temporal.memory import TemporalShape, fit_peak_bytes, lags_per_chunk

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")  # no oversubscribed BLAS threads

    def run(budget):
        out = tmp_path / f"{budget}.npy"
        proc = subprocess.run([sys.executable, "-c", _BUDGET_JOB, str(budget), dtype, str(out)],
                              capture_output=True, text=True, timeout=600, check=True, env=env)
        return int(proc.stdout.split()[-1]), np.load(out)

    # two alphas: the chunk's products, bounded at their worst, do not dwarf what each lag holds
    shape = TemporalShape(3000, 64, 24, 100, 100, 2400, 600, n_alphas=2)
    budget = fit_peak_bytes(shape, 2)
    assert lags_per_chunk(shape, budget) == 2
    peak, budgeted = run(budget)
    free_peak, free = run("none")
    assert free_peak > budget, "the budget does not bind: the test would pass without chunking"
    assert peak <= budget
    np.testing.assert_array_equal(budgeted, free)


def test_peak_formula_and_a_budget_too_small():
    from brainphase.temporal.memory import temporal_peak_bytes

    free = temporal_peak_bytes(10_000, 64, 61, 24, 1024, None)  # 2 lags per chunk
    assert temporal_peak_bytes(10_000, 64, 61, 24, 1024, free - 1) <= free - 1  # 1 lag per chunk
    assert temporal_peak_bytes(10_000, 64, 61, 24, 1024, None, pca=64) < free
    assert temporal_peak_bytes(10_000, 64, 61, 24, 1024, 10 * free) <= free  # no more lags than without a budget
    with pytest.raises(MemoryError, match="mem_mb"):
        temporal_peak_bytes(10_000, 64, 61, 24, 1024, 2**30)
    rng = np.random.default_rng(0)
    with pytest.raises(MemoryError, match="temporal:mem_mb"):
        lag_layer_scores(rng.standard_normal((200, 4, 3)), [rng.standard_normal((200, 5))], np.arange(200) % 10,
                         budget_bytes=10 * 2**20)
