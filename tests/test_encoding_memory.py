"""Encoding within a memory budget: chunked fits equal the whole fit, and a job stays under its budget."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from brainphase.encoding.memory import EncodingShape, peak_bytes, plan_encoding
from brainphase.encoding.model import fit_encoding


def planted(n_runs=6, run_len=120, n_test=100, n_feat=40, n_vox=90, seed=0):
    rng = np.random.default_rng(seed)
    n = n_runs * run_len + n_test
    X = rng.standard_normal((n, n_feat))
    W = rng.standard_normal((n_feat, n_vox)) * np.exp(rng.uniform(-2, 1, n_vox))
    Y = (X @ W + 3 * rng.standard_normal((n, n_vox))).astype(np.float32)
    Y[:, 5] = 1.0  # a constant voxel, excluded in every chunking
    groups = np.repeat(np.arange(n_runs), run_len)
    k = n_runs * run_len
    return X[:k], Y[:k], groups, X[k:], Y[k:]


@pytest.mark.parametrize("n_feat", [40, 900])  # primal, dual (features > training TRs)
@pytest.mark.parametrize("chunk", [7, 64])
def test_chunked_fit_equals_whole(n_feat, chunk):
    Xtr, Ytr, groups, Xte, Yte = planted(n_feat=n_feat)
    kw = dict(n_perm=50, block_size=10, seed=3, n_boot=20, alphas=np.logspace(0, 4, 8))
    whole = fit_encoding(Xtr, Ytr, groups, Xte, Yte, **kw)
    parts = fit_encoding(Xtr, Ytr, groups, Xte, Yte, voxel_chunk=chunk, **kw)
    assert whole.excluded[5] and parts.excluded[5]
    np.testing.assert_array_equal(parts.excluded, whole.excluded)
    np.testing.assert_array_equal(parts.alpha, whole.alpha)  # the same alphas, NaN where excluded
    np.testing.assert_allclose(parts.r, whole.r, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(parts.p, whole.p, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(parts.boot_mean_r, whole.boot_mean_r, atol=1e-6)
    np.testing.assert_array_equal(parts.significant, whole.significant)
    assert np.nanmean(whole.r) > 0.3  # the planted weights are found, so the comparison is not of noise


def test_plan_shrinks_chunk_with_budget_and_refuses_too_small():
    s = EncodingShape(n_train=27_000, n_test=300, n_features=4096, n_voxels=81_000)
    whole = plan_encoding(s, None)
    assert whole.voxel_chunk == s.n_voxels and whole.peak_bytes == peak_bytes(s, s.n_voxels, False)
    big, small = plan_encoding(s, 40e9), plan_encoding(s, 24e9)
    assert s.n_voxels > big.voxel_chunk > small.voxel_chunk >= 64
    assert big.peak_bytes <= 40e9 and small.peak_bytes <= 24e9
    assert peak_bytes(s, small.voxel_chunk + 1, small.keep_bases) > 24e9  # the largest chunk that fits
    with pytest.raises(MemoryError, match="mem_mb of rule encoding"):
        plan_encoding(s, 8e9)  # the responses alone are 8.8 GB


PROBE = textwrap.dedent("""
    import sys
    import numpy as np
    from brainphase.encoding.delays import prepare_responses
    from brainphase.encoding.memory import EncodingShape, plan_encoding
    from brainphase.encoding.model import fit_encoding
    budget = float(sys.argv[1])
    n_runs, run_len, n_test, F, V = 10, 300, 300, 256, 20_000
    rng = np.random.default_rng(0)
    raw = [rng.standard_normal((run_len, V), dtype=np.float32) for _ in range(n_runs)]
    raw_test = [rng.standard_normal((n_test, V), dtype=np.float32)]
    Xtr, Xte = rng.standard_normal((n_runs * run_len, F)), rng.standard_normal((n_test, F))
    ytr, groups = prepare_responses(raw, 0, dtype=np.float32)
    yte, _ = prepare_responses(raw_test, 0, dtype=np.float32)
    s = EncodingShape(n_train=len(ytr), n_test=n_test, n_features=F, n_voxels=V, n_perm=200,
                      brain_bytes=sum(r.nbytes for r in raw + raw_test))
    plan = plan_encoding(s, budget)
    whole = plan_encoding(s, None)
    fit_encoding(Xtr, ytr, groups, Xte, yte, n_perm=200, n_boot=20, voxel_chunk=plan.voxel_chunk)
    # VmHWM, this process's own high-water mark: ru_maxrss survives fork and exec on Linux, so a child
    # of a large pytest process would report the parent's peak.
    hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
    print(plan.voxel_chunk, plan.peak_bytes, whole.peak_bytes, hwm)
""")


def test_job_stays_under_its_budget():
    """Peak resident memory of a fit planned for 1.2 GB, whose unchunked fit would need ~2 GB."""
    budget = 1.2e9
    out = subprocess.run([sys.executable, "-c", PROBE, str(budget)], capture_output=True, text=True, check=True)
    chunk, planned, whole, measured = (float(x) for x in out.stdout.split())
    assert chunk < 20_000 and whole > budget  # the budget forced chunks
    assert measured <= planned <= budget, (measured, planned)


def test_layer_reader_reads_one_float16_layer(tmp_path):
    from brainphase.contracts.activations import LayerReader, load_activations, save_activations

    rng = np.random.default_rng(0)
    arrays = {f"resid.{i}": rng.standard_normal((30, 8)).astype(np.float16) for i in range(3)}
    meta = {"model": "m", "step": "s", "tokens": 1, "pooling": "word", "context_window": None,
            "unit_ids": [f"u{i}" for i in range(30)]}
    path = tmp_path / "acts.safetensors"
    save_activations(path, arrays, meta)
    rows = np.array([3, 1, 2])
    reader = LayerReader(path, ["resid.2", "resid.0"], rows)
    assert list(reader) == ["resid.2", "resid.0"] and len(reader) == 2
    eager, _ = load_activations(path, ["resid.2"])
    assert reader["resid.2"].dtype == np.float16
    np.testing.assert_array_equal(reader["resid.2"].astype(np.float32), eager["resid.2"][rows])
    with pytest.raises(KeyError):
        reader["resid.1"]
    with pytest.raises(KeyError, match="re-extract"):
        LayerReader(path, ["mlp.0"])


def test_runs_left_on_disk_give_the_same_responses(tmp_path):
    """The encoding job reads runs one at a time from the brain file; the z-scored responses are unchanged."""
    from brainphase.contracts.brain import BrainRun, RunOnDisk, read_brain, write_brain
    from brainphase.encoding.delays import prepare_responses

    rng = np.random.default_rng(0)
    runs = {f"r{i}": BrainRun(rng.standard_normal((50 + i, 7)) * (i + 1), "train") for i in range(3)}
    path = tmp_path / "sub.h5"
    write_brain(path, runs, 2.0, np.zeros((7, 3)))
    eager, lazy = read_brain(path), read_brain(path, on_disk=True)
    assert isinstance(lazy.runs["r1"].data, RunOnDisk) and len(lazy.runs["r1"].data) == 51
    np.testing.assert_array_equal(lazy.tr_times("r2"), eager.tr_times("r2"))
    np.testing.assert_array_equal(lazy.runs["r0"].data[3:5, 1:3], eager.runs["r0"].data[3:5, 1:3])
    y_eager, idx_eager = prepare_responses([eager.runs[r].data for r in eager.runs], 2, dtype=np.float32)
    y_lazy, idx_lazy = prepare_responses([lazy.runs[r].data for r in lazy.runs], 2, dtype=np.float32, block=3)
    np.testing.assert_array_equal(y_lazy, y_eager)
    np.testing.assert_array_equal(idx_lazy, idx_eager)
    y64, _ = prepare_responses([eager.runs[r].data for r in eager.runs], 2)
    np.testing.assert_array_equal(y_eager, y64.astype(np.float32))  # float64 z-scores, cast once
