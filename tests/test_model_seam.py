"""The bridge talks to any realtime model session through one interface (not only Hydra's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from websockets.asyncio.client import connect

from hydralab.bridge import Bridge, BridgeConfig, BridgeSession
from hydralab.client import HydraClient, HydraConfig
from hydralab.clock import Clock
from hydralab.model import RealtimeModelSession
from hydralab.protocol import hydra as h
from hydralab.protocol import twilio as tw
from hydralab.records import load_record
from hydralab.rundir import RunWriter
from hydralab.tools import ToolExecutor

pytestmark = pytest.mark.e2e


class _Stats:
    frames_in = 0
    frames_out = 0
    rejected_in = 0
    warnings: list[dict[str, Any]] = []  # noqa: RUF012


class ScriptedModel:
    """Another OpenAI-Realtime-shaped model: greets with 400 ms of 16 kHz audio, then idles."""

    def __init__(self, session: dict[str, Any]) -> None:
        self.session = session
        self.audio_in = 0
        self.sent: list[h.HydraEvent] = []
        self._closed = asyncio.Event()
        self.stats = _Stats()
        self.notes: list[str] = []

    output_rate_hz = 16000
    announced_rate_hz = 16000
    session_id = "other-model"
    configure_bytes = 0
    close_code: int | None = None

    @property
    def requested_voice(self) -> str | None:
        return self.session.get("voice")

    echoed_voice = "house-voice"

    async def connect(self) -> None:
        return None

    async def send(self, event: h.HydraEvent) -> None:
        self.sent.append(event)

    async def send_audio(self, pcm16k: npt.NDArray[np.int16]) -> None:
        self.audio_in += int(pcm16k.size)

    def sent_type(self, event_id: str | None) -> str | None:
        return None

    async def _events(self) -> AsyncIterator[h.HydraEvent]:
        tone = (3000 * np.sin(np.arange(6400) * 0.2)).astype(np.int16)
        yield h.ResponseCreated(response={"id": "r0"})
        yield h.ResponseOutputAudioTranscriptDelta(response_id="r0", delta="Hi from another model.")
        yield h.ResponseOutputAudioDelta(response_id="r0", delta=h.encode_pcm16(tone))
        yield h.ResponseOutputAudioDone(response_id="r0")
        yield h.ResponseDone(response={"id": "r0", "status": "completed"})
        await self._closed.wait()
        self.close_code = 1000

    def __aiter__(self) -> AsyncIterator[h.HydraEvent]:
        return self._events()

    async def close(self) -> None:
        self._closed.set()


def test_hydra_client_is_a_realtime_model_session() -> None:
    client = HydraClient(HydraConfig(url="ws://127.0.0.1:9/waves/v1/s2s"), api_key="k")
    assert isinstance(client, RealtimeModelSession)
    assert isinstance(ScriptedModel({}), RealtimeModelSession)


async def test_the_bridge_runs_a_call_on_another_model(tmp_path: Path) -> None:
    models: list[ScriptedModel] = []

    def factory(session: dict[str, Any]) -> RealtimeModelSession:
        models.append(ScriptedModel(session))
        return models[-1]

    rec = load_record()
    cfg = BridgeConfig(hydra=HydraConfig(url="ws://unused/", instructions="Be brief."))
    bridge = Bridge(
        lambda: BridgeSession(
            cfg,
            tools=ToolExecutor(rec.initial_db),
            writer_factory=lambda c: RunWriter(tmp_path, epoch_ms=c.epoch_ms, t0_ns=c.t0_ns),
            transcriber=None,
            clock=Clock(),
            model_factory=factory,
        )
    )
    await bridge.start()
    media = 0
    try:
        async with connect(bridge.url) as ws:
            await ws.send(tw.connected_frame())
            await ws.send(tw.start_frame("MZ1"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.5):
                    async for msg in ws:
                        ev = json.loads(msg)
                        media += ev.get("event") == "media"
                        if ev.get("event") == "mark":
                            break
            await ws.send(tw.stop_frame("MZ1"))
        s = await bridge.wait_session(timeout_s=10)
    finally:
        await bridge.stop()
    assert len(models) == 1 and models[0].session["instructions"] == "Be brief."
    assert media >= 19  # 400 ms of the other model's audio reached the caller, 20 ms a frame
    assert models[0].audio_in > 0  # the caller's stream (silence fill) reached the model
    summary = s.summary()
    assert summary["session_id"] == "other-model" and summary["voice_echoed"] == "house-voice"
    audit = json.loads((tmp_path / "audit_log.json").read_text())["transcript"]
    assert [e["value"] for e in audit if e["message_type"] == "assistant"] == [
        "Hi from another model."
    ]


class LosesToolOutputs(ScriptedModel):
    """Asks for a tool, then cannot take its result (the socket is gone)."""

    async def send(self, event: h.HydraEvent) -> None:
        from hydralab.client import HydraConnectionError

        if isinstance(event, h.ConversationItemCreate):
            raise HydraConnectionError("Hydra socket closed")
        await super().send(event)

    async def _events(self) -> AsyncIterator[h.HydraEvent]:
        args = json.dumps({"confirmation_number": "HT4KWB", "last_name": "brooks"})
        yield h.ResponseCreated(response={"id": "r0"})
        yield h.FunctionCallArgumentsDone(
            response_id="r0", call_id="c1", name="get_reservation", arguments=args
        )
        await self._closed.wait()
        self.close_code = 1000


async def test_a_tool_result_that_never_reached_the_model_is_recorded(tmp_path: Path) -> None:
    rec = load_record()
    cfg = BridgeConfig(hydra=HydraConfig(url="ws://unused/", instructions="x"))
    bridge = Bridge(
        lambda: BridgeSession(
            cfg,
            tools=ToolExecutor(rec.initial_db),
            writer_factory=lambda c: RunWriter(tmp_path, epoch_ms=c.epoch_ms, t0_ns=c.t0_ns),
            transcriber=None,
            clock=Clock(),
            model_factory=LosesToolOutputs,
        )
    )
    await bridge.start()
    try:
        async with connect(bridge.url) as ws:
            await ws.send(tw.connected_frame())
            await ws.send(tw.start_frame("MZ1"))
            await asyncio.sleep(0.5)
            await ws.send(tw.stop_frame("MZ1"))
        s = await bridge.wait_session(timeout_s=10)
    finally:
        await bridge.stop()
    lost = s.summary()["tool_outputs_lost"]
    assert [(x["call_id"], x["tool"]) for x in lost] == [("c1", "get_reservation")]
