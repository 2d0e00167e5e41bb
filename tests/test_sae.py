"""TopK SAE against a planted dictionary, closed forms and a null."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import brainphase.sae.train as sae_train
from brainphase.sae.model import ENCODER_INIT_SCALE
from brainphase.sae import (SAETrainConfig, TopKSAE, auxk_loss, auxk_reconstruction, encode_rows, evaluate_sae,
                            geometric_median, load_sae, normalize_tokens, normalized_mse, save_sae,
                            split_documents, train_sae)

torch.set_num_threads(1)

D, N_ATOMS = 32, 128


def planted(n=20_000, max_active=3, noise=0.01, seed=0):
    """Tokens = positive combinations of 1..max_active of N_ATOMS unit atoms, plus noise."""
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((N_ATOMS, D))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    n_active = rng.integers(1, max_active + 1, n)
    which = np.argsort(rng.random((n, N_ATOMS)), axis=1)[:, :max_active]
    coef = rng.uniform(0.5, 1.5, (n, max_active)) * (np.arange(max_active) < n_active[:, None])
    x = np.einsum("nk,nkd->nd", coef, atoms[which]) + noise * rng.standard_normal((n, D))
    return x.astype(np.float32), atoms


def planted_config(**kw):
    return SAETrainConfig(**{**dict(expansion=N_ATOMS // D, k=3, k_aux=32, lr=5e-3, batch_size=256, epochs=20,
                                    warmup_steps=10, dead_tokens=5000, seed=0), **kw})


def doc_split(n, doc_len=50):
    return split_documents(np.arange(n) // doc_len, seed=0)


@pytest.fixture(scope="module")
def planted_run():
    x, atoms = planted()
    split = doc_split(len(x))
    sae, history = train_sae(x, split["train"], split["val"], planted_config())
    return x, atoms, split, sae, history


# --- the model ---------------------------------------------------------------------------------------------

def test_init_is_deterministic_tied_and_unit_norm():
    a, b, c = TopKSAE(16, 64, 4, seed=3), TopKSAE(16, 64, 4, seed=3), TopKSAE(16, 64, 4, seed=4)
    assert torch.equal(a.W_dec, b.W_dec) and not torch.equal(a.W_dec, c.W_dec)
    assert a.W_enc.shape == (64, 16) and a.W_dec.shape == (16, 64) and a.b_pre.shape == (16,)
    torch.testing.assert_close(a.W_enc, ENCODER_INIT_SCALE * a.W_dec.T)
    torch.testing.assert_close(a.W_dec.norm(dim=0), torch.ones(64))


def test_topk_keeps_k_largest_after_relu_and_no_encoder_bias():
    sae = TopKSAE(8, 32, 3, seed=0)
    with torch.no_grad():
        sae.b_pre.normal_()
    x = torch.randn(50, 8)
    pre = sae.pre_activations(x)
    torch.testing.assert_close(pre, (x - sae.b_pre) @ sae.W_enc.T)
    z = sae.encode(x)
    assert ((z != 0).sum(1) <= 3).all() and (z >= 0).all()
    kth = pre.topk(3, dim=1).values[:, -1:]
    expected = torch.where((pre >= kth) & (pre > 0), pre, torch.zeros_like(pre))
    torch.testing.assert_close(z, expected)
    x_hat, z2, pre2 = sae(x)
    torch.testing.assert_close(x_hat, z @ sae.W_dec.T + sae.b_pre)
    torch.testing.assert_close(z2, z)
    torch.testing.assert_close(pre2, pre)
    # All pre-activations negative: nothing fires, x̂ = b_pre.
    with torch.no_grad():
        sae.W_enc.copy_(-sae.W_enc.abs())
    x_pos = torch.rand(5, 8) + sae.b_pre.detach().clamp_min(0) + 0.1
    assert (sae.encode(x_pos) == 0).all()


def test_remove_parallel_gradient_leaves_gradient_orthogonal_to_columns():
    sae = TopKSAE(16, 48, 4, seed=1)
    g = torch.randn_like(sae.W_dec)
    sae.W_dec.grad = g.clone()
    sae.remove_parallel_gradient()
    after = sae.W_dec.grad
    assert (after * sae.W_dec).sum(0).abs().max() < 1e-5
    # Only the parallel part is removed.
    torch.testing.assert_close(after, g - (g * sae.W_dec).sum(0) * sae.W_dec.detach())
    assert (after - g).norm() > 0.1


def test_geometric_median_symmetric_and_robust():
    centre = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64)
    offsets = torch.cat([torch.eye(4), -torch.eye(4), 2 * torch.eye(4), -2 * torch.eye(4)])
    torch.testing.assert_close(geometric_median(centre + offsets), centre, atol=1e-6, rtol=0)
    rng = np.random.default_rng(0)
    cloud = rng.standard_normal((200, 4)) * 0.1 + centre.numpy()
    cloud[0] = 1e6
    median = geometric_median(cloud)  # numpy in, torch out
    assert torch.is_tensor(median)
    assert (median - centre).norm() < 0.1
    assert np.linalg.norm(cloud.mean(0) - centre.numpy()) > 1e3


def test_init_pre_bias_is_geometric_median():
    sae = TopKSAE(4, 8, 2)
    points = torch.randn(100, 4) + 5
    sae.init_pre_bias(points)
    torch.testing.assert_close(sae.b_pre.detach(), geometric_median(points))


# --- losses ----------------------------------------------------------------------------------------------

def test_normalized_mse_closed_forms():
    x = torch.randn(64, 8) * 3 + 2
    assert normalized_mse(x, x).item() == 0.0
    torch.testing.assert_close(normalized_mse(x.mean(0).expand_as(x), x), torch.tensor(1.0))
    torch.testing.assert_close(normalized_mse(torch.zeros_like(x), x),
                               (x ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_auxk_loss_zero_without_dead_latents():
    sae = TopKSAE(8, 16, 2)
    x = torch.randn(10, 8)
    x_hat, _, pre = sae(x)
    loss = auxk_loss(sae, x, x_hat, pre, torch.zeros(16, dtype=torch.bool), k_aux=4)
    assert loss.item() == 0.0
    (x_hat.pow(2).sum() + loss).backward()  # usable inside the total loss


def test_auxk_reconstruction_has_no_pre_bias():
    # Orthonormal decoder, large b_pre, residual made exactly of dead-latent atoms:
    # the dead latents can model it perfectly iff b_pre is not added again.
    d = 8
    sae = TopKSAE(d, 2 * d, 2)
    with torch.no_grad():
        sae.W_dec.copy_(torch.cat([torch.eye(d), torch.eye(d)], dim=1))
        sae.b_pre.fill_(5.0)
    dead = torch.zeros(2 * d, dtype=torch.bool)
    dead[d:] = True
    n = 20
    codes = torch.zeros(n, d)
    cols = torch.stack([torch.randperm(d)[:2] for _ in range(n)])
    codes.scatter_(1, cols, torch.rand(n, 2) + 0.5)
    x_hat = torch.randn(n, d)
    x = x_hat + codes
    pre = torch.cat([torch.full((n, d), 10.0), codes], dim=1)  # live latents huge but excluded
    e_hat = auxk_reconstruction(sae, pre, dead, k_aux=2)
    torch.testing.assert_close(e_hat, codes @ sae.W_dec[:, d:].T)
    torch.testing.assert_close(e_hat, codes)
    assert auxk_loss(sae, x, x_hat, pre, dead, k_aux=2).item() < 1e-10
    # And the closed form on a generic case.
    pre2 = torch.randn(n, 2 * d)
    z = pre2[:, d:].clone()
    top = z.topk(3, dim=1)
    z_aux = torch.zeros(n, 2 * d).scatter(1, top.indices + d, top.values.clamp_min(0))
    e = x - x_hat
    expected = ((e - z_aux @ sae.W_dec.T) ** 2).sum() / ((e - e.mean(0)) ** 2).sum()
    torch.testing.assert_close(auxk_loss(sae, x, x_hat, pre2, dead, k_aux=3), expected)


def test_auxk_trains_only_through_the_dead_latents():
    sae = TopKSAE(8, 16, 2)
    x = torch.randn(30, 8)
    x_hat, _, pre = sae(x)
    dead = torch.zeros(16, dtype=torch.bool)
    dead[:4] = True
    auxk_loss(sae, x, x_hat, pre, dead, k_aux=2).backward()
    assert sae.W_dec.grad[:, 4:].abs().max() == 0 and sae.W_dec.grad[:, :4].abs().max() > 0
    assert sae.W_enc.grad[4:].abs().max() == 0


def test_auxk_revives_dead_latents(monkeypatch):
    x, _ = planted(n=10_000, seed=1)
    rows = np.arange(len(x))

    class MostlyDead(TopKSAE):
        # Tiny encoder rows never win the top-k: dead from the start.
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            with torch.no_grad():
                self.W_enc[16:] *= 1e-3

    monkeypatch.setattr(sae_train, "TopKSAE", MostlyDead)
    dead = {}
    for coef in (0.0, 1 / 32):
        cfg = planted_config(aux_coef=coef, k_aux=64, epochs=4, dead_tokens=1000)
        sae, history = train_sae(x, rows[:9000], rows[9000:], cfg)
        assert history["dead_fraction"].iloc[4] > 0.8  # the setup: most latents start dead
        dead[coef] = evaluate_sae(sae, x, rows)["dead_fraction"]
    assert dead[0.0] > 0.8
    assert dead[1 / 32] < 0.3


# --- training ------------------------------------------------------------------------------------------

def test_planted_dictionary_is_recovered(planted_run):
    x, atoms, split, sae, _ = planted_run
    metrics = evaluate_sae(sae, x, split["test"])
    assert metrics["fvu"] < 0.1
    assert metrics["l0"] <= 3 and metrics["n_tokens"] == len(split["test"])
    cos = atoms @ sae.W_dec.detach().numpy()
    assert (cos.max(axis=1) > 0.9).mean() >= 0.8


def test_null_shuffled_dimensions_cannot_be_reconstructed(planted_run):
    x, _, split, _, _ = planted_run
    rng = np.random.default_rng(0)
    # Each dimension permuted on its own: same marginals, no dictionary.
    null = np.stack([rng.permutation(col) for col in x.T], axis=1)
    sae, _ = train_sae(null, split["train"], split["val"], planted_config())
    assert evaluate_sae(sae, null, split["test"])["fvu"] > 0.5


def test_gaussian_null_cannot_be_reconstructed(planted_run):
    _, _, split, _, _ = planted_run
    noise = np.random.default_rng(1).standard_normal((20_000, D)).astype(np.float32)
    sae, _ = train_sae(noise, split["train"], split["val"], planted_config(epochs=5))
    assert evaluate_sae(sae, noise, split["test"])["fvu"] > 0.5


def test_training_keeps_decoder_unit_norm_and_returns_best_validation(planted_run):
    x, _, split, sae, history = planted_run
    torch.testing.assert_close(sae.W_dec.detach().norm(dim=0), torch.ones(sae.n_latents), atol=1e-5, rtol=0)
    assert list(history.columns) == ["step", "epoch", "tokens", "loss", "fvu", "aux", "dead_fraction", "lr",
                                     "val_fvu"]
    validated = history.dropna(subset=["val_fvu"])
    assert len(validated) == 20 and (validated.groupby("epoch").size() == 1).all()
    assert evaluate_sae(sae, x, split["val"])["fvu"] == pytest.approx(validated["val_fvu"].min(), rel=1e-6)
    assert history["lr"].iloc[0] == pytest.approx(5e-4) and history["lr"].iloc[-1] == pytest.approx(5e-3)
    assert history["tokens"].iloc[-1] == 20 * len(split["train"])
    assert history["fvu"].iloc[-20:].mean() < history["fvu"].iloc[:20].mean()


def test_training_is_deterministic_and_streams_from_float16_memmap(tmp_path):
    x, _ = planted(n=3000, seed=2)
    path = tmp_path / "acts.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    mm = np.memmap(path, dtype=np.float16, mode="r", shape=x.shape)
    split = doc_split(len(x))
    cfg = planted_config(epochs=2, batch_size=128, val_every=7)
    first, h1 = train_sae(mm, split["train"], split["val"], cfg)
    second, h2 = train_sae(mm, split["train"], split["val"], cfg)
    in_memory, _ = train_sae(np.asarray(mm), split["train"], split["val"], cfg)
    assert torch.equal(first.W_dec, second.W_dec) and torch.equal(first.W_enc, second.W_enc)
    assert torch.equal(first.W_dec, in_memory.W_dec)
    pd.testing.assert_frame_equal(h1, h2)
    assert h1["val_fvu"].notna().sum() == len(h1) // 7 + (len(h1) % 7 != 0)
    other, _ = train_sae(mm, split["train"], split["val"], planted_config(epochs=2, batch_size=128, seed=1))
    assert not torch.equal(first.W_dec, other.W_dec)


def test_training_returns_best_validation_parameters_not_last():
    x, _ = planted(n=3000, seed=2)
    split = doc_split(len(x))
    # A wild learning rate makes validation FVU wander, so the best is not the last.
    cfg = planted_config(epochs=2, batch_size=128, val_every=5, lr=1.0, grad_clip=0)
    sae, history = train_sae(x, split["train"], split["val"], cfg)
    val = history["val_fvu"].dropna()
    assert val.idxmin() != val.index[-1]
    assert evaluate_sae(sae, x, split["val"])["fvu"] == pytest.approx(val.min(), rel=1e-6)


def test_evaluate_sae_closed_form_and_batching():
    x, _ = planted(n=1000, seed=3)
    xn = normalize_tokens(torch.from_numpy(x))
    sae = TopKSAE(D, 64, 4)
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.b_pre.copy_(xn.mean(0))
    rows = np.arange(len(x))
    assert evaluate_sae(sae, x, rows, batch_size=97)["fvu"] == pytest.approx(1.0, rel=1e-9)
    sae = TopKSAE(D, 64, 4, seed=5)
    full = evaluate_sae(sae, x, rows, batch_size=len(x))
    assert evaluate_sae(sae, x, rows, batch_size=33) == pytest.approx(full, rel=1e-9)
    with torch.no_grad():
        x_hat, z, _ = sae(xn)
    assert full["fvu"] == pytest.approx(normalized_mse(x_hat.double(), xn.double()).item(), rel=1e-6)
    assert full["l0"] == pytest.approx((z > 0).sum(1).float().mean().item())
    assert full["dead_fraction"] == pytest.approx(1 - (z > 0).any(0).float().mean().item())


def test_encode_rows_keeps_row_order():
    x, _ = planted(n=500, seed=4)
    sae = TopKSAE(D, 64, 4, seed=2)
    rows = np.random.default_rng(0).permutation(500)[:300]
    values, indices = encode_rows(sae, x, rows, batch_size=64)
    assert values.shape == indices.shape == (300, 4)
    assert values.dtype == np.float32 and indices.dtype == np.int64
    with torch.no_grad():
        v, i = sae.encode_topk(normalize_tokens(torch.from_numpy(x[rows])))
    np.testing.assert_array_equal(indices, i.numpy())
    np.testing.assert_allclose(values, v.numpy(), rtol=1e-6, atol=1e-7)


def test_normalize_tokens():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-30, 0.0]])
    np.testing.assert_allclose(normalize_tokens(x), [[0.6, 0.8], [0, 0], [1, 0]])
    t = normalize_tokens(torch.tensor(x, dtype=torch.float32))
    assert not t.isnan().any() and t[1].abs().sum() == 0
    torch.testing.assert_close(t[0], torch.tensor([0.6, 0.8]))


# --- splits and files ------------------------------------------------------------------------------------

def test_split_documents_keeps_documents_whole_and_is_reproducible():
    rng = np.random.default_rng(0)
    docs = np.repeat([f"story{i}" for i in range(40)], rng.integers(5, 30, 40))
    docs = docs[rng.permutation(len(docs))]
    split = split_documents(docs, (0.8, 0.1, 0.1), seed=3)
    assert sorted(split) == ["test", "train", "val"]
    together = np.concatenate(list(split.values()))
    np.testing.assert_array_equal(np.sort(together), np.arange(len(docs)))
    owners = [set(docs[r]) for r in split.values()]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert [len(o) for o in owners] == [32, 4, 4]
    again = split_documents(docs, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = split_documents(docs, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(split["val"], other["val"])


def test_split_documents_refuses_empty_splits():
    with pytest.raises(ValueError, match="empty"):
        split_documents(np.array([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="empty"):
        split_documents(np.arange(10), (0.9, 0.1, 0.0))
    split = split_documents(np.arange(3))  # one document each is enough
    assert [len(v) for v in split.values()] == [1, 1, 1]


def test_save_load_round_trip(tmp_path):
    sae = TopKSAE(12, 48, 5, seed=7)
    with torch.no_grad():
        sae.b_pre.normal_()
    path = tmp_path / "sub" / "sae.safetensors"
    save_sae(path, sae, {"model": "toy", "step": np.int64(400), "tokens": 1234, "seed": 0, "layers": [1, 2]})
    assert [p.name for p in path.parent.iterdir()] == ["sae.safetensors"]  # no temporary left behind
    loaded, meta = load_sae(path)
    assert meta == {"model": "toy", "step": 400, "tokens": 1234, "seed": 0, "layers": [1, 2], "d_in": 12,
                    "n_latents": 48, "k": 5}
    for name in ("W_enc", "W_dec", "b_pre"):
        assert torch.equal(getattr(loaded, name), getattr(sae, name))
        assert getattr(loaded, name).dtype == torch.float32
    x = torch.randn(7, 12)
    torch.testing.assert_close(loaded(x)[0], sae(x)[0])
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["step"]) == 400


# --- undertraining ---------------------------------------------------------------------------------------

def _history(steps, val_fvu, first_fvu=1.0):
    """A training history whose validations at ``steps`` read ``val_fvu``; the first batch's FVU ``first_fvu``."""
    n = steps[-1]
    h = pd.DataFrame({"step": np.arange(1, n + 1), "fvu": np.linspace(first_fvu, val_fvu[-1], n),
                      "val_fvu": np.nan})
    h.loc[np.asarray(steps) - 1, "val_fvu"] = val_fvu
    return h


def test_convergence_verdict_closed_forms():
    # Flattened: the last stretch falls at 0.01/10 per step against (1 - 0.2)/40 on average.
    flat = sae_train.convergence(_history([10, 20, 30, 40], [0.4, 0.25, 0.21, 0.2]))
    assert not flat["undertrained"] and flat["fall_ratio"] == pytest.approx((0.01 / 10) / (0.8 / 40))
    # A straight line: the last stretch falls at the mean rate, ratio 1.
    line = sae_train.convergence(_history([10, 20, 30, 40], [0.8, 0.6, 0.4, 0.2]))
    assert line["undertrained"] and line["fall_ratio"] == pytest.approx(1.0)
    assert "still falling steeply" in line["undertrained_reason"] and "0.4 -> 0.2" in line["undertrained_reason"]
    # Just below and at the threshold.
    edge = 0.2 + sae_train.STILL_FALLING * (0.8 / 40) * 10
    assert sae_train.convergence(_history([30, 40], [edge * 1.001, 0.2]))["undertrained"]
    assert not sae_train.convergence(_history([30, 40], [edge * 0.999, 0.2]))["undertrained"]
    # Never below the first batch's FVU.
    worse = sae_train.convergence(_history([10, 20], [1.1, 1.2], first_fvu=1.0))
    assert worse["undertrained"] and "never fell" in worse["undertrained_reason"]


def test_short_run_with_defaults_warns_with_numbers(caplog):
    # The defaults (lr 2e-4, batch 4096, 10 epochs, warm-up 100) on 48k tokens: 100 steps.
    x, atoms = planted(n=48_000)
    split = doc_split(len(x))
    with caplog.at_level(logging.WARNING, logger="brainphase.sae.train"):
        sae, history = train_sae(x, split["train"], split["val"], SAETrainConfig())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("warm-up shortened to 10 steps" in w and "100 steps" in w for w in warnings), warnings
    assert history.attrs["warmup_steps"] == 10 and history["lr"].iloc[9] == pytest.approx(2e-4)
    assert history.attrs["undertrained"] and history.attrs["fall_ratio"] >= sae_train.STILL_FALLING
    assert any(w.startswith("SAE undertrained: validation FVU still falling steeply") for w in warnings), warnings
    assert (atoms @ sae.W_dec.detach().numpy()).max(axis=1).mean() < 0.8  # far from the planted atoms


def test_converged_run_does_not_warn(caplog):
    x, atoms = planted(n=10_000, seed=5)
    split = doc_split(len(x))
    with caplog.at_level(logging.WARNING, logger="brainphase.sae.train"):
        sae, history = train_sae(x, split["train"], split["val"], planted_config(epochs=15))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not history.attrs["undertrained"] and history.attrs["fall_ratio"] < sae_train.STILL_FALLING
    assert history.attrs["warmup_steps"] == 10
    assert (atoms @ sae.W_dec.detach().numpy()).max(axis=1).mean() > 0.9


# --- memory ----------------------------------------------------------------------------------------------

def test_pread_rows_equal_the_memmap_rows(tmp_path):
    x = np.random.default_rng(0).standard_normal((500, 7)).astype(np.float16)
    np.save(tmp_path / "a.npy", x)  # a header before the data: the map has an offset
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    rows = np.array([0, 1, 2, 3, 9, 10, 11, 250, 251, 499, 5, 5])
    np.testing.assert_array_equal(sae_train._pread_rows(mm, np.sort(rows)), x[np.sort(rows)])
    expected = normalize_tokens(torch.from_numpy(x[rows].astype(np.float32)))
    assert torch.equal(sae_train.read_rows(mm, rows, "cpu"), expected)
    assert torch.equal(sae_train.read_rows(mm[100:], rows[:-3], "cpu"),  # a view: read through the map
                       normalize_tokens(torch.from_numpy(x[100:][rows[:-3]].astype(np.float32))))


MEMORY_PROBE = """
import json, resource, sys
import numpy as np, torch
torch.set_num_threads(1)
from brainphase.sae import SAETrainConfig, train_sae
from brainphase.sae.train import sae_peak_bytes
path, n_rows, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
acts = np.load(path, mmap_mode="r")
base = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
# Every 40th row: rows from the whole file, so reading through the map would make it all resident.
rows = np.arange(0, n_rows, 40)
cfg = SAETrainConfig(expansion=16, k=8, k_aux=64, batch_size=1024, epochs=1, warmup_steps=0, dead_tokens=2048)
train_sae(acts, rows[:-2048], rows[-2048:], cfg)
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"added": peak - base, "bound": sae_peak_bytes(d, 16 * d, 1024, 2048, k=8, k_aux=64)}))
"""


def test_training_memory_stays_within_the_planned_peak(tmp_path):
    # A 300 MB float16 cache, more than the bound: a job that mapped or loaded it would exceed it.
    n_rows, d = 2_400_000, 64
    acts = np.lib.format.open_memmap(tmp_path / "acts.npy", mode="w+", dtype=np.float16, shape=(n_rows, d))
    rng = np.random.default_rng(0)
    for lo in range(0, n_rows, 200_000):
        acts[lo:lo + 200_000] = rng.standard_normal((200_000, d))
    acts.flush()
    size = acts.nbytes
    del acts
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "acts.npy"), str(n_rows), str(d)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert size > measured["bound"]
    assert measured["added"] <= measured["bound"], measured


def test_peak_bytes_grow_with_each_shape_argument():
    base = sae_train.sae_peak_bytes(512, 8192, 1024, 4096)
    for kwargs in ({"d_in": 1024}, {"n_latents": 16384}, {"batch_size": 16384}, {"n_val_tokens": 8192}):
        args = {"d_in": 512, "n_latents": 8192, "batch_size": 1024, "n_val_tokens": 4096, **kwargs}
        assert sae_train.sae_peak_bytes(**args) > base, kwargs
    # The model's weights, gradients, two Adam moments and the best copy at least.
    assert base > 5 * 2 * 512 * 8192 * 4
