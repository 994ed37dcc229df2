"""Tests for hydralab.speech.tts (eSpeak NG via espeakng-loader + ctypes)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from hydralab.speech import tts
from hydralab.speech.tts import (
    AGENT_VOICE,
    CALLER_VOICE,
    SpeechUnavailableError,
    Synthesizer,
)

pytest.importorskip("espeakng_loader")

SENTENCE = "Hi, I need to change my flight to Boston on March twenty-fifth, please."


def _f0_median_hz(pcm: np.ndarray, sample_rate_hz: int) -> float:
    """Crude autocorrelation F0 over loud 40 ms frames."""
    frame = int(0.04 * sample_rate_hz)
    lo, hi = sample_rate_hz // 400, sample_rate_hz // 70
    f0s = []
    for i in range(0, len(pcm) - frame, frame):
        seg = pcm[i : i + frame].astype(np.float64)
        if np.sqrt(np.mean(seg**2)) < 1500:
            continue
        seg -= seg.mean()
        ac = np.correlate(seg, seg, "full")[frame - 1 :]
        f0s.append(sample_rate_hz / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(f0s))


def _centroid_hz(pcm: np.ndarray, sample_rate_hz: int) -> float:
    mag = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(pcm), 1.0 / sample_rate_hz)
    return float((mag * freqs).sum() / mag.sum())


def _longest_zero_run(pcm: np.ndarray) -> int:
    best = run = 0
    for is_zero in pcm == 0:
        run = run + 1 if is_zero else 0
        best = max(best, run)
    return best


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer()


@pytest.mark.parametrize("rate_hz", [8000, 16000, 22050, 24000, 48000])
def test_output_int16_at_requested_rate(synth: Synthesizer, rate_hz: int) -> None:
    pcm = synth.synthesize(SENTENCE, sample_rate_hz=rate_hz)
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    duration_s = len(pcm) / rate_hz
    # 13 words at 175 wpm ~ 4.5 s of speech; allow generous slack for pauses.
    n_words = len(SENTENCE.split())
    expected_s = n_words / 175 * 60
    assert 0.5 * expected_s < duration_s < 2.0 * expected_s
    assert np.abs(pcm).max() > 5000  # real speech, not just noise


def test_duration_scales_with_rate_and_text(synth: Synthesizer) -> None:
    fast = synth.synthesize(SENTENCE, rate_wpm=250, sample_rate_hz=16000)
    slow = synth.synthesize(SENTENCE, rate_wpm=120, sample_rate_hz=16000)
    short = synth.synthesize("Yes.", sample_rate_hz=16000)
    assert len(slow) > 1.4 * len(fast)
    assert len(short) < len(fast) / 3


def test_noise_floor_between_words(synth: Synthesizer) -> None:
    rate = 16000
    pcm = synth.synthesize(SENTENCE, sample_rate_hz=rate, noise_dbfs=-50.0)
    assert _longest_zero_run(pcm) < 8  # no digital silence anywhere
    frame = rate // 50
    frames = pcm[: len(pcm) // frame * frame].reshape(-1, frame).astype(np.float64)
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) / 32768.0 + 1e-12)
    quietest = float(np.min(rms_dbfs))
    assert -53.0 < quietest < -47.0  # the floor is the -50 dBFS noise

    raw = synth.synthesize(SENTENCE, sample_rate_hz=rate, noise_dbfs=None)
    assert _longest_zero_run(raw) > 100  # eSpeak's exact zeros are what the noise hides


def test_noise_is_seeded(synth: Synthesizer) -> None:
    a = synth.synthesize("", sample_rate_hz=16000, seed=1)
    b = synth.synthesize("", sample_rate_hz=16000, seed=1)
    c = synth.synthesize("", sample_rate_hz=16000, seed=2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_caller_and_agent_voices_differ(synth: Synthesizer) -> None:
    rate = 16000
    caller = synth.synthesize(SENTENCE, voice=CALLER_VOICE, sample_rate_hz=rate, noise_dbfs=None)
    agent = synth.synthesize(SENTENCE, voice=AGENT_VOICE, sample_rate_hz=rate, noise_dbfs=None)
    f0_caller, f0_agent = _f0_median_hz(caller, rate), _f0_median_hz(agent, rate)
    assert 150 < f0_caller < 320
    assert 70 < f0_agent < 150
    assert f0_caller > 1.4 * f0_agent
    assert _centroid_hz(caller, rate) > _centroid_hz(agent, rate)


def test_pitch_parameter(synth: Synthesizer) -> None:
    rate = 16000
    low = synth.synthesize(SENTENCE, pitch=20, sample_rate_hz=rate, noise_dbfs=None)
    high = synth.synthesize(SENTENCE, pitch=90, sample_rate_hz=rate, noise_dbfs=None)
    assert _f0_median_hz(high, rate) > 1.2 * _f0_median_hz(low, rate)
    with pytest.raises(ValueError, match="pitch"):
        synth.synthesize("x", pitch=101)


def test_word_timings(synth: Synthesizer) -> None:
    text = "Hello, my confirmation number is Z K three. Thank you!"
    utt = synth.synthesize_with_words(text, voice=CALLER_VOICE, sample_rate_hz=24000)
    assert utt.sample_rate_hz == 24000
    assert [w.text for w in utt.words] == [
        "Hello",
        "my",
        "confirmation",
        "number",
        "is",
        "Z",
        "K",
        "three",
        "Thank",
        "you",
    ]
    starts = [w.start_ms for w in utt.words]
    assert starts == sorted(starts)
    assert len(set(starts)) == len(starts)
    assert starts[-1] < utt.duration_ms
    for w in utt.words:
        assert text[w.char_pos : w.char_pos + len(w.text)] == w.text
    # barge-in helper: words started before the midpoint
    heard = utt.text_until(starts[4])
    assert heard == "Hello my confirmation number is"


def test_word_char_pos_with_non_ascii(synth: Synthesizer) -> None:
    text = "Café déjà vu, naïve idea."
    utt = synth.synthesize_with_words(text)
    for w in utt.words:
        assert text[w.char_pos : w.char_pos + len(w.text)] == w.text
    assert [w.text for w in utt.words][-1] == "idea"


def test_unknown_voice(synth: Synthesizer) -> None:
    with pytest.raises(ValueError, match="voice"):
        synth.synthesize("hello", voice="no-such-voice")
    assert len(synth.synthesize("hello")) > 0  # engine still usable


def test_thread_safety(synth: Synthesizer) -> None:
    texts = [f"Thread number {i} says hello to the agent." for i in range(8)]
    expected = {t: len(synth.synthesize(t, sample_rate_hz=16000)) for t in texts}
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def work(text: str) -> None:
        try:
            for _ in range(3):
                pcm = synth.synthesize(text, sample_rate_hz=16000)
                results[text] = len(pcm)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in texts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for t in texts:  # eSpeak keeps a little state across calls: lengths vary by ~1 %
        assert abs(results[t] - expected[t]) <= 0.02 * expected[t]


def test_fast(synth: Synthesizer) -> None:
    synth.synthesize("warm up")
    t0 = time.perf_counter()
    pcm = synth.synthesize(SENTENCE * 3, sample_rate_hz=48000)
    elapsed = time.perf_counter() - t0
    assert len(pcm) / 48000 / elapsed > 50  # >> real time (about 1600x for 22.05 kHz output)


def test_missing_extra_raises_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts, "_ENGINE", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import now fails
    with pytest.raises(SpeechUnavailableError, match=r"pip install 'hydralab\[speech\]'"):
        Synthesizer().synthesize("hello")
    assert not Synthesizer.available()


def test_import_is_lazy() -> None:
    code = (
        "import sys, hydralab.speech, hydralab.speech.tts as t; "
        "assert 'espeakng_loader' not in sys.modules; "
        "s = t.Synthesizer(); assert 'espeakng_loader' not in sys.modules; "
        "s.synthesize('hi'); assert 'espeakng_loader' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
