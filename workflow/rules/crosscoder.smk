# Brain-LM crosscoder per (checkpoint, dataset, subject) (METHODS §9): the real
# fit and its time-shuffled control in one job, then one aggregation and figures.


rule crosscoder:
    input:
        activations=lambda wc: f"{R}/activations/{wc.model}/{wc.step}/{stimset_of(wc.dataset)}.safetensors",
        stimuli=lambda wc: f"{R}/stimuli/{stimset_of(wc.dataset)}.parquet",
        brain=f"{R}/brain/{{dataset}}/{{subject}}.h5",
        truth=lambda wc: (
            [f"{R}/brain/{wc.dataset}/{wc.subject}.truth.parquet"]
            if dataset_entry(config, wc.dataset)["source"] == "toyworld"
            else []
        ),
    output:
        real=f"{R}/crosscoder/{{model}}/{{step}}/{{dataset}}/{{subject}}/crosscoder.safetensors",
        shuffled=f"{R}/crosscoder/{{model}}/{{step}}/{{dataset}}/{{subject}}/shuffled.safetensors",
        metrics=f"{R}/crosscoder/{{model}}/{{step}}/{{dataset}}/{{subject}}/metrics.parquet",
        latents=f"{R}/crosscoder/{{model}}/{{step}}/{{dataset}}/{{subject}}/latents.parquet",
        windows=f"{R}/crosscoder/{{model}}/{{step}}/{{dataset}}/{{subject}}/windows.parquet",
        weights=f"{R}/crosscoder/{{model}}/{{step}}/{{dataset}}/{{subject}}/weights.parquet",
    params:
        crosscoder=config["crosscoder"],
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
        device=config["device"],
        resample=lambda wc: resampling_of(wc.dataset),
    threads: threads("crosscoder")
    log:
        f"{R}/logs/crosscoder/{{model}}/{{step}}/{{dataset}}/{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/crosscoder/{{model}}/{{step}}/{{dataset}}/{{subject}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/crosscoder.py"


rule aggregate_crosscoder:
    input:
        metrics=crosscoder_files("metrics.parquet"),
        latents=crosscoder_files("latents.parquet"),
        windows=crosscoder_files("windows.parquet"),
    output:
        metrics=f"{R}/tables/crosscoder.parquet",
        latents=f"{R}/tables/crosscoder_latents.parquet",
        windows=f"{R}/tables/crosscoder_windows.parquet",
    log:
        f"{R}/logs/aggregate_crosscoder.log",
    benchmark:
        f"{R}/benchmarks/aggregate_crosscoder.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/concat_tables.py"


rule plot_crosscoder:
    input:
        metrics=f"{R}/tables/crosscoder.parquet",
        latents=f"{R}/tables/crosscoder_latents.parquet",
        weights=crosscoder_files("weights.parquet"),
        brains=brain_files(),
    output:
        ri=[report(f, caption="../report/crosscoder_ri.rst", category="Crosscoder")
            for f in figure_files("crosscoder_ri")],
        fractions=[report(f, caption="../report/crosscoder_fractions.rst", category="Crosscoder")
                   for f in figure_files("crosscoder_fractions")],
        maps=[report(f, caption="../report/crosscoder_maps.rst", category="Crosscoder")
              for f in figure_files("crosscoder_maps")],
    params:
        plots=config["plots"],
    log:
        f"{R}/logs/plots/crosscoder.log",
    benchmark:
        f"{R}/benchmarks/plots/crosscoder.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/crosscoder_plot.py"
