"""Find the phases of training in the encoding, benchmark and probing trajectories."""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.trajectories import analyse_model

snakemake = snakemake  # noqa: F821
cfg = snakemake.params.phases
log = setup_job(snakemake.log[0], seed=snakemake.params.seed)
tables = {k: pd.read_parquet(snakemake.input[k])
          for k in ("voxels", "per_item", "neurons", "encoding_boot", "probing_boot")}
dup_path = snakemake.input.get("duplicates")
duplicates = pd.read_parquet(dup_path) if dup_path else None
phases, trajectories = [], []
for model in sorted(tables["voxels"]["model"].unique()):
    table, traj = analyse_model(model, tables["voxels"], tables["per_item"], tables["neurons"],
                                tables["encoding_boot"], tables["probing_boot"], cfg,
                                seed=snakemake.params.seed, duplicates=duplicates)
    phases.append(table)
    trajectories.append(traj)
write_parquet(pd.concat(phases, ignore_index=True), snakemake.output.phases)
write_parquet(pd.concat(trajectories, ignore_index=True), snakemake.output.trajectories)
