"""The activation cache: one safetensors file per (model, checkpoint, stimulus set, pooling).

Each tensor ``{site}.{layer}`` is (units x d) float16, rows in the stimulus
table's order; the file's metadata (JSON-encoded values) holds
:data:`METADATA_KEYS` and, for last-token pooling, ``dropped_unit_ids``.
"""

from __future__ import annotations

import contextlib
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
# A token-pooled file has a row per token: its per-row columns are tensors (a
# JSON list per row would break safetensors' 100 MB header limit at a few
# million tokens), and its rows point into the stimulus table by position,
# which the table's digest pins.
TOKEN_TABLE = "token_table."
TOKEN_METADATA_KEYS = ("model", "step", "tokens", "pooling", "context_window", "stimulus_digest")


def unit_digest(unit_ids) -> str:
    """SHA-256 of a stimulus table's unit ids in order: what a token-pooled cache was built from."""
    import hashlib

    h = hashlib.sha256()
    for u in unit_ids:
        h.update(str(u).encode() + b"\n")
    return h.hexdigest()


def token_columns(tokens: pd.DataFrame) -> dict[str, np.ndarray]:
    """The per-token tensors of a token-pooled file from the extraction's token table
    (unit_row, token_id, position, token): integers, and the tokens' text as UTF-8 bytes with offsets."""
    text = [t.encode("utf-8") for t in tokens["token"].astype(str)]
    offsets = np.zeros(len(text) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in text], out=offsets[1:])
    return {f"{TOKEN_TABLE}unit_row": tokens["unit_row"].to_numpy(np.int64),
            f"{TOKEN_TABLE}token_id": tokens["token_id"].to_numpy(np.int64),
            f"{TOKEN_TABLE}position": tokens["position"].to_numpy(np.int64),
            f"{TOKEN_TABLE}text_offsets": offsets,
            f"{TOKEN_TABLE}text": np.frombuffer(b"".join(text), dtype=np.uint8)}


def open_activations(path: str | os.PathLike, names: Sequence[str], n_rows: int, d: int, metadata: dict,
                     columns: Mapping[str, np.ndarray] | None = None):
    """A :class:`~.safetensors_rows.SafetensorsRowWriter` laid out for ``names`` (n_rows x d float16) and
    ``columns`` (written now), and a row sink per name; the caller fills the sinks and closes the writer."""
    from .safetensors_rows import RowSink, SafetensorsRowWriter

    columns = dict(columns or {})
    keys = TOKEN_METADATA_KEYS if metadata.get("pooling") == "token" else METADATA_KEYS
    missing = [k for k in keys if k not in metadata]
    if missing:
        raise ValueError(f"activation metadata lacks {missing} (needs {list(keys)})")
    if "unit_ids" in metadata and len(metadata["unit_ids"]) != n_rows:
        raise ValueError(f"arrays must be (n_units={len(metadata['unit_ids'])} x d); got {n_rows} rows")
    encoded = {k: json.dumps(v, default=json_default) for k, v in metadata.items()}
    layout = {n: ((n_rows, d), np.float16) for n in names}
    layout.update({n: (c.shape, c.dtype) for n, c in columns.items()})
    writer = SafetensorsRowWriter(path, layout, encoded)
    try:
        for n, c in columns.items():
            writer.write_whole(n, c)
    except BaseException:
        writer.close_quietly()
        raise
    return writer, {n: RowSink(writer, n) for n in names}


def save_activations(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict,
                     columns: Mapping[str, np.ndarray] | None = None) -> None:
    """Write ``arrays`` as float16 safetensors with JSON-encoded metadata (and ``columns``), atomically."""
    shapes = {a.shape for a in arrays.values()}
    bad = {k: v.shape for k, v in arrays.items() if v.ndim != 2}
    if bad or len(shapes) > 1:
        raise ValueError(f"arrays must be (n_units × d), all alike; got {({k: v.shape for k, v in arrays.items()})}")
    n_rows, d = next(iter(shapes)) if shapes else (len(metadata.get("unit_ids", ())), 0)
    with atomic_path(path) as tmp:
        writer, _ = open_activations(tmp, list(arrays), n_rows, d, metadata, columns)
        try:
            for name, a in arrays.items():
                writer.write_whole(name, a)
        finally:
            writer.close()


@contextlib.contextmanager
def activation_file(path: str | os.PathLike, metadata: dict, units: pd.DataFrame):
    """Stream one extraction into ``path``: yields the ``out`` factory the extract functions take.

    The factory lays the file out once the extraction knows its rows (and,
    per pooling, the kept prompts or the token table) and hands back a row
    sink per tensor, so no tensor is ever whole in memory. The file lands at
    ``path`` only if the block ends without error and every row was written;
    the factory's ``info`` then holds ``n_rows`` and ``names``.
    """
    with atomic_path(path) as tmp:
        state: dict = {}

        def allocate(names, n_rows, d, tokens=None, kept=None, dropped=None):
            meta, columns = dict(metadata), None
            if tokens is not None:
                meta["stimulus_digest"] = unit_digest(units["unit_id"])
                columns = token_columns(tokens)
            elif kept is not None:
                meta.update(unit_ids=list(kept), dropped_unit_ids=list(dropped), n_dropped=len(dropped))
            else:
                meta["unit_ids"] = units["unit_id"].tolist()
            state["writer"], sinks = open_activations(tmp, names, n_rows, d, meta, columns)
            allocate.info.update(n_rows=n_rows, names=list(names))
            return sinks

        allocate.info = {}
        try:
            yield allocate
        except BaseException:
            if "writer" in state:
                state["writer"].close_quietly()
            raise
        if "writer" not in state:
            raise RuntimeError(f"{path}: the extraction never laid out its tensors")
        state["writer"].close()


def read_token_table(path: str | os.PathLike, stimuli: pd.DataFrame, stimuli_path: str | os.PathLike) -> dict:
    """The per-token columns of a token-pooled file (unit_rows, token_ids, positions, tokens), checked
    against the stimulus table they point into."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        if f"{TOKEN_TABLE}unit_row" not in f.keys():
            raise DataError(f"{path}: no per-token columns ({TOKEN_TABLE}*); it predates them or is not "
                            "token-pooled — delete it and rerun its activations job")
        col = {k[len(TOKEN_TABLE):]: f.get_tensor(k) for k in f.keys() if k.startswith(TOKEN_TABLE)}
    if meta.get("stimulus_digest") != unit_digest(stimuli["unit_id"]):
        raise DataError(f"{path}: built from another version of {stimuli_path} (unit ids differ); the activation "
                        "cache is stale — delete it and rerun")
    text = col["text"].tobytes()
    off = col["text_offsets"]
    tokens = [text[a:b].decode("utf-8") for a, b in zip(off[:-1], off[1:])]
    return {"unit_rows": col["unit_row"], "token_ids": col["token_id"], "positions": col["position"],
            "tokens": tokens}


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
        self.names = [n for n in available if not n.startswith(TOKEN_TABLE)] if names is None else list(names)
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
        wanted = [n for n in available if not n.startswith(TOKEN_TABLE)] if names is None else list(names)
        absent = [n for n in wanted if n not in available]
        if absent:
            raise KeyError(f"{path}: no tensors {absent}; it holds {available}. Fix: re-extract with those "
                           f"sites/layers requested")
        arrays = {n: f.get_tensor(n).astype(dtype, copy=False) for n in wanted}
        metadata = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return arrays, metadata
