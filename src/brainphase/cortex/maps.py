"""The per-voxel maps drawn on the cortex, taken from the encoding and phase tables.

- ``encoding_r``: test r at the last checkpoint, at the map layer.
- ``detachment_difference``: r after minus r before the detachment phase (the
  checkpoints nearest its start and end), at the phase's encoding layer; across
  the last phase when no phase is labelled detachment — as the voxel-sheet
  detachment map (workflow/scripts/phases_plot.py) chooses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainphase.figures import nearest_step
from brainphase.phases import DETACHMENT, best_layer


def per_voxel(rows: pd.DataFrame, n_voxels: int, column: str = "r") -> np.ndarray:
    """``column`` by voxel index; voxels the table lacks (excluded from the fit) stay NaN."""
    out = np.full(n_voxels, np.nan)
    voxel = rows["voxel"].to_numpy()
    if len(voxel) and (voxel.min() < 0 or voxel.max() >= n_voxels):
        raise ValueError(f"voxel index {voxel.max()} beyond the brain file's {n_voxels} voxels; the encoding table "
                         "belongs to another brain file — rerun encoding")
    out[voxel] = rows[column].to_numpy()
    return out


def encoding_r(voxels: pd.DataFrame, n_voxels: int, map_layer="best") -> tuple[np.ndarray, str]:
    """(r per voxel at the last checkpoint, caption) of one (model, subject, site)'s rows of ``encoding_voxels``."""
    layer = best_layer(voxels, "r") if map_layer == "best" else int(map_layer)
    last = voxels.sort_values("tokens", kind="stable")["step"].iloc[-1]
    rows = voxels[(voxels["step"] == last) & (voxels["layer"] == layer)]
    if rows.empty:
        raise ValueError(f"encoding.map_layer: layer {layer} has no rows at checkpoint {last}; pick a layer the "
                         f"encoding table holds ({sorted(voxels['layer'].unique())})")
    return per_voxel(rows, n_voxels), f"test r · checkpoint {last} · layer {layer}"


def detachment_difference(voxels: pd.DataFrame, phases: pd.DataFrame, n_voxels: int) -> tuple[np.ndarray, str]:
    """(r after minus r before the detachment phase per voxel, caption); ``phases``: one model's phase rows."""
    if phases.empty:
        raise ValueError("the phases table has no rows for this model; rerun the phases rule")
    det = phases[phases["label"] == DETACHMENT]
    span = det.iloc[0] if len(det) else phases.sort_values("phase").iloc[-1]
    before, after = nearest_step(voxels, span["start_tokens"]), nearest_step(voxels, span["end_tokens"])
    layer = int(span["encoding_layer"])
    at = voxels[voxels["layer"] == layer]
    diff = per_voxel(at[at["step"] == after], n_voxels) - per_voxel(at[at["step"] == before], n_voxels)
    what = "detachment phase" if len(det) else "last phase (no detachment phase found)"
    return diff, f"r({after}) − r({before}) across the {what} · layer {layer}"


def decoder_weights(weights: pd.DataFrame, n_voxels: int) -> tuple[np.ndarray, str]:
    """(brain decoder weights per voxel of the strongest latent shown, caption) from a crosscoder's weights table.

    The table lists the latents it shows strongest first (crosscoder.pipeline), so
    the first latent is drawn.
    """
    if weights.empty:
        raise ValueError("the crosscoder's weights table is empty (no latent alive in a class); lower "
                         "crosscoder.thresholds or train longer")
    first = weights.iloc[0]
    rows = weights[weights["latent"] == first["latent"]]
    return per_voxel(rows, n_voxels, "weight"), (f"crosscoder decoder weights · latent {first['latent']} "
                                                 f"({first['class']}, r_i = {first['r']:.2f}) · {first['step']}")
