"""Timed text events of one run -> rows of the stimulus contract; shared by every real-data loader.

A loader finds a run's words (or annotation texts) and their onsets in its own
format; from there all of them do the same thing: order by onset, drop events
outside the recording, give each an offset, number them ``{run}_{i:05d}`` and
keep the format's extra columns without clobbering the contract's own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..stimuli import DataError

log = logging.getLogger(__name__)

# Stimulus-table columns the loaders write themselves; event keys with these names get an ``event_`` prefix.
OWN_COLUMNS = ("unit_id", "run", "text", "lang", "onset", "offset", "word_index", "split", "duration")


def read_events_tsv(path: str | Path) -> pd.DataFrame:
    """A BIDS ``*_events.tsv`` read as text: only ``n/a`` and empty cells are missing.

    pandas' default NA list would turn the words "null", "NA" or "nan" into
    missing values, and they are words a story can contain.
    """
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=["n/a", ""])


def clean_extras(words: pd.DataFrame) -> pd.DataFrame:
    """Extra columns as numbers when they all are, else as strings (parquet needs one type a column)."""
    for col in words.columns:
        if col in OWN_COLUMNS:
            continue
        values = words[col]
        num = pd.to_numeric(values, errors="coerce")
        if values.notna().equals(num.notna()):
            words[col] = num
        else:
            words[col] = values.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    return words


def event_offsets(onset: np.ndarray, duration: np.ndarray, run_end: float) -> np.ndarray:
    """onset + duration; where the duration is missing or negative, the next event's onset.

    A duration of 0 is BIDS's impulse event (punctuation, say): the offset is the onset.
    """
    nxt = np.append(onset[1:], np.nan)
    gaps = np.diff(onset)
    gaps = gaps[gaps > 0]
    last = onset[-1] + (np.median(gaps) if len(gaps) else 0.0) if len(onset) else np.nan
    nxt[-1:] = last
    good = np.isfinite(duration) & (duration >= 0)
    off = np.where(good, onset + np.where(good, duration, 0.0), nxt)
    off = np.maximum(off, onset)
    return np.minimum(off, run_end)


def words_to_stimuli(words: pd.DataFrame, run: str, lang: str, run_end: float, split: str,
                     source: str | Path, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """Stimulus-contract rows of one run from a table with ``onset`` (s), ``text`` and optional ``duration``.

    Events are ordered by onset (stable), those outside ``[0, run_end)`` are
    dropped with a warning naming ``source``; an empty result is an error. Other
    columns except ``drop`` are kept, ``event_``-prefixed where they clash with
    the contract's own.
    """
    words = words.copy()
    words["onset"] = pd.to_numeric(words["onset"], errors="coerce").astype(float)
    words["duration"] = (pd.to_numeric(words["duration"], errors="coerce") if "duration" in words.columns
                         else np.nan)
    words = words.sort_values("onset", kind="stable").reset_index(drop=True)
    inside = (words["onset"] >= 0) & (words["onset"] < run_end)
    if not inside.all():
        log.warning("%s: %d of %d events lie outside the run (0 to %.1f s); dropped",
                    source, int((~inside).sum()), len(words), run_end)
        words = words[inside].reset_index(drop=True)
    if words.empty:
        raise DataError(f"{source}: every event lies outside the run (0 to {run_end:.1f} s); the events "
                        "belong to another run or the onsets are not in seconds")
    onset = words["onset"].to_numpy(float)
    out = pd.DataFrame({
        "unit_id": [f"{run}_{i:05d}" for i in range(len(words))], "run": run,
        "text": words["text"].astype(str).to_numpy(), "lang": lang, "onset": onset,
        "offset": event_offsets(onset, words["duration"].to_numpy(float), run_end),
        "word_index": np.arange(len(words)), "split": split})
    extras = words.drop(columns=[c for c in ("onset", "duration", "text", *drop) if c in words.columns])
    extras = extras.rename(columns={c: f"event_{c}" for c in extras.columns if c in OWN_COLUMNS})
    return pd.concat([out, extras.reset_index(drop=True)], axis=1)
