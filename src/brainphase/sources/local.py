"""A local training run's checkpoints (source ``local``): registered in place.

The run writes its checkpoints as Hugging Face folders ``<root>/<pattern>``
(e.g. ``step{step}`` or ``checkpoint-{step}``; found by
:func:`brainphase.contracts.checkpoint.discover_local_steps`); each is
registered under the results tree as symlinks to its files plus the checkpoint
manifest, so the analyses read it through the same contract as a downloaded
checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

from brainphase.contracts.checkpoint import (
    CheckpointError,
    check_checkpoint_contents,
    checkpoint_files,
    has_weights,
    write_checkpoint_metadata,
)
from brainphase.io import atomic_path


def link_local_checkpoint(source: str | os.PathLike, dest: str | os.PathLike, model: str, step: int,
                          tokens: int | None) -> Path:
    """Make ``dest`` a checkpoint (symlinks to ``source``'s files + brainphase.json), atomically.

    Symlinks, not copies: a training run's checkpoints are large and stay
    where the trainer wrote them; the manifest's sha256 still pins their
    contents, so a file rewritten later fails verification downstream.
    """
    source, dest = Path(source).resolve(), Path(dest)
    if not has_weights(source):
        raise CheckpointError(f"checkpoint {source}: no weights (*.safetensors or pytorch_model*.bin). Fix: wait "
                              f"until the trainer has finished writing it, or remove the folder")
    # Opened where the trainer wrote it, so that an error names the file the user repairs.
    check_checkpoint_contents(source, "local", str(source))
    with atomic_path(dest, directory=True) as tmp:
        tmp.chmod(0o755)
        for f in checkpoint_files(source):
            link = tmp / f.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f)
        write_checkpoint_metadata(tmp, model=model, revision=f"step{step}", step=step, tokens=tokens,
                                  source="local", shown=dest, origin=str(source))
    return dest
