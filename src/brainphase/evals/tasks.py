"""Local lm-eval tasks about the demo world's facts, and the paper's real task names.

``toyfacts_<lang>`` asks who lives where (``facts.home``) and what eats what
(``facts.diet``), phrased exactly as the training corpus phrases them (the
"lives" and "eats" templates of :mod:`brainphase.toyworld.stories`), so a model
answers by continuation:

* en: ``"kreebem-o lives in the"`` + ``" rethas-en ."`` / ``" <distractor>-en ."``
* ja: ``"ぞぜぼ-ね は"`` + ``" のれもす-ぞ に すんでいる 。"``: the object precedes the
  verb, so each choice carries the rest of the sentence; the relation then shows
  in the verb and all choices of an item end identically.

All choices of an item share one inflection ending and differ only in the
answer word; distractors come from the answer's category, preferring surface
forms of about the answer's length (summed log-likelihood favours short
continuations). Few-shot examples (split ``fewshot``) ask about subjects held
out of the test split, so a demonstration never states a test item's answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..io import atomic_path, write_text
from ..toyworld.stories import ENDINGS, TEMPLATES

# The benchmarks of Nakagi et al. 2025. All four names are registered in the
# installed lm-eval 0.4.x: "mmlu" and "mmmlu_ja_jp" are groups,
# "commonsense_qa" and "ja_leaderboard_jcommonsenseqa" single tasks.
DEFAULT_REAL_TASKS = ["mmlu", "commonsense_qa", "mmmlu_ja_jp", "ja_leaderboard_jcommonsenseqa"]

DEMO_TASK_PREFIX = "toyfacts"
DEMO_GROUP = "toyfacts"
LANGS = ("en", "ja")
RELATIONS = {"home": ("person", "place", "lives"), "diet": ("animal", "food", "eats")}


def demo_task_name(lang: str) -> str:
    return f"{DEMO_TASK_PREFIX}_{lang}"


def _split_template(kind: str, lang: str, subject_slot: str, answer_slot: str):
    """Template words before the answer (with the subject) and after it."""
    words = TEMPLATES[kind][lang]
    i = words.index(answer_slot)
    return words[:i], words[i + 1:]


def _render(words, slots: dict[str, str]) -> str:
    return " ".join(slots.get(w, w) for w in words)


def _pick_distractors(candidates: list[tuple[int, str]], answer_form: str, k: int,
                      rng: np.random.Generator, length=len) -> list[tuple[int, str]]:
    """``k`` (concept, form) pairs, one form per concept, near the answer's length.

    Each candidate concept offers the form closest in length to the answer's;
    concepts are ranked by that length difference plus a random jitter, so
    near-length distractors are preferred but vary between items.
    """
    target = length(answer_form)

    def dist(form: str) -> float:
        return abs(length(form) - target)

    best: dict[int, str] = {}
    for cid, form in candidates:
        if form == answer_form:
            continue
        if cid not in best or dist(form) < dist(best[cid]):
            best[cid] = form
    ids = sorted(best)
    if len(ids) < k:
        raise ValueError(f"only {len(ids)} distractor concepts available, need {k}")
    score = np.array([dist(best[c]) for c in ids], float)
    score = score + rng.uniform(0.0, 2.0, size=len(ids))
    order = np.argsort(score, kind="stable")[:k]
    return [(ids[i], best[ids[i]]) for i in order]


def _length_fn(tokenizer, ending: str):
    if tokenizer is None:
        return len

    def n_tokens(form: str) -> float:
        ids = tokenizer(" " + form + ending, add_special_tokens=False)["input_ids"]
        return len(ids) + len(form) / 100.0

    return n_tokens


def make_items(world, lang: str, n_per_relation: int = 60, seed: int = 0, n_choices: int = 4,
               n_fewshot_subjects: int = 2, tokenizer=None) -> dict[str, list[dict]]:
    """Build ``{"test": [...], "fewshot": [...]}`` documents for one language.

    Per relation, ``n_fewshot_subjects`` subjects (drawn with the seed) are held
    out for few-shot demonstrations; test items cycle over the other subjects
    until ``n_per_relation`` items are made, varying the subject's surface form
    and ending and the answer's form and ending, so every remaining subject
    appears at least ``n_per_relation // n_subjects`` times.

    Distractors are matched to the answer in characters, or, given the
    evaluated model's ``tokenizer``, in tokens (characters break ties): with
    summed log-likelihood the number of tokens is what biases the choice, and
    frequent (correct) words are merged into fewer BPE pieces.
    """
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    lex, facts = world.lexicon, world.facts
    rng = np.random.default_rng([seed, LANGS.index(lang)])
    by_id = {c.id: c for c in lex.concepts}
    endings = ENDINGS[lang]
    out: dict[str, list[dict]] = {"test": [], "fewshot": []}
    for relation, (subj_cat, ans_cat, kind) in RELATIONS.items():
        fact = getattr(facts, relation)
        subjects = [c.id for c in lex.by_category(subj_cat)]
        freq = dict(zip(subjects, getattr(facts, f"{subj_cat}_p")))
        held = set(int(s) for s in rng.choice(subjects, n_fewshot_subjects, replace=False))
        subj_slot = "OTHER" if relation == "home" else "ANIMAL"
        ans_slot = "OTHERHOME" if relation == "home" else "DIET"
        before, after = _split_template(kind, lang, subj_slot, ans_slot)
        answer_pool = lex.by_category(ans_cat)

        def item(subject: int, variant: int, split: str) -> dict:
            s = by_id[subject]
            a = by_id[fact[subject]]
            s_forms, a_forms = s.forms[lang], a.forms[lang]
            # Variants walk through subject ending x subject form x answer form.
            s_end = endings[variant % len(endings)]
            s_form = s_forms[(variant // len(endings)) % len(s_forms)]
            a_form = a_forms[(variant // (len(endings) * len(s_forms))) % len(a_forms)]
            a_end = endings[int(rng.integers(len(endings)))]
            candidates = [(c.id, f) for c in answer_pool if c.id != a.id for f in c.forms[lang]]
            distractors = _pick_distractors(candidates, a_form, n_choices - 1, rng,
                                            length=_length_fn(tokenizer, a_end))
            options = [(a.id, a_form)] + distractors
            order = rng.permutation(len(options))
            options = [options[i] for i in order]
            label = int(np.flatnonzero(order == 0)[0])
            context = _render(before, {subj_slot: s_form + s_end})
            choices = [_render([ans_slot] + list(after), {ans_slot: form + a_end}) for _, form in options]
            return {
                "lang": lang, "relation": relation, "split": split, "variant": variant,
                "subject_id": subject, "subject": s_form + s_end, "subject_freq": float(freq[subject]),
                "answer_id": a.id, "answer": a_form + a_end, "answer_category": ans_cat,
                "ending": a_end, "context": context, "choices": choices,
                "choice_ids": [int(c) for c, _ in options],
                "choice_forms": [f for _, f in options], "label": label,
            }

        test_subjects = [s for s in subjects if s not in held]
        for j in range(n_per_relation):
            subject = test_subjects[j % len(test_subjects)]
            out["test"].append(item(subject, j // len(test_subjects), "test"))
        for subject in sorted(held):
            for variant in range(len(endings)):
                out["fewshot"].append(item(subject, variant, "fewshot"))
    for split, docs in out.items():
        for i, d in enumerate(docs):
            d["item_id"] = f"{lang}-{split}-{i:04d}"
    return out


def _yaml(task: str, files: dict[str, str]) -> str:
    # JSON is a subset of YAML: quoting by json.dumps keeps kana and spaces exact.
    q = json.dumps
    return "\n".join([
        f"task: {task}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {q(files['test'])}",
        f"    fewshot: {q(files['fewshot'])}",
        "test_split: test",
        "fewshot_split: fewshot",
        "output_type: multiple_choice",
        "doc_to_text: context",
        "doc_to_choice: choices",
        "doc_to_target: label",
        # Sentences of the corpus are joined by single spaces: so are demonstrations.
        'target_delimiter: " "',
        'fewshot_delimiter: " "',
        "metric_list:",
        "  - metric: acc",
        "    aggregation: mean",
        "    higher_is_better: true",
        "  - metric: acc_norm",
        "    aggregation: mean",
        "    higher_is_better: true",
        "metadata:",
        "  version: 1.0",
        "",
    ])


def _group_yaml(tasks: list[str]) -> str:
    lines = [f"group: {DEMO_GROUP}", "task:"] + [f"  - {t}" for t in tasks]
    lines += ["aggregate_metric_list:"]
    for m in ("acc", "acc_norm"):
        lines += [f"  - metric: {m}", "    aggregation: mean", "    weight_by_size: true"]
    lines += ["metadata:", "  version: 1.0", ""]
    return "\n".join(lines)


def write_jsonl(docs: list[dict], path: str | os.PathLike) -> None:
    write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), path)


def write_demo_tasks(world, out_dir: str | os.PathLike, n_per_relation: int = 60, seed: int = 0,
                     n_choices: int = 4, langs=LANGS, n_fewshot_subjects: int = 2,
                     group: bool = True, tokenizer=None) -> list[str]:
    """Write ``toyfacts_<lang>`` tasks (YAML + test/fewshot JSONL) under ``out_dir``.

    ``tokenizer`` (optional, the evaluated models' tokenizer) matches
    distractors to answers in tokens rather than characters; see
    :func:`make_items`. Returns the task names written (plus the group ``toyfacts`` when
    ``group``; it averages acc/acc_norm over the languages weighted by size).
    Pass ``out_dir`` as ``include_path`` to :class:`lm_eval.tasks.TaskManager`.
    Data file paths in the YAML are absolute (lm-eval resolves relative
    ``data_files`` against the working directory, not the YAML).
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for lang in langs:
        task = demo_task_name(lang)
        items = make_items(world, lang, n_per_relation=n_per_relation, seed=seed, n_choices=n_choices,
                           n_fewshot_subjects=n_fewshot_subjects, tokenizer=tokenizer)
        files = {}
        for split, docs in items.items():
            path = out_dir / f"{task}_{split}.jsonl"
            write_jsonl(docs, path)
            files[split] = str(path)
        write_text(_yaml(task, files), out_dir / f"{task}.yaml")
        names.append(task)
    if group:
        write_text(_group_yaml(names), out_dir / f"_{DEMO_GROUP}.yaml")
        names.append(DEMO_GROUP)
    return names


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
