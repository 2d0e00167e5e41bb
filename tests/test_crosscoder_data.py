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


# --- the responses held once: z-scoring into a store, in memory or on disk -----------------------------------

def _runs(seed=0, n_vox=37):
    rng = np.random.default_rng(seed)
    runs = [(rng.normal(size=(n, n_vox)) * rng.uniform(0.1, 50, n_vox) + rng.normal(size=n_vox) * 100)
            .astype(np.float32) for n in (23, 41, 17)]
    runs[1][:, 5] = 3.0  # a column constant within one run becomes 0 there, as in zscore_runs
    return runs


@pytest.mark.parametrize("on_disk", [False, True])
def test_zscore_into_equals_prepare_responses_bit_for_bit(tmp_path, monkeypatch, on_disk):
    from brainphase.crosscoder import store as store_module
    from brainphase.encoding.delays import prepare_responses

    # Blocks of 3 rows: every run spans several blocks, so the running sums are exercised.
    monkeypatch.setattr(store_module, "BLOCK_BYTES", 3 * 8 * 37)
    runs = _runs()
    expected, index = prepare_responses(runs, 2)
    with store_module.RowStore(len(expected), 37, tmp_path if on_disk else None) as st:
        got_index = store_module.zscore_into(st, runs, 2, ["a", "b", "c"])
        got = st.gather(np.arange(len(expected)))
        assert st.on_disk == on_disk
    np.testing.assert_array_equal(got_index, index)
    assert got.dtype == np.float32 and np.array_equal(got, expected.astype(np.float32))
    # The float64 statistics themselves, which float32 storage would mostly hide, are numpy's to the bit.
    for run in runs:
        a = run.astype(np.float64)
        mean, std = store_module.run_stats(run, "a", step=3)
        assert np.array_equal(mean, a.mean(0)) and np.array_equal(std, a.std(0))
    assert not list(tmp_path.iterdir()), "the response file outlived its store"


def test_disk_store_gathers_the_rows_asked_in_their_order(tmp_path):
    from brainphase.crosscoder.store import RowStore, ShuffledRows

    x = np.random.default_rng(2).normal(size=(50, 9)).astype(np.float32)
    with RowStore(50, 9) as mem, RowStore(50, 9, tmp_path) as disk:
        for st in (mem, disk):
            st.write(0, x[:20])
            st.write(20, x[20:])
            st.set_scale(0.37)
        for rows in (np.arange(50), np.array([7, 3, 4, 5, 49, 0, 0]), np.arange(10, 20)):
            assert np.array_equal(disk.gather(rows), mem.gather(rows))
            assert np.array_equal(mem.gather(rows), x[rows] * np.float32(0.37))
        perm = np.random.default_rng(3).permutation(50)
        assert np.array_equal(ShuffledRows(disk, perm).gather(np.arange(5)), mem.gather(perm[:5]))


def test_brain_on_disk_reads_lazily_and_names_bad_runs(tmp_path):
    import h5py

    from brainphase.contracts.brain import RunOnDisk, read_brain, write_brain
    from brainphase.contracts.stimuli import DataError
    from brainphase.crosscoder.store import RowStore, zscore_into

    _, brain = _world(n_runs=3, n_trs=12)
    write_brain(tmp_path / "s.h5", brain.runs, brain.tr, brain.coords)
    lazy = read_brain(tmp_path / "s.h5", on_disk=True)
    assert isinstance(lazy.runs["story00"].data, RunOnDisk) and lazy.tr == brain.tr
    assert [r.split for r in lazy.runs.values()] == [r.split for r in brain.runs.values()]
    with RowStore(3 * 8, 7) as a, RowStore(3 * 8, 7) as b:
        zscore_into(a, [r.data for r in lazy.runs.values()], 2, list(lazy.runs))
        zscore_into(b, [r.data for r in brain.runs.values()], 2, list(brain.runs))
        assert np.array_equal(a.array, b.array)
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        f["runs/test01/data"][4, 3] = np.nan
    with pytest.raises(DataError, match="run test01 contains NaN or inf"):
        read_brain(tmp_path / "s.h5", on_disk=True)
    with RowStore(3 * 8, 7) as st, pytest.raises(DataError, match="test01: 1 column.*NaN or inf"):
        zscore_into(st, [r.data for r in lazy.runs.values()], 2, list(lazy.runs))
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        f["runs/test01/data"][4, 3] = 0.0
        f["runs/story00"].attrs["split"] = "Train"
    with pytest.raises(DataError, match="split 'Train'"):
        read_brain(tmp_path / "s.h5", on_disk=True)


def test_memory_plan_streams_only_when_memory_runs_short():
    from brainphase.crosscoder.memory import check_budget, crosscoder_peak_bytes, streams_responses

    shape = (27_000, 81_000, 4096, 1024, 2048)
    in_memory = crosscoder_peak_bytes(*shape)
    streamed = crosscoder_peak_bytes(*shape, budget_bytes=in_memory - 1)
    assert in_memory - streamed == 27_000 * 81_000 * 4  # the responses, and only they, leave memory
    assert not streams_responses(*shape, in_memory) and streams_responses(*shape, in_memory - 1)
    assert check_budget(*shape, streamed) == streamed
    with pytest.raises(ValueError, match="raise mem_mb of the crosscoder rule.*crosscoder.batch_size"):
        check_budget(*shape, streamed - 1)
