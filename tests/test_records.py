"""Record loading, validation and placeholder resolution."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydralab.records import (
    DEFAULT_DATA_DIR,
    DEFAULT_RECORD_ID,
    Record,
    RecordFormatError,
    RecordNotFoundError,
    UnknownDomainError,
    agent_config_path,
    build_instructions,
    check_path_name,
    eva_run_config,
    greeting_steer,
    list_records,
    load_agent_config,
    load_record,
    record_meta,
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
    ids = list_records(EVA_DIR, domain="airline")
    assert ids == ["1.1.2", "2.2.5", "4.2.1", "5.1.2", "5.2.2", "7.2.8"]
    assert set(ids) <= set(list_records(EVA_DIR))
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


# --- EVA layout without the shared data: JSONL dataset, prompt template, data/ as the root ---

_TEMPLATE = (
    "You are a voice agent.\n## Context\nToday is {datetime}.\n{agent_personality}\n\n"
    "Specific Instructions and Policies:\n{agent_instructions}\n"
)


def _fake_eva(root: Path, *, jsonl: bool, template: str | None = _TEMPLATE) -> Path:
    """hydralab's airline data rearranged as an EVA checkout under ``root``."""
    src = DEFAULT_DATA_DIR / "airline"
    data, agents = root / "data", root / "configs" / "agents"
    data.mkdir(parents=True)
    agents.mkdir(parents=True)
    shutil.copytree(src / "airline_scenarios", data / "airline_scenarios")
    shutil.copy(src / "agent.yaml", agents / "airline_agent.yaml")
    shutil.copy(src / "initial_messages.yaml", agents / "initial_messages.yaml")
    records = json.loads((src / "airline_dataset.json").read_text())
    if jsonl:
        lines = "\n".join(json.dumps(r) for r in records)
        (data / "airline_dataset.jsonl").write_text(lines + "\n\n")  # a blank line is fine
    else:
        (data / "airline_dataset.json").write_text(json.dumps(records))
    if template is not None:
        prompts = root / "configs" / "prompts"
        prompts.mkdir(parents=True)
        (prompts / "simulation.yaml").write_text(
            yaml.safe_dump({"realtime_agent": {"system_prompt": template}, "agent": {}})
        )
    return root


def test_jsonl_dataset_loads_like_the_json_list(tmp_path: Path) -> None:
    root = _fake_eva(tmp_path, jsonl=True)
    assert list_records(root) == ["HL-AIR-001", "HL-AIR-002", "HL-AIR-003"]
    rec = load_record("HL-AIR-003", data_dir=root)
    ref = load_record("HL-AIR-003")
    assert rec.source == root / "data" / "airline_dataset.jsonl"
    assert (rec.initial_db, rec.expected_db, rec.trace) == (
        ref.initial_db,
        ref.expected_db,
        ref.trace,
    )
    assert rec.data_dir == root
    # the data/ folder itself works as the root too (`--eva-dir eva/data`)
    assert load_record("HL-AIR-003", data_dir=root / "data").expected_db == ref.expected_db


def test_json_list_wins_over_jsonl(tmp_path: Path) -> None:
    root = _fake_eva(tmp_path, jsonl=True)
    (root / "data" / "airline_dataset.json").write_text(
        json.dumps(
            [json.loads((DEFAULT_DATA_DIR / "airline" / "airline_dataset.json").read_text())[0]]
        )
    )
    assert list_records(root) == ["HL-AIR-001"]


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    root = _fake_eva(tmp_path, jsonl=True)
    path = root / "data" / "airline_dataset.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", *lines[1:]]))
    with pytest.raises(RecordFormatError, match=r"airline_dataset\.jsonl: line 2: invalid JSON"):
        load_record("HL-AIR-001", data_dir=root)
    path.write_text("\n".join([lines[0], '{"no_id": 1}']))
    with pytest.raises(RecordFormatError, match="record 2 has no string 'id'"):
        list_records(root)


UNSAFE_IDS = [
    ("../../../x", "path separator"),
    ("/etc/passwd", "path separator"),
    ("a/b", "path separator"),
    ("a\\b", "path separator"),
    ("", "empty"),
    (".", "names a directory"),
    ("..", "names a directory"),
    ("a\x00b", "NUL or control character"),
    ("a\nb", "NUL or control character"),
    ("x" * 201, "longer than 200 bytes"),
]


@pytest.mark.parametrize(("bad", "why"), UNSAFE_IDS)
def test_unsafe_record_ids_are_refused_when_loading(
    data_copy: Path, tmp_path: Path, bad: str, why: str
) -> None:
    """A record id names its scenario file and its run directory: one that is not a plain
    file name (a way out of its folder) is refused, with the dataset and element named."""
    with pytest.raises(ValueError, match=why):
        check_path_name(bad)
    _edit_dataset(data_copy, lambda r: r[1].update(id=bad))
    dataset = data_copy / "airline" / "airline_dataset.json"
    message = rf"{dataset}: element 1: record id .* is not allowed: it .*{why}"
    with pytest.raises(RecordFormatError, match=message):
        list_records(data_copy)
    with pytest.raises(RecordFormatError, match=message):  # even asking for another record
        load_record("HL-AIR-001", data_dir=data_copy)
    # asked for by such an id: refused before any file is looked up
    with pytest.raises(RecordNotFoundError, match=f"is not allowed: it .*{why}"):
        load_record(bad)
    # the same in an EVA checkout's JSONL dataset
    root = _fake_eva(tmp_path, jsonl=True)
    path = root / "data" / "airline_dataset.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    row["id"] = bad
    path.write_text("\n".join([*lines[:2], json.dumps(row)]))
    with pytest.raises(RecordFormatError, match=r"record 3: record id .* is not allowed"):
        load_record("HL-AIR-001", data_dir=root)


def test_plain_record_ids_are_kept() -> None:
    for ok in ("HL-AIR-001", "1.1.2", "x y", "ñandú-7", ".hidden", "a..b"):
        assert check_path_name(ok) == ok
    with pytest.raises(ValueError, match="must be a string"):
        check_path_name(7)


def test_eva_prompt_template_renders_with_greeting_steer(tmp_path: Path) -> None:
    rec = load_record("HL-AIR-001", data_dir=_fake_eva(tmp_path, jsonl=False))
    assert rec.prompt_template == _TEMPLATE
    assert rec.prompt_path == tmp_path / "configs" / "prompts" / "simulation.yaml"
    text = build_instructions(rec)
    raw = yaml.safe_load((DEFAULT_DATA_DIR / "airline" / "agent.yaml").read_text())
    assert text == (
        _TEMPLATE.format(
            datetime="2026-05-04 09:20 MDT",
            agent_personality=raw["description"],
            agent_instructions=raw["instructions"],
        )
        + "\n\nBegin the conversation by greeting the user with: "
        + "Hello! Thanks for calling SkyWay. How can I help you today?"
    )
    assert text.endswith(greeting_steer(rec.greeting))
    # hydralab's own data keeps the built-in template
    assert load_record().prompt_template is None


def test_eva_layout_without_prompts_uses_builtin_template(tmp_path: Path) -> None:
    rec = load_record("HL-AIR-001", data_dir=_fake_eva(tmp_path, jsonl=False, template=None))
    assert rec.prompt_template is None
    assert build_instructions(rec) == build_instructions(load_record())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"realtime_agent": {}}, "missing realtime_agent.system_prompt"),
        ({"agent": {"system_prompt": "x"}}, "missing realtime_agent.system_prompt"),
        ({"realtime_agent": {"system_prompt": "Today is {date}."}}, "unknown placeholder"),
    ],
)
def test_malformed_prompt_template(tmp_path: Path, content: dict[str, Any], message: str) -> None:
    root = _fake_eva(tmp_path, jsonl=False)
    (root / "configs" / "prompts" / "simulation.yaml").write_text(yaml.safe_dump(content))
    with pytest.raises(RecordFormatError, match=message):
        load_record("HL-AIR-001", data_dir=root)


def test_missing_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecordNotFoundError, match="does not exist"):
        load_record("1.1.2", data_dir=tmp_path / "nope")


def test_run_config_and_record_meta(tmp_path: Path) -> None:
    root = _fake_eva(tmp_path, jsonl=False)
    rec = load_record("HL-AIR-002", data_dir=root)
    assert agent_config_path(rec) == "configs/agents/airline_agent.yaml"  # EVA runs from root
    config = eva_run_config(rec, model="emulator", voice="zoe")
    assert {k: config[k] for k in ("domain", "language", "agent_config_path")} == {
        "domain": "airline",
        "language": "en",
        "agent_config_path": "configs/agents/airline_agent.yaml",
    }
    # what EVA's RunConfig requires (ServiceNow/eva src/eva/models/config.py: model_list, and
    # s2s_params with api_key and model), truthful about what answered, never a key
    assert config["model"] == {
        "s2s": "hydra-emulator",
        "s2s_params": {
            "api_key": "***",
            "model": "hydra-v1.1",
            "voice": "zoe",
            "framework": "hydralab",
            "endpoint": "hydralab emulator (offline)",
        },
    }
    (deployment,) = config["model_list"]
    assert deployment["model_name"] == "hydra-v1.1"
    assert deployment["litellm_params"]["api_key"] == "***"
    assert config["hydralab"]["model"] == "emulator"
    assert config["hydralab"]["data_dir"] == str(root.resolve())
    real = eva_run_config(rec, model="hydra", endpoint="wss://h/x?model=hydra-v1.1&api_key=***")
    assert real["model"]["s2s"] == "hydra" and real["model"]["s2s_params"]["endpoint"].startswith(
        "wss://h/x"
    )
    meta = record_meta(rec)
    assert meta["id"] == "HL-AIR-002" and meta["auth_tools"] == ["get_reservation"]
    assert meta["data_dir"] == str(root.resolve()) and meta["language"] == "en"
    own = load_record()
    assert agent_config_path(own) == str((DEFAULT_DATA_DIR / "airline" / "agent.yaml").resolve())


@needs_eva
def test_eva_realtime_prompt_matches_documented_size() -> None:
    rec = load_record("1.1.2", data_dir=EVA_DIR)
    assert rec.prompt_path == EVA_DIR / "configs" / "prompts" / "simulation.yaml"
    text = build_instructions(rec)
    assert text.startswith("You are an AI voice assistant on a live phone call.")
    assert "Today is 2026-03-17 10:45 CST." in text
    assert text.endswith(
        "Begin the conversation by greeting the user with: Hello! How can I help you today?"
    )
    # EVA's rendered realtime prompt for airline is 11,621 B; with the greeting steer 11,705 B
    assert len(text.encode()) == 11_705
    assert len(text.encode()) - len(("\n\n" + greeting_steer(rec.greeting)).encode()) == 11_621


@needs_eva
def test_eva_data_folder_as_root_and_unknown_domain() -> None:
    assert list_records(EVA_DIR / "data") == list_records(EVA_DIR)
    with pytest.raises(UnknownDomainError, match="available: airline"):
        load_record("1.1.2", data_dir=EVA_DIR, domain="banking")


def test_build_script_rebuilds_our_records_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``scripts/build_airline.py`` runs the scripted calls through today's tools: its output
    must equal the shipped records, so a tool change that alters a frozen response shows here."""
    import importlib.util

    script = Path(__file__).parents[1] / "scripts" / "build_airline.py"
    spec = importlib.util.spec_from_file_location("build_airline", script)
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "build_airline", build)  # dataclasses look it up there
    spec.loader.exec_module(build)
    monkeypatch.setattr(build, "OUT", tmp_path)
    build.main()
    shipped = DEFAULT_DATA_DIR / "airline"
    built = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.json"))
    assert built == sorted(
        p.relative_to(shipped)
        for p in shipped.rglob("*.json")
        if p.name == "airline_dataset.json" or p.parent.name == "airline_scenarios"
    )
    for relative in built:
        assert (tmp_path / relative).read_bytes() == (shipped / relative).read_bytes(), relative
