"""Maps of datasets whose voxels have no positions (LeBel without a pycortex mask)."""

import numpy as np
import pandas as pd

from brainphase.encoding.plots import encoding_maps
from brainphase.figures import FigureSelection, drawable_coords, nearest_step, steps_by_tokens


def test_voxel_index_is_laid_out_on_a_square_sheet():
    xy = drawable_coords(np.arange(10)[:, None])
    assert xy.shape == (10, 2)
    assert len({tuple(p) for p in xy}) == 10 and xy.max() == 3  # 4 x 4 sheet, each voxel its own cell
    three_d = np.random.default_rng(0).normal(size=(5, 3))
    assert drawable_coords(three_d) is not None and drawable_coords(three_d).shape == (5, 3)


def test_encoding_maps_of_index_only_voxels():
    n = 30
    rows = [{"model": "m", "step": s, "tokens": t, "site": "resid", "layer": 1, "dataset": "lebel", "subject": "UTS01",
             "voxel": v, "r": r} for s, t, r0 in (("step0", 0, 0.0), ("step9", 9, 0.1))
            for v, r in enumerate(r0 + np.linspace(0, 0.2, n))]
    fig = encoding_maps(pd.DataFrame(rows), {("lebel", "UTS01"): np.arange(n, dtype=float)[:, None]}, lambda _: 1)
    assert len(fig.axes) >= 3


def test_figures_show_the_first_model_and_subject_in_sorted_order():
    df = pd.DataFrame({"model": ["b", "a", "a", "a"], "subject": ["s1", "s2", "s1", "s1"],
                       "step": ["step9", "step9", "step9", "step0"], "tokens": [9, 9, 9, 0]})
    shown = FigureSelection.first(df, ["model", "subject"])
    assert shown.values == {"model": "a", "subject": "s1"} and shown["subject"] == "s1"
    rows = shown.rows(df)
    assert rows.index.tolist() == [2, 3]
    assert steps_by_tokens(rows) == ["step0", "step9"]
    assert nearest_step(rows, 7) == "step9" and nearest_step(rows, 2) == "step0"
