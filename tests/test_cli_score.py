"""``hydralab score RUN_DIR`` and the ``--eva-dir`` alias (no conversation is run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hydralab.cli import _data_dir, _parser, _tool_kwargs, main
from hydralab.records import DEFAULT_DATA_DIR, load_record, record_meta
from hydralab.scoring import EVA_CODE_METRICS, EXPECTED_DB_FILE, SCORES_FILE, score_run
from hydralab.tools import ToolExecutor


def _entry(kind: str, value: Any, t_ms: int) -> dict[str, Any]:
    return {"value": value, "timestamp": str(t_ms), "message_type": kind}


def _record_dir(run: Path, record_id: str, *, skip_tool: str | None = None) -> Path:
    """A record directory as a run leaves it: the reference trace replayed through the tools."""
    record = load_record(record_id)
    ex = ToolExecutor.for_record(record)
    audit, t = [], 1_000
    for event in record.trace:
        t += 5
        kind = event["event_type"]
        if kind in ("user_utterance", "agent_utterance"):
            audit.append(_entry(kind.split("_")[0].replace("agent", "assistant"), "…", t))
        elif kind == "tool_call" and event["tool_name"] != skip_tool:
            name, params = event["tool_name"], event["params"]
            audit.append(_entry("tool_call", {"tool": name, "parameters": params}, t))
            response = ex.execute(name, params)
            audit.append(_entry("tool_response", {"tool": name, "response": response}, t))
    path = run / "records" / record_id
    path.mkdir(parents=True)
    (path / "audit_log.json").write_text(json.dumps({"transcript": audit}))
    (path / "final_scenario_db.json").write_text(json.dumps(ex.db))
    (path / EXPECTED_DB_FILE).write_text(json.dumps(record.expected_db))
    (path / "run.json").write_text(json.dumps({"record": record_meta(record)}))
    rows = [{"type": "LatencyMetric", "stage": "model_response", "value": 0.61}]
    (path / "pipecat_metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    return path


def test_score_a_whole_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _record_dir(tmp_path, "HL-AIR-001")
    bad = _record_dir(tmp_path, "HL-AIR-003", skip_tool="issue_travel_credit")
    assert main(["score", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:8] == ["record", "user", "asst", "tools", "task", "auth", "valid", "p50"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["HL-AIR-001"][1:8] == ["4", "5", "4", "1.0", "1", "1.00", "610"]
    assert rows["HL-AIR-003"][1:8] == ["3", "3", "2", "0.0", "1", "1.00", "610"]
    assert json.loads((good / SCORES_FILE).read_text())["task_completion"] == 1.0
    scores = json.loads((bad / SCORES_FILE).read_text())
    assert scores["task_completion"] == 0.0
    assert "travel_credits" in scores["db_diff"]["tables_modified"]


def test_score_one_record_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = _record_dir(tmp_path, "HL-AIR-002")
    assert main(["score", "--no-write", str(record)]) == 0
    assert "HL-AIR-002" in capsys.readouterr().out
    assert not (record / SCORES_FILE).exists()


def test_score_nothing_to_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", str(tmp_path)]) == 1
    assert "no record directories" in capsys.readouterr().err


def test_score_broken_record_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = _record_dir(tmp_path, "HL-AIR-002")
    (record / "final_scenario_db.json").unlink()
    assert main(["score", str(record)]) == 1
    assert "missing final_scenario_db.json" in capsys.readouterr().err


def test_eva_dir_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --eva-dir is where the records come from too, unless --data-dir says otherwise
    args = _parser().parse_args(["run", "--eva-dir", "../shared/eva", "--record", "1.1.2"])
    assert (_data_dir(args), args.eva_dir) == ("../shared/eva", "../shared/eva")
    assert args.record == "1.1.2"
    assert _tool_kwargs(args)["eva_dir"] == "../shared/eva" and args.tools == "auto"
    both = _parser().parse_args(["run", "--data-dir", "x", "--eva-dir", "../eva"])
    assert (_data_dir(both), both.eva_dir) == ("x", "../eva")
    assert _parser().parse_args(["run", "--data-dir", "x"]).data_dir == "x"
    shutil.copytree(DEFAULT_DATA_DIR / "airline", tmp_path / "airline")
    assert main(["records", "--eva-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == ["HL-AIR-001", "HL-AIR-002", "HL-AIR-003"]
    assert main(["run", "--eva-dir", str(tmp_path), "--record", "NOPE-9"]) == 1
    err = capsys.readouterr().err
    assert "record 'NOPE-9' not found" in err and "HL-AIR-001" in err


def test_rescoring_keeps_the_measured_user_wer(tmp_path: Path) -> None:
    src = Path(__file__).parent / "fixtures" / "run_HL-AIR-002"
    dst = tmp_path / "rec"
    shutil.copytree(src, dst)
    meta = json.loads((dst / "run.json").read_text())
    meta["stt"] = {"provider": "local", "wer": {"wer": 0.25, "errors": 3, "words": 12}}
    (dst / "run.json").write_text(json.dumps(meta))
    scores = score_run(dst)
    assert scores["user_wer"] == 0.25
    assert scores["user_wer_detail"]["provider"] == "local"
    assert json.loads((dst / "scores.json").read_text())["user_wer"] == 0.25


def _real_run(tmp_path: Path) -> Path:
    """A copy of a real run's record directory (HL-AIR-002, with a barge-in in turn 2)."""
    dst = tmp_path / "run" / "records" / "HL-AIR-002"
    shutil.copytree(Path(__file__).parent / "fixtures" / "run_HL-AIR-002", dst)
    return dst


def test_score_writes_evas_code_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = _real_run(tmp_path)
    assert main(["score", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:7] == [
        "HL-AIR-002", "3", "4", "2", "1.0", "1", "1.00"
    ]  # fmt: skip
    scores = json.loads((record / SCORES_FILE).read_text())
    assert list(scores["metrics"]) == list(EVA_CODE_METRICS)
    assert scores["conversation_valid_end"] == 1.0  # the caller said goodbye
    assert scores["conversation_correctly_finished"] == 1.0
    assert scores["conversation_completed_on_time"] == 1.0
    auth = scores["metrics"]["authentication_success"]["sub_metrics"]
    assert set(auth) == {"auth_first_try_success", "num_auth_calls", "authentication_success_rate"}
    # The caller cut in on turn 2 and the agent answered over the caller's words; with no
    # assistant_speech lines in this run's events, the caller's last line stays in turn 2 (as in
    # EVA's processor: nothing shows the agent spoke between the two user sessions).
    tt = scores["metrics"]["turn_taking"]["details"]
    assert tt["per_turn_reason"] == {"1": "latency", "2": "dual_interrupt"}
    assert tt["per_turn_evidence"]["2"]["overlap_ms"] == pytest.approx(2585.511, abs=0.01)
    assert tt["per_turn_evidence"]["2"]["yield_ms"] == pytest.approx(229.598, abs=0.01)
    assert scores["turn_taking"] == 0.5
    assert scores["response_speed"] == 1.567  # turn 2's answer began before the caller ended


def test_assistant_speech_lines_close_the_agents_turn(tmp_path: Path) -> None:
    record = _real_run(tmp_path)
    events = record / "user_simulator_events.jsonl"
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    heard = {"type": "assistant_speech", "data": {"text": "Flight twelve oh seven is delayed."}}
    at = next(i for i, r in enumerate(rows) if r.get("timestamp") == 1795636931762)  # agent ends
    rows.insert(at + 1, {"timestamp": 1795636931762, **heard})
    events.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tt = score_run(record, write=False)["metrics"]["turn_taking"]
    # the caller's "that's all I needed" now opens turn 3, answered 1.17 s later
    assert tt["details"]["per_turn_reason"] == {1: "latency", 2: "dual_interrupt", 3: "latency"}
    assert tt["details"]["per_turn_evidence"][3]["latency_ms"] == pytest.approx(1174.118, abs=0.01)
    assert tt["score"] == round((1.0 + 0.0 + 1.0) / 3, 4)


# ---------------------------------------------------------------- a run killed mid-call

_END_FILES = (
    "run.json",
    "result.json",
    "scores.json",
    "audit_log.json",
    "transcript.jsonl",
    "initial_scenario_db.json",
    "final_scenario_db.json",
    EXPECTED_DB_FILE,
    "pipecat_metrics.jsonl",
    "framework_logs.jsonl",
    "user_simulator_events.jsonl",
    "logs.log",
    "audio_user_clean.wav",
)


def _kill_leftovers(record: Path) -> None:
    """Leave ``record`` as a SIGKILL mid-call does: only ``events.jsonl`` (its last line torn)
    and the streamed WAVs (one cut mid-sample, the headers behind their data)."""
    for name in _END_FILES:
        (record / name).unlink(missing_ok=True)
    events = record / "events.jsonl"
    events.write_bytes(events.read_bytes() + b'{"t_ms": 17956369, "src": "hyd')
    for name in ("audio_user.wav", "audio_assistant.wav", "audio_mixed.wav"):
        path = record / name
        if path.is_file():
            data = bytearray(path.read_bytes())
            data[4:8] = data[40:44] = (0).to_bytes(4, "little")  # never committed
            path.write_bytes(bytes(data[:-1]))  # killed in the middle of a sample


def test_score_a_run_killed_mid_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A record directory holding only events.jsonl and the WAVs is found and scored with what
    can be rebuilt; what cannot be is named in scores.json, and nothing raises."""
    from hydralab.sim import simulate_record

    done = simulate_record("HL-AIR-001", out_dir=tmp_path / "runs", run_id="r1")
    full = json.loads((done.run_dir / SCORES_FILE).read_text())
    _kill_leftovers(done.run_dir)
    assert main(["score", str(tmp_path / "runs" / "r1")]) == 0
    out = capsys.readouterr().out.splitlines()
    row = out[1].split()
    assert row[0] == "HL-AIR-001" and row[-1] == str(done.run_dir)
    scores = json.loads((done.run_dir / SCORES_FILE).read_text())
    partial = scores["partial"]
    assert "run.json" in partial["missing_files"] and "audit_log.json" in partial["missing_files"]
    assert "audio_user.wav" not in partial["missing_files"]
    assert set(partial["rebuilt"]) == {
        "audit_log",
        "expected_db",
        "final_scenario_db",
        "pipecat_metrics",
    }
    # the DB is rebuilt by replaying the logged tool calls: the task scores as it did
    assert scores["task_completion"] == full["task_completion"] == 1.0
    assert scores["authentication_success"] == full["authentication_success"]
    assert scores["tool_call_validity"] == full["tool_call_validity"]
    assert scores["turns"] == full["turns"]
    assert scores["latency"]["model_response"]["n"] == full["latency"]["model_response"]["n"]
    assert scores["latency"]["model_response"]["p50_ms"] == pytest.approx(
        full["latency"]["model_response"]["p50_ms"], abs=0.01
    )
    # what needs the caller's events file or the ending is named, not guessed
    assert set(partial["not_computable"]) == {
        "response_speed",
        "turn_taking",
        "conversation_valid_end",
        "conversation_correctly_finished",
        "conversation_completed_on_time",
    }
    for name in partial["not_computable"]:
        metric = scores["metrics"][name]
        assert metric["score"] is None and metric["error"].startswith("not computable")
        assert scores[name] is None
    # the recordings were repaired: valid WAVs with every whole sample written
    from hydralab.audio import read_wav

    for name, info in partial["recordings"].items():
        assert info["repaired"] is True and info["frames"] > 48000
        assert read_wav(done.run_dir / name)[0].size == info["frames"]
    # scoring again is stable (the WAVs need no more repair)
    again = score_run(done.run_dir)
    assert all(not r["repaired"] for r in again["partial"]["recordings"].values())
    assert again["task_completion"] == 1.0


def test_score_a_killed_run_of_an_unknown_record(tmp_path: Path) -> None:
    """No record to load the databases from: the DB metrics are not computable (task 0.0),
    the rest still scores."""
    src = Path(__file__).parent / "fixtures" / "run_HL-AIR-002"
    record = tmp_path / "call-0001"
    shutil.copytree(src, record)
    _kill_leftovers(record)
    scores = score_run(record, write=False)
    assert not (record / SCORES_FILE).exists()
    partial = scores["partial"]
    assert {"task_completion", "authentication_success"} <= set(partial["not_computable"])
    assert scores["task_completion"] == 0.0 and scores["authentication_success"] is None
    assert scores["db_match"] is None
    assert any("not loadable" in p for p in partial["problems"])
    assert scores["turns"]["tool_calls"] == 2 and scores["tool_call_validity"] == 1.0
    user = partial["recordings"]["audio_user.wav"]
    assert user["frames"] > 0 and user["needs_repair"] is True  # looked at, not repaired
