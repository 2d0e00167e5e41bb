"""A task's benchmark items as a stimulus set: each item's prompt exactly as lm-eval renders it."""

from brainphase.evals.harness import num_fewshot_for, set_offline
from brainphase.evals.prompts import probe_items
from brainphase.io import write_parquet
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
p = snakemake.params
task = snakemake.wildcards.task
log = setup_job(snakemake.log[0], 1, p.seed)
b = p.evals
if b["offline"]:
    set_offline()
shots = num_fewshot_for(b["num_fewshot"], task)
items = probe_items(task, include_path=p.include_path or None, num_fewshot=shots, seed=p.seed, limit=b["limit"])
log.info("%s: %d items from %d leaf tasks, %s-shot", task, len(items), items["run"].nunique(), shots)
write_parquet(items, snakemake.output[0])
