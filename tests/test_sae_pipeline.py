"""The SAE stage around the autoencoder: corpus, token table, splicing, one checkpoint end to end."""

import numpy as np
import pandas as pd
import pytest
import torch

from brainphase.sae.splice import _length_batches, ce_loss_recovered, check_output_head, mean_cross_entropy, windows
from brainphase.contracts.stimuli import DataError, text_corpus
from brainphase.toylm import build_model, train_tokenizer
from brainphase.toyworld import build_world, corpus_stories

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world():
    return build_world(1)


@pytest.fixture(scope="module")
def corpus(world):
    return corpus_stories(world, 12, (30, 60), ["en", "ja"], seed=4)


@pytest.fixture(scope="module")
def lm(corpus):
    texts = [" ".join(g.sort_values("word_index")["text"]) for _, g in corpus.groupby("run")]
    tok = train_tokenizer(texts, vocab_size=320)
    model = build_model(len(tok), n_layers=2, d_model=32, n_heads=2, d_ff=64, max_position=64, seed=0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id).eval()
    return model, tok


def test_corpus_stories_carry_the_worlds_truth(world, corpus):
    assert set(corpus["lang"]) == {"en", "ja"} and corpus["run"].nunique() == 24
    content = corpus[corpus["concept"] >= 0]
    by_id = {c.id: c for c in world.lexicon.concepts}
    # Every content word is an inflected surface form of its concept in the story's language.
    for _, r in content.sample(50, random_state=0).iterrows():
        assert any(r["text"].startswith(f) for f in by_id[r["concept"]].forms[r["lang"]])
        assert r["category"] == by_id[r["concept"]].category
    # Translations share a concept id: both languages mention some of the same concepts.
    shared = set(content[content.lang == "en"]["concept"]) & set(content[content.lang == "ja"]["concept"])
    assert len(shared) > 10


def test_text_corpus_formats_and_errors(tmp_path):
    (tmp_path / "c.txt").write_text("the cat sat\n\nねこ が いる\na dog\n", encoding="utf-8")
    words = text_corpus(tmp_path / "c.txt")
    assert words["run"].nunique() == 3 and words["text"].tolist()[:3] == ["the", "cat", "sat"]
    assert words.groupby("run")["word_index"].apply(list).iloc[1] == [0, 1, 2]
    pd.DataFrame({"body": ["a b", "c d", "e"], "language": ["en", "en", "ja"]}).to_parquet(tmp_path / "c.parquet")
    words = text_corpus(tmp_path / "c.parquet", text_column="body", lang_column="language")
    assert words.groupby("run")["lang"].first().tolist() == ["en", "en", "ja"]
    with pytest.raises(DataError, match=r"no column 'text'.*sae.corpus.text_column"):
        text_corpus(tmp_path / "c.parquet")
    with pytest.raises(DataError, match=r"not found"):
        text_corpus(tmp_path / "missing.txt")


def test_windows_cut_documents_with_bos():
    w = windows([[5, 6, 7, 8, 9], [4]], bos=1, max_len=4)
    assert w == [[1, 5, 6, 7], [8, 9], [1, 4]]


def test_ce_loss_recovered_is_one_for_identity_and_zero_for_ablation(lm, corpus):
    model, tok = lm
    texts = [" ".join(g.sort_values("word_index")["text"]) for _, g in corpus.groupby("run")][:6]
    seqs = windows([tok(t, add_special_tokens=False)["input_ids"] for t in texts], tok.bos_token_id, 64)
    # The clean CE is the model's own mean next-token loss.
    ids = torch.tensor(seqs[0])[None]
    with torch.no_grad():
        own = float(model(input_ids=ids, labels=ids).loss)
    assert mean_cross_entropy(model, [seqs[0]], bos=tok.bos_token_id) == pytest.approx(own, rel=1e-5)
    for layer in (0, 1, 2):
        same = ce_loss_recovered(model, seqs, lambda h: h.clone(), "resid", layer, tok.bos_token_id)
        assert same["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-5)
        zero = ce_loss_recovered(model, seqs, torch.zeros_like, "resid", layer, tok.bos_token_id)
        assert zero["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    # Noise in place of the residual stream recovers less than a faithful reconstruction.
    g = torch.Generator().manual_seed(0)
    noisy = ce_loss_recovered(model, seqs, lambda h: h + 0.5 * h.norm(dim=-1, keepdim=True) * torch.randn(
        h.shape, generator=g) / h.shape[-1] ** 0.5, "resid", 1, tok.bos_token_id)
    assert noisy["ce_loss_recovered"] < 1.0


def test_cross_entropy_in_small_logit_chunks_and_token_batches_equals_the_models_loss(lm, corpus):
    """Every batching and head chunking gives the model's own loss; no batch exceeds its token budget."""
    model, tok = lm
    texts = [" ".join(g.sort_values("word_index")["text"]) for _, g in corpus.groupby("run")][:4]
    seqs = windows([tok(t, add_special_tokens=False)["input_ids"] for t in texts], tok.bos_token_id, 64)
    with torch.no_grad():
        losses = [float(model(input_ids=torch.tensor(s)[None], labels=torch.tensor(s)[None]).loss) for s in seqs]
    expected = sum(loss * (len(s) - 1) for loss, s in zip(losses, seqs)) / sum(len(s) - 1 for s in seqs)
    for batch_tokens, logit_elements in [(64, len(tok) * 3), (200, len(tok) * 50), (10**6, 10**9)]:
        got = mean_cross_entropy(model, seqs, batch_tokens, bos=tok.bos_token_id, logit_elements=logit_elements)
        assert got == pytest.approx(expected, rel=1e-5)
    batches = _length_batches(seqs, 130)
    assert sorted(map(len, sum(batches, []))) == sorted(map(len, seqs))
    assert all(len(b) * max(map(len, b)) <= 130 or len(b) == 1 for b in batches)


def test_a_head_that_is_not_the_models_logits_is_refused(lm, monkeypatch):
    model, tok = lm
    ids = torch.tensor([[tok.bos_token_id, 5, 6, 7]])
    check_output_head(model, ids)  # the real head passes
    scaled = torch.nn.Linear(model.get_output_embeddings().in_features, len(tok), bias=False)
    scaled.weight.data = 2.0 * model.get_output_embeddings().weight.data
    monkeypatch.setattr(model, "get_output_embeddings", lambda: scaled)
    with pytest.raises(ValueError, match="differs from the model's logits"):
        check_output_head(model, ids)


def test_token_table_joins_words_truth_and_a_dictionary():
    from brainphase.sae.pipeline import token_table

    words = pd.DataFrame({"unit_id": ["d0_0", "d0_1", "d1_0"], "run": ["d0", "d0", "d1"], "text": ["cat", "sat", "ねこ"],
                          "lang": ["en", "en", "ja"], "concept": [3, -1, 3], "category": ["animal", "", "animal"],
                          "lemma": ["cat", "sat", "ねこ"]})
    meta = {"unit_rows": [0, 0, 1, 2], "token_ids": [5, 6, 7, 8], "positions": [0, 1, 2, 0],
            "tokens": ["c", "at", " sat", "ねこ"]}
    t = token_table(meta, words)
    assert t["doc"].tolist() == ["d0", "d0", "d0", "d1"] and t["word"].tolist() == ["cat", "cat", "sat", "ねこ"]
    # Function words carry no concept; a translation shares its concept id.
    assert t["concept"].tolist()[:2] == [3, 3] and np.isnan(t["concept"].iloc[2]) and t["concept"].iloc[3] == 3
    assert t["category"].isna().tolist() == [False, False, True, False]
    # A real corpus takes its truth from a dictionary instead.
    d = pd.DataFrame({"word": ["sat"], "concept": [9], "category": ["verb"]})
    t = token_table(meta, words.drop(columns=["concept", "category"]), d)
    assert t["concept"].isna().tolist() == [True, True, False, True] and t["category"].iloc[2] == "verb"
    with pytest.raises(ValueError, match="stale"):
        token_table({**meta, "unit_rows": [0, 1, 2, 3]}, words)
