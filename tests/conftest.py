import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


def run_snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the repo's Snakefile in ``workdir`` (which holds config/config.yaml)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


# The micro config, where the Snakemake workflow catalog looks for a test config
# (`snakemake -d .test`); tests/data/micro.yaml links to it.
MICRO_CONFIG = REPO / ".test/config/config.yaml"


def make_workdir(tmp: Path, config: Path | str = MICRO_CONFIG) -> Path:
    (tmp / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(config, tmp / "config/config.yaml")
    return tmp


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """The whole DAG on the micro config, run once per test session."""
    wd = make_workdir(tmp_path_factory.mktemp("micro"))
    proc = run_snakemake(wd, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd


# Stages run by one generic rule for every model, whose jobs the tests count per model.
PER_MODEL = ("train", "register", "link", "download", "activations", "context_activations")


def job_counts(stdout: str) -> dict[str, int]:
    """Jobs per rule in a dry run's output (with its total); the per-model stages (checkpoints in and
    activations) are counted per model, as `<rule>_<model>` (`activations_toy`, `download_pythia`)."""
    counts = {}
    for m in re.finditer(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", stdout, re.M):
        model = re.search(r"^    wildcards: (?:.*, )?model=([^,\n]+)", m.group(2), re.M)
        rule = f"{m.group(1)}_{model.group(1)}" if m.group(1) in PER_MODEL and model else m.group(1)
        counts[rule] = counts.get(rule, 0) + 1
    return {**counts, "total": sum(counts.values())} if counts else {}
