# lm-eval benchmarks per (model, step, task), and the demo's local tasks.


rule demo_tasks:
    input:
        lexicon=f"{R}/world/lexicon.parquet",
        # Distractors are matched in token count with this model's tokenizer:
        # summed log-likelihood favours answers of fewer pieces.
        tokenizer=f"{R}/checkpoints/{models()[0]}/{steps(models()[0])[0]}",
    output:
        directory(DEMO_TASKS),
    params:
        world=config["world"],
        n_per_relation=config["evals"]["demo_items_per_relation"],
        seed=config["seed"],
    log:
        f"{R}/logs/demo_tasks.log",
    benchmark:
        f"{R}/benchmarks/demo_tasks.tsv"
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/evals_demo_tasks.py"


rule lm_eval:
    input:
        checkpoint=f"{R}/checkpoints/{{model}}/{{step}}",
        tasks=task_dirs,
    output:
        metrics=f"{R}/lmeval/{{model}}/{{step}}/{{task}}.metrics.parquet",
        per_item=f"{R}/lmeval/{{model}}/{{step}}/{{task}}.items.parquet",
    params:
        evals=config["evals"],
        include_path=lambda wc, input: list(input.tasks) or None,
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
        device=config["device"],
        seed=config["seed"],
    threads: threads("lm_eval")
    log:
        f"{R}/logs/lmeval/{{model}}/{{step}}/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/lmeval/{{model}}/{{step}}/{{task}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../scripts/evals.py"


rule aggregate_evals:
    input:
        metrics=lmeval_jobs("metrics"),
        per_item=lmeval_jobs("items"),
    output:
        metrics=f"{R}/tables/evals.parquet",
        per_item=f"{R}/tables/benchmark_items.parquet",
    log:
        f"{R}/logs/aggregate_evals.log",
    benchmark:
        f"{R}/benchmarks/aggregate_evals.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/evals_aggregate.py"
