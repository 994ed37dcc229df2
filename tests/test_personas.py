"""Caller personas: names, hydralab's timing values, EVA text loaded at run time, samplers."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from hydralab.callers.personas import (
    BEHAVIORS_FILE,
    PERSONA_NAMES,
    PERSONAS,
    Persona,
    PersonaError,
    PersonaTiming,
    load_eva_behaviors,
    load_persona,
)

EVA_NAMES = ("default", "elderly_slow", "aggressive_impatient", "forgetful_disorganized")
FAKE_BEHAVIORS = """\
default:
  Fake default text for the test.
  It spans two lines.

elderly_slow: Fake slow text.
chatty_extra: A persona only this checkout knows.
"""


def _eva(tmp_path: Path, text: str = FAKE_BEHAVIORS) -> Path:
    path = tmp_path / BEHAVIORS_FILE
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return tmp_path


# ------------------------------------------------------------------------------- table
def test_every_eva_persona_has_timing() -> None:
    assert set(EVA_NAMES) <= set(PERSONA_NAMES)
    assert tuple(PERSONAS) == PERSONA_NAMES
    for name, p in PERSONAS.items():
        assert p.name == name and p.description and p.text is None
        assert "EVA" not in p.description  # hydralab's own words, not a pointer


def test_timing_values_follow_the_names() -> None:
    d, old, angry, lost = (PERSONAS[n] for n in EVA_NAMES)
    assert old.rate_wpm < lost.rate_wpm < d.rate_wpm < angry.rate_wpm
    assert old.think_ms[0] > d.think_ms[1] and angry.think_ms[1] <= d.think_ms[1]
    assert angry.barge_in_prob > d.barge_in_prob >= old.barge_in_prob == 0.0
    assert angry.barge_in_after_ms[1] < d.barge_in_after_ms[0]
    assert old.pause_prob > d.pause_prob and lost.pause_ms[1] > d.pause_ms[1]


@pytest.mark.parametrize(
    "change",
    [
        {"think_ms": (500.0, 100.0)},
        {"think_ms": (-1.0, 100.0)},
        {"pause_ms": (0.0, float("inf"))},
        {"barge_in_after_ms": (0.0, 100.0)},
        {"rate_wpm": 0},
        {"barge_in_prob": 1.5},
        {"pause_prob": -0.1},
        {"long_turn_ms": -1.0},
        {"name": ""},
    ],
)
def test_persona_validates(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(PERSONAS["default"], **change)  # type: ignore[arg-type]


def test_describe_is_json_safe() -> None:
    import json

    d = PERSONAS["elderly_slow"].describe()
    assert json.loads(json.dumps(d)) == d
    assert d["name"] == "elderly_slow" and d["text_source"] is None


# ------------------------------------------------------------------------------- loading
def test_load_persona_without_eva() -> None:
    assert load_persona() is PERSONAS["default"]
    assert load_persona("elderly_slow").prompt_text == PERSONAS["elderly_slow"].description


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(ValueError, match="unknown persona 'grumpy'") as err:
        load_persona("grumpy")
    for name in EVA_NAMES:
        assert name in str(err.value)


def test_eva_text_is_loaded_at_run_time(tmp_path: Path) -> None:
    eva = _eva(tmp_path)
    p = load_persona("default", eva_dir=eva)
    assert p.text == "Fake default text for the test. It spans two lines."
    assert p.prompt_text == p.text and p.source == eva / BEHAVIORS_FILE
    assert p.rate_wpm == PERSONAS["default"].rate_wpm  # timing stays hydralab's
    assert p.describe()["text_source"] == str(eva / BEHAVIORS_FILE)
    assert load_persona("elderly_slow", eva_dir=eva).text == "Fake slow text."
    # a persona the checkout lacks keeps hydralab's description
    assert load_persona("aggressive_impatient", eva_dir=eva).text is None


def test_name_only_in_the_checkout_gets_default_timing(tmp_path: Path) -> None:
    eva = _eva(tmp_path)
    p = load_persona("chatty_extra", eva_dir=eva)
    assert p.text == "A persona only this checkout knows."
    assert p.think_ms == PERSONAS["default"].think_ms
    with pytest.raises(PersonaError, match="chatty_extra"):
        load_persona("nope", eva_dir=eva)  # the listing includes the checkout's names


def test_checkout_without_the_file(tmp_path: Path) -> None:
    assert load_eva_behaviors(tmp_path) is None
    assert load_persona("default", eva_dir=tmp_path).text is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("default: [unclosed\n  - x: {", "malformed YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("default:\n  inner: mapping\n", "must map to a non-empty text"),
        ("default: ''\n", "must map to a non-empty text"),
    ],
)
def test_malformed_behaviors_file(tmp_path: Path, text: str, match: str) -> None:
    eva = _eva(tmp_path, text)
    with pytest.raises(PersonaError, match=match) as err:
        load_persona("default", eva_dir=eva)
    assert str(eva / BEHAVIORS_FILE) in str(err.value)


# ------------------------------------------------------------------------------- sampling
def test_think_time_is_seeded_and_in_range() -> None:
    t = PERSONAS["forgetful_disorganized"].timing
    a = [t.sample_think_ms(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(1)
    draws = [t.sample_think_ms(rng) for _ in range(200)]
    lo, hi = PERSONAS["forgetful_disorganized"].think_ms
    assert all(lo <= x <= hi for x in draws) and len(set(draws)) > 100


def test_barge_in() -> None:
    always = PersonaTiming(dataclasses.replace(PERSONAS["aggressive_impatient"], barge_in_prob=1.0))
    never = PersonaTiming(dataclasses.replace(PERSONAS["aggressive_impatient"], barge_in_prob=0.0))
    lo, hi = always.persona.barge_in_after_ms
    rng = random.Random(3)
    for _ in range(100):
        at = always.should_barge_in(rng, 10000.0)
        assert at is not None and lo <= at <= hi
        assert never.should_barge_in(rng, 10000.0) is None
    assert always.should_barge_in(rng, always.persona.long_turn_ms - 1) is None  # short turn
    # a turn barely long enough: the barge-in lands before it ends
    est = always.persona.long_turn_ms
    at = always.should_barge_in(random.Random(0), est)
    assert at is not None and 0 < at <= 0.8 * est


def test_barge_in_always_draws_twice() -> None:
    t = PERSONAS["default"].timing
    a, b = random.Random(5), random.Random(5)
    t.should_barge_in(a, 100.0)  # short: no barge-in
    t.should_barge_in(b, 60000.0)
    assert a.random() == b.random()


def test_barge_in_rate_matches_probability() -> None:
    t = PERSONAS["aggressive_impatient"].timing
    rng = random.Random(11)
    hits = sum(t.should_barge_in(rng, 20000.0) is not None for _ in range(2000))
    assert abs(hits / 2000 - PERSONAS["aggressive_impatient"].barge_in_prob) < 0.05


def test_pause_split() -> None:
    always = PersonaTiming(dataclasses.replace(PERSONAS["elderly_slow"], pause_prob=1.0))
    never = PersonaTiming(dataclasses.replace(PERSONAS["elderly_slow"], pause_prob=0.0))
    line = "My confirmation code is  Z K three F F W and my last name is Rodriguez"
    rng = random.Random(2)
    for _ in range(50):
        parts = always.pause_split(line, rng)
        assert parts is not None and len(parts) == 2 and all(parts)
        assert " ".join(parts) == " ".join(line.split())
    assert never.pause_split(line, rng) is None
    assert always.pause_split("Yes please.", rng) is None  # too short
    commas = "Well, I think so, yes, that is the one I want"
    for seed in range(20):
        parts = always.pause_split(commas, random.Random(seed))
        assert parts is not None and parts[0].endswith(",")
    assert always.pause_split(line, random.Random(9)) == always.pause_split(line, random.Random(9))
    lo, hi = always.persona.pause_ms
    assert lo <= always.sample_pause_ms(random.Random(0)) <= hi


def test_speech_ms_follows_rate() -> None:
    text = " ".join(["word"] * 30)
    assert PERSONAS["elderly_slow"].timing.speech_ms(text) == pytest.approx(15000.0)
    assert PERSONAS["aggressive_impatient"].timing.speech_ms(text) < 10000.0


def test_persona_is_frozen() -> None:
    p: Persona = PERSONAS["default"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.rate_wpm = 100  # type: ignore[misc]
