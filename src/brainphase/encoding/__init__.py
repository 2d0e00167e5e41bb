"""Voxelwise fMRI encoding models (METHODS §3): resampling, delays, ridge, statistics."""

from .delays import fir_delays, prepare_design, prepare_responses, trim, zscore_runs
from .model import EncodingResult, fit_encoding
from .resample import lanczos_kernel, lanczos_resample, overlap_mean
from .ridge import GroupedRidgeCV, grouped_splits
from .stats import (
    NoiseCeiling,
    block_permutation_pvalues,
    constant_columns,
    fdr_bh,
    noise_ceiling,
    pearson_columns,
)

__all__ = [
    "EncodingResult",
    "GroupedRidgeCV",
    "NoiseCeiling",
    "block_permutation_pvalues",
    "constant_columns",
    "fdr_bh",
    "fir_delays",
    "fit_encoding",
    "grouped_splits",
    "lanczos_kernel",
    "lanczos_resample",
    "noise_ceiling",
    "overlap_mean",
    "pearson_columns",
    "prepare_design",
    "prepare_responses",
    "trim",
    "zscore_runs",
]
