"""TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    z = TopK(W_enc (x − b_pre)),   x̂ = W_dec z + b_pre

TopK fixes the L0 at k instead of tuning an L1 penalty, and without an L1 term
there is no shrinkage to correct for. There is no encoder bias: b_pre centres
the input once, for encoder and decoder alike.
"""

from __future__ import annotations

import math
import os
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from ..io import read_torch_tensors, write_torch_tensors
from ..sparse_coding import SelectedPreactivations, bag_decode, dense_codes, topk_relu

TENSORS = ("W_enc", "W_dec", "b_pre")
ENCODER_INIT_SCALE = 0.1
"""Norm of the encoder's rows at initialisation (the decoder's columns have norm 1)."""


class SparseForward(NamedTuple):
    """A training forward pass with the codes kept sparse (see ``TopKSAE.forward_sparse``)."""

    x_hat: torch.Tensor
    values: torch.Tensor
    """The k codes per row after ReLU (B × k), with their gradient."""
    indices: torch.Tensor
    """Their latents (B × k)."""
    pre: torch.Tensor
    """All pre-activations (B × n_latents), without gradient: for selection only."""
    select: Callable[[torch.Tensor], torch.Tensor]
    """Pre-activations at given latent indices (B × m), with their gradient."""


class TopKSAE(nn.Module):
    def __init__(self, d_in: int, n_latents: int, k: int, seed: int = 0):
        super().__init__()
        if not 0 < k <= n_latents:
            raise ValueError(f"k must be in 1..n_latents ({n_latents}), got {k}")
        self.d_in, self.n_latents, self.k = int(d_in), int(n_latents), int(k)
        gen = torch.Generator().manual_seed(seed)
        # Kaiming-uniform bound of nn.Linear; only the directions survive the
        # normalisation below, so the scale matters little.
        bound = 1.0 / math.sqrt(d_in)
        w_enc = (torch.rand(n_latents, d_in, generator=gen) * 2 - 1) * bound
        w_dec = w_enc.T.clone()
        w_dec /= w_dec.norm(dim=0, keepdim=True).clamp_min(1e-12)
        # Encoder = decoder transpose at init: Gao et al. find it leaves far
        # fewer dead latents than independent initialisations. Scaled down, so
        # the first codes are small and the first steps grow them instead of
        # undoing 32 overlapping unit-norm guesses: at lr 4e-3 the unscaled
        # encoder's FVU rises for its first ~50 steps (d 512, 8192 latents).
        # The same small start as the 0.1-norm initialisation of sae-lens
        # (sae_lens/saes/sae.py, TrainingSAE.initialize_weights), whose decoder
        # is not kept at unit norm as ours is.
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(ENCODER_INIT_SCALE * w_dec.T)
        self.b_pre = nn.Parameter(torch.zeros(d_in))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_pre) @ self.W_enc.T

    def encode_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The k codes per row after ReLU, strongest first, and their latent indices."""
        return topk_relu(self.pre_activations(x), self.k)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return dense_codes(*self.encode_topk(x), self.n_latents)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec.T + self.b_pre

    def decode_topk(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """``decode`` of the codes given as (values, indices), without forming the dense codes."""
        return bag_decode(values, indices, self.W_dec.T) + self.b_pre

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pre = self.pre_activations(x)
        values, indices = topk_relu(pre, self.k)
        return self.decode_topk(values, indices), dense_codes(values, indices, self.n_latents), pre

    def forward_sparse(self, x: torch.Tensor) -> SparseForward:
        """The training forward pass: the same x̂ as ``forward``, at the cost of one dense product.

        The encoder product runs without autograd; only the selected
        pre-activations carry a gradient (``SelectedPreactivations``), so the
        backward pass and the decoder cost k/n_latents of their dense forms.
        """
        centred = x - self.b_pre
        with torch.no_grad():
            pre = centred @ self.W_enc.T
            indices = pre.topk(self.k, dim=-1).indices

        def select(idx: torch.Tensor) -> torch.Tensor:
            return SelectedPreactivations.apply(centred, self.W_enc, pre, idx)

        values = torch.relu(select(indices))
        return SparseForward(self.decode_topk(values, indices), values, indices, pre, select)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        # With unit columns the latent's value is its contribution's norm; without
        # it the model could shrink z and grow W_dec and the codes lose their scale.
        # vecdot, not norm(dim=0): the same column norms at a sixth of the time
        # (linalg.vector_norm over the strided dimension is slow on CPU).
        self.W_dec /= _column_norms_squared(self.W_dec).sqrt_().clamp_min_(1e-12)

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        # The gradient along a unit column only changes its norm, which
        # normalize_decoder undoes after the step; removing it keeps Adam's moment
        # estimates for what actually moves the column.
        g, w = self.W_dec.grad, self.W_dec
        if g is None:
            return
        g.addcmul_(w, torch.linalg.vecdot(g, w, dim=0) / _column_norms_squared(w).clamp_min_(1e-12), value=-1)

    @torch.no_grad()
    def init_pre_bias(self, sample) -> None:
        # The geometric median centres the data like the mean but ignores the few
        # outlier tokens that are common in residual streams.
        self.b_pre.copy_(geometric_median(sample).to(self.b_pre))


def _column_norms_squared(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vecdot(w, w, dim=0)


def geometric_median(points, n_iter: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """The point minimising the sum of Euclidean distances to ``points`` (n × d), by Weiszfeld.

    Hand-written: it is a dozen lines, and no maintained dependency in our
    stack provides it.
    """
    x = torch.as_tensor(np.asarray(points) if not torch.is_tensor(points) else points)
    out_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    x = x.detach().to(torch.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"geometric_median needs a non-empty (n, d) array, got shape {tuple(x.shape)}")
    y = x.mean(0)
    scale = (x - y).norm(dim=1).mean().clamp_min(1e-12)
    for _ in range(n_iter):
        # Distances floored at eps: a median sitting on a data point would divide by zero.
        w = 1.0 / (x - y).norm(dim=1).clamp_min(eps * scale)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        moved = (y_new - y).norm()
        y = y_new
        if moved <= eps * scale:
            break
    return y.to(out_dtype)


def save_sae(path: str | os.PathLike, sae: TopKSAE, metadata: dict) -> None:
    """Write ``sae`` to a safetensors file; ``metadata`` values are stored JSON-encoded."""
    write_torch_tensors(path, {name: getattr(sae, name) for name in TENSORS},
                        {**metadata, "d_in": sae.d_in, "n_latents": sae.n_latents, "k": sae.k})


def load_sae(path: str | os.PathLike, device="cpu") -> tuple[TopKSAE, dict]:
    tensors, meta = read_torch_tensors(path, TENSORS)
    sae = TopKSAE(meta["d_in"], meta["n_latents"], meta["k"])
    sae.load_state_dict(tensors)
    return sae.to(device), meta
