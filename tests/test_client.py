"""HydraClient against tiny scripted servers and the emulator on 127.0.0.1 (real sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from asyncapi import SKIP_REASON, SPEC_PRESENT, client_schemas, validate
from needs import needs_speech
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from hydralab.client import (
    DEFAULT_VOICES,
    MODELS,
    VOICES,
    HydraAuthError,
    HydraClient,
    HydraConfig,
    HydraError,
    HydraHandshakeError,
    HydraServerFullError,
)
from hydralab.emulator import Emulator, EmulatorConfig, EmulatorFaults
from hydralab.protocol import hydra as h
from hydralab.script import AssistantSteps, CallTools, Script, Speak, ToolCall, UserTurn
from hydralab.speech.tts import AGENT_VOICE, CALLER_VOICE, Synthesizer

KEY = "sk-client-test-0011223344"
Handler = Callable[[ServerConnection], Awaitable[None]]


async def _server(handler: Handler, **kw: object) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, **kw) as srv:  # type: ignore[arg-type]
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


@pytest.fixture
def received() -> list[dict]:
    return []


def _cfg(url: str, **kw: object) -> HydraConfig:
    return HydraConfig(url=url, model="hydra", instructions="Be brief.", **kw)  # type: ignore[arg-type]


async def test_warning_then_created_then_configured(received: list[dict]) -> None:
    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None and "model=hydra" in ws.request.path
        await ws.send(json.dumps({"type": "warning", "code": "model_deprecated"}))
        await ws.send(json.dumps({"type": "session.created", "session_id": "s1"}))
        received.append(json.loads(await ws.recv()))
        early = {"type": "input_audio_buffer.speech_started", "audio_start_ms": 1}
        await ws.send(json.dumps(early))
        await ws.send(
            json.dumps(
                {"type": "session.configured", "session": {"output_audio_sample_rate": 24000}}
            )
        )
        received.append(json.loads(await ws.recv()))
        await ws.close()

    logged: list[tuple[str, dict]] = []

    def log(direction: str, frame: dict, t_ns: int) -> None:
        logged.append((direction, frame))

    async for url in _server(handler):
        client = HydraClient(_cfg(url), api_key=KEY, frame_logger=log)
        await client.connect()
        assert client.session_id == "s1" and client.output_rate_hz == 24000
        assert client.stats.warnings == [{"type": "warning", "code": "model_deprecated"}]
        await client.send_audio(np.zeros(320, dtype=np.int16))
        events = [ev async for ev in client]
        # an event that arrived during the handshake is delivered, not dropped
        assert isinstance(events[0], h.SpeechStarted)
        await client.close()
    assert received[0]["type"] == "session.configure"
    assert received[0]["session"]["instructions"] == "Be brief."
    assert received[1]["type"] == "input_audio_buffer.append"
    assert len(received[1]["audio"]) == 856  # base64 of 640 bytes
    assert all(KEY not in json.dumps(f) for _, f in logged)
    assert any(f.get("audio") == "<640 bytes>" for _, f in logged)  # audio elided in the log


async def test_error_during_handshake_fails_fast() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created"}))
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "error",
                    "error": {"code": "invalid_request_error", "message": "unknown voice"},
                }
            )
        )
        await asyncio.sleep(1)

    async for url in _server(handler):
        with pytest.raises(HydraHandshakeError, match="invalid_request_error: unknown voice"):
            await HydraClient(_cfg(url, handshake_timeout_s=5), api_key=KEY).connect()


async def test_no_configured_times_out() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created"}))
        await asyncio.sleep(2)

    async for url in _server(handler):
        with pytest.raises(HydraHandshakeError, match=r"no session\.configured"):
            await HydraClient(_cfg(url, handshake_timeout_s=0.3), api_key=KEY).connect()


async def test_audio_before_configured_is_refused() -> None:
    client = HydraClient(_cfg("ws://127.0.0.1:9"), api_key=KEY)
    with pytest.raises(HydraError, match=r"before session\.configured"):
        await client.send(h.InputAudioBufferAppend.from_pcm(np.zeros(320, dtype=np.int16)))


async def test_http_401_is_a_clear_error_without_the_key() -> None:
    def reject(conn: ServerConnection, request: Request) -> Response:
        return conn.respond(401, "bad key\n")

    async def handler(ws: ServerConnection) -> None:  # pragma: no cover - never reached
        await ws.close()

    async for url in _server(handler, process_request=reject):
        with pytest.raises(HydraAuthError) as info:
            await HydraClient(_cfg(url), api_key=KEY).connect()
    assert KEY not in str(info.value) and "401" in str(info.value)
    assert KEY not in repr(HydraClient(_cfg(url), api_key=KEY))


async def test_unreachable_server_message_is_redacted() -> None:
    with pytest.raises(HydraError) as info:
        await HydraClient(_cfg("ws://127.0.0.1:9", open_timeout_s=2), api_key=KEY).connect()
    assert KEY not in str(info.value)


# ---------------------------------------------------------------- voices and models


def test_voice_rosters_per_model() -> None:
    for model, roster in VOICES.items():
        for voice in (*roster, None):
            assert HydraConfig(model=model, voice=voice).voice == voice
    with pytest.raises(ValueError, match=r"not available on hydra-v1\.0") as info:
        HydraConfig(model="hydra-v1.0", voice="aria")
    msg = str(info.value)
    assert "'aria' is a hydra-v1.1 voice" in msg
    assert "vaughn, brooks, cole, hayes, pierce, sterling" in msg  # lists the valid ones
    with pytest.raises(ValueError, match="zoe, maya, elena, ivy, grace, alex, aria, leo"):
        HydraConfig(model="hydra-v1.1", voice="sterling")
    # The live API rejects the original six names on every tag (docs commit 6afc848d); the
    # deprecated tag takes either current roster.
    for model in MODELS:
        with pytest.raises(ValueError, match="not available"):
            HydraConfig(model=model, voice="wren")
    assert set(VOICES["hydra"]) == set(VOICES["hydra-v1.1"]) | set(VOICES["hydra-v1.0"])
    with pytest.raises(ValueError, match="zoe, maya"):
        HydraConfig(model="hydra", voice="Aria")
    assert DEFAULT_VOICES["hydra-v1.1"] in VOICES["hydra-v1.1"]
    assert all(DEFAULT_VOICES[m] in VOICES[m] for m in MODELS)
    with pytest.raises(ValueError, match=r"unknown Hydra model .hydra-v2.: use one of hydra-v1\.1"):
        HydraConfig(model="hydra-v2")
    with pytest.raises(ValueError, match=r"not available on hydra-v1\.1"):  # precomputed session
        HydraConfig(session={"instructions": "x", "voice": "wren"})
    assert MODELS == ("hydra-v1.1", "hydra-v1.0", "hydra")
    assert len(VOICES["hydra-v1.1"]) == 10 and len(VOICES["hydra-v1.0"]) == 14
    assert not set(VOICES["hydra-v1.1"]) & set(VOICES["hydra-v1.0"])


@pytest.mark.skipif(not SPEC_PRESENT, reason=SKIP_REASON)
def test_supported_rosters_match_the_asyncapi_voice_enum() -> None:
    session = client_schemas()["session.configure"]["properties"]["session"]
    assert session["properties"]["voice"]["enum"] == [
        *VOICES["hydra-v1.1"],
        *VOICES["hydra-v1.0"],
    ]


async def test_bad_voice_fails_before_connecting() -> None:
    cfg = HydraConfig(url="ws://127.0.0.1:9", session={"voice": "aria"})
    cfg.session["voice"] = "sterling"  # type: ignore[index]  # mutated after validation
    client = HydraClient(cfg, api_key=KEY)
    with pytest.raises(ValueError, match=r"'sterling' is a hydra-v1\.0 voice"):
        await client.connect()
    assert client.stats.connects == 0


# ---------------------------------------------------------------- against the emulator

GREETING = "Hello! How can I help you today?"
USER = "I want to check the status of my flight please."
CALL = ToolCall("get_flight_status", {"flight": "SK703"})
SCRIPT = Script(
    greeting=GREETING,
    user_turns=(UserTurn(USER, USER),),
    assistant_turns=(
        AssistantSteps((Speak(GREETING),)),
        AssistantSteps((CallTools((CALL,)), Speak("It is on time."))),
    ),
)
FAST = EmulatorConfig(
    latency_median_ms=100.0, latency_min_ms=50.0, latency_max_ms=300.0, tool_args_delay_ms=60.0
)
TOOL = {
    "type": "function",
    "name": "get_flight_status",
    "description": "Status of a flight.",
    "parameters": {
        "type": "object",
        "properties": {"flight": {"type": "string", "description": "Flight number."}},
        "required": ["flight"],
    },
}


def _emu_cfg(url: str, **kw: Any) -> HydraConfig:
    return HydraConfig(url=url, instructions="Airline agent.", **kw)


@needs_speech
async def test_server_full_is_typed_and_a_retry_connects() -> None:
    faults = EmulatorFaults(server_full_sessions=2)
    async with Emulator(SCRIPT, config=replace(FAST, faults=faults)) as emu:
        client = HydraClient(_emu_cfg(emu.url, generate_initial_response=False), api_key=KEY)
        with pytest.raises(HydraServerFullError, match="at capacity") as info:
            await client.connect()
        assert isinstance(info.value, HydraHandshakeError)  # existing handlers still catch it
        assert info.value.close_code == client.close_code == 1013
        assert client.close_reason == "server full" and client.session_id is None
        with pytest.raises(HydraServerFullError):
            await client.connect()  # the same client retries
        await client.connect()  # third connection: a session
        assert client.session_id == emu.sessions[2].session_id and client.close_code is None
        assert client.stats.connects == 3
        await client.close()
    # Refused after session.created (and the deprecation warning) too.
    late = EmulatorFaults(server_full_sessions=1, server_full_after_created=True)
    async with Emulator(SCRIPT, config=replace(FAST, faults=late)) as emu:
        client = HydraClient(_emu_cfg(emu.url, model="hydra"), api_key=KEY)
        with pytest.raises(HydraServerFullError) as info:
            await client.connect()
        assert info.value.close_code == 1013 and client.stats.warnings


async def test_close_1013_without_error_frame_is_server_full() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close(1013, "try again later")

    async for url in _server(handler):
        with pytest.raises(HydraServerFullError, match="close 1013 'try again later'"):
            await HydraClient(_cfg(url), api_key=KEY).connect()

    async def other(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created"}))
        await ws.recv()
        await ws.close(1008, "policy")

    async for url in _server(other):
        with pytest.raises(HydraHandshakeError, match="close 1008 'policy'") as info:
            await HydraClient(_cfg(url), api_key=KEY).connect()
        assert not isinstance(info.value, HydraServerFullError)


@needs_speech
async def test_errors_after_the_handshake_pass_through_then_close_1011() -> None:
    faults = EmulatorFaults(internal_error_after_turns=1)
    async with Emulator(SCRIPT, config=replace(FAST, faults=faults)) as emu:
        client = HydraClient(_emu_cfg(emu.url), api_key=KEY)
        assert client.close_code is None and client.close_reason is None
        await client.connect()
        assert client.close_code is None  # open
        await client.send(h.InputAudioBufferAppend(audio="AAAA"))  # -> invalid_audio
        events = [ev async for ev in client]  # ends when the server closes; nothing raised
        errors = [ev for ev in events if isinstance(ev, h.ErrorEvent)]
        assert [e.code for e in errors] == ["invalid_audio", "internal_error"]
        assert isinstance(events[-2], h.ResponseDone) and events[-1] is errors[-1]
        assert (client.close_code, client.close_reason) == (1011, "internal error")
        await client.connect()  # reconnect on the same client: a new, healthy session
        assert client.session_id == emu.sessions[1].session_id and client.close_code is None
        await client.close()
        assert client.close_code == 1000


@needs_speech
async def test_24khz_session_reports_rate_and_audio_duration() -> None:
    async with Emulator(SCRIPT, config=replace(FAST, output_rate_hz=24000)) as emu:
        cfg = _emu_cfg(emu.url, output_audio_sample_rate=24000)
        async with HydraClient(cfg, api_key=KEY) as client:
            assert client.output_rate_hz == 24000
            pcm: list[np.ndarray] = []
            async for ev in client:
                if isinstance(ev, h.ResponseOutputAudioDelta):
                    pcm.append(h.decode_pcm16(ev.payload)[0])
                elif isinstance(ev, h.ResponseDone):
                    break
    audio = np.concatenate(pcm)
    np.testing.assert_array_equal(audio, emu.speech.get(GREETING).pcm)
    fresh = Synthesizer().synthesize(GREETING, voice=AGENT_VOICE, sample_rate_hz=24000)
    assert len(audio) / client.output_rate_hz == pytest.approx(len(fresh) / 24000, abs=0.02)
    assert len(audio) / client.output_rate_hz > 1.0  # ~2 s: read at 48 kHz it would be half


def _caller_16k() -> np.ndarray:
    pcm = Synthesizer().synthesize(USER, voice=CALLER_VOICE, sample_rate_hz=16000, seed=3)
    silence = np.zeros(16 * 1500, np.int16)
    return np.concatenate([silence[: 16 * 300], pcm, silence]).astype(np.int16)


@needs_speech
@pytest.mark.skipif(not SPEC_PRESENT, reason=SKIP_REASON)
async def test_every_client_frame_validates_against_asyncapi() -> None:
    sent: list[dict[str, Any]] = []

    def log(direction: str, frame: dict[str, Any], t_ns: int) -> None:
        if direction == "out":
            sent.append(frame)

    async with Emulator(SCRIPT, config=FAST) as emu:
        cfg = _emu_cfg(
            emu.url,
            voice="aria",
            tools=(TOOL,),
            generate_initial_response=False,
            output_audio_sample_rate=48000,
        )
        async with HydraClient(cfg, api_key=KEY, frame_logger=log) as client:
            await client.send(h.SessionUpdate(session={"tools": [TOOL]}))
            await client.send(h.ResponseCancel())  # nothing in flight: a no-op
            pcm = _caller_16k()
            for i in range(0, len(pcm) - 319, 320):
                await client.send_audio(pcm[i : i + 320])
            async with asyncio.timeout(10):
                async for ev in client:
                    if isinstance(ev, h.FunctionCallArgumentsDone):
                        out = h.ConversationItemCreate.function_call_output(ev.call_id, "{}")
                        await client.send(out)
                        await client.send(h.ResponseCreate())
                    elif isinstance(ev, h.ResponseDone) and not ev.function_calls:
                        break
        (s,) = emu.sessions
    wire = s.frames_in  # what the server received, in order (audio elided to a size string)
    assert [f["type"] for f in wire] == [f["type"] for f in sent]
    assert len(wire) == client.stats.frames_out
    schemas = client_schemas()
    assert {f["type"] for f in wire} == set(schemas)  # every client event type was exercised
    for frame in wire:
        validate(schemas[frame["type"]], frame)
    (item,) = [f["item"] for f in wire if f["type"] == "conversation.item.create"]
    assert set(item) == {"type", "call_id", "output"}  # no undocumented "role"
    assert s.flags == []  # and the emulator saw no protocol misbehaviour


@pytest.mark.skipif(not SPEC_PRESENT, reason=SKIP_REASON)
def test_client_schema_check_can_fail() -> None:
    from jsonschema import ValidationError

    schemas = client_schemas()
    bad: list[dict[str, Any]] = [
        {"type": "session.configure", "session": {"input_audio_format": "pcm16"}},  # seed PR
        {"type": "session.configure", "session": {"voice": "wren"}},  # not a served roster
        {"type": "session.configure", "session": {}, "api_key": "x"},
        {"type": "input_audio_buffer.append"},
        {"type": "conversation.item.create", "item": {"type": "function_call_output", "x": 1}},
        {"type": "response.create", "response": {}, "extra": True},
    ]
    for d in bad:
        with pytest.raises(ValidationError):
            validate(schemas[d["type"]], d)
    ok = {"type": "session.configure", "session": {"output_audio_sample_rate": 24000}}
    validate(schemas["session.configure"], ok)
