"""asyncio shell of the Hydra emulator: sockets, tasks and the clock around :mod:`.core`.

Per connection, one :class:`asyncio.TaskGroup` runs three tasks around an
:class:`~hydralab.emulator.core.EmulatorSession`:

* reader: ``async for`` over client frames -> ``session.receive`` -> outbound queue;
* ticker: sleeps until ``session.next_deadline_ns()`` (or a reader wake-up) ->
  ``session.advance`` -> outbound queue;
* writer: the only task that writes to the socket, so frames go out exactly in the order the
  core produced them; it stamps ground truth just before each write.

A client disconnect, an idle close or :meth:`Emulator.stop` ends all three; nothing leaks.

The URL is ``ws://HOST:PORT/waves/v1/s2s`` (Hydra's path) in every profile; with
``EmulatorConfig.strict_path`` (the ``live`` profile) any other path is refused with HTTP 404
at the upgrade, as the live service does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hydralab.clock import Clock, ClockLike
from hydralab.emulator.core import (
    DEFAULT_MODEL,
    S2S_PATH,
    Close,
    EmulatorConfig,
    EmulatorSession,
    Output,
    Send,
    SpeechCache,
    speak_texts,
)
from hydralab.loopback import LoopbackServer
from hydralab.script import Script
from hydralab.secrets import redact

__all__ = ["Emulator", "serve_forever"]


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets logs the request line (with ``?api_key=``) at DEBUG: redact it."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, redact(text), **kwargs)


class _SessionEnd(Exception):
    """Internal: the session is over (reason in ``args[0]``)."""


class Emulator(LoopbackServer):
    """A local server speaking Hydra's wire protocol from a :class:`~hydralab.script.Script`.

    Usage::

        async with Emulator(script) as emu:
            client = await connect(f"{emu.url}?model=hydra-v1.1&api_key=x")

    Args:
        script: Scripted assistant turns (``assistant_turns[0]`` is the greeting).
        config: Emulator behaviour (rates, speeds, latencies, VAD, timeouts).

    Session-level faults (``config.faults``, :class:`~hydralab.emulator.core.EmulatorFaults`)
    count accepted connections: with ``server_full_sessions=1`` the first connection gets
    ``server_full`` + close 1013 and the second a normal session; after an injected
    ``internal_error`` (close 1011) the next connection may resume the script where it stopped
    (``config.resume``: always, never, or only when its configure carries reconnect context).

    Attributes:
        url: ``ws://HOST:PORT/waves/v1/s2s`` once started (append ``?model=…&api_key=…``).
        port: Bound port once started.
        speech: The rendered speech at the default tag's rate (``hydra-v1.1``);
            :meth:`speech_for` has the other rates.
        clock: The clock every session's ``now_ns`` comes from (the run's one clock; default a
            new :class:`~hydralab.clock.Clock`).
        sessions: One :class:`EmulatorSession` per accepted connection, with ``log``,
            ``frames_in`` and ``frames_out``.
    """

    def __init__(
        self,
        script: Script,
        *,
        config: EmulatorConfig | None = None,
        clock: ClockLike | None = None,
    ) -> None:
        self.clock: ClockLike = clock if clock is not None else Clock()
        self.script = script
        self.config = config if config is not None else EmulatorConfig()
        self._speech = {
            rate: SpeechCache(sample_rate_hz=rate, voice=self.config.voice, seed=self.config.seed)
            for rate in sorted(self.config.output_rates_hz())
        }
        self.speech = self.speech_for(self.config.rate_for_model(DEFAULT_MODEL))
        self.sessions: list[EmulatorSession] = []
        self.url = ""
        self.port = 0
        self._server: Server | None = None
        self._resume_turn: int | None = None  # set by a session that died of internal_error

    def speech_for(self, rate_hz: int) -> SpeechCache:
        """The speech cache sessions at ``rate_hz`` stream from."""
        return self._speech[rate_hz]

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> str:
        """Render the script's speech, bind and start serving; return the ``ws://`` URL."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        texts = speak_texts(self.script)
        for cache in self._speech.values():  # every rate a ?model= tag may ask for
            await asyncio.to_thread(cache.prime, texts)
        self._server = await serve(
            self._handler,
            host,
            port,
            compression=None,
            max_size=None,
            process_request=self._process_request,
            logger=_RedactingLogger(logging.getLogger("hydralab.emulator.websockets")),
        )
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"ws://{shown}:{self.port}{S2S_PATH}"
        return self.url

    # ------------------------------------------------------------ per connection

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if self.config.strict_path and url.path != S2S_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        expected = self.config.expected_api_key
        if expected is None:
            return None
        keys = parse_qs(url.query).get("api_key", [])
        if keys == [expected]:
            return None
        # As Hydra: refused at the upgrade, no frame, no close code. The key is never echoed.
        return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid api_key\n")

    async def _handler(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path if ws.request else "/").query)
        model = (query.get("model") or [DEFAULT_MODEL])[0]
        session = EmulatorSession(
            self.script,
            config=self.config,
            speech=self.speech_for(self.config.rate_for_model(model)),
            model=model,
            session_index=len(self.sessions),
            resume_turn=self._resume_turn,
            # a resumed conversation keeps the trace ids it learned (the DB still has them)
            id_chain=(
                self.sessions[-1].id_chain
                if self._resume_turn is not None and self.sessions
                else None
            ),
        )
        self._resume_turn = None
        self.sessions.append(session)
        outbox: asyncio.Queue[Output] = asyncio.Queue()
        wake = asyncio.Event()
        reason = "server stopped"

        resume_published = False

        def emit(outs: list[Output]) -> None:
            nonlocal resume_published
            for o in outs:
                outbox.put_nowait(o)
            if session.internal_error_sent and not resume_published:
                # Published before the error is even written, so a fast reconnect resumes.
                resume_published = True
                if self.config.faults.resume_after_internal_error and self.config.resume != "never":
                    self._resume_turn = session.next_speech_turn

        async def reader() -> None:
            try:
                async for msg in ws:
                    emit(session.receive(msg, now_ns=self.clock.now_ns()))
                    wake.set()
            except ConnectionClosed:
                pass
            raise _SessionEnd(_close_reason(ws, "client closed"))

        async def ticker() -> None:
            while True:
                deadline = session.next_deadline_ns()
                if deadline is None:
                    return
                delay_s = max(0.0, (deadline - self.clock.now_ns()) / 1e9)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay_s):
                        await wake.wait()
                wake.clear()
                emit(session.advance(now_ns=self.clock.now_ns()))

        async def writer() -> None:
            while True:
                out = await outbox.get()
                if isinstance(out, Close):
                    await ws.close(out.code, out.reason)
                    raise _SessionEnd(f"closed by emulator ({out.code} {out.reason})")
                assert isinstance(out, Send)
                t_ns = self.clock.now_ns()
                try:
                    await ws.send(out.text)
                except ConnectionClosed:
                    raise _SessionEnd(_close_reason(ws, "client gone during send")) from None
                session.sent(out, t_ns=t_ns)

        emit(session.open(now_ns=self.clock.now_ns()))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(reader())
                tg.create_task(ticker())
                tg.create_task(writer())
        except* _SessionEnd as eg:
            reason = str(eg.exceptions[0])
        except* Exception as eg:
            reason = f"error: {eg.exceptions[0]!r}"
            session.error = reason
            raise
        finally:
            session.finish(now_ns=self.clock.now_ns(), reason=reason)


def _close_reason(ws: ServerConnection, default: str) -> str:
    proto = ws.protocol
    sent = proto.close_sent
    if sent is not None and proto.close_rcvd_then_sent is not True:  # we closed first
        return f"closed by emulator ({sent.code} {sent.reason})"
    rcvd = proto.close_rcvd
    if rcvd is not None:
        return f"client closed ({rcvd.code})"
    return default


async def serve_forever(
    script: Script,
    *,
    port: int = 0,
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Run an emulator until cancelled (Ctrl-C), printing its URL and profile (CLI entry)."""
    emu = Emulator(script, config=config)
    url = await emu.start(host=host, port=port)
    cfg = emu.config
    accepts = "any ?model=" + (" and key" if cfg.expected_api_key is None else "")
    path = f"path {S2S_PATH} only" if cfg.strict_path else "any path"
    print(
        f"hydra emulator (profile {cfg.profile}) listening on {url}; accepts {accepts}, {path}",
        flush=True,
    )
    try:
        await asyncio.Future()
    finally:
        await emu.stop()
