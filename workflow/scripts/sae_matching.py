"""Match SAE features between consecutive checkpoints and between two seeds of the last one.

A decoder is read only when a comparison needs it and dropped after, so the job
holds at most the two decoders it compares; the matching plans its memory from
the job's mem_mb (less the interpreter's share).
"""

import functools

import numpy as np
import pandas as pd

from brainphase.io import read_torch_tensors, write_parquet
from brainphase.runtime import setup_job
from brainphase.sae.matching import JOB_OVERHEAD_BYTES, match_table


def live_decoder(path: str, alive: np.ndarray, features: str, block: int = 4096) -> np.ndarray:
    """The decoder columns of the live latents, (d × n_live): the transpose of C-contiguous float32
    rows, the layout the matching uses without a copy. Read a block of latents at a time, so the
    full (d × n) tensor is never held beside them."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as f:
        part = f.get_slice("W_dec")
        d, n = part.get_shape()
        if len(alive) != n:
            raise ValueError(f"{features} describes {len(alive)} latents but {path} has {n}: "
                             "rerun the sae rule for this checkpoint so both come from the same SAE")
        ids = np.flatnonzero(alive)
        rows = np.empty((len(ids), d), np.float32)
        for j0 in range(0, n, block):
            j1 = min(n, j0 + block)  # safetensors refuses slices past the end
            lo, hi = np.searchsorted(ids, [j0, j1])
            rows[lo:hi] = part[:, j0:j1][:, ids[lo:hi] - j0].T
    return rows.T


snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0], threads=snakemake.threads)
budget = int(snakemake.resources.mem_mb) * 2**20 - JOB_OVERHEAD_BYTES
if budget <= 0:
    raise ValueError(f"resources.mem_mb = {snakemake.resources.mem_mb} for sae_matching leaves nothing beyond the "
                     f"interpreter's {JOB_OVERHEAD_BYTES // 2**20} MB: raise it in the profile's config.yaml")
saes = []
for path, features in zip(snakemake.input.saes, snakemake.input.features):
    _, meta = read_torch_tensors(path, [])
    f = pd.read_parquet(features).sort_values("latent")
    # Latents that never fire on the test tokens have no direction worth matching.
    alive = (f["n_examples"] > 0).to_numpy()
    saes.append({**{k: meta[k] for k in ("model", "step", "tokens", "seed")},
                 "decoder": functools.partial(live_decoder, str(path), alive, str(features))})
table = match_table(saes, threshold=snakemake.params.threshold, budget_bytes=budget)
log.info("\n%s", table.to_string())
write_parquet(table, snakemake.output[0])
