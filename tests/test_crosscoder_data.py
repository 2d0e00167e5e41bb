"""Per-TR crosscoder inputs: delayed means, whole-story splits, and the text heard before a TR."""

import numpy as np
import pandas as pd
import pytest

from brainphase.crosscoder.data import crosscoder_inputs, delayed_mean, heard_before
from brainphase.encoding.delays import delays_in_trs
from brainphase.contracts.brain import BrainData, BrainRun


def test_delayed_mean_is_the_mean_of_past_trs_within_a_run():
    x = np.arange(12, dtype=float).reshape(6, 2)
    (out,) = delayed_mean([x], [1, 2])
    # Row t = mean(x[t-1], x[t-2]); before the run starts the copies are zero.
    np.testing.assert_allclose(out[3], (x[2] + x[1]) / 2)
    np.testing.assert_allclose(out[1], (x[0] + 0) / 2)
    np.testing.assert_allclose(out[0], 0)


def test_delays_must_be_whole_trs():
    assert delays_in_trs([2, 4, 6, 8], 2.0) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="not whole TRs"):
        delays_in_trs([3], 2.0)


def _world(n_runs=6, n_trs=40, tr=2.0, seed=0):
    rng = np.random.default_rng(seed)
    rows, runs = [], {}
    for i in range(n_runs):
        name = f"test{i:02d}" if i >= n_runs - 2 else f"story{i:02d}"
        onsets = np.arange(0, n_trs * tr - 4, 0.5)
        rows.append(pd.DataFrame({"unit_id": [f"{name}_{j}" for j in range(len(onsets))], "run": name,
                                  "text": [f"w{j}" for j in range(len(onsets))], "lang": "en", "onset": onsets,
                                  "offset": onsets + 0.3, "word_index": np.arange(len(onsets))}))
        runs[name] = BrainRun(rng.normal(size=(n_trs, 7)).astype(np.float32), "test" if name.startswith("test")
                              else "train", None)
    stim = pd.concat(rows, ignore_index=True)
    return stim, BrainData(runs, tr, np.zeros((7, 2)), {})


def test_inputs_split_whole_stories_and_align_rows():
    stim, brain = _world()
    acts = np.random.default_rng(1).normal(size=(len(stim), 5)).astype(np.float32)
    inp = crosscoder_inputs(acts, stim, brain, delays_s=[2, 4], n_trim=3, val_fraction=0.25, seed=0)
    assert inp.x_brain.shape == (6 * 34, 7) and inp.x_lm.shape == (6 * 34, 5)
    runs = {k: set(inp.run[v]) for k, v in inp.split.items()}
    assert runs["test"] == {"test04", "test05"} and len(runs["val"]) == 1
    assert not (runs["train"] & runs["val"]) and not (runs["train"] & runs["test"])
    assert sum(len(v) for v in inp.split.values()) == len(inp.run)
    # Rows keep acquisition time: trimmed TRs are gone, so each run starts at 3 TRs.
    first = inp.time[inp.run == "story00"]
    assert first[0] == pytest.approx(brain.tr_times("story00")[3]) and len(first) == 34


def test_heard_before_takes_the_last_seconds():
    stim, _ = _world(n_runs=1)
    assert heard_before(stim, "test00", 2.0, window_s=1.0) == "w3 w4"
