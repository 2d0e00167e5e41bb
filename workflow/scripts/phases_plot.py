"""Trajectory with phases (Fig. 2), probing histogram (Fig. 4), brain map across detachment (Fig. 3)."""

import pandas as pd

from brainphase.plots import encoding_maps, phase_trajectory, probing_histogram, save_figure
from brainphase.phases import DETACHMENT
from brainphase.runtime import setup_job
from brainphase.stimuli import read_coords

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
dpi = snakemake.params.plots["dpi"]
phases = pd.read_parquet(snakemake.input.phases)
traj = pd.read_parquet(snakemake.input.trajectories)
neurons = pd.read_parquet(snakemake.input.neurons)
voxels = pd.read_parquet(snakemake.input.voxels)
model = sorted(phases["model"].unique())[0]  # figures show the first model; tables hold all
ph = phases[phases["model"] == model]
tr = traj[traj["model"] == model]
save_figure(phase_trajectory(tr, ph), snakemake.output.trajectory, dpi=dpi)

steps = voxels[voxels["model"] == model][["step", "tokens"]].drop_duplicates().set_index("tokens")["step"]


def step_at(tokens):
    return steps.loc[min(steps.index, key=lambda t: abs(t - tokens))]


last = ph.iloc[-1]
save_figure(probing_histogram(neurons[neurons["model"] == model], step_at(last["start_tokens"]),
                              step_at(last["end_tokens"]), int(last["probing_layer"])),
            snakemake.output.histogram, dpi=dpi)

# Before vs after the detachment phase when there is one, else across the last phase.
det = ph[ph["label"] == DETACHMENT]
span = det.iloc[0] if len(det) else last
before, after = step_at(span["start_tokens"]), step_at(span["end_tokens"])
v = voxels[(voxels["model"] == model) & voxels["step"].isin([before, after])]
coords = read_coords(snakemake.input.brains)
layer = int(span["encoding_layer"])
save_figure(encoding_maps(v, coords, lambda _: layer), snakemake.output.detachment, dpi=dpi)
