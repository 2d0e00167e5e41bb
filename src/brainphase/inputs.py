"""The files a study needs before its first job, and where to get each one that is missing.

A lab plans a study before downloading tens of gigabytes: a dry run must build
the whole DAG with nothing on disk, and list what is missing instead of
stopping at the first absent file. A real run with inputs missing stops before
any job, with the same list. Checkpoints downloaded by the workflow itself
(``source: hf``) are not inputs: their download jobs are part of the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RequiredInput:
    key: str  # the config key that names it
    path: str
    what: str
    how: str  # where to get it


def _lebel(d: dict) -> list[RequiredInput]:
    root = Path(d["path"])
    key = f"datasets[{d['name']}].path"
    how = ("OpenNeuro ds003020 derivatives: `datalad install https://github.com/OpenNeuroDatasets/ds003020.git "
           f"{root}` then `datalad get` derivative/respdict.json, derivative/TextGrids and "
           "derivative/preprocessed_data/<subject> (or `aws s3 sync --no-sign-request "
           f"s3://openneuro.org/ds003020/derivative {root}/derivative`)")
    deriv = root / "derivative"
    need = [(deriv / "respdict.json", "story lengths in TRs"), (deriv / "TextGrids", "word timings per story")]
    need += [(deriv / "preprocessed_data" / s, f"responses of subject {s}") for s in d["subjects"]]
    return [RequiredInput(key, str(p), what, how) for p, what in need]


def _bids(d: dict) -> list[RequiredInput]:
    root = Path(d["path"])
    key = f"datasets[{d['name']}].path"
    how = f"download the BIDS dataset into {root} (e.g. `openneuro-py download` or datalad) or fix the path"
    need = [RequiredInput(key, str(root), "BIDS root", how)]
    need += [RequiredInput(key, str(root / f"sub-{s.removeprefix('sub-')}"), f"recordings of subject {s}", how)
             for s in d["subjects"]]
    return need


def _local_model(m: dict, planned_steps: list[str]) -> list[RequiredInput]:
    from .sources import local_checkpoint_dir

    key = f"models[{m['name']}].local.root"
    how = ("write the training run's checkpoints there in Hugging Face format (config.json, tokenizer, "
           "weights), or fix local.root / local.pattern")
    return [RequiredInput(key, str(local_checkpoint_dir(m, step)), f"checkpoint {step} of {m['name']}", how)
            for step in planned_steps]


def required_inputs(config: dict, planned_steps: dict[str, list[str]] | None = None) -> list[RequiredInput]:
    """Every user-provided file or folder the configured analyses read.

    ``planned_steps``: model name -> its checkpoint names, for local training runs.
    """
    analyses = set(config["analyses"])
    out: list[RequiredInput] = []
    for d in config["datasets"]:
        if d["source"] == "lebel":
            out += _lebel(d)
        elif d["source"] in ("bids_fmri", "meg_bids"):
            out += _bids(d)
        elif d["source"] == "files":
            # Stimuli and brain files written by the user into the results tree.
            pass
    for m in config["models"]:
        if m["source"] == "local":
            out += _local_model(m, (planned_steps or {}).get(m["name"], []))
    sae = config.get("sae") or {}
    if "sae" in analyses:
        corpus = sae.get("corpus") or {}
        if corpus.get("source") == "file":
            out.append(RequiredInput("sae.corpus.path", corpus["path"], "the SAE's text corpus",
                                     "any text table with a `text` column (parquet, CSV or JSONL), e.g. a "
                                     "WikiText-103 or OpenWebText sample; or fix sae.corpus.path"))
        if sae.get("dictionary"):
            out.append(RequiredInput("sae.dictionary", sae["dictionary"], "the concept dictionary of the SAE "
                                     "granularity labels", "a table of synonym/translation pairs; or drop "
                                     "sae.dictionary"))
    for i, p in enumerate((config.get("evals") or {}).get("include_path") or []):
        out.append(RequiredInput(f"evals.include_path[{i}]", p, "local lm-eval task definitions",
                                 "the folder holding the task YAML files; or fix the path"))
    return out


def _exists(r: RequiredInput) -> bool:
    if r.key.startswith("evals.include_path"):
        # Task folders shipped with the repository resolve from any working directory.
        from .evals.harness import resolve_include_path

        try:
            return bool(resolve_include_path([r.path]))
        except ValueError:
            return False
    return Path(r.path).exists()


def missing_inputs(config: dict, planned_steps: dict[str, list[str]] | None = None) -> list[RequiredInput]:
    """The required inputs not on disk (relative paths are read from the working directory)."""
    return [r for r in required_inputs(config, planned_steps) if not _exists(r)]


def format_missing(missing: list[RequiredInput]) -> str:
    """The list a dry run prints and a real run stops with: each path, its config key and where to get it."""
    if not missing:
        return "brainphase inputs: every input the study reads is on disk"
    lines = [f"brainphase inputs: {len(missing)} missing (the DAG is planned as if they were there):"]
    hows: dict[str, list[str]] = {}
    for r in missing:
        lines.append(f"  - {r.path} ({r.what}; config key {r.key})")
        hows.setdefault(r.how, []).append(r.key)
    lines.append("  where to get them:")
    for how, keys in hows.items():
        lines.append(f"    {', '.join(dict.fromkeys(keys))}: {how}")
    return "\n".join(lines)
