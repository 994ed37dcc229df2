"""Slots: which ``information_required`` items each scripted assistant turn asks for, derived
from the reference caller's next line (:func:`hydralab.script.slots_in`, :func:`add_slots`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hydralab.records import list_records, load_record
from hydralab.script import (
    AssistantSteps,
    CallTools,
    Script,
    Speak,
    ToolCall,
    add_slots,
    script_from_lines,
    script_from_record,
    slots_in,
)

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
HAVE_EVA = (EVA_DIR / "data").is_dir()
DOMAINS = ("airline", "itsm", "medical_hr")
needs_eva = pytest.mark.skipif(not HAVE_EVA, reason="shared EVA data not present")

INFO: dict[str, Any] = {
    "Passenger first name": "Samantha",
    "Passenger last name": "Rodriguez",
    "Booking confirmation number": "ZK3FFW",
    "Desired new departure date": "2026-03-25",
    "Maximum total rebooking cost": "$120",
    "seat_preference": {"first_choice": "window", "second_choice": "aisle"},
    "original_travel_details": [{"origin": "AUS", "destination": "LAX", "status": None}],
}


# ---------------------------------------------------------------- matching a line


@pytest.mark.parametrize(
    ("line", "info", "expected"),
    [
        # written and spoken codes, case-insensitive
        (
            "ZK3FFW. Last name Rodriguez.",
            INFO,
            ("Passenger last name", "Booking confirmation number"),
        ),
        ("z k three f f w", INFO, ("Booking confirmation number",)),
        ("It's rodriguez.", INFO, ("Passenger last name",)),
        # dates: written, spoken, month and day only
        ("Move it to March 25.", INFO, ("Desired new departure date",)),
        ("March twenty-fifth, twenty twenty-six", INFO, ("Desired new departure date",)),
        ("two zero two six, zero three, two five", INFO, ("Desired new departure date",)),
        ("twenty twenty six dash zero three dash two five", INFO, ("Desired new departure date",)),
        # money, nested values (a dict's leaves, a list of dicts' leaves; nulls ignored)
        ("Keep it under one hundred twenty dollars.", INFO, ("Maximum total rebooking cost",)),
        ("A window seat, please.", INFO, ("seat_preference",)),
        ("I fly out of AUS.", INFO, ("original_travel_details",)),
        # nothing to find
        ("Yes, that's correct.", INFO, ()),
        ("", INFO, ()),
    ],
)
def test_slots_in_finds_values_in_any_form(
    line: str, info: dict[str, Any], expected: tuple[str, ...]
) -> None:
    assert slots_in(line, info) == expected


def test_slots_in_codes_dashes_phones_emails_and_enums() -> None:
    info = {
        "employee_id": "EMP048271",
        "phone_last_four": "7294",
        "facility_code": "KAFN-13R",
        "phone_number": "+1-802-555-5457",
        "email_address": "michelle.baker@gmail.com",
        "document_type_code": "US_PASSPORT",
        "access_level": "read_only",
        "extension_days": 60,
        "flag": True,
    }
    assert slots_in(
        "My employee ID is E M P zero four eight two seven one. The last four are seven two"
        " nine four.",
        info,
    ) == ("employee_id", "phone_last_four")
    assert slots_in("It's K A F N dash one three R.", info) == ("facility_code",)
    assert slots_in("K A F N one three R", info) == ("facility_code",)
    assert slots_in("eight zero two, five five five, five four five seven", info) == (
        "phone_number",
    )
    assert slots_in("michelle dot baker at gmail dot com", info) == ("email_address",)
    assert slots_in("U.S. passport.", info) == ("document_type_code",)
    assert slots_in("Read only, please.", info) == ("access_level",)
    assert slots_in("Sixty days.", info) == ("extension_days",)
    assert slots_in("True.", info) == ()  # booleans carry no spoken value


def test_a_value_of_one_vague_word_never_matches() -> None:
    assert slots_in("I need one ticket.", {"passengers": 1, "count": "one"}) == ()
    assert slots_in("Two B.", {"seat": "2B"}) == ("seat",)  # two words: specific enough


# ---------------------------------------------------------------- questions and scripts


def test_question_picks_the_sentence_asking_for_the_slot() -> None:
    turn = AssistantSteps(
        (
            Speak("Thanks, I found it. Which seat do you want?"),
            CallTools((ToolCall("noop"),)),
            Speak("And what is your last name? Take your time."),
        )
    )
    assert turn.question("last_name") == "And what is your last name?"
    assert turn.question("seat_preference") == "Which seat do you want?"
    assert turn.question() == "And what is your last name?"  # a tie: the last question
    told = AssistantSteps((Speak("Hello.\n\nPlease give me your employee I D."),))
    assert told.question("employee_id") == "Please give me your employee I D."
    assert AssistantSteps((CallTools((ToolCall("noop"),)),)).question("x") == ""


def test_add_slots_reads_each_turns_next_line() -> None:
    info = {"confirmation_number": "ZK3FFW", "last_name": "Rodriguez", "date": "2026-03-25"}
    script = script_from_lines(
        "Hi!",
        ["Change my flight to March 25, please.", "ZK3FFW, Rodriguez.", "Thanks, bye."],
        [
            [Speak("Sure. Your confirmation number and last name?")],
            [Speak("Done. Anything else?")],
            [Speak("Goodbye.")],
        ],
        information=info,
    )
    assert script.information == info
    # the greeting asks nothing (the first line volunteered the date); no line follows the last
    assert [t.asks for t in script.assistant_turns] == [
        (),
        ("confirmation_number", "last_name"),
        (),
        (),
    ]
    assert script.asks(1) == ("confirmation_number", "last_name")
    assert script.asked_by("last_name") == 1 and script.asked_by("date") is None
    assert script.expected(["last_name", "nope"]) == {"last_name": "Rodriguez"}
    # without information nothing is asked, and add_slots is the same derivation
    plain = script_from_lines("Hi!", ["a", "b"], [[Speak("x")], [Speak("y")]])
    assert plain.information == {} and all(not t.asks for t in plain.assistant_turns)
    bare = Script(
        greeting=script.greeting,
        user_turns=script.user_turns,
        assistant_turns=tuple(AssistantSteps(t.steps) for t in script.assistant_turns),
    )
    assert add_slots(bare, info) == script


# ---------------------------------------------------------------- the shared EVA records


def _records() -> list[tuple[str, str]]:
    if not HAVE_EVA:
        return []
    return [(d, rid) for d in DOMAINS for rid in list_records(EVA_DIR, domain=d)]


@needs_eva
def test_every_shared_record_gets_slots_from_its_data() -> None:
    counts: dict[str, list[int]] = {}
    for domain, rid in _records():
        record = load_record(rid, data_dir=EVA_DIR, domain=domain)
        script = script_from_record(record)
        info = record.user_goal["information_required"]
        assert script.information == info
        turns = script.assistant_turns
        assert not turns[0].asks and not turns[-1].asks
        for k in range(1, len(script.user_turns)):
            assert set(turns[k].asks) <= set(info)
            assert turns[k].asks == slots_in(script.user_turns[k].text, info)
        asking = sum(1 for k in range(1, len(script.user_turns)) if turns[k].asks)
        total, with_slots = counts.setdefault(domain, [0, 0])
        counts[domain] = [total + len(script.user_turns) - 1, with_slots + asking]
    print({d: f"{n}/{total} turns ask for >= 1 slot" for d, (total, n) in counts.items()})
    assert set(counts) == set(DOMAINS)
    for domain, (total, n) in counts.items():
        assert n * 2 >= total, f"{domain}: only {n}/{total} turns have slots"


@needs_eva
def test_airline_112_asks_for_confirmation_number_and_last_name() -> None:
    script = script_from_record(load_record("1.1.2", data_dir=EVA_DIR, domain="airline"))
    assert script.asks(1) == ("Passenger last name", "Booking confirmation number")
    assert script.expected(script.asks(1)) == {
        "Passenger last name": "Rodriguez",
        "Booking confirmation number": "ZK3FFW",
    }
    assert script.assistant_turns[1].question("Booking confirmation number") == (
        "First, may I have your six-character confirmation number and the passenger’s last name?"
    )
    assert "Desired new departure date" in script.asks(2)
    assert script.asked_by("Passenger first name") is None  # never said by the caller


@needs_eva
@pytest.mark.parametrize(
    ("domain", "rid", "turn", "slots"),
    [
        ("itsm", "1", 1, ("employee_id", "phone_last_four")),
        ("itsm", "12", 4, ("delivery_building", "delivery_floor")),
        ("medical_hr", "10.1", 1, ("date_of_birth", "employee_id")),
        ("medical_hr", "1.1", 2, ("facility_code",)),
    ],
)
def test_other_domains_spot_checks(
    domain: str, rid: str, turn: int, slots: tuple[str, ...]
) -> None:
    script = script_from_record(load_record(rid, data_dir=EVA_DIR, domain=domain))
    assert script.asks(turn) == slots
