"""The weights fingerprint of one registered checkpoint, kept after a downloaded checkpoint is deleted."""

import json

from brainphase.sources.fingerprints import manifest_fingerprint
from brainphase.io import write_text
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
wc = snakemake.wildcards
fingerprint = manifest_fingerprint(snakemake.input.checkpoint)
record = {"model": wc.model, "step": wc.step, "tokens": int(snakemake.params.tokens), "fingerprint": fingerprint}
write_text(json.dumps(record, indent=1) + "\n", snakemake.output[0])
log.info("%s %s: weights %s", wc.model, wc.step, fingerprint)
