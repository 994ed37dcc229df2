"""Hydra and Twilio frame parsing/serialization (pure)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydralab.protocol import hydra as h
from hydralab.protocol import twilio as tw
from hydralab.protocol.hydra import (
    EVENT_ID_LEN,
    ErrorEvent,
    FunctionCallArgumentsDone,
    ResponseDone,
    ResponseOutputAudioDelta,
    SessionConfigured,
    UnknownEvent,
    WarningEvent,
    client_event_id,
    decode_pcm16,
    parse_event,
)

SERVER_SAMPLES = [
    {"type": "warning", "code": "model_deprecated", "message": "use hydra-v1.0"},
    {"type": "session.created", "event_id": "sv_1", "session_id": "abc"},
    {
        "type": "session.configured",
        "event_id": "sv_2",
        "session": {"voice": "aria", "output_audio_sample_rate": 24000},
    },
    {
        "type": "input_audio_buffer.speech_started",
        "event_id": "sv_3",
        "audio_start_ms": 120,
        "item_id": "it_1",
    },
    {
        "type": "input_audio_buffer.speech_stopped",
        "event_id": "sv_4",
        "audio_end_ms": 900,
        "item_id": "it_1",
    },
    {
        "type": "response.created",
        "event_id": "sv_5",
        "response": {"id": "r1", "status": "in_progress"},
    },
    {
        "type": "response.output_audio.delta",
        "event_id": "sv_6",
        "response_id": "r1",
        "item_id": "it_2",
        "output_index": 0,
        "content_index": 0,
        "delta": "AAAA",
    },
    {"type": "response.output_audio_transcript.delta", "response_id": "r1", "delta": " Hello"},
    {
        "type": "response.function_call_arguments.delta",
        "response_id": "r1",
        "call_id": "c1",
        "name": "get_reservation",
        "delta": '{"a":',
    },
    {
        "type": "response.function_call_arguments.done",
        "response_id": "r1",
        "call_id": "c1",
        "name": "get_reservation",
        "arguments": '{"a":1}',
    },
    {
        "type": "response.done",
        "response": {
            "id": "r1",
            "status": "cancelled",
            "status_details": {"reason": "interrupted"},
            "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12},
        },
    },
    {
        "type": "error",
        "error": {"type": "invalid_request_error", "code": "invalid_audio", "message": "too small"},
    },
]


@pytest.mark.parametrize("frame", SERVER_SAMPLES, ids=[f["type"] for f in SERVER_SAMPLES])
def test_server_events_round_trip(frame: dict) -> None:
    ev = h.parse_event(json.dumps(frame))
    assert not isinstance(ev, h.UnknownEvent)
    assert ev.type == frame["type"]
    assert ev.to_dict() == frame
    assert h.parse_event(ev.dumps()) == ev


def test_unknown_type_is_kept_whole() -> None:
    frame = {"type": "response.output_audio_transcript.done", "text": "hi", "x": [1]}
    ev = h.parse_event(json.dumps(frame))
    assert isinstance(ev, h.UnknownEvent)
    assert ev.raw == frame and ev.wire_type == frame["type"]
    assert ev.to_dict() == frame


@pytest.mark.parametrize("bad", ["not json", "[1,2]", '{"no_type": 1}', '{"type": 3}'])
def test_malformed_frames_raise_protocol_error(bad: str) -> None:
    with pytest.raises(h.ProtocolError):
        h.parse_event(bad)


def test_convenience_properties() -> None:
    configured = h.parse_event(SERVER_SAMPLES[2])
    assert isinstance(configured, h.SessionConfigured)
    assert configured.output_rate_hz == 24000
    assert h.SessionConfigured(session={}).output_rate_hz == 48000
    done = h.parse_event(SERVER_SAMPLES[10])
    assert isinstance(done, h.ResponseDone)
    assert (done.status, done.reason, done.usage["total_tokens"]) == (
        "cancelled",
        "interrupted",
        12,
    )
    err = h.parse_event(SERVER_SAMPLES[11])
    assert isinstance(err, h.ErrorEvent) and err.code == "invalid_audio"


def test_client_events_only_documented_fields() -> None:
    item = h.ConversationItemCreate.function_call_output("c1", '{"status":"success"}')
    assert item.to_dict() == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "c1", "output": '{"status":"success"}'},
    }
    assert h.ResponseCreate().to_dict() == {"type": "response.create"}


@given(st.lists(st.integers(-32768, 32767), min_size=0, max_size=400))
def test_pcm16_base64_round_trip(samples: list[int]) -> None:
    pcm = np.asarray(samples, dtype=np.int16)
    ev = h.InputAudioBufferAppend.from_pcm(pcm)
    back, carry = h.decode_pcm16(ev.audio)
    assert carry == b""
    np.testing.assert_array_equal(back, pcm)


def test_pcm16_odd_byte_is_carried() -> None:
    raw = np.arange(5, dtype="<i2").tobytes()
    a, carry = h.decode_pcm16(base64.b64encode(raw[:3]).decode())
    assert a.tolist() == [0] and len(carry) == 1
    b, carry = h.decode_pcm16(base64.b64encode(raw[3:]).decode(), carry=carry)
    assert b.tolist() == [1, 2, 3, 4] and carry == b""


# ------------------------------------------------------------------ Twilio


def test_twilio_eva_minimal_frames() -> None:
    c = tw.parse_twilio('{"event":"connected","protocol":"voice-bench-v1","conversation_id":"x"}')
    assert isinstance(c, tw.Connected) and c.stream_sid == "x"
    s = tw.parse_twilio('{"event":"start","conversation_id":"x"}')
    assert isinstance(s, tw.Start) and s.stream_sid == "x"
    payload = base64.b64encode(bytes(range(160))).decode()
    m = tw.parse_twilio(
        json.dumps({"event": "media", "conversation_id": "x", "media": {"payload": payload}})
    )
    assert isinstance(m, tw.Media) and m.payload == bytes(range(160))
    start = tw.parse_twilio('{"event":"user_speech_start","timestamp_ms":"1764000000000"}')
    assert isinstance(start, tw.UserSpeechStart) and start.timestamp_ms == 1_764_000_000_000
    # EVA's simulator stamps stop with loop.time() (monotonic): not an epoch, so no timestamp.
    stop = tw.parse_twilio('{"event":"user_speech_stop","timestamp_ms":"438123"}')
    assert isinstance(stop, tw.UserSpeechStop) and stop.timestamp_ms is None
    assert isinstance(tw.parse_twilio('{"event":"stop"}'), tw.Stop)
    assert isinstance(tw.parse_twilio('{"type":"media","media":{"payload":""}}'), tw.Media)


def test_twilio_canonical_frames_and_builders() -> None:
    start = tw.parse_twilio(tw.start_frame("MZ1"))
    assert isinstance(start, tw.Start) and start.stream_sid == "MZ1"
    assert start.media_format == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    media = tw.parse_twilio(tw.media_frame("MZ1", b"\xff" * 160))
    assert isinstance(media, tw.Media) and media.payload == b"\xff" * 160
    mark = tw.parse_twilio(tw.mark_frame("MZ1", "hydralab:turn_end:2"))
    assert isinstance(mark, tw.Mark) and mark.name == "hydralab:turn_end:2"
    assert isinstance(tw.parse_twilio(tw.clear_frame("MZ1")), tw.Clear)
    sp = tw.parse_twilio(tw.user_speech_frame("MZ1", started=False, timestamp_ms=1_764_000_000_123))
    assert isinstance(sp, tw.UserSpeechStop) and sp.timestamp_ms == 1_764_000_000_123
    assert isinstance(tw.parse_twilio('{"event":"dtmf"}'), tw.TwilioUnknown)


@pytest.mark.parametrize(
    "bad",
    [
        "nope",
        "[]",
        '{"x":1}',
        '{"event":"media","media":{"payload":"!!notb64"}}',
        '{"event":"media","media":"abc"}',
        '{"event":"media","media":{"payload":123}}',
        '{"event":"start","start":[]}',
        '{"event":"mark","mark":"m"}',
        "[" * 100_000 + "]" * 100_000,
        b"\xff\xfe\x00",
    ],
)
def test_twilio_bad_frames_raise(bad: str | bytes) -> None:
    with pytest.raises(tw.TwilioFrameError):
        tw.parse_twilio(bad)


def test_twilio_fields_of_another_type_are_ignored_not_raised() -> None:
    ev = tw.parse_twilio(
        '{"event":"start","streamSid":["x"],"start":{"callSid":{},"mediaFormat":"pcm"},'
        '"conversation_id":5}'
    )
    assert isinstance(ev, tw.Start)
    assert (ev.stream_sid, ev.call_sid, ev.media_format) == (None, None, None)
    c = tw.parse_twilio('{"event":"connected","protocol":{"v":1},"streamSid":42}')
    assert isinstance(c, tw.Connected) and c.protocol is None and c.stream_sid == "42"
    m = tw.parse_twilio('{"event":"mark","mark":{"name":null}}')
    assert isinstance(m, tw.Mark) and m.name == ""
    s = tw.parse_twilio('{"event":"user_speech_stop","timestamp_ms":"1e400"}')
    assert isinstance(s, tw.UserSpeechStop) and s.timestamp_ms is None
    assert isinstance(tw.parse_twilio(b'{"event":"stop"}'), tw.Stop)  # binary JSON is fine


# ---------------------------------------------------------------- shapes the docs allow


def test_error_as_a_plain_string_and_its_cause() -> None:
    ev = parse_event({"type": "error", "error": "server_full"})
    assert isinstance(ev, ErrorEvent) and ev.code == "server_full" and ev.message == "server_full"
    ev = parse_event({"type": "error", "error": "Something broke."})
    assert isinstance(ev, ErrorEvent) and ev.code == "unknown" and ev.message == "Something broke."
    ev = parse_event(
        {
            "type": "error",
            "error": {
                "code": "invalid_request_error",
                "param": "session.configure.session.voice",
                "event_id": "evt_1",
            },
        }
    )
    assert isinstance(ev, ErrorEvent)
    assert ev.param == "session.configure.session.voice" and ev.caused_by == "evt_1"


def test_null_objects_take_their_defaults() -> None:
    ev = parse_event({"type": "response.done", "response": None})
    assert isinstance(ev, ResponseDone) and ev.response == {} and ev.status == "completed"
    assert ev.function_calls == [] and ev.usage == {}
    done = parse_event({"type": "response.done", "response": {"id": "r", "output": [], "usage": 5}})
    assert isinstance(done, ResponseDone) and done.usage == {}


def test_unknown_fields_are_kept() -> None:
    frame = {"type": "response.output_audio.delta", "response_id": "r", "delta": "", "x_new": [1]}
    ev = parse_event(frame)
    assert isinstance(ev, ResponseOutputAudioDelta) and ev.extra == {"x_new": [1]}
    assert ev.to_dict() == frame


def test_a_known_type_with_a_field_of_the_wrong_type_is_rejected_not_raised() -> None:
    for frame in (
        {"type": "response.output_audio.delta", "delta": 12345},
        {"type": "response.done", "response": "x"},
        {"type": "response.function_call_arguments.done", "call_id": "c", "arguments": [1]},
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": "soon"},
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": float("inf")},
        {"type": "response.output_audio.delta", "output_index": float("nan")},
    ):
        ev = parse_event(frame)
        assert isinstance(ev, UnknownEvent) and ev.malformed, frame
        assert ev.raw == frame


def test_tool_arguments_sent_as_an_object_are_taken_as_its_json_text() -> None:
    """OpenAI-shaped servers sometimes send ``arguments`` as the object itself: the call is
    the same (the bridge runs it with those parameters), not a malformed frame."""
    ev = parse_event(
        '{"type": "response.function_call_arguments.done", "call_id": "c", "name": "f",'
        ' "arguments": {"code": "ABC", "n": 1}}'
    )
    assert isinstance(ev, FunctionCallArgumentsDone)
    assert json.loads(ev.arguments) == {"code": "ABC", "n": 1}


def test_usage_that_is_not_finite_is_left_out() -> None:
    ev = parse_event(
        '{"type": "response.done", "response": {"usage": {"a": NaN, "b": 1e400, "c": 3}}}'
    )
    assert isinstance(ev, ResponseDone) and ev.usage == {"c": 3}
    lots = parse_event('{"type": "response.done", "response": {"usage": "lots"}}')
    assert isinstance(lots, ResponseDone) and lots.usage == {}


@pytest.mark.parametrize(
    "payload",
    ["AAA", "AA=A", "!!!!", "AAAA!", "QUJD\u00e9"],
    ids=["padding", "pad-mid", "bang", "tail", "non-ascii"],
)
def test_pcm16_validated_decoding_rejects_what_plain_decoding_skips(payload: str) -> None:
    with pytest.raises(ValueError, match="not base64"):
        decode_pcm16(payload, validate=True)
    pcm, carry = decode_pcm16("AAEC\nAwQF", validate=True)  # whitespace is not an error
    assert pcm.tolist() == [256, 770, 1284] and carry == b""


def test_warning_code_in_a_nested_object() -> None:
    for frame in (
        {"type": "warning", "code": "model_deprecated", "message": "m"},
        {"type": "warning", "warning": {"code": "model_deprecated", "message": "m"}},
        {"type": "warning", "error": {"code": "model_deprecated", "message": "m"}},
    ):
        ev = parse_event(frame)
        assert isinstance(ev, WarningEvent) and (ev.code, ev.message) == ("model_deprecated", "m")


def test_output_rate_as_number_or_numeric_string() -> None:
    def rate(v: object) -> tuple[int | None, int]:
        ev = parse_event({"type": "session.configured", "session": {"output_audio_sample_rate": v}})
        assert isinstance(ev, SessionConfigured)
        return ev.announced_rate_hz, ev.output_rate_hz

    assert rate(24000) == (24000, 24000)
    assert rate("24000") == (24000, 24000)
    assert rate(24000.0) == (24000, 24000)
    for bad in (None, "fast", 0, -1, True, 22050.5):
        assert rate(bad) == (None, 48000), bad


def test_client_event_ids_have_a_fixed_length() -> None:
    ids = {client_event_id("a1b2c3", n) for n in (1, 2, 255, 2**31)}
    assert len(ids) == 4 and {len(i) for i in ids} == {EVENT_ID_LEN}
