"""Time the dry run (``snakemake -n``: parse the workflow, build the DAG) of every shipped config.

Run as::

    .venv/bin/python benchmarks/dag.py [--repeats 3]

Each config is planned in its own fresh temporary working directory, as a
user would run it: ``config/config.yaml`` (the demo) as the workdir's
config, every other ``config/*.yaml`` (a study) passed with
``--configfile`` on top of it, with nothing downloaded: no data folder, no
corpus, no checkpoint (the dry run lists them as missing). Nothing has been
run in the workdir, so every job is scheduled: this is the largest DAG each
config makes. Hugging Face models read their cached branch listing from
resources/revisions/ or the config's explicit revision list, so no network
is used (HF_HUB_OFFLINE=1).

The time is the wall clock of the whole ``snakemake -n`` process (Python
and Snakemake start-up included: it is what a user waits for), best of
``--repeats``. There is no baseline to compare with: the last line gives the
slowest config against the 10 s a dry run should stay under.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
LIMIT_S = 10.0


def time_dry_run(config: Path, repeats: int) -> tuple[float, int]:
    """Best wall-clock seconds of ``snakemake -n`` for ``config`` and the number of jobs it schedules."""
    best, n_jobs = float("inf"), -1
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="brainphase-dag-") as tmp:
            wd = Path(tmp)
            (wd / "config").mkdir()
            shutil.copy(REPO / "config/config.yaml", wd / "config/config.yaml")
            args = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(wd), "-n"]
            if config.name != "config.yaml":
                args += ["--configfile", str(config)]
            t0 = time.perf_counter()
            proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
            seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"snakemake -n failed for {config.name}:\n{proc.stderr[-3000:]}")
        m = re.search(r"^total\s+(\d+)$", proc.stdout, re.M)
        n_jobs = int(m.group(1)) if m else 0
        best = min(best, seconds)
    return best, n_jobs


def time_startup(repeats: int) -> float:
    """Best wall-clock seconds of ``snakemake -n`` on a one-rule workflow: Snakemake's own start-up."""
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="brainphase-dag-") as tmp:
            (Path(tmp) / "Snakefile").write_text('rule a:\n    output: "a.txt"\n    shell: "touch {output}"\n')
            t0 = time.perf_counter()
            subprocess.run([SNAKEMAKE, "-s", str(Path(tmp) / "Snakefile"), "-d", tmp, "-n"], capture_output=True,
                           check=True, timeout=300)
            best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="best of this many dry runs per config")
    parser.add_argument("configs", nargs="*", type=Path,
                        help="configs to time (default: config/config.yaml and every config/*.yaml)")
    args = parser.parse_args(argv)

    configs = [c.resolve() for c in args.configs] or sorted(
        (REPO / "config").glob("*.yaml"), key=lambda p: (p.name != "config.yaml", p.name))
    print(f"snakemake start-up (dry run of a one-rule workflow, for scale): {time_startup(max(1, args.repeats)):.2f}s",
          flush=True)
    times = {}
    for config in configs:
        seconds, n_jobs = time_dry_run(config, max(1, args.repeats))
        times[config.name] = seconds
        print(f"dry-run DAG ({config.name}): {seconds:.2f}s, {n_jobs} jobs", flush=True)
    slowest = max(times, key=times.get)
    t = times[slowest]
    print(f"slowest: {slowest}")
    print(f"dry-run DAG: ours {t:.2f}s, limit {LIMIT_S:.0f}s, ratio={LIMIT_S / t:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
