"""The subject's responses for the crosscoder: z-scored once into one float32 matrix, in memory or in a file.

The job holds the responses once. Each run is z-scored per column (population
std) and trimmed as ``encoding.delays.prepare_responses`` does, but a block of
rows at a time: column sums run over the rows in order, which is how numpy's
own reduction along axis 0 adds them, so the stored rows equal
``prepare_responses(...)[0].astype(float32)`` bit for bit while the float64
temporaries stay one block. A store too large for the job's memory lives in a
file of the job's temporary directory and is read a batch of rows at a time
with ``os.preadv`` (page cache, not the job's resident memory; a memory map
would count every page it touched as resident).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np

from ..contracts.stimuli import DataError

BLOCK_BYTES = 8 * 2**20  # float64 temporaries of one block of rows while z-scoring


class RowStore:
    """A (rows × columns) float32 matrix written once by blocks of rows, then read by gathered rows.

    ``directory`` None keeps it in memory; otherwise it lives in an unlinked
    file there, so it disappears when the store is closed or the job dies.
    ``scale`` multiplies every row read (the unit-norm scaling, kept as one
    float32 factor rather than a second copy).
    """

    def __init__(self, n_rows: int, n_cols: int, directory: str | os.PathLike | None = None):
        self.shape = (int(n_rows), int(n_cols))
        self.scale = np.float32(1.0)
        self._row_bytes = 4 * self.shape[1]
        self._fd = None
        self.array = None
        if directory is None:
            # np.empty commits no page until it is written, so peak memory grows with the rows stored.
            self.array = np.empty(self.shape, dtype=np.float32)
            return
        fd, path = tempfile.mkstemp(prefix="crosscoder-responses-", suffix=".f32", dir=directory)
        os.unlink(path)
        os.ftruncate(fd, self.shape[0] * self._row_bytes)
        self._fd = fd

    @property
    def on_disk(self) -> bool:
        return self._fd is not None

    def __len__(self) -> int:
        return self.shape[0]

    def write(self, lo: int, block: np.ndarray) -> None:
        """Store ``block`` (float32, its rows) as rows ``lo`` … ``lo + len(block) - 1``."""
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self.array is not None:
            self.array[lo:lo + len(block)] = block
            return
        view, offset = memoryview(block.reshape(-1).view(np.uint8)), lo * self._row_bytes
        while len(view):
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (in that order) times ``scale``, as a new float32 array."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.array is not None:
            out = self.array[rows]
        else:
            out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
            self._read(rows, out)
        if self.scale != 1:
            np.multiply(out, self.scale, out=out)
        return out

    def _read(self, rows: np.ndarray, out: np.ndarray) -> None:
        # Consecutive rows are one read each: a row range (validation, scoring) is a single call.
        flat = out.reshape(-1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            view = memoryview(flat[a * self._row_bytes:b * self._row_bytes])
            offset = int(rows[a]) * self._row_bytes
            while len(view):
                n = os.preadv(self._fd, [view], offset)
                if n == 0:
                    raise OSError(f"crosscoder response file ended at byte {offset}; the temporary directory "
                                  "lost it (disk full or cleaned while the job ran)")
                view, offset = view[n:], offset + n

    def set_scale(self, scale: float) -> None:
        """Multiply every row by ``scale`` from now on (in place in memory, at read time on disk)."""
        scale = np.float32(scale)
        if self.array is None:
            self.scale = scale * self.scale
            return
        step = max(1, BLOCK_BYTES // self._row_bytes)
        for lo in range(0, len(self), step):
            np.multiply(self.array[lo:lo + step], scale, out=self.array[lo:lo + step])

    def row_norms(self, rows: np.ndarray) -> np.ndarray:
        """L2 norm of each of ``rows`` in float64, a block of rows at a time."""
        rows = np.asarray(rows, dtype=np.int64)
        step = max(1, BLOCK_BYTES // (2 * self._row_bytes))
        return np.concatenate([np.linalg.norm(self.gather(rows[lo:lo + step]).astype(np.float64), axis=1)
                               for lo in range(0, len(rows), step)] or [np.zeros(0)])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.array = None

    def __enter__(self) -> RowStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ShuffledRows:
    """``store`` read through a row map: row i of this view is row ``index[i]`` of the store (no copy)."""

    def __init__(self, store: RowStore, index: np.ndarray):
        self.store, self.index = store, np.asarray(index, dtype=np.int64)
        self.shape = store.shape

    def __len__(self) -> int:
        return len(self.index)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        return self.store.gather(self.index[np.asarray(rows, dtype=np.int64)])


def _blocks(run, lo: int, hi: int, step: int):
    for a in range(lo, hi, step):
        yield a, np.asarray(run[a:min(a + step, hi)], dtype=np.float64)


def running_sum(acc: np.ndarray | None, block: np.ndarray) -> np.ndarray:
    # Row after row, as np.add.reduce(axis=0) adds them, so the sum of all
    # blocks is bit-identical to the sum of the whole run.
    rows = iter(block)
    if acc is None:
        acc = next(rows).copy()
    for row in rows:
        acc += row
    return acc


def run_stats(run, name: str, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and population std of one run (float64), as ``a.mean(0)`` and ``a.std(0)`` compute them."""
    n = run.shape[0]
    total = None
    for _, a in _blocks(run, 0, n, step):
        if not np.isfinite(a).all():
            cols = np.flatnonzero(~np.isfinite(a).all(0))
            raise DataError(f"{name}: {cols.size} column(s) hold NaN or inf (first: column {cols[0]}); mask or "
                            "interpolate those samples in preprocessing")
        total = running_sum(total, a)
    mean = total / n
    squares = None
    for _, a in _blocks(run, 0, n, step):
        d = a - mean
        squares = running_sum(squares, np.multiply(d, d, out=d))
    return mean, np.sqrt(squares / n)


def zscore_into(store: RowStore, runs: Sequence, n_trim: int, names: Sequence[str]) -> np.ndarray:
    """z-score each run per column, drop ``n_trim`` rows at each end, and write the rows into ``store`` in order.

    ``runs`` are (time × columns) arrays or HDF5 datasets, read a block of rows
    at a time; ``names`` name them in errors. Returns the run index of each stored row.
    """
    lo, index = 0, []
    for i, (run, name) in enumerate(zip(runs, names)):
        n = run.shape[0]
        if 2 * n_trim >= n:
            raise ValueError(f"{name} has {n} samples, too few to trim {n_trim} at each end")
        step = max(1, BLOCK_BYTES // (8 * max(1, run.shape[1])))
        mean, std = run_stats(run, name, step)
        # A constant column becomes 0, not NaN, as in encoding.delays.zscore_runs.
        for _, a in _blocks(run, n_trim, n - n_trim, step):
            centred = a - mean
            store.write(lo, np.divide(centred, std, out=np.zeros_like(centred), where=std > 0).astype(np.float32))
            lo += len(a)
        index.append(np.full(n - 2 * n_trim, i, dtype=np.int64))
    if lo != len(store):
        raise ValueError(f"the runs give {lo} rows after trimming but the store has {len(store)}")
    return np.concatenate(index)
