"""Replay the server side of a Hydra session from a script or a recorded fixture.

:class:`ReplayServer` is a WebSocket server on 127.0.0.1 that answers a Hydra client (the bridge,
:class:`~hydralab.client.HydraClient`, ``hydralab run --hydra-url``) with exactly the frames a
script says, so the client can be tested against the frame shapes the real service (or its
docs) produce rather than those of hydralab's emulator. It is built like the emulator: a
sans-I/O core, :class:`ReplaySession` (fed client frames and the current monotonic time, it
returns :class:`Outgoing` / :class:`Closing` actions and names its next wake-up,
:meth:`ReplaySession.next_deadline_ns`), and a thin asyncio shell.

Script steps (run in order, one script per connection):

* :class:`Send` — send a frame: a dict as compact JSON (after ``{name}`` templating, below), a
  ``str`` verbatim (malformed or odd frames can be replayed).
* :class:`Expect` — wait until the client has sent a frame of that ``type``. Client frames are
  consumed in order: frames before the match are skipped, so a later ``Expect`` only sees frames
  sent after the one matched.
* :class:`WaitAudio` — wait until that many more ms of input audio (``input_audio_buffer.append``,
  PCM16 16 kHz) have been received.
* :class:`WaitSpeechStart` / :class:`WaitSpeechEnd` — a 20 ms energy detector on the received input
  audio (voiced = frame RMS above ``speech_threshold_dbfs``, default -45 dBFS; a start needs
  ``min_speech_ms`` of consecutive voice; an end is ``silence_ms`` of non-voiced audio after the
  last voiced frame). The detector runs on every frame received, so speech that began while
  earlier steps were still running is not missed. ``WaitSpeechEnd`` without a preceding
  ``WaitSpeechStart`` first waits for a start.
* :class:`Sleep` — wait that long (wall time).
* :class:`SendAudio` — ``response.output_audio.delta`` frames of a tone or of given PCM at a
  given rate, in chunks (all at once, or one chunk every ``interval_ms``).
* :class:`Close` — close with a code and reason (``code=None``: drop the TCP connection with no
  close frame, as a crashed server would).

When the script runs out the socket stays open until the client closes it.

Templating: every string inside a :class:`Send` dict (and ``SendAudio``'s ids) may reference
``{name}``. A string that is exactly one placeholder takes the value with its type (``{audio_ms}``
stays an int). Names: ``call_id`` (of the last ``conversation.item.create`` received),
``audio_ms`` (input audio received so far), ``speech_start_ms`` / ``speech_end_ms`` (of the last
utterance a speech step detected, on the same input-audio clock), ``session_index``,
``last.<path>`` (a dotted path into the client frame the last :class:`Expect` matched, e.g.
``{last.item.call_id}``) and the server's ``variables``. Unknown names are left as they are.

Fixture files (JSONL, UTF-8), the format ``hydralab probe`` records live sessions in:

* line 1, a header::

    {"kind": "hydralab.frames", "version": 1, "scenario": str, "model": str,
     "url": str (redacted: no key), "created": ISO 8601 str, ...any other keys}

* then one line per frame, from the client's point of view::

    {"t_ms": float (ms since connect), "dir": "in" | "out", "frame": {...}}

  ``"in"`` = server → client, ``"out"`` = client → server; ``frame`` is the raw JSON object as
  received or sent (a ``str`` is accepted for a received frame that was not a JSON object);
  ``input_audio_buffer.append`` audio may be elided as ``"<N bytes>"``;

* and the end of the socket::

    {"t_ms": float, "dir": "close", "code": int | null, "reason": str}

:func:`load_fixture` validates a file (errors name the line), :func:`steps_from_fixture` turns a
recording into steps and :func:`write_fixture` writes one, refusing when a secret is in the text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import hmac
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

import numpy as np
import numpy.typing as npt
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hydralab.loopback import LoopbackServer
from hydralab.secrets import Secret, get_api_key, install_log_redaction, redact

__all__ = [
    "DEFAULT_PATH",
    "FIXTURE_KIND",
    "FIXTURE_VERSION",
    "Close",
    "Closing",
    "ConnectionInfo",
    "Expect",
    "Fixture",
    "FixtureError",
    "Outgoing",
    "ReceivedFrame",
    "ReplayOutput",
    "ReplayServer",
    "ReplaySession",
    "Send",
    "SendAudio",
    "Sleep",
    "Step",
    "WaitAudio",
    "WaitSpeechEnd",
    "WaitSpeechStart",
    "fixture_header",
    "load_fixture",
    "parse_fixture",
    "serve_fixture",
    "steps_from_fixture",
    "write_fixture",
]

FIXTURE_KIND = "hydralab.frames"
FIXTURE_VERSION = 1
DEFAULT_PATH = "/waves/v1/s2s"
"""Hydra's WebSocket path; the replayer answers HTTP 404 elsewhere."""

INPUT_RATE_HZ = 16_000
_SAMPLES_PER_MS = INPUT_RATE_HZ // 1000
_FRAME_MS = 20
_FRAME_SAMPLES = INPUT_RATE_HZ * _FRAME_MS // 1000
_NS_PER_MS = 1_000_000
_AUDIO_TYPE = "input_audio_buffer.append"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
_ELIDED = re.compile(r"^<(\d+) bytes>$")


# ---------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Send:
    """Send one frame: a dict as JSON (templated), a ``str`` verbatim."""

    frame: dict[str, Any] | str


@dataclass(frozen=True)
class Expect:
    """Wait until the client has sent a frame of this ``type`` (consumed in order)."""

    type: str


@dataclass(frozen=True)
class WaitAudio:
    """Wait until ``ms`` more input audio (16 kHz PCM16) has been received."""

    ms: float


@dataclass(frozen=True)
class WaitSpeechStart:
    """Wait until the energy detector hears the caller start speaking."""


@dataclass(frozen=True)
class WaitSpeechEnd:
    """Wait until the caller stops: ``silence_ms`` of non-voiced audio after speech."""

    silence_ms: float = 500.0


@dataclass(frozen=True)
class Sleep:
    """Wait ``ms`` of wall time."""

    ms: float


@dataclass(frozen=True)
class Close:
    """Close the socket (``code=None``: drop it without a close frame)."""

    code: int | None = 1000
    reason: str = ""


@dataclass(frozen=True)
class SendAudio:
    """``response.output_audio.delta`` frames of a tone (or of ``pcm``) at ``rate_hz``.

    Attributes:
        response_id: ``response_id`` of every delta (templated).
        ms: Tone length (ignored when ``pcm`` is given).
        rate_hz: Sample rate of the PCM16 in the deltas (the one ``session.configured`` announced).
        item_id: ``item_id`` of every delta (templated), if any.
        pcm: Mono PCM16 samples (or their little-endian bytes) to send instead of a tone.
        tone_hz: Tone frequency.
        dbfs: Tone RMS level.
        chunk_ms: Audio per delta.
        interval_ms: Wall time between deltas (0 = all at once).
    """

    response_id: str
    ms: float = 500.0
    rate_hz: int = 24_000
    item_id: str | None = None
    pcm: npt.NDArray[np.int16] | bytes | None = field(default=None, compare=False, repr=False)
    tone_hz: float = 440.0
    dbfs: float = -20.0
    chunk_ms: float = 100.0
    interval_ms: float = 0.0

    def samples(self) -> npt.NDArray[np.int16]:
        """The PCM16 samples to send (the tone, or ``pcm``)."""
        if self.pcm is not None:
            if isinstance(self.pcm, bytes | bytearray):
                return np.frombuffer(bytes(self.pcm)[: len(self.pcm) // 2 * 2], dtype="<i2").astype(
                    np.int16
                )
            pcm: npt.NDArray[np.int16] = np.asarray(self.pcm, dtype=np.int16)
            return pcm
        n = round(self.ms * self.rate_hz / 1000)
        amp = 32768.0 * 10.0 ** (self.dbfs / 20.0) * math.sqrt(2.0)
        t = np.arange(n, dtype=np.float64) / self.rate_hz
        x = np.round(amp * np.sin(2.0 * math.pi * self.tone_hz * t))
        tone: npt.NDArray[np.int16] = np.clip(x, -32768, 32767).astype(np.int16)
        return tone

    def chunks(self) -> list[str]:
        """Base64 payloads of the deltas, in order."""
        pcm = self.samples()
        per = max(1, round(self.chunk_ms * self.rate_hz / 1000))
        data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        step = per * 2
        return [
            base64.b64encode(data[i : i + step]).decode("ascii") for i in range(0, len(data), step)
        ]


Step: TypeAlias = (
    Send | Expect | WaitAudio | WaitSpeechStart | WaitSpeechEnd | Sleep | Close | SendAudio
)
_WAITING = (Expect, WaitAudio, WaitSpeechStart, WaitSpeechEnd)


# ---------------------------------------------------------------------------- core


@dataclass(frozen=True)
class Outgoing:
    """Action: write this text frame."""

    text: str


@dataclass(frozen=True)
class Closing:
    """Action: close with ``code`` / ``reason`` (``code=None``: abort the connection)."""

    code: int | None
    reason: str


ReplayOutput: TypeAlias = Outgoing | Closing


@dataclass(frozen=True)
class ReceivedFrame:
    """One client frame: the raw dict (or a stand-in for a non-JSON frame) and when it came."""

    t_ns: int
    frame: dict[str, Any]
    session: int = 0


class ReplaySession:
    """Sans-I/O replay of one connection's script.

    Args:
        steps: The script.
        session_index: Index of the connection (``{session_index}``).
        variables: Extra ``{name}`` values for templating.
        speech_threshold_dbfs: Frame RMS above which the speech detector calls a frame voiced.
        min_speech_ms: Consecutive voiced audio that makes a speech start.
        step_timeout_ms: A waiting step (``Expect``, ``WaitAudio``, ``WaitSpeech*``) that waits
            longer than this fails the session: close 1011 ``replay timeout``; ``None`` = wait
            forever.

    Attributes:
        received: Every client frame, in order.
        position: Index of the current step (``len(steps)`` when the script is done).
        error: Why the session failed (a step timeout), else ``None``.
        closed: Set once a :class:`Closing` was returned.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        *,
        session_index: int = 0,
        variables: Mapping[str, Any] | None = None,
        speech_threshold_dbfs: float = -45.0,
        min_speech_ms: float = 60.0,
        step_timeout_ms: float | None = None,
    ) -> None:
        for s in steps:
            if not isinstance(s, Step):
                raise TypeError(f"not a replay step: {s!r}")
        self.steps = tuple(steps)
        self.session_index = session_index
        self.variables = dict(variables or {})
        self.step_timeout_ms = step_timeout_ms
        self.received: list[ReceivedFrame] = []
        self.position = 0
        self.error: str | None = None
        self.closed: Closing | None = None
        # expectations: indices into ``received`` of non-audio frames not yet consumed
        self._unmatched: list[int] = []
        self._last: dict[str, Any] = {}
        self._call_id: str | None = None
        # input audio clock and speech detector
        self._threshold_power = (32768.0**2) * 10.0 ** (speech_threshold_dbfs / 10.0)
        self._min_speech_frames = max(1, math.ceil(min_speech_ms / _FRAME_MS))
        self._samples = 0
        self._carry = b""
        self._frame_buf = np.zeros(0, dtype=np.int16)
        self._voiced_run = 0
        self._silence_run_ms = 0
        self._onsets: list[int] = []  # audio ms where each voiced run (long enough) began
        self._onsets_used = 0
        self._utt_open = False
        self._speech_start_ms: int | None = None
        self._speech_end_ms: int | None = None
        # current step state
        self._started = False
        self._step_t0_ns = 0
        self._deadline_ns: int | None = None
        self._target_samples = 0
        self._chunks: list[str] = []
        self._chunk_pos = 0

    # ------------------------------------------------------------------ public
    @property
    def audio_ms(self) -> float:
        """Input audio received so far, in ms."""
        return self._samples / _SAMPLES_PER_MS

    @property
    def done(self) -> bool:
        """The script ran to its end (or closed)."""
        return self.closed is not None or self.position >= len(self.steps)

    def open(self, *, now_ns: int) -> list[ReplayOutput]:
        """The connection is up: run the script until its first wait."""
        return self._run(now_ns)

    def receive(self, message: str | bytes, *, now_ns: int) -> list[ReplayOutput]:
        """One client frame (text or bytes) at ``now_ns``; returns what to send, in order."""
        frame = _client_frame(message)
        self.received.append(ReceivedFrame(now_ns, frame, self.session_index))
        if self.closed is not None:
            return []
        if frame.get("type") == _AUDIO_TYPE:
            return self._on_audio(frame.get("audio"), now_ns)
        self._unmatched.append(len(self.received) - 1)
        if frame.get("type") == "conversation.item.create":
            item = frame.get("item")
            if isinstance(item, dict) and isinstance(item.get("call_id"), str):
                self._call_id = item["call_id"]
        return self._run(now_ns)

    def advance(self, *, now_ns: int) -> list[ReplayOutput]:
        """Wake-up at (or after) :meth:`next_deadline_ns`."""
        return self._run(now_ns)

    def next_deadline_ns(self) -> int | None:
        """When :meth:`advance` must next be called (``None``: only on a client frame)."""
        if self.done or not self._started:
            return None
        deadlines = [d for d in (self._deadline_ns, self._timeout_ns()) if d is not None]
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ steps
    def _timeout_ns(self) -> int | None:
        if self.step_timeout_ms is None or self.done:
            return None
        if not isinstance(self.steps[self.position], _WAITING):
            return None
        return self._step_t0_ns + round(self.step_timeout_ms * _NS_PER_MS)

    def _run(self, now_ns: int) -> list[ReplayOutput]:
        out: list[ReplayOutput] = []
        while not self.done:
            step = self.steps[self.position]
            if not self._started:
                self._start(step, now_ns)
            if not self._step(step, now_ns, out):
                timeout = self._timeout_ns()
                if timeout is not None and now_ns >= timeout:
                    self.error = (
                        f"step {self.position} ({_describe(step)}) timed out after "
                        f"{self.step_timeout_ms:g} ms"
                    )
                    self.closed = Closing(1011, "replay timeout")
                    out.append(self.closed)
                break
            self.position += 1
            self._started = False
            self._deadline_ns = None
        return out

    def _start(self, step: Step, now_ns: int) -> None:
        self._started = True
        self._step_t0_ns = now_ns
        match step:
            case WaitAudio(ms=ms):
                self._target_samples = self._samples + round(ms * _SAMPLES_PER_MS)
            case Sleep(ms=ms):
                self._deadline_ns = now_ns + round(ms * _NS_PER_MS)
            case SendAudio():
                self._chunks = step.chunks()
                self._chunk_pos = 0
                self._deadline_ns = now_ns
            case _:
                pass

    def _step(self, step: Step, now_ns: int, out: list[ReplayOutput]) -> bool:
        """Run ``step`` as far as it goes now; ``True`` when it is finished."""
        match step:
            case Send(frame=frame):
                out.append(Outgoing(frame if isinstance(frame, str) else self._dumps(frame)))
                return True
            case Expect(type=type_):
                for n, i in enumerate(self._unmatched):
                    f = self.received[i].frame
                    if f.get("type") == type_:
                        self._last = f
                        del self._unmatched[: n + 1]
                        return True
                return False
            case WaitAudio():
                return self._samples >= self._target_samples
            case WaitSpeechStart():
                return self._speech_start()
            case WaitSpeechEnd(silence_ms=silence_ms):
                if not self._utt_open and not self._speech_start():
                    return False
                if self._silence_run_ms < silence_ms:
                    return False
                self._speech_end_ms = round(self.audio_ms) - self._silence_run_ms
                self._utt_open = False
                self._onsets_used = len(self._onsets)
                return True
            case Sleep():
                assert self._deadline_ns is not None
                return now_ns >= self._deadline_ns
            case SendAudio():
                return self._send_audio(step, now_ns, out)
            case Close(code=code, reason=reason):
                self.closed = Closing(code, reason)
                out.append(self.closed)
                return True
        raise TypeError(f"not a replay step: {step!r}")  # pragma: no cover

    def _send_audio(self, step: SendAudio, now_ns: int, out: list[ReplayOutput]) -> bool:
        ctx = self._context()
        frame: dict[str, Any] = {
            "type": "response.output_audio.delta",
            "response_id": _render(step.response_id, ctx),
        }
        if step.item_id is not None:
            frame["item_id"] = _render(step.item_id, ctx)
        frame |= {"output_index": 0, "content_index": 0}
        while self._chunk_pos < len(self._chunks):
            if self._deadline_ns is not None and now_ns < self._deadline_ns:
                return False
            frame["delta"] = self._chunks[self._chunk_pos]
            out.append(Outgoing(_dumps(frame)))
            self._chunk_pos += 1
            if step.interval_ms > 0:
                self._deadline_ns = now_ns + round(step.interval_ms * _NS_PER_MS)
        self._chunks = []
        return True

    # ------------------------------------------------------------------ audio / speech
    def _speech_start(self) -> bool:
        """Open an utterance at the first onset not used by an earlier speech step."""
        if self._utt_open:
            return True
        if len(self._onsets) <= self._onsets_used:
            return False
        self._speech_start_ms = self._onsets[self._onsets_used]
        self._onsets_used = len(self._onsets)
        self._utt_open = True
        return True

    def _on_audio(self, payload: Any, now_ns: int) -> list[ReplayOutput]:
        if not isinstance(payload, str):
            return []
        try:
            data = self._carry + base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            return []
        n = len(data) // 2 * 2
        self._carry = data[n:]
        pcm = np.frombuffer(data[:n], dtype="<i2").astype(np.int16)
        out: list[ReplayOutput] = []
        pos = 0
        while pos < pcm.size:
            need = _FRAME_SAMPLES - self._frame_buf.size
            piece = pcm[pos : pos + need]
            pos += piece.size
            self._samples += int(piece.size)
            self._frame_buf = np.concatenate([self._frame_buf, piece])
            if self._frame_buf.size == _FRAME_SAMPLES:
                self._detect(self._frame_buf)
                self._frame_buf = np.zeros(0, dtype=np.int16)
            if not self.done and isinstance(self.steps[self.position], _WAITING):
                out += self._run(now_ns)  # per frame, so audio waits end on the right sample
        if not out:
            out = self._run(now_ns)
        return out

    def _detect(self, frame: npt.NDArray[np.int16]) -> None:
        x = frame.astype(np.float64)
        if float(np.dot(x, x)) / x.size > self._threshold_power:
            self._voiced_run += 1
            self._silence_run_ms = 0
            if self._voiced_run == self._min_speech_frames:
                self._onsets.append(round(self.audio_ms) - self._voiced_run * _FRAME_MS)
        else:
            self._voiced_run = 0
            self._silence_run_ms += _FRAME_MS

    # ------------------------------------------------------------------ templating
    def _context(self) -> dict[str, Any]:
        ctx: dict[str, Any] = {
            "audio_ms": round(self.audio_ms),
            "session_index": self.session_index,
            "last": self._last,
        }
        for k, v in (
            ("call_id", self._call_id),
            ("speech_start_ms", self._speech_start_ms),
            ("speech_end_ms", self._speech_end_ms),
        ):
            if v is not None:
                ctx[k] = v
        return {**ctx, **self.variables}

    def _dumps(self, frame: dict[str, Any]) -> str:
        return _dumps(_render(frame, self._context()))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _client_frame(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, bytes):
        return {"type": "<binary>", "bytes": len(message)}
    try:
        d = json.loads(message)
    except ValueError:
        return {"type": "<unparseable>", "text": message[:200]}
    return d if isinstance(d, dict) else {"type": "<unparseable>", "text": message[:200]}


_MISSING = object()


def _lookup(ctx: Mapping[str, Any], name: str) -> Any:
    cur: Any = ctx
    for part in name.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _render(obj: Any, ctx: Mapping[str, Any]) -> Any:
    """``{name}`` substitution in every string of ``obj`` (unknown names are kept)."""
    if isinstance(obj, str):
        whole = _PLACEHOLDER.fullmatch(obj)
        if whole is not None:
            v = _lookup(ctx, whole.group(1))
            return obj if v is _MISSING else v

        def one(m: re.Match[str]) -> str:
            v = _lookup(ctx, m.group(1))
            return m.group(0) if v is _MISSING else str(v)

        return _PLACEHOLDER.sub(one, obj)
    if isinstance(obj, dict):
        return {k: _render(v, ctx) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_render(v, ctx) for v in obj]
    return obj


def _describe(step: Step) -> str:
    match step:
        case Expect(type=t):
            return f"Expect {t}"
        case WaitAudio(ms=ms):
            return f"WaitAudio {ms:g} ms"
        case _:
            return type(step).__name__


# ---------------------------------------------------------------------------- fixtures


class FixtureError(ValueError):
    """A fixture file is malformed (the message names the file and line)."""


@dataclass(frozen=True)
class Fixture:
    """A recorded session: the header and the frame / close records, as in the file."""

    header: dict[str, Any]
    records: tuple[dict[str, Any], ...]
    path: Path | None = None

    @property
    def scenario(self) -> str:
        return str(self.header["scenario"])


def fixture_header(
    *, scenario: str, model: str, url: str, created: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A fixture header; the URL is redacted (credentials, query and fragment are dropped)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return {
        "kind": FIXTURE_KIND,
        "version": FIXTURE_VERSION,
        "scenario": scenario,
        "model": model,
        "url": redact(f"{parts.scheme}://{host}{parts.path}"),
        "created": created or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def _check_header(h: Any, where: str) -> dict[str, Any]:
    if not isinstance(h, dict):
        raise FixtureError(f"{where}: the header must be a JSON object")
    if h.get("kind") != FIXTURE_KIND:
        raise FixtureError(f"{where}: header kind must be {FIXTURE_KIND!r}, not {h.get('kind')!r}")
    if h.get("version") != FIXTURE_VERSION or isinstance(h.get("version"), bool):
        raise FixtureError(
            f"{where}: unsupported fixture version {h.get('version')!r} "
            f"(this hydralab reads {FIXTURE_VERSION})"
        )
    for k in ("scenario", "model", "url", "created"):
        if not isinstance(h.get(k), str):
            raise FixtureError(f"{where}: header field {k!r} must be a string")
    if redact(h["url"]) != h["url"]:
        raise FixtureError(f"{where}: header url is not redacted (it carries a key)")
    try:
        dt.datetime.fromisoformat(h["created"])
    except ValueError:
        raise FixtureError(f"{where}: header created is not an ISO 8601 time") from None
    return h


def _check_record(r: Any, where: str) -> dict[str, Any]:
    if not isinstance(r, dict):
        raise FixtureError(f"{where}: a record must be a JSON object")
    t = r.get("t_ms")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
        raise FixtureError(f"{where}: t_ms must be a number >= 0, not {t!r}")
    d = r.get("dir")
    if d in ("in", "out"):
        frame = r.get("frame", _MISSING)
        if not isinstance(frame, dict) and not (d == "in" and isinstance(frame, str)):
            raise FixtureError(f"{where}: frame must be a JSON object")
    elif d == "close":
        code = r.get("code", _MISSING)
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise FixtureError(f"{where}: close code must be an integer or null, not {code!r}")
        if not isinstance(r.get("reason"), str):
            raise FixtureError(f"{where}: close reason must be a string")
    else:
        raise FixtureError(f"{where}: dir must be 'in', 'out' or 'close', not {d!r}")
    return r


def parse_fixture(text: str, *, source: str = "<fixture>") -> Fixture:
    """Parse and validate a fixture's text.

    Raises:
        FixtureError: The first problem, with ``source:line``.
    """
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FixtureError(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from None
        if header is None:
            header = _check_header(obj, where)
        else:
            records.append(_check_record(obj, where))
    if header is None:
        raise FixtureError(f"{source}: empty fixture (no header line)")
    return Fixture(header=header, records=tuple(records))


def load_fixture(path: Path | str) -> Fixture:
    """Read and validate a fixture file (see the module docstring for the format).

    Raises:
        FixtureError: Malformed, with the file and line number.
        OSError: The file cannot be read.
    """
    p = Path(path)
    fx = parse_fixture(p.read_text(encoding="utf-8"), source=str(p))
    return Fixture(header=fx.header, records=fx.records, path=p)


def write_fixture(
    path: Path | str,
    header: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]],
    *,
    secrets: Iterable[str | Secret] | None = None,
) -> Path:
    """Validate and write a fixture, refusing if a secret occurs anywhere in its text.

    Args:
        path: File to write (replaced atomically).
        header: The header (see :func:`fixture_header`).
        records: Frame and close records.
        secrets: Strings that must not appear; ``None`` = the ``SMALLEST_API_KEY`` of the
            environment, if set.

    Raises:
        FixtureError: A record is malformed, or a secret occurs in the text (the message never
            contains it).
    """
    p = Path(path)
    h = _check_header(dict(header), f"{p}: header")
    lines = [_dumps(h)]
    for i, r in enumerate(records, 2):
        lines.append(_dumps(_check_record(dict(r), f"{p}:{i}")))
    text = "\n".join(lines) + "\n"
    keys = [get_api_key()] if secrets is None else [get_api_key(s) for s in secrets]
    for key in keys:
        value = key.reveal()
        if not value:
            continue
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]
        for lineno, line in enumerate(lines, 1):
            if value in line or escaped in line:
                raise FixtureError(f"refusing to write {p}: line {lineno} contains a secret")
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)
    return p


def _audio_ms(frame: Mapping[str, Any]) -> float:
    audio = frame.get("audio")
    if not isinstance(audio, str):
        return 0.0
    m = _ELIDED.match(audio)
    n = int(m.group(1)) if m is not None else len(audio) * 3 // 4 - audio[-2:].count("=")
    return n / 2 / _SAMPLES_PER_MS


def steps_from_fixture(
    fixture: Fixture | Path | str,
    *,
    time_scale: float = 1.0,
    audio_waits: bool = True,
    min_audio_wait_ms: float = 100.0,
) -> list[Step]:
    """Turn a recording into a replay script.

    Server frames (``"in"``) are sent in order; each client frame other than input audio becomes
    an :class:`Expect`. A gap before a server frame during which the client sent at least
    ``min_audio_wait_ms`` of input audio becomes :class:`WaitAudio` of that amount (the server
    was most likely waiting for the caller's speech), any other gap a :class:`Sleep` of the
    recorded gap times ``time_scale`` (0 = no sleeps). A ``"close"`` record becomes
    :class:`Close`.

    Args:
        fixture: A loaded fixture or a fixture file.
        time_scale: Factor on recorded gaps between server frames (0.1 = ten times faster).
        audio_waits: ``False`` = gaps are always sleeps.
        min_audio_wait_ms: Least recorded input audio in a gap that makes it a ``WaitAudio``.
    """
    if time_scale < 0:
        raise ValueError("time_scale must be >= 0")
    fx = fixture if isinstance(fixture, Fixture) else load_fixture(fixture)
    steps: list[Step] = []
    anchor_ms: float | None = None
    audio_ms = 0.0

    def gap(t_ms: float) -> None:
        nonlocal audio_ms
        if audio_waits and audio_ms >= min_audio_wait_ms:
            steps.append(WaitAudio(round(audio_ms, 3)))
        elif anchor_ms is not None and time_scale > 0:
            ms = (t_ms - anchor_ms) * time_scale
            if ms >= 1.0:
                steps.append(Sleep(round(ms, 3)))
        audio_ms = 0.0

    for r in fx.records:
        t = float(r["t_ms"])
        match r["dir"]:
            case "out":
                frame = r["frame"]
                if frame.get("type") == _AUDIO_TYPE:
                    audio_ms += _audio_ms(frame)
                    continue
                audio_ms = 0.0
                if isinstance(frame.get("type"), str):
                    steps.append(Expect(frame["type"]))
                anchor_ms = t
            case "in":
                gap(t)
                steps.append(Send(r["frame"]))
                anchor_ms = t
            case "close":
                gap(t)
                steps.append(Close(r["code"], r["reason"]))
                break
    return steps


# ---------------------------------------------------------------------------- server


@dataclass(frozen=True)
class ConnectionInfo:
    """One accepted connection's request (the key itself is never kept)."""

    path: str
    model: str | None
    has_api_key: bool


class ReplayServer(LoopbackServer):
    """A WebSocket server on 127.0.0.1 that plays a scripted Hydra server, one script per
    connection.

    Usage::

        async with ReplayServer([Send({...}), Expect("session.configure"), ...]) as srv:
            ...  # point a client at srv.url

    Args:
        script: Steps for every connection; a list of step lists for successive connections
            (the last one serves any further connection); a :class:`Fixture`; or a fixture path.
        port: Port on 127.0.0.1 (0 = any free port).
        path: The WebSocket path served (others get HTTP 404); ``None`` = any path.
        variables: Extra ``{name}`` values for templating.
        expected_api_key: When set, an upgrade with any other ``api_key`` gets HTTP 401.
        time_scale: For fixtures: factor on recorded gaps (see :func:`steps_from_fixture`).
        speech_threshold_dbfs: Voiced-frame threshold of the speech detector.
        min_speech_ms: Consecutive voice that makes a speech start.
        step_timeout_ms: Longest wait of one waiting step before the session fails (close 1011).

    Attributes:
        url: ``ws://127.0.0.1:PORT/waves/v1/s2s`` once started.
        port: Bound port once started.
        received: Every client frame of every connection, in arrival order.
        replays: One :class:`ReplaySession` per accepted connection.
        connections: What each connection asked for (path, ``model``, whether a key came).
    """

    def __init__(
        self,
        script: Sequence[Step] | Sequence[Sequence[Step]] | Fixture | Path | str,
        *,
        port: int = 0,
        path: str | None = DEFAULT_PATH,
        variables: Mapping[str, Any] | None = None,
        expected_api_key: str | Secret | None = None,
        time_scale: float = 1.0,
        speech_threshold_dbfs: float = -45.0,
        min_speech_ms: float = 60.0,
        step_timeout_ms: float | None = None,
    ) -> None:
        install_log_redaction()  # idempotent: websockets' DEBUG lines carry the URL's key
        self.scripts = _scripts(script, time_scale=time_scale)
        self.port = port
        self.path = path
        self.variables = dict(variables or {})
        self._expected = None if expected_api_key is None else get_api_key(expected_api_key)
        self._session_kwargs: dict[str, Any] = {
            "speech_threshold_dbfs": speech_threshold_dbfs,
            "min_speech_ms": min_speech_ms,
            "step_timeout_ms": step_timeout_ms,
        }
        self.url = ""
        self.received: list[ReceivedFrame] = []
        self.replays: list[ReplaySession] = []
        self.connections: list[ConnectionInfo] = []
        self._server: Server | None = None

    @property
    def sessions(self) -> int:
        """Connections accepted so far."""
        return len(self.replays)

    async def start(self) -> str:
        """Bind 127.0.0.1 and start serving; returns :attr:`url`."""
        if self._server is not None:
            raise RuntimeError("replay server already started")
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            self.port,
            compression=None,
            max_size=None,
            process_request=self._process_request,
        )
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        self.url = f"ws://127.0.0.1:{self.port}{self.path or DEFAULT_PATH}"
        return self.url

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if self.path is not None and parts.path != self.path:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self._expected is not None:
            keys = parse_qs(parts.query).get("api_key", [])
            want = self._expected.reveal().encode()
            if len(keys) != 1 or not hmac.compare_digest(keys[0].encode(), want):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid api_key\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path if ws.request else "/")
        query = parse_qs(parts.query)
        self.connections.append(
            ConnectionInfo(
                path=parts.path,
                model=query["model"][0] if query.get("model") else None,
                has_api_key=bool(query.get("api_key")),
            )
        )
        index = len(self.replays)
        session = ReplaySession(
            self.scripts[min(index, len(self.scripts) - 1)],
            session_index=index,
            variables=self.variables,
            **self._session_kwargs,
        )
        self.replays.append(session)
        outbox: asyncio.Queue[ReplayOutput] = asyncio.Queue()
        wake = asyncio.Event()

        def emit(outs: list[ReplayOutput]) -> None:
            for o in outs:
                outbox.put_nowait(o)

        async def reader() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for msg in ws:
                    emit(session.receive(msg, now_ns=time.monotonic_ns()))
                    self.received.append(session.received[-1])
                    wake.set()
            raise _Ended

        async def ticker() -> None:
            while True:
                deadline = session.next_deadline_ns()
                delay_s = (
                    None if deadline is None else max(0.0, (deadline - time.monotonic_ns()) / 1e9)
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay_s):
                        await wake.wait()
                wake.clear()
                emit(session.advance(now_ns=time.monotonic_ns()))

        async def writer() -> None:
            while True:
                out = await outbox.get()
                if isinstance(out, Closing):
                    if out.code is None:
                        ws.transport.abort()
                    else:
                        await ws.close(out.code, out.reason)
                    raise _Ended
                try:
                    await ws.send(out.text)
                except ConnectionClosed:
                    raise _Ended from None

        emit(session.open(now_ns=time.monotonic_ns()))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(reader())
                tg.create_task(ticker())
                tg.create_task(writer())
        except* _Ended:
            pass


class _Ended(Exception):
    """Internal: the connection is over."""


def _scripts(
    script: Sequence[Step] | Sequence[Sequence[Step]] | Fixture | Path | str, *, time_scale: float
) -> list[tuple[Step, ...]]:
    if isinstance(script, Fixture | Path | str):
        return [tuple(steps_from_fixture(script, time_scale=time_scale))]
    items: list[Any] = list(script)
    nested = bool(items) and all(isinstance(s, list | tuple) for s in items)
    out: list[tuple[Step, ...]] = []
    for steps in items if nested else [items]:
        for s in steps:
            if not isinstance(s, Step):
                raise TypeError(f"not a replay step: {s!r}")
        out.append(tuple(steps))
    if not out:
        raise ValueError("a replay needs at least one script")
    return out


async def serve_fixture(
    fixture: Fixture | Path | str, *, port: int = 0, time_scale: float = 1.0
) -> None:
    """Serve a fixture (to every connection) until cancelled, printing the URL (CLI entry)."""
    fx = fixture if isinstance(fixture, Fixture) else load_fixture(fixture)
    server = ReplayServer(fx, port=port, time_scale=time_scale)
    url = await server.start()
    print(
        f"hydra replayer listening on {url} (scenario {fx.scenario!r}, "
        f"{len(server.scripts[0])} steps; any ?model= and key are accepted)\n"
        f"  hydralab run --model hydra --hydra-url {url}",
        flush=True,
    )
    try:
        await asyncio.Future()
    finally:
        await server.stop()
