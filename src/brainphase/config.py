"""Load and validate the workflow config against its JSON Schema.

Validation runs before any job; an error names the key path, what was expected
and what was found, so a typo in a study config stops the run with a fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import numpy as np
import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def _path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "<top level>"


def _describe(err: jsonschema.ValidationError) -> str:
    where = _path(err)
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        keys = ", ".join(f"{where}.{k}" if where != "<top level>" else k for k in extra)
        return f"unknown config key {keys}; allowed keys here: {', '.join(allowed)}"
    if v == "required":
        return f"config key {where}: {err.message}"
    if v == "type":
        return (f"config key {where}: expected {err.validator_value}, "
                f"got {type(err.instance).__name__} {err.instance!r}")
    if v == "enum":
        return f"config key {where}: {err.instance!r} is not one of {err.validator_value}"
    return f"config key {where}: {err.message}"


def validate_config(config: dict, schema_path: str | Path = SCHEMA, source: str = "config") -> dict:
    """Raise ConfigError listing every violation (key path + expectation), else return config."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    _drop_merged_variant_keys(config)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(f"invalid {source} (schema {schema_path}):\n{lines}")
    _check_semantics(config)
    return config


# Keys of each variant of a config block whose `source` picks the variant.
SAE_CORPUS_KEYS = {"toyworld": {"source", "stories_per_lang", "words", "seed"},
                   "file": {"source", "path", "text_column", "lang_column", "max_documents"}}


def _drop_merged_variant_keys(config: dict) -> None:
    """Forget the demo's keys of a block that a study switched to another variant.

    Snakemake merges ``--configfile`` over config/config.yaml key by key, so a
    study's ``sae.corpus: {source: file, path: ...}`` arrives with the demo's
    ``stories_per_lang`` still in it; only the chosen variant's keys are meant.
    """
    corpus = (config.get("sae") or {}).get("corpus")
    if isinstance(corpus, dict) and corpus.get("source") in SAE_CORPUS_KEYS:
        mine = SAE_CORPUS_KEYS[corpus["source"]]
        others = set().union(*SAE_CORPUS_KEYS.values()) - mine
        for key in set(corpus) & others:  # a typo belongs to no variant and is still reported
            del corpus[key]


def _check_semantics(config: dict) -> None:
    if "phases" in config["analyses"]:
        lacking = sorted({"encoding", "benchmarks", "probing"} - set(config["analyses"]))
        if lacking:
            raise ConfigError(f"config key analyses: phases needs {lacking} too; add them")
    names = [m["name"] for m in config["models"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"config key models: model names must be unique, got {names}")
    for m in config["models"]:
        if m["source"] == "train":
            t = m["train"]
            bad = [s for s in t["checkpoints"] if s > t["steps"]]
            if bad:
                raise ConfigError(
                    f"config key models[{m['name']}].train.checkpoints: steps {bad} exceed "
                    f"train.steps={t['steps']}; raise steps or drop those checkpoints")
    _check_task_names(config)
    if "sae" in config["analyses"]:
        _check_sae(config)
    if "crosscoder" in config["analyses"]:
        for m in config["models"]:
            layer = config["crosscoder"]["layer"]
            if m["source"] == "train" and layer > m["train"]["n_layers"]:
                raise ConfigError(f"config key crosscoder.layer: {layer} exceeds model {m['name']}'s "
                                  f"{m['train']['n_layers']} layers; pick 0..{m['train']['n_layers']}")
    dnames = [d["name"] for d in config["datasets"]]
    if len(set(dnames)) != len(dnames):
        raise ConfigError(f"config key datasets: dataset names must be unique, got {dnames}")
    for m in config["models"]:
        extra = sorted(set(m.get("analyses", [])) - set(config["analyses"]))
        if extra:
            raise ConfigError(f"config key models[{m['name']}].analyses: {extra} are not in the top-level "
                              f"analyses {config['analyses']}; add them there or drop them here")
    for d in config["datasets"]:
        shared = d.get("stimuli")
        if shared is not None and shared not in dnames:
            raise ConfigError(f"config key datasets[{d['name']}].stimuli: no dataset named {shared!r}; "
                              f"pick one of {dnames}")
    if "temporal" in config["analyses"]:
        _check_temporal(config)


def _check_temporal(config: dict) -> None:
    t = config["temporal"]
    if not any(d["kind"] == "meg" for d in config["datasets"]):
        raise ConfigError("config key analyses: temporal needs a time-resolved dataset (kind: meg) in datasets; "
                          "add one or drop temporal")
    if not t["tmin"] < t["tmax"]:
        raise ConfigError(f"config key temporal: tmin ({t['tmin']}) must be below tmax ({t['tmax']})")
    if t["baseline"] is not None:
        lo, hi = t["baseline"]
        if (lo is not None and lo < t["tmin"]) or (hi is not None and hi > t["tmax"]):
            raise ConfigError(f"config key temporal.baseline: {t['baseline']} must lie within "
                              f"[tmin, tmax] = [{t['tmin']}, {t['tmax']}]")


def _check_sae(config: dict) -> None:
    sae = config["sae"]
    for m in config["models"]:
        if m["source"] == "train" and sae["layer"] > m["train"]["n_layers"]:
            raise ConfigError(f"config key sae.layer: {sae['layer']} exceeds model {m['name']}'s "
                              f"{m['train']['n_layers']} layers (resid.0 is the embedding); pick 0..{m['train']['n_layers']}")
    if sae["site"] == "mlp" and sae["layer"] == 0:
        raise ConfigError("config key sae.layer: mlp sites start at layer 1")
    # Files (sae.corpus.path, sae.dictionary) are checked with every other input: brainphase.inputs.
    if abs(sum(sae["split"]) - 1) > 1e-6:
        raise ConfigError(f"config key sae.split: train/val/test fractions {sae['split']} must sum to 1")


DEMO_TASKS = ("toyfacts_en", "toyfacts_ja", "toyfacts")


def _check_task_names(config: dict) -> None:
    """Every benchmark task must be a demo task or known to lm-eval's registry (no download)."""
    analyses = set(config["analyses"])
    bench = config["benchmarks"]["tasks"] if analyses & {"benchmarks", "probing", "phases"} else []
    probe = config["probing"]["tasks"] if analyses & {"probing", "phases"} else []
    names = list(dict.fromkeys(bench + probe))
    bad_demo = [n for n in names if n.startswith("toyfacts") and n not in DEMO_TASKS]
    if bad_demo:
        raise ConfigError(f"config key benchmarks.tasks: unknown demo tasks {bad_demo}; "
                          f"the demo world provides {list(DEMO_TASKS)}")
    real = [n for n in names if not n.startswith("toyfacts")]
    include = config["benchmarks"].get("include_path") or []
    if real:
        # Importing lm-eval and indexing its ~15k tasks takes seconds: only when needed.
        from .benchmarks.harness import resolve_include_path, validate_task_names

        try:
            # The same directories the lm_eval and probe_stimuli jobs pass to lm-eval.
            validate_task_names(real, include_path=resolve_include_path(include) or None)
        except ValueError as err:
            raise ConfigError(f"config key benchmarks.tasks: {err}") from None
    shots = config["benchmarks"]["num_fewshot"]
    if isinstance(shots, dict) and names:
        stray = [k for k in shots if k != "default" and k not in names and k not in DEMO_TASKS]
        if stray:
            raise ConfigError(f"config key benchmarks.num_fewshot: {stray} are not in benchmarks.tasks or "
                              f"probing.tasks; fix the task names (or drop them)")
    covered = set(bench)
    if "toyfacts" in covered:  # the demo group runs its language tasks
        covered |= set(DEMO_TASKS)
    missing = [n for n in probe if n not in covered]
    if missing:
        raise ConfigError(f"config key probing.tasks: {missing} are not in benchmarks.tasks; "
                          "probing reads the items of benchmarked tasks")


def load_config(path: str | Path) -> dict:
    config = yaml.safe_load(Path(path).read_text())
    return validate_config(config, source=str(path))


def model_entry(config: dict, name: str) -> dict:
    for m in config["models"]:
        if m["name"] == name:
            return m
    raise ConfigError(f"model {name!r} is not in config key models; known: {[m['name'] for m in config['models']]}")


def dataset_entry(config: dict, name: str) -> dict:
    for d in config["datasets"]:
        if d["name"] == name:
            return d
    raise ConfigError(f"dataset {name!r} is not in config key datasets; known: {[d['name'] for d in config['datasets']]}")


def revisions(model: dict) -> list[str]:
    """Checkpoint names (the {step} wildcard) of a model, in training order."""
    if model["source"] == "train":
        return [f"step{s}" for s in model["train"]["checkpoints"]]
    if model["source"] == "local":
        from .checkpoints import CheckpointError, discover_local_steps

        loc = model["local"]
        wanted = loc.get("steps")
        if wanted is not None:
            # Planned checkpoints: a study is planned (and dry-run) before the run has written
            # them; the ones not on disk are listed as missing inputs and stop a real run.
            return [f"step{s}" for s in sorted(set(wanted))]
        try:
            found = discover_local_steps(loc["root"], loc.get("pattern", "step{step}"))
        except CheckpointError as err:
            raise ConfigError(f"config key models[{model['name']}].local.root: {err}; or list the planned "
                              "checkpoints in local.steps to plan the study before they exist") from None
        if not found:
            raise ConfigError(f"config key models[{model['name']}].local: no checkpoint folders matching "
                              f"{loc.get('pattern', 'step{step}')!r} with weights under {loc['root']}")
        return [f"step{s}" for s in found]
    if model["source"] == "hf":
        return hf_revisions(model)["name"].tolist()
    raise ConfigError(f"model {model['name']}: source {model['source']!r} is not supported yet")


REVISION_CACHE = "resources/revisions"  # relative to the working directory


def hf_revisions(model: dict):
    """The selected revisions of a Hugging Face model as a table (name, step, tokens, ...).

    The branch listing is read from ``resources/revisions/<owner>__<name>.tsv``
    when present, so dry runs need no network; otherwise listed once and cached.
    An explicit ``revisions`` list needs no listing: the names give the step.
    Tokens are always step x tokens per step (``hf.tokens_per_step``, else the
    published figure for the repository), never the rounded count in a name.
    """
    from .revisions import cache_path

    # Asked once per job while Snakemake builds the DAG (hundreds of times): computed once per
    # selection, working directory and state of the listing cache.
    listing = cache_path(model["hf"]["repo_id"], REVISION_CACHE)
    key = (json.dumps(model["hf"], sort_keys=True), os.getcwd(), listing.is_file() and listing.stat().st_mtime_ns)
    if key not in _HF_REVISIONS:
        _HF_REVISIONS[key] = _select_hf_revisions(model)
    return _HF_REVISIONS[key].copy()


_HF_REVISIONS: dict = {}


def _select_hf_revisions(model: dict):
    from .revisions import cache_path, list_revisions, revision_table, select_revisions

    hf = model["hf"]
    per_step = hf.get("tokens_per_step")
    try:
        if hf.get("revisions") and not cache_path(hf["repo_id"], REVISION_CACHE).is_file():
            # Named branches carry their own step: no listing, no network. A name the
            # repository lacks is caught by the download, which names repo and revision.
            table = revision_table(hf["family"], hf["revisions"], repo_id=hf["repo_id"], tokens_per_step=per_step)
            unparsed = sorted(set(hf["revisions"]) - set(table["name"]))
            if unparsed:
                raise ValueError(f"revisions {unparsed} are not {hf['family']} checkpoint names")
        else:
            table = list_revisions(hf["repo_id"], hf["family"], REVISION_CACHE, tokens_per_step=per_step)
        chosen = select_revisions(table, names=hf.get("revisions"), count=hf.get("count"),
                                  token_range=tuple(hf["token_range"]) if hf.get("token_range") else None,
                                  stage=hf.get("stage"))
    except (ValueError, OSError, RuntimeError) as err:  # bad selection or token count, unreadable cache, no network
        raise ConfigError(f"config key models[{model['name']}].hf: {err}") from None
    return chosen.reset_index(drop=True)


def local_checkpoint_dir(model: dict, revision: str) -> Path:
    """The training run's own folder of a local model's checkpoint ``step{N}``."""
    loc = model["local"]
    return Path(loc["root"]) / loc.get("pattern", "step{step}").format(step=int(revision.removeprefix("step")))


def threads_for(config: dict, rule: str, *fallbacks: str) -> int:
    """Threads of one rule's jobs: ``threads`` is a number for every rule, or a
    mapping ``{default: n, <rule>: n}`` (e.g. training on all cores while the
    many light jobs take one core each and run side by side). Per-model rules
    (``train_<model>``, ``activations_<model>``) fall back to their stage's key."""
    t = config["threads"]
    if isinstance(t, int):
        return t
    for name in (rule, *fallbacks):
        if name in t:
            return int(t[name])
    return int(t["default"])


def alphas(enc: dict) -> np.ndarray:
    a = enc["alphas"]
    return np.logspace(a["start"], a["stop"], a["num"])


def tokens_for(model: dict, revision: str) -> int:
    if model["source"] == "train":
        t = model["train"]
        return int(revision.removeprefix("step")) * t["batch_size"] * t["seq_len"]
    if model["source"] == "hf":
        # hf_revisions computes tokens as step x tokens per step, so tables and figures get exact counts.
        table = hf_revisions(model).set_index("name")
        if revision not in table.index:
            raise ConfigError(f"config key models[{model['name']}].hf: revision {revision!r} of "
                              f"{model['hf']['repo_id']} is not among the selected revisions; add it to hf.revisions")
        tokens = table.loc[revision, "tokens"]
        if tokens is None or tokens != tokens:
            raise ConfigError(f"config key models[{model['name']}].hf.tokens_per_step: revision {revision} of "
                              f"{model['hf']['repo_id']} has no token count; set tokens_per_step")
        return int(tokens)
    if model["source"] == "local":
        loc = model["local"]
        if loc.get("tokens_per_step") is not None:
            return int(revision.removeprefix("step")) * int(loc["tokens_per_step"])
        # Else the checkpoint folder's own brainphase.json (written by a trainer that knows its tokens).
        from .checkpoints import CheckpointError, read_checkpoint_metadata

        folder = local_checkpoint_dir(model, revision)
        try:
            tokens = read_checkpoint_metadata(folder).get("tokens")
        except CheckpointError:
            tokens = None
        if tokens is None:
            raise ConfigError(f"config key models[{model['name']}].local.tokens_per_step: not set, and {folder} has "
                              f"no brainphase.json with tokens; set tokens_per_step (batch size x sequence length)")
        return int(tokens)
    raise ConfigError(f"model {model['name']}: cannot count tokens for revision {revision}")

