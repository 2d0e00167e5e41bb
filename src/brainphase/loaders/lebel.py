"""LeBel et al. 2023 (OpenNeuro ds003020) preprocessed responses and TextGrids as the contracts.

Layout read (the dataset's ``derivative`` folder, as the Huth lab's
``deep-fMRI-dataset`` code reads it)::

    <root>/derivative/preprocessed_data/<subject>/<story>.hf5   HDF5, dataset ``data``: (TRs x voxels);
                                                                 the test story also ``individual_repeats``:
                                                                 (repeats x TRs x voxels)
    <root>/derivative/TextGrids/<story>.TextGrid                 Praat TextGrid, long (or short) text format
    <root>/derivative/respdict.json                              {story: number of TRs}

Each story is one run (named by the story), split ``test`` for the stories in
``test_stories`` (default ``wheretheressmoke``, the story LeBel et al. repeat
and hold out) and ``train`` otherwise. Words come from the TextGrid's word tier
(:mod:`brainphase.loaders.textgrid`: which tier, which markers are dropped,
what overlapping intervals do).

Time convention — what the rows of the ``.hf5`` files are
-----------------------------------------------------------
The derivative responses are already trimmed. In ``HuthLab/deep-fMRI-dataset``
(``encoding/feature_spaces.py``, ``encoding/ridge_utils/stimulus_utils.py``,
``encoding/ridge_utils/DataSequence.py``, ``encoding/encoding_utils.py``) the
features of a story are built on a simulated TR grid and cut to match the
stored response:

1. ``load_simulated_trfiles(respdict, tr=2.0, start_time=10.0, pad=5)`` simulates
   ``respdict[story] - 5`` triggers at ``k * 2.0`` s and puts the start of the
   story audio (TextGrid time 0) at 10 s — the 10 s lead-in of silence;
2. ``DataSequence.from_grid`` takes the trigger times relative to the audio,
   ``k * 2.0 - 10``, and ``downsample_word_vectors`` Lanczos-interpolates the
   word features (each word at its midpoint, (start + end) / 2; window 3,
   cutoff 1 / TR) to the TR centres ``(k + 0.5) * 2.0 - 10`` on the audio clock;
3. ``apply_zscore_and_hrf`` keeps the feature rows ``[5 + trim : -trim]`` with
   ``trim = 5`` (``encoding.py --trim`` default) and pairs them, row for row,
   with the ``.hf5`` response (``get_response``), used as stored.

So a story's ``.hf5`` has ``respdict[story] - 20`` rows (the 5 pad TRs the
grid lacks, its first 10 TRs and its last 5) and its row ``j`` is grid volume
``k = j + 10``, centred ``(j + 10 + 0.5) * 2.0 - 10`` s after the audio starts.
(The dataset agrees: ``wheretheressmoke`` has respdict 311 and its files hold
291-row arrays.) This loader returns the rows as stored — **do not trim them
again** to reproduce LeBel et al. (set the encoding ``trim`` to 0; a larger
trim discards further TRs) — and raises :class:`DataError` when a file's row
count is not ``respdict - 20``.

The clock is ``tr = 2.0`` s: the grid above is 2.0 s and ds003020's BIDS
sidecars (``task-<story>_bold.json``) give ``RepetitionTime: 2``. (``TRFile``'s
``expectedtr=2.0045`` only fills in a missing trigger when real trigger logs
are read; the derivative's features never use it, and a 2.0045 s clock would
drift from the responses' grid by about 1.8 s at row 380.) Volume ``j`` of the
returned run is centred at ``(j + 0.5) * tr`` (the contract), so::

    onset_run = onset_textgrid - (10 * tr - 10 s)      # = onset_textgrid - 10 s at tr = 2.0

and brainphase's Lanczos resampling gives the features of ``lanczosinterp2D``
on the Huth lab's grid. Another ``tr`` rescales the grid (with the same 10 s
anchor); only 2.0 reproduces the published pipeline.

Which words: the Huth lab resamples *all* words of the story onto the whole
grid before trimming, so words heard before the first kept volume and after
the last one reach the first and last TRs through the Lanczos window. Words
before the first volume get negative onsets and are all kept (they are also
the story's opening context for a language model). After the last volume,
every word whose midpoint is at most 3 TRs (the Lanczos window) past the last
volume's centre is kept; later words have zero weight on every kept volume,
so the features equal the Huth lab's exactly. Onsets and offsets are not
clipped to the run (that would move a word's midpoint); ``check_alignment``
accepts words starting up to 3 TRs after an fMRI run's end for this reason.
The original TextGrid times are kept as ``audio_onset`` and ``audio_offset``.

Repeats of the test story: ds003020's ``wheretheressmoke.hf5`` holds, besides
``data`` (TRs x voxels, the test response the Huth lab's ``encoding.py`` uses;
kept as stored), the single presentations as the dataset
``individual_repeats`` (repeats x TRs x voxels): 10 for UTS01-03, 5 for
UTS04-09, as the subjects' ``wheretheressmoke`` BOLD runs count (the file
sizes in the dataset's git-annex keys are 11 and 6 times one (291 x voxels)
float64 array). With ``repeats=True`` (the default) they become the run's
``repeats``, from which the encoding computes the noise ceiling; a test story
whose file lacks them is an error naming what the file holds.
``repeats=False`` leaves them out (no noise ceiling, a brain file ~1 GB
smaller for UTS01-03).

Voxel coordinates: the ``.hf5`` columns are the voxels of a pycortex mask;
without ``coords`` they are returned as their column index, (V, 1). Give the
subject's pycortex mask NIfTI (e.g. ``mask_thick.nii.gz`` of the transform;
pycortex orders voxels as ``mask_nifti.T != 0`` flattened in C order, i.e. x
fastest) to get millimetre coordinates (V, 3) through its affine, or a ``.npy``
(V, 3) array.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..contracts.brain import WORD_REACH_TRS, BrainRun
from ..contracts.stimuli import DataError, check_timings
from .textgrid import word_intervals
from .types import LoadedFMRI, drop_bad_voxels

log = logging.getLogger(__name__)

# HuthLab/deep-fMRI-dataset encoding/ridge_utils/stimulus_utils.py load_simulated_trfiles(tr=2.0): the grid
# the released responses are paired with; ds003020 task-<story>_bold.json: RepetitionTime 2.
TR = 2.0  # s
LEAD_IN_S = 10.0  # s between simulated trigger 0 and the story audio (load_simulated_trfiles start_time)
PAD_TRS = 5  # simulated grid = respdict - PAD_TRS triggers (load_simulated_trfiles pad)
TRIM_TRS = 5  # encoding.py --trim default; features kept [5 + trim : -trim]
FIRST_ROW = 5 + TRIM_TRS  # grid volume of .hf5 row 0
ROWS_DROPPED = PAD_TRS + FIRST_ROW + TRIM_TRS  # respdict - .hf5 rows
TEST_STORIES = ("wheretheressmoke",)
# Single presentations of the test story, (repeats x TRs x voxels), next to its ``data``; read as in
# genandlam/Cross-participant-semantic-decoding decoding/utils_resp.py get_resp_test (hf["individual_repeats"]).
REPEATS_KEY = "individual_repeats"


def _pycortex_coords(path: Path, n_voxels: int) -> np.ndarray:
    if path.suffix == ".npy":
        coords = np.load(path)
    else:
        import nibabel as nib

        img = nib.load(str(path))
        mask = np.asarray(img.dataobj).T != 0  # (z, y, x), as pycortex reads masks
        zyx = np.argwhere(mask)
        coords = nib.affines.apply_affine(img.affine, zyx[:, ::-1])
    coords = np.asarray(coords, float)
    if coords.ndim != 2 or coords.shape != (n_voxels, 3):
        raise DataError(f"{path}: gives {coords.shape[0] if coords.ndim else 0} voxel coordinates of shape "
                        f"{coords.shape}, the responses have {n_voxels} voxels; give the subject's pycortex "
                        "mask (the one with that many voxels) or a (voxels, 3) .npy array")
    return coords


def _float32(dataset) -> np.ndarray:
    # Converted while reading: the test story's repeats are ~2 GB as stored (float64) for UTS01-03.
    return np.asarray(dataset.astype(np.float32)[()])


def _contents(f, path: Path) -> str:
    """What an HDF5 file holds (datasets with shapes) and the story's other files beside it, for errors."""
    import h5py

    found = []
    f.visititems(lambda name, obj: found.append(f"{name} {obj.shape} {obj.dtype}")
                 if isinstance(obj, h5py.Dataset) else None)
    others = sorted(q.name for q in path.parent.glob(f"{path.stem}*") if q != path)
    return (f"datasets {found or 'none'}" + (f"; beside it: {others}" if others else ""))


def _read_hf5(path: Path, with_repeats: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The story's (TRs x voxels) response and, for a test story, its (repeats x TRs x voxels) presentations."""
    import h5py

    if not path.exists():
        raise DataError(f"{path}: response file missing; download it (datalad get) or drop the story")
    reps = None
    with h5py.File(path, "r") as f:
        key = next((k for k in ("data", "resp") if isinstance(f.get(k), h5py.Dataset)), None)
        if key is None:
            raise DataError(f"{path}: no dataset 'data' (it holds {_contents(f, path)}); expected the ds003020 "
                            "derivative layout, one (TRs x voxels) dataset named data")
        data = _float32(f[key])
        if with_repeats:
            if not isinstance(f.get(REPEATS_KEY), h5py.Dataset):
                raise DataError(
                    f"{path}: a test story, but the file has no dataset '{REPEATS_KEY}' (repeats x TRs x voxels), "
                    f"the single presentations ds003020's wheretheressmoke.hf5 holds; it holds {_contents(f, path)}. "
                    "Re-download the file (datalad get), take the story out of test_stories (ds003020 repeats "
                    "only wheretheressmoke), or set the option repeats: false to go without a noise ceiling")
            reps = _float32(f[REPEATS_KEY])
    if data.ndim != 2:
        raise DataError(f"{path}: dataset has shape {data.shape}, expected (TRs, voxels)")
    if reps is not None and (reps.ndim != 3 or reps.shape[0] < 2 or reps.shape[1:] != data.shape):
        raise DataError(f"{path}: {REPEATS_KEY} has shape {reps.shape}, expected (repeats >= 2, {data.shape[0]}, "
                        f"{data.shape[1]}) to match data {data.shape}; re-download the file, or set the option "
                        "repeats: false to go without a noise ceiling")
    return data, reps


def _stories(subject_dir: Path, stories: Iterable[str] | None) -> list[str]:
    if stories is not None:
        stories = [stories] if isinstance(stories, str) else list(stories)
        return list(dict.fromkeys(stories))
    if not subject_dir.is_dir():
        parent = subject_dir.parent
        have = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        raise DataError(f"{subject_dir}: no such subject folder (subjects found: {have or 'none'}); check the "
                        "root (the folder holding derivative/) and the subject (e.g. UTS01)")
    found = sorted(p.stem for p in subject_dir.glob("*.hf5"))
    if not found:
        raise DataError(f"{subject_dir}: no <story>.hf5 files; download the subject's preprocessed data")
    return found


def lebel_inputs(root: str | Path, subject: str, stories: Sequence[str] | None = None,
                 test_stories: Sequence[str] = TEST_STORIES, *, coords: str | Path | None = None,
                 **_other) -> list[Path]:
    """The files :func:`load_lebel` reads for ``subject`` with the same options, those on disk only.

    respdict.json, the subject's ``<story>.hf5`` (``stories``, else every one in the
    subject's folder), their TextGrids and ``coords``. The workflow declares them
    as the load job's inputs so that an edited file loads the subject again; one
    not on disk is left out (a dry run lists missing data, and the loader names it).
    The other options change no file read.
    """
    deriv = Path(root) / "derivative"
    subject_dir = deriv / "preprocessed_data" / str(subject)
    if stories is not None:
        names = [stories] if isinstance(stories, str) else list(dict.fromkeys(stories))
    else:
        names = sorted(p.stem for p in subject_dir.glob("*.hf5")) if subject_dir.is_dir() else []
    files = [deriv / "respdict.json"]
    for story in names:
        files += [subject_dir / f"{story}.hf5", deriv / "TextGrids" / f"{story}.TextGrid"]
    if coords is not None:
        files.append(Path(coords))
    return [f for f in files if f.is_file()]


def _read_respdict(path: Path) -> dict:
    """respdict.json: the TRs of each story's simulated grid."""
    if not path.exists():
        raise DataError(f"{path}: missing; point root at the ds003020 folder that holds "
                        "derivative/respdict.json")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err}); restore it from the dataset") from err


def _story_words(grid: Path, story: str, n_rows: int, split: str, tr: float, lang: str, on_overlap: str,
                 word_tier: str | None) -> pd.DataFrame:
    """The stimulus rows of one story, on the clock of its stored response (see the module doc)."""
    shift = FIRST_ROW * tr - LEAD_IN_S
    reach = WORD_REACH_TRS * tr
    words = word_intervals(grid, on_overlap, word_tier)
    onset = words["onset"].to_numpy(float) - shift
    offset = np.maximum(words["offset"].to_numpy(float) - shift, onset)
    # HuthLab/deep-fMRI-dataset encoding/feature_spaces.py downsample_word_vectors: every word of the story,
    # at its midpoint, Lanczos-interpolated (window 3) onto the grid before the trim. Past the last kept
    # volume's centre + the window a word has zero weight on every kept volume; only those are dropped.
    last_centre = (n_rows - 0.5) * tr
    keep = (onset + offset) / 2 <= last_centre + reach
    if not keep.all():
        log.info("%s: %d words lie more than %d TRs past the last volume, out of the Lanczos window; dropped",
                 story, int((~keep).sum()), WORD_REACH_TRS)
    words, onset, offset = words[keep], onset[keep], offset[keep]
    frame = pd.DataFrame({
        "unit_id": [f"{story}_{i:05d}" for i in range(len(words))], "run": story,
        "text": words["text"].to_numpy(), "lang": lang, "onset": onset, "offset": offset,
        "word_index": np.arange(len(words)), "split": split, "audio_onset": words["onset"].to_numpy(float),
        "audio_offset": words["offset"].to_numpy(float), "overlap": words["overlap"].to_numpy(bool)})
    check_timings(frame, grid, timed=True)
    return frame


def _drop_bad_voxels_with_repeats(data: dict, reps: dict, files: dict, policy: str) -> tuple[dict, np.ndarray]:
    """The runs after :func:`drop_bad_voxels`, the test stories' repeats cut alike (in place), and the kept columns.

    Repeats go through the same voxel check as the runs (a voxel NaN in one presentation has no ceiling),
    as extra entries; the kept column indices then cut the repeats and the coordinates alike.
    """
    n_vox = next(iter(data.values())).shape[1]
    checked, labels = dict(data), dict(files)
    for story, r in reps.items():
        for i in range(r.shape[0]):
            checked[f"{story} repeat {i}"] = r[i]
            labels[f"{story} repeat {i}"] = f"{files[story]} ({REPEATS_KEY}[{i}])"
    checked, kept = drop_bad_voxels(checked, labels, np.arange(n_vox)[:, None], policy)
    kept = kept[:, 0]
    if kept.size < n_vox:  # the checked repeats are cut copies: stack them, the uncut ones (~1 GB) freed first
        for story in reps:
            n_rep, reps[story] = reps[story].shape[0], None
            reps[story] = np.stack([checked.pop(f"{story} repeat {i}") for i in range(n_rep)])
    return checked, kept


def load_lebel(root: str | Path, subject: str, stories: Sequence[str] | None = None,
               test_stories: Sequence[str] = TEST_STORIES, *, tr: float = TR, repeats: bool = True,
               coords: str | Path | None = None, bad_voxels: str = "raise", lang: str = "en",
               word_tier: str | None = None, on_overlap: str = "error") -> LoadedFMRI:
    """Words and responses of one LeBel et al. 2023 subject; see the module doc for the time convention.

    ``root`` holds ``derivative/``; ``stories`` defaults to every ``<story>.hf5`` of
    the subject. Each story is a run named by the story with unit_ids
    ``{story}_{i:05d}``; stories in ``test_stories`` are split ``test``, the rest
    ``train``. ``tr``: the clock, 2.0 s (the Huth lab's grid and the scans'
    RepetitionTime). ``repeats``: read each test story's single presentations
    (``individual_repeats``) for the noise ceiling; an error when a test story
    lacks them. ``coords``: a pycortex mask NIfTI or (V, 3) ``.npy`` for
    millimetre coordinates, else the column index. ``bad_voxels``: ``raise`` on
    voxels that are NaN/inf or constant in a run or a repeat, or ``drop`` them
    everywhere. ``word_tier``: the TextGrid tier holding the words when it is not
    named ``word``/``words``. ``on_overlap``: word intervals that overlap or repeat
    an earlier one are an ``error``, or with ``warn`` kept, counted in a warning
    and marked in the stimulus column ``overlap``.
    """
    root = Path(root)
    deriv = root / "derivative"
    subject_dir = deriv / "preprocessed_data" / str(subject)
    respdict_path = deriv / "respdict.json"
    respdict = _read_respdict(respdict_path)
    names = _stories(subject_dir, stories)
    test_stories = [test_stories] if isinstance(test_stories, str) else list(test_stories)
    unknown = [s for s in test_stories if s not in names]
    if unknown:
        raise DataError(f"{subject_dir}: test stories {unknown} are not among the loaded stories {names}; add "
                        "them to stories, fix test_stories, or pass test_stories=() for no test split")
    data, reps, files, frames = {}, {}, {}, []
    for story in names:
        path = subject_dir / f"{story}.hf5"
        if story not in respdict:
            raise DataError(f"{respdict_path}: no entry for story {story!r}; use the respdict.json of the same "
                            "dataset version or drop the story")
        arr, story_reps = _read_hf5(path, with_repeats=repeats and story in test_stories)
        expected = int(respdict[story]) - ROWS_DROPPED
        if arr.shape[0] != expected:
            raise DataError(
                f"{path}: {arr.shape[0]} TRs, but respdict.json gives {story}: {int(respdict[story])} TRs, so the "
                f"trimmed response should have {int(respdict[story])} - {ROWS_DROPPED} = {expected}; the file "
                "or respdict.json belongs to another version of the dataset — re-download the pair")
        if arr.shape[0] < 2:
            raise DataError(f"{path}: {arr.shape[0]} TRs; a run needs at least 2 — re-download the file")
        if data and arr.shape[1] != next(iter(data.values())).shape[1]:
            first = next(iter(files.values()))
            raise DataError(f"{path}: {arr.shape[1]} voxels, {first} has {next(iter(data.values())).shape[1]}; "
                            "the stories of one subject must share the voxels — re-download the file")
        data[story], files[story] = arr, path
        if story_reps is not None:
            reps[story] = story_reps
        split = "test" if story in test_stories else "train"
        frames.append(_story_words(deriv / "TextGrids" / f"{story}.TextGrid", story, arr.shape[0], split, tr, lang,
                                   on_overlap, word_tier))
    n_vox = next(iter(data.values())).shape[1]
    xyz = (_pycortex_coords(Path(coords), n_vox) if coords is not None
           else np.arange(n_vox, dtype=np.int64)[:, None])
    checked, kept = _drop_bad_voxels_with_repeats(data, reps, files, bad_voxels)
    runs = {s: BrainRun(checked[s], "test" if s in test_stories else "train", reps.get(s)) for s in data}
    return LoadedFMRI(pd.concat(frames, ignore_index=True), runs, float(tr), xyz[kept])
