"""Registration opens what it registers: damaged checkpoint files are refused, named, with the fix for their source."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from brainphase.contracts.checkpoint import CheckpointError, verify_checkpoint
from brainphase.sources.download import DownloadError, download_checkpoint
from brainphase.sources.families import parse_revision
from brainphase.sources.local import link_local_checkpoint

REPO = "EleutherAI/pythia-14m"
REV = parse_revision("pythia", "step1000")


def _run_folder(path: Path, shards: int = 1) -> Path:
    """A training run's checkpoint folder: config.json and safetensors weights (sharded with an index)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if shards == 1:
        save_file({"w": np.arange(64, dtype=np.float32)}, str(path / "model.safetensors"))
    else:
        weight_map = {}
        for i in range(1, shards + 1):
            name = f"model-{i:05d}-of-{shards:05d}.safetensors"
            save_file({f"w{i}": np.arange(16, dtype=np.float32)}, str(path / name))
            weight_map[f"w{i}"] = name
        (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return path


def _truncate(path: Path, by: int = 10) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-by])


def test_truncated_safetensors_is_refused_at_registration_naming_the_file(tmp_path):
    src = _run_folder(tmp_path / "run/step20")
    _truncate(src / "model.safetensors")
    dest = tmp_path / "results/checkpoints/mine/step20"
    with pytest.raises(CheckpointError) as err:
        link_local_checkpoint(src, dest, "mine", 20, None)
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"{(src / 'model.safetensors').resolve()}: truncated")
    assert "training run's folder" in first and "Fix:" in first
    assert not dest.exists()


def test_truncated_header_and_padded_file_are_refused(tmp_path):
    src = _run_folder(tmp_path / "run/step1")
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[:20])  # cut inside the JSON header
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
        link_local_checkpoint(src, tmp_path / "ckpt", "mine", 1, None)
    (src / "model.safetensors").write_bytes(data + b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: longer than its tensors"):
        link_local_checkpoint(src, tmp_path / "ckpt", "mine", 1, None)


def test_unparseable_config_is_refused_naming_it(tmp_path):
    src = _run_folder(tmp_path / "run/step5")
    (src / "config.json").write_text('{"model_type": "llama",')
    with pytest.raises(CheckpointError) as err:
        link_local_checkpoint(src, tmp_path / "ckpt/step5", "mine", 5, None)
    assert str(err.value).startswith(f"{(src / 'config.json').resolve()}: not valid JSON")


def test_missing_config_is_refused_naming_it(tmp_path):
    src = _run_folder(tmp_path / "run/step5")
    (src / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        link_local_checkpoint(src, tmp_path / "ckpt/step5", "mine", 5, None)


def test_missing_shard_of_an_index_is_refused(tmp_path):
    src = _run_folder(tmp_path / "run/step7", shards=2)
    (src / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError) as err:
        link_local_checkpoint(src, tmp_path / "ckpt/step7", "mine", 7, None)
    message = str(err.value)
    assert message.startswith(f"{(src / 'model.safetensors.index.json').resolve()}: lists shards that are missing")
    assert "model-00002-of-00002.safetensors" in message


def test_local_file_changed_after_registration_says_register_again(tmp_path):
    src = _run_folder(tmp_path / "run/step20")
    dest = link_local_checkpoint(src, tmp_path / "study/checkpoints/mine/step20", "mine", 20, None)
    verify_checkpoint(dest)
    save_file({"w": np.ones(64, dtype=np.float32)}, str(src / "model.safetensors"))  # the trainer rewrites it
    with pytest.raises(CheckpointError) as err:
        verify_checkpoint(dest)
    message = str(err.value)
    assert message.startswith(f"{dest / 'model.safetensors'}: checksum mismatch")
    assert f"remove {dest} to register it again" in message
    assert "fetch" not in message
    # Repaired (the old bytes back): the registration holds again.
    save_file({"w": np.arange(64, dtype=np.float32)}, str(src / "model.safetensors"))
    verify_checkpoint(dest)


class TruncatingHub:
    """Writes a model folder whose weights are cut short, as an interrupted transfer leaves them."""

    def __init__(self, truncate=True):
        self.truncate = truncate

    def snapshot_download(self, *, repo_id, revision, allow_patterns, local_dir, **kwargs):
        out = Path(local_dir)
        (out / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
        save_file({"embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4)}, str(out / "model.safetensors"))
        if self.truncate:
            _truncate(out / "model.safetensors")
        return str(out)


def test_truncated_download_is_refused_with_the_hub_fix(tmp_path):
    dest = tmp_path / "results/checkpoints/pythia-14m/step1000"
    with pytest.raises(DownloadError) as err:
        download_checkpoint(REPO, REV, dest, "pythia-14m", client=TruncatingHub(), sleep=lambda s: None)
    message = str(err.value)
    assert message.startswith(f"{dest / 'model.safetensors'}: truncated")
    assert "fetch it again" in message and REPO in message
    assert not dest.exists()


def test_hub_file_changed_after_registration_says_fetch_again(tmp_path):
    dest = tmp_path / "results/checkpoints/pythia-14m/step1000"
    download_checkpoint(REPO, REV, dest, "pythia-14m", client=TruncatingHub(truncate=False), sleep=lambda s: None)
    verify_checkpoint(dest)
    _truncate(dest / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        verify_checkpoint(dest)
    message = str(err.value)
    assert message.startswith(f"{dest / 'model.safetensors'}: checksum mismatch")
    assert f"delete {dest} and run the workflow again to fetch it again" in message
    assert "register it again" not in message
    # Without the hashes, the header check still names the damaged file.
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated.*fetch it again"):
        verify_checkpoint(dest, check_hashes=False)
