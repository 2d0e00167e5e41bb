"""Variance partitioning between an LM band and a low-level band, against planted truth and closed forms."""

import numpy as np
import pandas as pd
import pytest

from brainphase.contracts.brain import BrainData, BrainRun
from brainphase.encoding.settings import EncodingSettings
from brainphase.encoding.variance import (PARTS, band_weights, mean_word_length, partition_layers,
                                          partition_variance, words_and_letters)
from brainphase.encoding.variance_summary import lm_unique_trajectory, summarise_partition
from brainphase.toyworld.fmri import events_to_bold


def test_words_and_letters_count_what_a_reader_sees():
    counts = words_and_letters(pd.Series(["house", ".", "a cat sat", "ねこ", None]))
    np.testing.assert_array_equal(counts, [[1, 5], [0, 0], [3, 7], [1, 2], [0, 0]])


def test_mean_word_length_per_tr_is_letters_over_words_of_the_words_inside():
    counts = np.array([[1, 4], [1, 2], [1, 9], [0, 0]], float)
    mid = np.array([0.5, 1.5, 4.5, 4.6])  # TRs of 2 s centred at 1, 3, 5: two words, none, one word (+ a period)
    np.testing.assert_allclose(mean_word_length(counts, mid, np.array([1.0, 3.0, 5.0]), 2.0), [3.0, 0.0, 9.0])


def test_band_weights_hold_both_corners_and_sum_to_one():
    w = band_weights(6, seed=0)
    assert w.shape == (6, 2) and np.allclose(w.sum(1), 1)
    assert w[1, 0] > 0.99 and w[2, 1] > 0.99
    with pytest.raises(ValueError, match="variance.n_iter"):
        band_weights(2, seed=0)


@pytest.fixture(scope="module")
def bands():
    """Low-level voxels driven by a feature both bands hold, LM voxels by one only the LM band holds, null voxels.

    Signal and noise have unit variance, so each driven voxel's true R² is 1/2:
    low-level voxels are all shared (the LM band contains the low-level
    features), LM voxels all LM-unique.
    """
    rng = np.random.default_rng(0)
    n_runs, n_t, n_vox = 8, 150, 30
    low = rng.standard_normal((n_runs * n_t, 3))
    private = rng.standard_normal((n_runs * n_t, 6))
    lm = np.hstack([low, private, rng.standard_normal((n_runs * n_t, 3))])
    y = np.zeros((n_runs * n_t, n_vox))
    for cols, x in ((slice(0, 10), low), (slice(10, 20), private)):
        w = rng.standard_normal((x.shape[1], 10))
        s = x @ w
        y[:, cols] = s / s.std(0)
    y += rng.standard_normal(y.shape)
    run = np.repeat(np.arange(n_runs), n_t)
    tr, te = run < 6, run >= 6
    part = partition_variance(lm[tr], low[tr], y[tr], run[tr], lm[te], low[te], y[te],
                              alphas=np.logspace(-1, 4, 8), n_iter=6, n_splits=3, seed=0)
    return part


def test_parts_add_up_to_the_joint_r2(bands):
    np.testing.assert_allclose(bands.unique_lm + bands.unique_lowlevel + bands.shared, bands.r2_joint, atol=1e-6)
    np.testing.assert_allclose(bands.split_lm + bands.split_lowlevel, bands.r2_joint, atol=1e-5)


def test_planted_bands_give_the_closed_form_parts(bands):
    t = bands.table()
    low, lm, null = t.iloc[0:10], t.iloc[10:20], t.iloc[20:30]
    assert low["r2_joint"].mean() == pytest.approx(0.5, abs=0.07)
    assert low["shared"].mean() == pytest.approx(0.5, abs=0.07)
    assert abs(low["unique_lm"].mean()) < 0.03 and abs(low["unique_lowlevel"].mean()) < 0.03
    assert lm["unique_lm"].mean() == pytest.approx(0.5, abs=0.07)
    assert abs(lm["shared"].mean()) < 0.03 and abs(lm["r2_lowlevel"].mean()) < 0.03
    assert lm["split_lm"].mean() == pytest.approx(0.5, abs=0.07)
    assert (null[list(PARTS)].abs() < 0.05).all().all()


def listener():
    """A listener whose low-level voxels follow word rate and length and whose semantic voxels follow
    the words' meanings; an untrained checkpoint's layer is noise, a trained one's carries the meanings."""
    rng = np.random.default_rng(1)
    tr, d, n_vox = 2.0, 5, 24
    group = np.array(["lowlevel"] * 8 + ["semantic"] * 8 + ["null"] * 8)
    w_sem, w_low = rng.standard_normal((d, 8)), rng.standard_normal((2, 8))
    rows, runs, meanings = [], {}, []
    for run, split in [(f"r{k}", "train") for k in range(5)] + [("t0", "test"), ("t1", "test")]:
        n_words = 240
        # Pauses between phrases make the word rate vary from TR to TR, as in speech.
        on = 10 + np.cumsum(rng.uniform(0.2, 0.4, n_words) + (rng.random(n_words) < 0.1) * rng.uniform(2, 5, n_words))
        length = rng.integers(1, 10, n_words)
        text = np.where(length == 1, ".", ["x" * n for n in length])
        spoken = (text != ".").astype(float)
        meaning = rng.standard_normal((n_words, d)) * spoken[:, None]
        n_trs = int(np.ceil((on[-1] + 12) / tr))
        bold = np.zeros((n_trs, n_vox))
        low = events_to_bold(on, np.column_stack([spoken, spoken * (length - 4) / 3]), n_trs, tr)
        bold[:, :8] = low @ w_low
        bold[:, 8:16] = events_to_bold(on, meaning, n_trs, tr) @ w_sem
        bold[:, :16] /= bold[5:-5, :16].std(0)
        bold += rng.standard_normal(bold.shape)
        runs[run] = BrainRun(bold.astype(np.float32), split, None)
        rows.append(pd.DataFrame({"unit_id": [f"{run}_{j}" for j in range(n_words)], "run": run, "text": text,
                                  "lang": "en", "onset": on, "offset": on + 0.2}))
        meanings.append(meaning)
    stimuli = pd.concat(rows, ignore_index=True)
    meaning = np.concatenate(meanings)
    brain = BrainData(runs, tr, np.stack([np.zeros(n_vox), np.arange(n_vox)], 1))
    settings = EncodingSettings(delays=[1, 2, 3, 4], trim=3, alphas=np.logspace(0, 4, 6), cv_splits=5, n_perm=100,
                                block_size=10, fdr_q=0.05, seed=0, backend="numpy")
    layers = {"first": {"resid.0": rng.standard_normal((len(stimuli), 8))},
              "last": {"resid.0": np.hstack([meaning, rng.standard_normal((len(stimuli), 3))])}}
    truth = pd.DataFrame({"dataset": "d", "subject": "s", "voxel": np.arange(n_vox), "group": group})
    return stimuli, brain, settings, layers, truth


@pytest.fixture(scope="module")
def checkpoints():
    stimuli, brain, settings, layers, truth = listener()
    out = []
    for tokens, (step, acts) in enumerate(layers.items()):
        v = partition_layers(acts, stimuli, brain, settings, n_iter=5, n_perm=100)
        out.append(v.assign(model="m", step=step, tokens=tokens * 1000, dataset="d", subject="s"))
    return pd.concat(out, ignore_index=True), truth


def test_chunked_layers_equal_the_whole_and_correct_over_all_voxels(checkpoints, monkeypatch):
    """Chunks of 5 voxels reproduce the unchunked parts; the FDR runs once per layer, over every voxel."""
    from brainphase.encoding import stats, variance
    from brainphase.encoding.variance_memory import VariancePlan

    stimuli, brain, settings, layers, _ = listener()
    monkeypatch.setattr(variance, "plan_variance", lambda shape, budget: VariancePlan(5, 0))
    corrected = []
    fdr = stats.fdr_bh
    monkeypatch.setattr(stats, "fdr_bh", lambda p, q: corrected.append(len(p)) or fdr(p, q))
    v = partition_layers(layers["last"], stimuli, brain, settings, n_iter=5, n_perm=100, budget_bytes=1)
    whole = checkpoints[0].query("step == 'last'").reset_index(drop=True)
    np.testing.assert_allclose(v[list(PARTS)].to_numpy(), whole[list(PARTS)].to_numpy(), atol=1e-5)
    np.testing.assert_array_equal(v["significant"], whole["significant"])
    assert corrected == [len(v)]


def test_low_level_band_explains_the_low_level_voxels(checkpoints):
    v, truth = checkpoints
    low = v.merge(truth).query("group == 'lowlevel'")
    for _, ck in low.groupby("step"):
        assert ck["split_lowlevel"].mean() > ck["unique_lm"].mean() + 0.2
        assert ck["significant"].all()


def test_semantic_voxels_gain_lm_unique_variance_over_training(checkpoints):
    v, truth = checkpoints
    sem = v.merge(truth).query("group == 'semantic'").groupby("step")["unique_lm"].mean()
    assert sem["first"] < 0.05 and sem["last"] > sem["first"] + 0.2
    null = v.merge(truth).query("group == 'null'")
    assert null["significant"].sum() <= 1


def test_summary_and_figure_follow_the_planted_groups(checkpoints):
    v, truth = checkpoints
    summary = summarise_partition(v, truth)
    share = summary.query("part == 'unique_lm' and group == 'semantic'").set_index("step")["value"]
    assert share["last"] > share["first"]
    assert {"all voxels", "significant voxels", "lowlevel", "semantic", "null"} <= set(summary["group"])
    fig = lm_unique_trajectory(summary)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 5


def test_torch_backend_gives_the_numpy_partition():
    """The torch code path (the one CUDA takes) reproduces the numpy fits."""
    rng = np.random.default_rng(2)
    x_low, x_lm = rng.standard_normal((400, 2)), rng.standard_normal((400, 6))
    y = x_low @ rng.standard_normal((2, 5)) + x_lm @ rng.standard_normal((6, 5)) + rng.standard_normal((400, 5))
    run = np.repeat(np.arange(4), 100)
    tr, te = run < 3, run == 3
    fits = [partition_variance(x_lm[tr], x_low[tr], y[tr], run[tr], x_lm[te], x_low[te], y[te],
                               alphas=np.logspace(-1, 3, 5), n_iter=4, n_splits=3, seed=0, backend=b)
            for b in ("numpy", "torch")]
    for part in ("r2_joint", "r2_lm", "r2_lowlevel", "split_lm"):
        np.testing.assert_allclose(getattr(fits[1], part), getattr(fits[0], part), atol=1e-3)
