"""One lm-eval task on one checkpoint: aggregate metrics and per-item correctness."""

import time

from brainphase.evals.harness import num_fewshot_for, run_benchmark
from brainphase.contracts.checkpoint import verify_checkpoint
from brainphase.runtime import resolve_device
from brainphase.io import write_parquet
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
p = snakemake.params
wc = snakemake.wildcards
b = p.evals
log = setup_job(snakemake.log[0], snakemake.threads, p.seed)
verify_checkpoint(snakemake.input.checkpoint)
t0 = time.perf_counter()
# The probe_stimuli job resolves the same count: both render the same prompts.
shots = num_fewshot_for(b["num_fewshot"], wc.task)
log.info("%s: %s-shot, include_path %s", wc.task, shots, p.include_path)
metrics, items = run_benchmark(
    snakemake.input.checkpoint, wc.task, include_path=p.include_path, num_fewshot=shots,
    limit=b["limit"], batch_size=b["batch_size"], device=str(resolve_device(p.device)), seed=p.seed,
    offline=b["offline"])
log.info("%s on %s/%s: %s (%.1fs)", wc.task, wc.model, wc.step,
         metrics[metrics["metric"] == "acc"][["task", "value"]].to_dict("records"), time.perf_counter() - t0)
for df in (metrics, items):
    df.insert(0, "tokens", int(p.tokens))
    df.insert(0, "step", wc.step)
    df.insert(0, "model", wc.model)
write_parquet(metrics, snakemake.output.metrics)
write_parquet(items, snakemake.output.per_item)
