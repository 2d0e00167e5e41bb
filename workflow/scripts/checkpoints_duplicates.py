"""Checkpoints of one model whose weights are identical, named by both revisions."""

import json

import pandas as pd

from brainphase.sources.fingerprints import duplicate_table, format_duplicates
from brainphase.io import write_parquet
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
records = [json.loads(open(f).read()) for f in snakemake.input]
tables = []
for model, order in snakemake.params.steps.items():  # training order, as the config lists them
    mine = {r["step"]: r for r in records if r["model"] == model}
    tables.append(duplicate_table(model, {s: mine[s]["fingerprint"] for s in order},
                                  {s: mine[s]["tokens"] for s in order}))
table = pd.concat(tables, ignore_index=True)
log.info(format_duplicates(table))
write_parquet(table, snakemake.output[0])
