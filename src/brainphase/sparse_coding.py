"""The TopK sparse-coding core shared by the token SAE and the brain–LM crosscoder.

Both models encode with TopK (the k largest pre-activations, after ReLU) and
revive dead latents with the AuxK loss of Gao et al. 2024 ("Scaling and
evaluating sparse autoencoders"): the top-k_aux dead latents are asked to
model the residual the live latents leave. What differs between the models
(how a code is decoded, how a reconstruction error is scored) comes in as
functions; the selection and the loss's structure live here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class TopKTrainConfig:
    """Training settings every TopK sparse coder shares; each model's config extends it."""

    k: int = 32
    """Active latents per row (token or TR): the code's L0."""
    k_aux: int = 256
    """Dead latents asked to model the residual (AuxK); 0 turns AuxK off."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss in the total loss; 0 turns AuxK off."""
    lr: float = 2e-4
    """Adam learning rate (the peak, where there is a warm-up)."""
    batch_size: int = 4096
    """Rows per optimiser step."""
    epochs: int = 10
    """Passes over the training rows (the most, where training may stop early)."""
    seed: int = 0
    """Seeds the initial weights and the batch order."""
    device: str = "cpu"
    """cpu, cuda or auto (CUDA when present)."""
    dtype: str = "auto"
    """Autocast precision of the forward pass: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16."""


def topk_relu(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest pre-activations per row (strongest first) after ReLU, and their latent indices."""
    values, indices = pre.topk(k, dim=-1)
    # Fewer than k positive pre-activations: the rest must not fire negatively.
    return torch.relu(values), indices


def dense_codes(values: torch.Tensor, indices: torch.Tensor, n_latents: int) -> torch.Tensor:
    """Dense codes (…, n_latents): ``values`` at ``indices``, zeros elsewhere."""
    z = values.new_zeros(values.shape[:-1] + (n_latents,))
    return z.scatter(-1, indices, values)


def fired_latents(z: torch.Tensor) -> torch.Tensor:
    """Per latent, whether it fired (code > 0) on any row of the batch ``z``."""
    return (z > 0).any(0)


def auxk_codes(pre: torch.Tensor, dead_mask: torch.Tensor, k_aux: int) -> torch.Tensor:
    """Dense codes of the top-min(k_aux, n_dead) dead latents per row, after ReLU."""
    k = min(int(k_aux), int(dead_mask.sum()))
    masked = pre.masked_fill(~dead_mask, float("-inf"))
    values, indices = masked.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def auxk_loss(residual, pre: torch.Tensor, dead_mask: torch.Tensor, k_aux: int,
              decode: Callable, error: Callable) -> torch.Tensor:
    """``error(residual, decode(z_aux))``: how well the top-``k_aux`` dead latents model the residual.

    Dead latents get no gradient from the main loss; this one gives them a
    job, modelling what the live latents miss, so they come back to life.
    ``residual`` is e = x − x̂ with x̂ detached, so the live latents are not
    pulled towards leaving a residual; ``decode`` maps codes to ê without any
    bias (the residual has none); ``error`` is the model's reconstruction
    loss. Zero without dead latents or with ``k_aux`` ≤ 0.
    """
    if k_aux <= 0 or not bool(dead_mask.any()):
        # An empty sum: zero, but still part of the graph so callers may backward it.
        return pre[..., :0].sum()
    return error(residual, decode(auxk_codes(pre, dead_mask, k_aux)))
