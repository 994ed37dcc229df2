"""One latency summary for every output, and ``v2v`` off the wire (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hydralab import analysis, runner, scoring
from hydralab.audio import Timeline
from hydralab.latency import compute_v2v, latency_stats


@given(st.lists(st.floats(min_value=0, max_value=30_000), max_size=40))
def test_latency_stats_is_numpy_percentiles(values: list[float]) -> None:
    s = latency_stats(values)
    if not values:
        assert s == {"n": 0}
        return
    a = np.asarray(values)
    assert s["n"] == a.size and s["max_ms"] == a.max()
    for p in (50, 90, 95, 99):
        assert s[f"p{p}_ms"] == np.percentile(a, p)


def test_every_output_uses_the_one_function() -> None:
    assert scoring.latency_stats is latency_stats
    assert runner.latency_summary([1.0, 2.0, 3.0]) == latency_stats([1.0, 2.0, 3.0])
    assert analysis.latency_stats is latency_stats


@dataclass
class _T:
    kind: str
    first_played_t_ns: int | None
    last_played_t_ns: int | None
    v2v_ms: float | None = None
    v2v_reason: str | None = None


def test_v2v_from_the_callers_last_audible_sample_to_the_first_heard() -> None:
    wire = Timeline(t0_ns=0, sample_rate_hz=8000)
    tone = (3000 * np.sin(np.arange(8000) * 0.3)).astype(np.int16)
    wire.write("user", tone[:4000], t_ns=1_000_000_000)  # caller speaks 1.0-1.5 s
    wire.write("assistant", tone[:4000], t_ns=2_250_000_000)  # heard from 2.25 s
    turns = [
        _T("greeting", 100_000_000, 200_000_000),
        _T("plain", 2_240_000_000, 2_700_000_000),
        _T("plain", None, None),
    ]
    compute_v2v(wire, turns)
    assert turns[0].v2v_reason == "greeting"
    assert turns[1].v2v_ms is not None and abs(turns[1].v2v_ms - 750.0) <= 2.0
    assert turns[2].v2v_reason == "never_played"
