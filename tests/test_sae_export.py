"""The SAELens-format export: files sae-lens reads, and sae-lens's own loader reproducing our SAE.

The round trip runs sae-lens in its own environment (``benchmarks/.venv-saelens``,
made by ``benchmarks/_saelens_env.py`` as the SAE benchmark makes it).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from brainphase.sae import TopKSAE, normalize_tokens
from brainphase.sae.saelens_format import (CONFIG_FILE, WEIGHTS_FILE, code_scale, export_saelens, model_reference,
                                           transformer_lens_hook)

REPO = Path(__file__).resolve().parents[1]
D_IN, N_LATENTS, K = 24, 96, 6
# pip's messages, then uv's (benchmarks/_venv_install.py installs with uv where it is there).
NETWORK_FAILURES = ("Temporary failure in name resolution", "Failed to establish a new connection",
                    "Network is unreachable", "No matching distribution found", "Could not find a version",
                    "Max retries exceeded", "ConnectionError", "ReadTimeoutError",
                    "client error (Connect)", "dns error", "operation timed out")


def small_sae() -> TopKSAE:
    """A TopK SAE whose encoder is not its decoder's transpose and whose b_pre is far from 0."""
    sae = TopKSAE(D_IN, N_LATENTS, K, seed=3)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        sae.W_enc.add_(0.05 * torch.randn(sae.W_enc.shape, generator=gen))
        sae.b_pre.copy_(0.2 * torch.randn(D_IN, generator=gen))
        sae.normalize_decoder()
    return sae


def activations(n: int = 300) -> np.ndarray:
    """Tokens at norms from 0.1 to 100, as residual streams are, never zero."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, D_IN))
    return (x * np.exp(rng.uniform(np.log(0.1), np.log(100.0), (n, 1)))).astype(np.float32)


def ours(sae: TopKSAE, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Our dense codes of the unit-norm tokens, and the reconstruction back at each token's norm."""
    x = torch.from_numpy(x)
    with torch.no_grad():
        unit_hat, codes, _ = sae(normalize_tokens(x))
    return codes.numpy(), (unit_hat * x.norm(dim=-1, keepdim=True)).numpy()


@pytest.fixture
def exported(tmp_path):
    sae = small_sae()
    folder = tmp_path / "saelens"
    export_saelens(folder, sae, site="resid", layer=2, provenance={"model": "toy", "step": "step40", "seed": 0},
                   **model_reference({"name": "toy", "source": "train", "train": {"max_position": 128}}, "step40"))
    return sae, folder


def test_hook_names_follow_transformer_lens():
    assert transformer_lens_hook("resid", 0) == "blocks.0.hook_resid_pre"
    assert transformer_lens_hook("resid", 2) == "blocks.1.hook_resid_post"
    assert transformer_lens_hook("mlp", 3) == "blocks.2.hook_mlp_out"
    with pytest.raises(ValueError, match="layers start at 1"):
        transformer_lens_hook("mlp", 0)
    with pytest.raises(ValueError, match="sae.site"):
        transformer_lens_hook("attn", 1)


def test_model_reference_names_hf_repository_and_branch():
    ref = model_reference({"name": "p", "source": "hf", "hf": {"repo_id": "EleutherAI/pythia-70m"}}, "step1000")
    assert ref == {"model_name": "EleutherAI/pythia-70m", "model_from_pretrained_kwargs": {"revision": "step1000"},
                   "context_size": None}
    with pytest.raises(ValueError, match="hf.repo_id"):
        model_reference({"name": "p", "source": "hf", "hf": {}}, "step1")


def test_export_has_saelens_keys_shapes_and_config(exported):
    sae, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "W_enc": (D_IN, N_LATENTS), "b_enc": (N_LATENTS,), "W_dec": (N_LATENTS, D_IN), "b_dec": (D_IN,)}
    assert all(v.dtype == torch.float32 for v in tensors.values())
    # SAEBench requires unit-norm decoder rows.
    np.testing.assert_allclose(tensors["W_dec"].norm(dim=1).numpy(), 1.0, atol=1e-5)
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    assert {k: cfg[k] for k in ("architecture", "d_in", "d_sae", "k", "dtype", "normalize_activations",
                                "apply_b_dec_to_input", "rescale_acts_by_decoder_norm")} == {
        "architecture": "topk", "d_in": D_IN, "d_sae": N_LATENTS, "k": K, "dtype": "float32",
        "normalize_activations": "constant_norm_rescale", "apply_b_dec_to_input": True,
        "rescale_acts_by_decoder_norm": True}
    meta = cfg["metadata"]
    assert meta["hook_name"] == "blocks.1.hook_resid_post" and meta["model_name"] == "toy"
    assert meta["context_size"] == 128 and meta["sae_lens_version"].startswith("6.")
    assert meta["code_scale"] == pytest.approx(np.sqrt(D_IN)) and "unit L2 norm" in meta["input_normalisation"]
    assert meta["brainphase"] == {"site": "resid.2", "model": "toy", "step": "step40", "seed": 0}


def test_export_computes_ours_by_saelens_arithmetic(exported):
    """sae-lens's TopK forward with constant_norm_rescale, written out, on the exported weights."""
    sae, folder = exported
    with safe_open(str(folder / WEIGHTS_FILE), framework="np") as f:
        w = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}
    x = activations().astype(np.float64)
    coeff = np.sqrt(D_IN) / np.linalg.norm(x, axis=1, keepdims=True)
    pre = (x * coeff - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    top = np.argsort(-pre, axis=1)[:, :K]
    codes = np.zeros_like(pre)
    np.put_along_axis(codes, top, np.maximum(np.take_along_axis(pre, top, 1), 0), 1)
    x_hat = (codes @ w["W_dec"] + w["b_dec"]) / coeff
    our_codes, our_x_hat = ours(sae, activations())
    np.testing.assert_allclose(codes, code_scale(D_IN) * our_codes, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x_hat, our_x_hat, rtol=1e-4, atol=1e-4 * np.abs(our_x_hat).max())


def saelens_python_or_skip() -> str:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from _saelens_env import SaelensEnvError, saelens_python
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    try:
        return saelens_python(log=lambda msg: print(msg, file=sys.stderr))
    except SaelensEnvError as e:
        if any(marker in e.output for marker in NETWORK_FAILURES):
            pytest.skip(f"no network to create the sae-lens environment: {' '.join(e.command)}")
        raise


def test_saelens_loads_export_and_reproduces_ours(exported, tmp_path):
    sae, folder = exported
    python = saelens_python_or_skip()
    work = tmp_path / "work"
    work.mkdir()
    x = activations()
    np.save(work / "x.npy", x)
    done = subprocess.run([python, str(REPO / "benchmarks/_saelens_side.py"), "--load", str(folder), str(work)],
                          capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((work / "result.json").read_text())
    assert result["class"] == "TopKSAE" and result["hook_name"] == "blocks.1.hook_resid_post"
    assert (result["d_in"], result["d_sae"], result["k"]) == (D_IN, N_LATENTS, K)
    assert result["decoder_norm_max_deviation"] < 1e-5
    our_codes, our_x_hat = ours(sae, x)
    codes = np.load(work / "codes.npy")
    # The same latents fire, at √d_in times our values.
    assert ((codes > 0) == (our_codes > 0)).all()
    np.testing.assert_allclose(codes, code_scale(D_IN) * our_codes, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.load(work / "codes_folded.npy"), codes, rtol=1e-5, atol=1e-5)
    scale = np.abs(our_x_hat).max(axis=1, keepdims=True)
    for name in ("x_hat", "forward"):
        np.testing.assert_allclose(np.load(work / f"{name}.npy") / scale, our_x_hat / scale, atol=1e-5,
                                   err_msg=f"sae-lens's {name} differs from our reconstruction")
