"""Run lm-evaluation-harness on one checkpoint and keep per-item correctness.

``run_benchmark`` wraps :func:`lm_eval.simple_evaluate` (model ``hf``) and
returns tidy aggregate metrics plus one row per evaluated item, rebuilt from the
sample logs (``log_samples=True``): which choice the model picked by the
``acc`` rule (argmax summed log-likelihood) and by ``acc_norm`` (argmax
log-likelihood per character of the choice), and whether that is the target.
The item table reproduces lm-eval's aggregate accuracy exactly (checked).
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

METRIC_COLUMNS = ["task", "metric", "filter", "value", "stderr", "n"]
ITEM_COLUMNS = ["task", "doc_id", "target", "n_choices", "chosen", "correct", "chosen_norm", "correct_norm",
                "ll_target", "ll_chosen"]


def set_offline() -> None:
    """Never touch the network: hub and datasets read their local caches only."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"


def _key(include_path) -> tuple[str, ...]:
    if include_path is None:
        return ()
    paths = include_path if isinstance(include_path, (list, tuple)) else [include_path]
    return tuple(str(Path(p).resolve()) for p in paths)


@functools.lru_cache(maxsize=8)
def _task_manager(include_key: tuple[str, ...], include_defaults: bool = True):
    # Indexing lm-eval's ~15k built-in YAMLs takes 10-15 s: build once per process.
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_key) or None, include_defaults=include_defaults)


def get_task_manager(include_path=None, include_defaults: bool = True):
    """A cached :class:`lm_eval.tasks.TaskManager` for ``include_path``."""
    return _task_manager(_key(include_path), include_defaults)


def _local_only_manager(tasks: list[str], include_path):
    """A manager indexing only ``include_path`` if it holds every task (fast), else None."""
    if include_path is None:
        return None
    tm = get_task_manager(include_path, include_defaults=False)
    return tm if all(t in tm.all_tasks for t in tasks) else None


def num_fewshot_for(spec, task: str):
    """The few-shot count of ``task`` under ``evals.num_fewshot``: an int (or null), or a mapping.

    A mapping gives counts per config task name plus ``default``; a demo
    language task (``toyfacts_en``) not named falls back to its group's entry
    (``toyfacts``), so probing a language of the benchmarked demo group uses
    the group's count. ``None`` leaves each task's own YAML default, as
    ``simple_evaluate(num_fewshot=None)`` does. The lm_eval and probe-items
    jobs both resolve their count here, so they render the same prompts.
    """
    if spec is None or isinstance(spec, int):
        return spec
    if not isinstance(spec, dict):
        raise TypeError(f"evals.num_fewshot must be an int or a mapping, got {spec!r}")
    from .tasks import DEMO_GROUP, DEMO_TASK_PREFIX

    if task in spec:
        return spec[task]
    if task.startswith(DEMO_TASK_PREFIX + "_") and DEMO_GROUP in spec:
        return spec[DEMO_GROUP]
    if "default" not in spec:
        raise ValueError(f"evals.num_fewshot has no entry for task {task!r} and no default; add "
                         f"'{task}: <n>' or 'default: <n>'")
    return spec["default"]


REPO_ROOT = Path(__file__).resolve().parents[3]


def resolve_include_path(paths, workdir: str | os.PathLike | None = None) -> list[str]:
    """``evals.include_path`` entries as absolute directories, each checked to exist.

    A relative entry is taken from the working directory, else from the
    repository (tasks shipped with it, e.g. ``tests/data/lmeval/microqa``,
    resolve from a run in any directory).
    """
    if paths is None:
        return []
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    base = Path(workdir) if workdir is not None else Path.cwd()
    out = []
    for p in paths:
        p = Path(p).expanduser()
        cands = [p] if p.is_absolute() else [base / p, REPO_ROOT / p]
        hit = next((c for c in cands if c.is_dir()), None)
        if hit is None:
            raise ValueError(f"evals.include_path: no directory {str(p)!r} (looked at "
                             f"{', '.join(str(c) for c in cands)}); fix the path")
        out.append(str(hit.resolve()))
    return out


# Built-in task names per lm-eval version, written the first time they are indexed: a config
# check at every dry run must not pay lm-eval's 10-40 s index of ~15k YAML files.
TASK_INDEX_DIR = Path(__file__).resolve().parents[3] / "resources" / "lmeval_index"


def builtin_task_names(index_dir: str | Path | None = None) -> set[str]:
    """lm-eval's built-in tasks, groups and tags, from a per-version list (built once, then read)."""
    from importlib.metadata import version

    from brainphase.io import atomic_path

    path = Path(index_dir or TASK_INDEX_DIR) / f"lm_eval-{version('lm_eval')}.txt"
    if path.is_file():
        return set(path.read_text().split())
    known = set(get_task_manager(None).all_tasks)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text("\n".join(sorted(known)) + "\n")
    except OSError:  # a read-only install still validates, only slower
        pass
    return known


def validate_task_names(names, include_path=None) -> list[str]:
    """Raise ValueError naming every task unknown to lm-eval (built-ins + ``include_path``).

    Looks names up in TaskManager's index only (tasks, groups and tags), so no
    dataset is downloaded or loaded. Returns the names when all are known.
    """
    names = [names] if isinstance(names, str) else list(names)
    # Built-ins and include_path indexed separately: the costly built-in index
    # is then shared by every include_path.
    known = builtin_task_names()
    if include_path is not None:
        known |= set(get_task_manager(include_path, include_defaults=False).all_tasks)
    unknown = [n for n in names if n not in known]
    if not unknown:
        return names
    import difflib

    lines = []
    for n in unknown:
        close = difflib.get_close_matches(n, sorted(known), n=3, cutoff=0.75)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        lines.append(f"  {n!r}{hint}")
    where = f"include_path={include_path!s}" if include_path else "no include_path"
    raise ValueError(
        f"unknown lm-eval task name(s) for lm_eval with {where}:\n" + "\n".join(lines) + "\n"
        "Fix the spelling (see `lm_eval ls tasks`), or for a local task pass the directory holding its "
        "YAML as include_path (e.g. the demo tasks written by write_demo_tasks)."
    )


def tidy_metrics(results: dict) -> pd.DataFrame:
    """``results["results"]`` (task -> {"acc,none": v, "acc_stderr,none": s, ...}) as tidy rows."""
    n_samples = results.get("n-samples", {})
    rows = []
    for task, metrics in results.get("results", {}).items():
        n = n_samples.get(task, {}).get("effective", metrics.get("sample_len"))
        n = int(n) if n is not None else None
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            try:
                stderr = float(stderr)
            except (TypeError, ValueError):  # "N/A" when bootstrap is off
                stderr = math.nan
            rows.append({"task": task, "metric": metric, "filter": filt, "value": float(value),
                         "stderr": stderr, "n": n})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS).astype({"n": "Int64"})


def _loglikelihoods(sample: dict) -> np.ndarray:
    # multiple_choice: filtered_resps is one (loglikelihood, is_greedy) per choice.
    return np.array([float(r[0]) if isinstance(r, (list, tuple)) else float(r)
                     for r in sample["filtered_resps"]])


def _choices(sample: dict) -> list[str]:
    # arguments: one (context, target_delimiter + choice) pair per choice.
    return [args[1] for args in sample["arguments"]]


def items_from_samples(samples: dict, results: dict | None = None) -> pd.DataFrame:
    """One row per (task, doc_id) from lm-eval's sample logs of multiple-choice tasks.

    ``chosen`` re-derives the ``acc`` argmax from the logged log-likelihoods;
    ``chosen_norm`` the ``acc_norm`` argmax (log-likelihood / characters of the
    choice, without the target delimiter, as lm-eval computes it). Both are
    checked against lm-eval's per-sample ``acc``/``acc_norm``.
    """
    rows = []
    for task, logged in samples.items():
        delim = None
        for s in logged:
            lls = _loglikelihoods(s)
            conts = _choices(s)
            if delim is None:
                delim = _target_delimiter(task, results)
            lengths = np.array([float(len(c[len(delim):] if delim and c.startswith(delim) else c))
                                for c in conts])
            target = s["target"]
            if isinstance(target, str):  # doc_to_target may give the choice text
                stripped = [c[len(delim):] if delim and c.startswith(delim) else c for c in conts]
                target = stripped.index(target) if target in stripped else -100
            target = int(target)
            chosen = int(np.argmax(lls))
            chosen_norm = int(np.argmax(lls / lengths))
            row = {"task": task, "doc_id": int(s["doc_id"]), "target": target, "n_choices": len(lls),
                   "chosen": chosen, "correct": chosen == target, "chosen_norm": chosen_norm,
                   "correct_norm": chosen_norm == target,
                   "ll_target": float(lls[target]) if 0 <= target < len(lls) else math.nan,
                   "ll_chosen": float(lls[chosen])}
            for metric, col in (("acc", "correct"), ("acc_norm", "correct_norm")):
                if metric in s and bool(s[metric]) != row[col]:
                    raise AssertionError(f"{task} doc {s['doc_id']}: re-derived {metric} disagrees with lm-eval")
            rows.append(row)
    return pd.DataFrame(rows, columns=ITEM_COLUMNS)


def _target_delimiter(task: str, results: dict | None) -> str:
    if results is None:
        return " "
    cfg = results.get("configs", {}).get(task, {})
    return cfg.get("target_delimiter", " ") if isinstance(cfg, dict) else " "


def check_items(metrics: pd.DataFrame, items: pd.DataFrame, atol: float = 1e-12) -> None:
    """Mean per-item correctness must equal each leaf task's aggregate acc / acc_norm."""
    for task, g in items.groupby("task"):
        for metric, col in (("acc", "correct"), ("acc_norm", "correct_norm")):
            agg = metrics[(metrics.task == task) & (metrics.metric == metric)]
            if len(agg) and abs(agg.value.iloc[0] - g[col].mean()) > atol:
                raise AssertionError(f"{task}: mean item {col} {g[col].mean()} != lm-eval {metric} "
                                     f"{agg.value.iloc[0]}")


def run_benchmark(checkpoint_dir, task: str, include_path=None, num_fewshot: int = 5, limit=None,
                  batch_size: int = 16, device: str = "cpu", seed: int = 0, offline: bool = True,
                  bootstrap_iters: int = 1000, return_raw: bool = False):
    """Evaluate the HF checkpoint in ``checkpoint_dir`` on one lm-eval task (or group).

    Returns ``(metrics, items)``: ``metrics`` has one row per (task, metric,
    filter) for the task, its subtasks and groups (columns task, metric,
    filter, value, stderr, n); ``items`` one row per evaluated item of every
    leaf task (task, doc_id, target, n_choices, chosen, correct, chosen_norm,
    correct_norm, ll_target, ll_chosen). With ``return_raw`` the lm-eval
    results dict comes third. All seeds (python, numpy, torch, few-shot
    sampler) are ``seed``.
    """
    if offline:
        set_offline()
    import lm_eval

    tm = _local_only_manager([task], include_path) or get_task_manager(include_path)
    results = lm_eval.simple_evaluate(
        model="hf",
        # A dict, not "pretrained=...,dtype=...": lm-eval splits that string at commas and '=', so a folder
        # whose path holds them would load another model than the one whose checksums were verified.
        model_args={"pretrained": str(Path(checkpoint_dir).resolve()), "dtype": "float32"},
        tasks=[task],
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        device=device,
        log_samples=True,
        task_manager=tm,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        bootstrap_iters=bootstrap_iters,
    )
    metrics = tidy_metrics(results)
    items = items_from_samples(results.get("samples", {}), results)
    check_items(metrics, items)
    return (metrics, items, results) if return_raw else (metrics, items)
