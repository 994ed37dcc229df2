"""Line perturbations: SNR, packet loss, quantisation, gain, determinism and validation."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import scipy.signal
import scipy.stats
from needs import needs_speech

from hydralab.audio import (
    AUDIBLE_DBFS,
    NOMINAL_SPEECH_DBFS,
    LinePerturbation,
    LinePerturber,
    render_babble_bed,
)
from hydralab.audio import perturb as perturb_module
from hydralab.audio.perturb import NoiseKind
from hydralab.speech.tts import CALLER_VOICE, SpeechUnavailableError, Synthesizer

RATE = 8000
FRAME = 160
FS = 32768.0


def speechlike(seconds: float, seed: int = 0) -> npt.NDArray[np.int16]:
    """A harmonic 'voice' with syllable envelope, and 300 ms pauses of -50 dBFS dither."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    f0 = 140.0 + 20.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 2.0 * t))
    x = 0.15 * FS * voice * envelope
    x[(t % 1.5) > 1.2] = 0.0  # a pause between "words"
    x += rng.normal(0.0, FS * 10 ** (-50 / 20), len(x))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def audible_mask(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    """Independent re-implementation of the speech gate: frames above AUDIBLE_DBFS."""
    n_frames = -(-len(pcm) // FRAME)
    mask = np.zeros(len(pcm), dtype=bool)
    for k in range(n_frames):
        frame = pcm[k * FRAME : (k + 1) * FRAME].astype(np.float64)
        if np.mean(frame**2) > FS**2 * 10 ** (AUDIBLE_DBFS / 10):
            mask[k * FRAME : (k + 1) * FRAME] = True
    return mask


def measured_snr(clean: npt.NDArray[np.int16], degraded: npt.NDArray[np.int16]) -> float:
    """Speech-to-noise ratio from degraded minus clean, over the clean speech's audible frames."""
    mask = audible_mask(clean)
    s = clean[mask].astype(np.float64)
    d = degraded[mask].astype(np.float64) - s
    return float(10 * np.log10(np.mean(s**2) / np.mean(d**2)))


def dbfs(x: npt.NDArray[Any]) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) / FS))


SPEECH = speechlike(6.0)


# --------------------------------------------------------------------------- SNR


@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_snr_hits_target(kind: NoiseKind, snr: float) -> None:
    assert 0 < audible_mask(SPEECH).mean() < 1  # the pauses are excluded from the speech level
    for index in range(3):
        perturber = LinePerturber(LinePerturbation(noise=kind, snr_db=snr, seed=11))
        out = perturber.apply(SPEECH, utterance_index=index)
        assert abs(measured_snr(SPEECH, out.pcm) - snr) < 0.5
        assert abs(out.report["snr_db"] - snr) < 0.1
        assert out.report["speech_level"] == "measured"
        assert out.report["speech_dbfs"] == pytest.approx(dbfs(SPEECH[audible_mask(SPEECH)]))


@needs_speech
@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_babble_snr_hits_target_on_tts_speech(snr: float) -> None:
    speech = Synthesizer().synthesize(
        "I need to change my flight to Denver next Tuesday, please.",
        voice=CALLER_VOICE,
        sample_rate_hz=RATE,
        seed=0,
    )
    perturber = LinePerturber(LinePerturbation(noise="babble", snr_db=snr, seed=5))
    for index in range(3):
        out = perturber.apply(speech, utterance_index=index)
        assert abs(measured_snr(speech, out.pcm) - snr) < 0.5
        assert abs(out.report["snr_db"] - snr) < 0.1


def test_babble_from_a_given_source_needs_no_tts() -> None:
    rng = np.random.default_rng(0)
    source = np.round(rng.normal(0, 3000, RATE * 3)).astype(np.int16)
    perturber = LinePerturber(LinePerturbation(noise="babble", snr_db=10.0), babble_source=source)
    out = perturber.apply(SPEECH, utterance_index=0)
    assert abs(measured_snr(SPEECH, out.pcm) - 10.0) < 0.5
    assert perturber.babble_bed is not None
    assert np.array_equal(perturber.babble_bed, source)


def test_silent_utterance_uses_the_nominal_speech_level() -> None:
    rng = np.random.default_rng(1)
    dither = np.round(rng.normal(0, FS * 10 ** (-50 / 20), RATE)).astype(np.int16)
    out = LinePerturber(LinePerturbation(noise="white", snr_db=15.0)).apply(
        dither, utterance_index=0
    )
    assert out.report["speech_level"] == "nominal"
    added = out.pcm.astype(np.float64) - dither
    assert dbfs(added) == pytest.approx(NOMINAL_SPEECH_DBFS - 15.0, abs=0.1)


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_line_noise_level(kind: NoiseKind) -> None:
    perturber = LinePerturber(LinePerturbation(noise=kind, snr_db=12.0, seed=3))
    gap = perturber.line_noise(RATE * 2, index=4)
    assert gap.dtype == np.int16 and len(gap) == RATE * 2
    assert dbfs(gap) == pytest.approx(NOMINAL_SPEECH_DBFS - 12.0, abs=0.1)
    assert np.array_equal(gap, perturber.line_noise(RATE * 2, index=4))
    assert not np.array_equal(gap, perturber.line_noise(RATE * 2, index=5))
    none = LinePerturber(LinePerturbation()).line_noise(500, index=0)
    assert none.dtype == np.int16 and len(none) == 500 and not np.any(none)


def band_slope_db_per_octave(x: npt.NDArray[Any]) -> float:
    freqs, psd = scipy.signal.welch(x.astype(np.float64), fs=RATE, nperseg=4096)
    band = (freqs >= 100) & (freqs <= 3200)
    return float(np.polyfit(np.log2(freqs[band]), 10 * np.log10(psd[band]), 1)[0])


def test_pink_noise_falls_3_db_per_octave() -> None:
    pink = LinePerturber(LinePerturbation(noise="pink", snr_db=0.0, seed=2))
    white = LinePerturber(LinePerturbation(noise="white", snr_db=0.0, seed=2))
    assert band_slope_db_per_octave(pink.line_noise(RATE * 30, index=0)) == pytest.approx(
        -3.0, abs=1.0
    )
    assert band_slope_db_per_octave(white.line_noise(RATE * 30, index=0)) == pytest.approx(
        0.0, abs=1.0
    )


# --------------------------------------------------------------------------- packet loss


@pytest.mark.parametrize("p", [0.03, 0.2])
@pytest.mark.parametrize("seed", [0, 1])
def test_packet_loss_rate_and_silence(p: float, seed: int) -> None:
    n_frames = 5000
    rng = np.random.default_rng(seed + 100)
    clean = rng.integers(1, 20000, n_frames * FRAME).astype(np.int16)  # no zero sample
    out = LinePerturber(LinePerturbation(packet_loss=p, seed=seed)).apply(clean, utterance_index=0)
    lo = scipy.stats.binom.ppf(0.0005, n_frames, p)
    hi = scipy.stats.binom.ppf(0.9995, n_frames, p)
    assert lo <= out.report["lost_count"] <= hi
    frames = out.pcm.reshape(n_frames, FRAME)
    silent = np.flatnonzero(~frames.any(axis=1))
    assert silent.tolist() == out.report["lost_frames"]
    kept = np.ones(n_frames, dtype=bool)
    kept[silent] = False
    assert np.array_equal(frames[kept], clean.reshape(n_frames, FRAME)[kept])


def test_packet_loss_partial_last_frame() -> None:
    clean = np.full(FRAME * 3 + 17, 1000, dtype=np.int16)
    perturber = LinePerturber(LinePerturbation(packet_loss=0.5, seed=0))
    for index in range(20):
        out = perturber.apply(clean, utterance_index=index)
        assert out.report["frames_total"] == 4
        if 3 in out.report["lost_frames"]:
            assert not np.any(out.pcm[FRAME * 3 :])
            return
    pytest.fail("the partial last frame was never lost in 20 tries at p=0.5")


# --------------------------------------------------------------------------- codec and gain


@pytest.mark.parametrize("bits", [4, 8, 12])
def test_codec_quantisation_error_matches_theory(bits: int) -> None:
    rng = np.random.default_rng(bits)
    clean = np.round(rng.normal(0, 3000, RATE * 5)).astype(np.int16)
    out = LinePerturber(LinePerturbation(codec_bits=bits)).apply(clean, utterance_index=0)
    step = 2 ** (16 - bits)
    err = out.pcm.astype(np.float64) - clean
    assert np.sqrt(np.mean(err**2)) == pytest.approx(step / math.sqrt(12), rel=0.05)
    assert np.all(out.pcm.astype(np.int64) % step == 0)
    assert np.max(np.abs(err)) <= step / 2


def test_codec_16_bits_is_identity() -> None:
    config = LinePerturbation(codec_bits=16)
    assert not config.active
    out = LinePerturber(config).apply(SPEECH, utterance_index=0)
    assert np.array_equal(out.pcm, SPEECH)


def test_volume_fluctuation_stays_within_depth() -> None:
    depth = 6.0
    clean = np.full(RATE * 20, 8000, dtype=np.int16)
    out = LinePerturber(
        LinePerturbation(volume_fluctuation_db=depth, volume_fluctuation_hz=0.5, seed=4)
    ).apply(clean, utterance_index=0)
    gain_db = 20 * np.log10(out.pcm.astype(np.float64) / 8000)
    tol = 20 * np.log10(1 + 0.5 / 4000)  # int16 rounding at the lowest level
    assert np.all(np.abs(gain_db) <= depth + tol)
    assert gain_db.max() - gain_db.min() > depth  # it does fluctuate (10 random knots)
    assert out.report["gain_db_min"] >= -depth and out.report["gain_db_max"] <= depth
    assert out.report["gain_db_min"] == pytest.approx(gain_db.min(), abs=0.01)
    # Slow: the gain moves by far less than 0.01 dB per sample at 0.5 Hz.
    assert np.max(np.abs(np.diff(gain_db))) < 0.01


# --------------------------------------------------------------------------- invariants


FULL = LinePerturbation(
    noise="pink",
    snr_db=10.0,
    packet_loss=0.1,
    codec_bits=8,
    volume_fluctuation_db=3.0,
    seed=9,
)


def test_clean_input_is_never_modified() -> None:
    clean = SPEECH.copy()
    out = LinePerturber(FULL).apply(clean, utterance_index=0)
    assert np.array_equal(clean, SPEECH)
    assert np.array_equal(out.clean, SPEECH)
    assert not out.clean.flags.writeable
    assert not np.shares_memory(out.pcm, clean)
    assert len(out.pcm) == len(clean) and out.pcm.dtype == np.int16


def test_all_off_is_identity() -> None:
    config = LinePerturbation()
    assert not config.active
    out = LinePerturber(config).apply(SPEECH, utterance_index=3)
    assert np.array_equal(out.pcm, SPEECH)
    assert not np.shares_memory(out.pcm, SPEECH)
    assert out.report["lost_count"] == 0 and out.report["snr_db"] is None


def test_same_seed_same_bytes_different_seed_differs() -> None:
    a = LinePerturber(FULL).apply(SPEECH, utterance_index=2)
    b = LinePerturber(FULL).apply(SPEECH, utterance_index=2)
    assert a.pcm.tobytes() == b.pcm.tobytes()
    assert a.report == b.report
    other_seed = LinePerturbation(**{**FULL.__dict__, "seed": 10})
    c = LinePerturber(other_seed).apply(SPEECH, utterance_index=2)
    assert a.pcm.tobytes() != c.pcm.tobytes()
    d = LinePerturber(FULL).apply(SPEECH, utterance_index=3)
    assert a.pcm.tobytes() != d.pcm.tobytes()


def test_effects_draw_independently() -> None:
    noise_only = LinePerturbation(noise="white", snr_db=10.0, seed=1)
    with_loss = LinePerturbation(noise="white", snr_db=10.0, packet_loss=0.2, seed=1)
    a = LinePerturber(noise_only).apply(SPEECH, utterance_index=0)
    b = LinePerturber(with_loss).apply(SPEECH, utterance_index=0)
    frames_a = a.pcm.reshape(-1, FRAME)
    frames_b = b.pcm.reshape(-1, FRAME)
    kept = np.setdiff1d(np.arange(len(frames_a)), b.report["lost_frames"])
    assert b.report["lost_count"] > 0
    assert np.array_equal(frames_a[kept], frames_b[kept])


def test_empty_input() -> None:
    out = LinePerturber(FULL).apply(np.zeros(0, dtype=np.int16), utterance_index=0)
    assert len(out.pcm) == 0 and out.report["frames_total"] == 0


def test_describe_is_json_and_round_trips() -> None:
    described = FULL.describe()
    assert json.loads(json.dumps(described)) == described
    assert described["active"] is True
    assert described["lost_frame_fill"] == "digital_silence"
    assert LinePerturbation.from_dict(described) == FULL
    with pytest.raises(ValueError, match="unknown"):
        LinePerturbation.from_dict({"loss": 0.1})
    report = LinePerturber(FULL).apply(SPEECH, utterance_index=0).report
    assert json.loads(json.dumps(report)) == report


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise": "brown"}, "noise"),
        ({"snr_db": math.nan}, "snr_db"),
        ({"snr_db": math.inf}, "snr_db"),
        ({"snr_db": "10"}, "snr_db"),
        ({"packet_loss": -0.01}, "packet_loss"),
        ({"packet_loss": 1.0}, "packet_loss"),
        ({"packet_loss": math.nan}, "packet_loss"),
        ({"codec_bits": 1}, "codec_bits"),
        ({"codec_bits": 17}, "codec_bits"),
        ({"codec_bits": 8.0}, "codec_bits"),
        ({"codec_bits": True}, "codec_bits"),
        ({"volume_fluctuation_db": -1.0}, "volume_fluctuation_db"),
        ({"volume_fluctuation_db": 41.0}, "volume_fluctuation_db"),
        ({"volume_fluctuation_hz": 0.0}, "volume_fluctuation_hz"),
        ({"volume_fluctuation_hz": math.inf}, "volume_fluctuation_hz"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_invalid_config_raises(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LinePerturbation(**kwargs)


def test_invalid_perturber_arguments_raise() -> None:
    config = LinePerturbation(noise="white")
    with pytest.raises(ValueError, match="sample_rate_hz"):
        LinePerturber(config, sample_rate_hz=0)
    with pytest.raises(ValueError, match="frame_samples"):
        LinePerturber(config, frame_samples=0)
    with pytest.raises(ValueError, match="babble_source"):
        LinePerturber(config, babble_source=np.zeros(RATE, dtype=np.int16))
    with pytest.raises(TypeError, match="int16"):
        LinePerturber(config, babble_source=np.ones(RATE))  # type: ignore[arg-type]
    perturber = LinePerturber(config)
    with pytest.raises(TypeError, match="int16"):
        perturber.apply(SPEECH.astype(np.float32), utterance_index=0)
    with pytest.raises(ValueError, match="utterance_index"):
        perturber.apply(SPEECH, utterance_index=-1)
    with pytest.raises(ValueError, match="n_samples"):
        perturber.line_noise(-1, index=0)


# --------------------------------------------------------------------------- babble


def test_babble_without_the_speech_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perturb_module, "_BED_CACHE", {})
    monkeypatch.setattr(Synthesizer, "available", staticmethod(lambda: False))
    with pytest.raises(SpeechUnavailableError, match=r"hydralab\[speech\]"):
        LinePerturber(LinePerturbation(noise="babble"))


@needs_speech
def test_babble_bed_is_dense_cached_and_reproducible() -> None:
    bed = render_babble_bed(RATE)
    assert bed is render_babble_bed(RATE)
    assert not bed.flags.writeable
    assert perturb_module.BABBLE_TALKERS >= 4
    assert len(bed) >= RATE * 10
    # Enough overlapping talkers that no 20 ms frame of the bed is quiet.
    assert audible_mask(bed).all()
    config = LinePerturbation(noise="babble", snr_db=5.0, seed=1)
    a = LinePerturber(config).apply(SPEECH, utterance_index=0)
    b = LinePerturber(config, babble_source=bed.copy()).apply(SPEECH, utterance_index=0)
    assert a.pcm.tobytes() == b.pcm.tobytes()
    c = LinePerturber(config).apply(SPEECH, utterance_index=1)
    assert a.pcm.tobytes() != c.pcm.tobytes()
    gap = LinePerturber(config).line_noise(RATE, index=0)
    assert dbfs(gap) == pytest.approx(NOMINAL_SPEECH_DBFS - 5.0, abs=0.1)
