"""The TopK/AuxK core the token SAE and the brain–LM crosscoder share: closed forms, and that both use it."""

import torch

from brainphase import sparse_coding
from brainphase.crosscoder import BrainLMCrosscoder
from brainphase.crosscoder import auxk_loss as crosscoder_auxk_loss
from brainphase.sae import TopKSAE
from brainphase.sae import auxk_loss as sae_auxk_loss

torch.set_num_threads(1)


def test_topk_relu_and_dense_codes():
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-2.0, -1.0, -3.0, 1.0]])
    values, indices = sparse_coding.topk_relu(pre, 2)
    assert indices.tolist() == [[0, 2], [3, 1]]  # strongest first
    assert values.tolist() == [[3.0, 2.0], [1.0, 0.0]]  # a negative pre-activation does not fire
    z = sparse_coding.dense_codes(values, indices, 4)
    assert z.tolist() == [[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    assert sparse_coding.fired_latents(z).tolist() == [True, False, True, True]


def test_auxk_codes_use_only_dead_latents():
    pre = torch.tensor([[5.0, 1.0, 4.0, 2.0]])
    dead = torch.tensor([False, True, False, True])
    assert sparse_coding.auxk_codes(pre, dead, 8).tolist() == [[0.0, 1.0, 0.0, 2.0]]
    assert sparse_coding.auxk_codes(pre, dead, 1).tolist() == [[0.0, 0.0, 0.0, 2.0]]


def _all_dead(n):
    return torch.ones(n, dtype=torch.bool)


def test_sae_auxk_closed_form_with_every_latent_dead():
    # All latents dead and k_aux ≥ n_latents: z_aux = ReLU(pre), so the loss is
    # the FVU of the residual e = x − x̂ by W_dec ReLU(pre) (no b_pre).
    gen = torch.Generator().manual_seed(0)
    sae = TopKSAE(6, 12, 2, seed=1)
    with torch.no_grad():
        sae.b_pre.copy_(torch.randn(6, generator=gen))
    x = torch.randn(20, 6, generator=gen)
    x_hat, _, pre = sae(x)
    e = x - x_hat
    e_hat = torch.relu(pre) @ sae.W_dec.T
    expected = (e - e_hat).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
    torch.testing.assert_close(sae_auxk_loss(sae, x, x_hat, pre, _all_dead(12), k_aux=12), expected)


def test_crosscoder_auxk_closed_form_with_every_latent_dead():
    # The crosscoder scores the residual of both sides by the summed squared
    # error per TR, so with every latent dead the loss is that of ReLU(pre)'s decoding.
    gen = torch.Generator().manual_seed(0)
    model = BrainLMCrosscoder(5, 4, d_latent=10, k=2, seed=1)
    xb, xl = torch.randn(16, 5, generator=gen), torch.randn(16, 4, generator=gen)
    x_hat_b, x_hat_l, _, pre = model(xb, xl)
    z = torch.relu(pre)
    expected = ((xb - x_hat_b) - z @ model.W_brain.T).pow(2).sum(-1).mean() \
        + ((xl - x_hat_l) - z @ model.W_lm.T).pow(2).sum(-1).mean()
    got = crosscoder_auxk_loss(model, xb, xl, x_hat_b, x_hat_l, pre, _all_dead(10), k_aux=10)
    torch.testing.assert_close(got, expected)


def test_sae_and_crosscoder_call_the_one_auxk_core(monkeypatch):
    calls = []
    core = sparse_coding.auxk_loss

    def spy(*args, **kwargs):
        calls.append(kwargs["decode"])
        return core(*args, **kwargs)

    monkeypatch.setattr(sparse_coding, "auxk_loss", spy)
    sae = TopKSAE(4, 8, 2)
    x = torch.randn(10, 4)
    x_hat, _, pre = sae(x)
    sae_auxk_loss(sae, x, x_hat, pre, _all_dead(8), k_aux=4)
    model = BrainLMCrosscoder(3, 2, d_latent=6, k=2)
    xb, xl = torch.randn(10, 3), torch.randn(10, 2)
    x_hat_b, x_hat_l, _, pre = model(xb, xl)
    crosscoder_auxk_loss(model, xb, xl, x_hat_b, x_hat_l, pre, _all_dead(6), k_aux=4)
    assert len(calls) == 2


def test_auxk_is_an_empty_sum_without_dead_latents():
    pre = torch.randn(4, 6, requires_grad=True)
    loss = sparse_coding.auxk_loss(torch.zeros(4, 3), pre, torch.zeros(6, dtype=torch.bool), 3,
                                   decode=lambda z: z[:, :3], error=lambda e, e_hat: (e - e_hat).pow(2).sum())
    assert loss.item() == 0.0 and loss.requires_grad
