"""Word-locked epochs through MNE: the indices, baseline and decimation checked by hand on ramps."""

import numpy as np
import pandas as pd
import pytest

from brainphase.contracts.brain import BrainData, BrainRun
from brainphase.contracts.stimuli import DataError
from brainphase.temporal.epochs import read_epochs, word_epochs, write_epochs

SFREQ = 100.0
N = {"a": 200, "b": 150}
OFFSET = {"a": 0, "b": 100_000}


def ramp(run: str) -> np.ndarray:
    """data[i, c] = i + 1000 c (+ 100000 in run b): every value names its sample, channel and run."""
    i = np.arange(N[run])[:, None]
    return (i + 1000 * np.arange(3)[None] + OFFSET[run]).astype(np.float32)


@pytest.fixture
def brain():
    runs = {r: BrainRun(ramp(r), "train") for r in N}
    return BrainData(runs, None, np.zeros((3, 2)), {}, SFREQ)


@pytest.fixture
def stimuli():
    # onset -> sample round(onset * 100); window -0.1..0.3 s = samples s-10 .. s+30
    rows = [
        ("b", 0.301, "word"),    # 0: sample 30 (round 30.1)
        ("a", 0.05, "word"),     # 1: sample 5, window starts at -5: dropped
        ("a", 0.10, "word"),     # 2: sample 10, window starts at sample 0: kept
        ("a", 0.506, "word"),    # 3: sample 51 (round 50.6, not floor)
        ("a", 1.00, "punct"),    # 4: punctuation: never epoched
        ("a", np.nan, "word"),   # 5: no onset: never epoched
        ("a", 1.234, "func"),    # 6: sample 123 (round 123.4); function words stay
        ("a", 1.69, "word"),     # 7: sample 169, window ends at 199 = last sample: kept
        ("a", 1.75, "word"),     # 8: sample 175, window ends at 205 > 199: dropped
        ("b", 0.30, "word"),     # 9: sample 30 again: same MNE event as row 0
        ("b", 1.20, "word"),     # 10: sample 120, window ends at 150 > 149: dropped
    ]
    df = pd.DataFrame(rows, columns=["run", "onset", "category"])
    df["text"] = [f"w{i}" for i in range(len(df))]
    df["offset"] = df["onset"] + 0.1
    return df


KEPT = np.array([0, 2, 3, 6, 7, 9])
SAMPLE = {0: 30, 2: 10, 3: 51, 6: 123, 7: 169, 9: 30}


def expected(rows, ks, run_of):
    """(words, channels, lags) values of the ramp at sample onset + k, by hand."""
    return np.stack([
        np.stack([SAMPLE[r] + ks + 1000 * c + OFFSET[run] for c in range(3)]) for r, run in zip(rows, run_of)])


def test_epochs_pick_the_onset_samples(brain, stimuli):
    ep = word_epochs(brain, stimuli, tmin=-0.1, tmax=0.3, baseline=None)
    ks = np.arange(-10, 31)
    np.testing.assert_array_equal(ep.rows, KEPT)
    assert list(ep.run) == ["b", "a", "a", "a", "a", "b"]
    assert ep.data.dtype == np.float32 and ep.data.shape == (6, 3, 41)
    np.testing.assert_allclose(ep.times, ks / SFREQ, atol=1e-12)
    np.testing.assert_array_equal(ep.data, expected(KEPT, ks, ep.run))
    assert ep.sfreq == SFREQ and len(ep) == 6


def test_epochs_decimate_from_the_onset_sample(brain, stimuli):
    with pytest.warns(RuntimeWarning, match="aliasing"):  # MNE's warning, passed on once, not once per run
        ep = word_epochs(brain, stimuli, tmin=-0.1, tmax=0.3, baseline=None, decim=2)
    ks = np.arange(-10, 31, 2)
    np.testing.assert_allclose(ep.times, ks / SFREQ, atol=1e-12)
    np.testing.assert_array_equal(ep.data, expected(KEPT, ks, ep.run))
    assert ep.sfreq == SFREQ / 2
    brain.attrs["lowpass"] = 15.0  # band-limited data: MNE does not warn (pytest -W error would catch it)
    # an odd number of pre-onset samples: decimation still keeps t = 0, so it starts at -14, not -15
    sub = stimuli[stimuli["run"] == "a"]
    ep = word_epochs(brain, sub, tmin=-0.15, tmax=0.3, baseline=None, decim=2)
    ks = np.arange(-14, 31, 2)
    np.testing.assert_allclose(ep.times, ks / SFREQ, atol=1e-12)
    np.testing.assert_array_equal(ep.rows, [2, 5, 6])  # positions in `sub`; row 2 (sample 10) lacks lag -15
    np.testing.assert_array_equal(sub.index[ep.rows], [3, 6, 7])
    np.testing.assert_array_equal(ep.data, expected([3, 6, 7], ks, ["a"] * 3))


def test_epochs_baseline_is_the_prestimulus_mean(brain, stimuli):
    # (None, 0): mean over lags -10..0 (MNE includes t = 0) of s + k = s - 5, so each value is k + 5
    ks = np.arange(-10, 31)
    ep = word_epochs(brain, stimuli, tmin=-0.1, tmax=0.3, baseline=(None, 0.0))
    np.testing.assert_allclose(ep.data, np.broadcast_to(ks + 5.0, ep.data.shape), atol=1e-3)
    # (-0.1, -0.05): mean over lags -10..-5 is s - 7.5
    ep = word_epochs(brain, stimuli, tmin=-0.1, tmax=0.3, baseline=(-0.1, -0.05))
    np.testing.assert_allclose(ep.data, np.broadcast_to(ks + 7.5, ep.data.shape), atol=1e-3)
    # the baseline is taken at the full rate, before decimation
    brain.attrs["lowpass"] = 15.0
    ep = word_epochs(brain, stimuli, tmin=-0.1, tmax=0.3, baseline=(None, 0.0), decim=2)
    np.testing.assert_allclose(ep.data, np.broadcast_to(np.arange(-10, 31, 2) + 5.0, ep.data.shape), atol=1e-3)


def test_epochs_errors(brain, stimuli):
    fmri = BrainData({"a": BrainRun(ramp("a"), "train")}, 2.0, np.zeros((3, 2)))
    with pytest.raises(DataError, match="TR of 2.0"):
        word_epochs(fmri, stimuli, -0.1, 0.3)
    with pytest.raises(ValueError, match="tmin < tmax"):
        word_epochs(brain, stimuli, 0.3, 0.3)
    with pytest.raises(ValueError, match="decim"):
        word_epochs(brain, stimuli, -0.1, 0.3, decim=0)
    extra = pd.concat([stimuli, pd.DataFrame({"run": ["c"], "onset": [0.5], "category": ["word"]})])
    with pytest.raises(DataError, match=r"my\.h5: no brain data for runs \['c'\]"):
        word_epochs(brain, extra, -0.1, 0.3, brain_path="my.h5")
    # punctuation in a run without data is never epoched, so it needs no data
    punct = pd.concat([stimuli, pd.DataFrame({"run": ["c"], "onset": [0.5], "category": ["punct"]})])
    assert len(word_epochs(brain, punct, -0.1, 0.3)) == 6


def test_epochs_without_category_column_keep_every_timed_row(brain, stimuli):
    ep = word_epochs(brain, stimuli.drop(columns="category"), -0.1, 0.3)
    np.testing.assert_array_equal(ep.rows, [0, 2, 3, 4, 6, 7, 9])  # row 4 (sample 100) is back


def test_epochs_file_round_trip(brain, stimuli, tmp_path):
    ep = word_epochs(brain, stimuli, -0.1, 0.3)
    write_epochs(tmp_path / "e.h5", ep)
    back = read_epochs(tmp_path / "e.h5")
    np.testing.assert_array_equal(back.data, ep.data)
    np.testing.assert_array_equal(back.times, ep.times)
    np.testing.assert_array_equal(back.rows, ep.rows)
    assert list(back.run) == list(ep.run) and back.sfreq == ep.sfreq
    with pytest.raises(DataError, match="missing.h5: epochs file missing"):
        read_epochs(tmp_path / "missing.h5")
