"""Probe every layer of one checkpoint on one task's items: summary, neuron r, item bootstrap."""

import pandas as pd

from brainphase.activations import load_activations
from brainphase.io import write_parquet
from brainphase.probing import align_items, probe_task
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
p = snakemake.params
wc = snakemake.wildcards
log = setup_job(snakemake.log[0], snakemake.threads, p.seed)
items = pd.read_parquet(snakemake.input.stimuli)
acts, meta = load_activations(snakemake.input.activations)
acts = {k: v for k, v in acts.items() if k.split(".")[0] == p.site}
if not acts:
    raise ValueError(f"{snakemake.input.activations}: no {p.site}.* tensors; probing.site is {p.site!r} — delete the "
                     f"file so the activations job re-extracts it")
aligned = align_items(items, meta, p.test_fraction, p.seed, where=str(snakemake.input.activations))
if aligned.n_dropped:
    log.warning("%d of %d items of %s are longer than the model's context and were not probed",
                aligned.n_dropped, len(items), wc.task)
summary, neurons, boot = probe_task(acts, aligned, p.n_boot, p.seed, log=log)
common = {"model": wc.model, "step": wc.step, "tokens": int(p.tokens), "task": wc.task}
write_parquet(summary.assign(analysis="probing", **common, lang=items["lang"].iloc[0],
                             n_items=len(aligned.items), n_dropped=aligned.n_dropped), snakemake.output.summary)
write_parquet(neurons.assign(**common, lang=items["lang"].iloc[0]), snakemake.output.neurons)
write_parquet(boot.assign(**common)[["model", "step", "tokens", "task", "site", "layer", "replicate", "value"]],
              snakemake.output.boot)
