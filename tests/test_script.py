"""Script derivation from reference traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hydralab.records import list_records, load_record
from hydralab.script import (
    AssistantTurn,
    CallTools,
    Script,
    Speak,
    ToolCall,
    UserTurn,
    script_from_record,
    script_from_trace,
)

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
needs_eva = pytest.mark.skipif(
    not (EVA_DIR / "data").is_dir(), reason="shared EVA data not present"
)


def _u(text: str) -> dict[str, Any]:
    return {"event_type": "user_utterance", "utterance": text}


def _a(text: str) -> dict[str, Any]:
    return {"event_type": "agent_utterance", "utterance": text}


def _call(name: str, **params: Any) -> dict[str, Any]:
    return {"event_type": "tool_call", "tool_name": name, "params": params}


def _resp(name: str) -> dict[str, Any]:
    return {
        "event_type": "tool_response",
        "tool_name": name,
        "status": "success",
        "response": {"status": "success"},
    }


def _shape(script: Script) -> list[list[Any]]:
    out: list[list[Any]] = []
    for turn in script.assistant_turns:
        out.append(
            [s.text if isinstance(s, Speak) else [c.name for c in s.calls] for s in turn.steps]
        )
    return out


def test_default_record_script() -> None:
    record = load_record()
    script = script_from_record(record)
    assert script.record_id == "HL-AIR-001" and script.end_reason == "goodbye"
    assert script.greeting == record.greeting
    assert len(script.user_turns) == 4 and len(script.assistant_turns) == 5
    assert script.assistant_turns[0] == AssistantTurn((Speak(record.greeting),))
    assert _shape(script)[1:] == [
        ["Happy to help. May I have your confirmation number and last name?"],
        [
            "Thanks, one moment while I pull that up.",
            ["get_reservation", "search_rebooking_options"],
            "I have a ten fifteen AM nonstop on May twelfth for one hundred forty dollars total, "
            "change fee included. Shall I book it?",
        ],
        [
            ["rebook_flight"],
            "Done, you're on flight four thirty. Would you like a window, aisle, or middle seat?",
        ],
        [
            ["assign_seat"],
            "You're in window seat twenty-one A, leaving May twelfth at ten fifteen AM. "
            "Have a great trip!",
        ],
    ]
    assert script.tool_calls[0] == ToolCall(
        "get_reservation", {"confirmation_number": "HT4KWB", "last_name": "brooks"}
    )
    assert [c.name for c in script.tool_calls] == list(record.tool_names)
    second = script.user_turns[1]
    assert second.text == "It's HT4KWB, last name Brooks."
    assert "H T four K W B" in second.spoken and "Brooks" in second.spoken
    turn = script.assistant_turns[2]
    assert turn.text.startswith("Thanks, one moment") and turn.text.endswith("Shall I book it?")
    assert [c.name for c in turn.tool_calls] == ["get_reservation", "search_rebooking_options"]


@pytest.mark.parametrize("record_id", list_records())
def test_turn_invariants(record_id: str) -> None:
    script = script_from_record(load_record(record_id))
    assert len(script.assistant_turns) == len(script.user_turns) + 1
    for turn in script.assistant_turns[1:]:
        assert turn.steps and isinstance(turn.steps[-1], Speak)  # every answer ends by speaking
        for a, b in zip(turn.steps, turn.steps[1:], strict=False):
            assert not (isinstance(a, CallTools) and isinstance(b, CallTools))
    for user in script.user_turns:
        assert user.spoken and user.text


def test_grouping_rules() -> None:
    trace = [
        _a(
            "Hi, how can I help you today?"
        ),  # greeting in the trace: replaced by the record greeting
        _u("Hello."),
        _u("I have two questions."),  # consecutive user lines merge
        _call("a", x=1),
        _resp("a"),
        _call("b"),
        _resp("b"),
        _a("First answer."),
        _a("Second answer."),
        _call("c"),
        _resp("c"),
        _a("After c."),
        _u("Thanks."),
        _call("d"),  # trailing calls without a final line still form a step
        _u("Bye."),  # trailing user line: empty answer
    ]
    script = script_from_trace(trace, greeting="Welcome!", record_id="t")
    assert script.user_turns == (
        UserTurn("Hello. I have two questions.", "Hello. I have two questions."),
        UserTurn("Thanks.", "Thanks."),
        UserTurn("Bye.", "Bye."),
    )
    assert script.assistant_turns == (
        AssistantTurn((Speak("Welcome!"),)),
        AssistantTurn(
            (
                CallTools((ToolCall("a", {"x": 1}), ToolCall("b", {}))),
                Speak("First answer."),
                Speak("Second answer."),
                CallTools((ToolCall("c", {}),)),
                Speak("After c."),
            )
        ),
        AssistantTurn((CallTools((ToolCall("d", {}),)),)),
        AssistantTurn(()),
    )
    assert script.assistant_turns[3].text == ""


def test_empty_trace() -> None:
    script = script_from_trace([], greeting="Hi")
    assert script.user_turns == () and script.assistant_turns == (AssistantTurn((Speak("Hi"),)),)


@needs_eva
def test_eva_1_1_2_script() -> None:
    record = load_record("1.1.2", data_dir=EVA_DIR)
    script = script_from_record(record)
    assert script.greeting == "Hello! How can I help you today?"
    assert len(script.user_turns) == 4
    shape = _shape(script)
    assert shape[2][0] == ["get_reservation"] and isinstance(shape[2][1], str)
    assert shape[3][0] == ["search_rebooking_options"] and isinstance(shape[3][1], str)
    assert shape[4][0] == ["rebook_flight", "assign_seat"] and isinstance(shape[4][1], str)
    assert script.tool_calls[0].arguments == {
        "confirmation_number": "ZK3FFW",
        "last_name": "rodriguez",
    }
    assert script.user_turns[1].text == "ZK3FFW. Last name Rodriguez."
    assert "Z K three F F W" in script.user_turns[1].spoken


@needs_eva
def test_eva_transfer_end_reason() -> None:
    script = script_from_record(load_record("7.2.8", data_dir=EVA_DIR))
    assert script.end_reason == "transfer"
    assert script.tool_calls[-1].name == "transfer_to_agent"
