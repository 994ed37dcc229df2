"""The timeline's block storage against a plain growable array (the behaviour it replaced)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydralab.audio import timeline as tl


class _Reference:
    """What a track holds: one array, grown with zeros."""

    def __init__(self) -> None:
        self.buf = np.zeros(0, dtype=np.int16)

    def write(self, start: int, pcm: np.ndarray) -> None:
        if pcm.size == 0:
            return
        end = start + pcm.size
        if end > self.buf.size:
            self.buf = np.concatenate([self.buf, np.zeros(end - self.buf.size, np.int16)])
        self.buf[start:end] = pcm

    def move(self, start: int, length: int, new_start: int) -> None:
        block = self.buf[start : start + length].copy()
        self.buf = self.buf[: min(start, new_start)].copy()
        self.write(new_start, block)


_ops = st.lists(
    st.tuples(st.sampled_from(["write", "move"]), st.integers(0, 90), st.integers(0, 40)),
    max_size=40,
)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tl._Track, "BLOCK", 16)


@settings(max_examples=200, deadline=None)
@given(ops=_ops)
def test_blocks_equal_one_array(ops: list[tuple[str, int, int]]) -> None:
    old = tl._Track.BLOCK
    tl._Track.BLOCK = 16  # many block boundaries (hypothesis and function fixtures don't mix)
    try:
        tr, ref = tl._Track(), _Reference()
        rng = np.random.default_rng(len(ops))
        for op, a, n in ops:
            if op == "write":
                pcm = rng.integers(-30000, 30000, n, dtype=np.int16)
                tr.write(a, pcm)
                ref.write(a, pcm)
            elif tr.length:  # move the tail block, as Timeline.append does
                start = max(0, tr.length - n)
                tr.move(start, tr.length - start, max(0, start + a - 45))
                ref.move(start, ref.buf.size - start, max(0, start + a - 45))
            assert tr.length == ref.buf.size
            np.testing.assert_array_equal(tr.view(), ref.buf)
            lo, hi = sorted((a, a + n))
            np.testing.assert_array_equal(tr.read(lo, hi), ref.buf[lo:hi])
    finally:
        tl._Track.BLOCK = old


def test_growth_keeps_earlier_blocks(small_blocks: None) -> None:
    """Growing adds blocks; the recorded ones are the same arrays (never copied)."""
    tr = tl._Track()
    tr.write(0, np.arange(10, dtype=np.int16))
    first = tr._blocks[0]
    tr.write(40, np.ones(30, dtype=np.int16))
    assert tr._blocks[0] is first
    assert len(tr._blocks) == 5 and tr.length == 70
    assert tr.view()[:10].tolist() == list(range(10)) and not tr.view()[10:40].any()


def test_scans_read_only_their_range(small_blocks: None) -> None:
    """first_onset / last_offset across block boundaries equal the scans of the whole track."""
    t = tl.Timeline(t0_ns=0, sample_rate_hz=8000)
    pcm = np.zeros(400, dtype=np.int16)
    pcm[123:200] = 8000
    pcm[250:260] = -9000
    t.write("user", pcm, t_ns=0)
    whole = t.track("user")
    for lo, hi in ((0, None), (50, 300), (130, 255), (201, 249), (0, 124)):
        assert t.first_onset("user", start_index=lo, end_index=hi) == tl.first_onset(
            whole, sample_rate_hz=8000, start_index=lo, end_index=hi
        )
        assert t.last_offset("user", start_index=lo, end_index=hi) == tl.last_offset(
            whole, sample_rate_hz=8000, start_index=lo, end_index=hi
        )
