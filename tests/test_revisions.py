"""Revision names of public training runs → step/tokens; checkpoint selection; the cached branch listing."""

import pandas as pd
import pytest
from huggingface_hub.hf_api import GitRefInfo, GitRefs

from brainphase.revisions import (
    Revision,
    cache_path,
    list_revisions,
    parse_revision,
    revision_table,
    revisions_of,
    select_revisions,
)

T = 2_097_152  # Pythia tokens per step
PYTHIA = ["step0"] + [f"step{2 ** i}" for i in range(10)] + [f"step{1000 * i}" for i in range(1, 144)]


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("name, step, tokens", [
    ("step0", 0, 0),
    ("step1", 1, 2_097_152),
    ("step512", 512, 1_073_741_824),
    ("step1000", 1000, 2_097_152_000),
    ("step143000", 143000, 299_892_736_000),
])
def test_pythia_names(name, step, tokens):
    assert parse_revision("pythia", name) == Revision(name, step, tokens, False, None)


@pytest.mark.parametrize("name", ["main", "step", "step1k", "stage1-step1000-tokens5B", "ckpt_001", " step1"])
def test_pythia_non_checkpoints(name):
    assert parse_revision("pythia", name) is None


@pytest.mark.parametrize("name, step, tokens, stage", [
    # allenai/OLMo-2-1124-7B style stage-1 branches
    ("stage1-step1000-tokens5B", 1000, 5_000_000_000, "stage1"),
    ("stage1-step5000-tokens21B", 5000, 21_000_000_000, "stage1"),
    ("stage1-step928646-tokens3896B", 928646, 3_896_000_000_000, "stage1"),
    # irregular: early branches without the stage prefix, lower-case unit
    ("step150-tokens1B", 150, 1_000_000_000, "stage1"),
    ("step1000-tokens5b", 1000, 5_000_000_000, "stage1"),
    ("stage1-step19000-tokens80b", 19000, 80_000_000_000, "stage1"),
    # mid-training ingredients restart their own step/token count
    ("stage2-ingredient1-step11931-tokens50B", 11931, 50_000_000_000, "stage2-ingredient1"),
    ("stage2-ingredient3-step0-tokens0B", 0, 0, "stage2-ingredient3"),
    ("stage2-ingredient2-step23852-tokens100B", 23852, 100_000_000_000, "stage2-ingredient2"),
])
def test_olmo2_names(name, step, tokens, stage):
    assert parse_revision("olmo2", name) == Revision(name, step, tokens, False, stage)


@pytest.mark.parametrize("name", ["main", "step1000", "stage1-step1000", "stage1-step1000-tokens",
                                  "stage1-step1000-tokens5T", "stage1-step1000-tokens5B-fixed", "step1000-tokens5"])
def test_olmo2_non_checkpoints(name):
    assert parse_revision("olmo2", name) is None


@pytest.mark.parametrize("name, step, tokens", [
    ("ckpt_000", 0, 3_500_000_000),          # (0 + 1) × 1.26e12 / 360
    ("ckpt_001", 1, 7_000_000_000),
    ("ckpt_179", 179, 630_000_000_000),
    ("ckpt_358", 358, 1_256_500_000_000),
    ("ckpt_359", 359, 1_260_000_000_000),
    ("main", 359, 1_260_000_000_000),        # the final checkpoint
])
def test_amber_names(name, step, tokens):
    assert parse_revision("amber", name) == Revision(name, step, tokens, True, None)


@pytest.mark.parametrize("name", ["ckpt", "ckpt_abc", "step100", "ckpt-001"])
def test_amber_non_checkpoints(name):
    assert parse_revision("amber", name) is None


def test_unknown_family_lists_families():
    with pytest.raises(ValueError, match="llama.*pythia, olmo2, amber"):
        parse_revision("llama", "step1")
    with pytest.raises(ValueError, match="pythia"):
        revision_table("llama", ["step1"])


# ---------------------------------------------------------------- tables


def test_pythia_table_has_154_sorted_checkpoints():
    names = list(reversed(PYTHIA)) + ["main", "refs/pr/1"]
    table = revision_table("pythia", names)
    assert list(table.columns) == ["name", "step", "tokens", "tokens_estimated", "stage"]
    assert len(table) == 154
    assert table["step"].is_monotonic_increasing and table["step"].iloc[-1] == 143000
    assert (table["tokens"] == table["step"] * T).all()
    assert revisions_of(table.head(2)) == [Revision("step0", 0, 0), Revision("step1", 1, T)]


def test_olmo2_table_orders_stages_and_drops_aliases():
    names = ["stage2-ingredient2-step100-tokens1B", "main", "stage1-step2000-tokens9B", "step1000-tokens5B",
             "stage2-ingredient1-step200-tokens1B", "stage1-step1000-tokens5B", "step150-tokens1B",
             "stage2-ingredient1-step100-tokens1B", "stage1-step10000-tokens42B", "garbage"]
    table = revision_table("olmo2", names)
    assert list(table["name"]) == [
        "step150-tokens1B", "stage1-step1000-tokens5B", "stage1-step2000-tokens9B", "stage1-step10000-tokens42B",
        "stage2-ingredient1-step100-tokens1B", "stage2-ingredient1-step200-tokens1B",
        "stage2-ingredient2-step100-tokens1B",
    ]


def test_amber_main_is_an_alias_of_the_last_ckpt():
    assert list(revision_table("amber", ["main", "ckpt_359", "ckpt_000"])["name"]) == ["ckpt_000", "ckpt_359"]
    assert list(revision_table("amber", ["main", "ckpt_358"])["name"]) == ["ckpt_358", "main"]


# ---------------------------------------------------------------- selection


@pytest.fixture()
def pythia():
    return revision_table("pythia", PYTHIA)


def test_log_spaced_count_8_of_pythia(pythia):
    # targets exp(log(143000) * j / 6), j = 0..6: 1, 7.2, 52.3, 378.2, 2734.6, 19774.9, 143000; nearest
    # branch in log(step): 1, 8 (7.2→8 beats 4), 64 (52.3: 64 beats 32), 512 (378.2: ratio 1.35 vs 1.48 to 256),
    # 3000 (2734.6), 20000, 143000; plus step 0.
    assert list(select_revisions(pythia, count=8)["step"]) == [0, 1, 8, 64, 512, 3000, 20000, 143000]


def test_log_spaced_without_step0_keeps_first_and_last(pythia):
    # sqrt(143000) = 378.2 → 512
    assert list(select_revisions(pythia[pythia["step"] > 0], count=3)["step"]) == [1, 512, 143000]


def test_log_spaced_gives_exactly_count_distinct_rows(pythia):
    for count in range(2, 156):
        steps = list(select_revisions(pythia, count=count)["step"])
        assert len(steps) == min(count, 154) == len(set(steps))
        assert steps[0] == 0 and steps[-1] == 143000 and steps == sorted(steps)
    assert select_revisions(pythia, count=20).equals(select_revisions(pythia, count=20))


def test_token_range_is_inclusive(pythia):
    assert list(select_revisions(pythia, token_range=(1e9, 1e10))["step"]) == [512, 1000, 2000, 3000, 4000]
    assert list(select_revisions(pythia, token_range=(512 * T, 4000 * T))["step"]) == [512, 1000, 2000, 3000, 4000]
    assert list(select_revisions(pythia, token_range=(None, T))["step"]) == [0, 1]
    with pytest.raises(ValueError, match="widen token_range"):
        select_revisions(pythia, token_range=(1e15, None))


def test_token_range_then_count(pythia):
    # sqrt(512 * 143000) = 8556.6 → 9000
    assert list(select_revisions(pythia, token_range=(512 * T, None), count=3)["step"]) == [512, 9000, 143000]


def test_explicit_names(pythia):
    assert list(select_revisions(pythia, names=["step1000", "step0"])["name"]) == ["step0", "step1000"]
    with pytest.raises(ValueError, match=r"'step1001' \(near: step1000"):
        select_revisions(pythia, names=["step0", "step1001"])
    with pytest.raises(ValueError, match="not both"):
        select_revisions(pythia, names=["step0"], count=3)


def test_count_refuses_mixed_stages_unless_one_is_chosen():
    table = revision_table("olmo2", ["stage1-step0-tokens0B", "stage1-step10-tokens1B", "stage1-step100-tokens1B",
                                     "stage1-step1000-tokens4B", "stage2-ingredient1-step100-tokens1B"])
    with pytest.raises(ValueError, match="stage="):
        select_revisions(table, count=3)
    assert list(select_revisions(table, stage="stage1", count=3)["step"]) == [0, 10, 1000]
    with pytest.raises(ValueError, match="stage3"):
        select_revisions(table, stage="stage3")


# ---------------------------------------------------------------- listing and cache


class FakeApi:
    def __init__(self, names=(), error=None):
        self.names, self.error, self.calls = list(names), error, []

    def list_repo_refs(self, repo_id, **kwargs):
        self.calls.append(repo_id)
        if self.error is not None:
            raise self.error
        branches = [GitRefInfo(name=n, ref=f"refs/heads/{n}", target_commit="0" * 40) for n in self.names]
        return GitRefs(branches=branches, converts=[], tags=[])


def test_list_revisions_caches_and_second_call_stays_offline(tmp_path):
    online = FakeApi(PYTHIA + ["main"])
    first = list_revisions("EleutherAI/pythia-70m", "pythia", tmp_path, client=online)
    assert online.calls == ["EleutherAI/pythia-70m"] and len(first) == 154
    path = tmp_path / "EleutherAI__pythia-70m.tsv"
    assert cache_path("EleutherAI/pythia-70m", tmp_path) == path and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left

    offline = FakeApi(error=AssertionError("the network must not be used when the cache exists"))
    second = list_revisions("EleutherAI/pythia-70m", "pythia", tmp_path, client=offline)
    assert offline.calls == []
    pd.testing.assert_frame_equal(first, second)


def test_list_revisions_errors_name_the_repo_and_the_fix(tmp_path):
    with pytest.raises(RuntimeError, match=r"allenai/OLMo-2-1124-7B.*copy allenai__OLMo-2-1124-7B.tsv"):
        list_revisions("allenai/OLMo-2-1124-7B", "olmo2", tmp_path, client=FakeApi(error=ConnectionError("offline")))
    with pytest.raises(ValueError, match="LLM360/Amber.*family"):
        list_revisions("LLM360/Amber", "pythia", tmp_path, client=FakeApi(["ckpt_000", "main"]))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "LLM360__Amber.tsv").write_text("branch\nckpt_000\n")
    with pytest.raises(ValueError, match="LLM360__Amber.tsv.*delete it"):
        list_revisions("LLM360/Amber", "amber", tmp_path, client=FakeApi(error=AssertionError()))
