"""How much memory the lag x layer fit holds, and how many lags it fits at once within a budget.

One formula serves the fit (:func:`brainphase.temporal.lagged_ridge.lag_layer_scores`
with ``budget_bytes``, which picks its lags per chunk from it) and the
dry-run plan (:func:`temporal_peak_bytes`). It counts the arrays the code
allocates, term by term, as an upper bound: what the fit holds for its whole
life (the inputs, the centred targets, one fold's targets, the accumulated
sums), what each lag of a chunk adds (its epochs in float64, the standardised
design and its SVD, ``Z = U^T Y``, the held-out predictions), and the
chunk's products, which the fit bounds in elements (``max_elements``).
``tests/test_temporal.py`` measures a fit's peak resident memory against it.
"""

from __future__ import annotations

from dataclasses import dataclass

# numpy, scipy and scikit-learn imported, before any data (measured ~190 MB;
# a workflow job also has pandas), plus BLAS buffers.
INTERPRETER_BYTES = 250 * 2**20
# Bytes per element of max_elements that the chunk's products hold at once,
# at worst: the exact criterion's weighted bases (float64 when its float32
# screening is off, all alphas' ranks kept) with one lag's float64 copy and
# its column block's products (8 + 8 + 8); the float32 criterion's bases and
# products take 4 + 14.
_CHUNK_BYTES_PER_ELEMENT = 24
# The fit's bound on its products' elements when it is given no budget (2^24
# float64 = 128 MB per array).
DEFAULT_MAX_ELEMENTS = 2**24
DEFAULT_ALPHAS = 13
DEFAULT_SPLITS = 5


@dataclass(frozen=True)
class TemporalShape:
    """The sizes a temporal fit's memory depends on."""

    n_words: int
    n_channels: int
    n_lags: int
    n_columns: int
    """Target columns of all layers (n_layers x dim)."""
    n_fit: int
    """Fitted columns: n_columns, or n_layers x pca."""
    n_train: int
    """Words of the largest training fold."""
    n_test: int
    """Words of the largest held-out fold."""
    n_alphas: int = DEFAULT_ALPHAS
    n_folds: int = DEFAULT_SPLITS
    brain_itemsize: int = 4
    """Bytes per element of the epochs as passed (float32 from the workflow)."""
    pca: bool = False
    predictions: bool = False

    @property
    def rank(self) -> int:
        return min(self.n_train, self.n_channels)


def fixed_bytes(s: TemporalShape) -> int:
    """What the fit holds whatever its chunk: inputs, centred targets, one fold's targets, the sums."""
    N, M, T = s.n_words, s.n_columns, s.n_lags
    inputs = N * s.n_channels * T * s.brain_itemsize + N * M * 8  # epochs; targets as float64
    targets = N * M * 8  # all layers' columns, centred
    # one fold: centred training targets, their squares, float32 copy; held-out targets;
    # with pca the training columns before projection
    fold = s.n_train * s.n_fit * (8 + 8 + 4) + s.n_test * M * 8 + (s.n_train * M * 8 if s.pca else 0)
    sums = (3 + 4) * T * M * 8 + s.n_folds * T * s.n_fit * 8  # P, P^2, P Y; r and its temporaries; alphas
    predictions = T * N * M * 8 if s.predictions else 0
    return INTERPRETER_BYTES + inputs + targets + fold + sums + predictions


def lag_bytes(s: TemporalShape) -> int:
    """What each lag of a chunk adds outside its products: epochs, SVD, Z and the held-out predictions."""
    n, c = s.n_train, s.n_channels
    design = s.n_words * c + 4 * n * c + 2 * n * c  # float64 epochs; standardised copies and U; U^T, U^2
    weights = 4 * s.n_alphas * n  # leverages and the LOO weights with their temporaries
    coords = 3 * c * s.n_fit  # Z and the alpha-scaled coordinates
    held_out = 3 * s.n_test * c + s.n_test * s.n_fit + (s.n_test * s.n_columns if s.pca else 0)
    return 8 * (design + weights + coords + held_out)


def chunk_elements(s: TemporalShape, lags: int) -> int:
    """``max_elements`` of a chunk of ``lags`` lags: its weighted bases, (lags x alphas x rank x n_train)."""
    return lags * s.n_alphas * s.rank * s.n_train


def default_lags(s: TemporalShape, max_elements: int = DEFAULT_MAX_ELEMENTS) -> int:
    """Lags per chunk without a budget: as many as ``max_elements`` holds (at least one)."""
    return int(min(s.n_lags, max(1, max_elements // chunk_elements(s, 1))))


def fit_peak_bytes(s: TemporalShape, lags: int, max_elements: int = 0) -> int:
    """The fit's peak with ``lags`` lags per chunk and products bounded by ``max_elements``
    (0: by the chunk's weighted bases, as with a budget)."""
    products = max(max_elements, chunk_elements(s, lags))
    return fixed_bytes(s) + lags * lag_bytes(s) + _CHUNK_BYTES_PER_ELEMENT * products


def lags_per_chunk(s: TemporalShape, budget_bytes: int) -> int:
    """The most lags per chunk whose peak stays within ``budget_bytes``.

    Raises MemoryError naming the shortfall when even one lag does not fit.
    """
    if fit_peak_bytes(s, 1) > budget_bytes:
        need = fit_peak_bytes(s, 1)
        raise MemoryError(
            f"a temporal fit of {s.n_words} words x {s.n_channels} channels x {s.n_lags} lags onto "
            f"{s.n_columns} target columns needs at least {need / 1e9:.2f} GB ({fixed_bytes(s) / 1e9:.2f} GB "
            f"before its first lag), more than its budget of {budget_bytes / 1e9:.2f} GB: raise mem_mb of rules "
            f"temporal and temporal_context (profiles/default/config.yaml, or `--set-resources "
            f"temporal:mem_mb=<MB>`), or fit fewer columns (temporal.pca)")
    per_lag = lag_bytes(s) + _CHUNK_BYTES_PER_ELEMENT * chunk_elements(s, 1)
    return int(min(s.n_lags, 1 + (budget_bytes - fit_peak_bytes(s, 1)) // per_lag))


def temporal_peak_bytes(n_words: int, n_channels: int, n_lags: int, n_layers: int, dim: int,
                        budget_bytes: int | None, *, n_alphas: int = DEFAULT_ALPHAS,
                        n_splits: int = DEFAULT_SPLITS, pca: int | None = None) -> int:
    """Peak memory of one temporal job (one checkpoint, one subject) given its budget.

    The epochs come as float32 and the layers as float64 (as
    ``temporal.pipeline.temporal_table`` passes them); folds are taken as
    balanced. With ``budget_bytes`` the fit takes as many lags per chunk as
    fit in it (MemoryError when one lag does not); None: as many as the
    default bound on its products holds.
    """
    n_test = -(-n_words // n_splits)
    n_fit = n_layers * (dim if pca is None else min(int(pca), dim))
    s = TemporalShape(n_words, n_channels, n_lags, n_layers * dim, n_fit, n_words - n_words // n_splits, n_test,
                      n_alphas, n_splits, pca=pca is not None)
    if budget_bytes is None:
        return fit_peak_bytes(s, default_lags(s), DEFAULT_MAX_ELEMENTS)
    return fit_peak_bytes(s, min(lags_per_chunk(s, budget_bytes), default_lags(s)))  # as the fit chooses
