"""Reconstruction and AuxK losses of a TopK SAE (Gao et al. 2024, §2.2 and App. A.2)."""

from __future__ import annotations

import torch

from .. import sparse_coding


def _fvu(target: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    # Normalising by the batch variance makes the loss the fraction of variance
    # unexplained: 1 for predicting the batch mean, whatever the activation scale.
    variance = (target - target.mean(0)).pow(2).sum()
    return (target - estimate).pow(2).sum() / variance.clamp_min(torch.finfo(variance.dtype).tiny)


def normalized_mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ‖x − x̂‖² / Σ‖x − x̄‖² over the batch (= the batch's FVU)."""
    return _fvu(x, x_hat)


def _decode_residual(sae):
    # No b_pre: the residual x − x̂ already has it cancelled (x̂ contains it), so
    # adding it here would ask the dead latents to model −b_pre.
    return lambda values, indices: sparse_coding.bag_decode(values, indices, sae.W_dec.T)


def auxk_reconstruction(sae, pre: torch.Tensor, dead_mask: torch.Tensor, k_aux: int) -> torch.Tensor:
    """ê = W_dec z_aux: the dead latents' model of the residual (no b_pre)."""
    indices = sparse_coding.auxk_indices(pre, dead_mask, k_aux)
    return _decode_residual(sae)(torch.relu(pre.gather(-1, indices)), indices)


def auxk_loss(sae, x: torch.Tensor, x_hat: torch.Tensor, pre: torch.Tensor, dead_mask: torch.Tensor,
              k_aux: int, select=None) -> torch.Tensor:
    """Σ‖e − ê‖² / Σ‖e − ē‖² with e = x − x̂ (x̂ detached): the FVU of the residual by the dead latents.

    ``select(indices)``: the pre-activations at ``indices`` with their gradient
    (``TopKSAE.forward_sparse``'s); by default gathered from ``pre``.
    """
    select = select or (lambda indices: pre.gather(-1, indices))
    return sparse_coding.auxk_loss(x - x_hat.detach(), pre, dead_mask, k_aux, decode=_decode_residual(sae),
                                   error=_fvu, select=select)
