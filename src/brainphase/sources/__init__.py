"""Where a model's checkpoints come from: trained here (``train``), a local training run (``local``) or the Hugging Face hub (``hf``).

Each source answers the same questions for the workflow: which checkpoints
(the ``{step}`` wildcard, in training order), how many tokens each has seen,
and where a local run keeps its folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import ConfigError


def revisions(model: dict) -> list[str]:
    """Checkpoint names (the {step} wildcard) of a model, in training order."""
    if model["source"] == "train":
        return [f"step{s}" for s in model["train"]["checkpoints"]]
    if model["source"] == "local":
        from ..checkpoints import CheckpointError, discover_local_steps

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
    from ..revisions import cache_path

    # Asked once per job while Snakemake builds the DAG (hundreds of times): computed once per
    # selection, working directory and state of the listing cache.
    listing = cache_path(model["hf"]["repo_id"], REVISION_CACHE)
    key = (json.dumps(model["hf"], sort_keys=True), os.getcwd(), listing.is_file() and listing.stat().st_mtime_ns)
    if key not in _HF_REVISIONS:
        _HF_REVISIONS[key] = _select_hf_revisions(model)
    return _HF_REVISIONS[key].copy()


_HF_REVISIONS: dict = {}


def _select_hf_revisions(model: dict):
    from ..revisions import cache_path, list_revisions, revision_table, select_revisions

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
        from ..checkpoints import CheckpointError, read_checkpoint_metadata

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
