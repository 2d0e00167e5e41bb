"""The benchmark items as a stimulus set: one prompt per item, read to its last token."""

from pathlib import Path

import pandas as pd

from brainphase.benchmarks.tasks import read_jsonl
from brainphase.io import write_parquet
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
task = snakemake.wildcards.task
docs = read_jsonl(Path(snakemake.input.tasks) / f"{task}_test.jsonl")
df = pd.DataFrame({
    "unit_id": [d["item_id"] for d in docs], "run": task, "text": [d["context"] for d in docs],
    "lang": [d["lang"] for d in docs], "onset": None, "offset": None,
    "item_id": [d["item_id"] for d in docs], "target": [d["label"] for d in docs],
    "n_choices": [len(d["choices"]) for d in docs], "relation": [d["relation"] for d in docs],
})
write_parquet(df, snakemake.output[0])
