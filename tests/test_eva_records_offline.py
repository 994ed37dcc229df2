"""Every shared EVA record becomes an emulator script, in every language it carries.

EVA runs each record with a model as the agent, the reference trace being only the reference;
hydralab's offline emulator follows the trace instead, so the trace must convert into a script
(:func:`hydralab.script.script_from_record`) without losing a tool call or leaving the caller
waiting on an answer that says nothing. Every domain of the shared checkout (airline, itsm,
medical_hr) goes through the same conversion. Skipped when ``../shared/eva`` is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hydralab.records import Record, list_records, load_record
from hydralab.script import Script, Speak, script_from_record

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
HAVE_EVA = (EVA_DIR / "data").is_dir()
DOMAINS = ("airline", "itsm", "medical_hr")

pytestmark = pytest.mark.skipif(not HAVE_EVA, reason="shared EVA data not present")


def _cases() -> list[tuple[str, str]]:
    if not HAVE_EVA:
        return []
    return [(domain, rid) for domain in DOMAINS for rid in list_records(EVA_DIR, domain=domain)]


def _languages(domain: str, record_id: str) -> list[str]:
    raw = load_record(record_id, data_dir=EVA_DIR, domain=domain).raw
    return sorted(raw["culture_overrides"])


def _expected_user_turns(record: Record) -> int:
    """User lines after the first, with consecutive lines (no agent event between) merged."""
    turns, last = 0, None
    for event in record.trace:
        kind = event["event_type"]
        if kind == "user_utterance" and last != "user_utterance":
            turns += 1
        last = kind
    return turns


def _check_script(record: Record, script: Script) -> None:
    assert script.record_id == record.id
    assert script.greeting == record.greeting
    assert script.end_reason == record.end_reason
    assert len(script.assistant_turns) == len(script.user_turns) + 1
    assert len(script.user_turns) == _expected_user_turns(record)
    assert all(turn.text.strip() for turn in script.user_turns)
    # no tool call lost or invented: the script calls exactly the trace's calls, in order
    trace_calls: list[tuple[str, dict[str, Any]]] = [
        (str(e["tool_name"]), dict(e["params"]))
        for e in record.trace
        if e["event_type"] == "tool_call"
    ]
    assert [(c.name, c.arguments) for c in script.tool_calls] == trace_calls
    # every answer the caller waits for (a user line follows it) says something
    for index, turn in enumerate(script.assistant_turns[:-1]):
        spoken = [s.text for s in turn.steps if isinstance(s, Speak)]
        assert spoken and all(text.strip() for text in spoken), f"answer {index} is silent"


@pytest.mark.parametrize(("domain", "record_id"), _cases())
def test_every_shared_record_builds_a_script(domain: str, record_id: str) -> None:
    languages = _languages(domain, record_id)
    assert "en" in languages
    for language in languages:
        record = load_record(record_id, data_dir=EVA_DIR, domain=domain, language=language)
        _check_script(record, script_from_record(record))


def test_shared_records_need_no_trace_cleaning() -> None:
    """Pins today's state: no shared record has raw tool-call text in an agent line, so none
    is refused and none is changed by the conversion (0 of 18, in every domain)."""
    notes = {
        (domain, rid): script_from_record(load_record(rid, data_dir=EVA_DIR, domain=domain)).notes
        for domain, rid in _cases()
    }
    assert {domain for domain, _ in notes} == set(DOMAINS)
    assert len(notes) >= 18
    assert {key: value for key, value in notes.items() if value} == {}
