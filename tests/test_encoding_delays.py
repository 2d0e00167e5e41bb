"""FIR delays, per-run z-scoring and trimming."""

import numpy as np
import pytest
import torch

from brainphase.encoding.delays import fir_delays, prepare_design, prepare_responses, trim, zscore_runs

torch.set_num_threads(1)


def test_fir_delays_shift_with_zeros():
    X = np.arange(1.0, 6.0)[:, None]  # 1..5
    out = fir_delays(X, [0, 1, 2, -1])
    expected = np.array(
        [
            [1, 0, 0, 2],
            [2, 1, 0, 3],
            [3, 2, 1, 4],
            [4, 3, 2, 5],
            [5, 4, 3, 0],
        ],
        dtype=float,
    )
    np.testing.assert_array_equal(out, expected)


def test_fir_delays_block_order_and_no_wrap():
    X = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    out = fir_delays(X, [1, 3, -5])
    assert out.shape == (3, 6)
    # delay 1: features of t-1; first row is padding, never X[-1]
    np.testing.assert_array_equal(out[:, :2], [[0, 0], [1, 10], [2, 20]])
    # |delay| >= n_samples: everything shifted out
    np.testing.assert_array_equal(out[:, 2:], 0)


def test_fir_delays_rejects_empty():
    with pytest.raises(ValueError):
        fir_delays(np.ones((3, 2)), [])


def test_zscore_runs_separately_and_constant_column():
    rng = np.random.default_rng(0)
    a = rng.normal(5, 2, size=(50, 3))
    b = rng.normal(-3, 7, size=(40, 3))
    b[:, 1] = 4.0  # constant in this run only
    za, zb = zscore_runs([a, b])
    np.testing.assert_allclose(za.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(za.std(0), 1, atol=1e-12)
    np.testing.assert_allclose(zb[:, [0, 2]].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(zb[:, [0, 2]].std(0), 1, atol=1e-12)
    np.testing.assert_array_equal(zb[:, 1], 0.0)  # not NaN


def test_trim_each_run():
    runs = [np.arange(10)[:, None], np.arange(100, 108)[:, None]]
    out = trim(runs, 2)
    np.testing.assert_array_equal(out[0][:, 0], np.arange(2, 8))
    np.testing.assert_array_equal(out[1][:, 0], np.arange(102, 106))
    assert trim(runs, 0)[0].shape == (10, 1)
    with pytest.raises(ValueError):
        trim(runs, 4)  # second run has 8 samples


def test_prepare_design_delays_do_not_cross_runs():
    # run 1 ramps up, run 2 ramps down; after z-scoring both are +-linear
    r1 = np.arange(6.0)[:, None]
    r2 = np.arange(6.0)[::-1, None] * 3
    X, runs = prepare_design([r1, r2], delays=[1, 2], trim=0)
    z1 = (r1 - r1.mean()) / r1.std()
    z2 = (r2 - r2.mean()) / r2.std()
    np.testing.assert_array_equal(runs, [0] * 6 + [1] * 6)
    assert X.shape == (12, 2)
    # first samples of run 2 are zero padded, not filled from the end of run 1
    np.testing.assert_array_equal(X[6:8, 1], 0.0)
    assert X[6, 0] == 0.0
    np.testing.assert_allclose(X[7:12, 0], z2[:5, 0])
    np.testing.assert_allclose(X[1:6, 0], z1[:5, 0])


def test_prepare_design_trim_keeps_history_from_lead_in():
    rng = np.random.default_rng(1)
    runs_in = [rng.standard_normal((20, 3)), rng.standard_normal((15, 3))]
    X, runs = prepare_design(runs_in, delays=[0, 2], trim=3)
    z = zscore_runs(runs_in)
    assert X.shape == (14 + 9, 6)
    np.testing.assert_array_equal(np.bincount(runs), [14, 9])
    # second run, first kept row (t = 3): delay-2 copy is z[1][1], not padding
    np.testing.assert_allclose(X[14, 3:], z[1][1])
    np.testing.assert_allclose(X[14, :3], z[1][3])
    np.testing.assert_allclose(X[13, :3], z[0][16])


def test_prepare_responses():
    rng = np.random.default_rng(2)
    r1 = rng.normal(100, 5, size=(30, 4))
    r2 = rng.normal(-50, 1, size=(25, 4))
    Y, runs = prepare_responses([r1, r2], trim=5)
    assert Y.shape == (20 + 15, 4)
    np.testing.assert_array_equal(np.bincount(runs), [20, 15])
    z2 = (r2 - r2.mean(0)) / r2.std(0)
    np.testing.assert_allclose(Y[20:], z2[5:20])
