"""SAE feature description: top activations, contexts, language, granularity, matching, sheets.

Planted truth: a synthetic bilingual token table and TopK codes whose latents
fire on one token, on a translation pair, on one category, on random tokens,
on too few tokens, or never; nulls: random tokens are "unrelated", random
decoders do not match.
"""

import re

import numpy as np
import pandas as pd
import pytest

from brainphase.sae.features import (
    classify_features,
    contexts,
    feature_shares,
    granularity,
    language_tendency,
    script_counts,
    top_activations,
)
from brainphase.sae.matching import decoder_cosine, match_features, match_table
from brainphase.sae.sheet import feature_html, labelling_sheet, write_sheet

# --------------------------------------------------------------------------- top activations


def test_top_activations_order_ties_and_zeros():
    values = np.array([[3.0, 1.0], [2.0, 0.0], [3.0, 5.0], [0.0, 0.0], [4.0, 0.5]])
    indices = np.array([[0, 1], [0, 1], [0, 2], [1, 2], [3, 0]])
    top = top_activations(values, indices, n_latents=5, n_top=3)
    assert list(top.columns) == ["latent", "rank", "row", "value"]
    got = {lat: list(zip(g["rank"], g["row"], g["value"])) for lat, g in top.groupby("latent")}
    # latent 0: rows 0 and 2 tie at 3.0 (lower row first), then row 1 (2.0), then row 4 (0.5) cut by n_top.
    assert got[0] == [(0, 0, 3.0), (1, 2, 3.0), (2, 1, 2.0)]
    assert got[1] == [(0, 0, 1.0)]  # the zeros of rows 1 and 3 are not activations
    assert got[2] == [(0, 2, 5.0)]
    assert got[3] == [(0, 4, 4.0)]
    assert 4 not in got  # never active
    top1 = top_activations(values, indices, n_latents=5, n_top=1)
    assert top1.groupby("latent").size().max() == 1
    assert list(top1.loc[top1.latent == 0, "row"]) == [0]
    with pytest.raises(ValueError):
        top_activations(values, indices, n_latents=3)  # latent 3 out of range


def test_top_activations_matches_brute_force():
    rng = np.random.default_rng(0)
    n, k, L = 300, 4, 20
    indices = np.array([rng.choice(L, k, replace=False) for _ in range(n)])
    values = np.round(rng.random((n, k)), 1) * (rng.random((n, k)) > 0.2)  # ties and zeros
    top = top_activations(values, indices, L, n_top=7)
    for lat in range(L):
        rows, vals = np.nonzero(indices == lat)[0], values[indices == lat]
        keep = vals > 0
        order = sorted(zip(-vals[keep], rows[keep]))[:7]
        got = top[top.latent == lat]
        assert list(got["row"]) == [r for _, r in order]
        assert list(got["rank"]) == list(range(len(order)))


# --------------------------------------------------------------------------- language tendency


def test_script_counts():
    assert script_counts("ねこがすき") == (5, 0)
    assert script_counts("ネコー・猫") == (5, 0)  # katakana, long vowel mark, middle dot, kanji
    assert script_counts("ｶﾀｶﾅ") == (4, 0)  # half-width katakana
    assert script_counts("Hello, world!") == (0, 10)
    assert script_counts("café naïve") == (0, 9)
    assert script_counts("。、！？「」123 ,.!?()\n\t") == (0, 0)


def test_language_tendency():
    assert language_tendency(["ねこがすき。", "カタカナ、漢字"]) == "ja"
    assert language_tendency(["The cat sat.", "on the mat!"]) == "en"
    assert language_tendency(["ねこ", "ab"]) == "mixed"  # 50/50
    assert language_tendency(["あ" * 92, "a" * 8]) == "ja"  # 92/8
    assert language_tendency(["a" * 92 + "あ" * 8]) == "en"
    assert language_tendency(["あ" * 85 + "a" * 15]) == "mixed"
    # Punctuation and digits do not dilute the share.
    assert language_tendency(["あ" * 92 + "a" * 8 + "1234567890!?。、" * 10]) == "ja"
    assert language_tendency(["123 !?", "。"]) == "mixed"  # no letters at all
    assert language_tendency([]) == "mixed"


# --------------------------------------------------------------------------- granularity


def test_granularity_planted():
    nan = np.nan
    assert granularity([7] * 10, [1] * 10, ["animal"] * 10) == "token"
    assert granularity([7] * 6 + [8, 9, 10, 11], [nan] * 10, [nan] * 10) == "token"  # 60 % one token
    # translation pair: 猫 (ja) and cat (en), one concept
    assert granularity([100] * 5 + [200] * 5, [1] * 10, ["animal"] * 10) == "concept_synonym"
    assert granularity([100] * 14 + [200] * 6, [1] * 20, ["animal"] * 20) == "concept_synonym"
    # A stray activation on the partner (1 of 20 < 20 % of the concept) leaves a token feature.
    assert granularity([100] * 19 + [200], [1] * 20, ["animal"] * 20) == "token"
    # several concepts of one category
    assert granularity(list(range(100, 110)), list(range(10)), ["food"] * 10) == "concept_related"
    rng = np.random.default_rng(1)
    assert granularity(rng.integers(0, 1000, 50), rng.integers(0, 100, 50).astype(float),
                       rng.choice([f"c{i}" for i in range(20)], 50)) == "unrelated"
    assert granularity([7, 7, 7], [1, 1, 1], ["a"] * 3) == "rare"
    assert granularity([], [], []) == "rare"


def test_granularity_unknowns_count_against_shares():
    nan = np.nan
    # 4 of 10 share a concept; the other 6 are function words (unknown concept and category).
    assert granularity(list(range(10)), [3] * 4 + [nan] * 6, ["animal"] * 4 + [None] * 6) == "unrelated"
    # One category but a single concept spread over one token: not "related" (and not "token" at 40 %).
    assert granularity([1, 1, 1, 1, 2, 3, 4, 5, 6, 7], [3] * 4 + [nan] * 6, ["animal"] * 10) == "unrelated"
    # Category share over all examples: 6/10 food with two concepts -> related.
    assert granularity(list(range(10)), [1, 1, 1, 2, 2, 2] + [nan] * 4, ["food"] * 6 + [nan] * 4) \
        == "concept_related"


# --------------------------------------------------------------------------- end to end on a planted world

CATEGORIES = {"animal": [("猫", " cat"), ("犬", " dog"), ("馬", " horse"), ("鳥", " bird")],
              "food": [("米", " rice"), ("肉", " meat"), ("魚", " fish"), ("卵", " egg")],
              "place": [("山", " hill"), ("川", " river"), ("海", " sea"), ("町", " town")]}
FUNCTION = {"ja": ["は", "の", "が", "。"], "en": [" the", " a", " of", "."]}


@pytest.fixture(scope="module")
def world():
    """Token table of 16 ja + 16 en documents (one token per word) and planted TopK codes."""
    rng = np.random.default_rng(0)
    vocab = []  # (lang, token, token_id, concept, category)
    concept = 0
    for cat, pairs in CATEGORIES.items():
        for ja, en in pairs:
            vocab.append(("ja", ja, 100 + concept, concept, cat))
            vocab.append(("en", en, 200 + concept, concept, cat))
            concept += 1
    for lang, words in FUNCTION.items():
        for i, w in enumerate(words):
            vocab.append((lang, w, (300 if lang == "ja" else 400) + i, np.nan, None))
    vocab = pd.DataFrame(vocab, columns=["lang", "token", "token_id", "concept", "category"])
    rows = []
    for doc in range(32):
        lang = "ja" if doc < 16 else "en"
        v = vocab[vocab.lang == lang]
        picks = v.iloc[rng.integers(0, len(v), 40)]
        for pos, w in enumerate(picks.itertuples(index=False)):
            rows.append({"doc": f"d{doc:02d}", "position": pos, "token_id": w.token_id, "token": w.token,
                         "lang": lang, "word": w.token.strip(), "concept": w.concept, "category": w.category})
    tokens = pd.DataFrame(rows)
    tokens = tokens.sample(frac=1, random_state=0).reset_index(drop=True)  # table order must not matter
    tokens.insert(0, "row", np.arange(len(tokens)))
    n, k = len(tokens), 3
    values, indices = np.zeros((n, k)), np.full((n, k), 5)  # slot value 0 on latent 5: ignored
    fire = {
        0: tokens.token_id.eq(100).to_numpy(),  # 猫 only (ja docs) -> token, ja
        1: tokens.concept.eq(1).to_numpy(),  # 犬 and dog -> concept_synonym, mixed
        2: (tokens.category.eq("food") & tokens.lang.eq("en")).to_numpy(),  # food in en -> related, en
        3: rng.random(n) < 0.1,  # random tokens -> unrelated
        6: np.isin(np.arange(n), np.flatnonzero(tokens.lang.eq("ja"))[:3]),  # three, in ja -> rare, ja
    }
    slot = np.zeros(n, dtype=int)
    for lat, mask in fire.items():
        r = np.flatnonzero(mask & (slot < k))
        values[r, slot[r]] = 0.5 + rng.random(len(r))
        indices[r, slot[r]] = lat
        slot[r] += 1
    return tokens, values, indices, fire


N_LATENTS = 8  # 4, 5 and 7 never fire


def test_contexts_same_document_only(world):
    tokens, values, indices, _ = world
    top = top_activations(values, indices, N_LATENTS, n_top=50)
    ctx = contexts(top, tokens, before=3, after=2)
    assert len(ctx) == len(top)
    by_row = tokens.set_index("row")
    ordered = tokens.sort_values(["doc", "position"])
    for r in ctx.head(40).itertuples(index=False):
        doc = ordered[ordered.doc == by_row.loc[r.row, "doc"]].set_index("position")["token"]
        pos = by_row.loc[r.row, "position"]
        assert r.left == "".join(doc.loc[max(0, pos - 3):pos - 1])
        assert r.right == "".join(doc.loc[pos + 1:pos + 2])
        assert r.token == by_row.loc[r.row, "token"] and r.context == r.left + r.token + r.right
        assert r.doc == by_row.loc[r.row, "doc"] and r.token_id == by_row.loc[r.row, "token_id"]
    first = ctx[ctx.position == 0]
    assert len(first) and (first.left == "").all()  # nothing borrowed from the previous document


def test_classify_features_planted(world):
    tokens, values, indices, fire = world
    top = top_activations(values, indices, N_LATENTS, n_top=50)
    ctx = contexts(top, tokens)
    feats = classify_features(ctx, N_LATENTS)
    assert list(feats.latent) == list(range(N_LATENTS))
    f = feats.set_index("latent")
    assert f.loc[0, "granularity"] == "token" and f.loc[0, "top_token"] == "猫"
    assert f.loc[0, "top_token_share"] == 1.0 and f.loc[0, "language"] == "ja"
    assert f.loc[1, "granularity"] == "concept_synonym" and f.loc[1, "language"] == "mixed"
    assert f.loc[1, "top_concept"] == 1
    assert f.loc[2, "granularity"] == "concept_related" and f.loc[2, "language"] == "en"
    assert f.loc[2, "top_category"] == "food"
    assert f.loc[3, "granularity"] == "unrelated" and f.loc[3, "language"] == "mixed"
    assert f.loc[6, "granularity"] == "rare" and f.loc[6, "n_examples"] == 3
    for lat in (4, 5, 7):
        assert f.loc[lat, "n_examples"] == 0 and f.loc[lat, "language"] == "none"
        assert f.loc[lat, "granularity"] == "rare" and np.isnan(f.loc[lat, "max_activation"])
    assert f.loc[3, "n_examples"] == 50  # capped at n_top
    assert f.loc[0, "n_examples"] == min(50, fire[0].sum())
    np.testing.assert_allclose(f.loc[0, "max_activation"], values[indices == 0].max())

    shares = feature_shares(feats, "granularity")
    assert set(shares.index) == {"token", "concept_synonym", "concept_related", "unrelated"}
    np.testing.assert_allclose(shares.to_numpy(), 0.25)
    lang = feature_shares(feats, "language")  # rare features keep their language; "none" is out
    np.testing.assert_allclose(lang.sum(), 1.0)
    assert dict(lang) == pytest.approx({"ja": 2 / 5, "mixed": 2 / 5, "en": 1 / 5})

    unl = classify_features(ctx, N_LATENTS, has_truth=False).set_index("latent")
    assert list(unl.loc[[0, 1, 2, 3], "granularity"]) == ["unlabelled"] * 4
    assert unl.loc[6, "granularity"] == "rare"
    assert feature_shares(unl, "granularity").empty


def test_shuffled_codes_are_unrelated(world):
    """Null: the same activations on shuffled rows lose every planted structure."""
    tokens, values, indices, _ = world
    perm = np.random.default_rng(5).permutation(len(tokens))
    top = top_activations(values[perm], indices[perm], N_LATENTS, n_top=50)
    feats = classify_features(contexts(top, tokens), N_LATENTS).set_index("latent")
    assert (feats.loc[[0, 1, 2, 3], "granularity"] == "unrelated").all()


# --------------------------------------------------------------------------- matching


def test_decoder_cosine_defensive():
    W = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    C = decoder_cosine(W, W)
    np.testing.assert_allclose(C, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_match_features_recovers_permutation():
    rng = np.random.default_rng(0)
    d, n = 64, 128
    W_a = rng.standard_normal((d, n))
    perm = rng.permutation(n)
    W_b = W_a[:, perm] + 0.05 * rng.standard_normal((d, n))  # B's latent j is A's latent perm[j]
    pairs, s = match_features(W_a, W_b, threshold=0.7)
    assert s["match_rate"] == 1.0 and s["n_a"] == n and s["n_b"] == n
    np.testing.assert_array_equal(pairs["latent_a"], np.arange(n))
    np.testing.assert_array_equal(pairs["latent_b"], np.argsort(perm))
    assert s["mean_cosine"] > 0.99

    alive_a = np.arange(n) < 100
    alive_b = np.ones(n, bool)
    alive_b[np.argsort(perm)[:10]] = False  # partners of A's latents 0..9 are dead
    pairs, s = match_features(W_a, W_b, 0.7, alive_a=alive_a, alive_b=alive_b)
    assert s["n_a"] == 100 and s["n_b"] == n - 10
    assert s["match_rate"] == pytest.approx(0.9)
    ok = pairs[pairs.latent_a >= 10]
    np.testing.assert_array_equal(ok["latent_b"], np.argsort(perm)[ok["latent_a"]])
    assert not set(pairs.latent_b) & set(np.argsort(perm)[:10])


def test_match_features_null_independent():
    rng = np.random.default_rng(1)
    W_a, W_b = rng.standard_normal((64, 128)), rng.standard_normal((64, 160))
    pairs, s = match_features(W_a, W_b, threshold=0.7)
    assert len(pairs) == 128 and pairs.latent_b.is_unique
    assert s["match_rate"] == 0.0
    assert s["mean_cosine"] < 0.5


def test_match_table_checkpoints_and_seeds():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((32, 48))
    saes = [{"model": "m", "step": f"step{t}", "tokens": t, "seed": 0,
             "decoder": base + 0.01 * t * rng.standard_normal(base.shape)} for t in (30, 10, 20)]
    saes.append({"model": "m", "step": "step30", "tokens": 30, "seed": 1, "decoder": rng.standard_normal((32, 48))})
    table = match_table(saes, threshold=0.7)
    ck = table[table.comparison == "checkpoint"]
    assert list(zip(ck.tokens_a, ck.tokens_b)) == [(10, 20), (20, 30)]
    assert (ck.match_rate == 1.0).all()
    seed = table[table.comparison == "seed"]
    assert len(seed) == 1 and seed.iloc[0].seed_b == 1 and seed.iloc[0].match_rate == 0.0


# --------------------------------------------------------------------------- sheet and HTML


@pytest.fixture
def described(world):
    tokens, values, indices, _ = world
    tokens = tokens.copy()
    tokens.loc[tokens.token_id == 100, "token"] = "<script>alert(1)</script>"
    top = top_activations(values, indices, N_LATENTS, n_top=50)
    ctx = contexts(top, tokens)
    return classify_features(ctx, N_LATENTS), ctx


def test_feature_html(described):
    feats, ctx = described
    page = feature_html(ctx, feats, title="SAE <features> & co")
    for lat in (0, 1, 2, 3, 6):
        assert f'id="feature-{lat}"' in page and f"Feature {lat}<" in page
    assert 'id="feature-4"' not in page  # never active
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "SAE &lt;features&gt; &amp; co" in page
    assert "http://" not in page and "https://" not in page
    for lat in (0, 1, 2, 3):
        card = page.split(f'id="feature-{lat}"')[1].split("</div>")[0]
        alphas = [float(a) for a in re.findall(r"rgba\(\d+, \d+, \d+, ([0-9.]+)\)", card)]
        assert len(alphas) == 20 and max(alphas) == 1.0 and min(alphas) > 0
        assert alphas == sorted(alphas, reverse=True)  # strongest first


def test_labelling_sheet_and_writer(described, tmp_path):
    feats, ctx = described
    sheet = labelling_sheet(feats, ctx, n_contexts=10)
    assert list(sheet.latent) == [0, 1, 2, 3]
    assert list(sheet.granularity) == ["token", "concept_synonym", "concept_related", "unrelated"]
    assert sheet.examples.str.count(" ‖ ").eq(9).all()
    unl = classify_features(ctx, N_LATENTS, has_truth=False)
    assert (labelling_sheet(unl, ctx).granularity == "").all()
    write_sheet(tmp_path / "s" / "sheet.csv", tmp_path / "s" / "features.html", feats, ctx, title="t")
    back = pd.read_csv(tmp_path / "s" / "sheet.csv")
    assert "label" in back and back["label"].isna().all() and len(back) == 4
    assert back.examples.str.contains("⟦").all()
    assert (tmp_path / "s" / "features.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["features.html", "sheet.csv"]


def test_no_activations_at_all(world):
    tokens = world[0]
    top = top_activations(np.zeros((len(tokens), 2)), np.zeros((len(tokens), 2), int), 3)
    assert top.empty
    ctx = contexts(top, tokens)
    feats = classify_features(ctx, 3)
    assert list(feats.language) == ["none"] * 3 and list(feats.granularity) == ["rare"] * 3
    assert feature_shares(feats, "language").empty
    assert labelling_sheet(feats, ctx).empty and "Feature" not in feature_html(ctx, feats, "empty")


def test_pieces_of_one_multi_token_word_are_not_synonyms():
    # A feature firing on the two pieces of one word (same concept, same form) is not a
    # synonym feature; on two forms of the concept (a translation pair) it is.
    from brainphase.sae.features import classify_features

    n = 20
    base = {"latent": 0, "rank": np.arange(n), "row": np.arange(n), "value": np.linspace(2, 1, n),
            "context": ["kree bem"] * n, "concept": [7.0] * n, "category": ["animal"] * n}
    pieces = pd.DataFrame({**base, "token_id": [11, 12] * (n // 2), "form": ["kreebem"] * n})
    assert classify_features(pieces, 1)["granularity"].iloc[0] != "concept_synonym"
    pair = pd.DataFrame({**base, "token_id": [11, 12] * (n // 2), "form": ["kreebem", "ねこ"] * (n // 2)})
    assert classify_features(pair, 1)["granularity"].iloc[0] == "concept_synonym"
