"""Figures of the MEG layer-latency analysis, for the first MEG subject."""

import pandas as pd

from brainphase.figures import FigureSelection, save_figure
from brainphase.runtime import setup_job
from brainphase.temporal.plots import heatmaps, path, sweeps, trajectory

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
dpi = snakemake.params.plots["dpi"]
scores = pd.read_parquet(snakemake.input.scores)
scores = FigureSelection.first(scores, ["dataset", "subject"]).rows(scores)
for make, out in ((heatmaps, snakemake.output.heatmaps), (path, snakemake.output.path),
                  (trajectory, snakemake.output.trajectory), (sweeps, snakemake.output.sweeps)):
    save_figure(make(scores), out, dpi=dpi)
