# What a study will cost, printed by a dry run before anything is launched: disk,
# downloads and GPU memory per model (brainphase.planning), then per stage the
# jobs, the time per job from the recorded benchmarks and the peak memory under
# each rule's mem_mb (brainphase.stage_plan). Included after targets.smk: the
# job counts come from the same functions as the targets.


def study_plan():
    from brainphase.planning import format_plan, plan_table
    from brainphase.sources import known_duplicates

    all_steps = {m: steps(m) for m in models()}
    poolings = {m: [(s, study.pooling_of(config, s)) for s in study.stimsets(config, m)] for m in models()}
    table = plan_table(config, all_steps, poolings, R)
    duplicates = known_duplicates(config, all_steps, R)
    return (
        format_plan(table, R)
        + (
            f"\nbrainphase checkpoints: {duplicates}"
            if duplicates
            else "\nbrainphase checkpoints: weights not fingerprinted yet (listed hub "
            "fingerprints or registered checkpoints are compared once known)"
        )
        + "\n"
        + stage_plan_or_why()
    )


def stage_plan_or_why():
    """The per-stage lines; an error in them must not hide the disk plan and the duplicates above."""
    try:
        return stage_plan()
    except Exception as err:
        return f"brainphase stages unavailable: {err}"


def rule_budget(rule):
    """The rule's memory budget in bytes: its mem_mb from the profile or --set-resources, else None."""
    res = workflow.resource_settings.overwrite_resources.get(rule)
    if res is None:
        return None
    items = dict(res.unwrapped_items()) if hasattr(res, "unwrapped_items") else dict(res)
    mem_mb = items.get("mem_mb")
    return int(mem_mb) * 2**20 if isinstance(mem_mb, (int, float)) else None


def stage_plan():
    from brainphase.stage_plan import study_stages

    counts = {
        "activations": {m: len(steps(m)) * len(study.stimsets(config, m)) for m in models()},
        "encoding": {m: len(steps(m)) * len(subjects_of_kind("fmri")) for m in models("encoding")},
        "variance": {m: len(steps(m)) * len(subjects_of_kind("fmri")) for m in models("variance")},
        "temporal": {"all": len(temporal_files())},
        "sae": {m: len(study.sae_runs(config, m)) for m in models("sae")},
        "sae_matching": {"all": 1 if models("sae") else 0},
        "crosscoder": {m: len(steps(m)) * len(subjects_of_kind("fmri")) for m in models("crosscoder")},
    }
    subjects = [(dataset_entry(config, s["dataset"]), s["subject"]) for s in subjects_of_kind("fmri")]
    epochs = [EPOCHS.format(**s) for s in subjects_of_kind("meg")]
    return study_stages(
        config, counts, subjects, lambda d, s: BRAIN.format(dataset=d, subject=s), rule_budget, R, epochs_paths=epochs
    )


MISSING_INPUTS = missing_inputs(
    config, {m["name"]: steps(m["name"]) for m in config["models"] if m["source"] == "local"}
)

# A dry run is where a user decides to launch: show what it will cost and what is
# missing first. (The executor, and with it workflow.dryrun, is set only after parsing.)
if workflow.is_main_process and dry_run_requested(sys.argv):
    try:
        logger.info(study_plan())
    except Exception as err:  # the plan is advice; it must never block a dry run
        logger.warning(f"brainphase plan unavailable: {err}")
    logger.info(format_missing(MISSING_INPUTS))
elif workflow.is_main_process and MISSING_INPUTS and runs_jobs(sys.argv):
    raise WorkflowError(
        format_missing(MISSING_INPUTS).replace("(the DAG is planned as if they were there)", "; nothing was run")
        + "\nDry-run "
        "(`snakemake -n`) to see the plan; run again once they are in place."
    )
if workflow.is_main_process and runs_jobs(sys.argv):
    try:
        claim_results_folder(R, config)
    except ValueError as err:
        raise WorkflowError(str(err)) from None
