"""Forward passes over the plans of :mod:`.items`, with the hooks of :mod:`.sites`: one array per site."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..progress import Progress
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


def padded_length(n_tokens: int, max_len: int) -> int:
    """The length an item of ``n_tokens`` runs at: rounded up to a sixteenth of its power of two, at most ``max_len``.

    A function of the item alone, never of the items batched with it, so
    that an item's values do not depend on its batch (see :func:`_forward`).
    The sixteenth bounds the padding at 6 % of the tokens while items of
    nearby lengths (the last window of each story, prompts) still fill
    whole batches; lengths up to 16 run unpadded.
    """
    step = 1 << max(0, n_tokens.bit_length() - 5)
    return max(n_tokens, min(-(-n_tokens // step) * step, max_len))


def activations_peak_bytes(params: int, bytes_per_param: int, batch_size: int, window: int, d_model: int,
                           n_sites_layers: int, n_units: int, outputs_in_memory: bool = True) -> int:
    """Peak memory of one extraction job: weights, the float16 outputs, one batch in flight.

    ``window`` is the longest padded item (tokens), ``n_sites_layers`` the
    number of output arrays. Within a batch a block holds a few residual-wide
    float32 tensors per token (input, attention output, norms: 8 counted) and
    the MLP's 4·d intermediate before and after its activation (8 more), and
    eager attention — the fallback when SDPA cannot take the causal kernel —
    holds one window × window float32 score matrix per head (heads of 64
    wide), twice (scores and their softmax). The hooks keep only the target
    rows (at most one per token): every site's in float16 until the batch
    ends, one site's in float32 at a time. On a GPU the batch terms are device
    memory; host memory needs the weights and the outputs. A job that streams
    its rows to the file (``outputs_in_memory=False``: the workflow's jobs)
    holds none of the outputs: they pass through the page cache.
    """
    tokens = batch_size * window
    hidden = tokens * d_model * 4 * 16
    heads = max(1, d_model // 64)
    scores = batch_size * heads * window * window * 4 * 2
    rows = tokens * d_model * (4 + 2 * n_sites_layers)
    outputs = n_sites_layers * n_units * d_model * 2 if outputs_in_memory else 0
    return int(params * bytes_per_param + outputs + hidden + scores + rows)


def plan_batches(items: list[Item], batch_size: int, max_len: int) -> list[tuple[int, list[int]]]:
    """``(padded length, item indices)`` of each forward: items of one padded length, in item order."""
    lengths = [padded_length(len(it.ids), max_len) for it in items]
    order = sorted(range(len(items)), key=lambda i: (lengths[i], i))
    batches = []
    for length, group in itertools.groupby(order, key=lengths.__getitem__):
        group = list(group)
        batches += [(length, group[k : k + batch_size]) for k in range(0, len(group), batch_size)]
    return batches


class _Rows(dict):
    """Site name → (the batch's target rows in the output dtype, their largest |x|), taken inside the hook.

    Installed as the :class:`.sites.Recorder`'s ``captured`` mapping: each
    site's hidden state is reduced to the rows the batch needs as soon as its
    layer has run, so no full hidden state outlives its layer, only those
    rows are cast (to float32 for span means, then to the output dtype) and
    only they travel to the host, once per batch.
    """

    def __init__(self, cast_to):
        super().__init__()
        self.cast_to = cast_to
        self.flat = None  # positions in the batch's flattened (batch × length) read one by one
        self.ranged: list[tuple[int, int, int]] = []  # (batch row, start, stop) spans read as means

    def __setitem__(self, name, hidden):
        import torch

        parts = []
        if len(self.flat):
            parts.append(hidden.reshape(-1, hidden.shape[-1]).index_select(0, self.flat).float())
        if self.ranged:
            parts.append(torch.stack([hidden[b, s:e].float().mean(0) for b, s, e in self.ranged]))
        rows = parts[0] if len(parts) == 1 else torch.cat(parts)
        low, high = torch.aminmax(rows)
        # torch's float32 → float16 cast rounds as numpy's astype does (to
        # nearest even, inf from 65520 on), bit for bit, at a tenth of the time.
        super().__setitem__(name, (rows.to(self.cast_to), torch.maximum(high, -low)))


def _batch_inputs(items: list[Item], batch: list[int], length: int, pad_id: int):
    """Right-padded token ids of one batch, and where each target row is read from."""
    ids = np.full((len(batch), length), pad_id, dtype=np.int64)
    flat, flat_rows, ranged, ranged_rows = [], [], [], []
    for b, i in enumerate(batch):
        it = items[i]
        ids[b, : len(it.ids)] = it.ids
        for r, s, e in it.targets:
            if e - s == 1:
                flat.append(b * length + s)
                flat_rows.append(r)
            else:
                ranged.append((b, s, e))
                ranged_rows.append(r)
    return ids, flat, ranged, flat_rows + ranged_rows


def _forward(model, items: list[Item], names, out: dict, batch_size: int, device, pad_id: int,
             max_len: int) -> dict[str, list]:
    """Fill ``out`` (rows in its dtype); returns per site [values infinite after the cast, max |x|].

    Every batch holds items of one padded length (:func:`padded_length`),
    right-padded and run without an attention mask: under the causal mask no
    real token sees a pad, positions start at 0 as in an unpadded call, and
    SDPA keeps its causal kernel (an explicit padding mask forces a dense
    one, which cost a third of the time on whole stories). Padding changes
    the float reductions of the items it pads (another shape, other kernel
    blocks), so an item always runs at its own padded length: with the
    kernels reducing each row the same way whatever the batch size (one CPU
    thread), an item's values are then bit-identical whatever the batch
    size, the batch it lands in and the other units of the stimulus set —
    equal to one-item-per-forward extraction exactly, float32 and float16.
    Multi-threaded BLAS and cuBLAS may pick another kernel for another row
    count, which moves the last float32 bit.
    """
    import torch

    dtype = next(iter(out.values())).dtype
    limit = float(np.finfo(dtype).max)
    stats = {name: [0, 0.0] for name in names}
    rows = _Rows(torch.from_numpy(np.zeros(0, dtype=dtype)).dtype)
    batches = plan_batches(items, batch_size, max_len)
    progress = Progress(logger, "activations", sum(length * len(batch) for length, batch in batches), "tokens")
    with Recorder(model, names) as recorder, torch.inference_mode():
        recorder.captured = rows
        for length, batch in batches:
            ids, flat, rows.ranged, targets = _batch_inputs(items, batch, length, pad_id)
            rows.flat = torch.tensor(flat, dtype=torch.long, device=device)
            model.base_model(input_ids=torch.from_numpy(ids).to(device), use_cache=False)
            peaks = torch.stack([rows[name][1] for name in names]).tolist()
            for name, peak in zip(names, peaks):
                values = rows[name][0].cpu().numpy()
                if peak > limit:  # else no value can have become infinite: no pass over them
                    stats[name][0] += int(np.isinf(values).sum())
                stats[name][1] = max(stats[name][1], peak)
                out[name][targets] = values
            progress.update(length * len(batch))
    return stats


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
    out=None,
) -> dict[str, np.ndarray]:
    """Activations of every unit at every requested site, ``{site}.{layer}`` → (n_units × d).

    Arrays are float16 (the storage type) unless ``dtype`` says otherwise.
    Rows follow the row order of ``units``. ``context_window`` (``word`` pooling
    only) is the number of tokens each word's last token sees before it;
    ``None`` means the whole story (in overlapping windows if it exceeds the
    model's positions). ``device=None`` keeps the model where it is.
    ``out``: a function ``(names, n_rows, d, **info) -> {name: rows sink}``
    that receives the rows instead of in-memory arrays, e.g. a file being
    written (:func:`brainphase.contracts.activations.activation_file`); the
    sinks are returned.
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
    return _run(model, tokenizer, items, names, len(units), batch_size, device, dtype, out)


def extract_last_token_activations(model, tokenizer, units: pd.DataFrame, sites: Sequence[str] = SITES,
                                   layers: Sequence[int] | None = None, batch_size: int = 16, device=None,
                                   dtype=np.float16, out=None) -> tuple[dict[str, np.ndarray], list, list]:
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
    kept_ids = kept["unit_id"].tolist()
    to = None if out is None else (lambda names, n, d: out(names, n, d, kept=kept_ids, dropped=dropped))
    arrays = extract_activations(model, tokenizer, kept, "last", sites=sites, layers=layers, batch_size=batch_size,
                                 device=device, dtype=dtype, out=to)
    return arrays, kept_ids, dropped


def _run(model, tokenizer, items, names, n_rows, batch_size, device, dtype, out=None) -> dict[str, np.ndarray]:
    d = model.config.hidden_size
    out = {name: np.zeros((n_rows, d), dtype=dtype) for name in names} if out is None else out(names, n_rows, d)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stats = _forward(model, items, names, out, batch_size, device, pad_id, _max_positions(model))
    for name, (overflow, largest) in stats.items():
        if overflow:
            logger.warning("%s: %d values are infinite as %s: they exceed its range (max |x| = %.3g)", name,
                           overflow, np.dtype(dtype).name, largest)
    return out


def extract_token_activations(model, tokenizer, units: pd.DataFrame, sites: Sequence[str] = ("resid",),
                              layers: Sequence[int] | None = None, batch_size: int = 16, device=None,
                              dtype=np.float16, out=None) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
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
    to = None if out is None else (lambda names, n, d: out(names, n, d, tokens=tokens))
    return _run(model, tokenizer, items, names, len(tokens), batch_size, device, dtype, to), tokens
