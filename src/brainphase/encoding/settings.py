"""Settings of the voxelwise encoding analysis, read once from the ``encoding`` config section."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def alpha_grid(section: dict) -> np.ndarray:
    """The ridge penalties of a config section's ``alphas: {start, stop, num}``: a log10-spaced grid."""
    a = section["alphas"]
    return np.logspace(a["start"], a["stop"], a["num"])


@dataclass
class EncodingSettings:
    """How :func:`~brainphase.encoding.pipeline.encode_layers` fits and scores every layer."""

    delays: list[int]
    """FIR delays in TRs (samples of the brain data), not seconds: the features
    at ``t - d`` TRs predict the response at ``t`` (hemodynamic lag)."""
    trim: int
    """TRs dropped at each end of every run, after delaying."""
    alphas: np.ndarray
    """Ridge penalties searched per voxel (``alpha ||w||^2``, himalaya/scikit-learn convention)."""
    cv_splits: int
    """Folds of the run-grouped cross-validation that picks each voxel's alpha."""
    n_perm: int
    """Block permutations of the test set per voxel for the p-values."""
    block_size: int
    """TRs per block, for the permutations and the bootstrap."""
    fdr_q: float
    """Benjamini–Hochberg level over the scored voxels."""
    seed: int
    """Seed of the permutations and the bootstrap draws (the same at every checkpoint)."""
    backend: str = "auto"
    """Array library of the ridge solver: "auto", "numpy", "torch" or "torch_cuda"."""
    resample: str = "lanczos"
    """Units to TRs: "lanczos" for words, "overlap" for annotations (one text per second or scene)."""
    n_boot: int = 0
    """TR-block bootstrap replicates of the test set's mean r per layer (0: none)."""

    @classmethod
    def from_config(cls, enc: dict, seed: int, resample: str = "lanczos", n_boot: int = 0) -> EncodingSettings:
        """Settings from the config's ``encoding`` section; its ``delays`` are already in TRs."""
        return cls(delays=list(enc["delays"]), trim=enc["trim"], alphas=alpha_grid(enc), cv_splits=enc["cv_splits"],
                   n_perm=enc["n_perm"], block_size=enc["block_size"], fdr_q=enc["fdr_q"], seed=seed,
                   backend=enc["backend"], resample=resample, n_boot=n_boot)
