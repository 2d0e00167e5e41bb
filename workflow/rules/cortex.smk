# Cortical maps of per-voxel results (fsaverage surfaces, pycortex flatmaps), one
# job per subject: BIDS fMRI in MNI space goes onto nilearn's fsaverage5, a
# dataset that names a pycortex database onto its subjects' flatmaps. Other
# datasets (the demo's voxel sheet) keep their maps on the voxel layout.
# Input functions: workflow/rules/targets.smk (cortex section).


rule cortex_surface:
    input:
        unpack(cortex_inputs),
    output:
        **{name: cortex_figures(f"{name}_surface") for name in cortex_maps()},
        table=CORTEX_TABLE,
    log:
        log_path("cortex_surface", "{dataset}/{subject}"),
    benchmark:
        benchmark_path("cortex_surface", "{dataset}/{subject}")
    conda:
        FIGURES_ENV
    params:
        kind="surface",
        map_layer=config["encoding"]["map_layer"],
        dpi=config["plots"]["dpi"],
        reference=lambda wc: (study.dataset_entry(config, wc.dataset).get("options") or {}).get("mask") or "",
    script:
        "../scripts/cortex_maps.py"


rule cortex_flatmap:
    input:
        unpack(cortex_inputs),
    output:
        **{name: cortex_figures(f"{name}_flatmap") for name in cortex_maps()},
    log:
        log_path("cortex_flatmap", "{dataset}/{subject}"),
    benchmark:
        benchmark_path("cortex_flatmap", "{dataset}/{subject}")
    conda:
        CORTEX_ENV
    params:
        kind="flatmap",
        map_layer=config["encoding"]["map_layer"],
        dpi=config["plots"]["dpi"],
        pycortex=pycortex_of,
    script:
        "../scripts/cortex_maps.py"
