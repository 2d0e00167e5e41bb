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
    args = parser.parse_args(argv)

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

    shape = "encoding fit (3000x512 -> 5000 voxels, 9 alphas)"
    print(f"{shape}: ours {t_ours:.2f}s, himalaya RidgeCV {t_hi:.2f}s, ratio={t_hi / t_ours:.2f}")
    print(f"{shape}: ours {t_ours:.2f}s, sklearn RidgeCV {t_sk:.2f}s, ratio={t_sk / t_ours:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
