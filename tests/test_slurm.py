"""The workflow on a real scheduler: cluster/start_slurm.sh brings up a single-node
SLURM (munge, slurmctld, slurmd; no slurmdbd) on this machine and the micro config
runs through `--profile profiles/slurm`, every job an sbatch submission.

Set BRAINPHASE_SKIP_SLURM=1 to skip (e.g. without root or apt); otherwise a
cluster that does not come up fails the tests with the script's output.

The SLURM executor plugin is the package's `slurm` extra, not a dependency: the
runs here use this Python if it has the plugin, else a virtual environment
layered over this one with only the extra added.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, make_workdir

sys.path.insert(0, str(REPO / "benchmarks"))
from _without_plugin import PLUGIN, WITHOUT_PLUGIN  # noqa: E402  (shared with benchmarks/dry_run.py)

sys.path.remove(str(REPO / "benchmarks"))

START = REPO / "cluster/start_slurm.sh"
SLURM_BASE = Path(os.environ.get("SLURM_BASE", "/tmp/brainphase-slurm"))
# The plugin's status loop can wait forever on a job it lost: every run here
# has a hard timeout.
MICRO_TIMEOUT = 600
# Poll SLURM from 1 s on instead of the profile's 20 s first wait and 10 s
# interval (the plugin adds 10 s after each check that finds no finished job
# and drops back once one has finished): the runs here are chains of short jobs.
FAST_STATUS = (
    "--slurm-init-seconds-before-status-checks", "1",
    "--seconds-between-status-checks", "1",
    "--max-status-checks-per-second", "10",
)




def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def slurm_python(tmp_path_factory) -> str:
    """A Python with the `slurm` extra: this one if it has the plugin, else a venv whose
    only packages are the extra's, on top of this environment's (a .pth file adds this
    site-packages with site.addsitedir, so its editable install and pins stay in force)."""
    if importlib.util.find_spec(PLUGIN) is not None:
        return sys.executable
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["slurm"]
    venv = tmp_path_factory.mktemp("slurm-extra-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    python = venv / "bin/python"
    site_dir = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    base = sysconfig.get_paths()["purelib"]
    (Path(site_dir) / "_brainphase_base.pth").write_text(f"import site; site.addsitedir({base!r})\n")
    proc = subprocess.run([python, "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), *extra],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"the slurm extra ({', '.join(extra)}) could not be installed (pip exit {proc.returncode}: "
                    f"{proc.stderr.strip()[-800:]}); install it with pip install -c constraints.txt -e '.[slurm]'")
    return str(python)


def _snakemake(python: str, *args: str, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([python, "-m", "snakemake", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.environ.get("BRAINPHASE_SKIP_SLURM") == "1":
        pytest.skip("BRAINPHASE_SKIP_SLURM=1")
    env = dict(os.environ, SLURM_BASE=str(SLURM_BASE))
    was_up = subprocess.run(["bash", str(START), "status"], capture_output=True, env=env).returncode == 0
    try:
        proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600, env=env)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"cluster/start_slurm.sh timed out after 600 s:\n{err.stdout}\n{err.stderr}")
    if proc.returncode != 0:
        pytest.fail(f"cluster/start_slurm.sh failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    yield SLURM_BASE
    if not was_up:  # leave a cluster someone else started running
        subprocess.run(["bash", str(START), "stop"], capture_output=True, env=env, timeout=120)


def _cpu_workflow_profile(dst: Path) -> Path:
    """profiles/default as it is, but for this GPU-less, 2-core test node: gpu 0 and
    memory requests that let two jobs share it."""
    prof = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    for res in prof["set-resources"].values():
        if "gpu" in res:
            res["gpu"] = 0
        if "mem_mb" in res:
            res["mem_mb"] = min(res["mem_mb"], 4000)
    dst.mkdir(parents=True)
    (dst / "config.yaml").write_text(yaml.safe_dump(prof))
    return dst


def _run_id(out: str) -> str | None:
    m = re.search(r"SLURM run ID: (\S+)", out)
    return m.group(1) if m else None


def _run_on_slurm(python: str, wd: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    try:
        return _snakemake(python, "-s", str(REPO / "Snakefile"), "-d", str(wd),
                          "--profile", str(REPO / "profiles/slurm"), *FAST_STATUS, *args, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        out += (err.stderr or b"").decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        run_id = _run_id(out)
        if run_id:  # do not leave the run's jobs queued
            _sh("scancel", "--name", run_id)
        pytest.fail(f"snakemake on SLURM did not finish within {timeout} s:\n{out[-4000:]}")


def _jobcomp(base: Path, run_id: str) -> list[dict]:
    """The finished jobs of one Snakemake run, from SLURM's job completion log."""
    path = base / "log/jobcomp.txt"
    rows = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in path.read_text().splitlines()]
    return [r for r in rows if r.get("Name") == run_id]


# Rerun on SLURM in a copy of the local micro run (upstream stages stand as given):
# the newest checkpoint's activations for the fMRI stimuli and the SAE corpus (a
# GPU stage reading a registered checkpoint and a stimulus table), forced; what
# reads them reruns after them (encoding, crosscoder, two SAEs, their three
# aggregates; the encoding trajectory figure, a local rule); and the small
# model's training, forced (registration reads a run as ancient(), so nothing
# follows it). Ten SLURM jobs: each starts Snakemake twice (sbatch job, then
# srun step), ~5 s of CPU on this 2-core node, so the whole micro DAG (75 jobs)
# would take ~9 min here.
SLURM_RULES = {"train", "activations", "encoding", "crosscoder", "sae", "aggregate_encoding",
               "aggregate_crosscoder", "aggregate_sae"}
SLURM_TABLES = ["encoding", "crosscoder", "sae"]


def _slurm_targets(wd: Path) -> tuple[list[str], list[str]]:
    """(forced outputs, targets) of the SLURM rerun, from the micro config in ``wd``."""
    cfg = yaml.safe_load((wd / "config/config.yaml").read_text())
    results = cfg["results"]
    main = next(m for m in cfg["models"] if "analyses" not in m)
    small = next(m for m in cfg["models"] if m is not main)
    step = f"step{max(main['train']['checkpoints'])}"
    runs = [p for p in (wd / results / "train" / small["name"]).iterdir() if p.is_dir()]
    assert len(runs) == 1, f"one training run of {small['name']} expected in the micro run: {runs}"
    forced = [f"{results}/activations/{main['name']}/{step}/{stimset}.safetensors"
              for stimset in ("toy_fmri", "sae_corpus")] + [str(runs[0].relative_to(wd))]
    tables = [f"{results}/tables/{name}.parquet" for name in SLURM_TABLES]
    return forced, [*forced, *tables, f"{results}/figures/encoding_trajectory.png"]


@pytest.fixture(scope="session")
def slurm_micro_run(slurm_cluster, slurm_python, micro_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slurm")
    wd = tmp / "wd"
    shutil.copytree(micro_run, wd, symlinks=True)
    forced, targets = _slurm_targets(wd)
    wprof = _cpu_workflow_profile(tmp / "workflow_profile")
    started, start = time.time(), time.monotonic()
    # mtime only: the copy's records come from this code's local run, and what reruns is the
    # forced jobs and what reads their outputs.
    proc = _run_on_slurm(slurm_python, wd, "--workflow-profile", str(wprof), "--slurm-keep-successful-logs",
                         "--retries", "0", "--rerun-triggers", "mtime", "--forcerun", *forced, "--", *targets,
                         timeout=MICRO_TIMEOUT)
    seconds = time.monotonic() - start
    print(f"\nmicro run's {', '.join(sorted(SLURM_RULES))} on SLURM: {seconds:.0f} s")
    return wd, proc, started


def test_micro_run_on_slurm_succeeds_through_squeue(slurm_micro_run):
    wd, proc, _ = slurm_micro_run
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "steps (100%) done" in out
    # No slurmdbd: sacct cannot answer, so every job state came from squeue
    # (a lost status would have hung the run into its timeout, not finished it).
    sacct = _sh("sacct", "-X", "-n")
    assert sacct.returncode != 0 or not sacct.stdout.strip(), sacct.stdout
    assert "Falling back to 'sacct'" not in out


def test_micro_jobs_ran_as_slurm_jobs(slurm_micro_run, slurm_cluster):
    wd, proc, _ = slurm_micro_run
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    run_id = _run_id(out)
    assert run_id, out[-2000:]
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: .*?/slurm_logs/rule_(\w+)/", out))
    rules = set(submitted.values())
    # Every rerun stage but the local rule (the encoding figure), which ran here.
    assert rules == SLURM_RULES, rules
    assert re.search(r"^localrule plot_encoding_trajectory:$", out, re.M), out[-4000:]
    # SLURM's job completion log: each of those jobs ran, in the run's working directory.
    done = {r["JobId"]: r for r in _jobcomp(slurm_cluster, run_id)}
    assert set(done) == set(submitted)
    assert {r["JobState"] for r in done.values()} == {"COMPLETED"}
    assert {r["WorkDir"] for r in done.values()} == {str(wd)}
    # SLURM's own job logs (kept: --slurm-keep-successful-logs), one per job.
    logs = {p.stem for p in (wd / ".snakemake/slurm_logs").rglob("*.log")}
    assert logs == set(submitted)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).reset_index(drop=True)


def test_micro_run_on_slurm_equals_the_local_run(slurm_micro_run, micro_run):
    """The tables rewritten on SLURM equal the local run's (the others are the local run's copies)."""
    wd, proc, started = slurm_micro_run
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    local = {p.name for p in (micro_run / "results/tables").glob("*.parquet")}
    remote = sorted(p.name for p in (wd / "results/tables").glob("*.parquet") if p.stat().st_mtime >= started)
    assert set(remote) <= local and {f"{name}.parquet" for name in SLURM_TABLES} <= set(remote), remote
    for name in remote:
        a, b = _read(micro_run / "results/tables" / name), _read(wd / "results/tables" / name)
        assert list(a.columns) == list(b.columns), name
        assert a.shape == b.shape, name
        for col in a.columns:
            x, y = a[col], b[col]
            if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
                np.testing.assert_allclose(x.to_numpy(float), y.to_numpy(float), rtol=1e-5, atol=1e-8,
                                           equal_nan=True, err_msg=f"{name}:{col}")
            else:
                assert x.astype(str).tolist() == y.astype(str).tolist(), f"{name}:{col}"
    # Training is deterministic: the run retrained on SLURM holds the local run's weights, byte for byte.
    forced_run = _slurm_targets(wd)[0][-1]
    weights = sorted((wd / forced_run).rglob("model.safetensors"))
    assert weights and all(p.stat().st_mtime >= started for p in weights), weights
    for path in weights:
        assert path.read_bytes() == (micro_run / path.relative_to(wd)).read_bytes(), path


THROWAWAY = """
rule all:
    input: "env.txt", "fails.txt"

rule env:
    output: "env.txt"
    shell: "echo $SLURM_JOB_ID $OMP_NUM_THREADS $HF_HUB_OFFLINE > {output}"

rule fails:
    output: "fails.txt"
    shell: "echo about to fail; exit 3"
"""


def test_a_job_failing_on_slurm_fails_the_run(slurm_cluster, slurm_python, tmp_path):
    (tmp_path / "Snakefile").write_text(THROWAWAY)
    proc = _snakemake(
        slurm_python, "-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path), "--workflow-profile", "none",
        "--profile", str(REPO / "profiles/slurm"), *FAST_STATUS, "--retries", "0", "--keep-going",
        "--latency-wait", "5", timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert re.search(r"Error in rule fails", out), out[-4000:]
    assert "FAILED" in out  # the SLURM state squeue reported
    assert not (tmp_path / "fails.txt").exists()
    # The other job ran on SLURM with the submitting environment (sbatch --export=ALL):
    # one thread, offline hub.
    job_id, omp, offline = (tmp_path / "env.txt").read_text().split()
    assert job_id.isdigit() and omp == "1" and offline == "1"
    # The failed job's SLURM log is kept and holds the rule's output.
    logs = list((tmp_path / ".snakemake/slurm_logs/rule_fails").rglob("*.log"))
    assert logs and "about to fail" in logs[0].read_text()


def test_gpu_resource_becomes_sbatch_gpus(slurm_cluster, slurm_python, tmp_path):
    """gpu: 1 reaches sbatch as --gpus=1 (which this GPU-less node refuses)."""
    (tmp_path / "Snakefile").write_text('rule g:\n    output: "g.txt"\n    resources: gpu=1\n'
                                        '    shell: "touch {output}"\n')
    proc = _snakemake(
        slurm_python, "-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path), "--workflow-profile", "none",
        "--profile", str(REPO / "profiles/slurm"), *FAST_STATUS, "--retries", "0", timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "--gpus=1" in out and "Invalid generic resource" in out, out[-4000:]




def test_the_slurm_profile_without_the_plugin_names_the_extra(tmp_path):
    """No cluster needed: the profile's own check, before Snakemake's bare "invalid choice: 'slurm'"."""
    wd = make_workdir(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_PLUGIN, "-s", str(REPO / "Snakefile"), "-d", str(wd),
         "--profile", str(REPO / "profiles/slurm"), "-n"],
        capture_output=True, text=True, timeout=300,
    )
    err = proc.stderr
    assert proc.returncode != 0, err[-2000:]
    assert "profiles/slurm needs snakemake-executor-plugin-slurm" in err, err[-2000:]
    assert "pip install -c constraints.txt -e '.[slurm]'" in err, err[-2000:]
