"""Generate the demo world's lexicon, facts and training corpus."""

from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.toyworld import build_corpus, build_world

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
log = setup_job(snakemake.log[0])
cfg = snakemake.params.world
world = build_world(cfg["seed"])
c = cfg["corpus"]
corpus = build_corpus(world, c["stories"], tuple(c["words"]), c["languages"], c["seed"])
log.info("corpus: %d stories, %d words", len(corpus), corpus["text"].str.split().str.len().sum())
write_parquet(world.lexicon.table(), snakemake.output.lexicon)
write_parquet(world.facts.table(world.lexicon), snakemake.output.facts)
write_parquet(corpus, snakemake.output.corpus)
