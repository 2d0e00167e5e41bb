"""Download one Hugging Face revision as a checkpoint (model files + sha256 manifest)."""

from brainphase.sources.download import DEFAULT_PATTERNS, download_checkpoint
from brainphase.sources.families import parse_revision
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
p = snakemake.params
log = setup_job(snakemake.log[0])
revision = parse_revision(p.family, snakemake.wildcards.step, repo_id=p.repo_id, tokens_per_step=p.tokens_per_step)
if revision is None:
    raise ValueError(f"{p.repo_id}: {snakemake.wildcards.step!r} is not a {p.family} checkpoint revision")
download_checkpoint(p.repo_id, revision, snakemake.output.checkpoint, p.model,
                    allow_patterns=p.allow_patterns or DEFAULT_PATTERNS)
log.info("%s@%s: step %d, %s tokens", p.repo_id, revision.name, revision.step, revision.tokens)
