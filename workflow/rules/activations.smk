# One job per (checkpoint, stimulus set): each set gets its own forward passes
# and its own file, so an edited dataset reruns only its own cache and what
# reads it, and the sets of one checkpoint run side by side (on a cluster, one
# GPU each). Adding a stimulus set or a checkpoint schedules only its own jobs.
# What each set is and how it is read (pooling, sites) is brainphase.study's.


rule activations:
    input:
        checkpoint=CHECKPOINT,
        stimuli=STIMULI,
    output:
        ACTIVATIONS,
    log:
        log_path("activations", "{model}/{step}/{stimset}"),
    benchmark:
        benchmark_path("activations", "{model}/{step}/{stimset}")
    wildcard_constraints:
        stimset=one_of(dict.fromkeys(s for m in models() for s in study.stimsets(config, m))),
    conda:
        TORCH_ENV
    threads: model_threads("activations")
    params:
        model=lambda wc: wc.model,
        revision=lambda wc: wc.step,
        tokens=tokens,
        stimsets=lambda wc: [wc.stimset],
        poolings=lambda wc: [study.pooling_of(config, wc.stimset)],
        windows=[None],
        sites=lambda wc: [study.sites_of(config, wc.stimset)],
        activations=config["activations"],
        # Token-pooled sets (the SAE corpus) keep only the SAE's site and layer.
        token_site=config["sae"]["site"],
        token_layer=config["sae"]["layer"],
        device=config["device"],
        trust_remote_code=lambda wc: model_config(wc.model).get("trust_remote_code", False),
    script:
        "../scripts/activations.py"


# The context-length sweep of the temporal analysis: the MEG stimulus sets
# again, each word read with only its last `window` tokens, all in one job per checkpoint.
if study.context_runs(config):

    rule context_activations:
        input:
            checkpoint=CHECKPOINT,
            stimuli=[STIMULI.format(stimset=s) for s, _ in study.context_runs(config)],
        output:
            context_activation_files(),
        log:
            log_path("activations", "{model}/{step}.context"),
        benchmark:
            benchmark_path("activations", "{model}/{step}.context")
        wildcard_constraints:
            model=one_of(models("temporal")),
        conda:
            TORCH_ENV
        threads: model_threads("context_activations", "activations")
        params:
            model=lambda wc: wc.model,
            revision=lambda wc: wc.step,
            tokens=tokens,
            stimsets=[s for s, _ in study.context_runs(config)],
            poolings=["word" for _ in study.context_runs(config)],
            windows=[w for _, w in study.context_runs(config)],
            sites=[config["activations"]["sites"] for _ in study.context_runs(config)],
            activations=config["activations"],
            token_site=config["sae"]["site"],
            token_layer=config["sae"]["layer"],
            device=config["device"],
            trust_remote_code=lambda wc: model_config(wc.model).get("trust_remote_code", False),
        script:
            "../scripts/activations.py"
