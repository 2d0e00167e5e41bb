# Variance partitioning over training: per (checkpoint, dataset, subject), the
# LM layer and the low-level band (word rate, letter rate, word length) fitted
# alone and together; then one table over checkpoints and the LM-unique figure.


rule variance:
    input:
        activations=lambda wc: ACTIVATIONS.format(
            model=wc.model, step=wc.step, stimset=study.stimset_of(config, wc.dataset)
        ),
        stimuli=lambda wc: STIMULI.format(stimset=study.stimset_of(config, wc.dataset)),
        brain=BRAIN,
    output:
        VARIANCE,
    log:
        log_path("variance", "{model}/{step}/{dataset}/{subject}"),
    benchmark:
        benchmark_path("variance", "{model}/{step}/{dataset}/{subject}")
    conda:
        ENCODING_ENV
    threads: threads("variance", "encoding")
    params:
        encoding=config["encoding"],
        variance=config.get("variance"),
        seed=config["seed"],
        tokens=tokens,
        resample=lambda wc: study.resampling_of(config, wc.dataset),
    script:
        "../scripts/variance.py"


rule aggregate_variance:
    input:
        voxels=variance_jobs(VARIANCE),
        truth=truth_files(),
    output:
        voxels=table("variance_partition"),
        summary=table("variance_summary"),
    log:
        log_path("aggregate_variance"),
    benchmark:
        benchmark_path("aggregate_variance")
    conda:
        TABLES_ENV
    script:
        "../scripts/variance_aggregate.py"


localrules:
    plot_variance_trajectory,


rule plot_variance_trajectory:
    input:
        summary=table("variance_summary"),
    output:
        [
            report(f, caption="../report/variance_trajectory.rst", category="Variance partitioning")
            for f in figures("variance_trajectory")
        ],
    log:
        log_path("plots/variance_trajectory"),
    benchmark:
        benchmark_path("plots/variance_trajectory")
    conda:
        FIGURES_ENV
    params:
        plots=config["plots"],
    script:
        "../scripts/variance_plot.py"
