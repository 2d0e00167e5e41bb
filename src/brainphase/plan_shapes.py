"""The shapes a study's jobs will have, read before the jobs run: from a file's header, else the config's estimate."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SubjectShape:
    train_samples: int
    test_samples: int
    channels: int
    source: str
    """Where the shape comes from: the loaded brain file, or the config's ``plan_shape`` estimate."""


def subject_shape(brain_path, dataset: dict) -> SubjectShape | None:
    """A subject's training/test samples and channels: its brain file's header, else ``plan_shape``, else None."""
    from pathlib import Path

    path = Path(brain_path)
    if path.is_file():
        import h5py

        try:
            with h5py.File(path, "r") as f:
                train = test = channels = 0
                for g in f["runs"].values():
                    n, channels = g["data"].shape
                    split = g.attrs.get("split", b"train")
                    split = split.decode() if isinstance(split, bytes) else str(split)
                    train, test = (train + n, test) if split == "train" else (train, test + n)
            return SubjectShape(train, test, channels, str(path))
        except (OSError, KeyError, ValueError):
            return None
    shape = dataset.get("plan_shape")
    if shape:
        return SubjectShape(shape["train_samples"], shape["test_samples"], shape["channels"],
                            f"plan_shape of dataset {dataset['name']} (an estimate)")
    return None


def epochs_shape(path) -> tuple[int, int, int] | None:
    """(words, sensors, lags) of a word-epochs file from its header, or None while it does not exist."""
    from pathlib import Path

    if not Path(path).is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return tuple(int(n) for n in f["data"].shape)
    except (OSError, KeyError, ValueError, TypeError):
        return None


def model_and_subjects(config: dict, name: str, subjects, brain_path):
    """(size of model ``name``, each subject's shape, why a plan is impossible or None) for a stage
    whose jobs pair the model with every subject."""
    from .planning import model_size

    size = model_size(next(m for m in config["models"] if m["name"] == name))
    shapes = [subject_shape(brain_path(d["name"], sub), d) for d, sub in subjects]
    why = ("model size unknown" if size is None else
           "subject shapes unknown: load them or give plan_shape" if None in shapes else None)
    return size, shapes, why
