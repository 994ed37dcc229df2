"""Line perturbations: a degraded phone line applied to the caller's audio before it is sent.

EVA's user simulator can perturb its audio (``perturbation_config``: background noise at a
target SNR plus connection degradation). This module provides the same effects for hydralab's
8 kHz int16 caller audio. It is sans-I/O and uses only numpy and scipy, except babble, which
renders its talkers with hydralab's own TTS.

The effects are applied in the order a real call meets them:

1. **Background noise** at the caller's end (``white``, ``pink`` or ``babble``), scaled to a
   target speech-to-noise ratio (see *SNR* below).
2. **Volume fluctuation**: a slow, smooth random gain of at most ``±volume_fluctuation_db``.
   It applies to speech and noise together, so it does not change the SNR.
3. **Codec quantisation**: the signal is requantised to ``codec_bits`` bits (a uniform
   mid-tread quantiser with step ``2**(16 - bits)``), then clipped to int16.
4. **Packet loss**: each frame of ``frame_samples`` samples (20 ms at 8 kHz) is lost
   independently with probability ``packet_loss``. Frame ``k`` covers samples
   ``[k * frame_samples, (k + 1) * frame_samples)`` of the utterance; the last frame may be
   partial. A lost frame becomes **digital silence** (zeros, which μ-law encodes as
   ``ULAW_SILENCE``). That is what a receiver without packet-loss concealment plays, the worst
   case for the listener, and it is easy to find in a recording. G.711 Appendix I concealment
   (pitch repetition) would be milder and is not modelled.

SNR:
    The *speech level* is the RMS of the clean utterance over its audible frames: the
    ``frame_samples`` frames whose RMS is above :data:`~hydralab.audio.timeline.AUDIBLE_DBFS`
    (-45 dBFS). The caller already trims quiet head and tail frames, but pauses between words
    (eSpeak's -50 dBFS dither) stay inside an utterance, so the gate is applied per frame, the
    same rule the caller uses for trimming. The added noise is scaled so that its RMS over the
    **same frames** is exactly ``speech level - snr_db``; ``report["snr_db"]`` is measured from
    the noise samples actually added. Int16 rounding, clipping and the later effects then move
    the SNR of the output by a little (less than 0.1 dB at the default levels). An utterance
    without any audible frame (e.g. a gap of line noise) is given :data:`NOMINAL_SPEECH_DBFS`
    as its speech level, so its noise is at the level :meth:`LinePerturber.line_noise` gives.

Randomness:
    Every random draw comes from a generator seeded with ``(seed, stream, index, effect)``, so
    one seed gives byte-identical output, utterances differ from one another, and switching
    one effect on or off does not change the random draws of the others (e.g. the noise under
    utterance 3 is the same with and without packet loss).

Babble:
    Babble is a bed of :data:`BABBLE_TALKERS` overlapping eSpeak NG talkers (different voices,
    pitches and rates reading neutral sentences), rendered once per process and sample rate
    and looped seamlessly. Each utterance takes a segment at a random offset. eSpeak carries
    some state from call to call, so a bed rendered in another process after other speech can
    differ by a few samples. Output is byte-identical within a process. For byte-identity
    across processes, save :attr:`LinePerturber.babble_bed` and pass it back as
    ``babble_source``. The bed content is fixed (it does not depend on ``seed``), like a noise
    recording from a corpus; ``seed`` only picks the offsets.

Example:
    >>> config = LinePerturbation(noise="pink", snr_db=15.0, packet_loss=0.02, seed=7)
    >>> perturber = LinePerturber(config)
    >>> out = perturber.apply(pcm, utterance_index=0)  # doctest: +SKIP
    >>> out.report["snr_db"]  # doctest: +SKIP
    15.0
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from hydralab.audio.pcm import check_pcm16
from hydralab.audio.timeline import AUDIBLE_DBFS

__all__ = [
    "BABBLE_TALKERS",
    "NOISE_KINDS",
    "NOMINAL_SPEECH_DBFS",
    "PINK_CORNER_HZ",
    "LinePerturbation",
    "LinePerturber",
    "NoiseKind",
    "PerturbedAudio",
    "render_babble_bed",
]

NoiseKind = Literal["none", "white", "pink", "babble"]
"""The background noise types."""
NOISE_KINDS: Final[tuple[str, ...]] = get_args(NoiseKind)

NOMINAL_SPEECH_DBFS: Final = -20.0
"""Speech level (RMS of audible frames, dBFS re 32768) assumed where there is no speech.

It sets the noise level of :meth:`LinePerturber.line_noise` and of utterances without an
audible frame: ``NOMINAL_SPEECH_DBFS - snr_db``. It matches hydralab's caller voice, whose
active level measured -18.2 to -20.4 dBFS (``en-us+f2`` at 150-200 wpm, 8 kHz, 6 lines), so
the noise keeps its level between utterances. It is 6 dB above the -26 dBov that ITU-T P.56
telephony often assumes, because eSpeak speaks loud."""

PINK_CORNER_HZ: Final = 20.0
"""Pink noise has a 1/f power spectrum above this frequency and is flat below it (DC = 0),
so sub-audible rumble does not take up most of the noise power."""

BABBLE_TALKERS: Final = 6
"""Number of overlapping talkers in the babble bed."""

_BABBLE_BED_SECONDS: Final = 20.0
_BABBLE_SEAM_SECONDS: Final = 0.05
_BABBLE_PEAK: Final = 0.9 * 32767.0
_BABBLE_BED_SEED: Final = 20240611
_BABBLE_VOICES: Final = (
    "en-us+m1",
    "en-us+f1",
    "en-us+f4",
    "en-us-nyc+m2",
    "en-gb-x-rp+f2",
    "en-us+m7",
)
_BABBLE_SENTENCES: Final = (
    "The library closes early on the first Monday of every month.",
    "We planted tomatoes along the fence, and most of them came up.",
    "She said the bus was late again because of the road works.",
    "There is a small cafe near the station that sells fresh bread.",
    "The meeting moved to the second floor after lunch.",
    "My brother painted the kitchen a pale shade of green.",
    "It rained all morning, but the afternoon was bright and warm.",
    "They are thinking about a trip to the coast in the spring.",
    "The new printer works much better than the old one did.",
    "Could you pass me the blue folder on the top shelf?",
    "I read somewhere that the bridge was built over a hundred years ago.",
    "The kids spent the whole weekend building a tree house.",
)

# Random streams and effects (entropy words of the SeedSequence).
_STREAM_UTTERANCE: Final = 0
_STREAM_GAP: Final = 1
_STREAM_BABBLE_BED: Final = 2
_EFFECT_NOISE: Final = 0
_EFFECT_LOSS: Final = 1
_EFFECT_GAIN: Final = 2

_FULL_SCALE: Final = 32768.0
_MAX_FLUCTUATION_DB: Final = 40.0
_MAX_FLUCTUATION_HZ: Final = 50.0

Float64Array = npt.NDArray[np.float64]
Int16Array = npt.NDArray[np.int16]


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _dbfs(mean_square: float) -> float | None:
    return 10.0 * math.log10(mean_square / _FULL_SCALE**2) if mean_square > 0 else None


@dataclass(frozen=True)
class LinePerturbation:
    """How the line degrades the caller's audio. Everything is off by default.

    Attributes:
        noise: Background noise type: ``"none"``, ``"white"`` (Gaussian), ``"pink"`` (1/f)
            or ``"babble"`` (overlapping TTS talkers; needs the 'speech' extra).
        snr_db: Target speech-to-noise ratio in dB: RMS of the clean speech over its audible
            frames vs RMS of the added noise over the same frames. Any finite value; ignored
            when ``noise == "none"``.
        packet_loss: Probability that a frame (20 ms) is lost, independently per frame,
            ``0 <= packet_loss < 1``. A lost frame becomes digital silence.
        codec_bits: Requantise to this many bits (2..16; 8 gives clearly audible
            quantisation noise). ``None`` = off. 16 is the identity on int16 audio.
        volume_fluctuation_db: Depth of a slow random gain modulation: the gain stays within
            ``±volume_fluctuation_db`` dB (0..40; 0 = off).
        volume_fluctuation_hz: Rate of that modulation: the random gain takes a new target
            value this many times per second, with smooth (raised-cosine) transitions
            (0 < hz <= 50).
        seed: Seed of every random draw (any int; reduced mod 2**64).
    """

    noise: NoiseKind = "none"
    snr_db: float = 20.0
    packet_loss: float = 0.0
    codec_bits: int | None = None
    volume_fluctuation_db: float = 0.0
    volume_fluctuation_hz: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {NOISE_KINDS}, got {self.noise!r}")
        _finite("snr_db", self.snr_db)
        loss = _finite("packet_loss", self.packet_loss)
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"packet_loss must be in [0, 1), got {self.packet_loss!r}")
        if self.codec_bits is not None and (
            isinstance(self.codec_bits, bool)
            or not isinstance(self.codec_bits, int)
            or not 2 <= self.codec_bits <= 16
        ):
            raise ValueError(f"codec_bits must be None or an int in 2..16, got {self.codec_bits!r}")
        depth = _finite("volume_fluctuation_db", self.volume_fluctuation_db)
        if not 0.0 <= depth <= _MAX_FLUCTUATION_DB:
            raise ValueError(
                f"volume_fluctuation_db must be in [0, {_MAX_FLUCTUATION_DB:g}] dB, "
                f"got {self.volume_fluctuation_db!r}"
            )
        rate = _finite("volume_fluctuation_hz", self.volume_fluctuation_hz)
        if not 0.0 < rate <= _MAX_FLUCTUATION_HZ:
            raise ValueError(
                f"volume_fluctuation_hz must be in (0, {_MAX_FLUCTUATION_HZ:g}] Hz, "
                f"got {self.volume_fluctuation_hz!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")

    @property
    def active(self) -> bool:
        """Whether any effect can change the audio (``codec_bits=16`` cannot)."""
        return (
            self.noise != "none"
            or self.packet_loss > 0.0
            or (self.codec_bits is not None and self.codec_bits < 16)
            or self.volume_fluctuation_db > 0.0
        )

    def describe(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (for ``run.json``).

        Besides the fields, it records ``active`` and the fixed choices that shape the output:
        ``nominal_speech_dbfs``, ``lost_frame_fill`` and, for babble, ``babble_talkers``.
        :meth:`from_dict` reads it back.
        """
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["snr_db"] = float(self.snr_db)
        out["packet_loss"] = float(self.packet_loss)
        out["volume_fluctuation_db"] = float(self.volume_fluctuation_db)
        out["volume_fluctuation_hz"] = float(self.volume_fluctuation_hz)
        out["active"] = self.active
        out["nominal_speech_dbfs"] = NOMINAL_SPEECH_DBFS
        out["lost_frame_fill"] = "digital_silence"
        if self.noise == "babble":
            out["babble_talkers"] = BABBLE_TALKERS
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinePerturbation:
        """Build from :meth:`describe` output (or any subset of the fields).

        Raises:
            ValueError: On an unknown key or an invalid value.
        """
        names = {f.name for f in fields(cls)}
        derived = {"active", "nominal_speech_dbfs", "lost_frame_fill", "babble_talkers"}
        unknown = set(data) - names - derived
        if unknown:
            raise ValueError(f"unknown LinePerturbation keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class PerturbedAudio:
    """One utterance after :meth:`LinePerturber.apply`.

    Attributes:
        pcm: The degraded audio, int16, same length as the input (a new array).
        clean: The input, untouched (a read-only view of it).
        report: What was done, JSON-ready: ``snr_db`` (measured from the added noise),
            ``speech_dbfs``, ``noise_dbfs``, ``lost_frames`` (indices), ``lost_count``,
            ``gain_db_min``/``gain_db_max``, ``clipped_samples`` and more.
    """

    pcm: Int16Array
    clean: Int16Array
    report: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- noise


def _white(rng: np.random.Generator, n: int) -> Float64Array:
    return rng.standard_normal(n)


def _pink(rng: np.random.Generator, n: int, sample_rate_hz: int) -> Float64Array:
    """Gaussian noise with a 1/f power spectrum above :data:`PINK_CORNER_HZ` (FFT shaping)."""
    if n == 0:
        return np.zeros(0)
    import scipy.fft  # deferred: scipy.fft costs ~0.5 s at import, only pink noise needs it

    m = int(scipy.fft.next_fast_len(max(n, 2), real=True))
    spectrum = rng.standard_normal(m // 2 + 1) + 1j * rng.standard_normal(m // 2 + 1)
    freqs = np.fft.rfftfreq(m, d=1.0 / sample_rate_hz)
    shape = 1.0 / np.sqrt(np.maximum(freqs, PINK_CORNER_HZ))
    shape[0] = 0.0
    out: Float64Array = scipy.fft.irfft(spectrum * shape, n=m)[:n]
    return out


_BED_LOCK = threading.Lock()
_BED_CACHE: dict[int, Int16Array] = {}


def render_babble_bed(sample_rate_hz: int = 8000) -> Int16Array:
    """The babble bed: :data:`BABBLE_TALKERS` overlapping eSpeak NG talkers, loopable.

    About 20 s of int16 audio, peak at 90 % of full scale, with a 50 ms equal-power
    crossfade at the loop point so that looping adds no click. Rendered once per process and
    sample rate (cached, read-only).

    Args:
        sample_rate_hz: Output rate.

    Returns:
        The bed (read-only int16 array).

    Raises:
        SpeechUnavailableError: When the optional 'speech' extra (eSpeak NG) is missing.
    """
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    with _BED_LOCK:
        bed = _BED_CACHE.get(sample_rate_hz)
        if bed is None:
            bed = _render_babble_bed(sample_rate_hz)
            bed.flags.writeable = False
            _BED_CACHE[sample_rate_hz] = bed
        return bed


def _render_babble_bed(sample_rate_hz: int) -> Int16Array:
    from hydralab.speech.tts import SpeechUnavailableError, Synthesizer

    if not Synthesizer.available():
        raise SpeechUnavailableError(
            "babble noise renders its talkers with eSpeak NG, which needs the optional "
            "'speech' extra: pip install 'hydralab[speech]' (or pass babble_source=...)"
        )
    synthesizer = Synthesizer()
    rng = np.random.default_rng(np.random.SeedSequence([_BABBLE_BED_SEED, _STREAM_BABBLE_BED]))
    length = round(_BABBLE_BED_SECONDS * sample_rate_hz)
    seam = round(_BABBLE_SEAM_SECONDS * sample_rate_hz)
    total = length + seam
    frame = max(1, sample_rate_hz // 50)
    bed = np.zeros(total)
    for talker in range(BABBLE_TALKERS):
        voice = _BABBLE_VOICES[talker % len(_BABBLE_VOICES)]
        pitch = int(rng.integers(30, 71))
        rate = int(rng.integers(150, 196))
        pieces: list[Float64Array] = []
        have = 0
        sentence = 0
        while have < total:
            order = rng.permutation(len(_BABBLE_SENTENCES))
            for k in order:
                pcm = synthesizer.synthesize(
                    _BABBLE_SENTENCES[int(k)],
                    voice=voice,
                    rate_wpm=rate,
                    pitch=pitch,
                    sample_rate_hz=sample_rate_hz,
                    noise_dbfs=None,
                    seed=1000 * talker + sentence,
                )
                sentence += 1
                gap = np.zeros(round(float(rng.uniform(0.05, 0.3)) * sample_rate_hz))
                pieces += [pcm.astype(np.float64), gap]
                have += len(pcm) + len(gap)
                if have >= total:
                    break
        track = np.roll(np.concatenate(pieces), -int(rng.integers(have)))[:total]
        n_frames = total // frame
        power = np.mean(track[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1)
        active = power[power > _FULL_SCALE**2 * 10.0 ** (AUDIBLE_DBFS / 10.0)]
        level = math.sqrt(float(np.mean(active))) if len(active) else 1.0
        bed += track / level * 10.0 ** (float(rng.uniform(-3.0, 3.0)) / 20.0)
    # Seamless loop: the head fades from the continuation of the tail into the bed proper.
    w = np.sin(0.5 * np.pi * (np.arange(seam) + 0.5) / seam)
    looped = bed[:length].copy()
    looped[:seam] = bed[:seam] * w + bed[length:total] * np.sqrt(1.0 - w**2)
    peak = float(np.max(np.abs(looped)))
    scaled = looped * (_BABBLE_PEAK / peak) if peak > 0 else looped
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------- perturber


class LinePerturber:
    """Applies a :class:`LinePerturbation` to utterances (pure; no I/O).

    Args:
        config: The perturbation settings.
        sample_rate_hz: Sample rate of the audio (8000 on the phone line).
        frame_samples: Samples per packet (160 = 20 ms at 8 kHz): the unit of packet loss
            and of the audible-frame gate that measures the speech level.
        babble_source: int16 audio to use as the babble bed instead of rendering one with
            eSpeak NG (e.g. a saved :attr:`babble_bed`, for byte-identity across processes,
            or a recording). It is looped; its level does not matter.

    Raises:
        ValueError: On invalid arguments.
        SpeechUnavailableError: For babble without ``babble_source`` when the optional
            'speech' extra (eSpeak NG) is not installed.
    """

    def __init__(
        self,
        config: LinePerturbation,
        *,
        sample_rate_hz: int = 8000,
        frame_samples: int = 160,
        babble_source: Int16Array | None = None,
    ) -> None:
        if not isinstance(config, LinePerturbation):
            raise TypeError(f"config must be a LinePerturbation, got {type(config).__name__}")
        if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, int):
            raise ValueError(f"sample_rate_hz must be an int, got {sample_rate_hz!r}")
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        if isinstance(frame_samples, bool) or not isinstance(frame_samples, int):
            raise ValueError(f"frame_samples must be an int, got {frame_samples!r}")
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, got {frame_samples}")
        self.config = config
        self.sample_rate_hz = sample_rate_hz
        self.frame_samples = frame_samples
        self._seed = config.seed % 2**64
        self._bed: Int16Array | None = None
        if babble_source is not None:
            source = check_pcm16(babble_source, "babble_source")
            if len(source) < frame_samples or not np.any(source):
                raise ValueError(
                    f"babble_source must hold at least {frame_samples} samples, not all zero"
                )
            self._bed = source.copy()
            self._bed.flags.writeable = False
        elif config.noise == "babble":
            self._bed = render_babble_bed(sample_rate_hz)
        self._bed_f64: Float64Array | None = (
            None if self._bed is None else self._bed.astype(np.float64)
        )

    @property
    def babble_bed(self) -> Int16Array | None:
        """The babble bed in use (read-only), or ``None`` when there is none."""
        return self._bed

    def _rng(self, stream: int, index: int, effect: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self._seed, stream, index, effect]))

    def _raw_noise(self, rng: np.random.Generator, n: int) -> Float64Array:
        kind = self.config.noise
        if kind == "white":
            return _white(rng, n)
        if kind == "pink":
            return _pink(rng, n, self.sample_rate_hz)
        if kind == "babble":
            assert self._bed_f64 is not None
            bed = self._bed_f64
            start = int(rng.integers(len(bed)))
            segment: Float64Array = bed[(start + np.arange(n)) % len(bed)]
            return segment
        return np.zeros(n)

    def _gain_db(self, rng: np.random.Generator, n: int) -> Float64Array:
        """Smooth random gain in dB within ±depth: random knots at ``hz``, cosine-joined."""
        cfg = self.config
        pos = np.arange(n) * (cfg.volume_fluctuation_hz / self.sample_rate_hz)
        pos += float(rng.uniform(0.0, 1.0))
        knots = rng.uniform(-1.0, 1.0, size=(int(pos[-1]) + 2) if n else 1)
        k = np.floor(pos).astype(np.int64)
        w = 0.5 - 0.5 * np.cos(np.pi * (pos - k))
        shape: Float64Array = knots[k] * (1.0 - w) + knots[np.minimum(k + 1, len(knots) - 1)] * w
        return cfg.volume_fluctuation_db * shape

    def _speech_mask(self, x: Float64Array) -> npt.NDArray[np.bool_] | None:
        """Samples of the audible frames of ``x``, or ``None`` if no frame is audible."""
        f = self.frame_samples
        n = len(x)
        n_frames = -(-n // f)
        padded = np.zeros(n_frames * f)
        padded[:n] = x
        counts = np.full(n_frames, float(f))
        counts[-1] = n - (n_frames - 1) * f
        power = np.sum(padded.reshape(n_frames, f) ** 2, axis=1) / counts
        audible = power > _FULL_SCALE**2 * 10.0 ** (AUDIBLE_DBFS / 10.0)
        if not np.any(audible):
            return None
        mask: npt.NDArray[np.bool_] = np.repeat(audible, f)[:n]
        return mask

    def apply(self, pcm: Int16Array, *, utterance_index: int) -> PerturbedAudio:
        """Degrade one utterance.

        Args:
            pcm: The clean utterance, mono int16 at ``sample_rate_hz``. It is not modified.
            utterance_index: Index of the utterance in the call (>= 0); with the seed it
                selects the random draws, so each utterance gets its own noise and losses.

        Returns:
            The degraded audio, the clean input and a report. The report's keys:
            ``utterance_index``, ``samples``, ``frames_total``, ``noise``, ``snr_db_target``,
            ``snr_db`` (speech RMS vs the RMS of the noise actually added, over the audible
            frames; ``None`` without noise), ``speech_dbfs``, ``speech_level``
            (``"measured"`` or ``"nominal"`` when no frame is audible), ``speech_frames``,
            ``noise_dbfs``, ``gain_db_min``, ``gain_db_max``, ``codec_bits``,
            ``clipped_samples``, ``lost_frames`` and ``lost_count``.

        Raises:
            TypeError: If ``pcm`` is not 1-D int16.
            ValueError: If ``utterance_index`` is negative or not an int.
        """
        clean = check_pcm16(pcm, "LinePerturber.apply")
        if isinstance(utterance_index, bool) or not isinstance(utterance_index, int):
            raise ValueError(f"utterance_index must be an int, got {utterance_index!r}")
        if utterance_index < 0:
            raise ValueError(f"utterance_index must be >= 0, got {utterance_index}")
        cfg = self.config
        n = len(clean)
        f = self.frame_samples
        n_frames = -(-n // f)
        report: dict[str, Any] = {
            "utterance_index": utterance_index,
            "samples": n,
            "frames_total": n_frames,
            "noise": cfg.noise,
            "snr_db_target": float(cfg.snr_db) if cfg.noise != "none" else None,
            "snr_db": None,
            "speech_dbfs": None,
            "speech_level": None,
            "speech_frames": None,
            "noise_dbfs": None,
            "gain_db_min": 0.0,
            "gain_db_max": 0.0,
            "codec_bits": cfg.codec_bits,
            "clipped_samples": 0,
            "lost_frames": [],
            "lost_count": 0,
        }
        view = clean.view()
        view.flags.writeable = False
        if n == 0:
            return PerturbedAudio(pcm=clean.copy(), clean=view, report=report)

        shaped = cfg.noise != "none" or cfg.volume_fluctuation_db > 0.0
        quantise = cfg.codec_bits is not None and cfg.codec_bits < 16
        if shaped or quantise:
            x = clean.astype(np.float64)
            if cfg.noise != "none":
                x = x + self._noise_for(x, utterance_index, report)
            if cfg.volume_fluctuation_db > 0.0:
                gain_db = self._gain_db(
                    self._rng(_STREAM_UTTERANCE, utterance_index, _EFFECT_GAIN), n
                )
                report["gain_db_min"] = float(np.min(gain_db))
                report["gain_db_max"] = float(np.max(gain_db))
                x *= 10.0 ** (gain_db / 20.0)
            report["clipped_samples"] = int(np.count_nonzero((x < -32768.5) | (x > 32767.5)))
            x = np.clip(x, -32768.0, 32767.0)
            if quantise:
                assert cfg.codec_bits is not None
                step = float(2 ** (16 - cfg.codec_bits))
                x = np.clip(np.round(x / step) * step, -32768.0, 32768.0 - step)
            out = np.round(x).astype(np.int16)
        else:
            out = clean.copy()

        if cfg.packet_loss > 0.0:
            draws = self._rng(_STREAM_UTTERANCE, utterance_index, _EFFECT_LOSS).random(n_frames)
            lost = np.flatnonzero(draws < cfg.packet_loss)
            for k in lost:
                out[int(k) * f : (int(k) + 1) * f] = 0
            report["lost_frames"] = [int(k) for k in lost]
            report["lost_count"] = len(lost)
        return PerturbedAudio(pcm=out, clean=view, report=report)

    def _noise_for(self, x: Float64Array, index: int, report: dict[str, Any]) -> Float64Array:
        """Noise for clean ``x`` at the target SNR; fills the SNR entries of ``report``."""
        n = len(x)
        raw = self._raw_noise(self._rng(_STREAM_UTTERANCE, index, _EFFECT_NOISE), n)
        mask = self._speech_mask(x)
        if mask is None:
            speech_ms = _FULL_SCALE**2 * 10.0 ** (NOMINAL_SPEECH_DBFS / 10.0)
            region = np.ones(n, dtype=bool)
            report["speech_level"] = "nominal"
            report["speech_frames"] = 0
        else:
            speech_ms = float(np.mean(x[mask] ** 2))
            region = mask
            report["speech_level"] = "measured"
            report["speech_frames"] = int(np.count_nonzero(mask[:: self.frame_samples]))
        raw_ms = float(np.mean(raw[region] ** 2))
        if raw_ms <= 0.0:  # a silent stretch of a user-supplied babble bed
            raw_ms = float(np.mean(raw**2))
        if raw_ms <= 0.0:
            report["speech_dbfs"] = _dbfs(speech_ms)
            return raw
        target_ms = speech_ms / 10.0 ** (self.config.snr_db / 10.0)
        noise = raw * math.sqrt(target_ms / raw_ms)
        noise_ms = float(np.mean(noise[region] ** 2))
        report["speech_dbfs"] = _dbfs(speech_ms)
        report["noise_dbfs"] = _dbfs(noise_ms)
        report["snr_db"] = 10.0 * math.log10(speech_ms / noise_ms) if noise_ms > 0 else None
        return noise

    def line_noise(self, n_samples: int, *, index: int) -> Int16Array:
        """Background noise for the audio between utterances (int16, ``n_samples`` long).

        Its RMS is ``NOMINAL_SPEECH_DBFS - snr_db``: the level the noise has under speech of
        the nominal level. It is the noise only, to be mixed into the caller's own gap audio;
        codec, loss and gain effects are not applied (pass gap audio through :meth:`apply` for
        those; a gap without audible frames gets noise at this same level). All zeros when
        ``noise == "none"``. Deterministic in ``(seed, index)``, independent of :meth:`apply`.

        Args:
            n_samples: Length in samples (>= 0).
            index: Index of the gap (>= 0).

        Raises:
            ValueError: If ``n_samples`` or ``index`` is negative or not an int.
        """
        for name, value in (("n_samples", n_samples), ("index", index)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.config.noise == "none" or n_samples == 0:
            return np.zeros(n_samples, dtype=np.int16)
        raw = self._raw_noise(self._rng(_STREAM_GAP, index, _EFFECT_NOISE), n_samples)
        raw_ms = float(np.mean(raw**2))
        if raw_ms <= 0.0:
            return np.zeros(n_samples, dtype=np.int16)
        target_db = NOMINAL_SPEECH_DBFS - self.config.snr_db
        target_ms = _FULL_SCALE**2 * 10.0 ** (target_db / 10.0)
        scaled = raw * math.sqrt(target_ms / raw_ms)
        return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)
