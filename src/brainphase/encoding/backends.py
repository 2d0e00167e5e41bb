"""The array backend of the ridge solver: numpy, or torch on CPU or CUDA.

One seam, as in himalaya's backends: the solver calls only the methods of a
:class:`Backend` (plus ``@``, ``.T``, slicing and broadcasting arithmetic,
which both libraries spell the same), so it runs unchanged on either library.
torch is imported only when a torch backend is asked for.
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("auto", "numpy", "torch", "torch_cuda")


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

    def subtract_product_(self, M, U, W):
        """``M -= U @ W`` in place, for a thin ``U`` (rank-k corrections of a large ``M``).

        The product is formed in ``M``'s precision. (scipy's BLAS ``gemm``
        could update in place, but it is a second OpenBLAS beside numpy's
        whose spinning threads slow numpy's down when calls alternate.)
        """
        if self.xp is np:
            M -= U.astype(M.dtype, copy=False) @ W.astype(M.dtype, copy=False)
            return M
        return M.addmm_(U.to(M.dtype), W.to(M.dtype), alpha=-1)

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
