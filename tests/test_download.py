"""download_checkpoint with a fake Hub client: manifest, atomic folder, retries, missing revisions."""

import hashlib
import json
from pathlib import Path

import httpx2
import numpy as np
import pytest
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors.numpy import save_file

from brainphase.contracts.checkpoint import CheckpointError, read_checkpoint_metadata
from brainphase.sources.download import DownloadError, RevisionMissingError, download_checkpoint, verify_download
from brainphase.sources.families import parse_revision

REPO = "EleutherAI/pythia-14m"
REV = parse_revision("pythia", "step1000")


def _http_error(cls, status):
    response = httpx2.Response(status, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{REPO}"))
    return cls(f"{status} error", response=response)


class FakeHub:
    """Writes a tiny model folder into local_dir, after raising the queued errors one per call."""

    def __init__(self, errors=(), weights=True):
        self.errors, self.weights, self.calls = list(errors), weights, []

    def snapshot_download(self, *, repo_id, revision, allow_patterns, local_dir, **kwargs):
        self.calls.append({"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns,
                           "local_dir": local_dir})
        out = Path(local_dir)
        (out / "config.json").write_text(json.dumps({"model_type": "gpt_neox", "hidden_size": 4}))
        if self.errors:
            raise self.errors.pop(0)  # a failure after a partial write, like a dropped connection
        if self.weights:
            save_file({"embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4)}, str(out / "model.safetensors"))
        (out / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
        (out / ".cache/huggingface/download").mkdir(parents=True, exist_ok=True)  # huggingface_hub bookkeeping
        (out / ".cache/huggingface/download/model.safetensors.metadata").write_text("x")
        return str(out)


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_download_writes_checkpoint_with_manifest(tmp_path):
    hub, sleeps = FakeHub(), Sleeps()
    dest = tmp_path / "checkpoints/pythia-14m/step1000"
    assert download_checkpoint(REPO, REV, dest, "pythia-14m", client=hub, sleep=sleeps) == dest

    [call] = hub.calls
    assert call["repo_id"] == REPO and call["revision"] == "step1000"
    assert call["allow_patterns"] == ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model"]
    assert Path(call["local_dir"]).parent == dest.parent and Path(call["local_dir"]) != dest  # temp dir beside dest
    meta = read_checkpoint_metadata(dest)
    assert {k: meta[k] for k in ("model", "revision", "step", "tokens", "source", "repo_id")} == {
        "model": "pythia-14m", "revision": "step1000", "step": 1000, "tokens": 1000 * 2_097_152,
        "source": "hf", "repo_id": REPO}
    assert meta["files"] == {name: _sha(dest / name) for name in ("config.json", "model.safetensors", "tokenizer.json")}
    assert sorted(p.name for p in dest.parent.iterdir()) == ["step1000"]  # temp folder renamed, nothing left over
    assert not (dest / ".cache").exists()
    assert sleeps == []
    assert verify_download(dest)["step"] == 1000


def test_verify_download_names_the_corrupted_file(tmp_path):
    dest = download_checkpoint(REPO, REV, tmp_path / "step1000", "pythia-14m", client=FakeHub(), sleep=Sleeps())
    data = bytearray((dest / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (dest / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch for model.safetensors"):
        verify_download(dest)


def test_transient_errors_are_retried_with_backoff(tmp_path):
    hub, sleeps = FakeHub(errors=[ConnectionError("reset"), ConnectionError("reset")]), Sleeps()
    dest = download_checkpoint(REPO, REV, tmp_path / "step1000", "pythia-14m", client=hub, sleep=sleeps)
    assert len(hub.calls) == 3
    assert sleeps == [2.0, 4.0]
    assert len({c["local_dir"] for c in hub.calls}) == 1  # retries resume in the same folder
    verify_download(dest)


def test_hub_5xx_is_retried_but_4xx_is_not(tmp_path):
    hub, sleeps = FakeHub(errors=[_http_error(HfHubHTTPError, 503), TimeoutError("slow")]), Sleeps()
    download_checkpoint(REPO, REV, tmp_path / "a", "pythia-14m", client=hub, sleep=sleeps)
    assert (len(hub.calls), sleeps) == (3, [2.0, 4.0])

    hub, sleeps = FakeHub(errors=[_http_error(HfHubHTTPError, 401)]), Sleeps()
    with pytest.raises(DownloadError, match="pythia-14m@step1000"):
        download_checkpoint(REPO, REV, tmp_path / "b", "pythia-14m", client=hub, sleep=sleeps)
    assert (len(hub.calls), sleeps) == (1, [])


def test_retries_run_out(tmp_path):
    hub, sleeps = FakeHub(errors=[ConnectionError("down")] * 5), Sleeps()
    with pytest.raises(DownloadError, match=r"EleutherAI/pythia-14m@step1000.*after 4 attempts"):
        download_checkpoint(REPO, REV, tmp_path / "step1000", "pythia-14m", retries=3, backoff=0.5,
                            client=hub, sleep=sleeps)
    assert (len(hub.calls), sleeps) == (4, [0.5, 1.0, 2.0])  # exponential: backoff * 2**i
    assert list(tmp_path.iterdir()) == []  # the partial temp folder is gone, no dest


@pytest.mark.parametrize("cls", [RevisionNotFoundError, RepositoryNotFoundError])
def test_missing_revision_stops_at_once(tmp_path, cls):
    hub, sleeps = FakeHub(errors=[_http_error(cls, 404)]), Sleeps()
    with pytest.raises(RevisionMissingError, match=r"EleutherAI/pythia-14m@step1000.*'step1000'"):
        download_checkpoint(REPO, REV, tmp_path / "step1000", "pythia-14m", client=hub, sleep=sleeps)
    assert (len(hub.calls), sleeps) == (1, [])
    assert list(tmp_path.iterdir()) == []


def test_download_without_weights_is_an_error(tmp_path):
    with pytest.raises(DownloadError, match=r"no weights.*allow_patterns"):
        download_checkpoint(REPO, REV, tmp_path / "step1000", "pythia-14m", client=FakeHub(weights=False),
                            sleep=Sleeps())
    assert list(tmp_path.iterdir()) == []


def test_missing_shard_is_an_error(tmp_path):
    class ShardedHub(FakeHub):
        def snapshot_download(self, **kw):
            out = super().snapshot_download(**kw)
            index = {"weight_map": {"embed.weight": "model.safetensors", "head.weight": "model-00002.safetensors"}}
            (Path(out) / "model.safetensors.index.json").write_text(json.dumps(index))
            return out

    with pytest.raises(DownloadError, match="model-00002.safetensors"):
        download_checkpoint(REPO, REV, tmp_path / "step1000", "pythia-14m", client=ShardedHub(), sleep=Sleeps())
