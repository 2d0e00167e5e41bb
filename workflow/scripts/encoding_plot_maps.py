"""Per-voxel encoding r at the first and last checkpoint, at the configured or best layer."""

import pandas as pd

from brainphase.contracts.brain import read_coords
from brainphase.encoding.plots import encoding_maps
from brainphase.figures import save_figure
from brainphase.phases import best_layer
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
voxels = pd.read_parquet(snakemake.input.voxels)
coords = read_coords(snakemake.input.brains)
map_layer = snakemake.params.map_layer


def layer_of(v):
    """The configured layer, or the layer with the best mean r at the last checkpoint."""
    return best_layer(v, "r") if map_layer == "best" else int(map_layer)


fig = encoding_maps(voxels, coords, layer_of)
save_figure(fig, snakemake.output, dpi=snakemake.params.plots["dpi"])
