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

from ..contracts.stimuli import DataError, check_timings, show_value, utf8_error

log = logging.getLogger(__name__)

# Stimulus-table columns the loaders write themselves; event keys with these names get an ``event_`` prefix.
OWN_COLUMNS = ("unit_id", "run", "text", "lang", "onset", "offset", "word_index", "split", "duration")
BAD_TIME_POLICIES = ("error", "warn")


def read_events_tsv(path: str | Path) -> pd.DataFrame:
    """A BIDS ``*_events.tsv`` read as text: only ``n/a`` and empty cells are missing.

    pandas' default NA list would turn the words "null", "NA" or "nan" into
    missing values, and they are words a story can contain.
    """
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=["n/a", ""])
    except UnicodeDecodeError as err:
        raise utf8_error(path, "save the events file as UTF-8 (BIDS text files are UTF-8)") from err
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: not a tab-separated table ({err}); fix the row it names (a cell count that "
                        "differs from the header's)") from err


def parse_times(words: pd.DataFrame, path: str | Path, on_bad: str = "error", lines: bool = True,
                fix: str = "") -> pd.DataFrame:
    """``onset`` (and ``duration`` where given) as seconds; a value that is not a number is an error.

    ``words`` are event rows still holding the file's text, indexed by their row
    in the file (``lines``: the TSV line is the index + 2, after the header).
    Onsets must be finite numbers; a duration may be missing (``n/a``: the next
    onset is used) but not unparsable. ``on_bad="warn"`` drops such rows with a
    warning that counts them instead. A decimal comma or an ``n/a`` onset would
    otherwise drop its word without a trace. ``fix`` is appended to the error.
    """
    if on_bad not in BAD_TIME_POLICIES:
        raise ValueError(f"on_bad_onset must be one of {BAD_TIME_POLICIES}, got {on_bad!r}")
    onset = pd.to_numeric(words["onset"], errors="coerce").astype(float)
    bad = ~np.isfinite(onset.to_numpy())
    duration = None
    if "duration" in words.columns:
        duration = pd.to_numeric(words["duration"], errors="coerce").astype(float)
        bad |= (duration.isna() & words["duration"].notna()).to_numpy()
    if bad.any():
        first = words.index[np.flatnonzero(bad)[0]]
        where = f"line {int(first) + 2}" if lines else f"row {first}"
        raw = ", ".join(f"{c} {show_value(words.loc[first, c])}" for c in ("onset", "duration")
                        if c in words.columns)
        msg = (f"{path}: {int(bad.sum())} of {len(words)} word events have an onset or duration that is not a "
               f"number (first at {where}: {raw}); BIDS times are seconds with a decimal point")
        if on_bad == "error":
            raise DataError(f"{msg} — fix those rows (a decimal comma, an n/a onset){fix}")
        log.warning("%s; dropped those %d word event(s) (on_bad_onset: warn)", msg, int(bad.sum()))
    words = words.assign(onset=onset)
    if duration is not None:
        words["duration"] = duration
    return words[~bad]


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
    missing = np.flatnonzero(~np.isfinite(words["onset"].to_numpy()))
    if missing.size:  # the filter below would count them as outside the run
        raise DataError(f"{source}: {missing.size} events of run {run} have no numeric onset (first: row "
                        f"{words.index[missing[0]]}); give every event an onset in seconds")
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
    check_timings(out, source, timed=True)
    return pd.concat([out, extras.reset_index(drop=True)], axis=1)
