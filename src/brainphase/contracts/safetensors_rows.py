"""A safetensors file written block of rows by block of rows, for caches larger than memory.

safetensors' own writers (``safetensors.numpy.save_file``) take every tensor
in memory at once, and its header — JSON, so a list per row would sit there —
may not exceed 100 MB. The format lays out ahead (huggingface/safetensors,
README "Format"; the parser in safetensors/src/tensor.rs): an 8-byte
little-endian header length N, N bytes of JSON (per tensor its dtype, shape and
[begin, end) byte offsets into the data that follows, plus a ``__metadata__``
map of strings), padded with spaces, then the tensors' bytes back to back with
no holes. So the header is written first, from shapes known before any row
exists, and each block of rows goes to its place with ``os.pwrite``: the
process holds one batch while the rows pass through the page cache, which the
kernel writes back and frees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np

# safetensors' dtype names (safetensors/src/tensor.rs, enum Dtype).
DTYPE_NAMES = {np.dtype("float16"): "F16", np.dtype("float32"): "F32", np.dtype("int64"): "I64",
               np.dtype("uint8"): "U8"}


class SafetensorsRowWriter:
    """Lay out ``tensors`` (name -> (shape, dtype)) and ``metadata`` in ``path``; fill them with
    :meth:`write_rows` / :meth:`write_whole`; :meth:`close` checks every row was written.

    The file is sized at once (sparse until written). Tensors go widest item
    first, so each starts at a multiple of its item size.
    """

    def __init__(self, path: str | os.PathLike, tensors: Mapping[str, tuple[tuple[int, ...], object]],
                 metadata: Mapping[str, str] | None = None):
        header: dict = {"__metadata__": dict(metadata)} if metadata else {}
        self.layout: dict[str, tuple[int, tuple[int, ...], np.dtype]] = {}
        offset = 0
        for name in sorted(tensors, key=lambda n: (-np.dtype(tensors[n][1]).itemsize, n)):
            shape, dtype = tuple(int(s) for s in tensors[name][0]), np.dtype(tensors[name][1])
            if dtype not in DTYPE_NAMES:
                raise ValueError(f"tensor {name}: dtype {dtype} is not one of {sorted(map(str, DTYPE_NAMES))}")
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
            self.layout[name] = (offset, shape, dtype)
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        if len(raw) > 100_000_000:
            raise ValueError(f"{path}: header of {len(raw) / 1e6:.0f} MB exceeds safetensors' 100 MB; keep per-row "
                             "lists in tensors, not in the metadata")
        raw += b" " * (-len(raw) % 8)  # the data start 8-byte aligned, as safetensors' own writer pads it
        self.path, self.data_start = str(path), 8 + len(raw)
        self.rows_written = {name: 0 for name in self.layout}
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        os.pwrite(self.fd, len(raw).to_bytes(8, "little") + raw, 0)
        os.ftruncate(self.fd, self.data_start + offset)

    def write_rows(self, name: str, rows, values) -> None:
        """``values[i]`` into row ``rows[i]`` of tensor ``name``; runs of consecutive rows go in one write."""
        offset, shape, dtype = self.layout[name]
        rows = np.asarray(rows, dtype=np.int64)
        values = np.asarray(values, dtype=dtype)
        if len(rows) == 0:
            return
        if values.shape != (len(rows),) + shape[1:]:
            raise ValueError(f"tensor {name}: {values.shape} values for {len(rows)} rows of {shape}")
        if rows.min() < 0 or rows.max() >= shape[0]:
            raise IndexError(f"tensor {name}: rows outside [0, {shape[0]})")
        order = np.argsort(rows, kind="stable")
        rows, values = rows[order], values[order]
        row_bytes = values[0].nbytes
        starts = np.r_[0, np.flatnonzero(np.diff(rows) != 1) + 1]
        for lo, hi in zip(starts, np.r_[starts[1:], len(rows)]):
            self._pwrite(np.ascontiguousarray(values[lo:hi]), offset + int(rows[lo]) * row_bytes)
        self.rows_written[name] += len(rows)

    def write_whole(self, name: str, values) -> None:
        offset, shape, dtype = self.layout[name]
        values = np.ascontiguousarray(values, dtype=dtype)
        if values.shape != shape:
            raise ValueError(f"tensor {name}: got shape {values.shape}, laid out as {shape}")
        self._pwrite(values, offset)
        self.rows_written[name] = shape[0] if shape else 1

    def _pwrite(self, values: np.ndarray, offset: int) -> None:
        view, at = memoryview(values.reshape(-1).view(np.uint8)), self.data_start + offset
        while len(view):  # pwrite may write less than asked (signals, > 2 GiB)
            n = os.pwrite(self.fd, view, at)
            view, at = view[n:], at + n

    def close_quietly(self) -> None:
        """Close the file without the completeness check (a failed job's file, about to be removed)."""
        os.close(self.fd)

    def close(self) -> None:
        """Close the file; an error names the tensors with rows never written (they would read as zeros)."""
        os.close(self.fd)
        short = {n: f"{self.rows_written[n]}/{s[0] if s else 1}" for n, (_, s, _) in self.layout.items()
                 if self.rows_written[n] != (s[0] if s else 1)}
        if short:
            raise RuntimeError(f"{self.path}: rows written/laid out differ for {dict(list(short.items())[:4])}")


class RowSink:
    """``sink[rows] = values`` writes into one tensor of a :class:`SafetensorsRowWriter` (as for an array)."""

    def __init__(self, writer: SafetensorsRowWriter, name: str):
        self.writer, self.name = writer, name
        self.dtype = writer.layout[name][2]

    def __setitem__(self, rows, values) -> None:
        self.writer.write_rows(self.name, rows, values)
