"""Crosscoder figures for the first model and subject: r_i histograms, fractions, decoder maps."""

import pandas as pd

from brainphase.plots import save_figure
from brainphase.plots.crosscoder import class_fractions, decoder_maps, ri_histograms
from brainphase.runtime import setup_job
from brainphase.stimuli import read_coords

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
dpi = snakemake.params.plots["dpi"]
metrics = pd.read_parquet(snakemake.input.metrics)
latents = pd.read_parquet(snakemake.input.latents)
first = metrics[["model", "dataset", "subject"]].drop_duplicates().sort_values(["model", "dataset", "subject"]).iloc[0]
key = ["model", "dataset", "subject"]


def pick(df):
    return df[(df[key] == first[key].to_numpy()).all(axis=1)]


m, lat = pick(metrics), pick(latents)
order = m[["step", "tokens"]].drop_duplicates().sort_values("tokens")["step"].tolist()
save_figure(ri_histograms(lat, list(dict.fromkeys([order[0], order[len(order) // 2], order[-1]]))),
            snakemake.output.ri, dpi=dpi)
save_figure(class_fractions(m), snakemake.output.fractions, dpi=dpi)
weights = pick(pd.concat([pd.read_parquet(f) for f in snakemake.input.weights], ignore_index=True))
coords = read_coords(snakemake.input.brains)[(first["dataset"], first["subject"])]
save_figure(decoder_maps(weights[weights["step"] == order[-1]], coords, order[-1]), snakemake.output.maps, dpi=dpi)
