"""Record loading, validation and placeholder resolution."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hydralab.records import (
    DEFAULT_DATA_DIR,
    DEFAULT_RECORD_ID,
    Record,
    RecordFormatError,
    RecordNotFoundError,
    UnknownDomainError,
    build_instructions,
    list_records,
    load_agent_config,
    load_record,
    resolve_placeholders,
)

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
needs_eva = pytest.mark.skipif(
    not (EVA_DIR / "data").is_dir(), reason="shared EVA data not present"
)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def test_default_record_loads() -> None:
    rec = load_record()
    assert DEFAULT_RECORD_ID == "HL-AIR-001"
    assert rec.id == DEFAULT_RECORD_ID
    assert rec.domain == "airline"
    assert rec.language == "en"
    assert rec.current_date_time == "2026-05-04 09:20 MDT"
    assert rec.current_date == "2026-05-04"
    assert rec.greeting == "Hello! Thanks for calling SkyWay. How can I help you today?"
    assert rec.starting_utterance == rec.trace[0]["utterance"]
    assert rec.end_reason == "goodbye"
    assert rec.tool_names == (
        "get_reservation",
        "search_rebooking_options",
        "rebook_flight",
        "assign_seat",
    )
    assert "HT4KWB" in rec.initial_db["reservations"]
    assert rec.expected_session == {"confirmation_number": "HT4KWB", "last_name": "brooks"}
    assert len(rec.agent.tools) == 15
    assert rec.agent.tool_type("get_reservation") == "auth"
    assert rec.agent.tool_type("nope") is None
    assert rec.source == DEFAULT_DATA_DIR / "airline" / "airline_dataset.json"
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.id = "x"  # type: ignore[misc]


def test_every_record_resolves_all_placeholders() -> None:
    ids = list_records()
    assert ids == ["HL-AIR-001", "HL-AIR-002", "HL-AIR-003"]
    for record_id in ids:
        rec = load_record(record_id)
        for part in (
            rec.initial_db,
            rec.expected_db,
            list(rec.trace),
            rec.user_goal,
            rec.user_config,
        ):
            assert "<" not in _dump(part), (record_id, part)
        # the raw record keeps its placeholders
        assert "<LAST_NAME_ROMANIZED>" in _dump(rec.raw)


def test_romanized_placeholders_resolve_lowercase() -> None:
    rec = load_record("HL-AIR-001")
    pax = rec.initial_db["reservations"]["HT4KWB"]["passengers"][0]
    assert pax["first_name"] == "daniel"
    assert pax["last_name"] == "brooks"
    assert pax["email"] == "daniel.brooks@example.net"
    assert pax["phone"] == "+1-720-555-0193"
    # plain placeholders keep their case (user line in the trace, goal info)
    assert rec.trace[2]["utterance"] == "It's HT4KWB, last name Brooks."
    assert rec.user_goal["information_required"]["Passenger last name"] == "Brooks"
    assert rec.user_config["name"] == "Daniel Brooks"


def test_resolve_placeholders_prefers_longest_and_copies() -> None:
    values = {
        "<FIRST_NAME>": "Ana",
        "<FIRST_NAME_ROMANIZED>": "ana",
        "<LAST_NAME>": "Núñez",
        "<LAST_NAME_ROMANIZED>": "nunez",
    }
    src: dict[str, Any] = {
        "a": ["<FIRST_NAME_ROMANIZED>.<LAST_NAME_ROMANIZED>@x", ("<FIRST_NAME> <LAST_NAME>",)],
        "n": 1,
    }
    out = resolve_placeholders(src, values)
    assert out == {"a": ["ana.nunez@x", ["Ana Núñez"]], "n": 1}
    assert src["a"][0] == "<FIRST_NAME_ROMANIZED>.<LAST_NAME_ROMANIZED>@x"


def test_unknown_record_lists_available_ids() -> None:
    with pytest.raises(RecordNotFoundError) as err:
        load_record("NOPE-1")
    assert "HL-AIR-001" in str(err.value) and "HL-AIR-002" in str(err.value)
    assert isinstance(err.value, LookupError)


def test_unknown_domain() -> None:
    with pytest.raises(UnknownDomainError, match="available: airline"):
        load_record(domain="itsm")
    with pytest.raises(UnknownDomainError):
        list_records(domain="medical_hr")


def test_build_instructions() -> None:
    rec = load_record()
    text = build_instructions(rec)
    assert "Today is 2026-05-04 09:20 MDT." in text
    assert rec.agent.description in text
    assert rec.agent.role in text
    assert "## Authentication" in text and "## Voice style" in text
    assert text.endswith(
        "Begin the conversation by greeting the user with: "
        "Hello! Thanks for calling SkyWay. How can I help you today?"
    )


def test_agent_config_size_and_sections() -> None:
    agent = load_agent_config(DEFAULT_DATA_DIR / "airline" / "agent.yaml")
    assert 1500 <= len(agent.instructions.encode()) <= 3000
    for section in ("## Authentication", "## Rebooking", "## Fees", "## Voice style"):
        assert section in agent.instructions
    assert {t["tool_type"] for t in agent.tools} == {"auth", "read", "write", "system"}


# --- malformed data --------------------------------------------------------------------------


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    shutil.copytree(DEFAULT_DATA_DIR / "airline", tmp_path / "airline")
    return tmp_path


def _edit_dataset(data_dir: Path, edit: Callable[[list[dict[str, Any]]], Any]) -> None:
    path = data_dir / "airline" / "airline_dataset.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))


def test_copied_data_loads(data_copy: Path) -> None:
    assert load_record(data_dir=data_copy).id == "HL-AIR-001"
    assert list_records(data_copy) == ["HL-AIR-001", "HL-AIR-002", "HL-AIR-003"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r[0].pop("current_date_time"), "missing field 'current_date_time'"),
        (lambda r: r[0].update(current_date_time="tomorrow"), "must start with YYYY-MM-DD"),
        (lambda r: r[0].pop("user_goal"), "missing field 'user_goal'"),
        (
            lambda r: r[0]["ground_truth"].pop("expected_scenario_db"),
            "missing field 'expected_scenario_db'",
        ),
        (
            lambda r: r[0]["ground_truth"]["expected_trace"].update(trace={}),
            "field 'trace' must be list",
        ),
        (
            lambda r: r[0]["ground_truth"]["expected_trace"]["trace"].append(
                {"event_type": "dance"}
            ),
            "unknown event_type 'dance'",
        ),
        (
            lambda r: r[0]["ground_truth"]["expected_trace"]["trace"].append(
                {"event_type": "tool_call"}
            ),
            "missing field 'tool_name'",
        ),
        (lambda r: r[0].update(culture_overrides={"fr": {}}), "no entry for language 'en'"),
        (
            lambda r: r[0]["culture_overrides"]["en"].pop("last_name"),
            "culture_overrides.en.last_name",
        ),
    ],
)
def test_malformed_record_names_the_field(
    data_copy: Path, edit: Callable[[list[dict[str, Any]]], Any], message: str
) -> None:
    _edit_dataset(data_copy, edit)
    with pytest.raises(RecordFormatError, match=message.replace("(", r"\(")) as err:
        load_record("HL-AIR-001", data_dir=data_copy)
    assert "HL-AIR-001" in str(err.value)


def test_dataset_must_be_a_list(data_copy: Path) -> None:
    (data_copy / "airline" / "airline_dataset.json").write_text('{"id": "x"}')
    with pytest.raises(RecordFormatError, match="JSON list"):
        load_record(data_dir=data_copy)
    (data_copy / "airline" / "airline_dataset.json").write_text("[{]")
    with pytest.raises(RecordFormatError, match="invalid JSON"):
        load_record(data_dir=data_copy)
    (data_copy / "airline" / "airline_dataset.json").write_text('[{"name": "no id"}]')
    with pytest.raises(RecordFormatError, match="no string 'id'"):
        list_records(data_copy)


def test_missing_scenario_db_and_agent(data_copy: Path) -> None:
    (data_copy / "airline" / "airline_scenarios" / "HL-AIR-002.json").unlink()
    with pytest.raises(RecordFormatError, match=r"missing file: .*HL-AIR-002\.json"):
        load_record("HL-AIR-002", data_dir=data_copy)
    (data_copy / "airline" / "agent.yaml").write_text("tools: []\n")
    with pytest.raises(RecordFormatError, match="missing field 'instructions'"):
        load_record("HL-AIR-001", data_dir=data_copy)
    (data_copy / "airline" / "agent.yaml").write_text(
        "instructions: x\ntools:\n- description: nameless\n"
    )
    with pytest.raises(RecordFormatError, match=r"tools\[0\]: missing field 'name'"):
        load_record("HL-AIR-001", data_dir=data_copy)


def test_greeting_falls_back_to_english(data_copy: Path) -> None:
    _edit_dataset(
        data_copy,
        lambda r: r[0]["culture_overrides"].update(
            de={"first_name": "Jonas", "last_name": "Weber"}
        ),
    )
    rec = load_record("HL-AIR-001", data_dir=data_copy, language="de")
    assert rec.greeting.startswith("Hello!")
    assert rec.language == "de"
    assert (
        rec.expected_session["last_name"] == "weber"
    )  # no romanized entry: culture names, lowercased
    assert rec.trace[2]["utterance"] == "It's HT4KWB, last name Weber."
    assert rec.starting_utterance == rec.trace[0]["utterance"]  # no starting_utterances.de


def test_empty_data_dir(tmp_path: Path) -> None:
    with pytest.raises(RecordNotFoundError, match="no record datasets"):
        load_record(data_dir=tmp_path)


# --- EVA's own layout ------------------------------------------------------------------------


@needs_eva
def test_loads_eva_layout() -> None:
    ids = list_records(EVA_DIR)
    assert ids == ["1.1.2", "2.2.5", "4.2.1", "5.1.2", "5.2.2", "7.2.8"]
    rec = load_record("1.1.2", data_dir=EVA_DIR)
    assert isinstance(rec, Record)
    assert rec.domain == "airline"
    assert rec.greeting == "Hello! How can I help you today?"
    assert rec.agent.id == "agent_airline" and len(rec.agent.tools) == 15
    assert rec.expected_session == {"confirmation_number": "ZK3FFW", "last_name": "rodriguez"}
    assert (
        rec.initial_db["reservations"]["ZK3FFW"]["passengers"][0]["email"]
        == "samantha.rodriguez@example.com"
    )
    assert rec.trace[3]["params"] == {"confirmation_number": "ZK3FFW", "last_name": "rodriguez"}
    assert rec.starting_utterance == "Hi, I need to change my flight to March 25."
    assert "Today is 2026-03-17 10:45 CST." in build_instructions(rec)


@needs_eva
def test_eva_other_language_and_missing_id() -> None:
    rec = load_record("2.2.5", data_dir=EVA_DIR, language="fr")
    assert rec.greeting.startswith("Bonjour")
    assert rec.starting_utterance != load_record("2.2.5", data_dir=EVA_DIR).starting_utterance
    with pytest.raises(RecordNotFoundError, match=r"1\.1\.2"):
        load_record("9.9.9", data_dir=EVA_DIR)
