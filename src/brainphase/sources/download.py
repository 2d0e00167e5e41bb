"""Download one public checkpoint from the Hugging Face Hub into the checkpoint contract.

The files land in a temporary folder next to ``dest``; only once they are all
there, hashed into ``brainphase.json`` and checked does the folder get renamed
to ``dest``, so an interrupted or failed download never looks finished.
Transient failures (network, Hub 5xx) are retried with exponential backoff; a
missing repository or revision stops at once.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

from brainphase.contracts.checkpoint import CheckpointError, verify_checkpoint, write_checkpoint_metadata
from brainphase.io import atomic_path
from brainphase.sources.families import Revision

logger = logging.getLogger(__name__)

DEFAULT_PATTERNS = ("*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model")

# OSErrors that no wait will cure: a full or read-only disk, no permission.
_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM}


class DownloadError(RuntimeError):
    """A checkpoint could not be downloaded; the message names repo, revision and the fix."""


class RevisionMissingError(DownloadError):
    """The repository or the revision does not exist on the Hub (or is not accessible)."""


def _caused_by(err: BaseException, kind: type) -> bool:
    while err is not None:
        if isinstance(err, kind):
            return True
        err = err.__cause__ or err.__context__
    return False


def _classify(err: BaseException) -> str:
    """``missing`` (stop, the revision is not there), ``transient`` (retry) or ``fatal`` (stop)."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # Order matters: these Hub errors are also OSErrors.
    if isinstance(err, (RevisionNotFoundError, RepositoryNotFoundError)):
        return "missing"
    if _caused_by(err, OfflineModeIsEnabled):
        return "fatal"
    if isinstance(err, HfHubHTTPError):
        response = getattr(err, "response", None)
        status = getattr(response, "status_code", None)
        # 5xx: the Hub is down or overloaded; 429: rate limited. Other 4xx will not change on retry.
        return "transient" if status is not None and (status >= 500 or status == 429) else "fatal"
    if isinstance(err, (ConnectionError, TimeoutError)):
        return "transient"
    if isinstance(err, OSError):
        return "fatal" if err.errno in _PERMANENT_ERRNOS else "transient"
    return "fatal"


def _check_shards(directory: Path) -> None:
    """Every shard named by a ``*.index.json`` weight map is present (a partial snapshot is not a model)."""
    for index in sorted(directory.glob("*.index.json")):
        try:
            weight_map = json.loads(index.read_text()).get("weight_map", {})
        except (OSError, ValueError):
            continue
        missing = sorted({f for f in weight_map.values() if not (directory / f).is_file()})
        if missing:
            raise CheckpointError(f"{index}: lists shards that are missing: {missing}. "
                                  f"Fix: delete {directory} and run the workflow again to fetch it again")


def _snapshot(client, repo_id: str, name: str, patterns: list[str], tmp: Path, dest: Path, retries: int,
              backoff: float, sleep: Callable[[float], None]) -> None:
    """``client.snapshot_download`` of branch ``name`` into ``tmp``, retrying transient failures."""
    where = f"{repo_id}@{name}"
    for attempt in range(retries + 1):
        try:
            client.snapshot_download(repo_id=repo_id, revision=name,
                                     allow_patterns=patterns, local_dir=str(tmp))
            return
        except Exception as err:
            kind = _classify(err)
            if kind == "missing":
                raise RevisionMissingError(
                    f"{where}: the Hub has no such repository or revision ({type(err).__name__}). Fix: check "
                    f"the repo id and that branch {name!r} exists "
                    f"(brainphase.sources.hub_revisions.list_revisions lists them; delete its cached TSV if "
                    f"the repo changed); a gated or private repo needs a token (hf auth login)") from err
            if kind == "fatal":
                raise DownloadError(
                    f"{where}: download failed ({type(err).__name__}: {err}). Fix: if offline, unset "
                    f"HF_HUB_OFFLINE and connect, or copy the checkpoint in with the 'local' source; "
                    f"otherwise check access, disk space and permissions of {dest.parent}") from err
            if attempt == retries:
                raise DownloadError(
                    f"{where}: download failed after {retries + 1} attempts (last: {type(err).__name__}: "
                    f"{err}). Fix: check the network or the Hub status and run the job again") from err
            delay = backoff * 2 ** attempt
            logger.warning("%s: attempt %d/%d failed (%s: %s); retrying in %.0f s",
                           where, attempt + 1, retries + 1, type(err).__name__, err, delay)
            sleep(delay)


def download_checkpoint(
    repo_id: str,
    revision: Revision,
    dest: str | os.PathLike,
    model_name: str,
    allow_patterns: Sequence[str] = DEFAULT_PATTERNS,
    retries: int = 4,
    backoff: float = 2.0,
    client=None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch ``revision`` of ``repo_id`` into ``dest`` as a checkpoint (model folder + ``brainphase.json``).

    ``client`` provides ``snapshot_download`` (default: the ``huggingface_hub``
    module). Transient errors are retried ``retries`` times, waiting
    ``backoff × 2**i`` seconds (2, 4, 8, 16 by default) through ``sleep``.
    Returns ``dest``.
    """
    if client is None:
        import huggingface_hub as client
    dest = Path(dest)
    patterns = [allow_patterns] if isinstance(allow_patterns, str) else list(allow_patterns)
    where = f"{repo_id}@{revision.name}"
    with atomic_path(dest, directory=True) as tmp:
        _snapshot(client, repo_id, revision.name, patterns, tmp, dest, retries, backoff, sleep)
        # huggingface_hub's bookkeeping for local_dir downloads (resume metadata), not part of the model.
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        if not any(tmp.glob("*.safetensors")) and not any(tmp.glob("pytorch_model*.bin")):
            found = sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []
            raise DownloadError(
                f"{dest}: the download of {where} holds no weights (*.safetensors or pytorch_model*.bin). Files "
                f"received: {found or 'none'}. Fix: widen allow_patterns={patterns} (e.g. add "
                f"'pytorch_model*.bin' for repos without safetensors) or check that the revision holds a model")
        try:
            # Opens what was received (JSON parses, shards present, safetensors sizes add up) before hashing.
            write_checkpoint_metadata(tmp, model=model_name, revision=revision.name, step=revision.step,
                                      tokens=revision.tokens, source="hf", shown=dest, repo_id=repo_id,
                                      tokens_estimated=revision.tokens_estimated, stage=revision.stage)
        except CheckpointError as err:
            hint = (f" If the shard is not matched by allow_patterns={patterns}, widen them."
                    if "shards" in str(err) else "")
            raise DownloadError(f"{err} ({where}){hint}") from err
        try:
            verify_checkpoint(tmp, check_hashes=False)  # hashes were just computed; this checks weights + fields
        except CheckpointError as err:
            found = sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []
            raise DownloadError(
                f"{where}: the download is not a usable checkpoint: {err}. Files received: {found or 'none'}. "
                f"Fix: widen allow_patterns={patterns} (e.g. add 'pytorch_model*.bin' for repos "
                f"without safetensors) or check that the revision holds a model") from err
    logger.info("%s: checkpoint ready in %s", where, dest)
    return dest


def verify_download(dest: str | os.PathLike) -> dict:
    """Re-hash every file of a downloaded checkpoint against ``brainphase.json``; return its metadata.

    Raises :class:`~brainphase.contracts.checkpoint.CheckpointError` naming the folder and
    the missing or corrupted file.
    """
    dest = Path(dest)
    meta = verify_checkpoint(dest, check_hashes=True)
    _check_shards(dest)
    return meta
