"""Phonetically varied English sentences from a small grammar and the pocketsphinx dictionary.

The synthetic corpus needs many different, pronounceable sentences, none of them copied prose. They
are built here from two sources:

* **Open-class nouns** come from the CMU pronouncing dictionary that ships with pocketsphinx
  (``cmudict-en-us.dict``): alphabetic entries without alternate pronunciations, 3 to 10 letters,
  ranked by their unigram probability in pocketsphinx's own en-US language model (``en-us.lm.bin``),
  which serves as the word-frequency proxy. The most frequent few thousand that do not look like
  adverbs, participles or function words form the noun pool, so words are common and real.
* **Everything else** is a closed list of our own: determiners, pronouns, prepositions,
  auxiliaries, conjunctions, number words, and a few hundred verbs and adjectives with their forms.

A handful of templates (statements, questions, requests, lists, numbers, exclamations, compound
sentences) join them. Noun picks are weighted towards words that contain bilabials (P B M) and open
vowels (AA AE AH AO AW AY), the sounds lip-sync is judged on, and a short list of words guarantees
the rare phones (ZH, OY, UH, ...) appear; over 1000 sentences every one of the 39 ARPAbet phones
occurs (``tests/test_text.py`` measures it).

Held-out sentences: :func:`sentence_split` maps the normalised text of a sentence to a split by a
stable hash, so a sentence can only ever belong to one split; :meth:`SentenceGenerator.sentence`
can be asked for a sentence of a given split (it draws until the hash agrees).

Everything is deterministic given the seed and the installed pocketsphinx model files.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder3d.errors import TextError

SPLITS = ("train", "val", "test")
# fraction of the sentence hash space that belongs to val and to test; train is the rest
DEFAULT_HOLDOUT = {"val": 0.05, "test": 0.05}

# ---- closed-class words (our own lists) ---------------------------------------------------------
DETERMINERS = ("the", "a", "this", "that", "my", "your", "our", "his", "her", "their", "every",
               "each", "one", "some", "another", "no")
SUBJECT_PRONOUNS = ("i", "you", "we", "they", "he", "she")
OBJECT_PRONOUNS = ("me", "you", "us", "them", "him", "her", "it")
PREPOSITIONS = ("in", "on", "under", "behind", "beside", "near", "above", "below", "between",
                "through", "across", "around", "beyond", "inside", "outside", "with", "without",
                "from", "into", "onto", "over", "past", "toward", "along", "by", "after", "before")
AUXILIARIES = ("can", "could", "will", "would", "should", "might", "must", "may")
CONJUNCTIONS = ("but", "and", "so", "because", "while", "although", "until", "unless", "when",
                "before", "after", "since")
WH_WORDS = ("why", "where", "when", "how")
ADVERBS = ("quickly", "slowly", "gently", "boldly", "probably", "maybe", "always", "never",
           "often", "rarely", "almost", "barely", "perhaps", "surely", "simply", "really",
           "suddenly", "happily", "calmly", "openly", "smoothly", "loudly", "softly", "today",
           "tomorrow", "yesterday", "again", "once", "twice", "soon", "already", "usually")
TIME_PHRASES = ("at noon", "at midnight", "this morning", "tonight", "on monday", "on thursday",
                "next week", "last summer", "in april", "in november", "by tomorrow",
                "before lunch", "after dinner", "every evening", "in the autumn", "at dawn")
INTERJECTIONS = ("oh", "well", "wow", "hmm", "okay", "look", "listen", "yes", "no", "ah")
ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
        "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")

# verbs as "base past" (the third person is made by rule)
_VERBS = """
bake baked|bring brought|build built|buy bought|carry carried|catch caught|change changed
check checked|choose chose|clean cleaned|climb climbed|close closed|cook cooked|cover covered
draw drew|drop dropped|enjoy enjoyed|explain explained|find found|fix fixed|fold folded
follow followed|grab grabbed|hide hid|hold held|jump jumped|keep kept|kick kicked|knock knocked
leave left|lift lifted|like liked|love loved|make made|measure measured|mix mixed|move moved
need needed|open opened|paint painted|pack packed|pass passed|pay paid|pick picked|place placed
play played|pour poured|pull pulled|push pushed|put put|reach reached|read read|remember remembered
repair repaired|ride rode|sell sold|send sent|share shared|shake shook|show showed|sing sang
stamp stamped|start started|stop stopped|take took|teach taught|throw threw|touch touched
treasure treasured|visit visited|want wanted|wash washed|watch watched|wave waved|wrap wrapped
borrow borrowed|bump bumped|grab grabbed|jam jammed|mop mopped|map mapped|pop popped|rob robbed
tap tapped|whip whipped|zip zipped|thank thanked|join joined|avoid avoided|enjoy enjoyed
annoy annoyed|destroy destroyed|push pushed|pull pulled|book booked|cook cooked|look looked
judge judged|choose chose|chew chewed|rouse roused|soothe soothed|bathe bathed|smooth smoothed
"""
VERBS: tuple[tuple[str, str], ...] = tuple(dict.fromkeys(
    tuple(pair.split()) for line in _VERBS.split("\n") for pair in line.split("|") if pair.strip()))

ADJECTIVES = (
    "big", "small", "bright", "dark", "happy", "sad", "angry", "calm", "quiet", "loud", "warm",
    "cold", "soft", "hard", "smooth", "rough", "heavy", "light", "fast", "slow", "young", "old",
    "brave", "proud", "busy", "lazy", "clever", "funny", "strange", "famous", "empty", "full",
    "purple", "brown", "black", "blue", "green", "orange", "yellow", "pink", "golden", "silver",
    "broken", "shiny", "muddy", "bumpy", "pleasant", "massive", "tiny", "ancient", "modern",
    "polite", "rapid", "sharp", "thick", "thin", "wide", "narrow", "fresh", "sour", "sweet",
    "bitter", "hungry", "sleepy", "humble", "noisy", "lovely", "casual", "usual", "beige",
    "visual", "joyful", "loyal", "good", "foolish", "wooden", "woolen", "huge", "cheap", "chosen",
)

# words that carry phones the frequency list alone makes rare (ZH, OY, UH, TH, ...)
RARE_PHONE_NOUNS = (
    "measure", "treasure", "pleasure", "vision", "television", "garage", "decision", "version",
    "leisure", "collision", "boy", "toy", "voice", "noise", "coin", "oil", "joy", "choice",
    "book", "cook", "wool", "foot", "hook", "sugar", "wolf", "bush", "cushion", "thumb", "theatre",
    "mother", "father", "feather", "weather", "leather", "youth", "yacht", "yard", "judge", "cage",
    "bridge", "engine", "zebra", "puzzle", "jazz", "king", "ring", "song", "singer", "anchor",
)

# words kept out of generated sentences (offensive or unsuitable); matched as whole words
_BLOCKED = frozenset("""
porn porno sex sexy sexual nude naked rape raped rapist kill killed killer killing murder murderer
suicide drug drugs cocaine heroin gun guns shoot shooting bomb bombs terror terrorist terrorism
nazi hitler slave slavery damn hell crap piss shit fuck bitch bastard ass dick cock pussy slut
whore nigger nigga fag faggot retard retarded gay lesbian jesus christ god satan devil abortion
cancer dead death die died dying corpse blood bloody war weapon weapons hate racist violence
prison crime alcohol hiv aids reddit amp que yep non
""".split())

# open-class words are taken from this rank range of the frequency-sorted dictionary
_NOUN_RANK_RANGE = (700, 7000)
_VERB_RANK_LIMIT = 20000  # a word whose past tense ranks above this is taken for a verb
_NOUN_SUFFIXES_EXCLUDED = ("ly", "ing", "ed", "est", "ful", "ous", "ive", "ize", "ise", "ish",
                           "able", "ible")
_LABIAL = {"P", "B", "M"}
_OPEN_VOWEL = {"AA", "AE", "AH", "AO", "AW", "AY"}




# ---- word source --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lexicon:
    """Words and their ARPAbet pronunciations (stress digits removed), in frequency order.

    ``words`` is every usable dictionary word, most frequent first; ``pron`` maps each word (also
    the closed-class words, if the dictionary knows them) to its phones.
    """

    words: tuple[str, ...]
    pron: dict[str, tuple[str, ...]]


def _model_dir() -> Path:
    try:
        import pocketsphinx
    except ImportError as e:  # pragma: no cover - a hard dependency
        raise TextError("pocketsphinx is not installed; it provides the word list") from e
    return Path(pocketsphinx.get_model_path()) / "en-us"


@functools.lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """Read the pocketsphinx dictionary and rank its words by the en-US LM's unigram probability.

    Cached per process. Words absent from the language model are dropped (they are rare or odd).
    """
    import pocketsphinx

    model = _model_dir()
    dict_path, lm_path = model / "cmudict-en-us.dict", model / "en-us.lm.bin"
    for p in (dict_path, lm_path):
        if not p.is_file():
            raise TextError(f"pocketsphinx model file not found: {p}")
    pron: dict[str, tuple[str, ...]] = {}
    alternates: set[str] = set()
    no_stress = str.maketrans("", "", "0123456789")
    with open(dict_path, encoding="utf-8") as f:
        for line in f:
            word, _, phones = line.partition(" ")
            if "(" in word:  # "read(2)": the word has several pronunciations
                alternates.add(word.split("(")[0])
                continue
            if word.isascii() and word.isalpha() and word.islower() and phones:
                pron[word] = tuple(phones.translate(no_stress).split())
    if hasattr(pocketsphinx, "set_loglevel"):
        pocketsphinx.set_loglevel("FATAL")
    config = pocketsphinx.Config(loglevel="FATAL") if "loglevel" in _config_keys() else pocketsphinx.Config()
    lm = pocketsphinx.NGramModel(config, pocketsphinx.LogMath(), os.fspath(lm_path))
    logp = {w: lm.prob([w]) for w in pron}
    oov = min(logp.values())  # the LM's "unknown word" floor
    ranked = sorted((w for w in pron if logp[w] > oov and w not in alternates),
                    key=lambda w: (-logp[w], w))
    return Lexicon(words=tuple(ranked), pron=pron)


def _config_keys() -> set[str]:
    import pocketsphinx

    try:
        return {a.name for a in pocketsphinx.Config().describe()}
    except Exception:  # noqa: BLE001 - older/newer bindings without describe(); loglevel is cosmetic
        return set()


def _looks_like_noun(word: str, closed: set[str], frequent: set[str]) -> bool:
    """A cheap part-of-speech guess for a dictionary word, without a tagger.

    Refuses function words and our verbs/adjectives, adverb/participle/adjective endings, plurals
    and third persons (``hats``: ``hat`` is a word), and words whose past tense is a frequent word
    (``regulate``/``regulated``: probably a verb).
    """
    if not 3 <= len(word) <= 10 or word in closed or word in _BLOCKED:
        return False
    if word.endswith(_NOUN_SUFFIXES_EXCLUDED):
        return False
    if word.endswith("s") and not word.endswith("ss") and (word[:-1] in frequent
                                                          or word[:-2] in frequent):
        return False
    past = word + "d" if word.endswith("e") else word + "ed"
    return past not in frequent


@functools.lru_cache(maxsize=1)
def _noun_pool() -> tuple[tuple[str, ...], np.ndarray]:
    """Nouns (frequency slice of the dictionary + rare-phone words) and their sampling weights."""
    lex = load_lexicon()
    closed = set(DETERMINERS + SUBJECT_PRONOUNS + OBJECT_PRONOUNS + PREPOSITIONS + AUXILIARIES
                 + CONJUNCTIONS + WH_WORDS + ADVERBS + INTERJECTIONS + ONES + TENS + ADJECTIVES)
    closed |= {v for pair in VERBS for v in pair}
    lo, hi = _NOUN_RANK_RANGE
    frequent = set(lex.words[:_VERB_RANK_LIMIT])
    nouns = [w for w in lex.words[lo:hi] if _looks_like_noun(w, closed, frequent)]
    nouns += [w for w in RARE_PHONE_NOUNS if w in lex.pron and w not in nouns]
    weights = []
    for w in nouns:
        ph = set(lex.pron[w])
        weights.append(1.0 + 1.0 * bool(ph & _LABIAL) + 0.5 * bool(ph & _OPEN_VOWEL))
    weights = np.asarray(weights)
    return tuple(nouns), weights / weights.sum()


# ---- numbers ------------------------------------------------------------------------------------
def number_words(n: int) -> str:
    """Spell out ``0 <= n < 1_000_000`` in words ("three hundred and forty two")."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words: expected 0 <= n < 1000000, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    head = number_words(n // 1000) + " thousand"
    if rest == 0:
        return head
    return head + (" and " if rest < 100 else " ") + number_words(rest)


# ---- held-out split -----------------------------------------------------------------------------
def normalize_sentence(text: str) -> str:
    """Lower-case letters and single spaces only: the form sentences are compared and hashed in."""
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


def sentence_id(text: str) -> str:
    """A stable 16-hex-digit id of the normalised sentence (BLAKE2b), the same in every process."""
    return hashlib.blake2b(normalize_sentence(text).encode("utf-8"), digest_size=8).hexdigest()


def sentence_split(text: str, holdout: dict[str, float] | None = None) -> str:
    """The split (``train``/``val``/``test``) a sentence belongs to, from its hash alone.

    ``holdout`` gives the val and test fractions of the hash space (default 5 % each); a sentence
    is in exactly one split whatever corpus or seed it is drawn for, so held-out sentences never
    reach train.
    """
    holdout = DEFAULT_HOLDOUT if holdout is None else holdout
    _check_holdout(holdout)
    u = int(sentence_id(text), 16) / 16**16  # uniform in [0, 1)
    val, test = holdout.get("val", 0.0), holdout.get("test", 0.0)
    if u < val:
        return "val"
    if u < val + test:
        return "test"
    return "train"


def _check_holdout(holdout: dict[str, float]) -> None:
    bad = set(holdout) - {"val", "test"}
    if bad:
        raise ValueError(f"holdout: unknown split(s) {sorted(bad)}; valid: val, test")
    if any(v < 0 for v in holdout.values()) or sum(holdout.values()) >= 1:
        raise ValueError(f"holdout fractions must be >= 0 and sum to < 1, got {holdout}")


# ---- the generator ------------------------------------------------------------------------------
def _third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class SentenceGenerator:
    """Deterministic random sentences: ``SentenceGenerator(seed).sentence(4, 14)``.

    The same seed gives the same sequence of sentences (given the same installed pocketsphinx
    model files). Sentence length is counted in words, spelled-out numbers included.
    """

    def __init__(self, seed: int | np.random.SeedSequence = 0,
                 holdout: dict[str, float] | None = None):
        self.rng = np.random.default_rng(seed)
        self.holdout = dict(DEFAULT_HOLDOUT if holdout is None else holdout)
        _check_holdout(self.holdout)
        self.nouns, self.noun_p = _noun_pool()
        self._templates = (
            (self._statement, 4.0), (self._question, 2.0), (self._request, 1.5),
            (self._list, 1.0), (self._numbers, 1.0), (self._exclamation, 0.5),
            (self._compound, 2.0), (self._pronoun_statement, 2.0),
        )
        w = np.array([t[1] for t in self._templates])
        self._template_p = w / w.sum()

    # -- slots --
    def _pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def _noun(self) -> str:
        return self.nouns[int(self.rng.choice(len(self.nouns), p=self.noun_p))]

    def _np(self) -> str:
        """A noun phrase: determiner, optional adjective, noun."""
        noun = self._noun()
        adj = self._pick(ADJECTIVES) if self.rng.random() < 0.45 else None
        det = self._pick(DETERMINERS)
        head = f"{adj} {noun}" if adj else noun
        if det == "a":
            det = _article(head)
        return f"{det} {head}"

    def _pp(self) -> str:
        return f"{self._pick(PREPOSITIONS)} {self._np()}"

    def _number(self) -> str:
        r = self.rng.random()
        n = int(self.rng.integers(2, 20)) if r < 0.4 else int(self.rng.integers(20, 100)) \
            if r < 0.75 else int(self.rng.integers(100, 10000))
        return number_words(n)

    # -- templates (each returns a list of words and the final punctuation) --
    def _statement(self):
        base, past = self._pick(VERBS)
        verb = past if self.rng.random() < 0.6 else _third_person(base)
        words = [self._np(), verb, self._np()]
        if self.rng.random() < 0.5:
            words.append(self._pp())
        if self.rng.random() < 0.3:
            words.append(self._pick(TIME_PHRASES))
        return words, "."

    def _pronoun_statement(self):
        base, _ = self._pick(VERBS)
        words = [self._pick(SUBJECT_PRONOUNS), self._pick(AUXILIARIES)]
        if self.rng.random() < 0.4:
            words.append(self._pick(ADVERBS))
        words += [base, self._pick(OBJECT_PRONOUNS) if self.rng.random() < 0.3 else self._np()]
        if self.rng.random() < 0.5:
            words.append(self._pp())
        return words, "."

    def _question(self):
        base, _ = self._pick(VERBS)
        if self.rng.random() < 0.5:
            words = [self._pick(WH_WORDS), "did", self._np(), base, self._np()]
        else:
            words = [self._pick(AUXILIARIES), self._pick(SUBJECT_PRONOUNS), base, self._np()]
        if self.rng.random() < 0.4:
            words.append(self._pp())
        return words, "?"

    def _request(self):
        base, _ = self._pick(VERBS)
        words = ["please"] if self.rng.random() < 0.5 else []
        words += [base, self._np(), self._pp()]
        if self.rng.random() < 0.4:
            words.append(self._pick(TIME_PHRASES))
        return words, "."

    def _list(self):
        items = [self._np() for _ in range(int(self.rng.integers(3, 5)))]
        lead = self._pick(("we need", "they found", "she packed", "i saw", "you forgot",
                           "he bought"))
        return [lead, ", ".join(items[:-1]) + " and " + items[-1]], "."

    def _numbers(self):
        noun = self._noun()
        if self.rng.random() < 0.5:
            words = [self._pick(("there were", "we counted", "they sold", "i paid")),
                     self._number(), noun + ("" if noun.endswith("s") else "s")]
        else:
            words = ["the", noun, "costs", self._number(), "dollars"]
        if self.rng.random() < 0.4:
            words.append(self._pick(TIME_PHRASES))
        return words, "."

    def _exclamation(self):
        adj = self._pick(ADJECTIVES)
        return [self._pick(INTERJECTIONS) + ",", "what", _article(adj), adj, self._noun()], "!"

    def _compound(self):
        first, _ = self._statement()
        second, _ = self._pronoun_statement()
        return first + [self._pick(CONJUNCTIONS)] + second, "."

    # -- public --
    def sentence(self, min_words: int = 4, max_words: int = 14, *, split: str | None = None) -> str:
        """One sentence of ``min_words`` to ``max_words`` words, capitalised and punctuated.

        With ``split`` ("train", "val" or "test") the sentence is drawn until
        :func:`sentence_split` puts it in that split, so held-out sentences stay held out.
        """
        if min_words < 1 or max_words < min_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        for _ in range(100_000):
            text = self._draw(min_words, max_words)
            if split is None or sentence_split(text, self.holdout) == split:
                return text
        raise TextError(f"no {split} sentence of {min_words}-{max_words} words after 100000 draws; "
                        f"is the {split} holdout fraction zero?")

    def _draw(self, min_words: int, max_words: int) -> str:
        for _ in range(1000):
            k = int(self.rng.choice(len(self._templates), p=self._template_p))
            parts, end = self._templates[k][0]()
            text = " ".join(parts)
            n = len(text.replace(",", " ").split())
            if min_words <= n <= max_words:
                return text[0].upper() + text[1:] + end
        # the templates cannot fit this range: trim or pad a statement
        words = " ".join(self._statement()[0]).split()
        while len(words) < min_words:
            words += self._np().split()
        words = words[:max_words]
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."

    def sentences(self, n: int, min_words: int = 4, max_words: int = 14) -> list[str]:
        """``n`` sentences (any split)."""
        return [self.sentence(min_words, max_words) for _ in range(n)]


def sentence_phones(text: str) -> list[str]:
    """ARPAbet phones of a sentence by dictionary lookup (words the dictionary lacks are skipped).

    Used to measure phonetic coverage; the speech itself gets its phones from the TTS engine.
    """
    pron = load_lexicon().pron
    out: list[str] = []
    for word in normalize_sentence(text).split():
        out.extend(pron.get(word, ()))
    return out
