# lm-eval benchmarks per (model, step, task), and the demo's local tasks.


rule demo_tasks:
    input:
        lexicon=LEXICON,
        # Distractors are matched in token count with this model's tokenizer:
        # summed log-likelihood favours answers of fewer pieces.
        tokenizer=CHECKPOINT.format(model=models()[0], step=steps(models()[0])[0]),
    output:
        directory(DEMO_TASKS),
    log:
        log_path("demo_tasks"),
    benchmark:
        benchmark_path("demo_tasks")
    conda:
        TORCH_ENV
    params:
        world=config["world"],
        n_per_relation=config["evals"]["demo_items_per_relation"],
        seed=config["seed"],
    script:
        "../scripts/evals_demo_tasks.py"


rule lm_eval:
    input:
        checkpoint=CHECKPOINT,
        tasks=task_dirs,
    output:
        metrics=LMEVAL_METRICS,
        per_item=LMEVAL_ITEMS,
    log:
        log_path("lmeval", "{model}/{step}/{task}"),
    benchmark:
        benchmark_path("lmeval", "{model}/{step}/{task}")
    conda:
        LMEVAL_ENV
    threads: threads("lm_eval")
    params:
        evals=config["evals"],
        include_path=lambda wc, input: list(input.tasks) or None,
        tokens=tokens,
        device=config["device"],
        seed=config["seed"],
    script:
        "../scripts/evals.py"


rule aggregate_evals:
    input:
        metrics=lmeval_jobs(LMEVAL_METRICS),
        per_item=lmeval_jobs(LMEVAL_ITEMS),
    output:
        metrics=table("evals"),
        per_item=table("benchmark_items"),
    log:
        log_path("aggregate_evals"),
    benchmark:
        benchmark_path("aggregate_evals")
    conda:
        TABLES_ENV
    script:
        "../scripts/evals_aggregate.py"
