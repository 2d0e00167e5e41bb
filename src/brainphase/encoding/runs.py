"""A stimulus table and a subject's BOLD runs as per-run arrays on the TR grid.

Kept apart from the ridge machinery so analyses that only need the inputs (the
crosscoder) do not import scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .resample import lanczos_resample, overlap_mean

RESAMPLERS = ("lanczos", "overlap")


def runs_by_split(stimuli: pd.DataFrame, brain) -> tuple[list[str], list[str]]:
    runs = list(dict.fromkeys(stimuli["run"]))
    train = [r for r in runs if brain.runs[r].split == "train"]
    test = [r for r in runs if brain.runs[r].split == "test"]
    if not train or not test:
        raise ValueError(f"encoding needs train and test runs; got train={train}, test={test}")
    return train, test


def features_per_run(acts: np.ndarray, stimuli: pd.DataFrame, brain, runs: list[str],
                     resample: str = "lanczos") -> list[np.ndarray]:
    """Unit activations -> TR features, one array per run (rows of ``acts`` follow ``stimuli``).

    ``lanczos``: words, as points at their midpoints, Lanczos-interpolated to the
    TR centres (Huth et al. 2016). ``overlap``: annotation units (one text per
    second or scene), the mean of the units overlapping each TR.
    """
    if resample not in RESAMPLERS:
        raise ValueError(f"unknown resampling {resample!r}; use one of {RESAMPLERS}")
    out = []
    for run in runs:
        rows = np.flatnonzero(stimuli["run"].to_numpy() == run)
        w = stimuli.iloc[rows]
        if resample == "overlap":
            out.append(overlap_mean(acts[rows], w["onset"].to_numpy(float), w["offset"].to_numpy(float),
                                    brain.tr_times(run), brain.tr))
            continue
        word_times = ((w["onset"] + w["offset"]) / 2).to_numpy()
        out.append(lanczos_resample(acts[rows], word_times, brain.tr_times(run)))
    return out
