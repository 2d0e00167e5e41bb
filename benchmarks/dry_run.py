"""Time the demo's dry run with a SLURM client on ``PATH`` and without one.

Run as::

    .venv/bin/python benchmarks/dry_run.py [--repeats 3]

snakemake-executor-plugin-slurm 2.8.0, when imported, runs ``scontrol``/``squeue`` to
build its help text (snakemake-executor-plugin-slurm,
snakemake_executor_plugin_slurm/job_status_query.py: ``get_min_job_age``), and
Snakemake imports every installed executor plugin on every call. Where a SLURM
client is installed but no controller answers, each query waits ~9 s. The
plugin is therefore the package's ``slurm`` extra, and an environment set up
without it should dry-run as fast with the client on ``PATH`` as without.

Each round runs ``snakemake -n`` on a scratch copy of ``config/config.yaml``:

* ``client on PATH``: the environment as installed,
* ``client hidden``: ``PATH`` with the SLURM commands left out (a folder of links
  to everything else in the folders that hold them),
* where this environment still has the plugin (installed before it became an
  extra; ``make setup`` removes it): also ``client on PATH, plugin hidden``, the
  same Snakemake with the plugin kept from its plugin search, which is what an
  environment without the extra runs.

Timings are the best of ``--repeats`` interleaved rounds. Nothing is asserted:
the point is the difference, reported against the 1 s it should stay under.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _without_plugin import PLUGIN, WITHOUT_PLUGIN

REPO = Path(__file__).resolve().parents[1]
# The commands of Debian's slurm-client (and slurm-wlm) that the plugin may call.
SLURM_COMMANDS = {"sacct", "sacctmgr", "salloc", "sattach", "sbatch", "sbcast", "scancel", "scontrol",
                  "scrontab", "sdiag", "sinfo", "sprio", "squeue", "sreport", "srun", "sshare", "sstat",
                  "strigger", "sview"}


def path_without_slurm(scratch: Path) -> str:
    """PATH with every folder that holds a SLURM command replaced by links to its other entries."""
    out = []
    for i, entry in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        folder = Path(entry)
        if not folder.is_dir() or not any((folder / c).exists() for c in SLURM_COMMANDS):
            out.append(entry)
            continue
        shadow = scratch / f"path{i}"
        shadow.mkdir()
        for f in folder.iterdir():
            if f.name not in SLURM_COMMANDS:
                (shadow / f.name).symlink_to(f)
        out.append(str(shadow))
    return os.pathsep.join(out)


def controller_answers() -> bool | None:
    if shutil.which("squeue") is None:
        return None
    try:
        return subprocess.run(["squeue", "-h"], capture_output=True, timeout=3).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def dry_run(cmd: list[str], workdir: Path, path: str) -> float:
    env = dict(os.environ, PATH=path, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "-q"],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"snakemake -n failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    args = ap.parse_args()

    has_plugin = importlib.util.find_spec(PLUGIN) is not None
    answers = controller_answers()
    print(f"python {sys.executable}; {PLUGIN} importable: {'yes' if has_plugin else 'no'}")
    print("SLURM client on PATH: " + ("no" if answers is None else
                                       f"yes, controller {'answers' if answers else 'does not answer'}"))
    if has_plugin:
        print("warning: this environment still has the SLURM plugin; `make setup` removes it "
              "(`make setup EXTRAS=test,slurm` keeps it)")
    snakemake = [str(Path(sys.executable).with_name("snakemake"))]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "wd/config").mkdir(parents=True)
        shutil.copy(args.config, tmp / "wd/config/config.yaml")
        hidden = path_without_slurm(tmp)
        modes = {"client on PATH": (snakemake, os.environ["PATH"]), "client hidden": (snakemake, hidden)}
        if has_plugin:
            modes["client on PATH, plugin hidden"] = ([sys.executable, "-c", WITHOUT_PLUGIN], os.environ["PATH"])
        times = {name: [] for name in modes}
        for _ in range(args.repeats):
            for name, (cmd, path) in modes.items():
                times[name].append(dry_run(cmd, tmp / "wd", path))
    best = {name: min(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"{name:32s} best {best[name]:6.2f} s   ({', '.join(f'{t:.2f}' for t in ts)})")
    ours = best["client on PATH, plugin hidden" if has_plugin else "client on PATH"]
    diff = ours - best["client hidden"]
    plugin_note = (f"; as installed here, with the plugin: {best['client on PATH']:.2f}s" if has_plugin else "")
    print(f"demo dry run without the slurm extra: SLURM client on PATH {ours:.2f}s, client hidden "
          f"{best['client hidden']:.2f}s, difference {diff:+.2f}s "
          f"({'within' if abs(diff) <= 1 else 'NOT within'} 1 s){plugin_note}")


if __name__ == "__main__":
    main()
