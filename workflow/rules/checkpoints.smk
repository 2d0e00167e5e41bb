# Checkpoints in: trained here (the demo's tiny LMs), linked from a local
# training run, or downloaded from the Hugging Face Hub; each is registered
# under checkpoints/{model}/{step}, which is what the analyses read.
#
# A trained model's run is written under train/{model}/{recipe}/, one folder
# per checkpoint; {recipe} hashes the training settings (all but the
# checkpoint list) and the training script (common.smk: train_recipe). A
# checkpoint added to the list retrains the model (its params change; training
# is deterministic: the old checkpoints come out byte-identical) but schedules
# only the new checkpoint's jobs downstream: registration reads the run folder
# as ancient(). A changed recipe is a new run folder, and that re-registers
# every checkpoint. (A job behind one that must rerun is not checked for its
# own triggers by Snakemake, so params on the registration would not be seen:
# the path has to change.)


rule train:
    input:
        corpus=CORPUS,
    output:
        run=directory(TRAIN_RUN),
    log:
        log_path("train", "{model}/{recipe}"),
    benchmark:
        benchmark_path("train", "{model}/{recipe}")
    wildcard_constraints:
        model=one_of(models_from("train")),
    # Training gates everything downstream: the first model (whose checkpoints
    # feed most jobs) first, then the others before any analysis.
    priority: first_model_first
    conda:
        TORCH_ENV
    threads: model_threads("train")
    params:
        # The whole entry, checkpoint list included: a new checkpoint retrains.
        model=lambda wc: model_config(wc.model),
        device=config["device"],
    script:
        "../scripts/checkpoints_train.py"


rule register:
    input:
        # ancient: a retrained run does not rerun the checkpoints already
        # registered (nor anything downstream of them).
        run=train_run,
        # A new corpus (a changed world) reruns the registration behind the training.
        corpus=CORPUS,
    output:
        checkpoint=directory(CHECKPOINT),
    log:
        log_path("checkpoints", "{model}/{step}"),
    benchmark:
        benchmark_path("checkpoints", "{model}/{step}")
    wildcard_constraints:
        model=one_of(models_from("train")),
    priority: first_model_first
    localrule: True
    conda:
        TORCH_ENV
    script:
        "../scripts/checkpoints_register.py"


# Local training runs: every checkpoint folder the run has written so far is
# found when the workflow parses its config (common.smk: steps), so one that
# lands while the model trains is a new job on the next invocation. Each is
# registered as symlinks plus a manifest.
rule link:
    input:
        folder=local_folder,
        # Its files too: one rewritten in place leaves the folder's mtime as it was.
        files=local_folder_files,
    output:
        checkpoint=directory(CHECKPOINT),
    log:
        log_path("checkpoints", "{model}/{step}"),
    benchmark:
        benchmark_path("checkpoints", "{model}/{step}")
    wildcard_constraints:
        model=one_of(models_from("local")),
    conda:
        TORCH_ENV
    params:
        model=lambda wc: wc.model,
        # The folder by name: the inputs above are lists (empty while the folder is missing).
        folder=lambda wc: str(local_checkpoint_dir(model_config(wc.model), wc.step)),
        tokens=tokens,
    script:
        "../scripts/checkpoints_link.py"


# Hugging Face training runs: one download per selected revision. The folder
# is temp(): Snakemake removes it once every job that reads it has finished,
# so a study of many multi-GB checkpoints holds only those in use.
rule download:
    output:
        checkpoint=temp(directory(CHECKPOINT)),
    log:
        log_path("checkpoints", "{model}/{step}"),
    benchmark:
        benchmark_path("checkpoints", "{model}/{step}")
    wildcard_constraints:
        model=one_of(models_from("hf")),
    conda:
        TORCH_ENV
    params:
        model=lambda wc: wc.model,
        repo_id=lambda wc: model_config(wc.model)["hf"]["repo_id"],
        family=lambda wc: model_config(wc.model)["hf"]["family"],
        allow_patterns=lambda wc: model_config(wc.model)["hf"].get("allow_patterns"),
        tokens_per_step=lambda wc: model_config(wc.model)["hf"].get("tokens_per_step"),
    script:
        "../scripts/checkpoints_download.py"


# Published checkpoints are not always what their names say (several step branches of
# one repository may serve the same weights). Each registered checkpoint's weights
# fingerprint (from its sha256 manifest) is kept, and checkpoints of one model with
# identical weights are reported and left out of the phase analysis.
rule fingerprint_checkpoint:
    input:
        checkpoint=CHECKPOINT,
    output:
        FINGERPRINT,
    log:
        log_path("fingerprints", "{model}/{step}"),
    benchmark:
        benchmark_path("fingerprints", "{model}/{step}")
    localrule: True
    conda:
        TORCH_ENV
    params:
        tokens=tokens,
    script:
        "../scripts/checkpoints_fingerprint.py"


rule checkpoint_duplicates:
    input:
        fingerprint_files(),
    output:
        table("checkpoint_duplicates"),
    log:
        log_path("checkpoint_duplicates"),
    benchmark:
        benchmark_path("checkpoint_duplicates")
    localrule: True
    conda:
        TABLES_ENV
    params:
        steps={m: steps(m) for m in models()},
    script:
        "../scripts/checkpoints_duplicates.py"
