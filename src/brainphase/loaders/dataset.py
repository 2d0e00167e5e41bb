"""One entry point from a dataset's config entry to its contracts, whatever its format.

The workflow loads each subject once (``load_subject``), writes the subject's
brain file with the subject's own unit timings, and builds the dataset's one
stimulus set from every subject's units (``merge_stimuli``): subjects of a real
study hear the same stories, but each recording starts at its own moment and
some subjects miss some runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..contracts.brain import EVENT_COLUMNS, BrainRun
from ..contracts.stimuli import DataError
from .registry import get_loader


@dataclass
class LoadedSubject:
    """One subject as any loader gives it: ``tr`` for fMRI, ``sfreq`` for MEG/EEG (the other None)."""

    stimuli: pd.DataFrame
    runs: dict[str, BrainRun]
    tr: float | None
    sfreq: float | None
    coords: np.ndarray


def loader_options(source: str) -> list[str]:
    """The keyword arguments of ``source``'s loader that a config entry may set (after root and subject)."""
    return get_loader(source).options()


def load_subject(source: str, path: str | Path, subject: str, options: dict[str, Any] | None = None
                 ) -> LoadedSubject:
    """Load one subject of a dataset with its source's loader; ``options`` are the loader's keywords."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(loader_options(source)))
    if unknown:
        raise DataError(f"dataset options {unknown} are not arguments of the {source} loader; it takes "
                        f"{loader_options(source)}")
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: dataset folder missing; download the dataset there or fix the dataset's path")
    out = get_loader(source).load_function()(root, subject, **options)
    if get_loader(source).kind == "meg":
        return LoadedSubject(out.stimuli, out.runs, None, out.sfreq, out.coords)
    return LoadedSubject(out.stimuli, out.runs, out.tr, None, out.coords)


def subject_inputs(source: str, path: str | Path, subject: str, options: dict[str, Any] | None = None) -> list[str]:
    """The files ``source``'s loader reads for ``subject`` of the dataset at ``path``, those on disk only.

    The workflow's load job declares them as inputs, so a user's edit of a
    TextGrid, response or events file loads that subject again (and what reads
    it downstream), and nothing else. Missing folders give no files rather than
    an error: a dry run must plan the DAG before the data are downloaded.
    """
    files = get_loader(source).inputs_function()(Path(path), subject, **dict(options or {}))
    return [str(f) for f in files]


def subject_events(stimuli: pd.DataFrame) -> pd.DataFrame:
    """The subject's own unit timings, as stored in its brain file."""
    return stimuli.loc[:, list(EVENT_COLUMNS)].reset_index(drop=True)


def merge_stimuli(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The dataset's stimulus set: every unit any subject heard, once, ordered by run and position.

    A unit is its ``unit_id`` (``{run}_{i:05d}``); two subjects giving the same id
    different text means their recordings hold different word lists for the
    run (an event file cut short, say) — an error naming both. Onsets and
    offsets are the first subject's; each subject's own are in its brain file.
    """
    if not tables:
        raise ValueError("merge_stimuli needs at least one subject's table")
    seen: dict[str, tuple[str, str, str]] = {}
    frames = []
    for subject, table in tables.items():
        for uid, run, text in zip(table["unit_id"], table["run"], table["text"]):
            other = seen.get(uid)
            if other is None:
                seen[uid] = (subject, run, text)
            elif other[1:] != (run, text):
                raise DataError(f"unit {uid}: subject {other[0]} heard {other[2]!r} in run {other[1]}, subject "
                                f"{subject} heard {text!r} in run {run}; their event files list different words "
                                "for the run — fix the events or load the subjects as separate datasets")
        frames.append(table)
    merged = pd.concat(frames, ignore_index=True).drop_duplicates("unit_id", keep="first")
    run_order = {r: i for i, r in enumerate(dict.fromkeys(merged["run"]))}
    merged = merged.assign(_run=merged["run"].map(run_order)).sort_values(["_run", "word_index"], kind="stable")
    return merged.drop(columns="_run").reset_index(drop=True)
