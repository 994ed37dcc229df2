"""The bridge's sans-I/O core: one caller ↔ model conversation as a state machine.

:class:`BridgeCore` is fed everything that happens to a call — caller frames, model events, tool
results, transcripts, connection changes — each with ``t_ns`` from the run's one clock, and
returns *effects*: what the shell must do (send to the model, send to the caller, run a tool,
transcribe, reconnect, log, end). It never reads a clock, sleeps, or touches a socket;
:meth:`BridgeCore.next_deadline_ns` says when it next wants :meth:`BridgeCore.advance` (the
play-out pacer's 20 ms grid, the uplink's silence fill, the tool policy's settle time).

It is made of pure pieces with their own modules and tests:

- :class:`~hydralab.uplink.Uplink` — caller μ-law → 16 kHz frames + the user tracks;
- :class:`~hydralab.turns.TurnTracker` — turns, latency, EVA records (its actions are handled
  here: ``TurnComplete`` queues an end mark, ``BargeIn`` cuts play-out, ``TurnLogged`` may ask
  for a transcription of the played audio);
- :class:`~hydralab.playout.PlayoutPlacer` — where each played frame lands on the recording;
- :class:`~hydralab.toolpolicy.ToolPolicy` — when to send ``response.create`` after tools;
- :class:`~hydralab.reconnect.ReconnectPolicy` — which closes are worth a new session;
- :func:`~hydralab.latency.compute_v2v` — v2v off the 8 kHz wire timeline.

The asyncio shell (:mod:`hydralab.bridge`) and the virtual-time simulator (:mod:`hydralab.sim`)
drive the same core; both write the run directory with :func:`write_outputs`.

Bad input never ends a call. A frame either side sends that cannot be used is rejected: counted
by reason (``summary()["rejected"]``, ``rejected_caller_frames``, ``rejected_model_frames``) and
logged (``caller_frame_rejected`` / ``model_frame_rejected``), and the call goes on. Caller audio
is bounded (a frame of more than ``max_media_frame_ms``, speech more than
``max_speech_lead_ms`` ahead of the clock), logged frames are capped, and a caller that sends
nothing for ``caller_idle_timeout_s`` ends the call as ``caller_idle``. Behind that, every
public method is a safety net: an exception while handling one input is caught, counted
(``core_errors``, the first reasons in ``core_error_reasons``) and logged (``core_error``); only
an unusable state (a model output rate that cannot be played, ``max_core_errors`` reached) ends
the call, as ``bridge_error`` with the error text.
"""

from __future__ import annotations

import copy
import json
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from hydralab.audio import StreamResampler, Timeline, ulaw_decode, ulaw_encode
from hydralab.clock import ClockLike
from hydralab.latency import compute_v2v
from hydralab.playout import PlayoutPlacer
from hydralab.protocol import twilio as tw
from hydralab.protocol.budget import configure_bytes, session_update_bytes
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
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    UnknownEvent,
    decode_pcm16,
)
from hydralab.reconnect import ReconnectPolicy
from hydralab.speech.stt import Transcript
from hydralab.toolpolicy import ToolPolicy
from hydralab.turns import (
    Action,
    BargeIn,
    TurnComplete,
    TurnLogged,
    TurnTracker,
    dumps_result,
)
from hydralab.uplink import Uplink

__all__ = [
    "BridgeCore",
    "BridgeCoreConfig",
    "CoreOutcome",
    "Effect",
    "End",
    "Log",
    "ModelInfo",
    "Reconnect",
    "RunTool",
    "ToCaller",
    "ToModel",
    "ToModelAudio",
    "Transcribe",
]

_F8 = 160  # samples per 20 ms at 8 kHz
_F48 = 960  # samples per 20 ms at 48 kHz
_FRAME_NS = 20_000_000
_RESTART_GRID_NS = 100_000_000
_LOGGED_DEPTH = 32  # a logged frame nested deeper than this is logged in its truncated form
_HEAD_CHARS = 256  # what a truncated frame keeps of its text
_REASON_KEYS = 32  # distinct rejection reasons counted per side (the rest: "other")
_LOG_EVERY = 100  # past the first 20 rejections of one reason, one log line per 100
_FIRST_ERRORS = 5  # core errors whose reasons the summary keeps
_MAX_BACKLOG_MS = 30_000.0  # caller audio held while the model connected, at most


# ---------------------------------------------------------------------- effects
@dataclass(frozen=True)
class ToModel:
    """Send a client event to the model. ``call_id``: a tool output (its loss is reported
    with :meth:`BridgeCore.model_send_failed`)."""

    event: HydraEvent
    call_id: str | None = None


@dataclass(frozen=True)
class ToModelAudio:
    """Send 20 ms of 16 kHz PCM16 caller audio (``input_audio_buffer.append``)."""

    pcm16k: npt.NDArray[np.int16]


@dataclass(frozen=True)
class ToCaller:
    """Send one Twilio frame (JSON text) to the caller."""

    frame: str
    kind: Literal["media", "mark", "clear"]


@dataclass(frozen=True)
class RunTool:
    """Execute a tool call and report with :meth:`BridgeCore.tool_result`."""

    call_id: str
    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Transcribe:
    """Transcribe ``pcm`` and report with :meth:`BridgeCore.transcript`: a user utterance
    (16 kHz) or an assistant turn's played audio (48 kHz, no transcript deltas came)."""

    role: Literal["user", "assistant"]
    index: int
    pcm: npt.NDArray[np.int16]
    sample_rate_hz: int


@dataclass(frozen=True)
class Reconnect:
    """The model dropped the session: open a new one with ``session`` (the conversation so far
    is in its instructions), then report :meth:`BridgeCore.model_connected` or
    :meth:`BridgeCore.model_connect_failed`."""

    session: dict[str, Any]


@dataclass(frozen=True)
class Log:
    """An event for ``events.jsonl`` (source ``twilio`` or ``bridge``)."""

    source: str
    direction: str
    data: dict[str, Any]
    t_ns: int


@dataclass(frozen=True)
class End:
    """The call is over (``reason`` is the run's ``ended_reason``): stop intake, let pending
    tools and transcriptions finish, close both sockets, then :meth:`BridgeCore.finish`."""

    reason: str


Effect = ToModel | ToModelAudio | ToCaller | RunTool | Transcribe | Reconnect | Log | End


@dataclass(frozen=True)
class ModelInfo:
    """What the core needs to know about a connected model session."""

    output_rate_hz: int = 48_000
    configure_bytes: int = 0
    session_id: str | None = None


@dataclass(frozen=True)
class BridgeCoreConfig:
    """The core's settings (the shell's :class:`~hydralab.bridge.BridgeConfig` carries them)."""

    model: str = "hydra"
    session: dict[str, Any] = field(default_factory=dict)
    """The model's ``session`` configuration (the base of a reconnect's)."""
    silence_fill_after_ms: float = 60.0
    tool_settle_ms: float = 120.0
    preroll_ms: float = 200.0
    max_reconnects: int = 1
    reconnect_close_codes: tuple[int, ...] = (1006, 1011, 1012, 1013)
    configure_ceiling_bytes: int = 32_000
    reconnect_context: bool = True
    underrun_tolerance_ms: float = 60.0
    transcribe: bool = True
    """A transcriber is there: user utterances and audio-without-deltas turns get
    :class:`Transcribe` effects (else their entries say ``no_transcriber``)."""
    caller_idle_timeout_s: float | None = 60.0
    """No valid caller frame (and nothing played to the caller) for this long while the model
    is up ends the call as ``caller_idle``; ``None`` or 0: never."""
    max_media_frame_ms: float = 1000.0
    """A caller ``media`` frame carrying more audio than this is rejected whole (counted)."""
    max_speech_lead_ms: float = 1000.0
    """How far caller speech may run ahead of the clock; frames beyond are rejected (counted;
    silence beyond 60 ms is dropped by :class:`~hydralab.uplink.Uplink` already)."""
    max_logged_frame_bytes: int = 4096
    """A caller frame longer than this is logged in a truncated form (its size and head)."""
    max_core_errors: int = 20
    """Internal errors (caught, counted, logged) tolerated before the call ends as
    ``bridge_error``."""
    session_update: dict[str, Any] | None = None
    """EXPERIMENTAL (``configure_mode="update"``): the ``session`` of a ``session.update``
    (``BudgetResult.update_session``: ``{"tools": [...every tool...]}``) sent once after every
    ``session.configured`` — the first session's and each reconnect's. Nothing waits for its
    ``session.updated`` echo; ``summary()["session_update"]`` records what came back.
    ``None``: no update (every other mode)."""


class CoreOutcome:
    """How a call driven by a :class:`BridgeCore` ended — for the asyncio shell and the
    simulator alike (what :func:`hydralab.runner` reads)."""

    core: BridgeCore

    @property
    def ended_reason(self) -> str | None:
        return self.core.ended_reason

    @property
    def error(self) -> str | None:
        return self.core.error

    @property
    def tool_outputs_lost(self) -> list[dict[str, Any]]:
        return self.core.tool_outputs_lost


@dataclass
class _Frame:
    ulaw: bytes
    pcm48: npt.NDArray[np.int16]
    response_id: str | None


@dataclass
class _Mark:
    name: str
    turn_index: int


class BridgeCore:
    """One conversation's bridge state. Every method takes the time its input happened and
    returns the effects it causes, in order."""

    def __init__(self, config: BridgeCoreConfig, *, clock: ClockLike, start_ns: int) -> None:
        """``clock`` gives the time base (``t0_ns``) and its epoch mapping; the core never
        calls its ``now_ns``. ``start_ns``: when the call began (the silence fill counts from
        it)."""
        self.config = config
        self.clock = clock
        self.started_ns = start_ns
        self.timeline = Timeline(t0_ns=clock.t0_ns)
        # The wire as the caller has it: 8 kHz, both directions. ``v2v`` is read here.
        self.wire = Timeline(t0_ns=clock.t0_ns, sample_rate_hz=8000)
        self.tracker = TurnTracker(epoch_ms=clock.epoch_ms, model=config.model)
        self.uplink = Uplink(
            timeline=self.timeline,
            wire=self.wire,
            preroll_ms=config.preroll_ms,
            silence_fill_after_ms=config.silence_fill_after_ms,
            start_ns=start_ns,
        )
        self.placer = PlayoutPlacer(underrun_tolerance_ms=config.underrun_tolerance_ms)
        self.tool_policy = ToolPolicy(settle_ms=config.tool_settle_ms)
        self.reconnect_policy = ReconnectPolicy(
            max_reconnects=config.max_reconnects, close_codes=config.reconnect_close_codes
        )
        self.stream_sid = "hydralab"
        self.ended_reason: str | None = None
        self.error: str | None = None
        self.ended_ns: int | None = None
        self.model = ModelInfo()
        self.model_up = False
        self.output_rate_hz = 48_000
        self.reconnects = 0
        self.reconnect_log: list[dict[str, Any]] = []
        self._reconnect_entry: dict[str, Any] | None = None
        self._context_info: dict[str, Any] = {}
        self.stt_failures: list[dict[str, Any]] = []
        self.tool_requests: list[dict[str, Any]] = []
        self.tool_outputs_lost: list[dict[str, Any]] = []
        self.muted_responses: dict[str, str] = {}  # response id -> why its audio never plays
        self.dropped_deltas = 0
        self.rejected_model_frames = 0
        self.silent_responses = 0  # completed speaking responses that carried no audio at all
        self.no_audio_warning: str | None = None
        self.caller_media_frames = 0
        self.caller_dialect: Literal["twilio", "eva"] | None = None
        """``eva``: EVA's simulator (``connected`` with ``protocol: voice-bench-v1``, ``start``
        without ``streamSid``); it takes ``media`` only, so it gets no ``mark``/``clear``."""
        self.caller_stamps_ignored: list[dict[str, Any]] = []
        self.stamp_tolerance_ms = 60_000
        # bad input: counted per side and reason (``summary()["rejected"]``)
        self.rejected_caller_frames = 0
        self.rejected_reasons: dict[str, dict[str, int]] = {"caller": {}, "model": {}}
        self.caller_unknown_events: dict[str, int] = {}
        self.stray_responses_done = 0
        self.duplicate_call_ids = 0
        self.core_errors = 0
        self.core_error_reasons: list[dict[str, Any]] = []
        self._idle_from_ns = start_ns  # the last valid caller frame, or the model's connect
        self._connected_once = False
        self._last_played_ns = start_ns
        # model → caller
        self._down8: StreamResampler | None = None
        self._to48: StreamResampler | None = None
        self._carry: dict[str, bytes] = {}
        self._buf8 = np.zeros(0, dtype=np.int16)
        self._buf48 = np.zeros(0, dtype=np.int16)
        self._buf_rid: str | None = None
        self._queue: deque[_Frame | _Mark] = deque()
        self._next_frame_ns = start_ns
        self._idle = True
        self._cut_responses: set[str] = set()  # responses of barged-in turns: deltas dropped
        self._audio_open: str | None = None  # response with deltas but no output_audio.done
        self._audio_responses: set[str] = set()
        self._silent_streak = 0
        # tools
        self._narration_for: int | None = None  # turn whose narration was requested
        self._calls_seen: set[str] = set()
        self._call_names: dict[str, str] = {}
        self._last_error_code: str | None = None
        # the deferred session.update (configure_mode="update"): one attempt per model session
        self.session_updates: list[dict[str, Any]] = []
        self._update_pending: dict[str, Any] | None = None
        self._update_sent_ns = 0
        self._out: list[Effect] = []
        self._stopped = False

    # ------------------------------------------------------------------ helpers
    @property
    def stopped(self) -> bool:
        """:class:`End` was returned: intake is over."""
        return self._stopped

    def _emit(self, effect: Effect) -> None:
        self._out.append(effect)

    def _log(self, kind: str, data: dict[str, Any], t_ns: int) -> None:
        self._emit(Log("bridge", "-", {"type": kind, **data}, t_ns))

    def _flush(self, t_ns: int) -> list[Effect]:
        """Run what time ``t_ns`` makes due, then hand over every effect produced."""
        if not self._stopped:
            self._pace(t_ns)
            self._silence(t_ns)
            self._tool_tick(t_ns)
            self._idle_check(t_ns)
        out, self._out = self._out, []
        return out

    def _core_error(
        self, what: str, exc: Exception, t_ns: int, *, fatal: bool = False, drain: bool = True
    ) -> list[Effect]:
        """The safety net of every public method: an exception while handling one input is
        counted, logged and survived; the call ends as ``bridge_error`` (never blamed on the
        caller or the model) when the state is unusable (``fatal``) or errors keep coming."""
        self.core_errors += 1
        text = f"{type(exc).__name__}: {exc}"[:300]
        where = ""
        tb = traceback.extract_tb(exc.__traceback__)
        if tb:
            where = f"{PurePath(tb[-1].filename).name}:{tb[-1].lineno} in {tb[-1].name}"
        if len(self.core_error_reasons) < _FIRST_ERRORS:
            self.core_error_reasons.append(
                {
                    "input": what,
                    "error": text,
                    "where": where,
                    "t_epoch_ms": self.clock.epoch_ms(t_ns),
                }
            )
        self._log(
            "core_error",
            {"input": what, "error": text, "where": where, "count": self.core_errors},
            t_ns,
        )
        if fatal or self.core_errors >= self.config.max_core_errors:
            if self.error is None:
                self.error = f"bridge error in {what}: {text}"
            self._end("bridge_error", t_ns)
        if not drain:
            return []
        out, self._out = self._out, []
        return out

    def _reject(
        self, side: Literal["caller", "model"], reason: str, t_ns: int, **data: Any
    ) -> None:
        """Count a rejected input by its reason (``reason`` up to its first ``": "``: the
        detail after it varies) and log it: the first 20 of a reason, then one in 100."""
        key = reason.split(": ")[0] if side == "caller" else reason
        key = key[:80]
        reasons = self.rejected_reasons[side]
        if key not in reasons and len(reasons) >= _REASON_KEYS:
            key = "other"
        n = reasons[key] = reasons.get(key, 0) + 1
        if side == "caller":
            self.rejected_caller_frames += 1
        else:
            self.rejected_model_frames += 1
        if n <= 20 or n % _LOG_EVERY == 0:
            kind = "caller_frame_rejected" if side == "caller" else "model_frame_rejected"
            self._log(kind, {"why": reason[:300], "count": n, **data}, t_ns)

    def _loggable(self, raw: dict[str, Any], msg: str | bytes) -> dict[str, Any]:
        """A caller frame as ``events.jsonl`` takes it: whole, or — longer than
        ``max_logged_frame_bytes`` or nested deeper than 32 — its event, length and head."""
        if len(msg) <= self.config.max_logged_frame_bytes and _depth(raw) <= _LOGGED_DEPTH:
            return raw
        ev = raw.get("event", raw.get("type"))
        return {
            "event": str(ev)[:64],
            "truncated": True,
            "frame_len": len(msg),
            "head": _head(msg),
        }

    def _end(self, reason: str, t_ns: int) -> None:
        if self._stopped:
            return
        self.ended_reason = self.ended_reason or reason
        self._stopped = True
        self._emit(End(self.ended_reason))

    def _set_rate(self, rate_hz: int) -> None:
        if self._down8 is None or rate_hz != self.output_rate_hz:
            self.output_rate_hz = rate_hz
            self._down8 = StreamResampler(rate_hz, out_rate_hz=8000)
            self._to48 = StreamResampler(rate_hz, out_rate_hz=48000)

    # ------------------------------------------------------------------ connection
    def model_connected(self, info: ModelInfo, t_ns: int) -> list[Effect]:
        """A model session is up (the first, or a reconnect's). An output rate the bridge
        cannot play ends the call (``bridge_error``)."""
        try:
            return self._model_connected(info, t_ns)
        except Exception as exc:
            return self._core_error("model_connected", exc, t_ns, fatal=True)

    def _model_connected(self, info: ModelInfo, t_ns: int) -> list[Effect]:
        self.model = info
        self._set_rate(info.output_rate_hz)
        if not self._connected_once:
            # the shell reads the caller only from here: what it sent meanwhile comes at once
            self._connected_once = True
            self.uplink.allow_backlog(min(_MAX_BACKLOG_MS, (t_ns - self.started_ns) / 1e6))
        self.model_up = True
        self._idle_from_ns = max(self._idle_from_ns, t_ns)
        if self._reconnect_entry is not None:
            entry, self._reconnect_entry = self._reconnect_entry, None
            entry.update(ok=True, session_id=info.session_id, **self._context_info)
            self.reconnect_log.append(entry)
        else:
            self._log(
                "session_configured",
                {"output_rate_hz": info.output_rate_hz, "configure_bytes": info.configure_bytes},
                t_ns,
            )
        self._send_session_update(t_ns)
        return self._flush(t_ns)

    def model_connect_failed(self, error: str, t_ns: int) -> list[Effect]:
        """No model session could be opened (after the shell's retries)."""
        try:
            return self._model_connect_failed(error, t_ns)
        except Exception as exc:
            return self._core_error("model_connect_failed", exc, t_ns, fatal=True)

    def _model_connect_failed(self, error: str, t_ns: int) -> list[Effect]:
        self.error = error
        if self._reconnect_entry is not None:
            entry, self._reconnect_entry = self._reconnect_entry, None
            entry["ok"] = False
            self.reconnect_log.append(entry)
            self._end("model_disconnected", t_ns)
        else:
            self._log("model_connect_failed", {"error": error}, t_ns)
            self._end("model_connect_failed", t_ns)
        return self._flush(t_ns)

    def model_closed(self, close_code: int | None, t_ns: int) -> list[Effect]:
        """The model's event stream ended (``close_code`` as the socket reported it)."""
        try:
            return self._model_closed(close_code, t_ns)
        except Exception as exc:
            return self._core_error("model_closed", exc, t_ns, fatal=True)

    def _model_closed(self, close_code: int | None, t_ns: int) -> list[Effect]:
        self.model_up = False
        if self._stopped:
            return self._flush(t_ns)
        retry = self.reconnect_policy.should_reconnect(
            close_code=close_code, last_error_code=self._last_error_code, reconnects=self.reconnects
        )
        if not retry:
            self._log("model_closed", {"close_code": close_code}, t_ns)
            self._end("model_disconnected", t_ns)
            return self._flush(t_ns)
        self.reconnects += 1
        if self.tool_policy.cancel("reconnect"):
            self._log("response_create_skipped", {"why": "model_reconnect"}, t_ns)
        self._narration_for = None
        self._turn_actions(self.tracker.abort_current(t_ns, reason="model_disconnected"), t_ns)
        self._log(
            "model_reconnect",
            {
                "close_code": close_code,
                "error": self._last_error_code,
                "reconnects": self.reconnects,
            },
            t_ns,
        )
        self._reconnect_entry = {
            "t_epoch_ms": self.clock.epoch_ms(t_ns),
            "close_code": close_code,
            "error": self._last_error_code,
        }
        self._last_error_code = None
        self._emit(Reconnect(self.reconnect_session(t_ns)))
        return self._flush(t_ns)

    def reconnect_session(self, t_ns: int) -> dict[str, Any]:
        """A new session's configuration: no greeting, and (Hydra has no resume) the
        conversation so far appended to the instructions within the configure budget."""
        session = dict(self.config.session)
        session["generate_initial_response"] = False
        self._context_info = {}
        if not self.config.reconnect_context:
            return session
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
        self._log("reconnect_context", dict(self._context_info), t_ns)
        return session

    def _conversation_so_far(self) -> list[tuple[str, str]]:
        """What was said: the logged messages (placeholders of failed transcriptions left
        out), then turns received and still playing."""
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

    # ------------------------------------------------------------------ session.update
    def _send_session_update(self, t_ns: int) -> None:
        """``configure_mode="update"``: the full tool list, once per configured model session.
        Nothing waits for the echo: audio and turns go on at once."""
        patch = self.config.session_update
        if patch is None or self._stopped:
            return
        tools = patch.get("tools")
        attempt: dict[str, Any] = {
            "session": len(self.session_updates),
            "session_id": self.model.session_id,
            "sent_bytes": session_update_bytes(patch),
            "tools": len(tools) if isinstance(tools, list) else 0,
            "sent_t_epoch_ms": self.clock.epoch_ms(t_ns),
            "echo": False,
            "echo_t_epoch_ms": None,
            "echo_after_ms": None,
            "echo_tools": None,
            "all_tools_applied": False,
            "error": None,
        }
        self.session_updates.append(attempt)
        self._update_pending = attempt
        self._update_sent_ns = t_ns
        self._emit(ToModel(SessionUpdate(session=copy.deepcopy(patch))))
        self._log(
            "session_update_sent",
            {
                "session": attempt["session"],
                "bytes": attempt["sent_bytes"],
                "tools": attempt["tools"],
                "configure_bytes": self.model.configure_bytes,
                "experimental": "configure_mode=update: whether Hydra's configure ceiling "
                "applies to session.update is unverified",
            },
            t_ns,
        )

    def _session_updated(self, ev: SessionUpdated, t_ns: int) -> None:
        """The server's echo: which tools it applied (the docs: only the applied fields)."""
        attempt, self._update_pending = self._update_pending, None
        echoed = ev.session.get("tools") if isinstance(ev.session, dict) else None
        tools = echoed if isinstance(echoed, list) else []
        names = sorted(str(t.get("name")) for t in tools if isinstance(t, dict))
        if attempt is None:
            self._log(
                "session_updated_unexpected",
                {"tools": len(echoed) if isinstance(echoed, list) else None},
                t_ns,
            )
            return
        sent = (self.config.session_update or {}).get("tools") or []
        want = sorted(str(t.get("name")) for t in sent if isinstance(t, dict))
        after_ms = round((t_ns - self._update_sent_ns) / 1e6, 3)
        attempt.update(
            echo=True,
            echo_t_epoch_ms=self.clock.epoch_ms(t_ns),
            echo_after_ms=after_ms,
            echo_tools=len(echoed) if isinstance(echoed, list) else None,
            all_tools_applied=isinstance(echoed, list) and names == want,
        )
        self._log(
            "session_update_echo",
            {
                "session": attempt["session"],
                "tools": attempt["echo_tools"],
                "all_tools_applied": attempt["all_tools_applied"],
                "after_ms": after_ms,
            },
            t_ns,
        )

    def _session_update_error(self, ev: ErrorEvent, caused_by: str | None, t_ns: int) -> None:
        """An ``error`` answering the update: named by its ``event_id``, or (the server named
        no frame) an ``invalid_frame`` while the update awaits its echo."""
        attempt = self._update_pending
        if attempt is None:
            return
        if caused_by != SessionUpdate.type and not (
            caused_by is None and ev.code == "invalid_frame"
        ):
            return
        self._update_pending = None
        attempt["error"] = {"code": ev.code, "message": ev.message[:300], "param": ev.param}
        self._log(
            "session_update_error",
            {"session": attempt["session"], "code": ev.code, "message": ev.message[:300]},
            t_ns,
        )

    def session_update_summary(self) -> dict[str, Any] | None:
        """``summary()["session_update"]``: ``None`` without a deferred update, else what was
        sent and what came back — ``sent_bytes``, ``tools``, ``sent`` (updates sent: one per
        configured model session), ``echo`` (every one was echoed), ``echo_tools`` (tools the
        last echo listed), ``all_tools_applied`` (every echo listed every tool),
        ``echo_after_ms`` (the first echo, after its send), ``error`` (the first ``error``
        answering one) and ``attempts`` (one entry per model session)."""
        patch = self.config.session_update
        if patch is None:
            return None
        attempts = self.session_updates
        echoed = [a for a in attempts if a["echo"]]
        tools = patch.get("tools")
        return {
            "sent_bytes": session_update_bytes(patch),
            "tools": len(tools) if isinstance(tools, list) else 0,
            "sent": len(attempts),
            "echo": bool(attempts) and len(echoed) == len(attempts),
            "echo_tools": echoed[-1]["echo_tools"] if echoed else None,
            "all_tools_applied": bool(attempts) and all(a["all_tools_applied"] for a in attempts),
            "echo_after_ms": echoed[0]["echo_after_ms"] if echoed else None,
            "error": next((a["error"] for a in attempts if a["error"] is not None), None),
            "attempts": [dict(a) for a in attempts],
            "verified": False,
        }

    def model_send_failed(
        self, effect: ToModel | ToModelAudio, error: str, t_ns: int
    ) -> list[Effect]:
        """A send to the model failed: audio is counted as dropped, a lost tool output makes
        the call not completed, a lost ``response.create`` is logged."""
        try:
            return self._model_send_failed(effect, error, t_ns)
        except Exception as exc:
            return self._core_error("model_send_failed", exc, t_ns)

    def _model_send_failed(
        self, effect: ToModel | ToModelAudio, error: str, t_ns: int
    ) -> list[Effect]:
        match effect:
            case ToModelAudio(pcm16k=pcm):
                self.model_up = False
                self.uplink.dropped([pcm])
            case ToModel(call_id=str(call_id)):
                name = self._call_names.get(call_id, "")
                self.tool_outputs_lost.append({"call_id": call_id, "tool": name, "error": error})
                self._log("tool_output_not_sent", {"call_id": call_id, "error": error}, t_ns)
            case ToModel(event=ResponseCreate()):
                self._log("response_create_not_sent", {"error": error}, t_ns)
            case ToModel(event=SessionUpdate()):
                if self._update_pending is not None:
                    self._update_pending["error"] = {"code": "not_sent", "message": error[:300]}
                    self._update_pending = None
                self._log("session_update_not_sent", {"error": error}, t_ns)
            case _:
                pass
        return self._flush(t_ns)

    # ------------------------------------------------------------------ caller side
    def caller_frame(self, msg: str | bytes, t_ns: int) -> list[Effect]:
        """One frame from the caller's socket (text, or binary holding UTF-8 JSON).

        A frame that cannot be used is rejected — counted by reason in ``summary()["rejected"]``
        and logged, never raised: not JSON (or nested too deeply), not an object, no ``event``,
        a ``media``/``start``/``mark`` that is not an object, a payload that is not a base64
        string, a payload of more than ``max_media_frame_ms`` of audio, or speech more than
        ``max_speech_lead_ms`` ahead of the clock. Unknown events are counted by name."""
        try:
            return self._caller_frame(msg, t_ns)
        except Exception as exc:
            return self._core_error("caller_frame", exc, t_ns)

    def _caller_frame(self, msg: str | bytes, t_ns: int) -> list[Effect]:
        if self._stopped:
            return self._flush(t_ns)
        try:
            ev = tw.parse_twilio(msg)
        except tw.TwilioFrameError as exc:
            self._reject("caller", str(exc), t_ns, frame_len=len(msg), head=_head(msg, 120))
            return self._flush(t_ns)
        self._idle_from_ns = max(self._idle_from_ns, t_ns)
        if not isinstance(ev, tw.Media):
            self._emit(Log("twilio", "in", self._loggable(ev.raw, msg), t_ns))
        match ev:
            case tw.Connected():
                if ev.stream_sid:
                    self.stream_sid = ev.stream_sid
                if ev.protocol == "voice-bench-v1":
                    self.caller_dialect = "eva"
            case tw.Start():
                if ev.stream_sid:
                    self.stream_sid = ev.stream_sid
                    self.caller_dialect = self.caller_dialect or "twilio"
                else:
                    self.caller_dialect = "eva"
            case tw.Media():
                max_bytes = int(self.config.max_media_frame_ms * 8)  # 8 kHz μ-law: 8 B per ms
                if len(ev.payload) > max_bytes:
                    self._reject(
                        "caller",
                        f"media payload too long: {len(ev.payload)} bytes "
                        f"({len(ev.payload) / 8:.0f} ms of audio, over "
                        f"{self.config.max_media_frame_ms:g} ms)",
                        t_ns,
                    )
                    return self._flush(t_ns)
                self.caller_media_frames += 1
                ahead = self.uplink.ahead_speech_frames
                frames = self.uplink.caller_audio(ev.payload, t_ns)
                if self.uplink.ahead_speech_frames != ahead:
                    self._reject(
                        "caller",
                        "speech ahead of the clock: sent faster than real time beyond "
                        f"{self.config.max_speech_lead_ms:g} ms",
                        t_ns,
                        dropped_ms=round(self.uplink.ahead_speech_ms, 1),
                    )
                self._send_audio(frames)
            case tw.UserSpeechStart():
                self._start_utterance(t_ns, self._caller_stamp(ev, t_ns))
            case tw.UserSpeechStop():
                self._stop_utterance(t_ns, self._caller_stamp(ev, t_ns))
            case tw.Stop():
                self._caller_gone(t_ns, "goodbye")
            case tw.TwilioUnknown():
                name = ev.event[:40]
                if name in self.caller_unknown_events or len(self.caller_unknown_events) < 20:
                    self.caller_unknown_events[name] = self.caller_unknown_events.get(name, 0) + 1
                else:
                    self.caller_unknown_events["<other>"] = (
                        self.caller_unknown_events.get("<other>", 0) + 1
                    )
            case _:
                pass
        return self._flush(t_ns)

    def _caller_stamp(self, ev: tw.UserSpeechStart | tw.UserSpeechStop, t_ns: int) -> int | None:
        """The caller's ``timestamp_ms`` when it is plausible epoch ms on our clock, else
        ``None`` (hydralab's own anchor is used) with the reason recorded. EVA's simulator
        stamps ``user_speech_stop`` with its monotonic loop clock, not epoch ms."""
        raw = ev.raw.get("timestamp_ms")
        if raw is None:
            return None
        ours = self.clock.epoch_ms(t_ns)
        why: str | None = None
        try:
            ms = int(float(raw))
        except (TypeError, ValueError, OverflowError):
            ms, why = None, "not a number"
        if ms is not None and ev.timestamp_ms is None:
            why = "not epoch ms (a monotonic clock?)"
        elif ms is not None and abs(ms - ours) > self.stamp_tolerance_ms:
            why = f"{(ms - ours) / 1000:+.1f} s from the bridge clock"
        if why is None:
            return ms
        if len(self.caller_stamps_ignored) < 100:
            self.caller_stamps_ignored.append(
                {"event": ev.raw.get("event"), "value": str(raw)[:40], "why": why}
            )
        self._log(
            "caller_stamp_ignored",
            {"event": ev.raw.get("event"), "value": str(raw)[:40], "why": why, "used_ms": ours},
            t_ns,
        )
        return None

    def caller_closed(self, t_ns: int) -> list[Effect]:
        """The caller's socket ended (or a send to it failed)."""
        try:
            self._caller_gone(t_ns, "caller_disconnected")
            return self._flush(t_ns)
        except Exception as exc:
            return self._core_error("caller_closed", exc, t_ns, fatal=True)

    def _idle_deadline_ns(self) -> int | None:
        """When the caller counts as idle: ``caller_idle_timeout_s`` after its last valid frame
        (or what was last played to it, or the model's connect); only while the model is up."""
        timeout = self.config.caller_idle_timeout_s
        if not timeout or timeout <= 0 or not self.model_up:
            return None
        return max(self._idle_from_ns, self._last_played_ns) + round(timeout * 1e9)

    def _idle_check(self, t_ns: int) -> None:
        at = self._idle_deadline_ns()
        if at is None or t_ns < at:
            return
        quiet_s = (t_ns - self._idle_from_ns) / 1e9
        self._log(
            "caller_idle",
            {"timeout_s": self.config.caller_idle_timeout_s, "quiet_s": round(quiet_s, 3)},
            t_ns,
        )
        self._caller_gone(t_ns, "caller_idle")

    def _caller_gone(self, t_ns: int, reason: str) -> None:
        if self._stopped:
            return
        self._log("caller_media_frames", {"count": self.caller_media_frames}, t_ns)
        if self.uplink.in_utterance:
            self._stop_utterance(t_ns, None)
        self._end(reason, t_ns)

    def _send_audio(self, frames: list[npt.NDArray[np.int16]]) -> None:
        """20 ms 16 kHz frames to the model; dropped (and counted) while it is reconnecting."""
        if not self.model_up:
            self.uplink.dropped(frames)
            return
        for f in frames:
            self._emit(ToModelAudio(f))

    def _silence(self, t_ns: int) -> None:
        if self.model_up:
            self._send_audio(self.uplink.silence_due(t_ns))

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
        if not self.config.transcribe:
            self.tracker.user_transcript(u.index, "", ok=False, error="no_transcriber")
            return
        self._emit(Transcribe("user", u.index, pcm, 16000))

    # ------------------------------------------------------------------ transcripts
    def transcript(
        self, role: Literal["user", "assistant"], index: int, tr: Transcript, t_ns: int
    ) -> list[Effect]:
        """The result of a :class:`Transcribe` (a failure or cancellation included: it leaves a
        placeholder, never a gap)."""
        try:
            return self._transcript(role, index, tr, t_ns)
        except Exception as exc:
            return self._core_error("transcript", exc, t_ns)

    def _transcript(
        self, role: Literal["user", "assistant"], index: int, tr: Transcript, t_ns: int
    ) -> list[Effect]:
        if not tr.ok and not tr.skipped:
            self.stt_failures.append(
                {
                    "role": role,
                    ("utterance" if role == "user" else "turn"): index,
                    "reason": tr.reason,
                    "error": tr.error,
                    "attempts": tr.attempts,
                }
            )
        if role == "user":
            self.tracker.user_transcript(
                index, tr.text, ok=tr.ok, error=tr.error, skipped=tr.skipped
            )
            self._log(
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
                t_ns,
            )
        else:
            self.tracker.assistant_transcript(index, tr.text, ok=tr.ok, error=tr.error)
            self._log(
                "assistant_stt_fallback",
                {"turn": index, "ok": tr.ok, "text": tr.text, "error": tr.error},
                t_ns,
            )
        out, self._out = self._out, []
        return out

    def _assistant_stt_fallback(self, index: int) -> None:
        """A turn's entry was written: audio was played but no transcript deltas came, so
        transcribe the played audio (the entry is then rewritten and marked STT-derived)."""
        turn = self.tracker.turns[index]
        if turn.text_deltas or turn.first_played_t_ns is None or not turn.samples_played:
            return
        if not self.config.transcribe or self._stopped:  # no time left to transcribe
            turn.text_source = "none"
            return
        tl = self.timeline
        start = max(0, tl.index_of(turn.first_played_t_ns) - _F48 // 2)
        end = tl.index_of(turn.last_played_t_ns or turn.first_played_t_ns) + 2 * _F48
        self._emit(Transcribe("assistant", index, tl.track("assistant")[start:end], 48000))

    # ------------------------------------------------------------------ model side
    def model_event(
        self, ev: HydraEvent, t_ns: int, *, caused_by: str | None = None
    ) -> list[Effect]:
        """One event from the model, received at ``t_ns``. ``caused_by``: for an ``error``
        naming a client frame, that frame's type.

        An event that cannot be used is rejected — counted by reason and logged, never raised:
        a field of the wrong type (``UnknownEvent.malformed``; a tool call among them still
        gets an error output), audio that is not base64. A ``response.done`` of a response
        never seen while another turn is open or playing touches no turn (counted as
        ``stray_responses_done``); a repeated ``call_id`` runs its tool once."""
        try:
            return self._model_event(ev, t_ns, caused_by=caused_by)
        except Exception as exc:
            return self._core_error(f"model_event {ev.type or type(ev).__name__}", exc, t_ns)

    def _model_event(self, ev: HydraEvent, t_ns: int, *, caused_by: str | None) -> list[Effect]:
        if self._stopped:
            return self._flush(t_ns)
        if isinstance(ev, UnknownEvent) and ev.malformed is not None:
            self._reject("model", ev.malformed, t_ns)
            if ev.wire_type == FunctionCallArgumentsDone.type:
                self._malformed_call(ev, t_ns)
            return self._flush(t_ns)
        if not self._screen(ev, t_ns):
            return self._flush(t_ns)
        rid = getattr(ev, "response_id", None)
        self.tool_policy.activity(rid, t_ns)
        actions: list[Action] = []
        match ev:
            case SpeechStarted():
                actions = self.tracker.speech_started(t_ns)
            case SpeechStopped():
                self.tracker.speech_stopped(t_ns)
            case ResponseCreated():
                # A new response while the previous one's audio is still open: the docs say
                # drop the still-scheduled audio of the previous response.
                if self._audio_open is not None and self._audio_open != ev.response_id:
                    self._barge_in(None, t_ns, why="response_superseded")
                self._audio_open = None
                self.tracker.response_created(ev.response_id, t_ns)
            case ResponseOutputAudioDelta():
                rid = ev.response_id or ""
                try:
                    pcm, carry = decode_pcm16(
                        ev.payload, carry=self._carry.get(rid, b""), validate=True
                    )
                except ValueError as exc:
                    self._reject(
                        "model",
                        f"{ev.type}: audio is not base64",
                        t_ns,
                        response_id=ev.response_id,
                        error=str(exc)[:200],
                    )
                    return self._flush(t_ns)
                self._carry[rid] = carry
                self.tracker.audio_delta(ev.response_id, t_ns)
                self._audio_open = ev.response_id
                self._audio_responses.add(rid)
                self._enqueue_audio(ev.response_id, pcm, t_ns)
            case ResponseOutputAudioTranscriptDelta():
                self.tracker.transcript_delta(ev.response_id, ev.delta, t_ns)
            case ResponseOutputAudioDone():
                self._audio_open = None
                self._flush_audio(t_ns)
            case FunctionCallArgumentsDelta():
                self.tracker.call_args_delta(ev, t_ns)
                self.tool_policy.call_started(ev.response_id, ev.call_id, t_ns)
            case FunctionCallArgumentsDone():
                self.tracker.call_args_done(ev.response_id, t_ns)
                self._call_done(ev, t_ns)
            case ResponseDone() if self.tracker.stray_response(ev.response_id):
                self.stray_responses_done += 1
                self._log(
                    "response_done_stray",
                    {
                        "response_id": ev.response_id,
                        "status": ev.status,
                        "why": "no event of this response came before; another turn is open "
                        "or playing: no turn is closed",
                    },
                    t_ns,
                )
                actions = self.tracker.response_done(ev, t_ns)  # accounting only
            case ResponseDone():
                actions = self.tracker.response_done(ev, t_ns)
                if ev.response_id == self._audio_open:
                    self._audio_open = None
                self._flush_audio(t_ns)
                self._check_silent_model(ev, t_ns)
                self.tool_policy.response_done(ev.response_id, t_ns)
            case ErrorEvent():
                actions = self.tracker.error(ev.code, ev.message, t_ns)
                if caused_by is not None:
                    self.tracker.errors[-1]["caused_by"] = caused_by
                self._last_error_code = ev.code
                if ev.code == "tool_response_timeout" and self.tool_policy.cancel(ev.code):
                    self._log("response_create_skipped", {"why": ev.code}, t_ns)
                self._session_update_error(ev, caused_by, t_ns)
            case SessionUpdated():
                self._session_updated(ev, t_ns)
            case _:
                pass
        self._turn_actions(actions, t_ns)
        return self._flush(t_ns)

    def _turn_actions(self, actions: list[Action], t_ns: int) -> None:
        for a in actions:
            match a:
                case BargeIn(index=i):
                    self._barge_in(i, t_ns)
                case TurnComplete(index=i):
                    self._flush_audio(t_ns)
                    self._queue.append(_Mark(tw.turn_end_mark(i), i))
                case TurnLogged(index=i):
                    self._assistant_stt_fallback(i)

    def _screen(self, ev: HydraEvent, t_ns: int) -> bool:
        """Whether ``ev`` goes on; drops what the caller must never hear.

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
                self._log("response_muted", {"response_id": rid, "turn": narr}, t_ns)
                self._emit(ToModel(ResponseCancel(response_id=rid)))
                return False
        if rid is not None and (rid in self._cut_responses or rid in self.muted_responses):
            if isinstance(ev, ResponseDone):
                return True  # its status and usage still count
            if isinstance(ev, ResponseOutputAudioDelta | ResponseOutputAudioTranscriptDelta):
                self.dropped_deltas += 1
            return False
        return True

    def _check_silent_model(self, ev: ResponseDone, t_ns: int) -> None:
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
                f"session.configure was {self.model.configure_bytes} bytes — Hydra drops all "
                "audio above ~32 KB (see run.json configure_budget)"
            )
            if self.session_updates:
                self.no_audio_warning += (
                    f"; a {self.session_updates[-1]['sent_bytes']}-byte session.update with "
                    "every tool followed (configure_mode=update: whether the ceiling applies to "
                    "it is unverified)"
                )
            self._log("model_sends_no_audio", {"warning": self.no_audio_warning}, t_ns)

    # ------------------------------------------------------------------ play-out
    def _enqueue_audio(
        self, response_id: str | None, pcm: npt.NDArray[np.int16], t_ns: int
    ) -> None:
        if self._down8 is None or self._to48 is None:
            self._set_rate(self.output_rate_hz)
        assert self._down8 is not None and self._to48 is not None
        if pcm.size == 0:
            return
        if self._buf_rid != response_id:
            self._flush_audio(t_ns)
            self._buf_rid = response_id
        p8, p48 = self._down8.process(pcm), self._to48.process(pcm)
        self.tracker.audio_received(response_id, int(p48.size), t_ns)
        self._buf8 = np.concatenate([self._buf8, p8])
        self._buf48 = np.concatenate([self._buf48, p48])
        while self._buf8.size >= _F8 and self._buf48.size >= _F48:
            self._queue_frame(
                _Frame(ulaw_encode(self._buf8[:_F8]), self._buf48[:_F48], response_id), t_ns
            )
            self._buf8, self._buf48 = self._buf8[_F8:], self._buf48[_F48:]

    def _queue_frame(self, frame: _Frame, t_ns: int) -> None:
        if self._idle and not any(isinstance(x, _Frame) for x in self._queue):
            # after an idle spell the grid restarts at the first frame's arrival
            self._next_frame_ns = max(self._next_frame_ns, t_ns)
        self._queue.append(frame)

    def _flush_audio(self, t_ns: int) -> None:
        """Pad the last partial frame of a response with silence and queue it."""
        if self._buf8.size or self._buf48.size:
            f8 = np.zeros(_F8, dtype=np.int16)
            f48 = np.zeros(_F48, dtype=np.int16)
            f8[: min(_F8, self._buf8.size)] = self._buf8[:_F8]
            f48[: min(_F48, self._buf48.size)] = self._buf48[:_F48]
            self._queue_frame(_Frame(ulaw_encode(f8), f48, self._buf_rid), t_ns)
        self._buf8 = np.zeros(0, dtype=np.int16)
        self._buf48 = np.zeros(0, dtype=np.int16)

    def _pace(self, t_ns: int) -> None:
        """The pacer: end marks as soon as they reach the head of the queue; one frame per
        slot of an absolute 20 ms grid (scheduling jitter does not accumulate; after a stall of
        more than 100 ms the grid restarts instead of bursting to catch up)."""
        while self._queue:
            item = self._queue[0]
            if isinstance(item, _Mark):
                self._queue.popleft()
                self._turn_actions(self.tracker.turn_played(item.turn_index, t_ns), t_ns)
                if self.caller_dialect != "eva":
                    self._emit(ToCaller(tw.mark_frame(self.stream_sid, item.name), "mark"))
                    self._emit(Log("twilio", "out", {"event": "mark", "name": item.name}, t_ns))
                continue
            if t_ns < self._next_frame_ns:
                return
            self._queue.popleft()
            self._emit(ToCaller(tw.media_frame(self.stream_sid, item.ulaw), "media"))
            self._last_played_ns = t_ns
            lateness_ms = (t_ns - self._next_frame_ns) / 1e6
            self._record_played(item, t_ns, lateness_ms=lateness_ms, after_idle=self._idle)
            self._idle = False
            self._next_frame_ns += _FRAME_NS
            if t_ns - self._next_frame_ns > _RESTART_GRID_NS:
                self._next_frame_ns = t_ns
        self._idle = True  # nothing left to play: the next frame starts the grid anew

    @property
    def _a48_shift_ns(self) -> int:
        """The 48 kHz assistant copy is delayed by its resampler less than the 8 kHz wire copy
        by its own: written this much later, both tracks line up with what the caller heard."""
        if self._down8 is None or self._to48 is None:
            return 0
        return round((self._down8.delay_ms - self._to48.delay_ms) * 1e6)

    def _record_played(
        self, frame: _Frame, t_ns: int, *, lateness_ms: float, after_idle: bool
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

    def _barge_in(self, index: int | None, t_ns: int, *, why: str = "speech_started") -> None:
        """Drop every unplayed frame, stop the turn's responses from playing any more, and tell
        the caller to flush what it buffered."""
        if index is not None:
            self._cut_responses.update(self.tracker.turns[index].response_ids)
            if self.tool_policy.cancel("barge_in"):
                self._log("response_create_skipped", {"why": "barge_in", "turn": index}, t_ns)
        elif self._audio_open is not None:
            self._cut_responses.add(self._audio_open)
        dropped = sum(isinstance(x, _Frame) for x in self._queue)
        self.placer.stats.dropped_after_clear += dropped
        self._queue = deque(x for x in self._queue if isinstance(x, _Mark))
        self._buf8 = np.zeros(0, dtype=np.int16)
        self._buf48 = np.zeros(0, dtype=np.int16)
        self._log("barge_in", {"turn": index, "dropped_frames": dropped, "why": why}, t_ns)
        if self.caller_dialect == "eva":
            return  # no clear: what it has buffered still plays, and stays on the recording
        self._erase_unheard(t_ns)
        self._emit(ToCaller(tw.clear_frame(self.stream_sid), "clear"))
        self._emit(Log("twilio", "out", {"event": "clear"}, t_ns))

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
    def _duplicate_call(self, call_id: str, t_ns: int) -> bool:
        """``call_id`` was answered (or is running) already: the tool runs once."""
        if not call_id or call_id not in self._calls_seen:
            return False
        self.duplicate_call_ids += 1
        self._log("duplicate_call_id", {"call_id": call_id}, t_ns)
        return True

    def _malformed_call(self, ev: UnknownEvent, t_ns: int) -> None:
        """A ``function_call_arguments.done`` with a field of the wrong type: the call is not
        run, but it is never silently dropped — it goes into the audit log and the model gets
        an error output (when the frame has a usable ``call_id`` to answer)."""
        raw = ev.raw
        call_id = _text(raw.get("call_id"))
        if not call_id:
            self._log("tool_call_unanswerable", {"why": ev.malformed, "call_id": None}, t_ns)
            return
        if self._duplicate_call(call_id, t_ns):
            return
        rid = _text(raw.get("response_id"))
        name = _text(raw.get("name")) or self.tracker.tool_call_name(call_id)
        self.tracker.call_args_done(rid, t_ns)
        self._calls_seen.add(call_id)
        self.tool_policy.call_done(rid, call_id, t_ns)
        self._call_names[call_id] = name
        self.tracker.tool_called(
            t_ns, name=name, params={"_raw": _short_json(raw.get("arguments"))}
        )
        result = {
            "status": "error",
            "error_type": "invalid_parameter",
            "message": f"the function call could not be read: {ev.malformed}",
        }
        self._tool_output(call_id, name, {}, result, t_ns)

    def _call_done(self, ev: FunctionCallArgumentsDone, t_ns: int) -> None:
        if self._duplicate_call(ev.call_id, t_ns):
            return
        self._calls_seen.add(ev.call_id)
        self.tool_policy.call_done(ev.response_id, ev.call_id, t_ns)
        name = ev.name or self.tracker.tool_call_name(ev.call_id)
        raw = ev.arguments or self.tracker.tool_call_args(ev.call_id)
        self._call_names[ev.call_id] = name
        try:
            params = json.loads(raw) if raw.strip() else {}
            if not isinstance(params, dict):
                raise ValueError("arguments are not a JSON object")
        except (ValueError, RecursionError) as exc:
            self.tracker.tool_called(t_ns, name=name, params={"_raw": raw})
            result = {
                "status": "error",
                "error_type": "invalid_parameter",
                "message": f"arguments are not valid JSON: {exc}",
            }
            self._tool_output(ev.call_id, name, {}, result, t_ns)
            return
        self.tracker.tool_called(t_ns, name=name, params=params)
        if not name:
            result = {
                "status": "error",
                "error_type": "unknown_tool",
                "message": "the call named no function",
            }
            self._tool_output(ev.call_id, name, params, result, t_ns)
            return
        self._emit(RunTool(ev.call_id, name, params))

    def tool_result(
        self, call_id: str, name: str, params: dict[str, Any], result: Any, t_ns: int
    ) -> list[Effect]:
        """The result of a :class:`RunTool` (an error result included)."""
        try:
            self._tool_output(call_id, name, params, result, t_ns)
            return self._flush(t_ns)
        except Exception as exc:
            return self._core_error("tool_result", exc, t_ns)

    def _tool_output(
        self, call_id: str, name: str, params: dict[str, Any], result: Any, t_ns: int
    ) -> None:
        self.tracker.tool_result(t_ns, name=name, params=params, result=result)
        self._emit(
            ToModel(
                ConversationItemCreate.function_call_output(call_id, dumps_result(result)),
                call_id=call_id,
            )
        )
        self.tracker.output_sent(t_ns)
        self.tool_policy.output_sent(call_id, t_ns)

    def _tool_tick(self, t_ns: int) -> None:
        """Send ``response.create`` when the tool policy says so."""
        if not self.tool_policy.due(t_ns):
            return
        req = self.tool_policy.sent(t_ns)
        self._emit(ToModel(ResponseCreate()))
        cur = self.tracker.current
        self._narration_for = cur.index if cur is not None else None
        self.tracker.response_create_sent(t_ns, wait_ms=req.wait_ms, reason=req.reason)
        self.tool_requests.append(
            {
                "turn": self._narration_for,
                "reason": req.reason,
                "wait_ms": round(req.wait_ms, 3),
                "calls": req.calls,
            }
        )

    # ------------------------------------------------------------------ time
    def advance(self, t_ns: int) -> list[Effect]:
        """Time has reached ``t_ns``: play what is due, fill silence, request narrations, end
        a call whose caller has gone idle."""
        try:
            return self._flush(t_ns)
        except Exception as exc:
            return self._core_error("advance", exc, t_ns)

    def next_deadline_ns(self) -> int | None:
        """When :meth:`advance` next has something to do (``None``: only an input can
        change that)."""
        if self._stopped:
            return None
        times: list[int] = []
        if self._queue:
            if isinstance(self._queue[0], _Mark):
                times.append(self.started_ns)  # at once
            else:
                times.append(self._next_frame_ns)
        if self.model_up:
            times.append(self.uplink.next_silence_ns())
        for at in (self.tool_policy.next_deadline_ns(), self._idle_deadline_ns()):
            if at is not None:
                times.append(at)
        return min(times) if times else None

    # ------------------------------------------------------------------ end
    def stop(self, reason: str, t_ns: int, *, error: str | None = None) -> list[Effect]:
        """End the call from outside (the shell failed, the run was cancelled)."""
        try:
            if error is not None and self.error is None:
                self.error = error
            self._end(reason, t_ns)
            out, self._out = self._out, []
            return out
        except Exception as exc:
            return self._core_error("stop", exc, t_ns, fatal=True)

    def finish(self, t_ns: int) -> list[Effect]:
        """The call is over and drained: close the turns (nothing is lost) and compute v2v.
        Returns the final log effects."""
        self.ended_ns = t_ns
        self._stopped = True
        self.ended_reason = self.ended_reason or "error"
        try:
            self._turn_actions(self.tracker.finish(t_ns), t_ns)
        except Exception as exc:  # the turns stay as they are; the outputs are still written
            self._core_error("finish", exc, t_ns, drain=False)
        try:
            compute_v2v(self.wire, self.tracker.turns)
        except Exception as exc:  # a metric must never cost the recordings
            self._log("v2v_failed", {"error": f"{type(exc).__name__}: {exc}"}, t_ns)
        out, self._out = self._out, []
        return [e for e in out if isinstance(e, Log)]

    def summary(self) -> dict[str, Any]:
        """The core's part of ``run.json["hydra"]``."""
        rows = self.tracker.turn_rows()
        return {
            "ended_reason": self.ended_reason,
            "error": self.error,
            "model": self.config.model,
            "session_id": self.model.session_id,
            "output_rate_hz": self.output_rate_hz,
            "configure_bytes": self.model.configure_bytes,
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
            "model_response_ms": [
                r["model_response_ms"] for r in rows if r["model_response_ms"] is not None
            ],
            "stt_failures": self.stt_failures,
            "errors": self.tracker.errors,
            "timeline_t0_epoch_ms": self.clock.epoch_ms(self.clock.t0_ns),
            "reconnects": self.reconnects,
            "reconnect_log": self.reconnect_log,
            "pacer": self.placer.stats.to_dict(),
            "tool_requests": self.tool_requests,
            "tool_outputs_lost": self.tool_outputs_lost,
            "muted_responses": self.muted_responses,
            "dropped_deltas_after_barge_in": self.dropped_deltas,
            "rejected_model_frames": self.rejected_model_frames,
            "rejected_caller_frames": self.rejected_caller_frames,
            "rejected": {
                "caller": dict(self.rejected_reasons["caller"]),
                "model": dict(self.rejected_reasons["model"]),
                "caller_unknown_events": dict(self.caller_unknown_events),
                "caller_speech_ahead_dropped_ms": round(self.uplink.ahead_speech_ms, 3),
                "stray_responses_done": self.stray_responses_done,
                "duplicate_call_ids": self.duplicate_call_ids,
            },
            "core_errors": self.core_errors,
            "core_error_reasons": self.core_error_reasons,
            "dropped_input_ms": self.uplink.dropped_ms,
            "caller_dialect": self.caller_dialect,
            "caller_stamps_ignored": self.caller_stamps_ignored,
            "caller_silence_ahead_dropped_ms": self.uplink.ahead_silence_ms,
            "silent_responses": self.silent_responses,
            "no_audio_warning": self.no_audio_warning,
            "session_update": self.session_update_summary(),
            "duration_s": ((self.ended_ns or self.started_ns) - self.started_ns) / 1e9,
        }


# ---------------------------------------------------------------------- helpers
def _depth(value: Any, limit: int = _LOGGED_DEPTH) -> int:
    """Nesting depth of a JSON value, counted without recursion and up to ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            d += 1
            deepest = max(deepest, d)
            if d > limit:
                return d
            stack.extend((c, d) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _head(msg: str | bytes, n: int = _HEAD_CHARS) -> str:
    """The start of a frame as text (a binary frame's bytes as escapes where not UTF-8)."""
    if isinstance(msg, str):
        return msg[:n]
    return bytes(msg[:n]).decode("utf-8", errors="backslashreplace")


def _text(v: Any) -> str:
    """An id field of a raw frame as text: strings and numbers; anything else ``""``."""
    if isinstance(v, str):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    return ""


def _short_json(v: Any, n: int = 500) -> str:
    """``v`` as (at most ``n`` characters of) JSON, for the audit log."""
    try:
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(v)
    return text if len(text) <= n else f"{text[:n]}… [{len(text)} chars]"
