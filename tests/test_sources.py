"""One model-source abstraction: each source answers checkpoint names and tokens for a config entry."""

from pathlib import Path

import pytest

from brainphase.config import ConfigError
from brainphase.sources import (
    HubSource,
    LocalSource,
    TrainSource,
    local_checkpoint_dir,
    revisions,
    source_of,
    tokens_for,
)

TRAIN = {"name": "toy", "source": "train", "train": {"checkpoints": [0, 10, 100], "batch_size": 4, "seq_len": 8}}
LOCAL = {"name": "run", "source": "local",
         "local": {"root": "runs/a", "pattern": "checkpoint-{step}", "steps": [20, 5, 20], "tokens_per_step": 1000}}
HUB = {"name": "pythia", "source": "hf",
       "hf": {"repo_id": "EleutherAI/pythia-70m", "family": "pythia", "revisions": ["step1000", "step0"]}}


@pytest.mark.parametrize("entry, cls, arrival, names, tokens", [
    (TRAIN, TrainSource, "trained", ["step0", "step10", "step100"], [0, 320, 3200]),
    (LOCAL, LocalSource, "linked", ["step5", "step20"], [5000, 20000]),
    (HUB, HubSource, "downloaded", ["step0", "step1000"], [0, 1000 * 2_097_152]),
])
def test_each_source_answers_revisions_and_tokens(entry, cls, arrival, names, tokens, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no revision listing cache, no network: explicit hub revisions need neither
    source = source_of(entry)
    assert isinstance(source, cls) and source.kind == entry["source"] and source.arrival == arrival
    assert revisions(entry) == source.revisions() == names
    assert [tokens_for(entry, n) for n in names] == tokens
    assert source.known_fingerprints(tmp_path / "cache") == {}


def test_local_checkpoint_dir_follows_the_pattern():
    assert local_checkpoint_dir(LOCAL, "step20") == Path("runs/a/checkpoint-20")


def test_unknown_source_is_a_clear_config_error():
    entry = {"name": "m", "source": "ftp"}
    with pytest.raises(ConfigError, match=r"models\[m\]\.source: 'ftp' is not a model source; known sources: "
                                          r"train, local, hf"):
        revisions(entry)
    with pytest.raises(ConfigError, match="'ftp'"):
        tokens_for(entry, "step0")
