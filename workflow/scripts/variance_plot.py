"""LM-unique, low-level-unique and shared R² against training tokens, per voxel group."""

import pandas as pd

from brainphase.encoding.variance_summary import lm_unique_trajectory
from brainphase.figures import save_figure
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
fig = lm_unique_trajectory(pd.read_parquet(snakemake.input.summary))
save_figure(fig, snakemake.output, dpi=snakemake.params.plots["dpi"])
