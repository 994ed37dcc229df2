"""``HydraClient``: the asyncio shell around one Hydra WebSocket session (design §2, §5).

Handshake: loop until ``session.configured`` — a ``warning`` is tolerated, an ``error`` fails fast,
a timeout fails; no audio is sent before ``session.configured`` (Hydra silently drops it).
The output sample rate is read from ``session.configured``. The API key is taken from
``SMALLEST_API_KEY`` (or passed in as a :class:`~hydralab.secrets.Secret`) and never appears in
logs, exceptions or the frame log.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hydralab.protocol.hydra import (
    DEFAULT_OUTPUT_RATE_HZ,
    ErrorEvent,
    HydraEvent,
    InputAudioBufferAppend,
    ProtocolError,
    SessionConfigure,
    SessionConfigured,
    SessionCreated,
    UnknownEvent,
    WarningEvent,
    parse_event,
)
from hydralab.secrets import Secret, get_api_key, install_log_redaction, redact

install_log_redaction()

__all__ = [
    "HYDRA_URL",
    "FrameLogger",
    "HydraAuthError",
    "HydraClient",
    "HydraConfig",
    "HydraConnectionError",
    "HydraError",
    "HydraHandshakeError",
]

HYDRA_URL = "wss://api.smallest.ai/waves/v1/s2s"

FrameLogger = Callable[[str, dict[str, Any], int], None]
"""``(direction "out"|"in", frame dict with audio elided, t_ns)``."""


class HydraError(RuntimeError):
    """Base of the client's errors. Messages never contain the API key."""


class HydraAuthError(HydraError):
    """HTTP 401 at the WebSocket upgrade: the key (or token) was rejected."""


class HydraConnectionError(HydraError):
    """The socket could not be opened or closed unexpectedly."""


class HydraHandshakeError(HydraError):
    """``error`` during the handshake, or no ``session.configured`` in time."""


@dataclass(frozen=True)
class HydraConfig:
    """What to connect to and how to configure the session."""

    url: str = HYDRA_URL
    model: str = "hydra-v1.1"
    instructions: str = ""
    voice: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    generate_initial_response: bool = True
    output_audio_sample_rate: int | None = None
    handshake_timeout_s: float = 10.0
    open_timeout_s: float = 10.0

    def session_payload(self) -> dict[str, Any]:
        """``session`` of ``session.configure``: documented keys plus the negotiated rate."""
        s: dict[str, Any] = {"instructions": self.instructions}
        if self.voice:
            s["voice"] = self.voice
        if self.tools:
            s["tools"] = list(self.tools)
        s["generate_initial_response"] = self.generate_initial_response
        if self.output_audio_sample_rate:
            s["output_audio_sample_rate"] = self.output_audio_sample_rate
        return s

    def redacted_url(self) -> str:
        return f"{self.url}?model={self.model}&api_key=***"


def _elide(d: dict[str, Any]) -> dict[str, Any]:
    """Frame dict for logging: audio payloads replaced by their decoded byte count."""
    out = dict(d)
    keys = ["audio"]
    if out.get("type") == "response.output_audio.delta":
        keys.append("delta")
    for k in keys:
        v = out.get(k)
        if isinstance(v, str):
            out[k] = f"<{len(v) * 3 // 4} bytes>"
    return out


@dataclass
class _Stats:
    frames_in: int = 0
    frames_out: int = 0
    audio_bytes_out: int = 0
    warnings: list[dict[str, Any]] = field(default_factory=list)


class HydraClient:
    """One Hydra session. Use ``async with HydraClient(cfg) as c:`` then ``async for ev in c``."""

    def __init__(
        self,
        config: HydraConfig,
        *,
        api_key: str | Secret | None = None,
        frame_logger: FrameLogger | None = None,
        now_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.config = config
        self._key = get_api_key(api_key)
        self._log = frame_logger
        self._now_ns = now_ns
        self._ws: ClientConnection | None = None
        self._configured = asyncio.Event()
        self._backlog: list[HydraEvent] = []
        self.session_id: str | None = None
        self.configured: SessionConfigured | None = None
        self.output_rate_hz: int = DEFAULT_OUTPUT_RATE_HZ
        self.configure_bytes: int = 0
        self.stats = _Stats()

    def __repr__(self) -> str:
        return f"HydraClient({self.config.redacted_url()!r})"

    async def __aenter__(self) -> HydraClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ connect / handshake
    def _url(self) -> str:
        q: dict[str, str] = {"model": self.config.model}
        if self._key:
            q["api_key"] = self._key.reveal()
        return f"{self.config.url}?{urlencode(q)}"

    async def connect(self) -> SessionConfigured:
        """Open the socket and run the handshake; returns the ``session.configured`` event."""
        try:
            self._ws = await connect(
                self._url(),
                compression=None,
                max_size=None,
                open_timeout=self.config.open_timeout_s,
            )
        except InvalidStatus as exc:
            code = exc.response.status_code
            if code == 401:
                raise HydraAuthError(
                    "Hydra rejected the API key (HTTP 401 at the WebSocket upgrade); "
                    "check SMALLEST_API_KEY"
                ) from None
            raise HydraConnectionError(f"Hydra refused the connection: HTTP {code}") from None
        except (OSError, TimeoutError, ValueError) as exc:
            raise HydraConnectionError(
                f"cannot connect to {self.config.redacted_url()}: {redact(str(exc))}"
            ) from None
        try:
            return await asyncio.wait_for(self._handshake(), self.config.handshake_timeout_s)
        except TimeoutError:
            await self.close()
            raise HydraHandshakeError(
                f"no session.configured within {self.config.handshake_timeout_s:g} s"
            ) from None
        except BaseException:
            await self.close()
            raise

    async def _handshake(self) -> SessionConfigured:
        configure = SessionConfigure(session=self.config.session_payload())
        sent = False
        while True:
            ev = await self._recv()
            if ev is None:
                raise HydraHandshakeError("Hydra closed the socket during the handshake")
            match ev:
                case WarningEvent():
                    self.stats.warnings.append(ev.to_dict())
                case ErrorEvent():
                    raise HydraHandshakeError(
                        f"Hydra error during handshake: {ev.code}: {redact(ev.message)}"
                    )
                case SessionCreated():
                    self.session_id = ev.session_id
                    if not sent:
                        text = configure.dumps()
                        self.configure_bytes = len(text.encode("utf-8"))
                        await self._send_text(text, configure.to_dict())
                        sent = True
                case SessionConfigured():
                    self.configured = ev
                    self.output_rate_hz = ev.output_rate_hz
                    self._configured.set()
                    return ev
                case _:
                    self._backlog.append(ev)

    # ------------------------------------------------------------------ send / receive
    async def _send_text(self, text: str, logged: dict[str, Any]) -> None:
        if self._ws is None:
            raise HydraConnectionError("not connected")
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise HydraConnectionError(f"Hydra socket closed: {exc.rcvd or exc}") from None
        self.stats.frames_out += 1
        if self._log is not None:
            self._log("out", _elide(logged), self._now_ns())

    async def send(self, event: HydraEvent) -> None:
        """Send one client event (audio only after ``session.configured``)."""
        if isinstance(event, InputAudioBufferAppend) and not self._configured.is_set():
            raise HydraError("audio before session.configured would be dropped by Hydra")
        d = event.to_dict()
        await self._send_text(json.dumps(d, ensure_ascii=False, separators=(",", ":")), d)

    async def send_audio(self, pcm16k: npt.NDArray[np.int16]) -> None:
        """PCM16 mono 16 kHz → ``input_audio_buffer.append``."""
        await self.send(InputAudioBufferAppend.from_pcm(pcm16k))
        self.stats.audio_bytes_out += int(pcm16k.size) * 2

    async def _recv(self) -> HydraEvent | None:
        if self._ws is None:
            raise HydraConnectionError("not connected")
        while True:
            try:
                frame = await self._ws.recv()
            except ConnectionClosed:
                return None
            self.stats.frames_in += 1
            t = self._now_ns()
            try:
                ev = parse_event(frame)
            except ProtocolError as exc:
                if self._log is not None:
                    self._log("in", {"type": "<unparseable>", "error": str(exc)}, t)
                continue
            if self._log is not None:
                d = ev.raw if isinstance(ev, UnknownEvent) else ev.to_dict()
                self._log("in", _elide(d), t)
            return ev

    async def events(self) -> AsyncIterator[HydraEvent]:
        """Events after the handshake (anything buffered during it first) until the socket ends."""
        while self._backlog:
            yield self._backlog.pop(0)
        while True:
            ev = await self._recv()
            if ev is None:
                return
            yield ev

    def __aiter__(self) -> AsyncIterator[HydraEvent]:
        return self.events()

    @property
    def close_code(self) -> int | None:
        return None if self._ws is None else self._ws.close_code

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
