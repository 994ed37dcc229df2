"""API-key handling: read from the environment, never logged, printed, saved or raised."""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

__all__ = [
    "ENV_VAR",
    "RedactingFilter",
    "Secret",
    "get_api_key",
    "install_log_redaction",
    "may_hold_secret",
    "redact",
    "redact_known",
    "redact_obj",
]

ENV_VAR = "SMALLEST_API_KEY"

_QUERY_KEY = re.compile(r"(?i)((?:api_key|apikey|access_token|token|key)=)[^&\s\"']+")
_BEARER = re.compile(r"(?i)(bearer\s+|token\s+)[A-Za-z0-9._\-]{8,}")
_BEARER_HINT = re.compile(r"(?i)bearer|token")  # a cheap first look: most text has neither
_known: set[str] = set()
_known_json: set[str] = set()  # each known key as it appears inside a JSON string


class Secret:
    """A string that never shows itself in ``repr``/``str``/f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            _known.add(value)
            if len(value) >= 4:
                _known_json.add(json.dumps(value, ensure_ascii=False)[1:-1])

    def reveal(self) -> str:
        """The real value, for the one place that must put it on the wire."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"


def get_api_key(explicit: str | Secret | None = None, *, env_var: str = ENV_VAR) -> Secret:
    """The key given, else the environment's ``SMALLEST_API_KEY``, else an empty Secret."""
    if isinstance(explicit, Secret):
        return explicit
    if explicit:
        return Secret(explicit)
    return Secret(os.environ.get(env_var, ""))


def redact(text: str) -> str:
    """Masks ``api_key=…`` style query values, bearer tokens and every key seen by ``Secret``."""
    out = _QUERY_KEY.sub(r"\1***", text) if "=" in text else text
    if _BEARER_HINT.search(out):
        out = _BEARER.sub(r"\1***", out)
    for k in _known:
        if len(k) >= 4:
            out = out.replace(k, "***")
    return out


def may_hold_secret(json_text: str) -> bool:
    """Whether :func:`redact_obj` could change an object whose JSON (``ensure_ascii=False``)
    is ``json_text``: it holds an ``=``, ``bearer`` or ``token`` (JSON never escapes them), or
    a known key as JSON writes it. ``False`` means the text is safe as it is: the cheap check
    that lets a writer skip redacting every string of every row (most rows are audio frames)."""
    if "=" in json_text:
        return True
    # what _BEARER_HINT finds, found in the lower-cased text (a third of a case-blind regex's
    # time): each letter it matches lower-cases to the ASCII one (the Kelvin sign to "k")
    low = json_text.lower()
    if "bearer" in low or "token" in low:
        return True
    return any(k in json_text for k in _known_json)


def redact_known(text: str) -> str:
    """Masks only the keys seen by ``Secret`` — for free text (a transcript) where the
    ``key=``/``token …`` patterns of :func:`redact` would mask ordinary words."""
    for k in _known:
        if len(k) >= 4 and k in text:
            text = text.replace(k, "***")
    return text


def redact_obj(obj: Any) -> Any:
    """``redact`` applied to every string inside nested dicts/lists."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message through :func:`redact` (keeps the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error path
            return True
        red = redact(message)
        if red != message:
            record.msg, record.args = red, None
        return True


_FILTER = RedactingFilter()
WEBSOCKETS_LOGGERS = ("websockets.client", "websockets.server", "websockets")


def install_log_redaction() -> None:
    """Redact keys in the websockets library's own log lines (its DEBUG logs print the request
    line, query string included). Idempotent."""
    for name in WEBSOCKETS_LOGGERS:
        lg = logging.getLogger(name)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)
