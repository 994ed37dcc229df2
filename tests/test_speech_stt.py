"""Tests for hydralab.speech.stt: LocalTranscriber (pocketsphinx + run-time domain LM), the
speech guards, WER measurement, and the bridge's utterance / assistant-fallback wiring."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import numpy as np
import pytest
import soxr

from hydralab.speech import stt
from hydralab.speech.stt import (
    ERROR_CLOSED,
    ERROR_NO_SPEECH,
    ERROR_TOO_SHORT,
    GENERIC_CORPUS,
    LocalTranscriber,
    Transcriber,
    Transcript,
    lm_sentences,
    make_transcriber,
)
from hydralab.speech.text import normalize_for_wer, spoken_form, wer
from hydralab.speech.vad import VoiceActivityDetector

# Agent instructions + tool names: the kind of text the emulator builds its LM from.
DOMAIN_TEXT = """\
You are Ava, the virtual assistant of Skyline Airways. You help callers manage existing bookings.
Greet the caller and ask how you can help.
To find a booking, ask for the six character confirmation number and the passenger's last name,
then call lookup_booking. Read the confirmation number back letter by letter.
You can change a flight to another date or time with change_flight, cancel a booking with
cancel_booking and pick a seat with select_seat. Window, aisle and middle seats are available.
Changes in the same cabin have no change fee, but the caller pays any fare difference.
Tell the caller the new departure time and the price before you confirm.
Flights to Denver, Boston, Chicago and Seattle leave in the morning, afternoon and evening.
If the caller asks for a refund, explain that refunds go back to the original card within seven
days. Keep answers short. When the caller has nothing else, thank them and call end_call.
"""

# Caller lines: in neither DOMAIN_TEXT nor the generic corpus (checked below).
CALLER_LINES = [
    "Hello, I'm calling about my flight to Denver tomorrow.",
    "The confirmation number is R4TK9B.",
    "It's booked under the name Williams.",
    "Can I move it to the evening flight instead?",
    "Yes, that works, please go ahead.",
    "No, that's it. Thank you, goodbye.",
    "Hi, I need help with a reservation for next Monday.",
    "Sure, the confirmation code is M8X2LP.",
    "The last name on the booking is Chen.",
    "Is there a window seat available?",
    "How much would that cost?",
    "Okay, great. Thanks for your help.",
]

# Measured on this machine (2 cores): clean ~0.2-0.26, phone path ~0.40-0.50 (see report).
MAX_WER_CLEAN = 0.35
MAX_WER_PHONE = 0.6


def _ulaw_roundtrip(pcm: np.ndarray) -> np.ndarray:
    """G.711-like 8-bit mu-law companding (continuous formula, 8-bit quantization)."""
    x = pcm.astype(np.float64) / 32768.0
    mu = 255.0
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round(y * 127.0) / 127.0
    out = np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu
    return np.asarray(np.clip(np.round(out * 32768.0), -32768, 32767), dtype=np.int16)


def _phone_path(pcm16k: np.ndarray) -> np.ndarray:
    pcm8k = np.asarray(soxr.resample(pcm16k, 16000, 8000), dtype=np.int16)
    return np.asarray(soxr.resample(_ulaw_roundtrip(pcm8k), 8000, 16000), dtype=np.int16)


@pytest.fixture(scope="module")
def transcriber() -> LocalTranscriber:
    return LocalTranscriber(DOMAIN_TEXT)


@pytest.fixture(scope="module")
def caller_audio() -> list[np.ndarray]:
    tts = pytest.importorskip("hydralab.speech.tts")
    pytest.importorskip("espeakng_loader")
    synth = tts.Synthesizer()
    return [
        synth.synthesize(spoken_form(line), voice=tts.CALLER_VOICE, sample_rate_hz=16000, seed=i)
        for i, line in enumerate(CALLER_LINES)
    ]


def test_caller_lines_are_not_in_the_lm_text() -> None:
    corpus = {" ".join(normalize_for_wer(line)) for line in GENERIC_CORPUS}
    domain = " ".join(normalize_for_wer(DOMAIN_TEXT))
    for line in CALLER_LINES:
        norm = " ".join(normalize_for_wer(line))
        assert norm not in corpus
        assert norm not in domain


@pytest.mark.asyncio
async def test_wer_clean_and_phone_path(
    transcriber: LocalTranscriber, caller_audio: list[np.ndarray]
) -> None:
    await transcriber.start()
    assert transcriber.build_ms is not None
    results: dict[str, list[Transcript]] = {"clean": [], "phone": []}
    for pcm in caller_audio:
        results["clean"].append(await transcriber.transcribe(pcm, sample_rate_hz=16000))
        results["phone"].append(
            await transcriber.transcribe(_phone_path(pcm), sample_rate_hz=16000)
        )
    summary = {}
    for path, transcripts in results.items():
        assert all(t.ok and t.provider == "local" for t in transcripts), transcripts
        wers = [wer(ref, t.text) for ref, t in zip(CALLER_LINES, transcripts, strict=True)]
        summary[path] = (float(np.mean(wers)), float(np.mean([t.duration_ms for t in transcripts])))
        for ref, t, w in zip(CALLER_LINES, transcripts, wers, strict=True):
            print(f"[{path}] WER {w:.2f} {t.duration_ms:5.0f} ms | {ref} -> {t.text}")
    print(
        f"LM build {transcriber.build_ms:.0f} ms; "
        + "; ".join(f"{k}: WER {w:.3f}, {ms:.0f} ms/utt" for k, (w, ms) in summary.items())
    )
    assert summary["clean"][0] <= MAX_WER_CLEAN
    assert summary["phone"][0] <= MAX_WER_PHONE


@pytest.mark.asyncio
async def test_8khz_input_is_resampled(
    transcriber: LocalTranscriber, caller_audio: list[np.ndarray]
) -> None:
    pcm8k = soxr.resample(caller_audio[9], 16000, 8000)
    t = await transcriber.transcribe(pcm8k, sample_rate_hz=8000)
    assert t.ok
    assert t.audio_ms == pytest.approx(1000 * len(pcm8k) / 8000)
    assert wer(CALLER_LINES[9], t.text) <= 0.5


@pytest.mark.asyncio
async def test_guard_too_short(
    transcriber: LocalTranscriber, caller_audio: list[np.ndarray]
) -> None:
    pcm = caller_audio[0]
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > 1000)[0]
    snippet = pcm[loud[0] : loud[0] + 16000 * 200 // 1000]  # 200 ms of real speech
    t = await transcriber.transcribe(snippet, sample_rate_hz=16000)
    assert (t.text, t.ok, t.error) == ("", False, ERROR_TOO_SHORT)
    assert t.audio_ms == pytest.approx(200.0)
    assert t.duration_ms < 50  # rejected without decoding


@pytest.mark.asyncio
async def test_guard_no_speech(transcriber: LocalTranscriber) -> None:
    rms = 32768 * 10 ** (-50 / 20)
    noise = np.round(np.random.default_rng(1).normal(0, rms, 16000)).astype(np.int16)
    t = await transcriber.transcribe(noise, sample_rate_hz=16000)
    assert (t.ok, t.text, t.error) == (False, "", ERROR_NO_SPEECH)
    silence = np.zeros(48000, dtype=np.int16)
    t = await transcriber.transcribe(silence, sample_rate_hz=48000)
    assert t.error == ERROR_NO_SPEECH


@pytest.mark.asyncio
async def test_failure_is_soft(
    monkeypatch: pytest.MonkeyPatch, caller_audio: list[np.ndarray]
) -> None:
    tr = LocalTranscriber(DOMAIN_TEXT)

    class Boom:
        def start_utt(self) -> None:
            raise RuntimeError("decoder exploded")

    monkeypatch.setattr(tr, "_ensure_decoder", lambda: Boom())
    t = await tr.transcribe(caller_audio[0], sample_rate_hz=16000)
    assert not t.ok
    assert t.text == ""
    assert t.error is not None and "RuntimeError" in t.error and "exploded" in t.error

    bad = await tr.transcribe(caller_audio[0], sample_rate_hz=0)
    assert not bad.ok and bad.error is not None and "sample_rate_hz" in bad.error
    stereo = await tr.transcribe(np.zeros((16000, 2), dtype=np.int16), sample_rate_hz=16000)
    assert not stereo.ok


@pytest.mark.asyncio
async def test_build_failure_is_soft(caller_audio: list[np.ndarray]) -> None:
    tr = LocalTranscriber("", include_generic_corpus=False)  # empty LM cannot be built
    t = await tr.transcribe(caller_audio[0], sample_rate_hz=16000)
    assert not t.ok and t.error is not None and "empty LM" in t.error


@pytest.mark.asyncio
async def test_concurrent_calls(
    transcriber: LocalTranscriber, caller_audio: list[np.ndarray]
) -> None:
    a, b = await asyncio.gather(
        transcriber.transcribe(caller_audio[9], sample_rate_hz=16000),
        transcriber.transcribe(caller_audio[2], sample_rate_hz=16000),
    )
    solo = await transcriber.transcribe(caller_audio[9], sample_rate_hz=16000)
    assert a.ok and b.ok
    assert a.text == solo.text  # deterministic dither, one decoder used serially


@pytest.mark.asyncio
async def test_aclose(caller_audio: list[np.ndarray]) -> None:
    tr = LocalTranscriber("hello there")
    await tr.aclose()
    t = await tr.transcribe(caller_audio[0], sample_rate_hz=16000)
    assert (t.ok, t.error) == (False, ERROR_CLOSED)


def test_factory_and_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    tr = make_transcriber("local", domain_text="change my flight")
    assert isinstance(tr, LocalTranscriber)
    assert isinstance(tr, Transcriber)
    assert tr.name == "local"
    assert not tr.started  # lazy: nothing built yet
    with pytest.raises(ValueError, match="supported: local, smallest, openai, deepgram"):
        make_transcriber("whisperx")
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"no API key .*DEEPGRAM_API_KEY"):
        make_transcriber("deepgram")


def test_lm_sentences_drop_oov_and_split() -> None:
    vocab = stt._cmudict()
    sents = lm_sentences(
        "Call lookup_booking now. Ask for the xqzzyv code!\nFlight SK703 at 4:00 PM", vocab
    )
    assert ["call", "lookup", "booking", "now"] in sents
    assert ["ask", "for", "the"] in sents and ["code"] in sents  # split at the OOV word
    assert ["flight", "s", "k", "seven", "zero", "three", "at", "four", "p", "m"] in sents
    assert all("xqzzyv" not in s for s in sents)


def test_generic_corpus_size() -> None:
    assert len(GENERIC_CORPUS) > 300
    vocab = stt._cmudict()
    words = {w for s in lm_sentences("\n".join(GENERIC_CORPUS), vocab) for w in s}
    assert {"confirmation", "number", "yes", "goodbye", "z", "twenty", "march"} <= words


# ------------------------------------------------------------------------------ guards, WER
def _vowel(seconds: float, rate: int = 16000, peak: int = 8000) -> np.ndarray:
    """A voiced, vowel-like signal (webrtcvad calls it speech) without TTS."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 3 * t)) / rate
    x = sum((1 / k) * np.sin(k * phase) for k in range(1, 30)) * (0.6 + 0.4 * np.sin(8 * np.pi * t))
    return np.asarray(x / np.abs(x).max() * peak, dtype=np.int16)


def _noise(seconds: float, dbfs: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rms = 32768 * 10 ** (dbfs / 20)
    x = np.random.default_rng(seed).normal(0, rms, int(seconds * rate))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def test_speech_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    assert stt.speech_guard(_vowel(1.0), sample_rate_hz=16000) is None
    assert stt.speech_guard(_vowel(1.0, 8000), sample_rate_hz=8000) is None
    assert stt.speech_guard(_vowel(0.29), sample_rate_hz=16000) == ERROR_TOO_SHORT
    assert stt.speech_guard(np.zeros(16000, np.int16), sample_rate_hz=16000) == ERROR_NO_SPEECH
    assert stt.speech_guard(_noise(2.0, -50), sample_rate_hz=16000) == ERROR_NO_SPEECH
    with pytest.raises(ValueError, match="mono"):
        stt.speech_guard(np.zeros((10, 2), np.int16), sample_rate_hz=16000)
    # The energy floor on top of webrtcvad: even frames the VAD calls speech (it flags noise
    # onsets) only count above min_voiced_dbfs.
    monkeypatch.setattr(
        VoiceActivityDetector, "frames", lambda self, pcm: [True] * (len(pcm) // 320)
    )
    quiet = _noise(1.0, -55)
    assert stt.speech_guard(quiet, sample_rate_hz=16000) == ERROR_NO_SPEECH
    assert stt.speech_guard(quiet, sample_rate_hz=16000, min_voiced_dbfs=-60) is None


def test_transcript_reason_and_skipped() -> None:
    ok = Transcript("hi", ok=True)
    assert ok.reason is None and not ok.skipped
    assert Transcript("", ok=False, error="http_429: slow down (after 4 attempts)").reason == (
        "http_429"
    )
    assert Transcript("", ok=False, error=ERROR_NO_SPEECH).skipped
    assert not Transcript("", ok=False, error="timeout: ReadTimeout").skipped


def test_transcript_wer_normalizes_and_counts_missing() -> None:
    r = stt.transcript_wer(
        [
            ("It's $115, last name Smith.", "its one hundred fifteen dollars last name smith"),
            ("Yes, please.", None),  # untranscribed: all deletions
            ("ZK3FFW.", "z k three f f w"),
        ]
    )
    # "it's" vs "its" is the one substitution; the missing line costs its 2 words
    assert r == {
        "wer": round(3 / 16, 4),
        "errors": 3,
        "words": 16,
        "utterances": 3,
        "untranscribed": 1,
        "wer_transcribed": round(1 / 14, 4),
    }
    assert stt.transcript_wer([])["wer"] is None


def test_decoder_feature_options_are_applied() -> None:
    # feat.params of the acoustic model would silently override these without the fix
    tr = LocalTranscriber("change my flight", decoder_options={"remove_noise": False})
    d = tr._ensure_decoder()
    assert d.config["remove_noise"] is False
    assert d.config["lw"] == stt.DEFAULT_DECODER_OPTIONS["lw"]


def _record_lines() -> list[tuple[str, str]]:
    from pathlib import Path

    from hydralab.records import list_records, load_record
    from hydralab.script import script_from_record

    dirs: list[Path | None] = [None]
    eva = Path(__file__).resolve().parents[2] / "shared" / "eva"
    if (eva / "data").is_dir():
        dirs.append(eva)
    out = []
    for d in dirs:
        for rid in list_records(d):
            out += [
                (rid, t.text) for t in script_from_record(load_record(rid, data_dir=d)).user_turns
            ]
    return out


def test_generic_corpus_holds_no_record_line_or_code() -> None:
    """The LM must not contain what it is measured on: no caller line, no 4-word run of one
    (beyond stock phrases) and no spelled booking code of hydralab's or EVA's records."""
    corpus = [" ".join(normalize_for_wer(line)) for line in GENERIC_CORPUS]
    joined = "\n".join(corpus)
    for rid, line in _record_lines():
        words = normalize_for_wer(line)
        if len(words) > 3:  # short lines ("Okay.", "Yes, that's correct.") are stock phrases
            assert " ".join(words) not in corpus, (rid, line)
        for code in re.findall(r"\b(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z0-9]{5,8}\b", line):
            spelled = " ".join(normalize_for_wer(code))
            assert spelled not in joined, (rid, code)


# ------------------------------------------------------------------------------ bridge wiring
class FakeTranscriber:
    """Applies the real guards, then answers ``text`` (or fails with ``error``)."""

    name = "fake"

    def __init__(self, text: str = "hello there", error: str | None = None) -> None:
        self.text, self.error = text, error
        self.calls: list[tuple[np.ndarray, int]] = []
        self.hang = False

    async def transcribe(self, pcm: np.ndarray, *, sample_rate_hz: int) -> Transcript:
        self.calls.append((np.asarray(pcm).copy(), sample_rate_hz))
        if self.hang:
            await asyncio.sleep(3600)
        skip = stt.speech_guard(pcm, sample_rate_hz=sample_rate_hz)
        if skip is not None:
            return Transcript("", ok=False, error=skip, provider=self.name)
        if self.error is not None:
            return Transcript("", ok=False, error=self.error, provider=self.name, attempts=4)
        return Transcript(self.text, ok=True, provider=self.name, attempts=1)

    async def aclose(self) -> None:
        pass


def _session(tmp_path: Any, transcriber: Any, **cfg: Any) -> Any:
    from hydralab.bridge import BridgeConfig, BridgeSession
    from hydralab.client import HydraConfig
    from hydralab.clock import ManualClock
    from hydralab.records import load_record
    from hydralab.rundir import RunWriter
    from hydralab.tools import ToolExecutor

    return BridgeSession(
        BridgeConfig(hydra=HydraConfig(url="ws://127.0.0.1:9/", instructions="x"), **cfg),
        tools=ToolExecutor(load_record().initial_db),
        writer_factory=lambda c: RunWriter(tmp_path, epoch_ms=c.epoch_ms, t0_ns=c.t0_ns),
        transcriber=transcriber,
        api_key="test-key-1234",
        clock=ManualClock(),
    )


async def _feed(session: Any, pcm8: np.ndarray) -> None:
    """Caller audio through the bridge core's real input path (the model is not connected)."""
    from hydralab.audio import ulaw_encode
    from hydralab.protocol import twilio as tw

    for i in range(0, len(pcm8), 160):
        frame = tw.media_frame("s", ulaw_encode(pcm8[i : i + 160]))
        session._apply(session.core.caller_frame(frame, session.clock.now_ns()))
        session.clock.advance(20_000_000)


def _speech(session: Any, *, started: bool) -> str:
    """``user_speech_start``/``stop`` now, stamped with the clock's epoch ms (returned)."""
    from hydralab.protocol import twilio as tw

    now = session.clock.now_ns()
    ms = session.clock.epoch_ms(now)
    frame = tw.user_speech_frame("s", started=started, timestamp_ms=ms)
    session._apply(session.core.caller_frame(frame, now))
    return str(ms)


async def _settle(session: Any) -> None:
    while session._stt_tasks:
        await asyncio.gather(*list(session._stt_tasks))


def _user_entries(session: Any) -> list[tuple[str, str]]:
    return [(e["value"], e["timestamp"]) for e in session.tracker.audit if e["type"] == "text"]


async def test_bridge_buffers_only_the_utterance_and_skips_silence(tmp_path: Any) -> None:
    fake = FakeTranscriber()
    s = _session(tmp_path, fake)
    try:
        await _feed(s, _noise(1.0, -50, 8000, seed=1))  # line noise before: not buffered
        t_start = _speech(s, started=True)
        await _feed(s, _vowel(0.6, 8000))  # 30 frames of speech
        _speech(s, started=False)
        await _feed(s, _noise(1.0, -50, 8000, seed=2))
        _speech(s, started=True)  # start/stop around line noise only
        await _feed(s, _noise(0.8, -50, 8000, seed=3))
        _speech(s, started=False)
        _speech(s, started=True)  # a glitch: no audio at all
        s.clock.advance(10_000_000)
        _speech(s, started=False)
        await _settle(s)
    finally:
        s.writer.close()
    # utterance 0: 200 ms pre-roll + 600 ms of speech at 16 kHz, nothing from before
    assert [(len(pcm), rate) for pcm, rate in fake.calls[:1]] == [(3200 + 9600, 16000)]
    assert len(fake.calls[1][0]) == 3200 + 12800  # pre-roll + its own 800 ms only
    assert _user_entries(s) == [("hello there", t_start)]  # at the speech-start time
    assert [u.skipped for u in s.tracker.users] == [False, True, True]
    assert [u.transcript_error for u in s.tracker.users] == [None, "no_speech", "too_short"]
    assert s.core.stt_failures == []  # skipping silence is not a failure
    assert s.tracker.conversation_messages == [{"role": "user", "content": "hello there"}]


async def test_bridge_failure_leaves_a_placeholder_and_a_counted_reason(tmp_path: Any) -> None:
    from hydralab.turns import TRANSCRIPTION_PLACEHOLDER

    s = _session(tmp_path, FakeTranscriber(error="http_503: unavailable (after 4 attempts)"))
    try:
        t_start = _speech(s, started=True)
        await _feed(s, _vowel(0.8, 8000))
        _speech(s, started=False)
        await _settle(s)
    finally:
        s.writer.close()
    assert _user_entries(s) == [(TRANSCRIPTION_PLACEHOLDER, t_start)]
    assert s.core.stt_failures == [
        {
            "role": "user",
            "utterance": 0,
            "reason": "http_503",
            "error": "http_503: unavailable (after 4 attempts)",
            "attempts": 4,
        }
    ]


async def test_bridge_drain_timeout_still_writes_placeholders(tmp_path: Any) -> None:
    from hydralab.turns import TRANSCRIPTION_PLACEHOLDER

    fake = FakeTranscriber()
    fake.hang = True
    s = _session(tmp_path, fake, stt_timeout_s=0.05)
    try:
        t_start = _speech(s, started=True)
        await _feed(s, _vowel(0.5, 8000))
        _speech(s, started=False)
        await asyncio.sleep(0)
        await s._drain()  # bounded: cancels, and the placeholder is there before finalize
    finally:
        s.writer.close()
    assert _user_entries(s) == [(TRANSCRIPTION_PLACEHOLDER, t_start)]
    assert [f["reason"] for f in s.core.stt_failures] == [stt.ERROR_CANCELLED]


def _play_turn(s: Any, rid: str, pcm48: np.ndarray, *, text: str | None) -> None:
    """Drive one assistant response (48 kHz audio) through the bridge core: the model's
    events in, the pacer's frames out, slot by slot."""
    import base64

    from hydralab.protocol import hydra as h

    core, t = s.core, s.clock.now_ns
    s._apply(core.model_event(h.ResponseCreated(response={"id": rid}), t()))
    if text is not None:
        ev = h.ResponseOutputAudioTranscriptDelta(response_id=rid, delta=text)
        s._apply(core.model_event(ev, t()))
    delta = base64.b64encode(pcm48.astype("<i2").tobytes()).decode()
    s._apply(core.model_event(h.ResponseOutputAudioDelta(response_id=rid, delta=delta), t()))
    done = h.ResponseDone(response={"id": rid, "status": "completed"})
    s._apply(core.model_event(done, t()))
    while core._queue:
        s.clock.advance(20_000_000)
        s._apply(core.advance(t()))


async def test_assistant_fallback_transcribes_played_audio(tmp_path: Any) -> None:
    fake = FakeTranscriber("your flight is confirmed")
    s = _session(tmp_path, fake)
    played = _vowel(1.0, 48000)
    try:
        _play_turn(s, "r0", played, text=None)  # audio, no transcript deltas
        _play_turn(s, "r1", played, text="Anything else?")  # deltas: no fallback
        await _settle(s)
    finally:
        s.writer.close()
    ((pcm, rate),) = fake.calls
    assert rate == 48000 and 48000 <= len(pcm) <= 48000 + 3 * 960
    # the played audio itself, aligned to within a frame
    assert np.count_nonzero(pcm) >= 47000
    bot = [e for e in s.tracker.audit if e["isBotMessage"]]
    assert [(e["value"], e.get("transcript_source")) for e in bot] == [
        ("your flight is confirmed", "stt"),
        ("Anything else?", None),
    ]
    rows = s.tracker.turn_rows()
    assert [(r["text"], r["text_source"]) for r in rows] == [
        ("your flight is confirmed", "stt"),
        ("Anything else?", "model"),
    ]
    assert s.tracker.conversation_messages[0]["content"] == "your flight is confirmed"


async def test_assistant_fallback_failure_is_marked(tmp_path: Any) -> None:
    from hydralab.turns import ASSISTANT_TRANSCRIPTION_PLACEHOLDER

    s = _session(tmp_path, FakeTranscriber(error="timeout: ReadTimeout"))
    try:
        _play_turn(s, "r0", _vowel(0.8, 48000), text=None)
        await _settle(s)
    finally:
        s.writer.close()
    (entry,) = [e for e in s.tracker.audit if e["isBotMessage"]]
    assert (entry["value"], entry["transcript_source"]) == (
        ASSISTANT_TRANSCRIPTION_PLACEHOLDER,
        "stt_failed",
    )
    assert [(f["role"], f["turn"], f["reason"]) for f in s.core.stt_failures] == [
        ("assistant", 0, "timeout")
    ]


# ------------------------------------------------------------------------------ runner report
def test_run_report_counts_reasons_and_measures_wer() -> None:
    from types import SimpleNamespace

    from hydralab.caller import SentTurn
    from hydralab.runner import _stt_report

    utts = [
        {
            "index": 0,
            "start_epoch_ms": 1000,
            "text": "hi i need to cancel",
            "ok": True,
            "error": None,
        },
        {"index": 1, "start_epoch_ms": 2000, "text": None, "ok": False, "error": "no_speech"},
        {"index": 2, "start_epoch_ms": 3000, "text": None, "ok": False, "error": "http_429: x"},
        {"index": 3, "start_epoch_ms": 4000, "text": "yes", "ok": True, "error": None},
    ]
    summary = {
        "user_utterances": utts,
        "turns": [{"text_source": "model"}, {"text_source": "stt"}],
        "stt_failures": [{"role": "user", "utterance": 2, "reason": "http_429"}],
    }
    sent = [
        SentTurn(0, "Hi, I need to cancel.", "", start_epoch_ms=1000),
        SentTurn(1, "RW2JDN, last name Carter.", "", start_epoch_ms=3000),
        SentTurn(2, "Yes.", "", start_epoch_ms=4000),
        SentTurn(3, "Never spoken.", "", start_epoch_ms=None),
    ]
    session = SimpleNamespace(transcriber=FakeTranscriber())
    r = _stt_report(session, SimpleNamespace(user_turns=sent), summary)  # type: ignore[arg-type]
    assert (r["provider"], r["utterances"], r["transcribed"]) == ("fake", 4, 2)
    assert (r["failed"], r["failure_reasons"]) == (1, {"http_429": 1})
    assert (r["skipped"], r["skip_reasons"]) == (1, {"no_speech": 1})
    assert r["assistant_fallback"] == {"stt": 1, "stt_failed": 0, "none": 0}
    # the failed line (9 words spelled out) counts as deletions; the others are exact
    assert r["wer"]["words"] == 5 + 9 + 1 and r["wer"]["errors"] == 9
    assert r["wer"]["untranscribed"] == 1 and r["wer"]["wer_transcribed"] == 0.0
    assert [u["wer"] for u in r["per_utterance"]] == [0.0, 1.0, 0.0]
    assert _stt_report(session, None, summary)["wer"] is None  # nothing to compare with


def test_runner_builds_the_transcriber_before_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from hydralab.records import load_record
    from hydralab.runner import _make_stt
    from hydralab.secrets import Secret
    from hydralab.speech.providers import SmallestTranscriber, SttConfigError

    rec = load_record()
    assert isinstance(_make_stt("local", rec, Secret("")), LocalTranscriber)
    assert _make_stt(None, rec, Secret("")) is None
    monkeypatch.delenv("SMALLEST_API_KEY", raising=False)
    tr = _make_stt("smallest", rec, Secret("hydra-key-123456"))  # the Hydra key serves STT
    assert isinstance(tr, SmallestTranscriber) and tr.wire_language == rec.language
    with pytest.raises(SttConfigError, match="English-only"):
        _make_stt(
            stt.SttConfig(provider="smallest", model="pulse-pro", language="es-MX"),
            rec,
            Secret("k" * 12),
        )
