"""The workflow as users drive it: dry runs, lint, validation, and the whole DAG end to end."""


import numpy as np
import pandas as pd
import yaml

from conftest import REPO, job_counts, make_workdir, run_snakemake


def test_dry_run_of_the_demo_schedules_every_checkpoint(tmp_path):
    wd = make_workdir(tmp_path, REPO / "config/config.yaml")
    proc = run_snakemake(wd, "-n")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    n_ckpt = len(cfg["models"][0]["train"]["checkpoints"])
    # One activation job per checkpoint and stimulus set: the stories, each probed task's prompts, the SAE corpus.
    assert counts["activations_toy"] == n_ckpt * (2 + len(cfg["probing"]["tasks"]))
    # The small LM runs only the temporal analysis: its own activation jobs, no encoding or benchmarks.
    n_small = len(cfg["models"][1]["train"]["checkpoints"])
    assert counts["activations_toy_small"] == n_small
    assert counts["temporal"] == n_ckpt + n_small
    assert counts["temporal_context"] == 2 * len(cfg["temporal"]["context_windows"])
    assert counts["encoding"] == n_ckpt
    assert counts["lm_eval"] == n_ckpt * len(cfg["evals"]["tasks"])
    assert counts["probing"] == n_ckpt * len(cfg["probing"]["tasks"])
    assert counts["aggregate_encoding"] == counts["phases"] == 1


def test_lint_is_clean():
    proc = run_snakemake(REPO, "--lint")
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_invalid_config_key_stops_before_any_job(tmp_path):
    wd = make_workdir(tmp_path)
    cfg = yaml.safe_load((wd / "config/config.yaml").read_text())
    cfg["encoding"]["delay"] = [1, 2]
    cfg["activations"]["batch_size"] = "sixteen"
    (wd / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(wd, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "unknown config key encoding.delay" in out
    assert "activations.batch_size: expected integer, got str 'sixteen'" in out
    assert not (wd / "results").exists()


def test_study_config_replaces_models_and_datasets(tmp_path):
    """--configfile merges dicts but replaces lists: a study does not inherit the demo's model."""
    wd = make_workdir(tmp_path)
    base = yaml.safe_load((wd / "config/config.yaml").read_text())
    study = {"models": [dict(base["models"][0], name="other")]}
    (wd / "study.yaml").write_text(yaml.safe_dump(study))
    proc = run_snakemake(wd, "-n", "--configfile", str(wd / "study.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "results/checkpoints/other/step0" in proc.stdout
    assert "results/checkpoints/toy/" not in proc.stdout


def test_meg_of_your_own_enters_through_the_contract_files(tmp_path):
    """source: files — contract files written by the user (e.g. with the MEG-BIDS loader) feed the temporal DAG."""
    from brainphase.contracts.brain import BrainRun, write_brain

    wd = make_workdir(tmp_path)
    cfg = yaml.safe_load((wd / "config/config.yaml").read_text())
    cfg["analyses"] = ["temporal"]
    cfg["models"] = cfg["models"][:1]
    cfg["datasets"] = [{"name": "mymeg", "kind": "meg", "source": "files", "subjects": ["sub-01", "sub-02"]}]
    (wd / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    words = pd.DataFrame({"unit_id": [f"r1_{i}" for i in range(20)], "run": "r1", "text": "a", "lang": "en",
                          "onset": np.arange(20) * 0.5 + 1.0, "offset": np.arange(20) * 0.5 + 1.3})
    (wd / "results/stimuli").mkdir(parents=True)
    words.to_parquet(wd / "results/stimuli/mymeg.parquet")
    for sub in ("sub-01", "sub-02"):
        write_brain(wd / f"results/brain/mymeg/{sub}.h5", {"r1": BrainRun(np.zeros((1200, 4), np.float32), "train")},
                    None, np.zeros((4, 2)), sfreq=100.0)
    proc = run_snakemake(wd, "-n")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    n_steps = len(cfg["models"][0]["train"]["checkpoints"])
    assert counts["word_epochs"] == 2 and counts["temporal"] == 2 * n_steps
    assert counts["temporal_context"] == 2 * len(cfg["temporal"]["context_windows"])
    assert "toy_subject" not in counts and "toy_stimuli" not in counts and "encoding" not in counts


def test_micro_run_end_to_end(micro_run):
    r = micro_run / "results"
    summary = pd.read_parquet(r / "tables/encoding.parquet")
    voxels = pd.read_parquet(r / "tables/encoding_voxels.parquet")
    groups = pd.read_parquet(r / "tables/encoding_groups.parquet")
    assert {"analysis", "model", "step", "tokens", "layer", "site", "dataset", "subject", "metric",
            "value"} <= set(summary.columns)
    assert set(summary["step"]) == {"step0", "step5", "step10", "step20", "step40"}
    assert sorted(summary["tokens"].unique()) == [s * 8 * 64 for s in (0, 5, 10, 20, 40)]
    assert sorted(summary["layer"].unique()) == [0, 1, 2]
    mean_r = summary[summary["metric"] == "mean_r"]["value"]
    assert mean_r.notna().all() and (mean_r.abs() < 1).all()
    assert "excluded" not in voxels and voxels.notna().all().all()
    assert summary["value"].notna().all() and groups["value"].notna().all()
    assert ((voxels["p"] > 0) & (voxels["p"] <= 1)).all()
    assert set(groups["group"]) >= {"lowlevel", "semantic", "null"}
    for f in ("encoding_trajectory.png", "encoding_maps.png"):
        assert (r / "figures" / f).stat().st_size > 10_000
    for step in ("step0", "step5", "step10", "step20", "step40"):
        meta = yaml.safe_load((r / f"checkpoints/toy/{step}/brainphase.json").read_text())
        assert meta["step"] == int(step[4:]) and meta["source"] == "train"
    # No temporary files left behind by atomic writes.
    assert not list(r.rglob("*.tmp"))


def test_micro_run_benchmarks_probing_phases(micro_run):
    r = micro_run / "results"
    bench = pd.read_parquet(r / "tables/evals.parquet")
    items = pd.read_parquet(r / "tables/benchmark_items.parquet")
    # Group rows (microqa) aggregate their subtasks; items belong to the leaf tasks.
    acc = bench[(bench["metric"] == "acc") & bench["task"].isin(set(items["task"]))].set_index(["step", "task"])["value"]
    per_item = items.groupby(["step", "task"])["correct"].mean()
    pd.testing.assert_series_equal(acc.sort_index(), per_item.sort_index(), check_names=False)
    assert set(items["task"]) == {"toyfacts_en", "microqa_sums", "microqa_next_letter"}
    probing = pd.read_parquet(r / "tables/probing.parquet")
    assert {"neuron_mean_r", "choice_accuracy", "choice_chance"} <= set(probing["metric"])
    # probed on the real-format task's items, rendered by lm-eval as the benchmark run saw them
    assert set(probing["task"]) == {"microqa"}
    probe = pd.read_parquet(r / "stimuli/probe_microqa.parquet")
    assert set(probe["run"]) == {"microqa_sums", "microqa_next_letter"} and len(probe) == 40
    mine = items[items["task"].str.startswith("microqa")].drop_duplicates(["task", "doc_id"])
    assert len(mine) == len(probe)
    assert (r / "tables/probing_bootstrap.parquet").is_file() and (r / "tables/encoding_bootstrap.parquet").is_file()
    phases = pd.read_parquet(r / "tables/phases.parquet")
    assert len(phases) >= 1 and phases["label"].notna().all()
    assert (phases["start_tokens"] <= phases["end_tokens"]).all()
    traj = pd.read_parquet(r / "tables/trajectories.parquet")
    assert set(traj["series"]) == {"encoding", "benchmark", "probing"}
    assert (traj["low"] <= traj["value"] + 1e-12).all() and (traj["value"] <= traj["high"] + 1e-12).all()
    for f in ("phase_trajectory.png", "probing_histogram.png", "detachment_map.png"):
        assert (r / "figures" / f).stat().st_size > 10_000


def test_second_run_does_nothing(micro_run):
    proc = run_snakemake(micro_run, "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_planted_voxels_beat_null_voxels(micro_run):
    """Even the micro run recovers the planted low-level tuning far above the null voxels."""
    g = pd.read_parquet(micro_run / "results/tables/encoding_groups.parquet")
    best = g[g["metric"] == "best_layer_r"].groupby("group")["value"].mean()
    assert best["lowlevel"] > best["null"] + 0.1
    assert np.isfinite(best).all()


def test_micro_run_sae_per_checkpoint(micro_run):
    r = micro_run / "results"
    steps = {"step0", "step5", "step10", "step20", "step40"}
    sae = pd.read_parquet(r / "tables/sae.parquet")
    main = sae[sae["seed"] == 0]
    assert set(main["step"]) == steps and set(sae[sae["seed"] == 1]["step"]) == {"step40"}
    wide = main.pivot_table(index="step", columns="metric", values="value")
    assert ((wide["test_fvu"] > 0) & (wide["test_fvu"] < 1.5)).all()
    assert (wide["test_l0"] <= 4 + 1e-9).all()
    assert wide["ce_loss_recovered"].notna().all()
    for column in ("language", "granularity"):
        shares = wide[[c for c in wide if c.startswith(f"share_{column}_")]].sum(axis=1)
        labelled = wide["n_classified"] > 0 if column == "granularity" else shares > 0
        np.testing.assert_allclose(shares[labelled], 1.0, atol=1e-9)
    features = pd.read_parquet(r / "tables/sae_features.parquet")
    assert set(features["language"]) <= {"ja", "en", "mixed", "none"}
    matching = pd.read_parquet(r / "tables/sae_matching.parquet")
    assert (matching["comparison"] == "checkpoint").sum() == len(steps) - 1
    assert (matching["comparison"] == "seed").sum() == 1
    assert matching["match_rate"].between(0, 1).all()
    sheet = pd.read_csv(r / "sae/toy/step40/seed0/labelling_sheet.csv")
    assert "label" in sheet and sheet["label"].isna().all()
    assert "<html" in (r / "sae/toy/step40/seed0/features.html").read_text().lower()
    for f in ("sae_language", "sae_granularity", "sae_metrics", "sae_matching", "sae_feature_cards"):
        assert (r / "figures" / f"{f}.png").stat().st_size > 10_000


def test_micro_run_crosscoder_with_shuffle_control(micro_run):
    r = micro_run / "results"
    m = pd.read_parquet(r / "tables/crosscoder.parquet")
    assert set(m["step"]) == {"step0", "step5", "step10", "step20", "step40"}
    wide = m.pivot_table(index="step", columns="metric", values="value")
    for fit in ("real", "shuffled"):
        fractions = wide[[f"{fit}_fraction_{c}" for c in ("shared", "brain", "lm")]]
        assert ((fractions >= 0) & (fractions <= 1)).all().all() and (fractions.sum(axis=1) <= 1 + 1e-9).all()
        assert wide[f"{fit}_test_r_brain"].between(-1, 1).all()
    latents = pd.read_parquet(r / "tables/crosscoder_latents.parquet")
    assert set(latents["fit"]) == {"real", "shuffled"}
    assert latents["r"].dropna().between(-1, 1).all()
    windows = pd.read_parquet(r / "tables/crosscoder_windows.parquet")
    assert {"latent", "run", "time", "text", "class"} <= set(windows.columns)
    assert windows["run"].str.startswith("test").all()
    for f in ("crosscoder_ri", "crosscoder_fractions", "crosscoder_maps"):
        assert (r / "figures" / f"{f}.png").stat().st_size > 10_000


def test_local_run_that_gains_a_checkpoint_schedules_only_its_jobs(micro_run, tmp_path):
    """source: local — a checkpoint folder written after a finished run becomes exactly its own jobs."""
    import shutil

    run = tmp_path / "run"
    for step in ("step0", "step5"):
        shutil.copytree(micro_run / "results/checkpoints/toy" / step, run / step)
    wd = make_workdir(tmp_path / "wd")
    cfg = yaml.safe_load((wd / "config/config.yaml").read_text())
    cfg["analyses"] = ["encoding"]
    cfg["models"] = [{"name": "mine", "source": "local", "local": {"root": str(run), "tokens_per_step": 512}}]
    cfg["datasets"] = [d for d in cfg["datasets"] if d["kind"] == "fmri"]
    (wd / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(wd, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_parquet(wd / "results/tables/encoding.parquet")
    assert set(summary["step"]) == {"step0", "step5"} and set(summary["tokens"]) == {0, 2560}
    assert (wd / "results/checkpoints/mine/step5/model.safetensors").is_symlink()

    shutil.copytree(micro_run / "results/checkpoints/toy/step10", run / "step10")
    proc = run_snakemake(wd, "-n")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts == {"link_mine": 1, "activations_mine": 1, "encoding": 1, "aggregate_encoding": 1,
                      "plot_encoding_trajectory": 1, "plot_encoding_maps": 1, "fingerprint_checkpoint": 1,
                      "checkpoint_duplicates": 1, "all": 1, "total": 9}
    assert "output: results/encoding/mine/step10/" in proc.stdout
    assert "output: results/encoding/mine/step5/" not in proc.stdout


def test_hugging_face_run_dry_runs_offline_from_the_cached_revision_table(tmp_path):
    """source: hf — the branch listing is read from resources/revisions/, so planning needs no network."""
    wd = make_workdir(tmp_path)
    cfg = yaml.safe_load((wd / "config/config.yaml").read_text())
    cfg["analyses"] = ["encoding"]
    cfg["models"] = [{"name": "pythia", "source": "hf",
                      "hf": {"repo_id": "EleutherAI/pythia-70m", "family": "pythia", "count": 3}}]
    (wd / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    cache = wd / "resources/revisions"
    cache.mkdir(parents=True)
    names = ["main", "step0", "step1", "step2", "step4", "step512", "step1000", "step143000"]
    pd.DataFrame({"name": names}).to_csv(cache / "EleutherAI__pythia-70m.tsv", sep="\t", index=False)
    proc = run_snakemake(wd, "-n")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["download_pythia"] == 3 and counts["activations_pythia"] == 3 and counts["encoding"] == 3
    for step in ("step0", "step143000"):
        assert f"output: results/checkpoints/pythia/{step}" in proc.stdout
    assert "lm_eval" not in counts
