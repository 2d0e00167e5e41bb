"""Edits to user data rerun exactly the jobs that read them.

One small study is run once for real: a local training run's checkpoint (a
tiny saved model) against a ds003020-style dataset (`source: lebel`) and a BIDS
fMRI dataset, encoding only, one subject each. Each test works on its own copy
(mtimes and .snakemake metadata kept), edits one file in place and counts the
jobs of a dry run.
"""

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("h5py")
pytest.importorskip("nibabel")

from conftest import REPO, job_counts, make_workdir, run_snakemake  # noqa: E402
from realformats import write_bids_fmri, write_lebel  # noqa: E402

from brainphase.loaders.dataset import subject_inputs  # noqa: E402

WORDS = "the cat sat on a mat and the dog ran in the park".split()
RUNS = ("story_a", "story_b", "story_c")  # the last is the test run
N_TRS, N_VOX, GRID = 60, 12, (3, 2, 2)


def _data():
    rng = np.random.default_rng(0)
    rows, runs = [], {}
    for run in RUNS:
        onsets = np.arange(4.0, N_TRS * 2.0 - 6.0, 0.6)
        for i, on in enumerate(onsets):
            rows.append({"run": run, "onset": on, "offset": on + 0.4, "text": WORDS[(i * 7 + len(run)) % len(WORDS)]})
        runs[run] = SimpleNamespace(data=rng.standard_normal((N_TRS, N_VOX)).astype(np.float32), repeats=None)
    return pd.DataFrame(rows), SimpleNamespace(runs=runs)


def _save_model(folder: Path) -> None:
    from brainphase.toylm import build_model, train_tokenizer

    tok = train_tokenizer([" ".join(WORDS) + "."] * 40, vocab_size=280)
    model = build_model(len(tok), n_layers=1, d_model=16, n_heads=2, d_ff=32, max_position=64, seed=0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("invalidation"))
    stim, brain = _data()
    # Everything the study reads lies inside the workdir under relative paths, so a copy is a whole study.
    write_lebel(wd / "ds003020", stim, brain, "UTS01")
    write_bids_fmri(wd / "bids", stim, brain, "01", GRID, extra=())
    # Millimetre coordinates: the voxel maps need (V, 3) positions, not the column index.
    np.save(wd / "ds003020/coords.npy", np.argwhere(np.ones(GRID)).astype(float) * 2.0)
    _save_model(wd / "run/step1")
    cfg = yaml.safe_load((wd / "config/config.yaml").read_text())
    cfg["analyses"] = ["encoding"]
    cfg["models"] = [{"name": "mine", "source": "local", "local": {"root": "run", "tokens_per_step": 64}}]
    cfg["datasets"] = [
        {"name": "lebel", "kind": "fmri", "source": "lebel", "path": "ds003020", "subjects": ["UTS01"],
         "options": {"test_stories": [RUNS[-1]], "repeats": False, "coords": "ds003020/coords.npy",
                     "lang": "en"}},
        {"name": "bids", "kind": "fmri", "source": "bids_fmri", "path": "bids", "subjects": ["01"],
         "options": {"task": "listen", "test_runs": ["3"], "lang": "en"}},
    ]
    cfg["encoding"]["n_perm"] = 10
    (wd / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = run_snakemake(wd, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, symlinks=True)  # copy2: mtimes kept
    counts = _dry_run(dest)
    assert counts == {}, counts
    return dest


def _dry_run(wd: Path) -> dict[str, int]:
    proc = run_snakemake(wd, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    if "Job stats:" not in out:
        assert "Nothing to be done" in out + proc.stderr, out[-3000:]
        return {}
    return job_counts(out)


def _rewrite(path: Path, text: bytes) -> None:
    """Rewrite a file in place (same inode, its folder's mtime unchanged), as an editor's fix does.

    The content must change: Snakemake compares the checksums of small inputs, and a file
    written again with the same bytes is not an edit.
    """
    assert text != path.read_bytes()
    folder_mtime = path.parent.stat().st_mtime
    with open(path, "r+b") as f:
        f.write(text)
        f.truncate()
    _later(path)
    assert path.parent.stat().st_mtime == folder_mtime


def _later(path: Path) -> None:
    t = time.time() + 1
    os.utime(path, (t, t))


# Every job behind one subject's brain file and words, and nothing else: its load, the dataset's
# stimulus set, that set's activations (one job per checkpoint and stimulus set), that subject's
# encoding, and the study tables and figures. The other dataset's subject is not encoded again.
ONE_SUBJECT = {"load_subject": 1, "merge_stimuli": 1, "activations_mine": 1, "encoding": 1, "aggregate_encoding": 1,
               "plot_encoding_trajectory": 1, "plot_encoding_maps": 1}


def _downstream(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k not in ("all", "total")}


def test_edited_textgrid_reloads_its_subject_only(small_run, tmp_path):
    wd = _copy(small_run, tmp_path / "run")
    grid = wd / "ds003020/derivative/TextGrids/story_b.TextGrid"
    _rewrite(grid, grid.read_bytes().replace(b'"park"', b'"yard"', 1))
    counts = _dry_run(wd)
    assert _downstream(counts) == ONE_SUBJECT, counts


def test_edited_hf5_reloads_its_subject_only(small_run, tmp_path):
    wd = _copy(small_run, tmp_path / "run")
    import h5py

    path = wd / "ds003020/derivative/preprocessed_data/UTS01/story_a.hf5"
    with h5py.File(path, "r+") as f:  # a corrected value, written in place
        f["data"][0, 0] += 1.0
    _later(path)
    counts = _dry_run(wd)
    assert _downstream(counts) == ONE_SUBJECT, counts


def test_edited_bids_events_table_reloads_its_subject_only(small_run, tmp_path):
    wd = _copy(small_run, tmp_path / "run")
    events = wd / "bids/sub-01/func/sub-01_task-listen_run-2_events.tsv"
    _rewrite(events, events.read_bytes().replace(b"\tpark", b"\tyard", 1))
    counts = _dry_run(wd)
    assert _downstream(counts) == ONE_SUBJECT, counts


def test_rewritten_local_checkpoint_file_registers_it_again(small_run, tmp_path):
    wd = _copy(small_run, tmp_path / "run")
    weights = wd / "run/step1/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4:] = np.float32(0.5).tobytes() if bytes(data[-4:]) != np.float32(0.5).tobytes() else b"\0\0\0\0"
    _rewrite(weights, bytes(data))  # the trainer saves again over the same file: same size, other values
    counts = _dry_run(wd)
    # The checkpoint's registration, its fingerprint and the duplicates table, the activations of both
    # datasets, both subjects' encodings, the study tables and figures.
    assert _downstream(counts) == {"link_mine": 1, "fingerprint_checkpoint": 1, "checkpoint_duplicates": 1,
                                   "activations_mine": 2, "encoding": 2, "aggregate_encoding": 1,
                                   "plot_encoding_trajectory": 1, "plot_encoding_maps": 1}, counts


def test_loader_inputs_follow_the_options_and_skip_what_is_missing(small_run, tmp_path):
    root = small_run / "ds003020"
    files = subject_inputs("lebel", root, "UTS01", {"stories": ["story_a"], "coords": str(root / "nope.npy")})
    assert [Path(f).relative_to(root).as_posix() for f in files] == [
        "derivative/respdict.json", "derivative/preprocessed_data/UTS01/story_a.hf5",
        "derivative/TextGrids/story_a.TextGrid"]
    assert len(subject_inputs("lebel", root, "UTS01", {})) == 1 + 2 * len(RUNS)
    assert subject_inputs("lebel", tmp_path / "nowhere", "UTS01", {}) == []
    bids = subject_inputs("bids_fmri", small_run / "bids", "01", {"task": "listen"})
    names = sorted(Path(f).name for f in bids)
    assert names == sorted([f"sub-01_task-listen_run-{i}_{s}" for i in (1, 2, 3)
                            for s in ("bold.nii.gz", "events.tsv")] + ["sub-01_task-listen_desc-brain_mask.nii.gz"])
    assert subject_inputs("bids_fmri", small_run / "bids", "02", {"task": "listen"}) == []
    assert subject_inputs("bids_fmri", tmp_path / "nowhere", "01", {"task": "listen"}) == []


def test_meg_inputs_are_the_chosen_recordings_and_their_sidecars(tmp_path):
    root = tmp_path / "meg"
    names = ["sub-01/ses-0/meg/sub-01_ses-0_task-0_meg.fif", "sub-01/ses-0/meg/sub-01_ses-0_task-0_events.tsv",
             "sub-01/ses-0/meg/sub-01_ses-0_task-0_channels.tsv", "sub-01/ses-0/meg/sub-01_ses-0_coordsystem.json",
             "sub-01/ses-0/meg/sub-01_ses-0_task-1_meg.fif", "sub-01/ses-0/meg/sub-01_ses-0_task-1_events.tsv",
             "sub-01/ses-1/meg/sub-01_ses-1_task-0_run-01_meg.ds/data.meg4", "sub-01/ses-1/meg/"
             "sub-01_ses-1_task-0_run-01_events.tsv", "participants.tsv"]
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_text("x")
    got = {Path(f).relative_to(root).as_posix() for f in subject_inputs("meg_bids", root, "01", {"task": "0"})}
    assert got == {n for n in names if "task-1" not in n and n != "participants.tsv"}
    got = {Path(f).relative_to(root).as_posix() for f in
           subject_inputs("meg_bids", root, "01", {"task": "0", "session": "1", "runs": [1]})}
    assert got == {n for n in names if "ses-1" in n}
    assert subject_inputs("meg_bids", root, "02", {}) == []
