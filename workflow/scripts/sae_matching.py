"""Match SAE features between consecutive checkpoints and between two seeds of the last one."""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.sae import load_sae
from brainphase.sae.matching import match_table

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
saes = []
for path, features in zip(snakemake.input.saes, snakemake.input.features):
    sae, meta = load_sae(path)
    f = pd.read_parquet(features).sort_values("latent")
    # Latents that never fire on the test tokens have no direction worth matching.
    saes.append({**{k: meta[k] for k in ("model", "step", "tokens", "seed")},
                 "decoder": sae.W_dec.detach().cpu().numpy(), "alive": (f["n_examples"] > 0).to_numpy()})
table = match_table(saes, threshold=snakemake.params.threshold)
log.info("\n%s", table.to_string())
write_parquet(table, snakemake.output[0])
