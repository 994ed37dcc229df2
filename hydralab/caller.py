"""asyncio shell of the scripted caller: the socket, tasks and clock around :mod:`.caller_core`.

:class:`Caller` dials the bridge's Twilio Media Streams endpoint and plays a :class:`Script`'s user
side in real time. The script logic, pacing and bookkeeping live in the sans-I/O
:class:`~hydralab.caller_core.CallerCore`; this module only does I/O, in the emulator shell's
shape (:mod:`hydralab.emulator.server`):

* the user lines are synthesized up front, in a worker thread (:func:`prepare_caller_audio`),
  unless the :class:`Caller` was given them;
* reader: ``async for`` over the bridge's frames -> ``core.receive`` -> outbound queue;
* ticker: sleeps until ``core.next_deadline_ns()`` (or a reader wake-up) -> ``core.advance``
  -> outbound queue; it waits for the queue to drain first, so a stalled socket delays the
  next frame (and the core re-anchors its grid) instead of queueing a burst;
* writer: the only task that writes to the socket, in the order the core produced the frames;
  a :class:`~hydralab.caller_core.Hangup` closes the connection and ends the call.

Every time comes from one session clock (share the bridge's to put both on one time base).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hydralab.caller_core import (
    AUDIBLE_DBFS,
    CallerConfig,
    CallerCore,
    CallerResult,
    Hangup,
    NeedReply,
    Output,
    PreparedAudio,
    ReceivedTurn,
    SendFrame,
    SentTurn,
    SpeechSynthesizer,
    failed_call_result,
    prepare_audio,
    samples_per_frame,
    validate_audio,
)
from hydralab.clock import Clock, ClockLike
from hydralab.listener import Listener
from hydralab.script import Script
from hydralab.speech.tts import Synthesizer

__all__ = [
    "AUDIBLE_DBFS",
    "Caller",
    "CallerConfig",
    "CallerResult",
    "PreparedAudio",
    "ReceivedTurn",
    "SentTurn",
    "SpeechSynthesizer",
    "prepare_caller_audio",
]

logger = logging.getLogger(__name__)

_DEFAULT_CONFIG = CallerConfig()


class _Disconnected(Exception):
    """The bridge closed the connection while the call was still on."""


class _CallEnd(Exception):
    """Internal: the call is over (the core hung up, or the bridge closed after the script)."""


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _redact_url(url: str) -> str:
    return url.split("?", 1)[0]


def _default_synthesizer(config: CallerConfig) -> SpeechSynthesizer:
    return Synthesizer(voice=config.voice, rate_wpm=config.rate_wpm)


async def prepare_caller_audio(
    script: Script,
    *,
    config: CallerConfig = _DEFAULT_CONFIG,
    synthesizer: SpeechSynthesizer | None = None,
) -> PreparedAudio:
    """Synthesize and frame ``script``'s user lines in a worker thread (for ``Caller(audio=)``).

    Args:
        script: The conversation.
        config: Voice, rate, noise, seed and frame size (the same config the caller gets).
        synthesizer: TTS engine (default: eSpeak NG with the config's voice and rate).

    Returns:
        The prepared audio.
    """
    synth = synthesizer if synthesizer is not None else _default_synthesizer(config)
    return await asyncio.to_thread(prepare_audio, script, config=config, synthesizer=synth)


class Caller:
    """A scripted caller that dials ``url`` and plays ``script``'s user side in real time.

    Args:
        script: The conversation; ``assistant_turns[0]`` is the greeting, ``assistant_turns[i]``
            answers ``user_turns[i - 1]``.
        url: The bridge's Twilio Media Streams endpoint, e.g. ``ws://127.0.0.1:PORT/ws``.
        config: Timing and voice.
        synthesizer: TTS engine (default: eSpeak NG with the config's voice and rate).
        clock: Session clock (share the bridge's to put both on one time base; default: a new
            :class:`~hydralab.clock.Clock`).
        stream_sid: Stream SID to announce (default: a random ``MZ…``).
        audio: The user lines already prepared (:func:`prepare_caller_audio`) with this
            ``config``; default: :meth:`run` synthesizes them first, in a worker thread.
        listener: A caller that listens (:class:`~hydralab.listener.Listener`): each line is
            its policy's reply to what it heard, synthesized as the call goes (in a worker
            thread); ``script`` then only gives the greeting turn. Default: the script's lines.

    Raises:
        ValueError: ``config.frame_ms`` is not a whole number of 8 kHz samples, or ``audio``
            does not fit ``script`` and ``config``.
    """

    def __init__(
        self,
        script: Script,
        *,
        url: str,
        config: CallerConfig = _DEFAULT_CONFIG,
        synthesizer: SpeechSynthesizer | None = None,
        clock: ClockLike | None = None,
        stream_sid: str | None = None,
        audio: PreparedAudio | None = None,
        listener: Listener | None = None,
    ) -> None:
        samples_per_frame(config)
        if listener is not None:
            script = dataclasses.replace(script, user_turns=())  # the policy speaks
            audio = None
        if audio is not None:
            validate_audio(script, config=config, audio=audio)
        self.listener = listener
        self.script = script
        self.url = url
        self.config = config
        self.stream_sid = stream_sid or f"MZ{uuid.uuid4().hex}"
        self._synth = synthesizer
        self._audio = audio
        self._clock: ClockLike = clock if clock is not None else Clock()
        self._started = False

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
        clock = self._clock
        try:
            audio = self._audio
            if audio is None:
                audio = await prepare_caller_audio(
                    self.script, config=self.config, synthesizer=self._synth
                )
        except Exception as exc:  # every failure still returns a result
            logger.warning("caller failed: %s", _describe(exc), exc_info=exc)
            return failed_call_result(
                stream_sid=self.stream_sid, epoch=clock, now_ns=clock.now_ns(), error=_describe(exc)
            )
        core = CallerCore(
            self.script,
            config=self.config,
            audio=audio,
            stream_sid=self.stream_sid,
            epoch=clock,
            listening=self.listener is not None,
        )
        error = None
        try:
            await self._call(core)
        except Exception as exc:  # every failure still returns what was collected
            others = [
                e for e in _leaves(exc) if not isinstance(e, _Disconnected | ConnectionClosed)
            ]
            if others:
                error = _describe(others[0])
                logger.warning("caller failed: %s", error, exc_info=others[0])
        # Without an error the core knows the reason: its hang-up, "goodbye" or "disconnected".
        core.finish(clock.now_ns(), error=error)
        return core.result()

    async def _call(self, core: CallerCore) -> None:
        cfg, clock = self.config, self._clock
        async with connect(
            self.url,
            compression=None,
            max_size=None,
            open_timeout=cfg.connect_timeout_s,
            close_timeout=min(cfg.connect_timeout_s, 5.0),
        ) as ws:
            outbox: asyncio.Queue[SendFrame | Hangup] = asyncio.Queue()
            needs: asyncio.Queue[NeedReply] = asyncio.Queue()
            wake = asyncio.Event()

            def emit(outs: list[Output]) -> None:
                for out in outs:
                    if isinstance(out, NeedReply):
                        needs.put_nowait(out)
                    else:
                        outbox.put_nowait(out)

            async def replier() -> None:
                """A listening caller's lines: hear, decide, synthesize off the loop."""
                listener = self.listener
                if listener is None:
                    return
                synth = self._synth if self._synth is not None else _default_synthesizer(cfg)
                while True:
                    need = await needs.get()
                    asked = clock.now_ns()
                    ready = await asyncio.to_thread(
                        listener.prepare, need, config=cfg, synthesizer=synth
                    )
                    emit(
                        core.reply(
                            clock.now_ns(),
                            text=ready.reply.text,
                            spoken=ready.spoken,
                            utterance=ready.utterance,
                            end_call=ready.reply.end_call,
                            not_before_ns=asked + int(ready.think_ms * 1e6),
                            heard_text=ready.heard,
                            reason=ready.reply.reason,
                        )
                    )
                    wake.set()

            async def reader() -> None:
                try:
                    async for message in ws:
                        emit(core.receive(message, now_ns=clock.now_ns()))
                        wake.set()
                except ConnectionClosed as exc:
                    if not core.hangup_expected:
                        raise _Disconnected(f"bridge closed the connection: {exc}") from None
                    raise _CallEnd from None
                if not core.hangup_expected:
                    raise _Disconnected("bridge closed the connection")
                raise _CallEnd

            async def ticker() -> None:
                while True:
                    await outbox.join()  # a stalled socket delays the grid, never bursts it
                    deadline = core.next_deadline_ns()
                    if deadline is None:
                        return  # hung up: the writer ends the call
                    delay_s = max(0.0, (deadline - clock.now_ns()) / 1e9)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay_s):
                            await wake.wait()
                    wake.clear()
                    emit(core.advance(clock.now_ns()))

            async def writer() -> None:
                while True:
                    out = await outbox.get()
                    if isinstance(out, Hangup):
                        await ws.close()
                        raise _CallEnd(out.reason)
                    await self._send(ws, core, out)
                    outbox.task_done()

            emit(core.start(clock.now_ns(), server_url=_redact_url(self.url)))
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(reader(), name="caller-reader")
                    tg.create_task(ticker(), name="caller-ticker")
                    tg.create_task(writer(), name="caller-writer")
                    tg.create_task(replier(), name="caller-replier")
            except* _CallEnd:
                pass

    @staticmethod
    async def _send(ws: ClientConnection, core: CallerCore, out: SendFrame) -> None:
        try:
            await ws.send(out.text)
        except ConnectionClosed as exc:
            # After the hang-up (or the script's end) a closed socket is the expected end.
            if not core.hangup_expected:
                raise _Disconnected(f"connection closed while sending: {exc}") from None
