"""Activation extraction checked against direct model calls, and the safetensors cache."""

import random

import numpy as np
import pandas as pd
import pytest
import torch

from brainphase.activations.extract import extract_activations
from brainphase.activations.items import word_token_positions
from brainphase.activations.sites import site_names
from brainphase.contracts.activations import load_activations, save_activations
from brainphase.toylm import build_model, train_tokenizer

torch.set_num_threads(1)

VOCAB = ["the", "cat", "dog", "ran", "ate", "fish", "park", "green", "quietly", "unbelievable", "ねこ", "こうえん",
         "は", "に", "いる。", "slept.", "a", "hungry", "bird"]
ATOL = 1e-4


def story(rng, n):
    return [rng.choice(VOCAB) for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    # Few merges: many words span several tokens, so word ≠ token is exercised.
    return train_tokenizer([" ".join(story(rng, 30)) for _ in range(50)], vocab_size=290)


def tiny_model(tokenizer, max_position):
    model = build_model(len(tokenizer), n_layers=3, d_model=32, n_heads=2, d_ff=64, max_position=max_position,
                        seed=1, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return model.eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer, 256)


@pytest.fixture(scope="module")
def word_units():
    rng = random.Random(1)
    rows = []
    for run, n in (("story-a", 25), ("story-b", 18)):
        for i, w in enumerate(story(rng, n)):
            rows.append({"unit_id": f"{run}-{i}", "run": run, "text": w, "word_index": i})
    # Shuffled rows: the output must follow the table, not the story order.
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)


def manual(model, ids):
    """Every site at every position from one direct call: hidden_states and hooks of our own.

    ``_final`` is hidden_states[L], which transformers takes after the final
    norm; resid.L is the last block's raw output, captured by a hook.
    """
    captured = {}
    layers = model.model.layers
    handles = [layer.mlp.register_forward_hook(lambda m, a, o, l=l: captured.__setitem__(f"mlp.{l}", o[0]))
               for l, layer in enumerate(layers, start=1)]
    handles.append(layers[-1].register_forward_hook(lambda m, a, o: captured.__setitem__("last_block", o[0])))
    try:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    n_layers = len(layers)
    sites = {f"resid.{l}": out.hidden_states[l][0] for l in range(n_layers)}
    sites[f"resid.{n_layers}"] = captured.pop("last_block")
    sites["_final"] = out.hidden_states[n_layers][0]
    sites.update(captured)
    return {k: v.float().numpy() for k, v in sites.items()}


def check_site(model, name, got, expected):
    np.testing.assert_allclose(got, expected[name][-1], atol=ATOL, rtol=ATOL, err_msg=name)
    if name == f"resid.{len(model.model.layers)}":
        with torch.inference_mode():
            normed = model.model.norm(torch.from_numpy(np.asarray(got, dtype=np.float32))).numpy()
        np.testing.assert_allclose(normed, expected["_final"][-1], atol=ATOL, rtol=ATOL)


def words_of(units, run):
    return units[units.run == run].sort_values("word_index")["text"].tolist()


def test_site_names():
    assert site_names(2) == ["resid.0", "resid.1", "resid.2", "mlp.1", "mlp.2"]
    assert site_names(4, sites=("mlp",), layers=[0, 2]) == ["mlp.2"]
    assert site_names(4, sites=("resid",), layers=[4, 0]) == ["resid.0", "resid.4"]
    with pytest.raises(ValueError):
        site_names(2, layers=[3])
    with pytest.raises(ValueError):
        site_names(2, sites=("attn",))


def test_word_token_positions_handles_multi_token_words():
    # "ab cde": tokens "ab", " c", "de" → word 0 ends at token 0, word 1 at token 2.
    offsets = [(0, 2), (2, 4), (4, 6)]
    assert word_token_positions(offsets, [(0, 2), (3, 6)]) == [0, 2]


def test_word_pooling_equals_forward_on_story_prefix(model, tokenizer, word_units):
    acts = extract_activations(model, tokenizer, word_units, "word", batch_size=4, dtype=np.float32)
    assert set(acts) == set(site_names(3))
    assert all(a.shape == (len(word_units), 32) and a.dtype == np.float32 for a in acts.values())
    n_multi = 0
    for row, unit in word_units.iterrows():
        words = words_of(word_units, unit.run)[: unit.word_index + 1]
        ids = tokenizer(" ".join(words))["input_ids"]  # the tokenizer's own BOS, independently of the code under test
        n_multi += len(tokenizer(" " + words[-1], add_special_tokens=False)["input_ids"]) > 1
        expected = manual(model, ids)
        for name, values in acts.items():
            check_site(model, name, values[row], expected)
    assert n_multi > 5


def test_word_pooling_with_context_window_sees_exactly_w_tokens(model, tokenizer, word_units):
    w = 6
    acts = extract_activations(model, tokenizer, word_units, "word", context_window=w, batch_size=5,
                               dtype=np.float32)
    full = extract_activations(model, tokenizer, word_units, "word", dtype=np.float32)
    truncated = 0
    for row, unit in word_units.iterrows():
        words = words_of(word_units, unit.run)[: unit.word_index + 1]
        ids = tokenizer(" ".join(words))["input_ids"]
        window = ids[-(w + 1):]  # the word's last token and the w tokens before it (or all there are)
        truncated += len(ids) > w + 1
        expected = manual(model, window)
        for name, values in acts.items():
            check_site(model, name, values[row], expected)
    assert truncated > 20
    # Context matters in this model, so the windowed and full-story readings differ.
    assert not np.allclose(acts["resid.3"], full["resid.3"], atol=1e-3)


def test_word_pooling_beyond_max_positions_uses_half_overlapping_windows(tokenizer, word_units):
    small = tiny_model(tokenizer, 32)
    acts = extract_activations(small, tokenizer, word_units, "word", batch_size=3, dtype=np.float32)
    for row, unit in word_units.iterrows():
        words = words_of(word_units, unit.run)[: unit.word_index + 1]
        ids = tokenizer(" ".join(words))["input_ids"]
        p = len(ids) - 1
        start = 0 if p < 32 else (p // 16 - 1) * 16
        assert start == 0 or 16 <= p - start < 32  # at least half a window of context
        expected = manual(small, ids[start:])
        for name, values in acts.items():
            check_site(small, name, values[row], expected)


@pytest.fixture(scope="module")
def prompt_units():
    texts = ["the cat", "a hungry bird ate fish quietly and then the dog ran in the green park", "ねこ は こうえん に いる。",
             "unbelievable", "the dog slept."]
    return pd.DataFrame({"unit_id": [f"p{i}" for i in range(len(texts))], "text": texts})


def test_last_pooling_equals_forward_on_the_text(model, tokenizer, prompt_units):
    acts = extract_activations(model, tokenizer, prompt_units, "last", batch_size=2, dtype=np.float32)
    for row, text in enumerate(prompt_units.text):
        expected = manual(model, tokenizer(text)["input_ids"])
        for name, values in acts.items():
            check_site(model, name, values[row], expected)


def test_mean_pooling_excludes_bos(model, tokenizer, prompt_units):
    acts = extract_activations(model, tokenizer, prompt_units, "mean", batch_size=3, dtype=np.float32)
    for row, text in enumerate(prompt_units.text):
        expected = manual(model, tokenizer(text)["input_ids"])
        for name, values in acts.items():
            np.testing.assert_allclose(values[row], expected[name][1:].mean(0), atol=ATOL, rtol=ATOL, err_msg=name)


def test_batching_and_row_order_do_not_change_results(model, tokenizer, word_units):
    a = extract_activations(model, tokenizer, word_units, "word", batch_size=1, dtype=np.float32)
    b = extract_activations(model, tokenizer, word_units, "word", context_window=4, batch_size=16,
                            dtype=np.float32)
    c = extract_activations(model, tokenizer, word_units, "word", context_window=4, batch_size=1,
                            dtype=np.float32)
    order = word_units.sort_values(["run", "word_index"]).index.to_numpy()
    d = extract_activations(model, tokenizer, word_units.loc[order], "word", batch_size=7, dtype=np.float32)
    for name in a:
        np.testing.assert_allclose(b[name], c[name], atol=1e-5)
        np.testing.assert_allclose(d[name], a[name][order], atol=1e-5)


def test_sites_and_layers_selection_and_float16_default(model, tokenizer, prompt_units):
    acts = extract_activations(model, tokenizer, prompt_units, "last", sites=("mlp",), layers=[0, 2])
    assert list(acts) == ["mlp.2"]
    assert acts["mlp.2"].dtype == np.float16
    full = extract_activations(model, tokenizer, prompt_units, "last", dtype=np.float32)
    np.testing.assert_allclose(acts["mlp.2"].astype(np.float32), full["mlp.2"], rtol=1e-3, atol=1e-3)


def test_input_errors(model, tokenizer, word_units, prompt_units):
    with pytest.raises(ValueError, match="pooling"):
        extract_activations(model, tokenizer, prompt_units, "max")
    with pytest.raises(ValueError, match="context_window"):
        extract_activations(model, tokenizer, word_units, "word", context_window=256)
    with pytest.raises(ValueError, match="context_window"):
        extract_activations(model, tokenizer, prompt_units, "last", context_window=8)
    with pytest.raises(ValueError, match="word_index"):
        extract_activations(model, tokenizer, prompt_units, "word")
    dup = word_units.copy()
    dup.loc[1, ["run", "word_index"]] = dup.loc[0, ["run", "word_index"]].values
    with pytest.raises(ValueError, match="duplicate"):
        extract_activations(model, tokenizer, dup, "word")
    bad = prompt_units.copy()
    bad.loc[2, "text"] = " "
    with pytest.raises(ValueError, match="p2"):
        extract_activations(model, tokenizer, bad, "mean")


def test_save_load_round_trip(model, tokenizer, prompt_units, tmp_path):
    acts = extract_activations(model, tokenizer, prompt_units, "last", dtype=np.float32)
    meta = {"model": "tiny", "step": 40, "tokens": 40 * 2048, "pooling": "last", "context_window": None,
            "unit_ids": prompt_units.unit_id.tolist()}
    path = tmp_path / "acts" / "prompts.safetensors"
    save_activations(path, acts, meta)
    assert [p.name for p in path.parent.iterdir()] == ["prompts.safetensors"]
    loaded, loaded_meta = load_activations(path)
    assert loaded_meta == meta
    assert set(loaded) == set(acts)
    for name in acts:
        assert loaded[name].dtype == np.float32
        np.testing.assert_allclose(loaded[name], acts[name], rtol=1e-3, atol=1e-3)
    only, _ = load_activations(path, names=["resid.1"])
    assert list(only) == ["resid.1"]
    with pytest.raises(KeyError, match="resid.9"):
        load_activations(path, names=["resid.9"])


def test_save_checks_metadata_and_shapes(tmp_path):
    arrays = {"resid.0": np.zeros((3, 4), dtype=np.float32)}
    meta = {"model": "m", "step": 0, "tokens": 0, "pooling": "mean", "context_window": None, "unit_ids": ["a", "b"]}
    with pytest.raises(ValueError, match="n_units"):
        save_activations(tmp_path / "x.safetensors", arrays, meta)
    with pytest.raises(ValueError, match="unit_ids"):
        save_activations(tmp_path / "x.safetensors", arrays, {k: v for k, v in meta.items() if k != "unit_ids"})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("max_position", [256, 24])
def test_token_pooling_every_token_and_words_end_where_word_pooling_reads(tokenizer, word_units, max_position):
    from brainphase.activations.extract import extract_token_activations

    m = tiny_model(tokenizer, max_position)  # 24 positions: stories are read in overlapping windows
    arrays, tokens = extract_token_activations(m, tokenizer, word_units, sites=["resid"], layers=[1, 3])
    words = extract_activations(m, tokenizer, word_units, "word", sites=["resid"], layers=[1, 3])
    # Every token of each story once, in order, BOS excluded.
    for run, g in tokens.groupby("run"):
        text = " ".join(word_units[word_units.run == run].sort_values("word_index")["text"])
        assert g["token_id"].tolist() == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert g["position"].tolist() == list(range(len(g)))
    assert arrays["resid.1"].shape == (len(tokens), 32)
    # Each word's last token carries the word-pooled activation, context included.
    last = tokens.groupby("unit_row")["row"].max()
    assert sorted(last.index) == list(range(len(word_units)))
    for name in ("resid.1", "resid.3"):
        np.testing.assert_allclose(arrays[name][last.to_numpy()].astype(np.float32),
                                   words[name][last.index.to_numpy()].astype(np.float32), atol=2e-3)
    # Token texts are whole characters of the story (a split kana shows as itself, not U+FFFD).
    assert not tokens["token"].str.contains("\ufffd").any()
    for run, g in tokens.groupby("run"):
        text = " ".join(word_units[word_units.run == run].sort_values("word_index")["text"])
        assert all(t in text for t in g["token"])
        latin = g[g["token"].str.isascii()]
        assert len(latin) > len(g) / 3


def test_activation_memmap_reads_the_stored_tensor_without_loading(tmp_path):
    from brainphase.contracts.activations import activation_memmap

    rng = np.random.default_rng(0)
    arrays = {"resid.0": rng.normal(size=(7, 5)).astype(np.float16),
              "resid.1": rng.normal(size=(7, 5)).astype(np.float16)}
    path = tmp_path / "a.safetensors"
    save_activations(path, arrays, {"model": "m", "step": "step0", "tokens": 0, "pooling": "mean",
                                    "context_window": None, "unit_ids": list("abcdefg")})
    for name, a in arrays.items():
        mm = activation_memmap(path, name)
        assert isinstance(mm, np.memmap) and mm.dtype == np.float16
        np.testing.assert_array_equal(mm[[5, 1]], a[[5, 1]])
    with pytest.raises(KeyError, match=r"no tensor 'resid\.9'.*re-extract"):
        activation_memmap(path, "resid.9")


def tiny_hf(kind, tokenizer, max_position=64):
    """A random GPT-NeoX or Llama from its config (no download), 2 layers of width 32."""
    import transformers as tf

    ids = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=max_position, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config, cls = {"neox": (tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM),
                   "llama": (tf.LlamaConfig, tf.LlamaForCausalLM)}[kind]
    torch.manual_seed(0)
    return cls(config(**ids)).eval()


@pytest.mark.parametrize("kind", ["toy", "neox", "llama"])
def test_batch_of_16_equals_one_item_per_forward_exactly(kind, tokenizer, word_units, prompt_units):
    from brainphase.activations.extract import extract_token_activations

    m = tiny_model(tokenizer, 64) if kind == "toy" else tiny_hf(kind, tokenizer)
    calls = [(word_units, "word", {"context_window": 9}), (word_units, "word", {"context_window": None}),
             (prompt_units, "last", {}), (prompt_units, "mean", {})]
    for units, pooling, kw in calls:
        one = extract_activations(m, tokenizer, units, pooling, batch_size=1, **kw)
        many = extract_activations(m, tokenizer, units, pooling, batch_size=16, **kw)
        assert one.keys() == many.keys() and all(a.dtype == np.float16 for a in many.values())
        for name in one:
            assert np.array_equal(one[name], many[name]), (kind, pooling, kw, name)
    one, t1 = extract_token_activations(m, tokenizer, word_units, batch_size=1)
    many, t16 = extract_token_activations(m, tokenizer, word_units, batch_size=16)
    pd.testing.assert_frame_equal(t1, t16)
    for name in one:
        assert np.array_equal(one[name], many[name]), (kind, "token", name)


@pytest.mark.parametrize("kind", ["neox", "llama"])
def test_word_pooling_equals_output_hidden_states_of_one_item(kind, tokenizer, word_units):
    m = tiny_hf(kind, tokenizer, 256)  # whole stories fit: one window, as the direct call reads them
    acts = extract_activations(m, tokenizer, word_units, "word", sites=("resid",), batch_size=16)
    n_layers = m.config.num_hidden_layers
    for row, unit in word_units.iterrows():
        ids = tokenizer(" ".join(words_of(word_units, unit.run)[: unit.word_index + 1]))["input_ids"]
        with torch.inference_mode():
            hidden = m(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        for layer in range(n_layers):  # the last entry is after the final norm: resid.L is the block's output
            expected = hidden[layer][0, -1].numpy().astype(np.float16)
            np.testing.assert_allclose(acts[f"resid.{layer}"][row].astype(np.float32), expected.astype(np.float32),
                                       rtol=2e-3, atol=2e-3, err_msg=f"{kind} resid.{layer}")


def test_padded_length_bounds():
    from brainphase.activations.extract import padded_length

    for max_len in (16, 100, 2048):
        for n in range(1, max_len + 1):
            p = padded_length(n, max_len)
            assert n <= p <= max_len or (p == n > max_len)
            if n <= 16:
                assert p == n
            else:
                assert (p - n) * 16 <= n, (n, p)
    assert padded_length(3000, 2048) == 3000  # longer than the model: never cut, the caller windows it
    assert padded_length(33, 2048) == 34 and padded_length(1000, 2048) == 1024


PEAK_PROBE = """
import json, random, resource, sys
import pandas as pd, torch, transformers as tf
from brainphase.activations.extract import activations_peak_bytes, extract_activations, plan_batches
from brainphase.activations.items import word_items
from brainphase.toylm import train_tokenizer
torch.set_num_threads(1)
rng = random.Random(0)
words = ["the", "cat", "dog", "ran", "ate", "fish", "park", "green", "quietly", "a", "hungry", "bird"]
tok = train_tokenizer([" ".join(rng.choice(words) for _ in range(30)) for _ in range(50)], vocab_size=290)
units = pd.DataFrame([{"unit_id": f"s{s}-{i}", "run": f"s{s}", "text": rng.choice(words), "word_index": i}
                      for s in range(3) for i in range(300)])
def neox(d, n_layers):
    torch.manual_seed(0)
    return tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(vocab_size=len(tok), hidden_size=d, num_hidden_layers=n_layers,
        num_attention_heads=4, intermediate_size=4 * d, max_position_embeddings=512)).eval()
extract_activations(neox(32, 1), tok, units.head(40), "word", batch_size=4)  # kernels and allocator warmed up
base = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
model = neox(256, 4)
out = extract_activations(model, tok, units, "word", batch_size=16)
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024 - base
window = max(length for length, _ in plan_batches(word_items(units, tok, 512, None), 16, 512))
params = sum(p.numel() for p in model.parameters())
print(json.dumps([peak, activations_peak_bytes(params, 4, 16, window, 256, len(out), len(units))]))
"""


def test_activations_peak_bytes_bounds_a_measured_run():
    import json
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", PEAK_PROBE], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak, bound = json.loads(proc.stdout.strip().splitlines()[-1])
    assert peak <= bound, (peak, bound)
