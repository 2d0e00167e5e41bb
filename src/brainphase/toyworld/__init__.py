"""The embedded demo world: a bilingual language, stories, and a simulated brain
(fMRI and MEG).

Everything is generated from seeds in the config, with the ground truth saved
beside the data so tests and figures can score what each analysis recovers.
"""

from .fmri import GROUPS, canonical_hrf
from .lexicon import LANGS, Lexicon, generate_lexicon
from .meg import MEG_GROUPS, MEGParams, MEGSimulation, simulate_meg
from .stories import Facts, StoryTeller, generate_facts, story_text
from .world import (
    FMRIParams,
    World,
    build_corpus,
    build_world,
    corpus_stories,
    simulate_fmri,
    stimulus_stories,
    word_timings,
)

__all__ = [
    "GROUPS", "LANGS", "MEG_GROUPS", "Facts", "FMRIParams", "Lexicon", "MEGParams", "MEGSimulation",
    "StoryTeller", "World",
    "build_corpus", "build_world", "corpus_stories", "canonical_hrf", "generate_facts", "generate_lexicon",
    "simulate_fmri", "simulate_meg", "stimulus_stories", "story_text", "word_timings",
]
