# The demo world: language, facts and training corpus; stimulus stories and a
# simulated subject (fMRI or MEG) per subject. Real-data loaders write the same contracts.


rule toy_world:
    output:
        lexicon=LEXICON,
        facts=FACTS,
        corpus=CORPUS,
    log:
        log_path("toy_world"),
    benchmark:
        benchmark_path("toy_world")
    conda:
        TABLES_ENV
    params:
        world=config["world"],
    script:
        "../scripts/toy_world.py"


rule toy_stimuli:
    output:
        stimuli=STIMULI,
    log:
        log_path("toy_stimuli", "{stimset}"),
    benchmark:
        benchmark_path("toy_stimuli", "{stimset}")
    wildcard_constraints:
        # A toy dataset that names another's stories (`stimuli:`) has none of its own.
        stimset=one_of(d for d in toy_datasets() if "stimuli" not in dataset_entry(config, d)),
    conda:
        TABLES_ENV
    params:
        world=config["world"],
        # Only what shapes the stories: changing the simulated brain must not
        # invalidate the stimuli and every activation cache downstream.
        stories=lambda wc: study.story_params(config, wc.stimset),
    script:
        "../scripts/toy_stimuli.py"


rule toy_subject:
    input:
        stimuli=lambda wc: STIMULI.format(stimset=study.stimset_of(config, wc.dataset)),
        lexicon=LEXICON,
    output:
        brain=BRAIN,
        truth=BRAIN_TRUTH,
    log:
        log_path("toy_subject", "{dataset}/{subject}"),
    benchmark:
        benchmark_path("toy_subject", "{dataset}/{subject}")
    wildcard_constraints:
        dataset=one_of(toy_datasets()),
    conda:
        TABLES_ENV
    params:
        kind=lambda wc: dataset_entry(config, wc.dataset)["kind"],
        simulate=lambda wc: dataset_entry(config, wc.dataset)["simulate"],
        subjects=lambda wc: subjects_of(wc.dataset),
    script:
        "../scripts/toy_subject.py"


# Real datasets: each subject is loaded once by its source's loader into the
# brain contract, with the subject's own unit timings; the dataset's stimulus
# set is every unit its subjects heard.
rule load_subject:
    input:
        # The files the loader reads (TextGrids, responses, events, sidecars): an edit reloads this subject.
        subject_files,
    output:
        brain=BRAIN,
        words=BRAIN_WORDS,
    log:
        log_path("load_subject", "{dataset}/{subject}"),
    benchmark:
        benchmark_path("load_subject", "{dataset}/{subject}")
    wildcard_constraints:
        dataset=one_of(loader_datasets()),
    conda:
        BRAIN_ENV
    params:
        source=lambda wc: dataset_entry(config, wc.dataset)["source"],
        path=lambda wc: dataset_entry(config, wc.dataset)["path"],
        options=lambda wc: dataset_entry(config, wc.dataset).get("options", {}),
    script:
        "../scripts/load_subject.py"


rule merge_stimuli:
    input:
        words=lambda wc: expand(BRAIN_WORDS, dataset=wc.stimset, subject=subjects_of(wc.stimset)),
    output:
        stimuli=STIMULI,
    log:
        log_path("merge_stimuli", "{stimset}"),
    benchmark:
        benchmark_path("merge_stimuli", "{stimset}")
    wildcard_constraints:
        stimset=one_of(loader_datasets()),
    conda:
        TABLES_ENV
    params:
        subjects=lambda wc: subjects_of(wc.stimset),
    script:
        "../scripts/merge_stimuli.py"
