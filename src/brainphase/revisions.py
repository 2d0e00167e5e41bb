"""Naming and choosing the checkpoints of public training runs.

A public run publishes its checkpoints as git branches of one Hugging Face
repository. This module turns a branch name into a :class:`Revision` (training
step, tokens seen, training stage), gathers a repository's branches into a
table (cached as TSV, so an offline machine needs no network), and picks the
checkpoints an analysis should follow (an explicit list, a token range, or a
log-spaced subset). Everything here except :func:`list_revisions` is a pure
function; :func:`list_revisions` is the only one that may touch the network.

Families:

``pythia``
    EleutherAI/pythia-*: ``step0``, ``step1``, ``step2``, ``step4`` …
    ``step512``, ``step1000`` … ``step143000`` (154 branches). Every step is
    1024 sequences × 2048 tokens = 2,097,152 tokens. ``main`` (= ``step143000``)
    is not a checkpoint of its own.
``olmo2``
    allenai/OLMo-2-*: ``stage1-step{N}-tokens{T}B``; some early branches lack
    the ``stage1-`` prefix and a few spell the unit ``b``; mid-training is
    published as ``stage2-ingredient{i}-step{N}-tokens{T}B``. Tokens are step ×
    the run's tokens per step (:data:`OLMO2_TOKENS_PER_STEP`, or the config's
    ``hf.tokens_per_step``); ``T`` is rounded to whole billions (up in stage 1,
    down in some stage-2 names) and serves only as a consistency check: a name
    that disagrees beyond that rounding stops with both numbers. Each stage-2
    ingredient is a separate run started from the last stage-1 checkpoint with a
    fresh step counter, so its steps and tokens count from 0 again: they are the
    tokens of mid-training only, not of the whole trajectory.
``amber``
    LLM360/Amber: ``ckpt_000`` … ``ckpt_358`` plus ``main`` (the final,
    360th checkpoint). The branch says only the checkpoint index k; checkpoint k
    is saved after data chunk k, so it has seen (k + 1) ×
    :data:`AMBER_TOKENS_PER_CHECKPOINT` tokens.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from brainphase.io import atomic_path

logger = logging.getLogger(__name__)

COLUMNS = ("name", "step", "tokens", "tokens_estimated", "stage")

# Pythia (every size): batch of 1024 sequences × 2048 tokens per optimizer step.
PYTHIA_TOKENS_PER_STEP = 1024 * 2048

# OLMo-2: global batch (sequences) × sequence length 4096, per repository (owner/name, lower case).
# Stage 2 loads the last stage-1 checkpoint with the same batch size, so one figure covers both stages.
OLMO2_TOKENS_PER_STEP = {
    # allenai/OLMo configs/official-0425/OLMo2-1B-stage1.yaml: global_train_batch_size 512 × max_sequence_length 4096
    "allenai/olmo-2-0425-1b": 512 * 4096,
    # allenai/OLMo configs/official-1124/OLMo2-7B-stage1.yaml: global_train_batch_size 1024 × max_sequence_length 4096
    "allenai/olmo-2-1124-7b": 1024 * 4096,
    # allenai/OLMo configs/official-1124/OLMo2-13B-stage1.yaml: global_train_batch_size 2048 × max_sequence_length 4096
    "allenai/olmo-2-1124-13b": 2048 * 4096,
    # allenai/OLMo-core src/scripts/official/OLMo2/OLMo-2-0325-32B-train.py: global_batch_size=2048 * 4096 (tokens)
    "allenai/olmo-2-0325-32b": 2048 * 4096,
}

# Amber: LLM360/amber-train main.py trains N_CHUNKS = 360 chunks of TRAIN_EXAMPLES_PER_CHUNK = 1,706,976
# sequences and saves ckpt_{chunk_idx} after each. A sequence holds 2049 token ids (LLM360/AmberDatasets
# README: "each instance has 2049 token indexes"; 1,706,976 × 2049 × 360 = 1,259.13B, the data-mix total);
# collate_fn feeds token_ids[:, :-1] and predicts token_ids[:, 1:], so 2048 tokens are trained per sequence.
# main_utils.load_jsonl_examples keeps n_examples // global_micro_batch_size × global_micro_batch_size of
# each chunk; run.sh launches 56 nodes × 4 GPUs with main()'s per_device_batch_size=10, a global micro-batch
# of 2240, so 1,706,880 sequences (762 steps) of every chunk were trained and 96 were dropped.
AMBER_SEQUENCES_PER_CHUNK = 1_706_976
AMBER_GLOBAL_MICRO_BATCH = 56 * 4 * 10
AMBER_TRAINED_SEQUENCES_PER_CHUNK = AMBER_SEQUENCES_PER_CHUNK // AMBER_GLOBAL_MICRO_BATCH * AMBER_GLOBAL_MICRO_BATCH
AMBER_TOKENS_PER_SEQUENCE = 2048
AMBER_TOKENS_PER_CHECKPOINT = AMBER_TRAINED_SEQUENCES_PER_CHUNK * AMBER_TOKENS_PER_SEQUENCE  # 3,495,690,240
AMBER_CHECKPOINTS = 360

_PYTHIA = re.compile(r"step(\d+)")
# Optional stage prefix ("stage1-", "stage2-ingredient3-"), then step and tokens; unit B or b;
# tokens may carry decimals. fullmatch: no trailing or leading text.
_OLMO2 = re.compile(r"(?:(stage\d+(?:-ingredient\d+)?)-)?step(\d+)-tokens(\d+(?:\.\d+)?)[Bb]")
_AMBER = re.compile(r"ckpt_(\d+)")


@dataclass(frozen=True)
class Revision:
    """One published checkpoint: branch ``name`` at training ``step`` after ``tokens`` tokens."""

    name: str
    step: int
    tokens: int | None
    tokens_estimated: bool = False
    stage: str | None = None


def resolve_tokens_per_step(family: str, repo_id: str | None = None, override: int | None = None) -> int | None:
    """Tokens per optimizer step of a ``family`` run: ``override`` (config ``hf.tokens_per_step``) if
    given, else the published figure for the family or for ``repo_id``; ``None`` when unknown.
    Amber has no step in its names (see :data:`AMBER_TOKENS_PER_CHECKPOINT`), so it returns ``None``."""
    _parser(family)
    if override is not None:
        if family == "amber":
            raise ValueError("hf.tokens_per_step does not apply to family amber: its branches count data chunks "
                             "of a fixed size, not optimizer steps. Fix: remove hf.tokens_per_step")
        if int(override) < 1:
            raise ValueError(f"hf.tokens_per_step must be a positive integer, got {override!r}")
        return int(override)
    if family == "pythia":
        return PYTHIA_TOKENS_PER_STEP
    if family == "olmo2" and repo_id is not None:
        return OLMO2_TOKENS_PER_STEP.get(repo_id.strip().lower())
    return None


def _parse_pythia(name: str, per_step: int | None, repo_id: str | None) -> Revision | None:
    m = _PYTHIA.fullmatch(name)
    if not m:
        return None
    step = int(m.group(1))
    return Revision(name, step, step * (per_step or PYTHIA_TOKENS_PER_STEP), False, None)


def _check_name_tokens(repo_id: str | None, name: str, step: int, per_step: int, billions: str, exact: int) -> None:
    """The name's ``tokens{T}B`` must be ``exact`` rounded (up or down) to the digits it is written with."""
    decimals = min(len(billions.partition(".")[2]), 9)
    written = int(billions.replace(".", "")[: len(billions.partition(".")[0]) + decimals])  # T in 10^-decimals B
    unit = 10 ** (9 - decimals)
    low, high = exact // unit, -(-exact // unit)        # floor and ceiling in those units
    if not low <= written <= high:
        raise ValueError(
            f"{repo_id or 'olmo2 repository'}: revision {name!r} says {billions}B tokens, but step {step:,} × "
            f"{per_step:,} tokens per step = {exact:,} tokens ({exact / 1e9:,.3f}B). The tokens per step are "
            f"wrong for this run. Fix: set models[].hf.tokens_per_step to the run's global batch size × sequence "
            f"length (see its training config), or correct models[].hf.repo_id")


def _unknown_olmo2_batch(repo_id: str | None, what: str) -> ValueError:
    return ValueError(
        f"{repo_id or 'olmo2 repository'}: tokens per step unknown for {what}; the branch names' tokens{{T}}B are "
        f"rounded to whole billions (+59 % at step150-tokens1B of OLMo-2 7B), so they cannot give the tokens. "
        f"Fix: set models[].hf.tokens_per_step (global batch size × sequence length of the run's training "
        f"config); known repositories: {', '.join(sorted(OLMO2_TOKENS_PER_STEP))}")


def _parse_olmo2(name: str, per_step: int | None, repo_id: str | None) -> Revision | None:
    m = _OLMO2.fullmatch(name)
    if not m:
        return None
    stage, step, billions = m.groups()
    step = int(step)
    if per_step is None:
        raise _unknown_olmo2_batch(repo_id, f"revision {name!r}")
    tokens = step * per_step
    _check_name_tokens(repo_id, name, step, per_step, billions, tokens)
    # Branches published before the prefix was adopted are stage-1 pretraining checkpoints.
    return Revision(name, step, tokens, False, stage or "stage1")


def _parse_amber(name: str, per_step: int | None, repo_id: str | None) -> Revision | None:
    if name == "main":
        k = AMBER_CHECKPOINTS - 1
    else:
        m = _AMBER.fullmatch(name)
        if not m:
            return None
        k = int(m.group(1))
    # step = checkpoint index k; ckpt_k is saved after chunk k, i.e. after k + 1 chunks.
    return Revision(name, k, (k + 1) * AMBER_TOKENS_PER_CHECKPOINT, False, None)


_PARSERS = {"pythia": _parse_pythia, "olmo2": _parse_olmo2, "amber": _parse_amber}
FAMILIES = tuple(_PARSERS)


def _parser(family: str):
    try:
        return _PARSERS[family]
    except KeyError:
        raise ValueError(f"unknown checkpoint family {family!r}; known families: {', '.join(FAMILIES)}") from None


def parse_revision(family: str, name: str, *, repo_id: str | None = None,
                   tokens_per_step: int | None = None) -> Revision | None:
    """The :class:`Revision` a branch ``name`` of a ``family`` run stands for; ``None`` if it is no checkpoint.

    OLMo-2 needs the run's tokens per step: from ``tokens_per_step`` (config ``hf.tokens_per_step``) or a
    known ``repo_id``; without either, or when the name's token count disagrees, a ``ValueError`` says why.
    """
    parse = _parser(family)
    return parse(name, resolve_tokens_per_step(family, repo_id, tokens_per_step), repo_id)


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
    parse = _parser(family)
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
        raise _unknown_olmo2_batch(repo_id, "its checkpoints")
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
