"""Hydra wire events (client and server), parsed into frozen dataclasses.

Each dataclass is named after its wire ``type`` and its fields are the wire keys, so
``parse_event(json.loads(ev.dumps())) == ev``. Nested objects (``session``, ``response``,
``item``, ``error``) stay plain dicts with typed convenience properties. A frame of an unknown
type is kept whole as :class:`UnknownEvent`; it is never dropped or raised.

Sources: ``../shared/reference/hydra-ws.yaml`` (AsyncAPI) and ``hydra-protocol.md`` §A, which adds
the undocumented ``response.output_audio_transcript.delta`` and the ``output_audio_sample_rate``
echo in ``session.configured``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "CLIENT_EVENTS",
    "DEFAULT_OUTPUT_RATE_HZ",
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
    "decode_pcm16",
    "encode_pcm16",
    "parse_event",
]

INPUT_RATE_HZ = 16_000
"""Hydra's input: PCM16 LE mono at 16 kHz."""
DEFAULT_OUTPUT_RATE_HZ = 48_000
"""Hydra's documented output rate; ``session.configured`` may announce another."""


class ProtocolError(ValueError):
    """A frame that is not a JSON object with a string ``type``."""


def encode_pcm16(pcm: npt.NDArray[np.int16]) -> str:
    """Base64 of PCM16 little-endian samples."""
    return base64.b64encode(np.ascontiguousarray(pcm, dtype="<i2").tobytes()).decode("ascii")


def decode_pcm16(b64: str, *, carry: bytes = b"") -> tuple[npt.NDArray[np.int16], bytes]:
    """Decode base64 PCM16 LE; an odd trailing byte is returned to carry into the next delta."""
    data = carry + base64.b64decode(b64)
    n = len(data) // 2 * 2
    return np.frombuffer(data[:n], dtype="<i2").astype(np.int16), data[n:]


@dataclass(frozen=True)
class HydraEvent:
    """Base of every Hydra event. ``type`` is a class constant, not a field."""

    type: ClassVar[str] = ""
    event_id: str | None = field(default=None, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """The wire dict: ``type`` first, then every field that is not ``None``."""
        out: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = v
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
    def output_rate_hz(self) -> int:
        """Announced output rate (``output_audio_sample_rate``), else the documented 48 kHz."""
        v = self.session.get("output_audio_sample_rate")
        return int(v) if isinstance(v, int | float) and v > 0 else DEFAULT_OUTPUT_RATE_HZ


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
    """Undocumented phrase-level assistant text (hydra-protocol.md §A.4); optional."""

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
        u = self.response.get("usage") or {}
        return {k: int(v) for k, v in u.items() if isinstance(v, int | float)}

    @property
    def function_calls(self) -> list[dict[str, Any]]:
        out = self.response.get("output") or []
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


@dataclass(frozen=True)
class UnknownEvent(HydraEvent):
    """A frame whose ``type`` hydralab does not know; ``raw`` is the whole frame."""

    raw: dict[str, Any] = field(default_factory=dict)

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


def parse_event(frame: str | bytes | dict[str, Any]) -> HydraEvent:
    """Parse one frame. Unknown types keep the whole frame as :class:`UnknownEvent`.

    Keys a known type does not define are not kept on the dataclass; the shells log every raw
    frame to ``events.jsonl``, so nothing is lost.

    Raises:
        ProtocolError: the frame is not JSON, not an object, or has no string ``type``.
    """
    if isinstance(frame, dict):
        d = frame
    else:
        try:
            d = json.loads(frame)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        raise ProtocolError("frame is not a JSON object with a string 'type'")
    cls = _BY_TYPE.get(d["type"])
    if cls is None:
        return UnknownEvent(raw=d, event_id=d.get("event_id"))
    names = _FIELDS[cls]
    kwargs = {k: v for k, v in d.items() if k in names}
    try:
        return cls(**kwargs)
    except TypeError:
        return UnknownEvent(raw=d, event_id=d.get("event_id"))
