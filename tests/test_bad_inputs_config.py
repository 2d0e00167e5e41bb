"""A catalogue of bad config values that are known wrong before any job runs.

Each test starts from the complete micro config, sets one bad value and expects
validation (or, where the data decide, the job's own check) to stop with a
ConfigError that names the config key and the fix.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from brainphase.config import ConfigError, validate_config
from brainphase.invocation import check_device

REPO = Path(__file__).resolve().parents[1]
MICRO = yaml.safe_load((REPO / "tests/data/micro.yaml").read_text())


@pytest.fixture
def config():
    # Validation fills nothing in, but a test must never see another's edits.
    return copy.deepcopy(MICRO)


def _rejects(config, *fragments):
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    for f in fragments:
        assert f in str(err.value), f"{f!r} not in: {err.value}"
    return str(err.value)


# Layers: resid 0..n (0 = embeddings), mlp 1..n; the micro models have 2 blocks.

def test_bad_phases_encoding_layer(config):
    config["phases"]["encoding_layer"] = 10
    _rejects(config, "phases.encoding_layer", "model toy", "0..2", "models[toy].train.n_layers",
             "pick a layer in 0..2 or 'best'")


def test_bad_phases_probing_layer(config):
    config["phases"]["probing_layer"] = 3  # probing.site defaults to mlp: 1..2
    _rejects(config, "phases.probing_layer", "model toy", "mlp (probing.site)", "pick a layer in 1..2")


def test_bad_phases_probing_layer_zero_on_mlp(config):
    config["phases"]["probing_layer"] = 0
    _rejects(config, "phases.probing_layer", "start at 1", "pick a layer from 1")


def test_bad_encoding_map_layer(config):
    config["encoding"]["map_layer"] = 10
    _rejects(config, "encoding.map_layer", "model toy", "pick a layer in 0..2 or 'best'")


def test_bad_encoding_map_layer_zero_with_mlp_site(config):
    config["activations"]["sites"] = ["resid", "mlp"]  # the maps draw the layer of both sites
    config["encoding"]["map_layer"] = 0
    _rejects(config, "encoding.map_layer", "pick a layer from 1")


def test_bad_sae_layer_of_a_hub_model(config):
    # pythia-70m has 6 blocks (its model card, planning.KNOWN_SIZES); only the toy models were checked.
    config["models"][0] = {"name": "p70", "source": "hf",
                           "hf": {"repo_id": "EleutherAI/pythia-70m", "family": "pythia",
                                  "revisions": ["step1000", "step2000"]}}
    config["sae"]["layer"] = 7
    _rejects(config, "sae.layer", "model p70", "EleutherAI/pythia-70m", "pick a layer in 0..6")


def test_bad_crosscoder_layer_of_a_planned_local_model(config, tmp_path):
    # No checkpoint yet: the run's published model (local.like) tells the depth.
    config["models"][0] = {"name": "mine", "source": "local",
                           "local": {"root": str(tmp_path / "run"), "steps": [100, 200],
                                     "like": "llm-jp/llm-jp-3-1.8b", "tokens_per_step": 1000}}
    config["crosscoder"]["layer"] = 30
    _rejects(config, "crosscoder.layer", "model mine", "local.like llm-jp/llm-jp-3-1.8b", "pick a layer in 0..24")


def test_bad_crosscoder_layer_of_a_local_checkpoint(config, tmp_path):
    step = tmp_path / "run" / "step100"
    step.mkdir(parents=True)
    (step / "config.json").write_text(json.dumps({"num_hidden_layers": 3, "hidden_size": 16, "vocab_size": 350}))
    (step / "model.safetensors").write_bytes(b"0" * 64)
    config["models"][0] = {"name": "mine", "source": "local",
                           "local": {"root": str(tmp_path / "run"), "tokens_per_step": 1000}}
    config["crosscoder"]["layer"] = 4
    _rejects(config, "crosscoder.layer", "model mine", "config.json", "pick a layer in 0..3")


def test_unknown_depth_is_left_to_the_job(config, tmp_path):
    config["models"][0] = {"name": "mine", "source": "local",
                           "local": {"root": str(tmp_path / "run"), "steps": [100, 200], "tokens_per_step": 1000}}
    config["crosscoder"]["layer"] = 30
    config["sae"]["layer"] = 30
    validate_config(config)


def test_layer_of_a_model_that_skips_the_analysis_is_not_checked(config):
    config["models"][0]["analyses"] = ["encoding", "evals", "probing", "phases", "temporal"]
    config["models"][0]["train"]["n_layers"] = 1  # sae.layer 2 and crosscoder.layer 2 are not its concern
    config["phases"]["encoding_layer"] = 1
    config["phases"]["probing_layer"] = 1
    validate_config(config)


# TopK keeps k latents per row: k cannot exceed the latents.

def test_bad_sae_k(config):
    config["sae"]["k"] = 500  # latents = expansion 4 x d_model 32 = 128
    _rejects(config, "sae.k", "model toy", "128 latents", "sae.expansion 4 x d_model 32", "pick k in 1..128",
             "raise sae.expansion")


def test_bad_crosscoder_k(config):
    config["crosscoder"]["k"] = 100
    _rejects(config, "crosscoder.k", "crosscoder.d_latent 64", "pick k in 1..64", "raise crosscoder.d_latent")


def test_large_k_aux_is_legal(config):
    # The auxiliary loss takes min(k_aux, dead latents): more than the latents is no error.
    config["sae"]["k_aux"] = 10_000
    config["crosscoder"]["k_aux"] = 10_000
    validate_config(config)


# Sites read from the stimulus sets' activation caches.

def test_bad_crosscoder_site(config):
    config["crosscoder"]["site"] = "mlp"  # activations.sites is [resid]
    _rejects(config, "crosscoder.site", "activations.sites", "add 'mlp' to activations.sites")


def test_bad_temporal_site(config):
    config["temporal"]["site"] = "mlp"
    _rejects(config, "temporal.site", "activations.sites", "add 'mlp' to activations.sites")


# Trim: against the runs of brain files already on disk, else in the job.

def _files_dataset(config, tmp_path, monkeypatch, lengths):
    """The fMRI dataset as user-written files (results/brain, results/stimuli) with runs of ``lengths`` TRs."""
    from brainphase.contracts.brain import BrainRun, write_brain

    monkeypatch.chdir(tmp_path)
    d = config["datasets"][0]
    d["source"] = "files"
    del d["simulate"]
    runs = {f"story{i}": BrainRun(np.zeros((n, 3), np.float32), "train" if i else "test")
            for i, n in enumerate(lengths)}
    write_brain(tmp_path / "results/brain/toy_fmri/sub-01.h5", runs, 2.0, np.zeros((3, 2)))
    stim = pd.DataFrame({"unit_id": [f"story{i}_0" for i in range(len(lengths))], "run": list(runs),
                         "text": "word", "lang": "en", "onset": 0.5, "offset": 0.9})
    (tmp_path / "results/stimuli").mkdir(parents=True)
    stim.to_parquet(tmp_path / "results/stimuli/toy_fmri.parquet")


def test_bad_encoding_trim(config, tmp_path, monkeypatch):
    _files_dataset(config, tmp_path, monkeypatch, [30, 12, 40])
    config["encoding"]["trim"] = 6
    _rejects(config, "encoding.trim", "story1", "dataset toy_fmri subject sub-01", "valid values are 0..5",
             "lower encoding.trim")


def test_bad_crosscoder_trim(config, tmp_path, monkeypatch):
    _files_dataset(config, tmp_path, monkeypatch, [30, 12, 40])
    config["crosscoder"]["trim"] = 8
    _rejects(config, "crosscoder.trim", "story1", "valid values are 0..5", "lower crosscoder.trim")


def test_trim_within_the_runs_on_disk_passes(config, tmp_path, monkeypatch):
    _files_dataset(config, tmp_path, monkeypatch, [30, 12, 40])
    config["encoding"]["trim"] = config["crosscoder"]["trim"] = 5
    validate_config(config)


def _short_subject():
    from brainphase.contracts.brain import BrainData, BrainRun

    brain = BrainData({"a": BrainRun(np.zeros((6, 3)), "train"), "b": BrainRun(np.zeros((20, 3)), "test")},
                      2.0, np.zeros((3, 2)))
    stimuli = pd.DataFrame({"unit_id": ["a0", "b0"], "run": ["a", "b"], "text": "w", "lang": "en",
                            "onset": 0.5, "offset": 0.9})
    return brain, stimuli


def test_bad_encoding_trim_in_the_job():
    # Before the brain files exist validation cannot know the runs: the job names the key.
    from brainphase.encoding.pipeline import encode_layers
    from brainphase.encoding.settings import EncodingSettings

    brain, stimuli = _short_subject()
    with pytest.raises(ConfigError, match=r"config key encoding\.trim: 3 TRs .* run\(s\) \['a'\].* lower encoding\.trim"):
        encode_layers({"resid.0": np.zeros((2, 4))}, stimuli, brain,
                      EncodingSettings(delays=[1], trim=3, alphas=[1.0], cv_splits=2, n_perm=10, block_size=2,
                                       fdr_q=0.05, seed=0, backend="numpy"))


def test_bad_crosscoder_trim_in_the_job():
    from brainphase.crosscoder.data import crosscoder_inputs

    brain, stimuli = _short_subject()
    with pytest.raises(ConfigError, match=r"config key crosscoder\.trim: .* valid values are 0\.\.2.* lower crosscoder\.trim"):
        crosscoder_inputs(np.zeros((2, 4)), stimuli, brain, delays_s=[2], n_trim=3)


# Names become path components of every output.

@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b"])
def test_bad_model_name(config, name):
    config["models"][0]["name"] = name
    _rejects(config, "models.0.name", "not a safe name", "rename it")


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b"])
def test_bad_dataset_name(config, name):
    config["datasets"][0]["name"] = name
    config["datasets"][1]["stimuli"] = name
    _rejects(config, "datasets.0.name", "not a safe name", "rename it")


@pytest.mark.parametrize("name", ["..", "sub.01", "sub 01", "a/b"])
def test_bad_subject_name(config, name):
    config["datasets"][0]["subjects"] = [name]
    _rejects(config, "datasets.0.subjects.0", "not a safe name", "letters, digits, _ and - only", "rename it")


@pytest.mark.parametrize("name", ["sae_corpus", "probe_microqa"])
def test_bad_dataset_name_of_a_built_stimulus_set(config, name):
    config["datasets"][0]["name"] = name
    config["datasets"][1]["stimuli"] = name
    _rejects(config, f"datasets[{name}].name", "stimulus set the workflow builds itself", "rename the dataset")


def test_safe_names_pass(config):
    config["models"][0]["name"] = "llm-jp-3-1.8b_run2"
    config["datasets"][0]["subjects"] = ["UTS01", "sub-01", "01"]
    validate_config(config)


# device: cuda where there is no CUDA.

@pytest.fixture
def no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("SNAKEMAKE_PROFILE", raising=False)


def test_bad_device_cuda_without_cuda(config, no_cuda):
    config["device"] = "cuda"
    validate_config(config)
    with pytest.raises(ConfigError, match=r"config key device: cuda.*not available.*set device: auto.*GPU node"):
        check_device(config, ["snakemake", "--cores", "2", "--configfile", "tests/data/micro.yaml"])


@pytest.mark.parametrize("argv", [["snakemake", "-n"], ["snakemake", "--dry-run", "--cores", "1"],
                                  ["snakemake", "--rulegraph"],
                                  ["snakemake", "--executor", "slurm", "--jobs", "10"],
                                  ["snakemake", "--profile", str(REPO / "profiles/slurm")]])
def test_device_cuda_without_cuda_only_warns_when_no_job_runs_here(config, no_cuda, argv):
    config["device"] = "cuda"
    note = check_device(config, argv)
    assert note is not None and "config key device" in note and "device: auto" in note


def test_device_cuda_with_cuda_or_auto_is_silent(config, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config["device"] = "cuda"
    assert check_device(config, ["snakemake", "--cores", "1"]) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config["device"] = "auto"
    assert check_device(config, ["snakemake", "--cores", "1"]) is None
