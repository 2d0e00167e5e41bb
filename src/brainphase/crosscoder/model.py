"""Tied brain–LM TopK crosscoder.

    z = TopK(W_brainᵀ x_brain + W_lmᵀ x_lm + b_enc),   x̂_brain = W_brain z,   x̂_lm = W_lm z

One sparse code reads and writes both sides. The encoders are the decoder
transposes, so a latent's only weights are its two decoder columns; their
norms say which side the latent serves (scores.relative_decoder_norm). That is
why the columns are not normalised, and why there is no decoder bias: a bias
would reconstruct each side's mean without any latent paying for it.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..io import read_torch_tensors, write_torch_tensors
from ..sparse_coding import dense_codes, topk_relu

TENSORS = ("W_brain", "W_lm", "b_enc")
# Every column of both sides at init: neither side ahead, and far below the
# ~0.5-1 that trained columns reach on unit-norm inputs, so a latent's r_i is
# set by what it learns. With 0.1, a latent that learned only one side kept
# ~0.1 on the other and columns that learned little sat at r_i = 0 ("shared"):
# on the demo the shuffle control then left the shared fraction unchanged.
INIT_NORM = 1e-3


class BrainLMCrosscoder(nn.Module):
    def __init__(self, n_brain: int, n_lm: int, d_latent: int = 1024, k: int = 64, seed: int = 0):
        super().__init__()
        if not 0 < k <= d_latent:
            raise ValueError(f"k must be in 1..d_latent ({d_latent}), got {k}")
        self.n_brain, self.n_lm, self.d_latent, self.k = int(n_brain), int(n_lm), int(d_latent), int(k)
        gen = torch.Generator().manual_seed(seed)
        self.W_brain = nn.Parameter(_random_columns(n_brain, d_latent, gen))
        self.W_lm = nn.Parameter(_random_columns(n_lm, d_latent, gen))
        self.b_enc = nn.Parameter(torch.zeros(d_latent))

    def pre_activations(self, x_brain: torch.Tensor, x_lm: torch.Tensor) -> torch.Tensor:
        return x_brain @ self.W_brain + x_lm @ self.W_lm + self.b_enc

    def _topk(self, pre: torch.Tensor) -> torch.Tensor:
        return dense_codes(*topk_relu(pre, self.k), self.d_latent)

    def encode(self, x_brain: torch.Tensor, x_lm: torch.Tensor) -> torch.Tensor:
        """Dense codes (…, d_latent): the k largest pre-activations after ReLU, zeros elsewhere."""
        return self._topk(self.pre_activations(x_brain, x_lm))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z @ self.W_brain.T, z @ self.W_lm.T

    def forward(self, x_brain: torch.Tensor, x_lm: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pre = self.pre_activations(x_brain, x_lm)
        z = self._topk(pre)
        x_hat_brain, x_hat_lm = self.decode(z)
        return x_hat_brain, x_hat_lm, z, pre


def _random_columns(n_rows: int, n_cols: int, gen: torch.Generator) -> torch.Tensor:
    # Gaussian columns have uniformly random directions; rescaling each to
    # INIT_NORM gives both sides the same start, so r_i = 0 for every latent.
    w = torch.randn(n_rows, n_cols, generator=gen)
    return w * (INIT_NORM / w.norm(dim=0, keepdim=True).clamp_min(1e-12))


def save_crosscoder(path: str | os.PathLike, model: BrainLMCrosscoder, metadata: dict) -> None:
    """Write ``model`` to a safetensors file; ``metadata`` values are stored JSON-encoded."""
    write_torch_tensors(path, {name: getattr(model, name) for name in TENSORS},
                        {**metadata, "n_brain": model.n_brain, "n_lm": model.n_lm, "d_latent": model.d_latent, "k": model.k})


def load_crosscoder(path: str | os.PathLike, device="cpu") -> tuple[BrainLMCrosscoder, dict]:
    tensors, meta = read_torch_tensors(path, TENSORS)
    model = BrainLMCrosscoder(meta["n_brain"], meta["n_lm"], meta["d_latent"], meta["k"])
    model.load_state_dict(tensors)
    return model.to(device), meta
