"""Offline text-to-speech: eSpeak NG through the ``espeakng-loader`` wheel, driven with ctypes.

eSpeak NG is GPL-3.0-or-later, so it is an optional extra (``pip install 'hydralab[speech]'``).
Nothing here imports ``espeakng_loader`` until a :class:`Synthesizer` is first used; when it is
missing, :class:`SpeechUnavailableError` says how to install it.

The library is process-wide global state (one voice, one callback, not re-entrant), so every
call goes through one module lock. Synthesis runs at roughly 1600x real time, so holding the
lock for a whole utterance is cheap.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

__all__ = [
    "AGENT_VOICE",
    "CALLER_VOICE",
    "ESPEAK_SAMPLE_RATE_HZ",
    "SpeechUnavailableError",
    "SynthesizedSpeech",
    "Synthesizer",
    "WordTiming",
]

CALLER_VOICE = "en-us+f2"
"""Default voice of the simulated caller (female variant, F0 ~ 200 Hz).

``en-us+f2`` rather than ``en-us+f3``: f3 shifts formants up by 20-35 %, which roughly doubles
the word error rate of the local pocketsphinx STT (measured ~0.55 vs ~0.22 clean, ~0.55-0.75 vs
~0.40-0.55 through the 8 kHz phone path, on unseen airline lines)."""
AGENT_VOICE = "en-us+m3"
"""Default voice of a simulated agent (male variant, lower pitch)."""
ESPEAK_SAMPLE_RATE_HZ = 22050
"""eSpeak NG's native output rate (the engine uses whatever ``espeak_Initialize`` reports)."""

_INSTALL_HINT = (
    "offline TTS needs the optional 'speech' extra: pip install 'hydralab[speech]' "
    "(eSpeak NG, GPL-3.0)"
)

# espeak_AUDIO_OUTPUT / espeak_POSITION_TYPE / flags / parameters / events (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EE_OK = 0
_DEFAULT_PITCH = 50
_DEFAULT_VOLUME = 100


class SpeechUnavailableError(RuntimeError):
    """The optional offline speech synthesis backend (eSpeak NG) is not available."""


@dataclass(frozen=True)
class WordTiming:
    """One spoken word.

    Attributes:
        text: The word as written in the input text.
        start_ms: Start of the word in the synthesized audio (ms from the first sample).
        char_pos: 0-based character offset of the word in the input text.
    """

    text: str
    start_ms: float
    char_pos: int


@dataclass(frozen=True)
class SynthesizedSpeech:
    """Synthesized audio plus word timings (from :meth:`Synthesizer.synthesize_with_words`)."""

    pcm: np.ndarray
    sample_rate_hz: int
    words: list[WordTiming] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        """Length of ``pcm`` in milliseconds."""
        return 1000.0 * len(self.pcm) / self.sample_rate_hz

    def text_until(self, t_ms: float) -> str:
        """Words that had started by ``t_ms`` (e.g. the part heard before a barge-in)."""
        return " ".join(w.text for w in self.words if w.start_ms <= t_ms)


Utterance = SynthesizedSpeech
"""Deprecated alias of :class:`SynthesizedSpeech` (kept for one release; not in ``__all__``)."""


class _EventId(ctypes.Union):
    _fields_ = (
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    )


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position
        ("length", ctypes.c_int),  # characters
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index at the native rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class _Engine:
    """The process-wide eSpeak NG instance. Use only while holding ``_LOCK``."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise SpeechUnavailableError(_INSTALL_HINT) from exc
        try:
            lib = ctypes.CDLL(str(espeakng_loader.get_library_path()))
            data_path = str(espeakng_loader.get_data_path()).encode()
        except OSError as exc:
            raise SpeechUnavailableError(f"{_INSTALL_HINT}; loading it failed: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        # Seed eSpeak's random generator (breath noise) before each call.
        self._set_rand_seed: Any = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_rand_seed is not None:
            self._set_rand_seed.argtypes = [ctypes.c_long]
            self._set_rand_seed.restype = None
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise SpeechUnavailableError(f"{_INSTALL_HINT}; espeak_Initialize failed ({rate})")
        self.lib: Any = lib
        self.native_rate_hz = int(rate)
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int, int]] = []  # (char_pos0, length, sample)
        # Keep a reference: the C side holds only a raw pointer to this trampoline.
        self._callback = _CALLBACK_TYPE(self._on_synth)
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_synth(self, wav: Any, n_samples: int, events: Any) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while True:
            ev = events[i]
            if ev.type == _EVENT_LIST_TERMINATED:
                break
            if ev.type == _EVENT_WORD:
                self._words.append((ev.text_position - 1, ev.length, ev.sample))
            i += 1
        return 0

    def synth(
        self, text: str, *, voice: str, rate_wpm: int, pitch: int | None, seed: int
    ) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        if voice != self._voice:
            rc = self.lib.espeak_SetVoiceByName(voice.encode())
            if rc != _EE_OK:
                self._voice = None
                raise ValueError(f"unknown eSpeak NG voice {voice!r} (error {rc})")
            self._voice = voice
        self.lib.espeak_SetParameter(_PARAM_RATE, int(rate_wpm), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, _DEFAULT_PITCH if pitch is None else pitch, 0)
        self.lib.espeak_SetParameter(_PARAM_VOLUME, _DEFAULT_VOLUME, 0)
        if self._set_rand_seed is not None:
            self._set_rand_seed(seed)
        self._chunks = []
        self._words = []
        data = text.encode("utf-8") + b"\0"
        try:
            rc = self.lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
            )
            if rc != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed (error {rc})")
            pcm = (
                np.concatenate(self._chunks).astype(np.int16, copy=False)
                if self._chunks
                else np.zeros(0, dtype=np.int16)
            )
            return pcm, list(self._words)
        finally:
            self._chunks = []
            self._words = []


_LOCK = threading.Lock()
_ENGINE: _Engine | None = None


def _engine() -> _Engine:
    """Return the process-wide engine, initializing it on first use. Caller holds ``_LOCK``."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def _noise_rms(noise_dbfs: float) -> float:
    return float(32768.0 * 10.0 ** (noise_dbfs / 20.0))


class Synthesizer:
    """Offline TTS with eSpeak NG.

    Cheap to construct; the shared library is loaded on first synthesis (process-wide, shared
    by all instances) and raises :class:`SpeechUnavailableError` if the 'speech' extra is not
    installed. Thread-safe: calls are serialized by a module lock.

    Args:
        voice: Default voice for calls that pass ``voice=None``.
        rate_wpm: Default speaking rate (words per minute) for calls that pass ``None``.
    """

    def __init__(self, *, voice: str = "en-us", rate_wpm: int = 175) -> None:
        self.voice = voice
        self.rate_wpm = rate_wpm

    @staticmethod
    def available() -> bool:
        """Whether the eSpeak NG backend can be loaded (loads it if needed)."""
        try:
            with _LOCK:
                _engine()
        except SpeechUnavailableError:
            return False
        return True

    def synthesize(
        self,
        text: str,
        *,
        voice: str | None = None,
        rate_wpm: int | None = None,
        pitch: int | None = None,
        sample_rate_hz: int = 48000,
        noise_dbfs: float | None = -50.0,
        seed: int = 0,
    ) -> np.ndarray:
        """Synthesize ``text`` to int16 mono PCM at ``sample_rate_hz``.

        Args:
            text: Plain text (not SSML).
            voice: eSpeak NG voice name, e.g. ``CALLER_VOICE`` / ``AGENT_VOICE``
                (``None`` = the instance's, by default ``"en-us"``).
            rate_wpm: Speaking rate in words per minute (``None`` = the instance's, 175).
            pitch: eSpeak pitch parameter 0-100 (``None`` = voice default, 50).
            sample_rate_hz: Output rate; eSpeak's native 22050 Hz is resampled (soxr VHQ).
            noise_dbfs: RMS of added Gaussian noise relative to full scale. eSpeak emits exact
                digital zeros between words, which derail VAD and STT. ``None`` = no noise.
            seed: Seed of the added noise (and of eSpeak's random generator). eSpeak keeps
                some synthesis state across calls (pitch-flutter phase, echo buffer), so
                repeating a call can differ by a few samples; nothing else is random.

        Returns:
            int16 mono PCM. Nothing is trimmed.
        """
        return self.synthesize_with_words(
            text,
            voice=voice,
            rate_wpm=rate_wpm,
            pitch=pitch,
            sample_rate_hz=sample_rate_hz,
            noise_dbfs=noise_dbfs,
            seed=seed,
        ).pcm

    def synthesize_with_words(
        self,
        text: str,
        *,
        voice: str | None = None,
        rate_wpm: int | None = None,
        pitch: int | None = None,
        sample_rate_hz: int = 48000,
        noise_dbfs: float | None = -50.0,
        seed: int = 0,
    ) -> SynthesizedSpeech:
        """Like :meth:`synthesize`, plus eSpeak WORD events as :class:`WordTiming` entries."""
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        if pitch is not None and not 0 <= pitch <= 100:
            raise ValueError(f"pitch must be in 0..100, got {pitch}")
        use_voice = self.voice if voice is None else voice
        use_rate = self.rate_wpm if rate_wpm is None else rate_wpm
        with _LOCK:
            engine = _engine()
            native, raw_words = engine.synth(
                text, voice=use_voice, rate_wpm=use_rate, pitch=pitch, seed=seed
            )
            native_rate = engine.native_rate_hz

        if sample_rate_hz != native_rate and len(native) > 0:
            out = soxr.resample(
                native.astype(np.float32) / 32768.0, native_rate, sample_rate_hz, quality="VHQ"
            )
        else:
            out = native.astype(np.float32) / 32768.0
        if noise_dbfs is not None:
            rng = np.random.default_rng(seed)
            out = out + rng.normal(0.0, _noise_rms(noise_dbfs) / 32768.0, size=len(out))
        pcm = np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)

        words = [
            WordTiming(
                text=text[pos : pos + length],
                start_ms=1000.0 * sample / native_rate,
                char_pos=pos,
            )
            for pos, length, sample in raw_words
        ]
        return SynthesizedSpeech(pcm=pcm, sample_rate_hz=sample_rate_hz, words=words)
