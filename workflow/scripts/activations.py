"""Cache every layer's activations of one checkpoint for its stimulus set(s): one set per job, or the
context sweep's sets of one checkpoint together."""

import time

from brainphase.activations.extract import (extract_activations, extract_last_token_activations,
                                            extract_token_activations)
from brainphase.contracts.activations import activation_file
from brainphase.contracts.checkpoint import load_model
from brainphase.runtime import setup_job
from brainphase.contracts.stimuli import read_stimuli

snakemake = snakemake  # noqa: F821
p = snakemake.params
log = setup_job(snakemake.log[0], snakemake.threads, 0)
cfg = p.activations
# Every stimulus table is read and checked before the model loads and before any cache is written: a bad
# (say, empty) table must stop the job without leaving the caches of the sets before it looking finished.
paths = [snakemake.input.stimuli] if isinstance(snakemake.input.stimuli, str) else list(snakemake.input.stimuli)
tables = [read_stimuli(path) for path in paths]
model, tokenizer = load_model(snakemake.input.checkpoint, device=p.device, trust_remote_code=p.trust_remote_code)
# Sites per stimulus set: probe sets are read at probing.site only (see activations.smk).
sites_per_set = getattr(p, "sites", None) or [cfg["sites"]] * len(p.stimsets)
for stimset, pooling, window, sites, units, out_path in zip(p.stimsets, p.poolings, p.windows, sites_per_set,
                                                            tables, snakemake.output):
    t0 = time.perf_counter()
    # A sweep's own window (the temporal analysis' context lengths), else the config's.
    window = (window if window is not None else cfg["context_window"]) if pooling == "word" else None
    meta = {"model": p.model, "step": p.revision, "tokens": int(p.tokens), "pooling": pooling,
            "context_window": window, "stimset": stimset}
    # Rows stream into the file as they are computed: the job never holds a whole tensor.
    with activation_file(out_path, meta, units) as out:
        if pooling == "token":
            extract_token_activations(model, tokenizer, units, sites=[p.token_site], layers=[p.token_layer],
                                      batch_size=cfg["batch_size"], out=out)
        elif pooling == "last":
            # Prompts longer than the model's positions are dropped, never cut: the
            # file lists them so a reader can align and count (probing reports n_dropped).
            extract_last_token_activations(model, tokenizer, units, sites=sites, batch_size=cfg["batch_size"], out=out)
        else:
            extract_activations(model, tokenizer, units, pooling, sites=sites, context_window=window,
                                batch_size=cfg["batch_size"], out=out)
    log.info("%s%s: %d %s rows x %d tensors in %.1fs", stimset, f" (context {window})" if window else "",
             out.info["n_rows"], "token" if pooling == "token" else "unit", len(out.info["names"]),
             time.perf_counter() - t0)
