"""Installing pinned packages into a side venv: with uv when it is there, else with pip.

The environment test (tests/envcheck.py) and the sae-lens environment
(benchmarks/_saelens_env.py) build venvs of their own. uv resolves and downloads
in parallel and links files from its cache, several times faster than pip for
these builds; it is pinned in the package's ``test`` extra, and pip is the
fallback where it is missing.

uv does not read pip's configuration (uv's docs, "Compatibility with pip":
pip.conf and PIP_* variables are ignored), so the find-links, index, constraint
and certificate settings pip would use here are passed on to it: on a machine
whose pip finds torch's CPU wheel through ``find-links``, uv must find the same one.
Where a package lies on several indexes, pip takes the best version from all of
them and uv by default only looks at the first index that has the package; uv's
``unsafe-best-match`` strategy is pip's behaviour.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# pip's setting -> uv's option; each setting may hold several space-separated values.
PIP_SETTINGS = {"find-links": "--find-links", "index-url": "--index-url", "extra-index-url": "--extra-index-url",
                "constraint": "--constraint"}


def uv_executable() -> str | None:
    """uv next to this interpreter (the venv's bin/, where the ``test`` extra puts it), else on PATH."""
    beside = Path(sys.executable).with_name("uv")
    return str(beside) if beside.is_file() else shutil.which("uv")


def pip_settings() -> dict[str, list[str]]:
    """pip's settings here (config files and PIP_* variables), as ``pip config list`` gives them."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    settings: dict[str, list[str]] = {}
    # Lines read `<scope>.<key>='<value>'`; the environment (`:env:.key`) outranks the files, as in pip.
    # A value set over several lines in a file comes out on several lines, hence re.S.
    for scope, key, value in re.findall(r"^(\S*?)\.([\w-]+)='(.*?)'$", listed.stdout, re.M | re.S):
        if key not in settings or scope == ":env:":
            settings[key] = value.split()
    return settings


def install(python: Path | str, constraints: Path, requirements: list[str],
            uv: str | None = None) -> subprocess.CompletedProcess:
    """Install ``requirements`` under ``constraints`` into the venv of ``python``; the finished
    process (its ``args`` the command) with its output, whether it succeeded or not."""
    uv = uv if uv is not None else uv_executable()
    if not uv:
        command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--constraint", str(constraints), *requirements]
        return subprocess.run(command, capture_output=True, text=True)
    settings = pip_settings()
    options = [arg for key, values in settings.items() if key in PIP_SETTINGS
               for value in values for arg in (PIP_SETTINGS[key], value)]
    env = dict(os.environ)
    if settings.get("cert"):  # pip's CA bundle (a proxy's CA, say); uv reads it from SSL_CERT_FILE
        env.setdefault("SSL_CERT_FILE", settings["cert"][0])
    command = [uv, "pip", "install", "--quiet", "--python", str(python), "--index-strategy", "unsafe-best-match",
               *options, "--constraint", str(constraints), *requirements]
    return subprocess.run(command, capture_output=True, text=True, env=env)
