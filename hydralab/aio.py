"""Asyncio helpers shared by the blocking entry points (``run_record_sync``, ``run_batch_sync``).

No monkey-patching (no nest-asyncio): inside a running event loop (Jupyter) the coroutine runs
on a private loop in a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, from sync code or inside a loop.

    Without a running loop this is ``asyncio.run(coro)``. With one (a notebook cell), the
    coroutine runs with ``asyncio.run`` in a one-off worker thread and this call blocks until
    it finishes, so the caller's loop is neither re-entered nor patched.

    Args:
        coro: The coroutine to run (not yet awaited).

    Returns:
        The coroutine's result; its exception propagates.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hydralab") as pool:
        return pool.submit(asyncio.run, coro).result()
