# The files each stage gathers (per-job results that one table aggregates) and
# the default target list, all filled in from the templates of paths.smk.


def fill(template, rows):
    """``template`` filled with each row's wildcards, in the rows' order (which aggregation tables keep)."""
    rows = list(rows)
    if not rows:
        return []
    return expand(template, zip, **{k: [row[k] for row in rows] for k in rows[0]})


def checkpoints_of(analysis):
    """Every (model, checkpoint) that runs ``analysis``, in config and training order."""
    return [{"model": m, "step": s} for m in models(analysis) for s in steps(m)]


def subjects_of_kind(kind, source=None):
    """Every (dataset, subject) of the ``kind`` datasets (of one ``source``), in config order."""
    return [
        {"dataset": d["name"], "subject": sub}
        for d in study.datasets(config, kind)
        if source in (None, d["source"])
        for sub in d["subjects"]
    ]


def fingerprint_files():
    return fill(FINGERPRINT, checkpoints_of(None))


def brain_files():
    return fill(BRAIN, subjects_of_kind("fmri"))


def truth_files():
    return fill(BRAIN_TRUTH, subjects_of_kind("fmri", "toyworld"))


def encoding_jobs(template):
    return fill(template, ({**c, **s} for c in checkpoints_of("encoding") for s in subjects_of_kind("fmri")))


def variance_jobs(template):
    return fill(template, ({**c, **s} for c in checkpoints_of("variance") for s in subjects_of_kind("fmri")))


def lmeval_jobs(template):
    return fill(template, ({**c, "task": t} for c in checkpoints_of("evals") for t in benchmark_tasks()))


def probing_jobs(template):
    return fill(template, ({**c, "task": t} for c in checkpoints_of("probing") for t in config["probing"]["tasks"]))


def crosscoder_files(name):
    return fill(
        CROSSCODER, ({**c, **s, "file": name} for c in checkpoints_of("crosscoder") for s in subjects_of_kind("fmri"))
    )


def sae_files(name):
    return fill(
        SAE,
        (
            {"model": m, "step": s, "seed": seed, "file": name}
            for m in models("sae")
            for s, seed in study.sae_runs(config, m)
        ),
    )


def sae_card_files(name):
    return fill(
        SAE,
        (
            {"model": models("sae")[0], "step": s, "seed": config["sae"]["seed"], "file": name}
            for s in study.sae_card_steps(config)
        ),
    )


def context_activation_files():
    """The context sweep's activations of one checkpoint ({model} and {step} left as wildcards)."""
    runs = study.context_runs(config)
    return expand(
        CONTEXT_ACTIVATIONS, zip, stimset=[s for s, _ in runs], window=[w for _, w in runs], allow_missing=True
    )


def temporal_files():
    """One r(layer, lag) table per (model, checkpoint, MEG subject), plus the context sweep at each last checkpoint."""
    files = fill(TEMPORAL, ({**c, **s} for c in checkpoints_of("temporal") for s in subjects_of_kind("meg")))
    files += fill(
        TEMPORAL_CONTEXT,
        (
            {"model": m, "step": steps(m)[-1], **s, "window": w}
            for m in models("temporal")
            for s in subjects_of_kind("meg")
            for w in config["temporal"]["context_windows"]
        ),
    )
    return files


# Each analysis' tables and figures in the default target list.
ANALYSIS_TARGETS = {
    "encoding": (["encoding", "encoding_voxels"], ["encoding_trajectory", "encoding_maps"]),
    "evals": (["evals"], []),
    "probing": (["probing"], []),
    "phases": (["phases"], ["phase_trajectory", "probing_histogram", "detachment_map"]),
    "sae": (
        ["sae", "sae_matching"],
        ["sae_language", "sae_granularity", "sae_metrics", "sae_matching", "sae_feature_cards"],
    ),
    "temporal": (["temporal"], ["temporal_heatmaps", "temporal_path", "temporal_trajectory", "temporal_sweeps"]),
    "crosscoder": (["crosscoder"], ["crosscoder_ri", "crosscoder_fractions", "crosscoder_maps"]),
    "variance": (["variance_partition", "variance_summary"], ["variance_trajectory"]),
}


def all_targets():
    # Which checkpoints hold the same weights: every study's first question about its checkpoints.
    targets = [table("checkpoint_duplicates")]
    for analysis, (tables, figure_names) in ANALYSIS_TARGETS.items():
        if analysis not in config["analyses"]:
            continue
        targets += [table(t) for t in tables]
        targets += [f for name in figure_names for f in figures(name)]
        if analysis == "encoding" and truth_files():
            targets.append(table("encoding_groups"))
        if analysis == "sae":
            # Every SAE also in sae-lens's layout, for the field's tools.
            targets += sae_files("saelens/cfg.json") + sae_files("saelens/sae_weights.safetensors")
        if analysis == "encoding":
            targets += cortex_files()
    return targets


# Cortical maps (rules in cortex.smk).


def mni_space(dataset):
    """Whether the dataset's BOLD files are in an MNI space (the bids_fmri loader's ``space`` option)."""
    return str((dataset.get("options") or {}).get("space") or "").startswith("MNI")


def cortex_subjects(kind):
    """(dataset, subject) of the datasets drawn as ``surface`` or ``flatmap``, in config order."""
    if "encoding" not in config["analyses"]:
        return []
    drawn = {"surface": mni_space, "flatmap": lambda d: "pycortex" in d}[kind]
    return [
        {"dataset": d["name"], "subject": s} for d in study.datasets(config, "fmri") if drawn(d) for s in d["subjects"]
    ]


def pycortex_of(wc):
    """The dataset's pycortex database settings for one subject ({subject} in subject and xfm filled in)."""
    db = {
        "subject": "{subject}",
        "xfm": "{subject}_auto",
        "mask": "thick",
        **study.dataset_entry(config, wc.dataset)["pycortex"],
    }
    return {k: str(v).format(subject=wc.subject) for k, v in db.items()}


def cortex_inputs(wc):
    files = {"voxels": table("encoding_voxels"), "brain": BRAIN.format(**wc)}
    if "phases" in config["analyses"]:
        files["phases"] = table("phases")
    if "crosscoder" in config["analyses"]:
        model = sorted(models("crosscoder"))[0]
        files["weights"] = CROSSCODER.format(model=model, step=steps(model)[-1], file="weights.parquet", **wc)
    return files


def cortex_maps():
    """The maps drawn: encoding r, and those of the analyses that run."""
    extra = {"phases": "detachment_difference", "crosscoder": "crosscoder_decoder"}
    return ["encoding_r"] + [name for a, name in extra.items() if a in config["analyses"]]


def cortex_figures(name):
    return expand(FIGURE, figure=f"cortex/{{dataset}}/{{subject}}/{name}", ext=config["plots"]["formats"])


def cortex_files():
    files = fill(CORTEX_TABLE, cortex_subjects("surface"))
    for kind in ("surface", "flatmap"):
        for name in cortex_maps():
            files += fill(
                FIGURE.replace("{figure}", f"cortex/{{dataset}}/{{subject}}/{name}_{kind}"),
                ({**s, "ext": e} for s in cortex_subjects(kind) for e in config["plots"]["formats"]),
            )
    return files


def export_model_fields(model):
    """The model entry's fields an SAE export reads (name, source, hub repository, context)."""
    return {
        "name": model["name"],
        "source": model.get("source"),
        "hf": {"repo_id": (model.get("hf") or {}).get("repo_id")},
        "train": {"max_position": (model.get("train") or {}).get("max_position")},
    }
