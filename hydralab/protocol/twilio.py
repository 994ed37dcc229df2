"""Twilio Media Streams frames, both directions (``docs/hydra-facts.md``, "The caller side").

Accepts EVA's minimal variant (``conversation_id``, no ``streamSid``) and canonical Twilio frames.
``user_speech_start`` / ``user_speech_stop`` carry epoch milliseconds as a string; hydralab's
caller stamps both on the wall clock (EVA's simulator stamps ``stop`` on the monotonic clock, so
values that are not plausible epoch times are reported as ``None``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FRAME_BYTES",
    "TURN_END_MARK_PREFIX",
    "Clear",
    "Connected",
    "Mark",
    "Media",
    "Start",
    "Stop",
    "TwilioEvent",
    "TwilioFrameError",
    "TwilioUnknown",
    "UserSpeechStart",
    "UserSpeechStop",
    "clear_frame",
    "connected_frame",
    "mark_frame",
    "media_frame",
    "parse_twilio",
    "start_frame",
    "stop_frame",
    "turn_end_mark",
    "user_speech_frame",
]

FRAME_BYTES = 160
"""20 ms of 8 kHz μ-law."""

TURN_END_MARK_PREFIX = "hydralab:turn_end:"
"""A ``mark`` named ``hydralab:turn_end:<k>`` follows the last frame of assistant turn ``k``."""


def turn_end_mark(index: int) -> str:
    """Name of the mark the bridge sends after the last frame of assistant turn ``index``."""
    return f"{TURN_END_MARK_PREFIX}{index}"


_MIN_EPOCH_MS = 1_000_000_000_000  # 2001-09-09: anything smaller is not an epoch-ms stamp


class TwilioFrameError(ValueError):
    """A frame that is not a JSON object with an ``event`` (or ``type``) string."""


@dataclass(frozen=True)
class TwilioEvent:
    stream_sid: str | None = field(default=None, kw_only=True)
    raw: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False, compare=False)


@dataclass(frozen=True)
class Connected(TwilioEvent):
    protocol: str | None = None


@dataclass(frozen=True)
class Start(TwilioEvent):
    call_sid: str | None = None
    media_format: dict[str, Any] | None = None


@dataclass(frozen=True)
class Media(TwilioEvent):
    payload: bytes = b""
    track: str | None = None


@dataclass(frozen=True)
class UserSpeechStart(TwilioEvent):
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class UserSpeechStop(TwilioEvent):
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Mark(TwilioEvent):
    name: str = ""


@dataclass(frozen=True)
class Clear(TwilioEvent):
    pass


@dataclass(frozen=True)
class Stop(TwilioEvent):
    pass


@dataclass(frozen=True)
class TwilioUnknown(TwilioEvent):
    event: str = ""


def _epoch_ms(v: Any) -> int | None:
    try:
        ms = int(float(v))
    except (TypeError, ValueError, OverflowError):
        return None
    return ms if ms >= _MIN_EPOCH_MS else None


def _obj(d: dict[str, Any], key: str) -> dict[str, Any]:
    """The nested object ``d[key]`` (absent or ``null``: empty); anything else is an error."""
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise TwilioFrameError(f"{key} is {type(v).__name__}, not an object")
    return v


def _str(v: Any) -> str | None:
    """A string field: strings as they are, numbers as text, anything else ``None``."""
    if isinstance(v, str):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    return None


def parse_twilio(frame: str | bytes) -> TwilioEvent:
    """Parse one text frame from either side of a Twilio media stream.

    A binary frame is parsed when it holds UTF-8 JSON text. Identifiers given as numbers are
    taken as text; identifiers and strings of another type are ignored (``None``).

    Raises:
        TwilioFrameError: not JSON (nested too deeply included), not an object, or no
            ``event``/``type`` string; a ``media``, ``start`` or ``mark`` that is not an object;
            or a media payload that is not a base64 string. Nothing else is raised.
    """
    try:
        d = json.loads(frame)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if isinstance(frame, bytes | bytearray):
            raise TwilioFrameError(
                f"binary frame is not UTF-8 JSON: {len(frame)} bytes, {exc}"
            ) from None
        raise TwilioFrameError(f"Twilio frame is not JSON: {exc}") from None
    except RecursionError:
        raise TwilioFrameError("Twilio frame is not JSON: nested too deeply") from None
    except (TypeError, ValueError) as exc:  # e.g. not str/bytes at all
        raise TwilioFrameError(f"Twilio frame is not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise TwilioFrameError("Twilio frame is not a JSON object")
    ev = d.get("event", d.get("type"))
    if not isinstance(ev, str):
        raise TwilioFrameError("Twilio frame has no 'event' string")
    nested = d.get("start")
    nested_sid = nested.get("streamSid") if isinstance(nested, dict) else None
    sid = _str(d.get("streamSid") or nested_sid or d.get("conversation_id"))
    match ev:
        case "connected":
            return Connected(protocol=_str(d.get("protocol")), stream_sid=sid, raw=d)
        case "start":
            start = _obj(d, "start")
            fmt = start.get("mediaFormat")
            return Start(
                call_sid=_str(start.get("callSid")),
                media_format=fmt if isinstance(fmt, dict) else None,
                stream_sid=sid,
                raw=d,
            )
        case "media":
            media = _obj(d, "media")
            b64 = media.get("payload")
            if b64 is None:
                b64 = ""
            if not isinstance(b64, str):
                raise TwilioFrameError(
                    f"media payload is {type(b64).__name__}, not a base64 string"
                )
            try:
                payload = base64.b64decode(b64, validate=True)
            except ValueError as exc:
                raise TwilioFrameError(f"media payload is not base64: {exc}") from None
            return Media(payload=payload, track=_str(media.get("track")), stream_sid=sid, raw=d)
        case "user_speech_start":
            return UserSpeechStart(
                timestamp_ms=_epoch_ms(d.get("timestamp_ms")), stream_sid=sid, raw=d
            )
        case "user_speech_stop":
            return UserSpeechStop(
                timestamp_ms=_epoch_ms(d.get("timestamp_ms")), stream_sid=sid, raw=d
            )
        case "mark":
            name = _obj(d, "mark").get("name", "")
            return Mark(name=_str(name) or "", stream_sid=sid, raw=d)
        case "clear":
            return Clear(stream_sid=sid, raw=d)
        case "stop":
            return Stop(stream_sid=sid, raw=d)
        case _:
            return TwilioUnknown(event=ev, stream_sid=sid, raw=d)


def _dumps(d: dict[str, Any]) -> str:
    return json.dumps(d, separators=(",", ":"))


def media_frame(stream_sid: str, ulaw: bytes) -> str:
    """Server → caller audio (EVA's ``create_twilio_media_message`` shape)."""
    payload = base64.b64encode(ulaw).decode("ascii")
    return _dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def clear_frame(stream_sid: str) -> str:
    return _dumps({"event": "clear", "streamSid": stream_sid})


def mark_frame(stream_sid: str, name: str) -> str:
    return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def connected_frame() -> str:
    return _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_frame(stream_sid: str, *, call_sid: str = "CAhydralab") -> str:
    return _dumps(
        {
            "event": "start",
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def user_speech_frame(stream_sid: str, *, started: bool, timestamp_ms: int) -> str:
    """``user_speech_start`` / ``user_speech_stop`` with an epoch-ms string, as EVA sends."""
    ev = "user_speech_start" if started else "user_speech_stop"
    return _dumps(
        {
            "event": ev,
            "streamSid": stream_sid,
            "conversation_id": stream_sid,
            "timestamp_ms": str(int(timestamp_ms)),
        }
    )


def stop_frame(stream_sid: str) -> str:
    return _dumps({"event": "stop", "streamSid": stream_sid})
