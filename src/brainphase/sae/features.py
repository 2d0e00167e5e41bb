"""Describe SAE features: top activations, their contexts, language tendency and granularity.

Arrays and tables in, tables out. Every function
here works on the TopK codes of the evaluation tokens — ``values`` and
``indices``, both (n_tokens × k) — and on the token table of
:func:`brainphase.sae.pipeline.token_table`; none needs torch.

Language tendency counts characters over a feature's top activating
contexts: ≥ 90 % Japanese → "ja", ≥ 90 % Latin → "en", otherwise "mixed".
Granularity, often labelled by hand on a sample of features, is classified
here from the ground truth (the
demo world's concepts and categories, or a dictionary for a real corpus):
"concept_synonym" (one concept spread over several token ids, e.g. a
translation pair), "token" (one token id dominates), "concept_related" (several
concepts of one category), "unrelated"; features with too few activations
are "rare", and without ground truth they are "unlabelled" and go to the
hand-labelling sheet (:mod:`brainphase.sae.sheet`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

LANGUAGES = ("ja", "en", "mixed")
GRANULARITIES = ("token", "concept_synonym", "concept_related", "unrelated")
UNCLASSIFIED = ("rare", "none", "unlabelled")

# Japanese: hiragana, katakana (with ー U+30FC and ・ U+30FB), katakana
# phonetic extensions, 々〆〇, CJK unified ideographs (+ extensions and the
# compatibility block) and half-width katakana (with ･ and ｰ).
_JAPANESE_RANGES = ((0x3005, 0x3007), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF),
                    (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF65, 0xFF9F), (0x20000, 0x323AF))
# Latin: ASCII letters, Latin-1 letters (not × ÷), Latin Extended-A/B,
# Latin Extended Additional and full-width Latin letters.
_LATIN_RANGES = ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F), (0x1E00, 0x1EFF),
                 (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))


def _script_codes(codepoints: np.ndarray) -> np.ndarray:
    """1 for a Japanese character, 2 for a Latin letter, 0 otherwise."""
    out = np.zeros(len(codepoints), dtype=np.int8)
    for code, ranges in ((1, _JAPANESE_RANGES), (2, _LATIN_RANGES)):
        for lo, hi in ranges:
            out[(codepoints >= lo) & (codepoints <= hi)] = code
    return out


def _script_counts_many(texts: Sequence[str]) -> np.ndarray:
    """(n_texts × 2) counts of Japanese characters and Latin letters, in one vectorised pass."""
    texts = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts]
    cp = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    script = _script_codes(cp)
    ends = np.cumsum([len(t) for t in texts], dtype=np.int64)
    starts = ends - np.array([len(t) for t in texts], dtype=np.int64)
    out = np.empty((len(texts), 2), dtype=np.int64)
    for j, code in enumerate((1, 2)):
        c = np.r_[0, np.cumsum(script == code)]
        out[:, j] = c[ends] - c[starts]
    return out


_CONTEXT_COLUMNS = ("token_id", "word", "form", "concept", "category", "lang")


# --------------------------------------------------------------------------- top activations


def top_activations(values: np.ndarray, indices: np.ndarray, n_latents: int, n_top: int = 50) -> pd.DataFrame:
    """Each latent's up-to-``n_top`` strongest activating token rows.

    ``values``/``indices`` are the TopK codes (n_tokens × k): the activation
    and the latent id of each of a token's k active latents. Only positive
    activations count. Returns columns latent, rank (0 = strongest), row,
    value, sorted by latent then rank; ties in value go to the lower row.
    """
    values = np.asarray(values)
    indices = np.asarray(indices)
    if values.shape != indices.shape or values.ndim != 2:
        raise ValueError(f"values and indices must both be (n_tokens, k), got {values.shape} and {indices.shape}")
    if n_top < 1:
        raise ValueError(f"n_top must be >= 1, got {n_top}")
    n, k = values.shape
    latent = indices.reshape(-1).astype(np.int64)
    value = values.reshape(-1).astype(np.float64)
    row = np.repeat(np.arange(n, dtype=np.int64), k)
    keep = np.isfinite(value) & (value > 0)
    latent, value, row = latent[keep], value[keep], row[keep]
    if len(latent) and (latent.min() < 0 or latent.max() >= n_latents):
        raise ValueError(f"latent indices must lie in [0, {n_latents}), got [{latent.min()}, {latent.max()}]")
    order = np.lexsort((row, -value, latent))  # last key is primary: latent, value desc, row asc
    latent, value, row = latent[order], value[order], row[order]
    starts = np.searchsorted(latent, latent, side="left")
    rank = np.arange(len(latent), dtype=np.int64) - starts
    keep = rank < n_top
    return pd.DataFrame({"latent": latent[keep], "rank": rank[keep], "row": row[keep], "value": value[keep]})


def contexts(top: pd.DataFrame, tokens: pd.DataFrame, before: int = 8, after: int = 2) -> pd.DataFrame:
    """Add to each top activation the text around its token (same document only).

    ``left`` is the ``before`` token pieces before the activating token,
    ``right`` the ``after`` pieces after it, ``context`` = left + token +
    right; also the activating row's doc, position, token_id, word, concept,
    category and lang (None/NaN where ``tokens`` lacks the column).
    """
    for col in ("row", "doc", "position", "token"):
        if col not in tokens:
            raise ValueError(f"token table lacks column {col!r}")
    tok = tokens.sort_values(["doc", "position"], kind="stable").reset_index(drop=True)
    rows = tok["row"].to_numpy(dtype=np.int64)
    if len(np.unique(rows)) != len(rows):
        raise ValueError("token table rows must be unique")
    where = np.full(int(rows.max()) + 1 if len(rows) else 0, -1, dtype=np.int64)
    where[rows] = np.arange(len(tok))
    top_rows = top["row"].to_numpy(dtype=np.int64)
    if len(top_rows) and (top_rows.min() < 0 or top_rows.max() >= len(where) or (where[top_rows] < 0).any()):
        raise ValueError("top activations refer to rows missing from the token table")
    p = where[top_rows]
    docs = tok["doc"].to_numpy(dtype=object)
    pieces = tok["token"].fillna("").astype(str).to_numpy(dtype=object)
    n = len(tok)

    def piece(offset: int) -> np.ndarray:
        q = np.clip(p + offset, 0, max(n - 1, 0))
        ok = (p + offset >= 0) & (p + offset < n) & (docs[q] == docs[p])
        return np.where(ok, pieces[q], "").astype(object)

    empty = np.full(len(p), "", dtype=object)
    left = sum((piece(o) for o in range(-before, 0)), empty.copy())
    right = sum((piece(o) for o in range(1, after + 1)), empty.copy())
    centre = pieces[p] if len(p) else empty.copy()
    out = top[["latent", "rank", "row", "value"]].reset_index(drop=True).copy()
    out["doc"] = docs[p] if len(p) else empty.copy()
    out["position"] = tok["position"].to_numpy()[p]
    out["token"] = centre
    out["left"] = left
    out["right"] = right
    out["context"] = left + centre + right
    for col in _CONTEXT_COLUMNS:
        out[col] = tok[col].to_numpy()[p] if col in tok else None
    for col in ("token", "left", "right", "context"):
        out[col] = out[col].astype(str)
    return out


# --------------------------------------------------------------------------- language tendency


def script_counts(text: str) -> tuple[int, int]:
    """(Japanese characters, Latin letters) in ``text``; digits, punctuation and spaces count for neither."""
    n_ja, n_latin = _script_counts_many([text])[0]
    return int(n_ja), int(n_latin)


def _tendency(n_ja: float, n_latin: float, threshold: float) -> str:
    total = n_ja + n_latin
    if total <= 0:
        return "mixed"
    if n_ja / total >= threshold:
        return "ja"
    if n_latin / total >= threshold:
        return "en"
    return "mixed"


def language_tendency(context_texts: Iterable[str], threshold: float = 0.9) -> str:
    """"ja", "en" or "mixed" by the share of Japanese vs Latin characters over all ``context_texts``."""
    n_ja, n_latin = _script_counts_many(list(context_texts)).sum(axis=0)
    return _tendency(n_ja, n_latin, threshold)


# --------------------------------------------------------------------------- granularity


def _codes(x) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 = missing) and the distinct values of ``x``."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(x, dtype=object), dtype=object), use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _mode(codes: np.ndarray) -> tuple[int, int]:
    """(modal code, its count) among known codes; ties go to the code seen first; (-1, 0) if none is known."""
    known = codes[codes >= 0]
    if len(known) == 0:
        return -1, 0
    uniq, first, count = np.unique(known, return_index=True, return_counts=True)
    best = np.flatnonzero(count == count.max())
    best = best[np.argmin(first[best])]
    return int(uniq[best]), int(count[best])


def _granularity(tok: np.ndarray, con: np.ndarray, cat: np.ndarray, threshold: float, min_examples: int,
                 synonym_share: float, form: np.ndarray | None = None) -> str:
    n = len(tok)
    if n == 0 or n < min_examples:
        return "rare"
    c, c_n = _mode(con)
    if c >= 0 and c_n / n >= threshold:
        # Synonymy is between word forms: two pieces of one multi-token word
        # are different tokens of one form, not synonyms.
        per_token = np.unique((tok if form is None else form)[con == c], return_counts=True)[1]
        if (per_token >= synonym_share * c_n).sum() >= 2:
            return "concept_synonym"
    _, t_n = _mode(tok)
    if t_n / n >= threshold:
        return "token"
    g, g_n = _mode(cat)
    if g >= 0 and g_n / n >= threshold:
        in_cat = con[cat == g]
        if len(np.unique(in_cat[in_cat >= 0])) >= 2:
            return "concept_related"
    return "unrelated"


def granularity(token_ids: Sequence, concepts: Sequence, categories: Sequence, threshold: float = 0.5,
                min_examples: int = 5, synonym_share: float = 0.2) -> str:
    """Classify one feature's activations into four granularity categories, plus "rare".

    In order: fewer than ``min_examples`` → "rare"; the modal known concept's
    share ≥ ``threshold`` and at least two of its token ids (word forms, in
    :func:`classify_features` when the contexts have a ``form`` column) each
    carry ≥ ``synonym_share`` of that concept's activations → "concept_synonym"; the
    modal token id's share ≥ ``threshold`` → "token"; the modal known
    category's share ≥ ``threshold`` and it spans ≥ 2 known concepts →
    "concept_related"; else "unrelated". Shares are over all examples:
    unknown concepts and categories (NaN/None) count against them.

    The synonym test comes first because a translation pair (猫/cat) has only
    two token ids, one of which always holds ≥ 50 % of the activations: with
    the token test first and a threshold of 0.5 no pair could ever be a
    synonym. ``synonym_share`` keeps a stray activation on a second token
    from turning a token feature into a synonym one.
    """
    n = len(token_ids)
    if not (len(concepts) == len(categories) == n):
        raise ValueError(f"token_ids, concepts and categories differ in length: "
                         f"{n}, {len(concepts)}, {len(categories)}")
    return _granularity(_codes(token_ids)[0], _codes(concepts)[0], _codes(categories)[0], threshold,
                        min_examples, synonym_share)


# --------------------------------------------------------------------------- per-feature table


def classify_features(ctx: pd.DataFrame, n_latents: int, lang_threshold: float = 0.9,
                      gran_threshold: float = 0.5, min_examples: int = 5, has_truth: bool = True,
                      synonym_share: float = 0.2) -> pd.DataFrame:
    """One row per latent (all ``n_latents``): its examples' language tendency and granularity.

    ``ctx`` is :func:`contexts`' table. Columns: latent, n_examples, language
    (:func:`language_tendency` of its contexts; "none" without examples),
    granularity (:func:`granularity`; "rare" below ``min_examples``;
    "unlabelled" when ``has_truth`` is False), top_token (text of the modal
    token id), top_token_share, top_concept, top_category (modal known
    values, NaN if none), max_activation.
    """
    ctx = ctx.sort_values(["latent", "rank"], kind="stable")
    lat = ctx["latent"].to_numpy(dtype=np.int64)
    if len(lat) and (lat.min() < 0 or lat.max() >= n_latents):
        raise ValueError(f"contexts refer to latents outside [0, {n_latents})")
    counts = _script_counts_many(ctx["context"].to_numpy(dtype=object))
    n_ex = np.bincount(lat, minlength=n_latents)
    n_ja = np.bincount(lat, weights=counts[:, 0], minlength=n_latents)
    n_la = np.bincount(lat, weights=counts[:, 1], minlength=n_latents)
    language = [_tendency(j, la, lang_threshold) if n else "none" for n, j, la in zip(n_ex, n_ja, n_la)]

    def column(name):
        return ctx[name].to_numpy(dtype=object) if name in ctx else np.full(len(ctx), None, dtype=object)

    tok, tok_u = _codes(column("token_id"))
    form = _codes(column("form"))[0] if "form" in ctx and ctx["form"].notna().any() else None
    con, con_u = _codes(column("concept"))
    cat, cat_u = _codes(column("category"))
    token = column("token")
    value = ctx["value"].to_numpy(dtype=np.float64)

    gran = np.full(n_latents, "rare", dtype=object)
    top_token = np.full(n_latents, None, dtype=object)
    top_share = np.full(n_latents, np.nan)
    top_concept = np.full(n_latents, np.nan, dtype=object)
    top_category = np.full(n_latents, np.nan, dtype=object)
    max_act = np.full(n_latents, np.nan)
    bounds = np.flatnonzero(np.diff(lat)) + 1
    for s, e in zip(np.r_[0, bounds], np.r_[bounds, len(lat)]):
        if e <= s:
            continue
        i, n = lat[s], e - s
        t, t_n = _mode(tok[s:e])
        if t >= 0:
            top_token[i] = token[s + np.flatnonzero(tok[s:e] == t)[0]]
        top_share[i] = t_n / n
        c, _ = _mode(con[s:e])
        top_concept[i] = con_u[c] if c >= 0 else np.nan
        g, _ = _mode(cat[s:e])
        top_category[i] = cat_u[g] if g >= 0 else np.nan
        max_act[i] = value[s:e].max()
        if n < min_examples:
            gran[i] = "rare"
        elif not has_truth:
            gran[i] = "unlabelled"
        else:
            gran[i] = _granularity(tok[s:e], con[s:e], cat[s:e], gran_threshold, min_examples, synonym_share,
                                   None if form is None else form[s:e])
    return pd.DataFrame({
        "latent": np.arange(n_latents, dtype=np.int64), "n_examples": n_ex.astype(np.int64),
        "language": language, "granularity": gran.astype(str), "top_token": top_token,
        "top_token_share": top_share, "top_concept": _numeric_or_object(top_concept), "top_category": top_category,
        "max_activation": max_act,
    })


def _numeric_or_object(x: np.ndarray):
    """Concept ids as floats (NaN = unknown) when they are numbers, else as they are."""
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return x


def feature_shares(features: pd.DataFrame, column: str, exclude: Sequence[str] = UNCLASSIFIED) -> pd.Series:
    """Share of each label of ``column`` among the features not labelled with ``exclude``."""
    labels = features[column].astype(str)
    labels = labels[~labels.isin(list(exclude))]
    if labels.empty:
        return pd.Series(dtype=np.float64, name="share")
    return labels.value_counts(normalize=True).rename("share").rename_axis(column)
