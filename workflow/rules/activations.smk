# One job per checkpoint caches every stimulus set the analyses read: the
# model is loaded once (on a cluster, one GPU allocation) and each set gets its
# own forward passes and its own file. Adding a stimulus set reruns these jobs;
# adding a checkpoint schedules only its own.


def sites_of(stimset):
    # Benchmark prompts are probed at one site (probing.site; the paper reads
    # the MLP output): their files hold that site whatever activations.sites says.
    return [config["probing"].get("site", "mlp")] if stimset.startswith("probe_") else config["activations"]["sites"]


# One rule per model because what a checkpoint caches depends on the model's
# analyses (the demo's small LM serves only the temporal analysis).
for _m in models():

    rule:
        name:
            f"activations_{_m}"
        input:
            checkpoint=f"{R}/checkpoints/{_m}/{{step}}",
            stimuli=[f"{R}/stimuli/{s}.parquet" for s in stimsets(_m)],
        output:
            activation_files(_m),
        params:
            model=_m,
            revision=lambda wc: wc.step,
            tokens=lambda wc, _m=_m: tokens_for(model_entry(config, _m), wc.step),
            stimsets=stimsets(_m),
            poolings=[pooling_of(s) for s in stimsets(_m)],
            windows=[None] * len(stimsets(_m)),
            sites=[sites_of(s) for s in stimsets(_m)],
            activations=config["activations"],
            # Token-pooled sets (the SAE corpus) keep only the SAE's site and layer.
            token_site=config["sae"]["site"],
            token_layer=config["sae"]["layer"],
            device=config["device"],
            trust_remote_code=model_entry(config, _m).get("trust_remote_code", False),
        threads: threads(f"activations_{_m}", "activations")
        log:
            f"{R}/logs/activations/{_m}/{{step}}.log",
        benchmark:
            f"{R}/benchmarks/activations/{_m}/{{step}}.tsv"
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
