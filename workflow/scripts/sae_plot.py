"""SAE figures: language and granularity shares, quality, matching, feature cards (first model)."""

import pandas as pd

from brainphase.figures import FigureSelection, save_figure
from brainphase.runtime import setup_job
from brainphase.sae.plots import feature_cards, feature_shares, sae_matching, sae_quality

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
dpi = snakemake.params.plots["dpi"]
seed = snakemake.params.seed
metrics = pd.read_parquet(snakemake.input.metrics)
shown = FigureSelection.first(metrics, ["model"])
metrics = shown.rows(metrics)
save_figure(feature_shares(metrics, "language", seed), snakemake.output.language, dpi=dpi)
save_figure(feature_shares(metrics, "granularity", seed), snakemake.output.granularity, dpi=dpi)
save_figure(sae_quality(metrics, seed), snakemake.output.quality, dpi=dpi)
save_figure(sae_matching(shown.rows(pd.read_parquet(snakemake.input.matching))), snakemake.output.matching, dpi=dpi)
contexts = {s: pd.read_parquet(f) for s, f in zip(snakemake.params.steps, snakemake.input.contexts)}
features = {s: pd.read_parquet(f) for s, f in zip(snakemake.params.steps, snakemake.input.features)}
save_figure(feature_cards(contexts, features), snakemake.output.cards, dpi=dpi)
