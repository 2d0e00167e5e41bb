"""Choosing the checkpoints of a public training run from its Hugging Face branches.

A public run publishes its checkpoints as git branches of one Hugging Face
repository. This module gathers a repository's branches into a table (name,
step, tokens, stage; the branch listing is cached as TSV, so an offline machine
needs no network), picks the checkpoints an analysis should follow (an explicit
list, a token range, or a log-spaced subset), and answers that selection for a
model config entry (:func:`hf_revisions`). Branch names are parsed by
:mod:`brainphase.sources.families`. :func:`list_revisions` is the only function
here that may touch the network.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from brainphase.config import ConfigError
from brainphase.io import atomic_path
from brainphase.sources.families import Revision, family_parser, resolve_tokens_per_step, unknown_olmo2_batch

logger = logging.getLogger(__name__)

COLUMNS = ("name", "step", "tokens", "tokens_estimated", "stage")
REVISION_CACHE = "resources/revisions"  # relative to the working directory

# ---------------------------------------------------------------- tables


def _stage_key(stage) -> tuple:
    """Order of training stages: none/stage1, then stage2-ingredient1, -2, …; unknown stages last by name."""
    if stage is None or (isinstance(stage, float) and math.isnan(stage)) or stage is pd.NA:
        return (0, 0, "")
    m = re.fullmatch(r"stage(\d+)(?:-ingredient(\d+))?", stage)
    if m:
        return (int(m.group(1)), int(m.group(2) or 0), "")
    return (math.inf, 0, stage)


def _is_alias(family: str, name: str) -> bool:
    # A name that repeats a checkpoint also published under its canonical name.
    return name == "main" or (family == "olmo2" and not name.startswith("stage"))


def _frame(revisions: list[Revision]) -> pd.DataFrame:
    return pd.DataFrame({
        "name": pd.Series([r.name for r in revisions], dtype=object),
        "step": pd.Series([r.step for r in revisions], dtype="int64"),
        "tokens": pd.Series([r.tokens for r in revisions], dtype="Int64"),
        "tokens_estimated": pd.Series([r.tokens_estimated for r in revisions], dtype=bool),
        "stage": pd.Series([r.stage for r in revisions], dtype=object),
    })


def revision_table(family: str, names: Iterable[str], *, repo_id: str | None = None,
                   tokens_per_step: int | None = None) -> pd.DataFrame:
    """Table (name, step, tokens, tokens_estimated, stage) of the checkpoint branches among ``names``.

    Rows are sorted by training stage, then step. Names that are no checkpoint
    (``main`` of Pythia, feature branches …) are dropped. When one checkpoint is
    published twice (Amber's ``main`` next to ``ckpt_359``; an OLMo-2 branch
    with and without its ``stage1-`` prefix) only the canonical name is kept.
    Tokens are computed from the step (see :func:`parse_revision` for ``repo_id``
    and ``tokens_per_step``), never taken from a stored table.
    """
    parse = family_parser(family)
    per_step = resolve_tokens_per_step(family, repo_id, tokens_per_step)
    parsed = {r.name: r for r in (parse(str(n), per_step, repo_id) for n in names) if r is not None}
    ordered = sorted(parsed.values(), key=lambda r: (_stage_key(r.stage), r.step, _is_alias(family, r.name), r.name))
    kept, seen = [], set()
    for r in ordered:
        if (r.stage, r.step) in seen:
            logger.debug("%s: %s repeats step %d of stage %s; dropped", family, r.name, r.step, r.stage)
            continue
        seen.add((r.stage, r.step))
        kept.append(r)
    return _frame(kept)


def revisions_of(table: pd.DataFrame) -> list[Revision]:
    """The rows of a revision table as :class:`Revision` objects."""
    return [
        Revision(str(row.name), int(row.step), None if pd.isna(row.tokens) else int(row.tokens),
                 bool(row.tokens_estimated), None if pd.isna(row.stage) else str(row.stage))
        for row in table.itertuples(index=False)
    ]


# ---------------------------------------------------------------- selection


def _log_spaced_positions(steps: list[int], count: int) -> list[int]:
    """Positions of ``count`` rows of ascending ``steps``, log-spaced; first and last always kept."""
    n = len(steps)
    if count >= n:
        return list(range(n))
    chosen = {0, n - 1}
    positive = [i for i in range(n) if steps[i] > 0]
    # Step 0 (if present) is the first row and is kept; the other picks are spread in log(step).
    k = count - (1 if steps[0] <= 0 else 0)  # picks among positive steps, including the last
    lo, hi = steps[positive[0]], steps[-1]
    if k <= 1 or lo == hi:
        return sorted(chosen)
    chosen.add(positive[0])
    targets = [math.log(lo) + (math.log(hi) - math.log(lo)) * j / (k - 1) for j in range(1, k - 1)]
    for t in targets:
        # Nearest revision in log(step) not already taken; ties go to the smaller step.
        best = min((i for i in positive if i not in chosen), key=lambda i: (abs(math.log(steps[i]) - t), steps[i]))
        chosen.add(best)
    return sorted(chosen)


def select_revisions(
    table: pd.DataFrame,
    *,
    names: Iterable[str] | None = None,
    count: int | None = None,
    token_range: tuple[float | None, float | None] | None = None,
    stage: str | None = None,
) -> pd.DataFrame:
    """Rows of a :func:`revision_table` to analyse.

    - ``names``: exactly these branches (an unknown name raises, listing near
      matches); cannot be combined with the other selectors.
    - ``stage``: keep one training stage (e.g. ``"stage1"``) first.
    - ``token_range=(lo, hi)``: tokens within ``[lo, hi]``, inclusive; either
      bound may be ``None``. Rows with unknown tokens are dropped.
    - ``count``: ``count`` rows log-spaced over the remaining steps: the first
      and the last row are always kept (so step 0 when present), and each
      log-spaced target takes the nearest revision not yet taken, so there
      are no duplicates and exactly ``min(count, rows)`` come back.

    Applied in the order stage → token_range → count. The result keeps the
    table's order and a fresh index.
    """
    table = table.reset_index(drop=True)
    if names is not None:
        if count is not None or token_range is not None or stage is not None:
            raise ValueError("select_revisions: give either names, or count/token_range/stage, not both")
        names = list(dict.fromkeys(str(n) for n in names))
        known = list(table["name"])
        missing = [n for n in names if n not in set(known)]
        if missing:
            hints = "; ".join(f"{n!r} (near: {', '.join(difflib.get_close_matches(n, known, n=5, cutoff=0.5)) or 'none'})"
                              for n in missing)
            raise ValueError(f"revisions not found among the {len(known)} checkpoints of the table: {hints}. "
                             f"Fix: use branch names exactly as listed by list_revisions()")
        return table[table["name"].isin(names)].reset_index(drop=True)

    if stage is not None:
        stages = sorted({s for s in table["stage"] if s is not None and not pd.isna(s)}, key=_stage_key)
        if stage not in stages:
            raise ValueError(f"stage {stage!r} not in the table; stages present: {stages or 'none'}")
        table = table[table["stage"] == stage].reset_index(drop=True)

    if token_range is not None:
        lo, hi = token_range
        tokens = table["tokens"]
        keep = tokens.notna()
        if lo is not None:
            keep &= tokens >= lo
        if hi is not None:
            keep &= tokens <= hi
        selected = table[keep.fillna(False).astype(bool)].reset_index(drop=True)
        if selected.empty:
            known = tokens.dropna()
            span = f"{known.min():,}…{known.max():,}" if len(known) else "unknown"
            raise ValueError(f"no revision has tokens within {token_range}; the table spans {span} tokens. "
                             f"Fix: widen token_range")
        table = selected

    if count is not None:
        if count < 2:
            raise ValueError(f"count must be >= 2 (the first and the last revision are always kept), got {count}")
        stages = {None if pd.isna(s) else s for s in table["stage"]}
        if len(stages) > 1:
            raise ValueError(f"count: the table mixes training stages {sorted(stages, key=_stage_key)} whose steps "
                             f"restart from 0; pass stage= to select within one stage")
        table = table.sort_values("step", kind="stable").reset_index(drop=True)
        table = table.iloc[_log_spaced_positions([int(s) for s in table["step"]], count)].reset_index(drop=True)
    return table


# ---------------------------------------------------------------- listing (the only network access)


def cache_path(repo_id: str, cache_dir: str | os.PathLike) -> Path:
    """``cache_dir/<owner>__<name>.tsv``: where :func:`list_revisions` keeps a repository's table."""
    return Path(cache_dir) / f"{repo_id.replace('/', '__')}.tsv"


def list_revisions(repo_id: str, family: str, cache_dir: str | os.PathLike, client=None, *,
                   tokens_per_step: int | None = None) -> pd.DataFrame:
    """The :func:`revision_table` of ``repo_id``'s branches, cached as TSV in ``cache_dir``.

    With the TSV present no network is used. Only its ``name`` column is read:
    step, tokens and stage are parsed again, so a listing cached by an older
    version (e.g. with tokens taken from rounded OLMo-2 names) cannot carry
    stale numbers into the tables. Otherwise the branches come from
    ``client.list_repo_refs(repo_id)`` (default ``huggingface_hub.HfApi()``)
    and the table is written atomically. ``tokens_per_step`` as in
    :func:`parse_revision`.
    """
    # Unknown family or tokens per step: fail before any network access.
    if resolve_tokens_per_step(family, repo_id, tokens_per_step) is None and family == "olmo2":
        raise unknown_olmo2_batch(repo_id, "its checkpoints")
    path = cache_path(repo_id, cache_dir)
    if path.is_file():
        try:
            names = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)["name"]
        except (KeyError, ValueError, pd.errors.ParserError) as err:
            raise ValueError(f"revision cache {path} for {repo_id} is unreadable or has no 'name' column ({err}). "
                             f"Fix: delete it to list the branches again, or copy a good one") from err
        table = revision_table(family, names, repo_id=repo_id, tokens_per_step=tokens_per_step)
        if table.empty:
            raise ValueError(f"revision cache {path}: none of its names is a {family} checkpoint of {repo_id}. "
                             f"Fix: check the model's family in the config, or delete the file to list again")
        return table

    if client is None:
        from huggingface_hub import HfApi

        client = HfApi()
    try:
        refs = client.list_repo_refs(repo_id)
    except Exception as err:
        from huggingface_hub.errors import RepositoryNotFoundError

        if isinstance(err, RepositoryNotFoundError):
            fix = "check the repo id (owner/name) in the config; a private or gated repo needs a token (hf auth login)"
        else:
            fix = (f"connect to the network (and unset HF_HUB_OFFLINE), or on an offline machine copy "
                   f"{path.name} from a machine that listed it into {path.parent}")
        raise RuntimeError(f"cannot list the branches of {repo_id} ({type(err).__name__}: {err}). Fix: {fix}") from err
    names = [b.name for b in refs.branches]
    table = revision_table(family, names, repo_id=repo_id, tokens_per_step=tokens_per_step)
    if table.empty:
        raise ValueError(f"{repo_id}: none of its {len(names)} branches ({', '.join(sorted(names)[:5])}…) is a "
                         f"{family} checkpoint. Fix: check the model's family in the config")
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    logger.info("%s: %d checkpoints listed, cached in %s", repo_id, len(table), path)
    return table


# ---------------------------------------------------------------- a model config entry's selection


def hf_revisions(model: dict) -> pd.DataFrame:
    """The selected revisions of a Hugging Face model as a table (name, step, tokens, ...).

    The branch listing is read from ``resources/revisions/<owner>__<name>.tsv``
    when present, so dry runs need no network; otherwise listed once and cached.
    An explicit ``revisions`` list needs no listing: the names give the step.
    Tokens are always step x tokens per step (``hf.tokens_per_step``, else the
    published figure for the repository), never the rounded count in a name.
    """
    # Asked once per job while Snakemake builds the DAG (hundreds of times): computed once per
    # selection, working directory and state of the listing cache.
    listing = cache_path(model["hf"]["repo_id"], REVISION_CACHE)
    key = (json.dumps(model["hf"], sort_keys=True), os.getcwd(), listing.is_file() and listing.stat().st_mtime_ns)
    if key not in _HF_REVISIONS:
        _HF_REVISIONS[key] = _select_hf_revisions(model)
    return _HF_REVISIONS[key].copy()


_HF_REVISIONS: dict = {}


def _select_hf_revisions(model: dict) -> pd.DataFrame:
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
