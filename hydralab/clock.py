"""The session clock: one monotonic time base (ns) with a wall-clock anchor taken once.

Every event, frame and audio chunk is stamped with ``now_ns()``; epoch times in outputs are
derived from those stamps with :meth:`Clock.epoch_ms`, so they never jump when NTP adjusts the
wall clock mid-session.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ClockLike", "ManualClock"]

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


@runtime_checkable
class ClockLike(Protocol):
    """What the core and the shells need from a clock."""

    @property
    def t0_ns(self) -> int:
        """Monotonic time of construction (the session's time zero)."""
        ...

    def now_ns(self) -> int:
        """Current monotonic time in nanoseconds."""
        ...

    def epoch_ms(self, t_ns: int) -> int:
        """Unix epoch milliseconds (floored) of the monotonic time ``t_ns``."""
        ...

    def epoch_s(self, t_ns: int) -> float:
        """Unix epoch seconds of the monotonic time ``t_ns``."""
        ...


class Clock:
    """Real clock: ``time.monotonic_ns`` anchored once to ``time.time_ns``."""

    def __init__(self) -> None:
        self._anchor_mono_ns = time.monotonic_ns()
        self._anchor_epoch_ns = time.time_ns()
        self._t0_ns = self._anchor_mono_ns

    @property
    def t0_ns(self) -> int:
        """Monotonic time of construction."""
        return self._t0_ns

    @property
    def anchor_epoch_ns(self) -> int:
        """Wall-clock epoch ns read at construction, paired with :attr:`t0_ns`."""
        return self._anchor_epoch_ns

    def now_ns(self) -> int:
        """Current monotonic time in nanoseconds."""
        return time.monotonic_ns()

    def epoch_ms(self, t_ns: int) -> int:
        """Unix epoch milliseconds (floored) of the monotonic time ``t_ns``."""
        return (self._anchor_epoch_ns + (t_ns - self._anchor_mono_ns)) // _NS_PER_MS

    def epoch_s(self, t_ns: int) -> float:
        """Unix epoch seconds of the monotonic time ``t_ns``."""
        return (self._anchor_epoch_ns + (t_ns - self._anchor_mono_ns)) / _NS_PER_S


class ManualClock:
    """Deterministic clock for tests: time moves only by :meth:`advance` / :meth:`set`.

    Args:
        start_ns: monotonic time at construction (also :attr:`t0_ns`).
        epoch_ms_at_start: the wall-clock epoch milliseconds that ``start_ns`` maps to.
    """

    def __init__(self, start_ns: int = 0, epoch_ms_at_start: int = 1_700_000_000_000) -> None:
        self._t0_ns = int(start_ns)
        self._now_ns = int(start_ns)
        self._anchor_epoch_ns = int(epoch_ms_at_start) * _NS_PER_MS

    @property
    def t0_ns(self) -> int:
        """Monotonic time of construction."""
        return self._t0_ns

    def now_ns(self) -> int:
        """The current (manually driven) time in nanoseconds."""
        return self._now_ns

    def advance(self, ns: int) -> int:
        """Move time forward by ``ns`` (>= 0) and return the new time."""
        if ns < 0:
            raise ValueError(f"a monotonic clock cannot go back (advance by {ns} ns)")
        self._now_ns += int(ns)
        return self._now_ns

    def set(self, ns: int) -> int:
        """Set the current time to ``ns`` (not earlier than now) and return it."""
        if ns < self._now_ns:
            raise ValueError(f"a monotonic clock cannot go back ({ns} < {self._now_ns} ns)")
        self._now_ns = int(ns)
        return self._now_ns

    def epoch_ms(self, t_ns: int) -> int:
        """Unix epoch milliseconds (floored) of the monotonic time ``t_ns``."""
        return (self._anchor_epoch_ns + (t_ns - self._t0_ns)) // _NS_PER_MS

    def epoch_s(self, t_ns: int) -> float:
        """Unix epoch seconds of the monotonic time ``t_ns``."""
        return (self._anchor_epoch_ns + (t_ns - self._t0_ns)) / _NS_PER_S
