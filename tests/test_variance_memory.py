"""Variance partitioning within a memory budget: chunked fits equal the whole fit, and a job stays under its plan."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from brainphase.encoding.stats import fdr_bh
from brainphase.encoding.variance import PARTS, partition_variance
from brainphase.encoding.variance_memory import (MIN_CHUNK, VarianceShape, peak_at_chunk, plan_variance,
                                                 variance_flops, variance_peak_bytes)


def planted(n_runs=6, n_t=100, n_vox=40, seed=0):
    """Voxels driven by random mixes of both bands at mixed strengths, 10 null voxels, a constant voxel (column 3)."""
    rng = np.random.default_rng(seed)
    n = n_runs * n_t
    low, lm = rng.standard_normal((n, 3)), rng.standard_normal((n, 10))
    w = rng.standard_normal((13, n_vox)) * (rng.random((13, n_vox)) < 0.4) * np.exp(rng.uniform(-3, 0.5, n_vox))
    w[:, -10:] = 0  # null voxels
    y = (np.hstack([low, lm]) @ w + rng.standard_normal((n, n_vox))).astype(np.float32)
    y[:, 3] = 1.0
    run = np.repeat(np.arange(n_runs), n_t)
    tr, te = run < n_runs - 1, run == n_runs - 1
    return lm[tr], low[tr], y[tr], run[tr], lm[te], low[te], y[te]


@pytest.mark.parametrize("chunk", [1, 6])
def test_chunked_partition_equals_the_whole(chunk):
    """Per-voxel alphas and band weights do not depend on the other voxels of a chunk (himalaya's random
    search selects and refits each target on its own), so chunks reproduce the whole fit; so do one-alpha
    batches."""
    x_lm, x_low, y, groups, t_lm, t_low, y_test = planted()
    keep = np.setdiff1d(np.arange(y.shape[1]), [3])
    kw = dict(alphas=np.logspace(-1, 4, 8), n_iter=6, n_splits=4, seed=0, voxels=keep, n_perm=200, block_size=10)
    whole = partition_variance(x_lm, x_low, y, groups, t_lm, t_low, y_test, **kw)
    parts = partition_variance(x_lm, x_low, y, groups, t_lm, t_low, y_test, voxel_chunk=chunk, alphas_batch=1, **kw)
    for name in PARTS:
        np.testing.assert_allclose(getattr(parts, name), getattr(whole, name), atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(parts.p_joint, whole.p_joint)
    _, sig_whole = fdr_bh(whole.p_joint, 0.05)
    _, sig_parts = fdr_bh(parts.p_joint, 0.05)
    np.testing.assert_array_equal(sig_parts, sig_whole)
    # the comparison is of fits that found something, on voxels that chose different band weightings
    assert 5 < sig_whole.sum() < len(keep) and np.ptp(whole.split_lm / np.maximum(whole.r2_joint, 1e-9)) > 0.5


LEBEL = dict(n_train=27_000, n_test=291, n_low=12, n_voxels=81_000, n_units=60_000)


def test_plan_shrinks_the_chunk_with_the_budget_and_refuses_too_small():
    s = VarianceShape(n_lm=4 * 1024, d_model=1024, **LEBEL)
    whole = plan_variance(s, None)
    assert whole.voxel_chunk == s.n_voxels and whole.peak_bytes == peak_at_chunk(s, s.n_voxels, s.n_alphas)
    assert whole.alphas_batch == s.n_alphas  # all alphas together where everything fits
    big, small = plan_variance(s, 40e9), plan_variance(s, 24e9)
    assert s.n_voxels > big.voxel_chunk > small.voxel_chunk >= MIN_CHUNK and small.alphas_batch == 1
    assert big.peak_bytes <= 40e9 and small.peak_bytes <= 24e9
    assert peak_at_chunk(s, small.voxel_chunk + 1) > 24e9  # the largest chunk that fits
    assert variance_peak_bytes(s, 24e9) == small.peak_bytes
    with pytest.raises(MemoryError, match="mem_mb of rule variance"):
        plan_variance(s, 12e9)  # the responses alone are 8.8 GB, the solver's matrices 2 GB more
    wide = VarianceShape(n_lm=4 * 4096, d_model=4096, **LEBEL)
    assert plan_variance(wide, None).peak_bytes > whole.peak_bytes


def test_work_grows_with_chunks_only_by_the_voxel_independent_part():
    s = VarianceShape(n_train=2000, n_test=200, n_lm=400, n_low=12, n_voxels=1000)
    one, ten = variance_flops(s, 1000), variance_flops(s, 100)
    per_chunk = (ten - one) / 9
    assert per_chunk > 0 and variance_flops(s, 500) == pytest.approx(one + per_chunk)


PROBE = textwrap.dedent("""
    import sys
    import numpy as np
    from brainphase.encoding.delays import prepare_responses
    from brainphase.encoding.variance import partition_variance
    from brainphase.encoding.variance_memory import VarianceShape, plan_variance
    budget = float(sys.argv[1])
    n_runs, run_len, n_test, V = 5, 200, 200, 16_000
    rng = np.random.default_rng(0)
    raw = [rng.standard_normal((run_len, V), dtype=np.float32) for _ in range(n_runs)]
    raw_test = [rng.standard_normal((n_test, V), dtype=np.float32)]
    ytr, groups = prepare_responses(raw, 0, dtype=np.float32)
    yte, _ = prepare_responses(raw_test, 0, dtype=np.float32)
    x_lm, t_lm = rng.standard_normal((len(ytr), 64)), rng.standard_normal((n_test, 64))
    x_low, t_low = rng.standard_normal((len(ytr), 12)), rng.standard_normal((n_test, 12))
    s = VarianceShape(n_train=len(ytr), n_test=n_test, n_lm=64, n_low=12, n_voxels=V, n_alphas=3, n_folds=3,
                      n_iter=3, n_perm=100, brain_bytes=sum(r.nbytes for r in raw + raw_test))
    plan, whole = plan_variance(s, budget), plan_variance(s, None)
    partition_variance(x_lm, x_low, ytr, groups, t_lm, t_low, yte, alphas=np.logspace(0, 3, 3), n_iter=3,
                       n_splits=3, voxel_chunk=plan.voxel_chunk, n_perm=100, alphas_batch=plan.alphas_batch)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print(plan.voxel_chunk, plan.peak_bytes, whole.peak_bytes, int(status["VmHWM"].split()[0]) * 1024)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc/self/status")
def test_job_stays_under_its_plan():
    """Peak resident memory (the process' own high-water mark) of a partition planned for a budget that
    forces chunks."""
    budget = 0.75e9
    out = subprocess.run([sys.executable, "-c", PROBE, str(budget)], capture_output=True, text=True, check=True)
    chunk, planned, whole, measured = (float(x) for x in out.stdout.split())
    assert chunk < 16_000 and whole > budget  # the budget forced chunks
    assert measured <= planned <= budget, (measured, planned)
