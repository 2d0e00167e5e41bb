"""Register one checkpoint of a local training run: symlinks to its files and a sha256 manifest."""

from brainphase.sources.local import link_local_checkpoint
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
step = int(snakemake.wildcards.step.removeprefix("step"))
link_local_checkpoint(snakemake.params.folder, snakemake.output.checkpoint, snakemake.params.model, step,
                      snakemake.params.tokens)
log.info("%s step %d (%s tokens) from %s", snakemake.params.model, step, snakemake.params.tokens,
         snakemake.params.folder)
