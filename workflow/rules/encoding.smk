# Voxelwise fMRI encoding per (checkpoint, dataset, subject), all layers in one
# job (they share the brain data and the delays), then one aggregation.


rule encoding:
    input:
        activations=lambda wc: f"{R}/activations/{wc.model}/{wc.step}/{stimset_of(wc.dataset)}.safetensors",
        stimuli=lambda wc: f"{R}/stimuli/{stimset_of(wc.dataset)}.parquet",
        brain=f"{R}/brain/{{dataset}}/{{subject}}.h5",
    output:
        voxels=f"{R}/encoding/{{model}}/{{step}}/{{dataset}}/{{subject}}.parquet",
        bootstrap=f"{R}/encoding/{{model}}/{{step}}/{{dataset}}/{{subject}}.boot.parquet",
    params:
        encoding=config["encoding"],
        n_boot=config["phases"]["n_boot"],
        seed=config["seed"],
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
        resample=lambda wc: resampling_of(wc.dataset),
    threads: threads("encoding")
    log:
        f"{R}/logs/encoding/{{model}}/{{step}}/{{dataset}}/{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/encoding/{{model}}/{{step}}/{{dataset}}/{{subject}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/encoding.py"


rule aggregate_encoding:
    input:
        voxels=encoding_jobs(),
        bootstrap=[p.removesuffix(".parquet") + ".boot.parquet" for p in encoding_jobs()],
        truth=truth_files(),
    output:
        summary=f"{R}/tables/encoding.parquet",
        voxels=f"{R}/tables/encoding_voxels.parquet",
        bootstrap=f"{R}/tables/encoding_bootstrap.parquet",
        groups=f"{R}/tables/encoding_groups.parquet" if truth_files() else [],
    log:
        f"{R}/logs/aggregate_encoding.log",
    benchmark:
        f"{R}/benchmarks/aggregate_encoding.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/encoding_aggregate.py"
