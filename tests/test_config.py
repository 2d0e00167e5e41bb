"""Config validation names the key, the expectation and what was found."""

import copy
from pathlib import Path

import pytest
import tomllib
import yaml

from brainphase.config import ConfigError, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


@pytest.fixture
def config():
    return load_config(REPO / "config/config.yaml")


def test_shipped_configs_validate():
    load_config(REPO / "config/config.yaml")
    load_config(REPO / "tests/data/micro.yaml")


def test_unknown_key_named_with_its_path(config):
    config["encoding"]["n_perms"] = 10
    with pytest.raises(ConfigError, match=r"unknown config key encoding\.n_perms; allowed keys here: .*n_perm"):
        validate_config(config)


def test_wrong_type_named(config):
    config["models"][0]["train"]["steps"] = "many"
    with pytest.raises(ConfigError, match=r"models\.0\.train\.steps: expected integer, got str 'many'"):
        validate_config(config)


def test_enum_violation(config):
    config["device"] = "tpu"
    with pytest.raises(ConfigError, match=r"device: 'tpu' is not one of"):
        validate_config(config)


def test_checkpoint_beyond_training(config):
    config["models"][0]["train"]["checkpoints"].append(10**6)
    with pytest.raises(ConfigError, match="exceed train.steps"):
        validate_config(config)


def test_duplicate_model_names(config):
    config["models"].append(copy.deepcopy(config["models"][0]))
    with pytest.raises(ConfigError, match="model names must be unique"):
        validate_config(config)


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_conda_env_pins_agree_with_pyproject():
    project = _pyproject()
    deps = project["dependencies"]
    extras = [d for group in project["optional-dependencies"].values() for d in group]
    assert all("==" in d for d in deps + extras), "every dependency and extra is pinned exactly"
    pins = dict(d.split("==") for d in deps)
    known = pins | dict(d.split("==") for d in extras)
    for env in (REPO / "envs").glob("*.yaml"):
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        env_pins = dict(p.split("==") for p in pip if "==" in p)
        for name, version in env_pins.items():
            assert known.get(name) == version, f"{env.name}: {name}=={version} vs pyproject {known.get(name)}"
        assert all("==" in p or p.startswith("-e") for p in pip), f"{env.name}: every pip package is pinned"
    # The all-in-one environment holds every dependency; each rule's own holds what its scripts import
    # (tests/test_envs.py).
    whole = yaml.safe_load((REPO / "envs/brainphase.yaml").read_text())["dependencies"][-1]["pip"]
    missing = set(pins) - {p.split("==")[0] for p in whole}
    assert not missing, f"envs/brainphase.yaml lacks {missing}"


def test_slurm_plugin_is_an_extra_not_a_dependency():
    """Installed, the plugin queries SLURM's controller whenever Snakemake starts (~9 s
    where none answers), so only `.[slurm]` brings it; the rules' envs do not need it."""
    project = _pyproject()
    plugin = "snakemake-executor-plugin-slurm"
    assert not [d for d in project["dependencies"] if d.startswith(plugin)]
    assert [d.split("==")[0] for d in project["optional-dependencies"]["slurm"]] == [plugin]
    assert not [d for d in project["optional-dependencies"]["test"] if d.startswith(plugin)]
    for env in (REPO / "envs").glob("*.yaml"):
        # Jobs run Snakemake from the submitting environment; a rule's env only runs its script.
        assert plugin not in env.read_text(), f"{env.name} installs {plugin}, which no rule's script imports"


def test_unknown_demo_task_named(config):
    config["evals"]["tasks"] = ["toyfacts_en", "toyfacts_fr"]
    with pytest.raises(ConfigError, match=r"evals\.tasks: unknown demo tasks \['toyfacts_fr'\]"):
        validate_config(config)


def test_task_unknown_to_lm_eval_stops_validation(config):
    """Real task names are checked against lm-eval's registry, offline, before any job."""
    config["evals"]["tasks"] = ["toyfacts_en", "mmlu", "mmlu_typo"]
    with pytest.raises(ConfigError, match="mmlu_typo") as err:
        validate_config(config)
    assert "'mmlu'" not in str(err.value).split("mmlu_typo")[0][-20:]


def test_probing_tasks_must_be_benchmarked(config):
    config["probing"]["tasks"] = ["toyfacts_ja"]
    config["evals"]["tasks"] = ["toyfacts_en"]
    with pytest.raises(ConfigError, match=r"probing\.tasks: \['toyfacts_ja'\] are not in evals\.tasks"):
        validate_config(config)


def test_threads_number_or_per_rule_mapping(config):
    from brainphase.config import threads_for

    assert threads_for(config, "train") == 2 and threads_for(config, "lm_eval") == 1
    config["threads"] = 3
    assert threads_for(validate_config(config), "train") == 3
    config["threads"] = {"train": 2}
    with pytest.raises(ConfigError, match=r"threads"):
        validate_config(config)


def test_probing_may_read_a_language_of_the_benchmarked_demo_group(config):
    config["evals"]["tasks"] = ["toyfacts"]
    config["probing"]["tasks"] = ["toyfacts_ja"]
    validate_config(config)


def test_temporal_needs_a_meg_dataset(config):
    config["datasets"] = [d for d in config["datasets"] if d["kind"] != "meg"]
    with pytest.raises(ConfigError, match=r"temporal needs a time-resolved dataset \(kind: meg\)"):
        validate_config(config)


def test_meg_simulation_keys_are_checked(config):
    meg = next(d for d in config["datasets"] if d["kind"] == "meg")
    meg["simulate"]["latency"] = 0.1
    with pytest.raises(ConfigError, match=r"unknown config key datasets\.1\.simulate\.latency; allowed keys here: latencies"):
        validate_config(config)


def test_shared_stimulus_set_must_exist(config):
    next(d for d in config["datasets"] if d["kind"] == "meg")["stimuli"] = "nope"
    with pytest.raises(ConfigError, match=r"datasets\[toy_meg\]\.stimuli: no dataset named 'nope'"):
        validate_config(config)


def test_model_analyses_are_a_subset_of_the_study(config):
    config["analyses"] = ["encoding"]
    config["models"][1]["analyses"] = ["temporal"]
    with pytest.raises(ConfigError, match=r"models\[toy_small\]\.analyses: \['temporal'\] are not in the top-level"):
        validate_config(config)


def test_temporal_window_and_baseline(config):
    bad = copy.deepcopy(config)
    bad["temporal"]["tmin"] = 1.0
    with pytest.raises(ConfigError, match="tmin"):
        validate_config(bad)
    config["temporal"]["baseline"] = [-0.5, 0.0]
    with pytest.raises(ConfigError, match=r"temporal\.baseline"):
        validate_config(config)


def test_per_model_threads_fall_back_to_the_stage():
    from brainphase.config import threads_for

    cfg = {"threads": {"default": 1, "train": 2, "train_small": 3}}
    assert threads_for(cfg, "train_small", "train") == 3
    assert threads_for(cfg, "train_big", "train") == 2
    assert threads_for(cfg, "activations_big", "activations") == 1


def test_hf_model_revisions_and_tokens_from_the_cached_listing(config, tmp_path, monkeypatch):
    import pandas as pd

    from brainphase.sources import revisions, tokens_for

    monkeypatch.chdir(tmp_path)
    model = {"name": "olmo", "source": "hf", "hf": {"repo_id": "allenai/OLMo-2-1124-7B", "family": "olmo2",
                                                    "token_range": [1e9, 5e10]}}
    config["models"] = [model]
    validate_config(config)
    with pytest.raises(ConfigError, match=r"models\[olmo\]\.hf: .*allenai/OLMo-2-1124-7B"):
        revisions(model)  # no cache and offline: the message names the repo
    (tmp_path / "resources/revisions").mkdir(parents=True)
    names = ["main", "stage1-step1000-tokens5B", "stage1-step5000-tokens21B", "stage1-step20000-tokens84B"]
    pd.DataFrame({"name": names}).to_csv(tmp_path / "resources/revisions/allenai__OLMo-2-1124-7B.tsv", sep="\t",
                                         index=False)
    assert revisions(model) == ["stage1-step1000-tokens5B", "stage1-step5000-tokens21B"]
    assert tokens_for(model, "stage1-step5000-tokens21B") == 5000 * 4_194_304  # step x tokens per step


def test_study_switching_the_sae_corpus_to_a_file_drops_the_demos_corpus_keys(tmp_path):
    """Snakemake merges --configfile key by key; the demo's toyworld corpus keys must not leak into a file corpus."""
    from snakemake.utils import update_config

    corpus = tmp_path / "corpus.parquet"
    corpus.touch()
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    update_config(cfg, {"sae": {"corpus": {"source": "file", "path": str(corpus)}}})
    assert "stories_per_lang" in cfg["sae"]["corpus"]
    validate_config(cfg, SCHEMA)
    assert cfg["sae"]["corpus"] == {"source": "file", "path": str(corpus)}
    update_config(cfg, {"sae": {"corpus": {"text_colum": "body"}}})
    with pytest.raises(ConfigError, match="text_colum"):
        validate_config(cfg, SCHEMA)


def test_loader_datasets_need_a_path_and_known_options():
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["datasets"] = [{"name": "lebel", "kind": "fmri", "source": "lebel", "subjects": ["UTS01"]}]
    with pytest.raises(ConfigError, match="'path' is a required property"):
        validate_config(cfg, SCHEMA)
    cfg["datasets"][0].update(path="data/ds003020", options={"tr": 2.0, "stories_x": []})
    with pytest.raises(ConfigError, match="stories_x"):
        validate_config(cfg, SCHEMA)
    cfg["datasets"][0].update(kind="meg", options={"tr": 2.0})
    with pytest.raises(ConfigError, match="datasets.0.kind"):
        validate_config(cfg, SCHEMA)


def test_hf_revisions_named_explicitly_need_no_listing(tmp_path, monkeypatch):
    from brainphase.sources import revisions, tokens_for

    monkeypatch.chdir(tmp_path)  # no resources/revisions cache here, and no network in tests
    model = {"name": "olmo", "source": "hf", "hf": {"repo_id": "allenai/OLMo-2-1124-7B", "family": "olmo2",
                                                   "revisions": ["stage1-step928646-tokens3896B",
                                                                 "stage1-step1000-tokens5B"]}}
    assert revisions(model) == ["stage1-step1000-tokens5B", "stage1-step928646-tokens3896B"]
    assert tokens_for(model, "stage1-step928646-tokens3896B") == 928_646 * 4_194_304
    model["hf"]["revisions"] = ["stage1-step1000-tokens5B", "latest"]
    with pytest.raises(ConfigError, match=r"\['latest'\] are not olmo2 checkpoint names"):
        revisions(model)


def test_probing_tasks_matter_only_when_probing_runs():
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["analyses"] = ["encoding"]
    cfg["models"] = cfg["models"][:1]
    cfg["evals"]["tasks"] = ["not_a_task_anywhere"]
    validate_config(cfg, SCHEMA)  # neither benchmarks nor probing run: their tasks are not checked
    cfg["analyses"] = ["evals"]
    with pytest.raises(ConfigError, match="not_a_task_anywhere"):
        validate_config(cfg, SCHEMA)
