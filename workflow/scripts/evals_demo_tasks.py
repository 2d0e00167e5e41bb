"""Write the demo's lm-eval tasks (fact recall in both languages) from the world's facts."""

from brainphase.evals.tasks import write_demo_tasks
from brainphase.runtime import setup_job
from brainphase.toyworld import build_world

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
from transformers import AutoTokenizer  # noqa: E402

world = build_world(snakemake.params.world["seed"])
tokenizer = AutoTokenizer.from_pretrained(snakemake.input.tokenizer)
# Written in place: the YAML files name their data files by absolute path, and
# Snakemake removes a directory output whose job failed.
names = write_demo_tasks(world, snakemake.output[0], n_per_relation=snakemake.params.n_per_relation,
                         seed=snakemake.params.seed, tokenizer=tokenizer)
log.info("tasks %s in %s", names, snakemake.output[0])
