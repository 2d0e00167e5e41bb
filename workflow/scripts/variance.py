"""Variance partitioning (LM layer vs low-level band) of one subject at one checkpoint."""

from brainphase.contracts.activations import subject_activations
from brainphase.contracts.brain import read_brain
from brainphase.contracts.stimuli import read_stimuli
from brainphase.encoding.settings import EncodingSettings
from brainphase.encoding.variance import partition_layers
from brainphase.io import write_parquet
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0], snakemake.threads, snakemake.params.seed)
wc = snakemake.wildcards
cfg = snakemake.params.variance
settings = EncodingSettings.from_config(snakemake.params.encoding, seed=snakemake.params.seed,
                                        resample=snakemake.params.resample)
brain = read_brain(snakemake.input.brain, on_disk=True)
acts, stimuli = subject_activations(snakemake.input.activations, read_stimuli(snakemake.input.stimuli),
                                    snakemake.input.stimuli, brain, snakemake.input.brain, lazy=True)
names = [n for n in acts if n.split(".")[0] == cfg["site"]]
if not names:
    raise ValueError(f"config key variance.site: {cfg['site']!r} is not among the cached sites of "
                     f"{snakemake.input.activations} ({sorted({n.split('.')[0] for n in acts})}); add it to "
                     "activations.sites or set variance.site to one of them")
layers = None if cfg["layers"] == "all" else cfg["layers"]
# Voxels are fitted in chunks sized to the rule's mem_mb (the plan is logged).
voxels = partition_layers({n: acts[n] for n in names}, stimuli, brain, settings, n_iter=cfg["n_iter"],
                          n_perm=cfg["n_perm"], layers=layers, budget_bytes=snakemake.resources.mem_mb * 2**20)
for key, value in (("subject", wc.subject), ("dataset", wc.dataset), ("tokens", int(snakemake.params.tokens)),
                   ("step", wc.step), ("model", wc.model)):
    voxels.insert(0, key, value)
write_parquet(voxels, snakemake.output[0])
