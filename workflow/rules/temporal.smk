# MEG layer-latency alignment: word-locked epochs once per subject, one job per
# (model, checkpoint, subject) for every layer and lag together, the context
# sweep at each model's last checkpoint, one table and the figures.


rule word_epochs:
    input:
        stimuli=lambda wc: STIMULI.format(stimset=study.stimset_of(config, wc.dataset)),
        brain=BRAIN,
    output:
        epochs=EPOCHS,
    log:
        log_path("epochs", "{dataset}/{subject}"),
    benchmark:
        benchmark_path("epochs", "{dataset}/{subject}")
    conda:
        BRAIN_ENV
    params:
        temporal=config["temporal"],
    script:
        "../scripts/temporal_epochs.py"


rule temporal:
    input:
        activations=lambda wc: ACTIVATIONS.format(
            model=wc.model, step=wc.step, stimset=study.stimset_of(config, wc.dataset)
        ),
        stimuli=lambda wc: STIMULI.format(stimset=study.stimset_of(config, wc.dataset)),
        epochs=EPOCHS,
        checkpoint=CHECKPOINT,
    output:
        scores=TEMPORAL,
    log:
        log_path("temporal", "{model}/{step}/{dataset}/{subject}"),
    benchmark:
        benchmark_path("temporal", "{model}/{step}/{dataset}/{subject}")
    conda:
        ENCODING_ENV
    threads: threads("temporal")
    params:
        temporal=config["temporal"],
        tokens=tokens,
        context=None,
        seed=config["seed"],
    script:
        "../scripts/temporal.py"


rule temporal_context:
    input:
        activations=lambda wc: CONTEXT_ACTIVATIONS.format(
            model=wc.model, step=wc.step, window=wc.window, stimset=study.stimset_of(config, wc.dataset)
        ),
        stimuli=lambda wc: STIMULI.format(stimset=study.stimset_of(config, wc.dataset)),
        epochs=EPOCHS,
        checkpoint=CHECKPOINT,
    output:
        scores=TEMPORAL_CONTEXT,
    log:
        log_path("temporal", "{model}/{step}/{dataset}/{subject}.ctx{window}"),
    benchmark:
        benchmark_path("temporal", "{model}/{step}/{dataset}/{subject}.ctx{window}")
    conda:
        ENCODING_ENV
    threads: threads("temporal")
    params:
        temporal=config["temporal"],
        tokens=tokens,
        context=lambda wc: int(wc.window),
        seed=config["seed"],
    script:
        "../scripts/temporal.py"


rule aggregate_temporal:
    input:
        scores=temporal_files(),
    output:
        scores=table("temporal"),
    log:
        log_path("aggregate_temporal"),
    benchmark:
        benchmark_path("aggregate_temporal")
    conda:
        TABLES_ENV
    script:
        "../scripts/concat_tables.py"


rule plot_temporal:
    input:
        scores=table("temporal"),
    output:
        heatmaps=[
            report(f, caption="../report/temporal_heatmaps.rst", category="Temporal")
            for f in figures("temporal_heatmaps")
        ],
        path=[report(f, caption="../report/temporal_path.rst", category="Temporal") for f in figures("temporal_path")],
        trajectory=[
            report(f, caption="../report/temporal_trajectory.rst", category="Temporal")
            for f in figures("temporal_trajectory")
        ],
        sweeps=[
            report(f, caption="../report/temporal_sweeps.rst", category="Temporal") for f in figures("temporal_sweeps")
        ],
    log:
        log_path("plots/temporal"),
    benchmark:
        benchmark_path("plots/temporal")
    conda:
        FIGURES_ENV
    params:
        plots=config["plots"],
    script:
        "../scripts/temporal_plot.py"
