"""Crosscoder figures for the first model and subject: r_i histograms, fractions, decoder maps."""

import pandas as pd

from brainphase.contracts.brain import read_coords
from brainphase.crosscoder.plots import class_fractions, decoder_maps, ri_histograms
from brainphase.figures import FigureSelection, save_figure, steps_by_tokens
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
dpi = snakemake.params.plots["dpi"]
metrics = pd.read_parquet(snakemake.input.metrics)
shown = FigureSelection.first(metrics, ["model", "dataset", "subject"])
m, lat = shown.rows(metrics), shown.rows(pd.read_parquet(snakemake.input.latents))
order = steps_by_tokens(m)
save_figure(ri_histograms(lat, list(dict.fromkeys([order[0], order[len(order) // 2], order[-1]]))),
            snakemake.output.ri, dpi=dpi)
save_figure(class_fractions(m), snakemake.output.fractions, dpi=dpi)
weights = shown.rows(pd.concat([pd.read_parquet(f) for f in snakemake.input.weights], ignore_index=True))
coords = read_coords(snakemake.input.brains)[(shown["dataset"], shown["subject"])]
save_figure(decoder_maps(weights[weights["step"] == order[-1]], coords, order[-1]), snakemake.output.maps, dpi=dpi)
