"""Train the demo's tiny LM on the world's corpus and save its checkpoints."""

from pathlib import Path

import pandas as pd

from brainphase.runtime import setup_job
from brainphase.toylm import train_toy_lm

snakemake = snakemake  # noqa: F821
m = snakemake.params.model
t = m["train"]
log = setup_job(snakemake.log[0], snakemake.threads, t["seed"])
corpus = pd.read_parquet(snakemake.input.corpus)
out_dir = Path(snakemake.output.log_table).parent
log.info("training %s for %d steps on %d documents; checkpoints at %s",
         m["name"], t["steps"], len(corpus), t["checkpoints"])
train_toy_lm(
    corpus["text"].tolist(), out_dir, model_name=m["name"], steps=t["steps"],
    checkpoint_steps=t["checkpoints"], batch_size=t["batch_size"], seq_len=t["seq_len"], lr=t["lr"],
    warmup_steps=t["warmup"], seed=t["seed"], n_threads=snakemake.threads, vocab_size=t["vocab_size"],
    n_layers=t["n_layers"], d_model=t["d_model"], n_heads=t["n_heads"], d_ff=t["d_ff"],
    max_position=t["max_position"],
)
