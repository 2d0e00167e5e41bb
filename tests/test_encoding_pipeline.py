"""From word activations and BOLD to tables: constant voxels are excluded and reported,
planted voxels are found, and the tables carry no NaN."""

import numpy as np
import pandas as pd
import pytest

from brainphase.encoding.pipeline import encode_layers
from brainphase.encoding.settings import EncodingSettings
from brainphase.encoding.summary import group_trajectories, scored_voxels, summarise_voxels
from brainphase.contracts.brain import BrainData, BrainRun
from brainphase.toyworld.fmri import events_to_bold


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    tr, n_vox, d = 2.0, 12, 6
    rows, runs = [], {}
    w_true = rng.standard_normal((d, n_vox))
    w_true[:, 6:] = 0  # voxels 6.. are not tuned
    acts = []
    for i, (run, split) in enumerate([(f"r{k}", "train") for k in range(5)] + [("t0", "test")]):
        n_words = 260
        on = 10 + np.cumsum(rng.uniform(0.3, 0.5, n_words))
        feats = rng.standard_normal((n_words, d))
        n_trs = int(np.ceil((on[-1] + 10) / tr))
        sig = events_to_bold(on, feats, n_trs, tr) @ w_true
        sig /= sig[:, :6].std() + 1e-12
        noise = rng.standard_normal((2 if split == "test" else 1, n_trs, n_vox))
        reps = (sig + noise).astype(np.float32)
        reps[:, :, 11] = 3.0  # a dead voxel: constant everywhere
        runs[run] = BrainRun(reps.mean(0), split, reps if split == "test" else None)
        rows.append(pd.DataFrame({"unit_id": [f"{run}_{j}" for j in range(n_words)], "run": run,
                                  "text": "w", "lang": "en", "onset": on, "offset": on + 0.25}))
        acts.append(feats)
    stimuli = pd.concat(rows, ignore_index=True)
    A = np.concatenate(acts)
    layers = {"resid.0": A, "resid.1": rng.standard_normal(A.shape)}  # layer 1: unrelated features
    brain = BrainData(runs, tr, np.stack([np.zeros(n_vox), np.arange(n_vox)], 1))
    settings = EncodingSettings(delays=[1, 2, 3, 4], trim=3, alphas=np.logspace(-1, 3, 5), cv_splits=5, n_perm=200,
                                block_size=10, fdr_q=0.05, seed=0, backend="numpy")
    v = encode_layers(layers, stimuli, brain, settings)
    for k, val in dict(model="m", step="step0", tokens=0, dataset="d", subject="s").items():
        v[k] = val
    return v


def test_constant_voxel_excluded_and_reported(planted):
    dead = planted[planted["voxel"] == 11]
    assert dead["excluded"].all() and not dead["significant"].any()
    summary = summarise_voxels(planted)
    n_ex = summary[(summary["metric"] == "n_excluded")]["value"]
    assert (n_ex == 1).all()
    assert summary["value"].notna().all()
    kept = scored_voxels(planted)
    assert 11 not in set(kept["voxel"]) and kept.notna().all().all()


def test_planted_voxels_recovered_only_by_the_right_layer(planted):
    l0 = planted[(planted["layer"] == 0) & ~planted["excluded"]].set_index("voxel")
    l1 = planted[(planted["layer"] == 1) & ~planted["excluded"]].set_index("voxel")
    assert l0.loc[0:5, "r"].min() > 0.3 and l0.loc[0:5, "significant"].all()
    assert abs(l0.loc[6:10, "r"].mean()) < 0.15 and l0.loc[6:10, "significant"].sum() <= 1
    assert abs(l1["r"].mean()) < 0.15 and l1["significant"].sum() <= 1
    assert (l0["ceiling_r"].loc[0:5] > l0["ceiling_r"].loc[6:10].max()).all()


def test_group_trajectories_pick_the_best_layer(planted):
    truth = pd.DataFrame({"dataset": "d", "subject": "s", "voxel": np.arange(12),
                          "group": ["tuned"] * 6 + ["null"] * 6})
    g = group_trajectories(planted, truth)
    best = g[(g["metric"] == "best_layer_r") & (g["group"] == "tuned")]
    assert len(best) == 1 and best["layer"].iloc[0] == 0
    per_layer = g[(g["metric"] == "mean_r") & (g["group"] == "tuned")].set_index("layer")["value"]
    assert best["value"].iloc[0] == pytest.approx(per_layer.max())


def test_annotation_units_are_averaged_over_the_trs_they_overlap():
    """One text per 4 s on a 2-s grid: each TR's feature is its own annotation's vector, not a Lanczos blur."""
    from brainphase.encoding.runs import features_per_run
    from brainphase.contracts.brain import BrainData, BrainRun

    acts = np.arange(10, dtype=float)[:, None] * np.array([[1.0, -1.0]])
    stimuli = pd.DataFrame({"run": "r", "onset": np.arange(10) * 4.0, "offset": np.arange(10) * 4.0 + 4.0})
    brain = BrainData({"r": BrainRun(np.zeros((20, 1), np.float32), "train")}, 2.0, np.zeros((1, 2)))
    (overlap,) = features_per_run(acts, stimuli, brain, ["r"], resample="overlap")
    np.testing.assert_allclose(overlap, np.repeat(acts, 2, axis=0))
    (lanczos,) = features_per_run(acts, stimuli, brain, ["r"])
    assert not np.allclose(lanczos, overlap)
    with pytest.raises(ValueError, match="unknown resampling"):
        features_per_run(acts, stimuli, brain, ["r"], resample="nearest")
