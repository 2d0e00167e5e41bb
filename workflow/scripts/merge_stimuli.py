"""A real dataset's one stimulus set: every unit its subjects heard."""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.loaders.dataset import merge_stimuli
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
tables = {s: pd.read_parquet(f) for s, f in zip(snakemake.params.subjects, snakemake.input.words)}
merged = merge_stimuli(tables)
write_parquet(merged, snakemake.output.stimuli)
log.info("%d units in %d runs from %d subjects", len(merged), merged["run"].nunique(), len(tables))
