"""Brain–LM crosscoder against a planted world, closed forms and the time-shuffle null."""

import json

import numpy as np
import pytest
import torch

from brainphase.crosscoder import (BrainLMCrosscoder, CrosscoderTrainConfig, auxk_loss, class_fractions,
                                   evaluate_crosscoder, latent_activations, latent_classes, load_crosscoder,
                                   reconstruction_r, relative_decoder_norm, save_crosscoder, scale_to_unit_norm,
                                   time_shuffle, train_crosscoder)
from brainphase.crosscoder.model import INIT_NORM

torch.set_num_threads(1)

N_BRAIN, N_LM, N_EACH = 60, 40, 10  # N_EACH shared, brain-only and LM-only sources
PLANTED_CLASS = np.array(["shared"] * N_EACH + ["brain"] * N_EACH + ["lm"] * N_EACH)


def planted(n=3000, noise=0.02, seed=0):
    """Sparse non-negative sources; shared ones write to both sides, the others to one side only."""
    rng = np.random.default_rng(seed)
    s = rng.exponential(1.0, (n, 3 * N_EACH)) * (rng.random((n, 3 * N_EACH)) < 0.1)

    def directions(m, d):
        u = rng.standard_normal((m, d))
        return u / np.linalg.norm(u, axis=1, keepdims=True)

    shared, brain_only, lm_only = s[:, :N_EACH], s[:, N_EACH:2 * N_EACH], s[:, 2 * N_EACH:]
    x_brain = np.hstack([shared, brain_only]) @ directions(2 * N_EACH, N_BRAIN)
    x_lm = np.hstack([shared, lm_only]) @ directions(2 * N_EACH, N_LM)
    x_brain += noise * rng.standard_normal(x_brain.shape)
    x_lm += noise * rng.standard_normal(x_lm.shape)
    return x_brain.astype(np.float32), x_lm.astype(np.float32), s


def row_split(n, seed=1):
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(0.7 * n), int(0.85 * n)
    return {"train": np.sort(perm[:a]), "val": np.sort(perm[a:b]), "test": np.sort(perm[b:])}


def planted_config(**kw):
    return CrosscoderTrainConfig(**{**dict(d_latent=64, k=8, k_aux=32, lr=3e-3, batch_size=256, epochs=200,
                                           patience=30, seed=0), **kw})


def best_matches(z, s):
    """For each source (column of s), the latent whose activation correlates most with it."""
    zc, sc = z - z.mean(0), s - s.mean(0)
    denom = np.sqrt(np.outer((zc ** 2).sum(0), (sc ** 2).sum(0)))
    corr = np.divide(zc.T @ sc, denom, out=np.zeros((z.shape[1], s.shape[1])), where=denom > 0)
    return corr.argmax(0), corr.max(0)


@pytest.fixture(scope="module")
def world():
    x_brain, x_lm, s = planted()
    split = row_split(len(x_brain))
    x_brain, _ = scale_to_unit_norm(x_brain, split["train"])
    x_lm, _ = scale_to_unit_norm(x_lm, split["train"])
    return x_brain, x_lm, s, split


@pytest.fixture(scope="module")
def fits(world):
    x_brain, x_lm, _, split = world
    real = train_crosscoder(x_brain, x_lm, split["train"], split["val"], planted_config())
    shuffled_brain = time_shuffle(x_brain, split["train"], seed=0)
    shuffled = train_crosscoder(shuffled_brain, x_lm, split["train"], split["val"], planted_config())
    return {"real": real, "shuffled": shuffled}


# --- the planted world -------------------------------------------------------------------------------------

def test_planted_sources_get_latents_of_their_class(world, fits):
    x_brain, x_lm, s, split = world
    model, _ = fits["real"]
    test = split["test"]
    z = latent_activations(model, x_brain, x_lm, test)
    best, corr = best_matches(z, s[test])
    assert np.median(corr) > 0.9, "the latents do not track the planted sources"
    classes = latent_classes(relative_decoder_norm(model))
    assert (classes[best] == PLANTED_CLASS).mean() >= 0.8, list(zip(classes[best], PLANTED_CLASS))
    ev = evaluate_crosscoder(model, x_brain, x_lm, test)
    assert ev["r_brain"] > 0.8 and ev["r_lm"] > 0.8
    assert ev["l0"] <= model.k + 1e-9


def test_time_shuffle_control_loses_the_shared_latents(world, fits):
    x_brain, x_lm, _, split = world
    fractions = {}
    for fit, (model, _) in fits.items():
        alive = evaluate_crosscoder(model, x_brain, x_lm, split["test"])["alive"]
        fractions[fit] = class_fractions(latent_classes(relative_decoder_norm(model)), alive)["shared"]
    # A third of the planted sources are shared; the shuffle leaves no brain–text pairing to share.
    assert fractions["real"] > 0.15
    assert fractions["shuffled"] < 0.5 * fractions["real"], fractions


def test_history_has_one_row_per_epoch_and_val_loss_falls(fits):
    _, history = fits["real"]
    assert list(history["epoch"]) == list(range(len(history)))
    assert {"loss", "loss_brain", "loss_lm", "aux", "dead_fraction", "val_loss"} <= set(history.columns)
    assert history["val_loss"].min() < 0.2 * history["val_loss"].iloc[0]


# --- the model ---------------------------------------------------------------------------------------------

def test_init_is_seeded_small_and_balanced():
    a, b, c = (BrainLMCrosscoder(12, 7, 32, 4, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.W_brain, b.W_brain) and torch.equal(a.W_lm, b.W_lm)
    assert not torch.equal(a.W_brain, c.W_brain)
    assert a.W_brain.shape == (12, 32) and a.W_lm.shape == (7, 32) and a.b_enc.shape == (32,)
    torch.testing.assert_close(a.W_brain.norm(dim=0), torch.full((32,), INIT_NORM))
    torch.testing.assert_close(a.W_lm.norm(dim=0), torch.full((32,), INIT_NORM))
    assert not a.b_enc.any()
    np.testing.assert_allclose(relative_decoder_norm(a), 0, atol=1e-6)


def test_encoder_is_the_decoder_transpose():
    model = BrainLMCrosscoder(12, 7, 32, 4, seed=0)
    assert {name for name, _ in model.named_parameters()} == {"W_brain", "W_lm", "b_enc"}
    gen = torch.Generator().manual_seed(1)
    xb, xl = torch.randn(5, 12, generator=gen), torch.randn(5, 7, generator=gen)
    before = model.pre_activations(xb, xl)
    torch.testing.assert_close(before, xb @ model.W_brain + xl @ model.W_lm + model.b_enc)
    delta = torch.randn(12, generator=gen)
    with torch.no_grad():
        model.W_brain[:, 3] += delta
    after = model.pre_activations(xb, xl)
    expected = before.clone()
    expected[:, 3] += xb @ delta
    torch.testing.assert_close(after, expected)
    # ... and the same column decodes: latent 3 alone writes W_brain[:, 3].
    z = torch.zeros(1, 32)
    z[0, 3] = 2.0
    x_hat_brain, x_hat_lm = model.decode(z)
    torch.testing.assert_close(x_hat_brain[0], 2.0 * model.W_brain[:, 3])
    torch.testing.assert_close(x_hat_lm[0], 2.0 * model.W_lm[:, 3])


def test_topk_keeps_k_largest_after_relu():
    model = BrainLMCrosscoder(4, 3, 6, 3, seed=0)
    with torch.no_grad():
        model.W_brain.zero_()
        model.W_lm.zero_()
        model.b_enc.copy_(torch.tensor([0.5, -1.0, 2.0, 0.1, -0.2, 1.0]))
    z = model.encode(torch.zeros(1, 4), torch.zeros(1, 3))
    torch.testing.assert_close(z[0], torch.tensor([0.5, 0.0, 2.0, 0.0, 0.0, 1.0]))
    with torch.no_grad():
        model.b_enc.copy_(torch.tensor([0.5, -1.0, -2.0, -0.1, -0.2, -1.0]))
    z = model.encode(torch.zeros(1, 4), torch.zeros(1, 3))
    torch.testing.assert_close(z[0], torch.tensor([0.5, 0, 0, 0, 0, 0]))  # negative winners stay silent
    x_hat_brain, x_hat_lm, z2, pre = model(torch.zeros(1, 4), torch.zeros(1, 3))
    torch.testing.assert_close(z2, z)
    torch.testing.assert_close(pre[0], model.b_enc)


def test_auxk_loss_closed_form_and_it_reaches_dead_latents():
    model = BrainLMCrosscoder(5, 4, 32, 2, seed=0)
    gen = torch.Generator().manual_seed(2)
    xb, xl = torch.randn(6, 5, generator=gen), torch.randn(6, 4, generator=gen)
    x_hat_brain, x_hat_lm, z, pre = model(xb, xl)
    dead = torch.zeros(32, dtype=torch.bool)
    assert auxk_loss(model, xb, xl, x_hat_brain, x_hat_lm, pre, dead, 3).item() == 0.0
    dead = ~(z > 0).any(0)  # the latents silent on this batch
    assert 0 < int(dead.sum()) < 32
    aux = auxk_loss(model, xb, xl, x_hat_brain, x_hat_lm, pre, dead, 3)
    # By hand: per row the three largest dead pre-activations (ReLU) model the residual of both sides.
    p, wb, wl = pre.detach().numpy(), model.W_brain.detach().numpy(), model.W_lm.detach().numpy()
    dead_ids = np.flatnonzero(dead.numpy())
    z_aux = np.zeros_like(p)
    for i, row in enumerate(p):
        idx = dead_ids[np.argsort(row[dead_ids])[-3:]]
        z_aux[i, idx] = np.maximum(row[idx], 0)
    e = np.hstack([(xb - x_hat_brain).detach().numpy(), (xl - x_hat_lm).detach().numpy()])
    e_hat = z_aux @ np.vstack([wb, wl]).T
    np.testing.assert_allclose(aux.item(), ((e - e_hat) ** 2).sum(1).mean(), rtol=1e-5)
    # The main loss gives the silent latents no gradient; AuxK does.
    main = ((x_hat_brain - xb) ** 2).sum(1).mean() + ((x_hat_lm - xl) ** 2).sum(1).mean()
    grad_main = torch.autograd.grad(main, model.W_brain, retain_graph=True)[0]
    grad_aux = torch.autograd.grad(aux, model.W_brain)[0]
    revived = (z_aux > 0).any(0) & dead.numpy()
    assert revived.any()
    assert not grad_main[:, dead].any()
    assert (grad_aux[:, revived].abs().sum(0) > 0).all()
    assert not grad_aux[:, ~dead].any()  # live latents are not asked to model their own residual


# --- scores: closed forms ----------------------------------------------------------------------------------

def test_relative_decoder_norm_closed_forms():
    w_brain = np.array([[3.0, 1.0, 0.0, 0.0, 2.0], [4.0, 0.0, 0.0, 0.0, 0.0]])
    w_lm = np.array([[0.0, 0.0, 2.0, 0.0, 1.0], [5.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    r = relative_decoder_norm((w_brain, w_lm))
    np.testing.assert_allclose(r[[0, 1, 2, 4]], [0.0, 1.0, -1.0, 0.5])  # equal, LM 0, brain 0, 2 vs 1
    assert np.isnan(r[3])
    model = BrainLMCrosscoder(2, 3, 5, 1)
    with torch.no_grad():
        model.W_brain.copy_(torch.tensor(w_brain))
        model.W_lm.copy_(torch.tensor(w_lm))
    np.testing.assert_allclose(relative_decoder_norm(model), r, rtol=1e-6)
    np.testing.assert_allclose(relative_decoder_norm((torch.tensor(w_brain), torch.tensor(w_lm))), r)


def test_latent_classes_boundaries_and_fractions():
    r = np.array([0.51, 0.5, -0.5, -0.51, 0.19, 0.2, -0.19, -0.2, np.nan, 1.0, -1.0, 0.0])
    classes = latent_classes(r)
    assert list(classes) == ["brain", "other", "other", "lm", "shared", "other", "shared", "other", "dead",
                             "brain", "lm", "shared"]
    assert list(latent_classes(np.array([0.35, 0.05]), brain=0.3, lm=-0.3, shared=0.1)) == ["brain", "shared"]
    with pytest.raises(ValueError):
        latent_classes(r, brain=0.1, shared=0.2)
    frac = class_fractions(classes)
    assert frac["brain"] == pytest.approx(2 / 12) and frac["dead"] == pytest.approx(1 / 12)
    alive = np.zeros(12, bool)
    alive[[0, 3, 4, 9]] = True
    frac = class_fractions(classes, alive)
    assert frac == {"shared": 0.25, "brain": 0.5, "lm": 0.25, "other": 0.0, "dead": 0.0}
    assert np.isnan(class_fractions(classes, np.zeros(12, bool))["shared"])


def test_reconstruction_r_matches_numpy_corrcoef():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4))
    x_hat = x + rng.standard_normal((50, 4)) * np.array([0.1, 1.0, 3.0, 1.0])
    x[:, 3] = 2.0  # a constant column has no correlation
    r = reconstruction_r(x, x_hat)
    for j in range(3):
        assert r[j] == pytest.approx(np.corrcoef(x[:, j], x_hat[:, j])[0, 1])
    assert np.isnan(r[3])
    assert r[0] > r[1] > r[2]
    with pytest.raises(ValueError):
        reconstruction_r(x, x_hat[:, :2])


def test_scale_to_unit_norm_uses_training_rows_only():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 6)).astype(np.float32)
    x[80:] *= 10  # held-out rows with a different scale must not set the factor
    train = np.arange(80)
    scaled, scale = scale_to_unit_norm(x, train)
    assert np.linalg.norm(scaled[train], axis=1).mean() == pytest.approx(1.0, rel=1e-5)
    assert scale == pytest.approx(1 / np.linalg.norm(x[train], axis=1).mean(), rel=1e-6)
    np.testing.assert_allclose(scaled[80:], x[80:] * scale, rtol=1e-6)
    assert scaled.dtype == np.float32
    with pytest.raises(ValueError):
        scale_to_unit_norm(np.zeros((5, 3)), np.arange(5))


def test_time_shuffle_permutes_only_training_rows():
    x = np.arange(200, dtype=np.float32).reshape(50, 4)
    train = np.arange(0, 50, 2)
    out = time_shuffle(x, train, seed=0)
    assert not np.shares_memory(out, x) and np.array_equal(x, np.arange(200).reshape(50, 4))
    held_out = np.setdiff1d(np.arange(50), train)
    np.testing.assert_array_equal(out[held_out], x[held_out])
    np.testing.assert_array_equal(np.sort(out[train, 0]), np.sort(x[train, 0]))  # a permutation of the rows
    np.testing.assert_array_equal(out[train] % 4, x[train] % 4)  # rows move whole
    assert (out[train, 0] != x[train, 0]).mean() > 0.5
    np.testing.assert_array_equal(time_shuffle(x, train, seed=0), out)
    assert not np.array_equal(time_shuffle(x, train, seed=1), out)


# --- training: determinism, early stopping, save/load -------------------------------------------------------

def small_problem(n=400, seed=0):
    x_brain, x_lm, _ = planted(n, seed=seed)
    split = row_split(n)
    return scale_to_unit_norm(x_brain, split["train"])[0], scale_to_unit_norm(x_lm, split["train"])[0], split


def test_training_is_deterministic():
    x_brain, x_lm, split = small_problem()
    cfg = planted_config(epochs=15, batch_size=64)
    (a, ha), (b, hb) = (train_crosscoder(x_brain, x_lm, split["train"], split["val"], cfg) for _ in range(2))
    for name in ("W_brain", "W_lm", "b_enc"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert ha.equals(hb)
    c, _ = train_crosscoder(x_brain, x_lm, split["train"], split["val"], planted_config(epochs=15, batch_size=64,
                                                                                        seed=1))
    assert not torch.equal(a.W_brain, c.W_brain)


def test_early_stopping_keeps_the_best_validation_parameters():
    # 40 noisy training rows: the fit soon overfits them and the validation loss turns.
    rng = np.random.default_rng(0)
    s = rng.exponential(1.0, (600, 30)) * (rng.random((600, 30)) < 0.1)
    x_brain = (s @ rng.standard_normal((30, 60)) + 0.3 * rng.standard_normal((600, 60))).astype(np.float32)
    x_lm = (s @ rng.standard_normal((30, 40)) + 0.3 * rng.standard_normal((600, 40))).astype(np.float32)
    train, val = np.arange(40), np.arange(40, 600)
    x_brain, x_lm = scale_to_unit_norm(x_brain, train)[0], scale_to_unit_norm(x_lm, train)[0]
    patience = 10
    model, history = train_crosscoder(x_brain, x_lm, train, val, planted_config(lr=1e-2, batch_size=64, epochs=400,
                                                                                patience=patience))
    best = int(history["val_loss"].idxmin())
    assert len(history) == best + 1 + patience < 400, "it should have stopped early"
    assert history["val_loss"].iloc[-1] > history["val_loss"].min()
    assert evaluate_crosscoder(model, x_brain, x_lm, val)["loss"] == pytest.approx(history["val_loss"].min(),
                                                                                   rel=1e-5)


def test_save_load_round_trip(tmp_path):
    x_brain, x_lm, split = small_problem(200)
    model, _ = train_crosscoder(x_brain, x_lm, split["train"], split["val"], planted_config(epochs=3, batch_size=64))
    path = tmp_path / "sub" / "crosscoder.safetensors"
    save_crosscoder(path, model, {"step": 100, "fit": "real", "delays_s": [2, 4]})
    loaded, meta = load_crosscoder(path)
    assert meta["step"] == 100 and meta["fit"] == "real" and meta["delays_s"] == [2, 4]
    assert (meta["n_brain"], meta["n_lm"], meta["d_latent"], meta["k"]) == (N_BRAIN, N_LM, 64, 8)
    for name in ("W_brain", "W_lm", "b_enc"):
        assert torch.equal(getattr(model, name), getattr(loaded, name))
    np.testing.assert_array_equal(latent_activations(model, x_brain, x_lm, split["test"]),
                                  latent_activations(loaded, x_brain, x_lm, split["test"]))
    assert [p.name for p in path.parent.iterdir()] == ["crosscoder.safetensors"]  # no temporary left behind
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["fit"]) == "real"


def test_evaluate_and_activations_agree_with_the_model():
    x_brain, x_lm, split = small_problem(200)
    model = BrainLMCrosscoder(N_BRAIN, N_LM, 32, 4, seed=0)
    rows = split["test"]
    ev = evaluate_crosscoder(model, x_brain, x_lm, rows, batch_size=7)
    xb, xl = torch.from_numpy(x_brain[rows]), torch.from_numpy(x_lm[rows])
    with torch.no_grad():
        hb, hl, z, _ = model(xb, xl)
    expected = ((hb - xb) ** 2).sum(1).mean() + ((hl - xl) ** 2).sum(1).mean()
    assert ev["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert ev["l0"] == pytest.approx((z > 0).sum(1).float().mean().item())
    np.testing.assert_array_equal(ev["alive"], (z > 0).any(0).numpy())
    np.testing.assert_allclose(ev["r_brain_columns"], reconstruction_r(xb.numpy(), hb.numpy()), rtol=1e-5)
    assert ev["r_lm"] == pytest.approx(np.nanmean(reconstruction_r(xl.numpy(), hl.numpy())), rel=1e-5)
    # Batches of 7 rows against one batch of all: BLAS may round the encoder products differently.
    np.testing.assert_allclose(latent_activations(model, x_brain, x_lm, rows, batch_size=7), z.numpy(),
                               rtol=1e-5, atol=1e-9)


def test_bad_inputs_are_refused():
    x_brain, x_lm, split = small_problem(100)
    with pytest.raises(ValueError, match="same TRs"):
        train_crosscoder(x_brain, x_lm[:50], split["train"], split["val"], planted_config(epochs=1))
    with pytest.raises(ValueError, match="validation"):
        train_crosscoder(x_brain, x_lm, split["train"], np.array([], dtype=int), planted_config(epochs=1))
    with pytest.raises(ValueError):
        BrainLMCrosscoder(4, 3, 8, k=9)


# --- the job within a memory budget: responses held once, streamed from disk when memory runs short ----------

def test_streamed_scores_equal_reconstruction_r_bit_for_bit(monkeypatch):
    from brainphase.crosscoder import scores

    monkeypatch.setattr(scores, "BLOCK_BYTES", 3 * 8 * N_BRAIN)  # blocks of 3 rows: the sums run across blocks
    x_brain, x_lm, split = small_problem(300)
    model = BrainLMCrosscoder(N_BRAIN, N_LM, 32, 4, seed=0)
    with torch.no_grad():
        model.W_brain.mul_(500), model.W_lm.mul_(500)
    rows = split["test"]
    ev = evaluate_crosscoder(model, x_brain, x_lm, rows, batch_size=len(rows))
    with torch.no_grad():
        hb, hl, _, _ = model(torch.from_numpy(x_brain[rows]), torch.from_numpy(x_lm[rows]))
    np.testing.assert_array_equal(ev["r_brain_columns"], reconstruction_r(x_brain[rows], hb.numpy()))
    np.testing.assert_array_equal(ev["r_lm_columns"], reconstruction_r(x_lm[rows], hl.numpy()))


def write_subject(directory, n_trs, n_voxels, d_lm, n_runs=10, tr=2.0, seed=0):
    """A synthetic subject as the job reads it: brain file, stimulus table, one layer's word activations."""
    import pandas as pd

    from brainphase.contracts.brain import BrainRun, write_brain

    rng = np.random.default_rng(seed)
    per, rows, runs = n_trs // n_runs, [], {}
    for i in range(n_runs):
        name = f"test{i:02d}" if i >= n_runs - 2 else f"story{i:02d}"
        onsets = np.arange(0, per * tr - 4, 1.0)
        rows.append(pd.DataFrame({"unit_id": [f"{name}_{j}" for j in range(len(onsets))], "run": name,
                                  "text": [f"w{j}" for j in range(len(onsets))], "lang": "en", "onset": onsets,
                                  "offset": onsets + 0.3, "word_index": np.arange(len(onsets))}))
        data = rng.standard_normal((per, n_voxels), dtype=np.float32)
        data[:, : n_voxels // 4] += np.linspace(0, 3, per, dtype=np.float32)[:, None]  # a drift z-scoring removes
        runs[name] = BrainRun(data, "test" if name.startswith("test") else "train", None)
    write_brain(directory / "brain.h5", runs, tr, np.zeros((n_voxels, 2)))
    stim = pd.concat(rows, ignore_index=True)
    stim.to_parquet(directory / "stim.parquet")
    np.save(directory / "acts.npy", rng.standard_normal((len(stim), d_lm), dtype=np.float32))


def job_config(**kw):
    return {"delays_s": [2, 4, 6, 8], "trim": 2, "val_fraction": 0.15, "d_latent": 16, "k": 4, "k_aux": 8,
            "aux_coef": 0.03125, "lr": 1e-3, "batch_size": 64, "epochs": 3, "patience": 20, "seed": 0,
            "thresholds": {"brain": 0.5, "lm": -0.5, "shared": 0.2}, "n_show": 2, **kw}


def test_streamed_and_in_memory_jobs_fit_the_same_weights(tmp_path):
    import pandas as pd

    from brainphase.crosscoder.memory import crosscoder_peak_bytes
    from brainphase.crosscoder.pipeline import run_checkpoint_crosscoder
    from brainphase.contracts.brain import read_brain

    write_subject(tmp_path, 400, 50, 12)
    stim, cfg = pd.read_parquet(tmp_path / "stim.parquet"), job_config()
    spill = tmp_path / "tmp"
    spill.mkdir()
    # Budget one byte short of holding the responses in memory: the job must stream them.
    budget = crosscoder_peak_bytes(400 - 10 * 4, 50, 12, 16, 64) - 1
    brain = read_brain(tmp_path / "brain.h5", on_disk=True)
    results = [run_checkpoint_crosscoder(np.load(tmp_path / "acts.npy"), stim, brain, cfg, budget_bytes=b,
                                         tmpdir=str(spill)) for b in (None, budget)]
    for fit in ("real", "shuffled"):
        for name in ("W_brain", "W_lm", "b_enc"):
            a, b = (getattr(r.models[fit], name) for r in results)
            assert torch.equal(a, b), f"{fit} {name} differs between in-memory and streamed responses"
    assert results[0].metrics == results[1].metrics
    pd.testing.assert_frame_equal(results[0].latents, results[1].latents)
    assert not list(spill.iterdir()), "the streamed response file was left behind"


# Peak RSS is read as VmHWM, this process's own high-water mark: ru_maxrss survives fork and exec on
# Linux, so a child of a large pytest process would report the parent's peak and hide its own.
JOB = r"""
import json, sys
import numpy as np, pandas as pd, torch
torch.set_num_threads(1)
from brainphase.crosscoder.memory import BASE_BYTES, crosscoder_peak_bytes, streams_responses
from brainphase.crosscoder.pipeline import run_checkpoint_crosscoder
from brainphase.contracts.brain import read_brain

def high_water_mark():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024

directory, cfg, budget = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
(torch.randn(64, 64) @ torch.randn(64, 64)).sum()  # BLAS and thread pools up before the baseline
baseline = high_water_mark()
stim = pd.read_parquet(directory + "/stim.parquet")
acts = np.load(directory + "/acts.npy")
brain = read_brain(directory + "/brain.h5", on_disk=True)
shape = (sum(r.data.shape[0] - 2 * cfg["trim"] for r in brain.runs.values()), brain.coords.shape[0],
         acts.shape[1], cfg["d_latent"], cfg["batch_size"])
n_units = len(acts)
run_checkpoint_crosscoder(acts, stim, brain, cfg, budget_bytes=budget, tmpdir=directory)
del acts
peak = high_water_mark()
print(json.dumps({"used": peak - baseline, "streamed": streams_responses(*shape, budget, n_units),
                  "predicted": crosscoder_peak_bytes(*shape, budget, n_units) - BASE_BYTES}))
"""


@pytest.mark.parametrize("n_trs, n_voxels, above_base_mib", [(3000, 30_000, 600), (1500, 20_000, None)])
def test_a_job_stays_within_its_memory_budget(tmp_path, n_trs, n_voxels, above_base_mib):
    """Peak RSS of a whole job (inputs, both fits, scoring) above the interpreter's, measured in a subprocess.

    3000 TRs x 30k voxels are 343 MiB of float32 responses: with 600 MiB above the
    interpreter the job must stream them from disk and stay under; without a
    budget it holds them in memory, and in both cases within crosscoder_peak_bytes.
    """
    import subprocess
    import sys

    from brainphase.crosscoder.memory import BASE_BYTES

    write_subject(tmp_path, n_trs, n_voxels, 64)
    cfg = job_config(d_latent=64, k=16, k_aux=32, batch_size=128, epochs=2)
    budget = None if above_base_mib is None else BASE_BYTES + above_base_mib * 2**20
    proc = subprocess.run([sys.executable, "-c", JOB, str(tmp_path), json.dumps(cfg), json.dumps(budget)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["streamed"] == (budget is not None)
    assert out["used"] <= out["predicted"], f"used {out['used'] / 2**20:.0f} MiB, formula {out['predicted'] / 2**20:.0f}"
    if budget is not None:
        assert out["used"] <= above_base_mib * 2**20, f"used {out['used'] / 2**20:.0f} MiB of {above_base_mib}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts.npy", "brain.h5", "stim.parquet"]
