"""Train the demo's tiny LM on the world's corpus and save its checkpoints."""

from pathlib import Path

import pandas as pd

from brainphase.runtime import setup_job
from brainphase.toylm import ToyLMTrainConfig, train_toy_lm

snakemake = snakemake  # noqa: F821
m = snakemake.params.model
t = m["train"]
log = setup_job(snakemake.log[0], snakemake.threads, t["seed"])
corpus = pd.read_parquet(snakemake.input.corpus)
out_dir = Path(snakemake.output.run)
log.info("training %s for %d steps on %d documents; checkpoints at %s",
         m["name"], t["steps"], len(corpus), t["checkpoints"])
train_toy_lm(corpus["text"].tolist(), out_dir, ToyLMTrainConfig.from_config(t, n_threads=snakemake.threads),
             model_name=m["name"])
