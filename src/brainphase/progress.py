"""Progress lines for long jobs: done/total, rate and time left, written to the job's log.

A cluster user reads a job's log file, not a terminal, so progress goes
through ``logging`` (one line at most every ``every_s`` seconds, plus the
last) rather than a redrawn tqdm bar, which a log file records as thousands
of carriage-return fragments.
"""

from __future__ import annotations

import logging
import time


def format_duration(seconds: float) -> str:
    """``1h02m``, ``4m05s`` or ``12s``."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Counts units of work done and logs ``what: done/total (pct), rate unit/s, elapsed, ETA``.

    ``clock``: seconds (``time.monotonic`` unless a test gives its own).
    """

    def __init__(self, log: logging.Logger, what: str, total: int, unit: str = "items", every_s: float = 30.0,
                 clock=time.monotonic):
        self.log, self.what, self.total, self.unit = log, what, max(0, int(total)), unit
        self.every_s, self.clock = every_s, clock
        self.done = 0
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        left = (self.total - self.done) / rate if rate and rate == rate and rate > 0 else float("nan")
        eta = format_duration(left) if left == left else "?"
        return (f"{self.what}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), {rate:.3g} {self.unit}/s, "
                f"elapsed {format_duration(elapsed)}, ETA {eta}")

    def update(self, n: int = 1) -> None:
        """Add ``n`` units; log when ``every_s`` has passed since the last line, and at the end."""
        self.done += n
        now = self.clock()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            self.log.info(self.line())
