"""SAE feature matching within a memory budget: the sparse route finds scipy's dense Hungarian matching.

The sparse route (float32 row chunks, a candidate graph, an LP-dual
certificate) must return the same pairs as ``linear_sum_assignment`` on the
float64 cosine matrix on every size where both run; its memory plan must hold
the budget it was given, and a job must stay under it.
"""

import gc
import runpy
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from brainphase.sae import assignment
from brainphase.sae.matching import (
    DENSE_MAX_PAIRS, decoder_cosine, match_features, match_table, matching_peak_bytes, uses_dense,
)

REPO = Path(__file__).resolve().parents[1]


def decoders(n_a, n_b, d, planted=0.6, noise=0.6, seed=0):
    """(d × n) decoders: a share of B's latents are A's with noise (cosine ≈ 0.85), the rest random."""
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((d, n_a)), rng.standard_normal((d, n_b))
    m = int(planted * min(n_a, n_b))
    B[:, rng.permutation(n_b)[:m]] = A[:, rng.permutation(n_a)[:m]] + noise * rng.standard_normal((d, m))
    return A, B


def dense_hungarian(W_a, W_b, alive_a=None, alive_b=None):
    ids_a = np.arange(W_a.shape[1]) if alive_a is None else np.flatnonzero(alive_a)
    ids_b = np.arange(W_b.shape[1]) if alive_b is None else np.flatnonzero(alive_b)
    cos = decoder_cosine(W_a[:, ids_a], W_b[:, ids_b])
    ra, cb = linear_sum_assignment(cos, maximize=True)
    return ids_a[ra], ids_b[cb], cos[ra, cb]


def sparse_only_budget(n_a, n_b, d, rows=200):
    """A budget with room for the sparse route with 200-row chunks (not a multiple of the block) but
    not for the dense matrix."""
    budget = assignment.fixed_bytes(min(n_a, n_b), max(n_a, n_b), d) + 4 * max(n_a, n_b) * rows
    assert not uses_dense(n_a, n_b, d, budget), "pick a larger problem: the dense route fits this budget"
    assert assignment.chunk_rows(n_a, n_b, d, budget) == rows
    return budget


@pytest.mark.parametrize("n_a, n_b, planted, dead", [
    (2048, 2048, 0.6, 0.0),   # square, planted and random latents
    (2048, 2048, 0.0, 0.0),   # square, random only: the hard case for a sparse graph
    (1800, 2400, 0.8, 0.05),  # more latents in B, dead latents on both sides
    (2400, 1800, 0.8, 0.05),  # more latents in A: the route transposes
])
def test_sparse_route_equals_dense_hungarian(n_a, n_b, planted, dead):
    d = 32
    W_a, W_b = decoders(n_a, n_b, d, planted, seed=n_a + n_b)
    rng = np.random.default_rng(1)
    alive_a, alive_b = rng.random(n_a) >= dead, rng.random(n_b) >= dead
    budget = sparse_only_budget(int(alive_a.sum()), int(alive_b.sum()), d)
    pairs, summary = match_features(W_a, W_b, 0.7, alive_a, alive_b, budget_bytes=budget)
    ra, cb, c = dense_hungarian(W_a, W_b, alive_a, alive_b)
    np.testing.assert_array_equal(pairs["latent_a"], ra)
    np.testing.assert_array_equal(pairs["latent_b"], cb)
    np.testing.assert_allclose(pairs["cosine"], c, rtol=0, atol=1e-12)
    assert summary["n_matched"] == int((c >= 0.7).sum())
    assert summary["n_a"] == alive_a.sum() and summary["n_b"] == alive_b.sum()
    assert summary["mean_cosine"] == pytest.approx(c.mean(), abs=1e-12)


def test_assignment_equals_dense_on_many_shapes():
    """Tiny to mid shapes, float32 and float64, planted, duplicated and zero latents (ties: same total)."""
    rng = np.random.default_rng(7)
    for trial in range(60):
        n_a, n_b, d = (int(x) for x in (rng.integers(1, 700), rng.integers(1, 700), rng.integers(2, 40)))
        A, B = rng.standard_normal((n_a, d)), rng.standard_normal((n_b, d))
        kind = trial % 4
        if kind == 1:
            m = min(n_a, n_b) // 2
            B[:m] = A[rng.permutation(n_a)[:m]] + 0.2 * rng.standard_normal((m, d))
        elif kind == 2:  # ties: zero and repeated latents
            A[rng.random(n_a) < 0.1] = 0
            B[: n_b // 3] = B[0]
        elif kind == 3:
            A, B = A.astype(np.float32), B.astype(np.float32)
        rows, cols, c = assignment.max_cosine_assignment(A, B)
        ref_r, ref_c, ref = dense_hungarian(A.T, B.T)
        C = decoder_cosine(A.T, B.T)
        assert len(np.unique(cols)) == len(cols) == min(n_a, n_b)
        np.testing.assert_allclose(c, C[rows, cols], rtol=0, atol=1e-12)
        assert c.sum() == pytest.approx(ref.sum(), abs=1e-9), (trial, n_a, n_b, d)
        if kind != 2:
            np.testing.assert_array_equal(rows, ref_r)
            np.testing.assert_array_equal(cols, ref_c)


def test_certificate_repairs_when_the_candidates_miss_the_optimum(monkeypatch):
    """With one candidate per row and column and a reserve of two, the first sparse matching is far
    from the dense optimum (no full matching, even): pricing, rescans and the completion repair it."""
    monkeypatch.setattr(assignment, "SEED", 1)
    monkeypatch.setattr(assignment, "RESERVE", 2)
    monkeypatch.setattr(assignment, "RESCAN", 2)
    completions = []
    original = assignment.maximum_bipartite_matching
    monkeypatch.setattr(assignment, "maximum_bipartite_matching",
                        lambda *a, **k: completions.append(1) or original(*a, **k))
    rng = np.random.default_rng(3)
    n, d = 500, 24
    direction = rng.standard_normal(d)
    A = direction + 0.9 * rng.standard_normal((n, d))  # every row's best column is the same one
    B = rng.standard_normal((n, d))
    B[0] = direction
    B[1: n // 2] = A[rng.permutation(n)[: n // 2 - 1]] + 0.8 * rng.standard_normal((n // 2 - 1, d))
    stats = {}
    rows, cols, c = assignment.max_cosine_assignment(A, B, stats=stats)
    ref_r, ref_c, ref = dense_hungarian(A.T, B.T)
    np.testing.assert_array_equal(cols, ref_c)
    assert completions, "the seed graph had a full matching: the completion was not exercised"
    assert stats["priced"] > 0 and stats["rescans"] > 0 and stats["solves"] > 2, stats


def test_plan_holds_the_budget_and_refuses_what_cannot_fit():
    for n_a, n_b, d in ((2048, 2048, 64), (65536, 65536, 4096), (30000, 50000, 512), (50000, 30000, 2304)):
        low = assignment.fixed_bytes(min(n_a, n_b), max(n_a, n_b), d) + 4 * max(n_a, n_b) * assignment.SUB
        for budget in (low, int(1.5 * low), 4 * 2**30, 24 * 2**30):
            if budget < low:
                continue
            assert matching_peak_bytes(n_a, n_b, d, budget) <= budget, (n_a, n_b, d, budget)
        with pytest.raises(ValueError, match="mem_mb"):
            matching_peak_bytes(n_a, n_b, d, low - 1)
    assert 65536**2 > DENSE_MAX_PAIRS
    # The dense matrix alone is 34 GB at 65,536 latents: the plan stays within a 4 GiB budget.
    assert matching_peak_bytes(65536, 65536, 4096, 4 * 2**30) <= 4 * 2**30
    assert matching_peak_bytes(300, 400, 32, None) == matching_peak_bytes(300, 400, 32, 2**30)  # dense either way


def test_job_stays_under_its_budget(tmp_path):
    """Peak RSS of a matching under a 160 MB budget, measured in a fresh interpreter (its own VmHWM), stays
    under the budget plus what the interpreter held before the decoders existed; the dense route needs 580 MB."""
    n, d, budget = 6000, 64, 160 * 2**20
    assert not uses_dense(n, n, d, budget) and matching_peak_bytes(n, n, d, budget) <= budget
    code = textwrap.dedent(f"""
        import resource, numpy as np
        from brainphase.sae.matching import match_features
        base = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
        rng = np.random.default_rng(0)
        A = rng.standard_normal(({n}, {d}), dtype=np.float32)
        B = rng.standard_normal(({n}, {d}), dtype=np.float32)
        B[: {n} // 2] = A[: {n} // 2] + 0.5 * B[: {n} // 2]  # cosine ≈ 0.9
        pairs, summary = match_features(A.T, B.T, budget_bytes={budget})
        peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
        print(base, peak, summary["n_matched"])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    base, peak, matched = (int(x) for x in out.stdout.split())
    assert matched >= n // 2 - 5  # the planted half is found
    assert peak - base <= budget, f"{(peak - base) / 2**20:.0f} MB over the interpreter, budget {budget / 2**20:.0f} MB"


def test_match_table_loads_decoders_per_comparison_and_holds_two():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((16, 40))
    arrays = {t: (base + 0.02 * t * rng.standard_normal(base.shape)).astype(np.float32) for t in (10, 20, 30)}
    arrays[31] = rng.standard_normal((16, 40)).astype(np.float32)
    alive = {t: rng.random(40) > 0.1 for t in arrays}
    live, loads = [0], []

    def loader(t):
        def load():
            gc.collect()
            assert live[0] <= 1, "a third decoder would be held"
            loads.append(t)
            W = arrays[t].copy()
            live[0] += 1
            weakref.finalize(W, lambda: live.__setitem__(0, live[0] - 1))
            return W
        return load

    def entry(t, decoder):
        return {"model": "m", "step": f"step{min(t, 30)}", "tokens": min(t, 30), "seed": int(t == 31),
                "decoder": decoder, "alive": alive[t]}

    lazy = match_table([entry(t, loader(t)) for t in arrays], threshold=0.7)
    eager = match_table([entry(t, arrays[t]) for t in arrays], threshold=0.7)
    pd.testing.assert_frame_equal(lazy, eager, check_exact=True)
    assert len(loads) == 2 * len(lazy) and len(lazy) == 3


def test_script_table_equals_the_in_memory_one(tmp_path):
    """workflow/scripts/sae_matching.py reads the decoders lazily; its table is the one computed from
    whole SAEs loaded at once, byte for byte."""
    import torch

    from brainphase.io import write_parquet
    from brainphase.sae import TopKSAE, load_sae, save_sae

    gen = torch.Generator().manual_seed(0)
    base = torch.randn(24, 64, generator=gen)
    saes, features, reference = [], [], []
    for i, (tokens, seed) in enumerate(((100, 0), (200, 0), (300, 0), (300, 1))):
        sae = TopKSAE(24, 64, 4, seed=seed)
        with torch.no_grad():
            sae.W_dec.copy_(base + 0.05 * i * torch.randn(24, 64, generator=gen) if seed == 0 else sae.W_dec)
        path, feat = tmp_path / f"sae{i}.safetensors", tmp_path / f"features{i}.parquet"
        save_sae(path, sae, {"model": "toy", "step": f"step{tokens}", "tokens": tokens, "seed": seed})
        n_examples = np.where(np.arange(64) % 9 == i, 0, 5)
        pd.DataFrame({"latent": np.arange(64)[::-1], "n_examples": n_examples[::-1]}).to_parquet(feat)
        saes.append(str(path))
        features.append(str(feat))
        loaded, meta = load_sae(path)
        reference.append({**{k: meta[k] for k in ("model", "step", "tokens", "seed")},
                          "decoder": loaded.W_dec.detach().numpy(), "alive": n_examples > 0})
    out = tmp_path / "sae_matching.parquet"
    snakemake = SimpleNamespace(input=SimpleNamespace(saes=saes, features=features), output=[str(out)],
                                params=SimpleNamespace(threshold=0.7), log=[str(tmp_path / "log.txt")],
                                threads=1, resources=SimpleNamespace(mem_mb=2000))
    script = runpy.run_path(str(REPO / "workflow/scripts/sae_matching.py"), init_globals={"snakemake": snakemake})
    for block in (10, 64, 100):  # blocks that split the latents unevenly, one block, past the end
        W = script["live_decoder"](saes[1], reference[1]["alive"], features[1], block=block)
        np.testing.assert_array_equal(W, reference[1]["decoder"][:, reference[1]["alive"]])
        assert W.T.flags.c_contiguous and W.dtype == np.float32
    with pytest.raises(ValueError, match="rerun the sae rule"):
        script["live_decoder"](saes[1], np.ones(63, bool), features[1])
    write_parquet(match_table(reference, threshold=0.7), tmp_path / "reference.parquet")
    assert out.read_bytes() == (tmp_path / "reference.parquet").read_bytes()
    table = pd.read_parquet(out)
    assert list(table.comparison) == ["checkpoint", "checkpoint", "seed"]
    assert (table.n_a < 64).all()
