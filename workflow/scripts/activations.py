"""Cache every layer's activations of one checkpoint for one stimulus set."""

import time

from brainphase.activations import extract_activations, save_activations
from brainphase.checkpoints import load_model
from brainphase.runtime import setup_job
from brainphase.stimuli import read_stimuli

snakemake = snakemake  # noqa: F821
p = snakemake.params
log = setup_job(snakemake.log[0], snakemake.threads, 0)
cfg = p.activations
units = read_stimuli(snakemake.input.stimuli)
model, tokenizer = load_model(snakemake.input.checkpoint, device=p.device)
t0 = time.perf_counter()
arrays = extract_activations(model, tokenizer, units, p.pooling, sites=cfg["sites"],
                             context_window=cfg["context_window"], batch_size=cfg["batch_size"])
log.info("%d units x %d tensors in %.1fs", len(units), len(arrays), time.perf_counter() - t0)
save_activations(snakemake.output[0], arrays, {
    "model": p.model, "step": p.revision, "tokens": int(p.tokens), "pooling": p.pooling,
    "context_window": cfg["context_window"], "unit_ids": units["unit_id"].tolist(),
    "stimset": snakemake.wildcards.stimset,
})
