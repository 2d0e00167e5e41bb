"""Concatenate per-job benchmark results into tidy tables."""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
m = pd.concat([pd.read_parquet(f) for f in snakemake.input.metrics], ignore_index=True)
m = m.rename(columns={"task": "subtask"}).assign(analysis="benchmark")
m["task"] = m["subtask"]
m["lang"] = m["task"].str.extract(r"_(en|ja)$", expand=False)
write_parquet(m, snakemake.output.metrics)
write_parquet(pd.concat([pd.read_parquet(f) for f in snakemake.input.per_item], ignore_index=True),
              snakemake.output.per_item)
