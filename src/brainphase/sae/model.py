"""TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    z = TopK(W_enc (x − b_pre)),   x̂ = W_dec z + b_pre

TopK fixes the L0 at k instead of tuning an L1 penalty, and without an L1 term
there is no shrinkage to correct for. There is no encoder bias: b_pre centres
the input once, for encoder and decoder alike.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from ..io import read_torch_tensors, write_torch_tensors
from ..sparse_coding import dense_codes, topk_relu

TENSORS = ("W_enc", "W_dec", "b_pre")


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
        # fewer dead latents than independent initialisations.
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone())
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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pre = self.pre_activations(x)
        z = dense_codes(*topk_relu(pre, self.k), self.n_latents)
        return self.decode(z), z, pre

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        # With unit columns the latent's value is its contribution's norm; without
        # it the model could shrink z and grow W_dec and the codes lose their scale.
        self.W_dec /= self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        # The gradient along a unit column only changes its norm, which
        # normalize_decoder undoes after the step; removing it keeps Adam's moment
        # estimates for what actually moves the column.
        g, w = self.W_dec.grad, self.W_dec
        if g is None:
            return
        g -= (g * w).sum(0, keepdim=True) / (w * w).sum(0, keepdim=True).clamp_min(1e-12) * w

    @torch.no_grad()
    def init_pre_bias(self, sample) -> None:
        # The geometric median centres the data like the mean but ignores the few
        # outlier tokens that are common in residual streams.
        self.b_pre.copy_(geometric_median(sample).to(self.b_pre))


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
