"""Thread setup shared by the benchmarks: both methods of a comparison get the same threads."""

from __future__ import annotations

import os


def limit_threads(n: int) -> None:
    """Cap BLAS/OpenMP (threadpoolctl) and torch at ``n`` threads and print what numpy's BLAS is."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(n)
    torch.set_num_threads(n)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"warning: {var}={os.environ[var]} is set; numpy's OpenBLAS may run a slow kernel")
    for lib in threadpool_info():
        if lib["user_api"] == "blas":
            print(f"BLAS {lib['prefix']} {lib.get('version')} kernel={lib.get('architecture')} "
                  f"threads={lib['num_threads']}")
