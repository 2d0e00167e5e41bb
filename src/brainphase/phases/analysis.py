"""Phase analysis of a study: per model, trajectories in, breakpoints and labelled phases out."""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import pandas as pd

from .detect import bootstrap_breakpoints, detect_breakpoints
from .labels import phase_table
from .trajectories import SERIES, build_trajectories

log = logging.getLogger(__name__)


def duplicate_steps(duplicates: pd.DataFrame | None, model: str) -> dict[str, str]:
    """step -> the earlier step it duplicates (identical weights), for one model."""
    if duplicates is None or duplicates.empty:
        return {}
    d = duplicates[(duplicates["model"] == model) & duplicates["duplicate_of"].notna()]
    return dict(zip(d["step"].astype(str), d["duplicate_of"].astype(str)))


def analyse_model(model: str, voxels: pd.DataFrame, items: pd.DataFrame, neurons: pd.DataFrame,
                  encoding_boot: pd.DataFrame, probing_boot: pd.DataFrame, cfg: Mapping, seed: int,
                  duplicates: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Phase analysis of one model: (phase table, trajectory table).

    ``cfg`` is the ``phases`` config block. Checkpoints that duplicate an
    earlier one (``duplicates``: model, step, duplicate_of) are left out
    unless ``keep_duplicates``: identical weights would count one checkpoint
    twice and pull the fit towards it. The initialisation (0 tokens) is in
    the trajectories but not segmented (log10(0) is undefined).
    """
    frames = {"voxels": voxels, "items": items, "neurons": neurons, "encoding_boot": encoding_boot,
              "probing_boot": probing_boot}
    frames = {k: f[f["model"] == model] for k, f in frames.items()}
    for k, f in frames.items():
        if f.empty:
            raise ValueError(f"model {model}: no rows in the {k} table")
    dup = duplicate_steps(duplicates, model)
    if dup and not cfg.get("keep_duplicates", False):
        for step, orig in sorted(dup.items()):
            log.info("model %s: %s has the weights of %s; left out of the phase analysis "
                     "(phases.keep_duplicates: true keeps it)", model, step, orig)
        frames = {k: f[~f["step"].astype(str).isin(dup)] for k, f in frames.items()}
    elif dup:
        log.info("model %s: keeping duplicate checkpoints %s", model, sorted(dup))
    traj, tokens, reps, layers = build_trajectories(
        frames["voxels"], frames["items"], frames["neurons"], frames["encoding_boot"], frames["probing_boot"],
        encoding_layer=cfg["encoding_layer"], probing_layer=cfg["probing_layer"], n_boot=cfg["n_boot"],
        seed=seed)
    trained = tokens > 0
    x = np.log10(tokens[trained])
    if len(x) < 2 * cfg["min_size"]:
        raise ValueError(
            f"model {model}: {len(x)} trained checkpoints with results in all three analyses; phase "
            f"detection needs at least 2 x phases.min_size = {2 * cfg['min_size']}. Add checkpoints "
            "(models[].train.checkpoints) or lower phases.min_size")
    y = np.column_stack([traj[traj["series"] == s]["value"].to_numpy()[trained] for s in SERIES])
    se = np.column_stack([traj[traj["series"] == s]["se"].to_numpy()[trained] for s in SERIES])
    opts = dict(min_size=cfg["min_size"], continuous=cfg.get("continuous", True))
    seg = detect_breakpoints(x, y, se, max_breakpoints=cfg["max_breakpoints"],
                             level=cfg.get("sign_level", 0.99), **opts)
    boot = bootstrap_breakpoints(x, reps[:, trained, :], seg.n_breakpoints, se=se,
                                 max_breakpoints=cfg["max_breakpoints"], **opts)
    table = phase_table(seg, SERIES, boot)
    table.insert(0, "model", model)
    table["encoding_layer"], table["probing_layer"] = layers["encoding"], layers["probing"]
    table["n_breakpoints"] = seg.n_breakpoints
    table["break_support"] = boot.fraction_with_all
    for j, s in enumerate(SERIES):
        table[f"dispersion_{s}"] = float(seg.dispersion[j])
    log.info("%s: %d breakpoints (BIC %s, dispersion %s; BIC picks >= %d in %.0f%% of replicates)\n%s",
             model, seg.n_breakpoints, np.round(seg.bic, 1), np.round(seg.dispersion, 2), seg.n_breakpoints,
             100 * boot.fraction_with_all,
             table[["phase", "label", "start_tokens", "end_tokens", "break_low_tokens",
                    "break_high_tokens"]].to_string())
    return table, traj.assign(model=model)


def analyse_study(tables: Mapping[str, pd.DataFrame], cfg: Mapping, seed: int,
                  duplicates: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Phase analysis of every model of a study: (phase table, trajectory table), models in sorted order.

    ``tables`` holds the workflow's tables ``voxels``, ``per_item``,
    ``neurons``, ``encoding_boot`` and ``probing_boot``; the models are
    those of ``voxels``. ``cfg``, ``seed`` and ``duplicates`` as for
    :func:`analyse_model`.
    """
    phases, trajectories = [], []
    for model in sorted(tables["voxels"]["model"].unique()):
        table, traj = analyse_model(model, tables["voxels"], tables["per_item"], tables["neurons"],
                                    tables["encoding_boot"], tables["probing_boot"], cfg, seed=seed,
                                    duplicates=duplicates)
        phases.append(table)
        trajectories.append(traj)
    return pd.concat(phases, ignore_index=True), pd.concat(trajectories, ignore_index=True)
