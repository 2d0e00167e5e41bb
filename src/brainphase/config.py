"""Load and validate the workflow config against its JSON Schema.

Validation runs before any job; an error names the key path, what was expected
and what was found, so a typo in a study config stops the run with a fix.
"""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
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
    if v == "pattern" and err.validator_value in NAME_PATTERNS and isinstance(err.instance, str):
        safe = re.sub(r"[^A-Za-z0-9_-]+", "_", err.instance).strip("_")
        return (f"config key {where}: {err.instance!r} is not a safe name: {NAME_PATTERNS[err.validator_value]}; "
                f"rename it" + (f", e.g. {safe!r}" if safe else ""))
    return f"config key {where}: {err.message}"


# The schema's patterns for names that become path components of outputs, and what each allows.
NAME_PATTERNS = {
    "^(?!\\.)[A-Za-z0-9_.-]+$": "it names a folder of every output of the study, so it may hold letters, "
                                "digits, _ - and . but no /, and may not start with a dot (., .. or a hidden "
                                "folder would put outputs of different stages in one folder)",
    "^[A-Za-z0-9_-]+$": "it is the stem of the subject's files (<subject>.h5, <subject>.truth.parquet), so it "
                        "may hold letters, digits, _ and - only (no dot, no /)",
}


def validate_config(config: dict, schema_path: str | Path = SCHEMA, source: str = "config") -> dict:
    """Raise ConfigError listing every violation (key path + expectation), else return config."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    if "benchmarks" in config or "benchmarks" in (config.get("analyses") or []):
        raise ConfigError(f"invalid {source}: the lm-eval stage is now called `evals`; rename the config key "
                          "`benchmarks:` to `evals:` and `benchmarks` in `analyses` to `evals`")
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
    from .loaders.registry import BUILTIN_SOURCES, LOADERS

    for i, d in enumerate(config["datasets"]):
        if d["source"] not in BUILTIN_SOURCES and d["source"] not in LOADERS:
            raise ConfigError(f"config key datasets[{i}].source: {d['source']!r} is not a dataset source; known: "
                              f"{', '.join([*BUILTIN_SOURCES, *LOADERS])} (a new format: docs/loaders.md)")
    if "phases" in config["analyses"]:
        lacking = sorted({"encoding", "evals", "probing"} - set(config["analyses"]))
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
    dnames = [d["name"] for d in config["datasets"]]
    if len(set(dnames)) != len(dnames):
        raise ConfigError(f"config key datasets: dataset names must be unique, got {dnames}")
    for name in dnames:
        # A dataset's stimulus set shares results/stimuli/ and results/activations/ with these sets.
        if name == "sae_corpus" or name.startswith("probe_"):
            raise ConfigError(f"config key datasets[{name}].name: {name!r} is the name of a stimulus set the "
                              "workflow builds itself (sae_corpus, probe_<task>); rename the dataset")
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
    _check_sites(config)
    _check_layers(config)
    _check_latents(config)
    _check_trims(config)


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
    # Its layer against each model's depth: _check_layers.
    # Files (sae.corpus.path, sae.dictionary) are checked with every other input: brainphase.inputs.
    if abs(sum(sae["split"]) - 1) > 1e-6:
        raise ConfigError(f"config key sae.split: train/val/test fractions {sae['split']} must sum to 1")


def _runs(config: dict, analysis: str) -> list[dict]:
    """The models that run ``analysis`` (a model entry may run fewer analyses than the study)."""
    if analysis not in config["analyses"]:
        return []
    return [m for m in config["models"] if analysis in m.get("analyses", config["analyses"])]


def _check_sites(config: dict) -> None:
    """Sites read from the stimulus sets' activation caches must be among the cached sites."""
    sites = config["activations"]["sites"]
    for key, analysis in (("crosscoder.site", "crosscoder"), ("temporal.site", "temporal")):
        site = config[analysis]["site"]
        if _runs(config, analysis) and site not in sites:
            raise ConfigError(f"config key {key}: {site!r} is not among activations.sites {sites}, and {analysis} "
                              f"reads the activations cached at those sites; add {site!r} to activations.sites "
                              f"or set {key} to one of {sites}")


def _layer_count(model: dict) -> tuple[int, str] | None:
    """(blocks, where the count comes from) of a model, or None when nothing tells before its checkpoints load."""
    from .planning import KNOWN_SIZES, _local_size

    if model["source"] == "train":
        return model["train"]["n_layers"], f"models[{model['name']}].train.n_layers"
    if model["source"] == "hf":
        size = KNOWN_SIZES.get(model["hf"]["repo_id"])
        return (size.n_layers, f"the model card of {model['hf']['repo_id']}") if size else None
    if model["source"] == "local":
        loc = model["local"]
        size = _local_size(Path(loc["root"]), loc.get("pattern", "step{step}"))
        if size is not None:
            return size.n_layers, f"the config.json of its checkpoints under {loc['root']}"
        size = KNOWN_SIZES.get(loc.get("like", ""))
        return (size.n_layers, f"local.like {loc['like']}") if size else None
    return None


# resid.0 is the embedding output and resid.l the output of block l; mlp.l the MLP output of block l.
SITE_FIRST_LAYER = {"resid": 0, "mlp": 1}


def _check_layers(config: dict) -> None:
    """Every configured layer index against the layers each model that uses it has."""
    sites = config["activations"]["sites"]
    probe_site = config["probing"].get("site", "mlp")
    # (key, value, analysis, first valid layer, the sites meant, whether "best" is allowed)
    keys = [
        ("sae.layer", config["sae"]["layer"], "sae", SITE_FIRST_LAYER[config["sae"]["site"]],
         f"{config['sae']['site']} (sae.site)", False),
        ("crosscoder.layer", config["crosscoder"]["layer"], "crosscoder",
         SITE_FIRST_LAYER[config["crosscoder"]["site"]], f"{config['crosscoder']['site']} (crosscoder.site)", False),
        # The phase series takes the layer from the encoding table of every cached site: one of them must have it.
        ("phases.encoding_layer", config["phases"]["encoding_layer"], "phases",
         min(SITE_FIRST_LAYER[s] for s in sites), f"{'/'.join(sites)} (activations.sites)", True),
        ("phases.probing_layer", config["phases"]["probing_layer"], "phases", SITE_FIRST_LAYER[probe_site],
         f"{probe_site} (probing.site)", True),
        # The maps draw that layer of each cached site: all of them must have it.
        ("encoding.map_layer", config["encoding"]["map_layer"], "encoding",
         max(SITE_FIRST_LAYER[s] for s in sites), f"{'/'.join(sites)} (activations.sites, a map each)", True),
    ]
    for key, layer, analysis, first, what, best in keys:
        if isinstance(layer, str):  # "best"
            continue
        fix = " or 'best'" if best else ""
        if layer < first:
            raise ConfigError(f"config key {key}: {what} layers start at {first} (resid.0 is the embedding output, "
                              f"mlp layers are blocks 1..n); pick a layer from {first}{fix}")
        for m in _runs(config, analysis):
            count = _layer_count(m)
            if count is None:  # unknown until its first checkpoint is on disk: the job checks
                continue
            n, source = count
            if layer > n:
                raise ConfigError(f"config key {key}: layer {layer} is beyond model {m['name']}, which has {n} "
                                  f"layers ({source}); its {what} layers are {first}..{n}; pick a layer in "
                                  f"{first}..{n}{fix}")


def _check_latents(config: dict) -> None:
    """TopK keeps k latents of each row: k cannot exceed the latents there are."""
    from .planning import model_size

    sae = config["sae"]
    for m in _runs(config, "sae"):
        size = model_size(m)
        if size is None:
            continue
        latents = sae["expansion"] * size.d_model
        if sae["k"] > latents:
            raise ConfigError(f"config key sae.k: {sae['k']} exceeds the {latents} latents of model {m['name']}'s "
                              f"SAE (sae.expansion {sae['expansion']} x d_model {size.d_model}); pick k in "
                              f"1..{latents} or raise sae.expansion")
    # k_aux needs no check: the auxiliary loss takes min(k_aux, dead latents).
    cc = config["crosscoder"]
    if _runs(config, "crosscoder") and cc["k"] > cc["d_latent"]:
        raise ConfigError(f"config key crosscoder.k: {cc['k']} exceeds crosscoder.d_latent {cc['d_latent']}, the "
                          f"latents it picks from; pick k in 1..{cc['d_latent']} or raise crosscoder.d_latent")


def check_trim(lengths: dict[str, int], trim: int, key: str, where: str) -> None:
    """Raise ConfigError when trimming ``trim`` samples at each end of a run leaves nothing of it.

    ``lengths``: samples (TRs) per run; ``where``: the data the runs belong to, for the message.
    """
    short = sorted(r for r, n in lengths.items() if 2 * trim >= n)
    if short:
        shortest = min(lengths.values())
        raise ConfigError(f"config key {key}: {trim} TRs trimmed at each end leave nothing of run(s) "
                          f"{short[:5]}{' ...' if len(short) > 5 else ''} of {where} (shortest run: {shortest} TRs); "
                          f"valid values are 0..{max(0, (shortest - 1) // 2)}: lower {key}")


def _brain_run_lengths(path: Path, runs: set | None) -> dict[str, int] | None:
    """TRs per run of a brain file (header only), restricted to ``runs``; None when unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {name: int(g["data"].shape[0]) for name, g in f["runs"].items() if runs is None or name in runs}
    except (OSError, KeyError):  # a broken file is read_brain's to report, with its own fix
        return None


def _check_trims(config: dict) -> None:
    """Trims against the runs of brain files already on disk; the jobs check the others."""
    keys = [(k, config[a]["trim"]) for k, a in (("encoding.trim", "encoding"), ("crosscoder.trim", "crosscoder"))
            if _runs(config, a)]
    if not keys:
        return
    results = Path(config["results"])
    for d in config["datasets"]:
        # Simulated brain files are rebuilt when the simulation's keys change, so one on disk may be stale.
        if d["kind"] != "fmri" or d["source"] == "toyworld":
            continue
        stim = results / "stimuli" / f"{d.get('stimuli', d['name'])}.parquet"
        runs = None
        if stim.is_file():
            import pyarrow.parquet as pq

            try:
                runs = set(pq.read_table(stim, columns=["run"]).column("run").to_pylist())
            except Exception:  # unreadable: read_stimuli reports it in the job
                runs = None
        for sub in d["subjects"]:
            path = results / "brain" / d["name"] / f"{sub}.h5"
            lengths = _brain_run_lengths(path, runs) if path.is_file() else None
            if lengths:
                for key, trim in keys:
                    check_trim(lengths, trim, key, f"dataset {d['name']} subject {sub} ({path})")


DEMO_TASKS = ("toyfacts_en", "toyfacts_ja", "toyfacts")


def _check_task_names(config: dict) -> None:
    """Every benchmark task must be a demo task or known to lm-eval's registry (no download)."""
    analyses = set(config["analyses"])
    bench = config["evals"]["tasks"] if analyses & {"evals", "probing", "phases"} else []
    probe = config["probing"]["tasks"] if analyses & {"probing", "phases"} else []
    names = list(dict.fromkeys(bench + probe))
    bad_demo = [n for n in names if n.startswith("toyfacts") and n not in DEMO_TASKS]
    if bad_demo:
        raise ConfigError(f"config key evals.tasks: unknown demo tasks {bad_demo}; "
                          f"the demo world provides {list(DEMO_TASKS)}")
    real = [n for n in names if not n.startswith("toyfacts")]
    include = config["evals"].get("include_path") or []
    if real:
        # Importing lm-eval and indexing its ~15k tasks takes seconds: only when needed.
        from .evals.harness import resolve_include_path, validate_task_names

        try:
            # The same directories the lm_eval and probe_stimuli jobs pass to lm-eval.
            validate_task_names(real, include_path=resolve_include_path(include) or None)
        except ValueError as err:
            raise ConfigError(f"config key evals.tasks: {err}") from None
    shots = config["evals"]["num_fewshot"]
    if isinstance(shots, dict) and names:
        stray = [k for k in shots if k != "default" and k not in names and k not in DEMO_TASKS]
        if stray:
            raise ConfigError(f"config key evals.num_fewshot: {stray} are not in evals.tasks or "
                              f"probing.tasks; fix the task names (or drop them)")
    covered = set(bench)
    if "toyfacts" in covered:  # the demo group runs its language tasks
        covered |= set(DEMO_TASKS)
    missing = [n for n in probe if n not in covered]
    if missing:
        raise ConfigError(f"config key probing.tasks: {missing} are not in evals.tasks; "
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


def threads_for(config: dict, rule: str, *fallbacks: str) -> int:
    """Threads of one rule's jobs: ``threads`` is a number for every rule, or a
    mapping ``{default: n, <rule>: n}`` (e.g. training on all cores while the
    many light jobs take one core each and run side by side). A per-model key
    (``train_<model>``, ``activations_<model>``) sets one model's jobs of a stage
    and falls back to the stage's key."""
    t = config["threads"]
    if isinstance(t, int):
        return t
    for name in (rule, *fallbacks):
        if name in t:
            return int(t[name])
    return int(t["default"])
