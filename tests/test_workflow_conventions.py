"""The Snakemake workflow catalog's conventions: `snakemake --lint` and `snakefmt --check`
clean, a `.snakemake-workflow-catalog.yml` it can read, and a `.test/` config that CI runs.

The catalog runs both checks itself (snakemake/snakemake-workflow-catalog,
scripts/generate-catalog.py: `snakemake --lint` in the repository, `snakefmt --check` on
the Snakefile and the rules' .smk files).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brainphase.config import load_config
from conftest import MICRO_CONFIG, REPO, make_workdir, run_snakemake

SNAKEFMT = str(Path(sys.executable).with_name("snakefmt"))
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]


def test_lint_is_clean(tmp_path):
    """What the catalog lints: the workflow with its default config (the demo)."""
    wd = make_workdir(tmp_path, REPO / "config/config.yaml")
    proc = run_snakemake(wd, "--lint", timeout=300)
    out = proc.stdout + proc.stderr
    assert "Lints for" not in out and proc.returncode == 0, out[-6000:]


@pytest.mark.snakefmt
def test_rules_are_snakefmt_formatted():
    """Fix a failure with `snakefmt Snakefile workflow/rules` (or `make format`)."""
    if not Path(SNAKEFMT).exists():
        pytest.fail(f"{SNAKEFMT} missing: install the test extra (pip install -c constraints.txt -e '.[test]')")
    proc = subprocess.run([SNAKEFMT, "--check", "-v", *(str(f.relative_to(REPO)) for f in RULE_FILES)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    out = proc.stdout + proc.stderr
    unformatted = re.findall(r'In file "([^"]+)":\s+Formatted content is different', out)
    errors = [line for line in out.splitlines() if "[ERROR]" in line]
    assert proc.returncode == 0, f"not snakefmt-formatted: {unformatted}; {errors or out[-2000:]}"


def test_catalog_settings_are_what_the_catalog_reads():
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert set(usage) <= {"mandatory-flags", "software-stack-deployment", "report"}, usage
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    deploy = usage["software-stack-deployment"]
    assert set(deploy) <= {"conda", "apptainer", "apptainer+conda"}
    assert all(isinstance(v, bool) for v in deploy.values()), deploy
    # conda: true is a promise that every rule names its environment.
    rules = [line for f in RULE_FILES for line in f.read_text().splitlines() if line.startswith("rule ")]
    conda = [line for f in RULE_FILES for line in f.read_text().splitlines() if line.strip() == "conda:"]
    assert deploy["conda"] and len(conda) >= len(rules) > 0, (len(conda), len(rules))
    # The catalog shows config/README.md as the configuration instructions.
    assert (REPO / "config/README.md").is_file()


def test_the_test_config_is_the_micro_config_the_suite_runs(tmp_path):
    """`.test/config/config.yaml` is where the catalog looks; the suite's micro run
    (conftest's `micro_run`, checked against tests/data/micro_tables.sha256) runs it."""
    assert MICRO_CONFIG == REPO / ".test/config/config.yaml"
    load_config(MICRO_CONFIG)
    wd = make_workdir(tmp_path)
    assert (wd / "config/config.yaml").read_bytes() == MICRO_CONFIG.read_bytes()
    # The older path still reaches the same file.
    assert (REPO / "tests/data/micro.yaml").resolve() == MICRO_CONFIG.resolve()
