"""The conversation so far, carried into a new Hydra session after a reconnect.

Hydra has no resume: after ``internal_error``/1011, 1013 or a dropped socket the new session
(new ``session_id``, new ``session.configure``) knows nothing of the call
(https://docs.smallest.ai — "Errors & reconnection": "There's no resume token"). The bridge
rebuilds the context by appending the transcript so far to the instructions, under
:data:`CONTEXT_HEADING`, within the configure budget; the oldest lines are dropped first when it
does not fit. The emulator resumes its script only when it finds this block.

Format (plain text, one line per message, newest last)::

    <instructions>

    ## Conversation so far
    The call was reconnected. ...
    User: I need to change my flight.
    Assistant: Sure, what's your confirmation number?
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

__all__ = [
    "CONTEXT_HEADING",
    "CONTEXT_PREAMBLE",
    "context_block",
    "parse_context",
    "strip_context",
    "with_context",
]

CONTEXT_HEADING = "## Conversation so far"
CONTEXT_PREAMBLE = (
    "The call was reconnected after a technical problem. Continue the conversation from "
    "where it stopped; do not greet the caller again and do not repeat completed actions."
)
_ROLES = {"user": "User", "assistant": "Assistant"}


def _line(role: str, text: str) -> str:
    return f"{_ROLES[role]}: {' '.join(text.split())}"


def context_block(messages: Iterable[tuple[str, str]]) -> str:
    """The block for ``messages`` (``(role, text)``, role ``user``/``assistant``), or ``""``
    when there is nothing to carry."""
    lines = [_line(r, t) for r, t in messages if r in _ROLES and t.strip()]
    if not lines:
        return ""
    return "\n\n" + "\n".join([CONTEXT_HEADING, CONTEXT_PREAMBLE, *lines])


def with_context(
    instructions: str, messages: Sequence[tuple[str, str]], *, max_bytes: int | None = None
) -> tuple[str, int]:
    """``instructions`` with the context block appended (any earlier block replaced).

    Args:
        instructions: The session's instructions.
        messages: ``(role, text)`` in conversation order.
        max_bytes: Upper bound on the bytes the block may add to the ``session.configure``
            frame (UTF-8, JSON escapes counted); the oldest messages are dropped first until it
            fits.

    Returns:
        ``(new instructions, number of messages kept)``.
    """
    base = strip_context(instructions)
    kept = list(messages)
    while True:
        block = context_block(kept)
        if max_bytes is None or _wire_len(block) <= max_bytes or not kept:
            if not block:
                return base, 0
            n = sum(1 for r, t in kept if r in _ROLES and t.strip())
            return base + block, n
        kept = kept[1:]


def _wire_len(text: str) -> int:
    """UTF-8 bytes of ``text`` inside a JSON string as the client sends it (escapes counted)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 2


def strip_context(instructions: str) -> str:
    """``instructions`` without a context block."""
    i = instructions.find("\n\n" + CONTEXT_HEADING)
    return instructions if i < 0 else instructions[:i]


def parse_context(instructions: str) -> list[tuple[str, str]] | None:
    """The ``(role, text)`` messages of the context block, or ``None`` when there is none."""
    i = instructions.find(CONTEXT_HEADING)
    if i < 0:
        return None
    out: list[tuple[str, str]] = []
    back = {v: k for k, v in _ROLES.items()}
    for line in instructions[i + len(CONTEXT_HEADING) :].splitlines():
        head, sep, text = line.partition(": ")
        if sep and head in back:
            out.append((back[head], text))
    return out
