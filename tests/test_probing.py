import numpy as np
import pytest

from brainphase.probing import (
    answer_matrix,
    choice_probe,
    neuron_probe,
    r_histogram,
    split_items,
)

N_ITEMS, N_CHOICES, N_NEURONS = 400, 4, 64


def planted(seed=0, noise=0.5):
    """Activations that carry a linear code of the correct choice."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, N_CHOICES, N_ITEMS)
    W = rng.standard_normal((N_CHOICES, N_NEURONS))
    acts = answer_matrix(targets, N_CHOICES) @ W + noise * rng.standard_normal((N_ITEMS, N_NEURONS))
    return targets, acts


def binom_upper(p, n, z=3.0):
    return p + z * np.sqrt(p * (1 - p) / n)


def test_split_deterministic_and_disjoint():
    tr, te = split_items(100, 0.25, seed=3)
    tr2, te2 = split_items(100, 0.25, seed=3)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(te, te2)
    assert len(te) == 25 and len(tr) == 75
    assert not set(tr) & set(te)
    assert sorted(set(tr) | set(te)) == list(range(100))
    _, te3 = split_items(100, 0.25, seed=4)
    assert not np.array_equal(te, te3)
    with pytest.raises(ValueError):
        split_items(3, 0.1)


def test_answer_matrix():
    A = answer_matrix(np.array([0, 2, 1]), 3)
    np.testing.assert_array_equal(A, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    with pytest.raises(ValueError):
        answer_matrix(np.array([0, 3]), 3)


def test_planted_code_is_found():
    targets, acts = planted()
    tr, te = split_items(N_ITEMS, seed=0)
    res = neuron_probe(answer_matrix(targets, N_CHOICES), acts, tr, te)
    assert res.mean_r > 0.5
    assert res.n_excluded == 0
    assert np.nanmean(res.r) == pytest.approx(res.mean_r)
    ch = choice_probe(acts, targets, tr, te, n_choices=N_CHOICES)
    assert ch.accuracy > 0.95
    assert ch.chance_uniform == 0.25
    assert ch.p_value < 1e-6
    assert ch.predictions.shape == (len(te),)


def test_shuffled_targets_give_chance():
    targets, acts = planted(seed=1)
    shuffled = np.random.default_rng(5).permutation(targets)
    tr, te = split_items(N_ITEMS, seed=0)
    res = neuron_probe(answer_matrix(shuffled, N_CHOICES), acts, tr, te)
    assert abs(res.mean_r) < 0.05
    ch = choice_probe(acts, shuffled, tr, te, n_choices=N_CHOICES)
    # Majority-class rate of the test items, and accuracy within a binomial band of it.
    assert ch.chance == np.bincount(shuffled[te]).max() / len(te)
    assert ch.accuracy < binom_upper(ch.chance, len(te))


def test_constant_neurons_are_excluded_and_counted():
    targets, acts = planted(seed=2)
    acts[:, :3] = 7.0
    tr, te = split_items(N_ITEMS, seed=0)
    res = neuron_probe(answer_matrix(targets, N_CHOICES), acts, tr, te)
    assert np.isnan(res.r[:3]).all()
    assert np.isfinite(res.r[3:]).all()
    assert res.n_excluded == 3
    assert np.isfinite(res.mean_r)


def test_histogram_counts_finite_r():
    r = np.array([-0.5, 0.0, 0.005, 0.012, 0.999, 1.0, np.nan, np.nan])
    edges, counts = r_histogram(r, 0.01)
    assert counts.sum() == 6
    assert len(edges) == len(counts) + 1 == 201
    np.testing.assert_allclose(np.diff(edges), 0.01)
    # 0.0 and 0.005 share the bin [0, 0.01)
    assert counts[np.searchsorted(edges, 0.0, side="right") - 1] == 2


def test_choice_probe_degenerate_training_labels():
    rng = np.random.default_rng(7)
    acts = rng.standard_normal((40, 5))
    targets = np.zeros(40, dtype=int)
    targets[-10:] = rng.integers(0, 4, 10)
    tr, te = np.arange(30), np.arange(30, 40)
    ch = choice_probe(acts, targets, tr, te, n_choices=4)  # one class in training
    assert np.all(ch.predictions == 0)
    assert ch.accuracy == np.mean(targets[te] == 0)
    targets[:3] = 1  # rarest training class has 3 members: 3-fold CV
    ch = choice_probe(acts, targets, tr, te, n_choices=4)
    assert 0.0 <= ch.accuracy <= 1.0 and np.isfinite(ch.C)
