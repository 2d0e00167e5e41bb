"""One checkpoint's crosscoder: fit on real and time-shuffled brain data, score and describe the latents.

Arrays and tables in, results out; the workflow script does the file I/O.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..encoding.runs import runs_by_split
from .data import brain_inputs, kept_trs, lm_inputs, top_windows
from .memory import check_budget, streams_responses
from .scores import class_fractions, evaluate_crosscoder, latent_activations, latent_classes, relative_decoder_norm
from .store import RowStore, ShuffledRows
from .train import CrosscoderTrainConfig, shuffled_index, train_crosscoder, unit_norm_scale

logger = logging.getLogger(__name__)

CLASSES = ("shared", "brain", "lm")
FITS = ("real", "shuffled")


@dataclass
class CheckpointCrosscoder:
    models: dict  # fit -> BrainLMCrosscoder
    latents: pd.DataFrame  # fit, latent, r, class, alive, brain_norm, lm_norm
    metrics: dict  # tidy-able {name: value}
    windows: pd.DataFrame  # latent, class, run, time, activation, text
    weights: pd.DataFrame  # latent, class, voxel, weight (brain decoder of the shown latents)


def train_config(cfg: dict, device: str) -> CrosscoderTrainConfig:
    keys = ("d_latent", "k", "k_aux", "aux_coef", "lr", "batch_size", "epochs", "patience", "seed")
    return CrosscoderTrainConfig(**{k: cfg[k] for k in keys}, device=device)


def group_shares(w_brain: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    """Per latent, the share of its brain decoder's energy on each planted voxel group."""
    energy = w_brain ** 2  # (n_voxels, d_latent)
    total = energy.sum(0)
    out = {g: energy[groups == g].sum(0) / np.where(total > 0, total, 1) for g in np.unique(groups)}
    return pd.DataFrame(out)


def run_checkpoint_crosscoder(acts: np.ndarray, stimuli: pd.DataFrame, brain, cfg: dict, device: str = "cpu",
                              voxel_groups: np.ndarray | None = None, resample: str = "lanczos",
                              budget_bytes: int | None = None, tmpdir: str | None = None) -> CheckpointCrosscoder:
    """Fit the crosscoder and its time-shuffled control on one layer's unit activations and one subject.

    ``budget_bytes``: the job's memory. The brain responses are held once, in
    memory when :func:`~brainphase.crosscoder.memory.crosscoder_peak_bytes` says
    they fit, else in a file of ``tmpdir`` (deleted when the job ends); a budget
    that even streaming exceeds is an error naming what to change. ``acts`` is
    released once the LM side is built, if the caller keeps no reference to it.
    """
    train_runs, test_runs = runs_by_split(stimuli, brain)
    runs = train_runs + test_runs
    shape = (kept_trs(brain, runs, cfg["trim"]), brain.runs[runs[0]].data.shape[1], acts.shape[1], cfg["d_latent"],
             cfg["batch_size"])
    peak = check_budget(*shape, budget_bytes, n_units=len(acts))
    directory = (tmpdir or tempfile.gettempdir()) if streams_responses(*shape, budget_bytes) else None
    logger.info("crosscoder: %d TRs x %d voxels, responses %s; expected peak %.2f GiB of a %s budget", *shape[:2],
                "in memory" if directory is None else f"streamed from a file in {directory}", peak / 2**30,
                "no" if budget_bytes is None else f"{budget_bytes / 2**30:.2f} GiB")
    x_lm = lm_inputs(acts, stimuli, brain, runs, cfg["delays_s"], cfg["trim"], resample)
    del acts
    with RowStore(shape[0], shape[1], directory) as store:
        inp = brain_inputs(x_lm, brain, train_runs, test_runs, cfg["trim"], cfg["val_fraction"], cfg["seed"], store)
        train = inp.split["train"]
        store.set_scale(unit_norm_scale(store, train))
        np.multiply(x_lm, np.float32(unit_norm_scale(x_lm, train)), out=x_lm)
        models, latents, metrics = _fit_both(store, x_lm, inp.split, cfg, device, voxel_groups)
        windows, weights = _interpretation(models["real"], latents, store, x_lm, inp, stimuli, cfg)
    return CheckpointCrosscoder(models, latents, metrics, windows, weights)


def _fit_both(store, x_lm, split, cfg, device, voxel_groups) -> tuple[dict, pd.DataFrame, dict]:
    """The real fit and the time-shuffled control: models, the latent table and the metrics."""
    train = split["train"]
    th = cfg["thresholds"]
    models, frames, metrics = {}, [], {}
    for fit in FITS:
        xb = store if fit == "real" else ShuffledRows(store, shuffled_index(len(store), train, cfg["seed"]))
        model, history = train_crosscoder(xb, x_lm, train, split["val"], train_config(cfg, device), log=logger)
        models[fit] = model
        ev = evaluate_crosscoder(model, store, x_lm, split["test"], batch_size=cfg["batch_size"])
        r = relative_decoder_norm(model)
        classes = latent_classes(r, brain=th["brain"], lm=th["lm"], shared=th["shared"])
        alive = np.asarray(ev["alive"], bool)
        fractions = class_fractions(classes, alive)
        w_brain = model.W_brain.detach().cpu().numpy()
        w_lm = model.W_lm.detach().cpu().numpy()
        lat = pd.DataFrame({"fit": fit, "latent": np.arange(len(r)), "r": r, "class": classes, "alive": alive,
                            "brain_norm": np.linalg.norm(w_brain, axis=0), "lm_norm": np.linalg.norm(w_lm, axis=0)})
        if voxel_groups is not None:
            lat = pd.concat([lat, group_shares(w_brain, voxel_groups).add_prefix("share_")], axis=1)
        frames.append(lat)
        for c in CLASSES:
            metrics[f"{fit}_fraction_{c}"] = float(fractions.get(c, 0.0))
        metrics[f"{fit}_test_r_brain"] = float(ev["r_brain"])
        metrics[f"{fit}_test_r_lm"] = float(ev["r_lm"])
        metrics[f"{fit}_n_alive"] = int(alive.sum())
        metrics[f"{fit}_epochs"] = int(history["epoch"].max()) + 1
        logger.info("%s: shared %.3f, brain %.3f, LM %.3f of %d alive latents; test r brain %.3f, LM %.3f", fit,
                    *(fractions.get(c, 0.0) for c in CLASSES), alive.sum(), ev["r_brain"], ev["r_lm"])
    latents = pd.concat(frames, ignore_index=True)
    if voxel_groups is not None:
        # Recovery of the planted world: where the brain-dominant and shared latents write.
        real = latents[(latents["fit"] == "real") & latents["alive"]]
        for c in ("shared", "brain"):
            sel = real[real["class"] == c]
            for g in np.unique(voxel_groups):
                metrics[f"real_{c}_share_{g}"] = float(sel[f"share_{g}"].mean()) if len(sel) else np.nan
    return models, latents, metrics


def _interpretation(model, latents, store, x_lm, inp, stimuli, cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interpretation aids from the real fit: the strongest latents of each class, their windows and brain maps."""
    real = latents[(latents["fit"] == "real") & latents["alive"]].copy()
    real["strength"] = np.maximum(real["brain_norm"], real["lm_norm"])
    shown = (real[real["class"].isin(CLASSES)].sort_values("strength", ascending=False)
             .groupby("class").head(cfg["n_show"]))
    test = inp.split["test"]
    z = latent_activations(model, store, x_lm, test, batch_size=cfg["batch_size"])
    windows = top_windows(z, inp, test, stimuli, shown["latent"].tolist())
    windows = windows.merge(shown[["latent", "class", "r"]], on="latent")
    w_brain = model.W_brain.detach().cpu().numpy()
    weights = pd.concat([pd.DataFrame({"latent": lat_id, "class": c, "r": r_i, "voxel": np.arange(len(w_brain)),
                                       "weight": w_brain[:, lat_id]})
                         for lat_id, c, r_i in shown[["latent", "class", "r"]].itertuples(index=False)],
                        ignore_index=True) if len(shown) else pd.DataFrame(
        columns=["latent", "class", "r", "voxel", "weight"])
    return windows, weights
