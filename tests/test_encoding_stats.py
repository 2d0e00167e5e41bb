"""Correlations, block permutations, FDR, noise ceiling and the end-to-end encoding fit."""

import itertools
import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch

from brainphase.encoding import fit_encoding
from brainphase.encoding.stats import (
    block_bootstrap_draws,
    block_bootstrap_mean_r,
    block_bootstrap_r,
    block_edges,
    block_permutation_pvalues,
    constant_columns,
    fdr_bh,
    noise_ceiling,
    pearson_columns,
)

torch.set_num_threads(1)


def smoothed_noise(rng, shape, sigma=1.5):
    """White noise smoothed over time: autocorrelation ~ exp(-k^2 / (4 sigma^2))."""
    z = scipy.ndimage.gaussian_filter1d(rng.standard_normal(shape), sigma, axis=0, mode="wrap")
    return z / z.std(0)


def test_pearson_columns_matches_corrcoef_and_flags_constants():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((50, 4))
    B = A * [1.0, -2.0, 0.0, 1.0] + rng.standard_normal((50, 4))
    B[:, 3] = 7.0
    r = pearson_columns(A, B)
    for v in range(3):
        assert r[v] == pytest.approx(np.corrcoef(A[:, v], B[:, v])[0, 1], abs=1e-12)
    assert np.isnan(r[3])  # constant: undefined, not 0
    np.testing.assert_array_equal(constant_columns(B), [False, False, False, True])
    C = np.ones((5, 3))
    C[:, 0] += 1e-12 * np.arange(5)  # numerically constant
    C[:, 1] = np.arange(5)
    C[0, 2] = np.inf
    np.testing.assert_array_equal(constant_columns(C), [True, False, True])


def test_block_permutation_null_draws_are_block_permutations():
    rng = np.random.default_rng(1)
    block, n_blocks, tail = 4, 3, 2
    T = block * n_blocks + tail
    y_true = rng.standard_normal((T, 2))
    y_pred = rng.standard_normal((T, 2))
    n_perm = 50
    r, p, null = block_permutation_pvalues(y_true, y_pred, n_perm=n_perm, block_size=block, seed=3, return_null=True)
    # every permuted r is the r of one of the 3! block orders (tail fixed), by hand
    candidates = []
    for order in itertools.permutations(range(n_blocks)):
        idx = np.concatenate([np.arange(b * block, (b + 1) * block) for b in order] + [np.arange(T - tail, T)])
        candidates.append([np.corrcoef(y_true[idx, v], y_pred[:, v])[0, 1] for v in range(2)])
    candidates = np.array(candidates)
    for v in range(2):
        assert r[v] == pytest.approx(np.corrcoef(y_true[:, v], y_pred[:, v])[0, 1], abs=1e-12)
        dist = np.abs(null[:, v][:, None] - candidates[None, :, v]).min(1)
        assert dist.max() < 1e-12
        assert np.unique(np.round(null[:, v], 10)).size > 3  # several orders drawn
        assert p[v] == pytest.approx((1 + np.sum(null[:, v] >= r[v] - 1e-12)) / (1 + n_perm))
    # same permutation for all voxels in a draw
    first = np.abs(null[:, 0][:, None] - candidates[None, :, 0]).argmin(1)
    second = np.abs(null[:, 1][:, None] - candidates[None, :, 1]).argmin(1)
    np.testing.assert_array_equal(first, second)


def test_block_permutation_is_calibrated_under_autocorrelated_null():
    rng = np.random.default_rng(0)
    T, V = 400, 500
    y_true = smoothed_noise(rng, (T, V))
    y_pred = smoothed_noise(rng, (T, V))
    _, p = block_permutation_pvalues(y_true, y_pred, n_perm=300, block_size=10, seed=0)
    assert 0.45 < p.mean() < 0.55
    assert np.mean(p < 0.05) < 0.09
    assert scipy.stats.kstest(p, "uniform").pvalue > 0.01
    _, sig = fdr_bh(p, 0.05)
    assert sig.sum() <= 2
    # shuffling single TRs ignores autocorrelation: the false-positive rate
    # blows up, which is why blocks are used
    _, p_iid = block_permutation_pvalues(y_true, y_pred, n_perm=300, block_size=1, seed=0)
    assert np.mean(p_iid < 0.05) > 0.12


def test_block_permutation_constant_and_shape_errors():
    rng = np.random.default_rng(2)
    y = rng.standard_normal((40, 3))
    pred = y + rng.standard_normal((40, 3))
    pred[:, 2] = 1.0
    r, p = block_permutation_pvalues(y, pred, n_perm=20, block_size=5)
    assert np.isnan(r[2]) and np.isnan(p[2])
    assert np.all(np.isfinite(r[:2])) and np.all(p[:2] >= 1 / 21)
    with pytest.raises(ValueError):
        block_permutation_pvalues(y[:9], pred[:9], block_size=5)  # fewer than 2 blocks


def test_fdr_bh_hand_case_and_nan():
    p = np.array([0.01, 0.5, np.nan, 0.03, 0.02])
    q, sig = fdr_bh(p, 0.05)
    # m = 4 finite p: sorted 0.01, 0.02, 0.03, 0.5 -> p*m/rank = .04, .04, .04, .5
    np.testing.assert_allclose(q[[0, 4, 3, 1]], [0.04, 0.04, 0.04, 0.5])
    assert np.isnan(q[2])
    np.testing.assert_array_equal(sig, [True, False, False, True, True])
    _, sig01 = fdr_bh(p, 0.01)
    assert not sig01.any()


def test_noise_ceiling_hand_case():
    a = [1.0, -1.0, 1.0, -1.0]
    c = [1.0, -1.0, -1.0, 1.0]
    reps = np.zeros((3, 4, 3))
    reps[:, :, 0] = [a, a, c]
    reps[:, :, 1] = [[1, 2, 3, 4]] * 3  # identical repeats
    # voxel 2 stays constant
    nc = noise_ceiling(reps)
    # voxel 0: mean over repeats = [1, -1, 1/3, -1/3], its variance = 5/9;
    # every repeat has variance 1 -> ev = 5/9; corrected 5/9 - (4/9)/2 = 1/3
    assert nc.ev[0] == pytest.approx(5 / 9)
    assert nc.ev_corrected[0] == pytest.approx(1 / 3)
    assert nc.r_ceiling[0] == pytest.approx(math.sqrt(1 / 3))
    assert nc.ev[1] == pytest.approx(1.0) and nc.r_ceiling[1] == pytest.approx(1.0)
    assert np.isnan(nc.ev[2])
    # two repeats with opposite signs: nothing explainable, ceiling clipped at 0
    nc2 = noise_ceiling(np.array([[1.0, -1.0, 2.0], [-1.0, 1.0, -2.0]])[:, :, None])
    assert nc2.ev_corrected[0] == pytest.approx(-1.0)
    assert nc2.r_ceiling[0] == 0.0
    with pytest.raises(ValueError):
        noise_ceiling(np.ones((1, 5, 2)))


def planted_data(seed=0):
    rng = np.random.default_rng(seed)
    n_runs, run_len, n_test, n_feat = 8, 100, 300, 15
    n_planted, n_null = 20, 60
    X = smoothed_noise(rng, (n_runs * run_len + n_test, n_feat), sigma=1.0)
    W = rng.standard_normal((n_feat, n_planted))
    W /= np.linalg.norm(W, axis=0)  # signal variance ~1 in every planted voxel: r ~ 0.55
    Y = np.concatenate(
        [X @ W + 1.5 * smoothed_noise(rng, (len(X), n_planted)), smoothed_noise(rng, (len(X), n_null))], axis=1
    )
    groups = np.repeat(np.arange(n_runs), run_len)
    n_train = n_runs * run_len
    planted = np.arange(n_planted + n_null) < n_planted
    return X[:n_train], Y[:n_train], groups, X[n_train:], Y[n_train:], planted


def test_fit_encoding_recovers_planted_voxels():
    Xtr, Ytr, groups, Xte, Yte, planted = planted_data()
    res = fit_encoding(Xtr, Ytr, groups, Xte, Yte, n_perm=300, block_size=10, seed=0)
    assert not res.excluded.any()
    assert np.all(res.r[planted] > 0.25)
    assert np.all(res.significant[planted])
    assert abs(np.mean(res.r[~planted])) < 0.05
    assert np.mean(res.significant[~planted]) <= 0.05
    assert np.all(np.isin(res.alpha, np.logspace(1, 4, 10)))
    s = res.summary()
    assert s["n_scored"] == planted.size
    assert s["fraction_significant"] == pytest.approx(res.significant.mean())


def test_fit_encoding_excludes_constant_voxels():
    Xtr, Ytr, groups, Xte, Yte, planted = planted_data(seed=1)
    Ytr, Yte = Ytr.copy(), Yte.copy()
    Ytr[:, 0] = 3.0  # dead voxel in training (planted one)
    Yte[:, 25] = 0.0  # dead in test only
    res = fit_encoding(Xtr, Ytr, groups, Xte, Yte, n_perm=100, seed=0)
    expected = np.zeros(planted.size, bool)
    expected[[0, 25]] = True
    np.testing.assert_array_equal(res.excluded, expected)
    assert np.all(np.isnan(res.r[expected])) and not res.significant[expected].any()
    assert np.all(np.isnan(res.alpha[expected])) and np.all(np.isnan(res.q[expected]))
    assert np.all(np.isfinite(res.r[~expected])) and np.all(np.isfinite(res.p[~expected]))
    assert res.significant[1:20].all()
    # all voxels constant: reported, no crash
    res_all = fit_encoding(Xtr, np.zeros_like(Ytr), groups, Xte, Yte, n_perm=10)
    assert res_all.excluded.all() and not res_all.significant.any()
    assert math.isnan(res_all.summary()["mean_r"])


# --------------------------------------------------------------------------- TR-block bootstrap
def ar1(rng, shape, rho=0.8):
    """AR(1) noise over time (axis 0) with unit variance."""
    e = rng.standard_normal(shape)
    out = np.empty(shape)
    out[0] = e[0]
    for t in range(1, shape[0]):
        out[t] = rho * out[t - 1] + np.sqrt(1 - rho**2) * e[t]
    return out


def test_block_bootstrap_r_equals_corrcoef_on_resampled_blocks():
    rng = np.random.default_rng(0)
    T, V, bs = 97, 7, 10  # a trailing partial block of 7 TRs
    obs = 3.0 + 2.0 * rng.standard_normal((T, V))
    pred = 0.5 * obs + rng.standard_normal((T, V)) - 1.0
    obs[:, 6] = 1.5  # constant: NaN everywhere
    edges = block_edges(T, bs)
    assert edges[-2:].tolist() == [90, 97] and len(edges) - 1 == 10
    draws = block_bootstrap_draws(10, 25, seed=3)
    np.testing.assert_array_equal(draws, block_bootstrap_draws(10, 25, seed=3))  # the same at every checkpoint
    r = block_bootstrap_r(obs, pred, bs, 25, draws=draws)
    assert r.shape == (25, V) and np.isnan(r[:, 6]).all()
    for b in range(25):
        idx = np.concatenate([np.arange(edges[k], edges[k + 1]) for k in draws[b]])
        for v in range(6):
            assert abs(r[b, v] - np.corrcoef(obs[idx, v], pred[idx, v])[0, 1]) < 1e-10
    np.testing.assert_array_equal(block_bootstrap_r(obs, pred, bs, 25, seed=3), r)
    # The chunked mean over voxels equals the mean of the per-voxel replicates.
    m = block_bootstrap_mean_r(obs, pred, bs, 25, seed=3, chunk=4)
    np.testing.assert_allclose(m, np.nanmean(r, axis=1), atol=1e-12)
    mask = np.arange(V) < 3
    np.testing.assert_allclose(block_bootstrap_mean_r(obs, pred, bs, 25, seed=3, voxels=mask),
                               r[:, :3].mean(axis=1), atol=1e-12)


def test_block_bootstrap_is_wider_than_resampling_voxels_under_autocorrelation():
    """Voxels sharing an AR(1) time course are not independent: TR blocks see that, voxels do not."""
    rng = np.random.default_rng(1)
    T, V, n_boot = 300, 300, 400
    shared = ar1(rng, (T, 1))  # common temporal structure of predictions and responses
    obs = shared + 0.7 * ar1(rng, (T, V))
    pred = shared + 0.7 * ar1(rng, (T, V))
    r = pearson_columns(obs, pred)
    blocks = block_bootstrap_mean_r(obs, pred, 10, n_boot, seed=0)
    by_voxel = r[rng.integers(0, V, size=(n_boot, V))].mean(axis=1)
    width = lambda a: np.subtract(*np.percentile(a, [97.5, 2.5]))  # noqa: E731
    assert width(blocks) > 3 * width(by_voxel)
    assert np.percentile(blocks, 2.5) < r.mean() < np.percentile(blocks, 97.5)


def test_fit_encoding_bootstrap_replicates():
    Xtr, Ytr, groups, Xte, Yte, planted = planted_data(seed=2)
    res = fit_encoding(Xtr, Ytr, groups, Xte, Yte, n_perm=20, block_size=10, seed=0, n_boot=50)
    assert res.boot_mean_r.shape == (50,) and np.isfinite(res.boot_mean_r).all()
    assert abs(res.boot_mean_r.mean() - np.nanmean(res.r)) < 3 * res.boot_mean_r.std()
    again = fit_encoding(Xtr, Ytr, groups, Xte, Yte, n_perm=20, block_size=10, seed=0, n_boot=50)
    np.testing.assert_array_equal(res.boot_mean_r, again.boot_mean_r)
    assert fit_encoding(Xtr, Ytr, groups, Xte, Yte, n_perm=20).boot_mean_r.shape == (0,)
