"""The loader registry: it agrees with the config schema, and docs/loaders.md's worked example runs end to end."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from brainphase.config import ConfigError, validate_config
from brainphase.loaders import registry
from brainphase.loaders.dataset import load_subject, subject_inputs
from brainphase.loaders.registry import LOADERS, Loader, get_loader, register_loader, schema_mismatches

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
DOC = REPO / "docs/loaders.md"


def test_registry_and_schema_agree():
    """A loader registered but missing from the schema (or the reverse) could never be used from a config."""
    problems = schema_mismatches(yaml.safe_load(SCHEMA.read_text()))
    assert not problems, "the config schema and brainphase.loaders.registry disagree:\n" + "\n".join(problems)


def test_mismatch_messages_say_what_to_add():
    schema = yaml.safe_load(SCHEMA.read_text())
    extra = dict(LOADERS, npyfmri=Loader("npyfmri", "fmri", "brainphase.loaders.lebel:load_lebel",
                                          "brainphase.loaders.lebel:lebel_inputs"))
    text = "\n".join(schema_mismatches(schema, extra))
    assert "loader 'npyfmri' needs exactly one block in datasets.items.allOf (found 0)" in text
    blocks = schema["properties"]["datasets"]["items"]["allOf"]
    lebel = next(b for b in blocks if b["if"]["properties"].get("source") == {"const": "lebel"})
    del lebel["then"]["properties"]["options"]["properties"]["word_tier"]
    lebel["then"]["required"] = []
    blocks.append({"if": {"properties": {"source": {"const": "gone"}}}, "then": {}})
    text = "\n".join(schema_mismatches(schema))
    assert "'lebel': its allOf block must require path" in text
    assert "add ['word_tier'], drop []" in text
    assert "source 'gone' has no registered loader" in text


def test_unknown_source_is_refused_with_the_known_ones():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["datasets"][0]["source"] = "lebl"
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.source: 'lebl' is not a dataset source; known: "
                                          r"toyworld, files, lebel, bids_fmri, meg_bids"):
        validate_config(config, SCHEMA)


def test_register_rejects_bad_entries(monkeypatch):
    monkeypatch.setattr(registry, "LOADERS", dict(LOADERS))
    with pytest.raises(ValueError, match="exists already"):
        register_loader(Loader("lebel", "fmri", "a:b", "a:c"))
    with pytest.raises(ValueError, match="kind 'eeg'"):
        register_loader(Loader("x", "eeg", "a:b", "a:c"))
    with pytest.raises(ValueError, match="not 'module:function'"):
        register_loader(Loader("x", "fmri", "a.b", "a:c"))
    with pytest.raises(ValueError, match="unknown dataset source 'nope'"):
        get_loader("nope")


def _doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.DOTALL)


def _schema_with_example(tmp_path: Path) -> Path:
    """A copy of the schema with docs/loaders.md's block for the example loader added where the page says."""
    schema = yaml.safe_load(SCHEMA.read_text())
    block, _ = (yaml.safe_load(b) for b in _doc_blocks("yaml"))
    schema["properties"]["datasets"]["items"]["allOf"] += block
    out = tmp_path / "config.schema.yaml"
    out.write_text(yaml.safe_dump(schema, sort_keys=False))
    return out


def _example_dataset(root: Path) -> None:
    rng = np.random.default_rng(0)
    for run in ("run1", "run2", "run3"):
        (root / "S1").mkdir(parents=True, exist_ok=True)
        np.save(root / "S1" / f"{run}.npy", rng.standard_normal((20, 6)))
        onsets = np.arange(8) * 4.0 + 1.0
        pd.DataFrame({"onset": onsets, "offset": onsets + 0.4, "word": [f"w{i}" for i in range(8)]}).to_csv(
            root / f"{run}.words.tsv", sep="\t", index=False)


def test_docs_example_loader_end_to_end(tmp_path, monkeypatch):
    """docs/loaders.md's module, registration and schema block: validate a config with it, load a subject."""
    module, registration = _doc_blocks("python")
    (tmp_path / "npyfmri_example.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "LOADERS", dict(LOADERS))
    # The page puts the module in the package; here it is a top-level module in tmp_path.
    exec(registration.replace("brainphase.loaders.npyfmri:", "npyfmri_example:"),
         {"register_loader": register_loader, "Loader": Loader})
    assert registry.LOADERS["npyfmri"].options() == ["tr", "lang", "test_runs"]

    schema_path = _schema_with_example(tmp_path)
    assert schema_mismatches(yaml.safe_load(schema_path.read_text())) == []
    root = tmp_path / "data"
    _example_dataset(root)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    entry = yaml.safe_load(_doc_blocks("yaml")[1])["datasets"][0]
    config["datasets"].append(dict(entry, path=str(root)))
    validate_config(config, schema_path)
    with pytest.raises(ConfigError, match="options"):
        validate_config(dict(config, datasets=config["datasets"][:-1] + [dict(entry, options={"tr": 2.0, "x": 1})]),
                         schema_path)

    out = load_subject("npyfmri", root, "S1", entry["options"])
    assert out.tr == 2.0 and out.sfreq is None and out.coords.shape == (6, 1)
    assert sorted(out.runs) == ["run1", "run2", "run3"]
    assert {r: v.split for r, v in out.runs.items()} == {"run1": "train", "run2": "train", "run3": "test"}
    assert out.stimuli["unit_id"].iloc[0] == "run1_00000" and len(out.stimuli) == 24
    files = subject_inputs("npyfmri", root, "S1", entry["options"])
    assert len(files) == 6 and all(Path(f).is_file() for f in files)
