import pandas as pd

from brainphase.plots import encoding_maps, save_figure
from brainphase.runtime import setup_job
from brainphase.stimuli import read_coords

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
voxels = pd.read_parquet(snakemake.input.voxels)
summary = pd.read_parquet(snakemake.input.summary)
coords = read_coords(snakemake.input.brains)
map_layer = snakemake.params.map_layer


def layer_of(v):
    """The configured layer, or the layer with the best mean r at the last checkpoint."""
    if map_layer != "best":
        return int(map_layer)
    last = v[v["tokens"] == v["tokens"].max()]
    return int(last.groupby("layer")["r"].mean().idxmax())


fig = encoding_maps(voxels, coords, layer_of)
save_figure(fig, snakemake.output, dpi=snakemake.params.plots["dpi"])
