# Phase detection over the three trajectories and its figures. Point values and
# the best layers come from the per-voxel, per-item and per-neuron tables, the
# standard errors from the bootstrap tables (TR blocks, items, test items).


rule phases:
    input:
        voxels=table("encoding_voxels"),
        per_item=table("benchmark_items"),
        neurons=table("probing_neurons"),
        encoding_boot=table("encoding_bootstrap"),
        probing_boot=table("probing_bootstrap"),
        duplicates=table("checkpoint_duplicates"),
    output:
        phases=table("phases"),
        trajectories=table("trajectories"),
    log:
        log_path("phases"),
    benchmark:
        benchmark_path("phases")
    conda:
        TABLES_ENV
    params:
        phases=config["phases"],
        seed=config["seed"],
    script:
        "../scripts/phases.py"


rule plot_phases:
    input:
        phases=table("phases"),
        trajectories=table("trajectories"),
        neurons=table("probing_neurons"),
        voxels=table("encoding_voxels"),
        brains=brain_files(),
    output:
        trajectory=[
            report(f, caption="../report/phase_trajectory.rst", category="Phases") for f in figures("phase_trajectory")
        ],
        histogram=[
            report(f, caption="../report/probing_histogram.rst", category="Phases")
            for f in figures("probing_histogram")
        ],
        detachment=[
            report(f, caption="../report/detachment_map.rst", category="Phases") for f in figures("detachment_map")
        ],
    log:
        log_path("plots/phases"),
    benchmark:
        benchmark_path("plots/phases")
    conda:
        FIGURES_ENV
    params:
        plots=config["plots"],
    script:
        "../scripts/phases_plot.py"
