"""Chain the identifiers a reference trace invented into the ones the live tools return.

EVA's itsm tools derive ids from content hashes (``INC4951eb12a732``, ``REQ-HW-7d67dd4e049f``),
while the reference traces were written with counter-style ids (``INC0048271``,
``REQ-HW-048271``). Replaying a trace verbatim therefore passes an id to a later call that the
live DB never had, and the call fails (``invalid_ticket_number_format``). EVA's own data test
replays traces "with hashed-ID chaining" (``docs/eva-format.md`` §6.3); :class:`IdChain` is that
step for hydralab: it learns ``trace id -> live id`` by walking a call's expected (trace) response
beside its live response, and rewrites later call arguments (and, for the written form, text).

Only identifier-like strings are learned: no whitespace, at least one digit, 4-64 characters,
and the two values must differ. Names, messages and dates are never mapped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["IdChain", "looks_like_id"]

_ID_RE = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9_\-./:]{3,63}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ].*)?$|^\d{1,2}:\d{2}(:\d{2})?$")


def looks_like_id(value: object) -> bool:
    """True for strings shaped like a generated identifier (``REQ-HW-048271``, ``INC0048271``)."""
    return isinstance(value, str) and bool(_ID_RE.match(value)) and not _DATE_RE.match(value)


class IdChain:
    """A ``trace id -> live id`` map, learned from response pairs and applied to later calls.

    Attributes:
        mapping: What was learned so far, in learning order.
    """

    def __init__(self) -> None:
        self.mapping: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.mapping)

    def learn(self, expected: Any, live: Any) -> dict[str, str]:
        """Walk ``expected`` (the trace's response) beside ``live``; return the new pairs.

        Dicts are matched by key and lists by position (only when both lists have the same
        length); leaf strings that both look like ids and differ become a mapping. A trace id
        already mapped keeps its first live value.
        """
        learned: dict[str, str] = {}

        def walk(a: Any, b: Any) -> None:
            if isinstance(a, Mapping) and isinstance(b, Mapping):
                for key in a:
                    if key in b:
                        walk(a[key], b[key])
            elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
                for x, y in zip(a, b, strict=True):
                    walk(x, y)
            elif (
                isinstance(a, str)
                and isinstance(b, str)
                and a != b
                and looks_like_id(a)
                and looks_like_id(b)
                and a not in self.mapping
            ):
                self.mapping[a] = b
                learned[a] = b

        walk(expected, live)
        return learned

    def apply(self, value: Any) -> Any:
        """A copy of ``value`` with every learned trace id replaced by its live id.

        Whole strings are replaced exactly; ids inside longer strings are replaced where they
        stand as a token (not inside a longer id). Keys are left alone.
        """
        if not self.mapping:
            return value
        if isinstance(value, str):
            if value in self.mapping:
                return self.mapping[value]
            out = value
            for old in sorted(self.mapping, key=len, reverse=True):
                if old in out:
                    out = re.sub(
                        rf"(?<![A-Za-z0-9]){re.escape(old)}(?![A-Za-z0-9])", self.mapping[old], out
                    )
            return out
        if isinstance(value, Mapping):
            return {k: self.apply(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.apply(v) for v in value]
        return value
