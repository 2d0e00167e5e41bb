"""Which packages a rule's script needs, and which its conda environment gives it.

The static side of the environment test: rules are read from workflow/rules/*.smk
(their ``conda:`` constant, resolved through common.smk, and their ``script:``);
a script's import closure is every import of the script file itself (at any
depth, since the whole file runs) plus the module-level imports of each
``brainphase`` module it reaches, followed recursively. Imports inside the
package's functions are not followed: those are the lazy imports that keep
heavy packages out of jobs that do not call them; the dynamic test, which runs
the scripts in environments built from the env files, covers them.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import re
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
RULES = REPO / "workflow/rules"
RULE_HEAD = re.compile(r"^(?:rule|checkpoint) (\w+):", re.M)


def env_constants() -> dict[str, Path]:
    """The ``NAME_ENV = "../../envs/x.yaml"`` constants of common.smk, as files."""
    text = (RULES / "common.smk").read_text()
    return {name: (RULES / path).resolve() for name, path in re.findall(r'^(\w+_ENV) = "([^"]+)"', text, re.M)}


def rule_envs() -> dict[str, tuple[Path | None, Path | None]]:
    """Every rule of workflow/rules: (its env file, its script), None where it has none."""
    constants = env_constants()
    rules = {}
    for smk in sorted(RULES.glob("*.smk")):
        text = smk.read_text()
        heads = list(RULE_HEAD.finditer(text))
        for head, nxt in zip(heads, heads[1:] + [None]):
            body = text[head.end(): nxt.start() if nxt else len(text)]
            conda = re.search(r"^\s+conda:\n\s+(\S+)", body, re.M)
            script = re.search(r'^\s+script:\n\s+"([^"]+)"', body, re.M)
            env = None
            if conda:
                assert conda.group(1) in constants, (
                    f"{smk.name}: rule {head.group(1)} declares conda: {conda.group(1)}, not one of "
                    f"common.smk's *_ENV constants {sorted(constants)}")
                env = constants[conda.group(1)]
            rules[head.group(1)] = (env, (smk.parent / script.group(1)).resolve() if script else None)
    return rules


def env_requirements(env_file: Path) -> list[Requirement]:
    """The pip requirements of a conda env file (its `- pip:` list), editable installs left out."""
    spec = yaml.safe_load(env_file.read_text())
    pip = next((d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d), [])
    return [Requirement(p) for p in pip if not p.startswith("-")]


def distribution_closure(requirements: list[Requirement]) -> set[str]:
    """The requirements' distributions and everything they depend on, as installed in this venv."""
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in requirements]
    seen: set[str] = set()
    done: set[tuple[str, frozenset]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            wanted = not req.marker or any(req.marker.evaluate({"extra": e}) for e in extras | {""})
            if wanted:
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return seen


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module
    package = list(path.relative_to(SRC).with_suffix("").parts)
    package = package if path.name == "__init__.py" else package[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _imports(path: Path, anywhere: bool) -> set[str]:
    """Dotted names imported by ``path``: anywhere in it, or in statements that run on import."""
    tree = ast.parse(path.read_text(), str(path))
    if anywhere:
        nodes = list(ast.walk(tree))
    else:
        nodes, stack = [], list(tree.body)
        while stack:
            node = stack.pop()
            nodes.append(node)
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                stack += node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
                stack += [s for h in getattr(node, "handlers", []) for s in h.body]
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, path) if path.is_relative_to(SRC) else node.module
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


def import_closure(script: Path) -> dict[str, str]:
    """Top-level modules outside brainphase that ``script`` needs, each with the file that imports it."""
    found: dict[str, str] = {}
    seen: set[Path] = set()
    todo = [(script, True)]
    while todo:
        path, anywhere = todo.pop()
        for name in sorted(_imports(path, anywhere)):
            parts = name.split(".")
            if parts[0] != "brainphase":
                found.setdefault(parts[0], str(path.relative_to(REPO) if path.is_relative_to(REPO) else path))
                continue
            for i in range(1, len(parts) + 1):
                module = _module_file(".".join(parts[:i]))
                if module and module not in seen:
                    seen.add(module)
                    todo.append((module, False))
    return found


@functools.cache
def _given(env_file: Path) -> frozenset[str]:
    return frozenset(distribution_closure(env_requirements(env_file)))


@functools.cache
def _providers() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def missing_packages(script: Path, env_file: Path) -> list[str]:
    """What ``script`` imports that ``env_file`` does not install, as 'module (from file)'."""
    given = _given(env_file)
    providers = _providers()
    missing = []
    for module, where in sorted(import_closure(script).items()):
        if module in sys.stdlib_module_names or module == "__future__":
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & given:
            missing.append(f"{module} (imported by {where}; distribution {sorted(dists) or 'unknown'})")
    return missing


# Snakemake runs a script with the environment's python but appends its own
# sys.path to the script's (snakemake/script/__init__.py, the preamble's
# `sys.path.extend`; snakemake/common/__init__.py, get_snakemake_searchpaths), so a
# package missing from the environment would silently come from the submitting
# one. This guard, loaded by a .pth file at start-up, refuses such imports but for
# Snakemake's own (named in BRAINPHASE_ENV_FOREIGN), which the preamble needs.
GUARD = '''
import importlib.machinery
import os
import sys

_HERE = os.path.realpath(sys.prefix) + os.sep
_FOREIGN_OK = set(os.environ.get("BRAINPHASE_ENV_FOREIGN", "").split(","))


class _EnvGuard:
    def find_spec(self, name, path=None, target=None):
        if path is not None or name in _FOREIGN_OK:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name)
        where = spec and (spec.origin or next(iter(spec.submodule_search_locations or []), None))
        if where and "site-packages" in where and not os.path.realpath(where).startswith(_HERE):
            raise ModuleNotFoundError(f"No module named {name!r} in the environment {sys.prefix} "
                                      f"(only outside it, in {where})", name=name)
        return None


sys.meta_path.insert(0, _EnvGuard())
'''


def foreign_allowed() -> str:
    """Top-level modules of Snakemake and its dependencies, comma-separated, for the guard."""
    dists = distribution_closure([Requirement("snakemake")])
    return ",".join(sorted(m for m, ds in _providers().items() if {canonicalize_name(d) for d in ds} & dists))


def _installer():
    """benchmarks/_venv_install.py, which the sae-lens environment uses too (benchmarks/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_venv_install", REPO / "benchmarks/_venv_install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_env(env_file: Path, constraints: Path, cache: Path) -> Path:
    """A venv with exactly ``env_file``'s pip packages (pinned by ``constraints``) and the guard.

    Kept under ``cache`` in a folder named after the hash of both files and the
    python version, so that an unchanged environment is built once. Installed
    with uv where it is there (benchmarks/_venv_install.py), else with pip.
    """
    import hashlib
    import shutil
    import subprocess

    key = hashlib.sha256(env_file.read_bytes() + constraints.read_bytes() + sys.version.encode()).hexdigest()[:12]
    target = cache / f"{env_file.stem}-{key}"
    python = target / "bin/python"
    if (target / "built").is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    reqs = [str(r) for r in env_requirements(env_file)]
    done = _installer().install(python, constraints, reqs)
    if done.returncode:
        raise RuntimeError(f"building {env_file.name} into {target} failed: {' '.join(done.args)}\n"
                           f"{done.stderr[-3000:]}")
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_brainphase_env_guard.py").write_text(GUARD)
    (site / "_brainphase_env_guard.pth").write_text("import _brainphase_env_guard\n")
    (target / "built").write_text(" ".join(reqs) + "\n")
    return target
