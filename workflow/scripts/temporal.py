"""Layer x lag decoding of one checkpoint (or one context length) against one MEG subject."""

import time

from brainphase.contracts.activations import load_unit_activations, site_layers
from brainphase.contracts.checkpoint import count_parameters
from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.contracts.stimuli import read_stimuli
from brainphase.temporal.epochs import read_epochs
from brainphase.temporal.pipeline import TemporalSettings, temporal_table

snakemake = snakemake  # noqa: F821
p = snakemake.params
wc = snakemake.wildcards
cfg = p.temporal
log = setup_job(snakemake.log[0], snakemake.threads, p.seed)

stimuli = read_stimuli(snakemake.input.stimuli)
epochs = read_epochs(snakemake.input.epochs)
names = site_layers(snakemake.input.activations, cfg["site"])
acts = load_unit_activations(snakemake.input.activations, stimuli, snakemake.input.stimuli, names=names)
t0 = time.perf_counter()
table = temporal_table(epochs, [acts[n] for n in names], stimuli,
                       TemporalSettings.from_config(cfg, seed=p.seed, budget_bytes=snakemake.resources.mem_mb * 2**20))
log.info("%s/%s %s, context %s: %d layers x %d lags in %.1fs", wc.model, wc.step, cfg["site"], p.context or "full",
         len(names), len(epochs.times), time.perf_counter() - t0)
ids = {"analysis": "temporal", "model": wc.model, "step": wc.step, "tokens": int(p.tokens),
       "n_params": count_parameters(snakemake.input.checkpoint), "dataset": wc.dataset, "subject": wc.subject,
       "site": cfg["site"], "context": float("nan") if p.context is None else float(p.context)}
write_parquet(table.assign(**ids), snakemake.output.scores)
