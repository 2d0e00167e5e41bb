"""Voxelwise fMRI encoding models: resampling, delays, ridge, statistics.

Names resolve on first use (PEP 562): jobs that only need resampling or delays
(the crosscoder's inputs) do not pay for importing scikit-learn.
"""

from importlib import import_module

_WHERE = {
    "delays_in_trs": "delays", "fir_delays": "delays", "prepare_design": "delays", "prepare_responses": "delays",
    "trim": "delays", "zscore_runs": "delays",
    "EncodingSettings": "settings", "alpha_grid": "settings",
    "EncodingResult": "model", "fit_encoding": "model",
    "lanczos_kernel": "resample", "lanczos_resample": "resample", "overlap_mean": "resample",
    "GroupedRidgeCV": "ridge", "grouped_splits": "ridge",
    "NoiseCeiling": "stats", "block_permutation_pvalues": "stats", "constant_columns": "stats", "fdr_bh": "stats",
    "noise_ceiling": "stats", "pearson_columns": "stats",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
