"""Checkpoint contract: brainphase.json, verification errors, step schedules, loading."""

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from brainphase.contracts.checkpoint import (
    CheckpointError,
    discover_local_steps,
    load_model,
    read_checkpoint_metadata,
    verify_checkpoint,
    write_checkpoint_metadata,
)
from brainphase.sources.local import link_local_checkpoint
from brainphase.sources.train import log_spaced_steps
from brainphase.runtime import resolve_device
from brainphase.io import sha256_file
from brainphase.toylm import build_model, train_tokenizer

torch.set_num_threads(1)


@pytest.fixture()
def checkpoint(tmp_path):
    tok = train_tokenizer(["the cat sat on the mat.", "a dog ran in the park."] * 20, vocab_size=280)
    model = build_model(len(tok), n_layers=1, d_model=16, n_heads=2, d_ff=32, max_position=32, seed=0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    directory = tmp_path / "step5"
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    write_checkpoint_metadata(directory, model="tiny", revision="step5", step=5, tokens=5 * 2048, source="train")
    return directory


def test_metadata_lists_every_file_with_its_hash(checkpoint):
    meta = read_checkpoint_metadata(checkpoint)
    assert {k: meta[k] for k in ("model", "revision", "step", "tokens", "source")} == \
        {"model": "tiny", "revision": "step5", "step": 5, "tokens": 10240, "source": "train"}
    on_disk = {p.name for p in checkpoint.iterdir() if p.name != "brainphase.json"}
    assert set(meta["files"]) == on_disk
    assert all(sha256_file(checkpoint / n) == h for n, h in meta["files"].items())
    assert verify_checkpoint(checkpoint) == meta


def test_metadata_rejects_unknown_source(checkpoint):
    with pytest.raises(ValueError, match="source"):
        write_checkpoint_metadata(checkpoint, model="m", revision="r", step=0, tokens=0, source="ftp")


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as err:
        verify_checkpoint(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_no_weights_names_directory_and_fix(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as err:
        verify_checkpoint(checkpoint)
    message = str(err.value)
    assert str(checkpoint) in message and "no weights" in message and "Fix:" in message


def test_missing_metadata(checkpoint):
    (checkpoint / "brainphase.json").unlink()
    with pytest.raises(CheckpointError, match="no brainphase.json.*Fix"):
        verify_checkpoint(checkpoint)


def test_tampered_file_names_the_file(checkpoint):
    with open(checkpoint / "config.json", "a") as f:
        f.write(" ")
    with pytest.raises(CheckpointError, match=r"checksum mismatch for config\.json") as err:
        verify_checkpoint(checkpoint)
    assert str(checkpoint) in str(err.value)
    verify_checkpoint(checkpoint, check_hashes=False)  # the cheap check still passes


def test_listed_file_missing(checkpoint):
    (checkpoint / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json.*missing"):
        verify_checkpoint(checkpoint)


def test_unlisted_file_only_warns(checkpoint, caplog):
    (checkpoint / "README.md").write_text("notes")
    with caplog.at_level(logging.WARNING, logger="brainphase.contracts.checkpoint"):
        verify_checkpoint(checkpoint)
    assert "README.md" in caplog.text


def test_load_model_verifies_first(checkpoint):
    model, tok = load_model(checkpoint, device="cpu")
    assert not model.training
    assert model.dtype == torch.float32
    assert model.device.type == "cpu"
    assert tok("the cat")["input_ids"][0] == tok.bos_token_id == model.config.bos_token_id
    (checkpoint / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(checkpoint)


def test_load_model_warns_on_remote_code(checkpoint, caplog):
    with caplog.at_level(logging.WARNING, logger="brainphase.contracts.checkpoint"):
        load_model(checkpoint, device="cpu", trust_remote_code=True)
    assert "trust_remote_code" in caplog.text


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


@pytest.mark.parametrize("max_step,n,first", [(2400, 12, 1), (2400, 16, 30), (143000, 30, 1), (10, 8, 1),
                                              (1000, 5, 100), (7, 20, 1), (1, 2, 1)])
def test_log_spaced_steps(max_step, n, first):
    steps = log_spaced_steps(max_step, n, first=first)
    assert steps[0] == 0 and steps[-1] == max_step
    assert steps == sorted(set(steps))
    assert all(isinstance(s, int) for s in steps)
    assert len(steps) == min(n, max_step - first + 2)
    assert steps[1] >= first


def test_log_spaced_steps_are_log_spaced():
    steps = log_spaced_steps(10000, 6, first=1)  # n counts step 0
    assert steps == [0, 1, 10, 100, 1000, 10000]


def test_log_spaced_steps_rejects_bad_arguments():
    with pytest.raises(ValueError):
        log_spaced_steps(0, 5)
    with pytest.raises(ValueError):
        log_spaced_steps(100, 5, first=200)


def _fake_run(root, steps, weights=True):
    for s in steps:
        d = root / f"checkpoint-{s}"
        d.mkdir(parents=True)
        (d / "config.json").write_text('{"model_type": "llama"}')
        if weights:
            save_file({"w": np.full(3, s, np.float32)}, str(d / "model.safetensors"))


def test_local_run_steps_are_discovered_and_half_written_folders_wait(tmp_path):

    _fake_run(tmp_path, [0, 100, 20])
    _fake_run(tmp_path, [300], weights=False)  # still being written
    (tmp_path / "checkpoint-x").mkdir()
    assert discover_local_steps(tmp_path, "checkpoint-{step}") == [0, 20, 100]
    with pytest.raises(ValueError, match="one"):
        discover_local_steps(tmp_path, "checkpoint")
    with pytest.raises(CheckpointError, match="does not exist"):
        discover_local_steps(tmp_path / "nope")


def test_local_checkpoint_is_linked_with_a_manifest_that_catches_later_changes(tmp_path):

    _fake_run(tmp_path / "run", [20])
    src = tmp_path / "run/checkpoint-20"
    dest = link_local_checkpoint(src, tmp_path / "ckpt/step20", "mine", 20, 20 * 512)
    assert (dest / "model.safetensors").is_symlink()
    meta = verify_checkpoint(dest)
    assert meta["source"] == "local" and meta["tokens"] == 10240 and meta["step"] == 20
    (src / "model.safetensors").write_bytes(b"rewritten by the trainer")
    with pytest.raises(CheckpointError, match="checksum mismatch for model.safetensors"):
        verify_checkpoint(dest)
