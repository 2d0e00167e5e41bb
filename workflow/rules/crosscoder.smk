# Brain-LM crosscoder per (checkpoint, dataset, subject): the real fit and its
# time-shuffled control in one job, then one aggregation and figures.


rule crosscoder:
    input:
        activations=lambda wc: ACTIVATIONS.format(
            model=wc.model, step=wc.step, stimset=study.stimset_of(config, wc.dataset)
        ),
        stimuli=lambda wc: STIMULI.format(stimset=study.stimset_of(config, wc.dataset)),
        brain=BRAIN,
        truth=toy_truth,
    output:
        real=CROSSCODER.replace("{file}", "crosscoder.safetensors"),
        shuffled=CROSSCODER.replace("{file}", "shuffled.safetensors"),
        metrics=CROSSCODER.replace("{file}", "metrics.parquet"),
        latents=CROSSCODER.replace("{file}", "latents.parquet"),
        windows=CROSSCODER.replace("{file}", "windows.parquet"),
        weights=CROSSCODER.replace("{file}", "weights.parquet"),
    log:
        log_path("crosscoder", "{model}/{step}/{dataset}/{subject}"),
    benchmark:
        benchmark_path("crosscoder", "{model}/{step}/{dataset}/{subject}")
    conda:
        TORCH_ENV
    threads: threads("crosscoder")
    params:
        crosscoder=config["crosscoder"],
        tokens=tokens,
        device=config["device"],
        resample=lambda wc: study.resampling_of(config, wc.dataset),
    script:
        "../scripts/crosscoder.py"


rule aggregate_crosscoder:
    input:
        metrics=crosscoder_files("metrics.parquet"),
        latents=crosscoder_files("latents.parquet"),
        windows=crosscoder_files("windows.parquet"),
    output:
        metrics=table("crosscoder"),
        latents=table("crosscoder_latents"),
        windows=table("crosscoder_windows"),
    log:
        log_path("aggregate_crosscoder"),
    benchmark:
        benchmark_path("aggregate_crosscoder")
    conda:
        TABLES_ENV
    script:
        "../scripts/concat_tables.py"


rule plot_crosscoder:
    input:
        metrics=table("crosscoder"),
        latents=table("crosscoder_latents"),
        weights=crosscoder_files("weights.parquet"),
        brains=brain_files(),
    output:
        ri=[report(f, caption="../report/crosscoder_ri.rst", category="Crosscoder") for f in figures("crosscoder_ri")],
        fractions=[
            report(f, caption="../report/crosscoder_fractions.rst", category="Crosscoder")
            for f in figures("crosscoder_fractions")
        ],
        maps=[
            report(f, caption="../report/crosscoder_maps.rst", category="Crosscoder")
            for f in figures("crosscoder_maps")
        ],
    log:
        log_path("plots/crosscoder"),
    benchmark:
        benchmark_path("plots/crosscoder")
    conda:
        FIGURES_ENV
    params:
        plots=config["plots"],
    script:
        "../scripts/crosscoder_plot.py"
