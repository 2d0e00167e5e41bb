"""The SAE's text corpus as a word-level stimulus set: the demo world's stories, or a file."""

from brainphase.io import write_parquet
from brainphase.runtime import setup_job
from brainphase.contracts.stimuli import text_corpus
from brainphase.toyworld import build_world, corpus_stories

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
c = snakemake.params.corpus
if c["source"] == "toyworld":
    world = build_world(snakemake.params.world["seed"])
    words = corpus_stories(world, c["stories_per_lang"], tuple(c["words"]), snakemake.params.world["corpus"]["languages"],
                           c["seed"])
else:
    words = text_corpus(c["path"], c.get("text_column", "text"), c.get("lang_column"), c.get("max_documents"))
log.info("%d documents, %d words", words["run"].nunique(), len(words))
write_parquet(words, snakemake.output[0])
