"""What the Snakemake command line asks for, checked against the config before any job.

``device: cuda`` is a fact about the machine the jobs run on, which only the
command line (its executor and profiles) tells: the login node of a cluster
lacks the GPU its nodes have.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .config import SCHEMA, ConfigError
from .planning import runs_jobs


def check_device(config: dict, argv: list[str], cuda_available: bool | None = None) -> str | None:
    """``device: cuda`` on a machine without CUDA: raise when this command runs jobs here, else a warning.

    A dry run, a report or a graph runs no job, and on a cluster (``--executor slurm``, or a profile
    that sets one) the jobs run on nodes that may have the GPU the login node lacks; the jobs check
    there again when they parse the workflow.
    """
    if config.get("device") != "cuda":
        return None
    if cuda_available is None:
        import torch

        cuda_available = bool(torch.cuda.is_available())
    if cuda_available:
        return None
    executor = _executor(argv)
    # slurm-jobstep runs a submitted job on the node the command runs on.
    if not runs_jobs(argv) or executor not in ("local", "dryrun", "touch", "slurm-jobstep"):
        where = "this command runs no job" if not runs_jobs(argv) else f"the jobs run on {executor} nodes"
        return (f"config key device: cuda, but CUDA is not available on this machine ({where}); the jobs will "
                "stop unless they run on a GPU node. Set device: auto to use CUDA where present, else the CPU")
    raise ConfigError("config key device: cuda, but CUDA is not available on this machine (torch.cuda."
                      "is_available() is False), where this command runs the jobs; set device: auto (CUDA when "
                      "present, else the CPU) or cpu, or run on a GPU node (e.g. snakemake --profile "
                      "profiles/slurm)")


def _executor(argv: list[str]) -> str:
    """The Snakemake executor a command line asks for: --executor/-e, else its profiles', else local."""
    args = list(argv[1:])
    for i, a in enumerate(args):
        if a in ("--executor", "-e") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--executor="):
            return a.split("=", 1)[1]
    profiles = []
    for i, a in enumerate(args):
        if a in ("--profile", "--workflow-profile") and i + 1 < len(args):
            profiles.append(args[i + 1])
        elif a.startswith(("--profile=", "--workflow-profile=")):
            profiles.append(a.split("=", 1)[1])
    if not any(a == "--profile" or a.startswith("--profile=") for a in args):
        profiles.append(os.environ.get("SNAKEMAKE_PROFILE"))  # what --profile would override
    profiles.append(str(SCHEMA.parents[2] / "profiles" / "default"))  # the workflow profile Snakemake loads itself
    for name in filter(None, profiles):
        for folder in (Path(name), Path.home() / ".config" / "snakemake" / name, Path("/etc/xdg/snakemake") / name):
            for file in ("config.v8+.yaml", "config.yaml"):
                try:
                    executor = (yaml.safe_load((folder / file).read_text()) or {}).get("executor")
                except (OSError, yaml.YAMLError, AttributeError):
                    continue
                if executor:
                    return str(executor)
    return "local"
