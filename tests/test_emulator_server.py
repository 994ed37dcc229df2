"""The emulator over real sockets on 127.0.0.1, driven by a websockets client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from asyncapi import SKIP_REASON, SPEC_PRESENT, server_schemas, validate
from needs import needs_speech
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hydralab.emulator import (
    Emulator,
    EmulatorConfig,
    EmulatorFaults,
    EmulatorSession,
    serve_forever,
)
from hydralab.protocol.hydra import (
    ConversationItemCreate,
    InputAudioBufferAppend,
    ResponseCreate,
    SessionConfigure,
)
from hydralab.script import AssistantSteps, CallTools, Script, Speak, ToolCall, UserTurn
from hydralab.speech.tts import AGENT_VOICE, CALLER_VOICE, Synthesizer

pytestmark = needs_speech  # every Emulator renders the script's speech when it starts

GREETING = "Hello! Thanks for calling. How can I help you today?"
USER_1 = "I want to check the status of my flight please."
NARRATION = "Your flight is on time, and it leaves from gate twelve."
CALL = ToolCall("get_flight_status", {"flight": "SK703", "date": "2026-03-25"})
SCRIPT = Script(
    greeting=GREETING,
    user_turns=(UserTurn(USER_1, USER_1),),
    assistant_turns=(
        AssistantSteps((Speak(GREETING),)),
        AssistantSteps((CallTools((CALL,)), Speak(NARRATION))),
    ),
)
FAST = EmulatorConfig(
    latency_median_ms=150.0, latency_min_ms=50.0, latency_max_ms=400.0, tool_args_delay_ms=80.0
)
MS = 1_000_000


class Client:
    """Collects every received frame with its receive time; ``expect`` waits for a type."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[tuple[int, dict[str, Any]]] = []
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for msg in self.ws:
                d = json.loads(msg)
                self.frames.append((time.monotonic_ns(), d))
                self._queue.put_nowait(d)

    async def expect(self, wire_type: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                d = await self._queue.get()
                if d["type"] == wire_type:
                    return d

    async def send(self, ev: Any) -> None:
        await self.ws.send(ev if isinstance(ev, str) else ev.dumps())

    def of_response(self, response_id: str) -> list[dict[str, Any]]:
        return [
            d
            for _, d in self.frames
            if d.get("response_id") == response_id or d.get("response", {}).get("id") == response_id
        ]


@contextlib.asynccontextmanager
async def session(
    emu: Emulator, *, model: str = "hydra-v1.1", key: str = "sk-test"
) -> AsyncIterator[Client]:
    async with connect(f"{emu.url}?model={model}&api_key={key}", max_size=None) as ws:
        c = Client(ws)
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(c.read())
            try:
                yield c
            finally:
                await ws.close()
                await reader


def pcm_of(frames: list[dict[str, Any]]) -> npt.NDArray[np.int16]:
    parts = [
        np.frombuffer(base64.b64decode(f["delta"]), dtype="<i2")
        for f in frames
        if f["type"] == "response.output_audio.delta"
    ]
    return np.concatenate(parts).astype(np.int16)


def user_line_16k() -> npt.NDArray[np.int16]:
    pcm = Synthesizer().synthesize(USER_1, voice=CALLER_VOICE, sample_rate_hz=16000, seed=3)
    silence = np.zeros(16 * 1500, np.int16)
    return np.concatenate([silence[: 16 * 300], pcm, silence]).astype(np.int16)


async def stream_audio(c: Client, pcm: npt.NDArray[np.int16]) -> None:
    """20 ms frames as fast as the socket takes them (the emulator must not need pacing)."""
    for i in range(0, len(pcm) - 319, 320):
        await c.send(InputAudioBufferAppend.from_pcm(pcm[i : i + 320]))


def truth(s: EmulatorSession, kind: str, **match: Any) -> list[Any]:
    return [
        g for g in s.log if g.kind == kind and all(getattr(g, k) == v for k, v in match.items())
    ]


async def conversation(emu: Emulator, *, model: str = "hydra-v1.1") -> Client:
    """Greeting, one spoken user turn, its tool call, the output and the narration."""
    async with session(emu, model=model) as c:
        await c.expect("session.created")
        await c.send(
            SessionConfigure(
                session={"instructions": "Airline agent.", "generate_initial_response": True}
            )
        )
        await c.expect("session.configured")
        await c.expect("response.done")
        await c.send(InputAudioBufferAppend.from_pcm(np.zeros(20, np.int16)))  # -> invalid_audio
        await stream_audio(c, user_line_16k())
        await c.expect("input_audio_buffer.speech_started")
        await c.expect("input_audio_buffer.speech_stopped")
        args = await c.expect("response.function_call_arguments.done")
        await c.expect("response.done")
        await c.send(ConversationItemCreate.function_call_output(args["call_id"], '{"ok":true}'))
        await c.send(ResponseCreate())
        await c.expect("response.created")
        await c.expect("response.done")
    return c


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("rate_hz", [48000, 24000])
async def test_greeting_audio_faster_than_real_time(rate_hz: int) -> None:
    async with Emulator(SCRIPT, config=replace(FAST, output_rate_hz=rate_hz)) as emu:
        assert emu.url == f"ws://127.0.0.1:{emu.port}/waves/v1/s2s"
        async with session(emu) as c:
            await c.expect("session.created")
            await c.send(SessionConfigure(session={"generate_initial_response": True}))
            conf = await c.expect("session.configured")
            assert conf["session"]["output_audio_sample_rate"] == rate_hz
            done = await c.expect("response.done")
        frames = c.of_response(done["response"]["id"])
        pcm = pcm_of(frames)
        np.testing.assert_array_equal(pcm, emu.speech.get(GREETING).pcm)
        # ≈ an independent rendering (eSpeak varies by a few samples between calls).
        fresh = Synthesizer().synthesize(GREETING, voice=AGENT_VOICE, sample_rate_hz=rate_hz)
        assert len(pcm) / rate_hz == pytest.approx(len(fresh) / rate_hz, abs=0.01)
        duration_s = len(pcm) / rate_hz
        times = [t for t, d in c.frames if d["type"] == "response.output_audio.delta"]
        assert (times[-1] - times[0]) / 1e9 < duration_s / 4  # delivered at ~10x
        text = "".join(
            d["delta"] for d in frames if d["type"] == "response.output_audio_transcript.delta"
        )
        assert text == GREETING


async def test_conversation_with_tool_call() -> None:
    async with Emulator(SCRIPT, config=FAST) as emu:
        t0 = time.monotonic()
        c = await conversation(emu)
        elapsed = time.monotonic() - t0
        (s,) = emu.sessions
    types = [d["type"] for _, d in c.frames]
    assert types[:2] == ["session.created", "session.configured"]
    started = next(d for _, d in c.frames if d["type"] == "input_audio_buffer.speech_started")
    stopped = next(d for _, d in c.frames if d["type"] == "input_audio_buffer.speech_stopped")
    assert 200 <= started["audio_start_ms"] < stopped["audio_end_ms"] <= 300 + 3500
    err = next(d for _, d in c.frames if d["type"] == "error")
    assert err["error"]["code"] == "invalid_audio"
    args = next(d for _, d in c.frames if d["type"] == "response.function_call_arguments.done")
    assert args["name"] == CALL.name and json.loads(args["arguments"]) == CALL.arguments
    frags = [d for _, d in c.frames if d["type"] == "response.function_call_arguments.delta"]
    assert "".join(f["delta"] for f in frags) == args["arguments"]
    narration = [d for _, d in c.frames if d["type"] == "response.done"][-1]
    nframes = c.of_response(narration["response"]["id"])
    text = "".join(
        d["delta"] for d in nframes if d["type"] == "response.output_audio_transcript.delta"
    )
    assert text == NARRATION
    np.testing.assert_array_equal(pcm_of(nframes), emu.speech.get(NARRATION).pcm)
    assert s.flags == [truth(s, "invalid_audio")[0]]  # the client behaved otherwise
    assert s.closed_reason is not None and s.error is None
    assert elapsed < 8.0  # user audio sent faster than real time, output at 10x

    # Ground truth, stamped at the real send/receive: the injected latencies are on the wire.
    (sched_tool,) = truth(s, "response_scheduled", detail="speech")
    (t_stopped,) = truth(s, "speech_stopped")
    created_tool, created_narration = truth(s, "response_created", turn_index=1)
    assert sched_tool.injected_latency_ms == created_tool.injected_latency_ms
    tool_ms = (created_tool.t_ns - t_stopped.t_ns) / MS
    assert tool_ms == pytest.approx(sched_tool.injected_latency_ms, abs=30)
    (create_rx,) = truth(s, "response_create_received")
    (first_audio,) = truth(s, "first_audio_delta", response_id=created_narration.response_id)
    narration_ms = (first_audio.t_ns - create_rx.t_ns) / MS
    assert narration_ms == pytest.approx(first_audio.injected_latency_ms, abs=30)
    # ... and the client saw the same gap (loopback adds well under 30 ms).
    rx = {d["event_id"]: t for t, d in c.frames}
    t_created_rx = next(
        t for t, d in c.frames if d.get("response", {}).get("id") == created_tool.response_id
    )
    assert (t_created_rx - rx[stopped["event_id"]]) / MS == pytest.approx(tool_ms, abs=30)


async def test_wrong_api_key_gets_401_and_key_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = replace(FAST, expected_api_key="sk-right-0123")
    async with Emulator(SCRIPT, config=cfg) as emu:
        for url in (f"{emu.url}?model=hydra-v1.1&api_key=sk-wrong", f"{emu.url}?model=hydra"):
            with pytest.raises(InvalidStatus) as exc:
                async with connect(url):
                    pass
            assert exc.value.response.status_code == 401
        assert emu.sessions == []
        async with session(emu, key="sk-right-0123") as c:
            await c.expect("session.created")
    assert len(emu.sessions) == 1
    # The emulator's side of the logs (the test client's own websockets logger is not ours).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("hydralab"))
    assert "api_key=***" in ours
    assert "sk-right-0123" not in ours and "sk-wrong" not in ours
    assert "sk-right-0123" not in json.dumps(emu.sessions[0].frames_in)


async def test_client_disconnect_mid_stream_ends_session_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with Emulator(SCRIPT, config=FAST) as emu:
        async with connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws:
            await ws.recv()
            await ws.send(SessionConfigure(session={"generate_initial_response": True}).dumps())
            while json.loads(await ws.recv())["type"] != "response.output_audio.delta":
                pass
            ws.transport.abort()  # no close frame: the peer just vanishes
        (s,) = emu.sessions
        async with asyncio.timeout(2):
            while s.closed_reason is None:
                await asyncio.sleep(0.01)
        assert s.error is None
        assert "response_done" not in s.kinds()
        n_sent = len(s.frames_out)
        await asyncio.sleep(0.3)  # nothing keeps streaming into the void
        assert len(s.frames_out) == n_sent
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_stop_closes_connections_and_waits_for_handlers() -> None:
    emu = Emulator(SCRIPT, config=FAST)
    await emu.start()
    async with connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws:
        await ws.recv()
        await ws.send(SessionConfigure(session={"generate_initial_response": True}).dumps())
        await ws.recv()
        async with asyncio.timeout(3):
            await emu.stop()
        with pytest.raises(ConnectionClosed) as exc:
            while True:
                await ws.recv()
        assert exc.value.rcvd is not None and exc.value.rcvd.code == 1001
    (s,) = emu.sessions
    assert s.closed_reason is not None and s.error is None
    assert asyncio.all_tasks() == {asyncio.current_task()}
    await emu.stop()  # idempotent


async def test_idle_timeout_closes_1000() -> None:
    async with Emulator(SCRIPT, config=replace(FAST, idle_timeout_s=0.3)) as emu:
        async with connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws:
            await ws.recv()
            t0 = time.monotonic()
            await ws.send(SessionConfigure(session={}).dumps())
            await ws.recv()
            with pytest.raises(ConnectionClosed) as exc:
                await asyncio.wait_for(ws.recv(), 3)
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 1000
            assert 0.25 <= time.monotonic() - t0 < 1.5
        assert "idle_timeout" in emu.sessions[0].kinds()


async def test_serve_forever_prints_url_and_stops_on_cancel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = asyncio.create_task(serve_forever(SCRIPT, port=0, config=FAST))
    printed = ""
    async with asyncio.timeout(5):
        while not (m := re.search(r"ws://127\.0\.0\.1:\d+/waves/v1/s2s", printed)):
            await asyncio.sleep(0.01)
            printed += capsys.readouterr().out
    assert "profile classic" in printed
    async with connect(f"{m.group(0)}?model=hydra-v1.1&api_key=k") as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert asyncio.all_tasks() == {asyncio.current_task()}


# ---------------------------------------------------------------- faults on demand


def check_schema(frames: list[dict[str, Any]]) -> None:
    if SPEC_PRESENT:
        schemas = server_schemas()
        for d in frames:
            validate(schemas[d["type"]], d)


async def closed_with(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None, str]:
    """Every frame until the server closes; then its close code and reason."""
    frames: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as exc:
        async with asyncio.timeout(10):
            while True:
                frames.append(json.loads(await ws.recv()))
    rcvd = exc.value.rcvd
    return frames, rcvd.code if rcvd else None, rcvd.reason if rcvd else ""


async def test_server_full_then_1013_then_a_normal_session() -> None:
    cfg = replace(FAST, faults=EmulatorFaults(server_full_sessions=1))
    async with Emulator(SCRIPT, config=cfg) as emu:
        async with connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws:
            frames, code, reason = await closed_with(ws)
        assert [d["type"] for d in frames] == ["error"]
        assert frames[0]["error"]["code"] == "server_full"
        assert (code, reason) == (1013, "server full")
        async with session(emu) as c:  # the retry gets a session
            await c.expect("session.created")
            await c.send(SessionConfigure(session={}))
            await c.expect("session.configured")
        refused, ok = emu.sessions
    assert refused.server_full and not ok.server_full
    assert refused.closed_reason == "closed by emulator (1013 server full)"
    assert refused.error is None and "session_created" not in refused.kinds()
    check_schema(frames)


async def test_faulted_session_internal_error_1011_and_reconnect_resumes() -> None:
    """Greeting cut short (incomplete), a late speech_stopped on the tool turn, then
    internal_error + 1011 after the second turn; the reconnect resumes the script."""
    faults = EmulatorFaults(
        internal_error_after_turns=2,
        response_status={0: ("incomplete", None)},
        late_speech_stopped_turns={1},
    )
    async with Emulator(SCRIPT, config=replace(FAST, faults=faults)) as emu:
        frames: list[tuple[int, dict[str, Any]]] = []
        async with connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws:

            async def expect(wire_type: str) -> dict[str, Any]:
                async with asyncio.timeout(5):
                    while True:
                        d = json.loads(await ws.recv())
                        frames.append((time.monotonic_ns(), d))
                        if d["type"] == wire_type:
                            return d

            await expect("session.created")
            await ws.send(SessionConfigure(session={"generate_initial_response": True}).dumps())
            greeting = await expect("response.done")
            assert greeting["response"]["status"] == "incomplete"
            assert greeting["response"]["status_details"]["reason"] == "max_output_tokens"
            for i in range(0, len(pcm := user_line_16k()) - 319, 320):
                await ws.send(InputAudioBufferAppend.from_pcm(pcm[i : i + 320]).dumps())
            args = await expect("response.function_call_arguments.done")
            await expect("response.done")
            out = ConversationItemCreate.function_call_output(args["call_id"], '{"ok":true}')
            await ws.send(out.dumps())
            await ws.send(ResponseCreate().dumps())
            await expect("response.done")
            rest, code, reason = await closed_with(ws)
        assert [d["type"] for d in rest] == ["error"]
        assert rest[0]["error"]["code"] == "internal_error"
        assert (code, reason) == (1011, "internal error")
        types = [d["type"] for _, d in frames]
        first_args = types.index("response.function_call_arguments.delta")
        assert types.index("input_audio_buffer.speech_stopped") == first_args + 1  # late
        s0 = emu.sessions[0]
        assert s0.internal_error_sent and s0.next_speech_turn == 2
        # Ground truth is stamped on the client's clock base: receive - send is loopback only.
        rows = {r["turn_index"]: r for r in s0.turn_truths()}
        assert rows[1]["speech_stopped_late"] and rows[0]["statuses"] == ["incomplete"]
        rx = {d.get("event_id"): t for t, d in frames}
        for row in rows.values():
            for key in ("speech_stopped", "first_delta"):
                if row[f"{key}_event_id"] is not None:
                    gap_ms = (rx[row[f"{key}_event_id"]] - row[f"{key}_sent_ns"]) / MS
                    assert 0 <= gap_ms < 50, (key, gap_ms)
        async with session(emu) as c:
            await c.expect("session.created")
            await c.send(SessionConfigure(session={"generate_initial_response": True}))
            done = await c.expect("response.done")
        assert done["response"]["status"] == "incomplete"  # turn faults hold in every session
        s1 = emu.sessions[1]  # ... the internal error only in the first one
        assert s1.next_speech_turn == 2 and not s1.internal_error_sent and s1.error is None
    check_schema([d for _, d in frames] + rest + [d for _, d in c.frames])


# ---------------------------------------------------------------- AsyncAPI conformance


@pytest.mark.skipif(not SPEC_PRESENT, reason=SKIP_REASON)
async def test_every_sent_frame_validates_against_asyncapi() -> None:
    schemas = server_schemas()
    frames: list[dict[str, Any]] = []
    async with Emulator(SCRIPT, config=FAST) as emu:
        frames += [d for _, d in (await conversation(emu, model="hydra")).frames]
    cfg = replace(FAST, output_rate_hz=24000, tool_output_timeout_s=0.2)
    async with Emulator(SCRIPT, config=cfg) as emu:
        async with session(emu) as c:  # barge-in, tool timeout, and a 24 kHz session
            await c.expect("session.created")
            await c.send(SessionConfigure(session={"generate_initial_response": True}))
            await c.expect("response.output_audio.delta")
            await stream_audio(c, user_line_16k()[16 * 300 :])
            await c.expect("response.function_call_arguments.done")
            await c.expect("error")
        frames += [d for _, d in c.frames]
    seen = {d["type"] for d in frames}
    assert {"warning", "error", "response.output_audio_transcript.delta"} <= seen
    assert any(d.get("response", {}).get("status") == "cancelled" for d in frames)
    assert any(d.get("error", {}).get("code") == "tool_response_timeout" for d in frames)
    for d in frames:
        assert d["type"] in schemas, f"undocumented server event {d['type']}"
        validate(schemas[d["type"]], d)


def test_schema_check_can_fail() -> None:
    """The strict schemas reject what the spec does not allow."""
    if not SPEC_PRESENT:
        pytest.skip(SKIP_REASON)
    from jsonschema import ValidationError

    schemas = server_schemas()
    bad: list[dict[str, Any]] = [
        {"type": "response.done", "response": {"status": "finished"}},
        {"type": "error", "error": {"code": "invalid_frame"}},
        {"type": "response.function_call_arguments.done", "call_id": "c", "item_id": "i"},
        {"type": "session.configured", "session": {"api_key": "x"}},
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 1.5},
    ]
    for d in bad:
        with pytest.raises(ValidationError):
            validate(schemas[d["type"]], d)
