"""The TopK sparse-coding core shared by the token SAE and the brain–LM crosscoder.

Both models encode with TopK (the k largest pre-activations, after ReLU) and
revive dead latents with the AuxK loss of Gao et al. 2024 ("Scaling and
evaluating sparse autoencoders"): the top-k_aux dead latents are asked to
model the residual the live latents leave. What differs between the models
(how a code is decoded, how a reconstruction error is scored) comes in as
functions; the selection and the loss's structure live here, once.

Codes can also stay sparse, as (values, indices) of the selected latents: with
k ≪ n_latents, decoding them row by row (``bag_decode``) and sending the
gradient only to the selected pre-activations (``SelectedPreactivations``)
costs k/n_latents of the dense products, and nothing of size rows ×
n_latents is kept for the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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


def fired_from_indices(values: torch.Tensor, indices: torch.Tensor, n_latents: int) -> torch.Tensor:
    """``fired_latents`` of the codes given as (values, indices): whether each latent had a value > 0."""
    fired = torch.zeros(n_latents, dtype=torch.bool, device=indices.device)
    return fired.index_fill_(0, indices[values > 0], True)


def bag_decode(values: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Σ_j values[b, j] · rows[indices[b, j]] for each row b: sparse codes (B × k) times ``rows`` (n_latents × d).

    Equal to ``dense_codes(values, indices, n_latents) @ rows`` up to float
    rounding; ``embedding_bag`` adds the k selected rows without forming the
    dense codes, and its backward writes only those rows (the decode of
    EleutherAI/sparsify, sparsify/utils.py ``eager_decode``).
    """
    return F.embedding_bag(indices, rows, per_sample_weights=values.to(rows.dtype), mode="sum")


class SelectedPreactivations(torch.autograd.Function):
    """``pre.gather(-1, indices)`` where ``pre = centred @ weight.T``, with the gradient of the sparse product.

    ``pre`` is computed by the caller without autograd (it also selects the
    indices from it); the backward then costs B·k·d instead of two dense
    B·n_latents·d products: the gradient reaches ``centred`` as the bag of the
    selected weight rows, and ``weight`` only in its selected rows.
    """

    @staticmethod
    def forward(ctx, centred, weight, pre, indices):
        ctx.save_for_backward(centred, weight, indices)
        return pre.gather(-1, indices).to(centred.dtype)

    @staticmethod
    def backward(ctx, grad):
        centred, weight, indices = ctx.saved_tensors
        with torch.enable_grad():
            rows = weight.detach().requires_grad_(ctx.needs_input_grad[1])
            # grad_centred[b] = Σ_j grad[b, j] · weight[indices[b, j]], a bag; the
            # bag's own backward with ``centred`` as its output gradient is then
            # grad_weight[i] = Σ_{(b, j): indices[b, j] = i} grad[b, j] · centred[b].
            grad_centred = bag_decode(grad, indices, rows)
            grad_weight = torch.autograd.grad(grad_centred, rows, centred)[0] if ctx.needs_input_grad[1] else None
        return grad_centred.detach(), grad_weight, None, None


def auxk_indices(pre: torch.Tensor, dead_mask: torch.Tensor, k_aux: int) -> torch.Tensor:
    """Latent indices (B × min(k_aux, n_dead)) of each row's largest pre-activations among the dead latents."""
    dead = dead_mask.nonzero().squeeze(-1)
    k = min(int(k_aux), len(dead))
    # Only the dead columns are ranked: when few latents are dead this is far
    # cheaper than masking the live ones to -inf over the whole row.
    return dead[pre.index_select(-1, dead).topk(k, dim=-1, sorted=False).indices]


def auxk_codes(pre: torch.Tensor, dead_mask: torch.Tensor, k_aux: int) -> torch.Tensor:
    """Dense codes of the top-min(k_aux, n_dead) dead latents per row, after ReLU."""
    k = min(int(k_aux), int(dead_mask.sum()))
    masked = pre.masked_fill(~dead_mask, float("-inf"))
    values, indices = masked.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def auxk_loss(residual, pre: torch.Tensor, dead_mask: torch.Tensor, k_aux: int,
              decode: Callable, error: Callable, select: Callable | None = None) -> torch.Tensor:
    """``error(residual, decode(z_aux))``: how well the top-``k_aux`` dead latents model the residual.

    Dead latents get no gradient from the main loss; this one gives them a
    job, modelling what the live latents miss, so they come back to life.
    ``residual`` is e = x − x̂ with x̂ detached, so the live latents are not
    pulled towards leaving a residual; ``decode`` maps codes to ê without any
    bias (the residual has none); ``error`` is the model's reconstruction
    loss. Zero without dead latents or with ``k_aux`` ≤ 0.

    With ``select`` the codes stay sparse: ``select(indices)`` returns the
    pre-activations at ``indices`` (with their gradient, e.g. through
    :class:`SelectedPreactivations`) and ``decode(values, indices)`` decodes them.
    """
    if k_aux <= 0 or not bool(dead_mask.any()):
        # An empty sum: zero, but still part of the graph so callers may backward it.
        return pre[..., :0].sum()
    if select is None:
        return error(residual, decode(auxk_codes(pre, dead_mask, k_aux)))
    indices = auxk_indices(pre, dead_mask, k_aux)
    return error(residual, decode(torch.relu(select(indices)), indices))
