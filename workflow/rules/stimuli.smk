# The demo world: language, facts and training corpus; stimulus stories and a
# simulated listener per subject. Real-data loaders write the same contracts.


rule toy_world:
    output:
        lexicon=f"{R}/world/lexicon.parquet",
        facts=f"{R}/world/facts.parquet",
        corpus=f"{R}/world/corpus.parquet",
    params:
        world=config["world"],
    log:
        f"{R}/logs/toy_world.log",
    benchmark:
        f"{R}/benchmarks/toy_world.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/toy_world.py"


rule toy_stimuli:
    wildcard_constraints:
        dataset="|".join(d["name"] for d in config["datasets"] if d["source"] == "toyworld" and "stimuli" not in d)
        or "^$",
    output:
        stimuli=f"{R}/stimuli/{{dataset}}.parquet",
    params:
        world=config["world"],
        # Only what shapes the stories: changing the simulated brain must not
        # invalidate the stimuli and every activation cache downstream.
        stories=lambda wc: story_params(wc.dataset),
    log:
        f"{R}/logs/toy_stimuli/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/toy_stimuli/{{dataset}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/toy_stimuli.py"


rule toy_fmri:
    wildcard_constraints:
        dataset="|".join(d["name"] for d in fmri_datasets() if d["source"] == "toyworld") or "^$",
    input:
        stimuli=f"{R}/stimuli/{{dataset}}.parquet",
        lexicon=f"{R}/world/lexicon.parquet",
    output:
        brain=f"{R}/brain/{{dataset}}/{{subject}}.h5",
        truth=f"{R}/brain/{{dataset}}/{{subject}}.truth.parquet",
    params:
        simulate=lambda wc: dataset_entry(config, wc.dataset)["simulate"],
        subjects=lambda wc: dataset_entry(config, wc.dataset)["subjects"],
    log:
        f"{R}/logs/toy_fmri/{{dataset}}/{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/toy_fmri/{{dataset}}/{{subject}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/toy_fmri.py"


rule toy_meg:
    wildcard_constraints:
        dataset="|".join(d["name"] for d in meg_datasets() if d["source"] == "toyworld") or "^$",
    input:
        stimuli=lambda wc: f"{R}/stimuli/{stimset_of(wc.dataset)}.parquet",
        lexicon=f"{R}/world/lexicon.parquet",
    output:
        brain=f"{R}/brain/{{dataset}}/{{subject}}.h5",
        truth=f"{R}/brain/{{dataset}}/{{subject}}.truth.parquet",
    params:
        simulate=lambda wc: dataset_entry(config, wc.dataset)["simulate"],
        subjects=lambda wc: dataset_entry(config, wc.dataset)["subjects"],
    log:
        f"{R}/logs/toy_meg/{{dataset}}/{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/toy_meg/{{dataset}}/{{subject}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/toy_meg.py"


# Real datasets: each subject is loaded once by its source's loader into the
# brain contract, with the subject's own unit timings; the dataset's stimulus
# set is every unit its subjects heard.
rule load_subject:
    wildcard_constraints:
        dataset="|".join(loader_datasets()) or "^$",
    input:
        # The files the loader reads (TextGrids, responses, events, sidecars): an edit reloads this subject.
        subject_files,
    output:
        brain=f"{R}/brain/{{dataset}}/{{subject}}.h5",
        words=f"{R}/brain/{{dataset}}/{{subject}}.words.parquet",
    params:
        source=lambda wc: dataset_entry(config, wc.dataset)["source"],
        path=lambda wc: dataset_entry(config, wc.dataset)["path"],
        options=lambda wc: dataset_entry(config, wc.dataset).get("options", {}),
    log:
        f"{R}/logs/load_subject/{{dataset}}/{{subject}}.log",
    benchmark:
        f"{R}/benchmarks/load_subject/{{dataset}}/{{subject}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=16000,
        runtime=60,
    script:
        "../scripts/load_subject.py"


rule merge_stimuli:
    wildcard_constraints:
        dataset="|".join(loader_datasets()) or "^$",
    input:
        words=lambda wc: [f"{R}/brain/{wc.dataset}/{s}.words.parquet"
                          for s in dataset_entry(config, wc.dataset)["subjects"]],
    output:
        stimuli=f"{R}/stimuli/{{dataset}}.parquet",
    params:
        subjects=lambda wc: dataset_entry(config, wc.dataset)["subjects"],
    log:
        f"{R}/logs/merge_stimuli/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/merge_stimuli/{{dataset}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/merge_stimuli.py"
