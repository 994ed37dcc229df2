"""The bridge's asyncio shell: a Twilio Media Streams server on 127.0.0.1 that puts a caller
through to a realtime speech model (Hydra by default).

One :class:`BridgeSession` per caller connection (``/ws`` or ``/``). Every decision is the
sans-I/O :class:`~hydralab.bridge_core.BridgeCore`'s; the shell only moves data and time, in the
emulator shell's shape (:mod:`hydralab.emulator.server`):

- caller reader: frames → ``core.caller_frame``;
- model reader: events → ``core.model_event``; when the stream ends, ``core.model_closed``
  (and the reconnect it may ask for, with the connection retries of the reconnect policy);
- ticker: sleeps until ``core.next_deadline_ns()`` (or a wake-up) → ``core.advance`` (the
  pacer's 20 ms grid, the silence fill, the tool policy);
- two writers, the only tasks that write to the caller's and the model's socket, in the order the
  core produced the frames;
- tool and transcription tasks, whose results go back to the core.

Every time comes from the one session clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from hydralab.bridge_core import (
    BridgeCore,
    BridgeCoreConfig,
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
from hydralab.client import MAX_MODEL_FRAME_BYTES, HydraClient, HydraConfig, HydraError
from hydralab.clock import Clock
from hydralab.model import ModelSessionFactory, RealtimeModelSession
from hydralab.reconnect import ReconnectPolicy
from hydralab.rundir import RunWriter
from hydralab.secrets import Secret, redact
from hydralab.speech.stt import ERROR_CANCELLED, Transcriber, Transcript
from hydralab.tools import ToolExecutor

__all__ = [
    "BUSY_CLOSE_CODE",
    "CALLER_MAX_FRAME_BYTES",
    "Bridge",
    "BridgeConfig",
    "BridgeSession",
    "model_summary",
    "write_outputs",
]

logger = logging.getLogger(__name__)

CALLER_MAX_FRAME_BYTES = 64 * 1024
"""Largest frame the bridge reads from a caller (its server's ``max_size``): 64 KiB.

A Twilio Media Streams ``media`` frame of 20 ms of 8 kHz μ-law is ~300 bytes of JSON (160
bytes of audio, base64) and the control frames (``connected``, ``start``, ``mark``, ``stop``,
EVA's ``user_speech_*``) are smaller; 64 KiB still takes a caller that sends several seconds
of audio per frame (~6 s of μ-law in base64), and bounds what one frame can make the bridge
hold. A bigger frame closes the caller's socket with 1009 (message too big) and the call ends
as an ``error`` that says so."""

BUSY_CLOSE_CODE = 1013
"""Close code of a connection the bridge refuses at once (``busy``: the run's one conversation
is taken, or ``hydralab serve`` has ``max_calls`` in flight): try again later."""


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
    session_update: dict[str, Any] | None = None
    """EXPERIMENTAL (``configure_mode="update"``): ``BudgetResult.update_session`` — the
    ``session.update`` the core sends after every ``session.configured``
    (:attr:`hydralab.bridge_core.BridgeCoreConfig.session_update`); ``None``: none."""

    def core_config(self, *, transcribe: bool) -> BridgeCoreConfig:
        """The sans-I/O core's share of these settings."""
        return BridgeCoreConfig(
            model=self.hydra.model,
            session=self.hydra.session_payload(),
            silence_fill_after_ms=self.silence_fill_after_ms,
            tool_settle_ms=self.tool_settle_ms,
            preroll_ms=self.preroll_ms,
            max_reconnects=self.max_reconnects,
            reconnect_close_codes=self.reconnect_close_codes,
            configure_ceiling_bytes=self.configure_ceiling_bytes,
            reconnect_context=self.reconnect_context,
            underrun_tolerance_ms=self.underrun_tolerance_ms,
            transcribe=transcribe,
            session_update=self.session_update,
        )


def model_info(client: RealtimeModelSession) -> ModelInfo:
    """What the core needs to know about a connected model session."""
    return ModelInfo(
        output_rate_hz=client.output_rate_hz,
        configure_bytes=client.configure_bytes,
        session_id=client.session_id,
    )


def model_summary(core: BridgeCore, client: RealtimeModelSession, url: str) -> dict[str, Any]:
    """``run.json["hydra"]``: the core's summary plus what the model session knows."""
    out = core.summary()
    out.update(
        url=url,
        session_id=client.session_id,
        output_rate_announced=client.announced_rate_hz,
        voice_requested=client.requested_voice,
        voice_echoed=client.echoed_voice,
        client_notes=client.notes,
        warnings=client.stats.warnings,
        frames_in=client.stats.frames_in,
        frames_out=client.stats.frames_out,
        # frames the session dropped unparsed, and those the core rejected
        rejected_model_frames=core.rejected_model_frames + client.stats.rejected_in,
    )
    return out


def write_outputs(core: BridgeCore, writer: RunWriter, tools: ToolExecutor) -> None:
    """Write the run directory's bridge files (audit log, EVA logs, DBs, recordings); call
    after :meth:`BridgeCore.finish`. Always closes the writer."""
    try:
        tracker = core.tracker
        writer.audit_log(tracker.audit, tracker.conversation_messages)
        writer.jsonl("framework_logs.jsonl", tracker.framework_logs)
        writer.jsonl("pipecat_metrics.jsonl", tracker.metrics)
        writer.scenario_dbs(tools.initial_db, tools.db)
        core.timeline.save(writer.dir)  # finishes the streamed WAVs (or writes them whole)
        if core.timeline.stream_error:
            writer.log(
                "bridge",
                "-",
                {"type": "recording_stream_failed", "error": core.timeline.stream_error},
                core.clock.now_ns(),
            )
    finally:
        core.timeline.close()  # a no-op after save(); finishes the WAVs if a write raised
        writer.close()


_TICK_NS = 100_000_000
"""Longest sleep of a session's ticker (its flushes of the recordings and the event log)."""


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class BridgeSession(CoreOutcome):
    """One caller ↔ model conversation. ``run(ws)`` returns when the call has ended."""

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
        self.core = BridgeCore(
            config.core_config(transcribe=transcriber is not None),
            clock=self.clock,
            start_ns=self.clock.now_ns(),
        )
        self._model_factory: ModelSessionFactory = model_factory or self._hydra_session
        self._api_key = api_key
        self.client: RealtimeModelSession = self._model_factory(config.hydra.session_payload())
        self.reconnect_policy = ReconnectPolicy(
            backoff_s=config.connect_backoff_s,
            max_reconnects=config.max_reconnects,
            close_codes=config.reconnect_close_codes,
        )
        self.done = asyncio.Event()
        self.connect_attempts = 0
        self._stop = asyncio.Event()
        # the ticker's sleep: until when, and the future an earlier deadline resolves
        self._sleep_until_ns = 0
        self._wake_fut: asyncio.Future[None] | None = None
        self._to_caller: asyncio.Queue[ToCaller] = asyncio.Queue()
        self._to_model: asyncio.Queue[ToModel | ToModelAudio] = asyncio.Queue()
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._stt_tasks: set[asyncio.Task[None]] = set()
        self._reconnect: Reconnect | None = None

    # ------------------------------------------------------------------ the core's state
    @property
    def tracker(self) -> Any:
        return self.core.tracker

    @property
    def timeline(self) -> Any:
        return self.core.timeline

    @property
    def reconnects(self) -> int:
        return self.core.reconnects

    @property
    def silent_responses(self) -> int:
        return self.core.silent_responses

    @property
    def no_audio_warning(self) -> str | None:
        return self.core.no_audio_warning

    @property
    def output_rate_hz(self) -> int:
        return self.core.output_rate_hz

    # ------------------------------------------------------------------ lifecycle
    async def run(self, ws: ServerConnection) -> None:
        try:  # crash safety: the recordings stream into the run directory as the call goes
            self.core.timeline.open_files(self.writer.dir)
        except OSError as exc:  # no streaming; write_outputs still writes them at the end
            self.writer.log(
                "bridge",
                "-",
                {"type": "recording_stream_failed", "error": str(exc)},
                self.clock.now_ns(),
            )
        try:
            await self._run(ws)
        except Exception as exc:  # reported in the run, never silent
            self._apply(
                self.core.stop(
                    "error", self.clock.now_ns(), error=redact(f"{type(exc).__name__}: {exc}")
                )
            )
        finally:
            with contextlib.suppress(Exception):
                await self.client.close()
            try:
                self._apply(self.core.finish(self.clock.now_ns()))
            finally:
                write_outputs(self.core, self.writer, self.tools)
                self.done.set()

    async def _run(self, ws: ServerConnection) -> None:
        try:
            await self._connect(self.client, self.config.hydra.session_payload(), initial=True)
        except HydraError as exc:
            self._apply(self.core.model_connect_failed(str(exc), self.clock.now_ns()))
            await ws.close(1011, "model connection failed")
            return
        self._apply(self.core.model_connected(model_info(self.client), self.clock.now_ns()))
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._caller_reader(ws)),
                tg.create_task(self._model_reader()),
                tg.create_task(self._ticker()),
                tg.create_task(self._caller_writer(ws)),
                tg.create_task(self._model_writer()),
            ]
            await self._stop.wait()
            await self._drain()
            for t in tasks[:3]:
                t.cancel()
            with contextlib.suppress(TimeoutError):  # a stalled model socket cannot hang the end
                async with asyncio.timeout(5.0):
                    await self._to_model.join()
            tasks[4].cancel()
            await self.client.close()
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._to_caller.join()
            tasks[3].cancel()
            with contextlib.suppress(Exception):
                await ws.close()

    def _apply(self, effects: list[Effect]) -> None:
        """Carry out the core's effects, in order."""
        for e in effects:
            match e:
                case ToCaller():
                    self._to_caller.put_nowait(e)
                case ToModel() | ToModelAudio():
                    self._to_model.put_nowait(e)
                case Log(source=src, direction=d, data=data, t_ns=t):
                    self.writer.log(src, d, data, t)
                case RunTool():
                    self._spawn(self._tool_tasks, self._run_tool(e))
                case Transcribe():
                    self._spawn(self._stt_tasks, self._transcribe(e))
                case Reconnect():
                    self._reconnect = e
                case End():
                    self._stop.set()
        self._nudge()

    def _nudge(self) -> None:
        """Wake the ticker if what just happened moved the core's next deadline earlier than
        its sleep (or ended the call). Most inputs do not (a caller frame moves the silence
        fill later), and a wake-up per input cost more than the input."""
        fut = self._wake_fut
        if fut is None or fut.done():
            return
        if self.core.stopped:
            fut.set_result(None)
            return
        at = self.core.next_deadline_ns()
        if at is not None and at < self._sleep_until_ns:
            fut.set_result(None)

    def _spawn(self, tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _drain(self) -> None:
        """Intake is over: let pending tools and transcriptions finish (bounded)."""
        if self._tool_tasks:
            await asyncio.wait(list(self._tool_tasks), timeout=self.config.tool_timeout_s)
        if self._stt_tasks:
            _, pending = await asyncio.wait(
                list(self._stt_tasks), timeout=self.config.stt_timeout_s
            )
            for t in pending:
                t.cancel()
            # let the cancelled ones write their placeholders before the files are written
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ model connection
    def _hydra_session(self, session: dict[str, Any]) -> RealtimeModelSession:
        """The default model: Hydra, configured with ``session`` verbatim."""
        return HydraClient(
            dataclasses.replace(self.config.hydra, session=session),
            api_key=self._api_key,
            frame_logger=self.writer.hydra_frame,
            now_ns=self.clock.now_ns,
        )

    async def _connect(
        self, first: RealtimeModelSession, session: dict[str, Any], *, initial: bool
    ) -> None:
        """Connect (a new session each attempt); retry capacity/transport failures with
        jitter, as the reconnect policy says."""
        client = first
        for attempt in range(len(self.reconnect_policy.backoff_s) + 1):
            if attempt:
                if initial:
                    session = {
                        **session,
                        "generate_initial_response": self.config.hydra.generate_initial_response,
                    }
                client = self._model_factory(session)
            try:
                await client.connect()
            except HydraError as exc:
                delay = self.reconnect_policy.connect_delay_s(exc, attempt=attempt)
                if delay is None:
                    raise
                self.writer.log(
                    "bridge",
                    "-",
                    {
                        "type": "model_connect_retry",
                        "attempt": attempt + 1,
                        "error": str(exc),
                        "delay_s": round(delay, 3),
                    },
                    self.clock.now_ns(),
                )
                await asyncio.sleep(delay)
                continue
            self.client = client
            self.connect_attempts = attempt + 1
            return

    # ------------------------------------------------------------------ tasks
    async def _caller_reader(self, ws: ServerConnection) -> None:
        try:
            async for msg in ws:
                self._apply(self.core.caller_frame(msg, self.clock.now_ns()))
                if self.core.stopped:
                    return
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                why = (
                    f"a caller frame over the {CALLER_MAX_FRAME_BYTES} byte limit: the caller's "
                    "socket was closed with 1009 (message too big)"
                )
                self._apply(self.core.stop("error", self.clock.now_ns(), error=why))
        self._apply(self.core.caller_closed(self.clock.now_ns()))

    async def _model_reader(self) -> None:
        while True:
            async for ev in self.client:
                t = self.clock.now_ns()
                caused_by = getattr(ev, "caused_by", None)
                by = self.client.sent_type(caused_by) if isinstance(caused_by, str) else None
                self._apply(self.core.model_event(ev, t, caused_by=by))
                if self.core.stopped:
                    return
            code = self.client.close_code
            self._apply(self.core.model_closed(code, self.clock.now_ns()))
            if code == CloseCode.MESSAGE_TOO_BIG:  # no reconnect: say why the model went away
                why = (
                    "the model's socket was closed with 1009 (message too big): a frame over "
                    f"the size limit (hydralab reads model frames up to {MAX_MODEL_FRAME_BYTES} "
                    "bytes)"
                )
                self._apply(self.core.stop("model_disconnected", self.clock.now_ns(), error=why))
            todo, self._reconnect = self._reconnect, None
            if todo is None:
                return
            try:
                client = self._model_factory(todo.session)
                await self._connect(client, todo.session, initial=False)
            except HydraError as exc:
                self._apply(self.core.model_connect_failed(str(exc), self.clock.now_ns()))
                return
            self._apply(self.core.model_connected(model_info(self.client), self.clock.now_ns()))

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.core.stopped:
            now = self.clock.now_ns()
            self.core.timeline.flush(now)  # settled audio to disk; never raises
            self.writer.flush(now)
            at = self.core.next_deadline_ns()
            if at is None or at > now:
                # sleep until the deadline (at most _TICK_NS: the flushes above) or a nudge
                until = now + _TICK_NS if at is None else min(at, now + _TICK_NS)
                fut: asyncio.Future[None] = loop.create_future()
                self._sleep_until_ns, self._wake_fut = until, fut
                timer = loop.call_at(loop.time() + (until - now) / 1e9, _resolve, fut)
                try:
                    await fut
                finally:
                    timer.cancel()
                    self._wake_fut = None
                continue
            self._apply(self.core.advance(now))
            again = self.core.next_deadline_ns()
            if again is not None and again <= now:  # still due: let the writers run first
                await asyncio.sleep(0)

    async def _caller_writer(self, ws: ServerConnection) -> None:
        while True:
            e = await self._to_caller.get()
            try:
                await ws.send(e.frame)
            except ConnectionClosed:
                self._apply(self.core.caller_closed(self.clock.now_ns()))
            finally:
                self._to_caller.task_done()

    async def _model_writer(self) -> None:
        while True:
            e = await self._to_model.get()
            try:
                if isinstance(e, ToModelAudio):
                    await self.client.send_audio(e.pcm16k)
                else:
                    await self.client.send(e.event)
            except HydraError as exc:
                self._apply(self.core.model_send_failed(e, str(exc), self.clock.now_ns()))
            finally:
                self._to_model.task_done()

    async def _run_tool(self, e: RunTool) -> None:
        try:
            result: Any = self.tools.execute(e.name, e.params)  # in order, on the loop
        except Exception as exc:  # a tool that raised: the model gets an error, not silence
            result = {
                "status": "error",
                "error_type": "tool_failed",
                "message": redact(f"{type(exc).__name__}: {exc}"),
            }
        self._apply(self.core.tool_result(e.call_id, e.name, e.params, result, self.clock.now_ns()))

    async def _transcribe(self, e: Transcribe) -> None:
        assert self.transcriber is not None
        try:
            tr = await self.transcriber.transcribe(e.pcm, sample_rate_hz=e.sample_rate_hz)
        except asyncio.CancelledError:  # _drain's bound ran out: a placeholder, never a gap
            tr = Transcript("", ok=False, error=ERROR_CANCELLED, provider=self.transcriber.name)
            self._apply(self.core.transcript(e.role, e.index, tr, self.clock.now_ns()))
            raise
        except Exception as exc:  # a custom transcriber that broke the never-raises rule
            tr = Transcript(
                "", ok=False, error=redact(f"{type(exc).__name__}: {exc}"), provider="?"
            )
        self._apply(self.core.transcript(e.role, e.index, tr, self.clock.now_ns()))

    def shutdown(self, reason: str = "server_shutdown") -> None:
        """End the call from outside (the server is stopping): intake stops, pending tools and
        transcriptions finish, both sockets close, the outputs are written."""
        self._apply(self.core.stop(reason, self.clock.now_ns()))

    # ------------------------------------------------------------------ outputs
    def summary(self) -> dict[str, Any]:
        out = model_summary(self.core, self.client, self.config.hydra.redacted_url())
        out["connect_attempts"] = self.connect_attempts
        return out


class Bridge:
    """The Twilio-media-stream server. Each connection gets a session from ``session_factory``.

    Args:
        session_factory: Builds one conversation's :class:`BridgeSession`.
        max_sessions: Conversations this bridge ever takes (``run_record``: 1, one run
            directory); ``None`` = no limit.
        max_concurrent: Conversations at once (``hydralab serve``: ``max_calls``); ``None`` = no
            limit.
        on_refused: Called with each refused connection's log row (``type`` ``caller_refused``).

    A connection over either limit, or after :meth:`refuse_new`, is refused at once: closed
    with 1013 ``busy`` (:data:`BUSY_CLOSE_CODE`) before any model session is opened, and kept
    in :attr:`refused`. A session factory that raises closes its connection with 1011 and is
    kept in :attr:`failures`.
    """

    def __init__(
        self,
        session_factory: Callable[[], BridgeSession],
        *,
        max_sessions: int | None = None,
        max_concurrent: int | None = None,
        on_refused: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        for name, v in (("max_sessions", max_sessions), ("max_concurrent", max_concurrent)):
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v}")
        self._factory = session_factory
        self._server: Server | None = None
        self.sessions: list[BridgeSession] = []
        self.refused: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.max_sessions = max_sessions
        self.max_concurrent = max_concurrent
        self._on_refused = on_refused
        self._accepting = True
        self._active: set[BridgeSession] = set()
        self._new_session = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def active(self) -> int:
        """Conversations in flight."""
        return len(self._active)

    async def start(
        self, *, host: str = "127.0.0.1", port: int = 0, reuse_port: bool = False
    ) -> str:
        """Listen on ``host:port`` (0: any free port). ``reuse_port``: share the port with
        other processes that set it too (``SO_REUSEPORT``; the kernel spreads the connections
        over them: :func:`hydralab.serve.serve_workers`)."""
        self._server = await serve(
            self._handler,
            host,
            port,
            compression=None,
            max_size=CALLER_MAX_FRAME_BYTES,
            reuse_port=reuse_port or None,  # passed on to loop.create_server
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        return self.url

    def refuse_new(self) -> None:
        """Take no new conversation (the calls in flight go on); later connections are
        refused with 1013."""
        self._accepting = False

    def _busy(self) -> str | None:
        if not self._accepting:
            return "the bridge takes no new calls"
        if self.max_sessions is not None and len(self.sessions) >= self.max_sessions:
            return (
                "this run's conversation is taken: one caller per run directory"
                if self.max_sessions == 1
                else f"{self.max_sessions} conversations taken"
            )
        if self.max_concurrent is not None and len(self._active) >= self.max_concurrent:
            return f"{self.max_concurrent} calls in flight (the limit)"
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?")[0] if ws.request is not None else "/"
        if path not in ("/", "/ws"):
            await ws.close(1008, f"unknown path {path}")
            return
        why = self._busy()
        if why is not None:
            await self._refuse(ws, why)
            return
        try:
            session = self._factory()
        except Exception as exc:  # reported, never a silent hang of whoever waits
            msg = redact(f"{type(exc).__name__}: {exc}")
            self.failures.append(msg)
            logger.error("bridge: could not start a conversation: %s", msg)
            self._new_session.set()
            with contextlib.suppress(Exception):
                await ws.close(1011, "bridge error")
            return
        self.sessions.append(session)
        self._active.add(session)
        self._new_session.set()
        try:
            await session.run(ws)
        finally:
            self._active.discard(session)

    async def _refuse(self, ws: ServerConnection, why: str) -> None:
        remote = ws.remote_address
        entry: dict[str, Any] = {
            "type": "caller_refused",
            "close_code": BUSY_CLOSE_CODE,
            "close_reason": "busy",
            "why": why,
            "remote": f"{remote[0]}:{remote[1]}" if isinstance(remote, tuple) else str(remote),
            "t_epoch_ms": int(time.time() * 1000),
        }
        self.refused.append(entry)
        logger.warning("bridge: refused a connection from %s: %s", entry["remote"], why)
        if self._on_refused is not None:
            with contextlib.suppress(Exception):
                self._on_refused(dict(entry))
        with contextlib.suppress(Exception):
            await ws.close(BUSY_CLOSE_CODE, "busy")

    async def wait_started(self, *, timeout_s: float | None = None) -> bool:
        """Whether a conversation began (or failed to) within ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._new_session.wait()
        return self._new_session.is_set()

    async def wait_session(self, *, timeout_s: float | None = None) -> BridgeSession:
        """The first session, once it has ended.

        Raises:
            RuntimeError: The bridge could not start the conversation (its session factory
                raised; the message says why).
            TimeoutError: No conversation began, or it did not end, within ``timeout_s``.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self._new_session.wait()
                if not self.sessions:
                    raise RuntimeError(
                        f"the bridge could not start the conversation: {self.failures[0]}"
                    )
                s = self.sessions[0]
                await s.done.wait()
                return s
        except TimeoutError:
            what = "ended" if self.sessions else "began"
            raise TimeoutError(f"no conversation {what} within {timeout_s:g} s") from None

    async def stop_listening(self) -> None:
        """Take no new callers; the calls in flight go on."""
        if self._server is not None:
            self._server.close(close_connections=False)

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
