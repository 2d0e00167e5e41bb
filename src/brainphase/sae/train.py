"""Train and evaluate a TopK SAE on token activations streamed from a (memmapped) array.

The activations may be larger than RAM: only each batch's rows are read, and
from a memory map they are read with ``pread`` so that the file's pages never
count towards the job's resident memory (see ``sae_peak_bytes``).
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..runtime import autocast, resolve_device
from ..sparse_coding import TopKTrainConfig, fired_from_indices
from .loss import auxk_loss, normalized_mse
from .model import TopKSAE

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
WARMUP_SHARE = 0.1
"""Longest warm-up, as a share of the run's steps: a longer one is shortened (with a warning)."""
STILL_FALLING = 0.25
"""A run ends still falling steeply when the validation FVU's fall per step between its last two
validations is at least this share of its mean fall per step since the start (the first batch's
FVU before any update): a converged curve has flattened far below its mean slope."""


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


RUNTIME_BYTES = 128 * 2**20
"""Allowance for what the first torch kernels page in once: code and workspaces (the fused Adam step alone
adds about 70 MB of resident memory on CPU), whatever the shapes."""


def sae_peak_bytes(d_in: int, n_latents: int, batch_size: int, n_val_tokens: int, k: int = 32,
                   k_aux: int = 256, eval_batch: int = 8192, geometric_median_sample: int = 4096) -> int:
    """Upper bound of the memory ``train_sae`` adds to the process (bytes), from the shapes alone.

    Parameters P = 2·n·d + d floats, held five times (weights, gradients, two
    Adam moments, the best-validation copy) plus three n·d temporaries of the
    backward pass and the decoder's renormalisation; then the larger of a
    training batch (the B × n pre-activations, once more for the AuxK
    ranking, and the B × d rows and B × (k + k_aux) codes around them), a
    validation batch (its V × n pre-activations and float64 rows) and the
    geometric median's float64 sample. The activations are read by rows, so
    their size does not enter (``read_rows``). ``RUNTIME_BYTES`` is added.
    """
    n, d, b = int(n_latents), int(d_in), int(batch_size)
    v = min(int(n_val_tokens), int(eval_batch))
    model = 4 * (5 * (2 * n * d + d) + 3 * n * d)
    train_batch = 4 * 2 * b * n + 4 * 8 * b * d + 24 * b * (k + k_aux)
    eval_rows = 4 * v * n + 48 * v * d + 12 * v * k
    median = 8 * 4 * int(geometric_median_sample) * d
    return model + max(train_batch, eval_rows, median) + RUNTIME_BYTES


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


def _pread_rows(mm: np.memmap, rows: np.ndarray) -> np.ndarray:
    """``mm[rows]`` for ascending ``rows``, read from the file: each run of consecutive rows is one read."""
    out = np.empty((len(rows),) + mm.shape[1:], dtype=mm.dtype)
    buf = memoryview(out).cast("B")
    row_bytes = out[:1].nbytes
    starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)
    ends = np.append(starts[1:], len(rows))
    with open(mm.filename, "rb", buffering=0) as f:
        for a, b in zip(starts.tolist(), ends.tolist()):
            view, offset = buf[a * row_bytes:b * row_bytes], mm.offset + int(rows[a]) * row_bytes
            while len(view):
                got = os.preadv(f.fileno(), [view], offset)
                if got <= 0:
                    raise OSError(f"{mm.filename}: short read at byte {offset}; the activation file is "
                                  "truncated, extract the activations again")
                view, offset = view[got:], offset + got
    return out


def read_rows(activations, rows: np.ndarray, device) -> torch.Tensor:
    """Rows ``rows`` of ``activations`` (in that order) as normalised float32 on ``device``."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    # Memmaps (and HDF5) read ascending rows far faster than scattered ones.
    if torch.is_tensor(activations):
        block = activations[torch.from_numpy(rows[order])].to(torch.float32)
    elif isinstance(getattr(activations, "base", None), mmap.mmap) and activations.flags.c_contiguous:
        # A memmap's own mapping (not a view: its offset is then the file's) read
        # without mapping the pages: indexing the map would leave every page of
        # the file resident in this process by the end of an epoch.
        block = torch.from_numpy(_pread_rows(activations, rows[order]).astype(np.float32))
    else:
        block = torch.from_numpy(np.asarray(activations[rows[order]], dtype=np.float32))
    x = torch.empty_like(block)
    x[torch.from_numpy(order)] = block
    return normalize_tokens(x.to(device))


def _device_of(sae: TopKSAE) -> torch.device:
    return next(sae.parameters()).device


def _train_step(sae: TopKSAE, opt, x: torch.Tensor, dead: torch.Tensor, cfg: SAETrainConfig, device):
    """One optimiser step on the batch ``x``; returns (loss, fvu, aux) and the latents that fired."""
    with autocast(device, cfg.dtype):
        fwd = sae.forward_sparse(x)
    x_hat = fwd.x_hat.float()
    fvu = normalized_mse(x_hat, x)
    aux = auxk_loss(sae, x, x_hat, fwd.pre, dead, cfg.k_aux, select=fwd.select).float() if cfg.aux_coef > 0 \
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
    return (loss, fvu, aux), fired_from_indices(fwd.values, fwd.indices, sae.n_latents)


def warmup_length(cfg: SAETrainConfig, total_steps: int, log: logging.Logger) -> int:
    """``cfg.warmup_steps``, shortened to WARMUP_SHARE of a run too short for it.

    A warm-up as long as the run never reaches the peak learning rate: the
    default 100 steps is a whole run of 48k tokens at batch 4096.
    """
    longest = int(WARMUP_SHARE * total_steps)
    if cfg.warmup_steps <= longest:
        return cfg.warmup_steps
    log.warning("SAE warmup_steps %d is longer than %.0f%% of the run's %d steps: warm-up shortened to %d steps "
                "(set warmup_steps <= %d, or train on more tokens or epochs)", cfg.warmup_steps,
                100 * WARMUP_SHARE, total_steps, longest, longest)
    return longest


def convergence(history: pd.DataFrame) -> dict:
    """Whether the run stopped far from convergence, with the numbers: see STILL_FALLING.

    ``fall_ratio`` is the validation FVU's fall per step between the last two
    validations over its mean fall per step since the start; ``undertrained``
    and ``undertrained_reason`` say whether (and why) to train longer.
    """
    val = history.dropna(subset=["val_fvu"])
    steps = np.concatenate([[0], val["step"].to_numpy(float)])
    fvu = np.concatenate([[history["fvu"].iloc[0]], val["val_fvu"].to_numpy(float)])
    out = {"steps": int(history["step"].iloc[-1]), "final_val_fvu": float(fvu[-1]),
           "initial_fvu": float(fvu[0]), "fall_ratio": math.nan, "undertrained": False, "undertrained_reason": ""}
    mean_fall = (fvu[0] - fvu[-1]) / steps[-1]
    if not mean_fall > 0:
        out.update(undertrained=True, undertrained_reason=(
            f"validation FVU {fvu[-1]:.4g} never fell below the initial FVU {fvu[0]:.4g}; raise lr or train longer"))
        return out
    out["fall_ratio"] = float((fvu[-2] - fvu[-1]) / (steps[-1] - steps[-2]) / mean_fall)
    if out["fall_ratio"] >= STILL_FALLING:
        out.update(undertrained=True, undertrained_reason=(
            f"validation FVU still falling steeply at the end: {fvu[-2]:.4g} -> {fvu[-1]:.4g} over the last "
            f"{steps[-1] - steps[-2]:.0f} of {steps[-1]:.0f} steps, {out['fall_ratio']:.2f}x the run's mean fall "
            f"per step (threshold {STILL_FALLING}); train for more epochs or raise lr"))
    return out


def train_sae(activations, train_rows: np.ndarray, val_rows: np.ndarray, cfg: SAETrainConfig,
              log: logging.Logger | None = None) -> tuple[TopKSAE, pd.DataFrame]:
    """Train a TopK SAE on the normalised ``train_rows``; return the best-``val_rows``-FVU parameters.

    History: one row per step (step, epoch, tokens, loss, fvu, aux,
    dead_fraction, lr) with val_fvu at validation points, NaN elsewhere; its
    ``attrs`` hold ``convergence``'s verdict (logged as a warning when the run
    is undertrained) and the warm-up used.
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

    # The fused kernel makes one pass over each parameter instead of about ten.
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999), fused=True)
    # A batch of one has no variance to normalise by; a lone last row waits for the next epoch.
    steps_per_epoch = len(train_rows) // cfg.batch_size + (len(train_rows) % cfg.batch_size >= 2)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = warmup_length(cfg, total_steps, log)
    log_every = max(1, total_steps // 20)
    silent_tokens = torch.zeros(sae.n_latents, dtype=torch.int64, device=device)
    history, best = [], (math.inf, None)
    step = tokens = 0
    start = time.perf_counter()

    for epoch in range(cfg.epochs):
        order = rng.permutation(train_rows)
        for i in range(steps_per_epoch):
            x = read_rows(activations, order[i * cfg.batch_size:(i + 1) * cfg.batch_size], device)
            lr = cfg.lr * min(1.0, (step + 1) / warmup) if warmup > 0 else cfg.lr
            for group in opt.param_groups:
                group["lr"] = lr
            losses, fired = _train_step(sae, opt, x, silent_tokens >= cfg.dead_tokens, cfg, device)
            silent_tokens += len(x)
            silent_tokens[fired] = 0
            step += 1
            tokens += len(x)
            dead_fraction = (silent_tokens >= cfg.dead_tokens).float().mean()
            # One transfer per step: on CUDA each .item() would wait for the device on its own.
            loss, fvu, aux, dead_fraction = torch.stack([*losses, dead_fraction]).tolist()
            row = {"step": step, "epoch": epoch, "tokens": tokens, "loss": loss, "fvu": fvu, "aux": aux,
                   "dead_fraction": dead_fraction, "lr": lr, "val_fvu": math.nan}
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
    history = pd.DataFrame(history)
    history.attrs.update(convergence(history), warmup_steps=warmup)
    log.info("SAE done: %d steps, best val fvu %.4f", step, best[0])
    if history.attrs["undertrained"]:
        log.warning("SAE undertrained: %s", history.attrs["undertrained_reason"])
    return sae, history


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
        values, indices = sae.encode_topk(x)
        x, x_hat = x.double(), sae.decode_topk(values, indices).double()
        # Variance as Σ‖x − s‖² − n‖mean(x − s)‖² with s the first batch's mean:
        # one pass, and the shift keeps float64 from cancelling when the mean is large.
        if shift is None:
            shift = x.mean(0)
            shifted_sum = torch.zeros_like(shift)
        err += (x - x_hat).pow(2).sum().item()
        shifted_sq += (x - shift).pow(2).sum().item()
        shifted_sum += (x - shift).sum(0)
        active += (values > 0).sum().item()
        fired |= fired_from_indices(values, indices, sae.n_latents)
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
