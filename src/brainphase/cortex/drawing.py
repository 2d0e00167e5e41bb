"""Surface figures: a per-vertex map on both hemispheres' inflated fsaverage, lateral and medial views."""

from __future__ import annotations

import numpy as np

from brainphase.figures import plt

from .surface import HEMISPHERES, fsaverage_meshes

VIEWS = ("lateral", "medial")


def colour_range(maps: dict[str, np.ndarray], symmetric: bool) -> tuple[float, float]:
    """(vmin, vmax) over both hemispheres' finite values; symmetric about 0 for signed maps (differences)."""
    finite = np.concatenate([m[np.isfinite(m)] for m in maps.values()])
    if not len(finite):
        return (-1.0, 1.0) if symmetric else (0.0, 1.0)
    top = float(np.percentile(np.abs(finite), 99)) or 1.0
    return (-top, top) if symmetric else (float(min(finite.min(), 0.0)), top)


def surface_figure(maps: dict[str, np.ndarray], title: str, label: str, symmetric: bool = True,
                   cmap: str | None = None, meshes: dict | None = None):
    """Four panels (left/right hemisphere x lateral/medial view) of ``maps`` on the inflated mesh, one colourbar.

    ``maps``: per-vertex values per hemisphere (:func:`~.surface.project_to_fsaverage`);
    NaN vertices show only the sulcal background. ``symmetric``: a diverging
    colour map centred on 0 (for signed maps such as differences).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from nilearn.datasets import load_fsaverage_data
    from nilearn.plotting import plot_surf_stat_map

    meshes = meshes or fsaverage_meshes()
    sulcal = load_fsaverage_data(mesh="fsaverage5", mesh_type="inflated", data_type="sulcal")
    vmin, vmax = colour_range(maps, symmetric)
    cmap = cmap or ("RdBu_r" if symmetric else "inferno")
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.9), subplot_kw={"projection": "3d"})
    for col, (hemi, view) in enumerate((h, v) for h in HEMISPHERES for v in VIEWS):
        values = np.asarray(maps[hemi], float)
        plot_surf_stat_map(surf_mesh=meshes["inflated"].parts[hemi], stat_map=values,
                           bg_map=sulcal.data.parts[hemi], hemi=hemi, view=view, engine="matplotlib",
                           cmap=cmap, colorbar=False, vmin=vmin, vmax=vmax, symmetric_cbar=symmetric,
                           threshold=None, bg_on_data=False, axes=axes[col], figure=fig)
        # nilearn leaves wide margins around the mesh; zoom so the hemispheres fill the panels.
        axes[col].set_box_aspect(None, zoom=1.35)
        axes[col].set_title(f"{hemi} · {view}", fontsize=9, y=0.95)
    fig.subplots_adjust(left=0.0, right=0.9, bottom=0.02, top=0.86, wspace=0.0)
    bar = fig.add_axes([0.915, 0.2, 0.012, 0.55])
    fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), cax=bar, label=label)
    fig.suptitle(title, fontsize=10)
    return fig
