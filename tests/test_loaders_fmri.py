"""fMRI loaders: a tiny ds003020-like derivative folder and a tiny BIDS dataset, written in the real formats."""

import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

nib = pytest.importorskip("nibabel")
pytest.importorskip("nilearn")

from brainphase.loaders.bids_fmri import load_bids_fmri  # noqa: E402
from brainphase.loaders.lebel import load_lebel, read_textgrid, word_intervals  # noqa: E402
from brainphase.stimuli import BrainData, DataError, check_alignment, read_brain, write_brain  # noqa: E402
from realformats import q, textgrid_long  # noqa: E402

# ----------------------------------------------------------------------------- LeBel et al. (ds003020)

N_VOX = 6
RESPDICT = {"alternateithicatom": 30, "wheretheressmoke": 28}  # .hf5 rows: 30 - 20 = 10 and 28 - 20 = 8


# Word tiers on the audio clock (TextGrid seconds). Markers: sp, sentence_start, {BR}, "", SP, ns, lg.
WORDS_A = [(0.0, 9.5, "sp"), (9.5, 10.2, "I"), (10.2, 10.25, "sentence_start"), (10.25, 10.7, "reached"),
           (10.7, 11.0, "{BR}"), (11.0, 11.3, ""), (11.3, 11.6, '"over"'), (11.6, 12.0, "SP"), (12.0, 12.4, "ns"),
           (12.4, 13.0, "don't"), (13.0, 29.9, "lg"), (29.9, 30.5, "end"), (30.5, 31.0, "sentence_end"),
           (31.0, 31.5, "after"), (31.5, 40.0, "sp")]
WORDS_B = [(0.0, 10.5, "sp"), (10.5, 10.9, "where"), (10.9, 11.4, "there's"), (11.4, 12.0, "smoke"),
           (12.0, 30.0, "")]


def phones(words):
    return [(a, b, "AH" if t else "") for a, b, t in words]


def make_lebel(root, respdict=RESPDICT, nan_voxel=None):
    deriv = root / "derivative"
    (deriv / "TextGrids").mkdir(parents=True)
    subj = deriv / "preprocessed_data" / "UTS01"
    subj.mkdir(parents=True)
    (deriv / "respdict.json").write_text(json.dumps(respdict))
    tiers_a = [("IntervalTier", "phone", phones(WORDS_A)), ("IntervalTier", "Word", WORDS_A),
               ("TextTier", "notes", [(5.0, "a note")])]
    tiers_b = [("IntervalTier", "phones", phones(WORDS_B)), ("IntervalTier", "transcript", WORDS_B)]
    (deriv / "TextGrids" / "alternateithicatom.TextGrid").write_text(textgrid_long(tiers_a, 40.0))
    (deriv / "TextGrids" / "wheretheressmoke.TextGrid").write_text(textgrid_long(tiers_b, 30.0))
    rng = np.random.default_rng(0)
    data = {}
    for story, n in (("alternateithicatom", 10), ("wheretheressmoke", 8)):
        data[story] = rng.standard_normal((n, N_VOX)).astype(np.float32)
        if nan_voxel is not None and story == "wheretheressmoke":
            data[story][3, nan_voxel] = np.nan
        with h5py.File(subj / f"{story}.hf5", "w") as f:
            f.create_dataset("data", data=data[story])
    return data


@pytest.fixture(scope="module")
def lebel(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds003020")
    return root, make_lebel(root)


def test_lebel_contract(lebel, tmp_path):
    root, data = lebel
    out = load_lebel(root, "UTS01")
    assert out.tr == 2.0045
    assert set(out.runs) == {"alternateithicatom", "wheretheressmoke"}
    assert out.runs["wheretheressmoke"].split == "test" and out.runs["alternateithicatom"].split == "train"
    for story, arr in data.items():
        np.testing.assert_array_equal(out.runs[story].data, arr)
        assert out.runs[story].data.dtype == np.float32 and out.runs[story].repeats is None
    np.testing.assert_array_equal(out.coords, np.arange(N_VOX)[:, None])

    # Row j of the .hf5 is Huth-grid volume j + 10, whose trigger is (j + 10) TR - 10 s after the audio starts:
    # run clock = TextGrid time - (10 * 2.0045 - 10) = TextGrid time - 10.045 s.
    a = out.stimuli[out.stimuli["run"] == "alternateithicatom"]
    assert list(a["text"]) == ["I", "reached", '"over"', "don't", "end"]  # "after" starts past the run's end
    np.testing.assert_allclose(a["onset"], [-0.545, 0.205, 1.255, 2.355, 19.855], atol=1e-9)
    # "end" runs to 20.455 s, past the 10 TRs x 2.0045 s = 20.045 s of data: clipped
    np.testing.assert_allclose(a["offset"], [0.155, 0.655, 1.555, 2.955, 20.045], atol=1e-9)
    np.testing.assert_allclose(a["audio_onset"], [9.5, 10.25, 11.3, 12.4, 29.9])
    assert list(a["unit_id"]) == [f"alternateithicatom_{i:05d}" for i in range(5)]
    assert list(a["word_index"]) == list(range(5)) and set(a["split"]) == {"train"} and set(a["lang"]) == {"en"}
    b = out.stimuli[out.stimuli["run"] == "wheretheressmoke"]  # no tier named "word": the second tier
    assert list(b["text"]) == ["where", "there's", "smoke"] and set(b["split"]) == {"test"}
    np.testing.assert_allclose(b["onset"], [0.455, 0.855, 1.355], atol=1e-9)
    np.testing.assert_allclose(b["offset"], [0.855, 1.355, 1.955], atol=1e-9)

    # The result writes to and reads back from the contracts, and the words fit their runs.
    write_brain(tmp_path / "UTS01.h5", out.runs, out.tr, out.coords)
    out.stimuli.to_parquet(tmp_path / "lebel.parquet")
    brain = read_brain(tmp_path / "UTS01.h5")
    check_alignment(pd.read_parquet(tmp_path / "lebel.parquet"), brain, "lebel.parquet", "UTS01.h5")
    assert brain.tr == pytest.approx(2.0045)


def test_lebel_tr2_matches_huth_grid(lebel):
    """With tr=2.0 the run clock is the Huth lab's simulated grid shifted by exactly 10 s."""
    root, _ = lebel
    out = load_lebel(root, "UTS01", stories=["alternateithicatom"], test_stories=(), tr=2.0)
    a = out.stimuli
    np.testing.assert_allclose(a["onset"], a["audio_onset"] - 10.0, atol=1e-12)
    n = RESPDICT["alternateithicatom"]
    # Huth: n - 5 triggers at 2k s, audio starting at 10 s; TR centres on the audio clock 2k - 10 + 1; rows [10:-5].
    huth_centres = (np.arange(n - 5) * 2.0 - 10.0 + 1.0)[10:-5]
    brain = BrainData(out.runs, out.tr, out.coords)
    np.testing.assert_allclose(brain.tr_times("alternateithicatom") + 10.0, huth_centres)
    assert out.runs["alternateithicatom"].split == "train"


def test_lebel_respdict_mismatch(tmp_path):
    make_lebel(tmp_path, respdict={"alternateithicatom": 31, "wheretheressmoke": 28})
    with pytest.raises(DataError, match=r"alternateithicatom\.hf5: 10 TRs.*31") as err:
        load_lebel(tmp_path, "UTS01")
    assert "11" in str(err.value)  # the expected count, 31 - 20


def test_lebel_errors(lebel, tmp_path):
    root, _ = lebel
    with pytest.raises(DataError, match="test stories"):
        load_lebel(root, "UTS01", stories=["alternateithicatom"])
    with pytest.raises(DataError, match="no such subject"):
        load_lebel(root, "UTS09")
    with pytest.raises(DataError, match="respdict"):
        load_lebel(tmp_path, "UTS01")
    with pytest.raises(DataError, match="no entry for story 'nostory'"):
        load_lebel(root, "UTS01", stories=["wheretheressmoke", "nostory"])
    shutil.copytree(root, tmp_path / "copy")
    (tmp_path / "copy/derivative/TextGrids/wheretheressmoke.TextGrid").unlink()
    with pytest.raises(DataError, match=r"wheretheressmoke\.TextGrid: TextGrid missing"):
        load_lebel(tmp_path / "copy", "UTS01")


def test_lebel_bad_voxels(tmp_path):
    make_lebel(tmp_path, nan_voxel=2)
    with pytest.raises(DataError, match=r"wheretheressmoke\.hf5: 1 voxel"):
        load_lebel(tmp_path, "UTS01")
    out = load_lebel(tmp_path, "UTS01", bad_voxels="drop")
    np.testing.assert_array_equal(out.coords[:, 0], [0, 1, 3, 4, 5])
    assert all(r.data.shape[1] == 5 for r in out.runs.values())


def test_lebel_pycortex_mask_coords(lebel, tmp_path):
    root, _ = lebel
    mask = np.zeros((3, 2, 2), np.uint8)  # (x, y, z)
    picked = [(0, 0, 0), (2, 0, 0), (1, 1, 0), (0, 0, 1), (2, 0, 1), (1, 1, 1)]
    for ijk in picked:
        mask[ijk] = 1
    affine = np.array([[2.0, 0, 0, -3], [0, 2.5, 0, 7], [0, 0, 4, 1], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask_thick.nii.gz")
    out = load_lebel(root, "UTS01", coords=tmp_path / "mask_thick.nii.gz")
    # pycortex order: z slowest, x fastest
    expected = [(2 * x - 3, 2.5 * y + 7, 4 * z + 1) for z in range(2) for y in range(2) for x in range(3)
                if mask[x, y, z]]
    np.testing.assert_allclose(out.coords, expected)
    np.save(tmp_path / "bad.npy", np.zeros((4, 3)))
    with pytest.raises(DataError, match="6 voxels"):
        load_lebel(root, "UTS01", coords=tmp_path / "bad.npy")


def test_textgrid_parser(tmp_path):
    short = ('File type = "ooTextFile"\nObject class = "TextGrid"\n\n0\n3\n<exists>\n2\n'
             '"IntervalTier"\n"phone"\n0\n3\n1\n0\n3\n"AH"\n'
             '"IntervalTier"\n"words"\n0\n3\n3\n0\n1\n"say ""cheese"""\n1\n2\n"two\nlines"\n2\n3\n"{NS}"\n')
    path = tmp_path / "short.TextGrid"
    path.write_text(short)
    tiers = read_textgrid(path)
    assert [t.name for t in tiers] == ["phone", "words"]
    assert tiers[1].items == [(0.0, 1.0, 'say "cheese"'), (1.0, 2.0, "two\nlines"), (2.0, 3.0, "{NS}")]
    words = word_intervals(path)
    assert list(words["text"]) == ['say "cheese"', "two\nlines"]
    # long format, UTF-16 as Praat writes non-ASCII text, a quoted "xmin = 5" that must not be read as a key
    longf = textgrid_long([("IntervalTier", "word", [(0, 1.5, "café"), (1.5, 2, 'x "= xmin = 5')])], 2)
    path = tmp_path / "long.TextGrid"
    path.write_bytes(longf.encode("utf-16"))
    (tier,) = read_textgrid(path)
    assert tier.items == [(0.0, 1.5, "café"), (1.5, 2.0, 'x "= xmin = 5')]
    path.write_text("not a textgrid")
    with pytest.raises(DataError, match="not a Praat TextGrid"):
        read_textgrid(path)


# ----------------------------------------------------------------------------- BIDS fMRI

SHAPE = (4, 4, 3)
N_TR = 10
AFFINE = np.array([[0.0, -2, 0, 10], [2, 0, 0, -5], [0, 0, 3, 1], [0, 0, 0, 1]])
MASK_IJK = [(0, 0, 0), (1, 2, 0), (3, 3, 0), (2, 1, 1), (0, 3, 2), (3, 0, 2), (1, 1, 2)]
EVENTS = {
    "1": "onset\tduration\ttrial_type\tword\n0.5\t0.3\tword\tHello\n1.0\tn/a\tword\tnull\n"
         "1.2\t0.2\tnoise\tn/a\n3.0\t0.4\tword\tworld\n25.0\t0.2\tword\tlate\n",
    "2": "onset\tduration\ttrial_type\tword\n0.0\t0.5\tword\ta\n2.5\t0.5\tword\tb\n",
}


def mask_array():
    m = np.zeros(SHAPE, np.uint8)
    for ijk in MASK_IJK:
        m[ijk] = 1
    return m


def make_bids(root, tr2=2.0, with_mask=True, events=EVENTS):
    func = root / "sub-01" / "func"
    func.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "tiny", "BIDSVersion": "1.8.0"}')
    rng = np.random.default_rng(1)
    data = {}
    for run in ("1", "2"):
        data[run] = rng.standard_normal(SHAPE + (N_TR,)).astype(np.float32)
        img = nib.Nifti1Image(data[run], AFFINE)
        img.header.set_zooms((2.0, 2.0, 3.0, 2.0))  # header TR 2.0 s for both runs
        img.header.set_xyzt_units("mm", "sec")
        nib.save(img, func / f"sub-01_task-listen_run-{run}_bold.nii.gz")
        (func / f"sub-01_task-listen_run-{run}_events.tsv").write_text(events[run])
    (func / "sub-01_task-listen_run-2_bold.json").write_text(json.dumps({"RepetitionTime": tr2}))
    if with_mask:  # one mask whose entities belong to both runs
        nib.save(nib.Nifti1Image(mask_array(), AFFINE), func / "sub-01_task-listen_desc-brain_mask.nii.gz")
    return data


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids")
    return root, make_bids(root)


def test_bids_fmri_contract(bids, tmp_path):
    root, data = bids
    out = load_bids_fmri(root, "01", "listen", test_runs=("2",))
    assert out.tr == 2.0
    assert list(out.runs) == ["task-listen_run-1", "task-listen_run-2"]
    assert out.runs["task-listen_run-1"].split == "train" and out.runs["task-listen_run-2"].split == "test"
    mask = mask_array().astype(bool)
    for run in ("1", "2"):
        got = out.runs[f"task-listen_run-{run}"].data
        assert got.shape == (N_TR, 7) and got.dtype == np.float32
        np.testing.assert_array_equal(got, data[run][mask].T)  # values pass through unchanged
    # voxel (i, j, k) in C order at x = -2 j + 10, y = 2 i - 5, z = 3 k + 1 mm
    expected = [(-2 * j + 10, 2 * i - 5, 3 * k + 1) for i in range(4) for j in range(4) for k in range(3)
                if (i, j, k) in MASK_IJK]
    np.testing.assert_allclose(out.coords, expected)

    s1 = out.stimuli[out.stimuli["run"] == "task-listen_run-1"]
    assert list(s1["text"]) == ["Hello", "null", "world"]  # "late" is past the 20 s run; "null" is a word
    np.testing.assert_allclose(s1["onset"], [0.5, 1.0, 3.0])
    np.testing.assert_allclose(s1["offset"], [0.8, 3.0, 3.4])  # no duration: up to the next word
    assert list(s1["unit_id"]) == [f"task-listen_run-1_{i:05d}" for i in range(3)]
    assert set(s1["split"]) == {"train"} and list(s1["trial_type"]) == ["word"] * 3
    s2 = out.stimuli[out.stimuli["run"] == "task-listen_run-2"]
    assert list(s2["text"]) == ["a", "b"] and set(s2["split"]) == {"test"}

    write_brain(tmp_path / "sub-01.h5", out.runs, out.tr, out.coords)
    check_alignment(out.stimuli, read_brain(tmp_path / "sub-01.h5"), "stim", "brain")

    # the same through an explicit mask elsewhere and the run's full name
    nib.save(nib.Nifti1Image(mask_array(), AFFINE), tmp_path / "mask.nii.gz")
    again = load_bids_fmri(root, "sub-01", "listen", mask=tmp_path / "mask.nii.gz",
                           test_runs=["task-listen_run-1"], event_type="word")
    np.testing.assert_array_equal(again.runs["task-listen_run-1"].data, out.runs["task-listen_run-1"].data)
    assert again.runs["task-listen_run-1"].split == "test"


def test_bids_fmri_errors(bids, tmp_path):
    root, _ = bids
    nomask = tmp_path / "nomask"
    make_bids(nomask, with_mask=False)
    with pytest.raises(DataError, match="no brain mask"):
        load_bids_fmri(nomask, "01", "listen")
    badtr = tmp_path / "badtr"
    make_bids(badtr, tr2=1.5)
    with pytest.raises(DataError, match=r"run-2_bold\.nii\.gz: TR 1\.5 s differs"):
        load_bids_fmri(badtr, "01", "listen")
    nowords = tmp_path / "nowords"
    make_bids(nowords, events={"1": "onset\tduration\tword\n0.5\t0.3\tn/a\n", "2": EVENTS["2"]})
    with pytest.raises(DataError, match="no word events"):
        load_bids_fmri(nowords, "01", "listen")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.uint8), AFFINE), tmp_path / "small.nii.gz")
    with pytest.raises(DataError, match="mask grid"):
        load_bids_fmri(root, "01", "listen", mask=tmp_path / "small.nii.gz")
    with pytest.raises(DataError, match="match no run"):
        load_bids_fmri(root, "01", "listen", test_runs=["3"])
    with pytest.raises(DataError, match="no BOLD run with task-rest"):
        load_bids_fmri(root, "01", "rest")
    with pytest.raises(DataError, match="no word column"):
        load_bids_fmri(root, "01", "listen", word_column="lemma")


def test_bids_fmri_annotations_replace_the_word_events(bids, tmp_path):
    """A movie-style table of timed texts per run becomes the units (seed 000's annotation datasets)."""
    root, data = bids
    notes = tmp_path / "annotations.tsv"
    notes.write_text("run\tonset\tduration\ttext\n1\t0\t4\ta man walks in\n1\t4\t4\the sits down\n"
                     "task-listen_run-2\t2\t6\ta dog barks\n")
    out = load_bids_fmri(root, "01", "listen", annotations=notes)
    assert out.stimuli["text"].tolist() == ["a man walks in", "he sits down", "a dog barks"]
    assert out.stimuli["run"].tolist() == ["task-listen_run-1"] * 2 + ["task-listen_run-2"]
    np.testing.assert_allclose(out.stimuli["offset"], [4.0, 8.0, 8.0])
    notes.write_text("run\tonset\tduration\ttext\n1\t0\t4\tonly run one\n")
    with pytest.raises(DataError, match="no annotation for run"):
        load_bids_fmri(root, "01", "listen", annotations=notes)
