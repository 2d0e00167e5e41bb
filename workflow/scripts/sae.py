"""Train and describe the SAE of one checkpoint (and seed) on the corpus's token activations."""

import time

import pandas as pd

from brainphase.contracts.activations import activation_memmap, read_token_table
from brainphase.contracts.checkpoint import load_model
from brainphase.io import write_parquet, write_text
from brainphase.runtime import resolve_device, setup_job
from brainphase.sae.model import save_sae
from brainphase.sae.pipeline import init_seed, run_checkpoint_sae, token_table
from brainphase.sae.sheet import write_sheet
from brainphase.contracts.stimuli import read_stimuli

snakemake = snakemake  # noqa: F821
p = snakemake.params
wc = snakemake.wildcards
cfg = p.sae
seed = int(wc.seed)
log = setup_job(snakemake.log[0], snakemake.threads, seed)
name = f"{cfg['site']}.{cfg['layer']}"
device = str(resolve_device(p.device))

acts = activation_memmap(snakemake.input.activations, name)
stimuli = read_stimuli(snakemake.input.stimuli)
columns = read_token_table(snakemake.input.activations, stimuli, snakemake.input.stimuli)
dictionary = pd.read_csv(snakemake.input.dictionary) if cfg["dictionary"] else None
tokens = token_table(columns, stimuli, dictionary)
log.info("%s/%s seed %d: %d tokens x %d at %s", wc.model, wc.step, seed, acts.shape[0], acts.shape[1], name)


def load_lm():
    log.info("training done; loading %s for the CE metrics", snakemake.input.checkpoint)
    return load_model(snakemake.input.checkpoint, device=device, trust_remote_code=snakemake.params.trust_remote_code)


t0 = time.perf_counter()
result = run_checkpoint_sae(acts, tokens, cfg, init_seed(seed, wc.step), load_lm=load_lm, site=cfg["site"],
                            layer=cfg["layer"], device=device)
m = result.metrics
log.info("test FVU %.3f, L0 %.1f, dead %.1f%%, CE loss recovered %.3f (%.1fs)", m["test_fvu"], m["test_l0"],
         100 * m["test_dead_fraction"], m.get("ce_loss_recovered", float("nan")), time.perf_counter() - t0)

ids = {"model": wc.model, "step": wc.step, "tokens": int(p.tokens), "seed": seed, "layer": int(cfg["layer"]),
       "site": cfg["site"]}
save_sae(snakemake.output.sae, result.sae, {**ids, "tokens_trained": m["train_tokens"]})
rows = pd.DataFrame([{"analysis": "sae", **ids, "metric": k, "value": float(v)} for k, v in m.items()])
write_parquet(rows, snakemake.output.metrics)
write_text(result.history.to_csv(sep="\t", index=False), snakemake.output.history)
write_parquet(result.features.assign(**ids), snakemake.output.features)
write_parquet(result.contexts.assign(**ids), snakemake.output.contexts)
write_sheet(snakemake.output.sheet_csv, snakemake.output.sheet_html, result.features, result.contexts,
            title=f"SAE features of {wc.model} {wc.step} ({name}, seed {seed})")
