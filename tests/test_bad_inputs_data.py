"""A catalogue of bad data inputs: each is stopped where it enters, with a message naming the file and the fix.

Every case once gave a silent wrong result or a bare library traceback. The
fixtures are written in the real formats (parquet stimulus tables, the brain
HDF5 contract, Praat TextGrids with ds003020's derivative layout, BIDS events
TSVs with NIfTI runs, MEG-MASC events), and each test reads the message's first
line, the one a user sees.
"""

import json
import logging
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest

from brainphase.encoding.delays import prepare_design, zscore_runs
from brainphase.loaders.lebel import load_lebel
from brainphase.loaders.textgrid import read_textgrid, word_intervals
from brainphase.loaders.words import read_events_tsv
from brainphase.contracts.brain import BrainRun, check_alignment, read_brain, write_brain
from brainphase.contracts.stimuli import STIMULUS_COLUMNS, DataError, read_stimuli
from realformats import textgrid_long

REPO = Path(__file__).resolve().parents[1]


def first_line(err) -> str:
    return str(err.value).splitlines()[0]


def stimuli(n=6, runs=("a", "b")) -> pd.DataFrame:
    frames = []
    for run in runs:
        on = 1.0 + np.arange(n) * 0.5
        frames.append(pd.DataFrame({"unit_id": [f"{run}_{i:05d}" for i in range(n)], "run": run,
                                    "text": [f"w{i}" for i in range(n)], "lang": "en", "onset": on,
                                    "offset": on + 0.3, "word_index": np.arange(n)}))
    return pd.concat(frames, ignore_index=True)


def brain(path, splits=("train", "test"), n_tr=10, n_vox=3, data=None):
    runs = {run: BrainRun(np.random.default_rng(i).standard_normal((n_tr, n_vox)).astype(np.float32)
                          if data is None else data, split)
            for i, (run, split) in enumerate(zip(("a", "b"), splits))}
    write_brain(path, runs, 2.0, np.zeros((n_vox, 2)))
    return path


# ----------------------------------------------------------------------------- 1. a NaN word time

def test_bad_nan_onset(tmp_path):
    """One word without an onset used to turn its run's features into zeros (NaN through Lanczos, then z-scored
    as a 'constant' column); the stimulus table, the alignment check and the z-scoring now each refuse it."""
    table = stimuli()
    table.loc[8, "onset"] = np.nan  # run b, row 8
    path = tmp_path / "story.parquet"
    table.to_parquet(path)
    with pytest.raises(DataError) as err:
        read_stimuli(path)
    line = first_line(err)
    assert line.startswith(str(path)) and "run b, row 8" in line and "b_00002" in line
    assert "1 of 12 units" in line and "fix those rows' times or drop the rows" in line

    # the alignment check no longer lets max() skip the NaN
    b = read_brain(brain(tmp_path / "s.h5"))
    with pytest.raises(DataError, match=r"^stim\.parquet: 1 of 12 units .* run b, row 8"):
        check_alignment(table, b, "stim.parquet", "s.h5")

    # a feature column that still holds NaN (say, NaN activations) stops the z-scoring, naming the run
    feats = [np.ones((10, 2)) + np.arange(10)[:, None], np.ones((10, 2)) + np.arange(10)[:, None]]
    feats[1][:, 1] = np.nan
    with pytest.raises(ValueError, match=r"^run 1 .*: 1 column\(s\) hold NaN or inf \(first: column 1\)"):
        zscore_runs(feats)
    with pytest.raises(ValueError, match="check the run's stimulus timings and activation cache"):
        prepare_design(feats, [1, 2])

    # timings that are absent from the whole table (benchmark prompts write None) are an untimed set, accepted
    prompts = stimuli().assign(onset=None, offset=None)
    prompts.to_parquet(tmp_path / "prompts.parquet")
    assert len(read_stimuli(tmp_path / "prompts.parquet")) == 12


def test_bad_offset_before_onset(tmp_path):
    table = stimuli()
    table.loc[3, "offset"] = table.loc[3, "onset"] - 0.2
    table.to_parquet(tmp_path / "story.parquet")
    with pytest.raises(DataError) as err:
        read_stimuli(tmp_path / "story.parquet")
    line = first_line(err)
    assert line.startswith(str(tmp_path / "story.parquet")) and "1 unit(s) end before they start" in line
    assert "run a, row 3" in line and "fix those rows' offsets" in line


def test_bad_onsets_out_of_order(tmp_path):
    table = stimuli()
    table.loc[4, ["onset", "offset"]] = [0.2, 0.4]  # run a, row 4 starts before row 3
    table.to_parquet(tmp_path / "story.parquet")
    with pytest.raises(DataError) as err:
        read_stimuli(tmp_path / "story.parquet")
    line = first_line(err)
    assert line.startswith(str(tmp_path / "story.parquet")) and "run a, row 4" in line
    assert "1 unit(s) start before the unit before them" in line and "sort each run by onset" in line


def test_bad_nan_in_subject_events(tmp_path):
    """The subject's own unit timings in its brain file override the stimulus set's: checked alike."""
    events = stimuli()[["unit_id", "run", "onset", "offset"]].copy()
    events.loc[2, "offset"] = np.inf
    runs = {"a": BrainRun(np.ones((10, 3), np.float32) + np.arange(10)[:, None], "train"),
            "b": BrainRun(np.ones((10, 3), np.float32) + np.arange(10)[:, None], "test")}
    write_brain(tmp_path / "s.h5", runs, 2.0, np.zeros((3, 2)), events=events)
    with pytest.raises(DataError) as err:
        read_brain(tmp_path / "s.h5")
    line = first_line(err)
    assert line.startswith(f"{tmp_path / 's.h5'} (events)") and "run a, row 2" in line and "1 of 12" in line


# ----------------------------------------------------------------------------- LeBel et al. (ds003020) layout

def lebel_dataset(root, tiers, story="story", n_tr=12, n_vox=3):
    """A ds003020-style derivative folder with one story: respdict, the .hf5 response and the TextGrid."""
    deriv = root / "derivative"
    (deriv / "TextGrids").mkdir(parents=True)
    subj = deriv / "preprocessed_data" / "UTS01"
    subj.mkdir(parents=True)
    (deriv / "respdict.json").write_text(json.dumps({story: n_tr + 20}))
    with h5py.File(subj / f"{story}.hf5", "w") as f:
        f.create_dataset("data", data=np.random.default_rng(0).standard_normal((n_tr, n_vox)))
    grid = deriv / "TextGrids" / f"{story}.TextGrid"
    grid.write_text(textgrid_long(tiers, 40.0))
    return grid


WORDS = [(0.0, 10.0, "sp"), (10.0, 10.4, "the"), (10.4, 11.0, "smoke"), (11.0, 11.5, "rose"), (11.5, 40.0, "sp")]
PHONES = [(0.0, 10.0, "sp"), (10.0, 10.2, "DH"), (10.2, 10.4, "AH0"), (10.4, 11.0, "S"), (11.0, 11.5, "R"),
          (11.5, 40.0, "sp")]


# ----------------------------------------------------------------------------- 2. TextGrid tiers by name

def test_bad_textgrid_tier_names(tmp_path):
    """Tiers (words, phones) used to give the phones as words (only 'word' was known, else the second tier)."""
    grid = lebel_dataset(tmp_path / "a", [("IntervalTier", "words", WORDS), ("IntervalTier", "phones", PHONES)])
    assert word_intervals(grid)["text"].tolist() == ["the", "smoke", "rose"]
    out = load_lebel(tmp_path / "a", "UTS01", test_stories=())
    assert out.stimuli["text"].tolist() == ["the", "smoke", "rose"]

    # no tier is recognisably the word tier: an error listing the tiers and the option, no positional guess
    grid = lebel_dataset(tmp_path / "b", [("IntervalTier", "phones", PHONES), ("IntervalTier", "transcript", WORDS)])
    with pytest.raises(DataError) as err:
        load_lebel(tmp_path / "b", "UTS01", test_stories=())
    line = first_line(err)
    assert line.startswith(str(grid)) and "['phones', 'transcript']" in line
    assert "set the lebel option word_tier" in line
    out = load_lebel(tmp_path / "b", "UTS01", test_stories=(), word_tier="transcript")
    assert out.stimuli["text"].tolist() == ["the", "smoke", "rose"]
    with pytest.raises(DataError, match=r"no tier named 'word'.*\['phones', 'transcript'\].*word_tier"):
        word_intervals(grid, word_tier="word")

    # two candidates are ambiguous rather than first-come
    grid = lebel_dataset(tmp_path / "c", [("IntervalTier", "word", WORDS), ("IntervalTier", "Words", WORDS)])
    with pytest.raises(DataError, match=r"several tiers could be the word tier \(\['word', 'Words'\]"):
        word_intervals(grid)


# ----------------------------------------------------------------------------- 3. overlapping intervals

def test_bad_textgrid_overlapping_intervals(tmp_path, caplog):
    words = [(0.0, 10.0, "sp"), (10.0, 10.4, "the"), (10.4, 11.0, "smoke"), (10.4, 11.0, "smoke"),
             (10.8, 11.5, "rose"), (11.5, 40.0, "sp")]
    grid = lebel_dataset(tmp_path, [("IntervalTier", "phone", PHONES), ("IntervalTier", "word", words)])
    with pytest.raises(DataError) as err:
        load_lebel(tmp_path, "UTS01", test_stories=())
    line = first_line(err)
    assert line.startswith(str(grid)) and "2 word interval(s) of tier 'word' overlap or repeat" in line
    assert "interval 4, 'smoke' at 10.4-11.0 s" in line
    assert "on_overlap: warn" in line and "fix the tier in Praat" in line

    # on_overlap=warn keeps them, counted in the log and marked in the loaded data
    with caplog.at_level(logging.WARNING, logger="brainphase.loaders.textgrid"):
        out = load_lebel(tmp_path, "UTS01", test_stories=(), on_overlap="warn")
    assert out.stimuli["text"].tolist() == ["the", "smoke", "smoke", "rose"]
    assert out.stimuli["overlap"].tolist() == [False, False, True, True]
    assert any("2 word interval(s)" in r.getMessage() and str(grid) in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- 4. BIDS onsets that do not parse

SHAPE, N_TR = (2, 2, 2), 10


def bids_dataset(root, events: str):
    """One BIDS BOLD run with a brain mask and the given events TSV text."""
    nib = pytest.importorskip("nibabel")
    func = root / "sub-01" / "func"
    func.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "tiny", "BIDSVersion": "1.8.0"}')
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img = nib.Nifti1Image(np.random.default_rng(0).standard_normal(SHAPE + (N_TR,)).astype(np.float32), affine)
    img.header.set_zooms((2.0, 2.0, 2.0, 2.0))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, func / "sub-01_task-listen_run-1_bold.nii.gz")
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine), func / "sub-01_task-listen_desc-brain_mask.nii.gz")
    path = func / "sub-01_task-listen_run-1_events.tsv"
    path.write_bytes(events.encode("utf-8") if isinstance(events, str) else events)
    return path


def test_bad_bids_onset_unparsable(tmp_path, caplog):
    """An n/a onset or a decimal comma used to drop its word without a log line."""
    pytest.importorskip("nilearn")
    from brainphase.loaders.bids_fmri import load_bids_fmri

    events = ("onset\tduration\ttrial_type\tword\n0.5\t0.3\tword\tonce\n1,5\t0.3\tword\tupon\n"
              "n/a\t0.3\tword\ta\n2.4\tn/a\tnoise\tn/a\n3.0\t0.4\tword\ttime\n")
    path = bids_dataset(tmp_path, events)
    with pytest.raises(DataError) as err:
        load_bids_fmri(tmp_path, "01", "listen")
    line = first_line(err)
    assert line.startswith(str(path)) and "2 of 4 word events" in line and "line 3: onset '1,5'" in line
    assert "a decimal comma" in line and "on_bad_onset: warn" in line

    with caplog.at_level(logging.WARNING, logger="brainphase.loaders.words"):
        out = load_bids_fmri(tmp_path, "01", "listen", on_bad_onset="warn")
    assert out.stimuli["text"].tolist() == ["once", "time"]
    assert any("2 of 4 word events" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_bad_meg_events_onset_unparsable(tmp_path):
    """The MEG-BIDS loader shares the events code: a MEG-MASC word with an onset 'n/a' is reported by line."""
    from brainphase.loaders.meg_bids import _word_table

    path = tmp_path / "sub-01_ses-0_task-0_events.tsv"
    word = "{'kind': 'word', 'word': '%s', 'story': 'lw1'}"
    path.write_text("onset\tduration\ttrial_type\n"
                    f"0.5\t0.3\t{word % 'the'}\n0.9\t0.1\t{{'kind': 'phoneme', 'phoneme': 'dh'}}\n"
                    f"n/a\t0.3\t{word % 'cat'}\n1.7\t0.3\t{word % 'sat'}\n")
    with pytest.raises(DataError) as err:
        _word_table(path, None, "ses-0_task-0", "en", 10.0)
    line = first_line(err)
    assert line.startswith(str(path)) and "1 of 3 word events" in line and "line 4: onset n/a" in line
    assert "pass a word_filter that drops those rows" in line


# ----------------------------------------------------------------------------- 5. text that is not UTF-8

def test_bad_utf8_textgrid(tmp_path):
    """A UTF-8 TextGrid with one damaged byte used to be decoded as Latin-1 without a word: garbled words."""
    text = textgrid_long([("IntervalTier", "word", [(0, 1.0, "café"), (1.0, 2.0, "naïve")])], 2.0)
    raw = text.encode("utf-8").replace("naïve".encode(), b"na\xffve")
    path = tmp_path / "story.TextGrid"
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        read_textgrid(path)
    line = first_line(err)
    bad = raw.index(b"\xff")
    n_line = raw.count(b"\n", 0, bad) + 1
    assert line.startswith(str(path)) and f"byte {bad} (line {n_line}," in line
    assert "re-save the TextGrid" in line
    # Praat's Latin-1 files (no UTF-8 character anywhere) still read
    path.write_bytes(text.encode("latin-1"))
    assert read_textgrid(path)[0].items[1][2] == "naïve"


def test_bad_utf8_events_tsv(tmp_path):
    path = tmp_path / "sub-01_task-listen_run-1_events.tsv"
    raw = "onset\tduration\tword\n0.5\t0.3\tcafé\n1.0\t0.3\tx\n".encode("utf-8") + b"1.5\t0.3\tna\xefve\n"
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        read_events_tsv(path)
    line = first_line(err)
    bad = raw.index(b"\xef")
    assert line.startswith(str(path)) and f"not valid UTF-8 at byte {bad} (line 4" in line
    assert "save the events file as UTF-8" in line


def test_bad_utf8_stimulus_table(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    # pyarrow checks UTF-8 when it builds strings from Python; a foreign writer may not, as these raw buffers
    texts = [b"the", b"sm\xffoke"]
    offsets = pa.array(np.cumsum([0] + [len(t) for t in texts]), pa.int32()).buffers()[1]
    text = pa.StringArray.from_buffers(len(texts), offsets, pa.py_buffer(b"".join(texts)))
    table = pa.table({"unit_id": ["a_0", "a_1"], "run": ["a", "a"], "text": text, "lang": ["en", "en"],
                      "onset": [0.0, 1.0], "offset": [0.5, 1.5]})
    path = tmp_path / "story.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataError) as err:
        read_stimuli(path)
    line = first_line(err)
    assert line.startswith(str(path)) and "column 'text', row 1, byte 2 of the value" in line
    assert "write the table's text as UTF-8" in line
    # and a file that is no parquet at all (a CSV under the parquet name)
    path.write_text("unit_id,run,text\na_0,a,the\n")
    with pytest.raises(DataError, match=rf"^{path}: cannot be read as a parquet table .*to_parquet"):
        read_stimuli(path)


def test_bad_utf8_annotation_csv(tmp_path):
    from brainphase.loaders.annotations import read_annotations

    path = tmp_path / "notes.csv"
    raw = b"run,onset,duration,text\n1,0,4,a man walks\n1,4,4,he sits \xe9\n"
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        read_annotations(path)
    line = first_line(err)
    bad = raw.index(b"\xe9")
    assert line.startswith(str(path)) and f"not valid UTF-8 at byte {bad} (line 3" in line
    assert "save the annotation table as UTF-8" in line


# ----------------------------------------------------------------------------- 6. the documented columns only

def test_bad_stimuli_without_word_index(tmp_path):
    """A table with exactly the contract's columns used to fail later, in the activations, for want of
    word_index; it is derived from the order within each run."""
    table = stimuli().drop(columns="word_index")
    table = table.iloc[np.argsort(np.r_[np.arange(6), np.arange(6)], kind="stable")]  # a_0, b_0, a_1, b_1, ...
    assert list(table.columns) == list(STIMULUS_COLUMNS) and table["run"].tolist()[:3] == ["a", "b", "a"]
    table.to_parquet(tmp_path / "story.parquet")
    got = read_stimuli(tmp_path / "story.parquet")
    for _, run in got.groupby("run"):
        assert run["word_index"].tolist() == list(range(len(run)))
        assert run["unit_id"].tolist() == sorted(run["unit_id"])  # position in the run's own order

    from brainphase.activations.items import check_texts

    check_texts(got, ("unit_id", "run", "text", "word_index"))


# ----------------------------------------------------------------------------- 7. split values

def test_bad_split_value(tmp_path):
    """split 'Test' used to end in 'encoding needs train and test runs; got train=[], test=[]', no file named."""
    path = brain(tmp_path / "s.h5", splits=("train", "Test"))
    with pytest.raises(DataError) as err:
        read_brain(path)
    line = first_line(err)
    assert line.startswith(str(path)) and "run b has split 'Test'" in line and "['train', 'test']" in line


def test_bad_split_missing(tmp_path):
    """A run without its split attribute used to be a bare h5py KeyError."""
    path = brain(tmp_path / "s.h5")
    with h5py.File(path, "a") as f:
        del f["runs/a"].attrs["split"]
    with pytest.raises(DataError) as err:
        read_brain(path)
    line = first_line(err)
    assert line.startswith(str(path)) and "run a has no split attribute" in line and "['train', 'test']" in line


# ----------------------------------------------------------------------------- 8. an empty stimulus table

def test_bad_empty_stimulus_table(tmp_path):
    path = tmp_path / "story.parquet"
    stimuli().iloc[:0].to_parquet(path)
    with pytest.raises(DataError) as err:
        read_stimuli(path)
    line = first_line(err)
    assert line.startswith(str(path)) and "has no rows" in line and "rerun the rule that writes it" in line


def test_bad_empty_stimulus_table_writes_no_cache(tmp_path, monkeypatch):
    """The activation job refuses an empty table before it loads a model or writes any cache, even for the
    sets listed before the empty one (a 0-row cache looks finished to every later rule)."""
    import brainphase.contracts.checkpoint
    import brainphase.runtime

    good, empty = tmp_path / "good.parquet", tmp_path / "empty.parquet"
    stimuli().to_parquet(good)
    stimuli().iloc[:0].to_parquet(empty)
    outputs = [tmp_path / "acts" / "good.h5", tmp_path / "acts" / "empty.h5"]

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the stimulus tables were checked")

    monkeypatch.setattr(brainphase.contracts.checkpoint, "load_model", no_model)
    monkeypatch.setattr(brainphase.runtime, "setup_job", lambda *a, **k: logging.getLogger("brainphase"))
    snakemake = SimpleNamespace(
        params=SimpleNamespace(activations={"sites": ["resid"], "context_window": 8, "batch_size": 2},
                               device="cpu", trust_remote_code=False, stimsets=["good", "empty"],
                               poolings=["word", "word"], windows=[None, None], model="m", revision="step0",
                               tokens=0),
        input=SimpleNamespace(checkpoint=str(tmp_path / "ckpt"), stimuli=[str(good), str(empty)]),
        output=[str(p) for p in outputs], log=[str(tmp_path / "log.txt")], threads=1)
    with pytest.raises(DataError) as err:
        runpy.run_path(str(REPO / "workflow/scripts/activations.py"), init_globals={"snakemake": snakemake})
    assert first_line(err).startswith(f"{empty}: the stimulus table has no rows")
    assert not any(p.exists() for p in outputs) and not (tmp_path / "acts").exists()


# ----------------------------------------------------------------------------- already errors, kept

def test_bad_brain_nan(tmp_path):
    data = np.ones((10, 3), np.float32)
    data[4, 1] = np.nan
    path = brain(tmp_path / "s.h5", data=data)
    with pytest.raises(DataError) as err:
        read_brain(path)
    assert first_line(err).startswith(f"{path}: run a contains NaN or inf; mask or interpolate")


def test_bad_run_shorter_than_words(tmp_path):
    path = brain(tmp_path / "s.h5", n_tr=2)  # 4 s of data; run b's words start up to 3.5 s, a's too
    table = stimuli(n=30)  # words up to 15.8 s: past 4 s + the 6 s Lanczos reach
    with pytest.raises(DataError) as err:
        check_alignment(table, read_brain(path), "stim.parquet", str(path))
    line = first_line(err)
    assert line.startswith(f"{path}: run a has 2 TRs") and "fix the run length or the word onsets" in line
