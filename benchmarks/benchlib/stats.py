"""Statistics of the bench: percentiles, pacing against a frame grid, latency matching.

All inputs are ``time.monotonic_ns()`` stamps (system-wide on Linux, so stamps taken in
different processes compare directly); outputs are in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NS_PER_MS = 1_000_000


def summary(values_ms: Sequence[float] | np.ndarray, *, tail: bool = False) -> dict[str, Any]:
    """``n``, ``p50``, ``p99`` (and ``p99.9`` with ``tail``), ``max``, ``mean`` in ms."""
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        out: dict[str, Any] = {"n": 0, "p50": None, "p99": None, "max": None, "mean": None}
        if tail:
            out["p99.9"] = None
        return out
    out = {
        "n": int(v.size),
        "p50": round(float(np.percentile(v, 50)), 4),
        "p99": round(float(np.percentile(v, 99)), 4),
    }
    if tail:
        out["p99.9"] = round(float(np.percentile(v, 99.9)), 4)
    out["max"] = round(float(v.max()), 4)
    out["mean"] = round(float(v.mean()), 4)
    return out


def segments(arrivals_ns: Sequence[int] | np.ndarray, gap_ms: float | None) -> list[np.ndarray]:
    """Split arrival times where consecutive frames are more than ``gap_ms`` apart (one
    segment per response); ``None``: one segment."""
    a = np.asarray(arrivals_ns, dtype=np.int64)
    if a.size == 0:
        return []
    if gap_ms is None:
        return [a]
    cut = np.nonzero(np.diff(a) > gap_ms * NS_PER_MS)[0] + 1
    return [s for s in np.split(a, cut) if s.size]


def grid_deviation_ms(seg_ns: np.ndarray, period_ms: float) -> np.ndarray:
    """Signed deviation of each arrival from the ideal grid anchored at the first one."""
    k = np.arange(seg_ns.size, dtype=np.float64)
    return (seg_ns - seg_ns[0]).astype(np.float64) / NS_PER_MS - k * period_ms


def drift_ms_per_min(seg_ns: np.ndarray, dev_ms: np.ndarray) -> float | None:
    """Least-squares slope of the deviation over time, in ms per minute."""
    if seg_ns.size < 3:
        return None
    t_min = (seg_ns - seg_ns[0]).astype(np.float64) / (60 * 1e9)
    if t_min[-1] <= 0:
        return None
    slope = np.polyfit(t_min, dev_ms, 1)[0]
    return float(slope)


def pacing_stats(
    arrivals_ns: Sequence[int] | np.ndarray,
    period_ms: float = 20.0,
    *,
    gap_ms: float | None = None,
    min_drift_s: float = 1.0,
) -> dict[str, Any]:
    """|deviation| of frame arrivals from the ideal ``period_ms`` grid (anchored at the first
    frame of each segment) — p50/p99/p99.9/max — the drift (ms per minute: the
    duration-weighted mean of the per-segment slopes, segments of at least ``min_drift_s``), and
    the same deviation around the segment's median offset (:func:`_jitter`)."""
    devs: list[np.ndarray] = []
    jits: list[np.ndarray] = []
    offsets: list[float] = []
    slopes: list[tuple[float, float]] = []
    segs = segments(arrivals_ns, gap_ms)
    for seg in segs:
        d = grid_deviation_ms(seg, period_ms)
        devs.append(np.abs(d))
        off = float(np.median(d))
        offsets.append(off)
        jits.append(np.abs(d - off))
        dur_s = (seg[-1] - seg[0]) / 1e9
        if dur_s >= min_drift_s:
            s = drift_ms_per_min(seg, d)
            if s is not None:
                slopes.append((s, dur_s))
    allv = np.concatenate(devs) if devs else np.zeros(0)
    out = summary(allv, tail=True)
    out["segments"] = len(segs)
    out.update(_jitter(jits, offsets))
    if slopes:
        w = np.array([d for _, d in slopes])
        out["drift_ms_per_min"] = round(float(np.dot([s for s, _ in slopes], w) / w.sum()), 4)
    else:
        out["drift_ms_per_min"] = None
    return out


def pooled_pacing(
    per_conv: Sequence[Sequence[int] | np.ndarray], period_ms: float, *, gap_ms: float | None
) -> dict[str, Any]:
    """:func:`pacing_stats` over many conversations' arrivals, deviations pooled."""
    devs: list[np.ndarray] = []
    jits: list[np.ndarray] = []
    offsets: list[float] = []
    n_segs = 0
    for arr in per_conv:
        for seg in segments(arr, gap_ms):
            n_segs += 1
            d = grid_deviation_ms(seg, period_ms)
            devs.append(np.abs(d))
            offsets.append(float(np.median(d)))
            jits.append(np.abs(d - offsets[-1]))
    out = summary(np.concatenate(devs) if devs else np.zeros(0), tail=True)
    out["segments"] = n_segs
    out.update(_jitter(jits, offsets))
    return out


def _jitter(jits: list[np.ndarray], offsets: list[float]) -> dict[str, Any]:
    """The deviation around each segment's median offset (``jitter``: what is left once a
    constant offset of the first frame — early or late, anchoring the grid — is taken out), and
    the offsets themselves (``offset_ms``: median over segments, ``offset_max_ms``: largest
    magnitude)."""
    j = summary(np.concatenate(jits) if jits else np.zeros(0), tail=True)
    return {
        "jitter": {k: j[k] for k in ("p50", "p99", "p99.9", "max")},
        "offset_ms": round(float(np.median(offsets)), 4) if offsets else None,
        "offset_max_ms": round(float(max(offsets, key=abs)), 4) if offsets else None,
    }


def match_latency(
    sent_ns: Sequence[int] | np.ndarray, received_ns: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, bool]:
    """Latencies (ms) of the k-th received item after the k-th sent one, over the shorter of
    the two lists; ``True`` when the counts matched."""
    s = np.asarray(sent_ns, dtype=np.int64)
    r = np.asarray(received_ns, dtype=np.int64)
    n = min(s.size, r.size)
    return (r[:n] - s[:n]).astype(np.float64) / NS_PER_MS, s.size == r.size


def within(values: np.ndarray, stamps_ns: np.ndarray, lo_ns: int, hi_ns: int) -> np.ndarray:
    """``values`` whose stamp lies in ``[lo_ns, hi_ns)``."""
    m = (stamps_ns >= lo_ns) & (stamps_ns < hi_ns)
    return values[m[: values.size]]
