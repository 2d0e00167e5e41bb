"""Where a model's checkpoints come from: trained here, a local training run, or the Hugging Face hub.

The config's ``models[].source`` says which: ``train``, ``local`` or ``hf``.
Each source answers the same questions for one ``models[]`` config entry: its
checkpoint names in training order (the workflow's ``{step}`` wildcard), the
tokens each has seen, how a checkpoint arrives under the results tree (trained,
linked or downloaded) and which weight fingerprints are known before it does.
:func:`source_of` picks the source of an entry; the module-level functions are
what the workflow calls; :func:`known_duplicates` is the duplicate-weights report
of a study's dry run.

Submodules: :mod:`~brainphase.sources.families` (hub branch names → step and
tokens), :mod:`~brainphase.sources.hub_revisions` (listing and selecting hub
checkpoints), :mod:`~brainphase.sources.download`, :mod:`~brainphase.sources.local`
(registering a local run's checkpoints), :mod:`~brainphase.sources.train` (the trainer's save
schedule) and :mod:`~brainphase.sources.fingerprints` (duplicate weights).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import json
import os
from pathlib import Path

import pandas as pd

from brainphase.config import ConfigError
from brainphase.contracts.checkpoint import CheckpointError, discover_local_steps, read_checkpoint_metadata
from brainphase.sources.hub_revisions import REVISION_CACHE, hf_revisions

__all__ = ["ModelSource", "TrainSource", "LocalSource", "HubSource", "source_of", "revisions", "tokens_for",
           "local_checkpoint_dir", "hf_revisions", "REVISION_CACHE", "known_duplicates", "MODEL_SOURCES"]


def _step(revision: str) -> int:
    return int(revision.removeprefix("step"))


class ModelSource(ABC):
    """The checkpoints of one ``models[]`` config entry; a subclass per value of ``source``."""

    kind: str = ""
    """The config's ``models[].source`` value this class answers for."""
    arrival: str = ""
    """How a checkpoint gets under ``results/checkpoints``: ``trained``, ``linked`` or ``downloaded``."""

    def __init__(self, entry: dict):
        self.entry = entry
        self.name = entry["name"]

    @abstractmethod
    def revisions(self) -> list[str]:
        """Checkpoint names (the ``{step}`` wildcard), in training order."""

    @abstractmethod
    def tokens_for(self, revision: str) -> int:
        """Tokens the checkpoint ``revision`` has seen."""

    def known_fingerprints(self, cache_dir: str | os.PathLike = REVISION_CACHE) -> dict[str, str | None]:
        """{revision: weights fingerprint} known without network or download; ``{}`` when none are."""
        return {}


class TrainSource(ModelSource):
    """A model the workflow trains itself (``models[].train``); steps and tokens follow from its settings."""

    kind, arrival = "train", "trained"

    def revisions(self) -> list[str]:
        return [f"step{s}" for s in self.entry["train"]["checkpoints"]]

    def tokens_for(self, revision: str) -> int:
        t = self.entry["train"]
        return _step(revision) * t["batch_size"] * t["seq_len"]


class LocalSource(ModelSource):
    """A training run's checkpoint folders on disk (``models[].local``), registered in place."""

    kind, arrival = "local", "linked"

    def revisions(self) -> list[str]:
        loc = self.entry["local"]
        wanted = loc.get("steps")
        if wanted is not None:
            # Planned checkpoints: a study is planned (and dry-run) before the run has written
            # them; the ones not on disk are listed as missing inputs and stop a real run.
            return [f"step{s}" for s in sorted(set(wanted))]
        pattern = loc.get("pattern", "step{step}")
        try:
            found = discover_local_steps(loc["root"], pattern)
        except CheckpointError as err:
            raise ConfigError(f"config key models[{self.name}].local.root: {err}; or list the planned "
                              "checkpoints in local.steps to plan the study before they exist") from None
        if not found:
            raise ConfigError(f"config key models[{self.name}].local: no checkpoint folders matching "
                              f"{pattern!r} with weights under {loc['root']}")
        return [f"step{s}" for s in found]

    def checkpoint_dir(self, revision: str) -> Path:
        """The training run's own folder of checkpoint ``step{N}``."""
        loc = self.entry["local"]
        return Path(loc["root"]) / loc.get("pattern", "step{step}").format(step=_step(revision))

    def tokens_for(self, revision: str) -> int:
        loc = self.entry["local"]
        if loc.get("tokens_per_step") is not None:
            return _step(revision) * int(loc["tokens_per_step"])
        # Else the checkpoint folder's own brainphase.json (written by a trainer that knows its tokens).
        folder = self.checkpoint_dir(revision)
        try:
            tokens = read_checkpoint_metadata(folder).get("tokens")
        except CheckpointError:
            tokens = None
        if tokens is None:
            raise ConfigError(f"config key models[{self.name}].local.tokens_per_step: not set, and {folder} has "
                              f"no brainphase.json with tokens; set tokens_per_step (batch size x sequence length)")
        return int(tokens)


class HubSource(ModelSource):
    """Checkpoints published as branches of a Hugging Face repository (``models[].hf``), downloaded."""

    kind, arrival = "hf", "downloaded"

    def revisions(self) -> list[str]:
        return hf_revisions(self.entry)["name"].tolist()

    def tokens_for(self, revision: str) -> int:
        # hf_revisions computes tokens as step x tokens per step, so tables and figures get exact counts.
        hf = self.entry["hf"]
        table = hf_revisions(self.entry).set_index("name")
        if revision not in table.index:
            raise ConfigError(f"config key models[{self.name}].hf: revision {revision!r} of "
                              f"{hf['repo_id']} is not among the selected revisions; add it to hf.revisions")
        tokens = table.loc[revision, "tokens"]
        if tokens is None or tokens != tokens:
            raise ConfigError(f"config key models[{self.name}].hf.tokens_per_step: revision {revision} of "
                              f"{hf['repo_id']} has no token count; set tokens_per_step")
        return int(tokens)

    def known_fingerprints(self, cache_dir: str | os.PathLike = REVISION_CACHE) -> dict[str, str | None]:
        # The per-file sha256 the hub lists, once read into the cache (python -m brainphase.sources.fingerprints).
        # Imported here so that running that module as a script does not find it imported already.
        from brainphase.sources.fingerprints import cached_hub_fingerprints

        return cached_hub_fingerprints(self.entry["hf"]["repo_id"], cache_dir)


MODEL_SOURCES = {cls.kind: cls for cls in (TrainSource, LocalSource, HubSource)}


def source_of(entry: dict) -> ModelSource:
    """The :class:`ModelSource` of a ``models[]`` config entry, chosen by its ``source`` key."""
    cls = MODEL_SOURCES.get(entry["source"])
    if cls is None:
        raise ConfigError(f"config key models[{entry['name']}].source: {entry['source']!r} is not a model source; "
                          f"known sources: {', '.join(MODEL_SOURCES)}")
    return cls(entry)


def revisions(model: dict) -> list[str]:
    """Checkpoint names (the {step} wildcard) of a model, in training order."""
    return source_of(model).revisions()


def tokens_for(model: dict, revision: str) -> int:
    """Tokens the checkpoint ``revision`` of a model has seen."""
    return source_of(model).tokens_for(revision)


def local_checkpoint_dir(model: dict, revision: str) -> Path:
    """The training run's own folder of a local model's checkpoint ``step{N}``."""
    return LocalSource(model).checkpoint_dir(revision)


def known_duplicates(config: dict, steps: dict[str, list[str]], results: str | os.PathLike = "results",
                     revision_cache: str | os.PathLike = REVISION_CACHE) -> str | None:
    """The duplicate-checkpoint report from what is known without network or downloads, or None.

    Known: the fingerprints of checkpoints already registered (``<results>/fingerprints``) and, for
    hub models, the per-file sha256 the hub lists, once cached in ``revision_cache``
    (:func:`brainphase.sources.fingerprints.hub_fingerprints`).
    """
    from brainphase.sources.fingerprints import duplicate_table, format_duplicates

    tables = []
    for m in config["models"]:
        name, source = m["name"], source_of(m)
        known = source.known_fingerprints(revision_cache)
        for step in steps[name]:
            f = Path(results) / "fingerprints" / name / f"{step}.json"
            if f.is_file():
                known[step] = json.loads(f.read_text()).get("fingerprint")
        fps = {s: known.get(s) for s in steps[name]}
        if any(v is not None for v in fps.values()):
            tables.append(duplicate_table(name, fps, {s: source.tokens_for(s) for s in steps[name]}))
    if not tables:
        return None
    return format_duplicates(pd.concat(tables, ignore_index=True))
