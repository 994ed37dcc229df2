"""Oracle runs of shared EVA records: a real offline conversation per record, scored from disk.

The emulator follows the record's reference trace and the bridge executes its tool calls with
hydralab's tools, so the final DB must equal ``expected_scenario_db``: task_completion = 1.
Each conversation runs in real time (~40-60 s); two records are enough here (a rebooking with
four writes and reads, and a read-only transfer). Skipped when ``../shared/eva`` is absent.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from needs import needs_speech

from hydralab.cli import main
from hydralab.records import build_instructions, load_record
from hydralab.runner import RunResult, run_record

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
RECORDS = ("1.1.2", "7.2.8")

pytestmark = [
    pytest.mark.e2e,
    needs_speech,
    pytest.mark.skipif(not (EVA_DIR / "data").is_dir(), reason="shared EVA data not present"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    out = tmp_path_factory.mktemp("oracle")

    async def both() -> list[RunResult]:
        # Side by side: the calls are I/O-bound real-time conversations (halves the wall time).
        return await asyncio.gather(
            *(run_record(rid, data_dir=EVA_DIR, out_dir=out, run_id="oracle") for rid in RECORDS)
        )

    return dict(zip(RECORDS, asyncio.run(both()), strict=True))


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("record_id", RECORDS)
def test_oracle_run_completes_the_task(runs: dict[str, RunResult], record_id: str) -> None:
    result = runs[record_id]
    record = load_record(record_id, data_dir=EVA_DIR)
    assert result.error is None, result.error
    assert result.ended_reason == "goodbye"
    expected_tools = [e["tool_name"] for e in record.trace if e["event_type"] == "tool_call"]
    assert result.tools_called == expected_tools
    scores = result.scores
    assert scores["task_completion"] == 1.0, scores["db_diff"]
    assert scores["authentication_success"] is True
    assert scores["tool_call_validity"] == 1.0
    assert scores["turns"]["tool_calls"] == len(expected_tools)
    assert scores["turns"]["user"] == len(result.user_utterances)
    assert scores["latency"]["model_response"]["n"] >= 1
    assert _json(result.run_dir / "scores.json") == json.loads(json.dumps(scores))


@pytest.mark.parametrize("record_id", RECORDS)
def test_run_directory_is_what_eva_reads(runs: dict[str, RunResult], record_id: str) -> None:
    result = runs[record_id]
    run_root = result.run_dir.parent.parent
    assert result.run_dir == run_root / "records" / record_id  # EVA's <run_dir>/records/<id>/
    config = _json(run_root / "config.json")
    assert config["model"] == {"s2s": "hydra"}
    assert config["agent_config_path"] == "configs/agents/airline_agent.yaml"
    assert (EVA_DIR / config["agent_config_path"]).is_file()
    assert (config["domain"], config["language"]) == ("airline", "en")
    res = _json(result.run_dir / "result.json")
    for key in ("record_id", "completed", "started_at", "ended_at", "duration_seconds"):
        assert res[key] is not None, key
    assert res["record_id"] == record_id and res["completed"] is True
    assert res["output_dir"] == str(result.run_dir)
    assert res["llm_latency"] is None and res["model_response_latency"]["total_calls"] >= 1
    assert res["conversation_ended_reason"] == "goodbye"
    events = _jsonl(result.run_dir / "user_simulator_events.jsonl")
    marks = {(e.get("event_type"), e.get("user")) for e in events}
    assert {("audio_start", "simulated_user"), ("audio_end", "simulated_user")} <= marks
    assert {("audio_start", "assistant"), ("audio_end", "assistant")} <= marks
    assert events[-1]["type"] == "connection_state"
    assert events[-1]["data"] == {"state": "session_ended", "details": {"reason": "goodbye"}}
    assert _json(result.run_dir / "expected_scenario_db.json") == json.loads(
        json.dumps(load_record(record_id, data_dir=EVA_DIR).expected_db)
    )


def test_model_got_evas_realtime_prompt(runs: dict[str, RunResult]) -> None:
    result = runs["1.1.2"]
    configure = next(
        row["frame"]
        for row in _jsonl(result.run_dir / "events.jsonl")
        if row["frame"].get("type") == "session.configure"
    )
    instructions = configure["session"]["instructions"]
    assert instructions == build_instructions(load_record("1.1.2", data_dir=EVA_DIR))
    assert instructions.startswith("You are an AI voice assistant on a live phone call.")


def test_rescore_from_files_alone(
    runs: dict[str, RunResult], capsys: pytest.CaptureFixture[str]
) -> None:
    run_root = runs[RECORDS[0]].run_dir.parent.parent
    assert main(["score", "--no-write", str(run_root)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert sorted(line.split()[0] for line in lines) == sorted(RECORDS)
    for line in lines:
        assert line.split()[4:7] == ["1.0", "1", "1.00"], line
