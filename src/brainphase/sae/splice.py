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


def mean_cross_entropy(model, sequences: list[list[int]], batch_size: int = 16,
                       replace: Callable | None = None, site: str = "resid", layer: int = 0,
                       bos: int | None = None) -> float:
    """Mean next-token cross-entropy over every predicted position of ``sequences``.

    ``replace(h)`` (if given) maps the site's hidden states (batch × time × d)
    to what the rest of the model sees; positions holding ``bos`` keep theirs.
    """
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    state = {}

    def fn(h):
        new = replace(h).to(h.dtype)
        keep = state["keep"]
        return torch.where(keep[..., None], h, new)

    handle = _replace_site(model, site, layer, fn) if replace is not None else None
    try:
        with torch.inference_mode():
            order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
            for b0 in range(0, len(order), batch_size):
                batch = [sequences[i] for i in order[b0:b0 + batch_size]]
                length = max(len(s) for s in batch)
                ids = torch.zeros((len(batch), length), dtype=torch.long)
                mask = torch.zeros((len(batch), length), dtype=torch.long)
                for j, s in enumerate(batch):
                    ids[j, :len(s)] = torch.tensor(s)
                    mask[j, :len(s)] = 1
                ids, mask = ids.to(device), mask.to(device)
                state["keep"] = (ids == bos) if bos is not None else torch.zeros_like(ids, dtype=torch.bool)
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
                valid = mask[:, 1:].bool()
                total += float(nll[valid].sum())
                count += int(valid.sum())
    finally:
        if handle is not None:
            handle.remove()
    return total / max(count, 1)


def ce_loss_recovered(model, sequences, reconstruct: Callable, site: str, layer: int, bos: int | None,
                      batch_size: int = 16) -> dict[str, float]:
    """Clean, zero-ablated and spliced CE, and the fraction recovered.

    ``reconstruct(h)`` returns the SAE reconstruction of raw hidden states
    (the caller undoes the per-token normalisation).
    """
    import torch

    clean = mean_cross_entropy(model, sequences, batch_size, bos=bos)
    zero = mean_cross_entropy(model, sequences, batch_size, replace=torch.zeros_like, site=site, layer=layer,
                              bos=bos)
    spliced = mean_cross_entropy(model, sequences, batch_size, replace=reconstruct, site=site, layer=layer,
                                 bos=bos)
    denom = zero - clean
    recovered = (zero - spliced) / denom if abs(denom) > 1e-12 else np.nan
    return {"ce_clean": clean, "ce_zero_ablated": zero, "ce_spliced": spliced, "ce_loss_recovered": recovered}
