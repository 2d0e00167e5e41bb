"""Revision names of public training runs → step/tokens; checkpoint selection; the cached branch listing."""

import pandas as pd
import pytest
from huggingface_hub.hf_api import GitRefInfo, GitRefs

from brainphase.sources.families import Revision, parse_revision
from brainphase.sources.hub_revisions import (
    cache_path,
    list_revisions,
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


# Tokens per step: global_train_batch_size × max_sequence_length of allenai/OLMo configs/official-0425/
# OLMo2-1B-stage1.yaml (512 × 4096) and configs/official-1124/OLMo2-{7B,13B}-stage1.yaml (1024 / 2048 × 4096).
OLMO_1B, OLMO_7B, OLMO_13B = "allenai/OLMo-2-0425-1B", "allenai/OLMo-2-1124-7B", "allenai/OLMo-2-1124-13B"
TPS = {OLMO_1B: 2_097_152, OLMO_7B: 4_194_304, OLMO_13B: 8_388_608}


@pytest.mark.parametrize("repo, name, step, stage", [
    # Real branch names (hub listings, the allenai/OLMo README and model-card discussions).
    # 7B: early branches without the stage prefix; the names round tokens up (step150: 0.63B → 1B)
    (OLMO_7B, "step150-tokens1B", 150, "stage1"),
    (OLMO_7B, "step600-tokens3B", 600, "stage1"),
    (OLMO_7B, "step850-tokens4B", 850, "stage1"),
    (OLMO_7B, "step2150-tokens10B", 2150, "stage1"),
    (OLMO_7B, "stage1-step1000-tokens5B", 1000, "stage1"),
    (OLMO_7B, "stage1-step5000-tokens21B", 5000, "stage1"),
    (OLMO_7B, "stage1-step928646-tokens3896B", 928646, "stage1"),
    # 7B / 13B mid-training: fresh step counter; these names round down (50.04B → 50B)
    (OLMO_7B, "stage2-ingredient1-step11931-tokens50B", 11931, "stage2-ingredient1"),
    (OLMO_13B, "stage1-step596057-tokens5001B", 596057, "stage1"),
    (OLMO_13B, "stage2-ingredient2-step11931-tokens100B", 11931, "stage2-ingredient2"),
    (OLMO_13B, "stage2-ingredient4-step35773-tokens300B", 35773, "stage2-ingredient4"),
    (OLMO_1B, "stage1-step120000-tokens252B", 120000, "stage1"),
    (OLMO_1B, "stage1-step1907359-tokens4001B", 1907359, "stage1"),
    (OLMO_1B, "stage2-ingredient3-step6000-tokens13B", 6000, "stage2-ingredient3"),
    (OLMO_1B, "stage2-ingredient1-step23852-tokens51B", 23852, "stage2-ingredient1"),
])
def test_olmo2_tokens_are_step_times_tokens_per_step(repo, name, step, stage):
    assert parse_revision("olmo2", name, repo_id=repo) == Revision(name, step, step * TPS[repo], False, stage)


def test_olmo2_exact_tokens_differ_from_the_rounded_names():
    # The bug this guards against: the name's whole billions were used as the token count.
    assert parse_revision("olmo2", "step150-tokens1B", repo_id=OLMO_7B).tokens == 629_145_600         # not 1e9
    assert parse_revision("olmo2", "stage1-step1000-tokens5B", repo_id=OLMO_7B).tokens == 4_194_304_000  # not 5e9
    assert parse_revision("olmo2", "stage1-step928646-tokens3896B", repo_id=OLMO_7B).tokens == 3_895_023_632_384


@pytest.mark.parametrize("name, step, stage", [
    ("step1000-tokens5b", 1000, "stage1"),             # lower-case unit
    ("stage1-step19000-tokens80b", 19000, "stage1"),
    ("stage2-ingredient3-step0-tokens0B", 0, "stage2-ingredient3"),
    ("stage1-step1000-tokens4.19B", 1000, "stage1"),   # decimals are checked to their own precision
])
def test_olmo2_irregular_names(name, step, stage):
    assert parse_revision("olmo2", name, repo_id=OLMO_7B) == Revision(name, step, step * 4_194_304, False, stage)


def test_olmo2_tokens_per_step_from_the_config_key_wins_and_repo_case_does_not_matter():
    assert parse_revision("olmo2", "stage1-step1000-tokens9B", tokens_per_step=8_388_608).tokens == 8_388_608_000
    assert parse_revision("olmo2", "stage1-step1000-tokens5B", repo_id="ALLENAI/olmo-2-1124-7b").tokens == 4_194_304_000


@pytest.mark.parametrize("name, repo, tps", [
    ("stage1-step1000-tokens9B", OLMO_7B, None),      # 4.19B: 9B is beyond rounding
    ("stage1-step1000-tokens5B", OLMO_13B, None),     # a 7B name under the 13B batch: 8.39B
    ("stage1-step1000-tokens3B", OLMO_7B, None),      # rounding never goes below the floor
    ("stage1-step1000-tokens4.3B", OLMO_7B, None),   # 4.194: 4.1 or 4.2 would do
    ("stage1-step1000-tokens5B", "someone/olmo2-fork", 2_097_152),
])
def test_olmo2_name_that_disagrees_stops_with_both_numbers(name, repo, tps):
    with pytest.raises(ValueError) as err:
        parse_revision("olmo2", name, repo_id=repo, tokens_per_step=tps)
    msg = str(err.value)
    written = name.split("tokens")[1][:-1]
    step = int(name.split("step")[1].split("-")[0])
    exact = step * (tps or TPS[repo])
    assert repo in msg and repr(name) in msg and f"{written}B" in msg and f"{exact:,}" in msg
    assert "hf.tokens_per_step" in msg


def test_olmo2_unknown_repository_needs_tokens_per_step():
    with pytest.raises(ValueError, match=r"someone/olmo2-fork.*tokens per step unknown.*hf\.tokens_per_step"):
        parse_revision("olmo2", "stage1-step1000-tokens5B", repo_id="someone/olmo2-fork")
    with pytest.raises(ValueError, match="tokens per step unknown"):
        revision_table("olmo2", ["stage1-step1000-tokens5B"])
    assert parse_revision("olmo2", "main") is None  # no checkpoint: nothing to count


def test_tokens_per_step_key_is_refused_for_amber():
    with pytest.raises(ValueError, match="amber.*remove hf.tokens_per_step"):
        parse_revision("amber", "ckpt_000", tokens_per_step=1000)


@pytest.mark.parametrize("name", ["main", "step1000", "stage1-step1000", "stage1-step1000-tokens",
                                  "stage1-step1000-tokens5T", "stage1-step1000-tokens5B-fixed", "step1000-tokens5"])
def test_olmo2_non_checkpoints(name):
    assert parse_revision("olmo2", name, repo_id=OLMO_7B) is None


# LLM360/amber-train main.py: 1,706,976 sequences per chunk, trained in global micro-batches of 2240
# (run.sh: 56 nodes × 4 GPUs × per_device_batch_size 10) → 1,706,880 sequences × 2048 trained tokens.
AMBER_CHUNK = 1_706_880 * 2048


@pytest.mark.parametrize("name, step, tokens", [
    ("ckpt_000", 0, AMBER_CHUNK),
    ("ckpt_001", 1, 2 * AMBER_CHUNK),
    ("ckpt_179", 179, 180 * AMBER_CHUNK),
    ("ckpt_358", 358, 359 * AMBER_CHUNK),
    ("ckpt_359", 359, 360 * AMBER_CHUNK),
    ("main", 359, 360 * AMBER_CHUNK),        # the final checkpoint
])
def test_amber_names(name, step, tokens):
    assert parse_revision("amber", name) == Revision(name, step, tokens, False, None)


def test_amber_constants_follow_the_training_code():
    from brainphase.sources.families import AMBER_TOKENS_PER_CHECKPOINT

    assert AMBER_TOKENS_PER_CHECKPOINT == 3_495_690_240
    # the whole run: 1.2585T trained tokens; the data (2049 ids per sequence, all 1,706,976) is 1,259.13B
    assert 360 * AMBER_TOKENS_PER_CHECKPOINT == 1_258_448_486_400
    assert round(1_706_976 * 2049 * 360 / 1e9, 2) == 1259.13


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
    table = revision_table("olmo2", names, repo_id=OLMO_7B)
    assert list(table["name"]) == [
        "step150-tokens1B", "stage1-step1000-tokens5B", "stage1-step2000-tokens9B", "stage1-step10000-tokens42B",
        "stage2-ingredient1-step100-tokens1B", "stage2-ingredient1-step200-tokens1B",
        "stage2-ingredient2-step100-tokens1B",
    ]
    assert (table["tokens"] == table["step"] * 4_194_304).all() and not table["tokens_estimated"].any()


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
                                     "stage1-step1000-tokens4B", "stage2-ingredient1-step100-tokens1B"],
                           repo_id=OLMO_7B)
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


def test_cached_listing_with_old_rounded_tokens_is_recomputed(tmp_path):
    # A listing written when tokens came from the names (5e9 for stage1-step1000-tokens5B) must not keep them.
    old = pd.DataFrame({"name": ["step150-tokens1B", "stage1-step1000-tokens5B"], "step": [150, 1000],
                        "tokens": [1_000_000_000, 5_000_000_000], "tokens_estimated": [False, False],
                        "stage": ["stage1", "stage1"]})
    old.to_csv(tmp_path / "allenai__OLMo-2-1124-7B.tsv", sep="\t", index=False)
    offline = FakeApi(error=AssertionError("the network must not be used when the cache exists"))
    table = list_revisions(OLMO_7B, "olmo2", tmp_path, client=offline)
    assert list(table["tokens"]) == [629_145_600, 4_194_304_000] and offline.calls == []
    amber = pd.DataFrame({"name": ["ckpt_000", "main"], "tokens": [3_500_000_000, 1_260_000_000_000],
                          "tokens_estimated": [True, True]})
    amber.to_csv(tmp_path / "LLM360__Amber.tsv", sep="\t", index=False)
    table = list_revisions("LLM360/Amber", "amber", tmp_path, client=offline)
    assert list(table["tokens"]) == [AMBER_CHUNK, 360 * AMBER_CHUNK] and not table["tokens_estimated"].any()


def test_olmo2_listing_checks_names_and_batch_before_caching(tmp_path):
    with pytest.raises(ValueError, match="someone/fork.*tokens per step unknown"):
        list_revisions("someone/fork", "olmo2", tmp_path, client=FakeApi(error=AssertionError("no network")))
    bad = FakeApi(["stage1-step1000-tokens5B", "stage1-step2000-tokens20B"])
    with pytest.raises(ValueError, match=r"'stage1-step2000-tokens20B' says 20B.*8,388,608,000"):
        list_revisions(OLMO_7B, "olmo2", tmp_path, client=bad)
    assert list(tmp_path.iterdir()) == []  # nothing cached from a listing that failed
    table = list_revisions("someone/fork", "olmo2", tmp_path, client=FakeApi(["stage1-step1000-tokens5B"]),
                           tokens_per_step=4_194_304)
    assert list(table["tokens"]) == [4_194_304_000]
