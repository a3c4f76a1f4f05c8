"""Sentence generator: determinism, phonetic coverage, held-out sentences."""

from __future__ import annotations

import collections

import pytest

from thunder3d.audio.phones import BILABIAL, OPEN_VOWELS, PHONES, SIL
from thunder3d.data.text import (
    SentenceGenerator,
    normalize_sentence,
    number_words,
    sentence_id,
    sentence_phones,
    sentence_split,
)


@pytest.fixture(scope="module")
def thousand() -> list[str]:
    return SentenceGenerator(11).sentences(1000)


def test_same_seed_same_sentences():
    a, b = SentenceGenerator(3), SentenceGenerator(3)
    assert [a.sentence() for _ in range(50)] == [b.sentence() for _ in range(50)]
    assert SentenceGenerator(4).sentences(20) != SentenceGenerator(3).sentences(20)


def test_sentences_are_words_of_the_dictionary(thousand):
    for s in thousand[:200]:
        assert s[0].isupper() and s[-1] in ".?!"
        words = normalize_sentence(s).split()
        assert 3 <= len(words) <= 14, s
        # every word is pronounceable by the dictionary ("an" and a few closed-class words too)
        assert len(sentence_phones(s)) >= 2 * len(words) - 2, s
    assert len(set(thousand)) > 990  # varied


def test_length_bounds():
    g = SentenceGenerator(0)
    for lo, hi in ((4, 6), (8, 12), (12, 14)):
        for _ in range(20):
            n = len(g.sentence(lo, hi).replace(",", " ").split())
            assert lo <= n <= hi


def test_phone_coverage(thousand):
    counts = collections.Counter(p for s in thousand for p in sentence_phones(s))
    total = sum(counts.values())
    missing = set(PHONES) - {SIL} - set(counts)
    assert not missing, f"phones never generated: {missing}"
    bilabial = sum(counts[p] for p in BILABIAL) / total
    open_vowels = sum(counts[p] for p in OPEN_VOWELS) / total
    assert bilabial > 0.07, bilabial  # P B M: lip closures are what lip-sync is judged on
    assert open_vowels > 0.08, open_vowels


def test_held_out_sentences():
    g = SentenceGenerator(5)
    for split in ("val", "test", "train"):
        for _ in range(10):
            assert sentence_split(g.sentence(split=split)) == split
    train = {sentence_id(s) for s in SentenceGenerator(6).sentences(300)
             if sentence_split(s) == "train"}
    held = {sentence_id(g.sentence(split=s)) for s in ("val", "test") for _ in range(30)}
    assert not train & held
    # the split is a function of the text only
    assert sentence_split("The big map.") == sentence_split("the  BIG map")
    assert sentence_id("The big map.") == sentence_id("the big map")


def test_holdout_fractions_roughly_respected(thousand):
    c = collections.Counter(sentence_split(s) for s in thousand)
    assert 20 < c["val"] < 90 and 20 < c["test"] < 90


def test_number_words():
    assert number_words(0) == "zero"
    assert number_words(42) == "forty two"
    assert number_words(305) == "three hundred and five"
    assert number_words(7010) == "seven thousand and ten"
    with pytest.raises(ValueError):
        number_words(-1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SentenceGenerator(0).sentence(split="dev")
    with pytest.raises(ValueError):
        SentenceGenerator(0).sentence(5, 3)
    with pytest.raises(ValueError, match="holdout"):
        SentenceGenerator(0, holdout={"dev": 0.1})
