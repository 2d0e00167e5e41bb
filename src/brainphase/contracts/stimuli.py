"""The stimulus table: one row per text unit, its reader and its checks.

A stimulus set ``results/stimuli/{stimset}.parquet`` has one row per text unit
(unit_id, run, text, lang, onset, offset, ...).

What :func:`read_stimuli` accepts: a parquet table with at least one row and
the columns of :data:`STIMULUS_COLUMNS`. ``word_index`` (the unit's position in
its run) may be left out: it is then derived from the table's row order within
each run, which is the order the units were heard in. Timings are seconds on the
run's clock and either absent from the whole table (an untimed set: benchmark
prompts, text corpora; onset and offset null on every row) or present on every
row: finite, offset >= onset, and onsets never decreasing along a run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

STIMULUS_COLUMNS = ("unit_id", "run", "text", "lang", "onset", "offset")


class DataError(ValueError):
    """Bad input data; the message names the file and the fix."""

def utf8_error(path: str | Path, fix: str) -> DataError:
    """The error for a text file that is not UTF-8: the first bad byte's offset and line, and ``fix``.

    Readers that decode in chunks (pandas) report offsets within a chunk, so the
    file is decoded again here to name the byte in the file.
    """
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return DataError(f"{path}: not valid UTF-8 at byte {err.start} (line {line}, byte "
                         f"{raw[err.start:err.start + 1].hex(' ')}); {fix}")
    return DataError(f"{path}: cannot be decoded as text; {fix}")

def _bad_utf8_cell(path: Path) -> str | None:
    """Where a parquet file's first string value that is not UTF-8 is (column, row, byte), if any."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError):
        return None
    for name in table.column_names:
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        row = 0
        for chunk in col.chunks:
            binary = pa.large_binary() if pa.types.is_large_string(col.type) else pa.binary()
            for value in chunk.view(binary).to_pylist():
                if value is not None:
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError as err:
                        return f"column {name!r}, row {row}, byte {err.start} of the value"
                row += 1
    return None

def read_parquet(path: str | Path, fix: str) -> pd.DataFrame:
    """A parquet table, or a :class:`DataError` naming the file (and a cell that is not UTF-8) and ``fix``."""
    import pyarrow as pa

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file missing; {fix}")
    import pyarrow.parquet as pq

    try:
        # Full validation checks that string columns are UTF-8: pandas' Arrow-backed strings would only fail
        # when a bad value is first touched, deep inside a later step.
        pq.read_table(path).validate(full=True)
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        where = _bad_utf8_cell(path)
        if where is not None:
            raise DataError(f"{path}: text that is not valid UTF-8 ({where}); write the table's text as UTF-8 "
                            f"strings — {fix}") from err
        raise DataError(f"{path}: cannot be read as a parquet table ({type(err).__name__}: {err}); {fix}") from err

def show_value(value) -> str:
    """A table cell as a user would write it: numbers plainly, missing as n/a, text quoted."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(float(value))
    return repr(value)

def _where(units: pd.DataFrame, rows: np.ndarray) -> str:
    """'run r, row i (unit_id u)' of the first of ``rows`` (positions in ``units``)."""
    i = int(rows[0])
    uid = f" (unit_id {units['unit_id'].iloc[i]})" if "unit_id" in units.columns else ""
    return f"run {units['run'].iloc[i]}, row {i}{uid}"

def check_timings(units: pd.DataFrame, source: str | Path, timed: bool | None = None) -> None:
    """Onsets and offsets usable on a run's clock, or a :class:`DataError` naming ``source``, run, row and count.

    ``timed=None``: a table whose onsets and offsets are all null is an untimed
    set and passes; otherwise (and with ``timed=True``) every row needs a finite
    onset and offset, offset >= onset, and onsets that never decrease along a run
    (in ``word_index`` order when the table has it). One missing time would
    otherwise vanish in a maximum or turn every TR of its run into NaN.
    """
    onset = pd.to_numeric(units["onset"], errors="coerce").to_numpy(float)
    offset = pd.to_numeric(units["offset"], errors="coerce").to_numpy(float)
    finite = np.isfinite(onset) & np.isfinite(offset)
    if timed is None:
        timed = bool(units["onset"].notna().any() or units["offset"].notna().any())
    if not timed:
        return
    bad = np.flatnonzero(~finite)
    if bad.size:
        i = bad[0]
        raise DataError(f"{source}: {bad.size} of {len(units)} units have no finite onset/offset (first: "
                        f"{_where(units, bad)}: onset {show_value(units['onset'].iloc[i])}, offset "
                        f"{show_value(units['offset'].iloc[i])}); "
                        "every unit of a timed set needs both, in seconds — fix those rows' times or drop the rows")
    bad = np.flatnonzero(offset < onset)
    if bad.size:
        i = bad[0]
        raise DataError(f"{source}: {bad.size} unit(s) end before they start (first: {_where(units, bad)}: onset "
                        f"{onset[i]}, offset {offset[i]}); fix those rows' offsets")
    order = np.lexsort((units["word_index"].to_numpy(), pd.factorize(units["run"])[0])) \
        if "word_index" in units.columns else np.argsort(pd.factorize(units["run"])[0], kind="stable")
    runs = pd.factorize(units["run"])[0][order]
    back = np.flatnonzero((np.diff(onset[order]) < 0) & (runs[1:] == runs[:-1]))
    if back.size:
        i, prev = order[back[0] + 1], order[back[0]]
        raise DataError(f"{source}: {back.size} unit(s) start before the unit before them in their run (first: "
                        f"{_where(units, np.array([i]))}: onset {onset[i]} s, the unit before starts at "
                        f"{onset[prev]} s); a run's units "
                        "must be in the order they were heard — sort each run by onset (and renumber word_index)")

def read_stimuli(path: str | Path) -> pd.DataFrame:
    """The stimulus table at ``path``, checked (see the module doc); ``word_index`` derived when absent."""
    df = read_parquet(path, "rerun the rule that writes the stimulus set, or write it with "
                            "pandas.DataFrame.to_parquet")
    missing = [c for c in STIMULUS_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: stimulus table lacks columns {missing}; "
                        f"the contract needs {list(STIMULUS_COLUMNS)}")
    if df.empty:
        # Zero rows would flow on into activation caches and scores that look finished but hold nothing.
        raise DataError(f"{path}: the stimulus table has no rows; a stimulus set needs at least one unit — check "
                        "the dataset's source (an events filter that matches nothing, an empty task) and rerun "
                        "the rule that writes it")
    if "word_index" not in df.columns:
        df["word_index"] = df.groupby("run", sort=False, dropna=False).cumcount().to_numpy()
    check_timings(df, path)
    return df

def text_corpus(path: str | Path, text_column: str = "text", lang_column: str | None = None,
                max_documents: int | None = None) -> pd.DataFrame:
    """A text corpus (parquet, jsonl or txt with one document per line) as a word-level stimulus set.

    Words are whitespace-separated pieces (an unsegmented Japanese sentence
    stays one piece: only the word-level truth needs words, and a real corpus
    brings none; tokens are still mapped to the piece they fall in). Runs are
    ``doc{i:06d}``; ``lang`` comes from ``lang_column`` or is left empty.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: corpus file not found; set sae.corpus.path to a parquet, jsonl or txt file")
    if path.suffix == ".parquet":
        docs = pd.read_parquet(path)
    elif path.suffix in (".jsonl", ".json"):
        docs = pd.read_json(path, lines=path.suffix == ".jsonl")
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise utf8_error(path, "save the corpus as UTF-8") from err
        docs = pd.DataFrame({text_column: [line for line in text.splitlines() if line.strip()]})
    if text_column not in docs.columns:
        raise DataError(f"{path}: no column {text_column!r} (it has {list(docs.columns)}); "
                        f"set sae.corpus.text_column")
    if lang_column is not None and lang_column not in docs.columns:
        raise DataError(f"{path}: no column {lang_column!r}; set sae.corpus.lang_column or drop it")
    docs = docs[docs[text_column].astype(str).str.strip() != ""].reset_index(drop=True)
    if max_documents is not None:
        docs = docs.iloc[:max_documents]
    if len(docs) < 3:
        raise DataError(f"{path}: {len(docs)} non-empty documents; a train/val/test split needs at least 3")
    frames = []
    for i, row in docs.iterrows():
        words = str(row[text_column]).split()
        run = f"doc{i:06d}"
        frames.append(pd.DataFrame({
            "unit_id": [f"{run}_{j:05d}" for j in range(len(words))], "run": run,
            "word_index": np.arange(len(words)), "text": words,
            "lang": str(row[lang_column]) if lang_column else "", "onset": np.nan, "offset": np.nan}))
    return pd.concat(frames, ignore_index=True)
