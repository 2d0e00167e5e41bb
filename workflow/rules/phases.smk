# Phase detection over the three trajectories and its figures. Point values and
# the best layers come from the per-voxel, per-item and per-neuron tables, the
# standard errors from the bootstrap tables (TR blocks, items, test items).


rule phases:
    input:
        voxels=f"{R}/tables/encoding_voxels.parquet",
        per_item=f"{R}/tables/benchmark_items.parquet",
        neurons=f"{R}/tables/probing_neurons.parquet",
        encoding_boot=f"{R}/tables/encoding_bootstrap.parquet",
        probing_boot=f"{R}/tables/probing_bootstrap.parquet",
        duplicates=f"{R}/tables/checkpoint_duplicates.parquet",
    output:
        phases=f"{R}/tables/phases.parquet",
        trajectories=f"{R}/tables/trajectories.parquet",
    params:
        phases=config["phases"],
        seed=config["seed"],
    log:
        f"{R}/logs/phases.log",
    benchmark:
        f"{R}/benchmarks/phases.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/phases.py"


rule plot_phases:
    input:
        phases=f"{R}/tables/phases.parquet",
        trajectories=f"{R}/tables/trajectories.parquet",
        neurons=f"{R}/tables/probing_neurons.parquet",
        voxels=f"{R}/tables/encoding_voxels.parquet",
        brains=brain_files(),
    output:
        trajectory=[
            report(f, caption="../report/phase_trajectory.rst", category="Phases")
            for f in figure_files("phase_trajectory")
        ],
        histogram=[
            report(f, caption="../report/probing_histogram.rst", category="Phases")
            for f in figure_files("probing_histogram")
        ],
        detachment=[
            report(f, caption="../report/detachment_map.rst", category="Phases")
            for f in figure_files("detachment_map")
        ],
    params:
        plots=config["plots"],
    log:
        f"{R}/logs/plots/phases.log",
    benchmark:
        f"{R}/benchmarks/plots/phases.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/phases_plot.py"
