"""Stimulus stories with word timings for a simulated listening experiment."""

from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.toyworld import build_world, stimulus_stories

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
sim = snakemake.params.stories
world = build_world(snakemake.params.world["seed"])
stim = stimulus_stories(world, sim["stories_train"], sim["stories_test"], sim["words_per_story"],
                        sim["language"], sim["seed"])
log.info("%d runs, %d words", stim["run"].nunique(), len(stim))
write_parquet(stim, snakemake.output.stimuli)
