"""HTTP batch transcription providers: Smallest Pulse, OpenAI Whisper, Deepgram.

Request and response shapes (``docs/hydra-facts.md``, "Batch transcription providers"):

- ``smallest``: ``POST {base}/waves/v1/stt/?model=…&language=…``, ``Authorization: Bearer``,
  ``Content-Type: application/octet-stream``, body = WAV; reads ``transcription``.
- ``openai``: ``POST {base}/v1/audio/transcriptions``, ``Authorization: Bearer``, multipart
  ``file`` (``audio.wav``) + ``model`` + ``language``; reads ``text``.
- ``deepgram``: ``POST {base}/v1/listen?model=…&language=…&smart_format=true``,
  ``Authorization: Token``, ``Content-Type: audio/wav``; reads
  ``results.channels[0].alternatives[0].transcript``.

Every transcriber owns one ``httpx.AsyncClient`` (created on first use, closed by
:meth:`HttpTranscriber.aclose` after the requests in flight have finished), retries 429, 5xx,
timeouts and network errors with full-jitter exponential backoff (a ``Retry-After`` header
replaces the computed delay), and shares a concurrency limit with every other transcriber of the
same provider on the same event loop. The language (BCP-47 as EVA writes it, ``es-MX``) is
mapped to what the provider accepts and validated at construction. Keys go on the wire only:
whatever is kept from a response is redacted as it is read, before anything is cut or stored —
error details and the exceptions of failed attempts through :func:`hydralab.secrets.redact`,
transcripts through :func:`hydralab.secrets.redact_known` (only the keys themselves: the
patterns of ``redact`` could mask ordinary words) — so a key a provider echoes never reaches a
:class:`Transcript`, an exception message or a log.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import email.utils
import json
import math
import os
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import httpx
import numpy as np

from hydralab.audio import wav_bytes
from hydralab.secrets import Secret, redact, redact_known
from hydralab.speech.transcript import (
    ERROR_CLOSED,
    ERROR_EMPTY,
    SttConfig,
    Transcript,
    as_mono_int16,
    resample_int16,
    speech_guard,
)

__all__ = [
    "API_KEY_ENV",
    "DEEPGRAM_LANGUAGES",
    "DEFAULT_BASE_URLS",
    "OPENAI_LANGUAGES",
    "PULSE_LANGUAGES",
    "DeepgramTranscriber",
    "HttpTranscriber",
    "OpenAITranscriber",
    "SmallestTranscriber",
    "SttConfigError",
    "default_model",
    "make_http_transcriber",
    "map_language",
]

API_KEY_ENV = {
    "smallest": "SMALLEST_API_KEY",
    "openai": "OPENAI_API_KEY",
    "deepgram": "DEEPGRAM_API_KEY",
}
DEFAULT_BASE_URLS = {
    "smallest": "https://api.smallest.ai",
    "openai": "https://api.openai.com",
    "deepgram": "https://api.deepgram.com",
}
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_UPLOAD_RATE_HZ = 16000
_ERROR_DETAIL_CHARS = 200


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Pulse pre-recorded languages (Smallest model card) and its auto-detect aggregators.
PULSE_LANGUAGES = _codes("en hi de es ru it fr nl pt uk pl cs sk ro fi sv bg hu lt zh ja ko")
_PULSE_AGGREGATORS = frozenset({"multi-eu", "multi-asian", "multi-indic"})
# ISO-639-1 codes Whisper accepts.
OPENAI_LANGUAGES = _codes(
    """af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha he
    hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne
    nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk
    ur uz vi yi yo zh"""
)
# Deepgram Nova-3 languages: plain codes, and the regional tags it takes as such.
DEEPGRAM_LANGUAGES = _codes(
    """en es fr de hi ru pt ja it nl sv da no tr id ko bg ca cs et fi el hu lv lt pl ro sk uk
    vi"""
)
_DEEPGRAM_REGIONAL = _codes(
    """en-US en-AU en-GB en-IN en-NZ es-419 fr-CA de-CH pt-BR pt-PT nl-BE sv-SE da-DK
    ko-KR"""
)
_LATAM = _codes("MX AR BO CL CO CR CU DO EC GT HN NI PA PE PR PY SV US UY VE 419")


class SttConfigError(ValueError):
    """The transcription config cannot work: unsupported language/model or no API key."""


def _split_tag(language: str) -> tuple[str, str | None]:
    tag = language.strip().replace("_", "-")
    if not tag:
        raise SttConfigError("empty transcription language")
    parts = tag.split("-")
    primary = parts[0].lower()
    region = next((p.upper() for p in parts[1:] if len(p) == 2 or p.isdigit()), None)
    return primary, region


def default_model(provider: str, language: str) -> str:
    """The provider's default model for a language (smallest: ``pulse-pro`` only for English)."""
    if provider == "smallest":
        return "pulse-pro" if _split_tag(language)[0] == "en" else "pulse"
    if provider == "openai":
        return "whisper-1"
    if provider == "deepgram":
        return "nova-3"
    raise SttConfigError(f"no HTTP transcription provider {provider!r}")


def map_language(provider: str, language: str, *, model: str | None = None) -> str:
    """The provider's code for a BCP-47 tag (``es-MX`` -> smallest ``es``, openai ``es``,
    deepgram ``es-419``).

    Raises:
        SttConfigError: The provider (or model) does not take that language.
    """
    raw = language.strip()
    lower = raw.lower()
    primary, region = _split_tag(raw)
    model = model or default_model(provider, raw)
    if provider == "smallest":
        if model == "pulse-pro":
            if primary != "en":
                raise SttConfigError(
                    f"smallest model 'pulse-pro' is English-only, got language {language!r}; "
                    "use model 'pulse'"
                )
            return "en"
        if lower in _PULSE_AGGREGATORS:
            return lower
        if primary in PULSE_LANGUAGES:
            return primary
        supported = sorted(PULSE_LANGUAGES | _PULSE_AGGREGATORS)
    elif provider == "openai":
        if primary in OPENAI_LANGUAGES:
            return primary
        supported = sorted(OPENAI_LANGUAGES)
    elif provider == "deepgram":
        if lower == "multi":
            return "multi"
        if primary == "es" and region in _LATAM:
            return "es-419"
        if region is not None and f"{primary}-{region}" in _DEEPGRAM_REGIONAL:
            return f"{primary}-{region}"
        if primary in DEEPGRAM_LANGUAGES:
            return primary
        supported = sorted(DEEPGRAM_LANGUAGES | _DEEPGRAM_REGIONAL | {"multi"})
    else:
        raise SttConfigError(f"no HTTP transcription provider {provider!r}")
    raise SttConfigError(
        f"transcription provider {provider!r} (model {model!r}) does not support language "
        f"{language!r}; supported: {', '.join(supported)}"
    )


# One semaphore per (provider, limit) per event loop: asyncio primitives bind to one loop, and
# notebooks run each call on a fresh loop.
_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], Any]] = (
    weakref.WeakKeyDictionary()
)


def _limiter(provider: str, limit: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    per_loop = _LIMITERS.setdefault(loop, {})
    sem = per_loop.get((provider, limit))
    if sem is None:
        sem = per_loop[(provider, limit)] = asyncio.Semaphore(limit)
    return sem


def _retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(secs):
        return None
    return max(0.0, secs)


class _Failure(Exception):
    """One failed attempt: ``reason`` (short class), ``detail`` (redacted), retryable or not."""

    def __init__(
        self, reason: str, detail: str, *, retry: bool, retry_after_s: float | None = None
    ) -> None:
        detail = redact(detail)
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retry = retry
        self.retry_after_s = retry_after_s
        self.attempts = 1


def _clip(text: str) -> str:
    """Redacted first (a key cut in two by the clip would no longer match), then clipped."""
    return " ".join(redact(text).split())[:_ERROR_DETAIL_CHARS]


def _error_detail(resp: httpx.Response) -> str:
    """The provider's error message from a JSON error body, else the body's start; redacted."""
    text = resp.text
    try:
        body = json.loads(text)
    except ValueError:
        return _clip(text)
    msg: Any = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # OpenAI: {"error": {"message": ...}}
            msg = err.get("message") or err.get("code")
        elif err:  # Smallest: {"error": "...", "request_id": ...}
            msg = err
        msg = msg or body.get("err_msg") or body.get("message") or body.get("err_code")
    return _clip(str(msg if msg else text))


class HttpTranscriber(abc.ABC):
    """Base of the HTTP providers: guards, WAV upload, retries, limits, fail-soft results.

    Args:
        config: Provider, model, language, key, base URL, timeouts, retry and guard settings.
        client: Use this ``httpx.AsyncClient`` (not closed by :meth:`aclose`) instead of one
            of its own.
        sleep: Awaitable sleep used between retries (tests record the delays with it).
        rng: Source of the backoff jitter.

    Raises:
        SttConfigError: Unsupported language/model for the provider, or no API key.
    """

    provider: ClassVar[str] = ""

    def __init__(
        self,
        config: SttConfig,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if config.provider != self.provider:
            raise SttConfigError(f"config is for {config.provider!r}, not {self.provider!r}")
        self.name = self.provider
        self.config = config
        self.model = config.model or default_model(self.provider, config.language)
        self.language = config.language
        self.wire_language = map_language(self.provider, config.language, model=self.model)
        key = config.api_key
        secret = key if isinstance(key, Secret) else Secret(key or "")
        if not secret:
            secret = Secret(os.environ.get(API_KEY_ENV[self.provider], ""))
        if not secret:
            raise SttConfigError(
                f"no API key for transcription provider {self.provider!r}: set "
                f"{API_KEY_ENV[self.provider]} or pass api_key"
            )
        self._key = secret
        self.base_url = (config.base_url or DEFAULT_BASE_URLS[self.provider]).rstrip("/")
        self._client = client
        self._owns_client = client is None
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._closed = False
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self.requests = 0
        self.retries = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, language={self.wire_language!r}, "
            f"base_url={self.base_url!r})"
        )

    # ------------------------------------------------------------------ provider specifics
    @abc.abstractmethod
    def _build(self, wav: bytes) -> dict[str, Any]:
        """Keyword arguments of ``client.post`` for one request."""

    @abc.abstractmethod
    def _text(self, body: Any) -> str:
        """The transcript from a 200 JSON body; raises ``KeyError``/``TypeError``/
        ``IndexError`` on the wrong shape."""

    # ------------------------------------------------------------------ machinery
    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.config.timeout_s))
        return self._client

    def _backoff_s(self, retry: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * 2.0**retry)
        return self._rng.uniform(0.0, cap)

    async def _attempt(self, wav: bytes) -> str:
        client = self._get_client()
        self.requests += 1
        try:
            async with _limiter(self.provider, self.config.concurrency):
                resp = await client.post(**self._build(wav), timeout=self.config.timeout_s)
        except httpx.TimeoutException as exc:
            raise _Failure("timeout", type(exc).__name__, retry=True) from None
        except httpx.TransportError as exc:
            raise _Failure("network", f"{type(exc).__name__}: {exc}", retry=True) from None
        if resp.status_code != 200:
            retry = resp.status_code in RETRY_STATUS
            raise _Failure(
                f"http_{resp.status_code}",
                _error_detail(resp),
                retry=retry,
                retry_after_s=_retry_after_s(resp.headers.get("retry-after")) if retry else None,
            )
        try:
            body = resp.json()
        except ValueError:
            raise _Failure("bad_response", "invalid JSON", retry=False) from None
        try:
            text = self._text(body)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise _Failure(
                "bad_response", f"unexpected shape ({type(exc).__name__}: {exc})", retry=False
            ) from None
        if not isinstance(text, str):
            raise _Failure("bad_response", "transcript is not a string", retry=False)
        return redact_known(text)

    async def _request_with_retries(self, wav: bytes) -> tuple[str, int]:
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self._attempt(wav), attempts
            except _Failure as f:
                f.attempts = attempts
                if not f.retry or attempts >= self.config.max_attempts:
                    f.args = (f"{f} (after {attempts} attempt{'s' * (attempts > 1)})",)
                    raise
                delay = f.retry_after_s
                if delay is None:
                    delay = self._backoff_s(attempts - 1)
                elif delay > self.config.max_retry_after_s:
                    f.args = (
                        f"{f} (Retry-After {delay:.0f} s exceeds "
                        f"{self.config.max_retry_after_s:.0f} s; gave up after {attempts})",
                    )
                    raise
                self.retries += 1
                await self._sleep(delay)

    def _upload_pcm(self, pcm: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, int]:
        x = as_mono_int16(pcm)
        if sample_rate_hz > _MAX_UPLOAD_RATE_HZ:  # e.g. the 48 kHz assistant track
            return resample_int16(x, sample_rate_hz, _MAX_UPLOAD_RATE_HZ), _MAX_UPLOAD_RATE_HZ
        return x, sample_rate_hz

    async def transcribe(self, pcm: np.ndarray, *, sample_rate_hz: int) -> Transcript:
        """Transcribe one utterance. Never raises (except on cancellation)."""
        t0 = time.perf_counter()
        audio_ms = 0.0
        attempts = 0

        def result(text: str, error: str | None) -> Transcript:
            return Transcript(
                text=redact_known(text),
                ok=error is None,
                error=None if error is None else redact(error),
                provider=self.name,
                duration_ms=1000.0 * (time.perf_counter() - t0),
                audio_ms=audio_ms,
                attempts=attempts,
            )

        if self._closed:
            return result("", ERROR_CLOSED)
        self._in_flight += 1
        try:
            if sample_rate_hz <= 0:
                raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
            audio_ms = 1000.0 * len(pcm) / sample_rate_hz
            skip = await asyncio.to_thread(
                speech_guard,
                pcm,
                sample_rate_hz=sample_rate_hz,
                min_duration_ms=self.config.min_duration_ms,
                min_voiced_frames=self.config.min_voiced_frames,
            )
            if skip is not None:
                return result("", skip)
            x, rate = self._upload_pcm(pcm, sample_rate_hz)
            try:
                text, attempts = await self._request_with_retries(wav_bytes(x, sample_rate_hz=rate))
            except _Failure as f:
                attempts = f.attempts
                return result("", str(f))
            text = " ".join(text.split())
            return result(text, None if text else ERROR_EMPTY)
        except Exception as exc:
            return result("", f"{type(exc).__name__}: {exc}")
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def aclose(self, *, timeout_s: float = 60.0) -> None:
        """Refuse new calls, wait (bounded) for those in flight, then close the own client."""
        self._closed = True
        if self._in_flight:
            self._idle = asyncio.Event()
            if self._in_flight:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), timeout_s)
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class SmallestTranscriber(HttpTranscriber):
    """Smallest AI Pulse / Pulse Pro (``POST /waves/v1/stt/``, WAV as octet-stream)."""

    provider = "smallest"

    def _build(self, wav: bytes) -> dict[str, Any]:
        return {
            "url": f"{self.base_url}/waves/v1/stt/",
            "params": {"model": self.model, "language": self.wire_language},
            "headers": {
                "Authorization": f"Bearer {self._key.reveal()}",
                "Content-Type": "application/octet-stream",
            },
            "content": wav,
        }

    def _text(self, body: Any) -> str:
        if body.get("status") == "processing":  # the async (webhook) shape: no transcript
            raise KeyError("transcription (got status 'processing')")
        text = body["transcription"]
        return "" if text is None else text


class OpenAITranscriber(HttpTranscriber):
    """OpenAI ``/v1/audio/transcriptions`` (multipart; ``whisper-1`` by default)."""

    provider = "openai"

    def _build(self, wav: bytes) -> dict[str, Any]:
        return {
            "url": f"{self.base_url}/v1/audio/transcriptions",
            "headers": {"Authorization": f"Bearer {self._key.reveal()}"},
            "files": {"file": ("audio.wav", wav, "audio/wav")},
            "data": {"model": self.model, "language": self.wire_language},
        }

    def _text(self, body: Any) -> str:
        text = body["text"]
        return "" if text is None else text


class DeepgramTranscriber(HttpTranscriber):
    """Deepgram pre-recorded ``/v1/listen`` (``nova-3`` by default, ``Authorization: Token``)."""

    provider = "deepgram"

    def _build(self, wav: bytes) -> dict[str, Any]:
        return {
            "url": f"{self.base_url}/v1/listen",
            "params": {
                "model": self.model,
                "language": self.wire_language,
                "smart_format": "true",
            },
            "headers": {
                "Authorization": f"Token {self._key.reveal()}",
                "Content-Type": "audio/wav",
            },
            "content": wav,
        }

    def _text(self, body: Any) -> str:
        alternatives = body["results"]["channels"][0]["alternatives"]
        if not alternatives:
            return ""
        text = alternatives[0]["transcript"]
        return "" if text is None else text


_CLASSES: dict[str, type[HttpTranscriber]] = {
    "smallest": SmallestTranscriber,
    "openai": OpenAITranscriber,
    "deepgram": DeepgramTranscriber,
}


def make_http_transcriber(
    config: SttConfig, *, client: httpx.AsyncClient | None = None
) -> HttpTranscriber:
    """The HTTP transcriber for ``config.provider``.

    Raises:
        SttConfigError: Not an HTTP provider, unsupported language, or no API key.
    """
    cls = _CLASSES.get(config.provider)
    if cls is None:
        raise SttConfigError(f"{config.provider!r} is not an HTTP transcription provider")
    return cls(config, client=client)
