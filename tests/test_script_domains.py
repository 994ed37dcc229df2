"""Scripts from itsm and medical_hr traces (greeting first, 10-35 turns), and what each call
keeps of its trace response: the ``expected_response`` the emulator chains ids with.

Every shared record (airline, itsm, medical_hr) must give a script whose tool calls are the
trace's, in order, each with its own trace response; a call that needs an id only a call before
it in the same step created waits for that call's output (a step of its own). Skipped in part
when ``../shared/eva`` is absent.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_eva_oracle import EVA_DIR

from hydralab.records import Record, list_records, load_record
from hydralab.script import (
    CallTools,
    Script,
    Speak,
    ToolCall,
    script_from_record,
    script_from_trace,
)

HAVE_EVA = (EVA_DIR / "data").is_dir()
needs_eva = pytest.mark.skipif(not HAVE_EVA, reason="shared EVA data not present")
DOMAINS = ("airline", "itsm", "medical_hr")


def _cases() -> list[tuple[str, str]]:
    if not HAVE_EVA:
        return []
    return [(d, rid) for d in DOMAINS for rid in list_records(EVA_DIR, domain=d)]


def _shapes(script: Script) -> list[list[tuple[str, ...]]]:
    """Per assistant turn, its steps: ``("speak",)`` or the names of the calls of a step."""
    return [
        [
            tuple(c.name for c in s.calls) if isinstance(s, CallTools) else ("speak",)
            for s in t.steps
        ]
        for t in script.assistant_turns
    ]


def _call(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"event_type": "tool_call", "tool_name": name, "params": params or {}}


def _resp(name: str, response: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": "tool_response", "tool_name": name, "response": response}


def _u(text: str) -> dict[str, Any]:
    return {"event_type": "user_utterance", "utterance": text}


def _a(text: str) -> dict[str, Any]:
    return {"event_type": "agent_utterance", "utterance": text}


@needs_eva
def test_all_shared_records_are_covered() -> None:
    cases = _cases()
    assert len(cases) == 18
    assert {d for d, _ in cases} == set(DOMAINS)


@needs_eva
@pytest.mark.parametrize(("domain", "record_id"), _cases())
def test_script_calls_are_the_traces_with_their_responses(domain: str, record_id: str) -> None:
    record: Record = load_record(record_id, data_dir=EVA_DIR, domain=domain)
    script = script_from_record(record)
    trace = record.trace
    calls = [(e["tool_name"], e["params"]) for e in trace if e["event_type"] == "tool_call"]
    responses = [e["response"] for e in trace if e["event_type"] == "tool_response"]
    assert [(c.name, c.arguments) for c in script.tool_calls] == calls
    assert [c.expected_response for c in script.tool_calls] == responses
    assert script.notes == ()
    assert script.greeting == record.greeting
    assert len(script.assistant_turns) == len(script.user_turns) + 1
    if domain != "airline":
        # the trace opens with the agent's greeting: it is the greeting turn, not a reply
        assert trace[0]["event_type"] == "agent_utterance"
        assert script.assistant_turns[0].steps == (Speak(record.greeting),)
        assert script.user_turns[0].text == trace[1]["utterance"].strip()
        assert len(script.user_turns) >= 4 and len(trace) >= 10


@needs_eva
def test_a_call_needing_a_created_id_waits_for_it() -> None:
    rec = load_record("11", data_dir=EVA_DIR, domain="itsm")
    shapes = _shapes(script_from_record(rec))
    create, follow = ("create_incident_ticket",), ("assign_sla_tier", "attach_diagnostic_log")
    assert [create, follow, ("speak",)] in shapes  # follow-ups in one step after the create
    rec = load_record("12", data_dir=EVA_DIR, domain="itsm")
    shapes = _shapes(script_from_record(rec))
    assert any(
        turn[i : i + 2] == [("submit_hardware_request",), ("initiate_asset_return",)]
        for turn in shapes
        for i in range(len(turn))
    )


@needs_eva
@pytest.mark.parametrize("record_id", ["1.1.2", "2.2.5", "4.2.1", "5.1.2", "5.2.2", "7.2.8"])
def test_airline_steps_unchanged(record_id: str) -> None:
    """Airline ids all exist in the scenario DB: no step is split."""
    rec = load_record(record_id, data_dir=EVA_DIR, domain="airline")
    blind = [e for e in rec.trace if e["event_type"] != "tool_response"]  # no responses
    plain = script_from_trace(blind, greeting=rec.greeting, tool_names=rec.agent.tool_names)
    assert _shapes(script_from_record(rec)) == _shapes(plain)


def test_expected_responses_pair_in_order_per_tool() -> None:
    trace = [
        _u("Hi."),
        _call("a", {"n": 1}),
        _call("a", {"n": 2}),
        _call("b"),
        _resp("a", {"r": 1}),
        _resp("b", {"r": "b"}),
        _resp("a", {"r": 2}),
        _a("Done."),
        _u("More?"),
        _a('functions.a({"n": 3})'),  # a raw call recovered from speech: no response
        _call("c"),
        _a("Bye."),
    ]
    script = script_from_trace(trace, greeting="Hello.")
    got = [(c.name, c.arguments, c.expected_response) for c in script.tool_calls]
    assert got == [
        ("a", {"n": 1}, {"r": 1}),
        ("a", {"n": 2}, {"r": 2}),
        ("b", {}, {"r": "b"}),
        ("a", {"n": 3}, None),
        ("c", {}, None),
    ]


def test_split_only_for_ids_that_did_not_exist() -> None:
    trace = [
        _u("Open a ticket for EMP000123."),
        _call("create", {"employee_id": "EMP000123"}),
        _resp("create", {"ticket": "INC0000042", "employee_id": "EMP000123"}),
        _call("lookup", {"employee_id": "EMP000123"}),
        _resp("lookup", {"ok": True}),
        _call("assign", {"ticket": "INC0000042"}),
        _resp("assign", {"ticket": "INC0000042"}),
        _call("attach", {"ticket": "INC0000042"}),
        _resp("attach", {"ticket": "INC0000042"}),
        _a("Done."),
    ]
    db = {"employees": {"EMP000123": {"name": "x"}}}
    script = script_from_trace(trace, greeting="Hi.", initial_db=db)
    assert _shapes(script)[1] == [("create", "lookup"), ("assign", "attach"), ("speak",)]
    # without the DB the employee id, echoed by "create", counts as created too
    blind = script_from_trace(trace, greeting="Hi.")
    assert _shapes(blind)[1] == [("create",), ("lookup", "assign", "attach"), ("speak",)]


def test_tool_call_equality_ignores_the_expected_response() -> None:
    a = ToolCall("x", {"k": 1}, expected_response={"id": "A1234"})
    assert a == ToolCall("x", {"k": 1})
    assert "A1234" not in repr(a)


HAVE_EVA_TOOLS = (EVA_DIR / "src" / "eva" / "assistant" / "tools" / "itsm_tools.py").is_file()


@pytest.mark.skipif(not HAVE_EVA_TOOLS, reason="EVA's tool code not present")
@pytest.mark.parametrize("record_id", ["11", "12", "13", "14"])
def test_itsm_scripts_reach_the_expected_db_step_by_step(record_id: str) -> None:
    """As the emulator plays it: a step's calls are compiled with what the chain knows, and the
    chain learns from their outputs before the next step; EVA's tools run the calls."""
    from hydralab.tools import EvaTools, IdChain, ToolExecutor
    from hydralab.tools.eva_code import EvaToolsDependencyError

    rec = load_record(record_id, data_dir=EVA_DIR, domain="itsm")
    try:
        tools = ToolExecutor.for_record(rec, backend=EvaTools(EVA_DIR))
    except EvaToolsDependencyError as exc:
        pytest.skip(str(exc))
    chain = IdChain()
    for turn in script_from_record(rec).assistant_turns:
        for step in turn.steps:
            if not isinstance(step, CallTools):
                continue
            compiled = [(c, chain.apply(dict(c.arguments))) for c in step.calls]
            for call, arguments in compiled:
                out = tools.execute(call.name, arguments)
                assert out.get("status") == "success", (call.name, out)
                chain.learn(call.expected_response, out)
    assert chain.mapping  # the trace's counter-style ids became the live hashed ones
    final = {k: v for k, v in tools.db.items() if k != "_current_date"}
    expected = {k: v for k, v in rec.expected_db.items() if k != "_current_date"}
    assert final == expected
