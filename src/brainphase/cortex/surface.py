"""Per-voxel values on the fsaverage surface: voxels back onto their grid, the grid sampled along the cortex.

The brain contract keeps the voxels a subject's file holds and their positions
in millimetres (the image affine applied to the voxel indices). A surface map
needs the image again: :func:`voxel_grid` finds the grid from a reference
image's affine (the brain mask the data were read through) or, without one,
from the coordinates themselves when the grid is axis-aligned (fMRIPrep's MNI
outputs are). :func:`project_to_fsaverage` then samples that image with
``nilearn.surface.vol_to_surf`` between the white-matter and pial meshes of
nilearn's bundled fsaverage5, at :data:`DEPTHS` across the cortical ribbon.
Each vertex takes the trilinear-weighted mean of the given voxels around its
samples: the values and the voxels' indicator are sampled alike and divided, so
no value is blended with the empty grid around the data. A vertex none of whose
samples lies within one voxel (on every axis) of a given voxel is NaN (drawn
blank), never zero.
"""

from __future__ import annotations

import warnings

import numpy as np

HEMISPHERES = ("left", "right")
# Samples per vertex from the pial (depth 0) to the white surface (depth 1): at most
# about 0.5 mm apart across a 5 mm ribbon, finer than any fMRI voxel.
DEPTHS = np.linspace(0.0, 1.0, 10)


def voxel_grid(coords: np.ndarray, affine: np.ndarray | None = None, shape=None,
               source: str = "coords") -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    """(affine, shape, voxel indices (V, 3)) of the grid the voxels at ``coords`` (V, 3) mm sit on.

    With ``affine`` (the data's image affine) the indices come from its inverse;
    without it the grid is inferred per axis (origin at the lowest coordinate,
    spacing the smallest step between coordinates), which needs an axis-aligned
    grid. Either way every voxel must land on a grid point.
    """
    coords = np.asarray(coords, float)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"{source}: voxel coordinates of shape {coords.shape}; surface maps need (voxels, 3) "
                         "millimetre positions (fMRI read by the bids_fmri loader has them)")
    if affine is None:
        steps = []
        for axis in range(3):
            diffs = np.diff(np.unique(np.round(coords[:, axis], 4)))
            steps.append(diffs.min() if len(diffs) else 1.0)
        affine = np.diag([*steps, 1.0])
        affine[:3, 3] = coords.min(axis=0)
    affine = np.asarray(affine, float)
    ijk = (np.linalg.inv(affine) @ np.c_[coords, np.ones(len(coords))].T)[:3].T
    index = np.round(ijk).astype(int)
    off = np.abs(ijk - index).max() if len(ijk) else 0.0
    if off > 1e-2:
        raise ValueError(f"{source}: voxel coordinates lie up to {off:.2f} voxels off the grid (not an axis-aligned "
                         "grid, or not the reference image's); set the dataset's cortex reference to the brain mask "
                         "the data were read through")
    if (index < 0).any():
        raise ValueError(f"{source}: voxels fall outside the reference image (negative indices); the reference is "
                         "not the image the data were read from")
    shape = tuple(int(s) for s in (shape if shape is not None else index.max(axis=0) + 1))
    if (index >= np.array(shape)).any():
        raise ValueError(f"{source}: voxels fall outside the reference grid {shape}; use the data's own mask")
    if len(np.unique(index, axis=0)) != len(index):
        raise ValueError(f"{source}: several voxels share a grid point; the coordinates are not one image's voxels")
    return affine, shape, index


# Empty voxels around the data: trilinear sampling near the grid's edge would otherwise
# extrapolate (nilearn's interpolator is built with fill_value=None).
PAD = 2


def volume_of(values: np.ndarray, index: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """(values, indicator) images of the grid padded by :data:`PAD` voxels; NaN values are left out of both."""
    values = np.asarray(values, float)
    shape = tuple(int(s) + 2 * PAD for s in shape)
    data, weight = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    keep = np.isfinite(values)
    at = tuple((index[keep] + PAD).T)
    data[at], weight[at] = values[keep], 1.0
    return data, weight


def fsaverage_meshes(mesh: str = "fsaverage5") -> dict:
    """nilearn's bundled fsaverage meshes (pial, white_matter, inflated, ...), read offline."""
    from nilearn.datasets import load_fsaverage

    return load_fsaverage(mesh)


def project_to_fsaverage(values: np.ndarray, coords: np.ndarray, affine: np.ndarray | None = None, shape=None,
                         meshes: dict | None = None, source: str = "coords") -> dict[str, np.ndarray]:
    """Per-vertex values per hemisphere ({"left": (n,), "right": (n,)}) of per-voxel ``values`` at ``coords``.

    ``affine``/``shape``: the data's image grid (see :func:`voxel_grid`). Vertices
    whose samples miss every given voxel are NaN.
    """
    import nibabel as nib
    from nilearn.surface import vol_to_surf

    values = np.asarray(values, float)
    if values.shape != (len(coords),):
        raise ValueError(f"{source}: {values.shape} values for {len(coords)} voxels; give one value per voxel")
    affine, shape, index = voxel_grid(coords, affine, shape, source)
    data, weight = volume_of(values, index, shape)
    padded = affine @ np.r_[np.c_[np.eye(3), -PAD * np.ones(3)], [[0, 0, 0, 1]]]
    meshes = meshes or fsaverage_meshes()
    out = {}
    for hemi in HEMISPHERES:
        with warnings.catch_warnings():
            # A vertex whose samples all leave the grid averages nothing: NaN, the intended "no data".
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            sampled = [np.asarray(vol_to_surf(nib.Nifti1Image(a, padded), meshes["pial"].parts[hemi],
                                              inner_mesh=meshes["white_matter"].parts[hemi], depth=DEPTHS), float)
                       for a in (data, weight)]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[hemi] = np.where(sampled[1] > 1e-9, sampled[0] / sampled[1], np.nan)
    return out
