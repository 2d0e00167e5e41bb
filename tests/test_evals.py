"""lm-eval adapter and the demo world's local benchmark tasks (offline, tiny model)."""

import os

import numpy as np
import pytest

from brainphase.evals import (DEFAULT_REAL_TASKS, read_jsonl, run_benchmark, validate_task_names,
                                   write_demo_tasks)
from brainphase.toyworld import build_corpus, build_world
from brainphase.toyworld.stories import ENDINGS

N_CHOICES = 4


@pytest.fixture(scope="module")
def world():
    return build_world(0)


@pytest.fixture(scope="module")
def task_dir(world, tmp_path_factory):
    d = tmp_path_factory.mktemp("tasks")
    names = write_demo_tasks(world, d, n_per_relation=60, seed=0, n_choices=N_CHOICES)
    assert names == ["toyfacts_en", "toyfacts_ja", "toyfacts"]
    return d


@pytest.fixture(scope="module")
def checkpoint(world, tmp_path_factory):
    from brainphase.toylm import ToyLMTrainConfig, train_toy_lm

    docs = build_corpus(world, 200, (30, 60), ["en", "ja"], 0).text.tolist()
    out = tmp_path_factory.mktemp("lm")
    res = train_toy_lm(docs, out, ToyLMTrainConfig(steps=20, checkpoint_steps=[20], batch_size=8, seq_len=64,
                                                   n_layers=1, d_model=32, n_heads=2, d_ff=64, vocab_size=350,
                                                   log_every=0))
    return res.checkpoints[20]


def _splits(task_dir, lang):
    return (read_jsonl(task_dir / f"toyfacts_{lang}_test.jsonl"),
            read_jsonl(task_dir / f"toyfacts_{lang}_fewshot.jsonl"))


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_demo_task_items_valid(world, task_dir, lang):
    test, fewshot = _splits(task_dir, lang)
    assert len(test) == 120 and len(fewshot) >= 5
    by_id = {c.id: c for c in world.lexicon.concepts}
    facts = {"home": world.facts.home, "diet": world.facts.diet}
    for d in test + fewshot:
        choices, ids = d["choices"], d["choice_ids"]
        assert len(choices) == N_CHOICES == len(set(choices)) == len(set(ids))
        assert ids[d["label"]] == d["answer_id"] == facts[d["relation"]][d["subject_id"]]
        assert d["answer"] in choices[d["label"]]
        assert {by_id[i].category for i in ids} == {d["answer_category"]}
        assert d["ending"] in ENDINGS[lang]
        assert all(c.split(" ")[0].endswith(d["ending"]) for c in choices)
        assert d["context"].split(" ")[-1] == ("the" if lang == "en" and d["relation"] == "home" else
                                               "eats" if lang == "en" else "は")
    # Few-shot demonstrations are about held-out subjects: never a test item nor a test fact.
    assert not {d["context"] for d in test} & {d["context"] for d in fewshot}
    assert not {d["subject_id"] for d in test} & {d["subject_id"] for d in fewshot}
    # Every non-held-out person and animal is asked about.
    n_subjects = len(world.lexicon.by_category("person")) + len(world.lexicon.by_category("animal"))
    assert len({d["subject_id"] for d in test}) + len({d["subject_id"] for d in fewshot}) == n_subjects
    # Labels are spread over positions, not always the same.
    assert len({d["label"] for d in test}) == N_CHOICES


def test_demo_choices_length_matched(task_dir):
    for lang in ("en", "ja"):
        test, _ = _splits(task_dir, lang)
        spread = [max(map(len, d["choice_forms"])) - min(map(len, d["choice_forms"])) for d in test]
        assert np.mean(spread) <= 3


def test_ja_choices_differ_only_in_answer_word(task_dir):
    test, _ = _splits(task_dir, "ja")
    for d in test:
        tails = {tuple(c.split(" ")[1:]) for c in d["choices"]}
        assert len(tails) == 1
        assert tails.pop() == (("に", "すんでいる", "。") if d["relation"] == "home" else ("を", "たべる", "。"))
        heads = [c.split(" ")[0] for c in d["choices"]]
        assert len(set(heads)) == N_CHOICES
        assert {h[-2:] for h in heads} == {d["ending"]}


def test_validate_task_names(task_dir):
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    names = DEFAULT_REAL_TASKS + ["toyfacts_en", "toyfacts_ja", "toyfacts"]
    assert validate_task_names(names, include_path=task_dir) == names
    with pytest.raises(ValueError, match="mmlu_typo") as err:
        validate_task_names(["mmlu", "mmlu_typo", "toyfacts_en"], include_path=task_dir)
    assert "toyfacts_en" not in str(err.value).split("\n", 1)[1].split("Fix")[0]
    # Local tasks are unknown without their include_path; the message says so.
    with pytest.raises(ValueError, match="include_path"):
        validate_task_names(["toyfacts_en", "bogus_task"])


def test_adapter_matches_simple_evaluate(checkpoint, task_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    seed, limit = 3, 24
    metrics, items = run_benchmark(checkpoint, "toyfacts_en", include_path=task_dir, num_fewshot=5,
                                   limit=limit, batch_size=16, seed=seed)
    direct = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={checkpoint},dtype=float32", tasks=["toyfacts_en"],
        num_fewshot=5, limit=limit, batch_size=16, device="cpu", log_samples=True,
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False), random_seed=seed, numpy_random_seed=seed,
        torch_random_seed=seed, fewshot_random_seed=seed, bootstrap_iters=0,
    )
    ref = direct["results"]["toyfacts_en"]
    acc = metrics.set_index(["task", "metric"]).value
    assert acc["toyfacts_en", "acc"] == ref["acc,none"]
    assert acc["toyfacts_en", "acc_norm"] == ref["acc_norm,none"]
    assert len(items) == limit and list(items.doc_id) == list(range(limit))
    assert items.correct.mean() == ref["acc,none"]
    assert items.correct_norm.mean() == ref["acc_norm,none"]
    assert (items.correct == (items.chosen == items.target)).all()
    test, _ = _splits(task_dir, "en")
    assert list(items.target) == [d["label"] for d in test[:limit]]
    # Per-item picks agree with lm-eval's own sample log.
    logged = {s["doc_id"]: s for s in direct["samples"]["toyfacts_en"]}
    assert all(bool(logged[r.doc_id]["acc"]) == r.correct for r in items.itertuples())


def test_adapter_group_reports_subtasks(checkpoint, task_dir):
    metrics, items = run_benchmark(checkpoint, "toyfacts", include_path=task_dir, num_fewshot=2, limit=6,
                                   seed=0, bootstrap_iters=0)
    assert set(metrics.task) == {"toyfacts", "toyfacts_en", "toyfacts_ja"}
    assert set(metrics.metric) == {"acc", "acc_norm"}
    assert items.groupby("task").size().to_dict() == {"toyfacts_en": 6, "toyfacts_ja": 6}
    group_acc = metrics.set_index(["task", "metric"]).value["toyfacts", "acc"]
    assert group_acc == pytest.approx(items.correct.mean())


def test_distractors_token_matched_with_tokenizer(world, checkpoint, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    write_demo_tasks(world, tmp_path, n_per_relation=30, seed=0, tokenizer=tok, group=False)
    for lang in ("en", "ja"):
        test, _ = _splits(tmp_path, lang)
        uniquely_shortest = []
        for d in test:
            n = [len(tok(" " + c.split(" ")[0], add_special_tokens=False)["input_ids"]) for c in d["choices"]]
            uniquely_shortest.append(n.count(min(n)) == 1 and n[d["label"]] == min(n))
        assert np.mean(uniquely_shortest) <= 0.05


def test_adapter_runs_the_shipped_mmlu_format_group(checkpoint):
    """tests/data/lmeval/microqa (the micro run's real-format local task) through run_benchmark."""
    from brainphase.evals.harness import num_fewshot_for, resolve_include_path

    include = resolve_include_path(["tests/data/lmeval/microqa"])
    shots = num_fewshot_for({"default": 5, "microqa": 1}, "microqa")
    metrics, items = run_benchmark(checkpoint, "microqa", include_path=include, num_fewshot=shots, limit=4, seed=0,
                                   bootstrap_iters=0)
    assert set(metrics.task) == {"microqa", "microqa_sums", "microqa_next_letter"}
    assert items.groupby("task").size().to_dict() == {"microqa_next_letter": 4, "microqa_sums": 4}
    assert (items.n_choices == 4).all() and items.target.between(0, 3).all()


def test_checkpoint_path_with_commas_and_equals_evaluates_that_checkpoint(checkpoint, task_dir, tmp_path):
    """lm-eval's model_args string splits at ',' and '=': the path must reach it whole, not spliced in."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    tricky = tmp_path / "q,trust_remote_code=True,revision=x"
    shutil.copytree(checkpoint, tricky)
    # What a spliced string would load instead ("pretrained=<tmp>/q"): the same model with other weights.
    decoy = AutoModelForCausalLM.from_pretrained(checkpoint)
    with torch.no_grad():
        for p in decoy.parameters():
            p.mul_(-1.0)
    decoy.save_pretrained(tmp_path / "q")
    shutil.copy(tricky / "tokenizer.json", tmp_path / "q")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (tricky / name).exists():
            shutil.copy(tricky / name, tmp_path / "q")
    cols = ["doc_id", "chosen", "ll_target", "ll_chosen"]
    args = dict(include_path=task_dir, num_fewshot=0, limit=8, seed=0, bootstrap_iters=0)
    _, plain = run_benchmark(checkpoint, "toyfacts_en", **args)
    _, spliced = run_benchmark(tricky, "toyfacts_en", **args)
    _, other = run_benchmark(tmp_path / "q", "toyfacts_en", **args)
    assert not np.allclose(other["ll_target"], plain["ll_target"])  # the decoy is told apart
    np.testing.assert_allclose(spliced[cols].to_numpy(float), plain[cols].to_numpy(float))
