"""Assemble the demo world: lexicon + facts, training corpus, stimulus stories, fMRI."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import fmri
from .lexicon import Lexicon, generate_lexicon
from .stories import ENDINGS, Facts, StoryTeller, Word, generate_facts, story_text


@dataclass
class World:
    lexicon: Lexicon
    facts: Facts


def build_world(seed: int) -> World:
    lexicon = generate_lexicon(seed)
    return World(lexicon, generate_facts(lexicon, seed + 1))


def build_corpus(world: World, n_stories: int, words_range: tuple[int, int], langs: list[str],
                 seed: int) -> pd.DataFrame:
    """Training documents, one story each, languages alternating."""
    teller = StoryTeller(world.lexicon, world.facts, seed)
    rng = np.random.default_rng(seed + 7)
    lengths = rng.integers(words_range[0], words_range[1] + 1, size=n_stories)
    rows = []
    for i, n in enumerate(lengths):
        lang = langs[i % len(langs)]
        rows.append({"doc": i, "lang": lang, "text": story_text(teller.story(lang, int(n)))})
    return pd.DataFrame(rows)


def corpus_stories(world: World, n_per_lang: int, words_range: tuple[int, int], langs: list[str],
                   seed: int) -> pd.DataFrame:
    """Stories as a word-level stimulus set without timings (text corpora for SAEs), with the
    world's truth per word: concept (shared by synonyms and translations; -1 for function
    words), category, and lemma (the form without its inflection, on which synonymy is
    judged). Runs are named ``{lang}{i:04d}``."""
    teller = StoryTeller(world.lexicon, world.facts, seed)
    rng = np.random.default_rng(seed + 13)
    frames = []
    for lang in langs:
        for i, n in enumerate(rng.integers(words_range[0], words_range[1] + 1, size=n_per_lang)):
            words = teller.story(lang, int(n))
            run = f"{lang}{i:04d}"
            frames.append(pd.DataFrame({
                "unit_id": [f"{run}_{j:04d}" for j in range(len(words))],
                "run": run,
                "word_index": np.arange(len(words)),
                "text": [w.form for w in words],
                "lang": lang,
                "onset": np.nan,
                "offset": np.nan,
                "concept": [w.concept for w in words],
                "category": [w.category for w in words],
                "lemma": [lemma(w) for w in words],
            }))
    return pd.concat(frames, ignore_index=True)


def lemma(word: Word) -> str:
    """A content word without its inflection ending (``kreebem-o`` → ``kreebem``); others as they are."""
    if word.concept < 0:
        return word.form
    for ending in ENDINGS[word.lang]:
        if word.form.endswith(ending):
            return word.form[: -len(ending)]
    return word.form


def word_timings(words: list[Word], rng: np.random.Generator, lead_in: float) -> tuple[np.ndarray, np.ndarray]:
    """Onset and offset of every word as read aloud: longer words last longer, pauses at full stops."""
    onsets, offsets = np.empty(len(words)), np.empty(len(words))
    t = lead_in
    for i, w in enumerate(words):
        if w.category == "punct":
            dur = 0.0
            gap = rng.uniform(0.25, 0.45)
        else:
            per_char = 0.055 if w.lang == "en" else 0.11
            dur = 0.10 + per_char * len(w.form) + rng.uniform(0, 0.05)
            gap = rng.uniform(0.02, 0.08)
        onsets[i], offsets[i] = t, t + dur
        t += dur + gap
    return onsets, offsets


def stimulus_stories(world: World, n_train: int, n_test: int, words_per_story: int, lang: str,
                     seed: int, lead_in: float = 10.0) -> pd.DataFrame:
    """The stimulus contract for the listening experiment, with the narrative truth as columns."""
    teller = StoryTeller(world.lexicon, world.facts, seed)
    rng = np.random.default_rng(seed + 11)
    names = [f"story{i + 1:02d}" for i in range(n_train)] + [f"test{i + 1:02d}" for i in range(n_test)]
    frames = []
    for run in names:
        words = teller.story(lang, words_per_story)
        on, off = word_timings(words, rng, lead_in)
        frames.append(pd.DataFrame({
            "unit_id": [f"{run}_{i:04d}" for i in range(len(words))],
            "run": run,
            "split": "test" if run.startswith("test") else "train",
            "word_index": np.arange(len(words)),
            "text": [w.form for w in words],
            "lang": lang,
            "onset": on,
            "offset": off,
            "concept": [w.concept for w in words],
            "category": [w.category for w in words],
            "place": [w.place for w in words],
            "mood": [w.mood for w in words],
            "sentence": [w.sentence for w in words],
            "sentence_type": [w.sentence_type for w in words],
        }))
    return pd.concat(frames, ignore_index=True)


@dataclass
class FMRIParams:
    tr: float = 2.0
    sheet: tuple[int, int] = (20, 25)
    n_repeats: int = 4
    tail: float = 10.0  # seconds recorded after the last word
    fractions: dict[str, float] = field(default_factory=lambda: {
        "lowlevel": 0.15, "semantic": 0.25, "narrative": 0.2, "hidden": 0.1, "null": 0.3})
    amplitude: dict[str, float] = field(default_factory=lambda: {
        "lowlevel": 1.0, "semantic": 1.0, "narrative": 1.0, "hidden": 1.0})
    noise_sigma: float = 1.5
    noise_ar: float = 0.5
    drift: float = 0.5
    tuning_sigma: float = 2.0


def simulate_fmri(stimuli: pd.DataFrame, categories: list[str], params: FMRIParams, seed: int):
    """Simulate one subject listening to every run of ``stimuli``.

    Returns (runs, truth): runs maps run -> {"data": (T, V) float32, "split",
    optional "repeats": (R, T, V)}, truth is one row per voxel (group, sheet
    position, amplitude) plus the tuning weights per group.
    """
    rng = np.random.default_rng(seed)
    space = fmri.FeatureSpace.draw(categories, rng)
    sheet = fmri.draw_sheet(params.sheet, params.fractions, rng)
    weights = {}
    d = {"lowlevel": 2, "semantic": space.semantic.shape[1],
         "narrative": space.place.shape[1] + space.mood.shape[1], "hidden": 1}
    for g, dims in d.items():
        weights[g] = fmri.smooth_field(params.sheet, dims, params.tuning_sigma, rng)

    clean = {}
    meta = {}
    by_run = list(stimuli.groupby("run", sort=False))
    feats_per_run = [fmri.word_features(w, space) for _, w in by_run]
    fmri.centre_events(feats_per_run)
    for (run, words), feats in zip(by_run, feats_per_run):
        n_trs = int(np.ceil((words["offset"].max() + params.tail) / params.tr))
        sig = np.zeros((n_trs, sheet.n_voxels))
        bold = {g: fmri.events_to_bold(words["onset"].to_numpy(), f, n_trs, params.tr)
                for g, f in feats.items()}
        bold["hidden"] = fmri.arousal_latent(n_trs, rng)[:, None]
        for g, b in bold.items():
            mask = sheet.group == g
            sig[:, mask] = np.einsum("td,vd->tv", b, weights[g][mask])
        clean[run] = sig
        meta[run] = words["split"].iloc[0]

    # Scale each voxel's signal to unit variance over the training runs, then to its amplitude.
    train = np.concatenate([s for r, s in clean.items() if meta[r] == "train"])
    sd = train.std(0)
    sd[sd == 0] = 1.0
    amp = np.array([params.amplitude.get(g, 0.0) for g in sheet.group])

    runs = {}
    for run, sig in clean.items():
        sig = sig / sd * amp
        n = params.n_repeats if meta[run] == "test" else 1
        reps = np.stack([
            sig + fmri.smooth_noise(len(sig), params.sheet, rng, params.noise_sigma, params.noise_ar)
            + fmri.drift(len(sig), sheet.n_voxels, rng, params.drift)
            for _ in range(n)
        ]).astype(np.float32)
        entry = {"data": reps.mean(0) if n > 1 else reps[0], "split": meta[run]}
        if n > 1:
            entry["repeats"] = reps
        runs[run] = entry

    truth = pd.DataFrame({
        "voxel": np.arange(sheet.n_voxels),
        "row": sheet.coords[:, 0],
        "col": sheet.coords[:, 1],
        "group": sheet.group,
        "amplitude": amp,
    })
    return runs, truth, weights
