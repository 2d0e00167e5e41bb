"""Extract and store a model's activations for a stimulus set (METHODS §2).

Sites: ``resid.{l}`` is the residual stream entering block l+1 — ``resid.0``
is the embedding output, ``resid.l`` the raw output of block l (before the
final norm, so every layer is on the same footing) — and ``mlp.{l}`` is the
MLP output of block l. All of them come from forward hooks on one forward
pass per input sequence.

Poolings: ``word`` (last token of each word, the preceding story as
context), ``last`` (last token of a unit's own text; a text longer than the
model's positions is dropped and counted by
:func:`extract_last_token_activations`, never cut) and ``mean`` (mean over
a unit's own tokens, BOS excluded), and ``token`` (every token of every
story, BOS excluded, each read with the preceding story as context: one row
per token rather than per unit, for sparse autoencoders). Every sequence starts with the
tokenizer's BOS, prepended here rather than left to the tokenizer, so
models whose tokenizers do not add it themselves (Pythia) are treated alike.
A context cut by ``context_window`` or by the model's maximum length is a
plain slice of the story's tokens: it starts mid-story, without a BOS, as
the packed windows these models were trained on do.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainphase.runtime import resolve_device
from brainphase.io import atomic_path, json_default

logger = logging.getLogger(__name__)

POOLINGS = ("word", "last", "mean", "token")
SITES = ("resid", "mlp")
METADATA_KEYS = ("model", "step", "tokens", "pooling", "context_window", "unit_ids")


# ---------------------------------------------------------------- model anatomy


def transformer_blocks(model):
    """The ModuleList of transformer blocks, wherever this architecture keeps it."""
    base = model.base_model
    for path in ("layers", "h", "blocks", "decoder.layers"):
        obj = base
        try:
            for attr in path.split("."):
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return obj
    raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}; expected base_model.layers or .h")


def site_names(n_layers: int, sites: Sequence[str] = SITES, layers: Sequence[int] | None = None) -> list[str]:
    """``resid.0..L`` and ``mlp.1..L`` (restricted to ``layers`` if given), resid first."""
    unknown = set(sites) - set(SITES)
    if unknown:
        raise ValueError(f"unknown activation sites {sorted(unknown)}; use {SITES}")
    wanted = range(n_layers + 1) if layers is None else sorted(set(int(l) for l in layers))
    bad = [l for l in wanted if not 0 <= l <= n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range 0..{n_layers}")
    names = []
    for site in SITES:
        if site in sites:
            names += [f"{site}.{l}" for l in wanted if site == "resid" or l >= 1]
    return names


class _Recorder:
    """Forward hooks that keep the latest output of each requested site."""

    def __init__(self, model, names: Sequence[str]):
        self.names = list(names)
        self.captured: dict = {}
        self._blocks = transformer_blocks(model)
        self._handles = []

    def _keep(self, name):
        def hook(module, args, output):
            self.captured[name] = output[0] if isinstance(output, tuple) else output

        return hook

    def _keep_input(self, name):
        def hook(module, args, kwargs):
            self.captured[name] = args[0] if args else kwargs["hidden_states"]

        return hook

    def __enter__(self):
        for name in self.names:
            site, layer = name.split(".")
            layer = int(layer)
            if site == "resid" and layer == 0:
                # The embedding output is what block 1 receives (after any
                # architecture-specific scaling), as hidden_states[0] is.
                h = self._blocks[0].register_forward_pre_hook(self._keep_input(name), with_kwargs=True)
            elif site == "resid":
                h = self._blocks[layer - 1].register_forward_hook(self._keep(name))
            else:
                h = self._blocks[layer - 1].mlp.register_forward_hook(self._keep(name))
            self._handles.append(h)
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.captured = {}


# ---------------------------------------------------------------- forward plans


@dataclass
class _Item:
    """One input sequence and the (row, start, stop) spans whose mean fills each unit's row."""

    ids: list[int]
    targets: list[tuple[int, int, int]] = field(default_factory=list)


def _bos_id(tokenizer) -> int | None:
    bos = tokenizer.bos_token_id
    if bos is None:
        bos = tokenizer.eos_token_id  # GPT-2-style tokenizers use one token for both
    return bos


def _encode(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def word_token_positions(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Index of each word's last token, from token char offsets and word char spans.

    A word's last token is the last token starting before the word ends; it
    must also end after the word starts, or the word produced no token.
    """
    starts = [s for s, _ in offsets]
    positions = []
    for i, (s, e) in enumerate(spans):
        t = bisect.bisect_left(starts, e) - 1
        if t < 0 or offsets[t][1] <= s:
            raise ValueError(f"word {i} at chars {s}:{e} maps to no token")
        positions.append(t)
    return positions


def _check_texts(units: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in units.columns]
    if missing:
        raise ValueError(f"units table lacks columns {missing}; it has {list(units.columns)}")
    empty = units["text"].isna() | (units["text"].astype(str).str.strip() == "")
    if empty.any():
        raise ValueError(f"units with empty text: {units.loc[empty, 'unit_id'].tolist()[:10]}; fix the stimulus set")


def _word_items(units: pd.DataFrame, tokenizer, max_len: int, context_window: int | None) -> list[_Item]:
    _check_texts(units, ("unit_id", "run", "text", "word_index"))
    if units["run"].isna().any() or units["word_index"].isna().any():
        raise ValueError("word units need a run and a word_index on every row; fix the stimulus set")
    duplicated = units.duplicated(["run", "word_index"])
    if duplicated.any():
        raise ValueError(f"duplicate (run, word_index) for units {units.loc[duplicated, 'unit_id'].tolist()[:10]}; "
                         f"fix the stimulus set")
    bos = _bos_id(tokenizer)
    rows = np.arange(len(units))
    items: list[_Item] = []
    for _, group in units.assign(_row=rows).groupby("run", sort=False):
        group = group.sort_values("word_index", kind="stable")
        words = group["text"].astype(str).tolist()
        spans, cursor = [], 0
        for w in words:
            spans.append((cursor, cursor + len(w)))
            cursor += len(w) + 1
        ids, offsets = _encode(tokenizer, " ".join(words))
        prefix = [] if bos is None else [bos]
        ids = prefix + ids
        positions = [p + len(prefix) for p in word_token_positions(offsets, spans)]
        targets = list(zip(group["_row"].tolist(), positions))
        if context_window is None:
            items += _full_context_items(ids, targets, max_len)
        else:
            items += _windowed_items(ids, targets, context_window)
    return items


def _token_items(units: pd.DataFrame, tokenizer, max_len: int) -> tuple[list[_Item], pd.DataFrame]:
    """One target per token of each story (BOS excluded) and the token table of those rows."""
    _check_texts(units, ("unit_id", "run", "text", "word_index"))
    bos = _bos_id(tokenizer)
    prefix = [] if bos is None else [bos]
    items: list[_Item] = []
    tables = []
    n_rows = 0
    for run, group in units.groupby("run", sort=False):
        group = group.sort_values("word_index", kind="stable")
        words = group["text"].astype(str).tolist()
        starts, cursor = [], 0
        for w in words:
            starts.append(cursor)
            cursor += len(w) + 1
        text = " ".join(words)
        ids, offsets = _encode(tokenizer, text)
        # A token belongs to the word holding its first non-space character;
        # a bare space piece (byte-level BPE's "Ġ") to the word that follows it.
        firsts = []
        for s, e in offsets:
            c = s
            while c < e and text[c] == " ":
                c += 1
            firsts.append(c)
        word_of = [max(0, bisect.bisect_right(starts, c) - 1) for c in firsts]
        rows = list(range(n_rows, n_rows + len(ids)))
        n_rows += len(ids)
        targets = [(r, p + len(prefix)) for r, p in zip(rows, range(len(ids)))]
        items += _full_context_items(prefix + ids, targets, max_len)
        unit_rows = group.index.to_numpy()[word_of]
        # The text a token covers, from its offsets: decoding one byte-level piece
        # alone would show half a kana as U+FFFD.
        tables.append(pd.DataFrame({"row": rows, "run": run, "position": np.arange(len(ids)),
                                    "token_id": ids, "unit_row": unit_rows,
                                    "token": [text[s:e] for s, e in offsets]}))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["row", "run", "position", "token_id", "unit_row", "token"])
    return items, table


def _full_context_items(ids: list[int], targets: list[tuple[int, int]], max_len: int) -> list[_Item]:
    if len(ids) <= max_len:
        return [_Item(ids, [(r, p, p + 1) for r, p in targets])]
    # Longer than the model's positions: windows of max_len every max_len/2
    # tokens; each token is read from the window where it has at least half
    # a window of context (tokens of the first half-window, from window 0).
    half = max_len // 2
    windows: dict[int, _Item] = {}
    for r, p in targets:
        k = 0 if p < max_len else p // half - 1
        start = k * half
        item = windows.setdefault(k, _Item(ids[start : start + max_len]))
        item.targets.append((r, p - start, p - start + 1))
    return [windows[k] for k in sorted(windows)]


def _windowed_items(ids: list[int], targets: list[tuple[int, int]], w: int) -> list[_Item]:
    # Words with at most w tokens before them see the whole prefix: one shared
    # sequence serves them all. Each later word gets its own last-w-tokens window.
    early = [(r, p) for r, p in targets if p <= w]
    items = []
    if early:
        end = max(p for _, p in early) + 1
        items.append(_Item(ids[:end], [(r, p, p + 1) for r, p in early]))
    items += [_Item(ids[p - w : p + 1], [(r, w, w + 1)]) for r, p in targets if p > w]
    return items


def _unit_items(units: pd.DataFrame, tokenizer, max_len: int, pooling: str) -> list[_Item]:
    _check_texts(units, ("unit_id", "text"))
    bos = _bos_id(tokenizer)
    prefix = [] if bos is None else [bos]
    if bos is None:
        logger.warning("tokenizer has no BOS/EOS token; %s pooling runs on the text alone", pooling)
    items, truncated = [], 0
    for row, text in enumerate(units["text"].astype(str)):
        ids, _ = _encode(tokenizer, text)
        if len(prefix) + len(ids) > max_len:
            if pooling == "last":
                # A cut prompt (a benchmark item without its few-shot head) is not the
                # prompt the model is scored on: such units are dropped, not read.
                raise ValueError(f"unit {units['unit_id'].iloc[row]!r} has {len(prefix) + len(ids)} tokens, more "
                                 f"than the model's {max_len} positions; drop over-long units first "
                                 f"(extract_last_token_activations does, and counts them)")
            # Keep the end: the last token, and the context nearest to it, matter most.
            ids = ids[len(ids) - (max_len - len(prefix)) :]
            truncated += 1
        ids = prefix + ids
        start = len(prefix) if pooling == "mean" else len(ids) - 1
        items.append(_Item(ids, [(row, start, len(ids))]))
    if truncated:
        logger.warning("%d units longer than %d tokens were cut to their last %d tokens", truncated, max_len, max_len)
    return items


# ---------------------------------------------------------------- extraction


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


def _forward(model, items: list[_Item], names, out: dict, batch_size: int, device, pad_id: int) -> None:
    import torch

    base = model.base_model
    # Similar lengths share a batch so padding stays small.
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
    with _Recorder(model, names) as recorder, torch.inference_mode():
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
        items = _word_items(units, tokenizer, max_len, context_window)
    else:
        items = _unit_items(units, tokenizer, max_len, pooling)
    return _run(model, tokenizer, items, names, len(units), batch_size, device, dtype)


def overlong_units(units: pd.DataFrame, tokenizer, max_len: int) -> np.ndarray:
    """Boolean mask of the units whose text, after the BOS, exceeds ``max_len`` tokens."""
    prefix = 0 if _bos_id(tokenizer) is None else 1
    return np.array([prefix + len(_encode(tokenizer, t)[0]) > max_len for t in units["text"].astype(str)],
                    dtype=bool)


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
    _check_texts(units, ("unit_id", "text"))
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
    items, tokens = _token_items(units, tokenizer, _max_positions(model))
    return _run(model, tokenizer, items, names, len(tokens), batch_size, device, dtype), tokens


# ---------------------------------------------------------------- storage


def save_activations(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """Write ``arrays`` as float16 safetensors with JSON-encoded metadata, atomically."""
    from safetensors.numpy import save_file

    missing = [k for k in METADATA_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"activation metadata lacks {missing} (needs {list(METADATA_KEYS)})")
    n_units = len(metadata["unit_ids"])
    bad = {k: v.shape for k, v in arrays.items() if v.ndim != 2 or v.shape[0] != n_units}
    if bad:
        raise ValueError(f"arrays must be (n_units={n_units} × d); got {bad}")
    tensors = {k: np.ascontiguousarray(v, dtype=np.float16) for k, v in arrays.items()}
    encoded = {k: json.dumps(v, default=json_default) for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=encoded)


def load_unit_activations(path: str | os.PathLike, stimuli: pd.DataFrame, stimuli_path: str | os.PathLike,
                          names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Activations whose rows are the units of ``stimuli``, in its order; a stale cache is an error."""
    from brainphase.stimuli import DataError

    arrays, meta = load_activations(path, names)
    if meta.get("dropped_unit_ids"):
        raise DataError(f"{path}: {len(meta['dropped_unit_ids'])} units of {stimuli_path} exceed the model's "
                        f"positions and have no row (e.g. {meta['dropped_unit_ids'][:3]}); this analysis needs "
                        "every unit — shorten those texts")
    if list(meta["unit_ids"]) != stimuli["unit_id"].tolist():
        raise DataError(f"{path}: unit ids differ from {stimuli_path}; the activation cache is stale — "
                        "delete it and rerun")
    return arrays


def subject_activations(path: str | os.PathLike, stimuli: pd.DataFrame, stimuli_path: str | os.PathLike, brain,
                        brain_path: str | os.PathLike, names: Sequence[str] | None = None
                        ) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Activations and stimulus rows of the units one subject heard, on that subject's clock.

    The cache holds the whole stimulus set; a real dataset's brain file may time
    only some of its units, at its own onsets (``brainphase.stimuli.subject_view``).
    The timings are checked against the subject's runs.
    """
    from brainphase.stimuli import check_alignment, subject_view

    view, rows = subject_view(stimuli, brain, str(stimuli_path), str(brain_path))
    check_alignment(view, brain, str(stimuli_path), str(brain_path))
    arrays = load_unit_activations(path, stimuli, stimuli_path, names)
    if rows is not None:
        arrays = {k: v[rows] for k, v in arrays.items()}
    return arrays, view


def activation_memmap(path: str | os.PathLike, name: str) -> np.memmap:
    """One stored tensor as a read-only memory map: rows are read from disk only when indexed.

    safetensors keeps each tensor as one contiguous little-endian block after
    an 8-byte header length and a JSON header, so a float16 tensor maps
    directly; training on a layer larger than RAM streams through the page cache.
    """
    path = Path(path)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    if name not in header:
        raise KeyError(f"{path}: no tensor {name!r}; it holds {sorted(k for k in header if k != '__metadata__')}. "
                       f"Fix: re-extract with that site/layer requested")
    info = header[name]
    if info["dtype"] != "F16":
        raise ValueError(f"{path}: tensor {name} is {info['dtype']}, expected F16 (the activation contract)")
    begin, _ = info["data_offsets"]
    return np.memmap(path, dtype="<f2", mode="r", offset=8 + n + begin, shape=tuple(info["shape"]))


def site_layers(path: str | os.PathLike, site: str) -> list[str]:
    """The ``{site}.{layer}`` tensors of an activation file, by layer depth (header only, no data read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        names = [k for k in f.keys() if k.split(".")[0] == site]
    if not names:
        raise KeyError(f"{path}: no {site}.* tensors; re-extract with activations.sites including {site!r}")
    return sorted(names, key=lambda n: int(n.split(".")[1]))


def load_activations(path: str | os.PathLike, names: Sequence[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read activations (as float32) and their metadata; ``names`` selects tensors."""
    from safetensors import safe_open

    path = Path(path)
    with safe_open(str(path), framework="numpy") as f:
        available = list(f.keys())
        wanted = available if names is None else list(names)
        absent = [n for n in wanted if n not in available]
        if absent:
            raise KeyError(f"{path}: no tensors {absent}; it holds {available}. Fix: re-extract with those "
                           f"sites/layers requested")
        arrays = {n: f.get_tensor(n).astype(np.float32) for n in wanted}
        metadata = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return arrays, metadata

