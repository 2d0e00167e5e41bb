"""Per stage of a study: how many jobs, how long each takes and how much memory it peaks at.

Printed by the dry run after the disk plan (:mod:`brainphase.planning`).
Times are measured rates scaled by counted work: each ``benchmarks/*.py``
records what it timed on a known shape (:mod:`brainphase.throughput`), and
each stage's cost model below says how the work grows with the study's
shapes. A stage without a recorded benchmark, or whose shapes are unknown
before its inputs exist, prints "?" with the reason, never a guess. Peak
memory comes from the same formula the job plans its chunks with, under the
``mem_mb`` the profile gives its rule.
"""

from __future__ import annotations

import math

import pandas as pd

from .encoding.memory import MIN_CHUNK, EncodingShape, fit_flops, peak_bytes, plan_encoding
from .plan_shapes import SubjectShape, epochs_shape, model_and_subjects, subject_shape  # noqa: F401 (re-exported)
from .planning import CPU_BYTES_PER_PARAM, GB


def encoding_estimate(size, n_sites: int, enc: dict, shape: SubjectShape, budget_bytes: int | None,
                      rate: dict | None) -> dict:
    """Seconds and peak bytes of one encoding job (one checkpoint, one subject, every layer and site)."""
    trim = 2 * enc["trim"]
    s = EncodingShape(n_train=max(1, shape.train_samples - trim), n_test=max(1, shape.test_samples - trim),
                      n_features=size.d_model * len(enc["delays"]), n_voxels=shape.channels,
                      n_alphas=enc["alphas"]["num"], n_folds=enc["cv_splits"], n_perm=enc["n_perm"],
                      # The job reads its runs one at a time; it holds the test run's repeats
                      # (ten for LeBel's UTS01-03) for the noise ceiling.
                      d_model=size.d_model, brain_bytes=11 * shape.test_samples * shape.channels * 4)
    out = {"peak_bytes": None, "seconds": None, "note": f"shape from {shape.source}"}
    try:
        plan = plan_encoding(s, budget_bytes)
        out["peak_bytes"] = plan.peak_bytes
    except MemoryError as err:
        # The job would stop at once: say so, with the least it needs and its time once given that.
        out["peak_bytes"] = peak_bytes(s, MIN_CHUNK, keep_bases=False)
        out["over_budget"] = True
        out["note"] = str(err)
    if rate:
        layers = n_sites * (size.n_layers + 1)
        out["seconds"] = layers * fit_flops(s) / rate["flops_per_s"]
    else:
        out["note"] += "; no encoding benchmark recorded (run benchmarks/encoding.py)"
    return out


def scaled_seconds(record: dict | None, work: float, bench_work: float) -> float | None:
    """A recorded time scaled by the ratio of work; None without a record."""
    if not record or bench_work <= 0:
        return None
    return record["seconds"] * work / bench_work


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_stages(rows: list[dict], device: str, machine: str | None) -> str:
    """Lines of the per-stage plan: jobs x time per job (= total), peak memory against the rule's budget."""
    lines = [f"brainphase stages (time on {device}: {machine or 'no benchmark recorded'}; peak = resident memory):"]
    if not rows:
        lines.append("  (no benchmarked stage runs in this study)")
    width = max((len(r["stage"]) for r in rows), default=0)
    for r in rows:
        per = r.get("seconds")
        total = per * r["jobs"] if per is not None else None
        peak = r.get("peak_bytes")
        budget = r.get("budget_bytes")
        lines.append(
            f"  {r['stage']:<{width}s} {r['jobs']:>5d} jobs x {_fmt_time(per):>7s} = {_fmt_time(total):>7s}; "
            f"peak {'?' if peak is None else f'{peak / GB:.1f} GB'}"
            + (f" of {budget / GB:.1f} GB" if budget else "") + (" EXCEEDS THE BUDGET" if r.get("over_budget") or (peak and budget and peak > budget) else "") + (f"  [{r['note']}]" if r.get("note") else ""))
    return "\n".join(lines)


def stage_table(rows: list[dict]) -> pd.DataFrame:
    """The rows as a table (for tests and reports)."""
    return pd.DataFrame(rows, columns=["stage", "jobs", "seconds", "peak_bytes", "budget_bytes", "note"])


def encoding_rows(config: dict, models: list[str], n_steps: dict, subjects: list[tuple[dict, str]], brain_path,
                  budget_bytes: int | None, rates: dict) -> list[dict]:
    """One row per model: its encoding jobs, the slowest job's time and the largest job's peak."""
    from .planning import model_size

    rows = []
    n_sites = len(config["activations"]["sites"])
    for name in models:
        size = model_size(next(m for m in config["models"] if m["name"] == name))
        row = {"stage": f"encoding {name}", "jobs": n_steps[name] * len(subjects), "budget_bytes": budget_bytes}
        ests = []
        for dataset, subject in subjects:
            shape = subject_shape(brain_path(dataset["name"], subject), dataset)
            if size is None or shape is None:
                row["note"] = ("model size unknown" if size is None else
                               f"shape of {dataset['name']}/{subject} unknown: load it or give plan_shape")
                break
            ests.append(encoding_estimate(size, n_sites, config["encoding"], shape, budget_bytes,
                                          rates.get("encoding")))
        else:
            if ests:
                secs = [e["seconds"] for e in ests]
                peaks = [e["peak_bytes"] for e in ests]
                row["seconds"] = None if None in secs else max(secs)
                row["peak_bytes"] = None if None in peaks else max(peaks)
                row["note"] = "; ".join(dict.fromkeys(e["note"] for e in ests))
                row["over_budget"] = any(e.get("over_budget") for e in ests)
        rows.append(row)
    return rows


def activation_rows(config: dict, counts: dict, results, budget_bytes, rates: dict) -> list[dict]:
    """Per model and stimulus set: caching jobs (one per checkpoint), time from the recorded tokens/s
    scaled by parameters and the set's tokens, peak of the job with the set's units."""
    from . import study
    from .planning import model_size, stimulus_size

    rec = rates.get("activations")
    act = config["activations"]
    rows = []
    for name, jobs in counts.items():
        size = model_size(next(m for m in config["models"] if m["name"] == name))
        sets = study.stimsets(config, name)
        if not jobs or not sets:
            continue
        per_set = jobs // len(sets)  # every checkpoint caches every set
        for s in sets:
            pooling = study.pooling_of(config, s)
            stim = stimulus_size(s, config, results, pooling)
            row = {"stage": f"activations {name} {s}", "jobs": per_set, "budget_bytes": budget_bytes}
            if size is None or stim is None:
                row["note"] = ("model size unknown" if size is None else
                               f"size of {s} unknown until the set is built: give plan_stimuli.{s} (units, tokens)")
                rows.append(row)
                continue
            from .activations.extract import activations_peak_bytes

            # A whole-story window is at most the model's context.
            window = act["context_window"] or size.context
            n_sites = len(study.sites_of(config, s)) * (size.n_layers + 1) if pooling != "token" else 1
            row["peak_bytes"] = activations_peak_bytes(size.params, CPU_BYTES_PER_PARAM, act["batch_size"], window,
                                                       size.d_model, n_sites, stim.units,
                                                       outputs_in_memory=False)  # the job streams its rows to disk
            if not rec:
                row["note"] = "no activations benchmark recorded (run benchmarks/activations.py)"
            else:
                row["seconds"] = stim.tokens * size.params / (rec["tokens_per_s"] * rec["params"])
                row["note"] = (f"{stim.units:,} units, {stim.tokens:,} tokens from {stim.source}; "
                               f"CPU rate of a {rec.get('model', 'small model')}")
            rows.append(row)
    return rows


def study_stages(config: dict, counts: dict, subjects, brain_path, budget_of, results,
                 measured: dict | None = None, epochs_paths=None) -> str:
    """The per-stage lines of the dry-run plan (see :func:`format_stages`).

    ``measured``: the benchmarks' records (default: ``benchmarks/throughput.json``);
    ``epochs_paths``: the MEG subjects' word-epochs files (read for their shapes where they exist).
    """
    from .throughput import default_path, load

    measured = load(default_path()) if measured is None else measured
    device = "cuda" if "cuda" in measured and config.get("device") in ("auto", "cuda") else "cpu"
    rates = measured.get(device, {})
    machine = next((e.get("machine") for e in rates.values() if isinstance(e, dict)), None)
    n_steps = {name: jobs // max(1, len(subjects)) for name, jobs in counts.get("encoding", {}).items()}
    rows = activation_rows(config, counts.get("activations", {}), results, budget_of("activations"), rates)
    rows += encoding_rows(config, list(counts.get("encoding", {})), n_steps, subjects, brain_path,
                          budget_of("encoding"), rates)
    rows += variance_rows(config, counts.get("variance", {}), subjects, brain_path, budget_of("variance"), rates)
    rows += temporal_rows(config, counts.get("temporal", {}).get("all", 0), epochs_paths or [],
                          budget_of("temporal"), rates)
    from .stage_plan_sparse import sparse_coding_rows

    rows += sparse_coding_rows(config, counts, subjects, brain_path, budget_of, results, rates)
    return format_stages(rows, device, machine)


def variance_rows(config: dict, counts: dict, subjects, brain_path, budget_bytes, rates: dict) -> list[dict]:
    """Per model: variance-partitioning jobs; peak from the job's own chunk plan, time from the encoding rate."""
    from .encoding.variance_memory import plan_variance, shape_from_config, variance_flops

    rec = rates.get("encoding")
    rows = []
    for name, jobs in counts.items():
        size, shapes, why = model_and_subjects(config, name, subjects, brain_path)
        row = {"stage": f"variance {name}", "jobs": jobs, "budget_bytes": budget_bytes}
        if why:
            rows.append({**row, "note": why})
            continue
        sh = max(shapes, key=lambda x: x.train_samples * x.channels)
        s = shape_from_config(sh.train_samples, sh.test_samples, sh.channels, size.d_model, size.n_layers,
                              config["encoding"], config["variance"])
        try:
            plan = plan_variance(s, budget_bytes)
        except MemoryError as err:
            rows.append({**row, "note": str(err)})
            continue
        row["peak_bytes"] = plan.peak_bytes
        if rec:  # himalaya's products (SVDs, matrix products) counted, at the encoding benchmark's rate
            work = variance_flops(s, plan.voxel_chunk, config["encoding"]["block_size"])
            row["seconds"] = s.n_layers * work / rec["flops_per_s"]
        row["note"] = (f"{s.n_layers} layers of {sh.channels} voxels, {plan.voxel_chunk} per chunk; shape from "
                       f"{sh.source}" + ("" if rec else "; no encoding benchmark recorded (run "
                                          "benchmarks/encoding.py), whose rate times the fits"))
        rows.append(row)
    return rows


def temporal_rows(config: dict, jobs: int, epochs_paths, budget_bytes, rates: dict) -> list[dict]:
    """The lag x layer fits: peak from the fit's own formula and time scaled from the benchmark, on the
    largest subject's epochs and the widest model; "?" while no epochs file exists yet."""
    if not jobs:
        return []
    from . import study
    from .planning import model_size
    from .temporal.memory import temporal_peak_bytes

    row = {"stage": "temporal", "jobs": jobs, "budget_bytes": budget_bytes}
    shapes = [s for s in (epochs_shape(p) for p in epochs_paths) if s]
    sizes = [model_size(study.model_entry(config, m)) for m in study.models(config, "temporal")]
    sizes = [z for z in sizes if z is not None]
    if not shapes or not sizes:
        return [{**row, "note": "per-job shapes unknown until the MEG epochs exist (run the word_epochs rules)"
                 if not shapes else "model size unknown"}]
    words, channels, lags = max(shapes, key=lambda s: s[0] * s[1] * s[2])
    size = max(sizes, key=lambda z: (z.n_layers + 1) * z.d_model)
    cfg = config["temporal"]
    layers, alphas, splits = size.n_layers + 1, cfg["alphas"]["num"], cfg["cv_splits"]
    try:
        row["peak_bytes"] = temporal_peak_bytes(words, channels, lags, layers, size.d_model, budget_bytes,
                                                n_alphas=alphas, n_splits=splits, pca=cfg["pca"])
    except MemoryError as err:
        return [{**row, "note": str(err)}]
    rec = rates.get("temporal")
    if not rec:
        return [{**row, "note": "no temporal benchmark recorded (run benchmarks/temporal.py)"}]

    def work(n_words, n_channels, n_lags, n_fit, n_alphas, n_splits):
        # The leave-one-out criterion dominates: per fold, lag and alpha, n_train x rank x fitted columns.
        n_train = n_words - n_words // n_splits
        return n_splits * n_lags * n_alphas * n_train * min(n_train, n_channels) * n_fit

    fit = layers * (size.d_model if cfg["pca"] is None else min(cfg["pca"], size.d_model))
    ours = work(words, channels, lags, fit, alphas, splits)
    bench = work(rec["n_words"], rec["n_channels"], rec["n_lags"], rec["n_layers"] * rec["dim"], rec["n_alphas"],
                 rec["n_splits"])
    row["seconds"] = rec.get("seconds_float32", rec["seconds"]) * ours / bench
    row["note"] = f"{words} words x {channels} sensors x {lags} lags, {layers} layers; scaled from the benchmark"
    return [row]
