"""Simulate one subject's MEG for the stimulus stories, with ground truth (planted latencies)."""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.stimuli import BrainRun, write_brain
from brainphase.toyworld import MEGParams, simulate_meg

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
sim = snakemake.params.simulate
subject = snakemake.wildcards.subject
params = MEGParams.from_config(sim)  # unknown keys raise before any work
lexicon = pd.read_parquet(snakemake.input.lexicon)
categories = lexicon.drop_duplicates("concept_id").sort_values("concept_id")["category"].tolist()
stim = pd.read_parquet(snakemake.input.stimuli)
# Subjects differ in response patterns and noise, not in what they heard.
seed = sim["seed"] * 1000 + snakemake.params.subjects.index(subject)
meg = simulate_meg(stim, categories, params, seed)
write_brain(snakemake.output.brain, {r: BrainRun(v["data"], v["split"]) for r, v in meg.runs.items()},
            None, meg.coords, attrs={"subject": subject, "kind": "meg"}, sfreq=params.sfreq)
write_parquet(meg.truth, snakemake.output.truth)
log.info("%d runs, %d sensors at %g Hz, noise sd %.3g; latencies %s", len(meg.runs), len(meg.coords),
         params.sfreq, meg.noise_sd, dict(zip(meg.truth["group"], meg.truth["latency_s"])))
