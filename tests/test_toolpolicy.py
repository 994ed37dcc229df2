"""When ``response.create`` goes out after tool calls (pure, virtual time)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydralab.toolpolicy import ToolPolicy

MS = 1_000_000


def test_no_response_done_waits_only_the_settle_after_the_last_event() -> None:
    p = ToolPolicy(settle_ms=120)
    p.call_done("r1", "c1", 0)
    assert not p.due(10 * MS)  # unanswered
    p.output_sent("c1", 5 * MS)
    assert p.next_deadline_ns() == 120 * MS  # quiet for 120 ms since the response's last event
    assert not p.due(119 * MS) and p.due(120 * MS)
    req = p.sent(120 * MS)
    assert req.reason == "settled" and req.calls == 1 and req.wait_ms == pytest.approx(115)
    assert not p.pending and p.next_deadline_ns() is None


def test_response_done_means_no_wait_at_all() -> None:
    p = ToolPolicy(settle_ms=120)
    p.call_done("r1", "c1", 0)
    p.call_done("r1", "c2", 2 * MS)
    p.response_done("r1", 3 * MS)
    p.output_sent("c1", 4 * MS)
    assert not p.due(4 * MS)  # c2 still unanswered
    p.output_sent("c2", 6 * MS)
    assert p.due(6 * MS)
    req = p.sent(6 * MS)
    assert (req.reason, req.calls, req.wait_ms) == ("response_done", 2, 0.0)


def test_a_second_call_arriving_during_the_settle_delays_the_request() -> None:
    p = ToolPolicy(settle_ms=100)
    p.call_done("r1", "c1", 0)
    p.output_sent("c1", 1 * MS)
    p.call_started("r1", "c2", 60 * MS)  # the next call's first arguments delta
    assert not p.due(100 * MS)  # c2 unanswered
    p.call_done("r1", "c2", 80 * MS)
    p.output_sent("c2", 81 * MS)
    assert p.next_deadline_ns() == 180 * MS
    p.activity("r1", 150 * MS)  # more of the response (e.g. audio) streams in
    assert p.next_deadline_ns() == 250 * MS


def test_barge_in_cancels_the_request() -> None:
    p = ToolPolicy()
    p.call_done("r1", "c1", 0)
    assert p.cancel("barge_in") and p.cancelled == ["barge_in"]
    p.output_sent("c1", 5 * MS)  # the tool finished after the caller cut in
    assert not p.pending and not p.due(10_000 * MS)
    assert not p.cancel("again")


@given(
    st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=6),
    st.booleans(),
    st.integers(min_value=0, max_value=300),
)
def test_never_before_every_call_is_answered_and_never_later_than_needed(
    gaps_ms: list[int], done: bool, settle_ms: int
) -> None:
    p = ToolPolicy(settle_ms=settle_ms)
    t = 0
    ids = [f"c{i}" for i in range(len(gaps_ms))]
    for cid, g in zip(ids, gaps_ms, strict=True):
        t += g * MS
        p.call_done("r", cid, t)
    last_event = t
    if done:
        t += MS
        p.response_done("r", t)
        last_event = t
    for cid in ids[:-1]:
        p.output_sent(cid, t)
        assert not p.due(t + 10_000 * MS)
    p.output_sent(ids[-1], t + MS)
    at = p.next_deadline_ns()
    assert at is not None
    expected = t + MS if done else max(t + MS, last_event + settle_ms * MS)
    assert at == expected and p.due(at) and not p.due(at - 1)
