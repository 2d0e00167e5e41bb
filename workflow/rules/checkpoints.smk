# Checkpoints: the demo trains its own tiny LM and saves Hugging Face
# directories at log-spaced steps. One rule per trained model because the
# checkpoint list (its outputs) comes from that model's config entry.
# The run is written under results/train/<model>/<recipe>/ and each checkpoint
# is then registered under results/checkpoints/ (hard links), which is what the
# analyses read. A checkpoint added to the list retrains the model (training is
# deterministic: the old checkpoints come out byte-identical) but schedules
# only the new checkpoint's jobs downstream: registration reads the run's
# folders as ancient(). <recipe> hashes the training settings (all but the
# checkpoint list) and the training script, so a changed recipe is a new run
# folder, and that re-registers every checkpoint. (A job behind one that must
# rerun is not checked for its own triggers by Snakemake, so params on the
# registration would not be seen: the path has to change.)


for _m in config["models"]:
    if _m["source"] != "train":
        continue

    rule:
        name:
            f"train_{_m['name']}"
        input:
            corpus=f"{R}/world/corpus.parquet",
        output:
            checkpoints=[directory(f"{train_run_dir(_m)}/{s}") for s in revisions(_m)],
            log_table=f"{train_run_dir(_m)}/train_log.tsv",
        params:
            model=_m,
            device=config["device"],
        threads: threads(f"train_{_m['name']}", "train")
        # Training gates everything downstream: the first model (whose checkpoints
        # feed most jobs) first, then the others before any analysis.
        priority: 2 if _m is config["models"][0] else 1
        log:
            f"{R}/logs/train/{_m['name']}.log",
        benchmark:
            f"{R}/benchmarks/train/{_m['name']}.tsv"
        conda:
            ENV
        resources:
            **rule_resources("train", mem_mb=4000, runtime=60, gpu=0),
        script:
            "../scripts/checkpoints_train.py"

    rule:
        name:
            f"register_{_m['name']}"
        input:
            # ancient: a retrained run's newer folders do not rerun the checkpoints
            # already registered (nor anything downstream of them).
            folder=ancient(f"{train_run_dir(_m)}/{{step}}"),
            # A new corpus (a changed world) reruns the registration behind the training.
            corpus=f"{R}/world/corpus.parquet",
        output:
            checkpoint=directory(f"{R}/checkpoints/{_m['name']}/{{step}}"),
        localrule: True
        priority: 2 if _m is config["models"][0] else 1
        log:
            f"{R}/logs/checkpoints/{_m['name']}/{{step}}.log",
        benchmark:
            f"{R}/benchmarks/checkpoints/{_m['name']}/{{step}}.tsv"
        conda:
            ENV
        script:
            "../scripts/checkpoints_register.py"


# Local training runs: every checkpoint folder the run has written so far is
# found when the workflow parses its config (common.smk: steps), so one that
# lands while the model trains is a new job on the next invocation. Each is
# registered under results/checkpoints/ as symlinks plus a manifest.
for _m in config["models"]:
    if _m["source"] != "local":
        continue

    rule:
        name:
            f"link_{_m['name']}"
        input:
            folder=lambda wc, _m=_m: user_file(local_checkpoint_dir(_m, wc.step)),
            # Its files too: one rewritten in place leaves the folder's mtime as it was.
            files=lambda wc, _m=_m: checkpoint_folder_files(local_checkpoint_dir(_m, wc.step)),
        output:
            checkpoint=directory(f"{R}/checkpoints/{_m['name']}/{{step}}"),
        params:
            model=_m["name"],
            # The folder by name: the inputs above are lists (empty while the folder is missing).
            folder=lambda wc, _m=_m: str(local_checkpoint_dir(_m, wc.step)),
            tokens=lambda wc, _m=_m: tokens_for(_m, wc.step),
        log:
            f"{R}/logs/checkpoints/{_m['name']}/{{step}}.log",
        benchmark:
            f"{R}/benchmarks/checkpoints/{_m['name']}/{{step}}.tsv"
        conda:
            ENV
        resources:
            **rule_resources("link", mem_mb=1000, runtime=30),
        script:
            "../scripts/checkpoints_link.py"


# Hugging Face training runs: one download per selected revision. The folder
# is temp(): Snakemake removes it once every job that reads it has finished,
# so a study of many multi-GB checkpoints holds only those in use.
for _m in config["models"]:
    if _m["source"] != "hf":
        continue

    rule:
        name:
            f"download_{_m['name']}"
        output:
            checkpoint=temp(directory(f"{R}/checkpoints/{_m['name']}/{{step}}")),
        params:
            model=_m["name"],
            repo_id=_m["hf"]["repo_id"],
            family=_m["hf"]["family"],
            allow_patterns=_m["hf"].get("allow_patterns"),
            tokens_per_step=_m["hf"].get("tokens_per_step"),
        log:
            f"{R}/logs/checkpoints/{_m['name']}/{{step}}.log",
        benchmark:
            f"{R}/benchmarks/checkpoints/{_m['name']}/{{step}}.tsv"
        conda:
            ENV
        resources:
            **rule_resources("download", mem_mb=2000, runtime=120),
        script:
            "../scripts/checkpoints_download.py"


# Published checkpoints are not always what their names say (several step branches of
# one repository may serve the same weights). Each registered checkpoint's weights
# fingerprint (from its sha256 manifest) is kept, and checkpoints of one model with
# identical weights are reported and left out of the phase analysis.
rule fingerprint_checkpoint:
    input:
        checkpoint=f"{R}/checkpoints/{{model}}/{{step}}",
    output:
        f"{R}/fingerprints/{{model}}/{{step}}.json",
    params:
        tokens=lambda wc: tokens_for(model_entry(config, wc.model), wc.step),
    localrule: True
    log:
        f"{R}/logs/fingerprints/{{model}}/{{step}}.log",
    benchmark:
        f"{R}/benchmarks/fingerprints/{{model}}/{{step}}.tsv"
    conda:
        ENV
    script:
        "../scripts/checkpoints_fingerprint.py"


rule checkpoint_duplicates:
    input:
        fingerprint_files(),
    output:
        f"{R}/tables/checkpoint_duplicates.parquet",
    params:
        steps={m: steps(m) for m in models()},
    localrule: True
    log:
        f"{R}/logs/checkpoint_duplicates.log",
    benchmark:
        f"{R}/benchmarks/checkpoint_duplicates.tsv"
    conda:
        ENV
    script:
        "../scripts/checkpoints_duplicates.py"
