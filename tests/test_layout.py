"""The house rules a newcomer relies on, checked on the source tree itself.

Each analysis is one hop from its rules to its scripts, package, page and
tests; no output path is typed twice; modules stay small enough to read; the
package's imports flow one way; the README is a front door whose links resolve.
"""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "brainphase"
ANALYSES = ("activations", "encoding", "temporal", "evals", "probing", "phases", "sae", "crosscoder")
# Aggregations that only stack per-job tables serve every analysis alike.
SHARED_SCRIPTS = {"concat_tables.py"}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def scripts_of(rule_file: Path) -> list[str]:
    return re.findall(r'"\.\./scripts/([\w.]+\.py)"', rule_file.read_text())


@pytest.mark.parametrize("analysis", ANALYSES)
def test_each_analysis_is_one_hop(analysis):
    rules = REPO / "workflow/rules" / f"{analysis}.smk"
    assert rules.is_file(), f"{rules} missing: each analysis keeps its rules in workflow/rules/<analysis>.smk"
    scripts = scripts_of(rules)
    assert scripts, f"{rules} runs no script"
    stray = [s for s in scripts if not s.startswith(analysis) and s not in SHARED_SCRIPTS]
    assert not stray, f"{rules} runs scripts not named after {analysis!r}: {stray}"
    for s in scripts:
        assert (REPO / "workflow/scripts" / s).is_file(), f"{rules} names a missing script {s}"
    assert (SRC / analysis / "__init__.py").is_file(), f"src/brainphase/{analysis}/ is not a package"
    assert (REPO / "docs" / f"{analysis}.md").is_file(), f"docs/{analysis}.md missing"
    assert list((REPO / "tests").glob(f"test_{analysis}*.py")), f"no tests/test_{analysis}*.py"


def test_every_script_belongs_to_a_rule():
    named = {s for f in (REPO / "workflow/rules").glob("*.smk") for s in scripts_of(f)}
    on_disk = {p.name for p in (REPO / "workflow/scripts").glob("*.py")}
    assert on_disk == named, f"scripts no rule runs: {sorted(on_disk - named)}; rules naming missing scripts: " \
                             f"{sorted(named - on_disk)}"


def test_output_paths_are_named_once():
    """Only the path templates spell where results go."""
    allowed = {REPO / "workflow/rules/paths.smk"}
    offenders = []
    for f in [REPO / "Snakefile", *(REPO / "workflow").rglob("*.smk"), *(REPO / "workflow/scripts").glob("*.py")]:
        if f in allowed:
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"results/|\{R\}/|R \+ \"/", line):
                offenders.append(f"{f.relative_to(REPO)}:{i}: {line.strip()}")
    assert not offenders, "output paths outside workflow/rules/paths.smk:\n" + "\n".join(offenders)


def python_files():
    return sorted(SRC.rglob("*.py"))


def test_modules_are_small():
    long_files = [f"{p.relative_to(REPO)}: {n}" for p in python_files()
                  if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    long_functions = []
    for p in python_files():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{p.relative_to(REPO)}:{node.lineno} {node.name}: {n}")
    assert not long_files, f"files over {MAX_FILE_LINES} lines: {long_files}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """brainphase modules imported by ``path`` (at any depth: a lazy import is still a dependency)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    modules = {module_name(p) for p in python_files()}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("brainphase")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("brainphase"):
                submodules = {f"{mod}.{a.name}" for a in node.names} & modules
                # `from . import fmri` depends on the submodule, not on the package's __init__.
                found |= submodules if len(submodules) == len(node.names) else {mod} | submodules
    return {m for m in found if m in modules and m != me}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def top_level(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_imports_flow_one_way():
    """No import cycle between modules, nor between the package's subpackages."""
    graph = {module_name(p): imports_of(p) for p in python_files()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    packages: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        packages.setdefault(top_level(mod), set()).update(top_level(d) for d in deps if top_level(d) != top_level(mod))
    cycle = find_cycle(packages)
    assert cycle is None, f"subpackages import each other: {' -> '.join(cycle)}"


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_readme_is_a_front_door():
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= 200, "README.md over 200 lines: move detail into docs/"
    broken = []
    for page in [readme, *sorted((REPO / "docs").glob("*.md")), REPO / "config/README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, f"links that do not resolve: {broken}"


def test_comments_stand_on_their_own():
    """No pointer to documents that are not in the repository."""
    pattern = re.compile(r"METHODS §|METHODS\.md|DESIGN\.md|\bseed 00\d|seeds/00\d|\.\./shared")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in [*python_files(), *(REPO / "workflow").rglob("*.smk"),
                                                   *(REPO / "workflow/scripts").glob("*.py")]
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, f"references to documents outside the repository: {hits}"
