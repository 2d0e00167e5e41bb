"""Voxelwise encoding of one subject from one checkpoint's cached activations."""

from brainphase.contracts.activations import subject_activations
from brainphase.encoding.pipeline import encode_layers
from brainphase.encoding.settings import EncodingSettings
from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.contracts.brain import read_brain
from brainphase.contracts.stimuli import read_stimuli

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0], snakemake.threads, snakemake.params.seed)
wc = snakemake.wildcards
settings = EncodingSettings.from_config(snakemake.params.encoding, seed=snakemake.params.seed,
                                        resample=snakemake.params.resample, n_boot=snakemake.params.n_boot)

# Runs stay on disk until z-scored, one at a time: a subject's raw BOLD and its
# float32 responses are never both in memory.
brain = read_brain(snakemake.input.brain, on_disk=True)
# One layer at a time, as stored (float16): the whole cache in float32 would
# cost more than the ridge of one layer.
acts, stimuli = subject_activations(snakemake.input.activations, read_stimuli(snakemake.input.stimuli),
                                    snakemake.input.stimuli, brain, snakemake.input.brain, lazy=True)

# TR-block bootstrap replicates of mean r per layer, for the standard errors of
# the phase analysis: same seed and blocks at every checkpoint, so paired.
voxels, boot = encode_layers(acts, stimuli, brain, settings, budget_bytes=snakemake.resources.mem_mb * 2**20)
for table in (voxels, boot):
    table.insert(0, "subject", wc.subject)
    table.insert(0, "dataset", wc.dataset)
    table.insert(0, "tokens", int(snakemake.params.tokens))
    table.insert(0, "step", wc.step)
    table.insert(0, "model", wc.model)
write_parquet(voxels, snakemake.output.voxels)
write_parquet(boot, snakemake.output.bootstrap)
