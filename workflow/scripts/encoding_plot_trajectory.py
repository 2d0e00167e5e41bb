"""Encoding accuracy against training tokens, one line per layer."""

import pandas as pd

from brainphase.encoding.plots import encoding_trajectory
from brainphase.figures import save_figure
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
summary = pd.read_parquet(snakemake.input.summary)
groups = pd.read_parquet(snakemake.input.groups) if snakemake.input.groups else None
fig = encoding_trajectory(summary, groups)
save_figure(fig, snakemake.output, dpi=snakemake.params.plots["dpi"])
