"""The checkpoint contract: a Hugging Face model folder plus its manifest ``brainphase.json``.

Every source (trained here, linked from a local training run, downloaded from
the hub) hands the analyses the same thing: a folder under
``results/checkpoints/<model>/<step>`` that :func:`verify_checkpoint` accepts
and :func:`load_model` loads. Writer: :func:`write_checkpoint_metadata`; reader:
:func:`read_checkpoint_metadata`; checks: :func:`check_checkpoint_contents`
(before registering) and :func:`verify_checkpoint` (before reading).

``brainphase.json`` records where the weights came from (model, revision,
source), where they sit on the training trajectory (step, tokens), and a
sha256 of every other file in the directory, so a half-copied or edited
checkpoint is caught before an analysis silently runs on it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path

from brainphase.io import read_json, sha256_file, write_json
from brainphase.runtime import resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

METADATA_NAME = "brainphase.json"
SOURCES = ("hf", "local", "train")


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete or does not match its checksums."""


# ---------------------------------------------------------------- metadata


def checkpoint_files(directory: str | os.PathLike) -> list[Path]:
    """The files of a checkpoint folder that its manifest hashes (all but brainphase.json and hidden files)."""
    directory = Path(directory)
    # Hidden files are skipped: they are editor or copy leftovers, not part of the model.
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.name != METADATA_NAME and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


# Bytes per element of the safetensors dtypes.
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
                "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8, "C64": 8}


def _fix_for(source: str | None, directory: Path, origin: str | None = None) -> str:
    """How to get a good copy of a checkpoint file back, by where the checkpoint comes from."""
    if source == "hf":
        return (f"the download is damaged; delete {directory} and run the workflow again to fetch it again "
                f"(its download job reruns)")
    if source == "local":
        where = f" ({origin})" if origin else ""
        return (f"repair or re-save the checkpoint in the training run's folder{where} (a trainer still "
                f"writing it: wait until it has finished), then run the workflow again")
    if source == "train":
        return f"delete {directory} and the training run's folder under train/, then run the workflow to train again"
    return f"replace the file with a complete copy, then register {directory} again"


def _check_safetensors(path: Path, shown: Path, fix: str) -> None:
    """The header parses and its tensors fill the file exactly: a truncated or padded file is refused."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{shown}: not a safetensors file ({size} bytes, shorter than its 8-byte "
                                  f"header length). Fix: {fix}")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise CheckpointError(f"{shown}: truncated safetensors file: its header alone should take {n} bytes, "
                                  f"the file has {size - 8} after the length. Fix: {fix}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, ValueError) as err:
            raise CheckpointError(f"{shown}: safetensors header is not valid JSON ({err}). Fix: {fix}") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{shown}: safetensors header is not a JSON object. Fix: {fix}")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in info["data_offsets"])
            shape = [int(x) for x in info["shape"]]
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{shown}: tensor {name!r} has no valid shape/data_offsets in the header. "
                                  f"Fix: {fix}") from err
        width = _DTYPE_BYTES.get(str(info.get("dtype")))
        if stop < begin or (width is not None and stop - begin != width * math.prod(shape)):
            raise CheckpointError(f"{shown}: tensor {name!r} ({info.get('dtype')} {shape}) spans bytes "
                                  f"{begin}-{stop} of the data, which is not its size. Fix: {fix}")
        end = max(end, stop)
    if end != size - 8 - n:
        what = "truncated" if end > size - 8 - n else "longer than its tensors"
        raise CheckpointError(f"{shown}: {what}: the header's tensors take {end} bytes, the file holds "
                              f"{size - 8 - n} after the header. Fix: {fix}")


def check_checkpoint_contents(directory: str | os.PathLike, source: str | None = None, origin: str | None = None,
                              shown: str | os.PathLike | None = None) -> None:
    """Open what a checkpoint folder declares before it is registered; raise naming the bad file.

    ``config.json`` and every other top-level JSON file parse; each index's
    ``weight_map`` shards exist; each safetensors header parses and its tensors
    add up to the file's size; a zip-format ``pytorch_model*.bin`` opens. Reads
    headers only. ``source`` and ``origin`` choose the fix offered; ``shown`` is
    the folder named in messages (the final one, when checking a temporary copy).
    """
    import zipfile

    directory = Path(directory)
    shown = Path(shown) if shown is not None else directory
    fix = _fix_for(source, shown, origin)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{shown / 'config.json'}: missing; a Hugging Face checkpoint needs its config. "
                              f"Fix: {fix}")
    parsed = {}
    for path in sorted(directory.glob("*.json")):
        if path.name == METADATA_NAME:
            continue
        try:
            parsed[path.name] = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise CheckpointError(f"{shown / path.name}: not valid JSON ({err}). Fix: {fix}") from err
    for name, index in parsed.items():
        if not name.endswith(".index.json"):
            continue
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{shown / name}: no weight_map object; it is not a weights index. Fix: {fix}")
        missing = sorted({str(f) for f in weight_map.values() if not (directory / str(f)).is_file()})
        if missing:
            raise CheckpointError(f"{shown / name}: lists shards that are missing: {missing}. Fix: {fix}")
    for path in sorted(directory.glob("*.safetensors")):
        _check_safetensors(path, shown / path.name, fix)
    for path in sorted(directory.glob("pytorch_model*.bin")):
        with open(path, "rb") as f:
            zipped = f.read(2) == b"PK"
        if zipped:  # torch.save's format since 1.6; older pickles have no cheap integrity check
            try:
                with zipfile.ZipFile(path) as z:
                    z.namelist()
            except (zipfile.BadZipFile, OSError) as err:
                raise CheckpointError(f"{shown / path.name}: damaged ({err}). Fix: {fix}") from err


def write_checkpoint_metadata(
    directory: str | os.PathLike,
    model: str,
    revision: str,
    step: int,
    tokens: int | float | None,
    source: str,
    *,
    shown: str | os.PathLike | None = None,
    **extra,
) -> dict:
    """Hash every file of ``directory`` and write ``brainphase.json`` beside them.

    ``tokens`` may be ``None`` when unknown; ``extra`` keys (e.g. ``tokens_estimated``)
    are stored as well. The files are opened first (:func:`check_checkpoint_contents`;
    ``shown`` is the folder its errors name). Returns the metadata written.
    """
    directory = Path(directory)
    if source not in SOURCES:
        raise ValueError(f"checkpoint source must be one of {SOURCES}, got {source!r}")
    # Opened before hashing: the manifest would otherwise pin a truncated file as the checkpoint.
    check_checkpoint_contents(directory, source, extra.get("origin"), shown=shown)
    files = {p.relative_to(directory).as_posix(): sha256_file(p) for p in checkpoint_files(directory)}
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
    """The manifest ``brainphase.json`` of a checkpoint folder, unchecked (see :func:`verify_checkpoint`)."""
    path = Path(directory) / METADATA_NAME
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {Path(directory)}: no {METADATA_NAME}. Fix: fetch or train the checkpoint "
            f"through the workflow, or write it with brainphase.contracts.checkpoint.write_checkpoint_metadata()."
        )
    return read_json(path)


def has_weights(directory: str | os.PathLike) -> bool:
    """Whether a folder holds model weights (``*.safetensors`` or ``pytorch_model*.bin``)."""
    directory = Path(directory)
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
    if not has_weights(directory):
        try:
            known = read_json(directory / METADATA_NAME)
        except (OSError, ValueError):
            known = {}
        fix = (_fix_for(known.get("source"), directory, known.get("origin")) if known.get("source") else
               "the download or copy was incomplete; delete the directory and fetch the checkpoint again")
        raise CheckpointError(f"checkpoint {directory}: no weights (*.safetensors or pytorch_model*.bin). Fix: {fix}.")
    meta = read_checkpoint_metadata(directory)
    missing = [k for k in ("model", "revision", "step", "tokens", "source", "files") if k not in meta]
    if missing:
        raise CheckpointError(
            f"checkpoint {directory}: {METADATA_NAME} lacks {missing}. Fix: rewrite it with "
            f"brainphase.contracts.checkpoint.write_checkpoint_metadata()."
        )
    if check_hashes:
        for name, expected in sorted(meta["files"].items()):
            path = directory / name
            if not path.is_file():
                raise CheckpointError(f"{path}: listed in {directory / METADATA_NAME} but missing. "
                                      f"Fix: {_changed_fix(meta, directory, name)}")
            actual = sha256_file(path)
            if actual != expected:
                raise CheckpointError(
                    f"{path}: checksum mismatch for {name} (expected {expected[:12]}…, found {actual[:12]}…); "
                    f"the file changed after registration. Fix: {_changed_fix(meta, directory, name)}"
                )
        unlisted = sorted(
            p.relative_to(directory).as_posix()
            for p in checkpoint_files(directory)
            if p.relative_to(directory).as_posix() not in meta["files"]
        )
        if unlisted:
            # Extra files do not change what the listed weights compute, so warn only.
            logger.warning("checkpoint %s: files not listed in %s: %s", directory, METADATA_NAME, unlisted)
    # Header reads only: a file damaged before registration by a route that did not check it is named
    # here, not by the loader's bare error.
    check_checkpoint_contents(directory, meta["source"], meta.get("origin"))
    return meta


def _changed_fix(meta: dict, directory: Path, name: str) -> str:
    """What to do about a registered file that no longer matches its manifest, by where it came from."""
    source = meta.get("source")
    if source == "local":
        origin = meta.get("origin")
        where = f" ({Path(origin) / name})" if origin else ""
        return (f"the training run's file{where} was rewritten after the checkpoint was registered; if the new "
                f"file is the one to analyse, remove {directory} to register it again (the workflow then reruns "
                f"what read the old one), else restore the old file")
    if source == "hf":
        return (f"the downloaded file was modified or corrupted; delete {directory} and run the workflow again to "
                f"fetch it again")
    if source == "train":
        return (f"the registered copy was modified; delete {directory} and run the workflow again to register it "
                f"from the training run")
    return f"the file was modified or corrupted; replace it and register {directory} again"


# ---------------------------------------------------------------- a training run's checkpoint folders
# Here rather than in brainphase.sources: config validation reads a local run's layer count from its
# newest checkpoint, and the config layer must not depend on the model sources.


def _step_regex(pattern: str):
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
                   if p.is_dir() and (m := regex.match(p.name)) and has_weights(p))
    return steps


# ---------------------------------------------------------------- loading


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
