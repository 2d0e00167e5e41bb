"""Simulated MEG for the demo stories: word-locked responses at planted latencies.

Every word (not punctuation) evokes three responses of increasing abstraction,
each a Gaussian bump in time centred at its group's latency after the word's
onset, mixed into sensors through its own smooth spatial pattern:

- ``form``     the word's surface: its length and its vowels (morae in kana),
  as early sensory responses carry (not its identity: the input itself
  carries the surface, so no learning is needed, but it does not tell which
  word was heard);
- ``meaning``  the concept's semantic vector (shared by synonyms and
  translations, as in the fMRI); zero for function words;
- ``context``  the word's meaning gated by the story's current narrative state
  (place and mood), elementwise: it changes from word to word and needs both
  the word and its context (a persistent state alone would not be word-locked).

Each group's per-word vectors are centred over the words that carry it, so a
response encodes WHICH word is heard, not that a word is heard. Sensors sit on
a disc; noise is spatially smooth (plus a share of independent sensor noise)
and AR(1) in time. Arrays in, arrays out: no file I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
from scipy import signal, sparse

from .fmri import FeatureSpace

MEG_GROUPS = ("form", "meaning", "context")
# Keys of a dataset's ``simulate`` dict that shape the stories or the subject seed, not the MEG.
NON_MEG_KEYS = ("seed", "stories_train", "stories_test", "words_per_story", "language")


@dataclass
class MEGParams:
    sfreq: float = 100.0  # samples per second
    n_sensors: int = 32
    latencies: dict[str, float] = field(default_factory=lambda: {"form": 0.10, "meaning": 0.30, "context": 0.50})
    width: float = 0.05  # sd of the Gaussian temporal kernel (s)
    amplitude: dict[str, float] = field(default_factory=lambda: {"form": 1.0, "meaning": 1.0, "context": 1.0})
    snr: float = 0.05  # planted signal power (sum of amplitude**2) / noise power; inf: no noise
    semantic_dims: int = 8  # meaning and context dims
    pattern_sigma: float = 0.3  # spatial smoothness of the response patterns (disc radius 1)
    noise_sigma: float = 0.4  # spatial smoothness of the noise
    noise_white: float = 0.2  # share of the noise power that is independent per sensor
    noise_ar: float = 0.9  # AR(1) coefficient per sample
    tail: float = 2.0  # seconds recorded after the last word's offset

    def __post_init__(self):
        missing = [g for g in MEG_GROUPS if g not in self.latencies]
        if missing:
            raise ValueError(f"MEG latencies need every group {list(MEG_GROUPS)}; missing {missing}")
        unknown = sorted(set(self.latencies) - set(MEG_GROUPS)) + sorted(set(self.amplitude) - set(MEG_GROUPS))
        if unknown:
            raise ValueError(f"MEG latencies/amplitude name unknown groups {unknown}; groups are {list(MEG_GROUPS)}")
        if not 0 <= self.noise_ar < 1 or not 0 <= self.noise_white <= 1:
            raise ValueError(f"noise_ar must be in [0, 1) and noise_white in [0, 1], got {self.noise_ar}, "
                             f"{self.noise_white}")
        if self.snr <= 0 or self.width <= 0 or self.sfreq <= 0:
            raise ValueError(f"snr, width and sfreq must be positive, got {self.snr}, {self.width}, {self.sfreq}")
        if self.tail < max(self.latencies.values()) + 4 * self.width:
            raise ValueError(f"tail {self.tail} s is shorter than the last response (latest latency + 4 widths = "
                             f"{max(self.latencies.values()) + 4 * self.width:.2f} s); raise tail")

    @classmethod
    def from_config(cls, sim: dict) -> "MEGParams":
        """Map a dataset's ``simulate`` dict onto the parameters; story keys and the seed are skipped."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(sim) - names - set(NON_MEG_KEYS))
        if unknown:
            raise ValueError(f"simulate: unknown MEG keys {unknown}; valid keys are {sorted(names)} "
                             f"(plus {list(NON_MEG_KEYS)}, which shape the stories and the seed)")
        kw = {k: v for k, v in sim.items() if k in names}
        defaults = cls()
        for k in ("latencies", "amplitude"):  # a partial dict overrides only the groups it names
            if k in kw:
                kw[k] = {**getattr(defaults, k), **dict(kw[k])}
        return cls(**kw)

    def group_dims(self) -> dict[str, int]:
        return {"form": FORM_DIMS, "meaning": self.semantic_dims, "context": self.semantic_dims}


@dataclass
class MEGSimulation:
    """One simulated subject and its ground truth.

    ``features[g]`` (n_words, dims) is aligned to the rows of the stimulus table
    (zero rows where a word carries no group ``g``); ``patterns[g]`` (dims,
    n_sensors) already holds the group's amplitude scale, so the clean signal is
    exactly ``sum_words bump_g(t - onset - latency_g) * features[g][word] @ patterns[g]``.
    """

    runs: dict[str, dict]  # run -> {"data": (n_samples, n_sensors) float32, "split": str}
    truth: pd.DataFrame  # one row per group: group, latency_s, width_s, dims, amplitude
    coords: np.ndarray  # (n_sensors, 2) positions on the unit disc
    features: dict[str, np.ndarray]
    patterns: dict[str, np.ndarray]
    noise_sd: float  # per-sensor noise standard deviation (0 without noise)


def sensor_layout(n: int) -> np.ndarray:
    """``n`` sensors spread evenly over the unit disc (a sunflower spiral), (n, 2)."""
    i = np.arange(n) + 0.5
    r = np.sqrt(i / n)
    theta = i * np.pi * (3 - np.sqrt(5))
    return np.stack([r * np.cos(theta), r * np.sin(theta)], 1)


def smoothing_matrix(coords: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


def sensor_patterns(coords: np.ndarray, dims: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Spatially smooth random patterns, (dims, n_sensors), unit RMS each."""
    p = rng.standard_normal((dims, len(coords))) @ smoothing_matrix(coords, sigma)
    return p / np.sqrt((p**2).mean(1, keepdims=True))


FORM_DIMS = 2


def surface_features(texts) -> np.ndarray:
    """(n, 2): characters and vowels of each written form (every kana is a mora, counted as a vowel).

    With a random vector per form instead, the 100 ms response would identify
    every word, and every layer of any model, trained or not, would be decoded
    best there: the early response would hide the path.
    """
    out = np.empty((len(texts), FORM_DIMS))
    for i, t in enumerate(texts):
        out[i] = len(t), sum(c in "aeiou" or not c.isascii() for c in t)
    return out


def word_features(stimuli: pd.DataFrame, space: FeatureSpace, gate: np.ndarray) -> dict[str, np.ndarray]:
    """Per-word vectors of each group, aligned to the rows of ``stimuli``, centred over the words carrying them."""
    spoken = (stimuli["category"] != "punct").to_numpy()
    concept = stimuli["concept"].to_numpy()
    content = spoken & (concept >= 0)
    form = surface_features(stimuli["text"].tolist())
    if spoken.any():  # z-scored over the spoken words, so length (in characters) does not outweigh vowels
        form = (form - form[spoken].mean(0)) / (form[spoken].std(0) + 1e-12)
    form = np.where(spoken[:, None], form, 0.0)
    sem = np.where(content[:, None], space.semantic[np.maximum(concept, 0)], 0.0)
    state = np.hstack([space.place[stimuli["place"].to_numpy()], space.mood[stimuli["mood"].to_numpy()]])
    # The gate is centred (and scaled) over the content words heard: with a handful of places and
    # moods its mean would otherwise make context a scaled copy of meaning, readable without context.
    g = state @ gate
    if content.any():
        g = (g - g[content].mean(0)) / (g[content].std(0) + 1e-12)
    context = sem * g
    feats = {"form": form, "meaning": sem, "context": context}
    for g, on in (("form", spoken), ("meaning", content), ("context", content)):
        if on.any():
            feats[g][on] -= feats[g][on].mean(0)
    return feats


def bump_matrix(onsets: np.ndarray, n_samples: int, sfreq: float, latency: float, width: float) -> sparse.csr_matrix:
    """(n_samples, n_words): a Gaussian bump centred at each word's onset + latency.

    The bump is evaluated at the exact event time (onsets are not rounded to
    samples) over +-4 widths; ``bump_matrix(...) @ amplitudes`` sums the words'
    responses without a Python loop over words or samples.
    """
    half = int(np.ceil(4 * width * sfreq))
    centre = (np.asarray(onsets, float) + latency) * sfreq
    idx = np.round(centre).astype(int)[:, None] + np.arange(-half, half + 1)[None]
    w = np.exp(-0.5 * ((idx - centre[:, None]) / (width * sfreq)) ** 2)
    word = np.broadcast_to(np.arange(len(centre))[:, None], idx.shape)
    keep = (idx >= 0) & (idx < n_samples)
    return sparse.csr_matrix((w[keep], (idx[keep], word[keep])), shape=(n_samples, len(centre)))


def noise_cholesky(coords: np.ndarray, sigma: float, white: float) -> np.ndarray:
    """Cholesky factor of the sensor noise covariance: a smooth part plus a white share, unit diagonal."""
    mix = smoothing_matrix(coords, sigma)
    mix /= np.sqrt((mix**2).sum(0, keepdims=True))
    cov = (1 - white) * (mix.T @ mix) + white * np.eye(len(coords))
    return np.linalg.cholesky(cov + 1e-9 * np.eye(len(coords)))


def sensor_noise(n_samples: int, chol: np.ndarray, ar: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise with spatial covariance ``chol @ chol.T``, AR(1) in time."""
    n = chol.shape[0]
    e = rng.standard_normal((n_samples, n)) @ chol.T
    if ar > 0:
        zi = ar * (rng.standard_normal((1, n)) @ chol.T)  # start in the stationary distribution
        e, _ = signal.lfilter([np.sqrt(1 - ar**2)], [1.0, -ar], e, axis=0, zi=zi)
    return e


def run_samples(words: pd.DataFrame, params: MEGParams) -> int:
    """Samples in a run: up to the last word's offset plus the tail."""
    return int(np.ceil((float(words["offset"].max()) + params.tail) * params.sfreq))


def simulate_meg(stimuli: pd.DataFrame, categories: list[str], params: MEGParams, seed: int) -> MEGSimulation:
    """Simulate one subject listening to every run of ``stimuli`` (the stimulus contract with the
    world's truth columns concept, category, place, mood); ``categories[c]`` is concept c's category."""
    rng = np.random.default_rng(seed)
    space = FeatureSpace.draw(categories, rng, d_sem=params.semantic_dims)
    coords = sensor_layout(params.n_sensors)
    dims = params.group_dims()
    patterns = {g: sensor_patterns(coords, dims[g], params.pattern_sigma, rng) for g in MEG_GROUPS}
    d_state = space.place.shape[1] + space.mood.shape[1]
    gate = rng.standard_normal((d_state, params.semantic_dims)) / np.sqrt(d_state)
    feats = word_features(stimuli, space, gate)

    rows = {run: np.flatnonzero((stimuli["run"] == run).to_numpy()) for run in stimuli["run"].unique()}
    onsets = stimuli["onset"].to_numpy(float)
    # Responses in feature space per run and group, (n_samples, dims); sensors come last.
    evoked = {}
    for run, r in rows.items():
        n = run_samples(stimuli.iloc[r], params)
        evoked[run] = {g: bump_matrix(onsets[r], n, params.sfreq, params.latencies[g], params.width) @ feats[g][r]
                       for g in MEG_GROUPS}

    # Each group's RMS over all samples and sensors becomes its amplitude; fold the scale into its pattern.
    total = sum(len(e["form"]) for e in evoked.values()) * params.n_sensors
    for g in MEG_GROUPS:
        ss = sum(float(((e[g].T @ e[g]) * (patterns[g] @ patterns[g].T)).sum()) for e in evoked.values())
        rms = np.sqrt(ss / total)
        patterns[g] *= params.amplitude.get(g, 1.0) / rms if rms > 0 else 0.0

    power = sum(params.amplitude.get(g, 1.0) ** 2 for g in MEG_GROUPS)
    noise_sd = 0.0 if np.isinf(params.snr) else float(np.sqrt(power / params.snr))
    chol = noise_cholesky(coords, params.noise_sigma, params.noise_white)
    mixing = np.vstack([patterns[g] for g in MEG_GROUPS])
    runs = {}
    for run, r in rows.items():
        data = np.hstack([evoked[run][g] for g in MEG_GROUPS]) @ mixing
        if noise_sd > 0:
            data += noise_sd * sensor_noise(len(data), chol, params.noise_ar, rng)
        split = stimuli["split"].iloc[r[0]] if "split" in stimuli.columns else "train"
        runs[run] = {"data": data.astype(np.float32), "split": str(split)}

    truth = pd.DataFrame({
        "group": list(MEG_GROUPS),
        "latency_s": [float(params.latencies[g]) for g in MEG_GROUPS],
        "width_s": float(params.width),
        "dims": [dims[g] for g in MEG_GROUPS],
        "amplitude": [float(params.amplitude.get(g, 1.0)) for g in MEG_GROUPS],
    })
    return MEGSimulation(runs, truth, coords, feats, patterns, noise_sd)


