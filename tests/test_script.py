"""Script derivation from reference traces."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hydralab.records import list_records, load_record
from hydralab.script import (
    NEUTRAL_LINE,
    AssistantSteps,
    CallTools,
    Script,
    Speak,
    ToolCall,
    TraceError,
    UserTurn,
    clean_trace,
    find_raw_tool_calls,
    raw_call_arguments,
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
    assert script.assistant_turns[0] == AssistantSteps((Speak(record.greeting),))
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
    assert [c.name for c in turn.tool_calls] == [
        "get_reservation",
        "search_rebooking_options",
    ]


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
        _call("d"),  # calls without a line still form a step; the caller waits: neutral line
        _u("Bye."),  # trailing user line: empty answer
    ]
    script = script_from_trace(trace, greeting="Welcome!", record_id="t")
    assert script.user_turns == (
        UserTurn("Hello. I have two questions.", "Hello. I have two questions."),
        UserTurn("Thanks.", "Thanks."),
        UserTurn("Bye.", "Bye."),
    )
    assert script.assistant_turns == (
        AssistantSteps((Speak("Welcome!"),)),
        AssistantSteps(
            (
                CallTools((ToolCall("a", {"x": 1}), ToolCall("b", {}))),
                Speak("First answer."),
                Speak("Second answer."),
                CallTools((ToolCall("c", {}),)),
                Speak("After c."),
            )
        ),
        AssistantSteps((CallTools((ToolCall("d", {}),)), Speak(NEUTRAL_LINE))),
        AssistantSteps(()),
    )
    assert script.assistant_turns[3].text == ""
    assert script.notes == (f"answer 3 (to user line 3) said nothing: added {NEUTRAL_LINE!r}",)


def test_empty_trace() -> None:
    script = script_from_trace([], greeting="Hi")
    assert script.user_turns == () and script.assistant_turns == (AssistantSteps((Speak("Hi"),)),)


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


# --- raw tool-call text in agent lines -------------------------------------------------------

TOOLS = ("get_reservation", "search_rebooking_options")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (
            'get_reservation(confirmation_number="ZK3FFW", last_name="rodriguez")',
            "get_reservation",
        ),
        (
            "get_reservation (ZK3FFW)",
            "get_reservation",
        ),  # a declared tool, even with a space
        (
            "lookup_booking(code='ZK3FFW')",
            "lookup_booking",
        ),  # snake_case with arguments
        (
            '{"name": "get_reservation", "arguments": {"confirmation_number": "ZK3FFW"}}',
            "get_reservation",
        ),
        (
            '{"type": "function", "function": {"name": "get_reservation"}}',
            "get_reservation",
        ),
        (
            '[{"tool_name": "search_rebooking_options", "params": {}}]',
            "search_rebooking_options",
        ),
        (
            'to=functions.search_rebooking_options json{"origin": "AUS"}',
            "search_rebooking_options",
        ),
        ("functions.get_reservation()", "get_reservation"),
        (
            '<tool_call>{"name": "get_reservation", "arguments": {}}</tool_call>',
            "get_reservation",
        ),
        ("<function=get_reservation>{}</function>", "get_reservation"),
        ('{"confirmation_number": "ZK3FFW"}', None),  # a bare payload: no tool name
    ],
)
def test_find_raw_tool_calls(text: str, name: str | None) -> None:
    line = f"One moment. {text} Thanks for waiting."
    spans = find_raw_tool_calls(line, tool_names=TOOLS)
    assert len(spans) == 1, spans
    start, end, found = spans[0]
    assert found == name
    assert line[start:end] == text


@pytest.mark.parametrize(
    "text",
    [
        "Your fare class is main_cabin (economy), and you keep seat 22A.",
        "I found it (flight SK621, leaving at eleven oh five).",
        "You're set: the refund is two hundred dollars.",
        "It's a non_refundable fare [basic economy].",
    ],
)
def test_plain_speech_is_not_a_tool_call(text: str) -> None:
    assert find_raw_tool_calls(text, tool_names=TOOLS) == []
    cleaned, notes = clean_trace([_u("Hi."), _a(text)], tool_names=TOOLS)
    assert cleaned == [_u("Hi."), _a(text)] and notes == []


def test_leaked_duplicate_call_is_removed_from_speech() -> None:
    raw = 'get_reservation(confirmation_number="ZK3FFW", last_name="rodriguez")'
    trace = [
        _u("ZK3FFW, Rodriguez."),
        _a(f"Let me pull that up. {raw}"),
        _call("get_reservation", confirmation_number="ZK3FFW", last_name="rodriguez"),
        _resp("get_reservation"),
        _a('{"name": "get_reservation", "arguments": {"confirmation_number": "ZK3FFW"}}'),
        _a("I found your booking."),
        _u("Thanks."),
        _a("Goodbye."),
    ]
    script = script_from_trace(trace, greeting="Hi!", tool_names=TOOLS)
    assert _shape(script)[1] == [
        "Let me pull that up.",
        ["get_reservation"],
        "I found your booking.",
    ]
    assert script.notes == (
        "trace[1]: removed raw tool-call text (get_reservation) from an agent line",
        "trace[4]: dropped an agent line that was a raw tool call (get_reservation)",
    )
    # the source trace is not modified
    assert trace[1]["utterance"].endswith(raw)
    # without cleaning, the raw text would be spoken
    raw_script = script_from_trace(trace, greeting="Hi!", clean=False)
    assert raw in raw_script.assistant_turns[1].text and raw_script.notes == ()


def test_raw_call_without_tool_call_event_becomes_a_call() -> None:
    trace = [
        _u("ZK3FFW, Rodriguez."),
        _a('One moment. functions.get_reservation({"confirmation_number": "ZK3FFW"}) Got it.'),
        _a("I found your booking."),
        _u("Thanks."),
        _call("get_reservation"),  # in another answer: does not count
        _a("Bye."),
    ]
    script = script_from_trace(trace, greeting="Hi!", tool_names=TOOLS)
    assert _shape(script)[1] == [
        "One moment.",
        ["get_reservation"],
        "Got it.",
        "I found your booking.",
    ]
    assert script.assistant_turns[1].tool_calls == (
        ToolCall("get_reservation", {"confirmation_number": "ZK3FFW"}),
    )
    assert script.notes == (
        "trace[1]: turned raw tool-call text into tool calls (get_reservation)",
    )


@pytest.mark.parametrize(
    ("raw", "arguments"),
    [
        (
            'get_reservation(confirmation_number="ZK3FFW", last_name="rodriguez")',
            {"confirmation_number": "ZK3FFW", "last_name": "rodriguez"},
        ),
        ("get_reservation()", {}),
        (
            'get_reservation({"confirmation_number": "ZK3FFW"})',
            {"confirmation_number": "ZK3FFW"},
        ),
        (
            "search_rebooking_options(passenger_count=1, nonstop=true)",
            {"passenger_count": 1, "nonstop": True},
        ),
        (
            '{"name": "get_reservation", "arguments": {"confirmation_number": "ZK3FFW"}}',
            {"confirmation_number": "ZK3FFW"},
        ),
        (
            '{"name": "get_reservation", "arguments": "{\\"last_name\\": \\"li\\"}"}',
            {"last_name": "li"},
        ),
        (
            '{"type": "function", "function": {"name": "get_reservation", "arguments": {}}}',
            {},
        ),
        ('to=functions.get_reservation json{"last_name": "li"}', {"last_name": "li"}),
        ("functions.get_reservation", {}),
        (
            '<tool_call>{"name": "get_reservation", "arguments": {"last_name": "li"}}</tool_call>',
            {"last_name": "li"},
        ),
        ("get_reservation (ZK3FFW)", None),  # positional: cannot be named
        ('get_reservation("ZK3FFW")', None),
        ("get_reservation(code=lookup())", None),
    ],
)
def test_raw_call_arguments(raw: str, arguments: dict[str, Any] | None) -> None:
    assert (
        raw_call_arguments(
            raw, "get_reservation" if "get_res" in raw else "search_rebooking_options"
        )
        == arguments
    )


def test_raw_call_that_cannot_be_scripted_is_rejected() -> None:
    trace = [_u("ZK3FFW."), _a("get_reservation (ZK3FFW)"), _u("Hello?"), _a("Hi.")]
    with pytest.raises(
        TraceError,
        match=r"trace\[1\]: .*'get_reservation' whose arguments do not parse",
    ):
        clean_trace(trace, tool_names=TOOLS)
    undeclared = [
        _u("ZK3FFW."),
        _a("lookup_booking(code='ZK3FFW')"),
        _u("Hello?"),
        _a("Hi."),
    ]
    with pytest.raises(TraceError, match=r"'lookup_booking', which the agent does not declare"):
        clean_trace(undeclared, tool_names=TOOLS)


def test_answer_left_silent_gets_a_neutral_line() -> None:
    trace = [
        _u("ZK3FFW, Rodriguez."),
        _call("get_reservation"),
        _a('{"name": "get_reservation"}'),
        _u("Hello?"),
        _a("Sorry, I found it."),
    ]
    script = script_from_trace(trace, greeting="Hi!", tool_names=TOOLS)
    assert _shape(script)[1] == [["get_reservation"], NEUTRAL_LINE]
    assert script.notes == (
        "trace[2]: dropped an agent line that was a raw tool call (get_reservation)",
        f"answer 1 (to user line 1) said nothing: added {NEUTRAL_LINE!r}",
    )
    # also when the reference itself says nothing; the last answer may end without speech
    cleaned, notes = clean_trace(
        [_u("Hi."), _call("get_reservation"), _u("Hello?"), _call("get_reservation")]
    )
    assert [e["event_type"] for e in cleaned] == [
        "user_utterance",
        "tool_call",
        "agent_utterance",
        "user_utterance",
        "tool_call",
    ]
    assert len(notes) == 1


def test_record_with_bad_trace_names_the_record() -> None:
    record = load_record()
    trace = list(record.trace)
    first_agent = next(i for i, e in enumerate(trace) if e["event_type"] == "agent_utterance")
    trace[first_agent] = _a("issue_travel_credit(500)")  # a positional argument: no name
    bad = dataclasses.replace(record, trace=tuple(trace))
    with pytest.raises(
        TraceError, match=r"^record 'HL-AIR-001': trace\[\d+\]: .*issue_travel_credit"
    ):
        script_from_record(bad)
    trace[first_agent] = _a("issue_travel_credit(amount=500)")  # parses: becomes a call
    script = script_from_record(dataclasses.replace(record, trace=tuple(trace)))
    assert ToolCall("issue_travel_credit", {"amount": 500}) in script.tool_calls


@needs_eva
@pytest.mark.parametrize("record_id", ["1.1.2", "2.2.5", "4.2.1", "5.1.2", "5.2.2", "7.2.8"])
def test_shared_eva_traces_are_clean(record_id: str) -> None:
    record = load_record(record_id, data_dir=EVA_DIR)
    script = script_from_record(record)
    assert script.notes == ()
    assert [c.name for c in script.tool_calls] == [
        e["tool_name"] for e in record.trace if e["event_type"] == "tool_call"
    ]
    assert len(script.assistant_turns) == len(script.user_turns) + 1
    for turn in script.assistant_turns[1:]:
        assert turn.steps and isinstance(turn.steps[-1], Speak)
