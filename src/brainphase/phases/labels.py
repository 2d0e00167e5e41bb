"""Names of the phases, read from the slope signs, and the one-row-per-phase table."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .detect import BootstrapBreakpoints
from .segments import Segmentation

ALIGNMENT = "brain alignment & instruction following"
DETACHMENT = "brain detachment & stagnation"
REALIGNMENT = "brain realignment & consolidation"

_ARROWS = {1: "↑", 0: "→", -1: "↓"}


def label_phases(signs: Mapping[str, np.ndarray]) -> list[str]:
    """Name each segment from the signs of its slopes.

    Parameters
    ----------
    signs : series name -> (n_segments,) +1 rising, 0 flat, -1 falling (see
        :meth:`Segmentation.signs`). The names used are 'encoding',
        'benchmark' and 'probing'.

    Rules:

    * encoding ↑ and benchmark ↑ -> brain alignment & instruction following;
    * encoding ↓ and benchmark → -> brain detachment & stagnation;
    * benchmark ↑, probing ↑, encoding ↑ or → -> brain realignment & consolidation.

    A segment fitting both the first and the third pattern (everything
    rising) is a *re*-alignment only once a detachment has been seen before
    it, else an alignment. Any other pattern gets a neutral label listing the
    signs, e.g. 'encoding ↑, benchmark →, probing ↓'.
    """
    sg = {k: np.atleast_1d(np.asarray(v, dtype=int)) for k, v in signs.items()}
    lengths = {len(v) for v in sg.values()}
    if len(lengths) > 1:
        raise ValueError(f"signs of different lengths: { {k: len(v) for k, v in sg.items()} }")
    n = lengths.pop() if lengths else 0
    for k, v in sg.items():
        if not np.isin(v, [-1, 0, 1]).all():
            raise ValueError(f"signs[{k!r}] must be -1, 0 or 1")
    get = lambda name, i: sg[name][i] if name in sg else None  # noqa: E731

    labels, seen_detachment = [], False
    for i in range(n):
        enc, bench, probe = get("encoding", i), get("benchmark", i), get("probing", i)
        is_align = enc == 1 and bench == 1
        is_detach = enc == -1 and bench == 0
        is_realign = bench == 1 and probe == 1 and enc in (0, 1)
        if is_align and is_realign:
            label = REALIGNMENT if seen_detachment else ALIGNMENT
        elif is_align:
            label = ALIGNMENT
        elif is_detach:
            label = DETACHMENT
        elif is_realign:
            label = REALIGNMENT
        else:
            label = ", ".join(f"{k} {_ARROWS[int(sg[k][i])]}" for k in sg)
        seen_detachment |= label == DETACHMENT
        labels.append(label)
    return labels


# --------------------------------------------------------------------------- table
def phase_table(
    segmentation: Segmentation,
    series_names: Sequence[str],
    bootstrap: BootstrapBreakpoints | None = None,
    min_slope: float | Mapping[str, float] | None = None,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per phase (segment) of a segmentation.

    Columns: phase, label, start_index, end_index (inclusive), start_tokens,
    end_tokens (10**x of the first/last checkpoint), break_tokens of the
    breakpoint that *ends* the phase and its bootstrap interval
    (break_low_tokens, break_high_tokens; NaN for the last phase or without
    bootstrap), and per series: slope_<name> (per decade of tokens), its
    standard error slope_<name>_se, interval slope_<name>_low/high (at the
    segmentation's level) and sign_<name> (+1/0/-1; 0 when the interval
    covers 0, or |slope| < min_slope).
    """
    segs = segmentation.segments
    names = list(series_names)
    if segs and len(segs[0].slopes) != len(names):
        raise ValueError(f"{len(names)} names for {len(segs[0].slopes)} series")
    if isinstance(min_slope, Mapping):
        min_slope = [min_slope.get(nm, 0.0) for nm in names]
    lo, hi = segmentation.slope_interval()
    signs = segmentation.signs(min_slope)
    if labels is None:
        labels = label_phases({nm: signs[:, j] for j, nm in enumerate(names)})
    use_boot = bootstrap is not None and bootstrap.interval_x.shape[0] == segmentation.n_breakpoints
    rows = []
    for i, s in enumerate(segs):
        last = i == len(segs) - 1
        bx = np.nan if last else float(segmentation.breakpoints_x[i])
        blo = bhi = np.nan
        if use_boot and not last:
            blo, bhi = (float(v) for v in bootstrap.interval_x[i])
        row = {
            "phase": i,
            "label": labels[i],
            "start_index": s.start,
            "end_index": s.stop - 1,
            "start_tokens": 10.0 ** s.x_start,
            "end_tokens": 10.0 ** s.x_stop,
            "break_tokens": 10.0 ** bx,
            "break_low_tokens": 10.0 ** blo,
            "break_high_tokens": 10.0 ** bhi,
        }
        for j, nm in enumerate(names):
            row[f"slope_{nm}"] = float(s.slopes[j])
            row[f"slope_{nm}_se"] = float(s.slope_se[j])
            row[f"slope_{nm}_low"] = float(lo[i, j])
            row[f"slope_{nm}_high"] = float(hi[i, j])
            row[f"sign_{nm}"] = int(signs[i, j])
        rows.append(row)
    return pd.DataFrame(rows)
