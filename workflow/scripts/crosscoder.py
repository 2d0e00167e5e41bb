"""Crosscoder of one checkpoint and subject, with the time-shuffled control.

The job's memory budget is the rule's mem_mb: the brain responses are read
from the brain file run by run into one float32 matrix, kept in memory when
the budget allows and otherwise in a file of the job's tmpdir.
"""

import time

import pandas as pd

from brainphase.contracts.activations import subject_activations
from brainphase.crosscoder.model import save_crosscoder
from brainphase.crosscoder.pipeline import run_checkpoint_crosscoder
from brainphase.io import write_parquet
from brainphase.runtime import resolve_device, setup_job
from brainphase.contracts.stimuli import DataError, read_stimuli
from brainphase.contracts.brain import read_brain

snakemake = snakemake  # noqa: F821
p = snakemake.params
wc = snakemake.wildcards
cfg = p.crosscoder
log = setup_job(snakemake.log[0], snakemake.threads, cfg["seed"])
name = f"{cfg['site']}.{cfg['layer']}"

groups = None
if snakemake.input.truth:
    groups = pd.read_parquet(snakemake.input.truth[0]).sort_values("voxel")["group"].to_numpy()
mem_mb = snakemake.resources.get("mem_mb")
brain = read_brain(snakemake.input.brain, on_disk=True)
acts, stimuli = subject_activations(snakemake.input.activations, read_stimuli(snakemake.input.stimuli),
                                    snakemake.input.stimuli, brain, snakemake.input.brain, names=[name])
t0 = time.perf_counter()
try:
    # pop: the pipeline frees the word activations once the LM side is built.
    res = run_checkpoint_crosscoder(acts.pop(name), stimuli, brain, cfg, device=str(resolve_device(p.device)),
                                    voxel_groups=groups, resample=p.resample,
                                    budget_bytes=None if mem_mb is None else int(mem_mb) * 2**20,
                                    tmpdir=snakemake.resources.get("tmpdir"))
except DataError as err:
    raise DataError(f"{snakemake.input.brain}: {err}") from err
log.info("%s/%s %s: %.1fs", wc.model, wc.step, name, time.perf_counter() - t0)

ids = {"model": wc.model, "step": wc.step, "tokens": int(p.tokens), "dataset": wc.dataset,
       "subject": wc.subject, "layer": int(cfg["layer"]), "site": cfg["site"]}
for fit, out in (("real", snakemake.output.real), ("shuffled", snakemake.output.shuffled)):
    save_crosscoder(out, res.models[fit], {**ids, "fit": fit})
write_parquet(pd.DataFrame([{"analysis": "crosscoder", **ids, "metric": k, "value": float(v)}
                            for k, v in res.metrics.items()]), snakemake.output.metrics)
for key in ("latents", "windows", "weights"):
    write_parquet(getattr(res, key).assign(**ids), snakemake.output[key])
