"""Forward plans: the token sequences to run and which positions fill each output row."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


@dataclass
class Item:
    """One input sequence and the (row, start, stop) spans whose mean fills each unit's row."""

    ids: list[int]
    targets: list[tuple[int, int, int]] = field(default_factory=list)


def bos_id(tokenizer) -> int | None:
    bos = tokenizer.bos_token_id
    if bos is None:
        bos = tokenizer.eos_token_id  # GPT-2-style tokenizers use one token for both
    return bos


def encode(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
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


def check_texts(units: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in units.columns]
    if missing:
        raise ValueError(f"units table lacks columns {missing}; it has {list(units.columns)}")
    empty = units["text"].isna() | (units["text"].astype(str).str.strip() == "")
    if empty.any():
        raise ValueError(f"units with empty text: {units.loc[empty, 'unit_id'].tolist()[:10]}; fix the stimulus set")


def word_items(units: pd.DataFrame, tokenizer, max_len: int, context_window: int | None) -> list[Item]:
    check_texts(units, ("unit_id", "run", "text", "word_index"))
    if units["run"].isna().any() or units["word_index"].isna().any():
        raise ValueError("word units need a run and a word_index on every row; fix the stimulus set")
    duplicated = units.duplicated(["run", "word_index"])
    if duplicated.any():
        raise ValueError(f"duplicate (run, word_index) for units {units.loc[duplicated, 'unit_id'].tolist()[:10]}; "
                         f"fix the stimulus set")
    bos = bos_id(tokenizer)
    rows = np.arange(len(units))
    items: list[Item] = []
    for _, group in units.assign(_row=rows).groupby("run", sort=False):
        group = group.sort_values("word_index", kind="stable")
        words = group["text"].astype(str).tolist()
        spans, cursor = [], 0
        for w in words:
            spans.append((cursor, cursor + len(w)))
            cursor += len(w) + 1
        ids, offsets = encode(tokenizer, " ".join(words))
        prefix = [] if bos is None else [bos]
        ids = prefix + ids
        positions = [p + len(prefix) for p in word_token_positions(offsets, spans)]
        targets = list(zip(group["_row"].tolist(), positions))
        if context_window is None:
            items += full_context_items(ids, targets, max_len)
        else:
            items += windowed_items(ids, targets, context_window)
    return items


def token_items(units: pd.DataFrame, tokenizer, max_len: int) -> tuple[list[Item], pd.DataFrame]:
    """One target per token of each story (BOS excluded) and the token table of those rows."""
    check_texts(units, ("unit_id", "run", "text", "word_index"))
    bos = bos_id(tokenizer)
    prefix = [] if bos is None else [bos]
    items: list[Item] = []
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
        ids, offsets = encode(tokenizer, text)
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
        items += full_context_items(prefix + ids, targets, max_len)
        unit_rows = group.index.to_numpy()[word_of]
        # The text a token covers, from its offsets: decoding one byte-level piece
        # alone would show half a kana as U+FFFD.
        tables.append(pd.DataFrame({"row": rows, "run": run, "position": np.arange(len(ids)),
                                    "token_id": ids, "unit_row": unit_rows,
                                    "token": [text[s:e] for s, e in offsets]}))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["row", "run", "position", "token_id", "unit_row", "token"])
    return items, table


def full_context_items(ids: list[int], targets: list[tuple[int, int]], max_len: int) -> list[Item]:
    if len(ids) <= max_len:
        return [Item(ids, [(r, p, p + 1) for r, p in targets])]
    # Longer than the model's positions: windows of max_len every max_len/2
    # tokens; each token is read from the window where it has at least half
    # a window of context (tokens of the first half-window, from window 0).
    half = max_len // 2
    windows: dict[int, Item] = {}
    for r, p in targets:
        k = 0 if p < max_len else p // half - 1
        start = k * half
        item = windows.setdefault(k, Item(ids[start : start + max_len]))
        item.targets.append((r, p - start, p - start + 1))
    return [windows[k] for k in sorted(windows)]


def windowed_items(ids: list[int], targets: list[tuple[int, int]], w: int) -> list[Item]:
    # Words with at most w tokens before them see the whole prefix: one shared
    # sequence serves them all. Each later word gets its own last-w-tokens window.
    early = [(r, p) for r, p in targets if p <= w]
    items = []
    if early:
        end = max(p for _, p in early) + 1
        items.append(Item(ids[:end], [(r, p, p + 1) for r, p in early]))
    items += [Item(ids[p - w : p + 1], [(r, w, w + 1)]) for r, p in targets if p > w]
    return items


def unit_items(units: pd.DataFrame, tokenizer, max_len: int, pooling: str) -> list[Item]:
    check_texts(units, ("unit_id", "text"))
    bos = bos_id(tokenizer)
    prefix = [] if bos is None else [bos]
    if bos is None:
        logger.warning("tokenizer has no BOS/EOS token; %s pooling runs on the text alone", pooling)
    items, truncated = [], 0
    for row, text in enumerate(units["text"].astype(str)):
        ids, _ = encode(tokenizer, text)
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
        items.append(Item(ids, [(row, start, len(ids))]))
    if truncated:
        logger.warning("%d units longer than %d tokens were cut to their last %d tokens", truncated, max_len, max_len)
    return items


def overlong_units(units: pd.DataFrame, tokenizer, max_len: int) -> np.ndarray:
    """Boolean mask of the units whose text, after the BOS, exceeds ``max_len`` tokens."""
    prefix = 0 if bos_id(tokenizer) is None else 1
    return np.array([prefix + len(encode(tokenizer, t)[0]) > max_len for t in units["text"].astype(str)],
                    dtype=bool)
