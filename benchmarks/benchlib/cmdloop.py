"""The command loop of the bench's child processes: JSON lines in on stdin, JSON lines out.

A child prints one ``ready`` line, then answers each request ``{"cmd": NAME, ...}`` with one
line ``{"ok": true, ...}`` (or ``{"ok": false, "error": ...}``). ``quit`` answers and ends the
process at once (``os._exit``: nothing runs after, e.g. no per-call post-processing); so does
the end of stdin (the parent went away). The protocol keeps a private copy of the original
stdout; ``sys.stdout`` is pointed at stderr so that nothing else can corrupt it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[..., Awaitable[dict[str, Any]]]

_proto = None


def _out() -> Any:
    global _proto
    if _proto is None:
        _proto = os.fdopen(os.dup(1), "w", buffering=1)
        sys.stdout = sys.stderr
    return _proto


def emit(obj: dict[str, Any]) -> None:
    f = _out()
    f.write(json.dumps(obj) + "\n")
    f.flush()


def _reader(loop: asyncio.AbstractEventLoop, q: asyncio.Queue[str | None]) -> None:
    for line in sys.stdin:
        loop.call_soon_threadsafe(q.put_nowait, line)
    loop.call_soon_threadsafe(q.put_nowait, None)


async def command_loop(
    handlers: dict[str, Handler],
    ready: dict[str, Any],
    on_quit: Callable[[], None] | None = None,
) -> None:
    """Announce ``ready`` and serve requests until ``quit`` or the end of stdin (``on_quit``
    runs first)."""
    _out()
    q: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_reader, args=(asyncio.get_running_loop(), q), daemon=True).start()
    emit({"ready": True, **ready})
    while True:
        line = await q.get()
        if line is None:
            if on_quit is not None:
                on_quit()
            os._exit(0)
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            name = req.pop("cmd")
        except (ValueError, KeyError, AttributeError) as exc:
            emit({"ok": False, "error": f"bad request: {exc}"})
            continue
        if name == "quit":
            if on_quit is not None:
                on_quit()
            emit({"ok": True})
            sys.stderr.flush()
            os._exit(0)
        try:
            res = await handlers[name](**req)
            emit({"ok": True, **res})
        except Exception as exc:
            emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
