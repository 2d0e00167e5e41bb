# One job per checkpoint caches every stimulus set the analyses read: the
# model is loaded once (on a cluster, one GPU allocation) and each set gets its
# own forward passes and its own file. Adding a stimulus set reruns these jobs;
# adding a checkpoint schedules only its own.


rule activations:
    input:
        checkpoint=f"{R}/checkpoints/{{model}}/{{step}}",
        stimuli=[f"{R}/stimuli/{s}.parquet" for s in stimsets()],
    output:
        activation_files(),
    params:
        model=lambda wc: wc.model,
        revision=lambda wc: wc.step,
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
        stimsets=stimsets(),
        poolings=[pooling_of(s) for s in stimsets()],
        activations=config["activations"],
        # Token-pooled sets (the SAE corpus) keep only the SAE's site and layer.
        token_site=config["sae"]["site"],
        token_layer=config["sae"]["layer"],
        device=config["device"],
    threads: threads("activations")
    log:
        f"{R}/logs/activations/{{model}}/{{step}}.log",
    benchmark:
        f"{R}/benchmarks/activations/{{model}}/{{step}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/activations.py"
