"""Find the phases of training in the encoding, benchmark and probing trajectories."""

import numpy as np
import pandas as pd

from brainphase.io import write_parquet
from brainphase.phases import bootstrap_breakpoints, detect_breakpoints, phase_table
from brainphase.runtime import setup_job
from brainphase.trajectories import SERIES, build_trajectories

snakemake = snakemake  # noqa: F821
cfg = snakemake.params.phases
log = setup_job(snakemake.log[0], seed=snakemake.params.seed)
voxels = pd.read_parquet(snakemake.input.voxels)
items = pd.read_parquet(snakemake.input.per_item)
neurons = pd.read_parquet(snakemake.input.neurons)
tables, phases = [], []
for model in sorted(voxels["model"].unique()):
    traj, tokens, reps, layers = build_trajectories(
        voxels[voxels["model"] == model], items[items["model"] == model],
        neurons[neurons["model"] == model], encoding_layer=cfg["encoding_layer"],
        probing_layer=cfg["probing_layer"], n_boot=cfg["n_boot"], seed=snakemake.params.seed)
    # log10(0) is undefined: the initialisation is drawn but not segmented.
    trained = tokens > 0
    x = np.log10(tokens[trained])
    if len(x) < 2 * cfg["min_size"]:
        raise ValueError(
            f"model {model}: {len(x)} trained checkpoints with results in all three analyses; phase "
            f"detection needs at least 2 x phases.min_size = {2 * cfg['min_size']}. Add checkpoints "
            "(models[].train.checkpoints) or lower phases.min_size")
    y = np.column_stack([traj[traj["series"] == s]["value"].to_numpy()[trained] for s in SERIES])
    seg = detect_breakpoints(x, y, max_breakpoints=cfg["max_breakpoints"], min_size=cfg["min_size"])
    boot = bootstrap_breakpoints(x, reps[:, trained, :], seg.n_breakpoints,
                                 max_breakpoints=cfg["max_breakpoints"], min_size=cfg["min_size"])
    table = phase_table(seg, SERIES, boot, tol=cfg["flat_slope"])
    table.insert(0, "model", model)
    table["encoding_layer"], table["probing_layer"] = layers["encoding"], layers["probing"]
    log.info("%s: %d breakpoints (BIC %s)\n%s", model, seg.n_breakpoints, np.round(seg.bic, 2),
             table[["phase", "label", "start_tokens", "end_tokens", "break_low_tokens",
                    "break_high_tokens"]].to_string())
    phases.append(table)
    tables.append(traj.assign(model=model))
write_parquet(pd.concat(phases, ignore_index=True), snakemake.output.phases)
write_parquet(pd.concat(tables, ignore_index=True), snakemake.output.trajectories)
