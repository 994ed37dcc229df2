"""itsm and medical_hr records resolved as EVA resolves them.

``<LOC:Name>`` placeholders (EVA's ``_resolve_locations``), ``name_aliases`` injected into the
initial and expected DBs (EVA's ``resolve_scenario_db(..., aliases_dir=...)``), a record's
``agent_override`` and the language addendum EVA appends to the agent's instructions for a
non-English run. The shared EVA checkout (``../shared/eva``) is used where present; the tests
that need it skip without it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_eva_oracle import EVA_DIR

from hydralab.records import (
    LANGUAGE_DISPLAY_NAMES,
    AgentConfig,
    RecordFormatError,
    apply_agent_override,
    build_instructions,
    inject_name_aliases,
    language_addendum,
    load_aliases,
    load_record,
    resolve_locations,
)

HAVE_EVA = (EVA_DIR / "data" / "itsm_aliases").is_dir()
needs_eva = pytest.mark.skipif(not HAVE_EVA, reason="shared EVA data not present")

ALIASES: dict[str, dict[str, Any]] = {
    "East Campus": {
        "name": "East Campus",
        "translatable": True,
        "base": ["east campus", "east site"],
        "translations": {"fr": ["campus est", "site est", "east site"], "de": []},
    },
    "Jira": {"name": "Jira", "translatable": False, "base": ["jira software"], "translations": {}},
}


def _delivery_buildings(trace: tuple[dict[str, Any], ...]) -> list[str]:
    return [
        str(e["params"]["delivery_building"])
        for e in trace
        if e["event_type"] == "tool_call" and "delivery_building" in e["params"]
    ]


# ---------------------------------------------------------------- <LOC:Name>


def test_resolve_locations_english_and_other_languages() -> None:
    value = {"goal": "Deliver to <LOC:East Campus>, floor 1.", "list": ["<LOC:Jira> at <LOC:X>"]}
    assert resolve_locations(value, ALIASES, "en") == {
        "goal": "Deliver to East Campus, floor 1.",
        "list": ["Jira at X"],  # an unknown alias renders its literal name
    }
    assert resolve_locations(value, ALIASES, "fr") == {
        "goal": "Deliver to campus est, floor 1.",  # translations[fr][0]
        "list": ["Jira at X"],  # no translation (not translatable): the name
    }
    assert resolve_locations(value, ALIASES, "de")["goal"] == "Deliver to East Campus, floor 1."
    assert resolve_locations(value, {}, "fr")["goal"] == "Deliver to East Campus, floor 1."
    assert value["goal"].startswith("Deliver to <LOC:")  # a copy: the input is untouched


@needs_eva
def test_loc_placeholders_of_itsm_records_in_english() -> None:
    for rid, place in (("12", "Headquarters"), ("13", "East Campus")):
        rec = load_record(rid, data_dir=EVA_DIR, domain="itsm")
        assert rec.aliases_dir == EVA_DIR / "data" / "itsm_aliases"
        assert _delivery_buildings(rec.trace) == [place]
        for part in (rec.trace, rec.user_goal, rec.user_config, rec.initial_db, rec.expected_db):
            assert "<LOC:" not in json.dumps(part)
        assert place in json.dumps(rec.user_goal)
    rec = load_record("13", data_dir=EVA_DIR, domain="itsm")
    assert rec.user_goal["high_level_user_goal"].endswith("delivered to East Campus, floor 1.")


@needs_eva
def test_loc_placeholders_of_itsm_records_in_french() -> None:
    rec = load_record("13", data_dir=EVA_DIR, domain="itsm", language="fr")
    first_fr = load_aliases(EVA_DIR / "data" / "itsm_aliases")["East Campus"]["translations"]["fr"]
    assert _delivery_buildings(rec.trace) == [first_fr[0]] == ["campus est"]
    assert "delivered to campus est, floor 1." in rec.user_goal["high_level_user_goal"]
    assert "<LOC:" not in json.dumps([rec.trace, rec.user_goal, rec.starting_utterance])


def test_load_aliases_absent_or_malformed(tmp_path: Path) -> None:
    assert load_aliases(None) == {}
    assert load_aliases(tmp_path / "missing") == {}
    (tmp_path / "a.json").write_text(json.dumps(ALIASES["Jira"]), encoding="utf-8")
    assert load_aliases(tmp_path) == {"Jira": ALIASES["Jira"]}
    (tmp_path / "b.json").write_text(json.dumps({"name": "X", "base": "x"}), encoding="utf-8")
    with pytest.raises(RecordFormatError, match="'base' must be a list"):
        load_aliases(tmp_path)


# ---------------------------------------------------------------- name_aliases


def test_inject_name_aliases_anywhere_deduplicated_in_order() -> None:
    db = {
        "facilities": {"buildings": {"B1": {"name": "East Campus", "name_aliases": ["old"]}}},
        "catalog": [{"name": "Jira"}, {"name": "Unknown"}],
    }
    fr = inject_name_aliases(db, ALIASES, "fr")
    assert fr["facilities"]["buildings"]["B1"]["name_aliases"] == [
        "east campus",
        "east site",
        "campus est",
        "site est",
    ]
    assert fr["catalog"] == [
        {"name": "Jira", "name_aliases": ["jira software"]},
        {"name": "Unknown"},
    ]
    en = inject_name_aliases(db, ALIASES, "en")
    assert en["facilities"]["buildings"]["B1"]["name_aliases"] == ["east campus", "east site"]
    assert db["facilities"]["buildings"]["B1"]["name_aliases"] == ["old"]  # input untouched
    assert inject_name_aliases(db, {}, "fr") == db


@needs_eva
@pytest.mark.parametrize("language", ["en", "fr"])
def test_itsm_facilities_get_name_aliases_in_both_dbs(language: str) -> None:
    aliases = load_aliases(EVA_DIR / "data" / "itsm_aliases")
    entry = aliases["East Campus"]
    want = list(dict.fromkeys([*entry["base"], *entry["translations"].get(language, [])]))
    rec = load_record("13", data_dir=EVA_DIR, domain="itsm", language=language)
    for db in (rec.initial_db, rec.expected_db):
        building = db["facilities"]["buildings"]["BLD4"]
        assert building["name"] == "East Campus" and building["name_aliases"] == want
    slack = next(s for s in rec.initial_db["software_catalog"].values() if s["name"] == "Slack")
    assert slack["name_aliases"] == aliases["Slack"]["base"]


@needs_eva
def test_domains_without_alias_files_are_left_alone() -> None:
    for domain, rid in (("airline", "1.1.2"), ("medical_hr", "1.1")):
        rec = load_record(rid, data_dir=EVA_DIR, domain=domain)
        assert rec.aliases_dir is None
        assert "name_aliases" not in json.dumps([rec.initial_db, rec.expected_db])


# ---------------------------------------------------------------- agent_override


def _eva_copy(tmp_path: Path, override: Any) -> Path:
    """A one-record itsm EVA checkout in ``tmp_path`` whose record has ``agent_override``."""
    root = tmp_path / "eva"
    (root / "data" / "itsm_scenarios").mkdir(parents=True)
    shutil.copytree(EVA_DIR / "configs", root / "configs")
    shutil.copytree(EVA_DIR / "data" / "itsm_aliases", root / "data" / "itsm_aliases")
    shutil.copy(EVA_DIR / "data" / "itsm_scenarios" / "13.json", root / "data" / "itsm_scenarios")
    records = json.loads((EVA_DIR / "data" / "itsm_dataset.json").read_text(encoding="utf-8"))
    record = next(r for r in records if r["id"] == "13")
    record["agent_override"] = override
    (root / "data" / "itsm_dataset.json").write_text(json.dumps([record]), encoding="utf-8")
    return root


@needs_eva
def test_agent_override_from_a_record(tmp_path: Path) -> None:
    base = load_record("13", data_dir=EVA_DIR, domain="itsm")
    assert base.agent_override is None
    names = base.agent.tool_names
    enabled = [names[5], names[0], names[2]]  # not in YAML order on purpose
    override = {
        "instructions": "Only look things up; never submit anything.",
        "personality": "A terse lookup desk.",
        "tools_enabled": enabled,
    }
    root = _eva_copy(tmp_path, override)
    rec = load_record("13", data_dir=root, domain="itsm")
    assert rec.agent_override == override
    assert rec.agent.tool_names == (names[0], names[2], names[5])  # YAML order
    assert [t["name"] for t in rec.agent.raw["tools"]] == list(rec.agent.tool_names)
    assert rec.agent.instructions == override["instructions"]
    assert rec.agent.description == override["personality"]
    # the same YAML, as EVA's config.json names it
    assert rec.agent.path == root / "configs" / "agents" / "itsm_agent.yaml"
    text = build_instructions(rec)
    assert override["instructions"] in text and override["personality"] in text
    assert base.agent.instructions.strip()[:200] not in text


@needs_eva
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"tools_enabled": ["get_employee_record", "delete_everything"]}, "delete_everything"),
        ({"tools_enabled": "get_employee_record"}, "tools_enabled must be list"),
        ({"instructions": 7}, "instructions must be str"),
        (["instructions"], "must be an object"),
    ],
)
def test_agent_override_refused(tmp_path: Path, override: Any, message: str) -> None:
    with pytest.raises(RecordFormatError, match=message):
        load_record("13", data_dir=_eva_copy(tmp_path, override), domain="itsm")


def test_apply_agent_override_partial() -> None:
    agent = AgentConfig(
        id="a",
        name="A",
        description="Helpful.",
        role="Role.",
        instructions="Do things.",
        tools=({"name": "x"}, {"name": "y"}),
        raw={"description": "Helpful.", "instructions": "Do things.", "tools": [{"name": "x"}]},
    )
    assert apply_agent_override(agent, None) is agent
    assert apply_agent_override(agent, {}) is agent
    same = apply_agent_override(agent, {"instructions": None, "other": 1})
    assert same.instructions == "Do things." and same.tool_names == ("x", "y")
    none = apply_agent_override(agent, {"tools_enabled": []})
    assert none.tool_names == () and none.description == "Helpful."


# ---------------------------------------------------------------- language addendum


def test_language_addendum_text() -> None:
    assert language_addendum("en") is None and language_addendum("") is None
    french = language_addendum("fr")
    assert french is not None and french.startswith("Always respond to the user in French,")
    assert "'IntelliJ'" in french
    assert "in Canadian French," in (language_addendum("fr-CA") or "")
    assert set(LANGUAGE_DISPLAY_NAMES) == {"en", "fr", "fr-CA", "es", "de", "hi", "ko"}
    assert "in xx," in (language_addendum("xx") or "")  # unknown: named by its code


@needs_eva
@pytest.mark.parametrize(
    ("domain", "rid"), [("itsm", "13"), ("medical_hr", "1.1"), ("airline", "1.1.2")]
)
def test_language_addendum_in_the_prompt(domain: str, rid: str) -> None:
    english = build_instructions(load_record(rid, data_dir=EVA_DIR, domain=domain))
    assert "Always respond to the user in" not in english
    rec = load_record(rid, data_dir=EVA_DIR, domain=domain, language="fr")
    french = build_instructions(rec)
    addendum = language_addendum("fr")
    assert addendum is not None
    # appended to the agent's instructions after a blank line, inside EVA's prompt template
    assert f"{rec.agent.raw['instructions']}\n\n{addendum}" in french
    assert not french.startswith(addendum) and not french.endswith(addendum)


def test_language_addendum_with_hydralabs_own_template() -> None:
    rec = load_record()  # hydralab's packaged airline record (its own template)
    assert rec.prompt_template is None and rec.aliases_dir is None
    assert "Always respond" not in build_instructions(rec)
