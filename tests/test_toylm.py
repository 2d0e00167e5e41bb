"""The toy LM: tokenizer round trip, deterministic init and training, checkpoint layout."""

import random

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

from brainphase.contracts.checkpoint import load_model, read_checkpoint_metadata, verify_checkpoint
from brainphase.io import sha256_file
from brainphase.toylm import ToyLMTrainConfig, build_model, train_tokenizer, train_toy_lm

torch.set_num_threads(1)

WORDS = ["cat", "dog", "park", "ate", "ran", "the", "a", "fish", "green", "sleeps", "ねこ", "いぬ", "こうえん"]
TINY = dict(vocab_size=300, n_layers=2, d_model=32, n_heads=2, d_ff=64, max_position=64)


def corpus(n=200, seed=0):
    # A learnable corpus: a fixed grammar with a few choices per slot.
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sentences = [f"the {rng.choice(WORDS[:2])} {rng.choice(['ran', 'ate'])} in the park."
                     for _ in range(rng.randint(1, 4))]
        docs.append(" ".join(sentences) + f" {rng.choice(WORDS[10:])} は {rng.choice(WORDS[10:])} に いる。")
    return docs


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(corpus(), vocab_size=300)


def test_tokenizer_prepends_bos_and_has_special_tokens(tokenizer):
    ids = tokenizer("the cat ran")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer("the cat ran", add_special_tokens=False)["input_ids"] == ids[1:]
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    assert tokenizer.convert_ids_to_tokens([tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]) \
        == ["<bos>", "<eos>", "<pad>"]
    assert len(tokenizer) <= 300


def test_tokenizer_round_trip_and_unseen_characters(tokenizer):
    text = "the cat ate a fish. ねこ は いぬ に いる。 Zebra 象!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: nothing is unknown, nothing is lost


def test_tokenizer_offsets_cover_words(tokenizer):
    text = "the cat こうえん ran"
    enc = tokenizer(text, return_offsets_mapping=True)
    assert enc["offset_mapping"][0] == (0, 0)  # BOS
    starts = [s for s, _ in enc["offset_mapping"][1:]]
    assert starts == sorted(starts)
    assert enc["offset_mapping"][-1][1] == len(text)


def test_tokenizer_reload_gives_identical_ids(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = ["the dog ran in the park.", "いぬ は こうえん に いる。", "unseen Words 123"]
    for text in texts:
        a = tokenizer(text, return_offsets_mapping=True)
        b = reloaded(text, return_offsets_mapping=True)
        assert a["input_ids"] == b["input_ids"]
        assert a["offset_mapping"] == b["offset_mapping"]
    assert (reloaded.bos_token_id, reloaded.eos_token_id, reloaded.pad_token_id) == \
        (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)


def test_tokenizer_training_is_deterministic():
    a = train_tokenizer(corpus(), vocab_size=300)
    b = train_tokenizer(corpus(), vocab_size=300)
    assert a.get_vocab() == b.get_vocab()


def test_build_model_is_deterministic_and_llama():
    a = build_model(100, n_layers=2, d_model=32, n_heads=2, d_ff=64, seed=3, bos_token_id=0, eos_token_id=1,
                    pad_token_id=2)
    b = build_model(100, n_layers=2, d_model=32, n_heads=2, d_ff=64, seed=3, bos_token_id=0, eos_token_id=1,
                    pad_token_id=2)
    c = build_model(100, n_layers=2, d_model=32, n_heads=2, d_ff=64, seed=4)
    assert type(a).__name__ == "LlamaForCausalLM"
    assert a.config.num_hidden_layers == 2 and a.config.hidden_size == 32
    assert (a.config.bos_token_id, a.config.eos_token_id, a.config.pad_token_id) == (0, 1, 2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.layers.0.mlp.up_proj.weight"], sc["model.layers.0.mlp.up_proj.weight"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("toylm")
    cfg = ToyLMTrainConfig(steps=40, checkpoint_steps=[0, 1, 10, 40], batch_size=8, seq_len=32, lr=3e-3, seed=7,
                           n_threads=1, log_every=20, **TINY)
    first = train_toy_lm(corpus(), out / "a", cfg, model_name="tiny")
    second = train_toy_lm(corpus(), out / "b", cfg, model_name="tiny")
    return first, second, out


def test_training_writes_checkpoints_with_metadata(trained):
    result, _, out = trained
    assert sorted(result.checkpoints) == [0, 1, 10, 40]
    for step, directory in result.checkpoints.items():
        assert directory == out / "a" / f"step{step}"
        meta = verify_checkpoint(directory)
        assert meta["model"] == "tiny" and meta["source"] == "train"
        assert meta["revision"] == f"step{step}" and meta["step"] == step
        assert meta["tokens"] == step * 8 * 32
        names = set(meta["files"])
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
        assert all(sha256_file(directory / n) == h for n, h in meta["files"].items())
    assert not [p for p in (out / "a").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_training_log_and_loss_decreases(trained):
    result, _, out = trained
    log = pd.read_csv(out / "a" / "train_log.tsv", sep="\t")
    assert list(log.columns) == ["step", "tokens", "loss", "lr"]
    assert log["step"].tolist() == list(range(1, 41))
    assert (log["tokens"] == log["step"] * 8 * 32).all()
    pd.testing.assert_frame_equal(log, result.log, check_dtype=False)
    assert log["loss"].iloc[:5].mean() > log["loss"].iloc[-5:].mean() + 1.0


def test_training_is_deterministic(trained):
    first, second, _ = trained
    for step in first.checkpoints:
        a = load_file(first.checkpoints[step] / "model.safetensors")
        b = load_file(second.checkpoints[step] / "model.safetensors")
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert first.log["loss"].tolist() == second.log["loss"].tolist()
    step0 = load_file(first.checkpoints[0] / "model.safetensors")
    step40 = load_file(first.checkpoints[40] / "model.safetensors")
    assert not np.array_equal(step0["model.layers.0.mlp.up_proj.weight"], step40["model.layers.0.mlp.up_proj.weight"])


def test_checkpoint_loads_back_with_matching_outputs(trained):
    result, _, _ = trained
    model, tok = load_model(result.checkpoints[40], device="cpu")
    assert not model.training and model.dtype == torch.float32
    assert model.config.bos_token_id == tok.bos_token_id == 0
    assert read_checkpoint_metadata(result.checkpoints[40])["tokens"] == 40 * 8 * 32
    ids = torch.tensor([tok("the cat ran in the park.")["input_ids"]])
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < result.log["loss"].iloc[0]


def test_rejects_checkpoint_steps_beyond_training(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_steps"):
        train_toy_lm(corpus(20), tmp_path, ToyLMTrainConfig(steps=5, checkpoint_steps=[0, 10], **TINY))


def test_settings_from_the_workflow_config_entry():
    entry = {"steps": 30, "checkpoints": [30, 0, 10, 10], "batch_size": 4, "seq_len": 16, "lr": 1e-3, "warmup": 0,
             "seed": 3, "vocab_size": 300, "n_layers": 1, "d_model": 16, "n_heads": 2, "d_ff": 32,
             "max_position": 16}
    cfg = ToyLMTrainConfig.from_config(entry, n_threads=2)
    assert cfg.checkpoints == [0, 10, 30] and cfg.warmup == 1 and cfg.n_threads == 2
    assert (cfg.steps, cfg.seq_len, cfg.max_position, cfg.seed) == (30, 16, 16, 3)
    with pytest.raises(ValueError, match="max_position"):
        ToyLMTrainConfig.from_config({**entry, "seq_len": 32})
