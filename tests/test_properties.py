"""Property tests (hypothesis) of the bridge's parsers, codec, timeline and configure budget.

- :func:`~hydralab.protocol.twilio.parse_twilio` and :func:`~hydralab.protocol.hydra.parse_event`
  raise nothing but their documented error for any JSON-ish input (any text, any bytes);
- :class:`~hydralab.bridge_core.BridgeCore` takes any sequence of caller frames and model
  events without raising — and without needing its safety net (``core_errors`` stays 0);
- μ-law: ``decode(encode(decode(b))) == decode(b)`` for any bytes;
- :class:`~hydralab.audio.Timeline`: both tracks stay on the one clock for any chunking and
  arrival times;
- the configure budget never returns a session over its ceiling.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hydralab.audio import Timeline, ulaw_decode, ulaw_encode
from hydralab.bridge_core import (
    BridgeCore,
    BridgeCoreConfig,
    End,
    ModelInfo,
    Reconnect,
    RunTool,
    Transcribe,
)
from hydralab.clock import ManualClock
from hydralab.protocol import twilio as tw
from hydralab.protocol.budget import (
    ConfigureTooLargeError,
    configure_bytes,
    fit_configure,
    greeting_steer,
    plan_configure,
)
from hydralab.protocol.hydra import (
    SERVER_EVENTS,
    HydraEvent,
    ProtocolError,
    SessionConfigure,
    UnknownEvent,
    parse_event,
)
from hydralab.speech.stt import Transcript

MS = 1_000_000
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- JSON-ish values

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _b64(max_size: int = 400) -> st.SearchStrategy[str]:
    return st.binary(max_size=max_size).map(lambda b: base64.b64encode(b).decode())


def _frame_text(d: Any) -> str:
    return json.dumps(d)  # NaN / Infinity as Python writes them (and json.loads reads them)


# ---------------------------------------------------------------- Twilio frames

TWILIO_EVENTS = [
    "connected",
    "start",
    "media",
    "mark",
    "clear",
    "stop",
    "user_speech_start",
    "user_speech_stop",
    "dtmf",
]


def _maybe_obj(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A nested object with these fields (or any value in its place)."""
    return st.fixed_dictionaries({}, optional=fields) | json_values


twilio_dicts = st.fixed_dictionaries(
    {"event": st.sampled_from(TWILIO_EVENTS) | json_values},
    optional={
        "streamSid": st.sampled_from(["MZ1", "c"]) | json_values,
        "conversation_id": json_values,
        "protocol": st.just("voice-bench-v1") | json_values,
        "timestamp_ms": st.integers(0, 2 * 10**12).map(str) | json_values,
        "media": _maybe_obj({"payload": _b64() | json_values, "track": json_values}),
        "start": _maybe_obj(
            {"streamSid": json_values, "callSid": json_values, "mediaFormat": json_values}
        ),
        "mark": _maybe_obj({"name": json_values}),
        "type": json_values,
    },
)
twilio_frames: st.SearchStrategy[str | bytes] = (
    twilio_dicts.map(_frame_text)
    | json_values.map(_frame_text)
    | st.text(max_size=60)
    | st.binary(max_size=60)
    | twilio_dicts.map(lambda d: _frame_text(d).encode())
)


@PROPS
@given(frame=twilio_frames)
def test_parse_twilio_raises_only_its_error(frame: str | bytes) -> None:
    try:
        ev = tw.parse_twilio(frame)
    except tw.TwilioFrameError:
        return
    assert isinstance(ev, tw.TwilioEvent)
    assert ev.stream_sid is None or isinstance(ev.stream_sid, str)
    if isinstance(ev, tw.Media):
        assert isinstance(ev.payload, bytes)
    if isinstance(ev, tw.Mark):
        assert isinstance(ev.name, str)


@pytest.mark.parametrize("depth", [10, 900, 100_000])
def test_parse_twilio_deep_nesting(depth: int) -> None:
    frame = '{"event": "dtmf", "x": ' + "[" * depth + "]" * depth + "}"
    try:
        assert isinstance(tw.parse_twilio(frame), tw.TwilioUnknown)
    except tw.TwilioFrameError as exc:
        assert "nested too deeply" in str(exc)


# ---------------------------------------------------------------- Hydra frames


@pytest.mark.parametrize("depth", [10, 900, 100_000])
def test_parse_event_deep_nesting(depth: int) -> None:
    frame = '{"type": "response.done", "response": ' + "[" * depth + "]" * depth + "}"
    try:
        ev = parse_event(frame)
    except ProtocolError as exc:
        assert "not JSON" in str(exc)
    else:
        assert isinstance(ev, UnknownEvent) and ev.malformed  # response is a list


HYDRA_TYPES = [c.type for c in SERVER_EVENTS]
ids = st.sampled_from(["r1", "r2", "c1", "c2", 7]) | json_values
hydra_dicts = st.fixed_dictionaries(
    {"type": st.sampled_from(HYDRA_TYPES) | json_values},
    optional={
        "event_id": json_values,
        "response_id": ids,
        "call_id": ids,
        "item_id": ids,
        "name": st.just("get_reservation") | json_values,
        "delta": _b64() | json_values,
        "audio": _b64() | json_values,
        "arguments": st.just('{"confirmation_number": "ABC123"}') | json_values,
        "output_index": json_values,
        "content_index": json_values,
        "audio_start_ms": json_values,
        "audio_end_ms": json_values,
        "response": _maybe_obj(
            {
                "id": ids,
                "status": st.sampled_from(["completed", "cancelled", "failed"]) | json_values,
                "status_details": _maybe_obj({"reason": json_values}),
                "usage": _maybe_obj({"input_tokens": json_values, "output_tokens": json_values}),
                "output": json_values,
            }
        ),
        "error": _maybe_obj({"code": json_values, "message": json_values, "type": json_values}),
        "session": _maybe_obj({"output_audio_sample_rate": json_values, "voice": json_values}),
        "item": json_values,
        "code": json_values,
        "message": json_values,
        "warning": json_values,
    },
)


def _touch(ev: HydraEvent) -> None:
    """Every convenience property the bridge reads must be safe on whatever was parsed."""
    for name in (
        "response_id",
        "status",
        "reason",
        "usage",
        "function_calls",
        "code",
        "message",
        "param",
        "caused_by",
        "payload",
        "announced_rate_hz",
        "output_rate_hz",
        "voice",
        "wire_type",
    ):
        getattr(ev, name, None)
    ev.to_dict()


@PROPS
@given(frame=hydra_dicts.map(_frame_text) | json_values.map(_frame_text) | st.text(max_size=60))
def test_parse_event_raises_only_protocol_error(frame: str) -> None:
    try:
        ev = parse_event(frame)
    except ProtocolError:
        return
    assert isinstance(ev, HydraEvent)
    assert not isinstance(ev, UnknownEvent) or isinstance(ev.raw, dict)
    _touch(ev)


@PROPS
@given(frame=hydra_dicts)
def test_parse_event_of_a_dict_raises_only_protocol_error(frame: dict[str, Any]) -> None:
    try:
        ev = parse_event(frame)
    except ProtocolError:
        return
    _touch(ev)


# ---------------------------------------------------------------- the core


def _drive(core: BridgeCore, out: list[Any], t: int) -> None:
    """Answer the effects as a shell would (tools, transcriptions, reconnects), at once."""
    pending = list(out)
    while pending:
        e = pending.pop(0)
        match e:
            case RunTool(call_id=cid, name=name, params=params):
                pending += core.tool_result(cid, name, params, {"status": "success"}, t)
            case Transcribe(role=role, index=i):
                pending += core.transcript(role, i, Transcript("hello", ok=True), t)
            case Reconnect():
                pending += core.model_connected(ModelInfo(), t)
            case _:
                pass


steps = st.lists(
    st.one_of(
        st.tuples(st.just("caller"), twilio_frames),
        st.tuples(st.just("caller"), st.just(tw.media_frame("s", b"\x10" * 160))),
        st.tuples(st.just("model"), hydra_dicts),
        st.tuples(st.just("advance"), st.integers(0, 400)),
        st.tuples(st.just("closed"), st.sampled_from([1000, 1011, None])),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, rate=st.sampled_from([48_000, 24_000, 44_100]))
def test_bridge_core_takes_any_frames_without_raising(
    steps: list[tuple[str, Any]], rate: int
) -> None:
    clock = ManualClock()
    core = BridgeCore(
        BridgeCoreConfig(session={"instructions": "Be brief."}), clock=clock, start_ns=0
    )
    _drive(core, core.model_connected(ModelInfo(output_rate_hz=rate), 0), 0)
    t = 0
    for kind, arg in steps:
        t += 3 * MS
        if kind == "caller":
            out = core.caller_frame(arg, t)
        elif kind == "model":
            try:
                ev = parse_event(_frame_text(arg))
            except ProtocolError:
                continue
            out = core.model_event(ev, t)
        elif kind == "advance":
            t += arg * MS
            out = core.advance(t)
        else:
            out = core.model_closed(arg, t)
        _drive(core, out, t)
        deadline = core.next_deadline_ns()
        assert deadline is None or isinstance(deadline, int)
        if any(isinstance(e, End) for e in out):
            break
    core.stop("done", t)
    core.finish(t + MS)
    summary = core.summary()
    json.dumps(summary)  # run.json can take it
    assert core.core_errors == 0, core.core_error_reasons
    assert core.ended_reason != "bridge_error"


# ---------------------------------------------------------------- μ-law


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000))
def test_mulaw_decode_encode_decode_is_decode(data: bytes) -> None:
    pcm = ulaw_decode(data)
    assert pcm.dtype == np.int16 and pcm.shape == (len(data),)
    again = ulaw_decode(ulaw_encode(pcm))
    np.testing.assert_array_equal(again, pcm)


def test_mulaw_every_code_round_trips() -> None:
    codes = bytes(range(256))
    pcm = ulaw_decode(codes)
    np.testing.assert_array_equal(ulaw_decode(ulaw_encode(pcm)), pcm)
    # the two zeros (0x7F and 0xFF) are the only codes that share a value
    assert len(set(pcm.tolist())) == 255


# ---------------------------------------------------------------- Timeline

RATE = 48_000
T0 = 3_000_000_000


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(
        st.tuples(
            st.integers(1, 2_400),  # samples (up to 50 ms)
            st.integers(0, 80),  # network delay, ms
            st.sampled_from([0, 0, 0, 0, 150, 700]),  # sender pause before it, ms
        ),
        min_size=1,
        max_size=40,
    ),
    writes=st.lists(
        st.tuples(st.integers(0, 5_000), st.integers(1, 2_000)), max_size=20
    ),  # assistant: (ms, samples)
    start_ms=st.integers(60, 400),
)
def test_timeline_keeps_both_tracks_on_the_clock(
    chunks: list[tuple[int, int, int]], writes: list[tuple[int, int]], start_ms: int
) -> None:
    """The caller's chunks, however chunked and delayed, are all kept, in order, none placed
    before it could have been sent nor after it arrived; assistant writes land exactly at their
    clock position; both tracks pad to one length."""
    tl = Timeline(t0_ns=T0)
    sent_at = start_ms * MS  # the sender's clock, relative to T0
    last_arrival = 0
    bounds = []
    for k, (n, delay_ms, pause_ms) in enumerate(chunks):
        sent_at += pause_ms * MS
        true_start = tl.index_of(T0 + sent_at)
        sent_at += round(n * 1e9 / RATE)
        arrival = max(last_arrival, sent_at + delay_ms * MS)  # a link is FIFO
        last_arrival = arrival
        tl.append_user(np.full(n, k + 1, dtype=np.int16), t_ns=T0 + arrival)
        bounds.append((true_start, tl.index_of(T0 + arrival), n))
    user = tl.track("user")
    nonzero = user[user != 0]
    expected = np.concatenate([np.full(n, k + 1, np.int16) for k, (n, _, _) in enumerate(chunks)])
    np.testing.assert_array_equal(nonzero, expected)  # nothing lost, doubled or reordered
    for k, (true_start, arrived, n) in enumerate(bounds):
        where = np.flatnonzero(user == k + 1)
        start = int(where[0])
        assert int(where[-1]) - start + 1 == n  # contiguous
        assert start >= true_start - 1  # never before it was sent
        assert start + n <= arrived + 1  # never after it arrived
    for ms, n in writes:
        tl.write("assistant", np.full(n, 7, np.int16), t_ns=T0 + ms * MS)
    a = tl.track("assistant")
    for ms, n in writes[-1:]:  # the last write wins wherever it lands
        at = tl.index_of(T0 + ms * MS)
        assert (a[at : at + n] == 7).all() and a.shape[0] >= at + n
    assert tl.padded("user").shape == tl.padded("assistant").shape == (tl.n_samples,)
    assert tl.mixed().shape == (tl.n_samples,)


# ---------------------------------------------------------------- configure budget

words = st.sampled_from(
    ["Be", "brief", "e.g.", "the", "caller’s", "reservation", "—", "café", "漢字", "😀", "Dr."]
)
sentences = st.lists(words, min_size=1, max_size=12).map(lambda w: " ".join(w) + ".")
paragraphs = st.lists(sentences, min_size=1, max_size=6).map(" ".join)
instructions = st.lists(
    st.one_of(paragraphs, paragraphs.map(lambda p: "## Policy\n" + p), st.text(max_size=80)),
    max_size=12,
).map("\n\n".join)
descriptions = st.one_of(paragraphs, st.text(max_size=200))
tools = st.lists(
    st.builds(
        lambda name, desc, params: {
            "type": "function",
            "name": name,
            "description": f"{name}: {desc}",
            "parameters": {
                "type": "object",
                "properties": {
                    p: {"type": "string", "description": d, "enum": ["a", "b"]}
                    for p, d in params.items()
                },
                "required": list(params)[:1],
            },
        },
        st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
        descriptions,
        st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), descriptions, max_size=4),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=instructions,
    tools=tools,
    greeting=st.text(max_size=60),
    ceiling=st.integers(50, 12_000),
    compaction=st.booleans(),
)
def test_fit_configure_never_claims_a_fit_over_the_ceiling(
    text: str, tools: list[dict[str, Any]], greeting: str, ceiling: int, compaction: bool
) -> None:
    steer = greeting_steer(greeting)
    r = fit_configure(
        text, tools, greeting_steer=steer, ceiling_bytes=ceiling, allow_compaction=compaction
    )
    size = len(SessionConfigure(session=r.session, event_id="e" * 18).dumps().encode("utf-8"))
    assert r.bytes == size == configure_bytes(r.session)
    assert r.fits == (size <= ceiling)
    assert r.fits or r.reason
    assert str(r.session["instructions"]).endswith(steer)  # the steer always survives
    assert [t["name"] for t in r.session.get("tools", [])] == [t["name"] for t in tools]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=instructions,
    tools=tools,
    ceiling=st.integers(50, 12_000),
    mode=st.sampled_from(["standard", "compacted"]),
)
def test_plan_configure_never_exceeds_its_ceiling(
    text: str, tools: list[dict[str, Any]], ceiling: int, mode: Any
) -> None:
    steer = greeting_steer("Hello! How can I help?")
    try:
        r = plan_configure(
            text,
            tools,
            greeting_steer=steer,
            ceiling_bytes=ceiling,
            mode=mode,
            other_fields={"generate_initial_response": True},
        )
    except ConfigureTooLargeError as exc:
        assert not exc.result.fits and exc.result.bytes > ceiling
        return
    assert r.fits and configure_bytes(r.session) <= ceiling and r.mode == mode
    assume(mode == "standard")
    assert r.standard and r.session["instructions"].startswith(text.rstrip()[:20])
