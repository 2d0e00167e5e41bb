# Probing: last-token activations of each benchmark item's prompt, rendered by
# lm-eval with the benchmark run's few-shot setting and seed.


rule probe_stimuli:
    input:
        # task_dirs (common.smk): the demo tasks' directory, or evals.include_path.
        tasks=task_dirs,
    output:
        PROBE_STIMULI,
    log:
        log_path("probe_stimuli", "{task}"),
    benchmark:
        benchmark_path("probe_stimuli", "{task}")
    conda:
        LMEVAL_ENV
    params:
        evals=config["evals"],
        include_path=lambda wc, input: list(input.tasks),
        seed=config["seed"],
    script:
        "../scripts/probing_stimuli.py"


rule probing:
    input:
        activations=PROBE_ACTIVATIONS,
        stimuli=PROBE_STIMULI,
    output:
        summary=PROBING,
        neurons=PROBING_NEURONS,
        boot=PROBING_BOOT,
    log:
        log_path("probing", "{model}/{step}/{task}"),
    benchmark:
        benchmark_path("probing", "{model}/{step}/{task}")
    conda:
        TABLES_ENV
    threads: threads("probing")
    params:
        test_fraction=config["probing"]["test_fraction"],
        site=config["probing"].get("site", "mlp"),
        # Item bootstrap for the phase analysis: same draws at every checkpoint.
        n_boot=config["phases"]["n_boot"],
        seed=config["seed"],
        tokens=tokens,
    script:
        "../scripts/probing.py"


rule aggregate_probing:
    input:
        summary=probing_jobs(PROBING),
        neurons=probing_jobs(PROBING_NEURONS),
        boot=probing_jobs(PROBING_BOOT),
    output:
        summary=table("probing"),
        neurons=table("probing_neurons"),
        boot=table("probing_bootstrap"),
    log:
        log_path("aggregate_probing"),
    benchmark:
        benchmark_path("aggregate_probing")
    conda:
        TABLES_ENV
    script:
        "../scripts/concat_tables.py"
