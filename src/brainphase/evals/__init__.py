"""Benchmarks: local lm-eval tasks about the demo world and an lm-eval adapter.

Names are imported on first use: validating a config's task names (every dry
run) needs only the harness, not the demo world that ``tasks`` builds on.
"""

import importlib

_WHERE = {
    "get_task_manager": "harness", "items_from_samples": "harness", "run_benchmark": "harness",
    "tidy_metrics": "harness", "validate_task_names": "harness",
    "DEFAULT_REAL_TASKS": "tasks", "demo_task_name": "tasks", "make_items": "tasks", "read_jsonl": "tasks",
    "write_demo_tasks": "tasks",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
