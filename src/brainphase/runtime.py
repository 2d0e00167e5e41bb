"""What every workflow job does first: log to its log file, fix threads and seeds."""

from __future__ import annotations

import logging
import os
import random
import sys

import numpy as np


def setup_job(log_path: str | None, threads: int = 1, seed: int | None = None) -> logging.Logger:
    """Log to ``log_path`` (and stderr), cap torch/BLAS threads, seed every generator."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    n = str(max(1, int(threads)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = n  # read by BLAS/torch at import; jobs without torch never pay its 2 s import
    torch = sys.modules.get("torch")
    if torch is not None:
        # Two busy cores make multi-threaded torch collapse; the job's `threads` is the cap.
        torch.set_num_threads(int(n))
        if seed is not None:
            torch.manual_seed(seed)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
    log = logging.getLogger("brainphase")

    def log_failure(kind, value, tb):
        # The log file is where a cluster user looks first; the traceback must be there, not only on stderr.
        log.error("job failed: %s: %s", kind.__name__, value, exc_info=(kind, value, tb))

    sys.excepthook = log_failure
    return log
