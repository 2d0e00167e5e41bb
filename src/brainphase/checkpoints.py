"""Checkpoints: a Hugging Face model directory plus ``brainphase.json``.

``brainphase.json`` records where the weights came from (model, revision,
source), where they sit on the training trajectory (step, tokens), and a
sha256 of every other file in the directory, so a half-copied or edited
checkpoint is caught before an analysis silently runs on it.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from brainphase.io import atomic_path, read_json, sha256_file, write_json

logger = logging.getLogger(__name__)

METADATA_NAME = "brainphase.json"
SOURCES = ("hf", "local", "train")


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete or does not match its checksums."""


# ---------------------------------------------------------------- metadata


def _checkpoint_files(directory: Path) -> list[Path]:
    # Hidden files are skipped: they are editor or copy leftovers, not part of the model.
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.name != METADATA_NAME and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def write_checkpoint_metadata(
    directory: str | os.PathLike,
    model: str,
    revision: str,
    step: int,
    tokens: int | float | None,
    source: str,
    **extra,
) -> dict:
    """Hash every file of ``directory`` and write ``brainphase.json`` beside them.

    ``tokens`` may be ``None`` when unknown; ``extra`` keys (e.g. ``tokens_estimated``)
    are stored as well. Returns the metadata written.
    """
    directory = Path(directory)
    if source not in SOURCES:
        raise ValueError(f"checkpoint source must be one of {SOURCES}, got {source!r}")
    files = {p.relative_to(directory).as_posix(): sha256_file(p) for p in _checkpoint_files(directory)}
    meta = {
        "model": model,
        "revision": revision,
        "step": int(step),
        "tokens": None if tokens is None else (int(tokens) if float(tokens).is_integer() else float(tokens)),
        "source": source,
        "files": files,
        **extra,
    }
    write_json(meta, directory / METADATA_NAME)
    return meta


def read_checkpoint_metadata(directory: str | os.PathLike) -> dict:
    path = Path(directory) / METADATA_NAME
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {Path(directory)}: no {METADATA_NAME}. Fix: fetch or train the checkpoint "
            f"through the workflow, or write it with brainphase.checkpoints.write_checkpoint_metadata()."
        )
    return read_json(path)


def _has_weights(directory: Path) -> bool:
    return any(directory.glob("*.safetensors")) or any(directory.glob("pytorch_model*.bin"))


def verify_checkpoint(directory: str | os.PathLike, check_hashes: bool = True) -> dict:
    """Check that ``directory`` is a complete checkpoint; return its metadata.

    Raises :class:`CheckpointError` naming the directory, the problem and the fix.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"checkpoint {directory}: directory does not exist. Fix: check the path in the config, "
            f"or run the workflow's checkpoint rule to download/train it."
        )
    if not _has_weights(directory):
        raise CheckpointError(
            f"checkpoint {directory}: no weights (*.safetensors or pytorch_model*.bin). Fix: the "
            f"download or copy was incomplete; delete the directory and fetch the checkpoint again."
        )
    meta = read_checkpoint_metadata(directory)
    missing = [k for k in ("model", "revision", "step", "tokens", "source", "files") if k not in meta]
    if missing:
        raise CheckpointError(
            f"checkpoint {directory}: {METADATA_NAME} lacks {missing}. Fix: rewrite it with "
            f"brainphase.checkpoints.write_checkpoint_metadata()."
        )
    if check_hashes:
        for name, expected in sorted(meta["files"].items()):
            path = directory / name
            if not path.is_file():
                raise CheckpointError(
                    f"checkpoint {directory}: file {name} listed in {METADATA_NAME} is missing. "
                    f"Fix: delete the directory and fetch the checkpoint again."
                )
            actual = sha256_file(path)
            if actual != expected:
                raise CheckpointError(
                    f"checkpoint {directory}: checksum mismatch for {name} (expected {expected[:12]}…, "
                    f"found {actual[:12]}…). Fix: the file was modified or corrupted; delete the "
                    f"directory and fetch the checkpoint again."
                )
        unlisted = sorted(
            p.relative_to(directory).as_posix()
            for p in _checkpoint_files(directory)
            if p.relative_to(directory).as_posix() not in meta["files"]
        )
        if unlisted:
            # Extra files do not change what the listed weights compute, so warn only.
            logger.warning("checkpoint %s: files not listed in %s: %s", directory, METADATA_NAME, unlisted)
    return meta


# ---------------------------------------------------------------- schedules


def log_spaced_steps(max_step: int, n: int, first: int = 1) -> list[int]:
    """``n`` checkpoint steps: 0, then integers log-spaced from ``first`` to ``max_step``.

    Rounding would merge neighbours at the small end; each step is pushed to at
    least one past its predecessor (and pulled back from the end) so the list
    stays strictly increasing. Fewer than ``n`` steps come back only when
    ``[first, max_step]`` holds fewer integers than asked for.
    """
    if max_step < 1 or first < 1 or first > max_step:
        raise ValueError(f"need 1 <= first <= max_step, got first={first}, max_step={max_step}")
    if n < 2:
        raise ValueError(f"need n >= 2 (step 0 and max_step), got {n}")
    k = n - 1
    if max_step - first + 1 <= k:
        return [0, *range(first, max_step + 1)]
    if k == 1:
        return [0, max_step]
    ratio = math.log(max_step / first)
    steps = [round(first * math.exp(ratio * i / (k - 1))) for i in range(k)]
    for i in range(1, k):
        steps[i] = max(steps[i], steps[i - 1] + 1)
    steps[-1] = max_step
    for i in range(k - 2, -1, -1):
        steps[i] = min(steps[i], steps[i + 1] - 1)
    return [0, *steps]


# ---------------------------------------------------------------- loading


def resolve_device(device: str | None = "auto"):
    """``auto`` → CUDA when present, else CPU."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use device: auto or cpu")
    return device


def resolve_dtype(dtype, device):
    """``auto`` → float32 on CPU (bf16 matmuls are slow and lossy there), bfloat16 on CUDA."""
    import torch

    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(names)}")
    return names[dtype]


def load_model(
    directory: str | os.PathLike,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    check_hashes: bool = True,
):
    """Verify a checkpoint and load it as ``(model, tokenizer)`` in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(directory)
    verify_checkpoint(directory, check_hashes=check_hashes)
    if trust_remote_code:
        logger.warning("checkpoint %s: loading with trust_remote_code=True runs code shipped with the model", directory)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    model.to(torch_device).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=trust_remote_code)
    return model, tokenizer


def count_parameters(directory: str | os.PathLike) -> int:
    """Parameters stored in a checkpoint's safetensors files, read from their headers (no weights loaded).

    Model size for the size sweeps; tied weights are stored once, so count once.
    """
    from safetensors import safe_open

    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors weights to count; is this a checkpoint folder?")
    total = 0
    for f in files:
        with safe_open(str(f), framework="numpy") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return int(total)


# ---------------------------------------------------------------- local training runs


def _step_regex(pattern: str):
    import re

    if pattern.count("{step}") != 1 or "/" in pattern:
        raise ValueError(f"checkpoint folder pattern {pattern!r} must name one folder with one {{step}}, "
                         f"e.g. 'step{{step}}' or 'checkpoint-{{step}}'")
    head, tail = pattern.split("{step}")
    return re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"$")


def discover_local_steps(root: str | os.PathLike, pattern: str = "step{step}") -> list[int]:
    """Steps of the checkpoint folders under ``root`` named by ``pattern`` that hold weights, sorted.

    Read when the workflow parses its config, so a checkpoint that lands while
    the model trains becomes new jobs on the next invocation. A folder still
    being written (no weights yet) is left for the next one.
    """
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"local checkpoints: folder {root} does not exist. Fix: set models[].local.root "
                              f"to the run's output folder")
    regex = _step_regex(pattern)
    steps = sorted(int(m.group(1)) for p in root.iterdir()
                   if p.is_dir() and (m := regex.match(p.name)) and _has_weights(p))
    return steps


def link_local_checkpoint(source: str | os.PathLike, dest: str | os.PathLike, model: str, step: int,
                          tokens: int | None) -> Path:
    """Make ``dest`` a checkpoint (symlinks to ``source``'s files + brainphase.json), atomically.

    Symlinks, not copies: a training run's checkpoints are large and stay
    where the trainer wrote them; the manifest's sha256 still pins their
    contents, so a file rewritten later fails verification downstream.
    """
    source, dest = Path(source).resolve(), Path(dest)
    if not _has_weights(source):
        raise CheckpointError(f"checkpoint {source}: no weights (*.safetensors or pytorch_model*.bin). Fix: wait "
                              f"until the trainer has finished writing it, or remove the folder")
    with atomic_path(dest, directory=True) as tmp:
        tmp.chmod(0o755)
        for f in _checkpoint_files(source):
            link = tmp / f.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f)
        write_checkpoint_metadata(tmp, model=model, revision=f"step{step}", step=step, tokens=tokens,
                                  source="local", origin=str(source))
    return dest
