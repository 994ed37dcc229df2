"""Hydra wire events (client and server), parsed into frozen dataclasses.

Each dataclass is named after its wire ``type`` and its fields are the wire keys, so
``parse_event(ev.dumps()) == ev``. Nested objects (``session``, ``response``, ``item``,
``error``) stay plain dicts with typed convenience properties. :func:`parse_event` is lenient
where the docs allow more than one shape (an ``error`` given as a plain string, numeric ids,
``null`` objects; and tool ``arguments`` sent as an object rather than its JSON text) and keeps
keys a type does not define in :attr:`HydraEvent.extra`. A frame of an unknown type, or of a
known type with a field of an unusable type (``malformed`` set), comes back as
:class:`UnknownEvent` holding the whole frame; only a frame that is not a JSON object with a
string ``type`` raises :class:`ProtocolError`.

Sources: the AsyncAPI description of the socket and Smallest's Hydra pages
(https://docs.smallest.ai/waves/documentation/speech-to-speech-hydra/overview), plus two things
they do not document: ``response.output_audio_transcript.delta`` and the
``output_audio_sample_rate`` echo in ``session.configured`` (``docs/hydra-facts.md``, "Events
beyond the AsyncAPI description").
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "CLIENT_EVENTS",
    "DEFAULT_OUTPUT_RATE_HZ",
    "EVENT_ID_LEN",
    "INPUT_RATE_HZ",
    "SERVER_EVENTS",
    "ConversationItemAdded",
    "ConversationItemCreate",
    "ConversationItemDone",
    "ErrorEvent",
    "FunctionCallArgumentsDelta",
    "FunctionCallArgumentsDone",
    "HydraEvent",
    "InputAudioBufferAppend",
    "ProtocolError",
    "ResponseCancel",
    "ResponseCreate",
    "ResponseCreated",
    "ResponseDone",
    "ResponseOutputAudioDelta",
    "ResponseOutputAudioDone",
    "ResponseOutputAudioTranscriptDelta",
    "SessionConfigure",
    "SessionConfigured",
    "SessionCreated",
    "SessionUpdate",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "UnknownEvent",
    "WarningEvent",
    "client_event_id",
    "decode_pcm16",
    "encode_pcm16",
    "parse_event",
]

INPUT_RATE_HZ = 16_000
"""Hydra's input: PCM16 LE mono at 16 kHz."""
DEFAULT_OUTPUT_RATE_HZ = 48_000
"""Hydra's documented output rate; ``session.configured`` may announce another."""


EVENT_ID_LEN = 18
"""Length of hydralab's client ``event_id``s (``evt_`` + 14 hex digits): fixed, so the
configure budget counts the exact bytes of the frame that is sent."""


def client_event_id(prefix: str, n: int) -> str:
    """Client ``event_id`` number ``n`` of a client whose ``prefix`` is 6 hex digits."""
    eid = f"evt_{prefix[:6]:0>6}{n & 0xFFFFFFFF:08x}"
    assert len(eid) == EVENT_ID_LEN
    return eid


class ProtocolError(ValueError):
    """A frame that is not a JSON object with a string ``type``."""


def encode_pcm16(pcm: npt.NDArray[np.int16]) -> str:
    """Base64 of PCM16 little-endian samples."""
    return base64.b64encode(np.ascontiguousarray(pcm, dtype="<i2").tobytes()).decode("ascii")


_B64_SPACE = str.maketrans("", "", " \t\r\n")


def decode_pcm16(
    b64: str, *, carry: bytes = b"", validate: bool = False
) -> tuple[npt.NDArray[np.int16], bytes]:
    """Decode base64 PCM16 LE; an odd trailing byte is returned to carry into the next delta.

    ``validate``: characters outside the base64 alphabet (whitespace aside) raise instead of
    being skipped.

    Raises:
        ValueError: not base64 (bad padding; with ``validate``, a character outside the
            alphabet).
    """
    try:
        raw = base64.b64decode(b64, validate=validate)
    except ValueError as exc:  # binascii.Error
        if not validate:
            raise ValueError(f"audio is not base64: {exc}") from None
        try:  # whitespace is allowed: strip it (rare, and a copy of the text) and try again
            raw = base64.b64decode(b64.translate(_B64_SPACE), validate=True)
        except ValueError as exc2:
            raise ValueError(f"audio is not base64: {exc2}") from None
    data = carry + raw
    n = len(data) // 2 * 2
    return np.frombuffer(data[:n], dtype="<i2").astype(np.int16), data[n:]


@dataclass(frozen=True)
class HydraEvent:
    """Base of every Hydra event. ``type`` is a class constant, not a field."""

    type: ClassVar[str] = ""
    event_id: str | None = field(default=None, kw_only=True)
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, compare=False, repr=False)
    """Keys of the frame that this event type does not define, kept as received."""

    def to_dict(self) -> dict[str, Any]:
        """The wire dict: ``type`` first, then every field that is not ``None``, then
        :attr:`extra`."""
        out: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = v
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    def dumps(self) -> str:
        """Serialized JSON text frame (UTF-8 kept as is, compact separators)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------- client → server


@dataclass(frozen=True)
class SessionConfigure(HydraEvent):
    type: ClassVar[str] = "session.configure"
    session: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionUpdate(HydraEvent):
    type: ClassVar[str] = "session.update"
    session: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InputAudioBufferAppend(HydraEvent):
    """``audio`` is base64 PCM16 LE mono 16 kHz."""

    type: ClassVar[str] = "input_audio_buffer.append"
    audio: str = ""

    @classmethod
    def from_pcm(cls, pcm: npt.NDArray[np.int16]) -> InputAudioBufferAppend:
        return cls(audio=encode_pcm16(pcm))


@dataclass(frozen=True)
class ConversationItemCreate(HydraEvent):
    type: ClassVar[str] = "conversation.item.create"
    item: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def function_call_output(cls, call_id: str, output: str) -> ConversationItemCreate:
        """Only the documented fields: ``type``, ``call_id``, ``output``."""
        return cls(item={"type": "function_call_output", "call_id": call_id, "output": output})


@dataclass(frozen=True)
class ResponseCreate(HydraEvent):
    type: ClassVar[str] = "response.create"
    response: dict[str, Any] | None = None


@dataclass(frozen=True)
class ResponseCancel(HydraEvent):
    type: ClassVar[str] = "response.cancel"
    response_id: str | None = None


# ---------------------------------------------------------------- server → client


@dataclass(frozen=True)
class WarningEvent(HydraEvent):
    type: ClassVar[str] = "warning"
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class SessionCreated(HydraEvent):
    type: ClassVar[str] = "session.created"
    session_id: str | None = None


@dataclass(frozen=True)
class SessionConfigured(HydraEvent):
    type: ClassVar[str] = "session.configured"
    session: dict[str, Any] = field(default_factory=dict)

    @property
    def announced_rate_hz(self) -> int | None:
        """``output_audio_sample_rate`` as announced — a JSON number or a numeric string
        (``24000`` / ``"24000"``) — or ``None`` when absent or not a positive whole number."""
        v = self.session.get("output_audio_sample_rate")
        if isinstance(v, bool):
            return None
        if isinstance(v, str):
            try:
                v = float(v.strip())
            except ValueError:
                return None
        if isinstance(v, int | float) and v > 0 and float(v).is_integer():
            return int(v)
        return None

    @property
    def output_rate_hz(self) -> int:
        """Announced output rate, else the documented 48 kHz."""
        return self.announced_rate_hz or DEFAULT_OUTPUT_RATE_HZ

    @property
    def voice(self) -> str | None:
        """The voice the server applied (echoed in ``session.voice``)."""
        v = self.session.get("voice")
        return v if isinstance(v, str) else None


@dataclass(frozen=True)
class SessionUpdated(HydraEvent):
    type: ClassVar[str] = "session.updated"
    session: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpeechStarted(HydraEvent):
    type: ClassVar[str] = "input_audio_buffer.speech_started"
    audio_start_ms: int | None = None
    item_id: str | None = None


@dataclass(frozen=True)
class SpeechStopped(HydraEvent):
    type: ClassVar[str] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int | None = None
    item_id: str | None = None


@dataclass(frozen=True)
class ConversationItemAdded(HydraEvent):
    type: ClassVar[str] = "conversation.item.added"
    previous_item_id: str | None = None
    item: dict[str, Any] | None = None


@dataclass(frozen=True)
class ConversationItemDone(HydraEvent):
    type: ClassVar[str] = "conversation.item.done"
    previous_item_id: str | None = None
    item: dict[str, Any] | None = None


@dataclass(frozen=True)
class ResponseCreated(HydraEvent):
    type: ClassVar[str] = "response.created"
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def response_id(self) -> str | None:
        rid = self.response.get("id")
        return str(rid) if rid is not None else None


@dataclass(frozen=True)
class ResponseOutputAudioDelta(HydraEvent):
    """``delta`` is base64 PCM16 at the negotiated output rate (some clients send ``audio``)."""

    type: ClassVar[str] = "response.output_audio.delta"
    response_id: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    content_index: int | None = None
    delta: str | None = None
    audio: str | None = None

    @property
    def payload(self) -> str:
        return self.delta if self.delta is not None else (self.audio or "")


@dataclass(frozen=True)
class ResponseOutputAudioDone(HydraEvent):
    type: ClassVar[str] = "response.output_audio.done"
    response_id: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    content_index: int | None = None


@dataclass(frozen=True)
class ResponseOutputAudioTranscriptDelta(HydraEvent):
    """Undocumented phrase-level assistant text (``docs/hydra-facts.md``); optional."""

    type: ClassVar[str] = "response.output_audio_transcript.delta"
    response_id: str | None = None
    item_id: str | None = None
    delta: str = ""


@dataclass(frozen=True)
class FunctionCallArgumentsDelta(HydraEvent):
    type: ClassVar[str] = "response.function_call_arguments.delta"
    response_id: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    call_id: str = ""
    name: str | None = None
    delta: str = ""


@dataclass(frozen=True)
class FunctionCallArgumentsDone(HydraEvent):
    type: ClassVar[str] = "response.function_call_arguments.done"
    response_id: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    call_id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class ResponseDone(HydraEvent):
    type: ClassVar[str] = "response.done"
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def response_id(self) -> str | None:
        rid = self.response.get("id")
        return str(rid) if rid is not None else None

    @property
    def status(self) -> str:
        return str(self.response.get("status") or "completed")

    @property
    def reason(self) -> str | None:
        details = self.response.get("status_details") or {}
        r = details.get("reason") if isinstance(details, dict) else None
        return str(r) if r is not None else None

    @property
    def usage(self) -> dict[str, int]:
        u = self.response.get("usage")
        if not isinstance(u, dict):
            return {}
        return {
            k: int(v)
            for k, v in u.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }

    @property
    def function_calls(self) -> list[dict[str, Any]]:
        out = self.response.get("output")
        if not isinstance(out, list):
            return []
        return [i for i in out if isinstance(i, dict) and i.get("type") == "function_call"]


@dataclass(frozen=True)
class ErrorEvent(HydraEvent):
    type: ClassVar[str] = "error"
    error: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return str(self.error.get("code") or self.error.get("type") or "unknown")

    @property
    def message(self) -> str:
        return str(self.error.get("message") or "")

    @property
    def param(self) -> str | None:
        p = self.error.get("param")
        return str(p) if p is not None else None

    @property
    def caused_by(self) -> str | None:
        """``event_id`` of the client frame that caused the error, when the server says."""
        e = self.error.get("event_id")
        return str(e) if e is not None else None


@dataclass(frozen=True)
class UnknownEvent(HydraEvent):
    """A frame whose ``type`` hydralab does not know; ``raw`` is the whole frame."""

    raw: dict[str, Any] = field(default_factory=dict)
    malformed: str | None = None
    """Why a frame of a *known* type was not usable (a field of the wrong type), else ``None``."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)

    @property
    def wire_type(self) -> str:
        return str(self.raw.get("type", ""))


CLIENT_EVENTS: tuple[type[HydraEvent], ...] = (
    SessionConfigure,
    SessionUpdate,
    InputAudioBufferAppend,
    ConversationItemCreate,
    ResponseCreate,
    ResponseCancel,
)
SERVER_EVENTS: tuple[type[HydraEvent], ...] = (
    WarningEvent,
    SessionCreated,
    SessionConfigured,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    ConversationItemAdded,
    ConversationItemDone,
    ResponseCreated,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    ResponseDone,
    ErrorEvent,
)
_BY_TYPE: dict[str, type[HydraEvent]] = {c.type: c for c in CLIENT_EVENTS + SERVER_EVENTS}
_FIELDS: dict[type[HydraEvent], frozenset[str]] = {
    c: frozenset(f.name for f in dataclasses.fields(c)) for c in _BY_TYPE.values()
}


_TOKEN = re.compile(r"[a-z][a-z0-9_.]*")


def _kind(annotation: str) -> str:
    """``"dict"``, ``"str"``, ``"int"`` or ``""`` (anything) for a field annotation."""
    head = annotation.split("|")[0].strip()
    return {"dict[str, Any]": "dict", "str": "str", "int": "int"}.get(head, "")


_KINDS: dict[type[HydraEvent], dict[str, tuple[str, bool]]] = {
    c: {
        f.name: (_kind(str(f.type)), "None" in str(f.type))
        for f in dataclasses.fields(c)
        if f.name != "extra"
    }
    for c in _BY_TYPE.values()
}


def _normalize(cls: type[HydraEvent], d: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Keyword arguments for ``cls`` from frame ``d``, or a reason why a field is unusable.

    Shapes the docs allow are accepted: an ``error`` given as a plain string, ``response:
    null``, a ``warning`` whose code sits in a nested object, numbers where ids are expected;
    and one they do not, seen from OpenAI-shaped servers: a tool call's ``arguments`` sent as a
    JSON object instead of its text (taken as that object's JSON text). A number field that is
    not finite (``NaN``, ``Infinity``) is unusable.
    """
    kinds = _KINDS[cls]
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        if k not in kinds or k == "type":
            continue
        kind, nullable = kinds[k]
        if cls is FunctionCallArgumentsDone and k == "arguments" and isinstance(v, dict):
            # arguments sent as a JSON object instead of its text: the same call, taken as is
            try:
                v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError, RecursionError) as exc:
                return {}, f"arguments object is not JSON: {exc}"
        if v is None:
            if nullable:
                kwargs[k] = None
            continue  # a null object or string: the field's default
        if kind == "dict" and not isinstance(v, dict):
            if k == "error" and isinstance(v, str):
                v = {"message": v, "code": v if _TOKEN.fullmatch(v) else "unknown"}
            else:
                return {}, f"{k} is {type(v).__name__}, not an object"
        elif kind == "str" and not isinstance(v, str):
            if isinstance(v, int | float) and not isinstance(v, bool) and k.endswith("id"):
                v = str(v)
            else:
                return {}, f"{k} is {type(v).__name__}, not a string"
        elif kind == "int" and (isinstance(v, bool) or not isinstance(v, int | float)):
            return {}, f"{k} is {type(v).__name__}, not a number"
        elif kind == "int" and not math.isfinite(v):
            return {}, f"{k} is {v}, not a finite number"
        elif kind == "int":
            v = int(v)
        kwargs[k] = v
    if cls is WarningEvent and kwargs.get("code") is None:
        nested = d.get("warning") if isinstance(d.get("warning"), dict) else d.get("error")
        if isinstance(nested, dict):
            if isinstance(nested.get("code"), str):
                kwargs["code"] = nested["code"]
            if isinstance(nested.get("message"), str):
                kwargs.setdefault("message", nested["message"])
    return kwargs, None


def parse_event(frame: str | bytes | dict[str, Any]) -> HydraEvent:
    """Parse one frame. Unknown types keep the whole frame as :class:`UnknownEvent`.

    Keys a known type does not define are kept in :attr:`HydraEvent.extra`. A known type with a
    field of an unusable type becomes an :class:`UnknownEvent` whose ``malformed`` says why
    (the client counts it as rejected and the bridge skips it); it is not raised.

    Raises:
        ProtocolError: the frame is not JSON, not an object, or has no string ``type``.
    """
    if isinstance(frame, dict):
        d = frame
    else:
        try:
            d = json.loads(frame)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        raise ProtocolError("frame is not a JSON object with a string 'type'")
    cls = _BY_TYPE.get(d["type"])
    eid = d.get("event_id")
    eid = eid if isinstance(eid, str) else None
    if cls is None:
        return UnknownEvent(raw=d, event_id=eid)
    kwargs, bad = _normalize(cls, d)
    if bad is not None:
        return UnknownEvent(raw=d, event_id=eid, malformed=f"{d['type']}: {bad}")
    extra = {k: v for k, v in d.items() if k != "type" and k not in _KINDS[cls]}
    try:
        return cls(**kwargs, extra=extra)
    except TypeError as exc:
        return UnknownEvent(raw=d, event_id=eid, malformed=f"{d['type']}: {exc}")
