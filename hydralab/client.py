"""``HydraClient``: the asyncio shell around one Hydra WebSocket session.

Handshake: loop until ``session.configured`` — a ``warning`` is tolerated, an ``error`` fails fast
(``server_full`` or a close 1013 as :class:`HydraServerFullError`: back off and retry), a
timeout fails; no audio is sent before ``session.configured`` (Hydra silently drops it).
The output sample rate is read from ``session.configured``. After the handshake every event,
``error`` included, is passed through the event iterator; when the socket ends,
:attr:`HydraClient.close_code` / :attr:`HydraClient.close_reason` say how (1000 normal or idle,
1011 after ``internal_error``, 1013 at capacity).

The model and voice are checked against the per-model rosters (:data:`VOICES`) before
connecting. The API key is taken from ``SMALLEST_API_KEY`` (or passed in as a
:class:`~hydralab.secrets.Secret`) and never appears in logs, exceptions or the frame log; with
``HydraConfig(use_token=True)`` it is exchanged for a short-lived token first (docs/hydra-facts.md,
"Connection and authentication") so that only the token is ever put in a URL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import CloseCode

from hydralab.protocol.hydra import (
    DEFAULT_OUTPUT_RATE_HZ,
    ErrorEvent,
    HydraEvent,
    InputAudioBufferAppend,
    ProtocolError,
    SessionConfigure,
    SessionConfigured,
    SessionCreated,
    WarningEvent,
    client_event_id,
    parse_event,
)
from hydralab.secrets import Secret, get_api_key, install_log_redaction, redact

__all__ = [
    "DEFAULT_VOICES",
    "HYDRA_URL",
    "MAX_MODEL_FRAME_BYTES",
    "MODELS",
    "SERVER_DEFAULT_VOICE",
    "TOKEN_TTL_RANGE_S",
    "TOKEN_URL",
    "VOICES",
    "FrameLogger",
    "HydraAuthError",
    "HydraClient",
    "HydraConfig",
    "HydraConnectionError",
    "HydraError",
    "HydraHandshakeError",
    "HydraServerFullError",
    "HydraTokenError",
    "HydraVoiceError",
    "ReceivedFrame",
    "SentEventIds",
    "check_voice",
    "elide_frame",
    "encode_client_event",
    "handshake_closed_error",
    "handshake_error",
    "parse_server_frame",
    "rate_note",
]

HYDRA_URL = "wss://api.smallest.ai/waves/v1/s2s"
MAX_MODEL_FRAME_BYTES = 4 * 1024 * 1024
"""Largest frame read from the model's socket (its ``max_size``): 4 MiB. Hydra's frames are
JSON events; the largest carry one audio delta (base64 PCM16: ~1 s of 48 kHz audio is ~128 KB),
so 4 MiB is ~30 s of audio in one delta, far above any observed, while one frame can never
make the bridge hold an unbounded message. A bigger frame closes the socket with 1009 (message
too big); the bridge records it as the call's error."""
TOKEN_URL = "https://api.smallest.ai/waves/v1/auth/token"
"""Short-lived token endpoint (docs/hydra-facts.md): ``POST`` with ``Authorization: Bearer
<key>`` and ``{"ttl_seconds": n}`` -> ``{"access_token": ...}``, accepted as ``api_key``."""
TOKEN_TTL_RANGE_S = (30, 900)
"""Allowed ``ttl_seconds`` of a token, inclusive."""

_V11 = ("zoe", "maya", "elena", "ivy", "grace", "alex", "aria", "leo", "sam", "kai")
_V10 = (
    "vaughn",
    "brooks",
    "cole",
    "hayes",
    "pierce",
    "sterling",
    "ellis",
    "lane",
    "quinn",
    "arden",
    "rowan",
    "blair",
    "emery",
    "sawyer",
)
VOICES: dict[str, tuple[str, ...]] = {"hydra-v1.1": _V11, "hydra-v1.0": _V10, "hydra": _V11 + _V10}
"""Voice roster per ``?model=`` tag, as the live API accepts them (Hydra model card, "Voices";
Smallest docs commit ``6afc848d``): ten on ``hydra-v1.1``, fourteen on ``hydra-v1.0``; the
deprecated ``hydra`` tag has no roster of its own and takes either (the spec's ``voice`` enum is
their union). The original six (``wren``, ``sloane``, ...) are rejected by the live API."""
SERVER_DEFAULT_VOICE = "sterling"
"""What the server applies when ``voice`` is omitted — on every tag, so a ``hydra-v1.1`` session
without a voice speaks with a v1.0 voice."""
DEFAULT_VOICES: dict[str, str] = {"hydra-v1.1": "zoe", "hydra-v1.0": "sterling", "hydra": "zoe"}
"""hydralab's explicit per-tag voice for runs (benchmarks pin the voice instead of inheriting
the server default)."""
MODELS: tuple[str, ...] = tuple(VOICES)
"""The model tags Hydra serves (``hydra`` is deprecated: the server sends a ``warning``)."""


def check_voice(model: str, voice: str | None) -> None:
    """Raise ``ValueError`` (listing the valid choices) for an unknown model or a voice that is
    not in the model's roster. ``voice=None`` (or empty) = the server's default."""
    roster = VOICES.get(model)
    if roster is None:
        raise ValueError(f"unknown Hydra model {model!r}: use one of {', '.join(MODELS)}")
    if not voice or voice in roster:
        return
    owner = next((m for m, r in VOICES.items() if voice in r and m != "hydra"), None)
    hint = f" ({voice!r} is a {owner} voice; the rosters do not overlap)" if owner else ""
    raise ValueError(
        f"voice {voice!r} is not available on {model}{hint}; valid voices for {model}: "
        f"{', '.join(roster)} (or voice=None for the server default)"
    )


_SENT_IDS_KEPT = 2048

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


class HydraVoiceError(HydraHandshakeError):
    """The server rejected ``session.configure.session.voice`` (``invalid_request_error``):
    not retried — the same voice is rejected again."""


class HydraServerFullError(HydraHandshakeError):
    """Hydra is at capacity: ``error`` ``server_full`` and/or close 1013 during the handshake.

    Retryable: back off with jitter and connect again (docs/hydra-facts.md).

    Attributes:
        close_code: The close code received (1013 normally; ``None`` if the socket was still
            open when the client gave up waiting for it).
    """

    def __init__(self, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class HydraTokenError(HydraConnectionError):
    """The short-lived token could not be obtained (network, HTTP error, malformed answer).

    A rejected key at the token endpoint (HTTP 401/403) is a :class:`HydraAuthError`.
    """


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
    session: dict[str, Any] | None = None
    """Precomputed ``session`` (e.g. ``BudgetResult.session`` from
    :func:`hydralab.protocol.budget.plan_configure`), sent verbatim so the frame is exactly the
    one budgeted; ``instructions``, ``voice``, ``tools`` ... are then ignored."""
    use_token: bool = False
    """Exchange the API key for a short-lived token at :attr:`token_url` before each connect and
    put only the token in the URL."""
    token_ttl_s: int = 300
    """``ttl_seconds`` of the token (30–900)."""
    token_url: str = TOKEN_URL
    check_voices: bool = True
    """Refuse a voice outside :data:`VOICES` before connecting. ``False`` lets the server
    judge (a roster newer than hydralab's); a rejected voice is then :class:`HydraVoiceError`."""

    def __post_init__(self) -> None:
        if self.check_voices:
            check_voice(self.model, self.voice)
        if (
            self.check_voices
            and self.session is not None
            and isinstance(self.session.get("voice"), str)
        ):
            check_voice(self.model, self.session["voice"])
        lo, hi = TOKEN_TTL_RANGE_S
        ttl = self.token_ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not lo <= ttl <= hi:
            raise ValueError(f"token_ttl_s must be an integer from {lo} to {hi} s, not {ttl!r}")

    def session_payload(self) -> dict[str, Any]:
        """``session`` of ``session.configure``: documented keys plus the negotiated rate."""
        if self.session is not None:
            return dict(self.session)
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


def elide_frame(d: dict[str, Any]) -> dict[str, Any]:
    """Frame dict for logging: audio payloads replaced by their decoded byte count."""
    out = dict(d)
    keys = ["audio"]
    if out.get("type") == "response.output_audio.delta":
        keys.append("delta")
    for k in keys:
        v = out.get(k)
        if isinstance(v, str):
            out[k] = f"<{len(v) * 3 // 4 - v[-2:].count('=')} bytes>"  # base64's decoded size
    return out


# ---------------------------------------------------------------------- pure protocol helpers
# Shared by HydraClient and the virtual-time simulator (hydralab.sim), which drives the same
# handshake and framing without a socket.


@dataclass(frozen=True)
class ReceivedFrame:
    """One server frame as the client takes it in (:func:`parse_server_frame`).

    Attributes:
        event: The parsed event; ``None`` for a frame that is not a JSON object with a string
            ``type`` (skipped).
        logged: What the frame log records (audio elided; the error for an unparseable frame).
    """

    event: HydraEvent | None
    logged: dict[str, Any]


def parse_server_frame(frame: str | bytes) -> ReceivedFrame:
    """Parse one received frame the way :class:`HydraClient` does (never raises)."""
    bad: str | None = None
    try:
        raw: Any = json.loads(frame)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raw, bad = None, f"frame is not JSON: {exc}"
    try:
        if bad is not None:
            raise ProtocolError(bad)
        ev = parse_event(raw)
    except ProtocolError as exc:
        return ReceivedFrame(None, {"type": "<unparseable>", "error": str(exc)})
    # the frame as received, unknown keys included; a known type with a field of the wrong
    # type goes on as UnknownEvent(malformed=...): its consumer (the bridge core) counts it
    return ReceivedFrame(ev, elide_frame(raw))


def encode_client_event(event: HydraEvent) -> tuple[str, dict[str, Any]]:
    """The text frame of a (stamped) client event and its dict (for the frame log)."""
    d = event.to_dict()
    return json.dumps(d, ensure_ascii=False, separators=(",", ":")), d


_APPEND_TYPE = InputAudioBufferAppend.type


def encode_append(event_id: str, pcm16k: npt.NDArray[np.int16]) -> tuple[str, dict[str, Any]]:
    """``input_audio_buffer.append`` of ``pcm16k`` with ``event_id``: its text frame (the same
    text :func:`encode_client_event` writes for it, without building the event and its dict:
    50 of these a second) and its frame-log dict (audio elided)."""
    pcm = pcm16k if pcm16k.dtype == "<i2" else np.ascontiguousarray(pcm16k, dtype="<i2")
    b64 = base64.b64encode(pcm.tobytes()).decode("ascii")
    text = f'{{"type":"{_APPEND_TYPE}","event_id":{json.dumps(event_id)},"audio":"{b64}"}}'
    return text, {"type": _APPEND_TYPE, "event_id": event_id, "audio": f"<{pcm.size * 2} bytes>"}


class SentEventIds:
    """Client ``event_id``s: stamps each client event and remembers the recent ones' types, so
    that a server ``error`` naming one (``error.event_id``) can be matched to its frame.

    Args:
        prefix: 6 hex digits of this client (:func:`~hydralab.protocol.hydra.client_event_id`).
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.n_sent = 0
        self._types: dict[str, str] = {}

    def stamp(self, event: HydraEvent) -> Any:
        """``event`` with a client ``event_id`` (kept when set), remembered."""
        if event.event_id is None:
            self.n_sent += 1
            eid = client_event_id(self.prefix, self.n_sent)
            event = dataclasses.replace(event, event_id=eid)
        assert event.event_id is not None
        self._types[event.event_id] = event.type
        while len(self._types) > _SENT_IDS_KEPT:
            self._types.pop(next(iter(self._types)))
        return event

    def sent_type(self, event_id: str | None) -> str | None:
        """The type of the recent client frame with this ``event_id`` (``None`` if unknown)."""
        return self._types.get(event_id) if event_id else None

    def next_id(self, type_: str) -> str:
        """A new ``event_id`` for a frame of ``type_`` built without an event object,
        remembered as :meth:`stamp` remembers it."""
        self.n_sent += 1
        eid = client_event_id(self.prefix, self.n_sent)
        self._types[eid] = type_
        if len(self._types) > _SENT_IDS_KEPT:
            self._types.pop(next(iter(self._types)))
        return eid


def handshake_closed_error(code: int | None, reason: str | None) -> HydraHandshakeError:
    """The error for a socket that ended during the handshake (close 1013: at capacity)."""
    shown = redact(reason or "")
    if code == 1013:
        return HydraServerFullError(
            f"Hydra is at capacity (close 1013 {shown!r} during the handshake); back off and retry",
            close_code=code,
        )
    return HydraHandshakeError(
        f"Hydra closed the socket during the handshake (close {code} {shown!r})"
    )


def handshake_error(
    ev: ErrorEvent, config: HydraConfig, *, close_code: int | None
) -> HydraHandshakeError:
    """The error for an ``error`` event during the handshake: ``server_full`` (retryable; read
    the close that follows first and pass its ``close_code``), a rejected voice, or another."""
    if ev.code == "server_full":
        return HydraServerFullError(
            f"Hydra is at capacity (error server_full: {redact(ev.message)}; "
            f"close {close_code}); back off and retry",
            close_code=close_code,
        )
    if (ev.param or "").endswith("voice"):
        voice = config.session_payload().get("voice")
        return HydraVoiceError(
            f"Hydra rejected voice {voice!r} on {config.model} ({ev.code}: "
            f"{redact(ev.message)}); valid voices for {config.model}: "
            f"{', '.join(VOICES.get(config.model, ()))}"
        )
    return HydraHandshakeError(f"Hydra error during handshake: {ev.code}: {redact(ev.message)}")


def rate_note(ev: SessionConfigured) -> str | None:
    """The note to record when ``session.configured`` announced no usable output rate."""
    if ev.announced_rate_hz is not None:
        return None
    raw = ev.session.get("output_audio_sample_rate")
    return (
        "session.configured announced no usable output_audio_sample_rate "
        f"({raw!r}); assuming the documented {DEFAULT_OUTPUT_RATE_HZ} Hz"
    )


@dataclass
class _Stats:
    frames_in: int = 0
    frames_out: int = 0
    audio_bytes_out: int = 0
    warnings: list[dict[str, Any]] = field(default_factory=list)
    connects: int = 0
    tokens_minted: int = 0
    rejected_in: int = 0  # frames dropped unparsed (not a JSON object with a string type)


class ConfiguredSession:
    """What a model session knows from its configuration and its ``session.configured`` —
    shared by :class:`HydraClient` and the simulator's session (:mod:`hydralab.sim`)."""

    config: HydraConfig
    configured: SessionConfigured | None

    @property
    def announced_rate_hz(self) -> int | None:
        """The output rate ``session.configured`` announced (``None``: none; 48 kHz assumed)."""
        return self.configured.announced_rate_hz if self.configured is not None else None

    @property
    def requested_voice(self) -> str | None:
        voice = self.config.session_payload().get("voice")
        return voice if isinstance(voice, str) else None

    @property
    def echoed_voice(self) -> str | None:
        """The voice ``session.configured`` echoed."""
        return self.configured.voice if self.configured is not None else None


class HydraClient(ConfiguredSession):
    """One Hydra session. Use ``async with HydraClient(cfg) as c:`` then ``async for ev in c``."""

    def __init__(
        self,
        config: HydraConfig,
        *,
        api_key: str | Secret | None = None,
        frame_logger: FrameLogger | None = None,
        now_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        install_log_redaction()  # idempotent: websockets' DEBUG lines carry the URL's key
        self.config = config
        self._key = get_api_key(api_key)
        self._token: Secret | None = None
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
        self.notes: list[str] = []
        self._ids = SentEventIds(uuid.uuid4().hex[:6])

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
        secret = self._token if self._token is not None else self._key
        if secret:
            q["api_key"] = secret.reveal()
        return f"{self.config.url}?{urlencode(q)}"

    async def _mint_token(self) -> Secret:
        """``POST`` the key to the token endpoint; the ``access_token``, registered as a Secret."""
        cfg = self.config
        if not self._key:
            raise HydraAuthError(
                "use_token=True needs an API key to mint a token: set SMALLEST_API_KEY"
            )
        try:
            async with httpx.AsyncClient(timeout=cfg.open_timeout_s) as http:
                resp = await http.post(
                    cfg.token_url,
                    headers={"Authorization": f"Bearer {self._key.reveal()}"},
                    json={"ttl_seconds": cfg.token_ttl_s},
                )
        except httpx.HTTPError as exc:
            raise HydraTokenError(
                f"cannot get a token from {redact(cfg.token_url)}: "
                f"{type(exc).__name__}: {redact(str(exc))}"
            ) from None
        code = resp.status_code
        if code in (401, 403):
            raise HydraAuthError(
                f"the token endpoint rejected the API key (HTTP {code}); check SMALLEST_API_KEY"
            )
        if not 200 <= code < 300:
            raise HydraTokenError(
                f"the token endpoint answered HTTP {code}: {redact(resp.text[:200])!r}"
            )
        try:
            data = resp.json()
        except ValueError:
            data = None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise HydraTokenError("the token endpoint's answer has no access_token")
        secret = Secret(token)  # registered: redact() masks it from here on
        self.stats.tokens_minted += 1
        return secret

    def _reset(self) -> None:
        """Forget the previous socket's session (``connect`` may be called again to reconnect)."""
        self._ws = None
        self._configured = asyncio.Event()
        self._backlog = []
        self.session_id = None
        self.configured = None
        self.output_rate_hz = DEFAULT_OUTPUT_RATE_HZ
        self.configure_bytes = 0

    async def connect(self) -> SessionConfigured:
        """Open the socket and run the handshake; returns the ``session.configured`` event.

        May be called again after the socket ended, for a new session (Hydra has no resume).

        Raises:
            ValueError: The voice of a precomputed ``session`` is not in the model's roster.
            HydraAuthError: The key (or token) was refused.
            HydraTokenError: ``use_token`` and no token could be obtained.
            HydraServerFullError: Hydra is at capacity (``server_full`` / 1013): retry later.
            HydraHandshakeError: Another ``error``, an early close, or no ``session.configured``
                within ``handshake_timeout_s``.
            HydraConnectionError: The socket could not be opened.
        """
        voice = self.config.session_payload().get("voice")
        if self.config.check_voices:
            check_voice(self.config.model, voice if isinstance(voice, str) else None)
        if self._ws is not None:
            await self.close()
        self._reset()
        self.stats.connects += 1
        if self.config.use_token:
            self._token = await self._mint_token()
        try:
            self._ws = await connect(
                self._url(),
                compression=None,
                max_size=MAX_MODEL_FRAME_BYTES,
                open_timeout=self.config.open_timeout_s,
            )
        except InvalidStatus as exc:
            code = exc.response.status_code
            if code == 401:
                what = "short-lived token" if self._token is not None else "API key"
                raise HydraAuthError(
                    f"Hydra rejected the {what} (HTTP 401 at the WebSocket upgrade); "
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
                raise handshake_closed_error(self.close_code, self.close_reason)
            match ev:
                case WarningEvent():
                    self.stats.warnings.append(ev.to_dict())
                case ErrorEvent():
                    if ev.code == "server_full":
                        await self._wait_closed(timeout_s=1.0)  # the documented close 1013 follows
                    raise handshake_error(ev, self.config, close_code=self.close_code)
                case SessionCreated():
                    self.session_id = ev.session_id
                    if not sent:
                        configure = self._stamp(configure)
                        text, logged = encode_client_event(configure)
                        self.configure_bytes = len(text.encode("utf-8"))
                        sent = True
                        # Closed meanwhile (e.g. server_full right after session.created): the
                        # frames still buffered and the close code tell why; read on.
                        with contextlib.suppress(HydraConnectionError):
                            await self._send_text(text, logged)
                case SessionConfigured():
                    self.configured = ev
                    self.output_rate_hz = ev.output_rate_hz
                    note = rate_note(ev)
                    if note is not None:
                        self.notes.append(note)
                    self._configured.set()
                    return ev
                case _:
                    self._backlog.append(ev)

    # ------------------------------------------------------------------ send / receive
    async def _send_text(self, text: str, logged: dict[str, Any], *, elided: bool = False) -> None:
        if self._ws is None:
            raise HydraConnectionError("not connected")
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise HydraConnectionError(f"Hydra socket closed: {exc.rcvd or exc}") from None
        self.stats.frames_out += 1
        if self._log is not None:
            self._log("out", logged if elided else elide_frame(logged), self._now_ns())

    def _stamp(self, event: HydraEvent) -> Any:
        """``event`` with a client ``event_id`` (kept when set), remembered so that a server
        ``error`` naming it (``error.event_id``) can be matched to the frame that caused it."""
        return self._ids.stamp(event)

    def sent_type(self, event_id: str | None) -> str | None:
        """The type of the recent client frame with this ``event_id`` (``None`` if unknown)."""
        return self._ids.sent_type(event_id)

    async def send(self, event: HydraEvent) -> None:
        """Send one client event (audio only after ``session.configured``), with an
        ``event_id``."""
        if isinstance(event, InputAudioBufferAppend) and not self._configured.is_set():
            raise HydraError("audio before session.configured would be dropped by Hydra")
        text, d = encode_client_event(self._stamp(event))
        await self._send_text(text, d)

    async def send_audio(self, pcm16k: npt.NDArray[np.int16]) -> None:
        """PCM16 mono 16 kHz → ``input_audio_buffer.append``."""
        if not self._configured.is_set():
            raise HydraError("audio before session.configured would be dropped by Hydra")
        text, logged = encode_append(self._ids.next_id(_APPEND_TYPE), pcm16k)
        await self._send_text(text, logged, elided=True)
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
            rx = parse_server_frame(frame)
            if rx.event is None:
                self.stats.rejected_in += 1
            if self._log is not None:
                self._log("in", rx.logged, t)
            if rx.event is None:
                continue
            return rx.event

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

    async def _wait_closed(self, *, timeout_s: float) -> None:
        """Read (and log) frames until the server closes the socket, for at most ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while await self._recv() is not None:
                    pass

    @property
    def close_code(self) -> int | None:
        """Close code once the socket has ended (``None`` while open or before connecting;
        1006 if it ended without a close frame). 1009 when this side closed it for a frame over
        :data:`MAX_MODEL_FRAME_BYTES`: websockets then reports 1006 (the server's echo of the
        close is never read), which would pass for a dropped network and be reconnected."""
        if self._ws is None:
            return None
        sent = self._ws.protocol.close_sent
        if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
            return int(CloseCode.MESSAGE_TOO_BIG)
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        """Close reason once the socket has ended (``None`` while open or before connecting)."""
        return None if self._ws is None else self._ws.close_reason

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
