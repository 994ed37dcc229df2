"""The assistant recording is what the caller hears, whatever the pacer's lateness (pure)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from hydralab.playout import PlayoutPlacer

F = 960  # 20 ms at 48 kHz


def test_late_wakeups_neither_open_holes_nor_overwrite() -> None:
    """The measured failure: a pacer 15 ms late, then catching up with frames 5 ms apart."""
    p = PlayoutPlacer()
    sends = [0, F, 2 * F + 720, 3 * F + 240, 4 * F, 5 * F]  # one late wake-up, then catch-up
    pos = [p.place(sent_index=s, n_samples=F, lateness_ms=(s % F) / 48) for s in sends]
    assert pos == [k * F for k in range(6)]  # contiguous: no hole, no overlap
    assert p.stats.underruns == 0 and p.stats.late_frames == 1
    assert p.stats.to_dict()["lateness_max_ms"] == 15.0


def test_a_real_stall_is_heard_as_silence() -> None:
    p = PlayoutPlacer(underrun_tolerance_ms=60)
    p.place(sent_index=0, n_samples=F)
    pos = p.place(sent_index=F + 4800, n_samples=F, lateness_ms=100)  # 100 ms stall
    assert pos == F + 4800
    assert p.stats.underruns == 1 and p.stats.underrun_ms == 100.0


def test_a_new_response_after_silence_is_not_an_underrun() -> None:
    p = PlayoutPlacer()
    p.place(sent_index=0, n_samples=F)
    assert p.place(sent_index=48_000, n_samples=F, after_idle=True) == 48_000
    assert p.stats.underruns == 0


def test_clear_erases_what_was_recorded_ahead_and_restarts() -> None:
    p = PlayoutPlacer()
    for k in range(3):
        p.place(sent_index=k * F - k * 200, n_samples=F)  # running 400 samples ahead
    assert p.play_end == 3 * F
    assert p.clear(at_index=3 * F - 400) == (3 * F - 400, 3 * F)
    assert p.play_end is None and p.stats.cleared_unheard_ms == 400 / 48
    assert p.place(sent_index=10 * F, n_samples=F) == 10 * F
    assert p.clear(at_index=20 * F) is None


@given(st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=60))
def test_any_jitter_gives_contiguous_frames_or_real_gaps(lateness_ms: list[int]) -> None:
    """Frames scheduled every 20 ms and sent ``lateness`` late (the pacer's grid restarts after
    a stall): recorded frames never overlap, and a gap appears only where the caller's buffer
    would really have run dry."""
    p = PlayoutPlacer(underrun_tolerance_ms=60)
    placed: list[tuple[int, int]] = []
    for k, late in enumerate(lateness_ms):
        sent = k * F + late * 48
        placed.append((sent, p.place(sent_index=sent, n_samples=F, lateness_ms=late)))
    prev_end = None
    for sent, pos in placed:
        assert pos >= sent or pos == prev_end  # never before its send, unless contiguous
        if prev_end is not None:
            assert pos >= prev_end  # no overwrite
            if pos > prev_end:
                assert sent - prev_end > 60 * 48  # a hole only beyond the tolerance
                assert pos == sent
        prev_end = pos + F
    gaps = sum(1 for (_, a), (_, b) in itertools.pairwise(placed) if b > a + F)
    assert gaps == p.stats.underruns
