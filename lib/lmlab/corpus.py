"""The toy language: a probabilistic grammar of a tiny world, with exact answers.

Sentences are drawn independently from a probabilistic finite-state grammar whose states carry the
features that matter (the subject's class, number and gender, what the relative clause still needs,
the syllables to be repeated). Because we wrote the grammar we know the truth: the exact probability
of every next word after any prefix, of every word in a masked slot, of every sentence (summed over
all its derivations: "the girl sees the bat ." has two, one per sense of *bat*), and the language's
entropy rate, the floor no model's loss can go below.

    >>> lang = toy()
    >>> lang.sentences(2, seed=0)                                  # doctest: +SKIP
    [['the', 'dogs', 'that', 'the', 'boy', 'feeds', 'bark', '.'], ...]
    >>> lang.next_token_distribution("the dogs that the boy feeds")  # doctest: +SKIP
    {'bark': 0.31, 'sleep': 0.12, ...}

What it contains, and which chapter uses it:

* Zipf-like word frequencies (nouns, verbs and adjectives are drawn with 1/rank weights);
* subject-verb number agreement across a prepositional phrase or a relative clause
  ("the **dogs** that the boy feeds **bark**"), and gender agreement of reflexives and possessives
  ("the **queen** near the dogs washes **herself**");
* selectional restrictions (only dogs bark, only people read, you eat food), pairs of words that differ
  only in gender (king/queen) or only in number (dog/dogs), and a word with two senses (*bat*, the
  animal that flies and the tool a player swings);
* fixed sayings ("the world is everything that is the case .") and slots that the right context nearly
  fixes but the left context leaves open;
* a copying pattern ("the code is ka lo mu , ka lo mu .") that only copying from context can predict;
* a shifted variant (``toy("shifted")``): the same words with changed preferences, for fine-tuning.
"""
from __future__ import annotations

import bisect
import functools
import math
import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from . import checks, env

EOS = "."
MASK = "[MASK]"
MASK_SPELLINGS = {"[MASK]", "<mask>", "___"}  # all mark the slot in masked_distribution

# --- the lexicon ----------------------------------------------------------------------------------
# Noun classes. Within a class, earlier words are more frequent (weight 1/rank).
HM, HF, HN = "person-m", "person-f", "person"
DOG, CAT, FLYER, BEAST = "dog", "cat", "flyer", "beast"
THING, TOOL, READABLE, FOOD, PLACE = "thing", "tool", "readable", "food", "place"

HUMAN = (HM, HF, HN)
ANIMAL = (DOG, CAT, FLYER, BEAST)
ANIMATE = HUMAN + ANIMAL
OBJECTS = (THING, TOOL, READABLE, FOOD)
CONCRETE = ANIMATE + OBJECTS
ALL_CLASSES = CONCRETE + (PLACE,)

NOUNS: dict[str, list[tuple[str, str]]] = {  # class -> [(singular, plural)]
    HM: [("man", "men"), ("king", "kings"), ("boy", "boys"), ("father", "fathers"), ("brother", "brothers"),
         ("prince", "princes"), ("uncle", "uncles"), ("waiter", "waiters"), ("actor", "actors"),
         ("wizard", "wizards")],
    HF: [("woman", "women"), ("queen", "queens"), ("girl", "girls"), ("mother", "mothers"), ("sister", "sisters"),
         ("princess", "princesses"), ("aunt", "aunts"), ("waitress", "waitresses"), ("actress", "actresses"),
         ("witch", "witches")],
    HN: [("child", "children"), ("teacher", "teachers"), ("doctor", "doctors"), ("farmer", "farmers"),
         ("baker", "bakers"), ("student", "students"), ("friend", "friends"), ("cook", "cooks")],
    DOG: [("dog", "dogs"), ("puppy", "puppies")],
    CAT: [("cat", "cats"), ("kitten", "kittens")],
    FLYER: [("bird", "birds"), ("owl", "owls"), ("bee", "bees"), ("bat", "bats"), ("crow", "crows")],
    BEAST: [("horse", "horses"), ("cow", "cows"), ("wolf", "wolves"), ("fox", "foxes"), ("lion", "lions"),
            ("bear", "bears"), ("rabbit", "rabbits"), ("goat", "goats"), ("mouse", "mice"), ("frog", "frogs")],
    THING: [("cup", "cups"), ("box", "boxes"), ("hat", "hats"), ("key", "keys"), ("bottle", "bottles"),
            ("chair", "chairs"), ("lamp", "lamps"), ("ring", "rings")],
    TOOL: [("ball", "balls"), ("stick", "sticks"), ("stone", "stones"), ("bat", "bats")],
    READABLE: [("book", "books"), ("letter", "letters"), ("map", "maps"), ("poem", "poems")],
    FOOD: [("apple", "apples"), ("cake", "cakes"), ("egg", "eggs"), ("pear", "pears"), ("carrot", "carrots"),
           ("cookie", "cookies"), ("nut", "nuts"), ("onion", "onions")],
    PLACE: [("world", None), ("garden", None), ("house", None), ("forest", None), ("river", None),
            ("city", None), ("village", None), ("castle", None), ("market", None), ("kitchen", None)],
}
GENDER = {HM: "m", HF: "f"}  # other classes: neuter or unknown
SENSE = {(FLYER, "bat"): "animal", (TOOL, "bat"): "tool"}

# Verbs: (singular, plural, subject classes, object classes or None for intransitive).
VERBS: list[tuple[str, str, tuple, tuple | None]] = [
    ("sleeps", "sleep", ANIMATE, None),
    ("runs", "run", HUMAN + (DOG, CAT, BEAST), None),
    ("waits", "wait", HUMAN + (DOG, CAT), None),
    ("laughs", "laugh", HUMAN, None),
    ("sings", "sing", HUMAN, None),
    ("dances", "dance", HUMAN, None),
    ("smiles", "smile", HUMAN, None),
    ("flies", "fly", (FLYER,), None),
    ("barks", "bark", (DOG,), None),
    ("growls", "growl", (DOG, BEAST), None),
    ("meows", "meow", (CAT,), None),
    ("sees", "see", ANIMATE, CONCRETE),
    ("likes", "like", ANIMATE, CONCRETE),
    ("eats", "eat", ANIMATE, (FOOD,)),
    ("holds", "hold", HUMAN, OBJECTS),
    ("finds", "find", HUMAN + (DOG,), OBJECTS),
    ("chases", "chase", HUMAN + (DOG, CAT, BEAST), ANIMAL),
    ("follows", "follow", ANIMATE, ANIMATE),
    ("feeds", "feed", HUMAN, ANIMAL),
    ("meets", "meet", HUMAN, HUMAN),
    ("helps", "help", HUMAN, HUMAN),
    ("reads", "read", HUMAN, (READABLE,)),
    ("writes", "write", HUMAN, (READABLE,)),
    ("throws", "throw", HUMAN, (TOOL,)),
    ("swings", "swing", HUMAN, (TOOL,)),
    ("catches", "catch", HUMAN + (DOG, CAT), (TOOL, FLYER, BEAST)),
    ("visits", "visit", HUMAN, (PLACE,)),
    ("washes", "wash", HUMAN, ANIMAL + (THING,)),
]
REFLEXIVE_VERBS = ("sees", "likes", "washes", "helps")

ADJECTIVES: dict[str, list[str]] = {  # adjectives that fit each class, most frequent first
    "animate": ["big", "small", "old", "young", "happy", "hungry", "tired", "sad", "angry"],
    "object": ["big", "small", "old", "new", "red", "blue", "heavy", "broken"],
    FOOD: ["big", "small", "red", "sweet", "fresh", "ripe"],
    PLACE: ["big", "small", "old", "quiet", "dark", "beautiful"],
}

SYLLABLES = ["ka", "lo", "mu", "ri", "te", "po", "su", "ni", "ba", "de", "fi", "go"]
CODE_LENGTH = 3
SAYINGS = [
    ("world", ["the", "world", "is", "everything", "that", "is", "the", "case"]),
    ("bird", ["the", "early", "bird", "catches", "the", "worm"]),
    ("gold", ["all", "that", "glitters", "is", "not", "gold"]),
]

FUNCTION_WORDS = [EOS, ",", "the", "a", "an", "every", "some", "two", "his", "her", "its", "their", "that",
                  "near", "behind", "with", "in", "from", "is", "are", "himself", "herself", "itself",
                  "themselves", "code", "everything", "case", "early", "worm", "all", "glitters", "not", "gold"]

VOWELS = set("aeiou")


def _adjective_group(cls: str) -> str:
    if cls in ANIMATE:
        return "animate"
    if cls in (THING, TOOL, READABLE):
        return "object"
    return cls


def _zipf(n: int, reverse: bool = False, s: float = 1.0) -> list[float]:
    """Weights proportional to 1/rank**s (reversed for the shifted variant), summing to 1."""
    w = [1.0 / (r + 1) ** s for r in range(n)]
    if reverse:
        w = w[::-1]
    total = sum(w)
    return [x / total for x in w]


@dataclass(frozen=True)
class Params:
    """The grammar's probabilities. ``toy("shifted")`` changes these and nothing else."""

    p_main: float = 0.96
    p_code: float = 0.02
    p_sayings: tuple = (0.005, 0.01, 0.005)      # world, bird, gold
    class_weights: tuple = ((HM, .15), (HF, .15), (HN, .12), (DOG, .08), (CAT, .08), (FLYER, .08),
                            (BEAST, .12), (THING, .05), (TOOL, .04), (READABLE, .03), (FOOD, .04),
                            (PLACE, .06))
    p_singular: float = 0.6
    det_sg: tuple = (("the", .55), ("a", .3), ("every", .15))
    det_pl: tuple = (("the", .55), ("some", .3), ("two", .15))
    p_possessive: float = 0.2                     # object NPs: "his cup", "their dogs"
    p_adjective: float = 0.25
    mod: tuple = (("none", .5), ("pp", .2), ("src", .15), ("orc", .15))
    pp_preps: tuple = (("near", .4), ("behind", .2), ("with", .2), ("in", .1), ("from", .1))
    p_src_transitive: float = 0.6
    vp: tuple = (("intr", .3), ("trans", .45), ("cop", .15), ("refl", .10))
    p_place_pp: float = 0.2
    reverse_ranks: bool = False


STANDARD = Params()
SHIFTED = Params(
    p_main=0.96, p_code=0.02, p_sayings=(0.005, 0.01, 0.005),
    class_weights=((HM, .08), (HF, .08), (HN, .08), (DOG, .14), (CAT, .14), (FLYER, .12), (BEAST, .14),
                   (THING, .05), (TOOL, .05), (READABLE, .02), (FOOD, .06), (PLACE, .04)),
    p_singular=0.4,
    det_sg=(("the", .4), ("a", .4), ("every", .2)),
    det_pl=(("the", .4), ("some", .2), ("two", .4)),
    p_possessive=0.35, p_adjective=0.4,
    mod=(("none", .3), ("pp", .3), ("src", .2), ("orc", .2)),
    pp_preps=(("near", .1), ("behind", .3), ("with", .3), ("in", .2), ("from", .1)),
    p_src_transitive=0.4,
    vp=(("intr", .2), ("trans", .5), ("cop", .1), ("refl", .2)),
    p_place_pp=0.4, reverse_ranks=True,
)
VARIANTS = {"standard": STANDARD, "shifted": SHIFTED}


@dataclass(frozen=True)
class Tag:
    """What the grammar knows about one emitted token.

    ``pos``: DET, ADJ, NOUN, VERB, PREP, COMP ("that"), COP, PRON, PUNCT, SAYING or CODE.
    ``role``: for nouns and verbs, where they sit: subj, obj, pp, rc_subj, rc_obj, place (nouns);
    main, src (verb of a subject relative clause), orc (verb of an object relative clause).
    ``number`` (sg/pl), ``gender`` (m/f/n, '' when unknown), ``cls`` (noun class), ``sense`` (for
    the two-sense word *bat*: animal or tool).
    """

    pos: str
    role: str = ""
    lemma: str = ""
    number: str = ""
    gender: str = ""
    cls: str = ""
    sense: str = ""


@dataclass
class Sentence:
    """A sampled sentence with the grammar's annotations.

    ``heads`` maps the index of each word that agrees with something to the index of what it agrees
    with: a verb to its subject noun, a reflexive or possessive pronoun to the subject noun.
    """

    tokens: list[str]
    tags: list[Tag]
    heads: dict[int, int] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)


# A state is a hashable tuple; an arc is (token, probability, next state, tag).
START = ("START",)
FINAL = ("FINAL",)
END = ("END",)


class ToyLanguage:
    """The toy language: sample it, and ask it for exact probabilities.

    Parameters
    ----------
    variant:
        ``"standard"`` (default) or ``"shifted"`` (same words, changed preferences).
    """

    def __init__(self, variant: str = "standard"):
        checks.check_choice(variant, "variant", sorted(VARIANTS))
        self.variant = variant
        self.params = VARIANTS[variant]
        p = self.params
        self._noun_w = {c: _zipf(len(ws), p.reverse_ranks) for c, ws in NOUNS.items()}
        self._adj_w = {g: _zipf(len(ws), p.reverse_ranks) for g, ws in ADJECTIVES.items()}
        self._class_w = dict(p.class_weights)
        verb_w = _zipf(len(VERBS), p.reverse_ranks, s=0.7)
        self._verbs = [(sg, pl, subj, obj, w) for (sg, pl, subj, obj), w in zip(VERBS, verb_w)]
        self._arc_cache: dict[tuple, list] = {}
        self._index_cache: dict[tuple, dict] = {}
        self._sample_cache: dict[tuple, tuple] = {}
        self.vocab: list[str] = self._build_vocab()
        self._vocab_set = set(self.vocab)

    def __repr__(self) -> str:
        return f"ToyLanguage(variant={self.variant!r}, vocab={len(self.vocab)} words)"

    # --- the lexicon, for chapters -------------------------------------------------------------

    def _build_vocab(self) -> list[str]:
        words: list[str] = []
        seen = set()

        def add(w):
            if w is not None and w not in seen:
                seen.add(w)
                words.append(w)

        for w in FUNCTION_WORDS:
            add(w)
        for cls in ALL_CLASSES:
            for sg, pl in NOUNS[cls]:
                add(sg)
                add(pl)
        for sg, pl, *_ in VERBS:
            add(sg)
            add(pl)
        for group in ADJECTIVES.values():
            for a in group:
                add(a)
        for s in SYLLABLES:
            add(s)
        for _, toks in SAYINGS:
            for t in toks:
                add(t)
        return words

    def word_info(self, word: str) -> dict:
        """The grammar's facts about a word: part of speech, classes, number, gender, senses."""
        self._check_words([word])
        info: dict = {"word": word, "pos": set(), "classes": set(), "number": set(), "gender": set(),
                      "senses": set()}
        for cls, pairs in NOUNS.items():
            for sg, pl in pairs:
                if word in (sg, pl):
                    info["pos"].add("NOUN")
                    info["classes"].add(cls)
                    info["number"].add("sg" if word == sg else "pl")
                    info["gender"].add(GENDER.get(cls, "n"))
                    if (cls, sg) in SENSE:
                        info["senses"].add(SENSE[(cls, sg)])
        for sg, pl, *_ in VERBS:
            if word in (sg, pl):
                info["pos"].add("VERB")
                info["number"].add("sg" if word == sg else "pl")
        if any(word in g for g in ADJECTIVES.values()):
            info["pos"].add("ADJ")
        if word in SYLLABLES:
            info["pos"].add("CODE")
        if not info["pos"]:
            info["pos"].add("FUNC")
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in info.items()}

    def word_class(self, word: str) -> str:
        """A coarse label for colouring figures: 'person', 'animal', 'object', 'food', 'place', 'verb',
        'adjective', 'code' or 'function'."""
        info = self.word_info(word)
        if "NOUN" in info["pos"]:
            c = info["classes"][0]
            if c in HUMAN:
                return "person"
            if c in ANIMAL:
                return "animal" if len(info["classes"]) == 1 else "animal/object"
            if c in (THING, TOOL, READABLE):
                return "object"
            return c
        if "VERB" in info["pos"]:
            return "verb"
        if "ADJ" in info["pos"]:
            return "adjective"
        if "CODE" in info["pos"]:
            return "code"
        return "function"

    @staticmethod
    def pairs(kind: str) -> list[tuple[str, str]]:
        """Word pairs that differ in one feature only.

        ``"gender"``: (man, woman), (king, queen), ... and their plurals; ``"number"``: (dog, dogs),
        (sees, see), ... for nouns and verbs.
        """
        if kind == "gender":
            out = [(m[0], f[0]) for m, f in zip(NOUNS[HM], NOUNS[HF])]
            out += [(m[1], f[1]) for m, f in zip(NOUNS[HM], NOUNS[HF])]
            return out
        if kind == "number":
            out = [(sg, pl) for cls in CONCRETE for sg, pl in NOUNS[cls] if (cls, sg) not in [(TOOL, "bat")]]
            out += [(sg, pl) for sg, pl, *_ in VERBS]
            return out
        raise ValueError(f"kind must be 'gender' or 'number', got {kind!r}")

    # --- the grammar as arcs ------------------------------------------------------------------------

    def arcs(self, state: tuple) -> list[tuple[str, float, tuple, Tag]]:
        """The outgoing arcs of a grammar state: ``[(token, probability, next_state, tag), ...]``.

        Arcs with the same token and next state are merged, so that distinct arcs are distinct
        derivations; the probabilities of a state's arcs sum to 1 (except ``FINAL``, which has none).
        """
        cached = self._arc_cache.get(state)
        if cached is None:
            raw = self._make_arcs(state)
            merged: dict[tuple, list] = {}
            for tok, prob, nxt, tag in raw:
                if prob <= 0:
                    continue
                key = (tok, nxt)
                if key in merged:
                    merged[key][1] += prob
                else:
                    merged[key] = [tok, prob, nxt, tag]
            cached = [tuple(a) for a in merged.values()]
            self._arc_cache[state] = cached
        return cached

    def _by_token(self, state: tuple) -> dict[str, list[tuple[float, tuple]]]:
        idx = self._index_cache.get(state)
        if idx is None:
            idx = {}
            for tok, prob, nxt, _ in self.arcs(state):
                idx.setdefault(tok, []).append((prob, nxt))
            self._index_cache[state] = idx
        return idx

    def _make_arcs(self, s: tuple) -> list:
        kind = s[0]
        p = self.params
        if kind == "START":
            arcs = [(t, p.p_main * q, n, g) for t, q, n, g in self._np_start("subj", self._class_w, ("MOD",))]
            arcs.append(("the", p.p_code, ("CODE", 1), Tag("DET", "code", "the")))
            for (name, toks), q in zip(SAYINGS, p.p_sayings):
                arcs.append((toks[0], q, ("SAY", name, 1), Tag("SAYING", name, toks[0])))
            return arcs
        if kind == "FINAL":
            return []
        if kind == "END":
            return [(EOS, 1.0, FINAL, Tag("PUNCT", "eos", EOS))]
        if kind == "NP1":
            return self._np_words(s)
        if kind == "NP2":
            _, slot, cls, num, cont = s
            return self._nouns(slot, cls, num, cont)
        if kind == "MOD":
            return self._mod(s[1], s[2])
        if kind == "SRC":
            return self._src(s[1], s[2])
        if kind == "ORC":
            _, scls, snum = s
            return self._np_start("rc_subj", self._restrict(ANIMATE), ("RCV", scls, snum))
        if kind == "RCV":
            return self._rc_verb(*s[1:])
        if kind == "VP":
            return self._vp(s[1], s[2])
        if kind == "PP":
            _, prep, scls, snum = s
            classes = (PLACE,) if prep in ("in", "from") else CONCRETE
            return self._np_start("pp", self._restrict(classes), ("VP", scls, snum))
        if kind == "OBJ":
            _, classes, cont, subj, role = s
            return self._np_start("obj" if role == "main" else "rc_obj", self._restrict(classes), cont, subj)
        if kind == "COPADJ":
            return self._adjectives(s[1], END, role="pred")
        if kind == "REFL":
            return self._reflexive(s[1], s[2])
        if kind == "VPEND":
            return [(EOS, 1 - p.p_place_pp, FINAL, Tag("PUNCT", "eos", EOS)),
                    ("in", p.p_place_pp, ("PLACEPP",), Tag("PREP", "place", "in"))]
        if kind == "PLACEPP":
            return self._np_start("place", self._restrict((PLACE,)), END)
        if kind == "CODE":
            step = s[1]
            if step == 1:
                return [("code", 1.0, ("CODE", 2), Tag("CODE", "code", "code"))]
            if step == 2:
                return [("is", 1.0, ("COPY", ()), Tag("COP", "code", "is"))]
        if kind == "COPY":
            xs = s[1]
            if len(xs) < CODE_LENGTH:
                q = 1.0 / len(SYLLABLES)
                return [(x, q, ("COPY", xs + (x,)), Tag("CODE", "first", x)) for x in SYLLABLES]
            return [(",", 1.0, ("REPEAT", xs, 0), Tag("PUNCT", "code", ","))]
        if kind == "REPEAT":
            _, xs, i = s
            nxt = END if i + 1 == len(xs) else ("REPEAT", xs, i + 1)
            return [(xs[i], 1.0, nxt, Tag("CODE", "repeat", xs[i]))]
        if kind == "SAY":
            _, name, i = s
            toks = dict(SAYINGS)[name]
            nxt = END if i + 1 == len(toks) else ("SAY", name, i + 1)
            return [(toks[i], 1.0, nxt, Tag("SAYING", name, toks[i]))]
        raise ValueError(f"not a state of the toy grammar: {s!r}")

    # noun phrases: determiner, optional adjective, noun -------------------------------------------

    def _restrict(self, classes: Iterable[str]) -> dict[str, float]:
        w = {c: self._class_w[c] for c in classes}
        z = sum(w.values())
        return {c: v / z for c, v in w.items()}

    def _numbers(self, cls: str) -> list[tuple[str, float]]:
        if cls == PLACE:
            return [("sg", 1.0)]
        return [("sg", self.params.p_singular), ("pl", 1 - self.params.p_singular)]

    def _first_words(self, cls: str, num: str) -> list[tuple[str, float, bool, str]]:
        """The possible first words after the determiner: (word, prob, is_adjective, lemma)."""
        p_adj = self.params.p_adjective
        group = _adjective_group(cls)
        out = [(a, p_adj * w, True, a) for a, w in zip(ADJECTIVES[group], self._adj_w[group])]
        for (sg, pl), w in zip(NOUNS[cls], self._noun_w[cls]):
            out.append((sg if num == "sg" else pl, (1 - p_adj) * w, False, sg))
        return out

    @functools.lru_cache(maxsize=None)
    def _vowel_mass(self, cls: str, num: str) -> tuple[float, float]:
        v = sum(q for w, q, _, _ in self._first_words(cls, num) if w[0] in VOWELS)
        return v, 1.0 - v

    def _determiners(self, slot: str, num: str, subj: tuple | None) -> list[tuple[str, float, str]]:
        """(determiner, probability, kind); possessives only for objects of the main verb."""
        dets = [(d, q, "det") for d, q in (self.params.det_sg if num == "sg" else self.params.det_pl)]
        if subj is None:
            return dets
        scls, snum = subj
        pp = self.params.p_possessive
        dets = [(d, q * (1 - pp), k) for d, q, k in dets]
        if snum == "pl":
            poss = [("their", 1.0)]
        elif scls == HM:
            poss = [("his", 1.0)]
        elif scls == HF:
            poss = [("her", 1.0)]
        elif scls == HN:
            poss = [("his", 0.5), ("her", 0.5)]
        else:
            poss = [("its", 1.0)]
        return dets + [(d, pp * q, "poss") for d, q in poss]

    def _np_start(self, slot: str, class_w: dict[str, float], cont: tuple, subj: tuple | None = None) -> list:
        arcs = []
        for cls, wc in class_w.items():
            for num, wn in self._numbers(cls):
                for det, wd, kind in self._determiners(slot, num, subj):
                    if det == "every" and cls == PLACE:
                        continue
                    q = wc * wn * wd
                    role = "poss" if kind == "poss" else slot
                    tag = Tag("DET", role, det, num)
                    if det == "a":
                        zv, zc = self._vowel_mass(cls, num)
                        arcs.append(("an", q * zv, ("NP1", slot, cls, num, "V", cont), Tag("DET", role, "an", num)))
                        arcs.append(("a", q * zc, ("NP1", slot, cls, num, "C", cont), tag))
                    else:
                        arcs.append((det, q, ("NP1", slot, cls, num, "", cont), tag))
        if any(c == PLACE for c in class_w):  # "every" is not used with places: renormalise
            total = sum(a[1] for a in arcs)
            arcs = [(t, q / total, n, g) for t, q, n, g in arcs]
        return arcs

    def _np_words(self, s: tuple) -> list:
        _, slot, cls, num, flag, cont = s
        words = self._first_words(cls, num)
        if flag:
            zv, zc = self._vowel_mass(cls, num)
            z = zv if flag == "V" else zc
            words = [(w, q / z, a, l) for w, q, a, l in words if (w[0] in VOWELS) == (flag == "V")]
        arcs = []
        for w, q, is_adj, lemma in words:
            if is_adj:
                arcs.append((w, q, ("NP2", slot, cls, num, cont), Tag("ADJ", slot, lemma, num, cls=cls)))
            else:
                arcs.append(self._noun_arc(w, q, slot, cls, num, lemma, cont))
        return arcs

    def _nouns(self, slot: str, cls: str, num: str, cont: tuple) -> list:
        return [self._noun_arc(sg if num == "sg" else pl, w, slot, cls, num, sg, cont)
                for (sg, pl), w in zip(NOUNS[cls], self._noun_w[cls])]

    def _noun_arc(self, word, q, slot, cls, num, lemma, cont):
        nxt = cont + (cls, num) if cont[0] in ("MOD", "RCV") else cont
        tag = Tag("NOUN", slot, lemma, num, GENDER.get(cls, "n"), cls, SENSE.get((cls, lemma), ""))
        return (word, q, nxt, tag)

    # the rest of the sentence ---------------------------------------------------------------------

    def _mod(self, scls: str, snum: str) -> list:
        if scls not in ANIMATE:  # things and places only take a predicate adjective
            return self._vp(scls, snum)
        arcs = []
        for kind, q in self.params.mod:
            if kind == "none":
                arcs += [(t, q * r, n, g) for t, r, n, g in self._vp(scls, snum)]
            elif kind == "pp":
                for prep, r in self.params.pp_preps:
                    arcs.append((prep, q * r, ("PP", prep, scls, snum), Tag("PREP", "mod", prep)))
            elif kind == "src":
                arcs.append(("that", q, ("SRC", scls, snum), Tag("COMP", "src", "that")))
            elif kind == "orc":
                arcs.append(("that", q, ("ORC", scls, snum), Tag("COMP", "orc", "that")))
        return arcs

    def _verbs_for(self, scls: str, transitive: bool, obj_cls: str | None = None) -> list[tuple]:
        vs = [v for v in self._verbs if scls in v[2] and ((v[3] is not None) == transitive)]
        if obj_cls is not None:
            vs = [v for v in vs if obj_cls in v[3]]
        z = sum(v[4] for v in vs)
        return [(sg, pl, subj, obj, w / z) for sg, pl, subj, obj, w in vs]

    def _verb_arcs(self, scls, snum, q, transitive, role, cont_fn, obj_cls=None, subj_for_poss=None):
        arcs = []
        for sg, pl, _, obj, w in self._verbs_for(scls, transitive, obj_cls):
            tok = sg if snum == "sg" else pl
            tag = Tag("VERB", role, sg, snum)
            if transitive and obj_cls is None:  # the object noun phrase follows
                arcs.append((tok, q * w, ("OBJ", obj, cont_fn, subj_for_poss, role), tag))
            else:
                arcs.append((tok, q * w, cont_fn, tag))
        return arcs

    def _src(self, scls: str, snum: str) -> list:
        pt = self.params.p_src_transitive
        return (self._verb_arcs(scls, snum, 1 - pt, False, "src", ("VP", scls, snum))
                + self._verb_arcs(scls, snum, pt, True, "src", ("VP", scls, snum)))

    def _rc_verb(self, scls, snum, rcls, rnum) -> list:
        return self._verb_arcs(rcls, rnum, 1.0, True, "orc", ("VP", scls, snum), obj_cls=scls)

    def _vp(self, scls: str, snum: str) -> list:
        arcs = []
        cop = "is" if snum == "sg" else "are"
        vp = self.params.vp if scls in ANIMATE else (("cop", 1.0),)
        for kind, q in vp:
            if kind == "intr":
                arcs += self._verb_arcs(scls, snum, q, False, "main", END)
            elif kind == "trans":
                arcs += self._verb_arcs(scls, snum, q, True, "main", ("VPEND",), subj_for_poss=(scls, snum))
            elif kind == "cop":
                arcs.append((cop, q, ("COPADJ", scls), Tag("COP", "main", "is", snum)))
            elif kind == "refl":
                vs = [v for v in self._verbs_for(scls, True) if v[0] in REFLEXIVE_VERBS]
                z = sum(v[4] for v in vs)
                for sg, pl, _, _, w in vs:
                    arcs.append((sg if snum == "sg" else pl, q * w / z, ("REFL", scls, snum),
                                 Tag("VERB", "main", sg, snum)))
        return arcs

    def _adjectives(self, cls: str, cont: tuple, role: str) -> list:
        group = _adjective_group(cls)
        return [(a, w, cont, Tag("ADJ", role, a, cls=cls)) for a, w in zip(ADJECTIVES[group], self._adj_w[group])]

    def _reflexive(self, scls: str, snum: str) -> list:
        if snum == "pl":
            opts = [("themselves", 1.0, "")]
        elif scls == HM:
            opts = [("himself", 1.0, "m")]
        elif scls == HF:
            opts = [("herself", 1.0, "f")]
        elif scls == HN:
            opts = [("himself", 0.5, "m"), ("herself", 0.5, "f")]
        else:
            opts = [("itself", 1.0, "n")]
        return [(w, q, END, Tag("PRON", "refl", w, snum, g)) for w, q, g in opts]

    # --- sampling -----------------------------------------------------------------------------------

    def _sampler(self, state: tuple) -> tuple:
        entry = self._sample_cache.get(state)
        if entry is None:
            arcs = self.arcs(state)
            cum, acc = [], 0.0
            for a in arcs:
                acc += a[1]
                cum.append(acc)
            cum[-1] = float("inf")  # guard against rounding
            entry = (cum, arcs)
            self._sample_cache[state] = entry
        return entry

    def _sample_one(self, rng: random.Random, with_tags: bool):
        state, tokens, tags, logp = START, [], [], 0.0
        while state != FINAL:
            cum, arcs = self._sampler(state)
            tok, prob, state, tag = arcs[bisect.bisect_right(cum, rng.random())]
            tokens.append(tok)
            if with_tags:
                tags.append(tag)
                logp += math.log(prob)
        return tokens, tags, logp

    @staticmethod
    def _check_count(n, name="n"):
        checks.check_int(n, name, 0)

    def sample(self, n: int, seed: int = 0) -> list[Sentence]:
        """Draw ``n`` independent sentences with their annotations (tags and agreement heads)."""
        self._check_count(n)
        rng = random.Random(checks.seed_of(seed))  # the reader's seed plus $LMLAB_SEED_OFFSET
        out = []
        for _ in range(n):
            tokens, tags, _ = self._sample_one(rng, True)
            out.append(Sentence(tokens, tags, _heads(tags)))
        return out

    def sample_with_logprob(self, n: int, seed: int = 0) -> list[tuple[list[str], float]]:
        """Sentences with the log-probability of the derivation that produced each one."""
        self._check_count(n)
        rng = random.Random(checks.seed_of(seed))  # the reader's seed plus $LMLAB_SEED_OFFSET
        return [(t, lp) for t, _, lp in (self._sample_one(rng, True) for _ in range(n))]

    def sentences(self, n: int, seed: int = 0) -> list[list[str]]:
        """``n`` independent sentences, each a list of words ending with ``"."``."""
        self._check_count(n)
        rng = random.Random(checks.seed_of(seed))  # the reader's seed plus $LMLAB_SEED_OFFSET
        return [self._sample_one(rng, False)[0] for _ in range(n)]

    def text(self, n: int, seed: int = 0) -> str:
        """``n`` sentences as one string of space-separated words."""
        return " ".join(" ".join(s) for s in self.sentences(n, seed))  # sentences() applies the offset

    def token_stream(self, n_tokens: int, seed: int = 0) -> list[str]:
        """Whole sentences, concatenated, until there are at least ``n_tokens`` tokens."""
        self._check_count(n_tokens, "n_tokens")
        rng = random.Random(checks.seed_of(seed))  # the reader's seed plus $LMLAB_SEED_OFFSET
        out: list[str] = []
        while len(out) < n_tokens:
            out.extend(self._sample_one(rng, False)[0])
        return out

    # --- exact answers ------------------------------------------------------------------------------

    def _tokens(self, tokens: str | Sequence[str]) -> list[str]:
        if isinstance(tokens, str):
            tokens = tokens.split()
        elif not isinstance(tokens, (list, tuple)):
            raise TypeError(f"pass a string of space-separated words or a list of words, got {type(tokens).__name__}")
        tokens = [MASK if t in MASK_SPELLINGS else t for t in tokens]
        self._check_words([t for t in tokens if t != MASK])
        return tokens

    def _check_words(self, words: Iterable[str]) -> None:
        for w in words:
            if not isinstance(w, str) or w not in self._vocab_set:
                raise ValueError(f"{w!r} is not a word of the toy language; see lang.vocab for its "
                                 f"{len(self.vocab)} words (sentences end with '.')")

    def _step(self, alpha: dict, tok: str) -> dict:
        """One forward step: the (unnormalised) state distribution after emitting ``tok``."""
        out: dict = {}
        for s, a in alpha.items():
            for prob, nxt in self._by_token(s).get(tok, ()):
                out[nxt] = out.get(nxt, 0.0) + a * prob
        return out

    def _prefix_alpha(self, tokens: list[str]) -> tuple[dict, float]:
        """Forward over the current sentence's prefix (everything after the last '.').

        Returns the normalised state distribution and the log-probability of that prefix.
        """
        start = max((i + 1 for i, t in enumerate(tokens) if t == EOS), default=0)
        alpha, logp = {START: 1.0}, 0.0
        for i in range(start, len(tokens)):
            alpha = self._step(alpha, tokens[i])
            z = sum(alpha.values())
            if z == 0:
                raise ValueError(f"the toy grammar cannot produce {' '.join(tokens[start:i + 1])!r} "
                                 f"(word {i}: {tokens[i]!r} is impossible after what precedes it)")
            logp += math.log(z)
            alpha = {s: a / z for s, a in alpha.items()}
        return alpha, logp

    def next_token_distribution(self, prefix: str | Sequence[str]) -> dict[str, float]:
        """The exact distribution of the next word after ``prefix``, most probable first.

        Sentences are independent, so only the words after the last ``"."`` matter.
        """
        alpha, _ = self._prefix_alpha(self._tokens(prefix))
        dist: dict[str, float] = {}
        for s, a in alpha.items():
            for tok, prob, _, _ in self.arcs(s):
                dist[tok] = dist.get(tok, 0.0) + a * prob
        return dict(sorted(dist.items(), key=lambda kv: (-kv[1], kv[0])))

    def next_token_probs(self, prefix: str | Sequence[str]) -> np.ndarray:
        """:meth:`next_token_distribution` as a vector over :attr:`vocab` ``(vocab,)``."""
        vec = np.zeros(len(self.vocab))
        index = self.index
        for tok, p in self.next_token_distribution(prefix).items():
            vec[index[tok]] = p
        return vec

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Word -> position in :attr:`vocab`."""
        return {w: i for i, w in enumerate(self.vocab)}

    def sentence_logprob(self, tokens: str | Sequence[str]) -> float:
        """The exact log-probability of one whole sentence (ending in ``"."``), summed over derivations."""
        tokens = self._tokens(tokens)
        if not tokens or tokens[-1] != EOS or EOS in tokens[:-1]:
            raise ValueError(f"pass exactly one sentence ending with '.', got {' '.join(tokens)!r}")
        return self.sequence_logprob(tokens)

    def sequence_logprob(self, tokens: str | Sequence[str]) -> float:
        """Log-probability of a run of whole sentences, or of a prefix if the last one is unfinished."""
        return float(np.sum(self.token_logprobs(tokens)))

    def token_logprobs(self, tokens: str | Sequence[str]) -> np.ndarray:
        """Exact ``log p(token_t | everything before it)`` for every token, ``(len(tokens),)``.

        Each token is scored given its sentence so far (earlier sentences are independent of it).
        Raises ``ValueError`` at the first token the grammar cannot produce.
        """
        tokens = self._tokens(tokens)
        if MASK in tokens:
            raise ValueError(f"token_logprobs scores a text without {MASK!r}; use masked_distribution for slots")
        out = np.empty(len(tokens))
        alpha = {START: 1.0}
        sent_start = 0
        for i, tok in enumerate(tokens):
            new = self._step(alpha, tok)
            z = sum(new.values())
            if z == 0:
                raise ValueError(f"the toy grammar cannot produce {' '.join(tokens[sent_start:i + 1])!r} "
                                 f"(word {i}: {tok!r} is impossible after what precedes it)")
            out[i] = math.log(z)
            if tok == EOS:
                alpha, sent_start = {START: 1.0}, i + 1
            else:
                alpha = {s: a / z for s, a in new.items()}
        return out

    def masked_distribution(self, tokens: str | Sequence[str], position: int | None = None) -> dict[str, float]:
        """The exact distribution of the word at ``position`` given all the other words (both sides).

        ``tokens`` is a sentence (or several); the slot is ``position`` or the single ``"[MASK]"`` in
        ``tokens``. Only the sentence holding the slot matters; if the slot could be ``"."`` the
        words after it may start a new sentence, and that is taken into account. If the text stops
        before the sentence ends, the right context is a prefix of the rest of the sentence.
        """
        tokens = self._tokens(tokens)
        if position is None:
            if tokens.count(MASK) != 1:
                raise ValueError(f"pass a position, or exactly one {MASK!r} in the tokens (found {tokens.count(MASK)})")
            position = tokens.index(MASK)
        position = checks.check_int(position, "position", 0, len(tokens) - 1,
                                    hint=f"an index into the {len(tokens)} tokens")
        if MASK in tokens[:position] + tokens[position + 1:]:
            raise ValueError(f"only one {MASK!r} is allowed")
        start = max((i + 1 for i in range(position) if tokens[i] == EOS), default=0)
        stop = next((i + 1 for i in range(position + 1, len(tokens)) if tokens[i] == EOS), len(tokens))
        left, right = tokens[start:position], tokens[position + 1:stop]
        alpha, _ = self._prefix_alpha(left)
        candidates: dict[str, float] = {}
        for s, a in alpha.items():
            for tok, prob, _, _ in self.arcs(s):
                candidates[tok] = candidates.get(tok, 0.0) + a * prob
        scores = {}
        for tok, p_tok in candidates.items():
            p = self._continuation_prob(self._step(alpha, tok), tok, right)
            if p > 0:
                scores[tok] = p
        z = sum(scores.values())
        if z == 0:
            raise ValueError("no word of the toy language fits this slot: "
                             f"{' '.join(left + [MASK] + right)!r}")
        return dict(sorted(((t, p / z) for t, p in scores.items()), key=lambda kv: (-kv[1], kv[0])))

    def _continuation_prob(self, alpha: dict, last: str, right: list[str]) -> float:
        """P(right | state distribution ``alpha``), resetting at sentence ends; ``alpha`` unnormalised."""
        if last == EOS:
            alpha = {START: sum(alpha.values())}
        total_log, mass = 0.0, sum(alpha.values())
        if mass == 0:
            return 0.0
        alpha = {s: a / mass for s, a in alpha.items()}
        total_log = math.log(mass)
        for tok in right:
            alpha = self._step(alpha, tok)
            z = sum(alpha.values())
            if z == 0:
                return 0.0
            total_log += math.log(z)
            alpha = {START: 1.0} if tok == EOS else {s: a / z for s, a in alpha.items()}
        return math.exp(total_log)

    def masked_probs(self, tokens: str | Sequence[str], position: int | None = None) -> np.ndarray:
        """:meth:`masked_distribution` as a vector over :attr:`vocab` ``(vocab,)``."""
        vec = np.zeros(len(self.vocab))
        for tok, p in self.masked_distribution(tokens, position).items():
            vec[self.index[tok]] = p
        return vec

    # --- entropy ------------------------------------------------------------------------------------

    def _reachable(self) -> list[tuple]:
        """Every state reachable from START, in an order where each state comes after its successors."""
        order, seen, stack = [], {START}, [(START, iter(self.arcs(START)))]
        while stack:
            state, it = stack[-1]
            for arc in it:
                nxt = arc[2]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, iter(self.arcs(nxt))))
                    break
            else:
                order.append(state)
                stack.pop()
        return order

    @functools.cached_property
    def _derivation_stats(self) -> tuple[float, float, int]:
        """Exact (H(derivation), E[length], number of states), by dynamic programming over the DAG."""
        ent: dict = {}
        length: dict = {}
        order = self._reachable()
        for s in order:  # successors first
            arcs = self.arcs(s)
            ent[s] = sum(p * (-math.log(p) + ent[n]) for _, p, n, _ in arcs)
            length[s] = sum(p * (1 + length[n]) for _, p, n, _ in arcs)
        return ent[START], length[START], len(order)

    def expected_length(self) -> float:
        """The exact mean number of tokens per sentence, ``"."`` included."""
        return self._derivation_stats[1]

    @functools.lru_cache(maxsize=None)
    def entropy_estimate(self, n: int = 20_000, seed: int = 12345) -> dict:
        """The entropy rate in nats per token, ``E[-log p(sentence)] / E[length]``, with a 95% interval.

        ``E[-log p(derivation)]`` and ``E[length]`` are exact (dynamic programming over the grammar's
        states). A sentence can have more than one derivation (the two senses of *bat*), so
        ``-log p(sentence) = -log p(derivation) + log p(derivation | sentence)``; the expectation of
        the second term (0 for unambiguous sentences, at most log 2 here) is estimated from ``n``
        sampled sentences, which is where the (tiny) interval comes from.

        The entropy rate is a constant of the language, not a reader's experiment: the sample is drawn
        with ``seed`` itself (inside :func:`lmlab.env.fixed_seeds`, no seed offset), and cached.
        """
        checks.check_int(n, "n", 2)
        checks.seed_of(seed)  # validates
        h_deriv, mean_len, n_states = self._derivation_stats
        with env.fixed_seeds():
            sample = self.sample_with_logprob(n, seed)
        diffs = np.array([self.sequence_logprob(toks) - lp for toks, lp in sample])
        # each entry is log p(sentence) - log p(derivation) = -log p(derivation | sentence) >= 0
        h_cond, se = float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(n))
        rate = (h_deriv - h_cond) / mean_len
        half = 1.96 * se / mean_len
        return {"entropy_rate": rate, "ci95": (rate - half, rate + half), "ci_width": 2 * half,
                "sentence_entropy": h_deriv - h_cond, "derivation_entropy": h_deriv,
                "ambiguity_entropy": h_cond, "mean_length": mean_len, "n_states": n_states, "n_samples": n}

    def entropy_rate(self) -> float:
        """Nats per token (``"."`` counted) that no model of this language can beat on average."""
        return self.entropy_estimate()["entropy_rate"]

    # --- a readable description -----------------------------------------------------------------------

    def describe(self) -> str:
        """The grammar in words, with its probabilities."""
        p = self.params
        pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
        lines = [
            f"The toy language ({self.variant}): {len(self.vocab)} words; every sentence ends with '.'.",
            "",
            "SENTENCE  -> SUBJECT MODIFIER PREDICATE '.'                               "
            f"{pct(p.p_main)}",
            "          |  'the code is' X Y Z ',' X Y Z '.'   (X, Y, Z: random syllables)   "
            f"{pct(p.p_code)}",
            "          |  a fixed saying '.'                                          "
            f"{pct(sum(p.p_sayings))}",
            "SUBJECT   -> DETERMINER [ADJECTIVE] NOUN      (class, then number, then words)",
            "MODIFIER  -> (nothing) | PREP NOUN-PHRASE | 'that' VERB [OBJECT] | 'that' NOUN-PHRASE VERB",
            "             " + ", ".join(f"{k} {pct(q)}" for k, q in p.mod) + "   (people and animals only)",
            "PREDICATE -> VERB | VERB OBJECT ['in' PLACE] | 'is'/'are' ADJECTIVE | VERB REFLEXIVE",
            "             " + ", ".join(f"{k} {pct(q)}" for k, q in p.vp),
            "",
            "Agreement: every verb agrees in number with its subject, also across a modifier",
            "  ('the dogs that the boy feeds bark .'); reflexives and possessives agree in gender",
            "  and number with the subject ('the queen washes herself .', 'the kings hold their cups .').",
            "Determiners: singular " + ", ".join(f"{d} {pct(q)}" for d, q in p.det_sg)
            + "; plural " + ", ".join(f"{d} {pct(q)}" for d, q in p.det_pl) + "; 'an' before a vowel.",
            "Selection: " + "; ".join(f"{sg} <- {'/'.join(subj) if len(subj) < 4 else 'animate' if subj == ANIMATE else 'people+'}"
                                      for sg, _, subj, obj in VERBS[:11]) + " ...",
            "",
            "Noun classes (most frequent first):",
        ]
        for cls in ALL_CLASSES:
            lines.append(f"  {cls:9s}: " + ", ".join(sg for sg, _ in NOUNS[cls]))
        lines += ["", "Sayings: " + " | ".join(" ".join(t) for _, t in SAYINGS),
                  "Two senses: 'bat' is a flyer (it flies) and a tool (people swing it)."]
        return "\n".join(lines)


def _heads(tags: list[Tag]) -> dict[int, int]:
    """Link verbs, reflexives and possessives to the noun they agree with."""
    heads: dict[int, int] = {}
    subj = rc_subj = None
    for i, t in enumerate(tags):
        if t.pos == "NOUN" and t.role == "subj":
            subj = i
        elif t.pos == "NOUN" and t.role == "rc_subj":
            rc_subj = i
        elif t.pos in ("VERB", "COP") and t.role in ("main", "src") and subj is not None:
            heads[i] = subj
        elif t.pos == "VERB" and t.role == "orc" and rc_subj is not None:
            heads[i] = rc_subj
        elif (t.pos == "PRON" or (t.pos == "DET" and t.role == "poss")) and subj is not None:
            heads[i] = subj
    return heads


def toy(variant: str = "standard") -> ToyLanguage:
    """The toy language (a cached instance): ``"standard"`` or ``"shifted"``."""
    checks.check_choice(variant, "variant", sorted(VARIANTS))
    return _toy(variant)


@functools.lru_cache(maxsize=None)
def _toy(variant: str) -> ToyLanguage:
    return ToyLanguage(variant)
