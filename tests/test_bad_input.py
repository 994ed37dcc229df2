"""Issue 12, part A: one frame of the wrong type must not end the call.

One named test per case, from either side of the bridge. Each feeds the bad input to
:class:`~hydralab.bridge_core.BridgeCore` (or a whole call in virtual time) and checks the
behaviour wanted: nothing is raised, nothing hangs, the call goes on (a good frame right after
still works), and a rejected input is counted (``summary()["rejected"]`` /
``rejected_caller_frames`` / ``rejected_model_frames``) with its reason logged.
"""

from __future__ import annotations

import base64
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from needs import needs_speech

from hydralab.audio import ulaw_encode
from hydralab.bridge_core import (
    BridgeCore,
    BridgeCoreConfig,
    End,
    Log,
    ModelInfo,
    RunTool,
    ToCaller,
    ToModel,
    ToModelAudio,
)
from hydralab.clock import ManualClock
from hydralab.emulator import EmulatorConfig
from hydralab.protocol import twilio as tw
from hydralab.protocol.hydra import (
    FunctionCallArgumentsDone,
    HydraEvent,
    ResponseCreated,
    ResponseDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    SpeechStopped,
    UnknownEvent,
    parse_event,
)
from hydralab.records import load_record
from hydralab.script import CallTools, Script, Speak, ToolCall, script_from_lines
from hydralab.sim import SimConfig, Simulation, simulate_record
from hydralab.tools import ToolExecutor

MS = 1_000_000
S = 1_000_000_000
SILENCE = ulaw_encode(np.zeros(160, np.int16))
TONE = ulaw_encode((3000 * np.sin(np.arange(160) * 0.3)).astype(np.int16))


def _core(**cfg: Any) -> BridgeCore:
    clock = ManualClock()
    config = BridgeCoreConfig(session={"instructions": "Be brief."}, **cfg)
    core = BridgeCore(config, clock=clock, start_ns=0)
    core.model_connected(ModelInfo(output_rate_hz=48000, configure_bytes=100), 0)
    return core


def _of(effects: list[Any], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def _logs(effects: list[Any], typ: str) -> list[dict[str, Any]]:
    return [e.data for e in _of(effects, Log) if e.data.get("type") == typ]


def _wire(frame: dict[str, Any]) -> HydraEvent:
    """A model frame as the client takes it off the socket."""
    return parse_event(json.dumps(frame))


def _still_up(core: BridgeCore, t_ns: int) -> None:
    """The call goes on: not ended, and the caller's next good frame reaches the model."""
    out = core.caller_frame(tw.media_frame("s", SILENCE), t_ns)
    assert not core.stopped and _of(out, End) == []
    assert len(_of(out, ToModelAudio)) == 1
    assert core.core_errors == 0


def _caller_rejected(frame: str | bytes, why: str) -> BridgeCore:
    core = _core()
    out = core.caller_frame(frame, 10 * MS)
    (log,) = _logs(out, "caller_frame_rejected")
    assert why in log["why"]
    assert core.rejected_caller_frames == 1
    assert core.summary()["rejected_caller_frames"] == 1
    assert sum(core.summary()["rejected"]["caller"].values()) == 1
    _still_up(core, 20 * MS)
    return core


def _pcm_b64(ms: int, rate: int = 48000) -> str:
    pcm = (3000 * np.sin(np.arange(rate * ms // 1000) / 7)).astype("<i2")
    return base64.b64encode(pcm.tobytes()).decode()


# ====================================================================== caller side


def test_caller_media_not_an_object() -> None:
    core = _caller_rejected('{"event": "media", "media": "abc"}', "media is str, not an object")
    assert core.summary()["rejected"]["caller"] == {"media is str, not an object": 1}
    _caller_rejected('{"event": "media", "media": [1, 2]}', "media is list, not an object")


def test_caller_start_not_an_object() -> None:
    core = _caller_rejected('{"event": "start", "start": "abc"}', "start is str, not an object")
    assert core.caller_dialect is None and core.stream_sid == "hydralab"


def test_caller_mark_not_an_object() -> None:
    _caller_rejected('{"event": "mark", "mark": 7}', "mark is int, not an object")


def test_caller_payload_a_number() -> None:
    _caller_rejected(
        '{"event": "media", "media": {"payload": 123}}', "media payload is int, not a base64"
    )


def test_caller_payload_not_base64() -> None:
    core = _caller_rejected(
        '{"event": "media", "media": {"payload": "!!not base64"}}', "not base64"
    )
    assert core.caller_media_frames == 1  # only the good frame after it


@pytest.mark.parametrize("inside", [False, True], ids=["top-level", "inside-an-event"])
def test_caller_deeply_nested_json(inside: bool) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    frame = f'{{"event": "media", "media": {deep}}}' if inside else deep
    _caller_rejected(frame, "nested too deeply")


def test_caller_nested_but_parseable_json_is_logged_flat() -> None:
    """Depth 500 parses; its log entry is the truncated form, which any writer can dump."""
    deep = "[" * 500 + "]" * 500
    core = _core()
    out = core.caller_frame(f'{{"event": "dtmf", "digits": {deep}}}', 10 * MS)
    (entry,) = [e.data for e in _of(out, Log) if e.source == "twilio"]
    assert entry["truncated"] and entry["event"] == "dtmf" and len(json.dumps(entry)) < 600
    _still_up(core, 20 * MS)


def test_caller_binary_frames() -> None:
    core = _caller_rejected(b"\x00\xff\xfe\x81", "binary frame is not UTF-8 JSON: 4 bytes")
    (log,) = _logs(core.caller_frame(b"\xff" * 10, 30 * MS), "caller_frame_rejected")
    assert log["head"].startswith("\\xff")  # shown as escapes, not mojibake
    # binary frames holding UTF-8 JSON text are Twilio frames like any other
    out = core.caller_frame(tw.media_frame("s", SILENCE).encode(), 40 * MS)
    assert len(_of(out, ToModelAudio)) == 1
    assert core.rejected_caller_frames == 2


def test_caller_huge_media_payload() -> None:
    """10 MiB of μ-law (22 min of audio) in one frame: rejected whole, in a blink, without
    pushing any of it to the model or onto the recording."""
    core = _core()
    frame = tw.media_frame("s", b"\x10" * (10 * 1024 * 1024))
    tracemalloc.start()
    t = time.perf_counter()
    out = core.caller_frame(frame, 10 * MS)
    took = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert _of(out, ToModelAudio) == []
    (log,) = _logs(out, "caller_frame_rejected")
    assert "media payload too long: 10485760 bytes" in log["why"]
    assert core.wire.track_length("user") == 0 and core.caller_media_frames == 0
    assert took < 1.0  # before: 17 s resampling it, 65 536 frames to the model
    assert peak < 64 * 1024 * 1024  # the decoded payload and little more
    assert core.summary()["rejected"]["caller"] == {"media payload too long": 1}
    _still_up(core, 20 * MS)


def test_caller_media_of_exactly_one_second_is_accepted() -> None:
    core = _core()
    out = core.caller_frame(tw.media_frame("s", SILENCE * 50), 1000 * MS)
    assert len(_of(out, ToModelAudio)) == 50 and core.rejected_caller_frames == 0


def test_caller_speech_faster_than_real_time() -> None:
    """A flood of speech at one instant: 1 s ahead of the clock is accepted, the rest is
    rejected and counted (silence beyond 60 ms was already dropped by the Uplink)."""
    core = _core()
    t = 2 * S  # after the model connected at 0: no backlog allowance beyond those 0 s
    sent = 0
    out: list[Any] = []
    for _ in range(500):  # 10 s of speech
        step = core.caller_frame(tw.media_frame("s", TONE), t)
        sent += len(_of(step, ToModelAudio))
        out += step
    assert sent == 51  # the frame that arrives now, then 1 s ahead of the clock
    assert core.uplink.ahead_speech_frames == 449
    rejected = core.summary()["rejected"]
    assert rejected["caller"] == {"speech ahead of the clock": 449}
    assert rejected["caller_speech_ahead_dropped_ms"] == pytest.approx(8980.0)
    # logged, but not 449 times: the first 20, then one in 100
    assert len(_logs(out, "caller_frame_rejected")) == 20 + 4
    # in real time again (after the 1 s lead has run out) speech flows
    out = core.caller_frame(tw.media_frame("s", TONE), t + 1040 * MS)
    assert len(_of(out, ToModelAudio)) == 1


def test_caller_backlog_held_while_the_model_connected_is_not_a_flood() -> None:
    """The shell reads the caller only once the model is up: 2.5 s of its audio then comes at
    once, and is accepted (the lead allowance grows by the connect time)."""
    clock = ManualClock()
    core = BridgeCore(BridgeCoreConfig(), clock=clock, start_ns=0)
    core.model_connected(ModelInfo(), 2500 * MS)
    sent = sum(
        len(_of(core.caller_frame(tw.media_frame("s", TONE), 2500 * MS), ToModelAudio))
        for _ in range(125)
    )
    assert sent == 125 and core.rejected_caller_frames == 0


@pytest.mark.parametrize("size", [10, 5_000, 1_000_000])
def test_caller_unknown_events_of_any_size(size: int) -> None:
    core = _core()
    frame = json.dumps({"event": "dtmf", "dtmf": {"digit": "1"}, "blob": "x" * size})
    out = core.caller_frame(frame, 10 * MS)
    (entry,) = [e.data for e in _of(out, Log) if e.source == "twilio"]
    if len(frame) <= 4096:
        assert entry == json.loads(frame)
    else:
        assert entry["truncated"] and entry["frame_len"] == len(frame)
        assert entry["event"] == "dtmf" and len(json.dumps(entry)) < 600
    assert core.summary()["rejected"]["caller_unknown_events"] == {"dtmf": 1}
    assert core.rejected_caller_frames == 0  # unknown is not wrong: counted apart
    _still_up(core, 20 * MS)


def test_caller_unknown_event_names_are_bounded() -> None:
    core = _core()
    for k in range(50):
        core.caller_frame(json.dumps({"event": f"ev{k}" + "y" * 100}), (10 + k) * MS)
    names = core.summary()["rejected"]["caller_unknown_events"]
    assert len(names) == 21 and names["<other>"] == 30
    assert all(len(n) <= 40 for n in names)


def test_caller_that_connects_and_sends_nothing() -> None:
    """No caller frame for ``caller_idle_timeout_s`` ends the call as ``caller_idle``; the
    timeout is a deadline (the shell's ticker wakes for it), not a poll."""
    core = _core(caller_idle_timeout_s=60)
    assert core.next_deadline_ns() == 60 * MS  # the silence fill comes first
    out: list[Any] = []
    while (at := core.next_deadline_ns()) is not None and at < 120 * S:
        out += core.advance(at)
    assert _of(out, End) == [End("caller_idle")] and core.ended_reason == "caller_idle"
    (idle,) = _logs(out, "caller_idle")
    assert idle["timeout_s"] == 60 and idle["quiet_s"] == pytest.approx(60.0)
    assert core.next_deadline_ns() is None


def test_caller_idle_counts_from_the_last_valid_frame() -> None:
    core = _core(caller_idle_timeout_s=5)
    core.caller_frame(tw.media_frame("s", SILENCE), 3 * S)
    core.caller_frame('{"event": "media", "media": 1}', 7 * S)  # rejected: not activity
    core.advance(7999 * MS)
    assert not core.stopped
    assert _of(core.advance(8 * S), End) == [End("caller_idle")]


def test_caller_idle_waits_while_the_assistant_is_speaking() -> None:
    """A caller may stay quiet while it listens (EVA's simulator sends nothing then): the idle
    time counts from what was last played to it too."""
    core = _core(caller_idle_timeout_s=5)
    core.model_event(ResponseCreated(response={"id": "r1"}), 4 * S)
    core.model_event(ResponseOutputAudioDelta(response_id="r1", delta=_pcm_b64(3000)), 4 * S)
    core.model_event(ResponseDone(response={"id": "r1", "status": "completed"}), 4 * S)
    out: list[Any] = []
    while (at := core.next_deadline_ns()) is not None and at < 60 * S:
        out += core.advance(at)
    assert _of(out, End) == [End("caller_idle")]
    assert core.ended_ns is None and core.tracker.turns[0].played_out
    (idle,) = _logs(out, "caller_idle")
    assert idle["quiet_s"] == pytest.approx(4 + 3 + 5 - 0.02, abs=0.03)  # played until ~7 s


def test_caller_idle_timeout_can_be_off() -> None:
    core = _core(caller_idle_timeout_s=None)
    core.advance(3600 * S)
    assert not core.stopped


def test_caller_idle_is_not_counted_before_the_model_is_up() -> None:
    """Caller frames wait in the shell until the model is configured: a slow connect is not
    the caller's idleness."""
    clock = ManualClock()
    core = BridgeCore(BridgeCoreConfig(caller_idle_timeout_s=5), clock=clock, start_ns=0)
    assert core.next_deadline_ns() is None
    core.advance(30 * S)
    core.model_connected(ModelInfo(), 30 * S)
    assert not core.stopped
    out = core.advance(35 * S)
    assert _of(out, End) == [End("caller_idle")]


# ====================================================================== model side


def _model_rejected(ev: HydraEvent, why: str) -> BridgeCore:
    core = _core()
    core.model_event(ResponseCreated(response={"id": "r1"}), 0)
    out = core.model_event(ev, 1 * MS)
    (log,) = _logs(out, "model_frame_rejected")
    assert why in log["why"]
    assert core.rejected_model_frames == 1
    assert sum(core.summary()["rejected"]["model"].values()) == 1
    # the answer still plays
    out = core.model_event(ResponseOutputAudioDelta(response_id="r1", delta=_pcm_b64(40)), 2 * MS)
    assert [e.kind for e in _of(out, ToCaller)] == ["media"]
    _still_up(core, 3 * MS)
    return core


@pytest.mark.parametrize("payload", ["AAA", "AAAAA"], ids=["3-chars", "5-chars"])
def test_model_audio_delta_bad_padding(payload: str) -> None:
    ev = _wire({"type": "response.output_audio.delta", "response_id": "r1", "delta": payload})
    core = _model_rejected(ev, "response.output_audio.delta: audio is not base64")
    assert core.tracker.turns[0].first_delta_t_ns == 2 * MS  # the bad one set no latency


def test_model_audio_delta_not_base64() -> None:
    """Characters outside the alphabet were silently skipped before (a delta of garbage became
    a shorter delta of noise)."""
    ev = _wire({"type": "response.output_audio.delta", "response_id": "r1", "delta": "!!!!AAAA"})
    _model_rejected(ev, "audio is not base64")


def test_model_audio_delta_a_number() -> None:
    ev = _wire({"type": "response.output_audio.delta", "response_id": "r1", "delta": 12345})
    assert isinstance(ev, UnknownEvent)
    _model_rejected(ev, "delta is int, not a string")


def test_model_response_a_string() -> None:
    core = _model_rejected(_wire({"type": "response.done", "response": "x"}), "response is str")
    assert not core.tracker.turns[0].complete


def test_model_error_a_string() -> None:
    """The docs allow ``error`` as a plain string: it is a server error like any other."""
    core = _core()
    out = core.model_event(_wire({"type": "error", "error": "boom"}), 1 * MS)
    assert core.rejected_model_frames == 0 and _of(out, End) == []
    (err,) = core.summary()["errors"]
    assert (err["code"], err["message"]) == ("boom", "boom")
    _still_up(core, 2 * MS)


def test_model_error_of_any_size_is_recorded_capped() -> None:
    core = _core()
    core.model_event(_wire({"type": "error", "error": {"message": "m" * 1_000_000}}), 1 * MS)
    (err,) = core.summary()["errors"]
    assert len(err["message"]) < 2100 and err["message"].endswith("[1000000 chars]")


@pytest.mark.parametrize("usage", ["lots", {"input_tokens": "many"}, {"t": float("inf")}])
def test_model_usage_of_the_wrong_type(usage: Any) -> None:
    core = _core()
    core.model_event(ResponseCreated(response={"id": "r1"}), 0)
    ev = _wire({"type": "response.done", "response": {"id": "r1", "usage": usage}})
    out = core.model_event(ev, 1 * MS)
    assert core.tracker.turns[0].status == "completed" and core.tracker.turns[0].usage == {}
    assert core.rejected_model_frames == 0 and _of(out, End) == []
    _still_up(core, 2 * MS)


def test_model_transcript_delta_not_a_string() -> None:
    ev = _wire({"type": "response.output_audio_transcript.delta", "response_id": "r1", "delta": 5})
    core = _model_rejected(ev, "delta is int, not a string")
    assert core.tracker.turns[0].text_deltas == []


def _playing(core: BridgeCore) -> None:
    """r1: an answer whose audio is streaming (no response.done yet)."""
    core.model_event(SpeechStopped(), 0)
    core.model_event(ResponseCreated(response={"id": "r1"}), 10 * MS)
    core.model_event(
        ResponseOutputAudioTranscriptDelta(response_id="r1", delta="Your flight is on time."),
        10 * MS,
    )
    core.model_event(ResponseOutputAudioDelta(response_id="r1", delta=_pcm_b64(490)), 10 * MS)


@pytest.mark.parametrize("status", ["completed", "cancelled"])
def test_model_response_done_for_an_unknown_id_while_an_answer_streams(status: str) -> None:
    """Before, the stray ``response.done`` was taken as the open turn's: it closed it (and a
    ``cancelled``/``interrupted`` one marked it interrupted), padded its audio mid-stream and
    queued its end mark; the real ``response.done`` then found a closed turn."""
    core = _core()
    _playing(core)
    stray = {"id": "zz", "status": status, "status_details": {"reason": "interrupted"}}
    out = core.model_event(_wire({"type": "response.done", "response": stray}), 20 * MS)
    turn = core.tracker.turns[0]
    assert not turn.complete and not turn.interrupted and turn.response_ids == ["r1"]
    assert [e.kind for e in _of(out, ToCaller)] == []  # no end mark, no padded frame
    (log,) = _logs(out, "response_done_stray")
    assert log["response_id"] == "zz"
    assert core.summary()["rejected"]["stray_responses_done"] == 1
    core.model_event(ResponseOutputAudioDelta(response_id="r1", delta=_pcm_b64(510)), 30 * MS)
    core.model_event(ResponseOutputAudioDone(response_id="r1"), 30 * MS)
    core.model_event(ResponseDone(response={"id": "r1", "status": "completed"}), 30 * MS)
    out = []
    while (at := core.next_deadline_ns()) is not None and at < 3 * S:
        out += core.advance(at)
    assert turn.status == "completed" and not turn.interrupted and turn.played_out
    assert [e.kind for e in _of(out, ToCaller)].count("mark") == 1
    assert core.placer.stats.frames == 50  # 490 + 510 ms: no padded frame in the middle
    assert core.tracker.audit[-1]["value"] == "Your flight is on time."
    assert len(core.tracker.turns) == 1


def test_model_response_done_for_an_unknown_id_after_the_answer_was_received() -> None:
    """The answer is complete but still playing from the queue: a stray ``response.done`` does
    not open a turn of its own (which took the next turn's latency anchor before)."""
    core = _core()
    _playing(core)
    core.model_event(ResponseDone(response={"id": "r1", "status": "completed"}), 20 * MS)
    core.caller_frame(tw.user_speech_frame("s", started=True, timestamp_ms=0), 25 * MS)
    core.model_event(SpeechStopped(), 30 * MS)  # the anchor of the next turn
    core.model_event(_wire({"type": "response.done", "response": {"id": "zz"}}), 40 * MS)
    assert len(core.tracker.turns) == 1 and core.stray_responses_done == 1
    core.model_event(ResponseCreated(response={"id": "r2"}), 50 * MS)
    core.model_event(ResponseOutputAudioDelta(response_id="r2", delta=_pcm_b64(40)), 530 * MS)
    assert core.tracker.turns[1].model_response_ms == pytest.approx(500.0)


def test_model_duplicate_call_id() -> None:
    core = _core()
    core.model_event(ResponseCreated(response={"id": "r1"}), 0)
    done = FunctionCallArgumentsDone(
        response_id="r1", call_id="c1", name="get_reservation", arguments="{}"
    )
    runs = _of(core.model_event(done, 1 * MS), RunTool)
    out = core.model_event(done, 2 * MS)
    out += core.model_event(
        FunctionCallArgumentsDone(response_id="r2", call_id="c1", name="other", arguments="{}"),
        3 * MS,
    )
    assert len(runs) == 1 and _of(out, RunTool) == []
    assert len(_logs(out, "duplicate_call_id")) == 2
    assert core.summary()["rejected"]["duplicate_call_ids"] == 2
    out = core.tool_result("c1", "get_reservation", {}, {"status": "success"}, 4 * MS)
    assert len([e for e in _of(out, ToModel) if e.call_id == "c1"]) == 1


def test_model_tool_arguments_as_an_object() -> None:
    """Used as the parameters (before: the frame was rejected and the call silently dropped,
    so the model waited for an output until ``tool_response_timeout``)."""
    core = _core()
    core.model_event(ResponseCreated(response={"id": "r1"}), 0)
    ev = _wire(
        {
            "type": "response.function_call_arguments.done",
            "response_id": "r1",
            "call_id": "c1",
            "name": "get_reservation",
            "arguments": {"confirmation_number": "ABC123"},
        }
    )
    (run,) = _of(core.model_event(ev, 1 * MS), RunTool)
    assert run.params == {"confirmation_number": "ABC123"}
    assert core.tracker.audit[-1]["value"] == {
        "tool": "get_reservation",
        "parameters": {"confirmation_number": "ABC123"},
    }
    assert core.rejected_model_frames == 0


@pytest.mark.parametrize(("field", "value"), [("arguments", [1, 2]), ("arguments", 7), ("name", 5)])
def test_model_tool_call_that_cannot_be_read_still_gets_an_output(field: str, value: Any) -> None:
    core = _core()
    core.model_event(ResponseCreated(response={"id": "r1"}), 0)
    frame = {
        "type": "response.function_call_arguments.done",
        "response_id": "r1",
        "call_id": "c1",
        "name": "get_reservation",
        "arguments": "{}",
        field: value,
    }
    out = core.model_event(_wire(frame), 1 * MS)
    assert _of(out, RunTool) == []
    (output,) = [e for e in _of(out, ToModel) if e.call_id == "c1"]
    result = json.loads(output.event.item["output"])
    assert result["status"] == "error" and result["error_type"] == "invalid_parameter"
    assert f"{field} is" in result["message"]
    kinds = [e["message_type"] for e in core.tracker.audit]
    assert kinds == ["tool_call", "tool_response"]  # in the audit log, never dropped
    assert core.rejected_model_frames == 1
    # the narration is still requested once the response is done
    out = core.model_event(ResponseDone(response={"id": "r1", "status": "completed"}), 2 * MS)
    assert len(core.tool_requests) == 1


def test_model_tool_call_without_a_usable_call_id_is_logged() -> None:
    core = _core()
    frame = {"type": "response.function_call_arguments.done", "call_id": {"x": 1}}
    out = core.model_event(_wire(frame), 1 * MS)
    assert _logs(out, "tool_call_unanswerable") and core.rejected_model_frames == 1
    _still_up(core, 2 * MS)


@pytest.mark.parametrize("rate", [44_100, 22_050, 32_000, 11_025])
def test_model_output_rate_outside_the_48k_family(rate: int) -> None:
    """Refused before (``StreamResampler`` took ratio terms up to 64 only: the connect raised).
    Each 20 ms leaves as one 160-byte μ-law frame, on the 20 ms grid."""
    clock = ManualClock()
    core = BridgeCore(BridgeCoreConfig(), clock=clock, start_ns=0)
    out = core.model_connected(ModelInfo(output_rate_hz=rate), 0)
    assert core.output_rate_hz == rate and _of(out, End) == []
    sent = core.model_event(ResponseCreated(response={"id": "r1"}), 0)
    for k in range(10):  # 1 s in ten 100 ms deltas
        sent += core.model_event(
            ResponseOutputAudioDelta(response_id="r1", delta=_pcm_b64(100, rate)), k * MS
        )
    sent += core.model_event(ResponseDone(response={"id": "r1", "status": "completed"}), 10 * MS)
    while (at := core.next_deadline_ns()) is not None and at < 3 * S:
        sent += core.advance(at)
    media = [e for e in _of(sent, ToCaller) if e.kind == "media"]
    assert len(media) == 50
    payloads = {len(base64.b64decode(json.loads(e.frame)["media"]["payload"])) for e in media}
    assert payloads == {160}
    sent_samples = 10 * (rate * 100 // 1000)  # 1 s (11025 Hz: 2 samples short)
    assert core.tracker.turns[0].samples_received == sent_samples * 48_000 // rate
    assert core.core_errors == 0


def test_model_output_rate_that_cannot_be_played() -> None:
    """A rate no resampler here takes ends the call as ``bridge_error`` with the reason, not
    with an exception out of the core."""
    clock = ManualClock()
    core = BridgeCore(BridgeCoreConfig(), clock=clock, start_ns=0)
    out = core.model_connected(ModelInfo(output_rate_hz=44_101), 0)
    assert _of(out, End) == [End("bridge_error")]
    assert core.error is not None and "44101" in core.error
    assert core.summary()["core_errors"] == 1


# ====================================================================== the safety net


def test_an_exception_while_handling_one_input_is_survived(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = _core()

    def boom(*_: Any, **__: Any) -> None:
        raise KeyError("no such turn")

    monkeypatch.setattr(core.tracker, "speech_stopped", boom)
    out = core.model_event(SpeechStopped(), 1 * MS)
    (log,) = _logs(out, "core_error")
    assert log["input"] == "model_event input_audio_buffer.speech_stopped"
    assert log["error"] == "KeyError: 'no such turn'" and "test_bad_input.py" in log["where"]
    summary = core.summary()
    assert summary["core_errors"] == 1
    assert summary["core_error_reasons"][0]["error"] == "KeyError: 'no such turn'"
    assert not core.stopped and core.ended_reason is None
    out = core.caller_frame(tw.media_frame("s", SILENCE), 2 * MS)
    assert len(_of(out, ToModelAudio)) == 1


def test_errors_that_keep_coming_end_the_call_as_a_bridge_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = _core(max_core_errors=3)

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("the pacer is broken")

    monkeypatch.setattr(core, "_pace", broken)
    ends = [_of(core.advance(k * MS), End) for k in range(1, 4)]
    assert ends == [[], [], [End("bridge_error")]]
    assert core.ended_reason == "bridge_error"
    assert core.error == "bridge error in advance: RuntimeError: the pacer is broken"
    assert len(core.summary()["core_error_reasons"]) == 3
    # finishing still works: the run directory gets written
    logs = core.finish(10 * MS)
    assert all(isinstance(e, Log) for e in logs)


def test_an_exception_while_finishing_still_returns_the_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = _core()

    def boom(*_: Any, **__: Any) -> None:
        raise ValueError("bad turn")

    monkeypatch.setattr(core.tracker, "finish", boom)
    core.stop("goodbye", 1 * MS)
    logs = core.finish(2 * MS)
    assert [e.data["type"] for e in logs] == ["core_error"]
    assert core.ended_reason == "goodbye" and core.core_errors == 1


# ====================================================================== a whole call


EPOCH_MS = 1_767_225_600_000


def _short_script() -> Script:
    """Three turns, one with a tool call: a few seconds of call."""
    return script_from_lines(
        "Hello! Thanks for calling SkyWay. How can I help you today?",
        ["My confirmation number is HT4KWB, last name Brooks.", "Thanks, bye."],
        [
            (
                Speak("One moment."),
                CallTools(
                    (
                        ToolCall(
                            "get_reservation",
                            {"confirmation_number": "HT4KWB", "last_name": "brooks"},
                        ),
                    )
                ),
                Speak("Found it."),
            ),
            (Speak("Goodbye."),),
        ],
        record_id="HL-AIR-001",
    )


@needs_speech
def test_a_call_with_bad_frames_from_both_sides_completes() -> None:
    """In virtual time: the scripted call with bad frames injected both ways still ends as
    ``goodbye`` with every turn, and the counters reach the session summary."""
    tools = ToolExecutor.for_record(load_record())
    sim = Simulation(_short_script(), tools=tools, sim=SimConfig(epoch_ms=EPOCH_MS))
    while not sim.core.model_up:
        assert sim.step()
    now = sim.clock.now_ns()
    caller_bad = [
        '{"event": "media", "media": "x"}',
        '{"event": "media", "media": {"payload": 123}}',
        "[" * 100_000,
        tw.media_frame(sim.core.stream_sid, b"\xff" * 100_000),
        json.dumps({"event": "dtmf", "blob": "z" * 100_000}),
    ]
    for k, frame in enumerate(caller_bad):
        sim._at(now + (k + 1) * 7 * MS, sim._bridge_reads, frame)
    model_bad = [
        '{"type": "response.output_audio.delta", "response_id": "r", "delta": "AAA"}',
        '{"type": "response.done", "response": "x"}',
        '{"type": "error", "error": "boom"}',
        '{"type": "response.done", "response": {"id": "stray", "usage": "lots"}}',
    ]
    for k, frame in enumerate(model_bad):
        sim._at(now + (k + 1) * 11 * MS, sim._model_frame, sim.client, frame)
    sim.run()
    assert sim.core.ended_reason == "goodbye" and sim.core.core_errors == 0
    assert sim.caller_result is not None and sim.caller_result.ended_reason == "goodbye"
    summary = sim.summary()
    assert summary["rejected_caller_frames"] == 4
    assert summary["rejected"]["caller_unknown_events"] == {"dtmf": 1}
    assert summary["rejected"]["model"] == {
        "response.output_audio.delta: audio is not base64": 1,
        "response.done: response is str, not an object": 1,
    }
    assert [t["status"] for t in summary["turns"]] == ["completed"] * 3
    assert sim.tools.call_counts == {"get_reservation": 1}


@needs_speech
def test_a_whole_call_at_44k1(tmp_path: Path) -> None:
    res = simulate_record(
        None,
        out_dir=tmp_path,
        run_id="r",
        sim=SimConfig(epoch_ms=EPOCH_MS),
        emulator_config=EmulatorConfig.live(output_rate_hz=44_100, rate_by_model=False),
        transcriber=None,
    )
    meta = json.loads((res.run_dir / "run.json").read_text())
    assert meta["ended_reason"] == "goodbye"
    assert meta["hydra"]["output_rate_hz"] == 44_100
    assert res.simulation is not None and res.simulation.core.core_errors == 0
    assert meta["bridge"]["pacer"]["late_frames"] == 0
    assert all(t["played_ms"] > 0 for t in meta["turns"])
