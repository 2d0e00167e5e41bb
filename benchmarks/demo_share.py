"""Time per lm-eval benchmark job and its share of the demo, from Snakemake's benchmark files.

Run after `make demo` (reads results/benchmarks/**.tsv, one per job, and the
last Snakemake log for the wall time). Job times are each job's own wall
time; with 2 cores, jobs overlap, so shares are of the summed job time.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd


def job_times(root: Path) -> pd.DataFrame:
    rows = []
    for f in root.rglob("*.tsv"):
        t = pd.read_csv(f, sep="\t")
        rows.append({"rule": f.relative_to(root).parts[0].removesuffix(".tsv"), "job": str(f.relative_to(root)),
                     "seconds": float(t["s"].iloc[-1])})
    return pd.DataFrame(rows)


def wall_time(log_dir: Path) -> float | None:
    logs = sorted(log_dir.glob("*.snakemake.log"))
    if not logs:
        return None
    stamps = re.findall(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", logs[-1].read_text())
    if len(stamps) < 2:
        return None
    t = pd.to_datetime(stamps, format="%a %b %d %H:%M:%S %Y")
    return (t.max() - t.min()).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", default="results")
    args = ap.parse_args()
    jobs = job_times(Path(args.results) / "benchmarks")
    if jobs.empty:
        raise SystemExit(f"no benchmark files under {args.results}/benchmarks: run `make demo` first")
    per_rule = jobs.groupby("rule")["seconds"].agg(["count", "sum", "mean", "max"]).sort_values("sum", ascending=False)
    total = jobs["seconds"].sum()
    per_rule["share_%"] = 100 * per_rule["sum"] / total
    print(per_rule.round(2).to_string())
    wall = wall_time(Path(".snakemake/log"))
    lm = jobs[jobs["rule"] == "lmeval"]
    print(f"lm-eval jobs: {len(lm)}, mean {lm['seconds'].mean():.1f}s per job, "
          f"{100 * lm['seconds'].sum() / total:.1f}% of summed job time"
          + (f"; demo wall time {wall:.0f}s" if wall else ""))
    print(f"lm-eval benchmark jobs ({len(lm)}): ours {lm['seconds'].sum():.1f}s, "
          f"whole demo (summed jobs) {total:.1f}s, ratio={total / lm['seconds'].sum():.2f}")


if __name__ == "__main__":
    main()
