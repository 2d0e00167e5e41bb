"""Downstream loss of an SAE: splice its reconstruction into the model at its layer.

CE loss recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean):
1 when the model with the SAE's output in place of the layer's residual stream
predicts the next token as well as the clean model, 0 when it does no better
than with that residual stream zeroed. BOS positions are left clean: the SAE
never saw BOS in training, and its huge norm would dominate the splice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..activations.sites import transformer_blocks


def _replace_site(model, site: str, layer: int, fn: Callable):
    """Register a hook that passes the site's output through ``fn``; returns the handle."""
    blocks = transformer_blocks(model)
    if site == "resid" and layer == 0:
        def pre_hook(module, args, kwargs):
            if args:
                return (fn(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

        return blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    target = blocks[layer - 1] if site == "resid" else blocks[layer - 1].mlp
    return target.register_forward_hook(hook)


def windows(token_ids: Sequence[Sequence[int]], bos: int | None, max_len: int) -> list[list[int]]:
    """Each document as BOS + tokens, cut into consecutive windows of at most ``max_len``."""
    out = []
    for ids in token_ids:
        seq = ([] if bos is None else [bos]) + list(ids)
        out += [seq[i:i + max_len] for i in range(0, len(seq), max_len) if len(seq[i:i + max_len]) > 1]
    return out


# Float32 logits formed at once: the LM head runs on this many elements'
# worth of positions (64 MB), so a batch's memory does not grow with the
# vocabulary (16 windows x 4,096 positions x 100k tokens would be 26 GB).
LOGIT_ELEMENTS = 2**24
# Tokens (padded) per forward pass of the evaluation.
BATCH_TOKENS = 8192


def mean_cross_entropy(model, sequences: list[list[int]], batch_tokens: int = BATCH_TOKENS,
                       replace: Callable | None = None, site: str = "resid", layer: int = 0,
                       bos: int | None = None, logit_elements: int = LOGIT_ELEMENTS) -> float:
    """Mean next-token cross-entropy over every predicted position of ``sequences``.

    ``replace(h)`` (if given) maps the site's hidden states (batch × time × d)
    to what the rest of the model sees; positions holding ``bos`` keep theirs.
    Sequences are batched by length, at most ``batch_tokens`` padded tokens
    per forward (at least one sequence). The trunk's last hidden states go
    through the output embedding ``logit_elements`` logits at a time, never
    a whole batch's; :func:`check_output_head` confirms on the first batch
    that this equals the model's own logits.
    """
    import torch

    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    total, count = 0.0, 0
    state = {}

    def fn(h):
        new = replace(h).to(h.dtype)
        keep = state["keep"]
        return torch.where(keep[..., None], h, new)

    handle = _replace_site(model, site, layer, fn) if replace is not None else None
    try:
        with torch.inference_mode():
            for batch in _length_batches(sequences, batch_tokens):
                length = max(len(s) for s in batch)
                ids = torch.zeros((len(batch), length), dtype=torch.long)
                mask = torch.zeros((len(batch), length), dtype=torch.long)
                for j, s in enumerate(batch):
                    ids[j, :len(s)] = torch.tensor(s)
                    mask[j, :len(s)] = 1
                ids, mask = ids.to(device), mask.to(device)
                state["keep"] = (ids == bos) if bos is not None else torch.zeros_like(ids, dtype=torch.bool)
                if count == 0 and replace is None:
                    check_output_head(model, ids[:1, :8])
                h = model.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
                valid = mask[:, 1:].bool()
                rows, targets = h[:, :-1][valid], ids[:, 1:][valid]
                step = max(1, logit_elements // head.weight.shape[0])
                for r0 in range(0, len(rows), step):
                    logits = head(rows[r0:r0 + step]).float()
                    total += float(torch.nn.functional.cross_entropy(logits, targets[r0:r0 + step],
                                                                     reduction="sum"))
                count += int(valid.sum())
    finally:
        if handle is not None:
            handle.remove()
    return total / max(count, 1)


def ce_eval_peak_bytes(params: int, bytes_per_param: int, d_model: int, context: int, n_latents: int) -> int:
    """Memory of the CE metrics: the language model, one forward of ``BATCH_TOKENS`` tokens, a chunk of logits
    (and its softmax and gradient-free copy), and the SAE's weights."""
    from ..activations.extract import activations_peak_bytes

    window = min(context, BATCH_TOKENS)
    forward = activations_peak_bytes(params, bytes_per_param, max(1, BATCH_TOKENS // window), window, d_model, 1, 0,
                                     outputs_in_memory=False)
    return forward + 3 * 4 * LOGIT_ELEMENTS + 4 * 2 * n_latents * d_model


def _length_batches(sequences: list[list[int]], batch_tokens: int) -> list[list[list[int]]]:
    """Sequences sorted by length, grouped while the padded batch stays within ``batch_tokens``."""
    batches, batch = [], []
    for s in sorted(sequences, key=len):
        if batch and (len(batch) + 1) * len(s) > batch_tokens:
            batches.append(batch)
            batch = []
        batch.append(s)
    return batches + ([batch] if batch else [])


def check_output_head(model, ids) -> None:
    """Raise unless the output embedding of the trunk's last hidden states gives the model's logits.

    True of the families studied here (GPT-NeoX, Llama, OLMo-2, GPT-2: the
    final norm sits in the trunk); a model that scales or caps its logits
    after the head would make the chunked cross-entropy wrong.
    """
    import torch

    with torch.inference_mode():
        full = model(input_ids=ids, use_cache=False).logits.float()
        ours = model.get_output_embeddings()(model.base_model(input_ids=ids, use_cache=False).last_hidden_state).float()
    if not torch.allclose(full, ours, rtol=1e-3, atol=1e-3 * float(full.abs().max())):
        raise ValueError(f"{type(model).__name__}: the output embedding of the trunk's hidden states differs from "
                         "the model's logits (a logit scale or cap after the head?); the SAE's CE loss recovered "
                         "is computed only for models whose logits are that product (GPT-NeoX, Llama, OLMo-2, "
                         "GPT-2)")


def ce_loss_recovered(model, sequences, reconstruct: Callable, site: str, layer: int, bos: int | None,
                      batch_tokens: int = BATCH_TOKENS) -> dict[str, float]:
    """Clean, zero-ablated and spliced CE, and the fraction recovered.

    ``reconstruct(h)`` returns the SAE reconstruction of raw hidden states
    (the caller undoes the per-token normalisation).
    """
    import torch

    clean = mean_cross_entropy(model, sequences, batch_tokens, bos=bos)
    zero = mean_cross_entropy(model, sequences, batch_tokens, replace=torch.zeros_like, site=site, layer=layer,
                              bos=bos)
    spliced = mean_cross_entropy(model, sequences, batch_tokens, replace=reconstruct, site=site, layer=layer,
                                 bos=bos)
    denom = zero - clean
    recovered = (zero - spliced) / denom if abs(denom) > 1e-12 else np.nan
    return {"ce_clean": clean, "ce_zero_ablated": zero, "ce_spliced": spliced, "ce_loss_recovered": recovered}
