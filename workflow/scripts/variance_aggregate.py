"""Concatenate per-job variance partitions; summarise them per voxel group."""

import pandas as pd

from brainphase.contracts.brain import dataset_subject
from brainphase.encoding.variance_summary import summarise_partition
from brainphase.io import write_parquet
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
voxels = pd.concat([pd.read_parquet(p) for p in snakemake.input.voxels], ignore_index=True)
truth = None
if snakemake.input.truth:
    truth = pd.concat([pd.read_parquet(p).assign(**dict(zip(("dataset", "subject"), dataset_subject(p))))
                       for p in snakemake.input.truth], ignore_index=True)
n_nan = int(voxels["r2_joint"].isna().sum())
if n_nan:
    log.warning("%d voxel fits left out as constant (R² NaN)", n_nan)
summary = summarise_partition(voxels, truth)
if truth is not None:  # each voxel's planted group, for readers of the voxel table
    voxels = voxels.merge(truth[["dataset", "subject", "voxel", "group"]], on=["dataset", "subject", "voxel"],
                          how="left")
write_parquet(voxels, snakemake.output.voxels)
write_parquet(summary, snakemake.output.summary)
means = summary[summary["part"].isin(["unique_lm", "unique_lowlevel", "shared", "split_lowlevel"])]
log.info("R² parts per group and checkpoint (all layers):\n%s",
         means.pivot_table(index=["group", "part"], columns="tokens", values="value").round(3).to_string())
log.info("%d voxel rows from %d jobs", len(voxels), len(snakemake.input.voxels))
