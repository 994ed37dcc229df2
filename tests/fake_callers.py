"""Callers that are not hydralab's: EVA's simulator and a canonical Twilio Media Streams client.

Written from EVA's documented behaviour (``docs/hydra-facts.md``, "The caller side", from EVA's
``audio_bridge.py``, https://github.com/ServiceNow/eva), not from its
code: what matters is what reaches the bridge.

- :class:`EvaLikeCaller` — ``connected`` with ``protocol: voice-bench-v1``, ``start`` without
  ``streamSid``, ``media`` with only a payload; ``user_speech_start`` stamped with epoch ms just
  before the first chunk, speech paced on absolute 20 ms targets, ``user_speech_stop`` 600 ms
  after the last chunk stamped with the *monotonic* loop clock; while it waits for the assistant
  it streams silence in bursts of 18 frames per 250 ms tick (faster than real time), and it
  sends nothing while the assistant speaks. An assistant turn is over after 200 ms without
  media; it answers after ``settle_s`` of quiet.
- :class:`TwilioLikeCaller` — canonical frames (``streamSid``, ``sequenceNumber``,
  ``media.track/chunk/timestamp``), echoes every ``mark`` back, honours ``clear``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from hydralab.audio import ulaw_encode

FRAME_S = 0.02
SILENCE = ulaw_encode(np.zeros(160, dtype=np.int16))


@dataclass
class Heard:
    """Media received: arrival times (monotonic s) and payload bytes."""

    times: list[float] = field(default_factory=list)
    frames: int = 0
    marks: list[str] = field(default_factory=list)
    clears: int = 0
    other: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> float | None:
        return self.times[-1] if self.times else None


async def _read(ws: ClientConnection, heard: Heard, echo_marks: bool) -> None:
    with contextlib.suppress(Exception):
        async for msg in ws:
            d = json.loads(msg)
            ev = d.get("event") or d.get("type")
            if ev == "media":
                heard.times.append(time.monotonic())
                heard.frames += 1
            elif ev == "mark":
                heard.marks.append(d["mark"]["name"])
                if echo_marks:
                    await ws.send(
                        json.dumps(
                            {
                                "event": "mark",
                                "streamSid": d.get("streamSid"),
                                "sequenceNumber": "0",
                                "mark": d["mark"],
                            }
                        )
                    )
            elif ev == "clear":
                heard.clears += 1
            else:
                heard.other.append(d)


class EvaLikeCaller:
    """Plays ``lines`` (8 kHz PCM16 each) as EVA's simulator would, one per assistant turn."""

    def __init__(
        self,
        url: str,
        lines: list[np.ndarray],
        *,
        settle_s: float = 0.4,
        turn_timeout_s: float = 20.0,
    ) -> None:
        self.url, self.lines, self.settle_s = url, lines, settle_s
        self.turn_timeout_s = turn_timeout_s
        self.heard = Heard()
        self.sent_speech: list[tuple[float, float]] = []  # (epoch s of first, of last chunk end)
        self.stop_stamps: list[str] = []
        self.silence_frames = 0

    async def _wait_for_assistant(self, ws: ClientConnection, since: float) -> None:
        """Stream silence bursts (18 frames per 250 ms) until a turn came and went quiet."""
        deadline = time.monotonic() + self.turn_timeout_s
        while time.monotonic() < deadline:
            last = self.heard.last
            now = time.monotonic()
            if last is not None and last > since and now - last > 0.2:
                return
            if last is None or last <= since or now - last > 0.2:
                for _ in range(18):  # nothing while the assistant speaks
                    await ws.send(
                        json.dumps(
                            {
                                "event": "media",
                                "conversation_id": "eva",
                                "media": {"payload": base64.b64encode(SILENCE).decode()},
                            }
                        )
                    )
                    self.silence_frames += 1
            await asyncio.sleep(0.25)
        raise TimeoutError("no assistant turn")

    async def _speak(self, ws: ClientConnection, pcm8: np.ndarray) -> None:
        await ws.send(
            json.dumps(
                {
                    "event": "user_speech_start",
                    "conversation_id": "eva",
                    "timestamp_ms": str(round(time.time() * 1000)),
                }
            )
        )
        t0, first = time.monotonic(), time.time()
        for k in range(0, len(pcm8), 160):
            target = t0 + (k // 160) * FRAME_S
            await asyncio.sleep(max(0.0, target - time.monotonic()))
            payload = base64.b64encode(ulaw_encode(pcm8[k : k + 160])).decode()
            await ws.send(
                json.dumps(
                    {"event": "media", "conversation_id": "eva", "media": {"payload": payload}}
                )
            )
        self.sent_speech.append((first, time.time() + FRAME_S))
        await asyncio.sleep(0.6)  # EVA's end-of-utterance detection delay
        stamp = str(round(asyncio.get_running_loop().time() * 1000))  # monotonic, not epoch
        self.stop_stamps.append(stamp)
        await ws.send(
            json.dumps(
                {"event": "user_speech_stop", "conversation_id": "eva", "timestamp_ms": stamp}
            )
        )

    async def run(self) -> None:
        async with connect(self.url) as ws:
            reader = asyncio.create_task(_read(ws, self.heard, echo_marks=False))
            await ws.send(
                json.dumps(
                    {"event": "connected", "protocol": "voice-bench-v1", "conversation_id": "eva"}
                )
            )
            await ws.send(json.dumps({"event": "start", "conversation_id": "eva"}))
            since = 0.0
            for pcm8 in self.lines:
                await self._wait_for_assistant(ws, since)
                await asyncio.sleep(self.settle_s)
                since = time.monotonic()
                await self._speak(ws, pcm8)
            await self._wait_for_assistant(ws, since)
            await ws.send(json.dumps({"event": "stop", "conversation_id": "eva"}))
            await ws.close()
            reader.cancel()


class TwilioLikeCaller:
    """Canonical Twilio Media Streams frames, paced in real time; echoes marks."""

    def __init__(self, url: str, lines: list[np.ndarray], *, turn_timeout_s: float = 20.0) -> None:
        self.url, self.lines, self.turn_timeout_s = url, lines, turn_timeout_s
        self.heard = Heard()
        self.sid = "MZ00000000000000000000000000000001"
        self._seq = 0
        self._chunk = 0

    async def _media(self, ws: ClientConnection, ulaw: bytes) -> None:
        self._seq += 1
        self._chunk += 1
        await ws.send(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(self._seq),
                    "streamSid": self.sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(self._chunk),
                        "timestamp": str(self._chunk * 20),
                        "payload": base64.b64encode(ulaw).decode(),
                    },
                }
            )
        )

    async def _until_turn_end(self, ws: ClientConnection, n_marks: int, t0: float) -> None:
        """Stream real-time silence until the bridge's ``n_marks``-th turn-end mark."""
        k = 0
        while len([m for m in self.heard.marks if m.startswith("hydralab:turn_end:")]) < n_marks:
            if time.monotonic() - t0 > self.turn_timeout_s:
                raise TimeoutError("no turn-end mark")
            k += 1
            await self._media(ws, SILENCE)
            await asyncio.sleep(max(0.0, t0 + k * FRAME_S - time.monotonic()))

    async def run(self) -> None:
        async with connect(self.url) as ws:
            reader = asyncio.create_task(_read(ws, self.heard, echo_marks=True))
            await ws.send(
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            self._seq += 1
            await ws.send(
                json.dumps(
                    {
                        "event": "start",
                        "sequenceNumber": str(self._seq),
                        "streamSid": self.sid,
                        "start": {
                            "streamSid": self.sid,
                            "callSid": "CA1",
                            "tracks": ["inbound"],
                            "mediaFormat": {
                                "encoding": "audio/x-mulaw",
                                "sampleRate": 8000,
                                "channels": 1,
                            },
                        },
                    }
                )
            )
            await self._until_turn_end(ws, 1, time.monotonic())
            for i, pcm8 in enumerate(self.lines):
                t0 = time.monotonic()
                await ws.send(
                    json.dumps(
                        {
                            "event": "user_speech_start",
                            "streamSid": self.sid,
                            "timestamp_ms": str(round(time.time() * 1000)),
                        }
                    )
                )
                for k in range(0, len(pcm8), 160):
                    await self._media(ws, ulaw_encode(pcm8[k : k + 160]))
                    await asyncio.sleep(max(0.0, t0 + (k // 160 + 1) * FRAME_S - time.monotonic()))
                await ws.send(
                    json.dumps(
                        {
                            "event": "user_speech_stop",
                            "streamSid": self.sid,
                            "timestamp_ms": str(round(time.time() * 1000)),
                        }
                    )
                )
                await self._until_turn_end(ws, i + 2, time.monotonic())
            await ws.send(
                json.dumps(
                    {
                        "event": "stop",
                        "sequenceNumber": str(self._seq + 1),
                        "streamSid": self.sid,
                        "stop": {"callSid": "CA1"},
                    }
                )
            )
            await ws.close()
            reader.cancel()
