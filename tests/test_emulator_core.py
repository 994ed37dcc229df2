"""Pure tests of the emulator's sans-I/O session core: no sockets, no sleeps, time is a number."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from needs import require_speech

from hydralab.emulator.core import (
    Close,
    EmulatorConfig,
    EmulatorFaults,
    EmulatorSession,
    Output,
    SpeechCache,
    speak_texts,
    split_phrases,
)
from hydralab.protocol.hydra import (
    ConversationItemCreate,
    HydraEvent,
    InputAudioBufferAppend,
    ResponseCancel,
    ResponseCreate,
    SessionConfigure,
)
from hydralab.script import AssistantSteps, CallTools, Script, Speak, ToolCall, UserTurn
from hydralab.speech.tts import CALLER_VOICE, Synthesizer

MS = 1_000_000
S = 1_000_000_000

GREETING = "Hello! How can I help you today?"
NARRATION = (
    "I found your booking, Mr. Smith. Your flight to Austin leaves at nine, and it is on time."
)
USER_1 = "I need to check my flight, the confirmation is Z K three."
USER_2 = "No thanks, that is all."
CALLS = (
    ToolCall("get_reservation", {"confirmation": "ZK3FFW", "last_name": "Smith"}),
    ToolCall("get_flight_status", {"flight": "SK703", "date": "2026-03-25"}),
)
SCRIPT = Script(
    greeting=GREETING,
    user_turns=(UserTurn(USER_1, USER_1), UserTurn(USER_2, USER_2)),
    assistant_turns=(
        AssistantSteps((Speak(GREETING),)),
        AssistantSteps((CallTools(CALLS), Speak(NARRATION))),
        AssistantSteps((Speak("You are welcome."), Speak("Goodbye."))),
    ),
)


_CACHES: dict[int, SpeechCache] = {}


def speech_cache(rate_hz: int = 48000) -> SpeechCache:
    """One cache per rate for the whole module (eSpeak output varies by a few samples between
    calls, so audio is compared against the very rendering the session streamed)."""
    require_speech()
    if rate_hz not in _CACHES:
        _CACHES[rate_hz] = SpeechCache(sample_rate_hz=rate_hz)
        _CACHES[rate_hz].prime(speak_texts(SCRIPT))
    return _CACHES[rate_hz]


@functools.cache
def caller_pcm(text: str, lead_ms: int = 600, tail_ms: int = 1500) -> npt.NDArray[np.int16]:
    """Caller speech at 16 kHz with -50 dBFS noise before/after (like a real line)."""
    require_speech()
    pcm = Synthesizer().synthesize(text, voice=CALLER_VOICE, sample_rate_hz=16000, seed=1)
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 32768 * 10 ** (-50 / 20), 16 * (lead_ms + tail_ms))).astype(np.int16)
    lead, tail = noise[: 16 * lead_ms], noise[16 * lead_ms :]
    return np.concatenate([lead, pcm, tail]).astype(np.int16)


def speech_bounds_ms(
    pcm: npt.NDArray[np.int16], *, threshold_dbfs: float = -45.0
) -> tuple[int, int]:
    """First/last 10 ms window with RMS 5 dB above the -50 dBFS noise (where speech really is)."""
    win = 160
    n = len(pcm) // win
    rms = np.sqrt((pcm[: n * win].astype(np.float64).reshape(n, win) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > 32768 * 10 ** (threshold_dbfs / 20))
    return int(loud[0]) * 10, int(loud[-1] + 1) * 10


class Driver:
    """Plays the shell: sends every output at the current fake time, advances time on demand."""

    def __init__(self, session: EmulatorSession) -> None:
        self.s = session
        self.now = 1_000 * S
        self.frames: list[tuple[int, dict[str, Any]]] = []
        self.closed: Close | None = None

    def take(self, outs: list[Output]) -> list[dict[str, Any]]:
        got = []
        for o in outs:
            if isinstance(o, Close):
                self.closed = o
                continue
            self.s.sent(o, t_ns=self.now)
            d = json.loads(o.text)
            self.frames.append((self.now, d))
            got.append(d)
        return got

    def open(self) -> list[dict[str, Any]]:
        return self.take(self.s.open(now_ns=self.now))

    def recv(self, ev: HydraEvent | str) -> list[dict[str, Any]]:
        text = ev if isinstance(ev, str) else ev.dumps()
        return self.take(self.s.receive(text, now_ns=self.now))

    def configure(self, **session: Any) -> list[dict[str, Any]]:
        return self.recv(SessionConfigure(session={"instructions": "Be brief.", **session}))

    def run_until(self, t_ns: int) -> list[dict[str, Any]]:
        got = []
        for _ in range(100_000):
            dl = self.s.next_deadline_ns()
            if dl is None or dl > t_ns:
                break
            self.now = max(self.now, dl)
            got += self.take(self.s.advance(now_ns=self.now))
        self.now = max(self.now, t_ns)
        return got

    def run_for(self, ns: int) -> list[dict[str, Any]]:
        return self.run_until(self.now + ns)

    def run_until_type(self, wire_type: str, *, limit_ns: int = 20 * S) -> dict[str, Any]:
        end = self.now + limit_ns
        while self.now < end:
            dl = self.s.next_deadline_ns()
            assert dl is not None
            for d in self.run_until(min(dl, end)):
                if d["type"] == wire_type:
                    return d
        raise AssertionError(f"no {wire_type} within the limit")

    def feed(
        self, pcm: npt.NDArray[np.int16], *, chunk: int = 320, step_ns: int = 0
    ) -> list[tuple[int, dict[str, Any]]]:
        """Append ``pcm`` in ``chunk``-sample frames; returns (received ms, frame) per output."""
        got = []
        for i in range(0, len(pcm) - chunk + 1, chunk):
            for d in self.recv(InputAudioBufferAppend.from_pcm(pcm[i : i + chunk])):
                got.append((self.s.received_audio_ms, d))
            if step_ns:
                for d in self.run_for(step_ns):
                    got.append((self.s.received_audio_ms, d))
        return got

    def types(self, since: int = 0) -> list[str]:
        return [d["type"] for _, d in self.frames[since:]]


def make(
    *,
    model: str = "hydra-v1.1",
    rate_hz: int = 48000,
    script: Script = SCRIPT,
    session_index: int = 0,
    first_speech_turn: int = 1,
    **cfg: Any,
) -> Driver:
    config = EmulatorConfig(output_rate_hz=rate_hz, **cfg)
    session = EmulatorSession(
        script,
        config=config,
        speech=speech_cache(rate_hz),
        model=model,
        session_index=session_index,
        first_speech_turn=first_speech_turn,
    )
    d = Driver(session)
    d.open()
    return d


def audio_of(frames: list[dict[str, Any]]) -> npt.NDArray[np.int16]:
    chunks = [
        np.frombuffer(base64.b64decode(f["delta"]), dtype="<i2")
        for f in frames
        if f["type"] == "response.output_audio.delta"
    ]
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)


def frames_of(driver: Driver, response_id: str) -> list[dict[str, Any]]:
    return [
        d
        for _, d in driver.frames
        if d.get("response_id") == response_id or d.get("response", {}).get("id") == response_id
    ]


# ---------------------------------------------------------------- handshake


def test_handshake_order_and_deprecation_warning() -> None:
    d = make(model="hydra")
    assert d.types() == ["warning", "session.created"]
    assert d.frames[0][1]["code"] == "model_deprecated"
    assert all(f["event_id"].startswith("sv_") for _, f in d.frames)
    assert make(model="hydra-v1.1").types() == ["session.created"]
    assert make(model="hydra-v1.0").s.output_rate_hz == 48000  # classic: one rate for all tags

    out = d.configure(voice="aria", tools=[{"type": "function", "name": "x"}], api_key="sk-nope")
    assert [f["type"] for f in out] == ["session.configured"]
    echo = out[0]["session"]
    assert echo == {
        "instructions": "Be brief.",
        "voice": "aria",
        "tools": [{"type": "function", "name": "x"}],
        "generate_initial_response": False,
        "output_audio_sample_rate": 48000,
    }
    assert "sk-nope" not in json.dumps(d.s.frames_in) + json.dumps(d.s.frames_out)
    assert d.s.configure_bytes == len(
        SessionConfigure(
            session={
                "instructions": "Be brief.",
                "voice": "aria",
                "tools": [{"type": "function", "name": "x"}],
                "api_key": "sk-nope",
            }
        )
        .dumps()
        .encode()
    )
    # One-shot: a second configure is ignored (and flagged).
    assert d.configure(voice="zoe") == []
    assert "configure_ignored" in d.s.kinds()
    # Nothing is said without generate_initial_response.
    assert d.run_for(5 * S) == []


def test_announced_rate_24k() -> None:
    d = make(rate_hz=24000)
    (configured,) = d.configure()
    assert configured["session"]["output_audio_sample_rate"] == 24000


def test_audio_before_configure_is_dropped_and_counted() -> None:
    d = make()
    speech = caller_pcm(USER_1)
    assert d.feed(speech) == []  # a whole utterance, silently dropped
    assert d.s.dropped_audio_frames == len(speech) // 320
    d.configure()
    assert d.s.received_audio_ms == 0
    assert "audio_before_configure" in d.s.kinds()


def test_invalid_audio_is_a_non_fatal_error() -> None:
    d = make()
    d.configure()
    (err,) = d.recv(InputAudioBufferAppend(audio=base64.b64encode(b"\0" * 40).decode()))
    assert err["type"] == "error"
    assert err["error"]["code"] == "invalid_audio"
    assert err["error"]["param"] == "audio"
    assert "40 bytes, need 320" in err["error"]["message"]
    (err2,) = d.recv(InputAudioBufferAppend(audio="@@not base64@@", event_id="evt_1"))
    assert err2["error"]["code"] == "invalid_audio"
    assert err2["error"]["event_id"] == "evt_1"
    assert d.s.received_audio_ms == 0
    assert d.recv(InputAudioBufferAppend.from_pcm(np.zeros(320, np.int16))) == []
    assert d.s.received_audio_ms == 20
    (err3,) = d.recv("{not json")
    assert err3["error"]["code"] == "invalid_request_error"
    assert "event_id" not in err3["error"]
    # A JSON object that is not a frame still names the client frame that caused the error.
    (err4,) = d.recv(json.dumps({"type": ["x"], "event_id": "evt_4"}))
    assert err4["error"]["code"] == "invalid_request_error"
    assert err4["error"]["event_id"] == "evt_4"


# ---------------------------------------------------------------- VAD


@pytest.mark.parametrize("chunk", [320, 480, 160])
def test_vad_on_synthesized_speech(chunk: int) -> None:
    """speech_started/stopped sit where the speech is, on the received-sample clock.

    ``audio_end_ms`` is the end of the last voiced 20 ms frame (webrtcvad's own over-hang puts
    it ~80-110 ms after the last audible sample); the event is emitted once
    ``vad_hangover_ms`` more audio has been received. All audio arrives at one instant: the
    result must not depend on pacing. Chunks of 10/20/30 ms are re-buffered to 20 ms frames.
    """
    d = make()
    d.configure()
    pcm = caller_pcm(USER_1)
    onset_ms, offset_ms = speech_bounds_ms(pcm)
    got = d.feed(pcm, chunk=chunk)
    kinds = [f["type"] for _, f in got]
    assert kinds == [
        "input_audio_buffer.speech_started",
        "conversation.item.added",
        "input_audio_buffer.speech_stopped",
        "conversation.item.done",
    ]
    (rx_start, started), (rx_stop, stopped) = got[0], got[2]
    assert abs(started["audio_start_ms"] - onset_ms) <= 100
    assert 0 <= stopped["audio_end_ms"] - offset_ms <= 120
    assert started["item_id"] == stopped["item_id"] == got[1][1]["item"]["id"]
    assert got[1][1]["item"]["role"] == "user" and got[3][1]["item"]["status"] == "completed"
    # Emission points on the received-sample clock (within one input chunk).
    step = chunk // 16
    assert started["audio_start_ms"] + 200 <= rx_start <= started["audio_start_ms"] + 400 + step
    assert stopped["audio_end_ms"] + 600 <= rx_stop < stopped["audio_end_ms"] + 600 + 20 + step
    # ... and the response is scheduled from that moment with a drawn latency.
    (sched,) = [g for g in d.s.log if g.kind == "response_scheduled"]
    assert sched.turn_index == 1 and sched.injected_latency_ms is not None


def test_speech_beyond_script_gets_no_response() -> None:
    short = Script(
        greeting=GREETING,
        user_turns=(UserTurn(USER_2, USER_2),),
        assistant_turns=(AssistantSteps((Speak(GREETING),)), AssistantSteps((Speak("Goodbye."),))),
    )
    d = make(script=short)
    d.configure()
    d.feed(caller_pcm(USER_2), step_ns=1 * MS)
    d.run_until_type("response.done")
    mark = len(d.frames)
    d.feed(caller_pcm(USER_2), step_ns=1 * MS)
    d.run_for(5 * S)
    assert d.types(mark).count("response.created") == 0
    assert "user_turn_beyond_script" in d.s.kinds()


# ---------------------------------------------------------------- responses


@pytest.mark.parametrize("rate_hz", [48000, 24000])
def test_greeting_response(rate_hz: int) -> None:
    d = make(rate_hz=rate_hz)
    t_configure = d.now
    d.configure(generate_initial_response=True)
    done = d.run_until_type("response.done")
    rid = done["response"]["id"]
    frames = frames_of(d, rid)
    types = d.types(2)  # after session.created + session.configured
    # No speech_started before an initial response; then the documented order.
    assert types[0] == "response.created"
    assert types[1] == "conversation.item.added"
    assert types[-3:] == ["response.output_audio.done", "conversation.item.done", "response.done"]
    assert "input_audio_buffer.speech_started" not in types
    # Audio: exactly the synthesized greeting, in delta_ms chunks at the announced rate.
    pcm = audio_of(frames)
    expected = speech_cache(rate_hz).get(GREETING).pcm
    np.testing.assert_array_equal(pcm, expected)
    deltas = [f for f in frames if f["type"] == "response.output_audio.delta"]
    assert all(len(base64.b64decode(f["delta"])) == 2 * rate_hz // 10 for f in deltas[:-1])
    # Transcript: raw concatenation is the text.
    text = "".join(
        f["delta"] for f in frames if f["type"] == "response.output_audio_transcript.delta"
    )
    assert text == GREETING
    # Timing: first delta after the drawn latency, then 10x faster than real time.
    (created_truth,) = [g for g in d.s.log if g.kind == "response_created"]
    lat = created_truth.injected_latency_ms
    assert lat is not None and 200 <= lat <= 2500
    times = [t for t, f in d.frames if f["type"] == "response.output_audio.delta"]
    assert times[0] - t_configure == pytest.approx(lat * MS, abs=1 * MS)
    assert times[-1] - times[0] == pytest.approx((len(times) - 1) * 10 * MS, abs=1 * MS)
    usage = done["response"]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert d.s.kinds().count("first_audio_delta") == 1


def test_transcript_phrase_precedes_its_audio() -> None:
    d = make()
    d.configure()
    d.feed(caller_pcm(USER_1), step_ns=1 * MS)
    d.run_until_type("response.done")  # the tool part
    for call_id in _pending_calls(d):
        d.recv(ConversationItemCreate.function_call_output(call_id, '{"ok":true}'))
    d.recv(ResponseCreate())
    done = d.run_until_type("response.done")
    frames = frames_of(d, done["response"]["id"])
    utt = speech_cache().get(NARRATION)
    chunk = 48000 // 10
    seen_audio = 0
    deltas: list[tuple[str, int]] = []
    for f in frames:
        if f["type"] == "response.output_audio.delta":
            seen_audio += 1
        elif f["type"] == "response.output_audio_transcript.delta":
            deltas.append((f["delta"], seen_audio))
    phrases = split_phrases(NARRATION)
    assert [t for t, _ in deltas] == [p for _, p in phrases]
    assert len(phrases) == 4  # "Mr." does not end a phrase
    for (pos, _), (_, k) in zip(phrases[1:], deltas[1:], strict=True):
        word = next(w for w in utt.words if w.char_pos >= pos)
        assert k == int(word.start_ms * 48) // chunk  # sent just before its first audio delta
    assert deltas[0][1] == 0


def _pending_calls(d: Driver) -> list[str]:
    return [
        f["call_id"] for _, f in d.frames if f["type"] == "response.function_call_arguments.done"
    ]


def test_tool_turn_fragments_and_wait_for_outputs() -> None:
    d = make()
    d.configure()
    d.feed(caller_pcm(USER_1), step_ns=1 * MS)
    t_stopped = next(t for t, f in d.frames if f["type"] == "input_audio_buffer.speech_stopped")
    done = d.run_until_type("response.done")
    rid = done["response"]["id"]
    frames = frames_of(d, rid)
    assert frames[0]["type"] == "response.created"
    assert not any(f["type"].startswith("response.output_audio") for f in frames)
    # Tool-first turn: args start after the (short) drawn tool delay.
    t_first = next(t for t, f in d.frames if f["type"] == "response.function_call_arguments.delta")
    assert 75 * MS <= t_first - t_stopped <= 2500 * MS
    dones = [f for f in frames if f["type"] == "response.function_call_arguments.done"]
    assert [f["name"] for f in dones] == [c.name for c in CALLS]
    for call, dn in zip(CALLS, dones, strict=True):
        parts = [
            f
            for f in frames
            if f["type"] == "response.function_call_arguments.delta"
            and f["call_id"] == dn["call_id"]
        ]
        assert 2 <= len(parts) <= 4
        assert "".join(p["delta"] for p in parts) == dn["arguments"]
        assert json.loads(dn["arguments"]) == call.arguments
        assert parts[0]["name"] == call.name and all("name" not in p for p in parts[1:])
        assert all(p["response_id"] == rid for p in parts)
    out_items = done["response"]["output"]
    assert [i["type"] for i in out_items] == ["function_call", "function_call"]
    assert [i["call_id"] for i in out_items] == [f["call_id"] for f in dones]
    assert done["response"]["status"] == "completed"

    # Nothing happens without outputs + response.create (well inside the 15 s timeout).
    mark = len(d.frames)
    assert d.run_for(5 * S) == []
    first, second = (f["call_id"] for f in dones)
    d.recv(ConversationItemCreate.function_call_output(first, '{"status":"confirmed"}'))
    d.recv(ResponseCreate())  # premature: one output is still missing
    assert d.run_for(3 * S) == []
    assert [g.kind for g in d.s.flags] == ["premature_response_create"]
    # The second output carries the undocumented "role" key (as EVA's PR sends it).
    item = {"type": "function_call_output", "call_id": second, "output": "{}", "role": "user"}
    d.recv(json.dumps({"type": "conversation.item.create", "item": item}))
    assert d.run_for(3 * S) == []  # still no response.create after the last output
    flagged = [g for g in d.s.flags if g.kind == "undocumented_item_fields"]
    assert [g.detail for g in flagged] == ["role"]
    t_create = d.now
    d.recv(ResponseCreate(response={}))
    done2 = d.run_until_type("response.done")
    assert done2["response"]["id"] != rid and done2["response"]["status"] == "completed"
    t_created = next(t for t, f in d.frames[mark:] if f["type"] == "response.created")
    sched = [g for g in d.s.log if g.kind == "response_scheduled"][-1]
    assert sched.detail == "tool_output" and sched.injected_latency_ms is not None
    assert t_created - t_create == pytest.approx(sched.injected_latency_ms * MS, abs=1 * MS)
    text = "".join(
        f["delta"]
        for f in frames_of(d, done2["response"]["id"])
        if f["type"] == "response.output_audio_transcript.delta"
    )
    assert text == NARRATION
    np.testing.assert_array_equal(
        audio_of(frames_of(d, done2["response"]["id"])), speech_cache().get(NARRATION).pcm
    )
    assert "turn_done" in d.s.kinds()


def test_tool_response_timeout_abandons_turn() -> None:
    d = make(tool_output_timeout_s=2.0)
    d.configure()
    d.feed(caller_pcm(USER_1), step_ns=1 * MS)
    d.run_until_type("response.done")
    mark = len(d.frames)
    got = d.run_for(2 * S + 1)
    assert [f["type"] for f in got] == ["error"]
    assert got[0]["error"]["code"] == "tool_response_timeout"
    assert d.run_for(5 * S) == []
    # The next user turn is answered by the next scripted turn.
    d.feed(caller_pcm(USER_2), step_ns=1 * MS)
    done = d.run_until_type("response.done")
    frames = frames_of(d, done["response"]["id"])
    text = "".join(
        f["delta"] for f in frames if f["type"] == "response.output_audio_transcript.delta"
    )
    assert text == "You are welcome. Goodbye."  # consecutive Speak steps: one response
    both = [speech_cache().get(t).pcm for t in ("You are welcome.", "Goodbye.")]
    np.testing.assert_array_equal(audio_of(frames), np.concatenate(both))
    assert "response.function_call_arguments.delta" not in d.types(mark)


def test_barge_in_cancels_the_streaming_response() -> None:
    d = make()
    d.configure(generate_initial_response=True)
    d.run_until_type("response.output_audio.delta")
    rid = d.s.log[-1].response_id
    speech = caller_pcm(USER_1, lead_ms=0)
    got = d.feed(speech, step_ns=2 * MS)
    kinds = [f["type"] for _, f in got]
    i = kinds.index("input_audio_buffer.speech_started")
    assert kinds[i + 1] == "response.done"
    cancelled = got[i + 1][1]["response"]
    assert cancelled["id"] == rid
    assert cancelled["status"] == "cancelled"
    assert cancelled["status_details"] == {"type": "cancelled", "reason": "interrupted"}
    assert cancelled["output"][0]["status"] == "incomplete"
    after = kinds[i + 1 :]
    assert "response.output_audio.delta" not in after
    assert "response.output_audio.done" not in after
    # The greeting counts as answered: the user's turn gets the tool turn.
    d.run_until_type("response.function_call_arguments.delta")
    sent_ms = sum(
        len(base64.b64decode(f["delta"])) // 96
        for _, f in d.frames
        if f["type"] == "response.output_audio.delta" and f["response_id"] == rid
    )
    assert 0 < sent_ms < len(speech_cache().get(GREETING).pcm) // 48


def test_response_cancel_from_client() -> None:
    d = make()
    d.configure(generate_initial_response=True)
    assert d.recv(ResponseCancel()) == []  # nothing in flight yet: no-op
    d.run_until_type("response.output_audio.delta")
    (done,) = d.recv(ResponseCancel())
    assert done["type"] == "response.done"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    assert d.run_for(10 * S) == []


def test_oversized_configure_mutes_audio_but_keeps_text() -> None:
    d = make(max_configure_bytes=32_768)
    d.configure(instructions="x" * 40_000, generate_initial_response=True)
    done = d.run_until_type("response.done")
    types = d.types()
    assert "response.output_audio.delta" not in types
    assert "response.output_audio_transcript.delta" in types
    assert done["response"]["status"] == "completed"
    assert "configure_oversized" in d.s.kinds()


def test_idle_timeout_closes_1000() -> None:
    d = make(idle_timeout_s=30.0)
    d.configure()
    d.run_for(29 * S)
    assert d.closed is None
    d.recv(InputAudioBufferAppend.from_pcm(np.zeros(320, np.int16)))  # input resets the timer
    d.run_for(29 * S)
    assert d.closed is None
    d.run_for(1 * S + 1)
    assert d.closed == Close(1000, "idle timeout")
    assert d.s.next_deadline_ns() is None


def test_seeded_and_deterministic() -> None:
    def run(seed: int) -> list[dict[str, Any]]:
        d = make(seed=seed)
        d.configure(generate_initial_response=True)
        d.run_until_type("response.done")
        return [f for _, f in d.frames]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_split_phrases() -> None:
    assert split_phrases("Hello! How are you?") == [(0, "Hello!"), (7, " How are you?")]
    for text in (GREETING, NARRATION, "One.", "Yes, no,  maybe. "):
        assert "".join(p for _, p in split_phrases(text)) == text


def test_idle_timeout_tiny_value() -> None:
    d = make(idle_timeout_s=0.5)
    d.configure()
    d.run_for(500 * MS - 1)
    assert d.closed is None
    d.run_for(1)
    assert d.closed == Close(1000, "idle timeout")


# ---------------------------------------------------------------- faults on demand


def test_server_full_refuses_the_first_sessions() -> None:
    faults = EmulatorFaults(server_full_sessions=2)
    for index in (0, 1):
        d = make(faults=faults, session_index=index)
        assert d.types() == ["error"]  # refused right after the upgrade: no session.created
        assert d.frames[0][1]["error"]["code"] == "server_full"
        assert d.closed == Close(1013, "server full")
        assert d.s.server_full and d.s.next_deadline_ns() is None
        assert d.configure() == [] and d.run_for(5 * S) == []
    d = make(faults=faults, session_index=2)  # the third connection gets a normal session
    assert d.types() == ["session.created"] and d.closed is None
    assert [f["type"] for f in d.configure()] == ["session.configured"]
    # Or after session.created (and the deprecation warning); the error still precedes 1013.
    late = EmulatorFaults(server_full_sessions=1, server_full_after_created=True)
    d = make(faults=late, model="hydra")
    assert d.types() == ["warning", "session.created", "error"]
    assert d.closed == Close(1013, "server full")


def test_internal_error_after_turns_closes_1011() -> None:
    faults = EmulatorFaults(internal_error_after_turns=1)
    d = make(faults=faults)
    d.configure(generate_initial_response=True)
    d.run_until_type("response.done")  # the greeting: turn 0 ends ...
    assert d.types()[-1] == "error"  # ... and the error follows its response.done at once
    err = d.frames[-1][1]["error"]
    assert err["code"] == "internal_error"
    assert d.frames[-1][0] == next(t for t, f in d.frames if f["type"] == "response.done")
    assert d.closed == Close(1011, "internal error")
    assert d.s.internal_error_sent and d.s.next_deadline_ns() is None
    assert d.feed(caller_pcm(USER_2)) == [] and d.run_for(5 * S) == []
    # Only the first (non-refused) session is affected: a reconnect gets a healthy one.
    d = make(faults=faults, session_index=1)
    d.configure(generate_initial_response=True)
    d.run_until_type("response.done")
    assert d.run_for(5 * S) == [] and d.closed is None and not d.s.internal_error_sent
    # 0 turns: right after session.configured.
    d = make(faults=EmulatorFaults(internal_error_after_turns=0))
    assert [f["type"] for f in d.configure(generate_initial_response=True)] == [
        "session.configured",
        "error",
    ]
    assert d.closed == Close(1011, "internal error") and d.run_for(5 * S) == []


def test_internal_error_counts_spoken_turns_and_resume_continues_the_script() -> None:
    d = make(faults=EmulatorFaults(internal_error_after_turns=1))
    d.configure()  # no greeting: the first ended turn is the tool turn
    d.feed(caller_pcm(USER_1), step_ns=1 * MS)
    d.run_until_type("response.done")  # the tool part does not end the turn
    assert d.closed is None
    for call_id in _pending_calls(d):
        d.recv(ConversationItemCreate.function_call_output(call_id, "{}"))
    d.recv(ResponseCreate())
    d.run_until_type("error")
    assert d.types()[-2:] == ["response.done", "error"] and d.closed is not None
    assert d.s.next_speech_turn == 2
    # The next session resumes there: its first utterance gets assistant_turns[2].
    r = make(first_speech_turn=d.s.next_speech_turn)
    r.configure()
    r.feed(caller_pcm(USER_2), step_ns=1 * MS)
    done = r.run_until_type("response.done")
    text = "".join(
        f["delta"]
        for f in frames_of(r, done["response"]["id"])
        if f["type"] == "response.output_audio_transcript.delta"
    )
    assert text == "You are welcome. Goodbye."
    with pytest.raises(ValueError, match="first_speech_turn"):
        make(first_speech_turn=0)


def test_response_failed_after_partial_audio() -> None:
    d = make(faults=EmulatorFaults(response_status={0: ("failed", None)}))
    d.configure(generate_initial_response=True)
    done = d.run_until_type("response.done")
    resp = done["response"]
    assert resp["status"] == "failed"
    assert resp["status_details"] == {
        "type": "failed",
        "error": {"code": "server_error", "type": "server_error"},
    }
    assert [i["status"] for i in resp["output"]] == ["incomplete"]
    frames = frames_of(d, resp["id"])
    types = [f["type"] for f in frames]
    assert "response.output_audio.done" not in types
    full = speech_cache().get(GREETING).pcm
    n_full = -(-len(full) // 4800)
    sent = audio_of(frames)
    assert types.count("response.output_audio.delta") == round(n_full * 0.5)
    np.testing.assert_array_equal(sent, full[: len(sent)])  # a prefix of the real audio
    assert 0 < len(sent) < len(full)
    text = "".join(f["delta"] for f in frames if f["type"].endswith("transcript.delta"))
    assert GREETING.startswith(text)  # only the phrases whose audio started were sent
    assert d.s.log[-1].kind == "turn_done" and d.s.log[-1].detail == "failed"
    # The session goes on: the user's first utterance still gets turn 1 (the tool turn).
    d.feed(caller_pcm(USER_1), step_ns=1 * MS)
    d.run_until_type("response.function_call_arguments.done")
    code = make(faults=EmulatorFaults(response_status={0: ("failed", "model_error")}))
    code.configure(generate_initial_response=True)
    assert code.run_until_type("response.done")["response"]["status_details"]["error"] == {
        "code": "model_error",
        "type": "server_error",
    }


def test_response_incomplete_hits_the_narration_of_a_tool_turn() -> None:
    faults = EmulatorFaults(response_status={1: ("incomplete", None)}, partial_audio_fraction=0.25)
    d = make(faults=faults)
    d.configure()
    d.feed(caller_pcm(USER_1), step_ns=1 * MS)
    tool_done = d.run_until_type("response.done")
    assert tool_done["response"]["status"] == "completed"  # no speech: not the faulted one
    for call_id in _pending_calls(d):
        d.recv(ConversationItemCreate.function_call_output(call_id, "{}"))
    d.recv(ResponseCreate())
    done = d.run_until_type("response.done")
    assert done["response"]["status"] == "incomplete"
    assert done["response"]["status_details"] == {
        "type": "incomplete",
        "reason": "max_output_tokens",
    }
    n_full = -(-len(speech_cache().get(NARRATION).pcm) // 4800)
    deltas = [
        f
        for f in frames_of(d, done["response"]["id"])
        if f["type"] == "response.output_audio.delta"
    ]
    assert len(deltas) == round(n_full * 0.25) >= 1
    assert d.run_for(10 * S) == []  # the turn is over; nothing more is said
    assert [g.detail for g in d.s.log if g.kind == "turn_done"] == ["incomplete"]


@pytest.mark.parametrize(
    ("status", "match"),
    [
        (("cancelled", None), "status must be"),
        (("incomplete", "too_long"), "incomplete reason"),
        (("failed",), "tuple"),
    ],
)
def test_response_status_is_validated(status: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmulatorFaults(response_status={1: status})


def _plain_turn_driver(**faults: Any) -> Driver:
    """Greeting, then the user's utterance answered by the plain turn 2 (no tools)."""
    d = make(faults=EmulatorFaults(**faults), first_speech_turn=2)
    d.configure(generate_initial_response=True)
    d.run_until_type("response.done")
    return d


def test_late_speech_stopped_after_first_audio_delta() -> None:
    normal = _plain_turn_driver()
    normal.feed(caller_pcm(USER_2))
    normal.run_until_type("response.done")
    late = _plain_turn_driver(late_speech_stopped_turns={2})
    mark = len(late.frames)
    got = late.feed(caller_pcm(USER_2))  # whole utterance at one instant: VAD saw its end
    assert [f["type"] for _, f in got] == [
        "input_audio_buffer.speech_started",
        "conversation.item.added",
    ]
    assert "speech_stopped_held" in late.s.kinds()
    late.run_until_type("response.done")
    types = late.types(mark)
    first_delta = types.index("response.output_audio.delta")
    assert types[first_delta + 1 : first_delta + 3] == [
        "input_audio_buffer.speech_stopped",
        "conversation.item.done",
    ]
    assert types.index("response.created") < first_delta
    stopped = [f for _, f in late.frames if f["type"].endswith("speech_stopped")]
    ref = [f for _, f in normal.frames if f["type"].endswith("speech_stopped")]
    assert stopped[0]["audio_end_ms"] == ref[0]["audio_end_ms"]  # the sample position is kept
    (row,) = [r for r in late.s.turn_truths() if r["turn_index"] == 2]
    assert row["speech_stopped_late"]
    assert row["speech_end_detected_ns"] < row["first_delta_sent_ns"]
    assert row["first_delta_sent_ns"] == row["speech_stopped_sent_ns"]  # same fake instant
    assert row["first_delta_sent_ns"] - row["speech_end_detected_ns"] == int(
        row["injected_latency_ms"] * MS
    )
    (ref_row,) = [r for r in normal.s.turn_truths() if r["turn_index"] == 2]
    assert not ref_row["speech_stopped_late"]


def test_late_speech_stopped_tool_first_and_flushed_by_new_speech() -> None:
    d = make(faults=EmulatorFaults(late_speech_stopped_turns={1}))
    d.configure()
    d.feed(caller_pcm(USER_1))
    d.feed(caller_pcm(USER_1))  # talks again before the answer: the held stop goes out first
    types = d.types()
    assert types.count("input_audio_buffer.speech_stopped") == 1
    stop = types.index("input_audio_buffer.speech_stopped")
    assert types[stop + 1 : stop + 3] == [
        "conversation.item.done",
        "input_audio_buffer.speech_started",
    ]
    assert "pending_response_withdrawn" in d.s.kinds()
    mark = len(d.frames)
    d.run_until_type("response.done")
    after = d.types(mark)
    first_args = after.index("response.function_call_arguments.delta")
    assert after[first_args + 1] == "input_audio_buffer.speech_stopped"  # no audio: after args
    rows = d.s.turn_truths()
    assert [r["turn_index"] for r in rows] == [1]
    assert rows[0]["first_delta_sent_ns"] is None and rows[0]["speech_stopped_sent_ns"]


def test_turn_truths_match_the_wire() -> None:
    d = make(first_speech_turn=2, seed=5)
    d.configure(generate_initial_response=True)
    d.run_until_type("response.done")
    d.feed(caller_pcm(USER_2), step_ns=1 * MS)
    d.run_until_type("response.done")
    greeting, answer = d.s.turn_truths()
    sent = {f["event_id"]: (t, f) for t, f in d.frames}
    created = [f["response"]["id"] for _, f in d.frames if f["type"] == "response.created"]
    assert greeting["turn_index"] == 0 and answer["turn_index"] == 2
    assert greeting["speech_stopped_sent_ns"] is None and greeting["audio_end_ms"] is None
    assert [greeting["response_ids"], answer["response_ids"]] == [[c] for c in created]
    assert greeting["statuses"] == answer["statuses"] == ["completed"]
    t_stop, stop = sent[answer["speech_stopped_event_id"]]
    t_delta, delta = sent[answer["first_delta_event_id"]]
    assert stop["type"] == "input_audio_buffer.speech_stopped"
    assert delta["type"] == "response.output_audio.delta"
    assert delta["response_id"] == created[1]
    assert (answer["speech_stopped_sent_ns"], answer["first_delta_sent_ns"]) == (t_stop, t_delta)
    assert answer["audio_end_ms"] == stop["audio_end_ms"]
    first = next(t for t, f in d.frames if f["type"] == "response.output_audio.delta")
    assert greeting["first_delta_sent_ns"] == first
    # Latency on the wire = injected latency (the stop is sent when the end is detected).
    lat = answer["injected_latency_ms"]
    assert t_delta - t_stop == int(lat * MS) and lat == answer["response_latencies_ms"][0]
    assert answer["speech_end_detected_ns"] == t_stop and not answer["speech_stopped_late"]
