"""Disk and memory a study will need, printed with its dry run, before anything is launched.

The numbers are arithmetic on sizes the config already implies: a checkpoint
is parameters × bytes per parameter as published; an activation cache holds,
per stimulus unit, one float16 vector of ``d_model`` per layer and site
(tokens × ``d_model`` for the SAE's token-level corpus, one layer). A stimulus
set not yet loaded has an unknown unit count; once its
``results/stimuli/<set>.parquet`` exists, its row count is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

GB = 1e9


@dataclass(frozen=True)
class ModelSize:
    params: int
    n_layers: int
    d_model: int
    bytes_per_param: int  # as published on disk: 2 for float16/bfloat16, 4 for float32
    context: int = 2048  # positions read at once: config.json max_position_embeddings


# Public model cards (parameters, layers, width, storage precision of the checkpoints).
KNOWN_SIZES = {
    "EleutherAI/pythia-70m": ModelSize(70_426_624, 6, 512, 2),
    "EleutherAI/pythia-160m": ModelSize(162_322_944, 12, 768, 2),
    "EleutherAI/pythia-410m": ModelSize(405_334_016, 24, 1024, 2),
    "EleutherAI/pythia-1b": ModelSize(1_011_781_632, 16, 2048, 2),
    "EleutherAI/pythia-1.4b": ModelSize(1_414_647_808, 24, 2048, 2),
    "EleutherAI/pythia-2.8b": ModelSize(2_775_208_960, 32, 2560, 2),
    "EleutherAI/pythia-6.9b": ModelSize(6_857_302_016, 32, 4096, 2),
    "EleutherAI/pythia-12b": ModelSize(11_846_072_320, 36, 5120, 2),
    # OLMo-2 and llm-jp-3 config.json: max_position_embeddings 4096; Pythia and Amber 2048.
    "allenai/OLMo-2-0425-1B": ModelSize(1_484_916_736, 16, 2048, 4, 4096),
    "allenai/OLMo-2-1124-7B": ModelSize(7_298_617_344, 32, 4096, 4, 4096),
    "allenai/OLMo-2-1124-13B": ModelSize(13_716_198_400, 40, 5120, 4, 4096),
    "LLM360/Amber": ModelSize(6_738_415_616, 32, 4096, 2),
    # llm-jp/llm-jp-3-1.8b config.json: Llama, hidden 2048, 24 layers, intermediate 7168,
    # vocab 99584, untied embeddings, bfloat16: 2·99584·2048 + 24·(4·2048² + 3·2048·7168 + 2·2048) + 2048.
    "llm-jp/llm-jp-3-1.8b": ModelSize(1_867_614_208, 24, 2048, 2, 4096),
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
# load_model's "auto" precision on CPU is float32 whatever the checkpoint's
# (runtime.resolve_dtype); the dry-run plan is of CPU host memory.
CPU_BYTES_PER_PARAM = 4


def _local_size(root: Path, pattern: str) -> ModelSize | None:
    from .contracts.checkpoint import discover_local_steps

    try:
        steps = discover_local_steps(root, pattern)
    except Exception:
        return None
    if not steps:
        return None
    folder = root / pattern.format(step=steps[-1])
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    n_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    d, n_layers = cfg.get("hidden_size"), cfg.get("num_hidden_layers")
    if not (d and n_layers):
        return None
    params = cfg.get("num_parameters") or int(12 * n_layers * d * d + 2 * cfg.get("vocab_size", 0) * d)
    return ModelSize(int(params), int(n_layers), int(d), max(1, round(n_bytes / params)) if n_bytes else 2,
                     int(cfg.get("max_position_embeddings") or 2048))


def model_size(model: dict) -> ModelSize | None:
    """Size of one configured model, or None when the config does not tell."""
    if model["source"] == "train":
        t = model["train"]
        d, n_layers, v = t["d_model"], t["n_layers"], t["vocab_size"]
        # Llama block: attention 4 d^2, gated MLP 3 d d_ff; embeddings untied.
        params = n_layers * (4 * d * d + 3 * d * t["d_ff"]) + 2 * v * d
        return ModelSize(params, n_layers, d, 4, t["max_position"])
    if model["source"] == "hf":
        return KNOWN_SIZES.get(model["hf"]["repo_id"])
    if model["source"] == "local":
        loc = model["local"]
        # The run's own config.json once a checkpoint exists; before that, the published model it follows.
        return _local_size(Path(loc["root"]), loc.get("pattern", "step{step}")) or KNOWN_SIZES.get(loc.get("like", ""))
    return None


CHARS_PER_TOKEN = 4  # English BPE; a token-level corpus is sized from its characters


# Forward-pass tokens per stimulus unit of word pooling (a story's word) in a
# BPE vocabulary; prompts and annotation texts are sized from their characters.
TOKENS_PER_WORD = 1.5


@dataclass(frozen=True)
class StimulusSize:
    units: int
    """Rows of the set's activation cache: words, prompts, annotation texts, or tokens (``token`` pooling)."""
    tokens: int
    """Tokens the model reads to cache the set (every prompt read whole)."""
    source: str
    """Where the numbers come from: the built set, the dataset's files, or the config's estimate."""


def stimulus_size(stimset: str, config: dict, results: str | Path = "results",
                  pooling: str = "word") -> StimulusSize | None:
    """Units and forward-pass tokens of a stimulus set, or None while nothing tells.

    From the built set (``results/stimuli/<set>.parquet``) when it exists; else
    from the dataset's own files (LeBel's TextGrids) or the generated world's
    settings; else from ``plan_stimuli.<set>`` of the config, an estimate.
    """
    path = Path(results) / "stimuli" / f"{stimset}.parquet"
    if path.is_file():
        import pyarrow.parquet as pq

        try:
            if pooling in ("token", "last", "mean"):  # texts read whole: sized by their characters
                text = pq.read_table(path, columns=["text"]).column("text").to_pylist()
                chars = int(sum(len(t or "") for t in text) / CHARS_PER_TOKEN)
                return StimulusSize(chars if pooling == "token" else len(text), chars, str(path))
            rows = pq.ParquetFile(path).metadata.num_rows
            return StimulusSize(rows, int(rows * TOKENS_PER_WORD), str(path))
        except Exception:
            return None
    units = _configured_units(stimset, config)
    if units is not None:
        tokens = units if pooling == "token" else int(units * TOKENS_PER_WORD)
        return StimulusSize(units, tokens, f"the {stimset} set's sources")
    estimate = (config.get("plan_stimuli") or {}).get(stimset)
    if estimate:
        return StimulusSize(int(estimate["units"]), int(estimate["tokens"]),
                            f"plan_stimuli.{stimset} of the config (an estimate)")
    return None


def stimulus_units(stimset: str, config: dict, results: str | Path = "results", pooling: str = "word") -> int | None:
    """Units of a stimulus set (tokens for ``token`` pooling), or None while unknown (see :func:`stimulus_size`)."""
    size = stimulus_size(stimset, config, results, pooling)
    return None if size is None else size.units


def _configured_units(stimset: str, config: dict) -> int | None:
    """Units of a set not yet built, from the data on disk or the generated world's settings."""
    for d in config["datasets"]:
        if d["name"] == stimset and d["source"] == "lebel":
            return _lebel_words(Path(d["path"]))
        if d["name"] == stimset and d["source"] == "toyworld":
            sim = d["simulate"]
            return (sim["stories_train"] + sim["stories_test"]) * sim["words_per_story"]
    if stimset == "sae_corpus" and config["sae"]["corpus"]["source"] == "toyworld":
        c = config["sae"]["corpus"]
        # Tokens, not words: about 1.5 tokens a word in the demo's BPE.
        return int(c["stories_per_lang"] * len(config["world"]["corpus"]["languages"]) * sum(c["words"]) / 2 * 1.5)
    return None


def _lebel_words(root: Path) -> int | None:
    """Words of every story whose TextGrid is on disk: the stimulus set before it is built."""
    grids = sorted((root / "derivative" / "TextGrids").glob("*.TextGrid"))
    if not grids:
        return None
    from .loaders.textgrid import word_intervals

    try:
        return int(sum(len(word_intervals(g)) for g in grids))
    except Exception:  # a broken TextGrid is the loader's error to report, not the plan's
        return None


def activation_bytes(size: ModelSize, units: int, pooling: str, n_sites: int) -> int:
    """Bytes of one checkpoint's cache of one stimulus set (float16)."""
    if pooling == "token":  # the SAE corpus keeps one site and layer per token
        return units * size.d_model * 2
    return units * n_sites * (size.n_layers + 1) * size.d_model * 2


def plan_table(config: dict, steps: dict[str, list[str]], stimsets: dict[str, list[tuple[str, str]]],
               results: str | Path = "results") -> pd.DataFrame:
    """One row per model: checkpoints, sizes on disk and in memory (GB; NaN where unknown).

    ``steps``: model -> its checkpoint names; ``stimsets``: model -> (stimulus set, pooling)
    of every set its activation jobs cache.
    """
    rows = []
    n_sites = len(config["activations"]["sites"])
    for m in config["models"]:
        name = m["name"]
        size = model_size(m)
        n = len(steps[name])
        units = {s: stimulus_units(s, config, results, pool) for s, pool in stimsets[name]}
        act = None
        if size is not None and all(u is not None for u in units.values()):
            # Probe sets keep only probing.site; the others every configured site.
            act = sum(activation_bytes(size, units[s], pool, 1 if s.startswith("probe_") else n_sites)
                      for s, pool in stimsets[name]) / GB
        ckpt = size.params * size.bytes_per_param / GB if size else None
        rows.append({
            "model": name, "source": m["source"], "checkpoints": n,
            "params_M": size.params / 1e6 if size else None, "layers": size.n_layers if size else None,
            "d_model": size.d_model if size else None, "checkpoint_GB": ckpt,
            # Downloads are temp(): each lives until its checkpoint's last job, not all at once.
            "downloads_total_GB": ckpt * n if ckpt is not None and m["source"] == "hf" else 0.0,
            "activations_per_checkpoint_GB": act, "activations_total_GB": act * n if act is not None else None,
            "gpu_memory_GB": size.params * 2 / GB * 1.2 if size else None,  # float16 weights + 20 % working memory
            "unknown_sets": ", ".join(s for s, u in units.items() if u is None),
        })
    return pd.DataFrame(rows)


def dry_run_requested(argv: list[str]) -> bool:
    """Whether a Snakemake command line asks for a dry run (``-n``, ``-np``, ``--dry-run``, ``--dryrun``)."""
    for arg in argv[1:]:
        if arg in ("--dry-run", "--dryrun", "--just-print"):
            return True
        if arg.startswith("-") and not arg.startswith("--") and "n" in arg[1:] and arg[1:].isalpha():
            return True
    return False


# Options after which Snakemake reports, draws or cleans up but runs no job.
_NO_JOBS = ("--lint", "--rulegraph", "--dag", "--d3dag", "--filegraph", "--summary", "--detailed-summary",
            "--list", "-l", "--list-rules", "--list-target-rules", "--lt", "--list-changes", "--lc",
            "--report", "--unlock", "--cleanup-metadata", "--cm", "--version", "-v", "--help", "-h",
            "--containerize", "--export-cwl", "--print-compilation", "--archive", "--delete-all-output",
            "--delete-temp-output", "--conda-create-envs-only", "--conda-cleanup-envs", "--list-conda-envs",
            "--generate-unit-tests", "--debug-dag-only")


def runs_jobs(argv: list[str]) -> bool:
    """Whether a Snakemake command line will execute jobs (not a dry run, report, graph or cleanup)."""
    if dry_run_requested(argv):
        return False
    return not any(a.split("=")[0] in _NO_JOBS or a.startswith("--list") for a in argv[1:])


STUDY_MARK = ".brainphase-study.json"


def claim_results_folder(results: str | Path, config: dict) -> None:
    """Record which study writes ``results``; refuse a study that shares nothing with the recorded one.

    Two studies in one clone must not overwrite each other's tables. A study that
    adds a model or a dataset to itself still shares its other models, so only a
    config with no model in common with the folder's study is refused (the usual
    slip: a new study config without its own ``results`` key; datasets are no
    guide, as studies of different models share LeBel's).
    """
    from .io import write_text

    mark = Path(results) / STUDY_MARK
    mine = {"models": sorted(m["name"] for m in config["models"]),
            "datasets": sorted(d["name"] for d in config["datasets"])}
    if mark.is_file():
        try:
            theirs = json.loads(mark.read_text())
        except ValueError:
            theirs = {}
        if theirs and not set(theirs.get("models", [])) & set(mine["models"]):
            raise ValueError(
                f"config key results: {results}/ holds another study's results (models {theirs.get('models')}, "
                f"datasets {theirs.get('datasets')}); this config has models {mine['models']} and datasets "
                f"{mine['datasets']}. Give the study a folder of its own (e.g. `results: results/<study>` in its "
                f"config), or remove {mark} if the old results may be overwritten")
        mine = {k: sorted(set(mine[k]) | set(theirs.get(k, []))) for k in mine}
    mark.parent.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps(mine, indent=1) + "\n", mark)


def _fmt(x, unit="") -> str:
    if x is None or x != x:
        return "?"
    if unit == " GB" and x < 1:
        return f"{x * 1e3:,.1f} MB"
    return f"{x:,.1f}{unit}" if isinstance(x, float) else f"{x:,}{unit}"


def format_plan(table: pd.DataFrame, results: str | Path = "results") -> str:
    """The plan as the few lines a dry run prints."""
    lines = ["brainphase plan (estimates; GB = 1e9 bytes):"]
    for r in table.to_dict("records"):
        lines.append(
            f"  {r['model']} ({r['source']}): {r['checkpoints']} checkpoints of {_fmt(r['params_M'])} M params "
            f"({_fmt(r['layers'])} layers x {_fmt(r['d_model'])}); checkpoint {_fmt(r['checkpoint_GB'], ' GB')}"
            + (f", downloads {_fmt(r['downloads_total_GB'], ' GB')} in all (deleted after use)"
               if r["source"] == "hf" else "")
            + f"; activation cache {_fmt(r['activations_per_checkpoint_GB'], ' GB')} per checkpoint, "
            f"{_fmt(r['activations_total_GB'], ' GB')} in all; GPU memory ~{_fmt(r['gpu_memory_GB'], ' GB')}")
        if r["unknown_sets"]:
            lines.append(f"    units of {r['unknown_sets']} unknown until loaded: build "
                         f"{results}/stimuli/<set>.parquet first (e.g. `snakemake {results}/stimuli/<set>.parquet`) "
                         "and dry-run again for the cache size")
    return "\n".join(lines)
