# Voxelwise fMRI encoding per (checkpoint, dataset, subject), all layers in one
# job (they share the brain data and the delays), then one aggregation and the figures.


rule encoding:
    input:
        activations=lambda wc: ACTIVATIONS.format(
            model=wc.model, step=wc.step, stimset=study.stimset_of(config, wc.dataset)
        ),
        stimuli=lambda wc: STIMULI.format(stimset=study.stimset_of(config, wc.dataset)),
        brain=BRAIN,
    output:
        voxels=ENCODING,
        bootstrap=ENCODING_BOOT,
    log:
        log_path("encoding", "{model}/{step}/{dataset}/{subject}"),
    benchmark:
        benchmark_path("encoding", "{model}/{step}/{dataset}/{subject}")
    conda:
        ENCODING_ENV
    threads: threads("encoding")
    params:
        encoding=config["encoding"],
        n_boot=config["phases"]["n_boot"],
        seed=config["seed"],
        tokens=tokens,
        resample=lambda wc: study.resampling_of(config, wc.dataset),
    script:
        "../scripts/encoding.py"


rule aggregate_encoding:
    input:
        voxels=encoding_jobs(ENCODING),
        bootstrap=encoding_jobs(ENCODING_BOOT),
        truth=truth_files(),
    output:
        summary=table("encoding"),
        voxels=table("encoding_voxels"),
        bootstrap=table("encoding_bootstrap"),
        groups=table("encoding_groups") if truth_files() else [],
    log:
        log_path("aggregate_encoding"),
    benchmark:
        benchmark_path("aggregate_encoding")
    conda:
        TABLES_ENV
    script:
        "../scripts/encoding_aggregate.py"


# Figures, registered for `snakemake --report`.
localrules:
    plot_encoding_trajectory,
    plot_encoding_maps,


rule plot_encoding_trajectory:
    input:
        summary=table("encoding"),
        groups=table("encoding_groups") if truth_files() else [],
    output:
        [
            report(f, caption="../report/encoding_trajectory.rst", category="Encoding")
            for f in figures("encoding_trajectory")
        ],
    log:
        log_path("plots/encoding_trajectory"),
    benchmark:
        benchmark_path("plots/encoding_trajectory")
    conda:
        FIGURES_ENV
    params:
        plots=config["plots"],
    script:
        "../scripts/encoding_plot_trajectory.py"


rule plot_encoding_maps:
    input:
        summary=table("encoding"),
        voxels=table("encoding_voxels"),
        brains=brain_files(),
    output:
        [report(f, caption="../report/encoding_maps.rst", category="Encoding") for f in figures("encoding_maps")],
    log:
        log_path("plots/encoding_maps"),
    benchmark:
        benchmark_path("plots/encoding_maps")
    conda:
        FIGURES_ENV
    params:
        plots=config["plots"],
        map_layer=config["encoding"]["map_layer"],
    script:
        "../scripts/encoding_plot_maps.py"
