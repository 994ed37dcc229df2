"""``hydralab serve``: callers that are not hydralab's own — EVA's simulator and a canonical
Twilio client — call a record's agent through the bridge, over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_callers import EvaLikeCaller, TwilioLikeCaller
from needs import needs_speech

from hydralab.audio import read_wav, ulaw_decode
from hydralab.caller import prepare_caller_audio
from hydralab.runner import RunResult
from hydralab.script import CallTools, Script, Speak, ToolCall, script_from_lines
from hydralab.serve import BridgeServer, serve_bridge

pytestmark = [pytest.mark.e2e, needs_speech]

GREETING = "Hello! Thanks for calling SkyWay. How can I help you today?"
SCRIPT = script_from_lines(
    GREETING,
    ["My confirmation number is HT4KWB, last name Brooks.", "Thanks, that is all."],
    [
        (
            CallTools(
                (
                    ToolCall(
                        "get_reservation", {"confirmation_number": "HT4KWB", "last_name": "brooks"}
                    ),
                )
            ),
            Speak("Thanks, I found your booking."),
        ),
        (Speak("Goodbye."),),
    ],
    record_id="HL-AIR-001",
)


async def _lines(script: Script) -> list[np.ndarray]:
    audio = await prepare_caller_audio(script)
    return [ulaw_decode(b"".join(u.frames)) for u in audio.utterances]


def _json(res: RunResult, name: str) -> Any:
    return json.loads((res.run_dir / name).read_text())


def _check_turns(res: RunResult, server: BridgeServer) -> None:
    assert [t["kind"] for t in res.turns] == ["greeting", "tool", "plain"]
    assert res.tools_called == ["get_reservation"]
    assert res.emulator is not None
    truths = res.emulator.sessions[0].turn_truths()
    for turn, truth in zip(res.turns[1:], truths[1:], strict=True):
        assert turn["model_response_ms"] is not None, turn
        truth_ms = (truth["first_delta_sent_ns"] - truth["speech_stopped_sent_ns"]) / 1e6
        assert abs(turn["model_response_ms"] - truth_ms) <= 15.0, (turn, truth_ms)


async def test_evas_simulator_can_call_and_its_habits_do_no_harm(tmp_path: Path) -> None:
    lines = await _lines(SCRIPT)
    async with serve_bridge(
        None, script=SCRIPT, out_dir=tmp_path, run_id="eva", transcriber=None
    ) as server:
        assert server.url.endswith("/ws")
        caller = EvaLikeCaller(server.url, lines)
        await caller.run()
        (res,) = await server.wait_calls(1, timeout_s=15)
    assert res.ended_reason == "goodbye" and res.error is None
    assert _json(res, "result.json")["completed"] is True
    assert _json(res, "run.json")["verdict"] == {"completed": True, "not_completed": []}
    assert res.run_dir == tmp_path / "eva-001" / "records" / "HL-AIR-001"
    _check_turns(res, server)
    bridge = _json(res, "run.json")["bridge"]
    # media only: no mark, no clear, to a caller that does not take them
    assert bridge["caller_dialect"] == "eva"
    assert caller.heard.marks == [] and caller.heard.clears == 0 and caller.heard.frames > 100
    # its monotonic user_speech_stop stamps are not taken for epoch ms, and it says so
    ignored = bridge["caller_stamps_ignored"]
    assert [i["event"] for i in ignored] == ["user_speech_stop"] * 2
    assert [i["value"] for i in ignored] == caller.stop_stamps
    for u, (_, end_s) in zip(res.user_utterances, caller.sent_speech, strict=True):
        # the stop lands ~600 ms after the speech, on the bridge's clock
        assert 0 <= u["stop_epoch_ms"] - end_s * 1000 <= 900, (u, end_s)
    # silence sent faster than real time was trimmed: the recording keeps to the clock
    assert bridge["caller_silence_ahead_dropped_ms"] > 0
    pcm, _ = read_wav(res.run_dir / "audio_user.wav")
    t0 = _json(res, "run.json")["timeline"]["t0_epoch_ms"]
    for first_s, _ in caller.sent_speech:
        at = int((first_s * 1000 - t0) * 48)
        window = np.abs(pcm[max(0, at - 48 * 150) : at + 48 * 400].astype(np.int32))
        onset = int(np.flatnonzero(window > 2000)[0]) - min(at, 48 * 150)
        assert -48 * 100 <= onset <= 48 * 300, onset / 48  # where it was sent, not seconds off


async def test_a_canonical_twilio_caller_gets_marks_and_echoes_them(tmp_path: Path) -> None:
    lines = await _lines(SCRIPT)
    async with serve_bridge(
        None, script=SCRIPT, out_dir=tmp_path, run_id="tw", transcriber=None
    ) as server:
        caller = TwilioLikeCaller(server.url, lines)
        await caller.run()
        (res,) = await server.wait_calls(1, timeout_s=15)
    assert res.ended_reason == "goodbye" and res.error is None
    _check_turns(res, server)
    assert _json(res, "run.json")["bridge"]["caller_dialect"] == "twilio"
    assert caller.heard.marks == [f"hydralab:turn_end:{k}" for k in range(3)]
    events = [json.loads(x) for x in (res.run_dir / "events.jsonl").read_text().splitlines()]
    echoes = [
        e
        for e in events
        if e["src"] == "twilio" and e["dir"] == "in" and e["frame"].get("event") == "mark"
    ]
    assert len(echoes) == 3  # the caller's echoes are logged, and harm nothing


async def test_each_caller_its_own_run_and_stopping_ends_calls_truthfully(tmp_path: Path) -> None:
    """Two callers at once get two run directories; stopping the server mid-call ends both as
    ``server_shutdown`` (not completed) with complete outputs."""
    import asyncio

    lines = await _lines(SCRIPT)
    server = BridgeServer(None, script=SCRIPT, out_dir=tmp_path, run_id="two", transcriber=None)
    await server.start()
    callers = [EvaLikeCaller(server.url, lines, turn_timeout_s=60) for _ in range(2)]
    tasks = [asyncio.create_task(c.run()) for c in callers]
    while server.active < 2 or min(c.heard.frames for c in callers) < 50:
        await asyncio.sleep(0.05)
    results = await server.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(r.run_dir.parent.parent.name for r in results) == ["two-001", "two-002"]
    for res in results:
        assert res.ended_reason == "server_shutdown"
        result = _json(res, "result.json")
        assert result["completed"] is False
        for name in ("audit_log.json", "run.json", "scores.json", "audio_mixed.wav"):
            assert (res.run_dir / name).is_file(), name
        assert (res.run_dir.parent.parent / "config.json").is_file()


async def test_serve_refuses_callers_over_max_calls(tmp_path: Path) -> None:
    """``max_calls`` calls at once: one more is refused at once (1013 busy, no model session,
    no run directory); once a call has ended, a caller is taken again (and stopping the server
    ends it)."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    lines = await _lines(SCRIPT)
    server = BridgeServer(
        None, script=SCRIPT, out_dir=tmp_path, run_id="cap", transcriber=None, max_calls=1
    )
    assert BridgeServer.__init__.__kwdefaults__["max_calls"] == 4  # the default cap
    await server.start()
    try:
        first = EvaLikeCaller(server.url, lines, turn_timeout_s=60)
        task = asyncio.create_task(first.run())
        while server.active < 1:
            await asyncio.sleep(0.05)
        with pytest.raises(ConnectionClosed) as closed:
            async with connect(server.url) as extra:
                await extra.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "busy")
        (refused,) = server.refused
        assert refused["why"] == "1 calls in flight (the limit)"
        task.cancel()  # the first caller hangs up: its call ends and frees the line
        await asyncio.gather(task, return_exceptions=True)
        (res,) = await server.wait_calls(1, timeout_s=15)
        assert res.ended_reason == "caller_disconnected"
        assert server.emulator is not None and len(server.emulator.sessions) == 1
        second = EvaLikeCaller(server.url, lines, turn_timeout_s=60)  # the line is free again
        task = asyncio.create_task(second.run())
        while server.active < 1 or second.heard.frames < 10:
            await asyncio.sleep(0.05)
        assert not server.refused[1:]
    finally:
        results = await server.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(r.run_dir.parent.parent.name for r in results) == ["cap-001", "cap-002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cap-001", "cap-002"]


async def test_the_command_ends_calls_in_flight_on_sigterm(tmp_path: Path) -> None:
    """``hydralab serve``: SIGTERM mid-call ends it as ``server_shutdown`` with every output."""
    import asyncio
    import re
    import signal
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from hydralab.cli import main; raise SystemExit(main())",
        "serve",
        "--port",
        "0",
        "--out",
        str(tmp_path),
        "--run-id",
        "cli",
        "--stt",
        "none",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
    url = re.search(r"ws://\S+/ws", line)
    assert url is not None, line
    caller = EvaLikeCaller(url.group(0), await _lines(SCRIPT), turn_timeout_s=60)
    task = asyncio.create_task(caller.run())
    while caller.heard.frames < 25:  # the greeting is playing
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert proc.returncode == 0, err.decode()
    assert "1 call(s) served" in out.decode()
    run_dir = next((tmp_path / "cli-001" / "records").iterdir())
    result = json.loads((run_dir / "result.json").read_text())
    assert result["completed"] is False
    assert result["conversation_ended_reason"] == "server_shutdown"
    assert (run_dir / "audio_mixed.wav").is_file() and (run_dir / "scores.json").is_file()
