"""The shipped study configs: each plans its whole DAG offline, from placeholders where the data would be."""

import re
import shutil
from pathlib import Path

import pytest
import yaml

from brainphase.planning import ModelSize, activation_bytes, dry_run_requested, model_size, plan_table
from conftest import REPO, make_workdir, run_snakemake

STUDIES = sorted(p.stem for p in (REPO / "config").glob("*.yaml") if p.name != "config.yaml")


def _job_counts(stdout: str) -> dict[str, int]:
    block = stdout.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+(\d+)$", block, re.M)}


def _placeholders(wd: Path, study: dict) -> None:
    """What a dry run needs on disk: the SAE corpus file and a local run's first checkpoints."""
    corpus = study.get("sae", {}).get("corpus", {})
    if corpus.get("source") == "file":
        (wd / corpus["path"]).parent.mkdir(parents=True, exist_ok=True)
        (wd / corpus["path"]).touch()
    for m in study["models"]:
        if m["source"] == "local":
            for step in (1000, 2000):
                d = wd / m["local"]["root"] / m["local"].get("pattern", "step{step}").format(step=step)
                d.mkdir(parents=True)
                (d / "config.json").write_text('{"hidden_size": 2048, "num_hidden_layers": 24, "vocab_size": 99574}')
                (d / "model.safetensors").write_bytes(b"\0" * 1024)


def test_every_study_in_the_readme_is_shipped():
    assert set(STUDIES) == {"amber-lebel", "llmjp-local", "meg-masc", "olmo2-lebel", "pythia-lebel"}
    readme = (REPO / "README.md").read_text()
    for s in STUDIES:
        assert f"config/{s}.yaml" in readme, s


@pytest.mark.parametrize("study", STUDIES)
def test_study_dry_runs_offline(study, tmp_path):
    wd = make_workdir(tmp_path, REPO / "config/config.yaml")
    cfg = yaml.safe_load((REPO / "config" / f"{study}.yaml").read_text())
    _placeholders(wd, cfg)
    proc = run_snakemake(wd, "-n", "--configfile", str(REPO / "config" / f"{study}.yaml"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = _job_counts(proc.stdout)
    for m in cfg["models"]:
        n = len(m["hf"]["revisions"]) if m["source"] == "hf" else 2
        fetch = f"download_{m['name']}" if m["source"] == "hf" else f"link_{m['name']}"
        assert counts[fetch] == n and counts[f"activations_{m['name']}"] == n
    subjects = sum(len(d["subjects"]) for d in cfg["datasets"])
    assert counts["load_subject"] == subjects and counts["merge_stimuli"] == len(cfg["datasets"])
    n_steps = sum(counts[f"activations_{m['name']}"] for m in cfg["models"])
    if "encoding" in cfg["analyses"]:
        assert counts["encoding"] == n_steps * subjects
    if "temporal" in cfg["analyses"]:
        assert counts["temporal"] == n_steps * subjects
    assert "toy_world" not in counts and "train_toy" not in counts
    # the plan a user reads before launching
    log = proc.stdout + proc.stderr
    assert "brainphase plan" in log
    for m in cfg["models"]:
        assert re.search(rf"{re.escape(m['name'])} \({m['source']}\): {counts[f'activations_' + m['name']]} checkpoints", log)


def test_plan_matches_a_real_activation_cache(micro_run):
    """The cache size the plan predicts is the size the activation job writes (the demo's word-level set)."""
    from safetensors import safe_open

    cfg = yaml.safe_load((micro_run / "config/config.yaml").read_text())
    toy = cfg["models"][0]
    size = model_size(toy)
    path = micro_run / "results/activations/toy/step40/toy_fmri.safetensors"
    with safe_open(str(path), "numpy") as f:
        n_units = f.get_slice(next(iter(f.keys()))).get_shape()[0]
        n_tensors = len(list(f.keys()))
    assert n_tensors == toy["train"]["n_layers"] + 1
    predicted = activation_bytes(size, n_units, "word", n_sites=1)
    # safetensors: 8-byte header length, JSON header (with the unit ids), then the tensors' bytes
    with open(path, "rb") as f:
        header = 8 + int.from_bytes(f.read(8), "little")
    assert path.stat().st_size - header == predicted
    table = plan_table(cfg, {"toy": ["step0", "step40"], "toy_small": ["step0"]},
                       {"toy": [("toy_fmri", "word")], "toy_small": [("toy_fmri", "word")]}, micro_run / "results")
    row = table.set_index("model").loc["toy"]
    assert row["activations_per_checkpoint_GB"] == pytest.approx(predicted / 1e9)
    assert row["activations_total_GB"] == pytest.approx(2 * predicted / 1e9)


def test_plan_sizes_and_formula():
    assert activation_bytes(ModelSize(10, 24, 1024, 2), 1000, "word", 2) == 1000 * 2 * 25 * 1024 * 2
    assert activation_bytes(ModelSize(10, 24, 1024, 2), 1000, "token", 2) == 1000 * 1024 * 2
    olmo = model_size({"name": "o", "source": "hf", "hf": {"repo_id": "allenai/OLMo-2-1124-7B"}})
    assert olmo.params * olmo.bytes_per_param / 1e9 == pytest.approx(29.2, abs=0.1)  # METHODS §1: ~29 GB
    assert model_size({"name": "x", "source": "hf", "hf": {"repo_id": "someone/unknown"}}) is None


def test_dry_run_flag_detection():
    assert dry_run_requested(["snakemake", "-n"]) and dry_run_requested(["snakemake", "-np", "--cores", "1"])
    assert dry_run_requested(["snakemake", "--dry-run"])
    assert not dry_run_requested(["snakemake", "--cores", "2", "-p"])
    assert not dry_run_requested(["snakemake", "-s", "Snakefile", "--configfile", "n.yaml"])


def test_local_model_size_is_read_from_its_checkpoint(tmp_path):
    d = tmp_path / "run" / "step5"
    d.mkdir(parents=True)
    (d / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 3, "vocab_size": 100}')
    (d / "model.safetensors").write_bytes(b"\0" * 4000)
    size = model_size({"name": "m", "source": "local", "local": {"root": str(tmp_path / "run")}})
    assert (size.n_layers, size.d_model) == (3, 64)
    shutil.rmtree(d)
    assert model_size({"name": "m", "source": "local", "local": {"root": str(tmp_path / "run")}}) is None
