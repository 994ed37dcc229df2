"""The bridge: a Twilio Media Streams server on 127.0.0.1 that puts a caller through to Hydra.

One :class:`BridgeSession` per caller connection (``/ws`` or ``/``). Its tasks shuttle data into the
sans-I/O core (:class:`~hydralab.turns.TurnTracker`, :class:`~hydralab.audio.Timeline`) and out:

- caller reader: μ-law 8 kHz → PCM 16 kHz → ``input_audio_buffer.append``; the 48 kHz copy goes
  to the user track at arrival time; ``user_speech_start/stop`` delimit utterances for STT;
- silence fill: when the caller sends nothing, 20 ms of silence per 20 ms keeps Hydra's stream
  continuous (its VAD and idle timer need it);
- model reader: Hydra events → turn state; audio → 8 kHz frames for the wire + 48 kHz for the
  record; tools run in their own tasks, one debounced ``response.create`` after the outputs;
- pacer: one 160-byte μ-law frame every 20 ms; the assistant track is written at play time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hydralab.audio import StreamResampler, Timeline, ulaw_decode, ulaw_encode
from hydralab.client import (
    HydraClient,
    HydraConfig,
    HydraError,
)
from hydralab.clock import Clock
from hydralab.latency import compute_v2v
from hydralab.model import ModelSessionFactory, RealtimeModelSession
from hydralab.playout import PlayoutPlacer
from hydralab.protocol import twilio as tw
from hydralab.protocol.budget import configure_bytes
from hydralab.protocol.context import with_context
from hydralab.protocol.hydra import (
    ConversationItemCreate,
    ErrorEvent,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    HydraEvent,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    UnknownEvent,
    decode_pcm16,
)
from hydralab.reconnect import ReconnectPolicy
from hydralab.rundir import RunWriter
from hydralab.secrets import Secret, redact
from hydralab.speech.stt import ERROR_CANCELLED, Transcriber, Transcript
from hydralab.toolpolicy import ToolPolicy
from hydralab.tools import ToolExecutor
from hydralab.turns import (
    Action,
    AssistantTurn,
    BargeIn,
    TurnComplete,
    TurnLogged,
    TurnTracker,
    dumps_result,
)
from hydralab.uplink import Uplink

__all__ = ["Bridge", "BridgeConfig", "BridgeSession"]

_F8 = 160  # samples per 20 ms at 8 kHz
_F48 = 960  # samples per 20 ms at 48 kHz
_F16 = 320


@dataclass(frozen=True)
class BridgeConfig:
    hydra: HydraConfig = field(default_factory=HydraConfig)
    silence_fill_after_ms: float = 60.0
    tool_settle_ms: float = 120.0
    """Without a ``response.done``, how long a response with answered calls must be quiet
    before ``response.create`` (another call may still come); with one, no wait at all."""
    preroll_ms: float = 200.0
    stt_timeout_s: float = 60.0
    tool_timeout_s: float = 30.0
    connect_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Delays (jittered ×0.5–1.5) between connection attempts after a retryable failure."""
    max_reconnects: int = 1
    """Mid-call reconnects after the model drops the session (``internal_error``, 1011/1013,
    1006 / a dropped network)."""
    reconnect_close_codes: tuple[int, ...] = (1006, 1011, 1012, 1013)
    configure_ceiling_bytes: int = 32_000
    """Budget for the reconnect context appended to the instructions."""
    reconnect_context: bool = True
    """Hydra has no resume: carry the conversation so far into the new session's instructions
    (``False`` only to show what a context-less reconnect does)."""
    underrun_tolerance_ms: float = 60.0
    """A frame sent more than this after the previous one ended is heard after a gap."""


@dataclass
class _Frame:
    ulaw: bytes
    pcm48: npt.NDArray[np.int16]
    response_id: str | None


@dataclass
class _Mark:
    name: str
    turn_index: int


class BridgeSession:
    """One caller ↔ Hydra conversation. ``run(ws)`` returns when the call has ended."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        tools: ToolExecutor,
        writer_factory: Callable[[Clock], RunWriter],
        transcriber: Transcriber | None = None,
        api_key: Secret | str | None = None,
        clock: Clock | None = None,
        model_factory: ModelSessionFactory | None = None,
    ) -> None:
        """One caller's conversation.

        Args:
            config: The bridge's settings and the model's configuration (``config.hydra``).
            tools: Executes the model's tool calls against the scenario database.
            writer_factory: Builds the run directory's writer on the session clock.
            transcriber: User-turn STT (and the assistant fallback), or ``None``.
            api_key: Hydra key for the default model (never logged).
            clock: The run's one clock (default: a new one).
            model_factory: Builds the realtime model session for a ``session`` configuration
                (default: Hydra's client with ``config.hydra``; any
                :class:`~hydralab.model.RealtimeModelSession` fits).
        """
        self.config = config
        self.tools = tools
        self.transcriber = transcriber
        self.clock = clock or Clock()
        self.writer = writer_factory(self.clock)
        self.timeline = Timeline(t0_ns=self.clock.t0_ns)
        # The wire as the caller has it: 8 kHz, both directions, on the same clock. ``v2v`` is
        # read here — exactly the samples the caller sent and heard, no resampler in between.
        self.wire = Timeline(t0_ns=self.clock.t0_ns, sample_rate_hz=8000)
        self.tracker = TurnTracker(epoch_ms=self.clock.epoch_ms, model=config.hydra.model)
        self._model_factory: ModelSessionFactory = model_factory or self._hydra_session
        self._api_key = api_key
        self.client: RealtimeModelSession = self._model_factory(config.hydra.session_payload())
        self.stream_sid = "hydralab"
        self.ended_reason: str | None = None
        self.error: str | None = None
        self.started_ns = self.clock.now_ns()
        self.ended_ns: int | None = None
        self.done = asyncio.Event()
        self.output_rate_hz = 48_000
        self.reconnects = 0
        self.stt_failures: list[dict[str, Any]] = []
        # caller → model
        self.uplink = Uplink(
            timeline=self.timeline,
            wire=self.wire,
            preroll_ms=config.preroll_ms,
            silence_fill_after_ms=config.silence_fill_after_ms,
            start_ns=self.clock.now_ns(),
        )
        self._send_lock = asyncio.Lock()
        # model → caller
        self._down8: StreamResampler | None = None
        self._to48: StreamResampler | None = None
        self._carry: dict[str, bytes] = {}
        self._buf8 = np.zeros(0, dtype=np.int16)
        self._buf48 = np.zeros(0, dtype=np.int16)
        self._buf_rid: str | None = None
        self._queue: deque[_Frame | _Mark] = deque()
        self._queue_event = asyncio.Event()
        self.placer = PlayoutPlacer(underrun_tolerance_ms=config.underrun_tolerance_ms)
        self._cut_gen = 0  # bumped by every barge-in: a frame held across one is dropped
        self._cut_responses: set[str] = set()  # responses of barged-in turns: deltas dropped
        self.muted_responses: dict[str, str] = {}  # response id -> why its audio never plays
        self.dropped_deltas = 0
        # tools
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self.tool_policy = ToolPolicy(settle_ms=config.tool_settle_ms)
        self.reconnect_policy = ReconnectPolicy(
            backoff_s=config.connect_backoff_s,
            max_reconnects=config.max_reconnects,
            close_codes=config.reconnect_close_codes,
        )
        self._tool_timer: asyncio.Task[None] | None = None
        self._creating = False
        self._narration_for: int | None = None  # turn whose narration was requested
        self._calls_seen: set[str] = set()
        self.tool_requests: list[dict[str, Any]] = []
        self.tool_outputs_lost: list[dict[str, Any]] = []
        self.reconnect_log: list[dict[str, Any]] = []
        self.rejected_model_frames = 0
        self._stt_tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._ws: ServerConnection | None = None
        self._model_up = asyncio.Event()
        self._audio_open: str | None = None  # response with deltas but no output_audio.done
        self.connect_attempts = 0
        self._audio_responses: set[str] = set()
        self.silent_responses = 0  # completed speaking responses that carried no audio at all
        self._silent_streak = 0
        self.no_audio_warning: str | None = None
        self._last_error_code: str | None = None
        self._context_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    async def run(self, ws: ServerConnection) -> None:
        try:
            await self._run(ws)
        except Exception as exc:  # reported in the run, never silent
            self.error = redact(f"{type(exc).__name__}: {exc}")
            self.ended_reason = self.ended_reason or "error"
        finally:
            self.ended_ns = self.clock.now_ns()
            with contextlib.suppress(Exception):
                await self.client.close()
            self._turn_actions(self.tracker.finish(self.ended_ns))
            self.finalize()
            self.done.set()

    async def _run(self, ws: ServerConnection) -> None:
        self._ws = ws
        try:
            await self._connect_with_backoff()
        except HydraError as exc:
            self.error = str(exc)
            self.ended_reason = "model_connect_failed"
            self._log_bridge("model_connect_failed", {"error": self.error})
            await ws.close(1011, "model connection failed")
            return
        self.output_rate_hz = self.client.output_rate_hz
        self._down8 = StreamResampler(self.output_rate_hz, out_rate_hz=8000)
        self._to48 = StreamResampler(self.output_rate_hz, out_rate_hz=48000)
        self._log_bridge(
            "session_configured",
            {"output_rate_hz": self.output_rate_hz, "configure_bytes": self.client.configure_bytes},
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._caller_reader(ws))
            tg.create_task(self._model_reader())
            tg.create_task(self._pacer(ws))
            tg.create_task(self._silence_fill())
            await self._stop.wait()
            await self._drain()
            await self.client.close()
            with contextlib.suppress(Exception):
                await ws.close()
            self._queue_event.set()

    def _new_client(self, *, greeting: bool, context: bool = False) -> RealtimeModelSession:
        """A client for a new session. ``context``: Hydra has no resume, so the conversation so
        far is appended to the instructions (within the configure budget) and recorded."""
        session = self.config.hydra.session_payload()
        session["generate_initial_response"] = greeting
        if context:
            msgs = self._conversation_so_far()
            base = str(session.get("instructions") or "")
            room = self.config.configure_ceiling_bytes - configure_bytes(session)
            session["instructions"], kept = with_context(base, msgs, max_bytes=max(0, room))
            self._context_info = {
                "context_rebuilt": kept > 0,
                "context_messages": kept,
                "context_messages_dropped": len(msgs) - kept,
                "context_bytes": configure_bytes(session)
                - configure_bytes({**session, "instructions": base}),
            }
            self._log_bridge("reconnect_context", dict(self._context_info))
        return self._model_factory(session)

    def _hydra_session(self, session: dict[str, Any]) -> RealtimeModelSession:
        """The default model: Hydra, configured with ``session`` verbatim."""
        return HydraClient(
            dataclasses.replace(self.config.hydra, session=session),
            api_key=self._api_key,
            frame_logger=self.writer.hydra_frame,
            now_ns=self.clock.now_ns,
        )

    def _conversation_so_far(self) -> list[tuple[str, str]]:
        """What was said, for a new session's context: the logged messages (placeholders of
        failed transcriptions left out), then turns received and still playing."""
        out = [
            (str(m["role"]), str(m["content"]))
            for m in self.tracker.conversation_messages
            if m.get("role") in ("user", "assistant")
            and str(m.get("content", "")).strip()
            and not str(m["content"]).startswith("[")
        ]
        for turn in self.tracker.turns:
            if turn.complete and not turn.logged and turn.text:
                out.append(("assistant", turn.text))
        return out

    async def _connect_with_backoff(self, *, initial: bool = True) -> None:
        """Connect (a new session each attempt); retry capacity/transport failures with jitter."""
        for attempt in range(len(self.reconnect_policy.backoff_s) + 1):
            client = (
                self.client
                if initial and attempt == 0
                else self._new_client(
                    greeting=initial and self.config.hydra.generate_initial_response,
                    context=not initial and self.config.reconnect_context,
                )
            )
            try:
                await client.connect()
            except HydraError as exc:
                delay = self.reconnect_policy.connect_delay_s(exc, attempt=attempt)
                if delay is None:
                    raise
                self._log_bridge(
                    "model_connect_retry",
                    {"attempt": attempt + 1, "error": str(exc), "delay_s": round(delay, 3)},
                )
                await asyncio.sleep(delay)
                continue
            self.client = client
            self.connect_attempts = attempt + 1
            self._model_up.set()
            return

    async def _drain(self) -> None:
        """Stop intake, then let pending tools and transcriptions finish (bounded)."""
        if self._tool_tasks:
            await asyncio.wait(list(self._tool_tasks), timeout=self.config.tool_timeout_s)
        if self._tool_timer is not None:
            self._tool_timer.cancel()
        if self._stt_tasks:
            _, pending = await asyncio.wait(
                list(self._stt_tasks), timeout=self.config.stt_timeout_s
            )
            for t in pending:
                t.cancel()
            # let the cancelled ones write their placeholders before the files are written
            await asyncio.gather(*pending, return_exceptions=True)

    def _end(self, reason: str) -> None:
        if self.ended_reason is None:
            self.ended_reason = reason
        self._stop.set()
        self._queue_event.set()

    def _log_bridge(self, kind: str, data: dict[str, Any]) -> None:
        self.writer.log("bridge", "-", {"type": kind, **data}, self.clock.now_ns())

    # ------------------------------------------------------------------ caller side
    async def _caller_reader(self, ws: ServerConnection) -> None:
        n_media = 0
        try:
            async for msg in ws:
                t = self.clock.now_ns()
                try:
                    ev = tw.parse_twilio(msg)
                except tw.TwilioFrameError as exc:
                    self.writer.log("twilio", "in", {"event": "<bad frame>", "error": str(exc)}, t)
                    continue
                if not isinstance(ev, tw.Media):
                    self.writer.log("twilio", "in", ev.raw, t)
                match ev:
                    case tw.Start() | tw.Connected():
                        if ev.stream_sid:
                            self.stream_sid = ev.stream_sid
                    case tw.Media():
                        n_media += 1
                        await self._on_caller_audio(ev.payload, t)
                    case tw.UserSpeechStart():
                        self._start_utterance(t, ev.timestamp_ms)
                    case tw.UserSpeechStop():
                        self._stop_utterance(t, ev.timestamp_ms)
                    case tw.Stop():
                        self._end("goodbye")
                        return
                    case _:
                        pass
        except ConnectionClosed:
            pass
        finally:
            self._log_bridge("caller_media_frames", {"count": n_media})
            if self.uplink.in_utterance:
                self._stop_utterance(self.clock.now_ns(), None)
            self._end("caller_disconnected")

    async def _on_caller_audio(self, payload: bytes, t_ns: int) -> None:
        await self._send_input(self.uplink.caller_audio(payload, t_ns))

    async def _send_input(self, frames: list[npt.NDArray[np.int16]]) -> None:
        """Send 20 ms 16 kHz frames; dropped (and counted) while the model is reconnecting."""
        for k, chunk in enumerate(frames):
            if self._stop.is_set():
                return
            if not self._model_up.is_set():
                self.uplink.dropped(frames[k:])
                return
            try:
                async with self._send_lock:
                    await self.client.send_audio(chunk)
            except HydraError:
                self._model_up.clear()
                self.uplink.dropped(frames[k:])
                return

    async def _silence_fill(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.02)
            if not self._stop.is_set():
                await self._send_input(self.uplink.silence_due(self.clock.now_ns()))

    def _start_utterance(self, t_ns: int, timestamp_ms: int | None) -> None:
        if self.uplink.in_utterance:
            self._stop_utterance(t_ns, None)
        self.tracker.user_speech_start(t_ns, timestamp_ms=timestamp_ms)
        self.uplink.start_utterance()

    def _stop_utterance(self, t_ns: int, timestamp_ms: int | None) -> None:
        u = self.tracker.user_speech_stop(t_ns, timestamp_ms=timestamp_ms)
        pcm = self.uplink.stop_utterance()
        if u is None:
            return
        self._spawn_stt(self._transcribe(u.index, pcm))

    def _spawn_stt(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._stt_tasks.add(task)
        task.add_done_callback(self._stt_tasks.discard)

    async def _stt(self, pcm: npt.NDArray[np.int16], sample_rate_hz: int) -> Transcript:
        """The transcriber's result; never raises except on cancellation."""
        assert self.transcriber is not None
        try:
            return await self.transcriber.transcribe(pcm, sample_rate_hz=sample_rate_hz)
        except Exception as exc:  # a custom transcriber that broke the never-raises rule
            return Transcript(
                "", ok=False, error=redact(f"{type(exc).__name__}: {exc}"), provider="?"
            )

    def _stt_failed(self, role: str, index: int, tr: Transcript) -> None:
        self.stt_failures.append(
            {
                "role": role,
                ("utterance" if role == "user" else "turn"): index,
                "reason": tr.reason,
                "error": tr.error,
                "attempts": tr.attempts,
            }
        )

    async def _transcribe(self, index: int, pcm: npt.NDArray[np.int16]) -> None:
        """STT of user utterance ``index``: a transcript, a placeholder (failure), or nothing
        (the guards found no speech)."""
        if self.transcriber is None:
            self.tracker.user_transcript(index, "", ok=False, error="no_transcriber")
            return
        try:
            tr = await self._stt(pcm, 16000)
        except asyncio.CancelledError:  # _drain's bound ran out: a placeholder, never a gap
            tr = Transcript("", ok=False, error=ERROR_CANCELLED, provider=self.transcriber.name)
            self._stt_failed("user", index, tr)
            self.tracker.user_transcript(index, "", ok=False, error=ERROR_CANCELLED)
            raise
        if not tr.ok and not tr.skipped:
            self._stt_failed("user", index, tr)
        self.tracker.user_transcript(index, tr.text, ok=tr.ok, error=tr.error, skipped=tr.skipped)
        self._log_bridge(
            "user_transcript",
            {
                "utterance": index,
                "ok": tr.ok,
                "text": tr.text,
                "error": tr.error,
                "skipped": tr.skipped,
                "provider": tr.provider,
                "audio_ms": round(tr.audio_ms, 1),
                "stt_ms": round(tr.duration_ms, 1),
                "attempts": tr.attempts,
            },
        )

    def _assistant_stt_fallback(self, turn: AssistantTurn) -> None:
        """Tracker hook, when an assistant turn's entry is written: audio was played but no
        transcript deltas came, so transcribe the played audio (the entry is then rewritten and
        marked STT-derived)."""
        if turn.text_deltas or turn.first_played_t_ns is None or not turn.samples_played:
            return
        if self.transcriber is None or self._stop.is_set():  # no time left to transcribe
            turn.text_source = "none"
            return
        tl = self.timeline
        start = max(0, tl.index_of(turn.first_played_t_ns) - _F48 // 2)
        end = tl.index_of(turn.last_played_t_ns or turn.first_played_t_ns) + 2 * _F48
        pcm = tl.track("assistant")[start:end]
        self._spawn_stt(self._transcribe_assistant(turn.index, pcm))

    async def _transcribe_assistant(self, index: int, pcm: npt.NDArray[np.int16]) -> None:
        try:
            tr = await self._stt(pcm, 48000)
        except asyncio.CancelledError:
            self.tracker.assistant_transcript(index, "", ok=False, error=ERROR_CANCELLED)
            raise
        if not tr.ok:
            self._stt_failed("assistant", index, tr)
        self.tracker.assistant_transcript(index, tr.text, ok=tr.ok, error=tr.error)
        self._log_bridge(
            "assistant_stt_fallback",
            {"turn": index, "ok": tr.ok, "text": tr.text, "error": tr.error},
        )

    # ------------------------------------------------------------------ model side
    async def _model_reader(self) -> None:
        while True:
            await self._read_model()
            if self._stop.is_set():
                return
            code = self.client.close_code
            retry = self.reconnect_policy.should_reconnect(
                close_code=code, last_error_code=self._last_error_code, reconnects=self.reconnects
            )
            if not retry:
                self._log_bridge("model_closed", {"close_code": code})
                self._end("model_disconnected")
                return
            self.reconnects += 1
            self._model_up.clear()
            t = self.clock.now_ns()
            if self.tool_policy.cancel("reconnect"):
                self._log_bridge("response_create_skipped", {"why": "model_reconnect"})
            self._narration_for = None
            self._turn_actions(self.tracker.abort_current(t, reason="model_disconnected"))
            self._log_bridge(
                "model_reconnect",
                {"close_code": code, "error": self._last_error_code, "reconnects": self.reconnects},
            )
            entry: dict[str, Any] = {
                "t_epoch_ms": self.clock.epoch_ms(t),
                "close_code": code,
                "error": self._last_error_code,
            }
            self._last_error_code = None
            try:
                await self._connect_with_backoff(initial=False)
            except HydraError as exc:
                self.error = str(exc)
                entry["ok"] = False
                self.reconnect_log.append(entry)
                self._end("model_disconnected")
                return
            entry.update(ok=True, session_id=self.client.session_id, **self._context_info)
            self.reconnect_log.append(entry)
            if self.client.output_rate_hz != self.output_rate_hz:
                self.output_rate_hz = self.client.output_rate_hz
                self._down8 = StreamResampler(self.output_rate_hz, out_rate_hz=8000)
                self._to48 = StreamResampler(self.output_rate_hz, out_rate_hz=48000)

    async def _read_model(self) -> None:
        async for ev in self.client:
            t = self.clock.now_ns()
            if isinstance(ev, UnknownEvent) and ev.malformed is not None:
                self.rejected_model_frames += 1
                self._log_bridge("model_frame_rejected", {"why": ev.malformed})
                continue
            if self._screen(ev, t):
                actions = self.tracker.on_event(ev, t)
                if isinstance(ev, ErrorEvent) and self.tracker.errors:
                    self.tracker.errors[-1]["caused_by"] = self.client.sent_type(ev.caused_by)
                await self._handle(ev, t)
                for a in actions:
                    if isinstance(a, BargeIn):
                        await self._barge_in(a.index)
                    else:
                        self._turn_actions([a])
            self._tool_tick()
            if self._stop.is_set():
                break

    def _turn_actions(self, actions: list[Action]) -> None:
        """Carry out what the turn tracker asks (a barge-in is awaited by the model reader)."""
        for a in actions:
            match a:
                case TurnComplete(index=i):
                    self._flush_audio()
                    self._queue.append(_Mark(tw.turn_end_mark(i), i))
                    self._queue_event.set()
                case TurnLogged(index=i):
                    self._assistant_stt_fallback(self.tracker.turns[i])
                case _:
                    pass

    def _screen(self, ev: HydraEvent, t_ns: int) -> bool:
        """Whether ``ev`` goes on to the turn state; drops what the caller must never hear.

        - Deltas of a response the caller barged in on (the server cancels it, but deltas
          already in flight still arrive) are dropped by response id.
        - The narration requested for a turn the caller has since interrupted is muted (and
          cancelled): it belongs to that turn, and its audio never plays.
        """
        rid = getattr(ev, "response_id", None)
        if isinstance(ev, ResponseCreated) and rid is not None:
            narr, self._narration_for = self._narration_for, None
            if narr is not None and self.tracker.turns[narr].interrupted:
                self.muted_responses[rid] = "narration_of_interrupted_turn"
                self.tracker.bind_response(rid, narr)
                self._log_bridge("response_muted", {"response_id": rid, "turn": narr})
                self._spawn(self._cancel_response(rid))
                return False
        if rid is not None and (rid in self._cut_responses or rid in self.muted_responses):
            if isinstance(ev, ResponseDone):
                return True  # its status and usage still count
            if isinstance(ev, ResponseOutputAudioDelta | ResponseOutputAudioTranscriptDelta):
                self.dropped_deltas += 1
            return False
        return True

    async def _cancel_response(self, response_id: str) -> None:
        with contextlib.suppress(HydraError):
            await self.client.send(ResponseCancel(response_id=response_id))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tool_tasks.add(task)
        task.add_done_callback(self._tool_tasks.discard)

    async def _handle(self, ev: HydraEvent, t_ns: int) -> None:
        rid = getattr(ev, "response_id", None)
        self.tool_policy.activity(rid, t_ns)
        match ev:
            case ResponseCreated():
                # A new response while the previous one's audio is still open: the docs say drop
                # the still-scheduled audio of the previous response.
                if self._audio_open is not None and self._audio_open != ev.response_id:
                    await self._barge_in(None, why="response_superseded")
                self._audio_open = None
            case ResponseOutputAudioDelta():
                self._audio_open = ev.response_id
                self._audio_responses.add(ev.response_id or "")
                rid = ev.response_id or ""
                pcm, self._carry[rid] = decode_pcm16(ev.payload, carry=self._carry.get(rid, b""))
                self._enqueue_audio(ev.response_id, pcm, t_ns)
            case ResponseOutputAudioDone():
                self._audio_open = None
                self._flush_audio()
            case FunctionCallArgumentsDelta():
                self.tool_policy.call_started(ev.response_id, ev.call_id, t_ns)
            case FunctionCallArgumentsDone():
                if ev.call_id and ev.call_id in self._calls_seen:
                    self._log_bridge("duplicate_call_id", {"call_id": ev.call_id})
                    return
                self._calls_seen.add(ev.call_id)
                self.tool_policy.call_done(ev.response_id, ev.call_id, t_ns)
                self._spawn(self._run_tool(ev))
            case ResponseDone():
                if ev.response_id == self._audio_open:
                    self._audio_open = None
                self._flush_audio()
                self._check_silent_model(ev)
                self.tool_policy.response_done(ev.response_id, t_ns)
            case ErrorEvent():
                self._last_error_code = ev.code
                if ev.code == "tool_response_timeout" and self.tool_policy.cancel(ev.code):
                    self._log_bridge("response_create_skipped", {"why": ev.code})
            case _:
                pass

    def _check_silent_model(self, ev: ResponseDone) -> None:
        """Hydra's quirk: above its ~32 KB configure ceiling it keeps answering (text, tools)
        but never sends audio. Two completed speaking responses in a row without a single audio
        delta are reported, with the configure size, instead of a silent call."""
        rid = ev.response_id or ""
        with_calls = ev.function_calls or rid in self.tracker.responses_with_calls
        if ev.status != "completed" or with_calls:
            return
        if rid in self._audio_responses:
            self._silent_streak = 0
            return
        self.silent_responses += 1
        self._silent_streak += 1
        if self._silent_streak >= 2 and self.no_audio_warning is None:
            self.no_audio_warning = (
                f"the model completed {self._silent_streak} responses without any audio; "
                f"session.configure was {self.client.configure_bytes} bytes — Hydra drops all "
                "audio above ~32 KB (see run.json configure_budget)"
            )
            self._log_bridge("model_sends_no_audio", {"warning": self.no_audio_warning})

    def _enqueue_audio(
        self, response_id: str | None, pcm: npt.NDArray[np.int16], t_ns: int
    ) -> None:
        assert self._down8 is not None and self._to48 is not None
        if pcm.size == 0:
            return
        if self._buf_rid != response_id:
            self._flush_audio()
            self._buf_rid = response_id
        p8, p48 = self._down8.process(pcm), self._to48.process(pcm)
        self.tracker.audio_received(response_id, int(p48.size), t_ns)
        self._buf8 = np.concatenate([self._buf8, p8])
        self._buf48 = np.concatenate([self._buf48, p48])
        while self._buf8.size >= _F8 and self._buf48.size >= _F48:
            self._queue.append(
                _Frame(ulaw_encode(self._buf8[:_F8]), self._buf48[:_F48], response_id)
            )
            self._buf8, self._buf48 = self._buf8[_F8:], self._buf48[_F48:]
        self._queue_event.set()

    def _flush_audio(self) -> None:
        """Pad the last partial frame of a response with silence and queue it."""
        if self._buf8.size or self._buf48.size:
            f8 = np.zeros(_F8, dtype=np.int16)
            f48 = np.zeros(_F48, dtype=np.int16)
            f8[: min(_F8, self._buf8.size)] = self._buf8[:_F8]
            f48[: min(_F48, self._buf48.size)] = self._buf48[:_F48]
            self._queue.append(_Frame(ulaw_encode(f8), f48, self._buf_rid))
            self._queue_event.set()
        self._buf8 = np.zeros(0, dtype=np.int16)
        self._buf48 = np.zeros(0, dtype=np.int16)

    async def _barge_in(self, index: int | None, *, why: str = "speech_started") -> None:
        """Drop every unplayed frame (and the one the pacer holds), stop the turn's responses
        from playing any more, and tell the caller to flush what it buffered."""
        self._cut_gen += 1
        if index is not None:
            self._cut_responses.update(self.tracker.turns[index].response_ids)
            if self.tool_policy.cancel("barge_in"):
                self._log_bridge("response_create_skipped", {"why": "barge_in", "turn": index})
        elif self._audio_open is not None:
            self._cut_responses.add(self._audio_open)
        dropped = sum(isinstance(x, _Frame) for x in self._queue)
        self.placer.stats.dropped_after_clear += dropped
        self._queue = deque(x for x in self._queue if isinstance(x, _Mark))
        self._buf8 = np.zeros(0, dtype=np.int16)
        self._buf48 = np.zeros(0, dtype=np.int16)
        t = self.clock.now_ns()
        self._erase_unheard(t)
        self._log_bridge("barge_in", {"turn": index, "dropped_frames": dropped, "why": why})
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(tw.clear_frame(self.stream_sid))
                self.writer.log("twilio", "out", {"event": "clear"}, self.clock.now_ns())

    def _erase_unheard(self, t_ns: int) -> None:
        """The caller drops its buffer on ``clear``: audio recorded past ``t_ns`` was not heard."""
        span = self.placer.clear(at_index=self.timeline.index_of(t_ns))
        if span is None:
            return
        a, b = span
        t_a = self.timeline.time_of(a)
        self.timeline.write(
            "assistant", np.zeros(b - a, dtype=np.int16), t_ns=t_a + self._a48_shift_ns
        )
        n8 = self.wire.index_of(self.timeline.time_of(b)) - self.wire.index_of(t_a)
        if n8 > 0:
            self.wire.write("assistant", np.zeros(n8, dtype=np.int16), t_ns=t_a)

    # ------------------------------------------------------------------ tools
    async def _run_tool(self, ev: FunctionCallArgumentsDone) -> None:
        name = ev.name or self.tracker.tool_call_name(ev.call_id)
        raw = ev.arguments or self.tracker.tool_call_args(ev.call_id)
        try:
            params = json.loads(raw) if raw.strip() else {}
            if not isinstance(params, dict):
                raise ValueError("arguments are not a JSON object")
        except ValueError as exc:
            params = {}
            result: dict[str, Any] = {
                "status": "error",
                "error_type": "invalid_parameter",
                "message": f"arguments are not valid JSON: {exc}",
            }
            self.tracker.tool_called(self.clock.now_ns(), name=name, params={"_raw": raw})
        else:
            self.tracker.tool_called(self.clock.now_ns(), name=name, params=params)
            if not name:
                result = {
                    "status": "error",
                    "error_type": "unknown_tool",
                    "message": "the call named no function",
                }
            else:
                result = self.tools.execute(name, params)
        self.tracker.tool_result(self.clock.now_ns(), name=name, params=params, result=result)
        try:
            await self.client.send(
                ConversationItemCreate.function_call_output(ev.call_id, dumps_result(result))
            )
        except HydraError as exc:
            # the model never got this result: the call cannot count as completed
            self.tool_outputs_lost.append({"call_id": ev.call_id, "tool": name, "error": str(exc)})
            self._log_bridge("tool_output_not_sent", {"call_id": ev.call_id, "error": str(exc)})
            self.tool_policy.output_sent(ev.call_id, self.clock.now_ns())
            self._tool_tick()
            return
        t = self.clock.now_ns()
        self.tracker.output_sent(t)
        self.tool_policy.output_sent(ev.call_id, t)
        self._tool_tick()

    def _tool_tick(self) -> None:
        """Send ``response.create`` when the policy says so, or wake up when it may."""
        if self._creating or self._stop.is_set():
            return
        now = self.clock.now_ns()
        if self.tool_policy.due(now):
            self._creating = True
            self._spawn(self._send_response_create())
            return
        at = self.tool_policy.next_deadline_ns()
        if at is not None and (self._tool_timer is None or self._tool_timer.done()):
            self._tool_timer = asyncio.create_task(self._tool_wake(at))

    async def _tool_wake(self, at_ns: int) -> None:
        await asyncio.sleep(max(0.0, (at_ns - self.clock.now_ns()) / 1e9))
        self._tool_timer = None
        self._tool_tick()

    async def _send_response_create(self) -> None:
        try:
            t = self.clock.now_ns()
            req = self.tool_policy.sent(t)
            try:
                await self.client.send(ResponseCreate())
            except HydraError as exc:
                self._log_bridge("response_create_not_sent", {"error": str(exc)})
                return
            t_sent = self.clock.now_ns()
            cur = self.tracker.current
            self._narration_for = cur.index if cur is not None else None
            self.tracker.response_create_sent(t_sent, wait_ms=req.wait_ms, reason=req.reason)
            self.tool_requests.append(
                {
                    "turn": self._narration_for,
                    "reason": req.reason,
                    "wait_ms": round(req.wait_ms, 3),
                    "calls": req.calls,
                }
            )
        finally:
            self._creating = False
        self._tool_tick()

    # ------------------------------------------------------------------ pacer
    async def _pacer(self, ws: ServerConnection) -> None:
        now = self.clock.now_ns
        frame_ns = 20_000_000
        next_t = now()
        idle = True
        while not self._stop.is_set():
            if not self._queue:
                self._queue_event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queue_event.wait(), 0.1)
                next_t = max(next_t, now())
                idle = True
                continue
            item = self._queue.popleft()
            try:
                if isinstance(item, _Mark):
                    self._turn_actions(self.tracker.turn_played(item.turn_index, now()))
                    await ws.send(tw.mark_frame(self.stream_sid, item.name))
                    self.writer.log("twilio", "out", {"event": "mark", "name": item.name}, now())
                    continue
                gen = self._cut_gen
                delay = next_t - now()
                if delay > 0:
                    await asyncio.sleep(delay / 1e9)
                if gen != self._cut_gen or (item.response_id or "") in self._cut_responses:
                    # a barge-in came while this frame was held: it must not follow the clear
                    self.placer.stats.dropped_after_clear += 1
                    continue
                t = now()
                await ws.send(tw.media_frame(self.stream_sid, item.ulaw))
            except ConnectionClosed:
                self._end("caller_disconnected")
                return
            self._record_played(item, t, lateness_ms=max(0, t - next_t) / 1e6, after_idle=idle)
            idle = False
            # Absolute 20 ms grid: scheduling jitter does not accumulate; after a real stall
            # (>100 ms) restart the grid instead of bursting to catch up.
            next_t += frame_ns
            if now() - next_t > 100_000_000:
                next_t = now()

    @property
    def _a48_shift_ns(self) -> int:
        """The 48 kHz assistant copy is delayed by its resampler less than the 8 kHz wire copy
        by its own: written this much later, both tracks line up with what the caller heard."""
        if self._down8 is None or self._to48 is None:
            return 0
        return round((self._down8.delay_ms - self._to48.delay_ms) * 1e6)

    def _record_played(
        self, frame: _Frame, t_ns: int, *, lateness_ms: float = 0.0, after_idle: bool = False
    ) -> None:
        """Record a frame where the caller hears it (:class:`hydralab.playout.PlayoutPlacer`)."""
        pos = self.placer.place(
            sent_index=self.timeline.index_of(t_ns),
            n_samples=int(frame.pcm48.size),
            lateness_ms=lateness_ms,
            after_idle=after_idle,
        )
        at = self.timeline.time_of(pos)
        self.timeline.write("assistant", frame.pcm48, t_ns=at + self._a48_shift_ns)
        self.wire.write("assistant", ulaw_decode(frame.ulaw), t_ns=at)
        self.tracker.audio_played(frame.response_id, int(frame.pcm48.size), at)

    # ------------------------------------------------------------------ outputs
    def compute_v2v(self) -> None:
        """``v2v`` per turn, read off the wire timeline (:func:`hydralab.latency.compute_v2v`)."""
        compute_v2v(self.wire, self.tracker.turns)

    def finalize(self) -> None:
        """Write every file of the run directory; safe on any exit path."""
        w = self.writer
        try:
            with contextlib.suppress(Exception):  # a metric must never cost the recordings
                self.compute_v2v()
            w.audit_log(self.tracker.audit, self.tracker.conversation_messages)
            w.jsonl("framework_logs.jsonl", self.tracker.framework_logs)
            w.jsonl("pipecat_metrics.jsonl", self.tracker.metrics)
            w.scenario_dbs(self.tools.initial_db, self.tools.db)
            self.timeline.save(w.dir)
        finally:
            w.close()

    def summary(self) -> dict[str, Any]:
        rows = self.tracker.turn_rows()
        lat = [r["model_response_ms"] for r in rows if r["model_response_ms"] is not None]
        return {
            "ended_reason": self.ended_reason,
            "error": self.error,
            "model": self.config.hydra.model,
            "url": self.config.hydra.redacted_url(),
            "session_id": self.client.session_id,
            "output_rate_hz": self.output_rate_hz,
            "output_rate_announced": self.client.announced_rate_hz,
            "voice_requested": self.client.requested_voice,
            "voice_echoed": self.client.echoed_voice,
            "client_notes": self.client.notes,
            "configure_bytes": self.client.configure_bytes,
            "warnings": self.client.stats.warnings,
            "frames_in": self.client.stats.frames_in,
            "frames_out": self.client.stats.frames_out,
            "turns": rows,
            "user_utterances": [
                {
                    "index": u.index,
                    "start_epoch_ms": u.start_epoch_ms,
                    "stop_epoch_ms": u.stop_epoch_ms,
                    "text": u.text,
                    "ok": u.transcript_ok,
                    "error": u.transcript_error,
                }
                for u in self.tracker.users
            ],
            "model_response_ms": lat,
            "stt_failures": self.stt_failures,
            "errors": self.tracker.errors,
            "timeline_t0_epoch_ms": self.clock.epoch_ms(self.clock.t0_ns),
            "reconnects": self.reconnects,
            "reconnect_log": self.reconnect_log,
            "connect_attempts": self.connect_attempts,
            "pacer": self.placer.stats.to_dict(),
            "tool_requests": self.tool_requests,
            "tool_outputs_lost": self.tool_outputs_lost,
            "muted_responses": self.muted_responses,
            "dropped_deltas_after_barge_in": self.dropped_deltas,
            "rejected_model_frames": self.rejected_model_frames + self.client.stats.rejected_in,
            "dropped_input_ms": self.uplink.dropped_ms,
            "silent_responses": self.silent_responses,
            "no_audio_warning": self.no_audio_warning,
            "duration_s": ((self.ended_ns or self.clock.now_ns()) - self.started_ns) / 1e9,
        }


class Bridge:
    """The Twilio-media-stream server. Each connection gets a session from ``session_factory``."""

    def __init__(self, session_factory: Callable[[], BridgeSession]) -> None:
        self._factory = session_factory
        self._server: Server | None = None
        self.sessions: list[BridgeSession] = []
        self._new_session = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = await serve(self._handler, host, port, compression=None, max_size=None)
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        return self.url

    async def _handler(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?")[0] if ws.request is not None else "/"
        if path not in ("/", "/ws"):
            await ws.close(1008, f"unknown path {path}")
            return
        session = self._factory()
        self.sessions.append(session)
        self._new_session.set()
        await session.run(ws)

    async def wait_session(self, *, timeout_s: float | None = None) -> BridgeSession:
        """The first session, once it has ended."""
        async with asyncio.timeout(timeout_s):
            await self._new_session.wait()
            s = self.sessions[0]
            await s.done.wait()
            return s

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Bridge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
