"""Where each assistant frame sits on the recording: what the caller hears (sans-I/O).

The pacer sends one 20 ms frame per 20 ms slot. A caller plays what it receives back to back
from its jitter buffer, so a frame sent a little late (a late wake-up of the pacer on a busy
machine) or early (the catch-up after one) is still heard right after the previous one: it is
recorded contiguously, never over it and never after a hole. Only when the caller's buffer
really ran dry — a frame sent more than ``underrun_tolerance_ms`` after the previous one ended —
is the gap heard, and recorded, as silence. After a Twilio ``clear`` the caller has dropped
what it buffered: audio recorded past that moment was never heard and is erased.

The pacer's lateness (how long after its slot each frame went out) is kept for ``run.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydralab.latency import latency_stats

__all__ = ["PlayoutPlacer", "PlayoutStats"]


@dataclass
class PlayoutStats:
    """Pacer and play-out counters (times in ms)."""

    frames: int = 0
    late_frames: int = 0  # sent more than ``late_threshold_ms`` after their slot
    lateness_ms: list[float] = field(default_factory=list)
    underruns: int = 0  # the pacer stalled past the tolerance mid-stream: a gap was heard
    underrun_ms: float = 0.0
    max_lead_ms: float = 0.0  # how far recorded audio ran ahead of the send clock
    cleared_unheard_ms: float = 0.0  # recorded ahead of a ``clear``, erased as never heard
    dropped_after_clear: int = 0  # frames held or queued when the caller was cleared

    def to_dict(self) -> dict[str, float | int]:
        lat = latency_stats(self.lateness_ms)
        return {
            "frames": self.frames,
            "late_frames": self.late_frames,
            "lateness_p50_ms": round(lat.get("p50_ms", 0.0), 3),
            "lateness_p99_ms": round(lat.get("p99_ms", 0.0), 3),
            "lateness_max_ms": round(lat.get("max_ms", 0.0), 3),
            "underruns": self.underruns,
            "underrun_ms": round(self.underrun_ms, 3),
            "max_lead_ms": round(self.max_lead_ms, 3),
            "cleared_unheard_ms": round(self.cleared_unheard_ms, 3),
            "dropped_after_clear": self.dropped_after_clear,
        }


class PlayoutPlacer:
    """Recording positions (in samples at ``sample_rate_hz``) for frames as they are sent."""

    def __init__(
        self,
        *,
        sample_rate_hz: int = 48000,
        underrun_tolerance_ms: float = 60.0,
        late_threshold_ms: float = 10.0,
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.tolerance = round(underrun_tolerance_ms * sample_rate_hz / 1000.0)
        self.late_threshold_ms = late_threshold_ms
        self.play_end: int | None = None  # end of the last recorded frame
        self.stats = PlayoutStats()

    def _ms(self, n: int) -> float:
        return n * 1000.0 / self.sample_rate_hz

    def place(
        self, *, sent_index: int, n_samples: int, lateness_ms: float = 0.0, after_idle: bool = False
    ) -> int:
        """Position of a frame of ``n_samples`` sent at sample ``sent_index`` (its slot was
        ``lateness_ms`` earlier). ``after_idle``: the pacer had nothing to send before it (a new
        response, or the model's audio came slower than real time), so a gap is not the
        pacer's."""
        s = self.stats
        s.frames += 1
        s.lateness_ms.append(max(0.0, lateness_ms))
        if lateness_ms > self.late_threshold_ms:
            s.late_frames += 1
        end = self.play_end
        if end is None or sent_index > end + self.tolerance:
            if end is not None and not after_idle:
                s.underruns += 1
                s.underrun_ms += self._ms(sent_index - end)
            pos = sent_index
        else:
            pos = end
        s.max_lead_ms = max(s.max_lead_ms, self._ms(pos - sent_index))
        self.play_end = pos + n_samples
        return pos

    def clear(self, *, at_index: int) -> tuple[int, int] | None:
        """The caller was told to ``clear`` at sample ``at_index``: the span ``(start, end)``
        recorded ahead of it was never heard (``None`` if none). The next frame starts anew."""
        end, self.play_end = self.play_end, None
        if end is None or end <= at_index:
            return None
        self.stats.cleared_unheard_ms += self._ms(end - at_index)
        return at_index, end
