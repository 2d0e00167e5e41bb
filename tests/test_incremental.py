"""Coming back to a finished run: what a change schedules, single targets, and a run killed midway.

Every test works on its own copy of the finished micro run (mtimes and
.snakemake metadata kept), checked first to be up to date.
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, SNAKEMAKE, run_snakemake

# Stages run by one generic rule for every model, whose jobs the tests count per model.
PER_MODEL = ("train", "register", "link", "download", "activations", "context_activations")
PLOTS = ("plot_encoding_trajectory", "plot_encoding_maps", "plot_phases", "plot_sae", "plot_crosscoder",
         "plot_temporal", "plot_variance_trajectory")


def _fresh_copy(micro_run: Path, dest: Path) -> Path:
    shutil.copytree(micro_run, dest, symlinks=True)  # copy2: mtimes kept
    proc = run_snakemake(dest, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    return dest


def _config(wd: Path) -> dict:
    return yaml.safe_load((wd / "config/config.yaml").read_text())


def _write_config(wd: Path, cfg: dict) -> None:
    (wd / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _dry_run(wd: Path, *args: str) -> tuple[dict[str, int], list[tuple[str, str, list[str]]]]:
    """Per-rule job counts of ``snakemake -n`` and its jobs as (rule, reason, outputs)."""
    proc = run_snakemake(wd, "-n", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    if "Job stats:" not in out:
        return {}, []
    table = out.split("Job stats:")[1]
    total = int(re.search(r"^total\s+(\d+)$", table, re.M).group(1))
    jobs = []
    for m in re.finditer(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", out, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", m.group(2), re.M))
        model = re.search(r"(?:^|, )model=([^,]+)", fields.get("wildcards", ""))
        # Per-model stages (one generic rule for every model) are counted per model: `activations_toy`.
        rule = f"{m.group(1)}_{model.group(1)}" if m.group(1) in PER_MODEL and model else m.group(1)
        jobs.append((rule, fields.get("reason", ""), fields.get("output", "").split(", ")))
    counts = {}
    for rule, _, _ in jobs:
        counts[rule] = counts.get(rule, 0) + 1
    counts["total"] = len(jobs)
    assert len(jobs) == total
    return counts, jobs


def _n_subjects(cfg: dict, kind: str) -> int:
    return sum(len(d["subjects"]) for d in cfg["datasets"] if d["kind"] == kind)


def _sha(path: Path) -> dict[str, str]:
    # Snakemake's own marker of a directory output is not checkpoint content: a registered folder has
    # one, the run's checkpoint folders (inside the training job's one directory output) do not.
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".snakemake_timestamp"}


def test_new_checkpoint_of_a_trained_model_schedules_only_its_jobs(micro_run, tmp_path):
    """source: train — one more checkpoint retrains the model but reruns nothing of the old checkpoints.

    The training job's params hold the whole checkpoint list, so a new entry
    reruns it (its run folder is its output). Training is deterministic: it writes the old
    checkpoints again byte for byte under results/train/toy/<recipe>/, and the
    registered copies under results/checkpoints/ (what the analyses read, as
    ancient inputs) stay as they are.
    """
    wd = _fresh_copy(micro_run, tmp_path / "run")
    cfg = _config(wd)
    toy = cfg["models"][0]
    old = [f"step{s}" for s in toy["train"]["checkpoints"]]
    new = (toy["train"]["checkpoints"][-2] + toy["train"]["checkpoints"][-1]) // 2  # 30: between the last two
    toy["train"]["checkpoints"] = sorted(toy["train"]["checkpoints"] + [new])
    _write_config(wd, cfg)

    n_fmri, n_meg = _n_subjects(cfg, "fmri"), _n_subjects(cfg, "meg")
    per_checkpoint = {  # the new checkpoint's own jobs (it is not the last: no context sweep, no second SAE seed)
        "train_toy": 1, "register_toy": 1, "encoding": n_fmri, "crosscoder": n_fmri, "variance": n_fmri,
        # one activation job per stimulus set: the stories, each probed task's prompts, the SAE corpus
        "activations_toy": 2 + len(cfg["probing"]["tasks"]),
        "lm_eval": len(cfg["evals"]["tasks"]), "probing": len(cfg["probing"]["tasks"]), "sae": 1,
        "sae_export": 1, "temporal": n_meg, "fingerprint_checkpoint": 1,
    }
    tables = {r: 1 for r in ("aggregate_encoding", "aggregate_evals", "aggregate_probing", "phases",
                             "aggregate_sae", "sae_matching", "aggregate_crosscoder", "aggregate_temporal",
                             "aggregate_variance", "checkpoint_duplicates")}
    expected = {**per_checkpoint, **tables, **{p: 1 for p in PLOTS}, "all": 1}
    expected["total"] = sum(expected.values())

    counts, jobs = _dry_run(wd)
    assert counts == expected
    (run,) = (wd / "results/train/toy").iterdir()  # the run of this recipe: results/train/toy/<recipe>/
    (reason,) = [r for rule, r, _ in jobs if rule == "train_toy"]
    assert "Params have changed since last execution" in reason, reason
    assert not (run / f"step{new}").exists()
    old_step = re.compile(rf"/toy/({'|'.join(old)})(/|$)")
    for rule, _, outputs in jobs:
        if rule != "train_toy":
            assert not [o for o in outputs if old_step.search(o)], (rule, outputs)
    assert any(o == f"results/checkpoints/toy/step{new}" for _, _, outs in jobs for o in outs)

    # Retrain for real: the old checkpoints come out identical and their registered copies are untouched.
    registered = {s: (wd / "results/checkpoints/toy" / s) for s in old}
    before = {s: (_sha(p), p.stat().st_mtime_ns) for s, p in registered.items()}
    proc = run_snakemake(wd, "--cores", "2", f"results/checkpoints/toy/step{new}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / f"step{new}").is_dir()
    for s, p in registered.items():
        assert (_sha(p), p.stat().st_mtime_ns) == before[s], s
        retrained = run / s
        assert retrained.stat().st_mtime_ns > before[s][1], f"{s} was not written again"
        assert _sha(retrained) == before[s][0], f"retraining changed {s}"
    counts, _ = _dry_run(wd)
    rest = {k: v for k, v in expected.items() if k not in ("train_toy", "register_toy", "total")}
    assert counts == {**rest, "total": sum(rest.values())}


def test_changed_training_recipe_reruns_every_checkpoint(micro_run, tmp_path):
    """The other side of the above: a new recipe (here the learning rate) is a new run folder, so every
    checkpoint is registered again and everything downstream reruns, in the same invocation."""
    wd = _fresh_copy(micro_run, tmp_path / "run")
    cfg = _config(wd)
    cfg["models"][0]["train"]["lr"] *= 2
    _write_config(wd, cfg)
    n_steps = len(cfg["models"][0]["train"]["checkpoints"])
    counts, jobs = _dry_run(wd)
    everything, _ = _dry_run(wd, "--forceall")
    assert counts["train_toy"] == 1 and counts["register_toy"] == n_steps
    assert counts["activations_toy"] == n_steps * (2 + len(cfg["probing"]["tasks"]))
    # Every job of the first model's checkpoints, as in a run from scratch (--forceall) ...
    for rule in ("register_toy", "activations_toy", "context_activations_toy", "demo_tasks", "lm_eval", "probing",
                 "encoding", "sae", "crosscoder", *PLOTS):
        assert counts[rule] == everything[rule], rule
    # ... and nothing that does not read them: the world, the brains, the second model.
    assert not {"toy_world", "toy_subject", "word_epochs", "train_toy_small", "register_toy_small",
                "activations_toy_small"} & set(counts)
    assert all("Set of input files has changed" in reason for rule, reason, _ in jobs if rule == "register_toy")


ANALYSIS_PARAMS = {
    # section, key, new value: the jobs that read it, and everything built on their tables
    "crosscoder": ("lr", 0.002, lambda c, n, f: {"crosscoder": n * f, "aggregate_crosscoder": 1,
                                                 "plot_crosscoder": 1}),
    # The variance jobs take their delays, alphas and folds from the encoding section, so they rerun too.
    "encoding": ("n_perm", 20, lambda c, n, f: {"encoding": n * f, "aggregate_encoding": 1, "phases": 1,
                                                "plot_encoding_trajectory": 1, "plot_encoding_maps": 1,
                                                "plot_phases": 1, "variance": n * f, "aggregate_variance": 1,
                                                "plot_variance_trajectory": 1}),
    "sae": ("k", 3, lambda c, n, f: {"sae": n + int(c["sae"]["seed_baseline"]),
                                     "sae_export": n + int(c["sae"]["seed_baseline"]), "aggregate_sae": 1,
                                     "sae_matching": 1, "plot_sae": 1}),
}


@pytest.mark.parametrize("section", sorted(ANALYSIS_PARAMS))
def test_changed_analysis_parameter_reruns_only_that_analysis(section, micro_run, tmp_path):
    wd = _fresh_copy(micro_run, tmp_path / "run")
    cfg = _config(wd)
    key, value, jobs_of = ANALYSIS_PARAMS[section]
    assert cfg[section][key] != value
    cfg[section][key] = value
    _write_config(wd, cfg)
    n_steps = len(cfg["models"][0]["train"]["checkpoints"])
    expected = {**jobs_of(cfg, n_steps, _n_subjects(cfg, "fmri")), "all": 1}
    expected["total"] = sum(expected.values())
    counts, jobs = _dry_run(wd)
    assert counts == expected
    for rule, reason, _ in jobs:
        if rule == section:
            assert reason.startswith("Params have changed"), reason


def test_single_target_and_until(micro_run, tmp_path):
    wd = _fresh_copy(micro_run, tmp_path / "run")
    target = "results/encoding/toy/step10/toy_fmri/sub-01.parquet"
    (wd / target).unlink()
    # A deleted intermediate file is not rebuilt for the default target while everything
    # built from it is present and up to date (Snakemake reruns on missing *requested* files) ...
    assert _dry_run(wd) == ({}, [])
    # ... but asked for by path it is exactly one job.
    counts, jobs = _dry_run(wd, target)
    assert counts == {"encoding": 1, "total": 1}
    assert target in jobs[0][2]  # with its sibling, the TR-block bootstrap of the same fit

    # --until: of what a change schedules, only the jobs up to that rule.
    cfg = _config(wd)
    cfg["encoding"]["n_perm"] += 1
    _write_config(wd, cfg)
    n = len(cfg["models"][0]["train"]["checkpoints"]) * _n_subjects(cfg, "fmri")
    assert _dry_run(wd, "--until", "encoding")[0] == {"encoding": n, "total": n}
    assert _dry_run(wd, "--until", "aggregate_encoding")[0] == {"encoding": n, "aggregate_encoding": 1, "total": n + 1}
    # the aggregation, phases, three figures and `all`; and the variance jobs, which read the encoding
    # section, with their aggregation and figure
    assert _dry_run(wd)[0]["total"] == n + 6 + n + 2


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_killed_job_leaves_nothing_finished_and_the_next_run_completes_it(micro_run, tmp_path):
    """SIGKILL to Snakemake and its job mid-run (an lm-eval job: ~6 s of work after it logs its start)."""
    wd = _fresh_copy(micro_run, tmp_path / "run")
    folder = wd / "results/lmeval/toy/step10"
    target = folder / "toyfacts_en.metrics.parquet"
    sibling = folder / "toyfacts_en.items.parquet"
    log = wd / "results/logs/lmeval/toy/step10/toyfacts_en.log"
    original = {p.name: pd.read_parquet(p) for p in (target, sibling)}
    target.unlink()
    log.unlink()

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(wd), "--cores", "1",
                             str(target.relative_to(wd))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # The job has started its work once lm-eval logs that it loads the model.
        while not (log.exists() and "Initializing hf model" in log.read_text()):
            assert proc.poll() is None, "snakemake ended before the job started"
            assert time.monotonic() < deadline, "the job did not start within 120 s"
            time.sleep(0.05)
        children = _descendants(proc.pid)
        assert children, "no job process under snakemake"
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its job: the same process group
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    import psutil

    gone, alive = psutil.wait_procs([psutil.Process(p) for p in children if psutil.pid_exists(p)], timeout=30)
    assert not alive
    assert "toyfacts_en on toy/step10" not in log.read_text()  # the job's last line: it did not finish

    # Nothing that looks finished: neither output (Snakemake removed the sibling before starting the job)
    # and no partial file under a final name; at most a hidden temporary file.
    assert not target.exists() and not sibling.exists()
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".toyfacts_en.")]
    assert all(n.endswith(".tmp") for n in leftovers), leftovers
    # A killed Snakemake leaves its lock behind: the next run (not a dry run) stops and asks for --unlock.
    locked = run_snakemake(wd, "--cores", "1", str(target.relative_to(wd)))
    assert locked.returncode != 0 and "--unlock" in locked.stderr, locked.stderr[-3000:]
    assert run_snakemake(wd, "--unlock").returncode == 0

    # The next run (the workflow profile sets rerun-incomplete) does exactly that job, to the same numbers.
    counts, _ = _dry_run(wd, str(target.relative_to(wd)))
    assert counts == {"lm_eval": 1, "total": 1}
    done = run_snakemake(wd, "--cores", "1", str(target.relative_to(wd)))
    assert done.returncode == 0, done.stderr[-3000:]
    for p in (target, sibling):
        a, b = original[p.name], pd.read_parquet(p)
        assert list(a.columns) == list(b.columns)
        for col in a.columns:
            if pd.api.types.is_float_dtype(a[col]):
                np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-6, equal_nan=True)
            else:
                assert a[col].tolist() == b[col].tolist(), col
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
