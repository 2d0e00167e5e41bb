"""The brain and stimulus contracts reject bad data with messages that name the file and the fix."""

import numpy as np
import pandas as pd
import pytest

from brainphase.contracts.brain import BrainRun, check_alignment, read_brain, write_brain
from brainphase.contracts.stimuli import DataError, read_stimuli


def _stimuli(end: float) -> pd.DataFrame:
    on = np.linspace(10, end - 0.3, 20)
    return pd.DataFrame({"unit_id": [f"a_{i}" for i in range(20)], "run": "a", "text": "w",
                         "lang": "en", "onset": on, "offset": on + 0.3})


def test_round_trip(tmp_path):
    runs = {"a": BrainRun(np.ones((30, 4), np.float32), "train"),
            "b": BrainRun(np.zeros((20, 4), np.float32), "test", np.zeros((2, 20, 4), np.float32))}
    write_brain(tmp_path / "s.h5", runs, 2.0, np.arange(8).reshape(4, 2))
    b = read_brain(tmp_path / "s.h5")
    assert b.tr == 2.0 and b.runs["b"].repeats.shape == (2, 20, 4) and b.runs["a"].split == "train"
    np.testing.assert_allclose(b.tr_times("a")[:2], [1.0, 3.0])


def test_run_shorter_than_its_words_is_an_error(tmp_path):
    write_brain(tmp_path / "s.h5", {"a": BrainRun(np.ones((30, 4), np.float32), "train")}, 2.0,
                np.zeros((4, 2)))
    brain = read_brain(tmp_path / "s.h5")
    check_alignment(_stimuli(59.0), brain, "stim.parquet", "s.h5")  # fits in 60 s
    with pytest.raises(DataError, match=r"s\.h5: run a has 30 TRs .* go on to 80\.0 s"):
        check_alignment(_stimuli(80.0), brain, "stim.parquet", "s.h5")


def test_missing_run_is_an_error(tmp_path):
    write_brain(tmp_path / "s.h5", {"b": BrainRun(np.ones((30, 4), np.float32), "train")}, 2.0,
                np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"no brain data for runs \['a'\]"):
        check_alignment(_stimuli(50.0), read_brain(tmp_path / "s.h5"), "stim.parquet", "s.h5")


def test_nan_in_brain_data_is_an_error(tmp_path):
    data = np.ones((10, 4), np.float32)
    data[3, 1] = np.nan
    write_brain(tmp_path / "s.h5", {"a": BrainRun(data, "train")}, 2.0, np.zeros((4, 2)))
    with pytest.raises(DataError, match="run a contains NaN"):
        read_brain(tmp_path / "s.h5")


def test_stimulus_table_needs_contract_columns(tmp_path):
    _stimuli(50.0).drop(columns=["onset"]).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match=r"x\.parquet: stimulus table lacks columns \['onset'\]"):
        read_stimuli(tmp_path / "x.parquet")


def test_failed_write_leaves_nothing(tmp_path):
    class Boom(Exception):
        pass

    runs = {"a": BrainRun(np.ones((3, 2), np.float32), "train")}
    with pytest.raises(Exception):
        write_brain(tmp_path / "s.h5", runs, 2.0, np.zeros((5, 2)), attrs={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_dataset_subject_from_contract_paths():
    from brainphase.contracts.brain import dataset_subject

    assert dataset_subject("results/brain/toy_fmri/sub-01.h5") == ("toy_fmri", "sub-01")
    assert dataset_subject("results/brain/toy_fmri/sub-01.truth.parquet") == ("toy_fmri", "sub-01")
