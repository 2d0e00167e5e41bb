"""Probe every layer of one checkpoint on one task's items (METHODS §5)."""

import numpy as np
import pandas as pd

from brainphase.activations import load_activations
from brainphase.io import write_parquet
from brainphase.probing import answer_matrix, choice_probe, neuron_probe, split_items
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
p = snakemake.params
wc = snakemake.wildcards
log = setup_job(snakemake.log[0], snakemake.threads, p.seed)
items = pd.read_parquet(snakemake.input.stimuli)
acts, meta = load_activations(snakemake.input.activations)
targets = items["target"].to_numpy()
n_choices = int(items["n_choices"].max())
train, test = split_items(len(items), p.probing["test_fraction"], p.seed)
answers = answer_matrix(targets, n_choices)
rows, neurons = [], []
for name, a in acts.items():
    site, layer = name.split(".")
    nr = neuron_probe(answers, a, train, test)
    cp = choice_probe(a, targets, train, test, n_choices=n_choices, seed=p.seed)
    for metric, value in [("neuron_mean_r", nr.mean_r), ("choice_accuracy", cp.accuracy),
                          ("choice_chance", cp.chance), ("choice_p_value", cp.p_value)]:
        rows.append({"site": site, "layer": int(layer), "metric": metric, "value": float(value)})
    neurons.append(pd.DataFrame({"site": site, "layer": int(layer), "neuron": np.arange(len(nr.r)),
                                 "r": nr.r}).dropna())
    log.info("%s: neuron mean r %.3f, choice accuracy %.3f (chance %.3f)", name, nr.mean_r,
             cp.accuracy, cp.chance)
common = {"model": wc.model, "step": wc.step, "tokens": int(p.tokens), "task": wc.task,
          "lang": items["lang"].iloc[0]}
summary = pd.DataFrame(rows).assign(analysis="probing", **common)
write_parquet(summary, snakemake.output.summary)
write_parquet(pd.concat(neurons, ignore_index=True).assign(**common), snakemake.output.neurons)
