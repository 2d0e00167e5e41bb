# brainphase: follow a language model through its training checkpoints and
# compare it with the brain. The science is in src/brainphase; rules are thin.
from snakemake.utils import min_version

min_version("9.20")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/paths.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/stimuli.smk"
include: "workflow/rules/checkpoints.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/encoding.smk"
include: "workflow/rules/variance.smk"
include: "workflow/rules/cortex.smk"
include: "workflow/rules/evals.smk"
include: "workflow/rules/probing.smk"
include: "workflow/rules/sae.smk"
include: "workflow/rules/crosscoder.smk"
include: "workflow/rules/temporal.smk"
include: "workflow/rules/phases.smk"


rule all:
    default_target: True
    input:
        all_targets(),
