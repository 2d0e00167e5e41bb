import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
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


def _snakemake_call(workdir: Path, *args: str) -> tuple[list[str], dict]:
    """The command and environment that run the repo's Snakefile in ``workdir`` offline, one thread a job."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args], env


def run_snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the repo's Snakefile in ``workdir`` (which holds config/config.yaml)."""
    command, env = _snakemake_call(workdir, *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


# The micro config, where the Snakemake workflow catalog looks for a test config
# (`snakemake -d .test`); tests/data/micro.yaml links to it.
MICRO_CONFIG = REPO / ".test/config/config.yaml"


def make_workdir(tmp: Path, config: Path | str = MICRO_CONFIG) -> Path:
    (tmp / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(config, tmp / "config/config.yaml")
    return tmp


# The micro run is the suite's longest step (~7 min on 2 cores) and most of
# the workflow tests read it. It starts in the background when the session's
# first test starts, the tests that need it run last (pytest_collection_modifyitems),
# and everything else runs meanwhile. Under pytest-xdist the workers share one run
# through a lock in the session's common temporary folder.
MICRO_RUN_TIMEOUT = 3600


def _session_folder(tmp_path_factory) -> Path:
    """The session's temporary folder, common to all xdist workers (each has a subfolder of it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _start_micro_run(tmp_path_factory) -> Path:
    """Start the micro run detached, once per session; its folder (``wd``, ``log``, ``pgid``, then ``rc``)."""
    run = _session_folder(tmp_path_factory) / "micro-run"
    run.mkdir(exist_ok=True)
    with open(run.parent / "micro-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run / "pgid").exists():
            command, env = _snakemake_call(make_workdir(run / "wd"), "--cores", "2")
            # rc appears whole (rename) only once Snakemake has exited.
            proc = subprocess.Popen(["sh", "-c", f"{shlex.join(command)} > log 2>&1; echo $? > rc.part; mv rc.part rc"],
                                    cwd=run, env=env, start_new_session=True)
            (run / "pgid").write_text(str(proc.pid))
    return run


def _needs_micro_run(item) -> bool:
    return "micro_run" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    """Modules with a test that reads the micro run go last (stable order otherwise), so that the
    rest of the suite runs while the micro run does, and xdist's per-module scheduling keeps them last."""
    late = {item.fspath for item in items if _needs_micro_run(item)}
    items[:] = sorted(items, key=lambda item: item.fspath in late)


@pytest.fixture(scope="session", autouse=True)
def _micro_run_in_background(request, tmp_path_factory):
    if any(_needs_micro_run(item) for item in request.session.items):
        _start_micro_run(tmp_path_factory)


def pytest_sessionfinish(session):
    """An interrupted or failed-early session stops a micro run it left running (controller only)."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not hasattr(session.config, "_tmp_path_factory"):
        return
    run = _session_folder(session.config._tmp_path_factory) / "micro-run"
    if not (run / "pgid").exists() or (run / "rc").exists():
        return
    # SIGINT, as Ctrl-C: Snakemake stops its jobs and removes their partial outputs (it can
    # sit on SIGTERM); SIGKILL if it has not gone within a minute.
    group = int((run / "pgid").read_text())
    for sig, grace in ((signal.SIGINT, 60), (signal.SIGKILL, 5)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while _group_running(group) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not _group_running(group):
            return


def _group_running(group: int) -> bool:
    """Whether a process of the group is still running: the exited ``sh`` stays a zombie of the
    worker that started it, so ``kill(-group, 0)`` alone would wait on it."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # fields after the name: state, ppid, pgrp
            return True
    return False


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """The whole DAG on the micro config, run once per test session (in the background, see above)."""
    run = _start_micro_run(tmp_path_factory)
    deadline = time.monotonic() + MICRO_RUN_TIMEOUT
    while not (run / "rc").exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the micro run did not finish within {MICRO_RUN_TIMEOUT} s; its log: {run / 'log'}")
        time.sleep(1)
    rc = int((run / "rc").read_text())
    assert rc == 0, f"the micro run failed (exit {rc}); {run / 'log'} ends:\n" + (run / "log").read_text()[-4000:]
    return run / "wd"


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
