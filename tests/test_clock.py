"""The session clock and its manual twin."""

from __future__ import annotations

import time

import pytest

from hydralab.clock import Clock, ClockLike, ManualClock


def test_clock_is_monotonic_and_anchored_once() -> None:
    before_mono = time.monotonic_ns()
    before_wall = time.time_ns()
    clock = Clock()
    after_wall = time.time_ns()
    assert clock.t0_ns >= before_mono
    a, b = clock.now_ns(), clock.now_ns()
    assert clock.t0_ns <= a <= b
    # The wall anchor was read at construction.
    assert before_wall // 1_000_000 <= clock.epoch_ms(clock.t0_ns) <= after_wall // 1_000_000
    # Later stamps map through the anchor with integer arithmetic, independent of time.time().
    t = clock.t0_ns + 1_234_567_891
    assert clock.epoch_ms(t) - clock.epoch_ms(clock.t0_ns) in (1234, 1235)
    assert clock.epoch_ms(t + 1_000_000) == clock.epoch_ms(t) + 1
    assert clock.epoch_ms(t) == (clock.anchor_epoch_ns + t - clock.t0_ns) // 1_000_000
    assert isinstance(clock.epoch_ms(t), int)
    assert clock.epoch_s(t) == pytest.approx(clock.epoch_ms(t) / 1000, abs=1e-3)
    assert isinstance(clock, ClockLike)


def test_clock_now_tracks_wall_time() -> None:
    clock = Clock()
    drift_ms = clock.epoch_ms(clock.now_ns()) - time.time_ns() // 1_000_000
    assert abs(drift_ms) < 1000


def test_manual_clock() -> None:
    clock = ManualClock()
    assert clock.t0_ns == 0 and clock.now_ns() == 0
    assert clock.epoch_ms(0) == 1_700_000_000_000
    assert clock.advance(1_500_000) == 1_500_000
    assert clock.epoch_ms(clock.now_ns()) == 1_700_000_000_001  # floored to whole ms
    assert clock.epoch_ms(999_999) == 1_700_000_000_000
    assert clock.set(2_000_000_000) == 2_000_000_000
    assert clock.now_ns() == 2_000_000_000
    assert clock.epoch_ms(clock.now_ns()) == 1_700_000_002_000
    assert clock.epoch_s(clock.now_ns()) == pytest.approx(1_700_000_002.0)
    assert isinstance(clock, ClockLike)


def test_manual_clock_custom_origin_and_no_going_back() -> None:
    clock = ManualClock(start_ns=10_000, epoch_ms_at_start=5)
    assert clock.t0_ns == 10_000 == clock.now_ns()
    assert clock.epoch_ms(10_000 + 3_000_000) == 8
    clock.advance(0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(9_999)
    assert clock.now_ns() == 10_000
