"""Trajectories with their phases, the probing histogram across the last phase, brain maps across detachment."""

import pandas as pd

from brainphase.contracts.brain import read_coords
from brainphase.encoding.plots import encoding_maps
from brainphase.figures import FigureSelection, nearest_step, save_figure
from brainphase.phases import DETACHMENT
from brainphase.phases.plots import phase_trajectory, probing_histogram
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
dpi = snakemake.params.plots["dpi"]
phases = pd.read_parquet(snakemake.input.phases)
shown = FigureSelection.first(phases, ["model"])
ph = shown.rows(phases)
tr = shown.rows(pd.read_parquet(snakemake.input.trajectories))
neurons = shown.rows(pd.read_parquet(snakemake.input.neurons))
voxels = shown.rows(pd.read_parquet(snakemake.input.voxels))
save_figure(phase_trajectory(tr, ph), snakemake.output.trajectory, dpi=dpi)

last = ph.iloc[-1]
save_figure(probing_histogram(neurons, nearest_step(voxels, last["start_tokens"]),
                              nearest_step(voxels, last["end_tokens"]), int(last["probing_layer"])),
            snakemake.output.histogram, dpi=dpi)

# Before vs after the detachment phase when there is one, else across the last phase.
det = ph[ph["label"] == DETACHMENT]
span = det.iloc[0] if len(det) else last
before, after = nearest_step(voxels, span["start_tokens"]), nearest_step(voxels, span["end_tokens"])
layer = int(span["encoding_layer"])
save_figure(encoding_maps(voxels[voxels["step"].isin([before, after])], read_coords(snakemake.input.brains),
                          lambda _: layer), snakemake.output.detachment, dpi=dpi)
