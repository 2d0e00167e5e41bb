"""Forward passes over the plans of :mod:`.items`, with the hooks of :mod:`.sites`: one array per site."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..runtime import resolve_device
from .items import Item, check_texts, overlong_units, token_items, unit_items, word_items
from .sites import SITES, Recorder, site_names, transformer_blocks

logger = logging.getLogger(__name__)

POOLINGS = ("word", "last", "mean", "token")


def _ready(model, device):
    """Eval mode on ``device`` (``None``: where the model is); returns the device."""
    if device is None:
        device = next(model.parameters()).device
    else:
        device = resolve_device(device)
        model.to(device)
    model.eval()
    return device


def _max_positions(model) -> int:
    n = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if not n:
        raise ValueError(f"{type(model).__name__} config gives no max_position_embeddings")
    return int(n)


def _forward(model, items: list[Item], names, out: dict, batch_size: int, device, pad_id: int) -> None:
    import torch

    base = model.base_model
    # Similar lengths share a batch so padding stays small.
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
    with Recorder(model, names) as recorder, torch.inference_mode():
        for b0 in range(0, len(order), batch_size):
            batch = [items[i] for i in order[b0 : b0 + batch_size]]
            length = max(len(it.ids) for it in batch)
            # Right padding: under a causal mask no real token ever sees a pad,
            # and positions start at 0 exactly as in an unpadded call.
            input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), length), dtype=torch.long)
            for b, it in enumerate(batch):
                input_ids[b, : len(it.ids)] = torch.tensor(it.ids)
                mask[b, : len(it.ids)] = 1
            base(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False)
            spans = [(b, r, s, e) for b, it in enumerate(batch) for r, s, e in it.targets]
            single = [sp for sp in spans if sp[3] - sp[2] == 1]
            ranged = [sp for sp in spans if sp[3] - sp[2] != 1]
            for name in names:
                hidden = recorder.captured[name]
                if single:
                    bi = torch.tensor([sp[0] for sp in single], device=hidden.device)
                    pi = torch.tensor([sp[2] for sp in single], device=hidden.device)
                    rows = [sp[1] for sp in single]
                    out[name][rows] = hidden[bi, pi].float().cpu().numpy()
                for b, r, s, e in ranged:
                    out[name][r] = hidden[b, s:e].float().mean(0).cpu().numpy()


def extract_activations(
    model,
    tokenizer,
    units: pd.DataFrame,
    pooling: str,
    sites: Sequence[str] = SITES,
    layers: Sequence[int] | None = None,
    context_window: int | None = None,
    batch_size: int = 16,
    device=None,
    dtype=np.float16,
) -> dict[str, np.ndarray]:
    """Activations of every unit at every requested site, ``{site}.{layer}`` → (n_units × d).

    Arrays are float16 (the storage type) unless ``dtype`` says otherwise.
    Rows follow the row order of ``units``. ``context_window`` (``word`` pooling
    only) is the number of tokens each word's last token sees before it;
    ``None`` means the whole story (in overlapping windows if it exceeds the
    model's positions). ``device=None`` keeps the model where it is.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
    if context_window is not None and pooling != "word":
        raise ValueError("context_window applies to word pooling only")
    units = units.reset_index(drop=True)
    device = _ready(model, device)
    max_len = _max_positions(model)
    if context_window is not None and not 0 <= context_window < max_len:
        raise ValueError(f"context_window {context_window} must lie in [0, {max_len - 1}] for this model "
                         f"(max_position_embeddings = {max_len})")
    names = site_names(len(transformer_blocks(model)), sites, layers)

    if pooling == "token":
        raise ValueError("token pooling gives one row per token: call extract_token_activations")
    if pooling == "word":
        items = word_items(units, tokenizer, max_len, context_window)
    else:
        items = unit_items(units, tokenizer, max_len, pooling)
    return _run(model, tokenizer, items, names, len(units), batch_size, device, dtype)


def extract_last_token_activations(model, tokenizer, units: pd.DataFrame, sites: Sequence[str] = SITES,
                                   layers: Sequence[int] | None = None, batch_size: int = 16, device=None,
                                   dtype=np.float16) -> tuple[dict[str, np.ndarray], list, list]:
    """Last-token activations of every unit that fits the model; over-long units are dropped and counted.

    A prompt longer than the model's positions cannot be read whole, and
    cutting its head would read a different prompt than the one scored, so
    such a unit gets no row. Returns ``(arrays, kept_ids, dropped_ids)``:
    arrays have one row per kept unit, in the order of ``units``; a warning
    gives the count of dropped units.
    """
    units = units.reset_index(drop=True)
    check_texts(units, ("unit_id", "text"))
    max_len = _max_positions(model)
    long = overlong_units(units, tokenizer, max_len)
    dropped = units.loc[long, "unit_id"].tolist()
    if dropped:
        logger.warning("%d of %d units are longer than the model's %d positions and were dropped (not truncated): "
                       "%s%s", len(dropped), len(units), max_len, dropped[:5], " ..." if len(dropped) > 5 else "")
    kept = units.loc[~long].reset_index(drop=True)
    if kept.empty:
        raise ValueError(f"all {len(units)} units exceed the model's {max_len} positions; use fewer few-shot "
                         f"examples (evals.num_fewshot) or a model with a longer context")
    arrays = extract_activations(model, tokenizer, kept, "last", sites=sites, layers=layers, batch_size=batch_size,
                                 device=device, dtype=dtype)
    return arrays, kept["unit_id"].tolist(), dropped


def _run(model, tokenizer, items, names, n_rows, batch_size, device, dtype) -> dict[str, np.ndarray]:
    d = model.config.hidden_size
    out = {name: np.zeros((n_rows, d), dtype=np.float32) for name in names}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    _forward(model, items, names, out, batch_size, device, pad_id)
    arrays = {}
    for name, values in out.items():
        cast = values.astype(dtype)
        overflow = int(np.isinf(cast).sum() - np.isinf(values).sum())
        if overflow:
            logger.warning("%s: %d values exceed the %s range (max |x| = %.3g)", name, overflow,
                           np.dtype(dtype).name, np.abs(values).max())
        arrays[name] = cast
    return arrays


def extract_token_activations(model, tokenizer, units: pd.DataFrame, sites: Sequence[str] = ("resid",),
                              layers: Sequence[int] | None = None, batch_size: int = 16, device=None,
                              dtype=np.float16) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Every token of every story (``units`` with run, word_index, text) at the requested sites.

    Returns ``(arrays, tokens)``: ``{site}.{layer}`` → (n_tokens × d), and one
    row per token: row, run, position (in the story, BOS excluded), token_id,
    token (its text), unit_row (row of ``units`` holding the word it is part
    of). Each token sees the story before it (overlapping windows when the
    story exceeds the model's positions).
    """
    units = units.reset_index(drop=True)
    device = _ready(model, device)
    names = site_names(len(transformer_blocks(model)), sites, layers)
    items, tokens = token_items(units, tokenizer, _max_positions(model))
    return _run(model, tokenizer, items, names, len(tokens), batch_size, device, dtype), tokens
