"""The separate environment with sae-lens that the SAE benchmark and the SAE export test run in.

sae-lens is never one of the project's dependencies (it pins its own
transformers and TransformerLens); ``benchmarks/.venv-saelens`` (git-ignored)
holds it, created on first use with ``sae-lens==6.54.12`` and the project's
torch (``constraints.txt``), by uv where it is there, else pip
(``_venv_install.py``); that needs PyPI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from _venv_install import install

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-saelens"
CONSTRAINTS = HERE.parent / "constraints.txt"
PINS = ("sae-lens==6.54.12", "torch==2.13.0")


class SaelensEnvError(RuntimeError):
    """The environment could not be created; ``command`` is what failed, ``output`` what it printed."""

    def __init__(self, command: list[str], output: str):
        self.command, self.output = command, output
        super().__init__(f"creating {VENV} failed: {' '.join(command)}\n{output[-3000:]}")


def installed(python: Path) -> bool:
    """Whether ``python`` has exactly the pinned versions (read from package metadata, without importing them)."""
    if not python.exists():
        return False
    names = [p.split("==")[0] for p in PINS]
    probe = f"from importlib.metadata import version; print(' '.join(version(n) for n in {names!r}))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    # A local build label (torch's "+cpu") is the same release.
    found = [v.split("+")[0] for v in done.stdout.split()]
    return done.returncode == 0 and found == [p.split("==")[1] for p in PINS]


def saelens_python(path: str | None = None, log=print) -> str:
    """The interpreter with sae-lens: ``path`` if given, else ``benchmarks/.venv-saelens``, created if needed.

    A failed installation removes the half-made environment, so the next call
    starts clean, and raises :class:`SaelensEnvError`.
    """
    if path:
        return path
    python = VENV / "bin" / "python"
    if installed(python):
        return str(python)
    log(f"creating {VENV} with {' '.join(PINS)} (once; about a minute with uv, a few with pip)")
    steps = (lambda: subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], capture_output=True,
                                    text=True),
             lambda: install(python, CONSTRAINTS, list(PINS)))
    for step in steps:
        done = step()
        if done.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            raise SaelensEnvError(list(map(str, done.args)), done.stdout + done.stderr)
    return str(python)
