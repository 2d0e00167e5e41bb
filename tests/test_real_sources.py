"""Real-format datasets through the config: the demo's simulated listener written out as ds003020, BIDS fMRI
and MEG-BIDS, loaded back by `source: lebel | bids_fmri | meg_bids`, gives the demo's own scores."""

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("nibabel")
pytest.importorskip("mne_bids")

from conftest import make_workdir, run_snakemake  # noqa: E402
from realformats import write_bids_fmri, write_lebel, write_meg_bids  # noqa: E402

from brainphase.contracts.brain import read_brain  # noqa: E402
from brainphase.contracts.stimuli import read_stimuli  # noqa: E402
from brainphase.temporal.epochs import read_epochs  # noqa: E402

STEP = "step40"


@pytest.fixture(scope="module")
def real_run(micro_run, tmp_path_factory):
    """A local-source model (the micro run's last checkpoint) against three real-format datasets."""
    tmp = tmp_path_factory.mktemp("real")
    r = micro_run / "results"
    stim = read_stimuli(r / "stimuli/toy_fmri.parquet")
    fmri = read_brain(r / "brain/toy_fmri/sub-01.h5")
    meg = read_brain(r / "brain/toy_meg/sub-01.h5")
    runs = list(fmri.runs)
    test_runs = [k for k, v in fmri.runs.items() if v.split == "test"]
    n_vox = fmri.coords.shape[0]
    grid = (n_vox // 8, 4, 2)
    assert np.prod(grid) == n_vox
    # sub-02 of each dataset misses a training run; its MEG recordings start 2 s later.
    write_lebel(tmp / "ds003020", stim, fmri, "UTS01")
    write_lebel(tmp / "ds003020", stim, fmri, "UTS02", runs=runs[1:])
    write_bids_fmri(tmp / "bids", stim, fmri, "01", grid)
    write_bids_fmri(tmp / "bids", stim, fmri, "02", grid, runs=runs[1:])
    write_meg_bids(tmp / "meg", stim, meg, "01")
    write_meg_bids(tmp / "meg", stim, meg, "02", runs=runs[1:], shift=2.0)

    ckpt = tmp / "run" / STEP
    shutil.copytree(micro_run / "results/checkpoints/toy" / STEP, ckpt)
    wd = make_workdir(tmp / "wd")
    cfg = yaml.safe_load((wd / "config/config.yaml").read_text())
    cfg["analyses"] = ["encoding", "temporal"]
    cfg["models"] = [{"name": "mine", "source": "local", "local": {"root": str(tmp / "run"), "tokens_per_step": 256}}]
    test_labels = [str(runs.index(t) + 1) for t in test_runs]
    cfg["datasets"] = [
        {"name": "lebel", "kind": "fmri", "source": "lebel", "path": str(tmp / "ds003020"),
         "subjects": ["UTS01", "UTS02"], "options": {"tr": 2.0, "test_stories": test_runs, "lang": "en"}},
        {"name": "bids", "kind": "fmri", "source": "bids_fmri", "path": str(tmp / "bids"), "subjects": ["01", "02"],
         "options": {"task": "listen", "test_runs": test_labels, "lang": "en"}},
        {"name": "meg", "kind": "meg", "source": "meg_bids", "path": str(tmp / "meg"), "subjects": ["01", "02"],
         "options": {"task": "listen", "lang": "en"}},
    ]
    (wd / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    targets = [f"results/encoding/mine/{STEP}/{d}/{s}.parquet" for d, subs in
               (("lebel", ["UTS01", "UTS02"]), ("bids", ["01", "02"])) for s in subs]
    targets += [f"results/temporal/mine/{STEP}/meg/01.parquet", "results/epochs/meg/02.h5"]
    proc = run_snakemake(wd, "--cores", "2", *targets)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd, micro_run


def _r(path):
    return pd.read_parquet(path).sort_values(["layer", "voxel"])["r"].to_numpy()


@pytest.mark.parametrize("dataset,subject", [("lebel", "UTS01"), ("bids", "01")])
def test_loaded_fmri_encodes_as_the_demo_does(real_run, dataset, subject):
    wd, micro = real_run
    ours = _r(wd / f"results/encoding/mine/{STEP}/{dataset}/{subject}.parquet")
    demo = _r(micro / f"results/encoding/toy/{STEP}/toy_fmri/sub-01.parquet")
    assert ours.shape == demo.shape
    np.testing.assert_allclose(ours, demo, atol=1e-5)


def test_subjects_of_one_dataset_share_one_stimulus_set(real_run):
    wd, micro = real_run
    demo = read_stimuli(micro / "results/stimuli/toy_fmri.parquet")
    for dataset in ("lebel", "bids", "meg"):
        stim = read_stimuli(wd / f"results/stimuli/{dataset}.parquet")
        assert stim["text"].tolist() == demo["text"].tolist(), dataset
    sub2 = read_brain(wd / "results/brain/bids/02.h5")
    assert len(sub2.runs) == len(read_brain(wd / "results/brain/bids/01.h5").runs) - 1
    assert np.isfinite(_r(wd / f"results/encoding/mine/{STEP}/bids/02.parquet")).all()


def test_loaded_meg_decodes_as_the_demo_does(real_run):
    wd, micro = real_run
    cols = ["metric", "layer", "lag"]
    ours = pd.read_parquet(wd / f"results/temporal/mine/{STEP}/meg/01.parquet")
    demo = pd.read_parquet(micro / f"results/temporal/toy/{STEP}/toy_meg/sub-01.parquet")
    ours, demo = (t[t["metric"] == "r"].sort_values(cols)["value"].to_numpy() for t in (ours, demo))
    np.testing.assert_allclose(ours, demo, atol=1e-4)


def test_each_meg_subject_is_epoched_on_its_own_clock(real_run):
    """Subject 02's recordings start 2 s later: its words, on its onsets, cut the same samples as subject 01's."""
    wd, _ = real_run
    one, two = (read_epochs(wd / f"results/epochs/meg/{s}.h5") for s in ("01", "02"))
    common, i1, i2 = np.intersect1d(one.rows, two.rows, return_indices=True)
    assert len(common) > 0.7 * len(one.rows)
    assert not set(one.run[i1]) - set(two.run)  # only runs 02 heard
    np.testing.assert_allclose(two.data[i2], one.data[i1], rtol=1e-5, atol=1e-6 * np.abs(one.data).max())
