"""Measured throughput of each stage: written by ``benchmarks/*.py``, read by the dry-run plan.

A benchmark times our code on a known shape and records what it measured
(seconds, rates, the shape) under its stage and the device it ran on. The
plan scales those measurements to a study's shapes with each stage's cost
model (:mod:`brainphase.planning`), so a printed hour is a measured rate
times a counted amount of work, never a FLOP guess. The file is JSON, kept
in the repository (``benchmarks/throughput.json``) so a fresh clone plans
with the numbers of the machine the benchmarks last ran on; each entry names
that machine.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

DEVICES = ("cpu", "cuda")


def machine() -> str:
    """A short description of this machine: CPU model and cores, or the GPU's name."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def record(path: str | Path, stage: str, device: str, **values) -> dict:
    """Merge ``values`` (numbers, strings, small dicts) into ``path`` under ``device`` → ``stage``.

    The entry also gets the machine and the date. Other stages and devices
    in the file are kept. Returns the entry written.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    path = Path(path)
    data = load(path)
    entry = {**values, "machine": machine() if device == "cpu" else values.get("machine", "cuda"),
             "date": datetime.date.today().isoformat()}
    data.setdefault(device, {})[stage] = entry
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)  # never a half-written file
    return entry


def load(path: str | Path) -> dict:
    """``{device: {stage: entry}}`` from ``path``; empty when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); rerun the benchmarks or restore it from git") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected {{device: {{stage: entry}}}}, got {type(data).__name__}")
    return data


def default_path() -> Path:
    """``benchmarks/throughput.json`` of the repository this package is installed from."""
    return Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.json"
