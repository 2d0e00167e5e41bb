"""Simulate one subject of a toy dataset for its stimulus stories, with ground truth.

fMRI: voxels on a cortical sheet, tuned to word categories (the truth: each
voxel's planted group). MEG: sensors whose responses follow each word at
planted latencies (the truth: each group's latency).
"""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.contracts.brain import BrainRun, write_brain
from brainphase.toyworld import FMRIParams, MEGParams, simulate_fmri, simulate_meg

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
sim = snakemake.params.simulate
subject = snakemake.wildcards.subject


def simulate_fmri_subject(stim, categories, seed):
    params = FMRIParams(tr=sim["tr"], sheet=tuple(sim["sheet"]), n_repeats=sim["n_repeats"],
                        amplitude=dict(sim["amplitude"]))
    runs, truth, _ = simulate_fmri(stim, categories, params, seed)
    coords = truth[["row", "col"]].to_numpy()
    write_brain(snakemake.output.brain,
                {r: BrainRun(v["data"], v["split"], v.get("repeats")) for r, v in runs.items()},
                params.tr, coords, attrs={"sheet": list(params.sheet), "subject": subject})
    write_parquet(truth, snakemake.output.truth)
    log.info("%d runs, %d voxels; groups %s", len(runs), len(truth), truth["group"].value_counts().to_dict())


def simulate_meg_subject(stim, categories, seed, params):
    meg = simulate_meg(stim, categories, params, seed)
    write_brain(snakemake.output.brain, {r: BrainRun(v["data"], v["split"]) for r, v in meg.runs.items()},
                None, meg.coords, attrs={"subject": subject, "kind": "meg"}, sfreq=params.sfreq)
    write_parquet(meg.truth, snakemake.output.truth)
    log.info("%d runs, %d sensors at %g Hz, noise sd %.3g; latencies %s", len(meg.runs), len(meg.coords),
             params.sfreq, meg.noise_sd, dict(zip(meg.truth["group"], meg.truth["latency_s"])))


# Unknown MEG simulation keys raise before any work.
meg_params = MEGParams.from_config(sim) if snakemake.params.kind == "meg" else None
lexicon = pd.read_parquet(snakemake.input.lexicon)
categories = lexicon.drop_duplicates("concept_id").sort_values("concept_id")["category"].tolist()
stim = pd.read_parquet(snakemake.input.stimuli)
# Subjects differ in tuning, response patterns and noise, not in what they heard.
seed = sim["seed"] * 1000 + snakemake.params.subjects.index(subject)
if snakemake.params.kind == "meg":
    simulate_meg_subject(stim, categories, seed, meg_params)
else:
    simulate_fmri_subject(stim, categories, seed)
