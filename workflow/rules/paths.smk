# Every file the workflow writes, as one template per kind of file. Rules name
# their inputs and outputs with these; target lists fill them with expand().
# Each study writes under its own folder R (config key `results`, common.smk),
# so two studies run in one clone never read or overwrite each other's tables.

# The demo's world: its language, facts and training corpus.
WORLD = f"{R}/world/{{table}}.parquet"
LEXICON = WORLD.format(table="lexicon")
FACTS = WORLD.format(table="facts")
CORPUS = WORLD.format(table="corpus")
# The demo's lm-eval tasks are generated from the world, so they belong to the study.
DEMO_TASKS = f"{R}/lmeval_tasks/toyworld"

# What the subjects heard (and every other text an LM reads), and their recordings.
STIMULI = f"{R}/stimuli/{{stimset}}.parquet"
BRAIN = f"{R}/brain/{{dataset}}/{{subject}}.h5"
# Toy subjects: the simulation's ground truth (planted groups, latencies).
BRAIN_TRUTH = f"{R}/brain/{{dataset}}/{{subject}}.truth.parquet"
# Real subjects: the words each one heard, with their own timings.
BRAIN_WORDS = f"{R}/brain/{{dataset}}/{{subject}}.words.parquet"
# Benchmark prompts of lm-eval task {task}, as a stimulus set (probing).
PROBE_STIMULI = f"{R}/stimuli/probe_{{task}}.parquet"
EPOCHS = f"{R}/epochs/{{dataset}}/{{subject}}.h5"

# Checkpoints: a trained model's run folder (its recipe hashed), and the
# registered checkpoint every analysis reads.
TRAIN_RUN = f"{R}/train/{{model}}/{{recipe}}"
CHECKPOINT = f"{R}/checkpoints/{{model}}/{{step}}"
FINGERPRINT = f"{R}/fingerprints/{{model}}/{{step}}.json"

ACTIVATIONS = f"{R}/activations/{{model}}/{{step}}/{{stimset}}.safetensors"
PROBE_ACTIVATIONS = f"{R}/activations/{{model}}/{{step}}/probe_{{task}}.safetensors"
# The temporal analysis' context sweep: each word read with only its last {window} tokens.
CONTEXT_ACTIVATIONS = f"{R}/activations/{{model}}/{{step}}/context/{{stimset}}.ctx{{window}}.safetensors"

# Per-job results of each analysis.
ENCODING = f"{R}/encoding/{{model}}/{{step}}/{{dataset}}/{{subject}}.parquet"
ENCODING_BOOT = f"{R}/encoding/{{model}}/{{step}}/{{dataset}}/{{subject}}.boot.parquet"
LMEVAL_METRICS = f"{R}/lmeval/{{model}}/{{step}}/{{task}}.metrics.parquet"
LMEVAL_ITEMS = f"{R}/lmeval/{{model}}/{{step}}/{{task}}.items.parquet"
PROBING = f"{R}/probing/{{model}}/{{step}}/{{task}}.parquet"
PROBING_NEURONS = f"{R}/probing/{{model}}/{{step}}/{{task}}.neurons.parquet"
PROBING_BOOT = f"{R}/probing/{{model}}/{{step}}/{{task}}.boot.parquet"
SAE = f"{R}/sae/{{model}}/{{step}}/seed{{seed}}/{{file}}"
# The same SAE in the folder layout sae-lens loads (sae_lens.SAE.load_from_disk).
SAE_SAELENS = SAE.replace("{file}", "saelens/{file}")
CROSSCODER = f"{R}/crosscoder/{{model}}/{{step}}/{{dataset}}/{{subject}}/{{file}}"
TEMPORAL = f"{R}/temporal/{{model}}/{{step}}/{{dataset}}/{{subject}}.parquet"
TEMPORAL_CONTEXT = f"{R}/temporal/{{model}}/{{step}}/{{dataset}}/{{subject}}.ctx{{window}}.parquet"
VARIANCE = f"{R}/variance/{{model}}/{{step}}/{{dataset}}/{{subject}}.parquet"
# One subject's cortical maps as fsaverage vertices (map, hemi, vertex, value).
CORTEX_TABLE = f"{R}/cortex/{{dataset}}/{{subject}}.surface.parquet"

# The study's tables (one per analysis and kind of row) and figures.
TABLE = f"{R}/tables/{{table}}.parquet"
FIGURE = f"{R}/figures/{{figure}}.{{ext}}"


def table(name):
    return TABLE.format(table=name)


def figures(name):
    """One figure in every configured format."""
    return expand(FIGURE, figure=name, ext=config["plots"]["formats"])


def log_path(job, wildcards=""):
    """The log of ``job`` (a rule or stage name), one per wildcard combination (a ``{a}/{b}`` template)."""
    return f"{R}/logs/{'/'.join(filter(None, (job, wildcards)))}.log"


def benchmark_path(job, wildcards=""):
    """Snakemake's timing table of ``job``, laid out as its log."""
    return f"{R}/benchmarks/{'/'.join(filter(None, (job, wildcards)))}.tsv"
