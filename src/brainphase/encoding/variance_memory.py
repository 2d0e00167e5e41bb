"""How much memory a variance-partitioning job holds, and how many voxels it fits at once within a budget.

The job (:func:`brainphase.encoding.variance.partition_layers`) fits three
ridge models per layer with himalaya (LM band, low-level band, both banded),
a chunk of voxels at a time. One formula serves the job, which picks its
chunk from it, and the dry-run plan, which prints the job's peak. Terms:

- held for the whole job: the subject's responses (float32), one layer's
  activations and its delayed design (float64), both bands' centred float32
  copies, the result table;
- himalaya's working arrays, whatever the chunk, for the widest (joint) fit.
  Its solver (``solve_group_ridge_random_search`` and ``_decompose_ridge``,
  gallantlab/himalaya himalaya/ridge/_random_search.py) concatenates the
  bands, copies each fold's training and validation rows, takes a thin SVD of
  the training rows, and per alpha builds the resolution matrix (features x
  training rows) and its product with the validation rows (validation x
  training rows); the refit does the same on all training rows. Where the
  whole job does not fit, it asks for one alpha per batch
  (``n_alphas_batch=1``): the same products, one such matrix alive instead
  of one per alpha;
- per voxel of a chunk: its training and test series, the solver's per-fold
  targets, predictions and scores, the refit weights and the coefficients,
  the test predictions, and the block-permutation sums.

With the torch_cuda backend himalaya's working arrays live in GPU memory
(``solver_on_host=False``): the host then holds torch's CUDA libraries
instead (:data:`DEVICE_HOST_BYTES`, an allowance, not a measurement), and the
GPU's own memory is not planned here.
``tests/test_variance_memory.py`` measures a job's peak resident memory
against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .memory import INTERPRETER_BYTES, MIN_CHUNK, SAFETY

# The permutation test's block table is bounded by stats._MAX_BLOCK_TABLE
# float64 elements, with its block copies beside it.
_PERMUTATION_TABLE = 2**22 * 8 * 2
# Result columns per voxel and layer (parts, significance, keys) as float64,
# held per layer and once more while the layers are concatenated.
_RESULT_COLUMNS = 14
# Host memory of torch with a CUDA context (its libraries and pinned
# buffers), counted instead of the solver's arrays when they live on the GPU.
DEVICE_HOST_BYTES = 2 * 2**30


@dataclass(frozen=True)
class VarianceShape:
    """The sizes a variance-partitioning job's memory depends on."""

    n_train: int
    """Training TRs (all training runs, after trimming)."""
    n_test: int
    """Test TRs (after trimming)."""
    n_lm: int
    """Columns of the LM band: width of the layer x number of delays."""
    n_low: int
    """Columns of the low-level band: 3 features x number of delays."""
    n_voxels: int
    n_alphas: int = 10
    n_folds: int = 5
    n_iter: int = 5
    """Band weightings tried by the banded ridge's random search."""
    n_perm: int = 200
    n_layers: int = 1
    """Layers partitioned by the job (rows of its result table)."""
    n_units: int = 0
    """Rows of the activation cache (stimulus units)."""
    d_model: int = 0
    brain_bytes: int = 0
    """The subject's brain data as read into memory."""
    solver_on_host: bool = True
    """False where himalaya runs on CUDA (torch_cuda): its working arrays are then in GPU memory."""


@dataclass(frozen=True)
class VariancePlan:
    voxel_chunk: int
    """Voxels fitted and scored together."""
    peak_bytes: int
    """The job's predicted peak resident memory."""
    alphas_batch: int = 1
    """Alphas whose resolution matrices himalaya builds together."""


def _svd_then_matrices(rows: int, cols: int, held_out: int, batch: int) -> int:
    """Peak of one thin SVD of a float32 (rows x cols) block followed by ``batch`` alphas' resolution matrices.

    scipy's gesdd works on a copy of its input, beside U, Vt and a workspace
    (measured: at most 4.2 r x r floats over the copy and the factors, for
    blocks of 1,500 to 3,000 columns); once it returns, U, Vt, the (cols x
    rows) matrices and either their weighted-U factors or their products with
    the held-out rows (held_out x rows) are alive together.
    """
    r = min(rows, cols)
    factors = (rows * r + r * cols) * 4
    decomposing = rows * cols * 4 + factors + 5 * r * r * 4
    matrices = factors + batch * (cols + max(r, held_out)) * rows * 4
    return max(decomposing, matrices)


def solver_bytes(s: VarianceShape, alphas_batch: int = 1) -> int:
    """himalaya's working arrays of the joint fit that do not depend on the chunk."""
    n, ft = s.n_train, s.n_lm + s.n_low
    n_val = -(-n // s.n_folds)
    n_fit = n - n // s.n_folds
    # The concatenated bands, then per fold the training and validation rows
    # beside the SVD; the refit takes the SVD of all training rows.
    fold = n * ft * 4 + _svd_then_matrices(n_fit, ft, n_val, alphas_batch)
    refit = _svd_then_matrices(n, ft, 0, alphas_batch)
    return n * ft * 4 + max(fold, refit)


def fixed_bytes(s: VarianceShape, alphas_batch: int = 1) -> int:
    """What the job holds whatever its chunk."""
    n, m, ft = s.n_train, s.n_test, s.n_lm + s.n_low
    responses = s.brain_bytes + (n + m) * s.n_voxels * 4
    activations = s.n_units * s.d_model * (2 + 4)  # the float16 cache and its float32 copy
    design = (n + m) * s.n_lm * 8  # the float64 delayed LM band, kept through the fits
    # Building it, the per-run resampled and delayed pieces sit beside the
    # stack; fitting, the centred float32 bands and the solver's arrays do.
    fitting = (n + m) * ft * 4 + (solver_bytes(s, alphas_batch) if s.solver_on_host else DEVICE_HOST_BYTES)
    results = 2 * s.n_layers * s.n_voxels * _RESULT_COLUMNS * 8
    return (INTERPRETER_BYTES + responses + activations + design + max(design, fitting) + results
            + _PERMUTATION_TABLE)


def voxel_bytes(s: VarianceShape, alphas_batch: int = 1) -> int:
    """What each voxel of a chunk adds (float32 unless said): what it holds, plus the largest of its phases."""
    n, m, ft, b = s.n_train, s.n_test, s.n_lm + s.n_low, alphas_batch
    n_val = -(-n // s.n_folds)
    n_fit = n - n // s.n_folds
    held = (n + m) * 4 + ft * 4 + (s.n_folds * s.n_alphas + s.n_iter + 8) * 4  # series, coefficients, scores
    folds = n_fit * 4 + n_val * 4 + b * n_val * 4 * 3  # a fold's targets, predictions and the loss' temporaries
    refit = n * 4 + b * ft * 4 + ft * 4 * 3  # the targets, the weights, their selection, transpose and update
    test = m * 4 * 8 + m * 8 * 2 + (s.n_perm + 1) * 8  # predictions and R² split, float64 z-scores, null sums
    return held + max(folds, refit, test)


def peak_at_chunk(s: VarianceShape, chunk: int, alphas_batch: int = 1) -> int:
    """The job's peak with ``chunk`` voxels per chunk and ``alphas_batch`` alphas per himalaya batch."""
    return int(SAFETY * (fixed_bytes(s, alphas_batch) + chunk * voxel_bytes(s, alphas_batch)))


def plan_variance(s: VarianceShape, budget_bytes: int | None) -> VariancePlan:
    """The largest voxel chunk whose peak stays within ``budget_bytes`` (None: all voxels at once).

    All alphas go in one himalaya batch when every voxel fits with them (the
    fastest on a CPU); otherwise one alpha per batch, which makes the same
    products with a single resolution matrix alive. Raises MemoryError
    naming the memory needed and the ``mem_mb`` to raise when even
    ``MIN_CHUNK`` voxels do not fit.
    """
    whole = peak_at_chunk(s, s.n_voxels, s.n_alphas)
    if budget_bytes is None or whole <= budget_bytes:
        return VariancePlan(s.n_voxels, whole, s.n_alphas)
    need = peak_at_chunk(s, MIN_CHUNK)
    if need > budget_bytes:
        raise MemoryError(
            f"a variance-partitioning job of {s.n_voxels} voxels x {s.n_lm} + {s.n_low} band columns "
            f"({s.n_train} training TRs) needs at least {need / 1e9:.1f} GB ({fixed_bytes(s) / 1e9:.1f} GB before "
            f"its first voxel), more than its budget of {budget_bytes / 1e9:.1f} GB: raise mem_mb of rule "
            f"variance in profiles/default/config.yaml to at least {math.ceil(need / 2**20 / 1000) * 1000}")
    # peak_at_chunk is linear in the chunk: the largest that fits, directly
    chunk = int((budget_bytes / SAFETY - fixed_bytes(s)) // voxel_bytes(s))
    while peak_at_chunk(s, chunk) > budget_bytes:  # int() rounding of the peak
        chunk -= 1
    chunk = max(MIN_CHUNK, min(chunk, s.n_voxels))
    return VariancePlan(chunk, peak_at_chunk(s, chunk), 1)


def variance_peak_bytes(s: VarianceShape, budget_bytes: int | None) -> int:
    """The job's planned peak under ``budget_bytes`` (MemoryError as :func:`plan_variance`)."""
    return plan_variance(s, budget_bytes).peak_bytes


# Activation-cache rows per TR of speech (about 2.5 words/s at a 2 s TR).
WORDS_PER_TR = 5


def shape_from_config(train_samples: int, test_samples: int, channels: int, d_model: int, n_blocks: int,
                      encoding: dict, variance: dict) -> VarianceShape:
    """A job's shape from a subject's samples and channels, the model's width and blocks, and the config
    sections ``encoding`` (delays, trim, alphas, folds) and ``variance`` (layers, n_iter, n_perm)."""
    d, trim = len(encoding["delays"]), 2 * encoding["trim"]
    layers = n_blocks + 1 if variance["layers"] == "all" else len(variance["layers"])
    # The job reads the runs one at a time: at most about the test run's worth of raw data.
    return VarianceShape(n_train=max(1, train_samples - trim), n_test=max(1, test_samples - trim), n_lm=d_model * d,
                         n_low=3 * d, n_voxels=channels, n_alphas=encoding["alphas"]["num"],
                         n_folds=encoding["cv_splits"], n_iter=variance["n_iter"], n_perm=variance["n_perm"],
                         n_layers=layers, n_units=WORDS_PER_TR * (train_samples + test_samples), d_model=d_model,
                         brain_bytes=test_samples * channels * 4,
                         solver_on_host=encoding.get("backend") not in ("torch_cuda",))


def _thin_svd_flops(rows: int, cols: int) -> float:
    r, big = min(rows, cols), max(rows, cols)
    return 6.0 * big * r * r + 20.0 * r**3  # R-SVD with U and V (Golub & Van Loan, table 5.4.1)


def variance_flops(s: VarianceShape, chunk: int, block_size: int = 10) -> float:
    """Floating-point operations of one layer's three fits and the permutation test, ``chunk`` voxels at a time.

    Counted from himalaya's products (module docstring): per band weighting
    and fold, the SVD, per alpha the resolution matrix, its product with the
    validation rows and the validation predictions; per band weighting the
    refit (an upper bound: himalaya refits only voxels whose score improved,
    with the alphas they use). What does not depend on the voxels is paid
    once per chunk.
    """
    n, m, V, A, K = s.n_train, s.n_test, s.n_voxels, s.n_alphas, s.n_folds
    n_val = n // K
    n_fit = n - n_val
    n_chunks = -(-V // max(1, chunk))
    per_chunk = per_voxel = 0.0
    for width, searches in ((s.n_lm, 1), (s.n_low, 1), (s.n_lm + s.n_low, s.n_iter)):
        r = min(width, n_fit)
        fold = _thin_svd_flops(n_fit, width) + A * (2.0 * width * r * n_fit + 2.0 * n_val * width * n_fit)
        refit = _thin_svd_flops(n, width) + A * 2.0 * width * min(width, n) * n
        per_chunk += searches * (K * fold + refit)
        per_voxel += searches * (K * A * (2.0 * n_val * n_fit + 3.0 * n_val) + A * 2.0 * width * n) + 2.0 * m * width
    n_blocks = max(1, m // block_size)
    per_voxel += 2.0 * m * n_blocks + (s.n_perm + 1) * n_blocks
    return n_chunks * per_chunk + V * per_voxel
