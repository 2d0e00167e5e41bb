"""Register one checkpoint of the demo's training run: hard links to its files under checkpoints/<model>/<step>/.

The training job writes every checkpoint of its run under train/<model>/<recipe>/<step>/;
the analyses read the registered copy. Training again (to add a checkpoint)
rewrites the run's folders, but a registered checkpoint keeps the bytes its
analyses read: hard links share the files without doubling the disk, and
fall back to copies across file systems.
"""

import os
import shutil
from pathlib import Path

from brainphase.contracts.checkpoint import verify_checkpoint
from brainphase.io import atomic_path
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
source, dest = Path(snakemake.input.run) / snakemake.wildcards.step, Path(snakemake.output.checkpoint)


def link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


meta = verify_checkpoint(source)
with atomic_path(dest, directory=True) as tmp:
    tmp.chmod(0o755)
    shutil.copytree(source, tmp, dirs_exist_ok=True, copy_function=link_or_copy)
verify_checkpoint(dest, check_hashes=False)
log.info("%s %s (%s tokens) registered from %s", meta["model"], meta["revision"], meta["tokens"], source)
