"""pycortex flatmaps of per-voxel values for subjects with a pycortex database (LeBel et al.'s ds003020 ships one).

The voxels of a LeBel response file are a pycortex mask's nonzero voxels in C
order of the mask read as pycortex reads it, ``nibabel.load(mask).get_fdata().T``
(z, y, x) — gallantlab/pycortex cortex/database.py ``Database.get_mask``, and
cortex/dataset/braindata.py ``_find_mask``, which picks the mask whose voxel
count matches a 1-D volume. :func:`subject_volume` does the same explicitly,
with the mask named in the config, so a count that matches no mask is an error
here rather than a map scattered over the wrong voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def use_filestore(filestore: str | Path):
    """pycortex's database, pointed at ``filestore`` (a folder with one folder per subject)."""
    from cortex import database

    filestore = Path(filestore)
    if not filestore.is_dir():
        raise FileNotFoundError(f"{filestore}: pycortex filestore not found; set the dataset's pycortex.filestore "
                                "to the database folder (ds003020: derivative/pycortex-db)")
    # Every pycortex module holds the one Database object, so it is repointed, not replaced.
    database.db.filestore = str(filestore)
    database.db.reload_subjects()
    return database.db


def mask_path(filestore: str | Path, subject: str, xfm: str, mask: str) -> Path:
    """The mask file pycortex names ``transforms/<xfm>/mask_<type>.nii.gz`` under the subject's folder."""
    return Path(filestore) / subject / "transforms" / xfm / f"mask_{mask}.nii.gz"


def subject_volume(values: np.ndarray, mask: np.ndarray, source: str = "mask") -> np.ndarray:
    """The (z, y, x) volume with ``values`` at the mask's voxels in C order and NaN elsewhere."""
    values = np.asarray(values, float)
    if values.shape != (int(mask.sum()),):
        raise ValueError(f"{source}: the mask has {int(mask.sum())} voxels, the map {values.shape[0]}; name the "
                         "mask the responses were extracted with (pycortex.mask, e.g. thick or thin)")
    volume = np.full(mask.shape, np.nan)
    volume[mask] = values
    return volume


def flatmap_figure(values: np.ndarray, filestore: str | Path, subject: str, xfm: str, mask: str, title: str,
                   label: str, symmetric: bool = True, height: int = 1024, curvature: bool = True,
                   thick: int = 32):
    """A pycortex flatmap of per-voxel ``values`` (the mask's voxels in pycortex order) with a colourbar.

    ``height`` (pixels), ``curvature`` (the sulcal shading) and ``thick`` (depths
    sampled through the cortex per pixel) are pycortex ``quickflat.make_figure``'s.
    """
    import cortex
    import nibabel as nib

    from brainphase.figures import plt

    use_filestore(filestore)
    path = mask_path(filestore, subject, xfm, mask)
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("mask_*"))
        raise FileNotFoundError(f"{path}: no such pycortex mask; set pycortex.mask and pycortex.xfm to a mask of "
                                f"the subject's transform (found: {found})")
    volume = subject_volume(values, np.asarray(nib.load(str(path)).get_fdata()).T != 0, str(path))
    finite = np.abs(volume[np.isfinite(volume)])
    top = float(np.percentile(finite, 99)) if len(finite) else 1.0
    vmin, vmax = (-top, top) if symmetric else (0.0, top)
    data = cortex.Volume(volume, subject, xfm, vmin=vmin, vmax=vmax, cmap="RdBu_r" if symmetric else "inferno")
    fig = cortex.quickflat.make_figure(data, with_rois=False, with_labels=False, with_curvature=curvature,
                                       with_colorbar=True, colorbar_location="center", height=height,
                                       thick=thick)
    fig.suptitle(f"{title}\n{label}", fontsize=10)
    return fig
