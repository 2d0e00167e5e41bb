# MEG layer-latency alignment (METHODS §7): word-locked epochs once per
# subject, one job per (model, checkpoint, subject) for every layer and lag
# together, the context sweep at each model's last checkpoint, one table and
# the figures.


rule word_epochs:
    input:
        stimuli=lambda wc: f"{R}/stimuli/{stimset_of(wc.dataset)}.parquet",
        brain=f"{R}/brain/{{dataset}}/{{subject}}.h5",
    output:
        epochs=f"{R}/epochs/{{dataset}}/{{subject}}.h5",
    params:
        temporal=config["temporal"],
    log:
        f"{R}/logs/epochs/{{dataset}}/{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/epochs/{{dataset}}/{{subject}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/temporal_epochs.py"


rule temporal:
    input:
        activations=lambda wc: f"{R}/activations/{wc.model}/{wc.step}/{stimset_of(wc.dataset)}.safetensors",
        stimuli=lambda wc: f"{R}/stimuli/{stimset_of(wc.dataset)}.parquet",
        epochs=f"{R}/epochs/{{dataset}}/{{subject}}.h5",
        checkpoint=f"{R}/checkpoints/{{model}}/{{step}}",
    output:
        scores=f"{R}/temporal/{{model}}/{{step}}/{{dataset}}/{{subject}}.parquet",
    params:
        temporal=config["temporal"],
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
        context=None,
        seed=config["seed"],
    threads: threads("temporal")
    log:
        f"{R}/logs/temporal/{{model}}/{{step}}/{{dataset}}/{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/temporal/{{model}}/{{step}}/{{dataset}}/{{subject}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/temporal.py"


rule temporal_context:
    input:
        activations=lambda wc: (f"{R}/activations/{wc.model}/{wc.step}/context/"
                                f"{stimset_of(wc.dataset)}.ctx{wc.window}.safetensors"),
        stimuli=lambda wc: f"{R}/stimuli/{stimset_of(wc.dataset)}.parquet",
        epochs=f"{R}/epochs/{{dataset}}/{{subject}}.h5",
        checkpoint=f"{R}/checkpoints/{{model}}/{{step}}",
    output:
        scores=f"{R}/temporal/{{model}}/{{step}}/{{dataset}}/{{subject}}.ctx{{window}}.parquet",
    wildcard_constraints:
        window=r"\d+",
    params:
        temporal=config["temporal"],
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
        context=lambda wc: int(wc.window),
        seed=config["seed"],
    threads: threads("temporal")
    log:
        f"{R}/logs/temporal/{{model}}/{{step}}/{{dataset}}/{{subject}}.ctx{{window}}.log",
    benchmark:
        f"{R}/benchmarks/temporal/{{model}}/{{step}}/{{dataset}}/{{subject}}.ctx{{window}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/temporal.py"


rule aggregate_temporal:
    input:
        scores=temporal_files(),
    output:
        scores=f"{R}/tables/temporal.parquet",
    log:
        f"{R}/logs/aggregate_temporal.log",
    benchmark:
        f"{R}/benchmarks/aggregate_temporal.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/concat_tables.py"


rule plot_temporal:
    input:
        scores=f"{R}/tables/temporal.parquet",
    output:
        heatmaps=[report(f, caption="../report/temporal_heatmaps.rst", category="Temporal")
                  for f in figure_files("temporal_heatmaps")],
        path=[report(f, caption="../report/temporal_path.rst", category="Temporal")
              for f in figure_files("temporal_path")],
        trajectory=[report(f, caption="../report/temporal_trajectory.rst", category="Temporal")
                    for f in figure_files("temporal_trajectory")],
        sweeps=[report(f, caption="../report/temporal_sweeps.rst", category="Temporal")
                for f in figure_files("temporal_sweeps")],
    params:
        plots=config["plots"],
    log:
        f"{R}/logs/plots/temporal.log",
    benchmark:
        f"{R}/benchmarks/plots/temporal.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/temporal_plot.py"
