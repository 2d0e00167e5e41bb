"""The plumbing between a real dataset's loader and the analyses: shared word rows, subject clocks,
one stimulus set from many subjects, annotation tables, and the config's loader options."""


import numpy as np
import pandas as pd
import pytest

from brainphase.loaders.annotations import read_annotations, run_annotations
from brainphase.loaders.dataset import merge_stimuli, subject_events
from brainphase.loaders.words import event_offsets, read_events_tsv, words_to_stimuli
from brainphase.contracts.brain import BrainRun, read_brain, subject_view, write_brain
from brainphase.contracts.stimuli import DataError
from conftest import REPO


def _table(run, words, onsets):
    return words_to_stimuli(pd.DataFrame({"onset": onsets, "text": words, "duration": 0.3}), run, "en", 100.0,
                            "train", "test.tsv")


def test_words_to_stimuli_orders_drops_and_numbers():
    words = pd.DataFrame({"onset": [2.0, 1.0, -0.5, 99.0, 150.0], "text": ["b", "a", "early", "z", "late"],
                          "duration": [0.2, np.nan, 0.1, 0.0, 0.1], "run": "x", "category": ["n", "v", "n", "n", "n"]})
    out = words_to_stimuli(words, "r1", "en", 100.0, "test", "f.tsv", drop=("run",))
    assert out["text"].tolist() == ["a", "b", "z"]
    assert out["unit_id"].tolist() == ["r1_00000", "r1_00001", "r1_00002"]
    # missing duration -> next onset; 0 -> an impulse (offset = onset); else onset + duration
    np.testing.assert_allclose(out["offset"], [2.0, 2.2, 99.0])
    assert out["category"].tolist() == ["v", "n", "n"] and "run" in out and out["run"].eq("r1").all()
    with pytest.raises(DataError, match="f.tsv: every event lies outside"):
        words_to_stimuli(words.assign(onset=words["onset"] + 500), "r1", "en", 100.0, "test", "f.tsv")


def test_event_offsets_last_event_gets_the_median_gap():
    off = event_offsets(np.array([0.0, 1.0, 3.0]), np.array([np.nan, np.nan, np.nan]), 10.0)
    np.testing.assert_allclose(off, [1.0, 3.0, 4.5])


def test_events_tsv_keeps_words_pandas_would_call_missing(tmp_path):
    path = tmp_path / "e.tsv"
    path.write_text("onset\tword\n1.0\tnull\n2.0\tNA\n3.0\tn/a\n4.0\tnan\n")
    assert read_events_tsv(path)["word"].tolist()[:2] == ["null", "NA"]
    assert read_events_tsv(path)["word"].isna().tolist() == [False, False, True, False]


def test_merge_stimuli_is_the_union_in_run_order_and_rejects_conflicts():
    one = pd.concat([_table("r1", ["a", "b"], [1, 2]), _table("r2", ["c"], [1])], ignore_index=True)
    two = pd.concat([_table("r2", ["c"], [4]), _table("r3", ["d", "e"], [1, 2])], ignore_index=True)
    merged = merge_stimuli({"s1": one, "s2": two})
    assert merged["unit_id"].tolist() == ["r1_00000", "r1_00001", "r2_00000", "r3_00000", "r3_00001"]
    assert merged.loc[merged["unit_id"] == "r2_00000", "onset"].item() == 1  # the first subject's clock
    bad = two.assign(text=["C", "d", "e"])
    with pytest.raises(DataError, match="subject s1 heard 'c'.*subject s2 heard 'C'"):
        merge_stimuli({"s1": one, "s2": bad})


def test_subject_view_takes_the_subjects_units_on_its_clock(tmp_path):
    stim = pd.concat([_table("r1", ["a", "b"], [1, 2]), _table("r2", ["c", "d"], [1, 2])], ignore_index=True)
    mine = stim[stim["run"] == "r2"].assign(onset=lambda d: d["onset"] + 5, offset=lambda d: d["offset"] + 5)
    path = tmp_path / "s.h5"
    write_brain(path, {"r2": BrainRun(np.ones((20, 3), np.float32), "train")}, 1.0, np.zeros((3, 2)),
                events=subject_events(mine))
    brain = read_brain(path)
    assert brain.events["unit_id"].tolist() == ["r2_00000", "r2_00001"]
    view, rows = subject_view(stim, brain, "stim", "brain")
    assert rows.tolist() == [2, 3] and view["text"].tolist() == ["c", "d"]
    np.testing.assert_allclose(view["onset"], [6.0, 7.0])
    stranger = brain.events.assign(unit_id=["r2_00000", "r9_00000"])
    brain.events = stranger
    with pytest.raises(DataError, match="brain: times 1 units that stim lacks"):
        subject_view(stim, brain, "stim", "brain")
    toy = read_brain(path)
    toy.events = None
    assert subject_view(stim, toy, "s", "b")[1] is None


def test_annotation_tables(tmp_path):
    path = tmp_path / "notes.tsv"
    path.write_text("run\tonset\tduration\ttext\n1\t0\t1\ta man walks\n1\t1\t1\tn/a\n2\t0.5\t2\ta dog barks\n")
    table = read_annotations(path)
    assert table["text"].tolist() == ["a man walks", "a dog barks"]
    assert run_annotations(table, {"task-movie_run-1", "1", "run-1"}, path)["text"].tolist() == ["a man walks"]
    with pytest.raises(DataError, match="no annotation for run"):
        run_annotations(table, {"3"}, path)
    (tmp_path / "bad.csv").write_text("onset,text\n0,x\n")
    with pytest.raises(DataError, match=r"no column\(s\) \['run'\]"):
        read_annotations(tmp_path / "bad.csv")


def test_load_subject_rejects_unknown_options(tmp_path):
    from brainphase.loaders.dataset import load_subject

    with pytest.raises(DataError, match=r"\['trr'\] are not arguments of the lebel loader"):
        load_subject("lebel", tmp_path, "UTS01", {"trr": 2.0})
    with pytest.raises(DataError, match="dataset folder missing"):
        load_subject("lebel", tmp_path / "nope", "UTS01", {})
