"""End to end: a real offline conversation over real sockets on 127.0.0.1.

caller (Twilio client) → bridge (Twilio server + Hydra client) → emulator (Hydra server) and back,
in real time, for hydralab's default record. One conversation is shared by the module's tests.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from needs import needs_speech

from hydralab.audio import read_wav
from hydralab.emulator import EmulatorConfig
from hydralab.records import load_record
from hydralab.runner import RUN_FILES, RunResult, run_record_sync
from hydralab.scoring import dbs_equal
from hydralab.script import script_from_record

pytestmark = [pytest.mark.e2e, needs_speech]

KEY = "sk-hydralab-test-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("SMALLEST_API_KEY", KEY)
    handler = _Capture()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        # The emulator demands the key at the upgrade, so it really travels on the wire.
        result = run_record_sync(
            None, out_dir=out, run_id="e2e", emulator_config=EmulatorConfig(expected_api_key=KEY)
        )
    finally:
        logging.getLogger().removeHandler(handler)
        mp.undo()
    return {"result": result, "logs": handler.text}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += self.format(record) + "\n"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_call_completes(run: dict[str, Any]) -> None:
    result: RunResult = run["result"]
    assert result.error is None, result.error
    assert result.ended_reason == "goodbye"
    assert result.caller is not None and result.caller.ended_reason == "goodbye"
    # the truthful verdict: the whole script played, every user turn answered and heard
    assert result.completed, result.not_completed
    files = _json(result.run_dir / "result.json")
    assert files["completed"] is True and files["error_details"] is None
    meta = _json(result.run_dir / "run.json")
    assert meta["verdict"] == {"completed": True, "not_completed": []}
    assert meta["refused_connections"] == []  # one caller, one conversation


def test_every_scripted_assistant_turn_reached_the_caller(run: dict[str, Any]) -> None:
    result: RunResult = run["result"]
    script = script_from_record(load_record())
    assert result.caller is not None
    got = result.caller.assistant_turns
    assert len(got) == len(script.assistant_turns)
    for turn in got:
        assert turn.frames > 10, turn
        assert turn.rms_dbfs is not None and turn.rms_dbfs > -40.0, turn
        assert turn.ended_by == "mark", turn
    assert len(result.turns) == len(script.assistant_turns)
    assert all(t["status"] == "completed" for t in result.turns)


def test_tools_ran_and_final_db_matches_expected(run: dict[str, Any]) -> None:
    result: RunResult = run["result"]
    rec = load_record()
    expected_tools = [e["tool_name"] for e in rec.trace if e["event_type"] == "tool_call"]
    assert result.tools_called == expected_tools
    final = _json(result.run_dir / "final_scenario_db.json")
    assert dbs_equal(rec.expected_db, final)
    assert result.scores["task_completion"] == 1.0
    assert result.scores["authentication_success"] is True


def test_audit_log_in_time_order(run: dict[str, Any]) -> None:
    result: RunResult = run["result"]
    audit = _json(result.run_dir / "audit_log.json")
    entries = audit["transcript"]
    stamps = [int(e["timestamp"]) for e in entries]
    assert stamps == sorted(stamps)
    kinds = {e["message_type"] for e in entries}
    assert {"user", "assistant", "tool_call", "tool_response"} <= kinds
    rec = load_record()
    users = [e for e in entries if e["message_type"] == "user"]
    assert len(users) == sum(e["event_type"] == "user_utterance" for e in rec.trace)
    # every tool_call is followed by its tool_response
    calls = [e for e in entries if e["message_type"] in ("tool_call", "tool_response")]
    assert [e["message_type"] for e in calls] == ["tool_call", "tool_response"] * (len(calls) // 2)
    lines = (result.run_dir / "transcript.jsonl").read_text().splitlines()
    assert len(lines) == len([e for e in entries if e["message_type"] in ("user", "assistant")])


def test_model_response_latency_on_every_non_greeting_turn(run: dict[str, Any]) -> None:
    result: RunResult = run["result"]
    for t in result.turns[1:]:
        assert t["model_response_ms"] is not None, t
        assert 50.0 <= t["model_response_ms"] <= 30_000.0
    assert result.turns[0]["model_response_ms"] is None
    lines = (result.run_dir / "pipecat_metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(x) for x in lines]
    lat = [m for m in metrics if m["type"] == "LatencyMetric"]
    assert len(lat) == len(result.turns) - 1
    assert all(m["stage"] == "model_response" and 0.05 <= m["value"] < 30 for m in lat)
    assert any(m["type"] == "LLMTokenUsageMetricsData" for m in metrics)


def _rms_dbfs(x: np.ndarray) -> float:
    if x.size == 0:
        return -120.0
    r = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return 20 * np.log10(max(r, 1e-9) / 32768.0)


def test_wavs_are_48k_and_have_sound_where_each_side_spoke(run: dict[str, Any]) -> None:
    result: RunResult = run["result"]
    meta = _json(result.run_dir / "run.json")
    t0 = meta["timeline"]["t0_epoch_ms"]
    tracks = {}
    for name in ("audio_user.wav", "audio_assistant.wav", "audio_mixed.wav"):
        pcm, rate = read_wav(result.run_dir / name)
        assert rate == 48000
        tracks[name] = pcm
    assert len({len(p) for p in tracks.values()}) == 1

    def span(track: str, start_ms: int, dur_ms: int) -> np.ndarray:
        i = int((start_ms - t0) * 48)
        return tracks[track][i : i + dur_ms * 48]

    # frames a late pacer sent back to back are recorded back to back, up to this far ahead of
    # their send time (what the caller's jitter buffer would still be playing)
    lead_ms = int(meta["bridge"]["pacer"]["max_lead_ms"]) + 1
    for u in result.user_utterances:
        assert u["stop_epoch_ms"] - u["start_epoch_ms"] > 300
        seg = span("audio_user.wav", u["start_epoch_ms"], u["stop_epoch_ms"] - u["start_epoch_ms"])
        assert _rms_dbfs(seg) > -35.0, u
        # the model was silent while the caller spoke
        quiet = span("audio_assistant.wav", u["start_epoch_ms"] + 100 + lead_ms, 300)
        assert _rms_dbfs(quiet) < -60.0
    for t in result.turns:
        seg = span("audio_assistant.wav", t["first_played_epoch_ms"], 500)
        assert _rms_dbfs(seg) > -35.0, t
        # before the turn's first played frame the assistant track is silent
        assert _rms_dbfs(span("audio_assistant.wav", t["first_played_epoch_ms"] - 200, 150)) < -60


def test_run_directory_is_complete_and_never_holds_the_key(run: dict[str, Any]) -> None:
    result: RunResult = run["result"]
    assert result.run_dir.parent.name == "records"  # EVA's <run_dir>/records/<record_id>/
    assert (result.run_dir.parent.parent / "config.json").is_file()
    names = {p.name for p in result.run_dir.iterdir()}
    assert names >= RUN_FILES
    for p in result.run_dir.rglob("*"):
        if p.is_file():
            assert KEY.encode() not in p.read_bytes(), p
    assert KEY not in run["logs"]
    assert KEY not in repr(result) and KEY not in result.summary()
    events = (result.run_dir / "events.jsonl").read_text().splitlines()
    assert any('"session.configure"' in e for e in events)
    last = json.loads((result.run_dir / "user_simulator_events.jsonl").read_text().splitlines()[-1])
    assert last["type"] == "connection_state" and last["data"]["state"] == "session_ended"
    assert last["data"]["details"]["reason"] == "goodbye"
