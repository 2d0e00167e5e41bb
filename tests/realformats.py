"""Writers of the real public formats (Praat TextGrid, ds003020 derivatives, BIDS fMRI, MEG-BIDS) for tests."""


def q(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def textgrid_long(tiers, xmax) -> str:
    """A Praat TextGrid in the long text format, as Praat writes it (tiers: (class, name, items))."""
    out = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {xmax} ",
           "tiers? <exists> ", f"size = {len(tiers)} ", "item []: "]
    for i, (cls, name, items) in enumerate(tiers, 1):
        out += [f"    item [{i}]:", f"        class = {q(cls)} ", f"        name = {q(name)} ",
                "        xmin = 0 ", f"        xmax = {xmax} "]
        if cls == "IntervalTier":
            out.append(f"        intervals: size = {len(items)} ")
            for j, (a, b, t) in enumerate(items, 1):
                out += [f"        intervals [{j}]:", f"            xmin = {a} ", f"            xmax = {b} ",
                        f"            text = {q(t)} "]
        else:
            out.append(f"        points: size = {len(items)} ")
            for j, (a, t) in enumerate(items, 1):
                out += [f"        points [{j}]:", f"            number = {a} ", f"            mark = {q(t)} "]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- contract data -> real formats
# The workflow tests write the demo's simulated listener out in the public
# formats and load it back through the config; what comes out must equal what
# went in, down to the encoding and temporal scores.

LEAD_IN = 10.0  # ds003020: the audio starts 10 s after the first trigger
FIRST_ROW = 10  # .hf5 row 0 is volume 10 of the trigger grid


def _runs_of(brain, runs):
    """(BIDS run label, run) of the chosen runs; labels count all of the subject's runs, as a scanner's would."""
    return [(i, r) for i, r in enumerate(brain.runs, 1) if runs is None or r in runs]


def write_lebel(root, stimuli, brain, subject, tr=2.0, runs=None):
    """A ds003020-style derivative folder: one story per run, TextGrids on the audio clock.

    A run with repeats gets them as ``individual_repeats`` (repeats x TRs x voxels), as the dataset's
    test story (wheretheressmoke.hf5) holds them; load it with that run in ``test_stories``.
    """
    import json

    import h5py

    deriv = root / "derivative"
    (deriv / "TextGrids").mkdir(parents=True, exist_ok=True)
    subj = deriv / "preprocessed_data" / subject
    subj.mkdir(parents=True, exist_ok=True)
    respdict_path = deriv / "respdict.json"
    respdict = json.loads(respdict_path.read_text()) if respdict_path.exists() else {}
    shift = FIRST_ROW * tr - LEAD_IN
    for _, run in _runs_of(brain, runs):
        data = brain.runs[run].data
        with h5py.File(subj / f"{run}.hf5", "w") as f:
            f.create_dataset("data", data=data)
            if brain.runs[run].repeats is not None:  # ds003020's test story: its presentations beside data
                f.create_dataset("individual_repeats", data=brain.runs[run].repeats)
        respdict[run] = data.shape[0] + 20
        words = stimuli[stimuli["run"] == run]
        items, t = [], 0.0
        for on, off, text in zip(words["onset"] + shift, words["offset"] + shift, words["text"]):
            if on > t:
                items.append((t, on, "sp"))
            items.append((on, max(off, on), text))
            t = max(off, on)
        end = data.shape[0] * tr + shift + 5.0
        items.append((t, end, "sp"))
        (deriv / "TextGrids" / f"{run}.TextGrid").write_text(
            textgrid_long([("IntervalTier", "phone", []), ("IntervalTier", "word", items)], end))
    respdict_path.write_text(json.dumps(respdict))


def write_bids_fmri(root, stimuli, brain, subject, grid, tr=2.0, runs=None, extra=("category",)):
    """BOLD runs as NIfTI on ``grid`` (voxels in C order), a brain mask, and word events with ``extra`` columns."""
    import nibabel as nib
    import numpy as np

    func = root / f"sub-{subject}" / "func"
    func.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "toy as BIDS", "BIDSVersion": "1.8.0"}')
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for i, run in _runs_of(brain, runs):
        data = brain.runs[run].data
        vol = data.T.reshape(*grid, data.shape[0])
        img = nib.Nifti1Image(vol.astype(np.float32), affine)
        img.header.set_zooms((2.0, 2.0, 2.0, tr))
        img.header.set_xyzt_units("mm", "sec")
        stem = f"sub-{subject}_task-listen_run-{i}"
        nib.save(img, func / f"{stem}_bold.nii.gz")
        words = stimuli[stimuli["run"] == run]
        events = words.assign(duration=words["offset"] - words["onset"], trial_type="word", word=words["text"])
        events[["onset", "duration", "trial_type", "word", *extra]].to_csv(
            func / f"{stem}_events.tsv", sep="\t", index=False, na_rep="n/a")
    nib.save(nib.Nifti1Image(np.ones(grid, np.uint8), affine), func / f"sub-{subject}_task-listen_desc-brain_mask.nii.gz")


def write_meg_bids(root, stimuli, brain, subject, runs=None, shift=0.0, extra=("category",)):
    """Each run as a FIF recording through MNE-BIDS, words as MEG-MASC dict strings; ``shift`` s of flat lead-in."""
    import datetime

    import mne
    import mne_bids
    import numpy as np

    sfreq = brain.sfreq
    pad = int(round(shift * sfreq))
    for i, run in _runs_of(brain, runs):
        data = brain.runs[run].data.T.astype(np.float64)
        data = np.concatenate([np.repeat(data[:, :1], pad, axis=1), data], axis=1) if pad else data
        info = mne.create_info([f"MEG{c:03d}" for c in range(data.shape[0])], sfreq, "mag")
        for c, ch in enumerate(info["chs"]):
            theta, phi = 0.3 + 0.1 * c, 1.3 * c
            ch["loc"][:3] = 0.1 * np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
            ch["loc"][3:12] = np.eye(3).ravel()
        info["line_freq"] = 50.0
        raw = mne.io.RawArray(data, info, verbose=False)
        raw.set_meas_date(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
        words = stimuli[stimuli["run"] == run]
        desc = [repr({"kind": "word", "word": t, **{k: words[k].iloc[j] for k in extra}})
                for j, t in enumerate(words["text"])]
        raw.set_annotations(mne.Annotations(words["onset"].to_numpy() + pad / sfreq,
                                            (words["offset"] - words["onset"]).to_numpy(), desc, orig_time=None))
        bp = mne_bids.BIDSPath(root=root, subject=subject, session="0", task="listen", run=i, datatype="meg")
        mne_bids.write_raw_bids(raw, bp, format="FIF", allow_preload=True, overwrite=True, verbose=False)
