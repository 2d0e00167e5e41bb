"""Praat TextGrids: a reader for the long and short text formats, and the word tier of a transcript.

Words come from the TextGrid's word tier: the tier named ``word`` or ``words``
(any case), or the one named by the option ``word_tier``. There is no
positional fallback (the Huth lab's ``make_word_ds`` takes the second tier): a
grid whose tiers are, say, (``words``, ``phones``) would give phones as words.
Word intervals that overlap or repeat an earlier one are an error naming the
file, interval and count; ``on_overlap="warn"`` keeps them with a warning and
marks them in the column ``overlap``. The markers ``sp br lg ls ns
sentence_start sentence_end`` of LeBel et al. 2023's transcripts, anything in
braces (``{LG}``) and empty intervals are dropped, case-insensitively. The Huth
lab's filter (``DEFAULT_BAD_WORDS`` after ``.strip("{}")``) keeps empty
intervals as "words" that get a zero vector in their semantic models; a language
model has no use for an empty word, so they are dropped here. Word text is kept
as written (the Huth lab lower-cases it).

The reader is written here rather than taken from a dependency: none of the
PyPI TextGrid readers (praatio, textgrid, tgt) is in this project's pinned
environment, and a reader for the two text formats is short, less than adding
and pinning one for every conda env. The Huth lab's own reader (an NLTK regex
port) cannot read doubled quotes inside a label (its pattern stops at the first
'"'). The long format is ``key = value`` lines (a quoted value may span lines,
'"' doubled); the short format is the same values without the keys.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..contracts.stimuli import DataError, utf8_error

log = logging.getLogger(__name__)

NON_WORDS = frozenset({"sp", "br", "lg", "ls", "ns", "sentence_start", "sentence_end"})
WORD_TIER_NAMES = ("word", "words")  # matched case-insensitively
OVERLAP_POLICIES = ("error", "warn")


class Tier(NamedTuple):
    cls: str  # IntervalTier or TextTier
    name: str
    items: list[tuple[float, float, str]]  # (xmin, xmax, text); a point has xmin == xmax


_STRING = r'"(?:[^"]|"")*"'
_KEY_VALUE = re.compile(rf'([A-Za-z]\w*)\s*=\s*({_STRING}|[^\s"]+)')
_TOKEN = re.compile(rf'{_STRING}|[^\s"]+')

# A UTF-8 lead byte and its continuation bytes: text that holds one was written as UTF-8.
_UTF8_CHAR = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


def _decode(raw: bytes, path: Path) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not valid UTF-16 at byte {err.start} (the file starts with a UTF-16 byte "
                            "order mark); re-save it from Praat") from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if _UTF8_CHAR.search(raw) is None:
            return raw.decode("latin-1")  # Praat's other 8-bit text encoding: no UTF-8 character anywhere
        # Some characters are UTF-8 and one is not: a damaged UTF-8 file, which Latin-1 would garble silently.
        raise utf8_error(path, "the file is UTF-8 elsewhere; fix that byte or re-save the TextGrid from Praat "
                               "(UTF-8 or UTF-16)") from err


def _unquote(value: str) -> str:
    return value[1:-1].replace('""', '"') if value.startswith('"') else value


def _long_format(text: str) -> list[Tier]:
    tiers: list[Tier] = []
    cur: Tier | None = None
    start = end = None
    for m in _KEY_VALUE.finditer(text):
        key, value = m.group(1).lower(), _unquote(m.group(2))
        if key == "class" and value in ("IntervalTier", "TextTier"):
            cur = Tier(value, "", [])
            tiers.append(cur)
        elif cur is None:
            continue  # file header
        elif key == "name" and not cur.name and not cur.items:
            tiers[-1] = cur = cur._replace(name=value)
        elif key in ("xmin", "number", "time"):
            start = float(value)
        elif key == "xmax":
            end = float(value)
        elif key in ("text", "mark") and start is not None:
            cur.items.append((start, end if key == "text" else start, value))
            start = end = None
    return tiers


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _short_format(text: str) -> list[Tier]:
    # Like Praat, read only strings and numbers: skips "File type =", "<exists>" and the like.
    tokens = [t for t in _TOKEN.findall(text) if t.startswith('"') or _is_number(t)]
    pos = 4  # "ooTextFile", "TextGrid", xmin, xmax of the grid
    n_tiers = int(float(tokens[pos]))
    pos += 1
    tiers = []
    for _ in range(n_tiers):
        cls, name = _unquote(tokens[pos]), _unquote(tokens[pos + 1])
        n = int(float(tokens[pos + 4]))
        pos += 5
        items = []
        for _ in range(n):
            if cls == "TextTier":
                items.append((float(tokens[pos]), float(tokens[pos]), _unquote(tokens[pos + 1])))
                pos += 2
            else:
                items.append((float(tokens[pos]), float(tokens[pos + 1]), _unquote(tokens[pos + 2])))
                pos += 3
        tiers.append(Tier(cls, name, items))
    return tiers


def read_textgrid(path: str | Path) -> list[Tier]:
    """The tiers of a Praat TextGrid in the long or the short text format."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: TextGrid missing; the word timings come from it. Add it or drop the story")
    text = _decode(path.read_bytes(), path)
    if "ooTextFile" not in text[:200] or "TextGrid" not in text[:200]:
        raise DataError(f"{path}: not a Praat TextGrid text file (no 'ooTextFile'/'TextGrid' header); "
                        "save it from Praat as a text file (long or short format)")
    try:
        long_format = re.search(r"^\s*xmin\s*=", text, re.MULTILINE) is not None
        tiers = _long_format(text) if long_format else _short_format(text)
    except (ValueError, IndexError) as err:
        raise DataError(f"{path}: cannot parse the TextGrid ({err}); re-save it from Praat as a text file") from err
    if not tiers:
        raise DataError(f"{path}: no tiers found; re-save it from Praat as a text file (long format)")
    return tiers


def is_word(text: str) -> bool:
    """False for the non-word markers of LeBel et al.'s transcripts (see the module doc)."""
    t = text.strip().lower()
    if not t or (t.startswith("{") and t.endswith("}")):
        return False
    return t.strip("{}").strip() not in NON_WORDS


def _word_tier(tiers: list[Tier], path: Path, word_tier: str | None) -> Tier:
    names = [t.name for t in tiers]
    if word_tier is not None:
        found = [t for t in tiers if t.name.strip().lower() == word_tier.strip().lower()]
        if not found:
            raise DataError(f"{path}: no tier named {word_tier!r} (its tiers: {names}); set the lebel option "
                            "word_tier to the name of the tier that holds the words")
    else:
        found = [t for t in tiers if t.name.strip().lower() in WORD_TIER_NAMES]
        if not found:
            raise DataError(f"{path}: no word tier — none of its tiers {names} is named 'word' or 'words' (any "
                            "case); set the lebel option word_tier to the name of the tier that holds the words, "
                            "or rename that tier")
    if len(found) > 1:
        raise DataError(f"{path}: several tiers could be the word tier ({[t.name for t in found]}, of {names}); "
                        "set the lebel option word_tier to one name, or rename the others")
    return found[0]


def word_intervals(path: str | Path, on_overlap: str = "error", word_tier: str | None = None) -> pd.DataFrame:
    """Words of a TextGrid's word tier, in time order.

    Columns onset, offset (TextGrid seconds), text, interval (the interval's
    1-based number in the tier, as Praat counts) and overlap (True where the
    word starts before an earlier word has ended, or repeats its interval). The
    tier is the one named ``word``/``words`` (any case) or ``word_tier``.
    Overlaps are an error naming the first interval and the count, or with
    ``on_overlap="warn"`` a warning that counts them.
    """
    if on_overlap not in OVERLAP_POLICIES:
        raise ValueError(f"on_overlap must be one of {OVERLAP_POLICIES}, got {on_overlap!r}")
    path = Path(path)
    tier = _word_tier(read_textgrid(path), path, word_tier)
    if tier.cls != "IntervalTier":
        raise DataError(f"{path}: word tier {tier.name!r} is a {tier.cls}; words need an IntervalTier")
    rows = [(a, b, t.strip(), j) for j, (a, b, t) in enumerate(tier.items, 1) if is_word(t)]
    words = pd.DataFrame(rows, columns=["onset", "offset", "text", "interval"])
    if words.empty:
        raise DataError(f"{path}: the word tier {tier.name!r} holds no words (only markers such as sp or "
                        "empty intervals); check the tier")
    words = words.sort_values("onset", kind="stable").reset_index(drop=True)
    onset, offset = words["onset"].to_numpy(float), words["offset"].to_numpy(float)
    if not (np.isfinite(onset) & np.isfinite(offset)).all() or (offset < onset).any():
        i = int(np.flatnonzero(~(np.isfinite(onset) & np.isfinite(offset)) | (offset < onset))[0])
        raise DataError(f"{path}: tier {tier.name!r} interval {words['interval'][i]} ({words['text'][i]!r}) has "
                        f"xmin {onset[i]}, xmax {offset[i]}; an interval needs finite times with xmax >= xmin — "
                        "fix it in Praat")
    # A Praat tier's intervals tile time, so two words can share time only in a generated or hand-edited grid
    # (a merge that doubled a stretch, say); their features would be counted twice.
    ended = np.maximum.accumulate(offset)
    same = np.r_[False, (onset[1:] == onset[:-1]) & (offset[1:] == offset[:-1])]
    overlap = np.r_[False, onset[1:] < ended[:-1] - 1e-9] | same
    words["overlap"] = overlap
    if overlap.any():
        i = int(np.flatnonzero(overlap)[0])
        msg = (f"{path}: {int(overlap.sum())} word interval(s) of tier {tier.name!r} overlap or repeat an earlier "
               f"one (first: interval {words['interval'][i]}, {words['text'][i]!r} at {onset[i]}-{offset[i]} s, "
               f"against {words['text'][i - 1]!r} at {onset[i - 1]}-{offset[i - 1]} s)")
        if on_overlap == "error":
            raise DataError(f"{msg}; fix the tier in Praat (each stretch of time once), or set the lebel option "
                            "on_overlap: warn to keep them, marked in the stimulus column overlap")
        log.warning("%s; kept (on_overlap: warn) and marked in the stimulus column overlap", msg)
    return words
