import numpy as np
import pytest

import pandas as pd

from brainphase.probing import (
    align_items,
    answer_matrix,
    bootstrap_draws,
    choice_probe,
    item_bootstrap,
    neuron_probe,
    probe_task,
    r_histogram,
    split_items,
)
from brainphase.contracts.stimuli import DataError

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


# --------------------------------------------------------------------------- one task, every layer
def _items(targets):
    n = len(targets)
    return pd.DataFrame({"unit_id": [f"task/{i}" for i in range(n)], "target": targets, "n_choices": N_CHOICES,
                         "lang": "en"})


def test_probe_task_recovers_a_planted_answer_code_and_shuffling_gives_chance():
    targets, acts = planted(seed=3, noise=1.0)
    rng = np.random.default_rng(9)
    layers = {"mlp.1": acts, "mlp.2": rng.standard_normal(acts.shape)}  # layer 2 carries nothing
    meta = {"unit_ids": [f"task/{i}" for i in range(N_ITEMS)]}
    aligned = align_items(_items(targets), meta, 0.25, seed=0)
    summary, neurons, boot = probe_task(layers, aligned, n_boot=20, seed=0)
    v = summary.set_index(["layer", "metric"]).value
    n_test = len(aligned.test_idx)
    assert v[1, "neuron_mean_r"] > 0.3
    assert v[1, "choice_accuracy"] > 0.8 > binom_upper(v[1, "choice_chance"], n_test)
    assert abs(v[2, "neuron_mean_r"]) < 0.05
    assert v[2, "choice_accuracy"] < binom_upper(v[2, "choice_chance"], n_test)
    assert set(neurons.layer) == {1, 2} and boot.groupby("layer").size().to_dict() == {1: 20, 2: 20}

    shuffled = rng.permutation(targets)
    summary, _, _ = probe_task({"mlp.1": acts}, align_items(_items(shuffled), meta, 0.25, seed=0), 20, 0)
    v = summary.set_index("metric").value
    assert abs(v["neuron_mean_r"]) < 0.05
    assert v["choice_accuracy"] < binom_upper(v["choice_chance"], n_test)


def test_align_items_by_unit_id_with_dropped_units():
    targets, _ = planted()
    items = _items(targets)
    ids = items.unit_id.tolist()
    kept = [u for u in ids if u != "task/7"][::-1]  # the file's own row order
    aligned = align_items(items, {"unit_ids": kept, "dropped_unit_ids": ["task/7"]}, 0.25, seed=0)
    assert aligned.n_dropped == 1 and aligned.items.unit_id.tolist() == kept
    # The split is drawn over all items: dropping one moves no other between train and test.
    full = align_items(items, {"unit_ids": ids}, 0.25, seed=0)
    test_full = set(full.items.unit_id.iloc[full.test_idx]) - {"task/7"}
    assert set(aligned.items.unit_id.iloc[aligned.test_idx]) == test_full
    with pytest.raises(DataError, match="stale"):
        align_items(items, {"unit_ids": kept}, 0.25, seed=0)  # task/7 neither kept nor dropped


def test_item_bootstrap_is_paired_and_centred_on_the_point_value():
    targets, acts = planted(seed=4, noise=1.5)
    _, acts_later = planted(seed=4, noise=0.5)  # the same items at a "later checkpoint"
    tr, te = split_items(N_ITEMS, seed=0)
    A = answer_matrix(targets, N_CHOICES)
    np.testing.assert_array_equal(bootstrap_draws(len(te), 50, seed=2), bootstrap_draws(len(te), 50, seed=2))
    assert not np.array_equal(bootstrap_draws(len(te), 50, seed=2), bootstrap_draws(len(te), 50, seed=3))
    assert (bootstrap_draws(len(te), 50, seed=2).sum(axis=1) == len(te)).all()
    reps = {}
    for name, a in (("early", acts), ("late", acts_later)):
        res = neuron_probe(A, a, tr, te)
        reps[name] = item_bootstrap(a[te], res.pred, 300, seed=2, excluded=res.excluded)
        assert reps[name].shape == (300,) and np.isfinite(reps[name]).all()
        assert reps[name].mean() == pytest.approx(res.mean_r, abs=0.02)
        assert reps[name].std() > 0
    # Paired: the same resampled items in both, so the replicates move together.
    assert np.corrcoef(reps["early"], reps["late"])[0, 1] > 0.3
    # The returned predictions are the ones the point value is computed from.
    res = neuron_probe(A, acts, tr, te)
    x, y = acts[te], res.pred
    r_full = np.array([np.corrcoef(x[:, j], y[:, j])[0, 1] for j in range(x.shape[1])])
    assert np.nanmean(r_full) == pytest.approx(res.mean_r)
