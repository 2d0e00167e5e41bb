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
from brainphase.loaders.lebel import load_lebel  # noqa: E402
from brainphase.loaders.textgrid import read_textgrid, word_intervals  # noqa: E402
from brainphase.contracts.brain import BrainData, check_alignment, read_brain, write_brain  # noqa: E402
from brainphase.contracts.stimuli import DataError  # noqa: E402
from realformats import q, textgrid_long  # noqa: E402

# ----------------------------------------------------------------------------- LeBel et al. (ds003020)

N_VOX = 6
N_REPEATS = 3
RESPDICT = {"alternateithicatom": 30, "wheretheressmoke": 28}  # .hf5 rows: 30 - 20 = 10 and 28 - 20 = 8


# Word tiers on the audio clock (TextGrid seconds). Markers: sp, sentence_start, {BR}, "", SP, ns, lg.
# alternateithicatom's 10 rows end 30 s into the audio (row 9 is centred at 29 s): "end" runs past that,
# "after" starts past it but within the Lanczos window (3 TRs = 6 s), "gone" lies beyond the window.
WORDS_A = [(0.0, 9.5, "sp"), (9.5, 10.2, "I"), (10.2, 10.25, "sentence_start"), (10.25, 10.7, "reached"),
           (10.7, 11.0, "{BR}"), (11.0, 11.3, ""), (11.3, 11.6, '"over"'), (11.6, 12.0, "SP"), (12.0, 12.4, "ns"),
           (12.4, 13.0, "don't"), (13.0, 29.9, "lg"), (29.9, 30.5, "end"), (30.5, 31.0, "sentence_end"),
           (31.0, 31.5, "after"), (31.5, 36.0, "sp"), (36.0, 36.4, "gone"), (36.4, 40.0, "sp")]
WORDS_B = [(0.0, 10.5, "sp"), (10.5, 10.9, "where"), (10.9, 11.4, "there's"), (11.4, 12.0, "smoke"),
           (12.0, 30.0, "")]


def phones(words):
    return [(a, b, "AH" if t else "") for a, b, t in words]


def write_test_story(path, data, repeats):
    """wheretheressmoke.hf5 as ds003020 ships it: ``data`` (TRs x voxels) and ``individual_repeats``
    (repeats x TRs x voxels), float64 (the layout genandlam/Cross-participant-semantic-decoding's
    decoding/utils_resp.py reads with hf["individual_repeats"])."""
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.asarray(data, np.float64))
        if repeats is not None:
            f.create_dataset("individual_repeats", data=np.asarray(repeats, np.float64))


def make_lebel(root, respdict=RESPDICT, nan_voxel=None, repeats=True):
    deriv = root / "derivative"
    (deriv / "TextGrids").mkdir(parents=True)
    subj = deriv / "preprocessed_data" / "UTS01"
    subj.mkdir(parents=True)
    (deriv / "respdict.json").write_text(json.dumps(respdict))
    tiers_a = [("IntervalTier", "phone", phones(WORDS_A)), ("IntervalTier", "Word", WORDS_A),
               ("TextTier", "notes", [(5.0, "a note")])]
    tiers_b = [("IntervalTier", "phones", phones(WORDS_B)), ("IntervalTier", "Words", WORDS_B)]
    (deriv / "TextGrids" / "alternateithicatom.TextGrid").write_text(textgrid_long(tiers_a, 40.0))
    (deriv / "TextGrids" / "wheretheressmoke.TextGrid").write_text(textgrid_long(tiers_b, 30.0))
    rng = np.random.default_rng(0)
    data = {}
    for story, n in (("alternateithicatom", 10), ("wheretheressmoke", 8)):
        if story == "wheretheressmoke":  # a repeated signal: the presentations and their mean
            reps = (rng.standard_normal((1, n, N_VOX)) + 0.5 * rng.standard_normal((N_REPEATS, n, N_VOX)))
            reps = reps.astype(np.float32)
            data[story] = reps.mean(0)
            data["repeats"] = reps
            if nan_voxel is not None:
                data[story][3, nan_voxel] = np.nan
            write_test_story(subj / f"{story}.hf5", data[story], reps if repeats else None)
            continue
        data[story] = rng.standard_normal((n, N_VOX)).astype(np.float32)
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
    assert out.tr == 2.0
    assert set(out.runs) == {"alternateithicatom", "wheretheressmoke"}
    assert out.runs["wheretheressmoke"].split == "test" and out.runs["alternateithicatom"].split == "train"
    for story in ("alternateithicatom", "wheretheressmoke"):
        np.testing.assert_array_equal(out.runs[story].data, data[story])
        assert out.runs[story].data.dtype == np.float32
    assert out.runs["alternateithicatom"].repeats is None
    np.testing.assert_array_equal(out.coords, np.arange(N_VOX)[:, None])

    # Row j of the .hf5 is Huth-grid volume j + 10, whose trigger is (j + 10) 2 s - 10 s after the audio starts:
    # run clock = TextGrid time - 10 s.
    a = out.stimuli[out.stimuli["run"] == "alternateithicatom"]
    # "after" starts past the run's 20 s but reaches its last volumes; "gone" reaches none and is dropped
    assert list(a["text"]) == ["I", "reached", '"over"', "don't", "end", "after"]
    np.testing.assert_allclose(a["onset"], [-0.5, 0.25, 1.3, 2.4, 19.9, 21.0], atol=1e-9)
    np.testing.assert_allclose(a["offset"], [0.2, 0.7, 1.6, 3.0, 20.5, 21.5], atol=1e-9)  # not clipped
    np.testing.assert_allclose(a["audio_onset"], [9.5, 10.25, 11.3, 12.4, 29.9, 31.0])
    assert list(a["unit_id"]) == [f"alternateithicatom_{i:05d}" for i in range(6)]
    assert list(a["word_index"]) == list(range(6)) and set(a["split"]) == {"train"} and set(a["lang"]) == {"en"}
    b = out.stimuli[out.stimuli["run"] == "wheretheressmoke"]  # the tier named "Words", the alias of "word"
    assert list(b["text"]) == ["where", "there's", "smoke"] and set(b["split"]) == {"test"}
    np.testing.assert_allclose(b["onset"], [0.5, 0.9, 1.4], atol=1e-9)
    np.testing.assert_allclose(b["offset"], [0.9, 1.4, 2.0], atol=1e-9)

    # The result writes to and reads back from the contracts, and the words fit their runs.
    write_brain(tmp_path / "UTS01.h5", out.runs, out.tr, out.coords)
    out.stimuli.to_parquet(tmp_path / "lebel.parquet")
    brain = read_brain(tmp_path / "UTS01.h5")
    check_alignment(pd.read_parquet(tmp_path / "lebel.parquet"), brain, "lebel.parquet", "UTS01.h5")
    assert brain.tr == pytest.approx(2.0)


# --- the Huth lab's pipeline, transcribed from HuthLab/deep-fMRI-dataset for the comparisons below
def huth_tr_times(n_resp, tr=2.0, start_time=10.0, pad=5):
    """TR centres on the audio clock: stimulus_utils.load_simulated_trfiles + TRFile.simulate +
    DataSequence.from_grid (get_reltriggertimes() + avgtr / 2)."""
    trtimes = np.arange(n_resp - pad) * tr  # TRFile.simulate(resps - pad), expectedtr = tr
    rel = trtimes - start_time  # get_reltriggertimes: trigger times minus soundstarttime
    return rel + np.diff(trtimes).mean() / 2.0


def huth_word_seq(words):
    """dsutils.make_word_ds: the tier's intervals, minus DEFAULT_BAD_WORDS after .lower().strip("{}").strip()."""
    bad = {"sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp"}
    return [(a, b, t) for a, b, t in words if t.lower().strip("{}").strip() not in bad]


def huth_lanczos(data, oldtime, newtime, window=3):
    """interpdata.lanczosinterp2D with lanczosfun, as written there."""
    cutoff = 1 / np.mean(np.diff(newtime))
    t = (newtime[:, None] - oldtime[None, :]) * cutoff
    with np.errstate(divide="ignore", invalid="ignore"):
        val = window * np.sin(np.pi * t) * np.sin(np.pi * t / window) / (np.pi ** 2 * t ** 2)
    val[t == 0] = 1.0
    val[np.abs(t) > window] = 0.0
    return val @ data


def huth_features(words, vectors, n_resp, trim=5):
    """feature_spaces.downsample_word_vectors on every word, then encoding_utils.apply_zscore_and_hrf's cut
    [5 + trim : -trim] (before its z-score)."""
    seq = huth_word_seq(words)
    times = np.array([(a + b) / 2.0 for a, b, _ in seq])  # DataSequence.from_grid: word_avgtimes
    feats = np.stack([vectors(a, t) for a, _, t in seq])
    return huth_lanczos(feats, times, huth_tr_times(n_resp))[5 + trim:-trim]


def test_lebel_default_grid_is_the_huth_grid(lebel):
    """Without options the run's TR centres are the Huth lab's grid rows kept in the .hf5, and the words are
    the TextGrid's intervals on that clock."""
    root, _ = lebel
    out = load_lebel(root, "UTS01")
    brain = BrainData(out.runs, out.tr, out.coords)
    for story, words in (("alternateithicatom", WORDS_A), ("wheretheressmoke", WORDS_B)):
        n = RESPDICT[story]
        rows = brain.runs[story].data.shape[0]
        assert rows == n - 20
        huth = huth_tr_times(n)[10:-5]  # apply_zscore_and_hrf: [5 + trim : -trim], trim = 5
        # row j <-> (j + 10 + 0.5) * 2.0 - 10 s on the audio clock; the run clock starts 10 s after the audio
        np.testing.assert_allclose(huth, (np.arange(rows) + 10.5) * 2.0 - 10.0)
        np.testing.assert_allclose(brain.tr_times(story) + 10.0, huth, atol=1e-12)
        mine = out.stimuli[out.stimuli["run"] == story]
        grid = {a: b for a, b, t in words}  # TextGrid intervals by start
        np.testing.assert_allclose(mine["onset"] + 10.0, mine["audio_onset"], atol=1e-12)
        np.testing.assert_allclose(mine["offset"] + 10.0, [grid[a] for a in mine["audio_onset"]], atol=1e-12)


def test_lebel_features_match_lanczos_of_all_words(lebel):
    """The last TRs get the words heard after the last kept volume, as the Huth lab's resampling of every word
    does; dropping those words (the loader's old rule) changes the last TRs."""
    from brainphase.encoding.runs import features_per_run
    from brainphase.encoding.resample import lanczos_resample

    root, _ = lebel
    out = load_lebel(root, "UTS01", tr=2.0)
    story = "alternateithicatom"
    rng = np.random.default_rng(3)
    table = {(r, a): rng.standard_normal(4) for r, words in ((story, WORDS_A), ("wheretheressmoke", WORDS_B))
             for a, _, _ in words}

    def vectors(start, text):  # an empty interval is a word without a vector in the Huth lab's models
        return table[story, start] if text else np.zeros(4)

    acts = np.stack([table[r, a] for r, a in zip(out.stimuli["run"], out.stimuli["audio_onset"])])
    brain = BrainData(out.runs, out.tr, out.coords)
    ours = features_per_run(acts, out.stimuli, brain, [story])[0]
    huth = huth_features(WORDS_A, vectors, RESPDICT[story])
    assert ours.shape == huth.shape == (10, 4)
    np.testing.assert_allclose(ours, huth, rtol=1e-10, atol=1e-12)

    # The old rule: words starting after the run's last volume dropped, offsets clipped to the run's end.
    w = out.stimuli[out.stimuli["run"] == story]
    end = brain.duration(story)
    old = (w["onset"] < end).to_numpy()
    mid = (w["onset"][old] + np.minimum(w["offset"][old], end)) / 2
    dropped = lanczos_resample(acts[w.index[old]], mid.to_numpy(), brain.tr_times(story))
    np.testing.assert_allclose(dropped[:7], huth[:7], atol=1e-12)
    assert not np.allclose(dropped[-3:], huth[-3:], atol=1e-3)


def test_lebel_test_story_repeats_give_a_noise_ceiling(lebel, tmp_path):
    from brainphase.encoding.pipeline import ceiling_per_voxel

    root, data = lebel
    out = load_lebel(root, "UTS01")
    reps = out.runs["wheretheressmoke"].repeats
    assert reps.shape == (N_REPEATS, 8, N_VOX) and reps.dtype == np.float32
    np.testing.assert_allclose(reps, data["repeats"])
    write_brain(tmp_path / "UTS01.h5", out.runs, out.tr, out.coords)
    brain = read_brain(tmp_path / "UTS01.h5")
    assert brain.runs["wheretheressmoke"].repeats.shape == (N_REPEATS, 8, N_VOX)
    ceiling = ceiling_per_voxel(brain, ["wheretheressmoke"], trim=0)
    assert ceiling.shape == (N_VOX,) and np.isfinite(ceiling).all() and (ceiling > 0).any()
    assert load_lebel(root, "UTS01", repeats=False).runs["wheretheressmoke"].repeats is None


def test_lebel_test_story_without_repeats(tmp_path):
    make_lebel(tmp_path, repeats=False)
    with pytest.raises(DataError, match=r"wheretheressmoke\.hf5: a test story.*individual_repeats.*"
                                        r"data \(8, 6\) float64.*repeats: false"):
        load_lebel(tmp_path, "UTS01")
    assert load_lebel(tmp_path, "UTS01", repeats=False).runs["wheretheressmoke"].repeats is None
    assert load_lebel(tmp_path, "UTS01", test_stories=()).runs["wheretheressmoke"].split == "train"
    path = tmp_path / "derivative/preprocessed_data/UTS01/wheretheressmoke.hf5"
    write_test_story(path, np.zeros((8, N_VOX)), np.zeros((3, 7, N_VOX)))
    with pytest.raises(DataError, match=r"individual_repeats has shape \(3, 7, 6\).*\(repeats >= 2, 8, 6\)"):
        load_lebel(tmp_path, "UTS01")


def test_lebel_bad_voxel_in_a_repeat(tmp_path):
    data = make_lebel(tmp_path)
    reps = data["repeats"].copy()
    reps[1, 2, 4] = np.nan
    write_test_story(tmp_path / "derivative/preprocessed_data/UTS01/wheretheressmoke.hf5",
                     data["wheretheressmoke"], reps)
    with pytest.raises(DataError, match=r"wheretheressmoke\.hf5 \(individual_repeats\[1\]\): 1 voxel"):
        load_lebel(tmp_path, "UTS01")
    out = load_lebel(tmp_path, "UTS01", bad_voxels="drop")
    np.testing.assert_array_equal(out.coords[:, 0], [0, 1, 2, 3, 5])
    np.testing.assert_allclose(out.runs["wheretheressmoke"].repeats, np.delete(reps, 4, axis=2))
    assert all(r.data.shape[1] == 5 for r in out.runs.values())


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
