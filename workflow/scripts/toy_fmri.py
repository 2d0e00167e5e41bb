"""Simulate one subject's fMRI for the stimulus stories, with ground truth."""

import pandas as pd

from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.stimuli import BrainRun, write_brain
from brainphase.toyworld import FMRIParams, simulate_fmri

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
sim = snakemake.params.simulate
subject = snakemake.wildcards.subject
lexicon = pd.read_parquet(snakemake.input.lexicon)
categories = lexicon.drop_duplicates("concept_id").sort_values("concept_id")["category"].tolist()
stim = pd.read_parquet(snakemake.input.stimuli)
params = FMRIParams(tr=sim["tr"], sheet=tuple(sim["sheet"]), n_repeats=sim["n_repeats"],
                    amplitude=dict(sim["amplitude"]))
# Subjects differ in tuning and noise, not in what they heard.
seed = sim["seed"] * 1000 + snakemake.params.subjects.index(subject)
runs, truth, _ = simulate_fmri(stim, categories, params, seed)
coords = truth[["row", "col"]].to_numpy()
write_brain(snakemake.output.brain,
            {r: BrainRun(v["data"], v["split"], v.get("repeats")) for r, v in runs.items()},
            params.tr, coords, attrs={"sheet": list(params.sheet), "subject": subject})
write_parquet(truth, snakemake.output.truth)
log.info("%d runs, %d voxels; groups %s", len(runs), len(truth), truth["group"].value_counts().to_dict())
