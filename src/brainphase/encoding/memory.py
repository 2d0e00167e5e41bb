"""How much memory an encoding job holds, and how many voxels it fits at once within a budget.

One formula serves the job (which picks its voxel chunk from it) and the
dry-run plan (which prints the job's peak from it). It counts the arrays the
code allocates, term by term: what the job holds for its whole life (the
subject's responses, one layer's design, the factorised folds) and what each
voxel of a chunk adds (its training and test series, weights, predictions,
permutation sums). ``tests/test_encoding_memory.py`` measures a job's peak
resident memory against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .backends import CONCURRENT_EIGH_MAX_RANK
from .scoring import scoring_costs

# The ridge's inner per-target temporaries are bounded by ridge._CHUNK_ELEMENTS
# (x 4 bytes, x 2 for the copies alive together); the permutation table by
# stats._MAX_BLOCK_TABLE float64 elements.
_RIDGE_TEMPORARIES = 2**26 * 4 * 2
_PERMUTATION_TABLE = 2**22 * 8 * 2
# numpy, scipy, scikit-learn, pandas, safetensors and h5py imported, before any
# data (measured: ~200 MB), plus BLAS thread buffers.
INTERPRETER_BYTES = 300 * 2**20
# Allocator slack and temporaries too small to count one by one.
SAFETY = 1.1
# Fewest voxels per chunk worth a pass over the folds.
MIN_CHUNK = 64


@dataclass(frozen=True)
class EncodingShape:
    """The sizes an encoding job's memory depends on."""

    n_train: int
    """Training TRs (all training runs, after trimming)."""
    n_test: int
    """Test TRs (after trimming; repeats averaged)."""
    n_features: int
    """Columns of the design: width of the layer x number of delays."""
    n_voxels: int
    """Voxels (or channels) of the subject."""
    n_alphas: int = 10
    n_folds: int = 5
    n_perm: int = 1000
    n_units: int = 0
    """Rows of the activation cache (stimulus units)."""
    d_model: int = 0
    """Width of one layer of the activation cache."""
    brain_bytes: int = 0
    """The subject's brain file as read into memory (every run and repeat)."""


@dataclass(frozen=True)
class EncodingPlan:
    voxel_chunk: int
    """Voxels fitted and scored together."""
    keep_bases: bool
    """Whether the folds' factors are kept between chunks (else recomputed per chunk)."""
    peak_bytes: int
    """The job's predicted peak resident memory."""


def _rank(s: EncodingShape) -> int:
    return min(s.n_features, s.n_train)


def basis_bytes(s: EncodingShape) -> int:
    """One fold's factors: eigenvectors (float64 while built, float32 projections), the rank x rank scoring
    factor (partial fractions or triangle) with its temporaries, and the held-out rows."""
    r, f = _rank(s), s.n_features
    n_te = -(-s.n_train // s.n_folds)
    dual = f > s.n_train
    square = r * r * (8 + 4 + 8) + min(s.n_alphas * r * r * 2, 2**26 * 4 * 2)  # scaled triangles: one batch
    rows = n_te * r * (8 + 8 + 4 + 4) + (0 if dual else n_te * f * (8 + 4))
    return square + rows


def fixed_bytes(s: EncodingShape, keep_bases: bool) -> int:
    """What the job holds whatever its chunk: responses, one layer's design, the factorised folds."""
    n, f, v = s.n_train + s.n_test, s.n_features, s.n_voxels
    responses = s.brain_bytes + n * v * 4
    layer = s.n_units * s.d_model * (2 + 8) + n * f * 8 * 2  # float16 cache, float64 resampled and delayed
    gram = s.n_train * s.n_train * 8 if f > s.n_train else f * f * 8
    design = s.n_train * f * (4 + 8) + gram + 2 * _rank(s) ** 2 * 8  # float32 and float64 copies, eigh workspace
    # Not kept, a fold's factors are freed only once the next fold's exist.
    bases = (s.n_folds + 1) * basis_bytes(s) if keep_bases else 2 * basis_bytes(s)
    return INTERPRETER_BYTES + responses + layer + design + bases + concurrent_eigh_bytes(s) + _PERMUTATION_TABLE


def concurrent_eigh_bytes(s: EncodingShape) -> int:
    """Gram matrices and eigenvectors of every fold (and all samples), held together while they are
    diagonalised at once (:meth:`~brainphase.encoding.backends.Backend.eigh_many`; small ranks only)."""
    r = _rank(s)
    return (s.n_folds + 1) * 2 * r * r * 8 if r <= CONCURRENT_EIGH_MAX_RANK else 0


def voxel_bytes(s: EncodingShape) -> int:
    """What each voxel of a chunk adds: its series, weights, predictions and permutation sums."""
    train = s.n_train * (4 + 4)  # the chunk's training series and their centred copy
    weights = s.n_features * (4 + 4 + 8)  # X^T Y, weights and their float64 copy
    test = s.n_test * (4 + 8 + 8 * 4)  # series, prediction, standardised copies for the statistics
    return train + weights + test + s.n_alphas * 16 + (s.n_perm + 1) * 8


def peak_bytes(s: EncodingShape, chunk: int, keep_bases: bool) -> int:
    """The job's peak with ``chunk`` voxels per chunk."""
    ridge = min(chunk * (s.n_train + 5 * s.n_features) * 4 * 2, _RIDGE_TEMPORARIES)
    return int(SAFETY * (fixed_bytes(s, keep_bases) + chunk * voxel_bytes(s) + ridge))


def plan_encoding(s: EncodingShape, budget_bytes: int | None) -> EncodingPlan:
    """The largest voxel chunk whose peak stays within ``budget_bytes`` (None: all voxels at once).

    Raises MemoryError naming the shortfall when even ``MIN_CHUNK`` voxels do not fit.
    """
    whole = peak_bytes(s, s.n_voxels, keep_bases=False)
    if budget_bytes is None or whole <= budget_bytes:
        return EncodingPlan(s.n_voxels, False, whole)
    for keep in (True, False):  # keeping the factors saves the eigendecompositions of every later chunk
        if peak_bytes(s, MIN_CHUNK, keep) > budget_bytes:
            continue
        lo, hi = MIN_CHUNK, s.n_voxels  # peak is increasing in the chunk: bisect the largest that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if peak_bytes(s, mid, keep) <= budget_bytes else (lo, mid - 1)
        return EncodingPlan(lo, keep, peak_bytes(s, lo, keep))
    need = peak_bytes(s, MIN_CHUNK, False)
    raise MemoryError(
        f"an encoding job of {s.n_voxels} voxels x {s.n_features} features ({s.n_train} training TRs) needs at "
        f"least {need / 1e9:.1f} GB ({fixed_bytes(s, False) / 1e9:.1f} GB before its first voxel), more than its "
        f"budget of {budget_bytes / 1e9:.1f} GB: raise mem_mb of rule encoding in "
        f"profiles/default/config.yaml")


def fit_flops(s: EncodingShape, block_size: int = 10) -> float:
    """Floating-point operations of one layer's fit and scoring, the work the dry-run plan scales by.

    Counted from the products the solver makes (primal form; the dual's are
    alike with the training TRs as rank): the Gram matrix, one
    eigendecomposition per fold and for the refit (~9 r^3 each), ``X^T Y``,
    per fold the eigenbasis projections and the held-out scoring products
    (:func:`~brainphase.encoding.scoring.scoring_costs`, the cheaper method),
    the refit and the test predictions, and the block
    permutations. A benchmark divides this count at its own shape by its
    measured time, which makes the rate the plan uses.
    """
    T, F, V, te = s.n_train, s.n_features, s.n_voxels, s.n_test
    r = min(F, T)
    fold_te = T / s.n_folds
    setup = 2.0 * T * F * r + (s.n_folds + 1) * 9.0 * r**3 + 2.0 * T * F * V
    scoring = min(scoring_costs(int(fold_te), r, s.n_alphas).values())
    folds = s.n_folds * V * (2.0 * F * r + 2.0 * fold_te * r + 2.0 * scoring)
    refit = V * (4.0 * F * r + 2.0 * te * F)
    n_blocks = max(1, te // block_size)
    permutations = V * (2.0 * te * n_blocks + (s.n_perm + 1) * n_blocks)
    return setup + folds + refit + permutations
