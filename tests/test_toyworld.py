"""The demo world: reproducible, bilingual, with narrative state that shapes words, and a
simulated brain whose planted tuning is where the truth says it is."""

import numpy as np
import pandas as pd
import pytest

from brainphase.toyworld import (
    FMRIParams,
    build_corpus,
    build_world,
    canonical_hrf,
    simulate_fmri,
    stimulus_stories,
)
from brainphase.toyworld import fmri


@pytest.fixture(scope="module")
def world():
    return build_world(1)


def test_world_is_deterministic(world):
    a = build_corpus(world, 20, (30, 60), ["en", "ja"], seed=5)
    b = build_corpus(build_world(1), 20, (30, 60), ["en", "ja"], seed=5)
    pd.testing.assert_frame_equal(a, b)
    c = build_corpus(world, 20, (30, 60), ["en", "ja"], seed=6)
    assert not a["text"].equals(c["text"])


def test_scripts_differ_by_language(world):
    corpus = build_corpus(world, 10, (40, 60), ["en", "ja"], seed=0)
    en = " ".join(corpus.loc[corpus.lang == "en", "text"])
    ja = " ".join(corpus.loc[corpus.lang == "ja", "text"])
    assert all(ord(ch) < 128 for ch in en)
    kana = sum(0x3000 <= ord(ch) <= 0x30FF for ch in ja.replace(" ", ""))
    assert kana / len(ja.replace(" ", "")) > 0.95


def test_surface_forms_unique_and_translations_share_concepts(world):
    lex = world.lexicon.table()
    planted = lex["homonym_of"].notna() & (lex["form_rank"] == 0)
    assert not lex.loc[~planted, "form"].duplicated().any()
    assert planted.sum() > 0 and lex.loc[planted, "form"].isin(lex.loc[~planted, "form"]).all()
    per_concept = lex.groupby("concept_id")["lang"].nunique()
    assert (per_concept == 2).all()


def test_narrative_state_shapes_later_words(world):
    """Foods follow the current place far above chance: context carries information."""
    stim = stimulus_stories(world, 6, 0, 400, "en", seed=3)
    foods = stim[stim["category"] == "food"]
    typical = world.facts.place_foods
    hit = np.mean([c in typical[p] for c, p in zip(foods["concept"], foods["place"])])
    chance = 3 / len(world.lexicon.by_category("food"))
    assert hit > 0.6 > 3 * chance


def test_facts_are_consistent_in_text(world):
    stim = stimulus_stories(world, 8, 0, 400, "en", seed=4)
    lives = stim[stim["sentence_type"] == "lives"]
    for _, s in lives.groupby(["run", "sentence"]):
        person = s.loc[s["category"] == "person", "concept"].iloc[0]
        place = s.loc[s["category"] == "place", "concept"].iloc[0]
        assert world.facts.home[person] == place


def test_word_timings_increase_and_fit_runs(world):
    stim = stimulus_stories(world, 2, 1, 100, "en", seed=3)
    for _, s in stim.groupby("run"):
        assert (np.diff(s["onset"]) > 0).all()
        assert (s["offset"] >= s["onset"]).all()
        assert s["onset"].iloc[0] == pytest.approx(10.0)


def test_hrf_shape():
    h = canonical_hrf(0.1)
    t = np.arange(len(h)) * 0.1
    assert h.sum() == pytest.approx(1.0)
    assert 4.5 < t[np.argmax(h)] < 5.5  # gamma(6) peaks at 5 s
    assert h[t > 10].min() < 0  # undershoot


def test_events_to_bold_delays_an_impulse():
    bold = fmri.events_to_bold(np.array([10.0]), np.ones((1, 1)), n_trs=20, tr=2.0)
    # peak about 5 s after the event: mid-TR times 1, 3, ... -> TR 7 (t=15 s)
    assert np.argmax(bold[:, 0]) == 7
    assert bold[:4, 0].max() == 0


@pytest.fixture(scope="module")
def simulated(world):
    stim = stimulus_stories(world, 6, 1, 200, "en", seed=3)
    cats = [c.category for c in world.lexicon.concepts]
    params = FMRIParams(sheet=(10, 12), n_repeats=3,
                        amplitude={"lowlevel": 1.0, "semantic": 1.0, "narrative": 1.0, "hidden": 1.0})
    runs, truth, _ = simulate_fmri(stim, cats, params, seed=7)
    return stim, runs, truth, params


def test_simulation_shapes_and_truth(simulated):
    stim, runs, truth, params = simulated
    assert set(runs) == set(stim["run"])
    assert len(truth) == 120 and set(truth["group"]) <= set(fmri.GROUPS)
    assert runs["test01"]["repeats"].shape[0] == 3
    for r in runs.values():
        assert r["data"].dtype == np.float32 and np.isfinite(r["data"]).all()


def test_repeats_share_signal_only_where_planted(simulated):
    """Split-half correlation of repeats is high for tuned voxels and ~0 for null voxels."""
    _, runs, truth, _ = simulated
    rep = runs["test01"]["repeats"]
    a, b = rep[0] - rep[0].mean(0), rep[1] - rep[1].mean(0)
    r = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    tuned = truth["group"].isin(["lowlevel", "semantic", "narrative"]).to_numpy()
    assert r[tuned].mean() > 0.25
    assert abs(r[truth["group"].to_numpy() == "null"].mean()) < 0.15
