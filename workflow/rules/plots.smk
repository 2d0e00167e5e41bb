# Figures, registered for `snakemake --report`.

localrules:
    plot_encoding_trajectory,
    plot_encoding_maps,


rule plot_encoding_trajectory:
    input:
        summary=f"{R}/tables/encoding.parquet",
        groups=f"{R}/tables/encoding_groups.parquet" if truth_files() else [],
    output:
        [
            report(f, caption="../report/encoding_trajectory.rst", category="Encoding")
            for f in figure_files("encoding_trajectory")
        ],
    params:
        plots=config["plots"],
    log:
        f"{R}/logs/plots/encoding_trajectory.log",
    benchmark:
        f"{R}/benchmarks/plots/encoding_trajectory.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/encoding_plot_trajectory.py"


rule plot_encoding_maps:
    input:
        summary=f"{R}/tables/encoding.parquet",
        voxels=f"{R}/tables/encoding_voxels.parquet",
        brains=brain_files(),
    output:
        [
            report(f, caption="../report/encoding_maps.rst", category="Encoding")
            for f in figure_files("encoding_maps")
        ],
    params:
        plots=config["plots"],
        map_layer=config["encoding"]["map_layer"],
    log:
        f"{R}/logs/plots/encoding_maps.log",
    benchmark:
        f"{R}/benchmarks/plots/encoding_maps.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/encoding_plot_maps.py"
