"""Caller → model audio: 20 ms frames out, silence fill, utterances for STT (pure)."""

from __future__ import annotations

import numpy as np

from hydralab.audio import Timeline, ulaw_encode
from hydralab.uplink import Uplink

MS = 1_000_000


def _uplink(**kw: float) -> Uplink:
    return Uplink(
        timeline=Timeline(t0_ns=0), wire=Timeline(t0_ns=0, sample_rate_hz=8000), start_ns=0, **kw
    )


def test_each_caller_frame_gives_one_20ms_frame_and_lands_on_both_tracks() -> None:
    up = _uplink()
    tone = (2000 * np.sin(np.arange(1600) * 0.2)).astype(np.int16)
    for k in range(10):  # the caller's frames arrive from 500 ms on
        frames = up.caller_audio(ulaw_encode(tone[k * 160 : (k + 1) * 160]), (520 + k * 20) * MS)
        assert [f.size for f in frames] == [320]
    assert up.wire.track_length("user") == 4000 + 1600
    # the 48 kHz copy sits 3 ms (144 samples) earlier: its resampler's delay, compensated
    assert up.timeline.track_length("user") == 24000 - 144 + 9600
    assert up.caller_audio(b"", 300 * MS) == []


def test_silence_fills_the_stream_at_20ms_while_the_caller_is_quiet() -> None:
    up = _uplink(silence_fill_after_ms=60)
    up.caller_audio(ulaw_encode(np.zeros(160, dtype=np.int16)), 20 * MS)
    assert up.next_silence_ns() == 80 * MS
    assert up.silence_due(79 * MS) == []
    sent = [len(up.silence_due(t * MS)) for t in range(80, 200, 10)]  # polled every 10 ms
    assert sum(sent) == 6  # one frame per 20 ms from 80 ms on: 80, 100, ..., 180
    up.dropped(up.silence_due(400 * MS))
    assert up.dropped_ms == 20.0


def test_an_utterance_keeps_its_preroll() -> None:
    up = _uplink(preroll_ms=40)
    frame = ulaw_encode((1000 * np.ones(160)).astype(np.int16))
    for k in range(5):
        up.caller_audio(frame, (k + 1) * 20 * MS)
    up.start_utterance()
    assert up.in_utterance
    for k in range(5, 8):
        up.caller_audio(frame, (k + 1) * 20 * MS)
    pcm = up.stop_utterance()
    assert pcm.size == (2 + 3) * 320 and not up.in_utterance
    assert up.stop_utterance().size == 0
