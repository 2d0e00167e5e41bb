"""Benchmark activation caching against a bare forward pass of the same model over the same tokens.

Run as::

    .venv/bin/python benchmarks/activations.py [--context-window 16 | --context-window none]

A random GPT-NeoX (``--d-model`` 512, ``--layers`` 6, from its config: no
download) reads ~1,600 words of toy-world stories (4 stories of 400 words,
a tokenizer trained on the toy corpus). Compared, with the same threads
(``--threads``, default 1), best of ``--repeats`` interleaved rounds:

* ours: ``extract_activations`` (word pooling, batch size 16, every
  resid and mlp site, float16 output), tokenization and planning included,
* bare forward: ``model.base_model(input_ids)`` over the same token windows,
  in the same batches at the same padded lengths, without hooks, gathering
  or casting — the least any caching tool must spend on this model.

The ratio bare/ours is the fraction of our time spent in the model itself.
Checks: on a few words, ours at batch size 16 equals one-item-per-forward
extraction exactly, and ``resid.1`` equals ``output_hidden_states`` of a
direct call to float16 rounding.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def make_data(words: int, n_stories: int):
    from brainphase.toylm import train_tokenizer
    from brainphase.toyworld.world import build_corpus, build_world, stimulus_stories

    world = build_world(1)
    corpus = build_corpus(world, 300, (40, 160), ["en", "ja"], 2)
    tokenizer = train_tokenizer(corpus.text.tolist(), vocab_size=600)
    units = stimulus_stories(world, n_stories - 1, 1, words, "en", 3)
    return tokenizer, units.reset_index(drop=True)


def make_model(tokenizer, d_model: int, n_layers: int):
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=d_model, num_hidden_layers=n_layers,
                           num_attention_heads=8, intermediate_size=4 * d_model, max_position_embeddings=2048,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return GPTNeoXForCausalLM(config).eval()


def bare_batches(items, max_len: int, pad_id: int):
    """Our batches' token ids (same items, order and padded lengths), built once outside the timing."""
    import torch

    from brainphase.activations.extract import plan_batches

    batches = []
    for length, batch in plan_batches(items, 16, max_len):
        ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        for b, i in enumerate(batch):
            ids[b, : len(items[i].ids)] = torch.tensor(items[i].ids)
        batches.append(ids)
    return batches


def check(model, tokenizer, units, context_window):
    import torch

    from brainphase.activations.extract import extract_activations

    some = units.iloc[:: max(1, len(units) // 24)].head(24)
    ours = extract_activations(model, tokenizer, some, "word", context_window=context_window, batch_size=16)
    ones = extract_activations(model, tokenizer, some, "word", context_window=context_window, batch_size=1)
    for name in ours:
        assert np.array_equal(ours[name], ones[name]), f"{name}: batch of 16 differs from one item per forward"
    run = some.iloc[0]
    words = units[units.run == run.run].sort_values("word_index").text.tolist()[: run.word_index + 1]
    ids = tokenizer(" ".join(words))["input_ids"]
    if context_window is not None:
        ids = ids[-(context_window + 1):]
    with torch.inference_mode():
        hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0, -1]
    np.testing.assert_allclose(ours["resid.1"][0].astype(np.float32), hidden.numpy(), rtol=2e-3, atol=2e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--context-window", default="16", help="tokens before each word, or 'none' (whole story)")
    parser.add_argument("--words", type=int, default=400, help="words per story")
    parser.add_argument("--stories", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/throughput.json")
    args = parser.parse_args()
    from _threads import limit_threads

    limit_threads(args.threads)
    import torch

    from brainphase.activations.extract import extract_activations
    from brainphase.activations.items import word_items
    from brainphase.throughput import default_path, record

    cw = None if args.context_window.lower() == "none" else int(args.context_window)
    tokenizer, units = make_data(args.words, args.stories)
    model = make_model(tokenizer, args.d_model, args.layers)
    check(model, tokenizer, units, cw)

    items = word_items(units, tokenizer, 2048, cw)
    batches = bare_batches(items, 2048, tokenizer.pad_token_id)
    n_tokens = sum(len(it.ids) for it in items)

    def bare():
        with torch.inference_mode():
            for ids in batches:
                model.base_model(input_ids=ids, use_cache=False)

    def ours():
        extract_activations(model, tokenizer, units, "word", context_window=cw, batch_size=16)

    times = {"ours": [], "bare": []}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("bare", bare)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    t_ours, t_bare = min(times["ours"]), min(times["bare"])
    params = sum(p.numel() for p in model.base_model.parameters())
    what = f"neox d{args.d_model} L{args.layers} random, {'whole story' if cw is None else f'window {cw}'}"
    print(f"{len(units)} words, {len(items)} items, {n_tokens} tokens in {len(batches)} batches; {params} params")
    if not args.no_record:
        record(default_path(), "activations", "cpu", tokens_per_s=n_tokens / t_ours, params=params, batch_size=16,
               n_tokens=n_tokens, n_words=len(units), context_window=cw, threads=args.threads, seconds=t_ours,
               model=what)
    print(f"activation caching {what}: ours {t_ours:.2f}s, bare forward {t_bare:.2f}s, ratio={t_bare / t_ours:.2f}")


if __name__ == "__main__":
    main()
