"""The bridge on its own terms: a raw Twilio client and the emulator, real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from needs import needs_speech
from websockets.asyncio.client import connect

from hydralab.bridge import Bridge, BridgeConfig, BridgeSession
from hydralab.client import HydraConfig
from hydralab.clock import Clock
from hydralab.emulator import Emulator, EmulatorConfig
from hydralab.protocol import twilio as tw
from hydralab.records import load_record
from hydralab.rundir import RunWriter
from hydralab.script import AssistantSteps, Script, Speak
from hydralab.tools import ToolExecutor

pytestmark = [pytest.mark.e2e, needs_speech]

SCRIPT = Script(
    greeting="Hi there.",
    user_turns=(),
    assistant_turns=(AssistantSteps(steps=(Speak("Hi there."),)),),
    record_id="t",
)


async def _call_that_goes_quiet(
    tmp_path: Path, *, silence_fill_after_ms: float, quiet_s: float = 2.0
) -> tuple[BridgeSession, Emulator, int]:
    emu = Emulator(SCRIPT, config=EmulatorConfig(idle_timeout_s=0.6))
    url = await emu.start()
    rec = load_record()

    def session() -> BridgeSession:
        return BridgeSession(
            BridgeConfig(
                hydra=HydraConfig(url=url, instructions="Be brief."),
                silence_fill_after_ms=silence_fill_after_ms,
            ),
            tools=ToolExecutor(rec.initial_db),
            writer_factory=lambda c: RunWriter(tmp_path, epoch_ms=c.epoch_ms, t0_ns=c.t0_ns),
            transcriber=None,
            api_key="test-key-1234",
            clock=Clock(),
        )

    bridge = Bridge(session)
    await bridge.start()
    received = 0
    try:
        async with connect(bridge.url) as ws:
            await ws.send(tw.connected_frame())
            await ws.send(tw.start_frame("MZq"))
            # The caller sends no media at all: only the bridge can keep the model's stream alive.
            loop = asyncio.get_running_loop()
            end = loop.time() + quiet_s
            while (left := end - loop.time()) > 0:
                try:
                    msg = await asyncio.wait_for(ws.recv(), left)
                except (TimeoutError, Exception):
                    break
                if json.loads(msg).get("event") == "media":
                    received += 1
            with contextlib.suppress(Exception):
                await ws.send(tw.stop_frame("MZq"))
        s = await bridge.wait_session(timeout_s=15)
    finally:
        await bridge.stop()
        await emu.stop()
    return s, emu, received


async def test_silence_fill_keeps_an_idle_model_session_alive(tmp_path: Path) -> None:
    s, emu, received = await _call_that_goes_quiet(tmp_path, silence_fill_after_ms=60)
    assert received > 20  # the greeting played
    assert s.ended_reason == "goodbye", s.summary()
    assert emu.sessions[0].closed_reason != "idle_timeout"
    ev = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    appends = [e for e in ev if e["frame"].get("type") == "input_audio_buffer.append"]
    # ~20 ms of silence per 20 ms while the caller is quiet (2 s → ~100 frames)
    assert len(appends) >= 70


async def test_without_silence_fill_the_model_hangs_up(tmp_path: Path) -> None:
    # Control: the same quiet call with the fill disabled loses the model to its idle timeout.
    s, emu, _ = await _call_that_goes_quiet(tmp_path, silence_fill_after_ms=1e9)
    assert s.ended_reason == "model_disconnected"
    assert emu.sessions[0].closed_reason is not None
