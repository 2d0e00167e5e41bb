"""Concatenate per-job encoding results into the tidy tables."""

import pandas as pd

from brainphase.encoding.summary import group_trajectories, scored_voxels, summarise_voxels
from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.contracts.brain import dataset_subject

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
voxels = pd.concat([pd.read_parquet(p) for p in snakemake.input.voxels], ignore_index=True)
excluded = voxels[voxels["excluded"]]
if len(excluded):
    log.warning("%d voxel fits excluded as constant (voxels %s)", len(excluded),
                sorted(excluded["voxel"].unique())[:20])
write_parquet(scored_voxels(voxels), snakemake.output.voxels)
write_parquet(pd.concat([pd.read_parquet(p) for p in snakemake.input.bootstrap], ignore_index=True),
              snakemake.output.bootstrap)
summary = summarise_voxels(voxels)
write_parquet(summary, snakemake.output.summary)
if snakemake.input.truth:
    truths = []
    for p in snakemake.input.truth:
        dataset, subject = dataset_subject(p)
        truths.append(pd.read_parquet(p).assign(dataset=dataset, subject=subject))
    groups = group_trajectories(voxels, pd.concat(truths, ignore_index=True))
    write_parquet(groups, snakemake.output.groups)
    best = groups[groups["metric"] == "best_layer_r"].pivot_table(
        index="tokens", columns="group", values="value")
    log.info("best-layer r per planted group:\n%s", best.round(3).to_string())
log.info("%d voxel rows from %d jobs", len(voxels), len(snakemake.input.voxels))
