"""MEG in BIDS through MNE-BIDS: tiny MEG-MASC- and Armeni-style datasets written with write_raw_bids."""

import datetime

import numpy as np
import pandas as pd
import pytest

mne = pytest.importorskip("mne")
mne_bids = pytest.importorskip("mne_bids")

from brainphase.loaders.meg_bids import default_word_filter, load_meg_bids  # noqa: E402
from brainphase.contracts.brain import BrainData, check_alignment  # noqa: E402
from brainphase.contracts.stimuli import DataError, read_stimuli  # noqa: E402
from brainphase.temporal.epochs import word_epochs  # noqa: E402

SFREQ = 100.0
N_CH = 4
UNIT = 1e-12  # the ramp's step in tesla


def ramp_raw(n_times: int, first_samp: int, bads=()) -> "mne.io.RawArray":
    """Magnetometers on a dome whose value is (sample + 1000 * channel) pT, counted from the first sample."""
    info = mne.create_info([f"MEG{i:03d}" for i in range(N_CH)], SFREQ, "mag")
    for i, ch in enumerate(info["chs"]):
        theta, phi = 0.4 + 0.25 * i, 1.7 * i
        ch["loc"][:3] = 0.11 * np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
        ch["loc"][3:12] = np.eye(3).ravel()
    info["line_freq"] = 50.0
    info["bads"] = list(bads)
    data = (np.arange(n_times)[None] + 1000.0 * np.arange(N_CH)[:, None]) * UNIT
    raw = mne.io.RawArray(data, info, first_samp=first_samp, verbose=False)
    raw.set_meas_date(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    return raw


def write(raw, root, **entities):
    bp = mne_bids.BIDSPath(root=root, datatype="meg", **entities)
    mne_bids.write_raw_bids(raw, bp, format="FIF", allow_preload=True, overwrite=True, verbose=False)
    return bp


def masc(kind, **kw):
    return repr({"story": "lw1", "kind": kind, **kw})


# Onsets are on the run's own clock (seconds from its first sample); MNE annotations with
# orig_time=None are read the same way, whatever raw.first_samp is.
MASC_WORDS = {
    "0": [(1.00, 0.20, "the"), (1.37, 0.30, "cat"), (2.506, 0.25, "sat"), (19.95, 0.04, "end")],
    "1": [(0.40, 0.10, "a"), (3.00, 0.50, "dog")],
}


@pytest.fixture(scope="module")
def masc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("masc")
    for task, first_samp in (("0", 500), ("1", 0)):
        words = MASC_WORDS[task]
        onsets = [0.5, 1.0] + [w[0] for w in words]
        durations = [10.0, 0.05] + [w[1] for w in words]
        desc = [masc("sound", sound="lw1_0.wav"), masc("phoneme", phoneme="dh")] + [
            masc("word", word=w, word_index=i, sequence_id=0) for i, (_, _, w) in enumerate(words)]
        raw = ramp_raw(2000, first_samp, bads=["MEG002"] if task == "1" else ())
        raw.set_annotations(mne.Annotations(onsets, durations, desc, orig_time=None))
        write(raw, root, subject="01", session="0", task=task)
    # a subject whose recording has no word events
    raw = ramp_raw(500, 0)
    raw.set_annotations(mne.Annotations([0.5, 1.0], [1.0, 1.0], [masc("sound"), masc("sound")], orig_time=None))
    write(raw, root, subject="02", session="0", task="0")
    return root


ARMENI_EVENTS = (
    "onset\tduration\tsample\ttype\tvalue\n"
    "0.000\tn/a\t0\twav_onset\t\"story1.wav\"\n"
    "0.800\t0.300\t80\tword_onset_01\t\"Holmes\"\n"
    "0.800\t0.080\t80\tphoneme_onset_01\t\"HH\"\n"
    "1.250\tn/a\t125\tword_onset_02\t\"took\"\n"
    "1.700\t0.250\t170\tword_onset_03\t\"his\"\n"
    "1.700\t0.250\t170\tword_offset\t\"his\"\n"
)


@pytest.fixture(scope="module")
def armeni_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("armeni")
    raw = ramp_raw(1500, 250)
    raw.set_annotations(mne.Annotations([0.8], [0.3], ["word_onset"], orig_time=None))
    bp = write(raw, root, subject="001", session="001", task="compr")
    # Armeni's own events.tsv: type + value columns, no trial_type
    bp.copy().update(suffix="events", extension=".tsv").fpath.write_text(ARMENI_EVENTS)
    return root


def test_masc_words_onsets_and_runs(masc_root, tmp_path):
    out = load_meg_bids(masc_root, "01", lang="en", drop_bads=False)
    stim, runs = out.stimuli, out.runs
    assert sorted(runs) == ["ses-0_task-0", "ses-0_task-1"]
    assert out.sfreq == SFREQ and out.ch_names == [f"MEG{i:03d}" for i in range(N_CH)]
    for task, words in MASC_WORDS.items():
        got = stim[stim["run"] == f"ses-0_task-{task}"]
        assert list(got["text"]) == [w for _, _, w in words]  # the sound and the phoneme are not words
        # write_raw_bids stores onsets on the sample grid: 2.506 s is written as sample 251, 2.51 s
        onsets = np.array([round(o * SFREQ) / SFREQ for o, _, _ in words])
        np.testing.assert_allclose(got["onset"], onsets, atol=1e-9)
        np.testing.assert_allclose(got["offset"], [min(o + d, 20.0) for o, (_, d, _) in zip(onsets, words)])
        assert list(got["word_index"]) == list(range(len(words)))
        assert list(got["unit_id"]) == [f"ses-0_task-{task}_{i:05d}" for i in range(len(words))]
    assert set(stim["lang"]) == {"en"} and set(stim["split"]) == {"train"}
    assert set(stim["story"]) == {"lw1"} and list(stim["event_word_index"][:2]) == [0, 1]  # dict keys kept
    # sample 0 of each run is its first recorded sample, though task 0 starts at first_samp 500
    for run in runs.values():
        assert run.data.dtype == np.float32 and run.data.shape == (2000, N_CH)
        np.testing.assert_allclose(run.data[[0, 7]], np.array([[0, 1000, 2000, 3000], [7, 1007, 2007, 3007]]) * UNIT,
                                   rtol=1e-6)
    # the events.tsv clock and MNE's annotations agree once first_time is removed
    raw = mne_bids.read_raw_bids(mne_bids.BIDSPath(root=masc_root, subject="01", session="0", task="0",
                                                   datatype="meg"), verbose=False)
    words = ["'word'" in d for d in raw.annotations.description]
    np.testing.assert_allclose(raw.annotations.onset[words] - raw.first_time,
                               stim.loc[stim["run"] == "ses-0_task-0", "onset"])
    assert out.coords.shape == (N_CH, 2) and np.isfinite(out.coords).all()
    assert len(np.unique(out.coords.round(6), axis=0)) == N_CH
    # the outputs are the contracts: the table stores as parquet, the runs fit the words
    stim.to_parquet(tmp_path / "words.parquet")
    back = read_stimuli(tmp_path / "words.parquet")
    check_alignment(back, BrainData(runs, None, out.coords, {}, out.sfreq), "words.parquet", "sub-01.h5")


def test_masc_epochs_of_the_loaded_words(masc_root):
    out = load_meg_bids(masc_root, "01", task="0")
    brain = BrainData(out.runs, None, out.coords, {}, out.sfreq)
    ep = word_epochs(brain, out.stimuli, tmin=-0.1, tmax=0.2)
    # words at samples 100, 137, 251 (round 250.6); the word at 1995 has no 20 samples after it
    assert list(out.stimuli["text"].iloc[ep.rows]) == ["the", "cat", "sat"]
    ks = np.arange(-10, 21)
    want = np.stack([np.stack([s + ks + 1000 * c for c in range(N_CH)]) for s in (100, 137, 251)]) * UNIT
    np.testing.assert_allclose(ep.data, want, rtol=1e-6)


def test_masc_bads_filters_and_resampling(masc_root):
    out = load_meg_bids(masc_root, "01")  # MEG002 is bad in task 1: dropped from both runs
    assert out.ch_names == ["MEG000", "MEG001", "MEG003"] and out.coords.shape == (3, 2)
    assert all(r.data.shape == (2000, 3) for r in out.runs.values())
    np.testing.assert_allclose(out.runs["ses-0_task-0"].data[5], np.array([5, 1005, 3005]) * UNIT, rtol=1e-6)
    low = load_meg_bids(masc_root, "01", task="1", l_freq=None, h_freq=10.0, resample_sfreq=50.0)
    assert low.sfreq == 50.0 and low.runs["ses-0_task-1"].data.shape == (1000, 3)
    np.testing.assert_allclose(low.stimuli["onset"], [0.40, 3.00])  # seconds do not move
    mid = low.runs["ses-0_task-1"].data[400:600, 0] / UNIT  # a filtered ramp is still the ramp away from the edges
    np.testing.assert_allclose(mid, 2 * np.arange(400, 600), rtol=1e-3)


def test_armeni_layout(armeni_root):
    out = load_meg_bids(armeni_root, "sub-001", task="compr", lang="en")
    assert list(out.runs) == ["ses-001_task-compr"]
    stim = out.stimuli
    assert list(stim["text"]) == ["Holmes", "took", "his"]  # quotes stripped; wav, phoneme, offset rows skipped
    np.testing.assert_allclose(stim["onset"], [0.8, 1.25, 1.7])
    np.testing.assert_allclose(stim["offset"], [1.1, 1.7, 1.95])  # "took" has no duration: next onset
    brain = BrainData(out.runs, None, out.coords, {}, out.sfreq)
    ep = word_epochs(brain, stim, tmin=0.0, tmax=0.05)
    np.testing.assert_allclose(ep.data[:, 1, 0], (np.array([80, 125, 170]) + 1000) * UNIT, rtol=1e-6)


def test_default_filter_reads_a_word_column():
    events = pd.DataFrame({"onset": [0.1, 0.5], "duration": [0.2, 0.2], "trial_type": ["word", "word"],
                           "value": [1, 1], "word": ["hello", "world"]})
    assert list(default_word_filter(events)["text"]) == ["hello", "world"]
    # MEG-MASC dicts with bare nan values (literal_eval refuses them); a quoted 'nan' stays a word
    masc_events = pd.DataFrame({"onset": [0.1, 0.5], "duration": [0.2, 0.2], "trial_type": [
        "{'kind': 'word', 'word': 'nan', 'pronounced': nan}", "{'kind': 'phoneme', 'phoneme': 'n'}"]})
    words = default_word_filter(masc_events)
    assert list(words["text"]) == ["nan"] and words["pronounced"].isna().all()


def test_custom_word_filter(masc_root):
    def sounds(events):
        return events[events["trial_type"].str.contains("'sound'")].assign(text="SOUND")

    out = load_meg_bids(masc_root, "02", word_filter=sounds)
    assert list(out.stimuli["text"]) == ["SOUND", "SOUND"] and list(out.stimuli["onset"]) == [0.5, 1.0]


def test_errors_name_the_file_and_what_was_seen(masc_root, tmp_path):
    with pytest.raises(DataError, match=r"masc.*no subject '07'.*subjects found: \['01', '02'\]"):
        load_meg_bids(masc_root, "07")
    with pytest.raises(DataError, match=r"task='9'.*sub-01_ses-0_task-0_meg\.fif"):
        load_meg_bids(masc_root, "01", task="9")
    with pytest.raises(DataError, match=r"sub-02_ses-0_task-0_events\.tsv: no word events; trial_type values seen: "
                                        r"\[\"\{'story': 'lw1', 'kind': 'sound'\}\"\]"):
        load_meg_bids(masc_root, "02")
    with pytest.raises(DataError, match=r"nowhere: BIDS root not found \(looking for subject '01'\)"):
        load_meg_bids(tmp_path / "nowhere", "01")
