"""Tests for hydralab.speech.vad: webrtcvad wrapper and the SpeechSegmenter endpointer."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from hydralab.speech.vad import (
    SegmentEvent,
    SpeechEnd,
    SpeechSegmenter,
    SpeechStart,
    VoiceActivityDetector,
)

RATE = 16000
NOISE_RMS = 32768 * 10 ** (-50 / 20)


def _noise(ms: int, seed: int) -> np.ndarray:
    n = RATE * ms // 1000
    return np.round(np.random.default_rng(seed).normal(0, NOISE_RMS, n)).astype(np.int16)


class _Speech:
    """Clean eSpeak speech plus the sample span where it is audible."""

    def __init__(self, text: str, seed: int = 0) -> None:
        tts = pytest.importorskip("hydralab.speech.tts")
        pytest.importorskip("espeakng_loader")
        self.pcm = tts.Synthesizer().synthesize(
            text, voice=tts.CALLER_VOICE, sample_rate_hz=RATE, noise_dbfs=None, seed=seed
        )
        loud = np.nonzero(np.abs(self.pcm.astype(np.int32)) > 300)[0]
        self.first, self.last = int(loud[0]), int(loud[-1])


def _mix(parts: list[np.ndarray | int], seed: int = 7) -> tuple[np.ndarray, list[int]]:
    """Concatenate speech arrays and silences (ints = ms), then add -50 dBFS noise.

    Returns the signal and the start offset (samples) of each speech part.
    """
    chunks: list[np.ndarray] = []
    offsets: list[int] = []
    pos = 0
    for part in parts:
        if isinstance(part, int):
            chunk = np.zeros(RATE * part // 1000, dtype=np.int16)
        else:
            offsets.append(pos)
            chunk = part
        chunks.append(chunk)
        pos += len(chunk)
    x = np.concatenate(chunks).astype(np.float64)
    x += np.random.default_rng(seed).normal(0, NOISE_RMS, len(x))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16), offsets


def _run(pcm: np.ndarray, rate: int = RATE, **kwargs: int) -> list[SegmentEvent]:
    seg = SpeechSegmenter(sample_rate_hz=rate, **kwargs)
    fs = seg.frame_samples
    events: list[SegmentEvent] = []
    for i in range(len(pcm) // fs):
        events.extend(seg.push(pcm[i * fs : (i + 1) * fs], frame_index=i))
    return events + seg.flush()


def _ms(samples: int) -> float:
    return 1000.0 * samples / RATE


@pytest.fixture(scope="module")
def sentence() -> _Speech:
    return _Speech("Hi, I need to change my flight to Boston, please.")


@pytest.fixture(scope="module")
def second() -> _Speech:
    return _Speech("My confirmation number is Z K three F F W.", seed=1)


def test_vad_frame_checks() -> None:
    vad = VoiceActivityDetector(sample_rate_hz=8000, frame_ms=20)
    assert vad.frame_samples == 160
    assert vad.is_speech(np.zeros(160, dtype=np.int16)) is False
    with pytest.raises(ValueError, match="160"):
        vad.is_speech(np.zeros(100, dtype=np.int16))
    with pytest.raises(ValueError):
        VoiceActivityDetector(frame_ms=25)
    with pytest.raises(ValueError):
        VoiceActivityDetector(mode=4)


def test_voiced_frames(sentence: _Speech) -> None:
    vad = VoiceActivityDetector(sample_rate_hz=RATE)
    speech_ms = _ms(sentence.last - sentence.first)
    voiced = vad.voiced_frames(sentence.pcm)
    assert voiced * 20 > 0.5 * speech_ms
    noise = _noise(2000, seed=3)
    assert VoiceActivityDetector().voiced_frames(noise) <= 5  # onset adaptation: ~4 frames
    assert VoiceActivityDetector().voiced_frames(noise, warmup_frames=10) == 0
    assert vad.voiced_frames(sentence.pcm, warmup_frames=10) >= voiced - 2


def test_one_utterance_one_pair(sentence: _Speech) -> None:
    pcm, (off,) = _mix([700, sentence.pcm, 1200])
    events = _run(pcm)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    start, end = events
    assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
    assert abs(start.start_ms - _ms(off + sentence.first)) <= 60
    assert -40 <= end.end_ms - _ms(off + sentence.last) <= 160  # echo tail counts as speech
    assert start.start_ms % 20 == 0 and end.end_ms % 20 == 0


def test_two_utterances_two_pairs(sentence: _Speech, second: _Speech) -> None:
    pcm, (off1, off2) = _mix([500, sentence.pcm, 1500, second.pcm, 1000])
    events = _run(pcm)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd, SpeechStart, SpeechEnd]
    s1, e1, s2, e2 = (getattr(e, "start_ms", getattr(e, "end_ms", 0)) for e in events)
    assert abs(s1 - _ms(off1 + sentence.first)) <= 60
    assert -40 <= e1 - _ms(off1 + sentence.last) <= 160
    assert abs(s2 - _ms(off2 + second.first)) <= 60
    assert -40 <= e2 - _ms(off2 + second.last) <= 160


def test_short_pause_does_not_split() -> None:
    a = _Speech("I want to fly to Boston")
    b = _Speech("on Monday morning", seed=2)
    pcm, _ = _mix([500, a.pcm, 300, b.pcm, 1000])
    events = _run(pcm)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]


def test_pure_noise_no_events() -> None:
    assert _run(_noise(5000, seed=11)) == []
    assert _run(np.zeros(RATE * 2, dtype=np.int16)) == []


def test_end_reported_after_hangover(sentence: _Speech) -> None:
    pcm, _ = _mix([400, sentence.pcm, 1500])
    seg = SpeechSegmenter(sample_rate_hz=RATE, hangover_ms=600)
    fs = seg.frame_samples
    for i in range(len(pcm) // fs):
        for ev in seg.push(pcm[i * fs : (i + 1) * fs], frame_index=i):
            if isinstance(ev, SpeechEnd):
                reported_ms = (i + 1) * 20
                assert reported_ms - ev.end_ms == 600
            else:
                assert seg.in_speech
    assert not seg.in_speech


def test_flush_closes_open_segment(sentence: _Speech) -> None:
    pcm, _ = _mix([300, sentence.pcm])
    seg = SpeechSegmenter()
    events = seg.process(pcm)
    assert [type(e) for e in events] == [SpeechStart]  # no hangover yet
    tail = seg.flush()
    assert [type(e) for e in tail] == [SpeechEnd]
    assert seg.flush() == []


def test_click_is_ignored() -> None:
    pcm = _noise(2000, seed=5).astype(np.float64)
    t = np.arange(int(0.08 * RATE)) / RATE
    pcm[RATE : RATE + len(t)] += 8000 * np.sin(2 * np.pi * 300 * t)  # an 80 ms blip
    events = _run(np.clip(pcm, -32768, 32767).astype(np.int16))
    assert events == []


@pytest.mark.parametrize("rate", [8000, 24000, 48000])
def test_other_rates(sentence: _Speech, rate: int) -> None:
    pcm16, (off,) = _mix([500, sentence.pcm, 1000])
    pcm = soxr.resample(pcm16, RATE, rate)
    events = _run(pcm, rate=rate)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    assert isinstance(events[0], SpeechStart)
    assert abs(events[0].start_ms - _ms(off + sentence.first)) <= 60


def test_frame_index_defines_the_clock(sentence: _Speech) -> None:
    pcm, (off,) = _mix([500, sentence.pcm, 1000])
    seg = SpeechSegmenter()
    fs = seg.frame_samples
    events: list[SegmentEvent] = []
    for i in range(len(pcm) // fs):
        events.extend(seg.push(pcm[i * fs : (i + 1) * fs], frame_index=1000 + i))
    assert isinstance(events[0], SpeechStart)
    assert abs(events[0].start_ms - 20_000 - _ms(off + sentence.first)) <= 60
