"""The demo world's vocabulary: concepts in categories, with surface words in two languages.

Each concept has one or two surface forms in an English-like language written in
Latin letters ("en") and a Japanese-like one written in kana ("ja"). Synonyms
and pseudo-words several BPE pieces long keep word identity from being free at
initialisation: a randomly initialised model that only looks up its last token
should not already know a word's category (the feasibility run's lesson).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LANGS = ("en", "ja")

# Category sizes: enough concepts for a rich world, few enough that facts recur.
CATEGORIES = {
    "person": 20,
    "place": 14,
    "animal": 14,
    "food": 20,
    "weather": 6,
    "emotion": 6,
    "object": 14,
    "adverb": 18,  # three per emotion: the mood shows in how things are done
    "color": 8,
}

_EN_ONSETS = list("bdfgklmnprstvz") + ["br", "dr", "gl", "kr", "pl", "st", "tr", "sh", "th"]
_EN_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]
_EN_CODAS = ["", "", "", "n", "l", "r", "s", "m", "k"]
_KANA = list(
    "かきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわ"
    "がぎぐげござじずぜぞだでどばびぶべぼぱぴぷぺぽ"
)

# Function words: shared by every story, never concepts.
EN_FUNCTION = [
    "the", "a", "went", "to", "ate", "saw", "near", "felt", "lives", "in", "eats",
    "met", "at", "then", "she", "he", "walked", "was", "sky", "there", "home", "two",
    "and", "liked", ".",
]
JA_FUNCTION = [
    "は", "が", "を", "に", "で", "の", "と", "いった", "たべた", "みた", "ちかく",
    "かんじた", "すんでいる", "たべる", "あった", "それから", "かのじょ", "かれ",
    "あるいた", "だった", "そら", "そこ", "いえ", "にひき", "すきだった", "。",
]


@dataclass
class Concept:
    id: int
    category: str
    index: int  # index within its category
    forms: dict[str, list[str]] = field(default_factory=dict)  # lang -> surface forms
    gender: str | None = None  # persons only: she / he agreement needs context
    homonym_of: int | None = None  # shares its primary surface forms with this concept


@dataclass
class Lexicon:
    concepts: list[Concept]

    def by_category(self, category: str) -> list[Concept]:
        return [c for c in self.concepts if c.category == category]

    def categories(self) -> list[str]:
        return list(CATEGORIES)

    def table(self):
        """One row per (concept, language, surface form): the world's dictionary."""
        import pandas as pd

        rows = [
            {
                "concept_id": c.id,
                "category": c.category,
                "index": c.index,
                "lang": lang,
                "form": form,
                "form_rank": rank,
                "gender": c.gender,
                "homonym_of": c.homonym_of,
            }
            for c in self.concepts
            for lang in LANGS
            for rank, form in enumerate(c.forms[lang])
        ]
        return pd.DataFrame(rows)


def _en_word(rng: np.random.Generator) -> str:
    n = int(rng.choice([2, 3], p=[0.55, 0.45]))
    syl = [rng.choice(_EN_ONSETS) + rng.choice(_EN_VOWELS) for _ in range(n)]
    return "".join(syl) + rng.choice(_EN_CODAS)


def _ja_word(rng: np.random.Generator) -> str:
    n = int(rng.choice([2, 3, 4], p=[0.3, 0.45, 0.25]))
    return "".join(rng.choice(_KANA, size=n))


# Homonym pairs: categories whose sentence frames tell them apart ("ate the X" vs
# "saw a X"), so only a model that reads the context knows which meaning is heard.
HOMONYM_PAIRS = (("food", "animal"), ("object", "place"), ("color", "weather"), ("adverb", "emotion"))


def generate_lexicon(seed: int, synonym_rate: float = 0.5, homonym_rate: float = 0.5) -> Lexicon:
    """Draw pseudo-words for every concept.

    Surface forms are unique except for planted homonyms: a share
    ``homonym_rate`` of the concepts of the first category of each pair in
    HOMONYM_PAIRS take the primary forms of a concept of the second category.
    The last piece of such a word says nothing about which of two categories is
    meant; only context does, which a trained model can use and an untrained
    one cannot.
    """
    rng = np.random.default_rng(seed)
    used = set(EN_FUNCTION) | set(JA_FUNCTION)
    concepts = []

    def fresh(maker) -> str:
        while True:
            w = maker(rng)
            if w not in used:
                used.add(w)
                return w

    for category, n in CATEGORIES.items():
        for i in range(n):
            forms = {}
            for lang, maker in (("en", _en_word), ("ja", _ja_word)):
                ws = [fresh(maker)]
                if rng.random() < synonym_rate:
                    ws.append(fresh(maker))
                forms[lang] = ws
            gender = ("she", "he")[i % 2] if category == "person" else None
            concepts.append(Concept(len(concepts), category, i, forms, gender))
    for first, second in HOMONYM_PAIRS:
        a = [c for c in concepts if c.category == first]
        b = [c for c in concepts if c.category == second]
        n = int(round(homonym_rate * min(len(a), len(b))))
        for ca, cb in zip(rng.choice(a, n, replace=False), rng.choice(b, n, replace=False)):
            for lang in LANGS:
                ca.forms[lang][0] = cb.forms[lang][0]
            ca.homonym_of = cb.id
    return Lexicon(concepts)
