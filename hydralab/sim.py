"""The virtual-time simulator: emulator, bridge and caller cores in one process, no sockets.

:class:`Simulation` runs the three sans-I/O cores of a call — the Hydra emulator's
:class:`~hydralab.emulator.core.EmulatorSession` (one per model connection), the bridge's
:class:`~hydralab.bridge_core.BridgeCore` and the scripted caller's
:class:`~hydralab.caller_core.CallerCore` — on one :class:`~hydralab.clock.ManualClock`, as a
discrete-event loop: a heap of deliveries (every frame on each of the four links, caller → bridge,
bridge → caller, bridge → model, model → bridge, after its one-way latency; links are FIFO, as a
TCP stream is) and timers, plus each core's ``next_deadline_ns()``. The clock jumps to the
earliest, that thing happens, and so on until the call is over. Nothing sleeps, so a 60 s call
takes a fraction of a second, and the same inputs and seed give the same run, byte for byte.

:func:`simulate_record` is :func:`hydralab.runner.run_record` in virtual time: the same
configuration (instructions, tools, configure budget), the same run directory (EVA's layout:
``result.json``, ``run.json``, ``scores.json``, ``audit_log.json``, ``events.jsonl``, the WAVs...)
written by the same code, and the same :class:`~hydralab.runner.RunResult`.

The shells are mirrored, not reused (they are asyncio): the orders and rules of
:class:`hydralab.bridge.BridgeSession` (caller frames are read only once the first model session
is configured; the connection retries of the reconnect policy; a new model session per
reconnect; the drain of tools and transcriptions after the call ends, then the sockets closed),
of :class:`hydralab.emulator.Emulator` (a session per connection, ``session_index`` counting
them, the script resumed after an injected ``internal_error``) and of
:class:`hydralab.caller.Caller`. The model session the bridge talks to is :class:`SimModelSession`,
which frames events exactly as :class:`hydralab.client.HydraClient` does (through the same helpers:
client ``event_id``s, handshake error classification, frame parsing and logging).

What the simulation adds on purpose (:class:`SimConfig`, all seeded): network latency and jitter,
late wake-ups of the bridge's pacer, stalls of the caller's sender, tool and STT latency.

Transcription: the shells call an async :class:`~hydralab.speech.stt.Transcriber`; here it is a
plain function ``(pcm, sample_rate_hz) -> Transcript`` (:data:`SyncTranscriber`) or
``"oracle"`` (the default): user utterance ``k`` is transcribed as the caller script's intended
line ``k``, so the audit log, the transcript and every text-based score see what the caller
meant, and the STT report says ``provider: "oracle"`` (its WER is 0 by construction: it measures
nothing). The oracle cannot hear the assistant: an assistant turn that came without transcript
deltas gets a failed transcription (``oracle_hears_no_audio``), never invented text. ``None``
runs without a transcriber (``no_transcriber`` placeholders), as ``run_record(transcriber=None)``.

Not simulated: the HTTP upgrade checks of the emulator (``strict_path``, ``expected_api_key``),
token minting, and a socket that fails to open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from hydralab.audio.perturb import LinePerturbation
from hydralab.bridge import BridgeConfig, model_summary, write_outputs
from hydralab.bridge_core import (
    BridgeCore,
    CoreOutcome,
    Effect,
    End,
    Log,
    ModelInfo,
    Reconnect,
    RunTool,
    ToCaller,
    ToModel,
    ToModelAudio,
    Transcribe,
)
from hydralab.caller import CallerConfig, CallerResult, PreparedAudio
from hydralab.caller_core import CallerCore, Hangup, NeedReply, SendFrame, prepare_audio
from hydralab.callers.personas import Persona
from hydralab.client import (
    ConfiguredSession,
    FrameLogger,
    HydraConfig,
    HydraConnectionError,
    HydraError,
    HydraHandshakeError,
    SentEventIds,
    elide_frame,
    encode_client_event,
    handshake_closed_error,
    handshake_error,
    parse_server_frame,
    rate_note,
)
from hydralab.clock import ManualClock
from hydralab.emulator import EmulatorConfig, EmulatorSession, SpeechCache, speak_texts
from hydralab.emulator.core import Close as EmuClose
from hydralab.emulator.core import Output as EmuOutput
from hydralab.listener import Hearing, Listener
from hydralab.model import RealtimeModelSession
from hydralab.policy import CallerPolicy, CallerPolicyName
from hydralab.protocol.budget import CONFIGURE_CEILING_BYTES, ConfigureMode
from hydralab.protocol.hydra import (
    DEFAULT_OUTPUT_RATE_HZ,
    ErrorEvent,
    HydraEvent,
    InputAudioBufferAppend,
    SessionConfigure,
    SessionConfigured,
    SessionCreated,
    WarningEvent,
)
from hydralab.reconnect import ReconnectPolicy
from hydralab.records import Record, load_record
from hydralab.rundir import RunWriter
from hydralab.runner import (
    RunResult,
    _plan_hydra,
    _run_id,
    _with_budget,
    _with_hydra,
    _write_results,
    caller_policy_meta,
    caller_settings,
    check_out_dir,
    claim_run_dir,
    make_listener,
    make_policy,
    open_run_writer,
    record_run_dir,
    release_run_dir,
    resolve_persona,
    tool_executor,
)
from hydralab.script import Script, script_from_record
from hydralab.secrets import redact
from hydralab.speech.stt import ERROR_CANCELLED, Transcript
from hydralab.speech.tts import Synthesizer
from hydralab.tools import BackendChoice, ToolExecutor

__all__ = [
    "Jitter",
    "SimConfig",
    "SimModelSession",
    "SimModelStats",
    "Simulation",
    "SyncTranscriber",
    "TranscriberInfo",
    "caller_audio_for",
    "choice_ms",
    "oracle_transcriber",
    "simulate_record",
    "speech_caches",
    "uniform_ms",
]

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
_SIM_BRIDGE_URL = "sim://bridge/ws"
_SIM_MODEL_URL = "sim://emulator/waves/v1/s2s"
_SAME_TIME_STEPS = 100_000  # wake-ups at one instant before a core is declared stuck

Jitter = Callable[[random.Random], float]
"""Extra milliseconds (``>= 0``; negative values count as 0), drawn from the seeded stream it is
given: :func:`uniform_ms`, :func:`choice_ms` or any function."""

SyncTranscriber = Callable[[npt.NDArray[np.int16], int], Transcript]
"""``(pcm, sample_rate_hz) -> Transcript``: int16 mono audio of one utterance (16 kHz for the
user, 48 kHz for an assistant turn's played audio). It should not raise (an exception becomes a
failed transcription)."""


@dataclass(frozen=True)
class uniform_ms:
    """A :data:`Jitter`: uniform in ``[lo, hi]`` ms."""

    lo: float
    hi: float

    def __call__(self, rng: random.Random) -> float:
        return rng.uniform(self.lo, self.hi)


@dataclass(frozen=True)
class choice_ms:
    """A :data:`Jitter`: one of ``values`` ms, equally likely (``choice_ms((0, 0, 25, 40))``)."""

    values: tuple[float, ...]

    def __call__(self, rng: random.Random) -> float:
        return rng.choice(self.values)


@dataclass(frozen=True)
class SimConfig:
    """What the simulation adds to the call: the network, scheduling noise, tool and STT time.

    Attributes:
        seed: Seeds every stream of the simulation (network jitter, pacer lateness, caller
            stalls, connection-retry jitter, client event-id prefixes, the stream SID). The
            emulator's own draws (latencies, ids) follow ``EmulatorConfig.seed``.
        caller_latency_ms: One-way latency of the caller ↔ bridge link.
        model_latency_ms: One-way latency of the bridge ↔ model link.
        network_jitter: Extra latency per frame on every link (a link stays FIFO: a frame never
            overtakes the one before it).
        pacer_lateness: How late the bridge wakes up for each of its deadlines (the play-out
            pacer's 20 ms grid, the silence fill, the tool policy), as on a busy machine.
        caller_stall: How late the caller wakes up for each of its deadlines (its 20 ms send
            grid and its turn logic).
        tool_latency_ms: Time a tool call takes: ms, or ``(name, params) -> ms``.
        stt_latency_ms: Time a transcription takes: ms, or ``(Transcribe effect) -> ms``.
        max_call_s: Virtual-time guard: a call still going after this long is stopped and
            reported as ``ended_reason="timeout"`` with an error (never as completed).
        epoch_ms: Wall-clock epoch ms of the clock's zero (where the recordings start);
            ``None``: the wall clock when the simulation is built. Give it for byte-identical
            reruns.
        setup_ms: From the clock's zero to the caller dialling (a real run spends this on
            starting the bridge and rendering the caller's lines). Keep it above one frame
            (20 ms): the caller's first frame carries the 20 ms before it, and audio before the
            recording's start cannot be placed (the user track would start late).
    """

    seed: int = 0
    caller_latency_ms: float = 1.0
    model_latency_ms: float = 1.0
    network_jitter: Jitter | None = None
    pacer_lateness: Jitter | None = None
    caller_stall: Jitter | None = None
    tool_latency_ms: float | Callable[[str, Mapping[str, Any]], float] = 0.0
    stt_latency_ms: float | Callable[[Transcribe], float] = 0.0
    max_call_s: float = 1800.0
    epoch_ms: int | None = None
    setup_ms: float = 100.0

    def __post_init__(self) -> None:
        if self.caller_latency_ms < 0 or self.model_latency_ms < 0 or self.setup_ms < 0:
            raise ValueError("link latencies and setup_ms must be >= 0 ms")
        if self.max_call_s <= 0:
            raise ValueError("max_call_s must be positive")

    def describe(self) -> dict[str, Any]:
        """The settings as JSON (``run.json["simulation"]``); a custom function shows as
        ``"custom"``."""

        def show(v: Any) -> Any:
            if v is None or isinstance(v, int | float):
                return v
            if isinstance(v, uniform_ms | choice_ms):
                return repr(v)
            return "custom"

        return {
            "seed": self.seed,
            "caller_latency_ms": self.caller_latency_ms,
            "model_latency_ms": self.model_latency_ms,
            "network_jitter": show(self.network_jitter),
            "pacer_lateness": show(self.pacer_lateness),
            "caller_stall": show(self.caller_stall),
            "tool_latency_ms": show(self.tool_latency_ms),
            "stt_latency_ms": show(self.stt_latency_ms),
            "max_call_s": self.max_call_s,
            "setup_ms": self.setup_ms,
        }


@dataclass(frozen=True)
class TranscriberInfo:
    """What the STT report (``run.json["stt"]``) says about the simulation's transcriber."""

    name: str
    model: str | None = None
    wire_language: str | None = None


# ---------------------------------------------------------------------- one-time rendering
_SPEECH: dict[tuple[int, str, int], SpeechCache] = {}
_CALLER_AUDIO: dict[tuple[Any, ...], PreparedAudio] = {}
_CALLER_AUDIO_KEPT = 64


def speech_caches(
    config: EmulatorConfig, *, script: Script | None = None, model: str | None = None
) -> dict[int, SpeechCache]:
    """The emulator's rendered speech, one cache per output rate of ``config``.

    Caches are shared per (rate, voice, seed) across simulations in this process, so each text
    is synthesized once. With ``script`` (and ``model``, the ``?model=`` tag), the script's
    texts are rendered now at that tag's rate (else each is rendered on its first use).
    """
    out: dict[int, SpeechCache] = {}
    for rate in sorted(config.output_rates_hz()):
        key = (rate, config.voice, config.seed)
        cache = _SPEECH.get(key)
        if cache is None:
            cache = _SPEECH[key] = SpeechCache(
                sample_rate_hz=rate, voice=config.voice, seed=config.seed
            )
        out[rate] = cache
    if script is not None:
        rate = config.rate_for_model(model or HydraConfig().model)
        out[rate].prime(speak_texts(script))
    return out


def _caller_synthesizer(config: CallerConfig) -> Synthesizer:
    """The caller's eSpeak NG voice (as :func:`caller_audio_for` renders the script's lines)."""
    return Synthesizer(voice=config.voice, rate_wpm=config.rate_wpm)


def caller_audio_for(script: Script, config: CallerConfig) -> PreparedAudio:
    """The caller's prepared lines for ``script`` (:func:`hydralab.caller_core.prepare_audio`
    with the caller's default eSpeak NG synthesizer), memoized per lines and voice settings."""
    key = (
        tuple(u.spoken for u in script.user_turns),
        config.voice,
        config.rate_wpm,
        config.noise_dbfs,
        config.seed,
        config.frame_ms,
        tuple(sorted(config.pause_ms.items())),
        config.line,
    )
    audio = _CALLER_AUDIO.get(key)
    if audio is None:
        audio = prepare_audio(script, config=config, synthesizer=_caller_synthesizer(config))
        while len(_CALLER_AUDIO) >= _CALLER_AUDIO_KEPT:
            _CALLER_AUDIO.pop(next(iter(_CALLER_AUDIO)))
        _CALLER_AUDIO[key] = audio
    return audio


def oracle_transcriber(script: Script) -> Callable[[Transcribe], Transcript]:
    """The ``"oracle"`` transcriber: user utterance ``k`` is the script's intended line ``k``;
    the assistant's audio is never transcribed (``oracle_hears_no_audio``)."""

    def transcribe(e: Transcribe) -> Transcript:
        audio_ms = e.pcm.size * 1000.0 / e.sample_rate_hz if e.sample_rate_hz else 0.0
        if e.role == "user" and 0 <= e.index < len(script.user_turns):
            text = script.user_turns[e.index].text
            return Transcript(text, ok=True, provider="oracle", audio_ms=audio_ms)
        why = "oracle_hears_no_audio" if e.role == "assistant" else "oracle_no_scripted_line"
        return Transcript("", ok=False, error=why, provider="oracle", audio_ms=audio_ms)

    return transcribe


# ---------------------------------------------------------------------- the model session
@dataclass
class SimModelStats:
    """The counters :class:`hydralab.client.HydraClient` keeps (``ModelStats``)."""

    frames_in: int = 0
    frames_out: int = 0
    audio_bytes_out: int = 0
    warnings: list[dict[str, Any]] = field(default_factory=list)
    connects: int = 0
    rejected_in: int = 0


class _Link:
    """One direction of one connection: latency + jitter, FIFO."""

    def __init__(self, latency_ms: float, jitter: Jitter | None, rng: random.Random) -> None:
        self._latency_ns = round(latency_ms * _NS_PER_MS)
        self._jitter = jitter
        self._rng = rng
        self._last = 0

    def arrival(self, t_ns: int) -> int:
        extra = 0
        if self._jitter is not None:
            extra = round(max(0.0, float(self._jitter(self._rng))) * _NS_PER_MS)
        at = max(t_ns + self._latency_ns + extra, self._last)
        self._last = at
        return at


_State = Literal["connecting", "handshake", "failing", "open", "closed"]


class SimModelSession(ConfiguredSession):
    """The bridge's side of one simulated model connection: what
    :class:`hydralab.client.HydraClient` would hold.

    It frames client events exactly as the client does (stamped ``event_id``s, the same JSON),
    parses the emulator's frames with the client's parser (a malformed frame goes on to the
    core as ``UnknownEvent.malformed``, which counts it), logs both ways to
    the frame logger, and keeps the properties :func:`hydralab.bridge.model_summary` reads.
    The :class:`Simulation` moves its frames and runs its handshake.

    Attributes:
        attempt: Connection attempt (0-based) of the connect this session belongs to.
        initial: The call's first connect (not a mid-call reconnect).
        emulator: The emulator session on the other end (once the upgrade arrived).
        state: ``connecting`` → ``handshake`` → ``open`` (or ``failing``) → ``closed``.
    """

    def __init__(
        self,
        config: HydraConfig,
        *,
        prefix: str,
        frame_logger: FrameLogger | None = None,
        attempt: int = 0,
        initial: bool = True,
    ) -> None:
        self.config = config
        self.attempt = attempt
        self.initial = initial
        self._ids = SentEventIds(prefix)
        self._log = frame_logger
        self.session_id: str | None = None
        self.configured: SessionConfigured | None = None
        self.output_rate_hz: int = DEFAULT_OUTPUT_RATE_HZ
        self.configure_bytes: int = 0
        self.stats = SimModelStats()
        self.notes: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.state: _State = "connecting"
        self.emulator: EmulatorSession | None = None
        self.backlog: list[HydraEvent] = []
        self.configure_sent = False
        self.pending_error: ErrorEvent | None = None  # server_full: waiting for its close
        self.remote_closed = False  # the server's close frame arrived
        self.local_closed = False  # the bridge closed it
        self.up: _Link | None = None
        self.down: _Link | None = None
        self.timer: Any = None  # the handshake's timeout (or the server_full wait)

    def __repr__(self) -> str:
        return f"SimModelSession(attempt={self.attempt}, state={self.state!r})"

    # ------------------------------------------------------------------ RealtimeModelSession
    def sent_type(self, event_id: str | None) -> str | None:
        """The type of the recent client frame with this ``event_id``."""
        return self._ids.sent_type(event_id)

    def model_info(self) -> ModelInfo:
        return ModelInfo(
            output_rate_hz=self.output_rate_hz,
            configure_bytes=self.configure_bytes,
            session_id=self.session_id,
        )

    # ------------------------------------------------------------------ framing
    @property
    def can_send(self) -> bool:
        return self.state != "connecting" and not (self.remote_closed or self.local_closed)

    def encode(self, event: HydraEvent, t_ns: int) -> str:
        """The text frame for ``event`` (stamped, counted, logged), as ``HydraClient.send``.

        Raises:
            HydraError: Audio before ``session.configured``.
            HydraConnectionError: The socket is closed (or not open yet).
        """
        if isinstance(event, InputAudioBufferAppend) and self.configured is None:
            raise HydraError("audio before session.configured would be dropped by Hydra")
        if self.state == "connecting":
            raise HydraConnectionError("not connected")
        if not self.can_send:
            code = self.close_code if self.close_code is not None else 1000
            raise HydraConnectionError(f"Hydra socket closed: {code} {self.close_reason or ''}")
        text, d = encode_client_event(self._ids.stamp(event))
        self._sent(text, d, t_ns)
        return text

    def encode_configure(self, t_ns: int) -> str | None:
        """The handshake's ``session.configure`` (once), its size recorded; ``None`` if the
        socket closed meanwhile (the client reads on: the close code tells why)."""
        configure = self._ids.stamp(SessionConfigure(session=self.config.session_payload()))
        text, d = encode_client_event(configure)
        self.configure_bytes = len(text.encode("utf-8"))
        self.configure_sent = True
        if not self.can_send:
            return None
        self._sent(text, d, t_ns)
        return text

    def _sent(self, text: str, d: dict[str, Any], t_ns: int) -> None:
        self.stats.frames_out += 1
        if self._log is not None:
            self._log("out", elide_frame(d), t_ns)

    def take(self, frame: str, t_ns: int) -> HydraEvent | None:
        """A frame read from the socket: counted, logged, parsed (``None``: unparseable)."""
        self.stats.frames_in += 1
        rx = parse_server_frame(frame)
        if rx.event is None:
            self.stats.rejected_in += 1
        if self._log is not None:
            self._log("in", rx.logged, t_ns)
        return rx.event


# ---------------------------------------------------------------------- the simulation
_CLOSE = object()  # the caller's close frame, on the caller → bridge link


class _Timer:
    """A delivery or a timer: ``fn(*args, t_ns)`` at ``t_ns`` (``cancelled``: skipped)."""

    __slots__ = ("args", "cancelled", "fn", "t_ns")

    def __init__(self, t_ns: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.t_ns = t_ns
        self.fn = fn
        self.args = args
        self.cancelled = False


class Simulation(CoreOutcome):
    """One call in virtual time: caller, bridge and emulator cores, no sockets, no asyncio.

    Drive it with :meth:`run` (or :meth:`step` for one event at a time) and read the cores,
    the emulator sessions and the effects log while it runs or afterwards.

    Args:
        script: The conversation: the caller speaks its user side, the emulator its assistant
            side.
        tools: Executes the model's tool calls (default: an empty airline DB).
        bridge_config: The bridge's settings; ``bridge_config.hydra`` is the model's
            configuration (model tag, session).
        caller_config: The caller's timing, voice and barge-ins.
        emulator_config: The emulator's behaviour (default: the ``live`` profile).
        sim: Latency, jitter, seed and guards (:class:`SimConfig`).
        transcriber: ``"oracle"`` (default), a :data:`SyncTranscriber`, or ``None``.
        caller_audio: The caller's prepared lines (default: :func:`caller_audio_for`).
        speech: The emulator's rendered speech, one cache or one per rate (default:
            :func:`speech_caches`).
        run_dir: Where the bridge writes ``events.jsonl``, the audit log, the recordings...
            (``None``: nothing is written; the effects log still has everything).
        model_name: Name of the model in the endpoint row of ``events.jsonl``.

    Attributes:
        clock: The virtual clock.
        core: The bridge core.
        caller: The caller core.
        emulator_sessions: One per model connection, in order.
        clients: The bridge's model sessions (one per connection attempt), in order.
        client: The model session in use (the last one that connected; the first one before).
        effects: Every effect of the bridge core, with its time.
        connect_attempts: Attempts of the last successful connect (as ``BridgeSession``).
        caller_result: The caller's result once the call is over.
        timed_out: The ``max_call_s`` guard stopped the call.
        wall_s: Wall time :meth:`run` took.
    """

    def __init__(
        self,
        script: Script,
        *,
        tools: ToolExecutor | None = None,
        bridge_config: BridgeConfig | None = None,
        caller_config: CallerConfig | None = None,
        emulator_config: EmulatorConfig | None = None,
        sim: SimConfig | None = None,
        transcriber: SyncTranscriber | Literal["oracle"] | None = "oracle",
        caller_audio: PreparedAudio | None = None,
        speech: SpeechCache | Mapping[int, SpeechCache] | None = None,
        run_dir: Path | str | None = None,
        model_name: str = "emulator",
        listener: Listener | None = None,
    ) -> None:
        self.script = script
        self.listener = listener
        self.tools = tools if tools is not None else ToolExecutor({})
        self.config = bridge_config or BridgeConfig(hydra=HydraConfig(url=_SIM_MODEL_URL))
        self.caller_config = caller_config or CallerConfig()
        self.emulator_config = emulator_config or EmulatorConfig.live()
        self.sim = sim or SimConfig()
        seed = self.sim.seed
        self._rng_net = random.Random(f"{seed}:net")
        self._rng_pacer = random.Random(f"{seed}:pacer")
        self._rng_caller = random.Random(f"{seed}:caller")
        self._rng_connect = random.Random(f"{seed}:connect")
        self._rng_ids = random.Random(f"{seed}:ids")
        epoch_ms = self.sim.epoch_ms if self.sim.epoch_ms is not None else time.time_ns() // 10**6
        self.clock = ManualClock(0, epoch_ms_at_start=epoch_ms)
        self._link_cb = _Link(self.sim.caller_latency_ms, self.sim.network_jitter, self._rng_net)
        self._link_bc = _Link(self.sim.caller_latency_ms, self.sim.network_jitter, self._rng_net)
        # The caller dials ``setup_ms`` after the clock's zero (where the recordings start); the
        # bridge's session (its core, its run directory) starts when the upgrade arrives.
        t0 = self.clock.set(self._link_cb.arrival(round(self.sim.setup_ms * _NS_PER_MS)))

        # transcription
        self._stt_fn: Callable[[Transcribe], Transcript] | None
        if isinstance(transcriber, str):  # "oracle"
            self._stt_fn = oracle_transcriber(script)
            self.transcriber: TranscriberInfo | None = TranscriberInfo("oracle")
        elif transcriber is None:
            self._stt_fn, self.transcriber = None, None
        else:
            fn = transcriber
            self._stt_fn = lambda e: fn(e.pcm, e.sample_rate_hz)
            name = getattr(fn, "name", None) or getattr(fn, "__qualname__", "custom")
            self.transcriber = TranscriberInfo(
                str(name),
                model=getattr(fn, "model", None),
                wire_language=getattr(fn, "wire_language", None),
            )

        # the emulator's speech, per output rate
        if isinstance(speech, SpeechCache):
            self._speech: dict[int, SpeechCache] = {speech.sample_rate_hz: speech}
        elif speech is not None:
            self._speech = dict(speech)
        else:
            self._speech = speech_caches(
                self.emulator_config, script=script, model=self.config.hydra.model
            )
        for cache in self._speech.values():
            if (cache.voice, cache.seed) != (self.emulator_config.voice, self.emulator_config.seed):
                raise ValueError("speech cache voice/seed differ from the emulator config's")

        # the run directory (events.jsonl from the first row on)
        self.writer: RunWriter | None = None
        if run_dir is not None:
            self.writer = open_run_writer(
                Path(run_dir), self.clock, model=model_name, hydra=self.config.hydra
            )

        # the bridge
        self.core = BridgeCore(
            self.config.core_config(transcribe=self._stt_fn is not None),
            clock=self.clock,
            start_ns=t0,
        )
        self.reconnect_policy = ReconnectPolicy(
            backoff_s=self.config.connect_backoff_s,
            max_reconnects=self.config.max_reconnects,
            close_codes=self.config.reconnect_close_codes,
        )
        self.effects: list[tuple[int, Effect]] = []
        self.clients: list[SimModelSession] = []
        self.client = self._new_client(self.config.hydra.session_payload(), 0, initial=True)
        self.connect_attempts = 0
        self._reconnect: Reconnect | None = None
        self._holding = True  # caller frames wait until the first model session is configured
        self._held: list[object] = []
        self._caller_reader_done = False
        self._caller_close_rcvd = False  # the bridge received the caller's close
        self._bridge_closed_caller = False
        self._pending_tools: dict[int, RunTool] = {}
        self._pending_stt: dict[int, Transcribe] = {}
        self._job_timers: dict[int, _Timer] = {}
        self._job = 0
        self._draining = False
        self._drain_phase = ""
        self._drain_deadline = 0
        self._drain_timer: _Timer | None = None
        self._closing = False
        self.bridge_finished = False

        # the emulator
        self.emulator_sessions: list[EmulatorSession] = []
        self._resume_turn: int | None = None
        self._resume_published: set[int] = set()
        self._emu_clients: list[SimModelSession] = []
        self._emu_wake: dict[int, int | None] = {}
        self._emu_dirty: set[int] = set()

        # the caller
        caller_script = script if listener is None else dataclasses.replace(script, user_turns=())
        audio = caller_audio or caller_audio_for(caller_script, self.caller_config)
        sid = f"MZ{self._rng_ids.getrandbits(128):032x}"
        self.caller = CallerCore(
            caller_script,
            config=self.caller_config,
            audio=audio,
            stream_sid=sid,
            epoch=self.clock,
            listening=listener is not None,
        )
        self.caller_result: CallerResult | None = None

        # the loop
        self._heap: list[tuple[int, int, _Timer]] = []  # (t_ns, seq, timer): FIFO at one time
        self._seq = 0
        self._bridge_wake: tuple[int, int] | None = None  # (deadline, wake-up time)
        self._bridge_dirty = True
        self._caller_wake: tuple[int, int] | None = None
        self._caller_dirty = True
        self._limit_ns = self.clock.t0_ns + round(self.sim.max_call_s * _NS_PER_S)
        self._same_t = (t0, 0)
        self.timed_out = False
        self.done = False
        self.steps = 0
        self.wall_s = 0.0
        self.started_ns = t0
        self.ended_ns: int | None = None

        # t0: the caller dials; the bridge connects the model (BridgeSession._run)
        self._connect(self.client, t0)
        self._at(self._link_bc.arrival(t0), self._caller_start)  # the upgrade's answer

    # ------------------------------------------------------------------ what runner reads
    @property
    def caller_finished(self) -> bool:
        return self.caller_result is not None

    def summary(self) -> dict[str, Any]:
        """``run.json["hydra"]``: as :meth:`hydralab.bridge.BridgeSession.summary`."""
        # model_summary reads only the session's properties, which SimModelSession has
        client = cast(RealtimeModelSession, self.client)
        out = model_summary(self.core, client, self.config.hydra.redacted_url())
        out["connect_attempts"] = self.connect_attempts
        return out

    # ------------------------------------------------------------------ the loop
    def _at(self, t_ns: int, fn: Callable[..., None], *args: Any) -> _Timer:
        """At ``t_ns``: ``fn(*args, t_ns)``."""
        self._seq += 1
        timer = _Timer(t_ns, fn, args)
        heapq.heappush(self._heap, (t_ns, self._seq, timer))
        return timer

    def _next_timer(self) -> _Timer | None:
        """The earliest pending timer (cancelled ones are dropped on the way)."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def _wake(
        self,
        deadline: int | None,
        cached: tuple[int, int] | None,
        jitter: Jitter | None,
        rng: random.Random,
    ) -> tuple[int, int] | None:
        if deadline is None:
            return None
        if cached is not None and cached[0] == deadline:
            return cached
        at = max(deadline, self.clock.now_ns())
        if jitter is not None:
            at += round(max(0.0, float(jitter(rng))) * _NS_PER_MS)
        return deadline, at

    def run(self) -> Simulation:
        """Run the call to its end (or the ``max_call_s`` guard)."""
        start = time.perf_counter()
        while self.step():
            pass
        self.wall_s += time.perf_counter() - start
        return self

    def step(self) -> bool:
        """Advance to the next thing that happens and do it; ``False`` once the call is over."""
        if self.done:
            return False
        self.steps += 1
        nxt = self._next_timer()
        if self.bridge_finished and self.caller_finished:
            # the call is over: only what is still on the wire (closes reaching the emulator)
            if nxt is None:
                self._finalize()
                return False
            heapq.heappop(self._heap)
            nxt.fn(*nxt.args, self.clock.set(max(nxt.t_ns, self.clock.now_ns())))
            return True
        # what is due next: a delivery/timer, an emulator session, the bridge, the caller
        best_t: int | None = nxt.t_ns if nxt is not None else None
        best: Any = None
        if self._emu_dirty:
            for i in self._emu_dirty:
                sess = self.emulator_sessions[i]
                d = sess.next_deadline_ns() if sess.closed_reason is None else None
                self._emu_wake[i] = None if d is None else max(d, self.clock.now_ns())
            self._emu_dirty.clear()
        for i, w in self._emu_wake.items():
            if w is not None and (best_t is None or w < best_t):
                best_t, best = w, i
        if self._bridge_dirty:
            d = None if self._holding else self.core.next_deadline_ns()
            self._bridge_wake = self._wake(
                d, self._bridge_wake, self.sim.pacer_lateness, self._rng_pacer
            )
            self._bridge_dirty = False
        if self._bridge_wake is not None and (best_t is None or self._bridge_wake[1] < best_t):
            best_t, best = self._bridge_wake[1], "bridge"
        if self._caller_dirty:
            d = None if self.caller_finished else self.caller.next_deadline_ns()
            self._caller_wake = self._wake(
                d, self._caller_wake, self.sim.caller_stall, self._rng_caller
            )
            self._caller_dirty = False
        if self._caller_wake is not None and (best_t is None or self._caller_wake[1] < best_t):
            best_t, best = self._caller_wake[1], "caller"
        if best_t is None:
            self._finalize()
            return False
        if best_t > self._limit_ns:
            self._time_limit(self._limit_ns)
            return not self.done
        self._check_progress(best_t, best)
        t = self.clock.set(max(best_t, self.clock.now_ns()))
        if best is None:
            assert nxt is not None
            heapq.heappop(self._heap)
            nxt.fn(*nxt.args, t)
        elif best == "bridge":
            self._bridge_wake = None
            self._apply(self.core.advance(t), t)
        elif best == "caller":
            self._caller_wake = None
            self._caller_emit(self.caller.advance(t), t)
        else:
            self._emu_wake[best] = None
            client = self._emu_clients[best]
            self._emu_emit(client, self.emulator_sessions[best].advance(now_ns=t), t)
        return True

    def _check_progress(self, t_ns: int, what: Any) -> None:
        """A core that keeps asking for a wake-up at one instant without moving on is a bug."""
        if what is None:
            return
        if self._same_t[0] != t_ns:
            self._same_t = (t_ns, 0)
            return
        n = self._same_t[1] + 1
        self._same_t = (t_ns, n)
        if n > _SAME_TIME_STEPS:
            raise RuntimeError(f"simulation stuck at t={t_ns} ns: {what!r} keeps waking up")

    def _finalize(self) -> None:
        t = self.clock.now_ns()
        if not self.core.stopped:  # nothing left to happen, yet the call never ended: say so
            why = "simulation stalled: no core had anything left to do"
            self._apply(self.core.stop("error", t, error=why), t)
        for sess in self.emulator_sessions:
            if sess.closed_reason is None:
                sess.finish(now_ns=t, reason="simulation ended")
        if not self.bridge_finished:
            self._finish_bridge(t)
        if self.caller_result is None:
            self._finish_caller(t)
        self._heap.clear()
        self.done = True

    def _time_limit(self, t_ns: int) -> None:
        """The guard: stop everything now; the call ends as timed out, with an error."""
        t = self.clock.set(max(t_ns, self.clock.now_ns()))
        self.timed_out = True
        why = f"simulated call did not end within max_call_s={self.sim.max_call_s:g} s"
        self._closing = True  # no drain: pending tools are dropped, transcriptions cancelled
        self._apply(self.core.stop("timeout", t, error=why), t)
        for job, e in sorted(self._pending_stt.items()):
            self._stt_done(job, e, t, cancelled=True)
        self._abandon_tools()
        if self.caller_result is None:
            self._finish_caller(t, error=f"TimeoutError: {why}")
        self._finalize()

    # ------------------------------------------------------------------ bridge effects
    def _apply(self, effects: list[Effect], t_ns: int) -> None:
        """Carry out the bridge core's effects, in order (``BridgeSession._apply``)."""
        self._bridge_dirty = True
        for e in effects:
            self.effects.append((t_ns, e))
            match e:
                case ToCaller():
                    self._send_caller(e, t_ns)
                case ToModel() | ToModelAudio():
                    self._send_model(e, t_ns)
                case Log(source=src, direction=d, data=data, t_ns=t):
                    if self.writer is not None:
                        self.writer.log(src, d, data, t)
                case RunTool():
                    self._job += 1
                    self._pending_tools[self._job] = e
                    at = t_ns + self._tool_latency(e)
                    self._job_timers[self._job] = self._at(at, self._tool_done, self._job)
                case Transcribe():
                    self._job += 1
                    self._pending_stt[self._job] = e
                    at = t_ns + self._stt_latency(e)
                    self._job_timers[self._job] = self._at(at, self._stt_result, self._job, e)
                case Reconnect():
                    self._reconnect = e
                case End():
                    self._on_end(t_ns)

    def _tool_latency(self, e: RunTool) -> int:
        lat = self.sim.tool_latency_ms
        ms = lat(e.name, e.params) if callable(lat) else lat
        return round(max(0.0, ms) * _NS_PER_MS)

    def _stt_latency(self, e: Transcribe) -> int:
        lat = self.sim.stt_latency_ms
        ms = lat(e) if callable(lat) else lat
        return round(max(0.0, ms) * _NS_PER_MS)

    def _abandon_tools(self) -> None:
        for job in self._pending_tools:
            self._cancel(self._job_timers.pop(job, None))
        self._pending_tools.clear()

    def _tool_done(self, job: int, t_ns: int) -> None:
        self._job_timers.pop(job, None)
        e = self._pending_tools.pop(job, None)
        if e is None:  # abandoned by the drain's bound
            return
        try:
            result: Any = self.tools.execute(e.name, e.params)
        except Exception as exc:  # a tool that raised: the model gets an error, not silence
            result = {
                "status": "error",
                "error_type": "tool_failed",
                "message": redact(f"{type(exc).__name__}: {exc}"),
            }
        self._apply(self.core.tool_result(e.call_id, e.name, e.params, result, t_ns), t_ns)
        self._check_drain(t_ns)

    def _stt_result(self, job: int, e: Transcribe, t_ns: int) -> None:
        self._stt_done(job, e, t_ns, cancelled=False)

    def _stt_done(self, job: int, e: Transcribe, t_ns: int, *, cancelled: bool) -> None:
        self._cancel(self._job_timers.pop(job, None))  # done early when cancelled
        if self._pending_stt.pop(job, None) is None:
            return
        name = self.transcriber.name if self.transcriber is not None else "?"
        if cancelled:  # the drain's bound ran out: a placeholder, never a gap
            tr = Transcript("", ok=False, error=ERROR_CANCELLED, provider=name)
        else:
            assert self._stt_fn is not None
            try:
                tr = self._stt_fn(e)
            except Exception as exc:  # a transcriber that broke the never-raises rule
                tr = Transcript(
                    "", ok=False, error=redact(f"{type(exc).__name__}: {exc}"), provider="?"
                )
        self._apply(self.core.transcript(e.role, e.index, tr, t_ns), t_ns)
        if not cancelled:
            self._check_drain(t_ns)

    # ------------------------------------------------------------------ the end of the call
    def _on_end(self, t_ns: int) -> None:
        """``End``: stop intake, let tools then transcriptions finish (bounded), close the
        model's socket, then the caller's, then finish (``BridgeSession._run``)."""
        if self._draining:
            return
        self._draining = True
        if self._closing:  # the time limit: no drain
            return
        self._drain_phase = "tools"
        self._drain_deadline = t_ns + round(self.config.tool_timeout_s * _NS_PER_S)
        if self._pending_tools:
            self._drain_timer = self._at(self._drain_deadline, self._check_drain)
        self._check_drain(t_ns)

    def _check_drain(self, t_ns: int) -> None:
        if not self._draining or self._closing:
            return
        if self._drain_phase == "tools":
            if self._pending_tools and t_ns < self._drain_deadline:
                return
            self._abandon_tools()  # past the bound: never reported, as in the shell
            self._cancel(self._drain_timer)
            self._drain_phase = "stt"
            self._drain_deadline = t_ns + round(self.config.stt_timeout_s * _NS_PER_S)
            if self._pending_stt:
                self._drain_timer = self._at(self._drain_deadline, self._check_drain)
        if self._drain_phase == "stt":
            if self._pending_stt and t_ns < self._drain_deadline:
                return
            self._cancel(self._drain_timer)
            for job, e in sorted(self._pending_stt.items()):
                self._stt_done(job, e, t_ns, cancelled=True)
            self._drain_phase = "close"
            self._closing = True
            self._close_sockets(t_ns)

    @staticmethod
    def _cancel(timer: _Timer | None) -> None:
        if timer is not None:
            timer.cancelled = True

    def _close_sockets(self, t_ns: int) -> None:
        done = t_ns
        for c in self.clients:  # the session in use, and one still in its handshake
            if c.state in ("handshake", "failing", "open", "connecting"):
                c.state = "closed"
                self._cancel(c.timer)
                done = max(done, self._close_model(c, t_ns))
        self._at(done, self._close_caller)

    def _close_caller(self, t_ns: int) -> None:
        if self._caller_close_rcvd or self._bridge_closed_caller:
            self._finish_bridge(t_ns)
            return
        self._bridge_closed_caller = True
        at = self._link_bc.arrival(t_ns)
        self._at(at, self._caller_disconnected)
        self._at(self._link_cb.arrival(at), self._finish_bridge)  # the close handshake's reply

    def _finish_bridge(self, t_ns: int) -> None:
        if self.bridge_finished:
            return
        self.bridge_finished = True
        self.ended_ns = t_ns
        for c in self.clients:
            if c.state != "closed":
                c.state = "closed"
                self._cancel(c.timer)
                self._close_model(c, t_ns)
        self._apply(self.core.finish(t_ns), t_ns)
        if self.writer is not None:
            write_outputs(self.core, self.writer, self.tools)

    # ------------------------------------------------------------------ caller side
    def _caller_start(self, t_ns: int) -> None:
        self._caller_emit(self.caller.start(t_ns, server_url=_SIM_BRIDGE_URL), t_ns)

    def _caller_emit(self, outs: list[SendFrame | Hangup | NeedReply], t_ns: int) -> None:
        self._caller_dirty = True
        for o in outs:
            if isinstance(o, NeedReply):
                self._caller_replies(o, t_ns)
            elif isinstance(o, SendFrame):
                text = o.text
                self._at(self._link_cb.arrival(t_ns), self._bridge_reads, text)
            else:  # Hangup: close; done when the bridge's close reply is back
                at = self._link_cb.arrival(t_ns)
                self._at(at, self._bridge_reads, _CLOSE)
                self._at(self._link_bc.arrival(at), self._finish_caller)
                return

    def _caller_replies(self, need: NeedReply, t_ns: int) -> None:
        """A listening caller's next line, decided and synthesized at once (virtual time)."""
        assert self.listener is not None
        try:
            ready = self.listener.prepare(
                need, config=self.caller_config, synthesizer=_caller_synthesizer(self.caller_config)
            )
        except Exception as exc:  # the policy could not go on: the call ends with the reason
            self._finish_caller(t_ns, error=f"{type(exc).__name__}: {exc}")
            return
        self._caller_emit(
            self.caller.reply(
                t_ns,
                text=ready.reply.text,
                spoken=ready.spoken,
                utterance=ready.utterance,
                end_call=ready.reply.end_call,
                not_before_ns=t_ns + round(ready.think_ms * _NS_PER_MS),
                heard_text=ready.heard,
                reason=ready.reply.reason,
            ),
            t_ns,
        )

    def native_text(self, index: int) -> str:
        """What the bridge knows assistant turn ``index`` said, as far as it played (a
        listening caller's ``hearing="native"``)."""
        turns = self.core.tracker.turns
        return turns[index].heard_text if 0 <= index < len(turns) else ""

    def _caller_receives(self, frame: str, t_ns: int) -> None:
        if self.caller_result is not None:
            return
        self._caller_emit(self.caller.receive(frame, now_ns=t_ns), t_ns)

    def _caller_disconnected(self, t_ns: int) -> None:
        """The bridge closed the caller's socket."""
        if self.caller_result is None:
            self._finish_caller(t_ns)

    def _finish_caller(self, t_ns: int, *, error: str | None = None) -> None:
        if self.caller_result is not None:
            return
        self.caller.finish(t_ns, error=error)
        self.caller_result = self.caller.result()
        self._caller_dirty = True

    def _bridge_reads(self, item: object, t_ns: int) -> None:
        """A frame (or the close) from the caller reaches the bridge."""
        if item is _CLOSE:
            self._caller_close_rcvd = True
        if self._holding:
            self._held.append(item)
            return
        if self._caller_reader_done:
            return
        if item is _CLOSE:
            self._caller_reader_done = True
            self._apply(self.core.caller_closed(t_ns), t_ns)
            return
        assert isinstance(item, str)
        self._apply(self.core.caller_frame(item, t_ns), t_ns)
        if self.core.stopped:
            self._caller_reader_done = True

    def _send_caller(self, e: ToCaller, t_ns: int) -> None:
        if self._caller_close_rcvd or self._bridge_closed_caller:
            self._apply(self.core.caller_closed(t_ns), t_ns)
            return
        frame = e.frame
        self._at(self._link_bc.arrival(t_ns), self._caller_receives, frame)

    # ------------------------------------------------------------------ model connection
    def _new_client(
        self, session: dict[str, Any], attempt: int, *, initial: bool
    ) -> SimModelSession:
        hydra = dataclasses.replace(self.config.hydra, session=session)
        logger = self.writer.hydra_frame if self.writer is not None else None
        c = SimModelSession(
            hydra,
            prefix=f"{self._rng_ids.getrandbits(24):06x}",
            frame_logger=logger,
            attempt=attempt,
            initial=initial,
        )
        c.up = _Link(self.sim.model_latency_ms, self.sim.network_jitter, self._rng_net)
        c.down = _Link(self.sim.model_latency_ms, self.sim.network_jitter, self._rng_net)
        self.clients.append(c)
        return c

    def _connect(self, client: SimModelSession, t_ns: int) -> None:
        """One connection attempt: the upgrade reaches the emulator one latency later; the
        handshake's clock starts once the socket is open (``HydraClient.connect``)."""
        client.stats.connects += 1
        assert client.up is not None and client.down is not None
        at = client.up.arrival(t_ns)
        self._at(at, self._emulator_accepts, client)
        opened = client.down.arrival(at)
        self._at(opened, self._client_opened, client)

    def _client_opened(self, client: SimModelSession, t_ns: int) -> None:
        if client.state != "connecting":
            return
        client.state = "handshake"
        limit = t_ns + round(client.config.handshake_timeout_s * _NS_PER_S)
        client.timer = self._at(limit, self._handshake_timeout, client)

    def _handshake_timeout(self, client: SimModelSession, t_ns: int) -> None:
        if client.state in ("handshake", "failing"):
            timeout = client.config.handshake_timeout_s
            self._connect_failed(
                client, HydraHandshakeError(f"no session.configured within {timeout:g} s"), t_ns
            )

    def _emulator_accepts(self, client: SimModelSession, t_ns: int) -> None:
        """``Emulator._handler``: a new session for the connection."""
        if client.local_closed:
            return
        cfg = self.emulator_config
        model = client.config.model
        rate = cfg.rate_for_model(model)
        speech = self._speech.get(rate)
        if speech is None:
            speech = self._speech[rate] = speech_caches(cfg)[rate]
        session = EmulatorSession(
            self.script,
            config=cfg,
            speech=speech,
            model=model,
            session_index=len(self.emulator_sessions),
            resume_turn=self._resume_turn,
            # a resumed conversation keeps the trace ids it learned (the DB still has them)
            id_chain=(
                self.emulator_sessions[-1].id_chain
                if self._resume_turn is not None and self.emulator_sessions
                else None
            ),
        )
        self._resume_turn = None
        self.emulator_sessions.append(session)
        self._emu_clients.append(client)
        client.emulator = session
        self._emu_emit(client, session.open(now_ns=t_ns), t_ns)

    def _emu_emit(self, client: SimModelSession, outs: list[EmuOutput], t_ns: int) -> None:
        """The emulator session's outputs go on the wire (its writer task)."""
        session = client.emulator
        assert session is not None and client.down is not None
        idx = session.session_index
        self._emu_dirty.add(idx)
        for o in outs:
            if isinstance(o, EmuClose):
                at = client.down.arrival(t_ns)
                self._at(at, self._model_close_arrives, client, o.code, o.reason)
                session.finish(now_ns=t_ns, reason=f"closed by emulator ({o.code} {o.reason})")
                break
            session.sent(o, t_ns=t_ns)
            self._at(client.down.arrival(t_ns), self._model_frame, client, o.text)
        if session.internal_error_sent and idx not in self._resume_published:
            # published before the error is even delivered, so a fast reconnect resumes
            self._resume_published.add(idx)
            cfg = self.emulator_config
            if cfg.faults.resume_after_internal_error and cfg.resume != "never":
                self._resume_turn = session.next_speech_turn

    def _emulator_receives(self, client: SimModelSession, text: str, t_ns: int) -> None:
        session = client.emulator
        if session is None or session.closed_reason is not None:
            return
        self._emu_emit(client, session.receive(text, now_ns=t_ns), t_ns)

    def _emulator_client_closed(self, client: SimModelSession, t_ns: int) -> None:
        session = client.emulator
        if session is not None and session.closed_reason is None:
            session.finish(now_ns=t_ns, reason="client closed (1000)")
            self._emu_dirty.add(session.session_index)

    def _close_model(self, client: SimModelSession, t_ns: int) -> int:
        """The bridge closes a model socket (close 1000); returns when the close handshake is
        done."""
        if client.local_closed or client.remote_closed:
            client.local_closed = True
            return t_ns
        client.local_closed = True
        assert client.up is not None and client.down is not None
        at = client.up.arrival(t_ns)
        self._at(at, self._emulator_client_closed, client)
        back = client.down.arrival(at)
        self._at(back, self._close_reply, client)
        return back

    def _close_reply(self, client: SimModelSession, t_ns: int) -> None:
        if client.close_code is None:
            client.close_code, client.close_reason = 1000, ""

    def _send_model(self, e: ToModel | ToModelAudio, t_ns: int) -> None:
        """``BridgeSession._model_writer``: to the session in use; a failed send goes back to
        the core."""
        client = self.client
        try:
            if isinstance(e, ToModelAudio):
                text = client.encode(InputAudioBufferAppend.from_pcm(e.pcm16k), t_ns)
                client.stats.audio_bytes_out += int(e.pcm16k.size) * 2
            else:
                text = client.encode(e.event, t_ns)
        except HydraError as exc:
            self._apply(self.core.model_send_failed(e, str(exc), t_ns), t_ns)
            return
        assert client.up is not None
        self._at(client.up.arrival(t_ns), self._emulator_receives, client, text)

    def _model_frame(self, client: SimModelSession, frame: str, t_ns: int) -> None:
        """A frame from the emulator reaches the bridge."""
        if client.state == "handshake" or client.state == "failing":
            ev = client.take(frame, t_ns)
            if ev is not None and client.state == "handshake":
                self._handshake_event(client, ev, t_ns)
            return
        if client.state != "open" or client is not self.client or self.core.stopped:
            return  # nobody reads this socket any more
        ev = client.take(frame, t_ns)
        if ev is not None:
            self._model_event(client, ev, t_ns)

    def _model_event(self, client: SimModelSession, ev: HydraEvent, t_ns: int) -> None:
        caused_by = getattr(ev, "caused_by", None)
        by = client.sent_type(caused_by) if isinstance(caused_by, str) else None
        self._apply(self.core.model_event(ev, t_ns, caused_by=by), t_ns)

    def _handshake_event(self, client: SimModelSession, ev: HydraEvent, t_ns: int) -> None:
        """``HydraClient._handshake``, one event at a time."""
        match ev:
            case WarningEvent():
                client.stats.warnings.append(ev.to_dict())
            case ErrorEvent() if ev.code == "server_full":
                # the documented close 1013 follows: read until it comes (at most 1 s)
                client.state = "failing"
                client.pending_error = ev
                self._cancel(client.timer)
                client.timer = self._at(t_ns + _NS_PER_S, self._server_full_wait_over, client)
            case ErrorEvent():
                err = handshake_error(ev, client.config, close_code=client.close_code)
                self._connect_failed(client, err, t_ns)
            case SessionCreated():
                client.session_id = ev.session_id
                if not client.configure_sent:
                    text = client.encode_configure(t_ns)
                    if text is not None:
                        assert client.up is not None
                        self._at(client.up.arrival(t_ns), self._emulator_receives, client, text)
            case SessionConfigured():
                client.configured = ev
                client.output_rate_hz = ev.output_rate_hz
                note = rate_note(ev)
                if note is not None:
                    client.notes.append(note)
                self._connected(client, t_ns)
            case _:
                client.backlog.append(ev)

    def _server_full_wait_over(self, client: SimModelSession, t_ns: int) -> None:
        if client.state == "failing" and client.pending_error is not None:
            err = handshake_error(client.pending_error, client.config, close_code=None)
            self._connect_failed(client, err, t_ns)

    def _model_close_arrives(
        self, client: SimModelSession, code: int, reason: str, t_ns: int
    ) -> None:
        """The emulator's close frame reaches the bridge."""
        client.remote_closed = True
        if client.close_code is None:
            client.close_code, client.close_reason = code, reason
        match client.state:
            case "handshake":
                self._connect_failed(client, handshake_closed_error(code, reason), t_ns)
            case "failing":
                assert client.pending_error is not None
                err = handshake_error(client.pending_error, client.config, close_code=code)
                self._connect_failed(client, err, t_ns)
            case "open":
                client.state = "closed"
                if client is self.client and not self.core.stopped:
                    self._model_stream_ended(client, t_ns)
            case _:
                client.state = "closed"

    def _model_stream_ended(self, client: SimModelSession, t_ns: int) -> None:
        """``BridgeSession._model_reader`` after its ``async for``: the core decides; maybe a
        new session (a reconnect)."""
        self._apply(self.core.model_closed(client.close_code, t_ns), t_ns)
        todo, self._reconnect = self._reconnect, None
        if todo is not None and not self._closing:
            self._connect(self._new_client(todo.session, 0, initial=False), t_ns)

    def _connect_failed(self, client: SimModelSession, exc: HydraError, t_ns: int) -> None:
        """``BridgeSession._connect``'s ``except``: the client closes its socket; retry after
        the policy's jittered delay, or give up."""
        client.state = "closed"
        self._cancel(client.timer)
        t = self._close_model(client, t_ns)
        delay = self.reconnect_policy.connect_delay_s(
            exc, attempt=client.attempt, rng=self._rng_connect
        )
        if self._closing:
            return
        if delay is None:
            self._at(t, self._give_up, client, str(exc))
            return
        if self.writer is not None:
            row = {
                "type": "model_connect_retry",
                "attempt": client.attempt + 1,
                "error": str(exc),
                "delay_s": round(delay, 3),
            }
            self.writer.log("bridge", "-", row, t)
        session = client.config.session_payload()
        if client.initial:
            gen = self.config.hydra.generate_initial_response
            session = {**session, "generate_initial_response": gen}
        nxt = self._new_client(session, client.attempt + 1, initial=client.initial)
        self._at(t + round(delay * _NS_PER_S), self._connect, nxt)

    def _give_up(self, client: SimModelSession, error: str, t_ns: int) -> None:
        if client.initial:  # BridgeSession._run: the caller's socket closes (1011) right away
            self._holding = False
            self._held.clear()
            self._caller_reader_done = True
        self._apply(self.core.model_connect_failed(error, t_ns), t_ns)

    def _connected(self, client: SimModelSession, t_ns: int) -> None:
        client.state = "open"
        self._cancel(client.timer)
        self.client = client
        self.connect_attempts = client.attempt + 1
        self._apply(self.core.model_connected(client.model_info(), t_ns), t_ns)
        if client.initial and self._holding:
            # the caller's frames, read only now (BridgeSession._run starts its readers here)
            self._holding = False
            held, self._held = self._held, []
            for item in held:
                self._bridge_reads(item, t_ns)
        backlog, client.backlog = client.backlog, []
        for ev in backlog:  # events that came during the handshake, first
            if self.core.stopped:
                break
            self._model_event(client, ev, t_ns)


# ---------------------------------------------------------------------- simulate_record
def simulate_record(
    record: str | Record | None = None,
    *,
    out_dir: Path | str = "runs",
    run_id: str | None = None,
    hydra_model: str = "hydra-v1.1",
    voice: str | None = None,
    data_dir: Path | str | None = None,
    emulator_config: EmulatorConfig | None = None,
    caller_config: CallerConfig | None = None,
    bridge_config: BridgeConfig | None = None,
    sim: SimConfig | None = None,
    transcriber: SyncTranscriber | Literal["oracle"] | None = "oracle",
    script: Script | None = None,
    configure_mode: ConfigureMode = "standard",
    configure_ceiling_bytes: int = CONFIGURE_CEILING_BYTES,
    caller_audio: PreparedAudio | None = None,
    speech: SpeechCache | Mapping[int, SpeechCache] | None = None,
    tools: BackendChoice = "auto",
    eva_dir: Path | str | None = None,
    caller: CallerPolicyName | CallerPolicy = "scripted",
    hearing: Hearing = "native",
    persona: str | Persona | None = None,
    line: LinePerturbation | None = None,
) -> RunResult:
    """:func:`hydralab.runner.run_record` against the emulator, in virtual time.

    The same configuration and the same run directory (EVA's layout, written by the same
    code), from a :class:`Simulation` instead of sockets; ``run.json`` also has a
    ``simulation`` block (the :class:`SimConfig` settings). Returns a
    :class:`~hydralab.runner.RunResult` whose ``simulation`` is the finished simulation
    (``session`` and ``emulator`` are ``None``: there is no socket shell).

    Args:
        record, out_dir, run_id, hydra_model, voice, data_dir, emulator_config, caller_config,
            bridge_config, script, configure_mode, configure_ceiling_bytes, tools, eva_dir,
            caller, persona, line: As ``run_record`` (``emulator_config`` defaults to the
            ``live`` profile).
        hearing: What a listening caller hears: ``"native"`` (default: the bridge's
            transcript) or ``"stt"`` (the assistant's audio through ``transcriber``, which must
            then be a :data:`SyncTranscriber`).
        sim: Latency, jitter, seed, guards (:class:`SimConfig`).
        transcriber: ``"oracle"`` (default: the caller's intended lines), a
            :data:`SyncTranscriber`, or ``None``.
        caller_audio: The caller's prepared lines (default: rendered once per process,
            :func:`caller_audio_for`).
        speech: The emulator's rendered speech (default: rendered once per process,
            :func:`speech_caches`).

    ``result.json["completed"]`` and ``run.json["verdict"]`` are
    :func:`hydralab.runner.call_verdict`'s, as for ``run_record``.

    Raises:
        RunDirectoryError: As ``run_record``: the run directory already holds a run, an id is
            not a plain name, or ``out_dir`` cannot be written (before the simulation starts).
    """
    rec = (
        record
        if isinstance(record, Record)
        else load_record(record, data_dir=Path(data_dir) if data_dir is not None else None)
    )
    script = script or script_from_record(rec)
    # as run_record: inside out_dir, never another run's directory
    run_dir = record_run_dir(out_dir, run_id or _run_id(), rec.id)
    executor = tool_executor(rec, tools=tools, eva_dir=eva_dir)
    policy = make_policy(caller, rec, script)
    persona_obj = resolve_persona(persona, rec, eva_dir)
    if policy is not None and hearing == "stt" and not callable(transcriber):
        raise ValueError("hearing='stt' in a simulation needs a SyncTranscriber")
    hydra, budget = _plan_hydra(
        rec,
        hydra_model=hydra_model,
        voice=voice,
        configure_mode=configure_mode,
        configure_ceiling_bytes=configure_ceiling_bytes,
    )
    hydra = HydraConfig(**{**hydra.__dict__, "url": _SIM_MODEL_URL, "session": budget.session})
    # as run_record: configure_mode="update"'s session.update, the reconnect ceiling
    bcfg = _with_budget(_with_hydra(bridge_config, hydra), budget)
    ecfg = emulator_config or EmulatorConfig.live()
    ccfg = caller_settings(caller_config, script, persona=persona_obj, line=line)
    check_out_dir(out_dir)
    claim_run_dir(run_dir)
    try:
        listener = None
        if policy is not None:
            stt_fn = transcriber if callable(transcriber) else None

            def transcribe(pcm: npt.NDArray[np.int16]) -> str:
                assert stt_fn is not None
                result = stt_fn(pcm, 8000)
                return result.text if result.ok else ""

            listener = make_listener(
                policy,
                hearing=hearing,
                transcribe=transcribe if stt_fn is not None else None,
                native_text=lambda k: simulation.native_text(k),
            )
        simulation = Simulation(
            script,
            listener=listener,
            tools=executor,
            bridge_config=bcfg,
            caller_config=ccfg,
            emulator_config=ecfg,
            sim=sim,
            transcriber=transcriber,
            caller_audio=caller_audio,
            speech=speech,
            run_dir=run_dir,
        )
    except BaseException:
        release_run_dir(run_dir)  # nothing ran: leave no trace
        raise
    simulation.run()
    clock = simulation.clock
    started = dt.datetime.fromtimestamp(clock.epoch_s(clock.t0_ns))
    ended = dt.datetime.fromtimestamp(clock.epoch_s(simulation.ended_ns or clock.now_ns()))
    result = _write_results(
        rec,
        script,
        run_dir,
        "emulator",
        simulation,
        simulation.caller_result,
        started,
        ended,
        None,
        configure_budget=budget.to_dict(),
        emulator_config=ecfg,
        emulator_sessions=simulation.emulator_sessions,
        extra_meta={
            "caller_policy": caller_policy_meta(
                policy,
                listener,
                persona=persona_obj,
                line=line,
                caller=simulation.caller_result,
            ),
            "simulation": {
                **simulation.sim.describe(),
                "virtual_duration_s": round(
                    ((simulation.ended_ns or clock.now_ns()) - clock.t0_ns) / 1e9, 6
                ),
                "timed_out": simulation.timed_out,
            },
        },
    )
    result.simulation = simulation
    return result
