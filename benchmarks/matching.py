"""Benchmark SAE feature matching against scipy's dense Hungarian algorithm.

Run as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/matching.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/matching.py --large

Same decoders for both sides of the comparison: d = 512, 8,192 latents a side,
70% of B's latents planted as A's with noise (cosine ≈ 0.8), the rest random,
3% of each side dead. Timings are the best of ``--repeats`` interleaved
rounds, with the same threads (default: all cores).

* ours: ``match_features`` (float32 row chunks, sparse candidate graph,
  LP-dual certificate; :mod:`brainphase.sae.assignment`),
* scipy: the float64 cosine matrix (``decoder_cosine``) and
  ``scipy.optimize.linear_sum_assignment(maximize=True)``, what a user would
  write (and what ``match_features`` did for every size before).

Checks: the same pairs (latent_a, latent_b), cosines equal to 1e-12, the same
summary. ``--large`` runs ours alone at 65,536 latents a side under a 4 GiB
budget and prints its time and peak RSS, which must stay under the budget plus
the interpreter's share measured before the data. d = 1024 by default: on 2
busy cores that run took 12 min, 8 of them in the float32 cosine pass, which
grows with d (d = 4096: ~35 min). It records the scale run (n_latents, d,
seconds, peak_gb) and the comparison (dense_seconds at dense_n_latents)
for the dry-run plan; a run without ``--large`` keeps the last scale run.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np


def make_decoders(n: int, d: int, seed: int = 0, planted: float = 0.7, noise: float = 0.75, dead: float = 0.03):
    """Two (d × n) float32 decoders, each the transpose of C-contiguous latent rows, and alive masks."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d), dtype=np.float32)
    B = rng.standard_normal((n, d), dtype=np.float32)
    m = int(planted * n)
    src, dst = rng.permutation(n)[:m], rng.permutation(n)[:m]
    B[dst] = A[src] + noise * rng.standard_normal((m, d), dtype=np.float32)
    return A.T, B.T, rng.random(n) >= dead, rng.random(n) >= dead


def scipy_dense(W_a, W_b, alive_a, alive_b):
    from scipy.optimize import linear_sum_assignment

    from brainphase.sae.matching import decoder_cosine

    ids_a, ids_b = np.flatnonzero(alive_a), np.flatnonzero(alive_b)
    cos = decoder_cosine(W_a[:, ids_a], W_b[:, ids_b])
    ra, cb = linear_sum_assignment(cos, maximize=True)
    return ids_a[ra], ids_b[cb], cos[ra, cb]


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def compare(args) -> dict:
    from brainphase.sae.matching import match_features

    W_a, W_b, alive_a, alive_b = make_decoders(args.n, args.d)
    times = {"ours": [], "scipy": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        pairs, summary = match_features(W_a, W_b, 0.7, alive_a, alive_b)
        times["ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ra, cb, c = scipy_dense(W_a, W_b, alive_a, alive_b)
        times["scipy"].append(time.perf_counter() - t0)
    same = np.array_equal(pairs["latent_a"], ra) and np.array_equal(pairs["latent_b"], cb)
    diff = float(np.abs(pairs["cosine"].to_numpy() - c).max()) if same else float("nan")
    print(f"pairs: {len(ra)}, identical: {same}, max |cosine difference| {diff:.1e}, "
          f"matched: {summary['n_matched']} vs {int((c >= 0.7).sum())}")
    assert same, "ours and scipy's dense Hungarian pair different latents"
    assert diff < 1e-12, diff
    assert summary["n_matched"] == int((c >= 0.7).sum()), summary
    # Ours' own peak, untimed: tracemalloc sees numpy's arrays, ru_maxrss would see scipy's run too.
    tracemalloc.start()
    match_features(W_a, W_b, 0.7, alive_a, alive_b)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"ours": min(times["ours"]), "scipy": min(times["scipy"]), "ours_peak": traced + 4 * W_a.size * 2}


def large(args) -> dict:
    """Ours alone at scale; all latents alive, so this is what ``match_features`` runs, with its work counted."""
    from brainphase.sae.assignment import max_cosine_assignment
    from brainphase.sae.matching import matching_peak_bytes

    baseline = peak_rss()
    W_a, W_b, _, _ = make_decoders(args.large_n, args.large_d, seed=1)
    budget = int(args.budget_gb * 2**30)
    stats: dict = {}
    t0 = time.perf_counter()
    _, _, c = max_cosine_assignment(W_a.T, W_b.T, budget, stats=stats)
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    planned = matching_peak_bytes(args.large_n, args.large_n, args.large_d, budget)
    print(f"{args.large_n} latents, d = {args.large_d}, budget {args.budget_gb:g} GiB: {seconds:.1f}s, "
          f"peak RSS {peak / 2**30:.2f} GiB ({(peak - baseline) / 2**30:.2f} GiB over the interpreter's "
          f"{baseline / 2**30:.2f}), planned {planned / 2**30:.2f} GiB, mean cosine {c.mean():.4f}")
    print("work: " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()))
    assert peak - baseline <= budget, f"peak {peak - baseline} bytes over the interpreter exceeds the budget {budget}"
    return {"n_latents": args.large_n, "d": args.large_d, "seconds": round(seconds, 2),
            "peak_gb": round(peak / 2**30, 3), "budget_gb": args.budget_gb}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--n", type=int, default=8192, help="latents a side in the comparison")
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--large", action="store_true", help="also run ours alone at --large-n latents")
    parser.add_argument("--large-n", type=int, default=65536)
    parser.add_argument("--large-d", type=int, default=1024)
    parser.add_argument("--budget-gb", type=float, default=4.0)
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/throughput.json")
    args = parser.parse_args(argv)

    from _threads import limit_threads

    limit_threads(args.threads)
    from brainphase import throughput

    print(f"threads: {args.threads} (BLAS, OpenMP, torch); best of {args.repeats} interleaved rounds")
    values = large(args) if args.large else {}
    t = compare(args)
    if not args.no_record:
        path = throughput.default_path()
        old = throughput.load(path).get("cpu", {}).get("sae_matching", {})
        mine = {"n_latents": args.n, "d": args.d, "seconds": round(t["ours"], 2)}
        kept = {k: v for k, v in old.items() if k not in ("machine", "date")}
        # A --large run sets the scale entry; a plain run keeps the last one and refreshes the comparison.
        values = values or ({k: kept[k] for k in ("n_latents", "d", "seconds", "peak_gb", "budget_gb") if k in kept}
                            or {**mine, "peak_gb": round(t["ours_peak"] / 2**30, 3)})
        throughput.record(path, "sae_matching", "cpu", **values, dense_seconds=round(t["scipy"], 2),
                          dense_n_latents=args.n, dense_d=args.d, compared_seconds=round(t["ours"], 2))
    print(f"matching {args.n} latents: ours {t['ours']:.2f}s, scipy dense Hungarian {t['scipy']:.2f}s, "
          f"ratio={t['scipy'] / t['ours']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
