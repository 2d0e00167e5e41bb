# Probing: last-token activations of each benchmark item's prompt, rendered by
# lm-eval with the benchmark run's few-shot setting and seed.


rule probe_stimuli:
    input:
        # task_dirs (common.smk): the demo tasks' directory, or evals.include_path.
        tasks=task_dirs,
    output:
        f"{R}/stimuli/probe_{{task}}.parquet",
    params:
        evals=config["evals"],
        include_path=lambda wc, input: list(input.tasks),
        seed=config["seed"],
    log:
        f"{R}/logs/probe_stimuli/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/probe_stimuli/{{task}}.tsv"
    conda:
        ENV
    resources:
        # lm-eval indexes its task YAMLs and loads the task's dataset (MMLU: 57 subtasks).
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/probing_stimuli.py"


rule probing:
    input:
        activations=f"{R}/activations/{{model}}/{{step}}/probe_{{task}}.safetensors",
        stimuli=f"{R}/stimuli/probe_{{task}}.parquet",
    output:
        summary=f"{R}/probing/{{model}}/{{step}}/{{task}}.parquet",
        neurons=f"{R}/probing/{{model}}/{{step}}/{{task}}.neurons.parquet",
        boot=f"{R}/probing/{{model}}/{{step}}/{{task}}.boot.parquet",
    params:
        test_fraction=config["probing"]["test_fraction"],
        site=config["probing"].get("site", "mlp"),
        # Item bootstrap for the phase analysis: same draws at every checkpoint.
        n_boot=config["phases"]["n_boot"],
        seed=config["seed"],
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
    threads: threads("probing")
    log:
        f"{R}/logs/probing/{{model}}/{{step}}/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/probing/{{model}}/{{step}}/{{task}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/probing.py"


rule aggregate_probing:
    input:
        summary=probing_jobs("parquet"),
        neurons=probing_jobs("neurons.parquet"),
        boot=probing_jobs("boot.parquet"),
    output:
        summary=f"{R}/tables/probing.parquet",
        neurons=f"{R}/tables/probing_neurons.parquet",
        boot=f"{R}/tables/probing_bootstrap.parquet",
    log:
        f"{R}/logs/aggregate_probing.log",
    benchmark:
        f"{R}/benchmarks/aggregate_probing.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/concat_tables.py"
