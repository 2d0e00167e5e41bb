"""The array backend of the ridge solver: numpy, or torch on CPU or CUDA.

One seam, as in himalaya's backends: the solver calls only the methods of a
:class:`Backend` (plus ``@``, ``.T``, slicing and broadcasting arithmetic,
which both libraries spell the same), so it runs unchanged on either library.
torch is imported only when a torch backend is asked for.
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("auto", "numpy", "torch", "torch_cuda")
# Largest Gram matrix whose folds are diagonalised together (:meth:`Backend.eigh_many`): the
# gain shrinks with the rank while the matrices held at once grow with its square.
CONCURRENT_EIGH_MAX_RANK = 2048


def float64_cost_of_capability(major: int, minor: int) -> float:
    """:attr:`Backend.float64_cost` of an NVIDIA GPU of compute capability ``major.minor``."""
    return 2.0 if minor == 0 and major in (6, 7, 8, 9, 10) else 32.0


class Backend:
    """The few array operations the solver needs, on numpy or torch (CPU/CUDA).

    ``name`` is one of :data:`BACKENDS`; "auto" is torch on CUDA when
    available, else numpy. Everything else (``@``, ``.T``, slicing,
    broadcasting arithmetic) is spelled the same in both libraries.
    """

    def __init__(self, name: str):
        if name not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
        if name == "auto":
            name = "numpy"
            try:
                import torch

                if torch.cuda.is_available():
                    name = "torch_cuda"
            except ImportError:
                pass
        self.name = name
        if name == "numpy":
            self.xp = np
        else:
            import torch

            self.xp = torch
            self.device = torch.device("cuda" if name == "torch_cuda" else "cpu")
            if name == "torch_cuda" and not torch.cuda.is_available():
                raise RuntimeError("backend='torch_cuda' but CUDA is not available")

    @property
    def float64_cost(self) -> float:
        """Time of a float64 multiply-add in float32 ones, for choosing between exact methods.

        2 on CPUs (half the SIMD lanes) and on NVIDIA's data-centre GPUs
        (compute capability 6.0, 7.0, 8.0, 9.0, 10.0: P100, V100, A100,
        H100, B200); 32 on the others, whose float64 units run at 1/32 to
        1/64 of float32 (CUDA C Programming Guide, arithmetic instructions
        throughput table).
        """
        if self.name != "torch_cuda":
            return 2.0
        major, minor = self.xp.cuda.get_device_capability(self.device)
        return float64_cost_of_capability(major, minor)

    def dtype(self, name: str):
        return getattr(self.xp, name)

    def asarray(self, x, dtype: str):
        if self.xp is np:
            return np.asarray(x, dtype=dtype)
        torch = self.xp
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        return torch.as_tensor(x).to(device=self.device, dtype=self.dtype(dtype))

    def index(self, idx: np.ndarray):
        return idx if self.xp is np else self.xp.as_tensor(idx, device=self.device)

    def cast(self, x, dtype: str):
        if self.xp is np:
            return x.astype(dtype, copy=False)
        return x.to(self.dtype(dtype))

    def to_numpy(self, x) -> np.ndarray:
        return x if self.xp is np else x.detach().cpu().numpy()

    def empty(self, n: int, dtype: str):
        if self.xp is np:
            return np.empty(n, dtype=dtype)
        return self.xp.empty(n, dtype=self.dtype(dtype), device=self.device)

    def zeros(self, shape, dtype: str):
        if self.xp is np:
            return np.zeros(shape, dtype=dtype)
        return self.xp.zeros(shape, dtype=self.dtype(dtype), device=self.device)

    def sum64(self, x, axis: int):
        if self.xp is np:
            return x.sum(axis=axis, dtype=np.float64)
        return x.sum(dim=axis, dtype=self.xp.float64)

    def eigh(self, a):
        return self.xp.linalg.eigh(a)

    def eigh_many(self, matrices: list) -> list:
        """``eigh`` of each matrix; on numpy with several BLAS threads, as many at once, one thread each.

        LAPACK's symmetric eigensolver spends much of its time in
        matrix-vector steps that gain little from a second thread; one
        decomposition per thread is faster up to the ranks
        :data:`CONCURRENT_EIGH_MAX_RANK` allows (measured with 2 threads,
        6 matrices: 2.0x at 256, 1.65x at 512, 1.4x at 1,024, 1.27x at
        2,048). Each decomposition runs single-threaded, so the results do
        not depend on which thread ran it.
        """
        workers = self.eigh_workers(len(matrices))
        if workers < 2:
            return [self.eigh(a) for a in matrices]
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            return list(pool.map(self.eigh, matrices))

    def eigh_workers(self, n_matrices: int) -> int:
        """Decompositions :meth:`eigh_many` runs at once: one per BLAS thread, on numpy only."""
        return min(n_matrices, self.blas_threads()) if self.xp is np else 1

    @staticmethod
    def blas_threads() -> int:
        """Threads numpy's BLAS uses now (1 where threadpoolctl finds none)."""
        from threadpoolctl import threadpool_info

        return max([lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"], default=1)

    def matmul(self, a, b, out):
        return self.xp.matmul(a, b, out=out)

    def sum_squares(self, P):
        """``(P ** 2).sum(1)`` for P (a, t, v); may overwrite P."""
        if self.xp is np:
            return np.einsum("atv,atv->av", P, P)
        return P.square_().sum(1)

    def triangular_factor(self, A):
        """Upper-trapezoidal R with ``R^T R = A^T A``.

        Cholesky of ``A^T A`` when A has at least as many rows as columns
        (cheaper than QR), QR when A is wide or numerically rank deficient
        (Cholesky fails).
        """
        xp = self.xp
        if A.shape[0] >= A.shape[1]:
            try:
                if xp is np:
                    return np.linalg.cholesky(A.T @ A).T
                L, info = xp.linalg.cholesky_ex(A.T @ A)
                if int(info) == 0:
                    return L.T
            except np.linalg.LinAlgError:
                pass
        if xp is np:
            return np.linalg.qr(A, mode="r")
        return xp.linalg.qr(A, mode="r")[1]

    def sum_squares_cols(self, x):
        """Column sums of squares, accumulated in float64."""
        if self.xp is np:
            return np.einsum("tv,tv->v", x, x, dtype=np.float64)
        return (x * x).sum(0, dtype=self.xp.float64)
