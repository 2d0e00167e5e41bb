"""The job runtime: what every workflow job does first (log file, threads, seeds), and how torch runs
(device, dtype, autocast, threads)."""

from __future__ import annotations

import contextlib
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
        os.environ[var] = n  # read by BLAS/torch at import, so jobs without torch never import it
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


def resolve_device(device: str | None = "auto"):
    """``auto`` → CUDA when present, else CPU."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use device: auto or cpu")
    return device


def resolve_dtype(dtype, device):
    """``auto`` → float32 on CPU (bf16 matmuls are slow and lossy there), bfloat16 on CUDA."""
    import torch

    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(names)}")
    return names[dtype]


def autocast(device, dtype="auto"):
    """Autocast to ``dtype`` (resolved by ``resolve_dtype``) on ``device``; float32 runs as is.

    bfloat16 on CUDA halves memory traffic at no measurable cost to the losses;
    CPU bfloat16 matmuls are slow and lossy, so ``auto`` keeps CPU in float32.
    """
    import torch

    device = torch.device(device)
    dtype = resolve_dtype(dtype, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch threads (unchanged when ``n`` is falsy), restoring the count after."""
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
