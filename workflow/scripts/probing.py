"""Probe every layer of one checkpoint on one task's items: summary, neuron r, item bootstrap."""

import pandas as pd

from brainphase.contracts.activations import load_activations
from brainphase.io import write_parquet
from brainphase.probing import probe_checkpoint
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
p = snakemake.params
wc = snakemake.wildcards
log = setup_job(snakemake.log[0], snakemake.threads, p.seed)
items = pd.read_parquet(snakemake.input.stimuli)
acts, meta = load_activations(snakemake.input.activations)
summary, neurons, boot = probe_checkpoint(items, acts, meta, wc.model, wc.step, p.tokens, wc.task, site=p.site,
                                          test_fraction=p.test_fraction, n_boot=p.n_boot, seed=p.seed,
                                          where=str(snakemake.input.activations), log=log)
write_parquet(summary, snakemake.output.summary)
write_parquet(neurons, snakemake.output.neurons)
write_parquet(boot, snakemake.output.boot)
