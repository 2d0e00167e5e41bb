"""What a fitted crosscoder says: which side each latent serves, and how well it reconstructs.

r_i = (‖d_brain,i‖ − ‖d_lm,i‖) / max(‖d_brain,i‖, ‖d_lm,i‖) is +1 for a latent
that writes only to the brain, −1 for one that writes only to the LM side, and
0 for one that writes both equally (Lindsey et al. 2024's relative
decoder norm, rescaled to [−1, 1]).
"""

from __future__ import annotations

import numpy as np
import torch

from .model import BrainLMCrosscoder
from .store import BLOCK_BYTES, running_sum
from .train import as_tensor, reconstruction_losses

CLASSES = ("shared", "brain", "lm", "other", "dead")


def _numpy(w) -> np.ndarray:
    return w.detach().to("cpu", torch.float64).numpy() if torch.is_tensor(w) else np.asarray(w, dtype=np.float64)


def relative_decoder_norm(model_or_weights) -> np.ndarray:
    """r_i per latent from a model or a (W_brain, W_lm) pair of (n × d_latent) arrays; NaN where both columns are 0."""
    if isinstance(model_or_weights, BrainLMCrosscoder):
        w_brain, w_lm = model_or_weights.W_brain, model_or_weights.W_lm
    else:
        w_brain, w_lm = model_or_weights
    brain = np.linalg.norm(_numpy(w_brain), axis=0)
    lm = np.linalg.norm(_numpy(w_lm), axis=0)
    top = np.maximum(brain, lm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top > 0, (brain - lm) / np.where(top > 0, top, 1), np.nan)


def latent_classes(r, brain: float = 0.5, lm: float = -0.5, shared: float = 0.2) -> np.ndarray:
    """"brain" (r > brain), "lm" (r < lm), "shared" (|r| < shared), "other" in between, "dead" for NaN."""
    r = np.asarray(r, dtype=float)
    if not lm < -shared <= shared < brain:
        raise ValueError(f"thresholds must satisfy lm < -shared <= shared < brain, got lm={lm}, shared={shared}, "
                         f"brain={brain}")
    out = np.full(r.shape, "other", dtype=object)
    out[r > brain] = "brain"
    out[r < lm] = "lm"
    out[np.abs(r) < shared] = "shared"
    out[np.isnan(r)] = "dead"
    return out


def class_fractions(classes, alive=None) -> dict[str, float]:
    """Share of each class among the alive latents (all latents when ``alive`` is None); NaN if none is alive."""
    classes = np.asarray(classes, dtype=object)
    if alive is not None:
        classes = classes[np.asarray(alive, dtype=bool)]
    n = len(classes)
    return {c: float(np.sum(classes == c) / n) if n else float("nan") for c in CLASSES}


def reconstruction_r(x, x_hat) -> np.ndarray:
    """Pearson r of each column of ``x`` with the same column of ``x_hat``, over rows; NaN for a constant column."""
    x, x_hat = _numpy(x), _numpy(x_hat)
    if x.shape != x_hat.shape or x.ndim != 2:
        raise ValueError(f"reconstruction_r needs two (rows × columns) arrays of one shape, got {x.shape} "
                         f"and {x_hat.shape}")
    a, b = x - x.mean(0), x_hat - x_hat.mean(0)
    denom = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(0) / np.where(denom > 0, denom, 1), np.nan)


def _device_of(model: BrainLMCrosscoder) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _reconstruct(model, x_brain, x_lm, rows, batch_size: int):
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise ValueError("the crosscoder needs at least one row to score")
    device = _device_of(model)
    for lo in range(0, len(rows), batch_size):
        xb, xl = as_tensor(x_brain, rows[lo:lo + batch_size], device), as_tensor(x_lm, rows[lo:lo + batch_size], device)
        yield (xb, xl, *model(xb, xl))


def _float64_blocks(*tensors):
    # Blocks of rows of the batch in float64, so the float64 temporaries stay BLOCK_BYTES whatever the batch.
    step = max(1, BLOCK_BYTES // (8 * max(t.shape[1] for t in tensors)))
    for lo in range(0, len(tensors[0]), step):
        yield [t[lo:lo + step].detach().to("cpu", torch.float64).numpy() for t in tensors]


class _ColumnR:
    """Per-column Pearson r of (x, x̂) over batches of rows, equal bit for bit to :func:`reconstruction_r`.

    Two passes, as reconstruction_r's centring needs the means first: sums
    (:meth:`add_sums`), then centred products (:meth:`add_products`); every
    sum runs over the rows in order (``store.running_sum``).
    """

    def __init__(self):
        self.n, self.sums, self.products = 0, [None, None], [None, None, None]

    def add_sums(self, x, x_hat):
        for a, b in _float64_blocks(x, x_hat):
            self.sums = [running_sum(s, v) for s, v in zip(self.sums, (a, b))]
            self.n += len(a)

    def add_products(self, x, x_hat):
        mean_x, mean_h = (s / self.n for s in self.sums)
        for a, b in _float64_blocks(x, x_hat):
            a, b = a - mean_x, b - mean_h
            self.products = [running_sum(s, v) for s, v in zip(self.products, (a * b, a * a, b * b))]

    def r(self) -> np.ndarray:
        ab, aa, bb = self.products
        denom = np.sqrt(aa * bb)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, ab / np.where(denom > 0, denom, 1), np.nan)


def evaluate_crosscoder(model: BrainLMCrosscoder, x_brain, x_lm, rows: np.ndarray, batch_size: int = 8192) -> dict:
    """Reconstruction of ``rows``: mean and per-column r per side, loss, L0 and which latents fire.

    Keys: r_brain, r_lm (means over columns, constant columns skipped),
    r_brain_columns, r_lm_columns, loss (= loss_brain + loss_lm, the training
    loss without AuxK), loss_brain, loss_lm, l0, alive (bool, d_latent), n_rows.
    Memory: one batch of ``batch_size`` rows at a time; the model runs twice
    over ``rows`` (column means first, then the centred products of r).
    """
    r_brain, r_lm = _ColumnR(), _ColumnR()
    active, n = 0, 0
    brain = lm = 0.0
    alive = torch.zeros(model.d_latent, dtype=torch.bool, device=_device_of(model))
    for xb, xl, hb, hl, z, _ in _reconstruct(model, x_brain, x_lm, rows, batch_size):
        hb, hl = hb.float(), hl.float()
        lb, ll = reconstruction_losses(xb, xl, hb, hl)
        brain += lb.item() * len(xb)
        lm += ll.item() * len(xb)
        active += (z > 0).sum().item()
        alive |= (z > 0).any(0)
        n += len(xb)
        r_brain.add_sums(xb, hb)
        r_lm.add_sums(xl, hl)
    for xb, xl, hb, hl, _, _ in _reconstruct(model, x_brain, x_lm, rows, batch_size):
        r_brain.add_products(xb, hb.float())
        r_lm.add_products(xl, hl.float())
    r_brain, r_lm = r_brain.r(), r_lm.r()
    mean = (lambda r: float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"))
    return {"r_brain": mean(r_brain), "r_lm": mean(r_lm), "r_brain_columns": r_brain, "r_lm_columns": r_lm,
            "loss": (brain + lm) / n, "loss_brain": brain / n, "loss_lm": lm / n, "l0": active / n,
            "alive": alive.cpu().numpy(), "n_rows": n}


def latent_activations(model: BrainLMCrosscoder, x_brain, x_lm, rows: np.ndarray, batch_size: int = 8192
                       ) -> np.ndarray:
    """Dense codes z (len(rows) × d_latent, float32) of ``rows``."""
    return np.concatenate([z.float().cpu().numpy()
                           for *_, z, _ in _reconstruct(model, x_brain, x_lm, rows, batch_size)])
