# Probing (METHODS §5): last-token activations of each benchmark item's prompt.


rule probe_stimuli:
    input:
        tasks=DEMO_TASKS,
    output:
        f"{R}/stimuli/probe_{{task}}.parquet",
    log:
        f"{R}/logs/probe_stimuli/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/probe_stimuli/{{task}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/probe_stimuli.py"


rule probing:
    input:
        activations=f"{R}/activations/{{model}}/{{step}}/probe_{{task}}.safetensors",
        stimuli=f"{R}/stimuli/probe_{{task}}.parquet",
    output:
        summary=f"{R}/probing/{{model}}/{{step}}/{{task}}.parquet",
        neurons=f"{R}/probing/{{model}}/{{step}}/{{task}}.neurons.parquet",
    params:
        probing=config["probing"],
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
    output:
        summary=f"{R}/tables/probing.parquet",
        neurons=f"{R}/tables/probing_neurons.parquet",
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
