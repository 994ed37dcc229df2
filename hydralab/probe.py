"""``hydralab probe``: record raw frames of real Hydra sessions as replayable fixtures.

For key holders. Each probe session is saved as one JSONL fixture (the format the replay
tests load, see :data:`FIXTURE_KIND`): a header line, then one line per frame, then the close::

    {"kind": "hydralab.frames", "version": 1, "scenario": ..., "model": ..., "url": ..., ...}
    {"t_ms": 12.5, "dir": "in", "frame": {"type": "session.created", ...}}
    {"t_ms": 13.1, "dir": "out", "frame": {"type": "session.configure", ...}}
    {"t_ms": 9120.0, "dir": "close", "code": 1000, "reason": ""}

``t_ms`` counts from the moment the socket opened; ``in`` = server -> client, ``out`` = client
-> server. Frames are kept whole, audio payloads included (up to
:attr:`ProbeConfig.max_fixture_bytes` per file; past that, input audio is elided as
``"<N bytes>"`` and output audio emptied, and the header says from when). The API key is never
written: the header's URL has no query string and every file is checked for the key (and the
other providers' keys) before it is written.

Scenarios (:data:`SCENARIOS`), each run for every ``--models`` tag:

1. ``handshake``: no voice, the tag's first roster voice, a retired original-release voice and
   (v1.x tags) another tag's voice — an ``error`` is expected for the last two: the Hydra model
   card says rosters do not overlap and unknown voices are rejected.
2. ``utterance``: ~1.5 s of speech then silence, 20 ms frames in real time, until
   ``response.done``.
3. ``tool_call``: one tool (``get_weather``), "What's the weather in Paris?", the call answered
   with ``function_call_output`` + ``response.create`` at once (Smallest's "Tool calling"
   page), noting when the tool response's ``response.done`` arrives.
4. ``barge_in``: speak again ~1 s into a long answer; what follows ``speech_started``.
5. ``configure_size``: binary search of the configure size above which no audio comes back,
   and whether a ``session.update`` with ``tools`` counts against it: one more session with a
   configure well under the ceiling, then a tools update larger than the whole ceiling. Its
   summary says ``update_counts_against_ceiling``: ``true`` (the update was applied and no
   audio came back), ``false`` (applied, and audio still came) or ``null`` (unknown, with
   ``update_counts_reason``: no ceiling found, the update refused or not echoed, a failed
   handshake). ``configure_mode="update"`` depends on the answer being ``false``.
6. ``stt``: scenario 2's utterance through each batch STT provider whose key is set.

Audio is paced in real time (Hydra closes sessions fed faster); :attr:`ProbeConfig.speed` may
exceed 1 only against a local emulator, which is how the tests run all of this offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hydralab.client import HYDRA_URL, MODELS, VOICES
from hydralab.protocol.hydra import (
    ConversationItemCreate,
    InputAudioBufferAppend,
    ResponseCreate,
    SessionConfigure,
    SessionUpdate,
    decode_pcm16,
)
from hydralab.secrets import Secret, get_api_key, install_log_redaction, redact, redact_obj

RETIRED_VOICE = "wren"
"""A name from the original release's roster (Hydra model card, docs commit ``6afc848d``)."""

__all__ = [
    "DEFAULT_MODELS",
    "FIXTURE_KIND",
    "FIXTURE_VERSION",
    "SCENARIOS",
    "SUMMARY_NAME",
    "ProbeAuthError",
    "ProbeConfig",
    "ProbeError",
    "parse_scenarios",
    "read_fixture",
    "run_probe",
    "run_probe_sync",
]

FIXTURE_KIND = "hydralab.frames"
"""``kind`` of a fixture's header line."""
FIXTURE_VERSION = 1
SUMMARY_NAME = "probe_summary.json"
DEFAULT_MODELS: tuple[str, ...] = ("hydra-v1.1", "hydra-v1.0", "hydra")
SCENARIOS: tuple[str, ...] = (
    "handshake",
    "utterance",
    "tool_call",
    "barge_in",
    "configure_size",
    "stt",
)
"""Scenario names in run order (``--only`` also takes their 1-based numbers)."""
STT_PROVIDERS: tuple[str, ...] = ("smallest", "openai", "deepgram")

INPUT_RATE_HZ = 16_000
FRAME_SAMPLES = 320
"""20 ms at 16 kHz per ``input_audio_buffer.append``."""
FRAME_S = FRAME_SAMPLES / INPUT_RATE_HZ
DEFAULT_OUTPUT_RATE_HZ = 48_000

INSTRUCTIONS = "You are a friendly assistant. Reply briefly."
STORY_INSTRUCTIONS = "You are a storyteller. Answer every request with a long, detailed story."
WEATHER_INSTRUCTIONS = "You are a weather assistant. Use get_weather when asked."
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Look up the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
_FILLER = "Background note, not to be read aloud: the sky is blue and the sea is calm. "


class ProbeError(RuntimeError):
    """The probe cannot run (configuration, connection, missing extra). Never shows a key."""


class ProbeAuthError(ProbeError):
    """Hydra refused the key (HTTP 401 at the WebSocket upgrade): nothing more to probe."""


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    """What to probe and how hard.

    Attributes:
        url: Hydra endpoint (``ws://127.0.0.1:PORT`` for the emulator).
        out_dir: Where fixtures and ``probe_summary.json`` go.
        models: ``?model=`` tags to probe.
        scenarios: Scenario names to run (in :data:`SCENARIOS` order).
        utterance_text: Scenario 2's utterance (also scenario 5's and 6's).
        weather_text: Scenario 3's question.
        story_text: Scenario 4's request for a long answer.
        barge_in_text: Scenario 4's interruption.
        lead_silence_s: Silence streamed before each utterance.
        speed: Audio pacing (1.0 = real time). Above 1 only for a loopback URL.
        response_timeout_s: Audio-time budget for a turn after its speech was sent.
        handshake_timeout_s: Wait for ``session.created``/``session.configured``.
        open_timeout_s: WebSocket opening timeout.
        linger_s: Audio time to keep listening after a turn's last ``response.done``.
        barge_in_after_s: Audio time after a response's first audio delta before barging in.
        bisect_lo_bytes: Configure size assumed to produce audio.
        bisect_hi_bytes: Largest configure size tried.
        bisect_sessions: Sessions for scenario 5, the ``session.update`` check included.
        bisect_tolerance_bytes: Stop bisecting once the bracket is this narrow.
        max_fixture_bytes: Audio payloads past this fixture size are emptied.
    """

    url: str = HYDRA_URL
    out_dir: Path = Path("probe")
    models: tuple[str, ...] = DEFAULT_MODELS
    scenarios: tuple[str, ...] = SCENARIOS
    utterance_text: str = "Hello there, how are you doing today?"
    weather_text: str = "What's the weather in Paris?"
    story_text: str = "Please tell me a long story about a dragon and a brave knight."
    barge_in_text: str = "Sorry, wait a moment please."
    lead_silence_s: float = 0.3
    speed: float = 1.0
    response_timeout_s: float = 20.0
    handshake_timeout_s: float = 10.0
    open_timeout_s: float = 10.0
    linger_s: float = 1.0
    barge_in_after_s: float = 1.0
    bisect_lo_bytes: int = 4096
    bisect_hi_bytes: int = 65536
    bisect_sessions: int = 8
    bisect_tolerance_bytes: int = 256
    max_fixture_bytes: int = 8_000_000

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise ProbeError(f"unknown model tag(s) {unknown}; use some of {', '.join(MODELS)}")
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad or not self.scenarios:
            raise ProbeError(f"unknown scenario(s) {bad}; use some of {', '.join(SCENARIOS)}")
        if self.speed <= 0:
            raise ProbeError("speed must be positive")
        host = urlsplit(self.url).hostname or ""
        if self.speed > 1.0 and host not in ("127.0.0.1", "localhost", "::1"):
            raise ProbeError(
                "audio faster than real time gets a Hydra session closed: speed > 1 "
                "is for a local emulator only"
            )
        if not 0 < self.bisect_lo_bytes < self.bisect_hi_bytes:
            raise ProbeError("need 0 < bisect_lo_bytes < bisect_hi_bytes")
        if self.bisect_sessions < 2:
            raise ProbeError("bisect_sessions must be at least 2")

    def redacted_url(self) -> str:
        """The endpoint as written to fixtures: no query string (where the key would be)."""
        return redact(self.url.split("?", 1)[0])


def parse_scenarios(spec: str | None) -> tuple[str, ...]:
    """``"1,tool_call"`` -> scenario names in run order; ``None``/empty = all.

    Raises:
        ProbeError: An unknown name or number.
    """
    if not spec:
        return SCENARIOS
    chosen: set[str] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part.isdigit() and 1 <= int(part) <= len(SCENARIOS):
            chosen.add(SCENARIOS[int(part) - 1])
        elif part in SCENARIOS:
            chosen.add(part)
        else:
            raise ProbeError(
                f"unknown scenario {part!r}; use names or numbers of: "
                + ", ".join(f"{i}={s}" for i, s in enumerate(SCENARIOS, 1))
            )
    return tuple(s for s in SCENARIOS if s in chosen)


# ---------------------------------------------------------------- one recorded session


def _dumps(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


class _Session:
    """One socket: every frame with its time, an inbox cursor and a paced 20 ms mic."""

    def __init__(self, ws: ClientConnection, *, speed: float) -> None:
        self.ws = ws
        self.speed = speed
        self.t0_ns = time.monotonic_ns()
        self.lines: list[dict[str, Any]] = []
        self.inbox: list[dict[str, Any]] = []
        self.closed = False
        self.output_rate_hz = DEFAULT_OUTPUT_RATE_HZ
        self._cursor = 0
        self._arrived = asyncio.Event()
        self._pending: list[npt.NDArray[np.int16]] = []
        self._offset = 0
        self._mic_task: asyncio.Task[None] | None = None
        self.mic_frames = 0

    def t_ms(self) -> float:
        return round((time.monotonic_ns() - self.t0_ns) / 1e6, 3)

    async def read(self) -> None:
        try:
            async for msg in self.ws:
                t = self.t_ms()
                if isinstance(msg, bytes):
                    frame: dict[str, Any] = {"type": "<binary>", "bytes": len(msg)}
                else:
                    try:
                        parsed = json.loads(msg)
                    except json.JSONDecodeError:
                        parsed = None
                    frame = (
                        parsed
                        if isinstance(parsed, dict)
                        else {"type": "<not-json>", "text": msg[:500]}
                    )
                self.lines.append({"t_ms": t, "dir": "in", "frame": frame})
                self.inbox.append(frame)
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self.lines.append(
                {
                    "t_ms": self.t_ms(),
                    "dir": "close",
                    "code": self.ws.close_code,
                    "reason": redact(self.ws.close_reason or ""),
                }
            )
            self._arrived.set()

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame (recorded as sent); a closed socket is not an error here."""
        if self.closed:
            return
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(_dumps(frame))
            self.lines.append({"t_ms": self.t_ms(), "dir": "out", "frame": frame})

    async def send_text(self, text: str) -> None:
        """Send pre-serialized text (its exact size matters, scenario 5)."""
        if self.closed:
            return
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(text)
            self.lines.append({"t_ms": self.t_ms(), "dir": "out", "frame": json.loads(text)})

    async def next(self, deadline: float) -> dict[str, Any] | None:
        """Next unread server frame, or ``None`` at the (monotonic s) deadline or close."""
        while self._cursor >= len(self.inbox):
            if self.closed:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
        frame = self.inbox[self._cursor]
        self._cursor += 1
        return frame

    async def expect(self, types: Sequence[str], *, timeout_s: float) -> dict[str, Any] | None:
        """Skip to the next frame of one of ``types`` (wall-clock timeout)."""
        deadline = time.monotonic() + timeout_s
        while (f := await self.next(deadline)) is not None:
            if f.get("type") in types:
                return f
        return None

    # ---- the mic: 20 ms frames, real-time paced (divided by speed), silence when idle
    def say(self, pcm: npt.NDArray[np.int16]) -> None:
        self._pending.append(pcm)

    @property
    def speaking(self) -> bool:
        return bool(self._pending)

    def start_mic(self) -> None:
        if self._mic_task is None:
            self._mic_task = asyncio.create_task(self._mic())

    async def _mic(self) -> None:
        period = FRAME_S / self.speed
        start = time.monotonic()
        while not self.closed:
            chunk = np.zeros(FRAME_SAMPLES, np.int16)
            filled = 0
            while self._pending and filled < FRAME_SAMPLES:
                src = self._pending[0]
                take = min(FRAME_SAMPLES - filled, len(src) - self._offset)
                chunk[filled : filled + take] = src[self._offset : self._offset + take]
                filled += take
                self._offset += take
                if self._offset >= len(src):
                    self._pending.pop(0)
                    self._offset = 0
            await self.send(InputAudioBufferAppend.from_pcm(chunk).to_dict())
            self.mic_frames += 1
            await asyncio.sleep(max(0.0, start + self.mic_frames * period - time.monotonic()))

    async def stop_mic(self) -> None:
        task, self._mic_task = self._mic_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def audio_s(self, seconds: float) -> float:
        """Wall seconds for ``seconds`` of audio time at this session's pace."""
        return seconds / self.speed


# ---------------------------------------------------------------- a spoken turn


@dataclass
class _Response:
    id: str
    t_created_ms: float
    after_say: int
    audio_bytes: int = 0
    first_audio_ms: float | None = None
    transcript: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None
    reason: str | None = None
    t_done_ms: float | None = None

    def facts(self, rate_hz: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "t_created_ms": self.t_created_ms,
            "t_first_audio_ms": self.first_audio_ms,
            "t_done_ms": self.t_done_ms,
            "status": self.status,
            "reason": self.reason,
            "audio_ms": round(self.audio_bytes / 2 * 1000 / rate_hz, 1),
            "transcript": " ".join(d.strip() for d in self.transcript).strip(),
            "calls": self.calls,
        }


@dataclass
class _Turns:
    """What came back while we spoke: per response, plus speech events and our tool answers."""

    responses: dict[str, _Response] = field(default_factory=dict)
    speech_started_ms: list[float] = field(default_factory=list)
    speech_stopped_ms: list[float] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    tool_answers: list[dict[str, Any]] = field(default_factory=list)
    transcript_deltas: list[str] = field(default_factory=list)
    says: int = 0
    final: _Response | None = None
    after_barge: list[str] = field(default_factory=list)
    barge_ms: float | None = None

    def facts(self, rate_hz: int) -> dict[str, Any]:
        return {
            "speech_started_ms": self.speech_started_ms,
            "speech_stopped_ms": self.speech_stopped_ms,
            "responses": [r.facts(rate_hz) for r in self.responses.values()],
            "errors": self.errors,
            "tool_answers": self.tool_answers,
            "final_response": self.final.id if self.final else None,
            "audio_ms": round(
                sum(r.audio_bytes for r in self.responses.values()) / 2 * 1000 / rate_hz, 1
            ),
        }


def _tool_result(name: str, arguments: str) -> str:
    try:
        args = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        args = {}
    if name == "get_weather":
        city = args.get("city", "") if isinstance(args, dict) else ""
        return json.dumps({"city": city, "conditions": "sunny", "temperature_c": 21})
    return json.dumps({"ok": True})


async def _converse(
    s: _Session,
    pcm: npt.NDArray[np.int16],
    *,
    timeout_s: float,
    linger_s: float,
    turns: _Turns | None = None,
    barge_in: npt.NDArray[np.int16] | None = None,
    barge_in_after_s: float = 1.0,
) -> _Turns:
    """Say ``pcm`` (silence continues), answer tool calls at once, and read until the
    ``response.done`` of a response created after our last utterance that made no tool call.

    With ``barge_in``, that utterance is said ``barge_in_after_s`` (audio time) after the first
    audio delta of the first response; frame types after its ``speech_started`` are noted.
    ``timeout_s`` is audio time after each utterance has been sent.
    """
    t = turns if turns is not None else _Turns()
    t.says += 1
    s.say(pcm)
    speech_s = len(pcm) / INPUT_RATE_HZ
    deadline = time.monotonic() + s.audio_s(speech_s + timeout_s)
    barge_at: float | None = None
    barged = False
    while True:
        wait_until = deadline if barge_at is None else min(deadline, barge_at)
        f = await s.next(wait_until)
        now = time.monotonic()
        if barge_at is not None and now >= barge_at and not barged and barge_in is not None:
            barged = True
            barge_at = None
            t.says += 1
            t.barge_ms = s.t_ms()
            s.say(barge_in)
            deadline = now + s.audio_s(len(barge_in) / INPUT_RATE_HZ + timeout_s)
        if f is None:
            if s.closed or now >= deadline:
                break
            continue
        typ = f.get("type")
        rid = f.get("response_id")
        if (
            barged
            and (t.after_barge or typ == "input_audio_buffer.speech_started")
            and len(t.after_barge) < 400
        ):
            t.after_barge.append(str(typ))
        if typ == "input_audio_buffer.speech_started":
            t.speech_started_ms.append(s.t_ms())
        elif typ == "input_audio_buffer.speech_stopped":
            t.speech_stopped_ms.append(s.t_ms())
        elif typ == "response.created":
            resp = f.get("response") if isinstance(f.get("response"), dict) else {}
            new_id = str((resp or {}).get("id") or f"<anon{len(t.responses)}>")
            t.responses[new_id] = _Response(new_id, s.t_ms(), t.says)
        elif typ == "response.output_audio.delta":
            r = t.responses.get(str(rid))
            payload = f.get("delta") if isinstance(f.get("delta"), str) else f.get("audio")
            n = len(decode_pcm16(payload)[0]) * 2 if isinstance(payload, str) else 0
            if r is not None and n:
                r.audio_bytes += n
                if r.first_audio_ms is None:
                    r.first_audio_ms = s.t_ms()
                    if barge_in is not None and not barged and barge_at is None:
                        barge_at = now + s.audio_s(barge_in_after_s)
        elif typ == "response.output_audio_transcript.delta":
            d = f.get("delta")
            if isinstance(d, str):
                t.transcript_deltas.append(d)
                r = t.responses.get(str(rid))
                if r is not None:
                    r.transcript.append(d)
        elif typ == "response.function_call_arguments.done":
            call_id, name = str(f.get("call_id", "")), str(f.get("name", ""))
            arguments = str(f.get("arguments", ""))
            r = t.responses.get(str(rid))
            if r is not None:
                r.calls.append(
                    {"call_id": call_id, "name": name, "arguments": arguments, "t_ms": s.t_ms()}
                )
            out = ConversationItemCreate.function_call_output(
                call_id, _tool_result(name, arguments)
            )
            await s.send(out.to_dict())
            await s.send(ResponseCreate().to_dict())
            t.tool_answers.append({"call_id": call_id, "name": name, "t_sent_ms": s.t_ms()})
        elif typ == "response.done":
            resp = f.get("response") if isinstance(f.get("response"), dict) else {}
            resp = resp or {}
            r = t.responses.get(str(resp.get("id")))
            if r is None:
                r = _Response(str(resp.get("id")), s.t_ms(), t.says)
                t.responses[r.id] = r
            details = resp.get("status_details")
            r.status = str(resp.get("status")) if resp.get("status") is not None else None
            reason = details.get("reason") if isinstance(details, dict) else None
            r.reason = str(reason) if reason is not None else None
            r.t_done_ms = s.t_ms()
            out_items = resp.get("output") if isinstance(resp.get("output"), list) else []
            called = r.calls or any(
                isinstance(i, dict) and i.get("type") == "function_call" for i in out_items or []
            )
            pending_barge = barge_in is not None and not barged
            if not called and r.after_say == t.says and not s.speaking and not pending_barge:
                t.final = r
                break
        elif typ == "error":
            t.errors.append(f)
    if t.final is not None and linger_s > 0:
        end = time.monotonic() + s.audio_s(linger_s)
        while await s.next(end) is not None:
            pass
    return t


# ---------------------------------------------------------------- the probe


@dataclass
class _Result:
    scenario: str
    model: str
    variant: str = ""
    outcome: str = "ok"
    file: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "model": self.model,
            "variant": self.variant,
            "outcome": self.outcome,
            "file": self.file,
            "facts": self.facts,
            "error": self.error,
        }


class _Probe:
    def __init__(self, config: ProbeConfig, key: Secret, log: Callable[[str], None]) -> None:
        install_log_redaction()  # idempotent: websockets' DEBUG lines carry the URL's key
        self.cfg = config
        self.key = key
        self.log = log
        self.results: list[_Result] = []
        self._speech: dict[str, npt.NDArray[np.int16]] = {}
        self._secrets = [key.reveal()] + [
            os.environ.get(v, "") for v in ("OPENAI_API_KEY", "DEEPGRAM_API_KEY")
        ]

    # ---- plumbing
    def _url(self, model: str) -> str:
        q = urlencode({"model": model, "api_key": self.key.reveal()})
        return f"{self.cfg.url}{'&' if '?' in self.cfg.url else '?'}{q}"

    @contextlib.asynccontextmanager
    async def _open(self, model: str) -> AsyncIterator[_Session]:
        try:
            ws = await connect(
                self._url(model),
                compression=None,
                max_size=None,
                open_timeout=self.cfg.open_timeout_s,
            )
        except InvalidStatus as exc:
            code = exc.response.status_code
            if code == 401:
                raise ProbeAuthError(
                    "Hydra rejected the API key (HTTP 401 at the WebSocket upgrade); "
                    "check SMALLEST_API_KEY"
                ) from None
            raise ProbeError(f"Hydra refused the connection: HTTP {code}") from None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ProbeError(
                f"cannot connect to {self.cfg.redacted_url()} (model {model}): {redact(str(exc))}"
            ) from None
        s = _Session(ws, speed=self.cfg.speed)
        reader = asyncio.create_task(s.read())
        try:
            yield s
        finally:
            await s.stop_mic()
            with contextlib.suppress(Exception):
                await ws.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await reader

    async def _handshake(self, s: _Session, session: dict[str, Any]) -> dict[str, Any] | None:
        """``session.created`` -> configure -> ``session.configured`` (or ``error``/None)."""
        timeout = self.cfg.handshake_timeout_s
        first = await s.expect(("session.created", "error"), timeout_s=timeout)
        if first is None or first.get("type") == "error":
            return first
        await s.send(SessionConfigure(session=session).to_dict())
        ack = await s.expect(("session.configured", "error"), timeout_s=timeout)
        if ack is not None and ack.get("type") == "session.configured":
            conf = ack.get("session") if isinstance(ack.get("session"), dict) else {}
            rate = (conf or {}).get("output_audio_sample_rate")
            if isinstance(rate, int) and rate > 0:
                s.output_rate_hz = rate
        return ack

    def speech(self, text: str) -> npt.NDArray[np.int16]:
        """``text`` as 16 kHz PCM with ``lead_silence_s`` before it (offline eSpeak NG)."""
        if text not in self._speech:
            from hydralab.speech.tts import CALLER_VOICE, SpeechUnavailableError, Synthesizer

            try:
                pcm = Synthesizer().synthesize(
                    text, voice=CALLER_VOICE, sample_rate_hz=INPUT_RATE_HZ, seed=7
                )
            except SpeechUnavailableError:
                raise ProbeError(
                    "the probe's speech scenarios need the optional 'speech' extra "
                    "(offline eSpeak NG TTS): pip install 'hydralab[speech]'"
                ) from None
            lead = np.zeros(int(self.cfg.lead_silence_s * INPUT_RATE_HZ), np.int16)
            self._speech[text] = np.concatenate([lead, pcm]).astype(np.int16)
        return self._speech[text]

    def _save(
        self, s: _Session, *, scenario: str, model: str, variant: str, extra: Mapping[str, Any]
    ) -> str:
        name = f"{scenario}-{model}" + (f"-{variant}" if variant else "") + ".jsonl"
        header: dict[str, Any] = {
            "kind": FIXTURE_KIND,
            "version": FIXTURE_VERSION,
            "scenario": scenario,
            "model": model,
            "url": self.cfg.redacted_url(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "variant": variant,
            "output_audio_sample_rate": s.output_rate_hz,
            "input_audio_sample_rate": INPUT_RATE_HZ,
            "speed": self.cfg.speed,
            **extra,
        }
        lines = _cap_audio(s.lines, header, self.cfg.max_fixture_bytes)
        text = "\n".join(_dumps(x) for x in [header, *lines]) + "\n"
        self._write(self.cfg.out_dir / name, text)
        return name

    def _write(self, path: Path, text: str) -> None:
        """Write ``text`` (atomically) unless a key, raw or JSON-escaped, occurs in it."""
        for secret in self._secrets:
            if secret and (secret in text or json.dumps(secret)[1:-1] in text):
                raise ProbeError(f"refusing to write {path.name}: it would contain a key")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    async def _guard(self, result: _Result, body: Callable[[], Any]) -> None:
        try:
            await body()
        except ProbeAuthError:
            raise
        except Exception as exc:
            result.outcome = "error"
            result.error = redact(f"{type(exc).__name__}: {exc}")
        self.results.append(result)
        where = f" -> {result.file}" if result.file else ""
        self.log(
            f"{result.scenario:<15} {result.model:<11} {result.variant:<14} "
            f"{result.outcome}{where}" + (f" ({result.error})" if result.error else "")
        )

    # ---- 1. handshake
    async def handshake(self, model: str) -> None:
        variants: list[tuple[str, str | None, str]] = [
            ("no_voice", None, "session.configured"),
            ("roster_voice", VOICES[model][0], "session.configured"),
            # one of the original six names, which the live API rejects on every tag
            ("retired_voice", RETIRED_VOICE, "error"),
        ]
        if model != "hydra":  # the deprecated tag takes either roster
            other = next(m for m in ("hydra-v1.1", "hydra-v1.0") if m != model)
            variants.append(("foreign_voice", VOICES[other][0], "error"))
        for variant, voice, expected in variants:
            r = _Result("handshake", model, variant)

            async def body(
                r: _Result = r,
                voice: str | None = voice,
                exp: str = expected,
                variant: str = variant,
            ) -> None:
                session: dict[str, Any] = {
                    "instructions": INSTRUCTIONS,
                    "generate_initial_response": False,
                }
                if voice:
                    session["voice"] = voice
                async with self._open(model) as s:
                    ack = await self._handshake(s, session)
                    end = time.monotonic() + self.cfg.handshake_timeout_s / 20
                    while await s.next(end) is not None:  # trailing frames, if any
                        pass
                got = "timeout" if ack is None else str(ack.get("type"))
                conf = ack.get("session") if ack is not None else None
                conf = conf if isinstance(conf, dict) else {}
                err = ack.get("error") if ack is not None and got == "error" else None
                types = [str(x["frame"].get("type")) for x in s.lines if x["dir"] == "in"]
                r.facts = {
                    "requested_voice": voice,
                    "result": got,
                    "types_in": types,
                    "warnings": [
                        x["frame"]
                        for x in s.lines
                        if x["dir"] == "in" and x["frame"].get("type") == "warning"
                    ],
                    "echoed_voice": conf.get("voice"),
                    "output_audio_sample_rate": conf.get("output_audio_sample_rate"),
                    "session_keys": sorted(conf),
                    "error": err,
                }
                r.outcome = "ok" if got == exp else "unexpected"
                r.file = self._save(
                    s,
                    scenario="handshake",
                    model=model,
                    variant=variant,
                    extra={"voice": voice, "expected": exp},
                )

            await self._guard(r, body)

    # ---- 2-4. spoken turns
    async def _spoken(
        self,
        model: str,
        session: dict[str, Any],
        pcm: npt.NDArray[np.int16],
        *,
        barge_in: npt.NDArray[np.int16] | None = None,
    ) -> tuple[_Turns, _Session, dict[str, Any] | None]:
        async with self._open(model) as s:
            ack = await self._handshake(s, session)
            turns = _Turns()
            if ack is not None and ack.get("type") == "session.configured":
                s.start_mic()
                await _converse(
                    s,
                    pcm,
                    timeout_s=self.cfg.response_timeout_s,
                    linger_s=self.cfg.linger_s,
                    turns=turns,
                    barge_in=barge_in,
                    barge_in_after_s=self.cfg.barge_in_after_s,
                )
        return turns, s, ack

    def _configured_or_fail(self, r: _Result, ack: dict[str, Any] | None) -> bool:
        if ack is None or ack.get("type") != "session.configured":
            r.outcome = "error"
            r.error = "no session.configured: " + ("timeout" if ack is None else _dumps(ack))
            return False
        return True

    async def utterance(self, model: str) -> None:
        r = _Result("utterance", model)

        async def body() -> None:
            pcm = self.speech(self.cfg.utterance_text)
            session = {"instructions": INSTRUCTIONS, "generate_initial_response": False}
            turns, s, ack = await self._spoken(model, session, pcm)
            r.file = self._save(
                s,
                scenario="utterance",
                model=model,
                variant="",
                extra={"utterance": self.cfg.utterance_text},
            )
            if not self._configured_or_fail(r, ack):
                return
            r.facts = turns.facts(s.output_rate_hz)
            r.outcome = "ok" if turns.final is not None and turns.final.audio_bytes else "no_audio"
            if turns.final is None:
                r.outcome = "no_response"

        await self._guard(r, body)

    async def tool_call(self, model: str) -> None:
        r = _Result("tool_call", model)

        async def body() -> None:
            pcm = self.speech(self.cfg.weather_text)
            session = {
                "instructions": WEATHER_INSTRUCTIONS,
                "tools": [WEATHER_TOOL],
                "generate_initial_response": False,
            }
            turns, s, ack = await self._spoken(model, session, pcm)
            r.file = self._save(
                s,
                scenario="tool_call",
                model=model,
                variant="",
                extra={"utterance": self.cfg.weather_text},
            )
            if not self._configured_or_fail(r, ack):
                return
            facts = turns.facts(s.output_rate_hz)
            tool_resps = [x for x in turns.responses.values() if x.calls]
            answers = turns.tool_answers
            if tool_resps and answers:
                tr = tool_resps[0]
                sent = answers[0]["t_sent_ms"]
                facts["tool_response_done"] = (
                    "never"
                    if tr.t_done_ms is None
                    else "before_output"
                    if tr.t_done_ms < sent
                    else "after_output"
                )
                facts["tool_response_done_minus_output_ms"] = (
                    None if tr.t_done_ms is None else round(tr.t_done_ms - sent, 1)
                )
            deltas = turns.transcript_deltas
            facts["transcript_deltas"] = deltas[:40]
            facts["deltas_with_edge_space"] = sum(
                1 for d in deltas if d[:1].isspace() or d[-1:].isspace()
            )
            facts["deltas_total"] = len(deltas)
            r.facts = facts
            r.outcome = (
                "ok"
                if tool_resps and turns.final is not None
                else "no_tool_call"
                if not tool_resps
                else "no_narration"
            )

        await self._guard(r, body)

    async def barge_in(self, model: str) -> None:
        r = _Result("barge_in", model)

        async def body() -> None:
            pcm = self.speech(self.cfg.story_text)
            barge = self.speech(self.cfg.barge_in_text)
            session = {"instructions": STORY_INSTRUCTIONS, "generate_initial_response": False}
            turns, s, ack = await self._spoken(model, session, pcm, barge_in=barge)
            r.file = self._save(
                s,
                scenario="barge_in",
                model=model,
                variant="",
                extra={
                    "utterance": self.cfg.story_text,
                    "barge_in": self.cfg.barge_in_text,
                    "barge_in_after_s": self.cfg.barge_in_after_s,
                },
            )
            if not self._configured_or_fail(r, ack):
                return
            facts = turns.facts(s.output_rate_hz)
            facts["barge_in_sent_ms"] = turns.barge_ms
            facts["after_speech_started"] = _runs(turns.after_barge)
            cut = [x for x in turns.responses.values() if x.status == "cancelled"]
            facts["cancelled"] = [{"id": x.id, "reason": x.reason} for x in cut]
            r.facts = facts
            r.outcome = "ok" if turns.barge_ms is not None and turns.after_barge else "no_barge_in"

        await self._guard(r, body)

    # ---- 5. configure-size bisection
    def _configure_text(self, size: int) -> str:
        frame = SessionConfigure(
            session={"instructions": INSTRUCTIONS, "generate_initial_response": False}
        ).to_dict()
        base = len(_dumps(frame).encode("utf-8"))
        pad = max(0, size - base)
        filler = (_FILLER * (pad // len(_FILLER) + 1))[:pad]
        frame["session"]["instructions"] = INSTRUCTIONS + filler
        return _dumps(frame)

    async def _size_session(
        self,
        model: str,
        size: int,
        *,
        update_bytes: int = 0,
    ) -> tuple[bool, str, int, dict[str, Any]]:
        """One session with a ``size``-byte configure (plus a ``session.update`` of about
        ``update_bytes``): did the short utterance get any audio back?"""
        text = self._configure_text(size)
        actual = len(text.encode("utf-8"))
        pcm = self.speech(self.cfg.utterance_text)
        variant = f"{actual:06d}" + (f"-update{update_bytes}" if update_bytes else "")
        facts: dict[str, Any] = {"configure_bytes": actual}
        async with self._open(model) as s:
            first = await s.expect(
                ("session.created", "error"), timeout_s=self.cfg.handshake_timeout_s
            )
            ack = None
            if first is not None and first.get("type") == "session.created":
                await s.send_text(text)
                ack = await s.expect(
                    ("session.configured", "error"), timeout_s=self.cfg.handshake_timeout_s
                )
            if ack is not None and ack.get("type") == "session.configured":
                if update_bytes:
                    tool = dict(WEATHER_TOOL, name="lookup_note")
                    base = len(_dumps(SessionUpdate(session={"tools": [tool]}).to_dict()))
                    pad = max(0, update_bytes - base)
                    tool["description"] = (_FILLER * (pad // len(_FILLER) + 1))[:pad]
                    upd = SessionUpdate(session={"tools": [tool]}).to_dict()
                    facts["update_bytes"] = len(_dumps(upd).encode("utf-8"))
                    await s.send(upd)
                    echo = await s.expect(("session.updated", "error"), timeout_s=2.0)
                    facts["update_reply"] = None if echo is None else echo.get("type")
                    if echo is not None and echo.get("type") == "session.updated":
                        got = echo.get("session")
                        tools = got.get("tools") if isinstance(got, dict) else None
                        facts["update_echo_tools"] = len(tools) if isinstance(tools, list) else None
                    elif echo is not None:
                        err = echo.get("error")
                        facts["update_error"] = err.get("code") if isinstance(err, dict) else None
                s.start_mic()
                turns = await _converse(s, pcm, timeout_s=self.cfg.response_timeout_s, linger_s=0.0)
                facts.update(turns.facts(s.output_rate_hz))
            else:
                facts["handshake"] = "timeout" if ack is None else ack.get("type")
        audio = bool(facts.get("audio_ms"))
        name = self._save(
            s,
            scenario="configure_size",
            model=model,
            variant=variant,
            extra={"configure_bytes": actual, "update_bytes": update_bytes, "audio": audio},
        )
        return audio, name, actual, facts

    async def configure_size(self, model: str) -> None:
        r = _Result("configure_size", model)

        async def body() -> None:
            cfg = self.cfg
            tries: list[dict[str, Any]] = []
            left = cfg.bisect_sessions - 1  # one session kept for the session.update check
            ok, bad = cfg.bisect_lo_bytes, None
            size = cfg.bisect_hi_bytes
            while left > 0:
                audio, name, actual, facts = await self._size_session(model, size)
                left -= 1
                tries.append(
                    {
                        "bytes": actual,
                        "audio": audio,
                        "file": name,
                        "handshake": facts.get("handshake", "ok"),
                    }
                )
                if audio:
                    ok = actual
                else:
                    bad = actual
                if bad is None or bad - ok <= cfg.bisect_tolerance_bytes:
                    break
                size = (ok + bad) // 2
            result: dict[str, Any] = {
                "assumed_audio_at_bytes": cfg.bisect_lo_bytes,
                "largest_with_audio_bytes": ok,
                "smallest_without_audio_bytes": bad,
                "tolerance_bytes": None if bad is None else bad - ok,
                "tries": tries,
                "update_counts_against_ceiling": None,
                "update_counts_reason": "no configure ceiling found below "
                f"{cfg.bisect_hi_bytes} bytes: nothing to compare a session.update against",
                "session_update_counts": None,
            }
            if bad is not None:
                # Configure well under the ceiling (such sizes had audio), then a tools update
                # larger than the whole ceiling on its own (so the sum is over it too): is audio
                # still produced?
                base = max(ok - (bad - ok), 512)
                extra = bad + 512
                audio, name, actual, facts = await self._size_session(
                    model, base, update_bytes=extra
                )
                check = {
                    "configure_bytes": actual,
                    "update_bytes": facts.get("update_bytes"),
                    "update_reply": facts.get("update_reply"),
                    "update_echo_tools": facts.get("update_echo_tools"),
                    "update_error": facts.get("update_error"),
                    "handshake": facts.get("handshake", "ok"),
                    "audio": audio,
                    "file": name,
                }
                counts, why = _update_verdict(check, ceiling=bad)
                result["session_update_check"] = check
                result["update_counts_against_ceiling"] = counts
                result["update_counts_reason"] = why
                result["session_update_counts"] = counts  # the earlier name, kept
            r.facts = result
            r.file = tries[-1]["file"] if tries else None
            r.outcome = "ok" if bad is not None else "no_ceiling_below_hi"

        await self._guard(r, body)

    # ---- 6. batch STT of scenario 2's utterance
    async def stt(self) -> None:
        from hydralab.speech.providers import API_KEY_ENV
        from hydralab.speech.stt import SttConfig, make_transcriber

        for provider in STT_PROVIDERS:
            r = _Result("stt", "-", provider)
            if not os.environ.get(API_KEY_ENV[provider]):
                r.outcome = "skipped"
                r.error = f"{API_KEY_ENV[provider]} not set"
                self.results.append(r)
                self.log(f"{'stt':<15} {'-':<11} {provider:<14} skipped (no key)")
                continue

            async def body(r: _Result = r, provider: str = provider) -> None:
                audio = self.speech(self.cfg.utterance_text)
                tr = make_transcriber(SttConfig(provider=provider, max_attempts=2))
                try:
                    t0 = time.monotonic()
                    res = await tr.transcribe(audio, sample_rate_hz=INPUT_RATE_HZ)
                    wall = (time.monotonic() - t0) * 1000
                finally:
                    await tr.aclose()
                r.facts = {
                    "provider": provider,
                    "reference": self.cfg.utterance_text,
                    "text": redact(res.text),
                    "ok": res.ok,
                    "error": None if res.error is None else redact(res.error),
                    "duration_ms": round(res.duration_ms or wall, 1),
                    "audio_ms": res.audio_ms,
                    "attempts": res.attempts,
                }
                r.outcome = "ok" if res.ok else "failed"

            await self._guard(r, body)

    def write_summary(self, *, started: str, error: str | None = None) -> dict[str, Any]:
        summary = {
            "kind": "hydralab.probe_summary",
            "version": FIXTURE_VERSION,
            "url": self.cfg.redacted_url(),
            "started": started,
            "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "models": list(self.cfg.models),
            "scenarios": list(self.cfg.scenarios),
            "speed": self.cfg.speed,
            "error": error,
            # Facts quote server frames, which could echo the key: masked here; _write checks.
            "results": [redact_obj(x.to_dict()) for x in self.results],
        }
        path = self.cfg.out_dir / SUMMARY_NAME
        self._write(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        return summary


def _update_verdict(check: Mapping[str, Any], *, ceiling: int) -> tuple[bool | None, str]:
    """Does a ``session.update`` count against the configure ceiling? From the check session
    (a configure under the ceiling, then an update larger than ``ceiling`` on its own).

    Returns:
        ``(True, why)``: the update was applied (echoed) and no audio came back; ``(False,
        why)``: applied, and audio still came; ``(None, why)``: unknown — the handshake failed,
        or the update was refused or not echoed (nothing known to be applied).
    """
    size = check.get("update_bytes")
    if check.get("handshake", "ok") != "ok":
        return None, f"the check session's handshake failed ({check.get('handshake')})"
    reply = check.get("update_reply")
    if reply == "error":
        return None, (
            f"the {size}-byte session.update was refused ({check.get('update_error')}): "
            "nothing was applied"
        )
    if reply != "session.updated":
        heard = "audio still came" if check.get("audio") else "no audio came either"
        return None, (
            f"no session.updated for the {size}-byte session.update: not known whether its "
            f"tools were applied ({heard})"
        )
    tools = check.get("update_echo_tools")
    if check.get("audio"):
        return False, (
            f"a {size}-byte session.update (over the {ceiling}-byte configure ceiling on its "
            f"own) was applied ({tools} tool(s) echoed) and audio still came back"
        )
    return True, (
        f"a {size}-byte session.update (over the {ceiling}-byte configure ceiling on its own) "
        f"was applied ({tools} tool(s) echoed) and no audio came back"
    )


def _runs(types: Sequence[str]) -> list[list[Any]]:
    """``[a, a, b]`` -> ``[[a, 2], [b, 1]]``."""
    out: list[list[Any]] = []
    for t in types:
        if out and out[-1][0] == t:
            out[-1][1] += 1
        else:
            out.append([t, 1])
    return out


def _cap_audio(
    lines: list[dict[str, Any]], header: dict[str, Any], max_bytes: int
) -> list[dict[str, Any]]:
    """Elide audio payloads once the fixture would exceed ``max_bytes`` (noted in header)."""
    total = 0
    elided = 0
    out: list[dict[str, Any]] = []
    for line in lines:
        n = len(_dumps(line)) + 1
        frame = line.get("frame")
        if total + n > max_bytes and isinstance(frame, dict):
            key = {
                "input_audio_buffer.append": "audio",
                "response.output_audio.delta": "delta",
            }.get(str(frame.get("type")))
            payload = frame.get(key) if key is not None else None
            if key is not None and isinstance(payload, str):
                if not elided:
                    header["audio_elided_from_ms"] = line["t_ms"]
                elided += 1
                # Input audio as the replayer's "<N bytes>"; output audio emptied.
                empty = f"<{len(payload) * 3 // 4 - payload[-2:].count('=')} bytes>"
                line = {**line, "frame": {**frame, key: empty if key == "audio" else ""}}
                n = len(_dumps(line)) + 1
        total += n
        out.append(line)
    if elided:
        header["audio_elided_frames"] = elided
    return out


def read_fixture(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A fixture's header and its frame/close lines.

    Raises:
        ValueError: Not a ``hydralab.frames`` v1 fixture.
    """
    rows = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x]
    if not rows or rows[0].get("kind") != FIXTURE_KIND or rows[0].get("version") != 1:
        raise ValueError(f"{path}: not a {FIXTURE_KIND} v{FIXTURE_VERSION} fixture")
    return rows[0], rows[1:]


async def run_probe(
    config: ProbeConfig,
    *,
    api_key: str | Secret | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the chosen scenarios for every model; write fixtures and ``probe_summary.json``.

    Returns:
        The summary as written.

    Raises:
        ProbeError: No API key (nothing is connected or written then).
        ProbeAuthError: The key was rejected (the summary so far is written first).
    """
    key = get_api_key(api_key)
    if not key:
        raise ProbeError(
            "hydralab probe needs a Smallest AI API key: set SMALLEST_API_KEY "
            "(it is sent to Hydra only, never printed or saved)"
        )
    probe = _Probe(config, key, log or (lambda _line: None))
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    wanted = set(config.scenarios)
    error: str | None = None
    try:
        for model in config.models:
            for name in ("handshake", "utterance", "tool_call", "barge_in", "configure_size"):
                if name in wanted:
                    await getattr(probe, name)(model)
        if "stt" in wanted:
            await probe.stt()
    except ProbeAuthError as exc:
        error = str(exc)
        probe.write_summary(started=started, error=error)
        raise
    return probe.write_summary(started=started)


def run_probe_sync(
    config: ProbeConfig,
    *,
    api_key: str | Secret | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """:func:`run_probe` in a fresh event loop."""
    return asyncio.run(run_probe(config, api_key=api_key, log=log))
