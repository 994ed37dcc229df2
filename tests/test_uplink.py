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


def test_silence_sent_faster_than_real_time_keeps_to_the_clock() -> None:
    """EVA's simulator waits for the assistant streaming 18 silent frames per 250 ms tick
    (1.44x real time), then speaks in real time: the silence beyond a 60 ms lead is dropped,
    so the stream to the model keeps to real time and the speech lands where it was sent."""
    up = _uplink()
    silence = ulaw_encode(np.zeros(160, dtype=np.int16))
    forwarded = 0
    for ms in range(0, 2000, 10):  # 2 s of waiting: a burst every 250 ms, fill checked in between
        if ms % 250 == 0:
            for _ in range(18):
                forwarded += len(up.caller_audio(silence, (ms + 1) * MS))
        forwarded += len(up.silence_due((ms + 1) * MS))
    assert 96 <= forwarded <= 104  # ~2 s of audio for 2 s of time (not 2.88 s)
    assert up.ahead_silence_ms >= 800
    tone = (3000 * np.sin(np.arange(160) * 0.3)).astype(np.int16)
    for k in range(25):  # then 0.5 s of speech, paced from 2.02 s on
        assert len(up.caller_audio(ulaw_encode(tone), (2020 + 20 * k) * MS)) == 1
    wire = up.wire.track("user")
    onset = int(np.flatnonzero(np.abs(wire) > 1000)[0])
    assert abs(onset - 2000 * 8) <= 8 * 60  # within the 60 ms lead of its real time


def test_speech_is_never_dropped_even_ahead_of_the_clock() -> None:
    up = _uplink()
    tone = ulaw_encode((3000 * np.sin(np.arange(160) * 0.3)).astype(np.int16))
    assert sum(len(up.caller_audio(tone, 10 * MS)) for _ in range(50)) == 50
    assert up.ahead_silence_ms == 0
