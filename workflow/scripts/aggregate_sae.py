"""All SAE metrics and feature labels in two tidy tables."""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
for key in ("metrics", "features"):
    write_parquet(pd.concat([pd.read_parquet(f) for f in snakemake.input[key]], ignore_index=True),
                  snakemake.output[key])
