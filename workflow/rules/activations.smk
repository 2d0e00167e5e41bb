# One job per (checkpoint, stimulus set): each set gets its own forward passes
# and its own file, so an edited dataset reruns only its own cache and what
# reads it, and the sets of one checkpoint run side by side (on a cluster, one
# GPU each). Adding a stimulus set or a checkpoint schedules only its own jobs.


# One rule per model because what a checkpoint caches depends on the model's
# analyses (the demo's small LM serves only the temporal analysis).
for _m in models():

    rule:
        name:
            f"activations_{_m}"
        wildcard_constraints:
            stimset="|".join(stimsets(_m)) or "^$",
        input:
            checkpoint=f"{R}/checkpoints/{_m}/{{step}}",
            stimuli=f"{R}/stimuli/{{stimset}}.parquet",
        output:
            f"{R}/activations/{_m}/{{step}}/{{stimset}}.safetensors",
        params:
            model=_m,
            revision=lambda wc: wc.step,
            tokens=lambda wc, _m=_m: tokens_for(model_entry(config, _m), wc.step),
            stimsets=lambda wc: [wc.stimset],
            poolings=lambda wc: [pooling_of(wc.stimset)],
            windows=[None],
            sites=lambda wc: [sites_of(wc.stimset)],
            activations=config["activations"],
            # Token-pooled sets (the SAE corpus) keep only the SAE's site and layer.
            token_site=config["sae"]["site"],
            token_layer=config["sae"]["layer"],
            device=config["device"],
            trust_remote_code=model_entry(config, _m).get("trust_remote_code", False),
        threads: threads(f"activations_{_m}", "activations")
        log:
            f"{R}/logs/activations/{_m}/{{step}}/{{stimset}}.log",
        benchmark:
            f"{R}/benchmarks/activations/{_m}/{{step}}/{{stimset}}.tsv"
        conda:
            ENV
        resources:
            **rule_resources("activations", mem_mb=4000, runtime=30),
        script:
            "../scripts/activations.py"

    if "temporal" in model_analyses(_m) and meg_datasets():

        rule:
            name:
                f"context_activations_{_m}"
            input:
                checkpoint=f"{R}/checkpoints/{_m}/{{step}}",
                stimuli=[f"{R}/stimuli/{stimset_of(d['name'])}.parquet" for d in meg_datasets()
                         for w in config["temporal"]["context_windows"]],
            output:
                context_activation_files(_m),
            params:
                model=_m,
                revision=lambda wc: wc.step,
                tokens=lambda wc, _m=_m: tokens_for(model_entry(config, _m), wc.step),
                stimsets=[stimset_of(d["name"]) for d in meg_datasets() for w in config["temporal"]["context_windows"]],
                poolings=["word" for d in meg_datasets() for w in config["temporal"]["context_windows"]],
                windows=[w for d in meg_datasets() for w in config["temporal"]["context_windows"]],
                sites=[config["activations"]["sites"] for d in meg_datasets() for w in config["temporal"]["context_windows"]],
                activations=config["activations"],
                token_site=config["sae"]["site"],
                token_layer=config["sae"]["layer"],
                device=config["device"],
                trust_remote_code=model_entry(config, _m).get("trust_remote_code", False),
            threads: threads(f"context_activations_{_m}", "activations")
            log:
                f"{R}/logs/activations/{_m}/{{step}}.context.log",
            benchmark:
                f"{R}/benchmarks/activations/{_m}/{{step}}.context.tsv"
            conda:
                ENV
            resources:
                **rule_resources("context_activations", mem_mb=4000, runtime=30),
            script:
                "../scripts/activations.py"
