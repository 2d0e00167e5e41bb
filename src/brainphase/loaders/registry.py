"""The dataset loaders the workflow knows, registered in one place.

A loader turns one subject of a published dataset into the stimulus and brain
contracts. It is two functions of one module: ``load(root, subject, **options)``
returning :class:`~brainphase.loaders.types.LoadedFMRI` (fMRI) or
:class:`~brainphase.loaders.types.MEGBids` (MEG/EEG), and ``inputs(root, subject,
**options)`` listing the files ``load`` reads (the workflow declares them as the
load job's inputs, so an edited file loads that subject again). A config's
``datasets[].source`` names a registered loader; ``datasets[].options`` are the
keyword arguments of ``load`` after ``root`` and ``subject``.

The config schema (``workflow/schemas/config.schema.yaml``) holds one block per
loader (its kind, its ``path``, its options): :func:`schema_mismatches` says
what it lacks or has in excess, and a test holds the two in step. A source
that is neither built in nor registered is refused when the config is
validated, with the known names.
``docs/loaders.md`` walks through adding a loader.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

KINDS = ("fmri", "meg")
BUILTIN_SOURCES = ("toyworld", "files")  # dataset sources the workflow writes without a loader


@dataclass(frozen=True)
class Loader:
    """A dataset format that a config's ``datasets[].source`` can name."""

    name: str
    """The config's ``source`` value; the schema's block for it is ``if: {properties: {source: {const: <name>}}}``."""
    kind: str
    """``fmri`` (``load`` returns a ``LoadedFMRI``, with a TR) or ``meg`` (a ``MEGBids``, with a sampling rate)."""
    load: str
    """``"module:function"`` that loads one subject: ``function(root, subject, **options)``."""
    inputs: str
    """``"module:function"`` listing the files ``load`` reads for one subject, given the same arguments."""
    not_configurable: frozenset[str] = field(default_factory=frozenset)
    """Keyword arguments of ``load`` that a config file cannot express (a Python callable, say)."""

    def load_function(self) -> Callable:
        return _resolve(self.load)

    def inputs_function(self) -> Callable:
        return _resolve(self.inputs)

    def options(self) -> list[str]:
        """The keyword arguments of ``load`` that a config entry may set (after root and subject)."""
        params = list(inspect.signature(self.load_function()).parameters.values())[2:]
        return [p.name for p in params if p.name not in self.not_configurable]


def _resolve(target: str) -> Callable:
    # Imported on first use: the workflow reads the registry when it parses, before any loader runs, and the
    # loaders' modules pull in nibabel, nilearn or MNE.
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


LOADERS: dict[str, Loader] = {}


def register_loader(loader: Loader) -> Loader:
    """Make ``loader`` available to the config as ``source: <loader.name>``."""
    if loader.kind not in KINDS:
        raise ValueError(f"loader {loader.name!r}: kind {loader.kind!r}; use one of {KINDS}")
    if loader.name in LOADERS or loader.name in BUILTIN_SOURCES:
        raise ValueError(f"a dataset source named {loader.name!r} exists already; pick another name")
    for target in (loader.load, loader.inputs):
        if target.count(":") != 1:
            raise ValueError(f"loader {loader.name!r}: {target!r} is not 'module:function'")
    LOADERS[loader.name] = loader
    return loader


def get_loader(source: str) -> Loader:
    """The registered loader of ``source``, or an error listing those that exist."""
    if source not in LOADERS:
        raise ValueError(f"unknown dataset source {source!r}; loaders exist for {sorted(LOADERS)}")
    return LOADERS[source]


register_loader(Loader("lebel", "fmri", "brainphase.loaders.lebel:load_lebel", "brainphase.loaders.lebel:lebel_inputs"))
register_loader(Loader("bids_fmri", "fmri", "brainphase.loaders.bids_fmri:load_bids_fmri",
                       "brainphase.loaders.bids_fmri:bids_fmri_inputs"))
register_loader(Loader("meg_bids", "meg", "brainphase.loaders.meg_bids:load_meg_bids",
                       "brainphase.loaders.meg_bids:meg_bids_inputs", frozenset({"word_filter"})))


def _source_blocks(schema: dict) -> dict[str, list[dict]]:
    """The ``datasets.items.allOf`` blocks that apply to one source alone (``if source == name``), by name."""
    blocks: dict[str, list[dict]] = {}
    for rule in schema["properties"]["datasets"]["items"].get("allOf", []):
        condition = rule.get("if", {}).get("properties", {})
        if set(condition) == {"source"} and "const" in condition["source"]:
            blocks.setdefault(condition["source"]["const"], []).append(rule)
    return blocks


def schema_block(loader: Loader) -> dict:
    """The one ``datasets.items.allOf`` block the config schema needs for ``loader`` (options left open)."""
    return {"if": {"properties": {"source": {"const": loader.name}}},
            "then": {"required": ["path"], "properties": {"kind": {"const": loader.kind}, "options": {
                "type": "object", "additionalProperties": False,
                "properties": {name: {} for name in loader.options()}}}}}


def schema_mismatches(schema: dict, loaders: dict[str, Loader] | None = None) -> list[str]:
    """What the config schema (parsed YAML) must add or drop to agree with the registered loaders; [] if it agrees.

    Per loader the schema needs one block in ``datasets.items.allOf``: ``if source
    == name then`` ``path`` is required, ``kind`` is the loader's and ``options``
    is an object with one property per keyword of :meth:`Loader.options`.
    """
    loaders = LOADERS if loaders is None else loaders
    blocks = _source_blocks(schema)
    problems = []
    for name, loader in loaders.items():
        found = blocks.get(name, [])
        if len(found) != 1:
            problems.append(f"loader {name!r} needs exactly one block in datasets.items.allOf (found "
                            f"{len(found)}), e.g. {schema_block(loader)}")
            continue
        then = found[0].get("then", {})
        props = then.get("properties", {})
        if "path" not in then.get("required", []):
            problems.append(f"loader {name!r}: its allOf block must require path (the dataset's root folder)")
        if props.get("kind") != {"const": loader.kind}:
            problems.append(f"loader {name!r}: its allOf block must set kind: {{const: {loader.kind}}}")
        options = props.get("options", {})
        have, need = set(options.get("properties", {})), set(loader.options())
        if options.get("additionalProperties") is not False or have != need:
            problems.append(f"loader {name!r}: the options of its allOf block must be a closed object listing "
                            f"the loader's options; add {sorted(need - have)}, drop {sorted(have - need)}")
    for name in sorted(set(blocks) - set(loaders) - set(BUILTIN_SOURCES)):
        problems.append(f"the schema's block for dataset source {name!r} has no registered loader: register one "
                        "in brainphase.loaders.registry or drop the block")
    return problems
