"""Facts of the demo world and stories told about it.

A story follows a protagonist through places while a mood drifts. The narrative
state shapes many later words — foods and weather typical of the current place,
adverbs typical of the mood — so a model has reason to carry it along the
context. Facts (who lives where, what eats what, who likes what) recur across
the corpus with a skewed frequency, so recall needs many exposures and frequent
facts are learned first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lexicon import Concept, Lexicon

# Sentence templates. Strings are function words; other items name a slot.
# English-like is SVO, Japanese-like SOV with particles.
TEMPLATES = {
    "go": {
        "en": ["P", "went", "to", "the", "PLACE", "."],
        "ja": ["P", "は", "PLACE", "に", "いった", "。"],
    },
    "home": {
        "en": ["P", "went", "home", "to", "the", "HOME", "."],
        "ja": ["P", "は", "いえ", "の", "HOME", "に", "いった", "。"],
    },
    "weather": {
        "en": ["the", "sky", "was", "WEATHER", "there", "."],
        "ja": ["そこ", "の", "そら", "は", "WEATHER", "だった", "。"],
    },
    "eat": {
        "en": ["P", "ate", "the", "FOOD", "ADV", "."],
        "ja": ["P", "は", "ADV", "FOOD", "を", "たべた", "。"],
    },
    "see": {
        "en": ["P", "saw", "a", "ANIMAL", "near", "the", "OBJECT", "."],
        "ja": ["P", "は", "OBJECT", "の", "ちかく", "で", "ANIMAL", "を", "みた", "。"],
    },
    "feel": {
        "en": ["P", "felt", "EMOTION", "."],
        "ja": ["P", "は", "EMOTION", "を", "かんじた", "。"],
    },
    "met": {
        "en": ["P", "met", "OTHER", "at", "the", "PLACE", "."],
        "ja": ["P", "は", "PLACE", "で", "OTHER", "と", "あった", "。"],
    },
    "walk": {
        "en": ["then", "PRON", "walked", "ADV", "."],
        "ja": ["それから", "PRON", "は", "ADV", "あるいた", "。"],
    },
    "lives": {
        "en": ["OTHER", "lives", "in", "the", "OTHERHOME", "."],
        "ja": ["OTHER", "は", "OTHERHOME", "に", "すんでいる", "。"],
    },
    "eats": {
        "en": ["the", "ANIMAL", "eats", "DIET", "."],
        "ja": ["ANIMAL", "は", "DIET", "を", "たべる", "。"],
    },
    "likes": {
        "en": ["PRON", "liked", "the", "COLOR", "OBJECT", "."],
        "ja": ["PRON", "は", "COLOR", "OBJECT", "が", "すきだった", "。"],
    },
}
SENTENCE_P = {
    "go": 0.12, "home": 0.04, "weather": 0.10, "eat": 0.16, "see": 0.10, "feel": 0.0,
    "met": 0.08, "walk": 0.12, "lives": 0.10, "eats": 0.08, "likes": 0.10,
}
PRONOUNS = {"en": {"she": "she", "he": "he"}, "ja": {"she": "かのじょ", "he": "かれ"}}
# Inflection: every content word takes one of these endings, drawn freely. The
# hyphen (a middle dot in kana) makes the ending its own BPE piece, so a word's last token says nothing
# about which word it ends: only a model that has learned to look back at the
# stem knows what was heard.
ENDINGS = {"en": ["-o", "-en", "-is"], "ja": ["・り", "・ね", "・ぞ"]}
PUNCT = {".", "。"}


@dataclass
class Facts:
    """The world's fixed relations (the benchmark questions ask about these)."""

    home: dict[int, int]  # person -> place
    diet: dict[int, int]  # animal -> food
    place_foods: dict[int, list[int]]  # place -> typical foods
    place_weather: dict[int, int]  # place -> typical weather
    mood_adverbs: dict[int, list[int]]  # emotion -> typical adverbs
    person_p: np.ndarray  # how often each person is the subject of a fact
    animal_p: np.ndarray

    def table(self, lexicon: Lexicon):
        import pandas as pd

        rows = [{"relation": "home", "subject": s, "object": o} for s, o in self.home.items()]
        rows += [{"relation": "diet", "subject": s, "object": o} for s, o in self.diet.items()]
        rows += [
            {"relation": "place_food", "subject": s, "object": o}
            for s, os in self.place_foods.items() for o in os
        ]
        rows += [{"relation": "place_weather", "subject": s, "object": o} for s, o in self.place_weather.items()]
        rows += [
            {"relation": "mood_adverb", "subject": s, "object": o}
            for s, os in self.mood_adverbs.items() for o in os
        ]
        df = pd.DataFrame(rows)
        freq = {c.id: p for c, p in zip(lexicon.by_category("person"), self.person_p)}
        freq.update({c.id: p for c, p in zip(lexicon.by_category("animal"), self.animal_p)})
        df["subject_freq"] = df["subject"].map(freq)
        return df


def _zipf(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()


def generate_facts(lexicon: Lexicon, seed: int, zipf_s: float = 1.0) -> Facts:
    rng = np.random.default_rng(seed)
    ids = {cat: [c.id for c in lexicon.by_category(cat)] for cat in lexicon.categories()}
    foods = np.array(ids["food"])
    adverbs = np.array(ids["adverb"])
    return Facts(
        home={p: int(rng.choice(ids["place"])) for p in ids["person"]},
        diet={a: int(rng.choice(foods)) for a in ids["animal"]},
        place_foods={pl: [int(f) for f in rng.choice(foods, 3, replace=False)] for pl in ids["place"]},
        place_weather={pl: int(rng.choice(ids["weather"])) for pl in ids["place"]},
        mood_adverbs={
            e: [int(a) for a in adverbs[3 * i : 3 * i + 3]] for i, e in enumerate(ids["emotion"])
        },
        person_p=_zipf(len(ids["person"]), zipf_s),
        animal_p=_zipf(len(ids["animal"]), zipf_s),
    )


@dataclass
class Word:
    form: str
    lang: str
    concept: int  # -1 for function words and punctuation
    category: str  # "" for function words, "punct" for punctuation
    sentence: int
    sentence_type: str
    place: int  # narrative state when the word is heard
    mood: int
    protagonist: int


class StoryTeller:
    """Draws stories from the world; all randomness from one seeded generator."""

    def __init__(self, lexicon: Lexicon, facts: Facts, seed: int,
                 p_typical: float = 0.75, p_mood_change: float = 0.12, p_mood_told: float = 0.35,
                 p_synonym: float = 0.4, inflect: bool = True):
        self.lex = lexicon
        self.facts = facts
        self.rng = np.random.default_rng(seed)
        self.p_typical = p_typical
        self.p_mood_change = p_mood_change
        self.p_mood_told = p_mood_told
        self.p_synonym = p_synonym
        self.inflect = inflect
        self.ids = {cat: [c.id for c in lexicon.by_category(cat)] for cat in lexicon.categories()}
        self.by_id: dict[int, Concept] = {c.id: c for c in lexicon.concepts}
        types = list(SENTENCE_P)
        self._types = types
        p = np.array([SENTENCE_P[t] for t in types])
        self._type_p = p / p.sum()

    def _pick(self, cat: str) -> int:
        return int(self.rng.choice(self.ids[cat]))

    def _surface(self, concept: int, lang: str) -> str:
        forms = self.by_id[concept].forms[lang]
        form = forms[1] if len(forms) > 1 and self.rng.random() < self.p_synonym else forms[0]
        if self.inflect:
            form += self.rng.choice(ENDINGS[lang])
        return form

    def story(self, lang: str, n_words: int) -> list[Word]:
        rng = self.rng
        f = self.facts
        protagonist = int(rng.choice(self.ids["person"], p=f.person_p))
        place = f.home[protagonist]
        mood = self._pick("emotion")
        mood_pending = False
        words: list[Word] = []
        s = 0
        while len(words) < n_words:
            if mood_pending and rng.random() < self.p_mood_told:
                kind = "feel"
                mood_pending = False
            else:
                kind = str(rng.choice(self._types, p=self._type_p))
            if rng.random() < self.p_mood_change:
                mood = self._pick("emotion")
                mood_pending = True
            slots: dict[str, int | str] = {"P": protagonist, "EMOTION": mood}
            if kind == "go":
                place = self._pick("place")
            elif kind == "home":
                place = f.home[protagonist]
                slots["HOME"] = place
            slots["PLACE"] = place
            typical = rng.random() < self.p_typical
            slots["WEATHER"] = f.place_weather[place] if typical else self._pick("weather")
            slots["FOOD"] = int(rng.choice(f.place_foods[place])) if typical else self._pick("food")
            slots["ADV"] = (int(rng.choice(f.mood_adverbs[mood])) if rng.random() < self.p_typical
                            else self._pick("adverb"))
            animal = int(rng.choice(self.ids["animal"], p=f.animal_p))
            slots["ANIMAL"] = animal
            slots["DIET"] = f.diet[animal]
            other = int(rng.choice(self.ids["person"], p=f.person_p))
            slots["OTHER"] = other
            slots["OTHERHOME"] = f.home[other]
            slots["OBJECT"] = self._pick("object")
            slots["COLOR"] = self._pick("color")
            slots["PRON"] = PRONOUNS[lang][self.by_id[protagonist].gender]
            for item in TEMPLATES[kind][lang]:
                if item in slots and isinstance(slots[item], int):
                    c = int(slots[item])
                    words.append(Word(self._surface(c, lang), lang, c, self.by_id[c].category,
                                      s, kind, place, mood, protagonist))
                else:
                    form = slots[item] if item in slots else item
                    cat = "punct" if form in PUNCT else ""
                    words.append(Word(str(form), lang, -1, cat, s, kind, place, mood, protagonist))
            s += 1
        return words


def story_text(words: list[Word]) -> str:
    return " ".join(w.form for w in words)
