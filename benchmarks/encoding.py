"""Benchmark the voxelwise encoding fit against scikit-learn and himalaya.

Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/encoding.py

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set on some machines for an old
OpenBLAS; they force a generic kernel on numpy's current OpenBLAS and slow
every method (the BLAS kernel in use is printed below). Timings are the best
of ``--repeats`` interleaved rounds, all with the same number of threads
(default: all cores). The machine should otherwise be idle: OpenBLAS/OpenMP threads that
share cores with another busy process slow down by an order of magnitude.

Same synthetic data for all three fits: 3000 training samples (10 runs of
300) x 512 features -> 5000 voxels with planted weights of varying strength,
600 test samples, 9 alphas. Fits:

* ours: ``GroupedRidgeCV`` (alpha per voxel by 5-fold run-grouped CV, refit),
* scikit-learn ``RidgeCV(alphas, alpha_per_target=True)`` (efficient
  leave-one-sample-out GCV; it accepts no grouped ``cv``). Given float64
  input, its fastest and native precision (float32 input is slower for it),
* himalaya ``RidgeCV(alphas, cv=<the same grouped splits>)``, numpy backend,
  float32 input, ``fit_intercept=True`` like the other two.

Checks: at a fixed alpha our predictions equal ``sklearn.linear_model.Ridge``
to 1e-4 (max abs difference, z-scored data); with alpha selection the mean
test Pearson r of the three fits agree within 0.01.

``--paper-shape`` runs, instead, one layer of a paper-scale job scaled to a
single node, the way the encoding job runs it: 12,000 training TRs (40 runs)
+ 600 test TRs, 4,096 features (1,024 dimensions x 4 delays), 20,000 voxels,
10 alphas, 1,000 block permutations and 200 bootstrap replicates, responses
z-scored into float32, the voxel chunk planned for a 16 GB budget
(``--budget-gb``). It prints the time, the planned and the measured peak
resident memory, and fails if the measured peak exceeds the budget. No other
tool runs this shape in comparable time, so it has no baseline; its time per
operation is what the dry-run plan scales (``benchmarks/throughput.json``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_runs, run_len, n_test, n_feat, n_vox = 10, 300, 600, 512, 5000
    n = n_runs * run_len + n_test
    X = rng.standard_normal((n, n_feat))
    # Weights of log-uniform strength (a quarter of the voxels carry none),
    # so that the best alpha (~ n_feat / strength^2) spans the grid.
    W = rng.standard_normal((n_feat, n_vox)) / np.sqrt(n_feat)
    W *= np.exp(rng.uniform(np.log(0.2), np.log(3.0), n_vox)) * (rng.random(n_vox) > 0.25)
    Y = X @ W + rng.standard_normal((n, n_vox))
    groups = np.repeat(np.arange(n_runs), run_len)
    n_train = n_runs * run_len

    def zscore(a):
        return (a - a.mean(0)) / a.std(0)

    # z-score per run, as prepare_design / prepare_responses do
    Xtr = np.concatenate([zscore(X[:n_train][groups == g]) for g in range(n_runs)])
    Ytr = np.concatenate([zscore(Y[:n_train][groups == g]) for g in range(n_runs)])
    return Xtr, Ytr, groups, zscore(X[n_train:]), zscore(Y[n_train:])


def best_times(fits: dict, repeats: int):
    """Best wall time of each fit; rounds interleave the methods so that a
    burst of load from elsewhere does not hit one method only."""
    times = {name: [] for name in fits}
    models = {}
    for _ in range(repeats):
        for name, fit in fits.items():
            t0 = time.perf_counter()
            models[name] = fit()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}, models


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backend", default="auto", help="GroupedRidgeCV backend")
    parser.add_argument("--paper-shape", action="store_true", help="one paper-scale layer within --budget-gb")
    parser.add_argument("--budget-gb", type=float, default=16.0)
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/throughput.json")
    args = parser.parse_args(argv)
    if args.paper_shape:
        from _threads import limit_threads

        limit_threads(args.threads)
        return paper_shape(args)

    from _threads import limit_threads

    limit_threads(args.threads)

    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV as HimalayaRidgeCV
    from sklearn.linear_model import Ridge, RidgeCV

    from brainphase.encoding import GroupedRidgeCV, grouped_splits, pearson_columns

    print(f"threads: {args.threads} (BLAS, OpenMP, torch); best of {args.repeats} interleaved rounds")

    Xtr, Ytr, groups, Xte, Yte = make_data()
    alphas = np.logspace(1, 4, 9)
    splits = grouped_splits(groups, n_splits=5)
    X32, Y32 = Xtr.astype(np.float32), Ytr.astype(np.float32)

    # Exactness at a fixed alpha.
    alpha = 1000.0
    fixed = GroupedRidgeCV(alphas=[alpha], backend=args.backend).fit(X32, Y32, groups)
    ref = Ridge(alpha=alpha).fit(Xtr, Ytr)
    max_diff = float(np.abs(fixed.predict(Xte) - ref.predict(Xte)).max())
    print(f"fixed alpha={alpha:g}: max |ours - sklearn Ridge| on test predictions = {max_diff:.2e}")
    assert max_diff < 1e-4, max_diff
    del fixed, ref

    set_backend("numpy")
    times, models = best_times(
        {
            "ours": lambda: GroupedRidgeCV(alphas=alphas, n_splits=5, backend=args.backend).fit(X32, Y32, groups),
            "sklearn": lambda: RidgeCV(alphas=alphas, alpha_per_target=True).fit(Xtr, Ytr),
            "himalaya": lambda: HimalayaRidgeCV(alphas=alphas, cv=splits, fit_intercept=True).fit(X32, Y32),
        },
        args.repeats,
    )
    t_ours, t_sk, t_hi = times["ours"], times["sklearn"], times["himalaya"]
    ours, sk, hi = models["ours"], models["sklearn"], models["himalaya"]

    rows = [
        (f"ours GroupedRidgeCV ({ours.solver_}, {args.backend})", t_ours, ours.predict(Xte), ours.best_alphas_),
        ("sklearn RidgeCV (GCV, float64)", t_sk, sk.predict(Xte), np.asarray(sk.alpha_)),
        ("himalaya RidgeCV (numpy, float32)", t_hi, np.asarray(hi.predict(Xte.astype(np.float32))),
         np.asarray(hi.best_alphas_)),
    ]
    print(f"{'method':42s} {'fit (s)':>8s} {'mean test r':>12s} {'median alpha':>13s}")
    mean_r = []
    for name, t, pred, best in rows:
        r = np.nanmean(pearson_columns(Yte, pred))
        mean_r.append(r)
        print(f"{name:42s} {t:8.2f} {r:12.5f} {np.median(best):13.1f}")
    for name, (_, _, _, best) in (("himalaya (same splits)", rows[2]), ("sklearn (GCV)", rows[1])):
        print(f"voxels where ours and {name} pick the same alpha: {np.mean(np.isclose(rows[0][3], best)):.1%}")
    spread = max(mean_r) - min(mean_r)
    print(f"mean test r spread across methods: {spread:.5f}")
    assert spread < 0.01, spread

    if not args.no_record:
        from brainphase.encoding.memory import EncodingShape, fit_flops

        bench = EncodingShape(n_train=len(Xtr), n_test=0, n_features=Xtr.shape[1], n_voxels=Ytr.shape[1],
                              n_alphas=len(alphas), n_folds=5, n_perm=0)
        record_rate("comparison", bench, t_ours, args.threads)
    shape = "encoding fit (3000x512 -> 5000 voxels, 9 alphas)"
    print(f"{shape}: ours {t_ours:.2f}s, himalaya RidgeCV {t_hi:.2f}s, ratio={t_hi / t_ours:.2f}")
    print(f"{shape}: ours {t_ours:.2f}s, sklearn RidgeCV {t_sk:.2f}s, ratio={t_sk / t_ours:.2f}")
    return 0


def record_rate(case: str, shape, seconds: float, threads: int, **extra) -> None:
    """Write the measured operations per second for the dry-run plan; the paper-shape rate takes precedence."""
    from dataclasses import asdict

    from brainphase.encoding.memory import fit_flops
    from brainphase.throughput import default_path, load, record

    path = default_path()
    entry = {k: v for k, v in load(path).get("cpu", {}).get("encoding", {}).items() if k not in ("machine", "date")}
    entry[case] = {**asdict(shape), "seconds": round(seconds, 3), "threads": threads, **extra}
    best = entry.get("paper_shape") or entry[case]
    entry["flops_per_s"] = fit_flops(_shape(best)) / best["seconds"]
    record(path, "encoding", "cpu", **entry)
    print(f"recorded in {path}: {entry['flops_per_s'] / 1e9:.1f} GFLOP/s ({'paper shape' if 'paper_shape' in entry else case})")


def _shape(d: dict):
    from dataclasses import fields

    from brainphase.encoding.memory import EncodingShape

    return EncodingShape(**{f.name: d[f.name] for f in fields(EncodingShape)})


def paper_shape(args) -> int:
    """One layer of a paper-scale encoding job within a memory budget; prints time and peak memory."""
    import resource

    from brainphase.encoding.delays import prepare_responses
    from brainphase.encoding.memory import EncodingShape, plan_encoding
    from brainphase.encoding.model import fit_encoding

    n_runs, run_len, n_test, d, n_delays, n_vox = 40, 300, 600, 1024, 4, 20_000
    rng = np.random.default_rng(0)
    # Low-rank planted structure keeps the data cheap to make: 64 latent
    # series drive both the features and the voxels.
    latent = rng.standard_normal((n_runs * run_len + n_test, 64)).astype(np.float32)
    X = latent @ rng.standard_normal((64, d * n_delays), dtype=np.float32) + rng.standard_normal(
        (len(latent), d * n_delays), dtype=np.float32)
    mix = rng.standard_normal((64, n_vox), dtype=np.float32) * 0.2
    raw = [latent[i * run_len:(i + 1) * run_len] @ mix + rng.standard_normal((run_len, n_vox), dtype=np.float32)
           for i in range(n_runs)]
    raw_test = [latent[-n_test:] @ mix + rng.standard_normal((n_test, n_vox), dtype=np.float32)]
    Xtr, Xte = X[:-n_test].astype(np.float64), X[-n_test:].astype(np.float64)
    del X
    groups = np.repeat(np.arange(n_runs), run_len)
    budget = int(args.budget_gb * 1e9)
    t0 = time.perf_counter()
    ytr, _ = prepare_responses(raw, 0, dtype=np.float32)
    yte, _ = prepare_responses(raw_test, 0, dtype=np.float32)
    shape = EncodingShape(n_train=len(ytr), n_test=n_test, n_features=Xtr.shape[1], n_voxels=n_vox,
                          n_alphas=10, n_folds=5, n_perm=1000, brain_bytes=sum(r.nbytes for r in raw + raw_test))
    plan = plan_encoding(shape, budget)
    print(f"plan: {plan.voxel_chunk} voxels per chunk, folds {'kept' if plan.keep_bases else 'recomputed'}, "
          f"predicted peak {plan.peak_bytes / 1e9:.2f} GB of {args.budget_gb:g} GB")
    res = fit_encoding(Xtr, ytr, groups, Xte, yte, alphas=np.logspace(1, 4, 10), n_perm=1000, n_boot=200,
                       backend=args.backend, voxel_chunk=plan.voxel_chunk)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"mean test r {np.nanmean(res.r):.3f}, {res.significant.mean():.1%} of voxels significant")
    if not args.no_record:
        record_rate("paper_shape", shape, seconds, args.threads, peak_gb=round(peak / 1e9, 2))
    print(f"encoding paper shape (12000x4096 -> 20000 voxels, 10 alphas, 1000 permutations, {args.threads} threads): "
          f"ours {seconds:.1f}s, peak memory {peak / 1e9:.2f} GB (planned {plan.peak_bytes / 1e9:.2f} GB), "
          f"budget {args.budget_gb:g} GB")
    return 0 if peak <= budget else 1


if __name__ == "__main__":
    raise SystemExit(main())
