"""Latency arithmetic in one place (sans-I/O): summary statistics and ``v2v`` off the wire.

- :func:`latency_stats` is the one summary every output uses (``run.json``, ``scores.json``,
  the analysis tables, the benchmarks): n, mean, p50, p90, p95, p99, max, with numpy's default
  (linear) percentile.
- :func:`compute_v2v` reads each assistant turn's ``v2v`` off the 8 kHz wire timeline — exactly
  the samples the caller sent and heard, on the session clock: the caller's last audible sample
  before the turn → the turn's first audible sample as played.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from hydralab.audio import AUDIBLE_DBFS, Timeline

__all__ = ["PERCENTILES", "compute_v2v", "latency_stats"]

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


def latency_stats(values_ms: Iterable[float]) -> dict[str, Any]:
    """``n``, ``mean_ms``, ``p50_ms``, ``p90_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``; only
    ``{"n": 0}`` when there are no values."""
    a = np.asarray([float(v) for v in values_ms], dtype=float)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "mean_ms": float(a.mean()),
        **{f"p{p}_ms": float(np.percentile(a, p)) for p in PERCENTILES},
        "max_ms": float(a.max()),
    }


class _Turn(Protocol):
    kind: str
    first_played_t_ns: int | None
    last_played_t_ns: int | None
    v2v_ms: float | None
    v2v_reason: str | None


def compute_v2v(wire: Timeline, turns: Sequence[_Turn]) -> None:
    """Set ``v2v_ms`` (or ``v2v_reason``) on each turn, read off ``wire`` (8 kHz, both tracks).

    No resampler sits between these samples and the caller, so no filter delay needs
    compensating. A turn never played, a greeting, a turn without audible audio or without
    audible caller speech before it gets a reason instead of a value.
    """
    sr = wire.sample_rate_hz
    prev_end = 0
    for turn in turns:
        if turn.first_played_t_ns is None:
            turn.v2v_reason = "never_played"
            continue
        start = max(0, wire.index_of(turn.first_played_t_ns) - sr // 100)
        end = wire.index_of(turn.last_played_t_ns or turn.first_played_t_ns) + sr // 50
        onset = wire.first_onset(
            "assistant", start_index=start, end_index=end, rms_threshold_dbfs=AUDIBLE_DBFS
        )
        if turn.kind == "greeting":
            turn.v2v_reason = "greeting"
        elif onset is None:
            turn.v2v_reason = "no_audible_assistant_audio"
        else:
            offset = wire.last_offset(
                "user", end_index=onset, start_index=prev_end, rms_threshold_dbfs=AUDIBLE_DBFS
            )
            if offset is None:
                turn.v2v_reason = "no_audible_caller_speech"
            else:
                turn.v2v_ms = round((onset - offset) * 1000.0 / sr, 3)
        prev_end = max(prev_end, end)
