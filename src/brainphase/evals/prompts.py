"""Benchmark items as lm-eval renders them: the probing stimulus set of a task.

Probing reads each item's prompt to its last token, so the prompt must be the
very string lm-eval scores in the benchmark run: the task's description, its
few-shot demonstrations (same count, same sampler, same seed) and the item's
question. Rather than re-implementing any task format, :func:`probe_items`
loads the task through lm-eval's own ``TaskManager``, applies the settings
``lm_eval.simple_evaluate`` applies (lm_eval/evaluator.py: the ``num_fewshot``
override unless a task pins 0, then ``set_fewshot_seed(fewshot_random_seed)``)
and lets each leaf task build its requests (``Task.build_all_requests``,
lm_eval/api/task.py), exactly as ``lm_eval.evaluator.evaluate`` does with the
same ``limit``. The context of an item's requests is its prompt; the choices
and the gold index follow ``ConfigurableTask.process_results`` for
``multiple_choice``. Demo tasks (``toyfacts_*``) and real ones (mmlu,
commonsense_qa, mmmlu_ja_jp, ja_leaderboard_jcommonsenseqa, local YAMLs) go
through this one path.
"""

from __future__ import annotations

import logging
import re

import pandas as pd

from .harness import get_task_manager

logger = logging.getLogger(__name__)

PROBE_COLUMNS = ["unit_id", "run", "text", "lang", "onset", "offset", "item_id", "doc_id", "task", "target",
                 "n_choices"]


def _manager(task_name: str, include_path):
    # A local task needs no index of lm-eval's ~15k built-in YAMLs (seconds saved per job).
    if include_path:
        local = get_task_manager(include_path, include_defaults=False)
        if task_name in local.all_tasks:
            return local
    return get_task_manager(include_path)


def load_tasks(task_name: str, include_path=None, num_fewshot: int | None = None, seed: int = 0) -> dict:
    """Leaf tasks of ``task_name`` (a task, group or tag), configured as ``simple_evaluate`` configures them.

    Mirrors lm_eval/evaluator.py ``simple_evaluate``: an explicit
    ``num_fewshot`` overrides each task's default unless its YAML pins 0;
    without one a task lacking a default gets 0; every task's few-shot
    sampler is seeded with ``seed`` (the run's ``fewshot_random_seed``).
    Returns ``{leaf task name: Task}``.
    """
    tm = _manager(task_name, include_path)
    if task_name not in tm.all_tasks:
        raise ValueError(f"lm-eval knows no task {task_name!r} (include_path={include_path}); fix the name or add "
                         f"the directory with its YAML to evals.include_path")
    tasks = tm.load([task_name])["tasks"]
    for task in tasks.values():
        if num_fewshot is not None:
            if task.get_config("num_fewshot") != 0:
                task.set_config(key="num_fewshot", value=num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)
    return tasks


# Hiragana, katakana and CJK ideographs: Japanese text (the study's only non-English language).
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def task_language(task, docs_lang=None, texts=()) -> str:
    """Language of a task's prompts.

    In order: the docs' ``lang`` field, the YAML's ``metadata.lang``, kana or
    kanji in the prompts (Japanese), a ``ja``/``jp`` part of the task name
    (``mmmlu_ja_jp``, ``ja_leaderboard_*``), else English.
    """
    if docs_lang:
        return str(docs_lang)
    meta = task.get_config("metadata") or {}
    if isinstance(meta, dict) and meta.get("lang"):
        return str(meta["lang"])
    if any(_JAPANESE.search(t) for t in texts):
        return "ja"
    parts = re.split(r"[_\-]", str(task.get_config("task")).lower())
    return "ja" if {"ja", "jp"} & set(parts) else "en"


def _gold_index(task, doc, choices: list[str], where: str) -> int:
    # As ConfigurableTask.process_results scores multiple_choice (lm_eval/api/task.py):
    # an int target indexes the choices, a string target is looked up among them.
    gold = task.doc_to_target(doc)
    if isinstance(gold, str) and gold.strip().isdigit() and gold not in choices:
        gold = int(gold)
    if isinstance(gold, int) and 0 <= gold < len(choices):
        return gold
    if isinstance(gold, str) and gold in choices:
        return choices.index(gold)
    raise ValueError(f"{where}: target {gold!r} is not an index into or one of the choices {choices}; "
                     "probing needs single-answer multiple-choice items (fix the task's doc_to_target)")


def probe_items(task_name: str, include_path=None, num_fewshot: int | None = None, seed: int = 0,
                limit: int | float | None = None) -> pd.DataFrame:
    """One row per evaluated item of every leaf task of ``task_name``, with its rendered prompt.

    ``text`` is the context lm-eval scores the choices after (the first
    element of each request's ``arguments`` in its sample logs), built by
    lm-eval itself with ``num_fewshot`` demonstrations drawn with ``seed``
    over the first ``limit`` test documents (``limit`` as in
    ``simple_evaluate``: an int, or a fraction below 1). Pass the values the
    benchmark run used (see :func:`brainphase.evals.harness.num_fewshot_for`).

    Columns: unit_id (``<leaf task>/<doc_id>``), run (leaf task), text, lang,
    onset/offset (null: prompts are not timed), item_id (the doc's own
    ``item_id`` when it has one, else the unit id), doc_id, task (the task
    asked for), target (gold choice index), n_choices.
    """
    from lm_eval.evaluator_utils import get_sample_size

    tasks = load_tasks(task_name, include_path, num_fewshot, seed)
    rows = []
    for leaf, task in tasks.items():
        output_type = task.get_config("output_type")
        if output_type != "multiple_choice":
            raise ValueError(f"task {leaf} (of {task_name}) is {output_type}; probing reads multiple_choice tasks "
                             "only — drop it from probing.tasks")
        if task.multiple_input:
            raise ValueError(f"task {leaf} (of {task_name}) puts the choices in the context (one prompt per choice, "
                             "e.g. winogrande); probing needs one prompt per item — drop it from probing.tasks")
        # One rank, as a single-process benchmark run builds them.
        task.build_all_requests(limit=get_sample_size(task, limit), rank=0, world_size=1)
        by_doc: dict[int, list] = {}
        for inst in task.instances:
            by_doc.setdefault(inst.doc_id, []).append(inst)
        first = len(rows)
        for doc_id in sorted(by_doc):
            insts = by_doc[doc_id]
            doc = insts[0].doc
            contexts = {inst.arguments[0] for inst in insts}
            if len(contexts) != 1:
                raise ValueError(f"task {leaf} doc {doc_id}: choices scored after different contexts; "
                                 "probing needs one prompt per item")
            choices = task.doc_to_choice(doc)
            where = f"task {leaf} doc {doc_id}"
            unit_id = f"{leaf}/{doc_id}"
            lang = doc.get("lang") if isinstance(doc, dict) else None
            rows.append({"unit_id": unit_id, "run": leaf, "text": contexts.pop(), "lang": lang,
                         "onset": None, "offset": None,
                         "item_id": str(doc.get("item_id", unit_id)) if isinstance(doc, dict) else unit_id,
                         "doc_id": int(doc_id), "task": task_name,
                         "target": _gold_index(task, doc, list(choices), where), "n_choices": len(choices)})
        # Docs without their own lang field share the task's.
        fallback = task_language(task, None, [r["text"] for r in rows[first:]])
        for r in rows[first:]:
            r["lang"] = str(r["lang"]) if r["lang"] else fallback
        logger.info("%s: %d items, %s-shot, lang %s", leaf, len(by_doc), task.get_config("num_fewshot"),
                    sorted({r["lang"] for r in rows[first:]}))
    df = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    if df.empty:
        raise ValueError(f"task {task_name}: no items to probe")
    return df
