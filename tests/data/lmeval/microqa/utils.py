"""Loader of the microqa subtasks: JSONL splits next to this file, wherever lm-eval runs."""

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def load(subject: str, **_metadata):
    """``{"test", "dev"}`` splits of one subject (lm-eval's ``custom_dataset`` hook; metadata ignored)."""
    import datasets

    files = {split: str(DATA / f"{subject}_{split}.jsonl") for split in ("test", "dev")}
    missing = [f for f in files.values() if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"microqa subject {subject!r}: no data file {missing}")
    return datasets.load_dataset("json", data_files=files)
