# One forward pass per (checkpoint, stimulus set) caches every layer and site.


rule activations:
    input:
        checkpoint=f"{R}/checkpoints/{{model}}/{{step}}",
        stimuli=f"{R}/stimuli/{{stimset}}.parquet",
    output:
        f"{R}/activations/{{model}}/{{step}}/{{stimset}}.safetensors",
    params:
        model=lambda wc: wc.model,
        revision=lambda wc: wc.step,
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
        pooling=lambda wc: pooling_of(wc.stimset),
        activations=config["activations"],
        device=config["device"],
    threads: config["threads"]
    log:
        f"{R}/logs/activations/{{model}}/{{step}}/{{stimset}}.log",
    benchmark:
        f"{R}/benchmarks/activations/{{model}}/{{step}}/{{stimset}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/activations.py"
