"""fMRI in BIDS (raw or fMRIPrep-style derivatives) with word events, as the stimulus and brain contracts.

``load_bids_fmri`` finds a subject's BOLD runs of one task,
``sub-<s>/[ses-<x>/]func/sub-<s>[_ses-<x>]_task-<t>[_acq-..][_run-<r>][_space-..][_desc-..]_bold.nii[.gz]``,
and returns per run a (TRs x voxels) float32 array of the voxels inside a brain
mask, extracted with ``nilearn.maskers.NiftiMasker`` without standardisation,
detrending, filtering or smoothing — the values are the file's values (after
its scaling slope). Voxels are in NiftiMasker's order (the mask's nonzero voxels
in C order of the (i, j, k) array) and ``coords`` holds their positions in
millimetres through the image affine (subject space for native-space data),
(V, 3).

The mask is the ``mask`` argument, or else a ``*_desc-brain_mask.nii[.gz]`` in
the run's folder whose entities (other than ``desc``) all belong to the run —
e.g. fMRIPrep's per-run mask or one shared file; when the runs' masks differ,
their intersection is used so every run has the same voxels. The mask must be on
the BOLD grid (same shape and affine: nothing is resampled) and binary.

The TR is the sidecar's ``RepetitionTime`` (BIDS inheritance: the run's ``.json``
over less specific ``*_bold.json`` files up to the dataset root), else the
NIfTI header's fourth zoom (converted from ms when the header says so); a header
that disagrees with the sidecar is logged, runs with different TRs are an error.

Words come from the run's ``*_events.tsv`` (the most specific one whose entities
belong to the run, in the run's folder or — for derivatives, whose events live
in the raw dataset — under ``events_root``). The word is in ``word_column``, by
default the first of ``word``, ``trial_type`` and ``value`` the file has; rows
whose word is empty or ``n/a`` are dropped (the file is read as text, so words
like "null" or "NA" survive), and ``event_type`` keeps only rows with that
``trial_type``. A word row whose onset or duration does not parse as a number
(``n/a`` onset, a decimal comma) is an error naming the file's line, or with
``on_bad_onset="warn"`` a counted warning that drops it. BIDS onsets count from the start of the first volume's
acquisition, which is the run clock of the contract (volume i centred at
(i + 0.5) TR) — onsets are used as they are. A word's offset is onset +
duration, or the next word's onset where the duration is missing. Extra event
columns are kept (``event_``-prefixed when they clash with contract columns).

Runs are named by their entities, e.g. ``task-listen_run-1`` or
``ses-1_task-listen_run-2``, and are split ``train`` except those in
``test_runs`` (a run name or a BIDS run label such as ``2`` or ``run-2``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..contracts.brain import BrainRun
from ..contracts.stimuli import DataError
from .annotations import read_annotations, run_annotations
from .types import LoadedFMRI, drop_bad_voxels
from .words import clean_extras, parse_times, read_events_tsv, words_to_stimuli

log = logging.getLogger(__name__)

RUN_KEYS = ("ses", "task", "acq", "ce", "rec", "dir", "run", "echo")  # entities that name a run
WORD_COLUMNS = ("word", "trial_type", "value")
EXTENSIONS = (".nii.gz", ".nii", ".json", ".tsv")
_ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9+.]+)$")


def _split_name(path: Path) -> tuple[dict[str, str], str]:
    """(entities, suffix) of a BIDS file name."""
    name = path.name
    for ext in EXTENSIONS:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    *parts, suffix = name.split("_")
    ents = {}
    for part in parts:
        m = _ENTITY.match(part)
        if m:
            ents[m.group(1)] = m.group(2)
    return ents, suffix


def _belongs(file_ents: dict, run_ents: dict, ignore=()) -> bool:
    return all(run_ents.get(k) == v for k, v in file_ents.items() if k not in ignore)


def _inherited(dirs: Sequence[Path], pattern: str, suffix: str, run_ents: dict, ignore=()) -> list[Path]:
    """Files in ``dirs`` matching ``pattern`` with that suffix whose entities belong to the run, least
    specific first (BIDS inheritance)."""
    found = {}
    for depth, d in enumerate(dirs):
        for p in sorted(d.glob(pattern)) if d.is_dir() else ():
            ents, suf = _split_name(p)
            if suf == suffix and _belongs(ents, run_ents, ignore):
                found[p] = (depth, len([k for k in ents if k not in ignore]))
    return sorted(found, key=lambda p: found[p])


def _most_specific(files: list[Path], what: str, bold: Path, fix: str) -> Path | None:
    if not files:
        return None
    top = _split_name(files[-1])[0]
    tied = [p for p in files if len(_split_name(p)[0]) == len(top) and p.parent == files[-1].parent]
    if len(tied) > 1:
        raise DataError(f"{bold}: several {what} files fit this run equally well: {[p.name for p in tied]}; {fix}")
    return files[-1]


def _find_bolds(root: Path, subject: str, task: str, space: str | None) -> list[tuple[Path, dict]]:
    sub_dir = root / f"sub-{subject}"
    if not sub_dir.is_dir():
        have = sorted(p.name for p in root.glob("sub-*") if p.is_dir()) if root.is_dir() else []
        raise DataError(f"{sub_dir}: no such subject folder (found: {have[:20] or 'none'}); check bids_root and "
                        "the subject label (without 'sub-')")
    candidates = sorted(sub_dir.glob("func/*_bold.nii*")) + sorted(sub_dir.glob("ses-*/func/*_bold.nii*"))
    bolds = []
    for p in candidates:
        ents, suffix = _split_name(p)
        if suffix != "bold" or ents.get("sub") != subject or ents.get("task") != task:
            continue
        if space is not None and ents.get("space") != space:
            continue
        bolds.append((p, ents))
    if not bolds:
        seen = sorted({p.name for p in candidates})
        raise DataError(f"{sub_dir}: no BOLD run with task-{task}" + (f" and space-{space}" if space else "")
                        + f"; BOLD files of this subject: {seen[:20] or 'none'}. Fix the task (or space)")
    return bolds


def _run_name(ents: dict) -> str:
    return "_".join(f"{k}-{ents[k]}" for k in RUN_KEYS if k in ents)


def _header_tr(img) -> float | None:
    zooms = img.header.get_zooms()
    if len(zooms) < 4 or not zooms[3] or zooms[3] <= 0:
        return None
    unit = img.header.get_xyzt_units()[1]
    return float(zooms[3]) * {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)


def _run_tr(bold: Path, ents: dict, img, root: Path) -> float:
    sub_dir = root / f"sub-{ents['sub']}"
    dirs = [root, sub_dir] + ([sub_dir / f"ses-{ents['ses']}"] if "ses" in ents else []) + [bold.parent]
    sidecar = {}
    for p in _inherited(dirs, "*_bold.json", "bold", ents):
        try:
            sidecar.update(json.loads(p.read_text()))
        except json.JSONDecodeError as err:
            raise DataError(f"{p}: not valid JSON ({err}); fix the sidecar") from err
    header = _header_tr(img)
    tr = sidecar.get("RepetitionTime")
    if tr is not None:
        tr = float(tr)
        if header is not None and abs(header - tr) > 1e-3:
            log.warning("%s: header TR %.4f s differs from the sidecar's RepetitionTime %.4f s; using the sidecar",
                        bold, header, tr)
        return tr
    if header is None:
        raise DataError(f"{bold}: no TR — the header's fourth zoom is unset and no sidecar gives RepetitionTime; "
                        "add RepetitionTime to the run's .json sidecar")
    return header


def _binary_mask(path: Path, shape, affine) -> np.ndarray:
    import nibabel as nib

    if not path.exists():
        raise DataError(f"{path}: mask file not found; pass mask= an existing NIfTI brain mask")
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.shape != tuple(shape) or not np.allclose(img.affine, affine, atol=1e-3):
        raise DataError(f"{path}: mask grid {data.shape} differs from the BOLD grid {tuple(shape)} (or its "
                        "affine does); resample the mask to the BOLD image, e.g. nilearn.image.resample_to_img("
                        "mask, bold, interpolation='nearest')")
    values = np.unique(data[np.isfinite(data)])
    if len(values) > 2 or (len(values) == 2 and 0 not in values):
        raise DataError(f"{path}: mask is not binary ({len(values)} distinct values); threshold it to 0/1")
    mask = np.isfinite(data) & (data != 0)
    if not mask.any():
        raise DataError(f"{path}: mask is empty; give a brain mask with voxels in it")
    return mask


def _events_file(bold: Path, ents: dict, events_root: Path) -> Path:
    sub_dir = events_root / f"sub-{ents['sub']}"
    ses = [sub_dir / f"ses-{ents['ses']}", sub_dir / f"ses-{ents['ses']}" / "func"] if "ses" in ents else []
    dirs = [events_root, sub_dir] + ses + [sub_dir / "func", bold.parent]
    dirs = list(dict.fromkeys(dirs))
    found = _inherited(dirs, "*_events.tsv", "events", ents)
    path = _most_specific(found, "events", bold, "remove the extra files")
    if path is None:
        raise DataError(f"{bold}: no *_events.tsv for this run (looked beside it and under {events_root}); add "
                        "the run's events file or, for derivatives, pass events_root= the raw BIDS dataset")
    return path


def _word_table(path: Path, word_column: str | None, event_type: str | None, run: str, lang: str,
                run_end: float, split: str, on_bad_onset: str = "error") -> pd.DataFrame:
    events = read_events_tsv(path)
    if "onset" not in events.columns:
        raise DataError(f"{path}: no onset column (it has {list(events.columns)}); a BIDS events file needs "
                        "onset in seconds")
    col = word_column or next((c for c in WORD_COLUMNS if c in events.columns), None)
    if col is None or col not in events.columns:
        raise DataError(f"{path}: no word column {word_column or WORD_COLUMNS} (it has {list(events.columns)}); "
                        "set word_column to the column holding the words")
    if event_type is not None:
        if "trial_type" not in events.columns:
            raise DataError(f"{path}: event_type={event_type!r} needs a trial_type column (it has "
                            f"{list(events.columns)}); drop event_type or fix the file")
        events = events[events["trial_type"].str.strip() == event_type]
    text = events[col].fillna("").astype(str).str.strip()
    keep = text != ""
    if not keep.any():
        seen = list(dict.fromkeys(events[col].dropna().astype(str)))[:10] if len(events) else []
        raise DataError(f"{path}: no word events (column {col!r}" + (f", trial_type {event_type!r}" if event_type
                        else "") + f"; values seen: {seen}); set word_column/event_type to where the words are")
    # Rows without a word are other events and go; a word whose time does not parse is reported.
    words = parse_times(events[keep].assign(text=text[keep]), path, on_bad_onset,
                        fix=", or set the dataset option on_bad_onset: warn to drop them with a counted warning")
    if words.empty:
        raise DataError(f"{path}: no word event has a numeric onset; fix the onsets (seconds, decimal point)")
    return words_to_stimuli(words, run, lang, run_end, split, path, drop=(col,))


def bids_fmri_inputs(bids_root: str | Path, subject: str, task: str, mask: str | Path | None = None,
                     word_column: str | None = None, test_runs: Sequence[str] = (), *, space: str | None = None,
                     events_root: str | Path | None = None, annotations: str | Path | None = None,
                     **_other) -> list[Path]:
    """The files :func:`load_bids_fmri` reads for ``subject`` with the same options, those on disk only.

    Per BOLD run of ``task`` (and ``space``): the image, its inherited ``*_bold.json``
    sidecars, its brain mask (``mask``, else the one the loader picks) and its
    events file (``annotations`` instead when given). The workflow declares them
    as the load job's inputs so that an edited file loads the subject again; a
    missing folder gives no files (a dry run lists missing data, and the loader
    names it). The other options change no file read.
    """
    root = Path(bids_root)
    subject = str(subject).removeprefix("sub-")
    events_root = Path(events_root) if events_root is not None else root
    try:
        bolds = _find_bolds(root, subject, str(task), space)
    except DataError:
        return []
    files: list[Path] = []
    for p, ents in bolds:
        sub_dir = root / f"sub-{ents['sub']}"
        dirs = [root, sub_dir] + ([sub_dir / f"ses-{ents['ses']}"] if "ses" in ents else []) + [p.parent]
        files += [p, *_inherited(dirs, "*_bold.json", "bold", ents)]
        if mask is None:
            found = _inherited([p.parent], "*_desc-brain_mask.nii*", "mask", ents, ignore=("desc",))
            found = [f for f in found if _split_name(f)[0].get("desc") == "brain"]
            try:
                picked = _most_specific(found, "brain mask", p, "")
                files += [picked] if picked is not None else []
            except DataError:  # several fit: the loader stops on them, any may be the one fixed
                files += found
        if annotations is None:
            try:
                files.append(_events_file(p, ents, events_root))
            except DataError:
                pass
    files += [Path(f) for f in (mask, annotations) if f is not None]
    return [f for f in dict.fromkeys(files) if f.is_file()]


def _runs_and_splits(bolds: list[tuple[Path, dict]], test_runs, root: Path, subject: str, task: str
                     ) -> tuple[list[tuple[str, Path, dict]], dict[str, set], dict[str, bool]]:
    """(name, BOLD file, entities) per run, each run's labels (name, BIDS run label) and whether it is a test run."""
    runs_found: list[tuple[str, Path, dict]] = []
    for p, ents in bolds:
        name = _run_name(ents)
        other = next((q for n, q, _ in runs_found if n == name), None)
        if other is not None:
            raise DataError(f"{p}: run {name} has several BOLD files ({other.name}, {p.name}); pass space= "
                            "(or point bids_root at a folder with one BOLD file per run)")
        runs_found.append((name, p, ents))
    test_runs = [test_runs] if isinstance(test_runs, str) else [str(t) for t in test_runs]
    labels = {name: {name} | ({ents["run"], f"run-{ents['run']}"} if "run" in ents else set())
              for name, _, ents in runs_found}
    is_test = {name: bool(labels[name] & set(test_runs)) for name in labels}
    unmatched = sorted(t for t in test_runs if not any(t in lab for lab in labels.values()))
    if unmatched:
        raise DataError(f"{root}: test runs {unmatched} match no run of subject {subject} task {task} "
                        f"(runs: {list(labels)}); use a run name or a BIDS run label")
    return runs_found, labels, is_test


def _open_runs(runs_found: list[tuple[str, Path, dict]], mask: str | Path | None, root: Path):
    """The runs' images and TRs, their shared affine and the brain mask (given, or the runs' masks intersected)."""
    import nibabel as nib

    imgs, trs, shape, affine, mask_arr = {}, {}, None, None, None
    for name, p, ents in runs_found:
        img = nib.load(str(p))
        if img.ndim != 4 or img.shape[3] < 2:
            raise DataError(f"{p}: image of shape {img.shape}; a BOLD run is 4-D with at least 2 volumes")
        if shape is None:
            shape, affine = img.shape[:3], img.affine
            first = p
        elif img.shape[:3] != shape or not np.allclose(img.affine, affine, atol=1e-3):
            raise DataError(f"{p}: grid {img.shape[:3]} (or affine) differs from {first.name}'s {shape}; the runs "
                            "must share one voxel grid — pass space= or load them separately")
        trs[name] = _run_tr(p, ents, img, root)
        first_name = next(iter(trs))
        if abs(trs[name] - trs[first_name]) > 1e-4:
            raise DataError(f"{p}: TR {trs[name]} s differs from run {first_name}'s {trs[first_name]} s "
                            f"({first.name}); load runs with different TRs separately")
        if mask is None:
            found = _inherited([p.parent], "*_desc-brain_mask.nii*", "mask", ents, ignore=("desc",))
            found = [f for f in found if _split_name(f)[0].get("desc") == "brain"]
            mpath = _most_specific(found, "brain mask", p, "pass mask= explicitly")
            if mpath is None:
                raise DataError(f"{p}: no brain mask — pass mask= a NIfTI mask on the BOLD grid or put a "
                                "*_desc-brain_mask.nii.gz for the run beside it")
            this = _binary_mask(mpath, shape, affine)
            if mask_arr is not None and not np.array_equal(this, mask_arr):
                log.info("%s: brain mask differs from the previous runs'; using the intersection", mpath)
                this &= mask_arr
            mask_arr = this
        imgs[name] = img
    if mask is not None:
        mask_arr = _binary_mask(Path(mask), shape, affine)
    if not mask_arr.any():
        raise DataError(f"{root}: the runs' brain masks share no voxel; pass mask= one mask for all runs")
    return imgs, trs, affine, mask_arr


def load_bids_fmri(bids_root: str | Path, subject: str, task: str, mask: str | Path | None = None,
                   word_column: str | None = None, test_runs: Sequence[str] = (), *, space: str | None = None,
                   event_type: str | None = None, events_root: str | Path | None = None,
                   annotations: str | Path | None = None, lang: str = "", bad_voxels: str = "raise",
                   on_bad_onset: str = "error") -> LoadedFMRI:
    """Words and masked BOLD of one subject's runs of ``task``; see the module doc.

    ``mask``: a brain-mask NIfTI on the BOLD grid (default: the runs'
    ``*_desc-brain_mask``). ``word_column``/``event_type`` pick the words out of the
    events files; ``events_root`` is where to look for them besides the run's
    folder (default ``bids_root``). ``space`` picks one space of a derivatives
    folder with several. ``test_runs`` are split ``test``. ``bad_voxels``:
    ``raise`` on voxels that are NaN/inf or constant in a run, or ``drop`` them.
    ``annotations``: a table of timed texts per run (``loaders.annotations``) that
    replaces the events files as the source of units. ``on_bad_onset``: a word
    event whose onset or duration is not a number (``n/a``, a decimal comma) is an
    ``error`` naming the file and line, or with ``warn`` is dropped with a warning
    that counts them.
    Returns :class:`~brainphase.loaders.types.LoadedFMRI` (stimuli, runs, tr, coords (V, 3) mm).
    """
    import nibabel as nib
    from nilearn.maskers import NiftiMasker

    root = Path(bids_root)
    subject = str(subject).removeprefix("sub-")
    events_root = Path(events_root) if events_root is not None else root
    runs_found, labels, is_test = _runs_and_splits(_find_bolds(root, subject, str(task), space), test_runs,
                                                   root, subject, task)
    imgs, trs, affine, mask_arr = _open_runs(runs_found, mask, root)
    notes = read_annotations(annotations) if annotations is not None else None
    masker = NiftiMasker(mask_img=nib.Nifti1Image(mask_arr.astype(np.uint8), affine), standardize=False,
                         detrend=False, reports=False).fit()
    data, files, frames = {}, {}, []
    for name, p, ents in runs_found:
        arr = np.asarray(masker.transform(imgs.pop(name)), np.float32)
        data[name], files[name] = arr, p
        split = "test" if is_test[name] else "train"
        if notes is not None:
            frames.append(words_to_stimuli(run_annotations(notes, labels[name], annotations), name, lang,
                                           arr.shape[0] * trs[name], split, annotations, drop=("run",)))
        else:
            frames.append(_word_table(_events_file(p, ents, events_root), word_column, event_type, name, lang,
                                      arr.shape[0] * trs[name], split, on_bad_onset))
    coords = nib.affines.apply_affine(affine, np.argwhere(mask_arr)).astype(float)
    data, coords = drop_bad_voxels(data, files, coords, bad_voxels)
    runs = {name: BrainRun(np.ascontiguousarray(a), "test" if is_test[name] else "train") for name, a in data.items()}
    stimuli = clean_extras(pd.concat(frames, ignore_index=True))
    return LoadedFMRI(stimuli, runs, float(next(iter(trs.values()))), coords)
