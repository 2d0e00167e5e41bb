"""Find the phases of training in the encoding, benchmark and probing trajectories."""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.phases import analyse_study
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0], seed=snakemake.params.seed)
tables = {k: pd.read_parquet(snakemake.input[k])
          for k in ("voxels", "per_item", "neurons", "encoding_boot", "probing_boot")}
dup_path = snakemake.input.get("duplicates")
duplicates = pd.read_parquet(dup_path) if dup_path else None
phases, trajectories = analyse_study(tables, snakemake.params.phases, snakemake.params.seed, duplicates)
write_parquet(phases, snakemake.output.phases)
write_parquet(trajectories, snakemake.output.trajectories)
