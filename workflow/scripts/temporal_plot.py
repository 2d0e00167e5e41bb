"""Figures of the MEG layer-latency analysis, for the first MEG subject."""

import pandas as pd

from brainphase.plots import save_figure
from brainphase.plots.temporal import heatmaps, path, sweeps, trajectory
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
dpi = snakemake.params.plots["dpi"]
scores = pd.read_parquet(snakemake.input.scores)
first = scores[["dataset", "subject"]].drop_duplicates().sort_values(["dataset", "subject"]).iloc[0]
scores = scores[(scores["dataset"] == first["dataset"]) & (scores["subject"] == first["subject"])]
for make, out in ((heatmaps, snakemake.output.heatmaps), (path, snakemake.output.path),
                  (trajectory, snakemake.output.trajectory), (sweeps, snakemake.output.sweeps)):
    save_figure(make(scores), out, dpi=dpi)
