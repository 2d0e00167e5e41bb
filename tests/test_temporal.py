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
