"""Checkpoints trained here (source ``train``): when the trainer saves them."""

from __future__ import annotations

import math


def log_spaced_steps(max_step: int, n: int, first: int = 1) -> list[int]:
    """``n`` checkpoint steps: 0, then integers log-spaced from ``first`` to ``max_step``.

    Rounding would merge neighbours at the small end; each step is pushed to at
    least one past its predecessor (and pulled back from the end) so the list
    stays strictly increasing. Fewer than ``n`` steps come back only when
    ``[first, max_step]`` holds fewer integers than asked for.
    """
    if max_step < 1 or first < 1 or first > max_step:
        raise ValueError(f"need 1 <= first <= max_step, got first={first}, max_step={max_step}")
    if n < 2:
        raise ValueError(f"need n >= 2 (step 0 and max_step), got {n}")
    k = n - 1
    if max_step - first + 1 <= k:
        return [0, *range(first, max_step + 1)]
    if k == 1:
        return [0, max_step]
    ratio = math.log(max_step / first)
    steps = [round(first * math.exp(ratio * i / (k - 1))) for i in range(k)]
    for i in range(1, k):
        steps[i] = max(steps[i], steps[i - 1] + 1)
    steps[-1] = max_step
    for i in range(k - 2, -1, -1):
        steps[i] = min(steps[i], steps[i + 1] - 1)
    return [0, *steps]
