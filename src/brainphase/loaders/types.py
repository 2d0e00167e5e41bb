"""What every loader returns, and the voxel checks the fMRI loaders share."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..contracts.brain import BrainRun
from ..contracts.stimuli import DataError

log = logging.getLogger(__name__)

BAD_VOXEL_POLICIES = ("raise", "drop")


class LoadedFMRI(NamedTuple):
    """One fMRI subject as a loader returns it."""

    stimuli: pd.DataFrame  # one row per word, the stimulus contract (+ word_index, split, extras)
    runs: dict[str, BrainRun]  # run name -> (TRs x voxels) float32, split train/test
    tr: float  # seconds per volume; volume i is centred at (i + 0.5) * tr on the onsets' clock
    coords: np.ndarray  # (voxels, 1) column index, or (voxels, 3) millimetres


class MEGBids(NamedTuple):
    """One MEG/EEG subject as a loader returns it."""

    stimuli: pd.DataFrame  # one row per word, the stimulus contract (+ word_index, split, extras)
    runs: dict[str, BrainRun]  # run name -> (samples x channels) float32, split "train"
    sfreq: float  # samples per second (after resampling)
    coords: np.ndarray  # (channels, 2) sensor positions projected to 2-D as for an MNE topomap
    ch_names: list[str]


def drop_bad_voxels(runs: Mapping[str, np.ndarray], files: Mapping[str, Path], coords: np.ndarray,
                    policy: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Voxels with NaN/inf or no variance in any run: raise (``policy="raise"``) or drop them everywhere."""
    if policy not in BAD_VOXEL_POLICIES:
        raise ValueError(f"bad_voxels must be one of {BAD_VOXEL_POLICIES}, got {policy!r}")
    bad = np.zeros(coords.shape[0], bool)
    first = None  # (run, count) of the first run with bad voxels
    for name, data in runs.items():
        this = ~np.isfinite(data).all(0)
        ok = ~this
        this[ok] = data[:, ok].max(0) == data[:, ok].min(0)
        if this.any() and first is None:
            first = (name, int(this.sum()))
        bad |= this
    if first is None:
        return dict(runs), coords
    name, count = first
    if policy == "raise":
        raise DataError(f"{files[name]}: {count} voxel(s) hold NaN/inf or are constant ({int(bad.sum())} over "
                        "all runs); pass bad_voxels='drop' to drop them from every run, or tighten the mask")
    log.warning("dropping %d of %d voxels that hold NaN/inf or are constant in some run (first in %s)",
                int(bad.sum()), bad.size, files[name])
    keep = ~bad
    return {k: np.ascontiguousarray(v[:, keep]) for k, v in runs.items()}, coords[keep]
