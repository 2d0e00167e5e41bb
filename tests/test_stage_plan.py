"""The dry-run plan per stage: measured rates times counted work, peaks from the jobs' own formulas."""

import numpy as np
import pandas as pd
import pytest

from brainphase.contracts.brain import BrainRun, write_brain
from brainphase.encoding.memory import MIN_CHUNK, EncodingShape, fit_flops, peak_bytes, plan_encoding
from brainphase.planning import ModelSize
from brainphase.stage_plan import SubjectShape, encoding_estimate, format_stages, subject_shape, temporal_rows
from brainphase.temporal.memory import temporal_peak_bytes

ENC = {"trim": 0, "delays": [1, 2, 3, 4], "alphas": {"start": 1, "stop": 4, "num": 10}, "cv_splits": 5,
       "n_perm": 1000}


def test_subject_shape_from_the_brain_file_else_the_estimate(tmp_path):
    runs = {"a": BrainRun(np.zeros((30, 5)), "train"), "b": BrainRun(np.ones((20, 5)), "train"),
            "t": BrainRun(np.ones((12, 5)), "test")}
    path = tmp_path / "s.h5"
    write_brain(path, runs, 2.0, np.zeros((5, 3)))
    entry = {"name": "d", "plan_shape": {"train_samples": 9, "test_samples": 8, "channels": 7}}
    shape = subject_shape(path, entry)
    assert (shape.train_samples, shape.test_samples, shape.channels) == (50, 12, 5)
    guess = subject_shape(tmp_path / "absent.h5", entry)
    assert (guess.train_samples, guess.test_samples, guess.channels) == (9, 8, 7) and "estimate" in guess.source
    assert subject_shape(tmp_path / "absent.h5", {"name": "d"}) is None


def test_encoding_estimate_scales_the_measured_rate():
    size = ModelSize(400_000_000, 24, 1024, 2)
    shape = SubjectShape(12_000, 600, 20_000, "test")
    rate = {"flops_per_s": 5e10}
    est = encoding_estimate(size, 1, ENC, shape, int(32e9), rate)
    s = EncodingShape(n_train=12_000, n_test=600, n_features=4096, n_voxels=20_000, n_alphas=10, n_folds=5,
                      n_perm=1000, d_model=1024, brain_bytes=11 * 600 * 20_000 * 4)
    assert est["seconds"] == pytest.approx(25 * fit_flops(s) / 5e10)  # 24 blocks + the embeddings
    assert est["peak_bytes"] == plan_encoding(s, int(32e9)).peak_bytes <= 32e9
    small = encoding_estimate(size, 1, ENC, shape, int(1e9), rate)
    assert small["over_budget"] and "raise mem_mb" in small["note"]
    assert small["peak_bytes"] == peak_bytes(s, MIN_CHUNK, keep_bases=False) > 1e9  # the least it needs
    assert small["seconds"] == est["seconds"]  # the time it takes once given the memory it needs
    assert encoding_estimate(size, 1, ENC, shape, None, None)["seconds"] is None


def test_format_stages_marks_unknowns():
    text = format_stages([
        {"stage": "encoding m", "jobs": 10, "seconds": 7200.0, "peak_bytes": 2e9, "budget_bytes": 4e9, "note": ""},
        {"stage": "sae m", "jobs": 3, "seconds": None, "peak_bytes": None, "budget_bytes": None, "note": "why"},
    ], "cpu", "a machine")
    assert "10 jobs x   2.0 h =  20.0 h; peak 2.0 GB of 4.0 GB" in text
    assert "3 jobs x       ? =       ?; peak ?  [why]" in text
    over = format_stages([{"stage": "e", "jobs": 1, "seconds": 60.0, "peak_bytes": 8e9, "budget_bytes": 4e9,
                           "over_budget": True, "note": "raise mem_mb"}], "cpu", None)
    assert "peak 8.0 GB of 4.0 GB EXCEEDS THE BUDGET  [raise mem_mb]" in over
    assert "a machine" in text.splitlines()[0]


def test_temporal_rows_read_the_epochs_header_and_scale_the_benchmark(tmp_path, monkeypatch):
    import h5py

    from brainphase import planning

    path = tmp_path / "sub.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", shape=(4000, 208, 21), dtype="float32")  # header only, never read
    monkeypatch.setattr(planning, "model_size", lambda m: ModelSize(1e8, 11, 256, 2))
    config = {"analyses": ["temporal"], "models": [{"name": "m"}],
              "temporal": {"alphas": {"num": 7}, "cv_splits": 5, "pca": 32}}
    rec = {"seconds": 10.0, "seconds_float32": 4.0, "n_words": 4000, "n_channels": 208, "n_lags": 21,
           "n_layers": 12, "dim": 32, "n_alphas": 7, "n_splits": 5}
    [row] = temporal_rows(config, 3, [path, tmp_path / "absent.h5"], int(8e9), {"temporal": rec})
    assert row["peak_bytes"] == temporal_peak_bytes(4000, 208, 21, 12, 256, int(8e9), n_alphas=7, pca=32)
    assert row["seconds"] == pytest.approx(4.0)  # the benchmark's own shape: its float32 time
    config["temporal"]["pca"] = 16
    assert temporal_rows(config, 3, [path], None, {"temporal": rec})[0]["seconds"] == pytest.approx(2.0)
    [unknown] = temporal_rows(config, 3, [tmp_path / "absent.h5"], None, {"temporal": rec})
    assert "peak_bytes" not in unknown and "word_epochs" in unknown["note"]


def test_variance_rows_plan_the_jobs_chunk_and_scale_the_encoding_rate(tmp_path, monkeypatch):
    from brainphase import planning
    from brainphase.encoding.variance_memory import plan_variance, shape_from_config, variance_flops
    from brainphase.stage_plan import variance_rows

    monkeypatch.setattr(planning, "model_size", lambda m: ModelSize(4e8, 24, 1024, 2))
    var = {"layers": [2, 4, 6], "n_iter": 5, "n_perm": 200}
    config = {"models": [{"name": "m"}], "encoding": {**ENC, "block_size": 10}, "variance": var}
    dataset = {"name": "lebel", "plan_shape": {"train_samples": 27_000, "test_samples": 291, "channels": 81_000}}
    subjects = [(dataset, "UTS01")]
    where = lambda d, s: tmp_path / "absent.h5"  # noqa: E731
    [row] = variance_rows(config, {"m": 12}, subjects, where, int(24e9), {"encoding": {"flops_per_s": 5e10}})
    s = shape_from_config(27_000, 291, 81_000, 1024, 24, config["encoding"], var)
    plan = plan_variance(s, int(24e9))
    assert s.n_layers == 3 and s.n_lm == 4096 and plan.voxel_chunk < 81_000
    assert row["jobs"] == 12 and row["peak_bytes"] == plan.peak_bytes <= 24e9
    assert row["seconds"] == pytest.approx(3 * variance_flops(s, plan.voxel_chunk) / 5e10)
    [small] = variance_rows(config, {"m": 12}, subjects, where, int(8e9), {})
    assert "peak_bytes" not in small and "mem_mb of rule variance" in small["note"]
    [untimed] = variance_rows(config, {"m": 12}, subjects, where, None, {})
    assert untimed.get("seconds") is None and "benchmarks/encoding.py" in untimed["note"]


def test_activation_rows_per_set_from_the_built_set_else_the_estimate(tmp_path, monkeypatch):
    from brainphase import planning
    from brainphase.activations.extract import activations_peak_bytes
    from brainphase.stage_plan import activation_rows

    size = ModelSize(4e8, 24, 1024, 2)
    monkeypatch.setattr(planning, "model_size", lambda m: size)
    config = {"analyses": ["encoding", "probing"], "models": [{"name": "m", "source": "hf"}],
              "datasets": [{"name": "lebel", "kind": "fmri", "source": "lebel", "path": str(tmp_path / "absent")}],
              "probing": {"tasks": ["mmlu"], "site": "mlp"},
              "activations": {"sites": ["resid", "mlp"], "batch_size": 16, "context_window": None},
              "plan_stimuli": {"lebel": {"units": 1000, "tokens": 1500}, "probe_mmlu": {"units": 10, "tokens": 6000}}}
    rec = {"tokens_per_s": 1000.0, "params": 1e8}
    rows = {r["stage"]: r for r in activation_rows(config, {"m": 8}, tmp_path, None, {"activations": rec})}
    lebel, mmlu = rows["activations m lebel"], rows["activations m probe_mmlu"]
    assert lebel["jobs"] == mmlu["jobs"] == 4  # one per checkpoint and set
    assert lebel["seconds"] == pytest.approx(1500 / 1000 * 4)  # tokens / rate x (parameters / benchmark's)
    assert mmlu["seconds"] == pytest.approx(6000 / 1000 * 4) and "plan_stimuli.probe_mmlu" in mmlu["note"]
    # Rows stream to disk: the peak has no output term, whatever the units; weights load as float32 on CPU.
    assert lebel["peak_bytes"] == activations_peak_bytes(4e8, 4, 16, 2048, 1024, 2 * 25, 1000, outputs_in_memory=False)
    assert lebel["peak_bytes"] == activations_peak_bytes(4e8, 4, 16, 2048, 1024, 2 * 25, 10**9, outputs_in_memory=False)
    # Once the set is built, its own rows and text count, not the estimate.
    (tmp_path / "stimuli").mkdir()
    pd.DataFrame({"unit_id": ["a", "b"], "text": ["x" * 400, "y" * 800]}).to_parquet(tmp_path / "stimuli/probe_mmlu.parquet")
    rows = {r["stage"]: r for r in activation_rows(config, {"m": 8}, tmp_path, None, {"activations": rec})}
    assert rows["activations m probe_mmlu"]["seconds"] == pytest.approx(300 / 1000 * 4)  # 1,200 characters / 4
    del config["plan_stimuli"]
    rows = {r["stage"]: r for r in activation_rows(config, {"m": 8}, tmp_path, None, {"activations": rec})}
    assert rows["activations m lebel"].get("seconds") is None and "plan_stimuli.lebel" in rows["activations m lebel"]["note"]


def test_crosscoder_rows_time_two_fits_from_the_benchmark_rate(tmp_path, monkeypatch):
    from brainphase import planning
    from brainphase.crosscoder.memory import crosscoder_peak_bytes
    from brainphase.stage_plan_sparse import crosscoder_rows

    monkeypatch.setattr(planning, "model_size", lambda m: ModelSize(4e8, 24, 1024, 2))
    config = {"models": [{"name": "m"}], "crosscoder": {"d_latent": 256, "batch_size": 512, "epochs": 50}}
    dataset = {"name": "d", "plan_shape": {"train_samples": 9000, "test_samples": 300, "channels": 20_000}}
    where = lambda d, s: tmp_path / "absent.h5"  # noqa: E731
    [row] = crosscoder_rows(config, {"m": 6}, [(dataset, "s1")], where, int(16e9), {"crosscoder": {"units_per_s": 1e9}})
    assert row["seconds"] == pytest.approx(2 * 50 * 9000 * (20_000 + 1024) * 256 / 1e9)
    assert row["peak_bytes"] == crosscoder_peak_bytes(9300, 20_000, 1024, 256, 512, int(16e9))
    [untimed] = crosscoder_rows(config, {"m": 6}, [(dataset, "s1")], where, None, {})
    assert untimed.get("seconds") is None and "benchmarks/crosscoder.py" in untimed["note"]


def test_sae_row_peak_is_the_larger_of_training_and_the_language_models_ce_metrics(tmp_path, monkeypatch):
    """The SAE job loads its language model after training, for the CE metrics: a 7B model's float32 weights
    set the peak."""
    from brainphase import planning
    from brainphase.activations.extract import activations_peak_bytes
    from brainphase.sae.train import sae_peak_bytes
    from brainphase.stage_plan_sparse import sparse_coding_rows

    config = {"models": [{"name": "m"}], "datasets": [], "crosscoder": {"d_latent": 256, "batch_size": 512, "epochs": 1}, "sae": {"expansion": 8, "batch_size": 4096, "k": 32, "k_aux": 256,
                                                 "epochs": 1, "corpus": {"source": "file"}},
              "plan_stimuli": {"sae_corpus": {"units": 10**6, "tokens": 10**6}}}
    for size in (ModelSize(7_298_617_344, 32, 4096, 4, 4096), ModelSize(70_426_624, 6, 512, 2)):
        monkeypatch.setattr(planning, "model_size", lambda m: size)
        [row] = [r for r in sparse_coding_rows(config, {"sae": {"m": 3}}, [], None, lambda rule: None, tmp_path, {})
                 if r["stage"] == "sae m"]
        n = size.d_model * 8
        train = sae_peak_bytes(size.d_model, n, 4096, 10**5, 32, 256)
        window = min(size.context, 8192)
        ce = activations_peak_bytes(size.params, 4, 8192 // window, window, size.d_model, 1, 0,
                                    outputs_in_memory=False) + 12 * 2**24 + 8 * n * size.d_model
        assert row["peak_bytes"] == max(train, ce)
        if size.params > 10**9:
            assert row["peak_bytes"] == ce > 4 * size.params  # float32 weights on CPU


def test_any_stage_over_its_budget_is_flagged():
    text = format_stages([{"stage": "activations m s", "jobs": 2, "seconds": 60.0, "peak_bytes": 9e9,
                           "budget_bytes": 4e9, "note": ""}], "cpu", None)
    assert "peak 9.0 GB of 4.0 GB EXCEEDS THE BUDGET" in text
