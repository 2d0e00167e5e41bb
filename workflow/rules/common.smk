# Config validation and queries of the config (models, checkpoints, datasets, threads).
# Science choices are in brainphase.study, file paths in paths.smk, targets in targets.smk.
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from brainphase import study  # noqa: E402
from brainphase.inputs import format_missing, missing_inputs  # noqa: E402
from brainphase.loaders.registry import LOADERS  # noqa: E402
from brainphase.planning import claim_results_folder, dry_run_requested, runs_jobs  # noqa: E402
from brainphase.config import (  # noqa: E402
    ConfigError,
    dataset_entry,
    model_entry,
    threads_for,
    validate_config,
)
from brainphase.invocation import check_device  # noqa: E402
from brainphase.sources import local_checkpoint_dir, tokens_for  # noqa: E402

try:
    validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
    # device: cuda without CUDA stops a run of jobs here; a dry run or a cluster submission only warns.
    _device_note = check_device(config, sys.argv)
    if _device_note:
        logger.warning(_device_note)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

R = config["results"]
# One environment per kind of job (docs/environments.md); envs/brainphase.yaml holds them all.
TABLES_ENV = "../../envs/tables.yaml"
FIGURES_ENV = "../../envs/figures.yaml"
CORTEX_ENV = "../../envs/cortex.yaml"
BRAIN_ENV = "../../envs/brain.yaml"
ENCODING_ENV = "../../envs/encoding.yaml"
TORCH_ENV = "../../envs/torch.yaml"
LMEVAL_ENV = "../../envs/lmeval.yaml"


wildcard_constraints:
    model=r"[^/]+",
    step=r"[^/]+",
    dataset=r"[^/]+",
    subject=r"[^/.]+",
    stimset=r"[^/]+",
    recipe=r"[0-9a-f]{12}",
    seed=r"\d+",
    window=r"\d+",


def threads(rule, *fallbacks):
    return threads_for(config, rule, *fallbacks)


def model_threads(stage, fallback=None):
    """Threads of a per-model job: config `threads` for `<stage>_<model>`, else for ``fallback`` (the stage)."""
    return lambda wildcards: threads(f"{stage}_{wildcards.model}", fallback or stage)


def one_of(names):
    """A wildcard constraint matching exactly ``names`` (nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "^$"


def model_config(model):
    return model_entry(config, model)


def models(analysis=None):
    """Configured models, or those that run ``analysis``."""
    return study.models(config, analysis)


def models_from(source):
    """Models whose checkpoints come from ``source`` (train, local, hf)."""
    return [m["name"] for m in config["models"] if m["source"] == source]


def steps(model):
    return study.steps(config, model)


def fmri_datasets():
    return study.datasets(config, "fmri")


def meg_datasets():
    return study.datasets(config, "meg")


def toy_datasets():
    """Datasets simulated from the demo world, each with its own stories."""
    return [d["name"] for d in config["datasets"] if d["source"] == "toyworld"]


def loader_datasets():
    """Datasets read from disk by one of the package's loaders."""
    return [d["name"] for d in config["datasets"] if d["source"] in LOADERS]


def subjects_of(dataset):
    return dataset_entry(config, dataset)["subjects"]


def tokens(wildcards):
    """Training tokens seen by checkpoint {step} of {model}."""
    return tokens_for(model_entry(config, wildcards.model), wildcards.step)


def train_recipe(model):
    """The hash naming a trained model's run folder: its training settings but the
    checkpoint list, and the training script, so a changed recipe is a new folder (checkpoints.smk)."""
    import hashlib
    import json

    train = model_entry(config, model)["train"]
    recipe = {k: v for k, v in train.items() if k != "checkpoints"}
    script = Path(workflow.basedir, "workflow/scripts/checkpoints_train.py").read_bytes()
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode() + script).hexdigest()[:12]


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


def user_file(path):
    """A user-provided input: declared when on disk, so that a dry run plans the DAG without it.

    A real run never reaches a missing one: it stops at parse time with the list of
    missing inputs (below).
    """
    return [str(path)] if Path(path).exists() else []


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
    from brainphase.contracts.checkpoint import checkpoint_files

    return [str(p) for p in checkpoint_files(Path(path))] if Path(path).is_dir() else []


def first_model_first(wildcards):
    """Scheduling priority of a checkpoint job: the first model's checkpoints feed most jobs."""
    return 2 if wildcards.model == config["models"][0]["name"] else 1


def train_run(wildcards):
    """The run folder of trained {model}, as the registration of {step} reads it (see checkpoints.smk).

    ancient once the run holds {step}: retraining then does not register it again. A step the
    run lacks (a new checkpoint, a new recipe's run) is a plain input, so that Snakemake, which
    skips a job whose inputs from a rerunning job are all ancient, schedules its registration.
    """
    run = TRAIN_RUN.format(model=wildcards.model, recipe=train_recipe(wildcards.model))
    return ancient(run) if Path(run, wildcards.step).is_dir() else run


def local_folder(wildcards):
    return user_file(local_checkpoint_dir(model_config(wildcards.model), wildcards.step))


def local_folder_files(wildcards):
    return checkpoint_folder_files(local_checkpoint_dir(model_config(wildcards.model), wildcards.step))


def toy_truth(wildcards):
    """A toy subject's ground truth (planted voxel groups); real subjects have none."""
    if dataset_entry(config, wildcards.dataset)["source"] != "toyworld":
        return []
    return [BRAIN_TRUTH.format(dataset=wildcards.dataset, subject=wildcards.subject)]
