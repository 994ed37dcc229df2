"""Tests for hydralab.speech.text: spoken-form rules, WER normalization and WER."""

from __future__ import annotations

import pytest

from hydralab.speech.text import (
    cardinal,
    normalize_for_wer,
    ordinal,
    spell,
    spoken_form,
    wer,
    year_words,
)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (25, "twenty-five"),
        (100, "one hundred"),
        (115, "one hundred fifteen"),
        (120, "one hundred twenty"),
        (1200, "one thousand two hundred"),
        (40000, "forty thousand"),
        (1_234_567, "one million two hundred thirty-four thousand five hundred sixty-seven"),
        (-3, "minus three"),
    ],
)
def test_cardinal(n: int, words: str) -> None:
    assert cardinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (5, "fifth"),
        (8, "eighth"),
        (9, "ninth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty-first"),
        (25, "twenty-fifth"),
        (30, "thirtieth"),
        (101, "one hundred first"),
    ],
)
def test_ordinal(n: int, words: str) -> None:
    assert ordinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (2026, "twenty twenty-six"),
        (2010, "twenty ten"),
        (2005, "two thousand five"),
        (2000, "two thousand"),
        (1999, "nineteen ninety-nine"),
        (1905, "nineteen oh five"),
        (1900, "nineteen hundred"),
    ],
)
def test_year_words(n: int, words: str) -> None:
    assert year_words(n) == words


def test_spell() -> None:
    assert spell("ZK3FFW") == "Z K three F F W"
    assert spell("sk703") == "S K seven zero three"


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        # codes: letters + digits, spelled char by char, digits as words
        ("My code is ZK3FFW.", "My code is Z K three F F W."),
        ("Flight SK703 is late", "Flight S K seven zero three is late"),
        ("seat 2B", "seat two B"),
        # all-caps tokens spelled, with exceptions
        ("from AUS to BOS", "from A U S to B O S"),
        ("OK, my PIN", "okay, my pin"),
        ("I", "I"),
        # money
        ("It costs $120.", "It costs one hundred twenty dollars."),
        ("$115.50", "one hundred fifteen dollars and fifty cents"),
        ("$1", "one dollar"),
        ("$0.50", "fifty cents"),
        ("$1,250.05", "one thousand two hundred fifty dollars and five cents"),
        # times
        ("at 4:00 PM", "at four P M"),
        ("at 9:25 AM", "at nine twenty-five A M"),
        ("at 9:05", "at nine oh five"),
        ("at 4:00", "at four o'clock"),
        ("at 16:00", "at sixteen hundred"),
        ("at 4pm", "at four P M"),
        ("at 9 a.m. today", "at nine A M. today"),
        # dates and ordinals
        ("on 2026-03-25", "on March twenty-fifth, twenty twenty-six"),
        ("on March 25", "on March twenty-fifth"),
        ("on March 25th, 2026", "on March twenty-fifth, twenty twenty-six"),
        ("on Mar 3", "on March third"),
        ("on 3/25/2026", "on March twenty-fifth, twenty twenty-six"),
        ("on 25 March", "on the twenty-fifth of March"),
        ("the 25th", "the twenty-fifth"),
        ("the 3rd", "the third"),
        # numbers
        ("3 bags", "three bags"),
        ("1,200 miles", "one thousand two hundred miles"),
        ("3.5 hours", "three point five hours"),
        ("15% off", "fifteen percent off"),
        ("ticket 0161234", "ticket zero one six one two three four"),
        ("call 555-123-4567", "call five five five, one two three, four five six seven"),
        ("room #5 & more", "room number five and more"),
        ("Price 120.", "Price one hundred twenty."),
    ],
)
def test_spoken_form(written: str, spoken: str) -> None:
    assert spoken_form(written) == spoken


def test_spoken_form_keeps_shouted_text_as_words() -> None:
    assert spoken_form("I AM VERY ANGRY ABOUT THIS") == "I AM VERY ANGRY ABOUT THIS"
    assert spoken_form("I DON'T know") == "I DON'T know"


def test_spoken_form_plain_text_unchanged() -> None:
    text = "Hi, I'd like to change my flight to Boston, please."
    assert spoken_form(text) == text


def test_normalize_for_wer() -> None:
    assert normalize_for_wer("OK, at 9:25 AM on March 25th - ZK3FFW!") == [
        "okay",
        "at",
        "nine",
        "twenty",
        "five",
        "a",
        "m",
        "on",
        "march",
        "twenty",
        "fifth",
        "z",
        "k",
        "three",
        "f",
        "f",
        "w",
    ]
    assert normalize_for_wer("  That's   right.  ") == ["that's", "right"]
    assert normalize_for_wer("lookup_booking") == ["lookup", "booking"]
    assert normalize_for_wer("") == []


def test_wer() -> None:
    assert wer("my code is ZK3FFW", "my code is z k three f f w") == 0.0
    assert wer("a b c", "a x c d") == pytest.approx(2 / 3)  # one substitution, one insertion
    assert wer("a b c", "") == 1.0
    assert wer("one two", "1 2") == 0.0
    assert wer("", "") == 0.0
    assert wer("", "hello") == 1.0
    assert wer("Hello, World!", "hello world") == 0.0
