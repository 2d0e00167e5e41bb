"""Progress lines: counts, rate and time left, at most one line per interval plus the last."""

import logging

from brainphase.progress import Progress, format_duration


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_lines_give_rate_and_eta_and_respect_the_interval(caplog):
    clock = Clock()
    progress = Progress(logging.getLogger("t"), "sae", 100, "steps", every_s=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="t"):
        for _ in range(40):
            clock.t += 1.0
            progress.update()  # 1 step/s: a line at 30 s only
        lines = [r.getMessage() for r in caplog.records]
        assert lines == ["sae: 30/100 steps (30%), 1 steps/s, elapsed 30s, ETA 1m10s"]
        clock.t += 60.0
        progress.update(60)  # the last unit always logs
    assert caplog.records[-1].getMessage() == "sae: 100/100 steps (100%), 1 steps/s, elapsed 1m40s, ETA 0s"


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 61, 3600 + 125)] == ["0s", "59s", "1m01s", "1h02m"]
