"""Limits of a run, each with a truthful outcome and no hang: one conversation per run
directory (a second caller is refused ``busy``; a used run id is refused up front), run
directories always inside ``out_dir``, deliberate socket frame limits (1009, recorded), an
unwritable ``--out`` reported at once, and SIGINT / SIGTERM ending ``hydralab run`` with every
output written, no process left behind and exit 130 / 143."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from needs import needs_speech
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hydralab.batch import run_batch
from hydralab.bridge import BUSY_CLOSE_CODE, CALLER_MAX_FRAME_BYTES
from hydralab.cli import main
from hydralab.client import MAX_MODEL_FRAME_BYTES
from hydralab.emulator import EmulatorConfig
from hydralab.protocol.twilio import connected_frame, media_frame, start_frame
from hydralab.records import load_record
from hydralab.runner import (
    CallInterrupted,
    RunDirectoryError,
    record_run_dir,
    run_record,
)
from hydralab.script import Script, Speak, script_from_lines
from hydralab.serve import BridgeServer, serve_bridge
from hydralab.sim import simulate_record

REPO = Path(__file__).parents[1]
RID = "HL-AIR-001"


def _short_script() -> Script:
    return script_from_lines(
        "Hello, SkyWay here.", ["Thanks, bye."], [(Speak("Goodbye."),)], record_id=RID
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


async def _wait_for(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(encoding="utf-8", errors="replace"):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{text!r} never appeared in {path}")


# ------------------------------------------------------------------ 2. one run per connection


@needs_speech
async def test_limits_second_caller_is_refused_busy_and_never_touches_the_run(
    tmp_path: Path,
) -> None:
    port = _free_port()
    task = asyncio.create_task(
        run_record(
            None,
            out_dir=tmp_path,
            run_id="one",
            port=port,
            script=_short_script(),
            transcriber=None,
            emulator_config=EmulatorConfig(),
        )
    )
    run_dir = tmp_path / "one" / "records" / RID
    await _wait_for(run_dir / "events.jsonl", '"start"', 60)  # the first caller is on
    t0 = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        async with connect(f"ws://127.0.0.1:{port}/ws") as second:
            await second.send(connected_frame())  # may already find it closed
            await second.recv()
    assert time.monotonic() - t0 < 2.0  # at once
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (BUSY_CLOSE_CODE, "busy")
    res = await asyncio.wait_for(task, 120)
    assert res.completed, res.not_completed  # the real call is untouched
    assert res.emulator is not None and len(res.emulator.sessions) == 1  # no model session
    (refused,) = _json(run_dir / "run.json")["refused_connections"]
    assert refused["close_code"] == 1013 and refused["close_reason"] == "busy"
    logged = [e["frame"] for e in _events(run_dir) if e["frame"].get("type") == "caller_refused"]
    assert len(logged) == 1 and logged[0]["why"].startswith("this run's conversation is taken")
    # the refused caller's frame never reached the run
    assert sum(1 for e in _events(run_dir) if e["frame"].get("event") == "connected") == 1


@needs_speech
async def test_limits_reusing_a_run_id_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = simulate_record(None, out_dir=tmp_path, run_id="r", transcriber=None)
    before = {p.name: p.read_bytes() for p in first.run_dir.iterdir()}
    with pytest.raises(RunDirectoryError, match="already exists: run id 'r' was used"):
        simulate_record(None, out_dir=tmp_path, run_id="r", transcriber=None)
    t0 = time.monotonic()
    with pytest.raises(RunDirectoryError, match="already exists"):
        await run_record(None, out_dir=tmp_path, run_id="r", transcriber=None)
    assert time.monotonic() - t0 < 5.0  # no emulator, caller or bridge was started
    argv = ["run", "--simulate", "--stt", "none", "--out", str(tmp_path), "--run-id", "r"]
    assert main(argv) == 1
    assert "hydralab: error: run directory" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in first.run_dir.iterdir()} == before
    # another record in the same run (a batch trial's layout) is fine
    other = simulate_record("HL-AIR-002", out_dir=tmp_path, run_id="r", transcriber=None)
    assert other.run_dir == tmp_path / "r" / "records" / "HL-AIR-002"
    # hydralab serve: a run id whose RUN_ID-NNN directories exist
    (tmp_path / "srv-001").mkdir()
    with pytest.raises(RunDirectoryError, match=r"'srv' was used .* \(srv-001 exists\)"):
        BridgeServer(None, out_dir=tmp_path, run_id="srv", transcriber=None)


# ------------------------------------------------------------------ 3. paths stay inside out


async def test_limits_run_directories_stay_inside_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for run_id, record_id in (
        ("../x", RID),
        ("/abs", RID),
        ("", RID),
        ("r", "../../x"),
        ("r", "/etc"),
        ("r", ".."),
        ("r", "a\x00b"),
    ):
        with pytest.raises(RunDirectoryError, match="is not allowed"):
            record_run_dir(out, run_id, record_id)
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunDirectoryError, match="outside"):
        record_run_dir(out, "link", RID)
    assert record_run_dir(out, "r", RID) == out / "r" / "records" / RID
    # every entry point refuses before writing anything
    escaping = dataclasses.replace(load_record(), id="../../escape")
    with pytest.raises(RunDirectoryError, match=r"record id '\.\./\.\./escape' is not allowed"):
        await run_record(escaping, out_dir=out, run_id="r", transcriber=None)
    with pytest.raises(RunDirectoryError, match="record id"):
        simulate_record(escaping, out_dir=out, run_id="r", transcriber=None)
    with pytest.raises(RunDirectoryError, match=r"run id '\.\./x' is not allowed"):
        simulate_record(None, out_dir=out, run_id="../x", transcriber=None)
    with pytest.raises(RunDirectoryError, match="outside"):
        await run_record(None, out_dir=out, run_id="link", transcriber=None)
    with pytest.raises(RunDirectoryError, match="is not allowed"):
        BridgeServer(escaping, out_dir=out, run_id="s", transcriber=None)
    with pytest.raises(RunDirectoryError, match="is not allowed"):
        BridgeServer(None, out_dir=out, run_id="a/b", transcriber=None)
    with pytest.raises(ValueError, match=r"batch id '\.\./b' is not allowed"):
        await run_batch(["A"], out_dir=out, batch_id="../b", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["link"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out"]
    assert not any((tmp_path / "elsewhere").iterdir())


# ------------------------------------------------------------------ 4. socket frame limits


def test_limits_frame_bounds_are_deliberate() -> None:
    assert CALLER_MAX_FRAME_BYTES == 64 * 1024
    assert MAX_MODEL_FRAME_BYTES == 4 * 1024 * 1024
    # a Twilio media frame (20 ms of μ-law) is ~300 bytes: far below the bound
    assert 250 < len(media_frame("MZ" + "0" * 32, b"\xff" * 160)) < 400


@needs_speech
async def test_limits_caller_frame_over_the_bound_closes_1009_and_the_run_says_why(
    tmp_path: Path,
) -> None:
    async with serve_bridge(
        None, out_dir=tmp_path, run_id="big", transcriber=None, emulator_config=EmulatorConfig()
    ) as server:
        async with connect(server.url, max_size=None) as ws:
            await ws.send(connected_frame())
            await ws.send(start_frame("MZbig"))
            await ws.send(media_frame("MZbig", b"\xff" * 160))
            huge = media_frame("MZbig", b"\xff" * CALLER_MAX_FRAME_BYTES)
            assert len(huge) > CALLER_MAX_FRAME_BYTES
            await ws.send(huge)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
        (res,) = await server.wait_calls(1, timeout_s=60)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert res.ended_reason == "error"
    assert res.error is not None and "1009" in res.error and "65536" in res.error
    result = _json(res.run_dir / "result.json")
    assert result["completed"] is False and "1009" in result["error"]
    assert (res.run_dir / "audio_mixed.wav").is_file()


async def _hydra_sending_a_huge_frame(ws: ServerConnection) -> None:
    """A Hydra stand-in: the handshake, then one audio delta over the client's bound."""
    await ws.send(json.dumps({"type": "session.created", "session_id": "sess_big"}))
    await ws.recv()  # session.configure
    configured = {"type": "session.configured", "session": {"output_audio_sample_rate": 24000}}
    await ws.send(json.dumps(configured))
    await asyncio.sleep(0.3)
    delta = base64.b64encode(b"\x00" * (MAX_MODEL_FRAME_BYTES // 4 * 3 + 3000)).decode()
    frame = {"type": "response.output_audio.delta", "response_id": "r1", "delta": delta}
    await ws.send(json.dumps(frame))
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass


async def test_limits_model_frame_over_the_bound_closes_1009_and_the_run_says_why(
    tmp_path: Path,
) -> None:
    async with serve(_hydra_sending_a_huge_frame, "127.0.0.1", 0, max_size=None) as hydra:
        port = next(iter(hydra.sockets)).getsockname()[1]
        async with serve_bridge(
            None,
            model="hydra",
            hydra_url=f"ws://127.0.0.1:{port}/waves/v1/s2s",
            api_key="k-test-not-a-key",
            out_dir=tmp_path,
            run_id="big",
            transcriber=None,
        ) as server:
            async with connect(server.url) as ws:
                await ws.send(connected_frame())
                await ws.send(start_frame("MZbig"))
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 30)
            (res,) = await server.wait_calls(1, timeout_s=60)
    assert res.ended_reason == "model_disconnected"
    assert res.error is not None and "1009" in res.error and str(MAX_MODEL_FRAME_BYTES) in res.error
    meta = _json(res.run_dir / "run.json")
    assert meta["bridge"]["reconnects"] == 0  # a frame too big is not retried
    assert meta["verdict"]["completed"] is False
    closed = [e["frame"] for e in _events(res.run_dir) if e["frame"].get("type") == "model_closed"]
    assert closed == [{"type": "model_closed", "close_code": 1009}]


# ------------------------------------------------------------------ 5. an unwritable --out


async def test_limits_unwritable_out_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    cases = [
        (a_file, "is not a folder"),
        (a_file / "sub", "cannot write to the output folder .*: Not a directory"),
    ]
    for out, message in cases:
        for argv in (
            ["run", "--stt", "none", "--out", str(out)],  # the real-socket path
            ["run", "--simulate", "--stt", "none", "--out", str(out)],
            ["batch", RID, "--out", str(out), "--no-progress", "--one-process"],
        ):
            t0 = time.monotonic()
            assert main(argv) == 1
            assert time.monotonic() - t0 < 10.0, argv  # at once, not after a 60 s wait
            err = capsys.readouterr().err
            assert err.startswith("hydralab: error: "), err
            assert re.search(message, err), err
        with pytest.raises(RunDirectoryError, match=message):
            BridgeServer(None, out_dir=out, transcriber=None)
    assert a_file.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
async def test_limits_read_only_out_is_reported_at_once(tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(RunDirectoryError, match="Permission denied"):
            await run_record(None, out_dir=out, transcriber=None)
    finally:
        out.chmod(0o700)


# ------------------------------------------------------------------ 6. signals


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parents.items() if pp == p}
        todo.extend(kids - out)
        out |= kids
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@needs_speech
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_limits_signal_ends_the_call_with_every_output(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """SIGINT / SIGTERM mid-call: the call ends ``interrupted`` (not completed) with every
    output written, the local STT worker process is stopped, and the exit code says which."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from hydralab.cli import main; raise SystemExit(main())",
        "run",
        "--out",
        str(tmp_path),
        "--run-id",
        "sig",
        "--stt",
        "local",
        "--profile",
        "classic",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    run_dir = tmp_path / "sig" / "records" / RID
    try:
        await _wait_for(run_dir / "events.jsonl", "user_speech_start", 120)  # mid-call
        children = _descendants(proc.pid)
        assert children, "the local STT worker runs in its own process"
        proc.send_signal(sig)
        out_b, err_b = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == code, out + err
    assert f"hydralab: {sig.name}: ending the call" in err
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not [p for p in children if _alive(p)], "a child process outlived the run"
    result = _json(run_dir / "result.json")
    assert result["completed"] is False
    assert result["conversation_ended_reason"] == "interrupted"
    assert "call ended: interrupted" in result["error_details"]["not_completed"]
    meta = _json(run_dir / "run.json")
    assert meta["verdict"]["completed"] is False and meta["ended_reason"] == "interrupted"
    assert meta["caller"]["ended_reason"] != "goodbye"
    for name in (
        "scores.json",
        "audit_log.json",
        "transcript.jsonl",
        "user_simulator_events.jsonl",
        "audio_user.wav",
        "audio_assistant.wav",
        "audio_mixed.wav",
        "final_scenario_db.json",
        "logs.log",
    ):
        assert (run_dir / name).is_file(), name
    assert (tmp_path / "sig" / "config.json").is_file()
    assert "verdict: not completed" in out


@needs_speech
async def test_limits_interrupt_before_the_call_began_leaves_no_trace(tmp_path: Path) -> None:
    interrupt = asyncio.Event()
    interrupt.set()
    with pytest.raises(CallInterrupted, match="before the call began"):
        await run_record(
            None, out_dir=tmp_path, run_id="early", transcriber=None, interrupt=interrupt
        )
    assert list(tmp_path.iterdir()) == []
