"""Weight fingerprints: duplicate checkpoints from manifests and from the hub's LFS sha256 (fake client)."""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub.hf_api import RepoFile, RepoFolder
from safetensors.torch import save_file

from brainphase.contracts.checkpoint import CheckpointError, write_checkpoint_metadata
from brainphase.sources.fingerprints import (
    cached_hub_fingerprints,
    duplicate_table,
    fingerprint_cache_path,
    format_duplicates,
    hub_fingerprints,
    manifest_fingerprint,
    weights_fingerprint,
)
from brainphase.io import sha256_file


def _checkpoint(root: Path, name: str, seed: int, config: dict | None = None) -> Path:
    """A checkpoint folder: real safetensors weights (from ``seed``), config.json, and its manifest."""
    folder = root / name
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    save_file({"embed.weight": torch.randn(5, 4, generator=g), "lm_head.weight": torch.randn(4, 5, generator=g)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "gpt_neox", "hidden_size": 4}))
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    write_checkpoint_metadata(folder, "pythia-test", name, int(name.removeprefix("step")), None, "hf")
    return folder


def test_identical_weights_are_flagged_with_both_names_even_if_config_differs(tmp_path):
    a = _checkpoint(tmp_path, "step1000", seed=0)
    b = _checkpoint(tmp_path, "step2000", seed=1)
    # step3000 serves step1000's weights again (as pythia-2.8b's branches serve the final weights),
    # under a config.json that differs: the duplicate must still be found.
    c = _checkpoint(tmp_path, "step3000", seed=0, config={"model_type": "gpt_neox", "hidden_size": 4, "x": 1})
    assert sha256_file(a / "config.json") != sha256_file(c / "config.json")
    fps = {d.name: manifest_fingerprint(d) for d in (a, b, c)}
    assert fps["step1000"] == fps["step3000"] != fps["step2000"]

    table = duplicate_table("pythia-test", fps, {"step1000": 1000, "step2000": 2000, "step3000": 3000})
    assert list(table.columns) == ["model", "step", "tokens", "fingerprint", "duplicate_of"]
    assert list(table["step"]) == ["step1000", "step2000", "step3000"]
    assert table["duplicate_of"].tolist() == [None, None, "step1000"]
    report = format_duplicates(table)
    assert "step3000" in report and "step1000" in report and "step2000" not in report
    assert "1 of 3 checkpoints" in report


def test_different_weights_are_not_flagged(tmp_path):
    fps = {f"step{i}": manifest_fingerprint(_checkpoint(tmp_path, f"step{i}", seed=i)) for i in (1, 2, 3)}
    table = duplicate_table("m", fps, {s: i for i, s in enumerate(fps)})
    assert table["duplicate_of"].isna().all() and table["fingerprint"].nunique() == 3
    assert format_duplicates(table).startswith("no duplicate checkpoints among 3")


def test_fingerprint_uses_weight_files_only_and_their_names():
    weights = {"model-00001-of-00002.safetensors": "a" * 64, "model-00002-of-00002.safetensors": "b" * 64}
    fp = weights_fingerprint({**weights, "config.json": "c" * 64, "tokenizer.json": "d" * 64,
                              "training_args.bin": "e" * 64})
    assert fp == weights_fingerprint(dict(reversed(list(weights.items()))))  # order of the mapping is irrelevant
    assert fp != weights_fingerprint({"model-00001-of-00002.safetensors": "b" * 64,
                                      "model-00002-of-00002.safetensors": "a" * 64})
    assert weights_fingerprint({"pytorch_model.bin": "f" * 64}) != weights_fingerprint({"model.pt": "f" * 64})
    with pytest.raises(ValueError, match="no weight files"):
        weights_fingerprint({"config.json": "c" * 64})


def test_manifest_fingerprint_needs_a_manifest(tmp_path):
    with pytest.raises(CheckpointError, match="brainphase.json"):
        manifest_fingerprint(tmp_path)


def test_unknown_fingerprints_are_never_duplicates():
    table = duplicate_table("m", {"step1": None, "step2": None, "step3": "x", "step4": "x"},
                            {"step1": 1, "step2": 2, "step3": 3})
    assert table["duplicate_of"].tolist() == [None, None, None, "step3"]
    assert table["tokens"].isna().tolist() == [False, False, False, True]
    assert "step4 (? tokens) = step3 (3 tokens)" in format_duplicates(table)


class FakeTreeApi:
    """list_repo_tree of a fake hub: {revision: {path: sha256 or None (a file kept in plain git)}}."""

    def __init__(self, trees, error=None):
        self.trees, self.error, self.calls = trees, error, []

    def list_repo_tree(self, repo_id, path_in_repo=None, *, recursive=False, expand=False, revision=None, **kw):
        self.calls.append((repo_id, revision, recursive))
        if self.error is not None:
            raise self.error
        yield RepoFolder(path="tokenizer", oid="1" * 40)
        for path, sha in self.trees[revision].items():
            lfs = None if sha is None else {"size": 10, "oid": sha, "pointerSize": 130}
            yield RepoFile(path=path, size=10, oid="0" * 40, lfs=lfs)


def _tree(weights_sha):
    return {"model.safetensors": weights_sha, "pytorch_model.bin": "b" + weights_sha[1:], "config.json": None,
            "tokenizer/tokenizer.json": None}


def test_hub_fingerprints_are_cached_and_read_back_offline(tmp_path):
    repo = "EleutherAI/pythia-2.8b"
    online = FakeTreeApi({"step1000": _tree("1" * 64), "step2000": _tree("2" * 64), "step143000": _tree("2" * 64),
                          "step3000": {"config.json": None}})
    fps = hub_fingerprints(repo, ["step1000", "step2000", "step143000", "step3000"], tmp_path, client=online)
    assert [c[1] for c in online.calls] == ["step1000", "step2000", "step143000", "step3000"]
    assert all(c[2] for c in online.calls)  # recursive: shards in sub-folders count too
    assert fps["step2000"] == fps["step143000"] != fps["step1000"] and fps["step3000"] is None
    path = fingerprint_cache_path(repo, tmp_path)
    assert path == tmp_path / "EleutherAI__pythia-2.8b.fingerprints.tsv" and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left

    assert cached_hub_fingerprints(repo, tmp_path) == fps  # the dry-run path: cache only
    offline = FakeTreeApi({}, error=AssertionError("the network must not be used for cached revisions"))
    assert hub_fingerprints(repo, ["step143000", "step1000"], tmp_path, client=offline) == {
        "step143000": fps["step143000"], "step1000": fps["step1000"]}
    assert offline.calls == []
    assert cached_hub_fingerprints("EleutherAI/pythia-70m", tmp_path) == {}

    table = duplicate_table("pythia-2.8b", fps, {"step1000": 1, "step2000": 2, "step143000": 3, "step3000": 4})
    assert table["duplicate_of"].tolist() == [None, None, "step2000", None]


def test_hub_fingerprint_equals_the_downloaded_manifest_with_the_same_files(tmp_path):
    folder = _checkpoint(tmp_path, "step1000", seed=0)
    sha = sha256_file(folder / "model.safetensors")
    api = FakeTreeApi({"step1000": {"model.safetensors": sha, "pytorch_model.bin": "9" * 64, "config.json": None}})
    everything = hub_fingerprints("o/m", ["step1000"], tmp_path / "all", client=api)["step1000"]
    as_downloaded = hub_fingerprints("o/m", ["step1000"], tmp_path / "st", client=api,
                                     allow_patterns=["*.json", "*.safetensors"])["step1000"]
    assert as_downloaded == manifest_fingerprint(folder) != everything


def test_hub_errors_name_the_repo_revision_and_fix(tmp_path):
    api = FakeTreeApi({}, error=ConnectionError("offline"))
    with pytest.raises(RuntimeError, match=r"o/m@step1.*copy o__m.fingerprints.tsv"):
        hub_fingerprints("o/m", ["step1"], tmp_path, client=api)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "o__m.fingerprints.tsv").write_text("rev\tfp\nstep1\tx\n")
    with pytest.raises(ValueError, match="o__m.fingerprints.tsv.*delete it"):
        cached_hub_fingerprints("o/m", tmp_path)


def test_a_study_dry_run_reports_duplicate_hub_checkpoints_before_any_download(tmp_path, monkeypatch):
    """`python -m brainphase.sources.fingerprints <study>` reads the hub's listing once; the dry run then names both revisions."""
    import huggingface_hub
    import yaml

    from brainphase.sources.fingerprints import main
    from conftest import REPO, make_workdir, run_snakemake

    wd = make_workdir(tmp_path, REPO / "config/config.yaml")
    study = yaml.safe_load((REPO / "config/pythia-lebel.yaml").read_text())
    study["analyses"] = ["evals"]
    study["models"][0]["hf"]["revisions"] = ["step1000", "step2000", "step143000"]
    (wd / "config/study.yaml").write_text(yaml.safe_dump(study))
    hub = FakeTreeApi({"step1000": _tree("1" * 64), "step2000": _tree("2" * 64), "step143000": _tree("2" * 64)})
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: hub)
    monkeypatch.chdir(wd)
    main(["config/study.yaml"])
    assert [c[1] for c in hub.calls] == ["step1000", "step2000", "step143000"]
    proc = run_snakemake(wd, "-n", "--configfile", "config/study.yaml", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "1 of 3 checkpoints have the same weights" in log
    assert "pythia-410m: step143000 (299,892,736,000 tokens) = step2000 (4,194,304,000 tokens)" in log
