"""HTTP transcription providers against a fake server on 127.0.0.1 (no network).

The server answers in each provider's real response shape (``docs/hydra-facts.md``, "Batch
transcription providers", and the providers' public docs), including error bodies, 429 with
``Retry-After``, slow responses and malformed JSON, and records every request so the request
shapes can be checked too.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import json
import logging
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from local_http import Answer, LocalHttpServer

from hydralab.secrets import Secret
from hydralab.speech import providers as prov
from hydralab.speech.providers import (
    DeepgramTranscriber,
    HttpTranscriber,
    OpenAITranscriber,
    SmallestTranscriber,
    SttConfigError,
    map_language,
)
from hydralab.speech.stt import (
    ERROR_CLOSED,
    ERROR_EMPTY,
    ERROR_NO_SPEECH,
    ERROR_TOO_SHORT,
    LocalTranscriber,
    SttConfig,
    Transcriber,
    make_transcriber,
)

KEY = "sk-test-SECRET-4f9a2b7c1d"
SR = 16000


# ---------------------------------------------------------------------------------- fake server
@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; bytes/str -> as is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class FakeProvider(LocalHttpServer):
    """Scripted replies (the last one repeats); records requests and peak concurrency."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.requests: list[Seen] = []
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def respond(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        url = urlsplit(path)
        with self._lock:
            self.requests.append(Seen("POST", url.path, parse_qs(url.query), headers, body))
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            self.active += 1
            self.peak = max(self.peak, self.active)
        if isinstance(reply.body, dict | list):
            data = json.dumps(reply.body).encode()
        elif isinstance(reply.body, str):
            data = reply.body.encode()
        else:
            data = reply.body or b""
        return Answer(reply.status, data, dict(reply.headers), reply.delay_s)

    def finished(self) -> None:
        with self._lock:
            self.active -= 1


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    try:
        yield fake
    finally:
        fake.close()


# ---------------------------------------------------------------------------------- audio
def _speech(seconds: float = 1.0, rate: int = SR) -> np.ndarray:
    """A voiced, vowel-like signal (harmonics of a gliding 140 Hz, 4 Hz amplitude swing)."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 3 * t)) / rate
    x = sum((1 / k) * np.sin(k * phase) for k in range(1, 30)) * (0.6 + 0.4 * np.sin(8 * np.pi * t))
    return np.asarray(x / np.abs(x).max() * 8000, dtype=np.int16)


def _wav_info(data: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnchannels(), w.getframerate(), w.getnframes()


# ---------------------------------------------------------------------------------- helpers
OK_BODY = {
    "smallest": {
        "status": "success",
        "transcription": "Hi, I need to change my flight.",
        "words": [{"word": "Hi,", "start": 0.1, "end": 0.3, "confidence": 0.98}],
        "utterances": [{"text": "Hi, I need to change my flight.", "start": 0.1, "end": 1.9}],
        "language": "en",
        "metadata": {"duration": 1.0, "processing_time_ms": 80.2},
        "request_id": "87dd36c1-4267-472d-96ee-4113e0a770a6",
    },
    "openai": {"text": "Hi, I need to change my flight."},
    "deepgram": {
        "metadata": {"request_id": "a1b2", "duration": 1.0, "channels": 1},
        "results": {
            "channels": [
                {
                    "alternatives": [
                        {
                            "transcript": "Hi, I need to change my flight.",
                            "confidence": 0.99,
                            "words": [],
                        }
                    ]
                }
            ]
        },
    },
}
# Error bodies in each provider's shape; each echoes the key to prove it is redacted.
AUTH_ERROR = {
    "smallest": {"error": f"Invalid API key {KEY}", "request_id": "r-1"},
    "openai": {
        "error": {
            "message": f"Incorrect API key provided: {KEY}.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    },
    "deepgram": {
        "err_code": "INVALID_AUTH",
        "err_msg": f"Invalid credentials ({KEY}).",
        "request_id": "r-2",
    },
}
CLASSES: dict[str, type[HttpTranscriber]] = {
    "smallest": SmallestTranscriber,
    "openai": OpenAITranscriber,
    "deepgram": DeepgramTranscriber,
}
PROVIDERS = tuple(CLASSES)


class SleepLog:
    """Injected retry sleep: records the delays, waits only a tick."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def _make(
    provider: str, server: FakeProvider, sleep: SleepLog | None = None, **cfg: Any
) -> HttpTranscriber:
    config = SttConfig(
        provider=provider, api_key=KEY, base_url=server.url, **{"timeout_s": 5.0, **cfg}
    )
    return CLASSES[provider](config, sleep=sleep or SleepLog())


# ---------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_success_request_and_response_shapes(provider: str, server: FakeProvider) -> None:
    server.replies = [Reply(body=OK_BODY[provider])]
    tr = _make(provider, server)
    try:
        t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    finally:
        await tr.aclose()
    assert (t.ok, t.text, t.provider, t.attempts) == (
        True,
        "Hi, I need to change my flight.",
        provider,
        1,
    )
    assert t.audio_ms == pytest.approx(1000.0)
    (req,) = server.requests
    if provider == "smallest":
        assert req.path == "/waves/v1/stt/"
        assert req.query == {"model": ["pulse-pro"], "language": ["en"]}
        assert req.headers["authorization"] == f"Bearer {KEY}"
        assert req.headers["content-type"] == "application/octet-stream"
        wav = req.body
    elif provider == "deepgram":
        assert req.path == "/v1/listen"
        assert req.query == {"model": ["nova-3"], "language": ["en"], "smart_format": ["true"]}
        assert req.headers["authorization"] == f"Token {KEY}"
        assert req.headers["content-type"] == "audio/wav"
        wav = req.body
    else:
        assert req.path == "/v1/audio/transcriptions" and req.query == {}
        assert req.headers["authorization"] == f"Bearer {KEY}"
        assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
        msg = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + req.headers["content-type"].encode() + b"\r\n\r\n" + req.body
        )
        parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
        assert parts["model"].get_content() == "whisper-1"
        assert parts["language"].get_content() == "en"
        assert parts["file"].get_filename() == "audio.wav"
        assert parts["file"].get_content_type() == "audio/wav"
        wav = parts["file"].get_payload(decode=True)
    assert _wav_info(wav) == (1, SR, SR)  # mono 16 kHz, every sample


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_auth_error_is_not_retried_and_key_is_redacted(
    provider: str, server: FakeProvider
) -> None:
    server.replies = [Reply(status=401, body=AUTH_ERROR[provider])]
    sleep = SleepLog()
    tr = _make(provider, server, sleep)
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert not t.ok and t.text == "" and t.reason == "http_401" and t.attempts == 1
    assert len(server.requests) == 1 and sleep.delays == []
    assert t.error is not None and "after 1 attempt" in t.error
    assert KEY not in t.error and "***" in t.error  # the provider's message, key masked
    assert ("API key" in t.error) or ("credentials" in t.error)
    assert KEY not in repr(tr) and KEY not in repr(tr.config)


CANARY = "hl-canary-7Qx2Vb9LmZ4pK8sW"


def _echoes(provider: str) -> list[Reply]:
    """Replies that echo the canary key every way a provider could: in a JSON error message,
    in a plain-text error body right where the kept detail is cut, in a retried 5xx, and in a
    successful transcript."""
    padded = "Unauthorized: " + "a" * 180 + f" {CANARY} was refused"  # the key straddles char 200
    ok = json.loads(json.dumps(OK_BODY[provider]).replace("flight.", f"flight {CANARY}."))
    return [
        Reply(status=401, body=AUTH_ERROR[provider]),
        Reply(status=403, body=padded),
        Reply(status=500, body={"error": {"message": f"upstream rejected key={CANARY}"}}),
        Reply(status=500, body=f"<html>key {CANARY}</html>"),
        Reply(body=ok),
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_key_echoed_by_the_provider_is_redacted_in_memory(
    provider: str, server: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """The fake provider on 127.0.0.1 echoes the canary key in its responses: no Transcript
    field, no exception message of a failed attempt and no log line keeps any of it."""
    server.replies = _echoes(provider)
    config = SttConfig(
        provider=provider, api_key=CANARY, base_url=server.url, timeout_s=5.0, max_attempts=2
    )
    tr = CLASSES[provider](config, sleep=SleepLog())
    wav = prov.wav_bytes(_speech(), sample_rate_hz=SR)
    failures: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        # every attempt's own exception (what a retry loop holds on to)
        for _ in range(2):
            with pytest.raises(prov._Failure) as info:
                await tr._attempt(wav)
            failures.append(info.value)
        server.replies = _echoes(provider)
        results = [await tr.transcribe(_speech(), sample_rate_hz=SR) for _ in range(4)]
    await tr.aclose()
    assert [r.reason for r in results] == ["http_401", "http_403", "http_500", None]
    assert results[2].attempts == 2  # the 5xx was retried, its two echoes both masked
    assert results[3].ok and results[3].text == "Hi, I need to change my flight ***."
    kept = [repr(r) for r in results]
    kept += [f"{f!r} {f} {f.detail} {f.args}" for f in failures]  # type: ignore[attr-defined]
    kept += [caplog.text]
    for text in kept:
        assert CANARY not in text
        assert CANARY[:10] not in text  # not even the start of a key cut off by a truncation
    assert "***" in results[1].error  # type: ignore[operator]


async def test_local_transcriber_errors_are_redacted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline transcriber keeps no response, but its failures pass through the same
    redaction (a key in an exception message from anywhere below it)."""
    Secret(CANARY)
    tr = LocalTranscriber("change my flight")

    def broken(*_: Any) -> tuple[str, str | None]:
        raise RuntimeError(f"decoder config mentions {CANARY}")

    monkeypatch.setattr(tr, "_transcribe_sync", broken)
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert not t.ok and t.error == "RuntimeError: decoder config mentions ***"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_429_retry_after_is_honoured(provider: str, server: FakeProvider) -> None:
    limited = {"error": "Too many requests"} if provider != "openai" else {"error": {}}
    server.replies = [
        Reply(status=429, body=limited, headers={"Retry-After": "2"}),
        Reply(status=429, body=limited, headers={"Retry-After": "0"}),
        Reply(body=OK_BODY[provider]),
    ]
    sleep = SleepLog()
    tr = _make(provider, server, sleep)
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert t.ok and t.attempts == 3 and len(server.requests) == 3
    assert sleep.delays == [2.0, 0.0]  # exactly what the server asked for, no extra jitter


async def test_retry_after_http_date_and_cap(server: FakeProvider) -> None:
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    assert 1.5 <= (prov._retry_after_s(when) or 0) <= 3.5
    assert prov._retry_after_s("soon") is None and prov._retry_after_s(None) is None
    assert prov._retry_after_s("-5") == 0.0
    # a Retry-After longer than max_retry_after_s: give up at once with a clear reason
    server.replies = [Reply(status=429, body={"error": "slow down"}, headers={"Retry-After": "90"})]
    sleep = SleepLog()
    tr = _make("smallest", server, sleep, max_retry_after_s=10.0)
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert t.reason == "http_429" and "Retry-After 90 s exceeds 10 s" in (t.error or "")
    assert sleep.delays == [] and len(server.requests) == 1


async def test_5xx_backoff_is_jittered_and_bounded(server: FakeProvider) -> None:
    server.replies = [Reply(status=503, body={"error": "Worker temporarily unavailable"})]
    sleep = SleepLog()
    tr = _make("smallest", server, sleep, max_attempts=4, backoff_base_s=0.5, backoff_max_s=1.5)
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert t.reason == "http_503" and t.attempts == 4 and len(server.requests) == 4
    assert "Worker temporarily unavailable (after 4 attempts)" in (t.error or "")
    caps = [0.5, 1.0, 1.5]  # base * 2**k, capped at backoff_max_s
    assert len(sleep.delays) == 3
    assert all(0.0 <= d <= c for d, c in zip(sleep.delays, caps, strict=True))
    assert tr.retries == 3 and tr.requests == 4


async def test_jitter_spreads_delays(server: FakeProvider) -> None:
    server.replies = [Reply(status=500, body="oops")]
    sleep = SleepLog()
    tr = _make("deepgram", server, sleep, max_attempts=6, backoff_base_s=1.0, backoff_max_s=1.0)
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert t.reason == "http_500" and "oops" in (t.error or "")
    assert len(set(sleep.delays)) == 5  # full jitter: no two retries wait the same


async def test_slow_response_times_out_then_retries(server: FakeProvider) -> None:
    server.replies = [Reply(body=OK_BODY["openai"], delay_s=1.0), Reply(body=OK_BODY["openai"])]
    sleep = SleepLog()
    tr = _make("openai", server, sleep, timeout_s=0.2)
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    assert t.ok and t.attempts == 2 and len(sleep.delays) == 1
    # all slow: the failure says timeout, after max_attempts
    server.replies = [Reply(body=OK_BODY["openai"], delay_s=1.0)]
    t = await _make("openai", server, SleepLog(), timeout_s=0.2, max_attempts=2).transcribe(
        _speech(), sample_rate_hz=SR
    )
    await tr.aclose()
    assert t.reason == "timeout" and t.attempts == 2 and "after 2 attempts" in (t.error or "")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_json_and_wrong_shape_are_not_retried(
    provider: str, server: FakeProvider
) -> None:
    server.replies = [Reply(body='{"transcription": "half'), Reply(body={"unexpected": 1})]
    sleep = SleepLog()
    tr = _make(provider, server, sleep)
    bad = await tr.transcribe(_speech(), sample_rate_hz=SR)
    shape = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert bad.reason == "bad_response" and "invalid JSON" in (bad.error or "")
    assert shape.reason == "bad_response" and "unexpected shape" in (shape.error or "")
    assert len(server.requests) == 2 and sleep.delays == []


async def test_smallest_async_accepted_shape_is_a_bad_response(server: FakeProvider) -> None:
    server.replies = [Reply(body={"status": "processing", "request_id": "f3a1"})]
    tr = _make("smallest", server)
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert t.reason == "bad_response" and "processing" in (t.error or "")


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("smallest", {"status": "success", "transcription": "  "}),
        ("openai", {"text": ""}),
        ("deepgram", {"results": {"channels": [{"alternatives": []}]}}),
    ],
)
async def test_empty_transcript_is_a_failure(
    provider: str, body: dict[str, Any], server: FakeProvider
) -> None:
    server.replies = [Reply(body=body)]
    tr = _make(provider, server)
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert (t.ok, t.text, t.error) == (False, "", ERROR_EMPTY)


async def test_connection_refused_is_retried_as_network_error() -> None:
    fake = FakeProvider()
    url = fake.url
    fake.close()  # nothing listens there any more
    sleep = SleepLog()
    tr = SmallestTranscriber(
        SttConfig(provider="smallest", api_key=KEY, base_url=url, max_attempts=3), sleep=sleep
    )
    t = await tr.transcribe(_speech(), sample_rate_hz=SR)
    await tr.aclose()
    assert t.reason == "network" and t.attempts == 3 and len(sleep.delays) == 2


# ---------------------------------------------------------------------------------- guards
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_guards_skip_without_a_request(provider: str, server: FakeProvider) -> None:
    tr = _make(provider, server)
    rms = 32768 * 10 ** (-50 / 20)
    line_noise = np.round(np.random.default_rng(3).normal(0, rms, 2 * SR)).astype(np.int16)
    short = await tr.transcribe(_speech(0.25), sample_rate_hz=SR)
    silent = await tr.transcribe(np.zeros(SR, dtype=np.int16), sample_rate_hz=SR)
    noise = await tr.transcribe(line_noise, sample_rate_hz=SR)
    await tr.aclose()
    assert (short.reason, short.skipped, short.attempts) == (ERROR_TOO_SHORT, True, 0)
    assert silent.reason == ERROR_NO_SPEECH and silent.skipped
    assert noise.reason == ERROR_NO_SPEECH
    assert server.requests == []


async def test_48khz_audio_is_uploaded_at_16khz_and_8khz_as_is(server: FakeProvider) -> None:
    server.replies = [Reply(body=OK_BODY["deepgram"])]
    tr = _make("deepgram", server)
    assert (await tr.transcribe(_speech(1.0, 48000), sample_rate_hz=48000)).ok
    assert (await tr.transcribe(_speech(1.0, 8000), sample_rate_hz=8000)).ok
    await tr.aclose()
    assert [_wav_info(r.body) for r in server.requests] == [(1, 16000, 16000), (1, 8000, 8000)]


async def test_invalid_audio_is_a_soft_failure(server: FakeProvider) -> None:
    tr = _make("openai", server)
    bad_rate = await tr.transcribe(_speech(), sample_rate_hz=0)
    stereo = await tr.transcribe(np.zeros((SR, 2), dtype=np.int16), sample_rate_hz=SR)
    await tr.aclose()
    assert not bad_rate.ok and "sample_rate_hz" in (bad_rate.error or "")
    assert not stereo.ok and "mono" in (stereo.error or "")
    assert server.requests == []


# ---------------------------------------------------------------------------------- limits
async def test_concurrency_limit_per_provider(server: FakeProvider) -> None:
    server.replies = [Reply(body=OK_BODY["smallest"], delay_s=0.15)]
    a = _make("smallest", server, concurrency=2)
    b = _make("smallest", server, concurrency=2)  # shares the limit with a
    pcm = _speech(0.5)
    results = await asyncio.gather(
        *(tr.transcribe(pcm, sample_rate_hz=SR) for tr in (a, b, a, b, a, b))
    )
    await a.aclose()
    await b.aclose()
    assert all(r.ok for r in results)
    assert len(server.requests) == 6 and server.peak == 2


async def test_aclose_waits_for_in_flight_then_refuses(server: FakeProvider) -> None:
    server.replies = [Reply(body=OK_BODY["openai"], delay_s=0.3)]
    tr = _make("openai", server)
    pending = asyncio.create_task(tr.transcribe(_speech(), sample_rate_hz=SR))
    while not server.requests:
        await asyncio.sleep(0.01)
    await tr.aclose()  # must not cut the request in flight
    assert pending.done() and pending.result().ok
    assert tr._client is None  # closed after the pending work
    late = await tr.transcribe(_speech(), sample_rate_hz=SR)
    assert (late.ok, late.error) == (False, ERROR_CLOSED)
    assert len(server.requests) == 1


async def test_shared_client_is_not_closed(server: FakeProvider) -> None:
    import httpx

    server.replies = [Reply(body=OK_BODY["openai"])]
    async with httpx.AsyncClient() as client:
        cfg = SttConfig(provider="openai", api_key=KEY, base_url=server.url)
        tr = make_transcriber(cfg, client=client)
        assert isinstance(tr, OpenAITranscriber)
        assert (await tr.transcribe(_speech(), sample_rate_hz=SR)).ok
        await tr.aclose()
        assert not client.is_closed


# ---------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("provider", "language", "model", "wire"),
    [
        ("smallest", "en-US", None, ("pulse-pro", "en")),
        ("smallest", "es-MX", None, ("pulse", "es")),
        ("smallest", "de_DE", "pulse", ("pulse", "de")),
        ("smallest", "multi-eu", "pulse", ("pulse", "multi-eu")),
        ("openai", "es-MX", None, ("whisper-1", "es")),
        ("openai", "PT-br", "gpt-4o-transcribe", ("gpt-4o-transcribe", "pt")),
        ("deepgram", "es-MX", None, ("nova-3", "es-419")),
        ("deepgram", "en-GB", None, ("nova-3", "en-GB")),
        ("deepgram", "en-ZA", None, ("nova-3", "en")),
        ("deepgram", "fr", None, ("nova-3", "fr")),
    ],
)
def test_language_mapping(
    provider: str, language: str, model: str | None, wire: tuple[str, str]
) -> None:
    tr = CLASSES[provider](
        SttConfig(provider=provider, language=language, model=model, api_key=KEY)
    )
    assert (tr.model, tr.wire_language) == wire
    assert tr.language == language


@pytest.mark.parametrize(
    ("provider", "language", "model", "match"),
    [
        ("smallest", "es-MX", "pulse-pro", "English-only"),
        ("smallest", "tr", None, "does not support language 'tr'"),
        ("openai", "xx-YY", None, "does not support language 'xx-YY'"),
        ("deepgram", "sw", None, "supported: .*es-419"),
        ("openai", " ", None, "empty transcription language"),
    ],
)
def test_unsupported_language_fails_at_construction(
    provider: str, language: str, model: str | None, match: str
) -> None:
    with pytest.raises(SttConfigError, match=match):
        make_transcriber(SttConfig(provider=provider, language=language, model=model, api_key=KEY))
    assert issubclass(SttConfigError, ValueError)


def test_map_language_is_pure() -> None:
    assert map_language("deepgram", "es-AR") == "es-419"
    assert map_language("deepgram", "MULTI") == "multi"
    assert map_language("smallest", "en-IN") == "en"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_api_key_from_env_or_clear_error(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = prov.API_KEY_ENV[provider]
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(SttConfigError, match=f"no API key .*{env}"):
        make_transcriber(provider)
    monkeypatch.setenv(env, KEY)
    tr = make_transcriber(provider, language="en-US")
    assert isinstance(tr, CLASSES[provider]) and isinstance(tr, Transcriber)
    assert tr._key.reveal() == KEY  # type: ignore[attr-defined]
    assert KEY not in repr(tr)
    secret = make_transcriber(SttConfig(provider=provider, api_key=Secret(KEY)))
    assert KEY not in repr(secret)


def test_config_validation_and_factory() -> None:
    with pytest.raises(ValueError, match="unknown transcription provider 'whisperx'"):
        SttConfig(provider="whisperx")
    with pytest.raises(ValueError, match="max_attempts"):
        SttConfig(provider="openai", max_attempts=0)
    assert isinstance(make_transcriber("local", domain_text="hello"), LocalTranscriber)
    assert isinstance(make_transcriber(SttConfig()), LocalTranscriber)
    cfg = SttConfig(provider="deepgram", api_key=KEY)
    assert KEY not in repr(cfg) and KEY not in json.dumps(cfg.describe())
    assert cfg.describe()["api_key_set"] is True
    with pytest.raises(TypeError):
        make_transcriber(cfg, model="nova-2")
