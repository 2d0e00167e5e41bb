"""Activation files streamed to disk row block by row block, read back by safetensors itself."""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from brainphase.activations.extract import (extract_activations, extract_last_token_activations,
                                            extract_token_activations)
from brainphase.contracts.activations import (activation_file, load_activations, read_token_table, save_activations,
                                              token_columns)
from brainphase.contracts.safetensors_rows import SafetensorsRowWriter
from brainphase.contracts.stimuli import DataError
from brainphase.toylm import build_model, train_tokenizer

torch.set_num_threads(1)
WORDS = ["the", "cat", "dog", "ran", "ate", "fish", "park", "unbelievable", "ねこ", "こうえん", "は", "slept."]
META = {"model": "tiny", "step": "step40", "tokens": 40, "context_window": None, "stimset": "s"}


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    return train_tokenizer([" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(50)], vocab_size=290)


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model(len(tokenizer), n_layers=2, d_model=32, n_heads=2, d_ff=64, max_position=64, seed=1,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id).eval()


@pytest.fixture(scope="module")
def words():
    rng = random.Random(1)
    rows = [{"unit_id": f"{run}-{i}", "run": run, "text": rng.choice(WORDS), "word_index": i}
            for run, n in (("a", 40), ("b", 23)) for i in range(n)]
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)


def test_streamed_word_and_last_token_files_equal_in_memory_extraction(model, tokenizer, words, tmp_path):
    path = tmp_path / "w.safetensors"
    with activation_file(path, {**META, "pooling": "word"}, words) as out:
        extract_activations(model, tokenizer, words, "word", batch_size=5, out=out)
    got, meta = load_activations(path, dtype=np.float16)
    want = extract_activations(model, tokenizer, words, "word", batch_size=5)
    assert set(got) == set(want) and meta["unit_ids"] == words["unit_id"].tolist()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert out.info == {"n_rows": len(words), "names": sorted(want, key=list(want).index)}

    # A prompt over the model's 64 positions is dropped and listed, as in memory.
    prompts = pd.DataFrame({"unit_id": ["p0", "p1", "p2"], "run": "t",
                            "text": ["the cat ran", " ".join(["unbelievable"] * 70), "ねこ は こうえん"]})
    with activation_file(tmp_path / "p.safetensors", {**META, "pooling": "last"}, prompts) as out:
        extract_last_token_activations(model, tokenizer, prompts, batch_size=2, out=out)
    got, meta = load_activations(tmp_path / "p.safetensors", dtype=np.float16)
    want, kept, dropped = extract_last_token_activations(model, tokenizer, prompts, batch_size=2)
    assert meta["unit_ids"] == kept == ["p0", "p2"] and meta["dropped_unit_ids"] == dropped == ["p1"]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_token_file_keeps_its_token_table_in_tensors(model, tokenizer, words, tmp_path):
    path = tmp_path / "t.safetensors"
    with activation_file(path, {**META, "pooling": "token"}, words) as out:
        extract_token_activations(model, tokenizer, words, sites=["resid"], layers=[1], batch_size=3, out=out)
    arrays, tokens = extract_token_activations(model, tokenizer, words, sites=["resid"], layers=[1], batch_size=3)
    got, meta = load_activations(path, dtype=np.float16)
    assert list(got) == ["resid.1"] and "unit_ids" not in meta  # the table is not in the JSON header
    np.testing.assert_array_equal(got["resid.1"], arrays["resid.1"])
    table = read_token_table(path, words, "words.parquet")
    assert table["unit_rows"].tolist() == tokens["unit_row"].tolist()
    assert table["token_ids"].tolist() == tokens["token_id"].tolist()
    assert table["positions"].tolist() == tokens["position"].tolist()
    assert table["tokens"] == tokens["token"].tolist() and any(not t.isascii() for t in table["tokens"])
    # Another version of the stimulus table (one word changed) is stale.
    other = words.assign(unit_id=words["unit_id"].where(words.index != 3, "zz"))
    with pytest.raises(DataError, match="stale"):
        read_token_table(path, other, "words.parquet")


def test_a_failed_extraction_leaves_no_file(model, tokenizer, words, tmp_path):
    path = tmp_path / "w.safetensors"

    def failing(names, n_rows, d, **info):
        sinks = out(names, n_rows, d, **info)
        raise RuntimeError("the node went away")

    with pytest.raises(RuntimeError, match="went away"):
        with activation_file(path, {**META, "pooling": "word"}, words) as out:
            extract_activations(model, tokenizer, words, "word", out=failing)
    assert list(tmp_path.iterdir()) == []


def test_rows_never_written_are_an_error(tmp_path):
    w = SafetensorsRowWriter(tmp_path / "x.safetensors", {"resid.0": ((5, 2), np.float16)})
    w.write_rows("resid.0", [4, 0, 1], np.ones((3, 2)))
    with pytest.raises(RuntimeError, match=r"resid\.0.*3/5"):
        w.close()
    w = SafetensorsRowWriter(tmp_path / "y.safetensors", {"resid.0": ((5, 2), np.float16)})
    with pytest.raises(IndexError):
        w.write_rows("resid.0", [5], np.ones((1, 2)))
    w.close_quietly()


def test_millions_of_tokens_stay_out_of_the_header(tmp_path):
    # Per-token JSON lists broke safetensors' 100 MB header limit from ~2.5 million tokens.
    n = 3_000_000
    rng = np.random.default_rng(0)
    tokens = pd.DataFrame({"unit_row": np.arange(n) // 2, "token_id": rng.integers(0, 50_000, n),
                           "position": np.arange(n) % 1000, "token": np.array(["ab", " c", "ねこ"])[np.arange(n) % 3]})
    units = pd.DataFrame({"unit_id": [f"w{i}" for i in range(n // 2)]})
    path = tmp_path / "big.safetensors"
    from brainphase.contracts.activations import unit_digest

    save_activations(path, {"resid.1": np.zeros((n, 1), np.float16)},
                     {**META, "pooling": "token", "stimulus_digest": unit_digest(units["unit_id"])},
                     columns=token_columns(tokens))
    with open(path, "rb") as f:
        assert int.from_bytes(f.read(8), "little") < 10_000
    table = read_token_table(path, units, "units.parquet")
    assert table["tokens"][-3:] == tokens["token"].tolist()[-3:] and table["unit_rows"][-1] == (n - 1) // 2


STREAM_PROBE = """
import json, random, tempfile
import numpy as np, pandas as pd, torch
from brainphase.activations.extract import extract_activations
from brainphase.contracts.activations import activation_file
from brainphase.toylm import build_model, train_tokenizer
torch.set_num_threads(1)
rng = random.Random(0)
words = ["the", "cat", "dog", "ran", "ate", "fish", "park", "green", "quietly", "a", "hungry", "bird"]
tok = train_tokenizer([" ".join(rng.choice(words) for _ in range(30)) for _ in range(50)], vocab_size=290)
units = pd.DataFrame([{"unit_id": f"s{s}-{i}", "run": f"s{s}", "text": rng.choice(words), "word_index": i}
                      for s in range(16) for i in range(1000)])
model = build_model(len(tok), n_layers=4, d_model=256, n_heads=4, d_ff=512, max_position=512, seed=0,
                    bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).eval()
hwm = lambda: int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
meta = {"model": "m", "step": "s", "tokens": 0, "pooling": "word", "context_window": None, "stimset": "x"}
# Whole stories in 512-token windows, one per forward: a batch's temporaries (~10 MB) stay well
# below the outputs (~74 MB), which the in-memory run accumulates batch after batch.
kw = dict(batch_size=1)
extract_activations(model, tok, units.head(200), "word", **kw)  # kernels and allocator warmed up
with tempfile.TemporaryDirectory() as d:
    base = hwm()
    with activation_file(d + "/a.safetensors", meta, units) as out:
        extract_activations(model, tok, units, "word", out=out, **kw)
    streamed = hwm() - base
    arrays = extract_activations(model, tok, units, "word", **kw)
    in_memory = hwm() - base
print(json.dumps([streamed, in_memory, sum(a.nbytes for a in arrays.values())]))
"""


def test_a_streamed_job_does_not_hold_its_outputs():
    proc = subprocess.run([sys.executable, "-c", STREAM_PROBE], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    streamed, in_memory, outputs = json.loads(proc.stdout.strip().splitlines()[-1])
    # The in-memory run ends holding its outputs on top of a batch; the streamed one held a batch at a time.
    assert in_memory - streamed > 0.6 * outputs, (streamed, in_memory, outputs)
    assert streamed < 0.5 * outputs, (streamed, in_memory, outputs)
