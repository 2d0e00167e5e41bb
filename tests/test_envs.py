"""Each rule's conda environment runs its script, and no more than it needs.

Static: every script's import closure (tests/envcheck.py says what it follows)
is installed by its rule's env file. Dynamic (slow): the torch-free environments
used by the micro run are built as real venvs from exactly their env files' pip packages
(with uv where it is there), and one micro-run job per rule and case of their rules runs
again in them, with imports from outside the environment refused.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import envcheck
from conftest import REPO

TORCH_FREE = ("TABLES_ENV", "FIGURES_ENV", "BRAIN_ENV", "CORTEX_ENV")
# Built and run by the dynamic test: the torch-free ones the micro run uses. pycortex builds from
# source (~100 s) and no micro job draws a flatmap; the encoding, torch and lmeval envs (1.4 GB and up
# each, minutes to build) are checked statically.
BUILT = ("TABLES_ENV", "FIGURES_ENV", "BRAIN_ENV")
CACHE = REPO / ".cache/envs"


@pytest.fixture(scope="module")
def rules():
    return envcheck.rule_envs()


def test_every_rule_names_an_env_file_and_a_script(rules):
    assert len(rules) > 30, f"found only {sorted(rules)} in workflow/rules"
    for rule, (env, script) in rules.items():
        assert env is not None, f"rule {rule} declares no conda: environment (one of common.smk's *_ENV)"
        assert env.is_file(), f"rule {rule}: {env} is missing"
        assert script is not None and script.is_file(), f"rule {rule}: its script {script} is missing"


def test_scripts_import_only_what_their_env_installs(rules):
    offenders = [f"rule {rule} ({env.name}, {script.name}): {missing}"
                 for rule, (env, script) in rules.items()
                 if (missing := envcheck.missing_packages(script, env))]
    assert not offenders, "add the package to the env file, or move the import into the function that " \
                          "needs it:\n" + "\n".join(offenders)


def test_every_env_file_serves_a_rule_and_the_whole_env_holds_them_all(rules):
    used = {env for env, _ in rules.values()}
    whole = REPO / "envs/brainphase.yaml"
    assert set((REPO / "envs").glob("*.yaml")) - used == {whole}, "an env file no rule declares"
    every = {r.name for env in used for r in envcheck.env_requirements(env)}
    # pycortex, pyproject's `cortex` extra, builds from source: only the flatmap rule's env has it.
    assert every - {r.name for r in envcheck.env_requirements(whole)} == {"pycortex"}


@pytest.mark.parametrize("constant", TORCH_FREE)
def test_torch_free_envs_bring_no_torch(constant):
    given = envcheck.distribution_closure(envcheck.env_requirements(envcheck.env_constants()[constant]))
    assert "numpy" in given
    assert not given & {"torch", "transformers", "lm-eval", "accelerate"}, f"{constant}: {sorted(given)}"


def test_a_planted_import_is_reported(tmp_path):
    """The check can fail: torch imported by a copy of a tables script, at the top or inside a function."""
    tables = envcheck.env_constants()["TABLES_ENV"]
    script = REPO / "workflow/scripts/phases.py"
    assert envcheck.missing_packages(script, tables) == []
    top = tmp_path / "phases_top.py"
    top.write_text("import torch\n" + script.read_text())
    inner = tmp_path / "phases_inner.py"
    inner.write_text(script.read_text() + "\n\ndef _gpu():\n    from transformers import AutoModel\n")
    assert [m.split()[0] for m in envcheck.missing_packages(top, tables)] == ["torch"]
    assert [m.split()[0] for m in envcheck.missing_packages(inner, tables)] == ["transformers"]
    # A figure script run in the tables env lacks matplotlib, reached through brainphase.figures.
    plot = envcheck.missing_packages(REPO / "workflow/scripts/phases_plot.py", tables)
    assert {m.split()[0] for m in plot} == {"matplotlib", "seaborn"}, plot


def _one_job_per_case(workdir: Path, rules: list[str]) -> dict[str, str]:
    """One output of one micro-run job per (rule, case), mapped to its rule, from Snakemake's
    metadata records (snakemake/persistence/file.py: one record per output, named by its url-safe
    base64 path, cut into '@'-prefixed folders when long; a job's outputs share its ``job_hash``).

    A case is the rule's script (``code``) with the job's string-valued params: strings choose a
    code path (a dataset's kind selects the fMRI or the MEG simulator), numbers (steps, seeds,
    sizes) only feed it other values.
    """
    meta = workdir / ".snakemake/metadata"
    jobs: dict[tuple, dict[int, list[str]]] = {}
    for record in sorted(p for p in meta.rglob("*") if p.is_file()):
        job = json.loads(record.read_text())
        if job.get("rule") in rules:
            choices = frozenset(p for p in job.get("params") or [] if p.startswith(("'", '"')))
            case = (job["rule"], job.get("code"), choices)
            encoded = "".join(part.lstrip("@") for part in record.relative_to(meta).parts)
            jobs.setdefault(case, {}).setdefault(job["job_hash"], []).append(
                base64.urlsafe_b64decode(encoded).decode())
    return {min(min(outputs) for outputs in of_case.values()): case[0] for case, of_case in jobs.items()}


def _ran(output: str) -> Counter:
    """Jobs per rule in a Snakemake log (dry or real), the target rule ``all`` left out."""
    return Counter(r for r in re.findall(r"^(?:local)?rule (\w+):$", output, re.M) if r != "all")


@pytest.mark.slow
@pytest.mark.parametrize("constant", BUILT)
def test_env_runs_its_rules_on_the_micro_run(constant, rules, micro_run, tmp_path):
    """One micro-run job per rule and case reruns in the env, with the other outputs as given.

    What an environment can lack is a package, and which packages a job imports depends on its
    script and on the branch its choices take, not on the numbers it is given: the other jobs of
    a case run the same imports, so one job per case shows what all of them would.
    """
    env_file = envcheck.env_constants()[constant]
    venv = envcheck.build_env(env_file, REPO / "constraints.txt", CACHE)
    python = venv / "bin/python"
    foreign = envcheck.foreign_allowed()
    env = dict(os.environ, BRAINPHASE_ENV_FOREIGN=foreign, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               OMP_NUM_THREADS="1")
    # The guard works: a package on the submitting venv's path but not in the env stays out.
    given = envcheck.distribution_closure(envcheck.env_requirements(env_file))
    absent = "torch" if "torch" not in given else "lm_eval"
    probe = subprocess.run([str(python), "-c", f"import sys; sys.path.extend({sys.path!r}); import {absent}"],
                           capture_output=True, text=True, env=env)
    assert probe.returncode and "in the environment" in probe.stderr, probe.stderr[-2000:]

    env_rules = sorted(r for r, (e, _) in rules.items() if e == env_file)
    workdir = tmp_path / "wd"
    shutil.copytree(micro_run, workdir, symlinks=True)
    # The chosen outputs are the targets and are forced (--force), so exactly their jobs rerun; only
    # this env's rules may run, the other outputs from the micro run stand as given.
    chosen = _one_job_per_case(workdir, env_rules)
    assert chosen, f"no micro-run job uses {env_file.name}"
    expected = Counter(chosen.values())
    args = ["-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
            "--force", "--allowed-rules", *env_rules, "--", *sorted(chosen)]
    # Snakemake runs a script with its own interpreter unless a conda env is active
    # (snakemake/script/__init__.py, PythonScript.execute_script: sys.executable).
    launch = f"import sys; sys.executable = {str(python)!r}; from snakemake.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", launch, *args], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert _ran(proc.stdout + proc.stderr) == expected, (expected, proc.stdout[-3000:])
