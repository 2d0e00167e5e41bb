"""Held-out scoring of every alpha from one fold's factors, against explicit predictions.

Planted eigenvalue spectra with exact ties, near ties just outside the
cluster bound and a null space: the partial-fraction and triangular
evaluations must both equal ``1 - |y - A diag(1 / (lam + a)) B|^2 / SS_tot``
computed by forming the predictions.
"""

import numpy as np
import pytest
import torch

from brainphase.encoding.backends import Backend, float64_cost_of_capability
from brainphase.encoding.factors import Basis
from brainphase.encoding.scoring import (
    eigenvalue_clusters,
    held_out_r2,
    scoring_costs,
    scoring_method,
)

torch.set_num_threads(1)

METHODS = ["partial_fractions", "triangle"]


def explicit_r2(A, lam, B, Y, alphas):
    ss_tot = ((Y - Y.mean(0)) ** 2).sum(0)
    out = []
    for a in alphas:
        pred = A @ (B / (lam + a)[:, None])
        out.append(1 - ((Y - pred) ** 2).sum(0) / ss_tot)
    return np.array(out)


def fold(lam, n_test=30, n_targets=9, seed=0):
    rng = np.random.default_rng(seed)
    r = len(lam)
    A = rng.standard_normal((n_test, r)) * rng.uniform(0.2, 2.0, r)
    B = rng.standard_normal((r, n_targets)) * 3.0
    Y = A @ (B / (lam + 10.0)[:, None]) + rng.standard_normal((n_test, n_targets))
    return A, B, Y


def score(backend, lam, A, B, Y, alphas, method):
    ops = Backend(backend)
    b = Basis(n=100, lam=ops.asarray(lam, "float64"), x_mean=None, A=ops.asarray(A, "float64"))
    # Y stands for the held-out series minus the training mean (here 0).
    return held_out_r2(ops, b, ops.asarray(B, "float64"), ops.asarray(Y, "float64"),
                       ops.asarray(alphas, "float64"), "float64", method=method)


# Exact ties (a null space of 3, a pair, a triple), a near tie 1e-13 apart,
# and a pair 3e-4 apart: outside the cluster bound for alphas up to 1e3
# (1e-7 x 1e3 = 1e-4), so divided by, with the largest amplification allowed.
TIED = np.array([0.0, 0.0, 0.0, 0.5, 1.0, 1.0 + 1e-13, 2.0, 2.0 + 3e-4, 3.0, 3.0, 3.0, 7.0, 40.0, 41.0, 900.0])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("alphas", [np.logspace(-2, 3, 8), np.logspace(-2, 8, 6)], ids=["to-1e3", "to-1e8"])
def test_scores_equal_explicit_predictions_with_tied_eigenvalues(backend, method, alphas):
    A, B, Y = fold(TIED)
    expected = explicit_r2(A, TIED, B, Y, alphas)
    got = score(backend, TIED, A, B, Y, alphas, method)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_scores_equal_explicit_predictions_on_a_wide_fold(method):
    """Fewer held-out samples than the rank: ``A`` is wide and its triangular factor trapezoidal."""
    lam = np.sort(np.random.default_rng(3).gamma(2.0, 50.0, 40))
    A, B, Y = fold(lam, n_test=12, seed=3)
    alphas = np.logspace(0, 4, 9)
    np.testing.assert_allclose(score("numpy", lam, A, B, Y, alphas, method), explicit_r2(A, lam, B, Y, alphas),
                               rtol=1e-9, atol=1e-10)


def test_eigenvalue_clusters_are_the_planted_ties():
    # Gap bound 1e-7 x (lam + 1e3): ~1e-4 here.
    assert eigenvalue_clusters(TIED, 1e3) == [(0, 3), (4, 6), (8, 11)]
    # With alphas up to 1e8 the bound is ~10: 0 to 7 chain, then 40 and 41; 900 stands alone.
    assert eigenvalue_clusters(TIED, 1e8) == [(0, 12), (12, 14)]
    assert eigenvalue_clusters(np.array([1.0, 2.0, 3.0]), 1.0) == []


def test_auto_takes_the_cheaper_method():
    assert scoring_method(600, 512, 9) == "partial_fractions"  # square: 2 r^2 < 9 r^2 / 2
    assert scoring_method(600, 512, 3) == "triangle"
    assert scoring_method(20, 2000, 9) == "triangle"  # a thin trapezoid is cheap per alpha
    costs = scoring_costs(600, 512, 9)
    assert costs["partial_fractions"] == 2 * 512**2 and costs["triangle"] == 9 * 512**2 / 2


def test_auto_falls_back_to_the_triangle_when_ties_cover_the_spectrum():
    """All eigenvalues tied: partial fractions would score one big cluster by the triangle anyway."""
    lam = np.full(20, 4.0)
    A, B, Y = fold(lam, seed=5)
    alphas = np.logspace(0, 3, 9)
    ops = Backend("numpy")
    b = Basis(n=100, lam=lam.copy(), x_mean=None, A=A)
    got = held_out_r2(ops, b, B, Y - Y.mean(0), alphas, "float64")
    assert b.extra["method"] == "triangle"
    np.testing.assert_allclose(got, explicit_r2(A, lam, B, Y - Y.mean(0), alphas), rtol=1e-9, atol=1e-10)


def test_float64_cost_follows_the_device():
    """Data-centre GPUs run float64 at half the float32 rate; on the others partial fractions lose."""
    assert Backend("numpy").float64_cost == 2.0
    assert [float64_cost_of_capability(*cc) for cc in [(9, 0), (8, 0), (7, 0), (8, 6), (7, 5), (12, 0)]] == [
        2.0, 2.0, 2.0, 32.0, 32.0, 32.0]
    assert scoring_method(600, 512, 9, float64_cost=32.0) == "triangle"
