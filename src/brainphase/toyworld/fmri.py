"""Simulated fMRI for the demo stories, with the tuning of every voxel known.

Voxels sit on a 2-D sheet in contiguous patches, each patch tuned to one planted
feature group:

- ``lowlevel``  word rate and word length: visible to any model, even untrained;
- ``semantic``  the concept heard (a vector shared by synonyms and translations,
  clustered by category): a model must learn what its pieces of words mean;
- ``narrative`` the current place and mood of the story: needs context;
- ``hidden``    a slow latent (arousal) the text never reveals: brain-only;
- ``null``      noise only.

Responses are the features convolved with a canonical HRF, sampled at TR, plus
spatially smooth, temporally autocorrelated noise and slow drift. Test stories
are presented several times with fresh noise for a noise ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage, stats

GROUPS = ("lowlevel", "semantic", "narrative", "hidden", "null")


def canonical_hrf(dt: float, length: float = 32.0) -> np.ndarray:
    """SPM's double-gamma HRF (peak 6 s, undershoot 16 s, ratio 1/6), unit sum.

    Five lines of scipy; not worth a neuroimaging dependency at this stage.
    """
    t = np.arange(0.0, length, dt)
    h = stats.gamma.pdf(t, 6.0) - stats.gamma.pdf(t, 16.0) / 6.0
    return h / h.sum()


@dataclass
class FeatureSpace:
    """Per-word feature vectors of each planted group (the generative truth)."""

    semantic: np.ndarray  # (n_concepts, d_sem)
    place: np.ndarray  # (n_concepts, d_place), rows of place concepts used
    mood: np.ndarray  # (n_concepts, d_mood)

    @classmethod
    def draw(cls, concept_categories: list[str], rng: np.random.Generator,
             d_sem: int = 8, d_place: int = 4, d_mood: int = 3,
             category_weight: float = 0.0) -> "FeatureSpace":
        """Semantic vectors are concept-specific and centred within each category.

        The sentence frames give a word's category away (``ate the`` ... is a
        food) to any model, trained or not; what a voxel of this group adds is
        WHICH food, which only a model that has learned to read words knows.
        ``category_weight`` adds a shared vector per category back.
        """
        cats = np.asarray(concept_categories)
        n = len(cats)
        sem = rng.standard_normal((n, d_sem))
        for c in np.unique(cats):
            sem[cats == c] -= sem[cats == c].mean(0)
            sem[cats == c] += category_weight * rng.standard_normal(d_sem)
        return cls(sem, rng.standard_normal((n, d_place)), rng.standard_normal((n, d_mood)))


def centre_events(feats: list[dict[str, np.ndarray]], groups=("semantic", "narrative")) -> None:
    """Subtract, per group, the mean amplitude of the events that carry it (in place).

    A voxel of these groups then responds to WHICH concept or state is heard,
    not to the mere presence of a word, which is the low-level group's job.
    """
    for g in groups:
        rows = np.concatenate([f[g] for f in feats])
        active = np.any(rows != 0, axis=1)
        mean = rows[active].mean(0)
        for f in feats:
            on = np.any(f[g] != 0, axis=1)
            f[g][on] -= mean


def word_features(words: pd.DataFrame, space: FeatureSpace) -> dict[str, np.ndarray]:
    """Event amplitudes per word for each group; punctuation carries none."""
    spoken = (words["category"] != "punct").to_numpy(float)[:, None]
    concept = words["concept"].to_numpy()
    is_content = (concept >= 0)[:, None]
    length = words["text"].str.len().to_numpy(float)[:, None]
    sem = np.where(is_content, space.semantic[np.maximum(concept, 0)], 0.0)
    narrative = np.hstack([space.place[words["place"].to_numpy()], space.mood[words["mood"].to_numpy()]])
    return {
        "lowlevel": spoken * np.hstack([np.ones_like(length), (length - 4.0) / 3.0]),
        "semantic": sem,
        "narrative": spoken * narrative,
    }


def arousal_latent(n_trs: int, rng: np.random.Generator, rho: float = 0.9) -> np.ndarray:
    """A slow AR(1) process over TRs, centred per run: brain-only, independent of the text.

    Not tied to word onsets: a latent sampled at words would be modulated by
    the speech rate, which the text does reveal.
    """
    x = np.empty(n_trs)
    x[0] = rng.standard_normal()
    e = rng.standard_normal(n_trs) * np.sqrt(1 - rho**2)
    for i in range(1, n_trs):
        x[i] = rho * x[i - 1] + e[i]
    return x - x.mean()


def events_to_bold(onsets: np.ndarray, amplitudes: np.ndarray, n_trs: int, tr: float,
                   dt: float = 0.1) -> np.ndarray:
    """Stick functions at word onsets, convolved with the HRF, sampled at mid-TR.

    Mid-TR is the time Huth-lab code assigns to a volume (trigger + TR/2).
    """
    n_fine = int(np.ceil(n_trs * tr / dt)) + 1
    fine = np.zeros((n_fine, amplitudes.shape[1]))
    idx = np.clip(np.round(onsets / dt).astype(int), 0, n_fine - 1)
    np.add.at(fine, idx, amplitudes)
    hrf = canonical_hrf(dt)
    conv = np.apply_along_axis(lambda c: np.convolve(c, hrf)[:n_fine], 0, fine)
    sample = np.minimum(np.round((np.arange(n_trs) + 0.5) * tr / dt).astype(int), n_fine - 1)
    return conv[sample]


@dataclass
class VoxelSheet:
    shape: tuple[int, int]
    group: np.ndarray  # (n_voxels,) group name per voxel
    coords: np.ndarray  # (n_voxels, 2) row, col on the sheet

    @property
    def n_voxels(self) -> int:
        return len(self.group)


def draw_sheet(shape: tuple[int, int], fractions: dict[str, float], rng: np.random.Generator,
               n_patches: int = 14) -> VoxelSheet:
    """Contiguous patches (nearest seed point), labelled so groups get their share of patches."""
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    coords = np.stack([rows.ravel(), cols.ravel()], 1)
    seeds = rng.uniform([0, 0], shape, size=(n_patches, 2))
    nearest = np.argmin(((coords[:, None, :] - seeds[None]) ** 2).sum(-1), axis=1)
    names = list(fractions)
    counts = np.maximum(1, np.round(np.array([fractions[g] for g in names]) * n_patches)).astype(int)
    labels = np.repeat(names, counts)
    labels = np.resize(labels, n_patches)
    rng.shuffle(labels)
    return VoxelSheet(shape, labels[nearest], coords)


def smooth_field(shape: tuple[int, int], dims: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Spatially smooth random weights, (n_voxels, dims), unit variance per dim."""
    f = rng.standard_normal((dims, *shape))
    f = np.stack([ndimage.gaussian_filter(x, sigma, mode="wrap") for x in f])
    f /= f.reshape(dims, -1).std(1)[:, None, None]
    return f.reshape(dims, -1).T


def smooth_noise(n_trs: int, shape: tuple[int, int], rng: np.random.Generator,
                 sigma: float = 1.5, ar: float = 0.5) -> np.ndarray:
    """AR(1) in time, Gaussian-smoothed in space; unit variance."""
    e = rng.standard_normal((n_trs, *shape))
    e = ndimage.gaussian_filter(e, (0, sigma, sigma), mode="wrap")
    e /= e.std()
    out = np.empty_like(e)
    out[0] = e[0]
    for t in range(1, n_trs):
        out[t] = ar * out[t - 1] + np.sqrt(1 - ar**2) * e[t]
    return out.reshape(n_trs, -1)


def drift(n_trs: int, n_voxels: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    t = np.linspace(0, 1, n_trs)[:, None]
    a, b = rng.standard_normal((2, 1, n_voxels)) * scale
    return a * t + b * np.cos(np.pi * t)
