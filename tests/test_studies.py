"""The shipped study configs: each plans its whole DAG with nothing downloaded, in a results folder of its own."""

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from brainphase.planning import ModelSize, activation_bytes, dry_run_requested, model_size, plan_table, runs_jobs
from conftest import REPO, job_counts, make_workdir, run_snakemake

STUDIES = sorted(p.stem for p in (REPO / "config").glob("*.yaml") if p.name != "config.yaml")


LEBEL_STUDIES = [s for s in STUDIES if s.endswith("-lebel") or s == "llmjp-local"]


def _planned(m: dict) -> int:
    return len(m["hf"]["revisions"]) if m["source"] == "hf" else len(m["local"]["steps"])


def _stimulus_sets(cfg: dict) -> int:
    """Activation jobs per checkpoint: one per stimulus set the study's analyses read."""
    a = set(cfg["analyses"])
    sets = {d.get("stimuli", d["name"]) for d in cfg["datasets"]
            if (d["kind"] == "fmri" and {"encoding", "crosscoder"} & a) or (d["kind"] == "meg" and "temporal" in a)}
    return len(sets) + (len(cfg["probing"]["tasks"]) if "probing" in a else 0) + ("sae" in a)


def test_every_shipped_study_is_documented():
    assert set(STUDIES) == {"amber-lebel", "llmjp-local", "meg-masc", "olmo2-lebel", "pythia-lebel"}
    page = (REPO / "docs/studies.md").read_text()
    for s in STUDIES:
        assert f"config/{s}.yaml" in page, f"docs/studies.md does not describe config/{s}.yaml"


def test_every_study_has_a_results_folder_of_its_own():
    roots = [yaml.safe_load((REPO / "config" / f"{s}.yaml").read_text())["results"] for s in STUDIES]
    assert len(set(roots)) == len(roots) and "results" not in roots


@pytest.mark.parametrize("study", STUDIES)
def test_study_dry_runs_on_a_fresh_clone_with_nothing_downloaded(study, tmp_path):
    """No data/, no results/: the whole DAG, the plan and the list of what is missing."""
    wd = make_workdir(tmp_path, REPO / "config/config.yaml")
    cfg = yaml.safe_load((REPO / "config" / f"{study}.yaml").read_text())
    proc = run_snakemake(wd, "-n", "--configfile", str(REPO / "config" / f"{study}.yaml"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    for m in cfg["models"]:
        fetch = f"download_{m['name']}" if m["source"] == "hf" else f"link_{m['name']}"
        assert counts[fetch] == _planned(m)
        assert counts[f"activations_{m['name']}"] == _planned(m) * _stimulus_sets(cfg)
    subjects = sum(len(d["subjects"]) for d in cfg["datasets"])
    assert counts["load_subject"] == subjects and counts["merge_stimuli"] == len(cfg["datasets"])
    n_steps = sum(_planned(m) for m in cfg["models"])
    if "encoding" in cfg["analyses"]:
        assert counts["encoding"] == n_steps * subjects
    if "temporal" in cfg["analyses"]:
        assert counts["temporal"] == n_steps * subjects
    if study in LEBEL_STUDIES:  # the triple-phase analysis runs on every LeBel study
        assert {"probing", "phases", "plot_phases", "probe_stimuli"} <= set(counts), sorted(counts)
        assert counts["probing"] == n_steps * len(cfg["probing"]["tasks"])
    assert "toy_world" not in counts and not any(r.startswith("train_") for r in counts)
    # everything lands in the study's own folder
    assert re.search(rf"output: {re.escape(cfg['results'])}/", proc.stdout)
    assert not re.search(r"output: results/(tables|checkpoints|activations)/", proc.stdout)
    # the plan a user reads before launching, and what is missing with where to get it
    log = proc.stdout + proc.stderr
    assert "brainphase plan" in log
    for m in cfg["models"]:
        assert re.search(rf"{re.escape(m['name'])} \({m['source']}\): {_planned(m)} checkpoints", log)
    missing = re.search(r"brainphase inputs: (\d+) missing", log)
    assert missing, log[-3000:]
    for d in cfg["datasets"]:
        assert f"config key datasets[{d['name']}].path" in log
    if cfg.get("sae", {}).get("corpus", {}).get("source") == "file" and "sae" in cfg["analyses"]:
        assert cfg["sae"]["corpus"]["path"] in log
    assert "where to get them" in log
    assert not (wd / cfg["results"]).exists() and not (wd / "data").exists()


def test_a_real_run_with_inputs_missing_stops_before_any_job(tmp_path):
    wd = make_workdir(tmp_path, REPO / "config/config.yaml")
    proc = run_snakemake(wd, "--cores", "1", "--configfile", str(REPO / "config/meg-masc.yaml"), timeout=120)
    assert proc.returncode != 0
    assert "missing" in proc.stderr and "datasets[" in proc.stderr and "nothing was run" in proc.stderr
    assert not (wd / "results").exists()


def test_a_results_folder_refuses_a_study_that_shares_no_model(tmp_path):
    from brainphase.planning import STUDY_MARK, claim_results_folder

    a = {"models": [{"name": "toy"}], "datasets": [{"name": "lebel"}]}
    b = {"models": [{"name": "pythia-410m"}], "datasets": [{"name": "lebel"}]}
    claim_results_folder(tmp_path / "results", a)
    claim_results_folder(tmp_path / "results", {**a, "models": a["models"] + [{"name": "toy_small"}]})
    with pytest.raises(ValueError, match=r"config key results: .*another study.*results: results/<study>"):
        claim_results_folder(tmp_path / "results", b)
    claim_results_folder(tmp_path / "results/pythia", b)
    assert (tmp_path / "results" / STUDY_MARK).is_file()


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
    # Missing inputs stop only the commands that would run jobs.
    assert runs_jobs(["snakemake", "--cores", "2"]) and runs_jobs(["snakemake", "--profile", "profiles/slurm"])
    for args in (["-n"], ["--lint"], ["--rulegraph"], ["--dag"], ["--report", "r.html"], ["--unlock"],
                 ["--list-rules"], ["--summary"]):
        assert not runs_jobs(["snakemake", *args]), args


def test_local_model_size_is_read_from_its_checkpoint(tmp_path):
    d = tmp_path / "run" / "step5"
    d.mkdir(parents=True)
    (d / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 3, "vocab_size": 100}')
    (d / "model.safetensors").write_bytes(b"\0" * 4000)
    size = model_size({"name": "m", "source": "local", "local": {"root": str(tmp_path / "run")}})
    assert (size.n_layers, size.d_model) == (3, 64)
    shutil.rmtree(d)
    assert model_size({"name": "m", "source": "local", "local": {"root": str(tmp_path / "run")}}) is None


def _digests(root: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "tables").glob("*.parquet"))}


def test_two_studies_in_one_clone_keep_their_own_tables(micro_run, tmp_path):
    """A second study run after the first writes only under its own results folder."""
    wd = tmp_path / "clone"
    shutil.copytree(micro_run, wd, symlinks=True)
    first = _digests(wd / "results")
    assert "tables/encoding.parquet" in first and "tables/phases.parquet" in first
    second = yaml.safe_load((REPO / "tests/data/micro.yaml").read_text())
    second.update(results="results/second", analyses=["encoding"])
    # Only the folders are under test: a short training with two checkpoints keeps its DAG small.
    toy = second["models"][0]
    second["models"] = [dict(toy, name="toy2", train=dict(toy["train"], steps=5, checkpoints=[0, 5], warmup=1))]
    second["datasets"] = [d for d in second["datasets"] if d["kind"] == "fmri"]
    (wd / "config/second.yaml").write_text(yaml.safe_dump(second, sort_keys=False))
    proc = run_snakemake(wd, "--cores", "2", "--configfile", str(wd / "config/second.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _digests(wd / "results") == first
    assert set(pd.read_parquet(wd / "results/second/tables/encoding.parquet")["model"]) == {"toy2"}
    assert set(pd.read_parquet(wd / "results/tables/encoding.parquet")["model"]) == {"toy"}
    # and the first study, asked again, has nothing to redo
    proc = run_snakemake(wd, "-n")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]
    # a study that forgets its own folder is refused before it overwrites the first
    second["results"] = "results"
    (wd / "config/second.yaml").write_text(yaml.safe_dump(second, sort_keys=False))
    proc = run_snakemake(wd, "--cores", "1", "--configfile", str(wd / "config/second.yaml"))
    assert proc.returncode != 0 and "another study" in proc.stderr
    assert _digests(wd / "results") == first
