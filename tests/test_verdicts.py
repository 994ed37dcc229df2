"""A truthful ``completed``: ``result.json["completed"]`` (with the reasons in
``error_details["not_completed"]``) and ``run.json["verdict"]`` say whether the whole
conversation happened — the bridge ended ``goodbye`` with no error, every tool call got a usable
result that reached the model, hydralab's caller played its whole script, and every user
utterance was answered by an assistant turn the caller heard. Calls in virtual time
(:func:`hydralab.sim.simulate_record`); ``hydralab run`` exits 1 when a call did not complete."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fidelity_cases import short_tool_script
from needs import needs_speech

from hydralab import sim as sim_mod
from hydralab.bridge import BridgeConfig
from hydralab.cli import main
from hydralab.emulator import EmulatorConfig
from hydralab.emulator.core import EmulatorFaults
from hydralab.runner import RunResult, call_verdict
from hydralab.script import Speak, script_from_lines
from hydralab.sim import Simulation, simulate_record
from hydralab.tools import ToolExecutor

GREETING = "Hello! Thanks for calling SkyWay. How can I help you today?"
RES = {"confirmation_number": "HT4KWB", "last_name": "brooks"}


def _files(res: RunResult) -> tuple[dict[str, Any], dict[str, Any]]:
    result = json.loads((res.run_dir / "result.json").read_text())
    meta = json.loads((res.run_dir / "run.json").read_text())
    return result, meta


def _check_consistent(res: RunResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """result.json, run.json and the RunResult say the same thing."""
    result, meta = _files(res)
    assert result["completed"] is res.completed
    assert meta["verdict"] == {"completed": res.completed, "not_completed": res.not_completed}
    if res.completed:
        assert res.not_completed == [] and result["error_details"] is None
    else:
        assert res.not_completed and result["error_details"]["not_completed"] == res.not_completed
        assert all(isinstance(w, str) and 0 < len(w) < 300 for w in res.not_completed)
    return result, meta


@needs_speech
def test_verdict_normal_call_is_completed(tmp_path: Path) -> None:
    res = simulate_record(None, out_dir=tmp_path, run_id="ok", transcriber=None)
    result, _ = _check_consistent(res)
    assert res.completed is True and result["completed"] is True
    assert result["conversation_ended_reason"] == "goodbye"
    assert "verdict: completed" in res.summary()


@needs_speech
def test_verdict_model_that_never_answers_is_not_completed(tmp_path: Path) -> None:
    """The model hears user turn 1 and never answers. Before: the caller's own 45 s turn
    timeout sent ``stop``, the bridge ended ``goodbye`` and the call counted as completed."""
    cfg = EmulatorConfig.live(faults=EmulatorFaults(unanswered_turns=frozenset({2})))
    res = simulate_record(None, out_dir=tmp_path, run_id="mute", emulator_config=cfg)
    assert res.ended_reason == "goodbye" and res.error is None  # what fooled the old verdict
    assert res.caller is not None and res.caller.ended_reason == "timeout"
    result, _ = _check_consistent(res)
    assert result["completed"] is False
    assert res.not_completed == [
        "caller timed out waiting for assistant turn 2",
        "caller sent 2 of 4 user turns",
        "user turn 1: no answer heard",
    ]
    assert "verdict: not completed" in res.summary()
    truths = res.simulation.emulator_sessions[0].kinds() if res.simulation else []
    assert "user_turn_unanswered" in truths


@needs_speech
def test_verdict_internal_error_after_speech_stopped_without_reconnect(tmp_path: Path) -> None:
    faults = EmulatorFaults(internal_error_at_speech_stopped=frozenset({1}))
    res = simulate_record(
        None,
        out_dir=tmp_path,
        run_id="ie",
        emulator_config=EmulatorConfig.live(faults=faults),
        bridge_config=BridgeConfig(max_reconnects=0),
    )
    result, meta = _check_consistent(res)
    assert result["completed"] is False
    assert result["conversation_ended_reason"] == "model_disconnected"
    assert res.not_completed[0] == "call ended: model_disconnected"
    assert "user turn 0: no answer heard" in res.not_completed
    assert any(w.startswith("caller ") for w in res.not_completed)
    assert [e["code"] for e in meta["errors"]] == ["internal_error"]
    events = [json.loads(x) for x in (res.run_dir / "events.jsonl").read_text().splitlines()]
    stopped = [i for i, e in enumerate(events) if "speech_stopped" in str(e["frame"].get("type"))]
    error = [i for i, e in enumerate(events) if e["frame"].get("type") == "error"]
    assert stopped and error and stopped[0] < error[0]  # right after the user's first turn


def _object_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model sends ``response.function_call_arguments.done`` with ``arguments`` as a JSON
    object instead of its text (the bridge receives it so)."""
    original = Simulation._model_frame

    def patched(self: Simulation, client: Any, frame: str, t_ns: int) -> None:
        d = json.loads(frame)
        if d.get("type") == "response.function_call_arguments.done":
            d["arguments"] = json.loads(d["arguments"])
            frame = json.dumps(d)
        original(self, client, frame, t_ns)

    monkeypatch.setattr(Simulation, "_model_frame", patched)


def _tool_entries(res: RunResult) -> list[dict[str, Any]]:
    audit = json.loads((res.run_dir / "audit_log.json").read_text())
    return [e for e in audit["transcript"] if e["message_type"] in ("tool_call", "tool_response")]


@needs_speech
def test_verdict_tool_arguments_as_an_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completed only if the call was answered with a usable result that reached the model."""
    _object_arguments(monkeypatch)
    res = simulate_record(None, out_dir=tmp_path, run_id="obj", script=short_tool_script())
    _check_consistent(res)
    entries = _tool_entries(res)
    responses = [e["value"]["response"] for e in entries if e["message_type"] == "tool_response"]
    answered = bool(responses) and all(r.get("status") == "success" for r in responses)
    if not answered:  # the call never ran, or ran into an error: never completed
        assert res.completed is False, res.not_completed
    if res.completed:
        assert answered and res.tools_called == ["get_reservation"]
        assert not res.session and res.simulation is not None
        assert res.simulation.tool_outputs_lost == []


@needs_speech
def test_verdict_failed_tool_result_is_not_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Object arguments and a tool that could not run: the model narrates on, the caller hears
    every turn, the call ends ``goodbye`` — and it is not completed."""
    _object_arguments(monkeypatch)

    def broken(self: ToolExecutor, name: str, params: Any) -> dict[str, Any]:
        msg = f"Tool {name} failed: RuntimeError: database down"
        return {"status": "error", "error_type": "execution_error", "message": msg}

    monkeypatch.setattr(ToolExecutor, "execute", broken)
    res = simulate_record(None, out_dir=tmp_path, run_id="bad", script=short_tool_script())
    assert res.ended_reason == "goodbye" and res.error is None
    assert res.caller is not None and res.caller.ended_reason == "goodbye"
    result, _ = _check_consistent(res)
    assert result["completed"] is False
    assert "tool get_reservation failed: execution_error" in res.not_completed


def _session(**kw: Any) -> Any:
    base: dict[str, Any] = {"ended_reason": "goodbye", "error": None, "tool_outputs_lost": []}
    return SimpleNamespace(**{**base, **kw})


def _summary(users: list[int], turns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "user_utterances": [{"index": i, "start_epoch_ms": t} for i, t in enumerate(users)],
        "turns": turns,
    }


def _turn(index: int, at: int | None, status: str = "completed", **kw: Any) -> dict[str, Any]:
    row = {"index": index, "first_played_epoch_ms": at, "status": status, "played_ms": 900.0}
    return {**row, "kind": "greeting" if index == 0 else "plain", "status_reason": None, **kw}


def test_verdict_rules_lost_output_barge_in_and_unplayed_answers() -> None:
    script = script_from_lines(GREETING, ["a", "b"], [(Speak("x"),), (Speak("y"),)])
    turns = [_turn(0, 100), _turn(1, 1500), _turn(2, 3000)]
    audit = {"transcript": []}
    assert call_verdict(_session(), _summary([1000, 2000], turns), None, script, audit) == []
    lost = [{"call_id": "c1", "tool": "get_reservation", "error": "closed"}]
    why = call_verdict(_session(tool_outputs_lost=lost), _summary([], []), None, script, audit)
    assert why == ["tool output lost: get_reservation (call c1)"]
    # cut by the caller's next utterance (a barge-in): answered; cut by the end: not
    barged = [_turn(0, 100), _turn(1, 1500, "interrupted"), _turn(2, 3000, "interrupted")]
    why = call_verdict(_session(), _summary([1000, 2000], barged), None, script, audit)
    assert why == ["user turn 1: its answer (turn 2) interrupted"]
    # an answer that failed, or never played a sample, answers nothing
    bad = [_turn(0, 100), _turn(1, 1500, "failed", status_reason="tool_response_timeout")]
    bad.append(_turn(2, None, "failed"))
    why = call_verdict(_session(), _summary([1000, 2000], bad), None, script, audit)
    assert why == [
        "user turn 0: its answer (turn 1) failed (tool_response_timeout)",
        "user turn 1: no answer heard",
    ]
    # the greeting answers nobody, even when it plays after the caller began
    late = [_turn(0, 1200), _turn(1, 2500)]
    why = call_verdict(_session(), _summary([1000, 2000], late), None, script, audit)
    assert why == ["user turn 0: no answer heard"]
    # a tool call without a result, and one whose arguments were unusable
    calls = {
        "transcript": [
            {"message_type": "tool_call", "value": {"tool": "t1", "parameters": {}}},
            {"message_type": "tool_call", "value": {"tool": "t2", "parameters": {"_raw": "{"}}},
            {"message_type": "tool_response", "value": {"tool": "t2", "response": {}}},
        ]
    }
    why = call_verdict(_session(), _summary([], []), None, script, calls)
    assert why == ["tool t2: arguments unusable", "tool t1: 1 call(s) got no result"]


@needs_speech
def test_verdict_cli_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hydralab run`` exits 0 for a completed call and 1 for one that was not."""
    argv = ["run", "--simulate", "--stt", "none", "--out", str(tmp_path)]
    assert main([*argv, "--run-id", "fine"]) == 0
    assert "verdict: completed" in capsys.readouterr().out
    original = sim_mod.simulate_record
    mute = EmulatorConfig.live(faults=EmulatorFaults(unanswered_turns=frozenset({1})))

    def never_answers(*args: Any, **kw: Any) -> RunResult:
        return original(*args, **{**kw, "emulator_config": mute})

    monkeypatch.setattr(sim_mod, "simulate_record", never_answers)
    assert main([*argv, "--run-id", "mute"]) == 1
    out = capsys.readouterr().out
    assert "verdict: not completed" in out and "user turn 0: no answer heard" in out
    result = json.loads((tmp_path / "mute" / "records" / "HL-AIR-001" / "result.json").read_text())
    assert result["completed"] is False and result["conversation_ended_reason"] == "goodbye"


def test_verdict_cli_exit_code_over_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The socket path reads the same verdict (the call itself is faked here)."""
    import hydralab.runner as runner_mod

    outcome = {"completed": False}

    async def fake_run_record(*args: Any, **kw: Any) -> Any:
        assert kw["interrupt"] is not None  # signals end the call, they do not kill it
        done = outcome["completed"]
        return SimpleNamespace(completed=done, summary=lambda: f"fake: completed={done}")

    monkeypatch.setattr(runner_mod, "run_record", fake_run_record)
    assert main(["run", "--out", str(tmp_path), "--stt", "none"]) == 1
    outcome["completed"] = True
    assert main(["run", "--out", str(tmp_path), "--stt", "none"]) == 0
    assert "fake: completed=True" in capsys.readouterr().out
