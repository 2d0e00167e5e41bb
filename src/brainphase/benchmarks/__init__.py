"""Benchmarks: local lm-eval tasks about the demo world and an lm-eval adapter."""

from .harness import get_task_manager, items_from_samples, run_benchmark, tidy_metrics, validate_task_names
from .tasks import DEFAULT_REAL_TASKS, demo_task_name, make_items, read_jsonl, write_demo_tasks

__all__ = [
    "DEFAULT_REAL_TASKS", "demo_task_name", "get_task_manager", "items_from_samples", "make_items",
    "read_jsonl", "run_benchmark", "tidy_metrics", "validate_task_names", "write_demo_tasks",
]
