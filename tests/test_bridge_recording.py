"""The bridge's recording on one clock: what the caller hears, aligned with the 8 kHz wire.

The bridge's audio paths are driven directly (no sockets, no model): caller frames into the
uplink, model audio into the play-out queue, and the pacer against a fake caller socket whose
sleeps are made late on purpose, as on a busy 2-core machine.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hydralab import bridge as bridge_mod
from hydralab.audio import StreamResampler, ulaw_encode
from hydralab.bridge import BridgeConfig, BridgeSession
from hydralab.client import HydraConfig
from hydralab.clock import Clock
from hydralab.records import load_record
from hydralab.rundir import RunWriter
from hydralab.tools import ToolExecutor


def _session(tmp_path: Path) -> BridgeSession:
    rec = load_record()
    return BridgeSession(
        BridgeConfig(hydra=HydraConfig(url="ws://127.0.0.1:9/waves/v1/s2s", instructions="x")),
        tools=ToolExecutor(rec.initial_db),
        writer_factory=lambda c: RunWriter(tmp_path, epoch_ms=c.epoch_ms, t0_ns=c.t0_ns),
        transcriber=None,
        api_key="k",
        clock=Clock(),
    )


def _lag_samples(a: np.ndarray, b: np.ndarray) -> int:
    """Lag of ``b`` behind ``a`` (samples) at the cross-correlation peak."""
    n = min(a.size, b.size)
    x, y = a[:n].astype(np.float64), b[:n].astype(np.float64)
    corr = np.correlate(y, x, mode="full")
    return int(np.argmax(corr)) - (n - 1)


def _clicks(rate_hz: int, seconds: float) -> np.ndarray:
    x = np.zeros(int(rate_hz * seconds), dtype=np.int16)
    rng = np.random.default_rng(1)
    for k in range(1, int(seconds * 4)):
        x[int(k * rate_hz / 4) + int(rng.integers(0, rate_hz // 20))] = 20000
    return x


async def test_user_track_lines_up_with_the_wire(tmp_path: Path) -> None:
    s = _session(tmp_path)
    pcm8 = _clicks(8000, 2.0)
    start = s.clock.t0_ns + 500_000_000  # the caller's first frame, half a second in
    for k in range(0, pcm8.size, 160):
        at = start + (k // 160 + 1) * 20_000_000
        await s._on_caller_audio(ulaw_encode(pcm8[k : k + 160]), at)
    wire = s.wire.track("user")
    track48 = s.timeline.track("user")
    # the 48 kHz copy, brought to 8 kHz by taking every 6th sample near each click
    down = track48[: track48.size // 6 * 6].reshape(-1, 6).max(axis=1)
    assert abs(_lag_samples(np.abs(wire), np.abs(down))) <= 1  # within 1/8 ms (was +3 ms)


@pytest.mark.parametrize("model_rate_hz", [48000, 24000])
def test_assistant_track_lines_up_with_the_wire(tmp_path: Path, model_rate_hz: int) -> None:
    s = _session(tmp_path)
    s._down8 = StreamResampler(model_rate_hz, out_rate_hz=8000)
    s._to48 = StreamResampler(model_rate_hz, out_rate_hz=48000)
    pcm = _clicks(model_rate_hz, 2.0)
    t0 = s.clock.t0_ns
    s._enqueue_audio("r1", pcm, t0)
    s._flush_audio()
    k = 0
    while s._queue:
        s._record_played(s._queue.popleft(), t0 + k * 20_000_000)  # type: ignore[arg-type]
        k += 1
    wire = s.wire.track("assistant")
    track48 = s.timeline.track("assistant")
    down = track48[: track48.size // 6 * 6].reshape(-1, 6).max(axis=1)
    assert abs(_lag_samples(np.abs(wire), np.abs(down))) <= 1  # was -3 ms


class _Caller:
    """A caller socket that takes frames; ``clear`` is not needed here."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, msg: Any) -> None:
        self.sent += 1


async def test_late_pacer_wakeups_leave_no_hole_and_overwrite_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measured failure: a pacer waking 10-40 ms late put holes of digital silence in
    ``audio_assistant.wav`` and let the catch-up frames overwrite each other."""
    s = _session(tmp_path)
    s._down8 = StreamResampler(48000, out_rate_hz=8000)
    s._to48 = StreamResampler(48000, out_rate_hz=48000)
    # 3 s of a tone that never touches zero: any hole or overwrite shows in the track
    t = np.arange(48000 * 3) / 48000
    pcm = (8000 + 4000 * np.sin(2 * np.pi * 3 * t)).astype(np.int16)
    s._enqueue_audio("r1", pcm, s.clock.now_ns())
    s._flush_audio()
    n_frames = len(s._queue)
    real_sleep = asyncio.sleep
    rng = random.Random(3)

    async def late_sleep(delay: float, *a: Any) -> Any:
        extra = rng.choice([0.0, 0.0, 0.0, 0.012, 0.025, 0.04])  # late wake-ups
        return await real_sleep(delay + extra, *a)

    monkeypatch.setattr(bridge_mod.asyncio, "sleep", late_sleep)
    caller = _Caller()
    task = asyncio.ensure_future(s._pacer(caller))  # type: ignore[arg-type]
    while caller.sent < n_frames:
        await real_sleep(0.05)
    s._stop.set()
    s._queue_event.set()
    await task
    stats = s.placer.stats.to_dict()
    assert stats["frames"] == n_frames and stats["late_frames"] > 5
    assert stats["underruns"] == 0  # jitter is absorbed, as by the caller's buffer
    track = s.timeline.track("assistant")
    nz = np.flatnonzero(track)
    recorded = track[nz[0] : nz[-1] + 1]
    assert recorded.size == pcm.size  # contiguous: exactly the audio sent, no hole
    assert np.array_equal(recorded, pcm)  # and nothing overwritten
