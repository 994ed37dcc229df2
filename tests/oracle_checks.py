"""What an oracle run of a shared EVA record must show, for every domain and tool code.

An oracle run: the emulator follows the record's reference trace, the bridge executes its tool
calls (EVA's own tool code, or hydralab's airline tools), so the final DB must equal the
record's ``expected_scenario_db`` and every EVA code metric that can be 1 is 1. Shared by
``test_eva_oracle.py`` (airline, both tool codes) and ``test_eva_domains_oracle.py`` (itsm and
medical_hr, EVA's code), which run in parallel test workers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from needs import needs_speech

from hydralab.records import Record, list_records
from hydralab.runner import RunResult

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
EVA_DATA = (EVA_DIR / "data").is_dir()

F = TypeVar("F", bound=Callable[..., Any])


def domain_records(domain: str) -> list[str]:
    """The shared records of ``domain`` (empty without the shared EVA data)."""
    return list_records(EVA_DIR, domain=domain) if EVA_DATA else []


def real_calls(test: F) -> F:
    """Marks of the tests that hold (simulated) conversations with the shared EVA records."""
    for mark in (
        needs_speech,
        pytest.mark.skipif(not EVA_DATA, reason="shared EVA data not present"),
    ):
        test = mark(test)
    return test


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_oracle_run(result: RunResult, record: Record, *, tools: str) -> None:
    """The conversation ended well, called the trace's tools and scored as an oracle run."""
    assert result.error is None, result.error
    assert result.ended_reason == "goodbye"
    assert result.completed, result.not_completed
    expected_tools = [e["tool_name"] for e in record.trace if e["event_type"] == "tool_call"]
    assert result.tools_called == expected_tools
    scores = result.scores
    assert scores["task_completion"] == 1.0, scores["db_diff"]
    assert scores["authentication_success"] is True
    assert scores["tool_call_validity"] == 1.0
    domain_rule = scores["metrics"]["tool_call_validity"]["sub_metrics"].get("domain_rule")
    assert domain_rule is None or domain_rule["score"] == 1.0
    assert scores["conversation_valid_end"] == 1.0
    assert scores["conversation_correctly_finished"] == 1.0
    assert scores["conversation_completed_on_time"] == 1.0
    assert scores["turns"]["tool_calls"] == len(expected_tools)
    assert scores["turns"]["user"] == len(result.user_utterances)
    assert scores["latency"]["model_response"]["n"] >= 1
    assert _json(result.run_dir / "scores.json") == json.loads(json.dumps(scores))
    run = _json(result.run_dir / "run.json")
    assert run["tools"]["backend"] == tools
    assert run["tools"]["calls"] == {
        name: expected_tools.count(name) for name in dict.fromkeys(expected_tools)
    }
    if tools == "eva":
        assert run["tools"]["eva_dir"] == str(EVA_DIR.resolve())
        assert set(run["tools"]["files"]) == {
            f"{record.domain}_tools.py",
            f"{record.domain}_params.py",
        }
    assert result.conditions["tools_backend"] == tools


def check_eva_run_directory(result: RunResult, record: Record) -> None:
    """The run directory is what EVA's metrics runner reads (layout, config, result, events)."""
    record_id = record.id
    run_root = result.run_dir.parent.parent
    assert result.run_dir == run_root / "records" / record_id  # EVA's <run_dir>/records/<id>/
    config = _json(run_root / "config.json")
    assert config["model"]["s2s"] == "hydra-emulator"  # truthful: the emulator answered
    assert config["model"]["s2s_params"]["api_key"] == "***"  # EVA wants one; never the key
    assert config["model"]["s2s_params"]["model"] == "hydra-v1.1"
    assert config["model_list"] and config["model_list"][0]["model_name"] == "hydra-v1.1"
    assert config["agent_config_path"] == f"configs/agents/{record.domain}_agent.yaml"
    assert (EVA_DIR / config["agent_config_path"]).is_file()
    assert (config["domain"], config["language"]) == (record.domain, "en")
    budget = _json(result.run_dir / "run.json")["configure_budget"]
    assert config["hydralab"]["configure_mode"] == budget["mode"]
    assert config["hydralab"]["standard_conditions"] == budget["standard"]
    res = _json(result.run_dir / "result.json")
    for key in ("record_id", "completed", "started_at", "ended_at", "duration_seconds"):
        assert res[key] is not None, key
    assert res["record_id"] == record_id and res["completed"] is True
    assert res["output_dir"] == str(result.run_dir)
    assert res["llm_latency"] is None and res["model_response_latency"]["total_calls"] >= 1
    assert res["conversation_ended_reason"] == "goodbye"
    audit = _json(result.run_dir / "audit_log.json")["transcript"]
    assert res["num_turns"] == sum(e["message_type"] == "user" for e in audit)
    called = [e["value"]["tool"] for e in audit if e["message_type"] == "tool_call"]
    assert res["tools_called"] == list(dict.fromkeys(called))  # first-call order
    assert res["audio_user_path"].endswith("audio_user_clean.wav")
    for key in ("audio_user_path", "audio_assistant_path", "conversation_log_path"):
        assert Path(res[key]).is_file(), key
    events = _jsonl(result.run_dir / "user_simulator_events.jsonl")
    # S2S: EVA takes the assistant's turns from assistant_speech, with what was heard
    said = [e["data"]["text"] for e in events if e.get("type") == "assistant_speech"]
    bot = [e["value"] for e in audit if e["message_type"] == "assistant"]
    assert said and said == bot[: len(said)], (said, bot)
    marks = {(e.get("event_type"), e.get("user")) for e in events}
    assert {("audio_start", "simulated_user"), ("audio_end", "simulated_user")} <= marks
    assert {("audio_start", "assistant"), ("audio_end", "assistant")} <= marks
    assert events[-1]["type"] == "connection_state"
    assert events[-1]["data"] == {"state": "session_ended", "details": {"reason": "goodbye"}}
    assert _json(result.run_dir / "expected_scenario_db.json") == json.loads(
        json.dumps(record.expected_db)
    )
