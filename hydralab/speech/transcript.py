"""What every transcriber shares: the interface, its config and result, and the speech guards.

:mod:`hydralab.speech.stt` (the local transcriber and :func:`~hydralab.speech.stt.make_transcriber`)
and :mod:`hydralab.speech.providers` (the HTTP transcribers) both build on this module; it
imports neither, so the dependencies point one way: ``transcript`` <- ``providers`` <- ``stt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import soxr

from hydralab.secrets import Secret
from hydralab.speech.vad import VoiceActivityDetector

__all__ = [
    "DECODE_RATE_HZ",
    "ERROR_CANCELLED",
    "ERROR_CLOSED",
    "ERROR_EMPTY",
    "ERROR_NO_SPEECH",
    "ERROR_TOO_SHORT",
    "MIN_DURATION_MS",
    "MIN_VOICED_DBFS",
    "MIN_VOICED_FRAMES",
    "SKIP_REASONS",
    "SUPPORTED_PROVIDERS",
    "SttConfig",
    "Transcriber",
    "Transcript",
    "as_mono_int16",
    "resample_int16",
    "speech_guard",
    "voiced_frames",
]

ERROR_TOO_SHORT = "too_short"
ERROR_NO_SPEECH = "no_speech"
ERROR_EMPTY = "empty_hypothesis"
ERROR_CLOSED = "closed"
ERROR_CANCELLED = "cancelled"
SKIP_REASONS = frozenset({ERROR_TOO_SHORT, ERROR_NO_SPEECH})
"""Guard results: the audio was not speech, so no user turn (not a transcription failure)."""
SUPPORTED_PROVIDERS = ("local", "smallest", "openai", "deepgram")

DECODE_RATE_HZ = 16000
"""Rate the guards (and the local decoder) work at."""
MIN_DURATION_MS = 300.0
MIN_VOICED_FRAMES = 3
MIN_VOICED_DBFS = -45.0
"""A VAD-voiced 20 ms frame counts only above this RMS (the caller's line noise is -50 dBFS)."""


@dataclass(frozen=True)
class Transcript:
    """Result of one transcription.

    Attributes:
        text: Recognized words (lowercase for the local provider); "" when not ok.
        ok: False when nothing usable came out (guard, empty result or failure).
        error: Why not ok: ``"too_short"``, ``"no_speech"``, ``"empty_hypothesis"``,
            ``"closed"``, ``"cancelled"``, ``"http_<status>: <detail>"``, ``"timeout: ..."``,
            ``"network: ..."``, ``"bad_response: ..."`` or ``"<ExceptionType>: <message>"``.
            Never contains a key.
        provider: Name of the transcriber that produced it.
        duration_ms: Wall-clock processing time of the call (ms).
        audio_ms: Duration of the input audio (ms).
        attempts: HTTP requests made (0 for the local provider and for skipped audio).
    """

    text: str
    ok: bool
    error: str | None = None
    provider: str = "local"
    duration_ms: float = 0.0
    audio_ms: float = 0.0
    attempts: int = 0

    @property
    def reason(self) -> str | None:
        """Short failure class for counting (``"http_429"``, ``"timeout"``, ``"too_short"``...)."""
        if self.error is None:
            return None
        return self.error.split(":", 1)[0].strip() or self.error

    @property
    def skipped(self) -> bool:
        """The guards found no speech: not a user turn, not a failure."""
        return self.reason in SKIP_REASONS


@runtime_checkable
class Transcriber(Protocol):
    """An utterance-level speech recognizer."""

    name: str

    async def transcribe(self, pcm: np.ndarray, *, sample_rate_hz: int) -> Transcript:
        """Transcribe one whole utterance of int16 mono PCM. Never raises."""
        ...

    async def aclose(self) -> None:
        """Release resources (after in-flight calls finished)."""
        ...


@dataclass(frozen=True)
class SttConfig:
    """Which transcriber to use and how (EVA's ``transcription`` block plus hydralab's knobs).

    Attributes:
        provider: ``"local"`` (offline pocketsphinx), ``"smallest"``, ``"openai"`` or
            ``"deepgram"``.
        model: Provider model; default ``pulse-pro`` for English else ``pulse`` (smallest),
            ``whisper-1`` (openai), ``nova-3`` (deepgram). Ignored by ``local``.
        language: BCP-47 tag as EVA writes it (``en``, ``en-US``, ``es-MX``); mapped and
            validated per provider when the transcriber is built.
        api_key: Key for HTTP providers; default from ``SMALLEST_API_KEY`` /
            ``OPENAI_API_KEY`` / ``DEEPGRAM_API_KEY``. Never shown in ``repr``.
        base_url: Provider origin override (e.g. a proxy or a local test server).
        timeout_s: Per-request timeout.
        max_attempts: Requests per utterance (retries on 429, 5xx, timeouts, network errors).
        backoff_base_s: First retry delay; doubled per retry, full jitter, capped at
            ``backoff_max_s``. A ``Retry-After`` header replaces it.
        backoff_max_s: Cap of the computed backoff.
        max_retry_after_s: Give up instead of waiting longer than this for ``Retry-After``.
        concurrency: Requests in flight at once per provider (per event loop).
        min_duration_ms: Guard: shorter audio is skipped (``too_short``).
        min_voiced_frames: Guard: fewer voiced 20 ms frames is skipped (``no_speech``).
    """

    provider: str = "local"
    model: str | None = None
    language: str = "en"
    api_key: Secret | str | None = field(default=None, repr=False)
    base_url: str | None = None
    timeout_s: float = 30.0
    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0
    concurrency: int = 4
    min_duration_ms: float = MIN_DURATION_MS
    min_voiced_frames: int = MIN_VOICED_FRAMES

    def __post_init__(self) -> None:
        if self.provider not in SUPPORTED_PROVIDERS:
            raise ValueError(
                f"unknown transcription provider {self.provider!r}; "
                f"supported: {', '.join(SUPPORTED_PROVIDERS)}"
            )
        if self.timeout_s <= 0 or self.max_attempts < 1 or self.concurrency < 1:
            raise ValueError("timeout_s must be > 0, max_attempts and concurrency >= 1")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("backoff and retry-after limits must be >= 0")

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for ``run.json`` (no key)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "language": self.language,
            "base_url": self.base_url,
            "api_key_set": bool(self.api_key),
        }


# --------------------------------------------------------------------------------------------
# Guards and measurement
# --------------------------------------------------------------------------------------------


def as_mono_int16(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` as 1-D int16 (other dtypes rounded and clipped); ``ValueError`` if not mono."""
    x = np.asarray(pcm)
    if x.ndim != 1:
        raise ValueError(f"expected mono 1-D PCM, got shape {x.shape}")
    if x.dtype != np.int16:
        x = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return x


def resample_int16(x: np.ndarray, in_rate_hz: int, out_rate_hz: int) -> np.ndarray:
    """Resample int16 PCM with soxr (``x`` itself when the rates match or it is empty)."""
    if in_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {in_rate_hz}")
    if in_rate_hz == out_rate_hz or not len(x):
        return x
    y = soxr.resample(x.astype(np.float32) / 32768.0, in_rate_hz, out_rate_hz)
    out: np.ndarray = np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)
    return out


def voiced_frames(x16: np.ndarray, *, min_dbfs: float) -> int:
    """VAD-voiced 20 ms frames (16 kHz) whose RMS is above ``min_dbfs``."""
    # A fresh VAD per utterance: webrtcvad adapts to its input, and calls run concurrently.
    vad = VoiceActivityDetector(sample_rate_hz=DECODE_RATE_HZ, frame_ms=20, mode=3)
    fs = vad.frame_samples
    vad.frames(x16[: 10 * fs])  # warm-up: the first frames after an onset read as speech
    flags = vad.frames(x16)
    n = len(flags)
    if not n:
        return 0
    frames = x16[: n * fs].astype(np.float64).reshape(n, fs)
    floor = (32768.0**2) * 10.0 ** (min_dbfs / 10.0)
    loud = np.mean(frames**2, axis=1) > floor
    return int(np.count_nonzero(np.asarray(flags) & loud))


def speech_guard(
    pcm: np.ndarray,
    *,
    sample_rate_hz: int,
    min_duration_ms: float = MIN_DURATION_MS,
    min_voiced_frames: int = MIN_VOICED_FRAMES,
    min_voiced_dbfs: float = MIN_VOICED_DBFS,
) -> str | None:
    """Why this audio is no utterance (``"too_short"`` / ``"no_speech"``), or None if it is.

    ``too_short``: under ``min_duration_ms`` (the bridge's pre-roll counts). ``no_speech``: fewer
    than ``min_voiced_frames`` 20 ms frames that webrtcvad (mode 3) calls speech *and* whose RMS
    is above ``min_voiced_dbfs`` (silence, line noise, a click).

    Raises:
        ValueError: Not mono, or a non-positive rate.
    """
    x = as_mono_int16(pcm)
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    if 1000.0 * len(x) / sample_rate_hz < min_duration_ms:
        return ERROR_TOO_SHORT
    x16 = resample_int16(x, sample_rate_hz, DECODE_RATE_HZ)
    if voiced_frames(x16, min_dbfs=min_voiced_dbfs) < min_voiced_frames:
        return ERROR_NO_SPEECH
    return None
