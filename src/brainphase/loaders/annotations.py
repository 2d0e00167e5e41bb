"""Annotation tables: one text per stretch of time (per second, per scene), as for movie datasets.

A movie study can describe what is on screen in short texts, each with an
onset and a duration; the LM reads each text whole (``pooling: mean``) and the
encoding model sees it during its interval. The table is TSV, CSV or parquet
with columns ``run``, ``onset`` (s), ``text`` and optionally ``duration`` (s);
``run`` names the BOLD run as the loader does (e.g. ``task-movie_run-1``) or by
its BIDS run label (``1``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..contracts.stimuli import DataError, read_parquet, utf8_error

REQUIRED = ("run", "onset", "text")


def read_annotations(path: str | Path) -> pd.DataFrame:
    """The annotation table at ``path``, checked; texts and run labels are kept as written."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: annotation table missing; set the dataset's options.annotations to a TSV/CSV/"
                        "parquet file with columns run, onset, duration, text")
    if path.suffix == ".parquet":
        table = read_parquet(path, "write the annotation table with pandas.DataFrame.to_parquet")
    else:
        sep = "," if path.suffix == ".csv" else "\t"
        try:
            table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=["n/a", ""])
        except UnicodeDecodeError as err:
            raise utf8_error(path, "save the annotation table as UTF-8") from err
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise DataError(f"{path}: no column(s) {missing} (it has {list(table.columns)}); an annotation table "
                        "needs run, onset (s) and text, optionally duration (s)")
    table["run"] = table["run"].astype(str).str.strip()
    onset = pd.to_numeric(table["onset"], errors="coerce")
    bad = onset.isna()
    if bad.any():
        first = int(bad.to_numpy().argmax())
        where = f"row {first}" if path.suffix == ".parquet" else f"line {first + 2}"
        raise DataError(f"{path}: {int(bad.sum())} rows have no numeric onset (first at {where}: "
                        f"{table['onset'].iloc[first]!r}); onsets are seconds from the run's first volume, with a "
                        "decimal point — fix those rows")
    table["onset"] = onset.astype(float)
    table["text"] = table["text"].fillna("").astype(str).str.strip()
    return table[table["text"] != ""].reset_index(drop=True)


def run_annotations(table: pd.DataFrame, labels: set[str], path: str | Path) -> pd.DataFrame:
    """Rows of one run, matched by any of its ``labels`` (the run's name and BIDS run label)."""
    rows = table[table["run"].isin(labels)]
    if rows.empty:
        raise DataError(f"{path}: no annotation for run {sorted(labels)} (the table's runs: "
                        f"{sorted(table['run'].unique())[:10]}); name the run as the loader does or by its run label")
    return rows
