"""Per-stage plan rows of the sparse coders: SAE training, SAE matching and the brain-LM crosscoder.

Times come from their benchmarks' recorded rates (:mod:`brainphase.throughput`),
peaks from the formulas the jobs plan with.
"""

from __future__ import annotations

from .plan_shapes import model_and_subjects


def sparse_coding_rows(config: dict, counts: dict, subjects, brain_path, budget_of, results, rates: dict) -> list[dict]:
    """SAE training, SAE matching and the crosscoder: times from their benchmarks, peaks from their formulas."""
    from . import study
    from .planning import CPU_BYTES_PER_PARAM, model_size, stimulus_units

    rows = []
    sae = config["sae"]
    for name, jobs in counts.get("sae", {}).items():
        size = model_size(next(m for m in config["models"] if m["name"] == name))
        row = {"stage": f"sae {name}", "jobs": jobs, "budget_bytes": budget_of("sae")}
        if size is None:
            rows.append({**row, "note": "model size unknown"})
            continue
        n_latents = size.d_model * sae["expansion"]
        tokens = stimulus_units("sae_corpus", config, results, "token")
        from .sae.splice import ce_eval_peak_bytes
        from .sae.train import sae_peak_bytes  # imports torch: only for a study with SAE jobs

        # Training, then (the language model loaded only then) the CE metrics.
        row["peak_bytes"] = max(sae_peak_bytes(size.d_model, n_latents, sae["batch_size"],
                                               int(0.1 * (tokens or 0)), sae["k"], sae["k_aux"]),
                                ce_eval_peak_bytes(size.params, CPU_BYTES_PER_PARAM, size.d_model, size.context,
                                                   n_latents))
        rec = rates.get("sae")
        if rec and tokens:
            # A step's work grows with the dictionary: width x latents.
            rate = rec["tokens_per_s"] * (rec["d_in"] * rec["n_latents"]) / (size.d_model * n_latents)
            row["seconds"] = tokens * sae["epochs"] / rate
        row["note"] = ("corpus tokens unknown until the SAE corpus is built" if not tokens else
                       "no sae benchmark recorded (run benchmarks/sae.py)" if not rec else
                       f"{n_latents} latents, {tokens:,} tokens x {sae['epochs']} epochs")
        rows.append(row)
    rows += matching_rows(config, counts, budget_of("sae_matching"), rates)
    rows += crosscoder_rows(config, counts.get("crosscoder", {}), subjects, brain_path, budget_of("crosscoder"),
                           rates)
    return rows


def matching_rows(config: dict, counts: dict, budget_bytes, rates: dict) -> list[dict]:
    from . import study
    from .planning import model_size

    jobs = counts.get("sae_matching", {}).get("all", 0)
    names = list(counts.get("sae", {}))
    if not jobs or not names:
        return []
    sizes = [model_size(next(m for m in config["models"] if m["name"] == n)) for n in names]
    row = {"stage": "sae_matching", "jobs": jobs, "budget_bytes": budget_bytes}
    if None in sizes:
        return [{**row, "note": "model size unknown"}]
    from .sae.matching import JOB_OVERHEAD_BYTES, matching_peak_bytes

    shapes = [(s.d_model * config["sae"]["expansion"], s.d_model) for s in sizes]
    # Consecutive checkpoints plus the seed baseline: one comparison per SAE but the first of each model.
    pairs = [(n, d) for name, (n, d) in zip(names, shapes) for _ in range(len(study.sae_runs(config, name)) - 1)]
    room = None if budget_bytes is None else budget_bytes - JOB_OVERHEAD_BYTES  # as the job computes it
    row["peak_bytes"] = JOB_OVERHEAD_BYTES + max(matching_peak_bytes(n, n, d, room) for n, d in shapes)
    rec = rates.get("sae_matching")
    if rec:
        row["seconds"] = sum(rec["seconds"] * (n * n * d) / (rec["n_latents"] ** 2 * rec["d"]) for n, d in pairs)
    row["note"] = (f"{len(pairs)} comparisons of {max(n for n, _ in shapes):,} latents" if rec else
                   "no sae_matching benchmark recorded (run benchmarks/matching.py)")
    return [row]


def crosscoder_rows(config: dict, counts: dict, subjects, brain_path, budget_bytes, rates: dict) -> list[dict]:
    """Per model: crosscoder jobs, peak from the job's formula, time from the crosscoder benchmark's rate.

    A job trains twice (the real pairing and the time-shuffled null), each at
    most ``crosscoder.epochs`` passes over the training TRs; an epoch's work is
    TRs x (voxels + LM width) x latents, the unit the benchmark's rate counts.
    """
    from .crosscoder.memory import crosscoder_peak_bytes

    cc = config["crosscoder"]
    rec = rates.get("crosscoder")
    rows = []
    for name, jobs in counts.items():
        size, shapes, why = model_and_subjects(config, name, subjects, brain_path)
        row = {"stage": f"crosscoder {name}", "jobs": jobs, "budget_bytes": budget_bytes}
        if why:
            rows.append({**row, "note": why})
            continue
        row["peak_bytes"] = max(crosscoder_peak_bytes(sh.train_samples + sh.test_samples, sh.channels,
                                                      size.d_model, cc["d_latent"], cc["batch_size"],
                                                      budget_bytes) for sh in shapes)
        sh = max(shapes, key=lambda x: x.train_samples * x.channels)
        if rec:
            work = 2 * cc["epochs"] * sh.train_samples * (sh.channels + size.d_model) * cc["d_latent"]
            row["seconds"] = work / rec["units_per_s"]
            row["note"] = (f"2 fits x at most {cc['epochs']} epochs of {sh.train_samples} TRs x {sh.channels} voxels "
                           "(early stopping may end them sooner)")
        else:
            row["note"] = "no crosscoder benchmark recorded (run benchmarks/crosscoder.py)"
        rows.append(row)
    return rows
