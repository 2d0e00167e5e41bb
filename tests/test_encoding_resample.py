"""Lanczos resampling and annotation overlap means."""

import math

import numpy as np
import pytest
import torch

from brainphase.encoding import resample
from brainphase.encoding.resample import lanczos_kernel, lanczos_resample, overlap_mean

torch.set_num_threads(1)

PI2 = math.pi**2


def test_kernel_hand_values():
    # window * sin(pi x) * sin(pi x / window) / (pi^2 x^2), window = 3
    x = np.array([0.0, 0.5, -0.5, 1.0, 1.5, 2.5, 3.0, 3.01, -4.0, 100.0])
    expected = [
        1.0,  # defined as 1 at x = 0
        3 * 1.0 * 0.5 / (PI2 * 0.25),  # sin(pi/2) = 1, sin(pi/6) = 1/2 -> 6/pi^2
        6 / PI2,  # even
        0.0,  # sin(pi) = 0
        3 * (-1.0) * 1.0 / (PI2 * 2.25),  # sin(3pi/2) = -1, sin(pi/2) = 1
        3 * 1.0 * 0.5 / (PI2 * 6.25),  # sin(5pi/2) = 1, sin(5pi/6) = 1/2
        0.0,  # sin(3 pi) = 0 at the window edge
        0.0,  # beyond the window
        0.0,
        0.0,
    ]
    np.testing.assert_allclose(lanczos_kernel(x, window=3), expected, atol=1e-15)


def test_impulse_between_trs():
    # TR = 2 s -> cutoff 0.5 Hz; one word at t = 9 s; x = (t_new - 9) / 2
    new_times = np.arange(0.0, 20.0, 2.0)  # x = -4.5, -3.5, ..., 4.5
    out = lanczos_resample(np.array([[1.0]]), np.array([9.0]), new_times)
    k05 = 6 / PI2
    k15 = -4 / (3 * PI2)
    k25 = 0.24 / PI2
    expected = [0, 0, k25, k15, k05, k05, k15, k25, 0, 0]
    assert out.shape == (10, 1)
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-15)


def test_impulse_on_tr_is_one_and_scales_with_value():
    new_times = np.arange(0.0, 20.0, 2.0)
    out = lanczos_resample(np.array([2.5, -1.0]), np.array([10.0, 10.0]), new_times)
    # two words at the same time are summed; on-grid: weight 1 there, 0 at other TRs
    # (x = +-1, +-2, ... are zeros of sin(pi x))
    expected = np.zeros(10)
    expected[5] = 1.5
    np.testing.assert_allclose(out, expected, atol=1e-15)


def test_cutoff_mult_rescales_time():
    new_times = np.arange(0.0, 20.0, 2.0)
    out = lanczos_resample(np.array([1.0]), np.array([9.0]), new_times, cutoff_mult=0.5)
    # cutoff 0.25 Hz: x = (10 - 9) * 0.25 = 0.25 at t = 10
    x = 0.25
    k = 3 * math.sin(math.pi * x) * math.sin(math.pi * x / 3) / (PI2 * x * x)
    assert out[5] == pytest.approx(k, abs=1e-14)


def test_weighted_sum_not_mean():
    # dense words (10 per TR, value 1): a normalised interpolation would give 1,
    # the Lanczos weighted sum gives ~ words per TR.
    word_times = np.arange(0.05, 200.0, 0.2)
    new_times = np.arange(20.0, 180.0, 2.0)
    out = lanczos_resample(np.ones((word_times.size, 3)), word_times, new_times)
    np.testing.assert_allclose(out, 10.0, rtol=0.05)
    assert np.all(np.abs(out - 1.0) > 5)


def test_chunked_kernel_matches_single_block(monkeypatch):
    rng = np.random.default_rng(0)
    old = np.sort(rng.uniform(0, 100, 300))
    data = rng.standard_normal((300, 4))
    new = np.arange(0, 100, 2.0)
    full = lanczos_resample(data, old, new)
    monkeypatch.setattr(resample, "_MAX_KERNEL_ELEMENTS", 700)  # 2 rows per block
    np.testing.assert_allclose(lanczos_resample(data, old, new), full, rtol=0, atol=1e-12)


def test_resample_input_checks():
    with pytest.raises(ValueError):
        lanczos_resample(np.ones((3, 2)), np.arange(4.0), np.arange(5.0))
    with pytest.raises(ValueError):
        lanczos_resample(np.ones(3), np.arange(3.0), np.array([1.0]))


def test_overlap_mean_hand_case():
    tr = 2.0
    tr_times = np.array([1.0, 3.0, 5.0, 7.0, 9.0])  # TR i covers [2i, 2i + 2)
    onsets = np.array([0.0, 1.0, 5.0, 6.0, 3.0, 8.0])
    offsets = np.array([1.5, 2.5, 5.5, 6.0, 4.0, 8.0])
    data = np.array([1.0, 3.0, 10.0, 7.0, 5.0, 2.0])
    # TR0 [0,2): units 0, 1 -> 2; TR1 [2,4): unit 1 (to 2.5), unit 4 ([3,4)) -> 4
    # TR2 [4,6): unit 2 -> 10 (unit 4 ends at 4.0: no overlap);
    # TR3 [6,8): zero-length unit at 6.0 -> 7; TR4 [8,10): zero-length at 8 -> 2
    out = overlap_mean(data, onsets, offsets, tr_times, tr)
    np.testing.assert_allclose(out, [2.0, 4.0, 10.0, 7.0, 2.0])


def test_overlap_mean_empty_tr_is_zero_and_2d():
    data = np.array([[1.0, -1.0], [3.0, 1.0]])
    out = overlap_mean(data, [0.0, 0.5], [1.0, 1.5], [1.0, 3.0, 5.0], 2.0)
    np.testing.assert_allclose(out, [[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
