"""Fingerprints of checkpoint weights, to find published checkpoints that are the same model.

A branch name is a claim, not a guarantee: several step branches of
EleutherAI/pythia-2.8b serve the final weights (EleutherAI/pythia issue #205).
Two checkpoints whose weight files hash alike would put one model at two
points of the trajectory, so such pairs are found before any analysis.

A fingerprint is the sha256 over the sorted (file name, file sha256) pairs of
the weight files only (``*.safetensors``, ``*.bin``, ``*.pt``): a config.json
or tokenizer edit does not hide a duplicate. The file sha256 is the one the
checkpoint manifest (``brainphase.json``) records, and the one the Hugging Face
hub lists for LFS files, so the hub's checkpoints are fingerprinted before any
download and match the fingerprint of the same files once downloaded (when the
same files are fetched: pass the download's ``allow_patterns``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from brainphase.contracts.checkpoint import CheckpointError, read_checkpoint_metadata
from brainphase.io import atomic_path

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
# Files of a Trainer checkpoint folder that share the suffixes but hold no model weights.
NOT_WEIGHTS = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt"})
COLUMNS = ("model", "step", "tokens", "fingerprint", "duplicate_of")


def is_weight_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(WEIGHT_SUFFIXES) and base not in NOT_WEIGHTS


def weights_fingerprint(files: Mapping[str, str]) -> str:
    """sha256 over the sorted ``(name, sha256)`` pairs of the weight files in ``files`` ({name: sha256}).

    Raises ``ValueError`` when ``files`` lists no weight file: without weights there is nothing to compare.
    """
    pairs = sorted((str(name), str(sha).lower()) for name, sha in files.items() if is_weight_file(str(name)))
    if not pairs:
        raise ValueError(f"no weight files ({', '.join('*' + s for s in WEIGHT_SUFFIXES)}) among "
                         f"{sorted(files)[:8]}; a fingerprint needs the weights")
    digest = hashlib.sha256()
    for name, sha in pairs:
        # NUL and newline cannot occur in a file name or a hex digest, so the encoding is unambiguous.
        digest.update(f"{name}\0{sha}\n".encode())
    return digest.hexdigest()


def manifest_fingerprint(checkpoint_dir: str | os.PathLike) -> str:
    """The :func:`weights_fingerprint` of a registered checkpoint (its ``brainphase.json`` manifest).

    Reads the manifest only (no weights are hashed again); a checkpoint without one raises
    :class:`brainphase.contracts.checkpoint.CheckpointError` naming the fix.
    """

    meta = read_checkpoint_metadata(checkpoint_dir)
    files = meta.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(f"checkpoint {checkpoint_dir}: brainphase.json has no 'files' map of sha256 sums. "
                              f"Fix: register it again with "
                              f"brainphase.contracts.checkpoint.write_checkpoint_metadata()")
    try:
        return weights_fingerprint(files)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {checkpoint_dir}: {err}") from None


# ---------------------------------------------------------------- hub (before download)


def fingerprint_cache_path(repo_id: str, cache_dir: str | os.PathLike) -> Path:
    """``cache_dir/<owner>__<name>.fingerprints.tsv`` (beside the revision listing of the same repository)."""
    return Path(cache_dir) / f"{repo_id.replace('/', '__')}.fingerprints.tsv"


def _read_cache(path: Path) -> dict[str, str | None]:
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        rows = zip(table["revision"], table["fingerprint"])
    except (KeyError, ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"fingerprint cache {path} is unreadable or lacks the columns revision, fingerprint "
                         f"({err}). Fix: delete it to read the hub again, or copy a good one") from err
    # An empty fingerprint records a revision that has no weight files.
    return {str(rev): (fp or None) for rev, fp in rows}


def _write_cache(path: Path, fingerprints: Mapping[str, str | None]) -> None:
    table = pd.DataFrame({"revision": list(fingerprints), "fingerprint": [fp or "" for fp in fingerprints.values()]})
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def cached_hub_fingerprints(repo_id: str, cache_dir: str | os.PathLike) -> dict[str, str | None]:
    """{revision: fingerprint} from the cache of :func:`hub_fingerprints`; no network (``{}`` without a cache)."""
    return _read_cache(fingerprint_cache_path(repo_id, cache_dir))


def _hub_file_shas(client, repo_id: str, revision: str) -> dict[str, str]:
    shas = {}
    for entry in client.list_repo_tree(repo_id, revision=revision, recursive=True, expand=False):
        if not hasattr(entry, "blob_id"):  # a folder
            continue
        lfs = getattr(entry, "lfs", None)
        # LFS files carry the sha256 of their content, as a downloaded file's manifest does. A weight file
        # kept in plain git has only its git blob id, which still tells hub revisions apart or alike.
        shas[entry.path] = lfs.sha256 if lfs is not None else f"git-blob:{entry.blob_id}"
    return shas


def hub_fingerprints(repo_id: str, revisions: Iterable[str], cache_dir: str | os.PathLike, client=None,
                     allow_patterns: Iterable[str] | None = None) -> dict[str, str | None]:
    """{revision: fingerprint} of ``repo_id``'s ``revisions`` from the sha256 the hub lists per file.

    No weights are downloaded: ``client.list_repo_tree(repo_id, revision=..., recursive=True)`` (default
    ``huggingface_hub.HfApi()``) gives each file's LFS sha256. ``allow_patterns`` (the download's) keeps the
    files a download would fetch, so the fingerprint matches :func:`manifest_fingerprint` of that download.
    Results are cached in :func:`fingerprint_cache_path` and revisions already there are not asked again.
    A revision without weight files maps to ``None``.
    """
    path = fingerprint_cache_path(repo_id, cache_dir)
    cached = _read_cache(path)
    revisions = list(dict.fromkeys(str(r) for r in revisions))
    todo = [r for r in revisions if r not in cached]
    if todo:
        if client is None:
            from huggingface_hub import HfApi

            client = HfApi()
        patterns = list(allow_patterns) if allow_patterns else None
        for revision in todo:
            try:
                shas = _hub_file_shas(client, repo_id, revision)
            except Exception as err:
                raise RuntimeError(
                    f"cannot list the files of {repo_id}@{revision} ({type(err).__name__}: {err}). Fix: check "
                    f"that the revision exists, connect to the network (and unset HF_HUB_OFFLINE), or copy "
                    f"{path.name} from a machine that read it into {path.parent}") from err
            if patterns is not None:
                shas = {n: s for n, s in shas.items() if any(fnmatch.fnmatch(n, p) for p in patterns)}
            try:
                cached[revision] = weights_fingerprint(shas)
            except ValueError:
                logger.warning("%s@%s: no weight files on the hub (files: %s)", repo_id, revision, sorted(shas)[:8])
                cached[revision] = None
            # Written after every revision: a long listing interrupted half-way keeps what it read.
            _write_cache(path, cached)
    return {r: cached[r] for r in revisions}


# ---------------------------------------------------------------- duplicates


def duplicate_table(model: str, fingerprints: Mapping[str, str | None], tokens: Mapping[str, int]) -> pd.DataFrame:
    """One row per checkpoint (columns model, step, tokens, fingerprint, duplicate_of), in training order.

    ``fingerprints`` and ``tokens`` are keyed by the step wildcard (the revision name). Training order is
    the order of ``fingerprints``: give it as ``config.revisions`` lists the checkpoints (names alone do
    not order OLMo-2's stage-2 steps, which restart from 0). ``duplicate_of`` is null for the first
    checkpoint with a fingerprint and that first checkpoint's step for every later one; a checkpoint
    without a fingerprint (unknown) is never a duplicate.
    """
    first: dict[str, str] = {}
    rows = []
    for step, fp in fingerprints.items():
        fp = None if fp is None or (isinstance(fp, float) and fp != fp) or fp == "" else str(fp)
        dup = None
        if fp is not None:
            dup = first.setdefault(fp, step)
            dup = None if dup == step else dup
        t = tokens.get(step)
        rows.append({"model": model, "step": str(step), "tokens": None if t is None else int(t),
                     "fingerprint": fp, "duplicate_of": dup})
    return pd.DataFrame({
        "model": pd.Series([r["model"] for r in rows], dtype=object),
        "step": pd.Series([r["step"] for r in rows], dtype=object),
        "tokens": pd.Series([r["tokens"] for r in rows], dtype="Int64"),
        "fingerprint": pd.Series([r["fingerprint"] for r in rows], dtype=object),
        "duplicate_of": pd.Series([r["duplicate_of"] for r in rows], dtype=object),
    })


def format_duplicates(table: pd.DataFrame) -> str:
    """A short report: one line per checkpoint whose weights repeat an earlier one, naming both."""
    dups = table[table["duplicate_of"].notna()]
    if dups.empty:
        return f"no duplicate checkpoints among {len(table)} ({', '.join(sorted(set(map(str, table['model']))))})"
    by_key = {(str(r.model), str(r.step)): r for r in table.itertuples(index=False)}

    def tok(t) -> str:
        return "? tokens" if t is None or pd.isna(t) else f"{int(t):,} tokens"

    lines = [f"{len(dups)} of {len(table)} checkpoints have the same weights as an earlier one "
             f"(the later branch does not hold what its name says; drop it or check the upstream repository):"]
    for r in dups.itertuples(index=False):
        orig = by_key.get((str(r.model), str(r.duplicate_of)))
        lines.append(f"  {r.model}: {r.step} ({tok(r.tokens)}) = {r.duplicate_of} "
                     f"({tok(None if orig is None else orig.tokens)}), weights {str(r.fingerprint)[:12]}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def _merged_config(study: str | os.PathLike, base: str | os.PathLike = "config/config.yaml") -> dict:
    """A study config over the demo's, merged as Snakemake merges ``--configfile`` (dicts by key, lists replaced)."""
    import yaml

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    return merge(yaml.safe_load(Path(base).read_text()), yaml.safe_load(Path(study).read_text()))


def main(argv: list[str] | None = None) -> None:
    """Read the hub's fingerprints of a study's selected revisions into the cache (needs the network).

    The study's next dry run then reports duplicate checkpoints before anything is downloaded:
    ``python -m brainphase.sources.fingerprints config/pythia-lebel.yaml``.
    """
    import argparse

    from brainphase.config import validate_config
    from brainphase.sources.download import DEFAULT_PATTERNS
    from brainphase.sources.hub_revisions import REVISION_CACHE, hf_revisions

    parser = argparse.ArgumentParser(prog="python -m brainphase.sources.fingerprints", description=main.__doc__)
    parser.add_argument("study", help="a study config, e.g. config/pythia-lebel.yaml")
    parser.add_argument("--base", default="config/config.yaml", help="the config it is merged over")
    args = parser.parse_args(argv)
    config = validate_config(_merged_config(args.study, args.base), source=args.study)
    for m in config["models"]:
        if m["source"] != "hf":
            continue
        hf = m["hf"]
        fps = hub_fingerprints(hf["repo_id"], hf_revisions(m)["name"].tolist(), REVISION_CACHE,
                               allow_patterns=hf.get("allow_patterns") or DEFAULT_PATTERNS)
        print(format_duplicates(duplicate_table(m["name"], fps, {})))


if __name__ == "__main__":
    main()
