"""Checkpoint branch names of the public training runs, and the tokens each checkpoint has seen.

Each family names its checkpoints in its own way; a parser turns a branch name
into a :class:`Revision` (training step, tokens seen, training stage). Tokens
are always step × the run's tokens per step, taken from the run's published
training configuration (cited beside each figure), never from a rounded count
in a name.

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

import re
from dataclasses import dataclass

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
    """The branch name, as the repository spells it (the workflow's ``{step}`` wildcard)."""
    step: int
    """Optimizer step (Amber: checkpoint index) within its training stage."""
    tokens: int | None
    """Tokens seen by this checkpoint; ``None`` when the run's tokens per step are unknown."""
    tokens_estimated: bool = False
    """Whether ``tokens`` is an estimate rather than step × the run's tokens per step."""
    stage: str | None = None
    """Training stage (``stage1``, ``stage2-ingredient1`` …) for runs published in stages, else ``None``."""


def resolve_tokens_per_step(family: str, repo_id: str | None = None, override: int | None = None) -> int | None:
    """Tokens per optimizer step of a ``family`` run: ``override`` (config ``hf.tokens_per_step``) if
    given, else the published figure for the family or for ``repo_id``; ``None`` when unknown.
    Amber has no step in its names (see :data:`AMBER_TOKENS_PER_CHECKPOINT`), so it returns ``None``."""
    family_parser(family)
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


def unknown_olmo2_batch(repo_id: str | None, what: str) -> ValueError:
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
        raise unknown_olmo2_batch(repo_id, f"revision {name!r}")
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


def family_parser(family: str):
    """The branch-name parser of ``family``; a ``ValueError`` lists the known families."""
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
    parse = family_parser(family)
    return parse(name, resolve_tokens_per_step(family, repo_id, tokens_per_step), repo_id)

