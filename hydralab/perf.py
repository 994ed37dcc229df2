"""Keeping the event loop's time exact: the garbage collector during calls.

A full collection of a process holding a few hundred thousand objects (numpy, websockets, the
modules themselves) stops the event loop for 50–60 ms on this project's 2-core reference
machine — long enough for the bridge's 20 ms pacer to wake late and the caller to hear a gap.
:func:`steady_gc` collects once before a call and moves everything alive then into the
collector's permanent generation (:func:`gc.freeze`), so the collections during the call scan
only what the call itself created.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["steady_gc"]

_lock = threading.Lock()
_depth = 0


@contextlib.contextmanager
def steady_gc() -> Iterator[None]:
    """Around a call (or a server's life): collect, freeze what is alive, unfreeze at the end.

    Re-entrant and shared by overlapping calls in one process: the first to enter collects
    and freezes; later ones only count (freezing again would keep the garbage of the calls in
    between forever, and collecting again would stall the calls in flight); the last to leave
    unfreezes. A no-op while the collector is disabled.
    """
    global _depth
    with _lock:
        first = _depth == 0
        _depth += 1
        if first and gc.isenabled():
            gc.collect()
            gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()
