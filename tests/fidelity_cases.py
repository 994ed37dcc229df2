"""Fidelity scenarios shared by the virtual-time tests (``test_sim_fidelity.py``) and the few
real-socket ones that prove the shells (``test_fidelity.py``): the scripts and the checks, so
both hold a run to the same standard."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from hydralab.audio import read_wav
from hydralab.runner import RunResult
from hydralab.script import CallTools, Script, Speak, ToolCall, script_from_lines

GREETING = "Hello! Thanks for calling SkyWay. How can I help you today?"
RES = {"confirmation_number": "HT4KWB", "last_name": "brooks"}


def script(users: list[str], answers: list[tuple[Any, ...]]) -> Script:
    return script_from_lines(GREETING, users, answers, record_id="HL-AIR-001")


def events(res: RunResult) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (res.run_dir / "events.jsonl").read_text().splitlines()]


def rms_dbfs(x: np.ndarray) -> float:
    r = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    return 20 * np.log10(max(r, 1e-9) / 32768.0)


def short_tool_script() -> Script:
    """Three turns, one with a tool call: a few seconds of call."""
    return script(
        ["My confirmation number is HT4KWB, last name Brooks.", "Thanks, bye."],
        [
            (
                Speak("One moment."),
                CallTools((ToolCall("get_reservation", RES),)),
                Speak("Found it."),
            ),
            (Speak("Goodbye."),),
        ],
    )


def tool_script() -> Script:
    """One tool turn: speech, three calls (one to a tool that does not exist), narration."""
    return script(
        ["My confirmation number is HT4KWB, last name Brooks.", "No, that is all. Goodbye."],
        [
            (
                Speak("One moment while I look that up."),
                CallTools(
                    (
                        ToolCall("get_reservation", RES),
                        ToolCall("no_such_tool", {"x": 1}),
                        ToolCall(
                            "get_flight_status", {"flight_number": "SK418", "date": "2026-05-08"}
                        ),
                    )
                ),
                Speak("Thanks, I found your booking."),
            ),
            (Speak("Have a great day."),),
        ],
    )


def barge_script() -> Script:
    """A long answer the caller cuts into (``CallerConfig(barge_in_after_ms={1: 1500})``)."""
    long = (
        "Let me walk you through everything about your trip in detail. "
        "Your flight leaves Denver in the morning and arrives in Seattle before noon. "
        "You have one checked bag, a window seat, and a meal request on file."
    )
    return script(
        ["Can you tell me about my flight?", "Sorry, stop. I only need the gate.", "Thanks, bye."],
        [(Speak(long),), (Speak("Your gate is B four."),), (Speak("Goodbye."),)],
    )


# ---------------------------------------------------------------- checks


def check_one_response_create_after_several_calls(res: RunResult) -> None:
    turn = res.turns[1]
    assert turn["kind"] == "tool" and turn["status"] == "completed"
    assert turn["tools"] == ["get_reservation", "no_such_tool", "get_flight_status"]
    out = [e for e in events(res) if e["src"] == "hydra" and e["dir"] == "out"]
    outputs = [e for e in out if e["frame"]["type"] == "conversation.item.create"]
    creates = [e for e in out if e["frame"]["type"] == "response.create"]
    assert len(outputs) == 3 and len(creates) == 1
    gap_ms = creates[0]["rel_ms"] - max(e["rel_ms"] for e in outputs)
    assert 0 <= gap_ms < 200, gap_ms
    assert turn["tool_request_reason"] == "settled"
    assert turn["tool_wait_ms"] is not None and turn["tool_wait_ms"] < 200
    assert turn["bridge_ms"] is not None and turn["bridge_ms"] >= turn["tool_wait_ms"]
    assert turn["model_only_ms"] == turn["model_response_ms"]
    for e in outputs:
        assert set(e["frame"]["item"]) == {"type", "call_id", "output"}
    meta = json.loads((res.run_dir / "run.json").read_text())
    assert meta["emulator_flags"] == []


def check_tool_error_result_still_returns(res: RunResult) -> None:
    audit = json.loads((res.run_dir / "audit_log.json").read_text())["transcript"]
    responses = {
        e["value"]["tool"]: e["value"]["response"]
        for e in audit
        if e["message_type"] == "tool_response"
    }
    assert responses["no_such_tool"]["status"] == "error"
    assert responses["no_such_tool"]["error_type"] == "tool_not_found"
    assert responses["get_reservation"]["status"] == "success"
    assert any(
        e["message_type"] == "assistant" and "found your booking" in e["value"] for e in audit
    )


def check_tool_turn_waterfall_is_ordered(res: RunResult) -> None:
    st = res.turns[1]["stages_ms"]
    order = [
        "first_args_delta",
        "args_done",
        "tool_executed",
        "output_sent",
        "response_create_sent",
        "first_audio_after_tools",
    ]
    assert all(k in st for k in order), st
    vals = [st[k] for k in order]
    assert vals == sorted(vals) and vals[0] > 0


def check_barge_in_drops_unplayed_audio_and_clears_the_caller(res: RunResult) -> None:
    turn = res.turns[1]
    assert turn["status"] == "interrupted"
    ev = events(res)
    assert any(e["src"] == "twilio" and e["frame"].get("event") == "clear" for e in ev)
    dropped = [e["frame"] for e in ev if e["src"] == "bridge" and e["frame"]["type"] == "barge_in"]
    assert dropped and dropped[0]["dropped_frames"] > 10
    audit = json.loads((res.run_dir / "audit_log.json").read_text())["transcript"]
    bot = [e["value"] for e in audit if e["message_type"] == "assistant"]
    assert bot[1].endswith("[interrupted]")
    heard = bot[1].removesuffix("[interrupted]").strip()
    assert heard and "meal request" not in heard and "Let me walk you" in heard
    meta = json.loads((res.run_dir / "run.json").read_text())
    t0 = meta["timeline"]["t0_epoch_ms"]
    pcm, _rate = read_wav(res.run_dir / "audio_assistant.wav")
    u = res.user_utterances[1]
    nxt = res.turns[2]["first_played_epoch_ms"]
    seg = pcm[int((u["start_epoch_ms"] + 400 - t0) * 48) : int((nxt - 100 - t0) * 48)]
    assert seg.size > 0 and rms_dbfs(seg) < -60.0
    assert res.caller is not None
    assert res.caller.assistant_turns[1].ended_by == "clear"
    assert res.caller.audible_frames_after_clear == 0
    assert res.turns[2]["model_response_ms"] is not None
