"""Concatenate per-job tables: each named output is the concatenation of the same-named inputs."""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
for key in snakemake.output.keys():
    write_parquet(pd.concat([pd.read_parquet(f) for f in snakemake.input[key]], ignore_index=True),
                  snakemake.output[key])
