"""The phase analysis' trajectories from the workflow's tables: layers, replicates, duplicates."""

import logging

import numpy as np
import pandas as pd
import pytest

from brainphase.phases import (
    ALIGNMENT,
    DETACHMENT,
    REALIGNMENT,
    analyse_model,
    build_trajectories,
    duplicate_steps,
    resolve_layer,
)
from brainphase.phases.trajectories import replicate_matrix

N = 28
TOKENS = np.r_[0, np.logspace(9, np.log10(4e12), N)].round()
STEPS = [f"step{i}" for i in range(N + 1)]
SD = 0.004  # noise of every series' point, and the sd of its replicates
N_BOOT = 40
CFG = {"encoding_layer": "best", "probing_layer": "best", "max_breakpoints": 3, "min_size": 2, "n_boot": N_BOOT,
       "continuous": True, "sign_level": 0.99, "keep_duplicates": False}


def shape(x, v0, s1, s2, s3):
    """Continuous piecewise-linear in log10 tokens: breaks at 1e10 and 1e11."""
    return v0 + s1 * np.minimum(x - 9, 1) + s2 * np.clip(x - 10, 0, 1) + s3 * np.maximum(x - 11, 0)


def make_tables(seed=0, dup_of=None):
    """Tables as the workflow writes them for model 'm'; ``dup_of``: {step: earlier step} copies."""
    rng = np.random.default_rng(seed)
    x = np.log10(np.maximum(TOKENS, 1e9))
    enc = shape(x, 0.05, 0.04, -0.025, 0.022) + SD * rng.standard_normal(x.size)
    acc = shape(x, 0.25, 0.10, 0.0, 0.156) + SD * rng.standard_normal(x.size)
    probe = shape(x, 0.01, 0.01, 0.0, 0.019) + SD * rng.standard_normal(x.size)
    dup_of = dup_of or {}
    idx = {s: i for i, s in enumerate(STEPS)}
    for step, orig in dup_of.items():  # identical weights, identical results
        for a in (enc, acc, probe):
            a[idx[step]] = a[idx[orig]]
    vox, eboot, items, neur, pboot = [], [], [], [], []
    n_vox, n_items, n_neur = 30, 2000, 16
    offsets = rng.standard_normal(n_vox) * 0.02
    offsets -= offsets.mean()
    noff = rng.standard_normal(n_neur) * 0.01
    noff -= noff.mean()
    # Items: a fixed difficulty order, so accuracy p means the easiest p * n items are right.
    for i, (step, tok) in enumerate(zip(STEPS, TOKENS)):
        key = {"model": "m", "step": step, "tokens": tok}
        for sub in ("s1", "s2"):
            for layer, drop in ((0, 0.03), (1, 0.0), (2, 0.02)):
                vox.append(pd.DataFrame({**key, "dataset": "d", "subject": sub, "site": "resid", "layer": layer,
                                         "voxel": np.arange(n_vox), "r": enc[i] - drop + offsets}))
                e = np.random.default_rng([seed, i, layer, int(sub[1])]).standard_normal(N_BOOT)
                eboot.append(pd.DataFrame({**key, "dataset": "d", "subject": sub, "site": "resid", "layer": layer,
                                           "replicate": np.arange(N_BOOT),
                                           "value": enc[i] - drop + SD * np.sqrt(2) * e}))
        correct = np.arange(n_items) < round(acc[i] * n_items)
        items.append(pd.DataFrame({**key, "task": "t", "doc_id": np.arange(n_items), "correct": correct}))
        for layer, drop in ((0, 0.01), (1, 0.0)):
            neur.append(pd.DataFrame({**key, "task": "t", "site": "resid", "layer": layer, "neuron": np.arange(n_neur),
                                      "r": probe[i] - drop + noff}))
            e = np.random.default_rng([seed, i, layer, 9]).standard_normal(N_BOOT)
            pboot.append(pd.DataFrame({**key, "task": "t", "site": "resid", "layer": layer,
                                       "replicate": np.arange(N_BOOT), "value": probe[i] - drop + SD * e}))
    dups = pd.DataFrame({"model": "m", "step": STEPS, "duplicate_of": [dup_of.get(s) for s in STEPS]})
    cat = lambda fs: pd.concat(fs, ignore_index=True)  # noqa: E731
    return {"voxels": cat(vox), "items": cat(items), "neurons": cat(neur), "encoding_boot": cat(eboot),
            "probing_boot": cat(pboot), "duplicates": dups}


@pytest.fixture(scope="module")
def tables():
    return make_tables()


def test_resolve_layer_names_the_key_and_range(tables):
    v = tables["voxels"]
    assert resolve_layer("best", v, "r", "phases.encoding_layer") == 1
    assert resolve_layer(2, v, "r", "phases.encoding_layer") == 2
    with pytest.raises(ValueError, match=r"phases\.encoding_layer = 7.*0\.\.2"):
        resolve_layer(7, v, "r", "phases.encoding_layer")
    with pytest.raises(ValueError, match="phases.probing_layer"):
        resolve_layer("last", tables["neurons"], "r", "phases.probing_layer")
    with pytest.raises(ValueError, match=r"phases\.probing_layer = 3.*0\.\.1"):
        analyse_model("m", tables["voxels"], tables["items"], tables["neurons"], tables["encoding_boot"],
                      tables["probing_boot"], {**CFG, "probing_layer": 3}, seed=0)


def test_replicate_matrix_averages_groups_and_keeps_shared_replicates():
    boot = pd.DataFrame({"tokens": [1, 1, 1, 1, 2, 2, 2], "subject": ["a", "b", "a", "b", "a", "b", "a"],
                         "replicate": [0, 0, 1, 1, 0, 0, 1], "value": [1.0, 3.0, 5.0, 7.0, 0.0, 2.0, 4.0]})
    tokens, reps = replicate_matrix(boot, ["subject"])
    np.testing.assert_array_equal(tokens, [1, 2])
    # replicate 1 at tokens 2 has subject a only: its mean is 4; both replicates are kept
    np.testing.assert_allclose(reps, [[2.0, 1.0], [6.0, 4.0]])
    boot = boot[~((boot["tokens"] == 2) & (boot["replicate"] == 1))]
    _, reps = replicate_matrix(boot, ["subject"])
    assert reps.shape == (1, 2)  # a replicate missing at a checkpoint is dropped


def test_build_trajectories_uses_the_bootstrap_tables(tables):
    t = tables
    traj, tokens, reps, layers = build_trajectories(t["voxels"], t["items"], t["neurons"], t["encoding_boot"],
                                                    t["probing_boot"], n_boot=N_BOOT, seed=0)
    assert layers == {"encoding": 1, "probing": 1}
    assert reps.shape == (N_BOOT, N + 1, 3)
    np.testing.assert_array_equal(tokens, np.sort(TOKENS))
    enc = traj[traj["series"] == "encoding"]
    # SE: the std over replicates of the mean over the two subjects (sd SD * sqrt(2) each -> SD)
    eb = t["encoding_boot"][t["encoding_boot"]["layer"] == 1]
    want = eb.groupby(["tokens", "replicate"])["value"].mean().groupby("tokens").std()
    np.testing.assert_allclose(enc["se"].to_numpy(), want.loc[tokens].to_numpy())
    assert 0.5 * SD < enc["se"].median() < 1.5 * SD
    point = t["voxels"][t["voxels"]["layer"] == 1].groupby("tokens")["r"].mean()
    np.testing.assert_allclose(enc["value"].to_numpy(), point.loc[tokens].to_numpy())
    assert ((traj["low"] <= traj["value"]) & (traj["value"] <= traj["high"])).all()
    # Benchmark replicates resample items with one draw for all checkpoints: paired.
    bench = reps[:, :, 1]
    hi_ckpt = np.argmax(traj[traj["series"] == "benchmark"]["value"].to_numpy())
    assert np.corrcoef(bench[:, hi_ckpt], bench[:, hi_ckpt - 1])[0, 1] > 0.5
    # An encoding layer chosen by index reads that layer's rows.
    traj0, *_ = build_trajectories(t["voxels"], t["items"], t["neurons"], t["encoding_boot"], t["probing_boot"],
                                   encoding_layer=0, n_boot=N_BOOT, seed=0)
    e0 = traj0[traj0["series"] == "encoding"]["value"].to_numpy()
    np.testing.assert_allclose(e0, enc["value"].to_numpy() - 0.03)


def test_analyse_model_finds_the_three_phases(tables):
    t = tables
    phases, traj = analyse_model("m", t["voxels"], t["items"], t["neurons"], t["encoding_boot"], t["probing_boot"],
                                 CFG, seed=0, duplicates=t["duplicates"])
    assert list(phases["label"]) == [ALIGNMENT, DETACHMENT, REALIGNMENT]
    assert (phases["model"] == "m").all() and (phases["encoding_layer"] == 1).all()
    for s in ("encoding", "benchmark", "probing"):
        assert {f"slope_{s}_low", f"slope_{s}_high", f"sign_{s}", f"dispersion_{s}"} <= set(phases)
    b = phases["break_tokens"].to_numpy()[:2]
    assert np.all(np.abs(np.log10(b) - [10, 11]) < 0.2)
    assert set(traj["series"]) == {"encoding", "benchmark", "probing"} and (traj["model"] == "m").all()


def test_duplicates_dropped_unless_kept(caplog):
    t = make_tables(seed=1, dup_of={"step20": "step19", "step21": "step19"})
    assert duplicate_steps(t["duplicates"], "m") == {"step20": "step19", "step21": "step19"}
    assert duplicate_steps(t["duplicates"], "other") == {} and duplicate_steps(None, "m") == {}
    args = ("m", t["voxels"], t["items"], t["neurons"], t["encoding_boot"], t["probing_boot"])
    with caplog.at_level(logging.INFO, logger="brainphase.phases"):
        _, traj = analyse_model(*args, CFG, seed=0, duplicates=t["duplicates"])
    dropped = set(TOKENS[[STEPS.index("step20"), STEPS.index("step21")]])
    assert not dropped & set(traj["tokens"])
    assert traj["tokens"].nunique() == N + 1 - 2
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "step20" in msgs and "step19" in msgs and "step21" in msgs
    _, kept = analyse_model(*args, {**CFG, "keep_duplicates": True}, seed=0, duplicates=t["duplicates"])
    assert dropped <= set(kept["tokens"]) and kept["tokens"].nunique() == N + 1
    _, none = analyse_model(*args, CFG, seed=0, duplicates=None)
    assert none["tokens"].nunique() == N + 1


def test_too_few_checkpoints_names_the_key(tables):
    t = {k: v[v["tokens"] <= TOKENS[3]] for k, v in tables.items() if k != "duplicates"}
    with pytest.raises(ValueError, match="phases.min_size"):
        analyse_model("m", t["voxels"], t["items"], t["neurons"], t["encoding_boot"], t["probing_boot"], CFG, seed=0)
