"""Simulated MEG: the planted word-locked responses sit at their latencies, in the order
form < meaning < context, and vanish when the words' onsets are scrambled."""

import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from brainphase.contracts.brain import BrainRun, check_alignment, read_brain, write_brain
from brainphase.toyworld import MEG_GROUPS, MEGParams, build_world, simulate_meg, stimulus_stories

REPO = Path(__file__).resolve().parents[1]
LAGS = np.arange(-10, 81)  # samples at 100 Hz: -0.1 ... 0.8 s


@pytest.fixture(scope="module")
def world():
    return build_world(1)


@pytest.fixture(scope="module")
def categories(world):
    lex = world.lexicon.table()
    return lex.drop_duplicates("concept_id").sort_values("concept_id")["category"].tolist()


@pytest.fixture(scope="module")
def stim(world):
    return stimulus_stories(world, 4, 1, 250, "en", seed=3)


@pytest.fixture(scope="module")
def clean(stim, categories):
    return simulate_meg(stim, categories, MEGParams(snr=np.inf), seed=7)


@pytest.fixture(scope="module")
def high(stim, categories):
    """High SNR (signal power = noise power): noiseless sensors are rank-deficient, so least squares on
    them fits float32 rounding."""
    return simulate_meg(stim, categories, MEGParams(snr=1.0), seed=7)


@pytest.fixture(scope="module")
def noisy(stim, categories):
    return simulate_meg(stim, categories, MEGParams(), seed=7)


def epochs(sim, stim, onsets=None):
    """(n_words, n_lags, n_sensors) around each spoken word's onset, and the word rows used."""
    onsets = stim["onset"].to_numpy() if onsets is None else onsets
    spoken = (stim["category"] != "punct").to_numpy()
    out, rows = [], []
    for run, entry in sim.runs.items():
        r = np.flatnonzero((stim["run"] == run).to_numpy() & spoken)
        idx = np.round(onsets[r] * 100).astype(int)[:, None] + LAGS[None]
        out.append(entry["data"][idx])
        rows.append(r)
    return np.concatenate(out), np.concatenate(rows)


def lag_r2(sim, stim, group, onsets=None):
    """Held-out R² of the group's planted features from the sensors at each lag (fit on even words,
    score on odd ones), over the words that carry the group."""
    B, rows = epochs(sim, stim, onsets)
    Y = sim.features[group][rows]
    carry = np.any(Y != 0, axis=1)
    B, Y = B[carry], Y[carry]
    fit = np.arange(len(Y)) % 2 == 0
    r2 = []
    for j in range(len(LAGS)):
        X = np.c_[B[:, j], np.ones(len(B))]
        W, *_ = np.linalg.lstsq(X[fit], Y[fit], rcond=None)
        resid = Y[~fit] - X[~fit] @ W
        r2.append(1 - (resid**2).sum() / ((Y[~fit] - Y[~fit].mean(0)) ** 2).sum())
    return np.array(r2)


def test_shapes_dtype_and_run_lengths(clean, stim):
    p = MEGParams()
    assert set(clean.runs) == set(stim["run"])
    assert clean.coords.shape == (32, 2) and (np.hypot(*clean.coords.T) <= 1).all()
    for run, entry in clean.runs.items():
        words = stim[stim["run"] == run]
        data = entry["data"]
        assert data.dtype == np.float32 and data.shape[1] == 32
        assert entry["split"] == words["split"].iloc[0]
        last = words["onset"].max() + max(p.latencies.values()) + 4 * p.width
        assert data.shape[0] / p.sfreq >= words["offset"].max() + p.tail >= last
        assert np.isfinite(data).all()
    assert {e["split"] for e in clean.runs.values()} == {"train", "test"}
    assert list(clean.truth["group"]) == list(MEG_GROUPS)
    assert clean.truth.set_index("group")["latency_s"].to_dict() == p.latencies
    assert clean.truth.set_index("group")["dims"].to_dict() == {"form": 2, "meaning": 8, "context": 8}
    for g, f in clean.features.items():
        assert f.shape == (len(stim), p.group_dims()[g])
        assert clean.patterns[g].shape == (p.group_dims()[g], 32)


def test_clean_signal_is_the_documented_sum(clean, stim):
    """Sample i is at i / sfreq on the onset clock: the noiseless data is exactly the sum over words of
    each group's bump at onset + latency times the word's features through the group's pattern."""
    p = MEGParams()
    run = "story02"
    r = np.flatnonzero((stim["run"] == run).to_numpy())
    data = clean.runs[run]["data"]
    t = np.arange(len(data)) / p.sfreq
    expected = np.zeros(data.shape)
    for g in MEG_GROUPS:
        d = (t[:, None] - stim["onset"].to_numpy()[r][None] - p.latencies[g]) / p.width
        bump = np.where(np.abs(d) < 3.9, np.exp(-0.5 * d**2), 0.0)
        expected += bump @ clean.features[g][r] @ clean.patterns[g]
    np.testing.assert_allclose(data, expected, atol=1e-3 * np.abs(expected).max())


def test_deterministic_per_seed(stim, categories, noisy):
    again = simulate_meg(stim, categories, MEGParams(), seed=7)
    other = simulate_meg(stim, categories, MEGParams(), seed=8)
    for run in noisy.runs:
        np.testing.assert_array_equal(noisy.runs[run]["data"], again.runs[run]["data"])
        assert not np.allclose(noisy.runs[run]["data"], other.runs[run]["data"])
    pd.testing.assert_frame_equal(noisy.truth, again.truth)


def test_group_amplitudes_and_snr(clean, noisy, stim):
    """Each group's RMS is its amplitude; the noise sd follows the configured SNR."""
    p = MEGParams()
    data = np.concatenate([e["data"] for e in clean.runs.values()])
    assert np.sqrt((data.astype(float) ** 2).mean()) == pytest.approx(np.sqrt(3.0), rel=0.15)
    assert noisy.noise_sd == pytest.approx(np.sqrt(3.0 / p.snr))
    resid = np.concatenate([noisy.runs[r]["data"] - clean.runs[r]["data"] for r in clean.runs])
    assert resid.std() == pytest.approx(noisy.noise_sd, rel=0.1)


def test_planted_features_follow_the_words(clean, stim):
    f = clean.features
    punct = (stim["category"] == "punct").to_numpy()
    function = (stim["concept"] < 0).to_numpy() & ~punct
    assert (f["form"][punct] == 0).all() and (f["form"][~punct] != 0).any(axis=1).all()
    for g in ("meaning", "context"):
        assert (f[g][punct | function] == 0).all()
    # Same written form, same form vector; same concept (synonyms included), same meaning.
    content = (stim["concept"] >= 0).to_numpy() & ~punct
    for key, g, carry in (("text", "form", ~punct), ("concept", "meaning", content)):
        for rows in stim[carry].groupby(key).groups.values():
            i = stim.index.get_indexer(rows)
            np.testing.assert_allclose(f[g][i], f[g][i[:1]].repeat(len(i), 0))
    # Centred over the words that carry them: responses say which word, not that there is one.
    for g, on in (("form", ~punct), ("meaning", content), ("context", content)):
        assert np.abs(f[g][on].mean(0)).max() < 1e-9
    # Context is an interaction: the same concept in another narrative state gives another vector,
    # and neither meaning nor the state alone predicts it linearly.
    state = stim["place"].astype(str) + "/" + stim["mood"].astype(str)
    both = stim[content].assign(state=state[content]).groupby("concept")["state"].nunique()
    c = both.idxmax()
    rows = np.flatnonzero((stim["concept"] == c).to_numpy())
    assert len(np.unique(f["context"][rows].round(9), axis=0)) > 1
    X = np.c_[f["meaning"], pd.get_dummies(state).to_numpy(float)][content]
    Y = f["context"][content]
    W, *_ = np.linalg.lstsq(X, Y, rcond=None)
    assert 1 - ((Y - X @ W) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum() < 0.3


@pytest.mark.parametrize("name", ["high", "noisy"])
def test_latencies_recovered_in_order(name, request, stim):
    """The best-fitting lag of each group's planted features is its planted latency (+-10 ms)."""
    sim = request.getfixturevalue(name)
    peaks = {}
    for g in MEG_GROUPS:
        r2 = lag_r2(sim, stim, g)
        peaks[g] = LAGS[r2.argmax()] / 100
        planted = MEGParams().latencies[g]
        assert abs(peaks[g] - planted) <= 0.0101, (g, peaks[g], planted)
        assert r2.max() > (0.8 if name == "high" else 0.2)
        # Before the planted bump the fit is clearly worse (the bump's Gaussian tail still reaches lag 0).
        assert r2[LAGS == 0][0] < 0.5 * r2.max()
    assert peaks["form"] < peaks["meaning"] < peaks["context"]


def test_scrambled_onsets_fit_at_chance(high, stim):
    """Epochs at random times carry no word-locked response: the held-out R² at the planted latency
    falls to chance (at or below 0: 33 coefficients fitted on a few hundred words overfit)."""
    rng = np.random.default_rng(0)
    onsets = stim["onset"].to_numpy().copy()
    for run in high.runs:
        r = (stim["run"] == run).to_numpy()
        lo, hi = onsets[r].min(), stim.loc[r, "offset"].max()
        onsets[r] = rng.uniform(lo, hi, r.sum())
    for g in MEG_GROUPS:
        at = LAGS == round(MEGParams().latencies[g] * 100)
        locked, scrambled = lag_r2(high, stim, g)[at][0], lag_r2(high, stim, g, onsets)[at][0]
        assert locked > 0.8 and scrambled < 0.02, (g, locked, scrambled)


def test_brain_contract_round_trip(clean, stim, tmp_path):
    path = tmp_path / "sub-01.h5"
    write_brain(path, {r: BrainRun(v["data"], v["split"]) for r, v in clean.runs.items()}, None, clean.coords,
                attrs={"subject": "sub-01", "kind": "meg"}, sfreq=100.0)
    brain = read_brain(path)
    assert brain.tr is None and brain.sfreq == 100.0 and brain.time_resolved
    assert brain.attrs["kind"] == "meg" and brain.n_channels == 32
    for run, v in clean.runs.items():
        np.testing.assert_array_equal(brain.runs[run].data, v["data"])
        assert brain.runs[run].split == v["split"]
    check_alignment(stim, brain, "stim.parquet", str(path))


def test_params_from_config():
    p = MEGParams.from_config({"seed": 3, "stories_train": 16, "sfreq": 200.0, "snr": 0.1,
                               "latencies": {"context": 0.6}, "amplitude": {"form": 2.0}})
    assert p.sfreq == 200.0 and p.snr == 0.1
    assert p.latencies == {"form": 0.10, "meaning": 0.30, "context": 0.6}
    assert p.amplitude == {"form": 2.0, "meaning": 1.0, "context": 1.0}
    with pytest.raises(ValueError, match="tr"):
        MEGParams.from_config({"seed": 3, "tr": 2.0})
    with pytest.raises(ValueError, match="unknown groups"):
        MEGParams(latencies={"form": 0.1, "meaning": 0.3, "context": 0.5, "syntax": 0.4})
    with pytest.raises(ValueError, match="tail"):
        MEGParams(tail=0.3)


def test_toy_subject_script_simulates_meg(world, stim, tmp_path):
    """The workflow script, for a MEG dataset, writes a brain file on the sfreq clock and the truth table."""
    stim_path, lex_path = tmp_path / "stim.parquet", tmp_path / "lexicon.parquet"
    stim[stim["run"].isin(["story01", "test01"])].to_parquet(stim_path)
    world.lexicon.table().to_parquet(lex_path)
    out = SimpleNamespace(brain=str(tmp_path / "meg/sub-02.h5"), truth=str(tmp_path / "meg/sub-02.truth.parquet"))
    snakemake = SimpleNamespace(
        input=SimpleNamespace(stimuli=str(stim_path), lexicon=str(lex_path)), output=out,
        params=SimpleNamespace(simulate={"seed": 3, "snr": 0.1, "n_sensors": 24}, subjects=["sub-01", "sub-02"],
                               kind="meg"),
        wildcards=SimpleNamespace(subject="sub-02"), log=[str(tmp_path / "log.txt")])
    driver = ("import pickle, runpy, sys; "
              "runpy.run_path(sys.argv[1], init_globals={'snakemake': pickle.load(open(sys.argv[2], 'rb'))})")
    (tmp_path / "smk.pkl").write_bytes(pickle.dumps(snakemake))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", driver, str(REPO / "workflow/scripts/toy_subject.py"),
                           str(tmp_path / "smk.pkl")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    brain = read_brain(out.brain)
    assert brain.sfreq == 100.0 and brain.attrs["subject"] == "sub-02" and brain.attrs["kind"] == "meg"
    assert brain.n_channels == 24 and set(brain.runs) == {"story01", "test01"}
    truth = pd.read_parquet(out.truth)
    assert list(truth["group"]) == list(MEG_GROUPS) and (np.diff(truth["latency_s"]) > 0).all()
