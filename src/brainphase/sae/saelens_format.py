"""One trained SAE in the on-disk layout sae-lens loads: ``cfg.json`` and ``sae_weights.safetensors``.

The layout is sae-lens 6.54.12's (sae_lens/saes/sae.py, ``SAE.save_model`` /
``SAE.load_from_disk``; sae_lens/saes/topk_sae.py, ``TopKSAE``;
sae_lens/loading/pretrained_sae_loaders.py, ``sae_lens_disk_loader``), so
``SAE.load_from_disk(folder)`` returns a ``TopKSAE`` that SAEBench and
SAEDashboard take as they take any sae-lens SAE.

How our SAE maps onto theirs. Ours reads u = x / ‖x‖ (each token at unit
norm, :func:`.train.normalize_tokens`) and computes
z = TopK(W_enc (u − b_pre)), û = W_dec z + b_pre. sae-lens's
``normalize_activations="constant_norm_rescale"`` is the same per-token
rescaling to norm √d_in instead of 1 — v = √d_in · u — and divides the
reconstruction by the same factor, so its output is ‖x‖ · û, in the model's
own units (what our CE-loss splice puts back into the model). With
b_dec = √d_in · b_pre (subtracted from the input, ``apply_b_dec_to_input``),
b_enc = 0 and the same unit-norm decoder, its codes are √d_in times ours —
the same latents, in the same order, scaled by one constant
(``metadata.code_scale``). The decoder stays at unit norm because SAEBench
checks it (sae_bench/sae_bench_utils/general_utils.py, ``check_decoder_norms``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..io import atomic_path, json_default

SAELENS_VERSION = "6.54.12"
CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
WEIGHT_SHAPES = {"W_enc": ("d_in", "d_sae"), "b_enc": ("d_sae",), "W_dec": ("d_sae", "d_in"), "b_dec": ("d_in",)}
"""sae-lens's parameter names and shapes (``SAE.initialize_weights``, ``_init_weights_topk``)."""
INPUT_NORMALISATION = ("each token scaled to unit L2 norm before the SAE, its reconstruction scaled back to the "
                       "token's norm; sae-lens's constant_norm_rescale does the same at norm sqrt(d_in)")


def transformer_lens_hook(site: str, layer: int) -> str:
    """The TransformerLens hook name of our activation site ``{site}.{layer}``.

    Our ``resid.0`` is the embedding output, the input of the first block
    (``blocks.0.hook_resid_pre``); ``resid.L`` and ``mlp.L`` are the output
    and the MLP output of block L, TransformerLens's block L − 1 (it counts
    blocks from 0). The names are the same for every architecture
    TransformerLens wraps (transformer_lens/components/transformer_block.py).
    """
    layer = int(layer)
    if site == "resid" and layer == 0:
        return "blocks.0.hook_resid_pre"
    if layer < 1:
        raise ValueError(f"activation site {site}.{layer} has no block; layers start at 1 ({site}.1)")
    if site == "resid":
        return f"blocks.{layer - 1}.hook_resid_post"
    if site == "mlp":
        return f"blocks.{layer - 1}.hook_mlp_out"
    raise ValueError(f"activation site {site!r} has no TransformerLens hook; use resid or mlp (config key sae.site)")


def code_scale(d_in: int) -> float:
    """sae-lens's codes over ours for the same token (√d_in: its inputs are at norm √d_in, ours at 1)."""
    return math.sqrt(d_in)


def saelens_tensors(sae) -> dict:
    """Our :class:`.model.TopKSAE`'s parameters as sae-lens's ``TopKSAE`` names and shapes them (float32, CPU)."""
    import torch

    with torch.no_grad():
        w_enc, w_dec, b_pre = (t.detach().to("cpu", torch.float32) for t in (sae.W_enc, sae.W_dec, sae.b_pre))
        return {
            "W_enc": w_enc.T.contiguous(),
            "b_enc": torch.zeros(sae.n_latents, dtype=torch.float32),
            "W_dec": w_dec.T.contiguous(),
            "b_dec": code_scale(sae.d_in) * b_pre,
        }


def saelens_config(sae, *, model_name: str, site: str, layer: int, context_size: int | None = None,
                   model_from_pretrained_kwargs: dict | None = None, provenance: dict | None = None) -> dict:
    """``cfg.json`` of a ``topk`` SAE; ``provenance`` (model, step, seed, tokens, …) goes into its metadata."""
    return {
        "architecture": "topk",
        "d_in": sae.d_in,
        "d_sae": sae.n_latents,
        "k": sae.k,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "constant_norm_rescale",
        "reshape_activations": "none",
        # A no-op on our unit-norm decoder, but it lets TopKSAE.fold_W_dec_norm run (it refuses
        # otherwise), and SAEDashboard's SaeVisRunner.run calls it first
        # (sae_dashboard/sae_vis_runner.py).
        "rescale_acts_by_decoder_norm": True,
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            # Not trained by sae-lens: the version it was written for is the one above.
            "sae_lens_training_version": None,
            "model_name": model_name,
            "model_class_name": "HookedTransformer",
            "hook_name": transformer_lens_hook(site, layer),
            "hook_head_index": None,
            # Our activations start every story with BOS and leave the BOS token out of the SAE's tokens.
            "prepend_bos": True,
            "exclude_special_tokens": True,
            "context_size": context_size,
            "model_from_pretrained_kwargs": model_from_pretrained_kwargs or {},
            "input_normalisation": INPUT_NORMALISATION,
            "code_scale": code_scale(sae.d_in),
            "brainphase": {"site": f"{site}.{int(layer)}", **(provenance or {})},
        },
    }


def model_reference(model: dict, step: str) -> dict:
    """``model_name``, ``model_from_pretrained_kwargs`` and ``context_size`` of a configured model's checkpoint.

    A Hugging Face run is named by its repository and the checkpoint ``step``
    by its branch; a model trained here or read from local folders only by its
    config name (load it into TransformerLens from its checkpoint folder). The
    context is known for a model trained here (``train.max_position``).
    """
    if model.get("source") == "hf":
        repo = (model.get("hf") or {}).get("repo_id")
        if not repo:
            raise ValueError(f"model {model.get('name')!r}: source hf needs hf.repo_id in the config (models list)")
        return {"model_name": repo, "model_from_pretrained_kwargs": {"revision": str(step)}, "context_size": None}
    context = (model.get("train") or {}).get("max_position")
    return {"model_name": str(model["name"]), "model_from_pretrained_kwargs": {},
            "context_size": None if context is None else int(context)}


def check_shapes(tensors: dict, cfg: dict) -> None:
    """Raise unless ``tensors`` are exactly sae-lens's four, at the shapes ``cfg`` implies."""
    if set(tensors) != set(WEIGHT_SHAPES):
        raise ValueError(f"sae-lens TopK weights are {sorted(WEIGHT_SHAPES)}, got {sorted(tensors)}")
    for name, dims in WEIGHT_SHAPES.items():
        want = tuple(int(cfg[d]) for d in dims)
        if tuple(tensors[name].shape) != want:
            raise ValueError(f"{name} has shape {tuple(tensors[name].shape)}; sae-lens expects {want} ({dims})")


def write_saelens(config_path: str | os.PathLike, weights_path: str | os.PathLike, tensors: dict,
                  cfg: dict) -> None:
    """Write the two files; they must share one folder, named ``cfg.json`` and ``sae_weights.safetensors``."""
    from safetensors.torch import save_file

    config_path, weights_path = Path(config_path), Path(weights_path)
    if (config_path.name, weights_path.name) != (CONFIG_FILE, WEIGHTS_FILE) or \
            config_path.parent != weights_path.parent:
        raise ValueError(f"sae-lens reads {CONFIG_FILE} and {WEIGHTS_FILE} from one folder; "
                         f"got {config_path} and {weights_path}")
    check_shapes(tensors, cfg)
    with atomic_path(weights_path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    with atomic_path(config_path) as tmp:
        tmp.write_text(json.dumps(cfg, indent=1, default=json_default) + "\n")


def export_saelens(folder: str | os.PathLike, sae, **config) -> tuple[Path, Path]:
    """Write ``sae`` into ``folder`` for ``sae_lens.SAE.load_from_disk``; ``config`` as :func:`saelens_config`."""
    folder = Path(folder)
    paths = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    write_saelens(*paths, saelens_tensors(sae), saelens_config(sae, **config))
    return paths
