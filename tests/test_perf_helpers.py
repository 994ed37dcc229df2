"""The collector around calls (``hydralab.perf``) and the event log's flushing (``rundir``)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from hydralab import perf
from hydralab.perf import steady_gc
from hydralab.rundir import EVENTS_FLUSH_MS, RunWriter


@pytest.fixture(autouse=True)
def _no_call_in_flight() -> None:
    if perf._depth or gc.get_freeze_count():  # a server another test left running
        pytest.skip("the collector is held by a call or server in this process")


def test_steady_gc_freezes_once_for_overlapping_calls_and_unfreezes_after() -> None:
    with steady_gc():
        frozen = gc.get_freeze_count()
        assert frozen > 0  # the start-up objects are out of every collection
        junk = [[i] for i in range(1000)]  # the call's own objects stay collectable
        with steady_gc():  # a second call in the same process: no second freeze
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen  # the first call is still running
        del junk
    assert gc.get_freeze_count() == 0


def test_steady_gc_unfreezes_when_the_call_raises() -> None:
    try:
        with steady_gc():
            raise RuntimeError("the call failed")
    except RuntimeError:
        pass
    assert gc.get_freeze_count() == 0


def _rows_on_disk(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line)


def test_event_rows_reach_the_disk_within_the_flush_interval(tmp_path: Path) -> None:
    ms = 1_000_000
    writer = RunWriter(tmp_path, epoch_ms=lambda t: t // ms, t0_ns=0)
    events = tmp_path / "events.jsonl"
    writer.log("bridge", "-", {"type": "a"}, 10 * ms)
    writer.log("bridge", "-", {"type": "b"}, 20 * ms)
    assert _rows_on_disk(events) == 0  # buffered: younger than the interval
    writer.flush(50 * ms)
    assert _rows_on_disk(events) == 0
    writer.flush(EVENTS_FLUSH_MS * ms)  # the oldest unflushed row may now be that old
    assert _rows_on_disk(events) == 2
    writer.log("bridge", "-", {"type": "c"}, (EVENTS_FLUSH_MS + 10) * ms)
    writer.log("bridge", "-", {"type": "d"}, (2 * EVENTS_FLUSH_MS + 10) * ms)  # a row flushes
    assert _rows_on_disk(events) == 4
    writer.log("bridge", "-", {"type": "e"}, (2 * EVENTS_FLUSH_MS + 20) * ms)
    writer.close()  # the end of the call flushes everything
    rows = [json.loads(x) for x in events.read_text().splitlines()]
    assert [r["frame"]["type"] for r in rows] == ["a", "b", "c", "d", "e"]
