"""Maps of datasets whose voxels have no positions (LeBel without a pycortex mask)."""

import numpy as np
import pandas as pd

from brainphase.plots import drawable_coords, encoding_maps


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
