# Config validation and the input functions every stage builds its targets from.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from brainphase.inputs import format_missing, missing_inputs  # noqa: E402
from brainphase.planning import claim_results_folder, dry_run_requested, runs_jobs  # noqa: E402
from brainphase.config import (  # noqa: E402
    ConfigError,
    check_device,
    dataset_entry,
    model_entry,
    threads_for,
    validate_config,
)
from brainphase.sources import local_checkpoint_dir, revisions, tokens_for  # noqa: E402

try:
    validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
    # device: cuda without CUDA stops a run of jobs here; a dry run or a cluster submission only warns.
    _device_note = check_device(config, sys.argv)
    if _device_note:
        logger.warning(_device_note)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# Each study writes under its own folder (config key `results`), so two studies run in one
# clone never read or overwrite each other's tables.
R = config["results"]
ENV = "../../envs/brainphase.yaml"
# The demo's lm-eval tasks are generated from the world, so they belong to the study.
DEMO_TASKS = f"{R}/lmeval_tasks/toyworld"


wildcard_constraints:
    model=r"[^/]+",
    step=r"[^/]+",
    dataset=r"[^/]+",
    subject=r"[^/.]+",
    stimset=r"[^/]+",


def threads(rule, *fallbacks):
    return threads_for(config, rule, *fallbacks)


def rule_resources(base, **defaults):
    """Resources of a per-model rule (``train_<model>``, ``activations_<model>``, ...).

    A profile cannot name rules made per model, so ``set-resources`` (profile or
    ``--set-resources``) given for the stage's base name (``train``, ``activations``,
    ``context_activations``, ``link``, ``download``) update ``defaults`` here. An
    entry for the full rule name still wins, as Snakemake applies it afterwards.
    """
    from snakemake.resources import Resources

    given = Resources.from_mapping(workflow.resource_settings.overwrite_resources.get(base, {}))
    # Python expressions from the command line (mem_mb=2000*attempt) stay functions.
    return {**defaults, **{k: r._evaluator if r.is_evaluable() else r.value for k, r in given.items()}}


def model_analyses(model):
    # A model entry may run fewer analyses than the study (the demo's second,
    # smaller LM serves only the size sweep of the temporal analysis).
    return model_entry(config, model).get("analyses", config["analyses"])


def models(analysis=None):
    """Configured models, or those that run ``analysis``."""
    return [m["name"] for m in config["models"] if analysis is None or analysis in model_analyses(m["name"])]


def steps(model):
    return revisions(model_entry(config, model))


def fmri_datasets():
    return [d for d in config["datasets"] if d["kind"] == "fmri"]


def meg_datasets():
    return [d for d in config["datasets"] if d["kind"] == "meg"]


LOADER_SOURCES = ("lebel", "bids_fmri", "meg_bids")


def loader_datasets():
    """Datasets read from disk by one of the package's loaders."""
    return [d["name"] for d in config["datasets"] if d["source"] in LOADER_SOURCES]


def story_params(dataset):
    sim = dataset_entry(config, dataset)["simulate"]
    keys = ("seed", "stories_train", "stories_test", "words_per_story", "language")
    return {k: sim[k] for k in keys}


def stimset_of(dataset):
    # One stimulus set per dataset: the words the subjects heard. A dataset may
    # name another's (`stimuli:`): the demo's MEG subject heard the fMRI stories,
    # so one activation file serves both.
    return dataset_entry(config, dataset).get("stimuli", dataset)


def encoding_jobs():
    return [
        f"{R}/encoding/{m}/{s}/{d['name']}/{sub}.parquet"
        for m in models("encoding")
        for s in steps(m)
        for d in fmri_datasets()
        for sub in d["subjects"]
    ]


def train_run_dir(m):
    # The run folder of a trained model: its recipe (all training settings but the checkpoint
    # list) and the training script hashed, so a changed recipe is a new folder (checkpoints.smk).
    import hashlib
    import json

    recipe = {k: v for k, v in m["train"].items() if k != "checkpoints"}
    script = Path(workflow.basedir, "workflow/scripts/checkpoints_train.py").read_bytes()
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode() + script).hexdigest()
    return f"{R}/train/{m['name']}/{digest[:12]}"


def fingerprint_files():
    return [f"{R}/fingerprints/{m}/{s}.json" for m in models() for s in steps(m)]


def brain_files():
    return [f"{R}/brain/{d['name']}/{sub}.h5" for d in fmri_datasets() for sub in d["subjects"]]


def truth_files():
    return [
        f"{R}/brain/{d['name']}/{sub}.truth.parquet"
        for d in fmri_datasets()
        if d["source"] == "toyworld"
        for sub in d["subjects"]
    ]


def benchmark_tasks():
    return config["evals"]["tasks"]


def include_dirs():
    """``evals.include_path`` as absolute folders; one not on disk is a missing input (listed at parse)."""
    from brainphase.evals.harness import resolve_include_path

    found = []
    for p in config["evals"].get("include_path", []):
        try:
            found += resolve_include_path([p])
        except ValueError:
            pass
    return found


def task_dirs(wildcards):
    """Folders of local task YAMLs for {task}: the demo's for a demo task, else evals.include_path.

    The lm_eval and probe_stimuli jobs pass the same folders to lm-eval, and rerun when they change.
    """
    from brainphase.config import DEMO_TASKS as DEMO_TASK_NAMES

    return [DEMO_TASKS] if wildcards.task in DEMO_TASK_NAMES else include_dirs()


def lmeval_jobs(kind):
    return [f"{R}/lmeval/{m}/{s}/{t}.{kind}.parquet" for m in models("evals") for s in steps(m)
            for t in benchmark_tasks()]


def probing_jobs(kind):
    return [f"{R}/probing/{m}/{s}/{t}.{kind}" for m in models("probing") for s in steps(m)
            for t in config["probing"]["tasks"]]


def stimsets(model=None):
    """Every stimulus set the analyses (of ``model``, or of the study) read, in a fixed order."""
    analyses = model_analyses(model) if model else config["analyses"]
    sets = []
    if {"encoding", "crosscoder"} & set(analyses):
        sets += [stimset_of(d["name"]) for d in fmri_datasets()]
    if "temporal" in analyses:
        sets += [stimset_of(d["name"]) for d in meg_datasets()]
    if "probing" in analyses:
        sets += [f"probe_{t}" for t in config["probing"]["tasks"]]
    if "sae" in analyses:
        sets.append(SAE_CORPUS)
    return list(dict.fromkeys(sets))


SAE_CORPUS = "sae_corpus"


def sae_runs(model):
    """(step, seed) of every SAE: one per checkpoint, plus a second seed at the last one."""
    sae = config["sae"]
    runs = [(s, sae["seed"]) for s in steps(model)]
    if sae["seed_baseline"]:
        runs.append((steps(model)[-1], sae["seed"] + 1))
    return runs


def crosscoder_files(name):
    return [f"{R}/crosscoder/{m}/{s}/{d['name']}/{sub}/{name}" for m in models("crosscoder") for s in steps(m)
            for d in fmri_datasets() for sub in d["subjects"]]


def card_steps(model):
    # Feature cards show an early, a middle and the last checkpoint.
    s = steps(model)
    return list(dict.fromkeys([s[0], s[len(s) // 2], s[-1]]))


def sae_card_steps():
    # Feature cards are drawn for the first model that runs SAEs.
    return card_steps(models("sae")[0]) if models("sae") else []


def sae_card_files(name):
    return [f"{R}/sae/{models('sae')[0]}/{s}/seed{config['sae']['seed']}/{name}" for s in sae_card_steps()]


def sae_files(name):
    return [f"{R}/sae/{m}/{s}/seed{seed}/{name}" for m in models("sae") for s, seed in sae_runs(m)]


def activation_files(model, step="{step}"):
    return [f"{R}/activations/{model}/{step}/{s}.safetensors" for s in stimsets(model)]


def sites_of(stimset):
    # Benchmark prompts are probed at one site (probing.site; the paper reads
    # the MLP output): their files hold that site whatever activations.sites says.
    return [config["probing"].get("site", "mlp")] if stimset.startswith("probe_") else config["activations"]["sites"]


def context_activation_files(model, step="{step}"):
    # The context-length sweep of the temporal analysis: the MEG stimulus sets
    # again, each word read with only its last `window` tokens.
    return [f"{R}/activations/{model}/{step}/context/{stimset_of(d['name'])}.ctx{w}.safetensors"
            for d in meg_datasets() for w in config["temporal"]["context_windows"]]


def meg_subjects():
    return [(d["name"], sub) for d in meg_datasets() for sub in d["subjects"]]


def temporal_files():
    """One r(layer, lag) table per (model, checkpoint, MEG subject), plus the context sweep at each last checkpoint."""
    files = [f"{R}/temporal/{m}/{s}/{d}/{sub}.parquet" for m in models("temporal") for s in steps(m)
             for d, sub in meg_subjects()]
    files += [f"{R}/temporal/{m}/{steps(m)[-1]}/{d}/{sub}.ctx{w}.parquet" for m in models("temporal")
              for d, sub in meg_subjects() for w in config["temporal"]["context_windows"]]
    return files


def pooling_of(stimset):
    # Benchmark prompts are read whole (last token); stories word by word;
    # the SAE corpus token by token.
    if stimset == SAE_CORPUS:
        return "token"
    if any(d["name"] == stimset for d in config["datasets"]):
        # Annotation texts (a movie's scene descriptions) are read whole.
        return dataset_entry(config, stimset).get("pooling", "word")
    return "last" if stimset.startswith("probe_") else "word"


def resampling_of(dataset):
    # Annotation texts read whole are intervals, not points: averaged over each TR they overlap.
    return "overlap" if pooling_of(stimset_of(dataset)) == "mean" else "lanczos"


def figure_files(name):
    return [f"{R}/figures/{name}.{ext}" for ext in config["plots"]["formats"]]


def all_targets():
    analyses = set(config["analyses"])
    # Which checkpoints hold the same weights: every study's first question about its checkpoints.
    targets = [f"{R}/tables/checkpoint_duplicates.parquet"]
    if "encoding" in analyses:
        targets += [
            f"{R}/tables/encoding.parquet",
            f"{R}/tables/encoding_voxels.parquet",
            *figure_files("encoding_trajectory"),
            *figure_files("encoding_maps"),
        ]
        if truth_files():
            targets.append(f"{R}/tables/encoding_groups.parquet")
    if "evals" in analyses:
        targets.append(f"{R}/tables/evals.parquet")
    if "probing" in analyses:
        targets.append(f"{R}/tables/probing.parquet")
    if "phases" in analyses:
        targets += [
            f"{R}/tables/phases.parquet",
            *figure_files("phase_trajectory"),
            *figure_files("probing_histogram"),
            *figure_files("detachment_map"),
        ]
    if "sae" in analyses:
        targets += [
            f"{R}/tables/sae.parquet",
            f"{R}/tables/sae_matching.parquet",
            *figure_files("sae_language"),
            *figure_files("sae_granularity"),
            *figure_files("sae_metrics"),
            *figure_files("sae_matching"),
            *figure_files("sae_feature_cards"),
        ]
    if "temporal" in analyses:
        targets += [
            f"{R}/tables/temporal.parquet",
            *figure_files("temporal_heatmaps"),
            *figure_files("temporal_path"),
            *figure_files("temporal_trajectory"),
            *figure_files("temporal_sweeps"),
        ]
    if "crosscoder" in analyses:
        targets += [
            f"{R}/tables/crosscoder.parquet",
            *figure_files("crosscoder_ri"),
            *figure_files("crosscoder_fractions"),
            *figure_files("crosscoder_maps"),
        ]
    return targets


def study_plan():
    from brainphase.planning import format_plan, known_duplicates, plan_table

    all_steps = {m: steps(m) for m in models()}
    table = plan_table(config, all_steps, {m: [(s, pooling_of(s)) for s in stimsets(m)] for m in models()}, R)
    duplicates = known_duplicates(config, all_steps, R)
    return format_plan(table, R) + (f"\nbrainphase checkpoints: {duplicates}" if duplicates else
                                    "\nbrainphase checkpoints: weights not fingerprinted yet (listed hub "
                                    "fingerprints or registered checkpoints are compared once known)")


def user_file(path):
    """A user-provided input: declared when on disk, so that a dry run plans the DAG without it.

    A real run never reaches a missing one: it stops at parse time with the list of
    missing inputs (below).
    """
    return [str(path)] if Path(path).exists() else []


MISSING_INPUTS = missing_inputs(config, {m["name"]: steps(m["name"]) for m in config["models"]
                                         if m["source"] == "local"})

# A dry run is where a user decides to launch: show what it will cost and what is
# missing first. (The executor, and with it workflow.dryrun, is set only after parsing.)
if workflow.is_main_process and dry_run_requested(sys.argv):
    try:
        logger.info(study_plan())
    except Exception as err:  # the plan is advice; it must never block a dry run
        logger.warning(f"brainphase plan unavailable: {err}")
    logger.info(format_missing(MISSING_INPUTS))
elif workflow.is_main_process and MISSING_INPUTS and runs_jobs(sys.argv):
    raise WorkflowError(format_missing(MISSING_INPUTS).replace(
        "(the DAG is planned as if they were there)", "; nothing was run") + "\nDry-run "
        "(`snakemake -n`) to see the plan; run again once they are in place.")
if workflow.is_main_process and runs_jobs(sys.argv):
    try:
        claim_results_folder(R, config)
    except ValueError as err:
        raise WorkflowError(str(err)) from None


def subject_files(wildcards):
    """The data files the loader of {dataset} reads for {subject}: the load job's inputs.

    An edited TextGrid, response or events file reruns the subject's load (and
    what reads it downstream) only. Files not on disk are left out, as
    user_file does: the missing-inputs list above reports the data folders.
    """
    from brainphase.loaders.dataset import subject_inputs

    d = dataset_entry(config, wildcards.dataset)
    return subject_inputs(d["source"], d["path"], wildcards.subject, d.get("options", {}))


def checkpoint_folder_files(path):
    """The files of a user's checkpoint folder, as registration hashes them; none when it is absent.

    Declared besides the folder: a file rewritten in place changes its own
    mtime, not the folder's, and must still register the checkpoint again.
    """
    from brainphase.checkpoints import checkpoint_files

    return [str(p) for p in checkpoint_files(Path(path))] if Path(path).is_dir() else []
