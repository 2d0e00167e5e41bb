"""The activation cache: one safetensors file per (model, checkpoint, stimulus set, pooling).

Each tensor ``{site}.{layer}`` is (units x d) float16, rows in the stimulus
table's order; the file's metadata (JSON-encoded values) holds
:data:`METADATA_KEYS` and, for last-token pooling, ``dropped_unit_ids``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path, json_default
from .brain import check_alignment, subject_view
from .stimuli import DataError

METADATA_KEYS = ("model", "step", "tokens", "pooling", "context_window", "unit_ids")


def save_activations(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """Write ``arrays`` as float16 safetensors with JSON-encoded metadata, atomically."""
    from safetensors.numpy import save_file

    missing = [k for k in METADATA_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"activation metadata lacks {missing} (needs {list(METADATA_KEYS)})")
    n_units = len(metadata["unit_ids"])
    bad = {k: v.shape for k, v in arrays.items() if v.ndim != 2 or v.shape[0] != n_units}
    if bad:
        raise ValueError(f"arrays must be (n_units={n_units} × d); got {bad}")
    tensors = {k: np.ascontiguousarray(v, dtype=np.float16) for k, v in arrays.items()}
    encoded = {k: json.dumps(v, default=json_default) for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=encoded)


def load_unit_activations(path: str | os.PathLike, stimuli: pd.DataFrame, stimuli_path: str | os.PathLike,
                          names: Sequence[str] | None = None, dtype=np.float32) -> dict[str, np.ndarray]:
    """Activations whose rows are the units of ``stimuli``, in its order; a stale cache is an error."""
    arrays, meta = load_activations(path, names, dtype)
    if meta.get("dropped_unit_ids"):
        raise DataError(f"{path}: {len(meta['dropped_unit_ids'])} units of {stimuli_path} exceed the model's "
                        f"positions and have no row (e.g. {meta['dropped_unit_ids'][:3]}); this analysis needs "
                        "every unit — shorten those texts")
    if list(meta["unit_ids"]) != stimuli["unit_id"].tolist():
        raise DataError(f"{path}: unit ids differ from {stimuli_path}; the activation cache is stale — "
                        "delete it and rerun")
    return arrays


def subject_activations(path: str | os.PathLike, stimuli: pd.DataFrame, stimuli_path: str | os.PathLike, brain,
                        brain_path: str | os.PathLike, names: Sequence[str] | None = None, lazy: bool = False
                        ) -> tuple[Mapping[str, np.ndarray], pd.DataFrame]:
    """Activations and stimulus rows of the units one subject heard, on that subject's clock.

    The cache holds the whole stimulus set; a real dataset's brain file may time
    only some of its units, at its own onsets (``brainphase.contracts.brain.subject_view``).
    The timings are checked against the subject's runs. ``lazy``: a mapping
    that reads each tensor when asked for it, as stored (float16), so a job
    that goes layer by layer holds one layer, not the whole cache in float32.
    """
    view, rows = subject_view(stimuli, brain, str(stimuli_path), str(brain_path))
    check_alignment(view, brain, str(stimuli_path), str(brain_path))
    if lazy:
        load_unit_activations(path, stimuli, stimuli_path, names=[])  # the cache's unit ids, checked once
        return LayerReader(path, names, rows), view
    arrays = load_unit_activations(path, stimuli, stimuli_path, names)
    if rows is not None:
        arrays = {k: v[rows] for k, v in arrays.items()}
    return arrays, view


class LayerReader(Mapping):
    """``{site}.{layer}`` -> (units x d) float16, read from the safetensors file on each access.

    ``rows`` (or None: all) selects the units a subject heard.
    """

    def __init__(self, path: str | os.PathLike, names: Sequence[str] | None = None, rows=None):
        from safetensors import safe_open

        self.path, self.rows = Path(path), rows
        with safe_open(str(path), framework="numpy") as f:
            available = list(f.keys())
        self.names = available if names is None else list(names)
        absent = [n for n in self.names if n not in available]
        if absent:
            raise KeyError(f"{path}: no tensors {absent}; it holds {available}. Fix: re-extract with those "
                           "sites/layers requested")

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(name)
        arrays, _ = load_activations(self.path, [name], np.float16)
        a = arrays[name]
        return a if self.rows is None else a[self.rows]

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def activation_memmap(path: str | os.PathLike, name: str) -> np.memmap:
    """One stored tensor as a read-only memory map: rows are read from disk only when indexed.

    safetensors keeps each tensor as one contiguous little-endian block after
    an 8-byte header length and a JSON header, so a float16 tensor maps
    directly; training on a layer larger than RAM streams through the page cache.
    """
    path = Path(path)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    if name not in header:
        raise KeyError(f"{path}: no tensor {name!r}; it holds {sorted(k for k in header if k != '__metadata__')}. "
                       f"Fix: re-extract with that site/layer requested")
    info = header[name]
    if info["dtype"] != "F16":
        raise ValueError(f"{path}: tensor {name} is {info['dtype']}, expected F16 (the activation contract)")
    begin, _ = info["data_offsets"]
    return np.memmap(path, dtype="<f2", mode="r", offset=8 + n + begin, shape=tuple(info["shape"]))


def site_layers(path: str | os.PathLike, site: str) -> list[str]:
    """The ``{site}.{layer}`` tensors of an activation file, by layer depth (header only, no data read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        names = [k for k in f.keys() if k.split(".")[0] == site]
    if not names:
        raise KeyError(f"{path}: no {site}.* tensors; re-extract with activations.sites including {site!r}")
    return sorted(names, key=lambda n: int(n.split(".")[1]))


def load_activations(path: str | os.PathLike, names: Sequence[str] | None = None,
                     dtype=np.float32) -> tuple[dict[str, np.ndarray], dict]:
    """Read activations (as ``dtype``, float32 by default) and their metadata; ``names`` selects tensors."""
    from safetensors import safe_open

    path = Path(path)
    with safe_open(str(path), framework="numpy") as f:
        available = list(f.keys())
        wanted = available if names is None else list(names)
        absent = [n for n in wanted if n not in available]
        if absent:
            raise KeyError(f"{path}: no tensors {absent}; it holds {available}. Fix: re-extract with those "
                           f"sites/layers requested")
        arrays = {n: f.get_tensor(n).astype(dtype, copy=False) for n in wanted}
        metadata = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return arrays, metadata
