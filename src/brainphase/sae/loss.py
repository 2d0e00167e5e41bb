"""Reconstruction and AuxK losses of a TopK SAE (Gao et al. 2024, §2.2 and App. A.2)."""

from __future__ import annotations

import torch


def _fvu(target: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    # Normalising by the batch variance makes the loss the fraction of variance
    # unexplained: 1 for predicting the batch mean, whatever the activation scale.
    variance = (target - target.mean(0)).pow(2).sum()
    return (target - estimate).pow(2).sum() / variance.clamp_min(torch.finfo(variance.dtype).tiny)


def normalized_mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ‖x − x̂‖² / Σ‖x − x̄‖² over the batch (= the batch's FVU)."""
    return _fvu(x, x_hat)


def auxk_codes(pre: torch.Tensor, dead_mask: torch.Tensor, k_aux: int) -> torch.Tensor:
    """Dense codes of the top-min(k_aux, n_dead) dead latents per row, after ReLU."""
    k = min(int(k_aux), int(dead_mask.sum()))
    masked = pre.masked_fill(~dead_mask, float("-inf"))
    values, indices = masked.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def auxk_reconstruction(sae, pre: torch.Tensor, dead_mask: torch.Tensor, k_aux: int) -> torch.Tensor:
    """ê = W_dec z_aux: the dead latents' model of the residual.

    No b_pre: the residual x − x̂ already has it cancelled (x̂ contains it), so
    adding it here would ask the dead latents to model −b_pre.
    """
    return auxk_codes(pre, dead_mask, k_aux) @ sae.W_dec.T


def auxk_loss(sae, x: torch.Tensor, x_hat: torch.Tensor, pre: torch.Tensor, dead_mask: torch.Tensor,
              k_aux: int) -> torch.Tensor:
    """Σ‖e − ê‖² / Σ‖e − ē‖² with e = x − x̂ (x̂ detached).

    Dead latents get no gradient from the main loss; this one gives them a job,
    modelling what the live latents miss, so they come back to life. x̂ is
    detached so the live latents are not pulled towards leaving a residual.
    """
    if k_aux <= 0 or not bool(dead_mask.any()):
        # An empty sum: zero, but still part of the graph so callers may backward it.
        return pre[..., :0].sum()
    residual = x - x_hat.detach()
    return _fvu(residual, auxk_reconstruction(sae, pre, dead_mask, k_aux))
