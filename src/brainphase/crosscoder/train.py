"""Train the brain–LM crosscoder on paired per-TR arrays, and the inputs' scaling and null.

Loss = ‖x̂_brain − x_brain‖² + ‖x̂_lm − x_lm‖² + α·AuxK, squared errors summed
over dimensions and averaged over the batch. Unlike the token SAE's FVU this
keeps one scale for both sides, which scale_to_unit_norm fixes beforehand:
with equal mean norms neither side buys more loss per unit of decoder norm.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import sparse_coding
from ..runtime import autocast, resolve_device
from ..sparse_coding import TopKTrainConfig, fired_latents
from .model import BrainLMCrosscoder
from .store import BLOCK_BYTES, RowStore, ShuffledRows

logger = logging.getLogger(__name__)


@dataclass
class CrosscoderTrainConfig(TopKTrainConfig):
    """Settings of a crosscoder's training; the shared TopK ones come from TopKTrainConfig."""

    d_latent: int = 1024
    """Latents of the shared code."""
    k: int = 64
    """Active latents per TR."""
    k_aux: int = 512
    """Dead latents asked to model the residual (AuxK); 0 turns AuxK off."""
    lr: float = 1e-4
    """Adam learning rate."""
    batch_size: int = 2048
    """TRs per optimiser step."""
    epochs: int = 300
    """Most passes over the training TRs."""
    patience: int = 20
    """Epochs without a better validation loss before stopping; 0: never stop early."""


def unit_norm_scale(x, rows: np.ndarray) -> float:
    """The factor making the mean L2 norm of the ``rows`` rows of ``x`` (array or RowStore) 1.

    The factor comes from the training rows only, so validation and test TRs
    are scaled without looking at them; it is one number per side, keeping
    the side's own geometry. Norms are taken in float64 a block of rows at a time.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise ValueError("scale_to_unit_norm needs at least one row to measure the norm on")
    store = x if isinstance(x, RowStore) else None
    if store is None:
        x = np.asarray(x)
        step = max(1, BLOCK_BYTES // (16 * max(1, x[:1].size)))
        norms = np.concatenate([np.linalg.norm(x[rows[lo:lo + step]].astype(np.float64), axis=1)
                                for lo in range(0, len(rows), step)])
    else:
        norms = store.row_norms(rows)
    mean_norm = float(norms.mean())
    if not mean_norm > 0:
        raise ValueError(f"the rows' mean L2 norm is {mean_norm}; cannot scale all-zero (or NaN) data to unit norm")
    return 1.0 / mean_norm


def scale_to_unit_norm(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """``(x * scale, scale)`` with ``scale`` from :func:`unit_norm_scale` (a new array)."""
    x = np.asarray(x)
    scale = unit_norm_scale(x, rows)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    return (x * scale).astype(dtype, copy=False), scale


def shuffled_index(n_rows: int, train_rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """Row map of the time-shuffle null: training rows permuted among themselves, the others fixed."""
    train_rows = np.asarray(train_rows, dtype=np.int64)
    index = np.arange(n_rows)
    index[train_rows] = np.random.default_rng(seed).permutation(train_rows)
    return index


def time_shuffle(x_brain: np.ndarray, train_rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """A copy of ``x_brain`` whose training rows are permuted among themselves.

    The crosscoder's null control: it breaks which brain TR goes with which LM TR
    but keeps the brain's own distribution (and the training set's contents),
    so latents that stay shared after it are not evidence of alignment.
    Validation and test rows are untouched, so the control is scored on real pairs.
    The pipeline reads the same rows through :func:`shuffled_index` without a copy.
    """
    x_brain = np.asarray(x_brain)
    return x_brain[shuffled_index(len(x_brain), train_rows, seed)]


def reconstruction_losses(x_brain, x_lm, x_hat_brain, x_hat_lm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per side, Σ_dims (x̂ − x)² averaged over the batch."""
    return ((x_hat_brain - x_brain).pow(2).sum(-1).mean(),
            (x_hat_lm - x_lm).pow(2).sum(-1).mean())


def _error_of_both_sides(residual, estimate) -> torch.Tensor:
    brain, lm = reconstruction_losses(*residual, *estimate)
    return brain + lm


def auxk_loss(model: BrainLMCrosscoder, x_brain, x_lm, x_hat_brain, x_hat_lm, pre, dead_mask: torch.Tensor,
              k_aux: int) -> torch.Tensor:
    """‖e − ê‖² with e the residual of both sides (x̂ detached) and ê = [W_brain; W_lm] z_aux.

    The model has no decoder bias, so its own decode maps the dead codes to ê.
    """
    residual = (x_brain - x_hat_brain.detach(), x_lm - x_hat_lm.detach())
    return sparse_coding.auxk_loss(residual, pre, dead_mask, k_aux, decode=model.decode, error=_error_of_both_sides)


def as_tensor(x, rows: np.ndarray, device) -> torch.Tensor:
    """Rows ``rows`` of ``x`` (array, tensor, RowStore or ShuffledRows) as float32 on ``device``."""
    rows = np.asarray(rows, dtype=np.int64)
    if torch.is_tensor(x):
        return x[torch.from_numpy(rows)].to(device=device, dtype=torch.float32)
    if isinstance(x, (RowStore, ShuffledRows)):
        return torch.from_numpy(x.gather(rows)).to(device)
    return torch.from_numpy(np.asarray(x[rows], dtype=np.float32)).to(device)


def row_batches(x, device):
    """A function ``rows -> float32 tensor on device`` over ``x``.

    On a GPU, data held in memory go there once and batches are gathered on
    the device; otherwise each batch is gathered on the host, so the host
    holds ``x`` once (no per-split copies) plus one batch.
    """
    device = torch.device(device)
    index, base = None, x
    if isinstance(x, ShuffledRows):
        index, base = x.index, x.store
    if isinstance(base, RowStore):
        base = base.array if base.scale == 1 else None
    if device.type == "cpu" or base is None:
        return lambda rows: as_tensor(x, rows, device)
    on_device = torch.as_tensor(base).to(device=device, dtype=torch.float32)

    def take(rows):
        rows = np.asarray(rows, dtype=np.int64)
        return on_device[torch.from_numpy(rows if index is None else index[rows]).to(device)]
    return take


@torch.no_grad()
def _validation_losses(model, take_brain, take_lm, rows: np.ndarray, batch_size: int) -> tuple[float, float]:
    brain = lm = 0.0
    for lo in range(0, len(rows), batch_size):
        xb, xl = take_brain(rows[lo:lo + batch_size]), take_lm(rows[lo:lo + batch_size])
        x_hat_brain, x_hat_lm, _, _ = model(xb, xl)
        b, m = reconstruction_losses(xb, xl, x_hat_brain.float(), x_hat_lm.float())
        brain += b.item() * len(xb)
        lm += m.item() * len(xb)
    return brain / len(rows), lm / len(rows)


def _train_epoch(model, opt, take_brain, take_lm, order, dead, cfg: CrosscoderTrainConfig, device
                 ) -> tuple[np.ndarray, torch.Tensor]:
    """One pass over the training rows in ``order``: the TR-weighted sums of (loss, loss_brain, loss_lm, aux),
    and which latents fired."""
    fired = torch.zeros(model.d_latent, dtype=torch.bool, device=device)
    sums = np.zeros(4)
    for i in range(math.ceil(len(order) / cfg.batch_size)):
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        xb, xl = take_brain(idx), take_lm(idx)
        with autocast(device, cfg.dtype):
            x_hat_brain, x_hat_lm, z, pre = model(xb, xl)
        x_hat_brain, x_hat_lm, pre = x_hat_brain.float(), x_hat_lm.float(), pre.float()
        loss_brain, loss_lm = reconstruction_losses(xb, xl, x_hat_brain, x_hat_lm)
        aux = auxk_loss(model, xb, xl, x_hat_brain, x_hat_lm, pre, dead, cfg.k_aux) if cfg.aux_coef > 0 \
            else loss_brain.new_zeros(())
        loss = loss_brain + loss_lm + cfg.aux_coef * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        fired |= fired_latents(z)
        # Batch-size weighted, so the epoch means are over TRs even with a short last batch.
        sums += len(xb) * torch.stack([loss, loss_brain, loss_lm, aux]).detach().cpu().numpy()
    return sums, fired


def train_crosscoder(x_brain, x_lm, train_rows: np.ndarray, val_rows: np.ndarray, cfg: CrosscoderTrainConfig,
                     log: logging.Logger | None = None) -> tuple[BrainLMCrosscoder, pd.DataFrame]:
    """Fit on ``train_rows`` of the paired arrays; return the best-validation-loss parameters and the history.

    ``x_brain`` (T × n_voxels) and ``x_lm`` (T × d) share their rows (TRs) and
    come scaled by the caller. Validation loss is the reconstruction loss
    alone: AuxK depends on which latents are dead, so it is no fixed yardstick.
    History: one row per epoch (epoch, steps, loss, loss_brain, loss_lm, aux,
    dead_fraction, val_loss, val_loss_brain, val_loss_lm, best).
    """
    log = log or logger
    train_rows = np.asarray(train_rows, dtype=np.int64)
    val_rows = np.asarray(val_rows, dtype=np.int64)
    if len(x_brain) != len(x_lm):
        raise ValueError(f"x_brain has {len(x_brain)} rows and x_lm {len(x_lm)}; they must be the same TRs")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(f"need at least 1 training and 1 validation row, got {len(train_rows)} and {len(val_rows)}")
    device = resolve_device(cfg.device)
    model = BrainLMCrosscoder(x_brain.shape[1], x_lm.shape[1], cfg.d_latent, cfg.k, seed=cfg.seed).to(device)
    rng = np.random.default_rng(cfg.seed)
    take_brain, take_lm = row_batches(x_brain, device), row_batches(x_lm, device)

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(train_rows) / cfg.batch_size)
    log_every = max(1, cfg.epochs // 20)
    # Dead = silent through the whole previous epoch; nothing is dead in the first.
    dead = torch.zeros(model.d_latent, dtype=torch.bool, device=device)
    history, best = [], (math.inf, -1, None)
    start = time.perf_counter()

    for epoch in range(cfg.epochs):
        order = train_rows[rng.permutation(len(train_rows))]
        sums, fired = _train_epoch(model, opt, take_brain, take_lm, order, dead, cfg, device)
        dead = ~fired

        val_brain, val_lm = _validation_losses(model, take_brain, take_lm, val_rows, cfg.batch_size)
        val_loss = val_brain + val_lm
        improved = val_loss < best[0]
        if improved:
            # One saved copy of the parameters, overwritten in place: never two at once.
            saved = best[2] or {k: torch.empty_like(v) for k, v in model.state_dict().items()}
            for k, v in model.state_dict().items():
                saved[k].copy_(v)
            best = (val_loss, epoch, saved)
        means = sums / len(train_rows)
        history.append({"epoch": epoch, "steps": (epoch + 1) * steps_per_epoch, "loss": means[0],
                        "loss_brain": means[1], "loss_lm": means[2], "aux": means[3],
                        "dead_fraction": dead.float().mean().item(), "val_loss": val_loss,
                        "val_loss_brain": val_brain, "val_loss_lm": val_lm, "best": improved})
        stop = cfg.patience > 0 and epoch - best[1] >= cfg.patience
        if (epoch + 1) % log_every == 0 or stop or epoch == cfg.epochs - 1:
            elapsed = time.perf_counter() - start
            log.info("crosscoder epoch %d/%d: loss %.4f (brain %.4f, LM %.4f), val %.4f (best %.4f at %d), "
                     "dead %.1f%%, %.2f s/epoch, ETA %.0f s", epoch + 1, cfg.epochs, means[0], means[1], means[2],
                     val_loss, best[0], best[1] + 1, 100 * history[-1]["dead_fraction"], elapsed / (epoch + 1),
                     elapsed / (epoch + 1) * (cfg.epochs - epoch - 1))
        if stop:
            log.info("crosscoder: no better validation loss for %d epochs, stopping", cfg.patience)
            break

    if best[2] is not None:
        model.load_state_dict(best[2])
    log.info("crosscoder done: %d epochs, best val loss %.4f at epoch %d", len(history), best[0], best[1] + 1)
    return model, pd.DataFrame(history)
