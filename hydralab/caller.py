"""The scripted caller: a Twilio Media Streams client that speaks a :class:`Script`'s user lines.

It stands in for EVA's user simulator (hydra-protocol.md §B.1, eva-format.md §7) with three
deliberate differences:

- one sender task sends exactly one frame per 20 ms from ``start`` to ``stop`` (utterance frames
  or low noise, never digital silence and never faster than real time), so the bridge and the
  model's VAD always see a live line;
- ``user_speech_start`` *and* ``user_speech_stop`` carry epoch ms from the one session clock
  (EVA stamps ``stop`` with the monotonic clock);
- the end of an assistant turn is the bridge's ``hydralab:turn_end:<k>`` mark (one per complete
  assistant turn, tool turns included); a bridge that sends no marks falls back to
  ``turn_end_silence_s`` without audible media.

The conversation is strictly scripted: wait for the greeting, speak user line 0, wait for
assistant turn 1, ... The result carries ``user_simulator_events.jsonl`` lines in EVA's shape
(eva-format.md §5.9), per-turn timing and all received audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hydralab.audio import AUDIBLE_DBFS, first_onset, last_offset, ulaw_decode, ulaw_encode
from hydralab.clock import Clock, ClockLike
from hydralab.protocol.twilio import (
    TURN_END_MARK_PREFIX,
    Clear,
    Mark,
    Media,
    Stop,
    TwilioFrameError,
    TwilioUnknown,
    connected_frame,
    media_frame,
    parse_twilio,
    start_frame,
    stop_frame,
    user_speech_frame,
)
from hydralab.script import Script
from hydralab.speech.tts import CALLER_VOICE, Synthesizer

__all__ = [
    "AUDIBLE_DBFS",
    "Caller",
    "CallerConfig",
    "CallerResult",
    "ReceivedTurn",
    "SentTurn",
    "SpeechSynthesizer",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 8000
"""A received or synthesized frame whose RMS is above this is audible (the noise floor is -50)."""
PROVIDER = "hydralab"
_NOISE_FRAMES = 100  # 2 s of pre-encoded line noise, cycled
_NS_PER_S = 1_000_000_000
_NS_PER_SAMPLE = _NS_PER_S // SAMPLE_RATE_HZ


class SpeechSynthesizer(Protocol):
    """What the caller needs from a TTS engine (:class:`~hydralab.speech.tts.Synthesizer`)."""

    def synthesize(
        self,
        text: str,
        *,
        voice: str | None = ...,
        rate_wpm: int | None = ...,
        sample_rate_hz: int = ...,
        noise_dbfs: float | None = ...,
        seed: int = ...,
    ) -> npt.NDArray[np.int16]: ...


@dataclass(frozen=True)
class CallerConfig:
    """Timing and voice of the scripted caller.

    Attributes:
        frame_ms: Duration of one media frame (20 ms = 160 μ-law bytes at 8 kHz).
        turn_end_silence_s: Fallback end of an assistant turn when the bridge sends no marks:
            this long without audible media after the turn's last audible frame.
        assistant_turn_timeout_s: Longest wait for one assistant turn to end; then the call
            ends with ``"timeout"``.
        connect_timeout_s: WebSocket opening handshake timeout.
        voice: eSpeak NG voice of the caller.
        rate_wpm: Speaking rate.
        noise_dbfs: RMS of the line noise under the speech and between utterances.
        seed: Seed of the noise (and of the TTS noise, ``seed + user turn index``).
        barge_in_after_ms: ``{i: x}``: user turn ``i`` starts ``x`` ms after assistant turn
            ``i``'s first audible frame instead of after its end (if it is still playing).
    """

    frame_ms: int = 20
    turn_end_silence_s: float = 2.0
    assistant_turn_timeout_s: float = 45.0
    connect_timeout_s: float = 10.0
    voice: str = CALLER_VOICE
    rate_wpm: int = 165
    noise_dbfs: float = -50.0
    seed: int = 0
    barge_in_after_ms: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frame_ms <= 0:
            raise ValueError(f"frame_ms must be positive, got {self.frame_ms}")
        if self.turn_end_silence_s <= 0 or self.assistant_turn_timeout_s <= 0:
            raise ValueError("turn_end_silence_s and assistant_turn_timeout_s must be positive")
        if self.connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be positive, got {self.connect_timeout_s}")


@dataclass
class ReceivedTurn:
    """One assistant turn as the caller heard it.

    Attributes:
        index: Assistant turn index (0 = greeting).
        frames: Media messages received (any payload size).
        n_bytes: μ-law bytes received (= samples at 8 kHz).
        first_media_epoch_ms / last_media_epoch_ms: Arrival of the first / last media message.
        audio_start_epoch_ms: Arrival of the first audible frame (leading silence skipped).
        audio_end_epoch_ms: End of the last audible frame (its arrival + its duration).
        rms_dbfs: RMS of all audio received in the turn (``None`` if none).
        mark: Name of the turn-end mark, if one ended the turn.
        ended_by: ``"mark"``, ``"silence"`` (fallback), ``"clear"`` (barge-in), ``"silent"``
            (no audio expected and none came), ``"skipped"`` (a later mark arrived first) or
            ``"hangup"`` (the call ended mid-turn).
    """

    index: int
    frames: int = 0
    n_bytes: int = 0
    first_media_epoch_ms: int | None = None
    last_media_epoch_ms: int | None = None
    audio_start_epoch_ms: int | None = None
    audio_end_epoch_ms: int | None = None
    rms_dbfs: float | None = None
    mark: str | None = None
    ended_by: str | None = None


@dataclass
class SentTurn:
    """One user turn as the caller spoke it.

    Attributes:
        index: User turn index.
        text: The intended text (logged as ``user_speech``).
        spoken: The text given to the TTS.
        start_epoch_ms: Send time of the first utterance frame (= ``user_speech_start``).
        stop_epoch_ms: End of the last real sample sent (= ``user_speech_stop``).
        frames: Utterance frames sent.
        completed: All frames were sent.
        barged_in: Started while the assistant turn was still playing.
    """

    index: int
    text: str
    spoken: str
    start_epoch_ms: int | None = None
    stop_epoch_ms: int | None = None
    frames: int = 0
    completed: bool = False
    barged_in: bool = False


@dataclass
class CallerResult:
    """Everything the caller collected; returned on every path (goodbye, timeout, errors).

    Attributes:
        events: ``user_simulator_events.jsonl`` lines (EVA shape); the last one is always
            ``connection_state``/``session_ended`` with ``details.reason == ended_reason``.
        assistant_turns: Per assistant turn, in order.
        user_turns: Per user turn the caller began, in order (``start_epoch_ms`` is ``None``
            if the call ended before its first frame went out).
        received_ulaw: All media payload received, in arrival order.
        ended_reason: ``"goodbye"``, ``"timeout"``, ``"disconnected"`` or ``"error"``.
        error: The exception for ``"error"``.
        control_frames: Every non-media frame received (mark, clear, stop, unknown) with its
            arrival ``epoch_ms``.
        stream_sid: The stream SID the caller announced.
        audible_frames_after_clear: Audible media frames that arrived after a ``clear`` while
            the caller was still speaking the utterance that caused it (should be 0: nothing
            may play after ``clear``).
    """

    events: list[dict[str, Any]]
    assistant_turns: list[ReceivedTurn]
    user_turns: list[SentTurn]
    received_ulaw: bytes
    ended_reason: str
    error: str | None
    control_frames: list[dict[str, Any]] = field(default_factory=list)
    stream_sid: str = ""
    audible_frames_after_clear: int = 0


@dataclass(frozen=True)
class _Utterance:
    frames: tuple[bytes, ...]
    last_frame_samples: int  # real (not padding) samples in the last frame
    first_audible: int = 0  # sample index (in the sent frames) of the first audible sample
    last_audible: int = 0  # sample index of the last audible sample


@dataclass
class _RxTurn:
    index: int
    frames: int = 0
    n_bytes: int = 0
    sumsq: float = 0.0
    n_samples: int = 0
    first_media_ns: int | None = None
    last_media_ns: int | None = None
    first_audible_ns: int | None = None
    last_audible_ns: int | None = None
    last_audible_end_ns: int | None = None


class _Disconnected(Exception):
    """The bridge closed the connection while the call was still on."""


def _dbfs(sumsq: float, n: int) -> float:
    if n == 0 or sumsq <= 0.0:
        return -math.inf
    return 10.0 * math.log10(sumsq / n / (32768.0 * 32768.0))


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _redact_url(url: str) -> str:
    return url.split("?", 1)[0]


class Caller:
    """A scripted caller that dials ``url`` and plays ``script``'s user side in real time.

    Args:
        script: The conversation; ``assistant_turns[0]`` is the greeting, ``assistant_turns[i]``
            answers ``user_turns[i - 1]``.
        url: The bridge's Twilio Media Streams endpoint, e.g. ``ws://127.0.0.1:PORT/ws``.
        config: Timing and voice.
        synthesizer: TTS engine (default: eSpeak NG with the config's voice and rate).
        clock: Session clock (share the bridge's to put both on one time base).
        stream_sid: Stream SID to announce (default: a random ``MZ…``).
    """

    def __init__(
        self,
        script: Script,
        *,
        url: str,
        config: CallerConfig = CallerConfig(),
        synthesizer: SpeechSynthesizer | None = None,
        clock: ClockLike | None = None,
        stream_sid: str | None = None,
    ) -> None:
        self.script = script
        self.url = url
        self.config = config
        self.stream_sid = stream_sid or f"MZ{uuid.uuid4().hex}"
        self._synth: SpeechSynthesizer = (
            synthesizer
            if synthesizer is not None
            else Synthesizer(voice=self.config.voice, rate_wpm=self.config.rate_wpm)
        )
        self._clock: ClockLike = clock if clock is not None else Clock()
        self._spf = SAMPLE_RATE_HZ * self.config.frame_ms // 1000
        if self._spf * 1000 != SAMPLE_RATE_HZ * self.config.frame_ms:
            raise ValueError(f"frame_ms={self.config.frame_ms} is not a whole number of samples")
        self._period_ns = self.config.frame_ms * 1_000_000
        self._utt_audible_end_ns: int | None = None
        self._started = False
        # collected results
        self._events: list[dict[str, Any]] = []
        self._controls: list[dict[str, Any]] = []
        self._cleared = False  # a clear came and the caller is still speaking over it
        self._heard_after_clear = 0
        self._rx_turns: list[ReceivedTurn] = []
        self._tx_turns: list[SentTurn] = []
        self._received = bytearray()
        # receiver state
        self._rx = _RxTurn(0)
        self._marks_seen = False
        self._wake = asyncio.Event()
        # sender state
        self._utterances: list[_Utterance] = []
        self._noise_frames: list[bytes] = []
        self._noise_pos = 0
        self._utt: _Utterance | None = None
        self._utt_pos = 0
        self._utt_sent_end_ns = 0
        self._utt_done = asyncio.Event()
        self._stop_sending = False
        self._closing = False

    # ------------------------------------------------------------------ public
    async def run(self) -> CallerResult:
        """Place the call and play the script; never raises for call failures.

        Returns:
            The collected result; ``ended_reason`` says how the call ended.

        Raises:
            RuntimeError: ``run`` was already called on this caller.
        """
        if self._started:
            raise RuntimeError("a Caller places one call; create a new Caller")
        self._started = True
        reason, error = "error", None
        try:
            self._utterances, self._noise_frames = await asyncio.to_thread(self._prepare)
            reason = await self._call()
        except Exception as exc:  # every failure still returns what was collected
            leaves = _leaves(exc)
            others = [e for e in leaves if not isinstance(e, _Disconnected | ConnectionClosed)]
            if others:
                first = others[0]
                reason, error = "error", f"{type(first).__name__}: {first}"
                logger.warning("caller failed: %s", error, exc_info=first)
            else:
                reason = "disconnected"
        self._finalize(reason)
        return CallerResult(
            events=self._events,
            assistant_turns=self._rx_turns,
            user_turns=self._tx_turns,
            received_ulaw=bytes(self._received),
            ended_reason=reason,
            error=error,
            control_frames=self._controls,
            stream_sid=self.stream_sid,
            audible_frames_after_clear=self._heard_after_clear,
        )

    # ------------------------------------------------------------------ audio prep
    def _noise(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int16]:
        rms = 32768.0 * 10.0 ** (self.config.noise_dbfs / 20.0)
        x = np.round(rng.normal(0.0, rms, size=n))
        return np.clip(x, -32768, 32767).astype(np.int16)

    def _prepare(self) -> tuple[list[_Utterance], list[bytes]]:
        """Synthesize and frame every user line; pre-encode the line noise (runs in a thread)."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        noise = ulaw_encode(self._noise(rng, _NOISE_FRAMES * self._spf))
        noise_frames = [noise[i : i + self._spf] for i in range(0, len(noise), self._spf)]
        utterances = []
        for i, turn in enumerate(self.script.user_turns):
            pcm = self._synth.synthesize(
                turn.spoken,
                voice=cfg.voice,
                rate_wpm=cfg.rate_wpm,
                sample_rate_hz=SAMPLE_RATE_HZ,
                noise_dbfs=cfg.noise_dbfs,
                seed=cfg.seed + i,
            )
            utterances.append(self._frame_utterance(np.asarray(pcm, dtype=np.int16), rng))
        return utterances, noise_frames

    def _frame_utterance(self, pcm: npt.NDArray[np.int16], rng: np.random.Generator) -> _Utterance:
        """Cut into frames (last one padded with line noise) and trim quiet head and tail frames.

        The TTS leaves a few hundred ms of near-silence around the speech; trimming it makes
        ``user_speech_start/stop`` bracket the audible speech. The sender fills with the same
        line noise, so the stream itself is unchanged.
        """
        spf = self._spf
        n = len(pcm)
        n_frames = max(1, -(-n // spf))
        pad = n_frames * spf - n
        frames = np.concatenate([pcm, self._noise(rng, pad)]).reshape(n_frames, spf)
        power = np.mean(frames.astype(np.float64) ** 2, axis=1)
        audible = np.flatnonzero(power > (32768.0**2) * 10.0 ** (AUDIBLE_DBFS / 10.0))
        first, last = (int(audible[0]), int(audible[-1])) if len(audible) else (0, n_frames - 1)
        kept = frames[first : last + 1].reshape(-1)
        data = ulaw_encode(kept)
        chunks = tuple(data[i : i + spf] for i in range(0, len(data), spf))
        last_real = spf - pad if last == n_frames - 1 and n > 0 else spf
        # Sample-accurate audible bounds, by the same definition the timeline's v2v uses.
        sent = ulaw_decode(data)
        rate = spf * 1000 // self.config.frame_ms
        on = first_onset(sent, sample_rate_hz=rate, rms_threshold_dbfs=AUDIBLE_DBFS)
        off = last_offset(sent, sample_rate_hz=rate, rms_threshold_dbfs=AUDIBLE_DBFS)
        return _Utterance(
            frames=chunks,
            last_frame_samples=last_real,
            first_audible=on if on is not None else 0,
            last_audible=off if off is not None else len(sent) - 1,
        )

    # ------------------------------------------------------------------ call
    async def _call(self) -> str:
        cfg = self.config
        async with connect(
            self.url,
            compression=None,
            max_size=None,
            open_timeout=cfg.connect_timeout_s,
            close_timeout=min(cfg.connect_timeout_s, 5.0),
        ) as ws:
            now = self._clock.now_ns()
            self._log_state("connected", {"server_url": _redact_url(self.url)}, now)
            await ws.send(connected_frame())
            await ws.send(start_frame(self.stream_sid))
            async with asyncio.TaskGroup() as tg:
                sender = tg.create_task(self._send_loop(ws), name="caller-sender")
                tg.create_task(self._receive_loop(ws), name="caller-receiver")
                reason = await self._conduct()
                # From here on a closing socket is the expected end, not a disconnect.
                self._closing = True
                self._stop_sending = True
                await sender
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(stop_frame(self.stream_sid))
                await ws.close()
        return reason

    async def _conduct(self) -> str:
        """Turn logic: greeting, then user line i / assistant turn i+1, ...; the end reason."""
        n_asst = len(self.script.assistant_turns)
        for i, turn in enumerate(self.script.user_turns):
            barged = False
            if i < n_asst:
                result = await self._await_assistant(i, self.config.barge_in_after_ms.get(i))
                if result is None:
                    return "timeout"
                barged = result == "barge_in"
            self._tx_turns.append(
                SentTurn(index=i, text=turn.text, spoken=turn.spoken, barged_in=barged)
            )
            self._utt = self._utterances[i]
            self._utt_pos = 0
            self._utt_done.clear()
            await self._utt_done.wait()
        for k in range(len(self.script.user_turns), n_asst):
            if await self._await_assistant(k, None) is None:
                return "timeout"
        return "goodbye"

    def _fallback_due_ns(self) -> int | None:
        """When the silence fallback ends the current turn (``None``: it cannot yet)."""
        rx = self._rx
        if self._marks_seen or rx.last_media_ns is None:
            return None
        anchor = rx.last_audible_ns if rx.last_audible_ns is not None else rx.last_media_ns
        return anchor + int(self.config.turn_end_silence_s * _NS_PER_S)

    async def _await_assistant(self, k: int, barge_in_after_ms: float | None) -> str | None:
        """Wait for the end of assistant turn ``k`` (or its barge-in point).

        Returns:
            ``"ended"``, ``"barge_in"``, or ``None`` on timeout.
        """
        clock = self._clock
        start = clock.now_ns()
        deadline = start + int(self.config.assistant_turn_timeout_s * _NS_PER_S)
        expect_audio = bool(self.script.assistant_turns[k].text.strip())
        silence_ns = int(self.config.turn_end_silence_s * _NS_PER_S)
        while len(self._rx_turns) <= k:
            now = clock.now_ns()
            rx = self._rx
            wake_at = deadline
            if barge_in_after_ms is not None and rx.index == k and rx.first_audible_ns is not None:
                barge_at = rx.first_audible_ns + int(barge_in_after_ms * 1_000_000)
                if now >= barge_at:
                    return "barge_in"
                wake_at = min(wake_at, barge_at)
            if not expect_audio and rx.index == k and rx.frames == 0:
                # A turn the script gives no speech (e.g. a trailing empty answer): a mark may
                # come; if nothing comes, move on instead of timing out.
                if now >= start + silence_ns:
                    self._end_turn(now, ended_by="silent")
                    continue
                wake_at = min(wake_at, start + silence_ns)
            due = self._fallback_due_ns()
            if due is not None:
                if now >= due:
                    self._end_turn(now, ended_by="silence")
                    continue
                wake_at = min(wake_at, due)
            if now >= deadline:
                logger.warning(
                    "assistant turn %d did not end within %.1f s",
                    k,
                    self.config.assistant_turn_timeout_s,
                )
                return None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, (wake_at - now) / _NS_PER_S))
        return "ended"

    # ------------------------------------------------------------------ sender
    async def _send_loop(self, ws: ClientConnection) -> None:
        """One frame per period on absolute targets; after a stall, re-anchor (never burst)."""
        clock = self._clock
        next_ns = clock.now_ns()
        try:
            while not self._stop_sending:
                now = clock.now_ns()
                await self._send_slot(ws, now)
                next_ns += self._period_ns
                if next_ns <= now:
                    next_ns = now + self._period_ns
                await asyncio.sleep(max(0, next_ns - clock.now_ns()) / _NS_PER_S)
        except ConnectionClosed as exc:
            if not self._hangup_expected():
                raise _Disconnected(f"connection closed while sending: {exc}") from None

    async def _send_slot(self, ws: ClientConnection, now: int) -> None:
        utt = self._utt
        if utt is None:
            frame = self._noise_frames[self._noise_pos % len(self._noise_frames)]
            self._noise_pos += 1
            await ws.send(media_frame(self.stream_sid, frame))
            return
        turn = self._tx_turns[-1]
        pos = self._utt_pos
        spf, period = self._spf, self._period_ns
        if pos == 0:
            # Convention (as on a real line): a frame sent at S carries the audio spoken during
            # [S - 20 ms, S]. The pacer's grid is absolute, so the first audible sample's time
            # is known before its frame goes out.
            a = utt.first_audible
            start_ns = now + (a // spf - 1) * period + (a % spf) * _NS_PER_SAMPLE
            start_ms = self._clock.epoch_ms(start_ns)
            self._utt_sent_end_ns = now
            self._utt_audible_end_ns = None
            await ws.send(user_speech_frame(self.stream_sid, started=True, timestamp_ms=start_ms))
            turn.start_epoch_ms = start_ms
            self._log_audio("audio_start", "simulated_user", now, start_ns)
            self._log_data("user_speech", {"text": turn.text, "source": "simulated_user"}, now)
        await ws.send(media_frame(self.stream_sid, utt.frames[pos]))
        pos += 1
        self._utt_pos = turn.frames = pos
        self._utt_sent_end_ns = now
        if pos - 1 == utt.last_audible // spf:
            self._utt_audible_end_ns = now - period + (utt.last_audible % spf + 1) * _NS_PER_SAMPLE
        if pos == len(utt.frames):
            end_ns = self._utt_audible_end_ns or now
            self._utt_sent_end_ns = end_ns
            turn.completed = True
            self._finish_utterance()
            await ws.send(
                user_speech_frame(
                    self.stream_sid, started=False, timestamp_ms=self._clock.epoch_ms(end_ns)
                )
            )

    def _finish_utterance(self) -> None:
        """Close the utterance in progress at the end of its last sent sample."""
        if self._utt is None:
            return
        turn = self._tx_turns[-1]
        if turn.start_epoch_ms is not None:
            end_ns = self._utt_sent_end_ns
            turn.stop_epoch_ms = self._clock.epoch_ms(end_ns)
            self._log_audio("audio_end", "simulated_user", self._clock.now_ns(), end_ns)
        self._utt = None
        self._cleared = False
        self._utt_done.set()

    # ------------------------------------------------------------------ receiver
    async def _receive_loop(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                now = self._clock.now_ns()
                try:
                    ev = parse_twilio(message)
                except TwilioFrameError as exc:
                    logger.warning("ignoring a bad frame from the bridge: %s", exc)
                    continue
                match ev:
                    case Media(payload=payload):
                        self._on_media(payload, now)
                    case Mark(name=name):
                        self._control(now, "mark", name=name)
                        self._on_mark(name, now)
                    case Clear():
                        self._control(now, "clear")
                        self._on_clear(now)
                    case Stop():
                        self._control(now, "stop")
                    case TwilioUnknown(event=event):
                        self._control(now, event)
                    case _:
                        self._control(now, str(ev.raw.get("event", type(ev).__name__)))
        except ConnectionClosed as exc:
            if not self._hangup_expected():
                raise _Disconnected(f"bridge closed the connection: {exc}") from None
            return
        if not self._hangup_expected():
            raise _Disconnected("bridge closed the connection")

    def _hangup_expected(self) -> bool:
        """Whether a closed socket is a normal end: we are closing, or the script is done.

        A bridge may hang up right after the last turn-end mark, before the conductor has
        run; that call still ended with the whole script played.
        """
        if not self._closing and (
            len(self._tx_turns) == len(self.script.user_turns)
            and self._utt is None
            and len(self._rx_turns) >= len(self.script.assistant_turns)
        ):
            self._closing = True
        return self._closing

    def _control(self, now: int, event: str, **extra: Any) -> None:
        self._controls.append({"epoch_ms": self._clock.epoch_ms(now), "event": event, **extra})

    def _on_media(self, payload: bytes, now: int) -> None:
        self._received += payload
        rx = self._rx
        first = rx.frames == 0
        rx.frames += 1
        rx.n_bytes += len(payload)
        if rx.first_media_ns is None:
            rx.first_media_ns = now
        rx.last_media_ns = now
        if payload:
            pcm16 = ulaw_decode(payload)
            pcm = pcm16.astype(np.float64)
            sumsq = float(np.dot(pcm, pcm))
            rx.sumsq += sumsq
            rx.n_samples += len(pcm)
            # A frame received at R plays during [R, R + its length]; audible bounds are
            # sample-accurate, by the same definition the timeline's v2v uses.
            on = first_onset(pcm16, sample_rate_hz=SAMPLE_RATE_HZ, rms_threshold_dbfs=AUDIBLE_DBFS)
            if on is not None and self._cleared and self._utt is not None:
                self._heard_after_clear += 1  # the bridge played on after telling us to clear
            if on is not None:
                if rx.first_audible_ns is None:
                    rx.first_audible_ns = now + on * _NS_PER_SAMPLE
                    self._log_audio("audio_start", "assistant", now, rx.first_audible_ns)
                    self._wake.set()
                off = last_offset(
                    pcm16, sample_rate_hz=SAMPLE_RATE_HZ, rms_threshold_dbfs=AUDIBLE_DBFS
                )
                rx.last_audible_ns = now
                end = off if off is not None else len(pcm16) - 1
                rx.last_audible_end_ns = now + (end + 1) * _NS_PER_SAMPLE
        if first:
            self._wake.set()

    def _on_mark(self, name: str, now: int) -> None:
        if not name.startswith(TURN_END_MARK_PREFIX):
            return
        try:
            k = int(name[len(TURN_END_MARK_PREFIX) :])
        except ValueError:
            logger.warning("ignoring malformed turn-end mark %r", name)
            return
        self._marks_seen = True
        if k < self._rx.index:
            return  # that turn already ended (clear or silence fallback)
        while self._rx.index < k:
            # Turns the bridge ended without a mark: the audio so far belongs to turn k.
            self._rx_turns.append(ReceivedTurn(index=self._rx.index, ended_by="skipped"))
            self._rx.index += 1
        self._end_turn(now, ended_by="mark", mark=name)

    def _on_clear(self, now: int) -> None:
        # The bridge flushed unplayed audio after a barge-in: the turn ends here, interrupted.
        self._cleared = True
        if self._rx.frames > 0:
            self._end_turn(now, ended_by="clear")

    def _end_turn(self, now: int, *, ended_by: str, mark: str | None = None) -> None:
        rx = self._rx
        clock = self._clock
        if rx.last_audible_end_ns is not None:
            self._log_audio("audio_end", "assistant", now, rx.last_audible_end_ns)
        self._rx_turns.append(
            ReceivedTurn(
                index=rx.index,
                frames=rx.frames,
                n_bytes=rx.n_bytes,
                first_media_epoch_ms=(
                    clock.epoch_ms(rx.first_media_ns) if rx.first_media_ns is not None else None
                ),
                last_media_epoch_ms=(
                    clock.epoch_ms(rx.last_media_ns) if rx.last_media_ns is not None else None
                ),
                audio_start_epoch_ms=(
                    clock.epoch_ms(rx.first_audible_ns) if rx.first_audible_ns is not None else None
                ),
                audio_end_epoch_ms=(
                    clock.epoch_ms(rx.last_audible_end_ns)
                    if rx.last_audible_end_ns is not None
                    else None
                ),
                rms_dbfs=(
                    round(_dbfs(rx.sumsq, rx.n_samples), 2)
                    if rx.n_samples and rx.sumsq > 0
                    else None
                ),
                mark=mark,
                ended_by=ended_by,
            )
        )
        self._rx = _RxTurn(rx.index + 1)
        self._wake.set()

    # ------------------------------------------------------------------ events
    def _finalize(self, reason: str) -> None:
        now = self._clock.now_ns()
        self._finish_utterance()
        if self._rx.frames > 0:
            self._end_turn(now, ended_by="hangup")
        self._log_state("session_ended", {"reason": reason}, now)

    def _next_seq(self) -> int:
        return len(self._events) + 1

    def _log_state(self, state: str, details: dict[str, Any], now: int) -> None:
        self._log_data("connection_state", {"state": state, "details": details}, now)

    def _log_data(self, kind: str, data: dict[str, Any], now: int) -> None:
        self._events.append(
            {
                "timestamp": self._clock.epoch_ms(now),
                "sequence": self._next_seq(),
                "type": kind,
                "data": data,
                "provider": PROVIDER,
            }
        )

    def _log_audio(self, kind: str, user: str, now: int, audio_ns: int) -> None:
        self._events.append(
            {
                "timestamp": self._clock.epoch_ms(now),
                "sequence": self._next_seq(),
                "event_type": kind,
                "user": user,
                "audio_timestamp": self._clock.epoch_s(audio_ns),
                "provider": PROVIDER,
            }
        )
