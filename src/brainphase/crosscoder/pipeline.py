"""One checkpoint's crosscoder: fit on real and time-shuffled brain data, score and describe the latents.

Arrays and tables in, results out; the workflow script does the file I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import crosscoder_inputs, top_windows
from .scores import class_fractions, evaluate_crosscoder, latent_activations, latent_classes, relative_decoder_norm
from .train import CrosscoderTrainConfig, scale_to_unit_norm, time_shuffle, train_crosscoder

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
                              voxel_groups: np.ndarray | None = None, resample: str = "lanczos") -> CheckpointCrosscoder:
    """Fit the crosscoder and its time-shuffled control on one layer's unit activations and one subject."""
    inp = crosscoder_inputs(acts, stimuli, brain, cfg["delays_s"], cfg["trim"], cfg["val_fraction"], cfg["seed"],
                            resample)
    train = inp.split["train"]
    x_brain, _ = scale_to_unit_norm(inp.x_brain, train)
    x_lm, _ = scale_to_unit_norm(inp.x_lm, train)
    th = cfg["thresholds"]
    models, frames, metrics = {}, [], {}
    for fit in FITS:
        xb = x_brain if fit == "real" else time_shuffle(x_brain, train, cfg["seed"])
        model, history = train_crosscoder(xb, x_lm, train, inp.split["val"], train_config(cfg, device), log=logger)
        models[fit] = model
        ev = evaluate_crosscoder(model, x_brain, x_lm, inp.split["test"])
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

    # Interpretation aids from the real fit: the strongest latents of each class.
    real = latents[(latents["fit"] == "real") & latents["alive"]].copy()
    real["strength"] = np.maximum(real["brain_norm"], real["lm_norm"])
    shown = (real[real["class"].isin(CLASSES)].sort_values("strength", ascending=False)
             .groupby("class").head(cfg["n_show"]))
    test = inp.split["test"]
    z = latent_activations(models["real"], x_brain, x_lm, test)
    windows = top_windows(z, inp, test, stimuli, shown["latent"].tolist())
    windows = windows.merge(shown[["latent", "class", "r"]], on="latent")
    w_brain = models["real"].W_brain.detach().cpu().numpy()
    weights = pd.concat([pd.DataFrame({"latent": lat_id, "class": c, "r": r_i, "voxel": np.arange(len(w_brain)),
                                       "weight": w_brain[:, lat_id]})
                         for lat_id, c, r_i in shown[["latent", "class", "r"]].itertuples(index=False)],
                        ignore_index=True) if len(shown) else pd.DataFrame(
        columns=["latent", "class", "r", "voxel", "weight"])
    return CheckpointCrosscoder(models, latents, metrics, windows, weights)
