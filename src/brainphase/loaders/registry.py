"""The dataset loaders the workflow knows, registered in one place.

A loader turns one subject of a published dataset into the stimulus and brain
contracts. It is two functions of one module: ``load(root, subject, **options)``
returning :class:`~brainphase.loaders.types.LoadedFMRI` (fMRI) or
:class:`~brainphase.loaders.types.MEGBids` (MEG/EEG), and ``inputs(root, subject,
**options)`` listing the files ``load`` reads (the workflow declares them as the
load job's inputs, so an edited file loads that subject again). A config's
``datasets[].source`` names a registered loader; ``datasets[].options`` are the
keyword arguments of ``load`` after ``root`` and ``subject``.

The config schema (``workflow/schemas/config.schema.yaml``) lists every loader
too, since it is read without importing the package: :func:`schema_mismatches`
says what it lacks or has in excess, and a test holds the two in step.
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
    """The config's ``source`` value; the schema's options block is ``$defs/options_<name>``."""
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


def _dataset_rules(schema: dict) -> tuple[dict, list]:
    items = schema["properties"]["datasets"]["items"]
    return items["properties"], items.get("allOf", [])


def schema_mismatches(schema: dict, loaders: dict[str, Loader] | None = None) -> list[str]:
    """What the config schema (parsed YAML) must add or drop to agree with the registered loaders; [] if it agrees.

    Per loader the schema needs: its name in the dataset ``source`` enum and in
    the rule that requires ``path`` for loader sources, a rule
    ``if source == name then kind == loader.kind and options: $ref
    #/$defs/options_<name>``, and that options block with one property per
    keyword of :meth:`Loader.options`.
    """
    loaders = LOADERS if loaders is None else loaders
    props, rules = _dataset_rules(schema)
    defs = schema.get("$defs", {})
    enum = list(props["source"]["enum"])
    path_rule = next((r for r in rules if "enum" in r.get("if", {}).get("properties", {}).get("source", {})), None)
    needs_path = set(path_rule["if"]["properties"]["source"]["enum"]) if path_rule else set()
    problems = []
    for name, loader in loaders.items():
        block = f"#/$defs/options_{name}"
        if name not in enum:
            problems.append(f"loader {name!r} is registered but missing from the schema: add {name} to "
                            "datasets.items.properties.source.enum")
        if name not in needs_path:
            problems.append(f"loader {name!r}: add {name} to the enum of the allOf rule that requires path "
                            "for loader sources")
        want = {"kind": {"const": loader.kind}, "options": {"$ref": block}}
        found = [r for r in rules if r.get("if", {}).get("properties", {}).get("source") == {"const": name}]
        if not any(r.get("then", {}).get("properties") == want for r in found):
            problems.append(f"loader {name!r}: add to datasets.items.allOf the rule "
                            f"{{if: {{properties: {{source: {{const: {name}}}}}}}, then: {{properties: "
                            f"{{kind: {{const: {loader.kind}}}, options: {{$ref: \"{block}\"}}}}}}}}")
        if f"options_{name}" not in defs:
            problems.append(f"loader {name!r}: add the block $defs.options_{name} (type: object, "
                            f"additionalProperties: false, one property per option: {loader.options()})")
            continue
        have, need = set(defs[f"options_{name}"].get("properties", {})), set(loader.options())
        if have != need:
            problems.append(f"loader {name!r}: $defs.options_{name} must list the loader's options; add "
                            f"{sorted(need - have)}, drop {sorted(have - need)}")
    for name in sorted(set(enum) - set(loaders) - set(BUILTIN_SOURCES)):
        problems.append(f"the schema's dataset source {name!r} has no registered loader: register one in "
                        "brainphase.loaders.registry or drop it from the schema")
    for key in sorted(k for k in defs if k.startswith("options_") and k[len("options_"):] not in loaders):
        problems.append(f"$defs.{key} belongs to no registered loader: drop it or register the loader")
    return problems
