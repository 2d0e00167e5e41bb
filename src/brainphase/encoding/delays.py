"""FIR delays and the per-run preprocessing of the design and responses.

Delays are counted in samples of the brain data (TRs for fMRI) everywhere in
the package; :func:`delays_in_trs` converts delays given in seconds, once,
where an analysis reads them from its config. Everything else is done run by
run so that neither z-scoring statistics nor delayed copies ever leak across
run (story) boundaries.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def delays_in_trs(delays_s: Sequence[float], tr: float, key: str = "crosscoder.delays_s") -> list[int]:
    """Delays in seconds -> delays in TRs (samples), the unit of :func:`fir_delays`.

    Raises ValueError naming the config ``key`` when a delay is not a whole
    number of TRs of ``tr`` seconds.
    """
    trs = [d / tr for d in delays_s]
    if any(abs(t - round(t)) > 1e-6 for t in trs):
        raise ValueError(f"config key {key}: delays {list(delays_s)} s are not whole TRs of {tr} s; "
                         f"set {key} to multiples of the TR")
    return [int(round(t)) for t in trs]


def fir_delays(X: np.ndarray, delays: Sequence[int]) -> np.ndarray:
    """Concatenate copies of ``X`` shifted by each delay, zero padded.

    Row ``t`` of the copy for delay ``d`` is ``X[t - d]``: a positive delay
    lets past features predict the present response (hemodynamic lag).
    Shifts never wrap around; samples shifted in from outside are 0.

    Parameters
    ----------
    X : array (n_samples, n_features) or (n_samples,)
    delays : sequence of int
        In samples of ``X`` (TRs for fMRI), not seconds; convert seconds
        with :func:`delays_in_trs`.

    Returns
    -------
    array (n_samples, n_features * len(delays)), blocks ordered as ``delays``.
    """
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    delays = [int(d) for d in delays]
    if not delays:
        raise ValueError("delays must not be empty")
    n, f = X.shape
    out = np.zeros((n, f * len(delays)), dtype=np.result_type(X.dtype, np.float32))
    for i, d in enumerate(delays):
        block = out[:, i * f : (i + 1) * f]
        if abs(d) >= n:
            continue
        if d > 0:
            block[d:] = X[: n - d]
        elif d < 0:
            block[: n + d] = X[-d:]
        else:
            block[:] = X
    return out


def _zscore(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    centred = a - a.mean(axis=0)
    std = a.std(axis=0)
    # A constant column (e.g. a silent run, a dead voxel) becomes 0, not NaN,
    # so one bad run cannot poison the concatenated data; callers that must
    # know (fit_encoding) detect constant columns explicitly.
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)


def zscore_runs(runs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """z-score the columns of each run separately (population std, ddof=0).

    Columns constant within a run become 0 in that run. A column holding NaN or
    inf is an error naming the run: its mean and std are NaN, and the constant-
    column rule above would otherwise turn it silently into zeros.
    """
    return [_zscore_run(r, i, len(runs)) for i, r in enumerate(runs)]


def _zscore_run(r: np.ndarray, i: int, n_runs: int, first_column: int = 0) -> np.ndarray:
    finite = np.isfinite(np.asarray(r, dtype=np.float64))
    if not finite.all():
        cols = np.flatnonzero(~finite.reshape(len(finite), -1).all(0))
        raise ValueError(f"run {i} (position {i} among the {n_runs} runs given): {cols.size} column(s) hold "
                         f"NaN or inf (first: column {first_column + cols[0]}); a unit without a finite onset/offset or NaN "
                         "activations put them there — check the run's stimulus timings and activation cache")
    return _zscore(r)


def trim(runs: Sequence[np.ndarray], n_trim: int) -> list[np.ndarray]:
    """Drop the first and last ``n_trim`` samples of each run."""
    n_trim = int(n_trim)
    if n_trim < 0:
        raise ValueError("n_trim must be >= 0")
    out = []
    for i, r in enumerate(runs):
        if 2 * n_trim >= len(r):
            raise ValueError(f"run {i} has {len(r)} samples, too few to trim {n_trim} at each end")
        out.append(r[n_trim : len(r) - n_trim])
    return out


_trim = trim  # prepare_* take a parameter named ``trim``


def _stack(runs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    run_index = np.concatenate([np.full(len(r), i, dtype=np.int64) for i, r in enumerate(runs)])
    return np.concatenate(runs, axis=0), run_index


def prepare_design(
    features_per_run: Sequence[np.ndarray], delays: Sequence[int], trim: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """z-score per run, FIR-delay per run (``delays`` in TRs), trim per run, then stack.

    Delaying before trimming lets the kept samples take their history from
    the trimmed lead-in instead of zero padding.

    Returns
    -------
    X : array (n_kept_samples, n_features * len(delays))
    run_index : int array (n_kept_samples,), the run of each row (CV groups).
    """
    runs = [np.asarray(r) if np.ndim(r) == 2 else np.asarray(r)[:, None] for r in features_per_run]
    if not runs:
        raise ValueError("no runs")
    delayed = [fir_delays(r, delays) for r in zscore_runs(runs)]
    return _stack(_trim(delayed, trim))


def prepare_responses(
    responses_per_run: Sequence[np.ndarray], trim: int = 0, dtype=np.float64, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """z-score per run, trim per run, then stack.

    Written straight into one ``dtype`` array, ``block`` columns of a run at
    a time: the statistics are float64 as always, but no full-size float64
    copy of the responses is ever held (a subject's BOLD is the largest
    array of an encoding job). Each column's values are those of z-scoring
    the whole run in float64 and casting. Runs may be left on disk
    (``contracts.brain.RunOnDisk``): each is read when its turn comes.

    Returns
    -------
    Y : array (n_kept_samples, n_voxels)
    run_index : int array (n_kept_samples,)
    """
    runs = [r if getattr(r, "ndim", np.ndim(r)) == 2 else np.asarray(r)[:, None] for r in responses_per_run]
    if not runs:
        raise ValueError("no runs")
    n_trim = int(trim)
    if n_trim < 0:
        raise ValueError("n_trim must be >= 0")
    for i, r in enumerate(runs):
        if 2 * n_trim >= len(r):
            raise ValueError(f"run {i} has {len(r)} samples, too few to trim {n_trim} at each end")
    lengths = [len(r) - 2 * n_trim for r in runs]
    out = np.empty((sum(lengths), runs[0].shape[1]), dtype=dtype)
    row = 0
    for i, (r, n) in enumerate(zip(runs, lengths)):
        r = np.asarray(r)  # a run left on disk is read here, one run at a time
        for c0 in range(0, r.shape[1], block):
            out[row: row + n, c0: c0 + block] = _zscore_run(r[:, c0: c0 + block], i, len(runs), c0)[n_trim: n_trim + n]
        row += n
    run_index = np.concatenate([np.full(n, i, dtype=np.int64) for i, n in enumerate(lengths)])
    return out, run_index
