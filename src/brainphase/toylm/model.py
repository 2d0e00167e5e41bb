"""A small Llama-style causal LM, initialised deterministically from a seed."""

from __future__ import annotations


def build_model(
    vocab_size: int,
    n_layers: int = 4,
    d_model: int = 128,
    n_heads: int = 4,
    d_ff: int = 512,
    max_position: int = 256,
    seed: int = 0,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    tie_word_embeddings: bool = False,
):
    """Return a freshly initialised ``transformers.LlamaForCausalLM`` in float32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=d_ff,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=max_position,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
    # fork_rng: the init is a function of the seed alone, and the caller's
    # global RNG stream is left where it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.float()
