"""HydraClient handshake against tiny scripted servers on 127.0.0.1 (real sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from hydralab.client import (
    HydraAuthError,
    HydraClient,
    HydraConfig,
    HydraError,
    HydraHandshakeError,
)
from hydralab.protocol import hydra as h

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
        await ws.send(json.dumps({"type": "session.configured",
                                  "session": {"output_audio_sample_rate": 24000}}))
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
    assert any(f.get("audio") == "<642 bytes>" for _, f in logged)  # audio elided in the log


async def test_error_during_handshake_fails_fast() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created"}))
        await ws.recv()
        await ws.send(json.dumps({"type": "error", "error": {
            "code": "invalid_request_error", "message": "unknown voice"}}))
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
