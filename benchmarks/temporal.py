"""Benchmark the lag x layer decoding against a scikit-learn loop.

Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/temporal.py

Both methods run single-threaded (``threadpoolctl.threadpool_limits(1)`` for
BLAS and OpenMP, ``torch.set_num_threads(1)``): the comparison is of
algorithms, not of thread counts. Timings are the best of ``--rounds``
interleaved rounds (ours, then the sklearn loop, in each round), so that
load from other processes hits both alike; the machine should otherwise be
idle.

Synthetic data with a planted computational path: 6000 words in 30 stories,
32 channels, 61 lags (-0.1 ... 0.5 s at 100 Hz), 5 layers x 128 dimensions.
Layer l's activations mix 8 latent word features (plus noise); those
features appear in the sensors as a Gaussian bump at 0.05 + 0.1 l s.

* ours: :func:`brainphase.temporal.lagged_ridge.lag_layer_scores`, float64
  (the exact criterion: one batched SVD per fold and chunk of lags,
  leave-one-out alpha per column from a low-rank form of the alphas' weights
  with a rigorous error bound and an exact check of close alphas; 5 grouped
  folds, 13 alphas), the timed one in the last line; its
  ``dtype="float32"`` variant (every alpha's product in float32, the
  workflow's setting) is timed once, for information;
* sklearn loop: for every (layer, lag, fold) ``make_pipeline(StandardScaler(),
  RidgeCV(alphas, alpha_per_target=True))`` fit on the training fold and
  predict on the held-out fold (same folds), then the same r(l, t).

Checks (exit non-zero if not): the r(l, t) arrays agree to max |diff| < 1e-6
(both are the same closed form in float64; the differences are round-off,
~1e-15). The full sklearn loop takes ~5 min single-threaded, so by default it
runs on ``--sk-lags`` evenly spaced lags (all layers and folds) and its full
time is extrapolated linearly in the number of lags (every lag costs the
same); ``--sk-lags 0`` runs it on all lags.

Also printed: the peak resident memory after ours (data and interpreter
included) next to the bound of :mod:`brainphase.temporal.memory`. Recorded
for the dry-run plan (``benchmarks/throughput.json``, stage "temporal", unless
``--no-record``): our seconds, the shape, the float32 variant's seconds and
the peak.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def make_data(seed: int = 0, n_words=6000, n_stories=30, n_channels=32, n_layers=5, dim=128,
              sfreq=100.0, tmin=-0.1, tmax=0.5, n_latent=8):
    rng = np.random.default_rng(seed)
    times = np.arange(round(tmin * sfreq), round(tmax * sfreq) + 1) / sfreq
    groups = np.repeat(np.arange(n_stories), -(-n_words // n_stories))[:n_words]
    brain = rng.standard_normal((n_words, n_channels, times.size))
    targets = []
    for layer in range(n_layers):
        latent = rng.standard_normal((n_words, n_latent))
        latency = 0.05 + 0.1 * layer
        bump = np.exp(-0.5 * ((times - latency) / 0.04) ** 2)
        mixing = rng.standard_normal((n_channels, n_latent)) * 0.3
        brain += (latent @ mixing.T)[:, :, None] * bump
        targets.append(latent @ rng.standard_normal((n_latent, dim)) + 2.0 * rng.standard_normal((n_words, dim)))
    return brain, targets, groups, times


def sklearn_loop(brain, targets, splits, alphas, lags):
    """r (n_layers, len(lags)) from a (layer, lag, fold) loop of sklearn pipelines."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from brainphase.encoding import pearson_columns

    r = np.empty((len(targets), len(lags)))
    for i, Y in enumerate(targets):
        for j, t in enumerate(lags):
            X = brain[:, :, t]
            pred = np.empty_like(Y, dtype=np.float64)
            for train, test in splits:
                model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, alpha_per_target=True))
                pred[test] = model.fit(X[train], Y[train]).predict(X[test])
            r[i, j] = np.nanmean(pearson_columns(Y, pred))
    return r


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sk-lags", type=int, default=8,
                        help="lags for the sklearn loop (0: all, no extrapolation)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each method's best is kept")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/throughput.json")
    args = parser.parse_args(argv)

    from _threads import limit_threads

    limit_threads(1)

    from brainphase.encoding import grouped_splits
    from brainphase.temporal.lagged_ridge import lag_layer_scores
    from brainphase.temporal.memory import DEFAULT_MAX_ELEMENTS, TemporalShape, default_lags, fit_peak_bytes
    from brainphase.temporal.path import alignment_score, path_statistic, peak_lags

    print(f"threads: 1 for both methods (threadpoolctl BLAS + OpenMP, torch); best of {args.rounds} "
          "interleaved rounds")

    brain, targets, groups, times = make_data()
    alphas = np.logspace(-1, 5, 13)
    n_splits = 5
    n_words, n_channels, n_lags = brain.shape
    n_layers, dim = len(targets), targets[0].shape[1]
    print(f"data: {n_words} words, {np.unique(groups).size} stories, {n_channels} channels, "
          f"{n_lags} lags, {n_layers} layers x {dim} dims, {alphas.size} alphas")
    splits = grouped_splits(groups, n_splits)
    if args.sk_lags <= 0 or args.sk_lags >= n_lags:
        lags = np.arange(n_lags)
    else:
        lags = np.unique(np.linspace(0, n_lags - 1, args.sk_lags).round().astype(int))

    t_ours = t_sk_run = np.inf
    for i in range(args.rounds):
        t0 = time.perf_counter()
        res = lag_layer_scores(brain, targets, groups, alphas=alphas, n_splits=n_splits)
        t_ours = min(t_ours, time.perf_counter() - t0)
        if i == 0:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t0 = time.perf_counter()
        r_sk = sklearn_loop(brain, targets, splits, alphas, lags)
        t_sk_run = min(t_sk_run, time.perf_counter() - t0)
        print(f"round {i + 1}: ours {t_ours:.2f}s, sklearn loop on {lags.size} lags {t_sk_run:.2f}s (best so far)")
    shape = TemporalShape(n_words, n_channels, n_lags, n_layers * dim, n_layers * dim,
                          max(len(tr) for tr, _ in splits), max(len(te) for _, te in splits), alphas.size,
                          n_splits, brain_itemsize=brain.itemsize)
    bound = fit_peak_bytes(shape, default_lags(shape), DEFAULT_MAX_ELEMENTS)
    peaks = peak_lags(res.r, times)
    rho, p = path_statistic(peaks)
    print(f"ours: {t_ours:.2f}s; peak lags {np.round(peaks, 2).tolist()} s (planted "
          f"{[round(0.05 + 0.1 * l, 2) for l in range(n_layers)]}); alignment score "
          f"{alignment_score(res.r):.3f}; rho={rho:.2f} p={p:.4f}; alphas at grid edge {res.edge_fraction:.1%}")
    print(f"ours: peak resident memory {peak / 2**20:.0f} MB (data and interpreter included), "
          f"bound of brainphase.temporal.memory {bound / 2**20:.0f} MB")
    t0 = time.perf_counter()
    res32 = lag_layer_scores(brain, targets, groups, alphas=alphas, n_splits=n_splits, dtype="float32")
    t_32 = time.perf_counter() - t0
    print(f"ours dtype='float32' (every alpha's product in float32): {t_32:.2f}s; same alpha as float64 "
          f"for {np.mean(res32.best_alpha == res.best_alpha):.2%} of choices, max |r diff| "
          f"{np.abs(res32.r - res.r).max():.1e}")

    max_diff = float(np.nanmax(np.abs(r_sk - res.r[:, lags])))
    print(f"sklearn loop on {lags.size} lags ({n_layers * lags.size * n_splits} fits): {t_sk_run:.2f}s; "
          f"max |r ours - r sklearn| = {max_diff:.2e}")
    if not max_diff < 1e-6:
        print(f"FAILED: r of ours and of the sklearn loop differ by {max_diff:.2e} (>= 1e-6)")
        return 1
    t_sk = t_sk_run * n_lags / lags.size
    if lags.size < n_lags:
        print(f"sklearn loop time EXTRAPOLATED to all {n_lags} lags: {t_sk_run:.2f}s x {n_lags}/{lags.size} "
              f"= {t_sk:.2f}s (run with --sk-lags 0 to time all lags)")
    if not args.no_record:
        from brainphase.throughput import default_path, record

        record(default_path(), "temporal", "cpu", seconds=round(t_ours, 3), n_words=n_words,
               n_channels=n_channels, n_lags=n_lags, n_layers=n_layers, dim=dim, n_alphas=int(alphas.size),
               n_splits=n_splits, threads=1, dtype="float64", seconds_float32=round(t_32, 3),
               peak_bytes=int(peak))
        print(f"recorded in {default_path()}: stage temporal, {t_ours:.2f}s at this shape")
    what = f"temporal fit ({n_layers} layers x {n_lags} lags x {n_splits} folds)"
    print(f"{what}: ours {t_ours:.2f}s, sklearn loop {t_sk:.2f}s, ratio={t_sk / t_ours:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
