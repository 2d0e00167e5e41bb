"""Train and evaluate a TopK SAE on token activations streamed from a (memmapped) array.

The activations may be larger than RAM: only each batch's rows are read.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..runtime import autocast, resolve_device
from ..sparse_coding import TopKTrainConfig, fired_latents
from .loss import auxk_loss, normalized_mse
from .model import TopKSAE

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class SAETrainConfig(TopKTrainConfig):
    """Settings of a token SAE's training; the shared TopK ones (k, k_aux, lr, ...) come from TopKTrainConfig."""

    expansion: int = 16
    """Latents per input dimension."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up; 0: none."""
    dead_tokens: int = 200_000
    """A latent silent for this many training tokens is dead (and joins AuxK)."""
    val_every: int = 0
    """Steps between validations; 0: at each epoch's end."""
    geometric_median_sample: int = 4096
    """Training tokens the pre-encoder bias b_pre is initialised on (their geometric median)."""
    grad_clip: float = 1.0
    """Largest gradient norm; 0: no clipping."""


def split_documents(doc_ids: np.ndarray, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """Train/val/test token-row indices, whole documents to one split each.

    Tokens of one document are strongly correlated; splitting inside documents
    would let validation score memorised context. Each split with a non-zero
    fraction gets at least one document.
    """
    doc_ids = np.asarray(doc_ids)
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions.tolist()}")
    docs = np.unique(doc_ids)
    docs = docs[np.random.default_rng(seed).permutation(len(docs))]
    share = fractions / fractions.sum()
    n_val, n_test = (max(1, round(f * len(docs))) if f > 0 else 0 for f in share[1:])
    counts = dict(zip(SPLITS, (len(docs) - n_val - n_test, n_val, n_test)))
    empty = [name for name, n in counts.items() if n <= 0]
    if empty:
        raise ValueError(f"split(s) {empty} would be empty: {len(docs)} documents for fractions "
                         f"{fractions.tolist()}; give more documents or non-zero fractions")
    bounds = np.cumsum([0, *counts.values()])
    return {name: np.flatnonzero(np.isin(doc_ids, docs[lo:hi])).astype(np.int64)
            for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:])}


def normalize_tokens(x):
    """Each row scaled to unit L2 norm; all-zero rows stay zero.

    Residual-stream norms grow over layers and training; unit rows make FVU and
    the SAE's hyperparameters comparable across checkpoints.
    """
    if not torch.is_tensor(x):
        norm = np.linalg.norm(x, axis=-1, keepdims=True)
        return x / np.where(norm > 0, norm, 1)
    norm = x.norm(dim=-1, keepdim=True)
    return x / torch.where(norm > 0, norm, torch.ones_like(norm))


def read_rows(activations, rows: np.ndarray, device) -> torch.Tensor:
    """Rows ``rows`` of ``activations`` (in that order) as normalised float32 on ``device``."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    # Memmaps (and HDF5) read ascending rows far faster than scattered ones.
    if torch.is_tensor(activations):
        block = activations[torch.from_numpy(rows[order])].to(torch.float32)
    else:
        block = torch.from_numpy(np.asarray(activations[rows[order]], dtype=np.float32))
    x = torch.empty_like(block)
    x[torch.from_numpy(order)] = block
    return normalize_tokens(x.to(device))


def _device_of(sae: TopKSAE) -> torch.device:
    return next(sae.parameters()).device


def _train_step(sae: TopKSAE, opt, x: torch.Tensor, dead: torch.Tensor, cfg: SAETrainConfig, device):
    """One optimiser step on the batch ``x``; returns (loss, fvu, aux, z)."""
    with autocast(device, cfg.dtype):
        x_hat, z, pre = sae(x)
        fvu = normalized_mse(x_hat.float(), x)
        aux = auxk_loss(sae, x, x_hat.float(), pre.float(), dead, cfg.k_aux) if cfg.aux_coef > 0 \
            else fvu.new_zeros(())
        loss = fvu + cfg.aux_coef * aux
    opt.zero_grad(set_to_none=True)
    loss.backward()
    sae.remove_parallel_gradient()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
    opt.step()
    # Unit decoder columns after every step: a latent's value is then its contribution's norm.
    sae.normalize_decoder()
    return loss, fvu, aux, z


def train_sae(activations, train_rows: np.ndarray, val_rows: np.ndarray, cfg: SAETrainConfig,
              log: logging.Logger | None = None) -> tuple[TopKSAE, pd.DataFrame]:
    """Train a TopK SAE on the normalised ``train_rows``; return the best-``val_rows``-FVU parameters.

    History: one row per step (step, epoch, tokens, loss, fvu, aux,
    dead_fraction, lr) with val_fvu at validation points, NaN elsewhere.
    """
    log = log or logger
    train_rows = np.asarray(train_rows, dtype=np.int64)
    val_rows = np.asarray(val_rows, dtype=np.int64)
    if len(train_rows) < 2 or len(val_rows) == 0:
        raise ValueError(f"need at least 2 training and 1 validation token rows, got "
                         f"{len(train_rows)} and {len(val_rows)}")
    device = resolve_device(cfg.device)
    d_in = int(activations.shape[1])
    sae = TopKSAE(d_in, cfg.expansion * d_in, cfg.k, seed=cfg.seed).to(device)
    rng = np.random.default_rng(cfg.seed)

    sample = rng.choice(train_rows, min(cfg.geometric_median_sample, len(train_rows)), replace=False)
    sae.init_pre_bias(read_rows(activations, np.sort(sample), device))

    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    # A batch of one has no variance to normalise by; a lone last row waits for the next epoch.
    steps_per_epoch = len(train_rows) // cfg.batch_size + (len(train_rows) % cfg.batch_size >= 2)
    total_steps = steps_per_epoch * cfg.epochs
    log_every = max(1, total_steps // 20)
    silent_tokens = torch.zeros(sae.n_latents, dtype=torch.int64, device=device)
    history, best = [], (math.inf, None)
    step = tokens = 0
    start = time.perf_counter()

    for epoch in range(cfg.epochs):
        order = rng.permutation(train_rows)
        for i in range(steps_per_epoch):
            x = read_rows(activations, order[i * cfg.batch_size:(i + 1) * cfg.batch_size], device)
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else cfg.lr
            for group in opt.param_groups:
                group["lr"] = lr
            loss, fvu, aux, z = _train_step(sae, opt, x, silent_tokens >= cfg.dead_tokens, cfg, device)
            silent_tokens += len(x)
            silent_tokens[fired_latents(z)] = 0
            step += 1
            tokens += len(x)
            row = {"step": step, "epoch": epoch, "tokens": tokens, "loss": loss.item(), "fvu": fvu.item(),
                   "aux": aux.item(), "dead_fraction": (silent_tokens >= cfg.dead_tokens).float().mean().item(),
                   "lr": lr, "val_fvu": math.nan}
            validate = step % cfg.val_every == 0 if cfg.val_every > 0 else i == steps_per_epoch - 1
            if validate or step == total_steps:
                row["val_fvu"] = evaluate_sae(sae, activations, val_rows)["fvu"]
                if row["val_fvu"] < best[0]:
                    best = (row["val_fvu"], {k: v.detach().clone() for k, v in sae.state_dict().items()})
            history.append(row)
            if step % log_every == 0 or not math.isnan(row["val_fvu"]):
                rate = tokens / (time.perf_counter() - start)
                eta = (total_steps - step) * cfg.batch_size / rate
                log.info("SAE step %d/%d epoch %d: fvu %.4f, val fvu %.4f, dead %.1f%%, %.0f tokens/s, ETA %.0f s",
                         step, total_steps, epoch, row["fvu"], row["val_fvu"], 100 * row["dead_fraction"],
                         rate, eta)

    if best[1] is not None:
        sae.load_state_dict(best[1])
    log.info("SAE done: %d steps, best val fvu %.4f", step, best[0])
    return sae, pd.DataFrame(history)


@torch.no_grad()
def evaluate_sae(sae: TopKSAE, activations, rows: np.ndarray, batch_size: int = 8192) -> dict:
    """FVU, L0 and dead fraction of ``sae`` on the normalised ``rows``."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise ValueError("evaluate_sae needs at least one token row")
    device = _device_of(sae)
    err = shifted_sq = active = 0.0
    shifted_sum, shift = None, None
    fired = torch.zeros(sae.n_latents, dtype=torch.bool, device=device)
    for lo in range(0, len(rows), batch_size):
        x = read_rows(activations, rows[lo:lo + batch_size], device)
        x_hat, z, _ = sae(x)
        x, x_hat = x.double(), x_hat.double()
        # Variance as Σ‖x − s‖² − n‖mean(x − s)‖² with s the first batch's mean:
        # one pass, and the shift keeps float64 from cancelling when the mean is large.
        if shift is None:
            shift = x.mean(0)
            shifted_sum = torch.zeros_like(shift)
        err += (x - x_hat).pow(2).sum().item()
        shifted_sq += (x - shift).pow(2).sum().item()
        shifted_sum += (x - shift).sum(0)
        active += (z > 0).sum().item()
        fired |= fired_latents(z)
    n = len(rows)
    variance = shifted_sq - shifted_sum.pow(2).sum().item() / n
    return {"fvu": err / variance if variance > 0 else math.nan, "l0": active / n,
            "dead_fraction": 1.0 - fired.float().mean().item(), "n_tokens": n}


@torch.no_grad()
def encode_rows(sae: TopKSAE, activations, rows: np.ndarray, batch_size: int = 8192
                ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k codes (values float32, latent indices int64), each (len(rows), k), of the normalised rows."""
    rows = np.asarray(rows, dtype=np.int64)
    device = _device_of(sae)
    values = np.empty((len(rows), sae.k), dtype=np.float32)
    indices = np.empty((len(rows), sae.k), dtype=np.int64)
    for lo in range(0, len(rows), batch_size):
        v, i = sae.encode_topk(read_rows(activations, rows[lo:lo + batch_size], device))
        values[lo:lo + len(v)] = v.float().cpu().numpy()
        indices[lo:lo + len(v)] = i.cpu().numpy()
    return values, indices
