"""BridgeCore, the bridge's sans-I/O core: inputs with times in, effects out (no sockets)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from hydralab.audio import ulaw_encode
from hydralab.bridge_core import (
    BridgeCore,
    BridgeCoreConfig,
    End,
    Log,
    ModelInfo,
    Reconnect,
    RunTool,
    ToCaller,
    ToModel,
    ToModelAudio,
    Transcribe,
)
from hydralab.clock import ManualClock
from hydralab.protocol import twilio as tw
from hydralab.protocol.hydra import (
    ErrorEvent,
    FunctionCallArgumentsDone,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    SpeechStarted,
    SpeechStopped,
    UnknownEvent,
)
from hydralab.speech.stt import Transcript

MS = 1_000_000


def _core(**cfg: Any) -> tuple[BridgeCore, ManualClock]:
    clock = ManualClock()
    config = BridgeCoreConfig(session={"instructions": "Be brief."}, **cfg)
    core = BridgeCore(config, clock=clock, start_ns=clock.now_ns())
    core.model_connected(ModelInfo(output_rate_hz=48000, configure_bytes=100), clock.now_ns())
    return core, clock


def _of(effects: list[Any], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def _logs(effects: list[Any], typ: str) -> list[dict[str, Any]]:
    return [e.data for e in _of(effects, Log) if e.data.get("type") == typ]


def _speak(core: BridgeCore, rid: str, ms: int, t: int, *, text: str = "") -> list[Any]:
    """One response of ``ms`` of a 48 kHz tone: created, (transcript), one delta, done."""
    out = core.model_event(ResponseCreated(response={"id": rid}), t)
    if text:
        out += core.model_event(ResponseOutputAudioTranscriptDelta(response_id=rid, delta=text), t)
    pcm = (3000 * np.sin(np.arange(48 * ms) / 7)).astype("<i2")
    delta = base64.b64encode(pcm.tobytes()).decode()
    out += core.model_event(ResponseOutputAudioDelta(response_id=rid, delta=delta), t)
    out += core.model_event(ResponseOutputAudioDone(response_id=rid), t)
    out += core.model_event(ResponseDone(response={"id": rid, "status": "completed"}), t)
    return out


def _run_until(core: BridgeCore, clock: ManualClock, end_ns: int) -> list[Any]:
    """Advance at each deadline up to ``end_ns`` (the shell's ticker, in virtual time)."""
    out: list[Any] = []
    while (at := core.next_deadline_ns()) is not None and at <= end_ns:
        clock.set(max(at, clock.now_ns()))
        out += core.advance(clock.now_ns())
    clock.set(max(end_ns, clock.now_ns()))
    return out


def test_caller_audio_goes_to_the_model_as_20ms_16k_frames() -> None:
    core, _clock = _core()
    out = core.caller_frame(tw.media_frame("s", ulaw_encode(np.zeros(160, np.int16))), 5 * MS)
    (audio,) = _of(out, ToModelAudio)
    assert audio.pcm16k.size == 320
    assert core.caller_media_frames == 1


def test_audio_while_the_model_is_down_is_dropped_and_counted() -> None:
    core, clock = _core()
    core.model_closed(1011, clock.now_ns())  # no internal_error first: 1011 alone reconnects
    out = core.caller_frame(tw.media_frame("s", ulaw_encode(np.zeros(160, np.int16))), 5 * MS)
    assert _of(out, ToModelAudio) == []
    assert core.uplink.dropped_ms == 20.0


def test_silence_fill_is_a_deadline_not_a_poll() -> None:
    core, clock = _core(silence_fill_after_ms=60)
    core.caller_frame(tw.media_frame("s", ulaw_encode(np.zeros(160, np.int16))), 0)
    assert core.next_deadline_ns() == 60 * MS
    out = _run_until(core, clock, 200 * MS)
    # 60 ms of quiet, then one 20 ms frame per 20 ms: at 60, 80, ..., 200 ms
    assert len(_of(out, ToModelAudio)) == 8


def test_played_frames_leave_on_a_20ms_grid_then_the_end_mark() -> None:
    core, clock = _core()
    core.model_event(SpeechStopped(), 0)
    out = _speak(core, "r1", 100, 0, text="Hello.")
    out += _run_until(core, clock, 500 * MS)
    sent = _of(out, ToCaller)
    assert [e.kind for e in sent] == ["media"] * 5 + ["mark"]
    assert json.loads(sent[-1].frame)["mark"]["name"] == tw.turn_end_mark(0)
    assert core.placer.stats.frames == 5 and core.placer.stats.late_frames == 0
    # the turn is logged once it has been played out, with what was heard
    assert core.tracker.audit[-1]["value"] == "Hello."


def test_barge_in_clears_the_caller_and_drops_what_was_queued() -> None:
    core, clock = _core()
    out = _speak(core, "r1", 1000, 0, text="A long answer.")  # the first frame at once
    out += _run_until(core, clock, 100 * MS)
    assert len(_of(out, ToCaller)) == 6  # 0, 20, ..., 100 ms
    out = core.model_event(SpeechStarted(), clock.now_ns())
    # the caller flushes its buffer; the turn's end mark still follows (nothing else of it)
    assert [e.kind for e in _of(out, ToCaller)] == ["clear", "mark"]
    (barge,) = _logs(out, "barge_in")
    assert barge["dropped_frames"] == 44  # 50 frames, 6 played
    # late deltas of the cut response never play
    late = ResponseOutputAudioDelta(
        response_id="r1", delta=base64.b64encode(b"\1\0" * 960).decode()
    )
    assert _of(core.model_event(late, clock.now_ns()), ToCaller) == []
    assert core.dropped_deltas == 1
    assert _of(_run_until(core, clock, 2_000 * MS), ToCaller) == []


def _call(rid: str, call_id: str, args: str, t: int, core: BridgeCore) -> list[Any]:
    core.model_event(ResponseCreated(response={"id": rid}), t)
    ev = FunctionCallArgumentsDone(
        response_id=rid, call_id=call_id, name="get_reservation", arguments=args
    )
    return core.model_event(ev, t)


def test_tool_call_runs_then_response_create_after_the_settle_time() -> None:
    core, clock = _core(tool_settle_ms=120)
    core.model_event(SpeechStopped(), 0)
    out = _call("r1", "c1", '{"confirmation_number": "ABC123"}', 10 * MS, core)
    (run,) = _of(out, RunTool)
    assert (run.call_id, run.name, run.params) == (
        "c1",
        "get_reservation",
        {"confirmation_number": "ABC123"},
    )
    out = core.tool_result("c1", run.name, run.params, {"status": "success"}, 12 * MS)
    (output,) = _of(out, ToModel)
    assert output.call_id == "c1" and output.event.type == "conversation.item.create"
    # 120 ms of quiet after the response's last event (10 ms)
    assert core.tool_policy.next_deadline_ns() == 130 * MS
    out = _run_until(core, clock, 200 * MS)
    creates = [e for e in _of(out, ToModel) if isinstance(e.event, ResponseCreate)]
    assert len(creates) == 1
    assert core.tool_requests[0]["reason"] == "settled"


def test_response_done_without_more_calls_sends_response_create_at_once() -> None:
    core, _clock = _core()
    _call("r1", "c1", "{}", 0, core)
    core.tool_result("c1", "get_reservation", {}, {"status": "success"}, 1 * MS)
    out = core.model_event(ResponseDone(response={"id": "r1", "status": "completed"}), 2 * MS)
    assert [type(e.event) for e in _of(out, ToModel)] == [ResponseCreate]


def test_arguments_that_are_not_json_get_an_error_output_and_no_tool_run() -> None:
    core, _ = _core()
    out = _call("r1", "c1", "{not json", 0, core)
    assert _of(out, RunTool) == []
    (output,) = _of(out, ToModel)
    result = json.loads(output.event.item["output"])
    assert result["error_type"] == "invalid_parameter"


def test_a_lost_tool_output_is_reported() -> None:
    core, _ = _core()
    out = _call("r1", "c1", "{}", 0, core)
    out = core.tool_result("c1", "get_reservation", {}, {"status": "success"}, 1 * MS)
    (output,) = _of(out, ToModel)
    core.model_send_failed(output, "socket closed", 2 * MS)
    assert core.tool_outputs_lost == [
        {"call_id": "c1", "tool": "get_reservation", "error": "socket closed"}
    ]


def test_internal_error_then_1011_reconnects_with_the_conversation_in_the_instructions() -> None:
    core, _clock = _core(transcribe=True)
    core.caller_frame(tw.user_speech_frame("s", started=True, timestamp_ms=1_700_000_000_100), 0)
    out = core.caller_frame(
        tw.user_speech_frame("s", started=False, timestamp_ms=1_700_000_000_900), 1 * MS
    )
    (stt,) = _of(out, Transcribe)
    core.transcript("user", stt.index, Transcript("my code is ABC123", ok=True), 2 * MS)
    core.model_event(ErrorEvent(error={"type": "server_error", "code": "internal_error"}), 3 * MS)
    out = core.model_closed(1011, 4 * MS)
    (rec,) = _of(out, Reconnect)
    assert rec.session["generate_initial_response"] is False
    assert "my code is ABC123" in rec.session["instructions"]
    assert rec.session["instructions"].startswith("Be brief.")
    core.model_connected(ModelInfo(session_id="sess2"), 5 * MS)
    (entry,) = core.reconnect_log
    assert entry["ok"] and entry["session_id"] == "sess2" and entry["context_messages"] == 1


def test_a_normal_close_or_a_second_drop_ends_the_call() -> None:
    core, _ = _core()
    assert _of(core.model_closed(1000, 1 * MS), End) == [End("model_disconnected")]
    core2, _ = _core(max_reconnects=1)
    assert _of(core2.model_closed(1011, 1 * MS), Reconnect)
    core2.model_connected(ModelInfo(), 2 * MS)
    assert _of(core2.model_closed(1011, 3 * MS), End) == [End("model_disconnected")]


def test_stop_ends_intake_but_a_pending_tool_result_still_goes_out() -> None:
    core, _ = _core()
    _call("r1", "c1", "{}", 0, core)
    assert _of(core.caller_frame(tw.stop_frame("s"), 1 * MS), End) == [End("goodbye")]
    out = core.tool_result("c1", "get_reservation", {}, {"status": "success"}, 2 * MS)
    assert len(_of(out, ToModel)) == 1
    assert core.next_deadline_ns() is None


def test_malformed_model_frames_are_counted_not_fatal() -> None:
    core, _ = _core()
    bad = UnknownEvent(raw={"type": "response.done"}, malformed="response is not an object")
    out = core.model_event(bad, 1 * MS)
    assert core.rejected_model_frames == 1 and _logs(out, "model_frame_rejected")
    assert core.summary()["rejected"]["model"] == {"response is not an object": 1}
    assert not core.stopped and core.core_errors == 0


def test_rejected_caller_frames_are_counted_by_reason_not_fatal() -> None:
    core, _ = _core()
    for k, bad in enumerate(["nope", '{"event":"media","media":"x"}', "nope again", b"\xff"]):
        out = core.caller_frame(bad, k * MS)
        assert _logs(out, "caller_frame_rejected") and _of(out, End) == []
    summary = core.summary()
    assert summary["rejected_caller_frames"] == 4
    assert summary["rejected"]["caller"] == {
        "Twilio frame is not JSON": 2,
        "media is str, not an object": 1,
        "binary frame is not UTF-8 JSON": 1,
    }
    assert summary["core_errors"] == 0 and summary["core_error_reasons"] == []


def test_two_silent_responses_raise_the_no_audio_warning() -> None:
    core, _ = _core()
    for k in range(2):
        rid = f"r{k}"
        core.model_event(ResponseCreated(response={"id": rid}), k * MS)
        core.model_event(ResponseDone(response={"id": rid, "status": "completed"}), k * MS)
    assert core.silent_responses == 2
    assert core.no_audio_warning is not None and "100 bytes" in core.no_audio_warning


def _eva_hello(core: BridgeCore) -> None:
    core.caller_frame(
        json.dumps({"event": "connected", "protocol": "voice-bench-v1", "conversation_id": "c"}),
        0,
    )
    core.caller_frame(json.dumps({"event": "start", "conversation_id": "c"}), 0)


def test_evas_simulator_gets_media_only_no_mark_no_clear() -> None:
    core, clock = _core()
    _eva_hello(core)
    assert core.caller_dialect == "eva"
    out = _speak(core, "r1", 200, 0, text="Hi.") + _run_until(core, clock, 100 * MS)
    out += core.model_event(SpeechStarted(), clock.now_ns())
    out += _run_until(core, clock, 1_000 * MS)
    assert {e.kind for e in _of(out, ToCaller)} == {"media"}
    assert _logs(out, "barge_in")  # the cut still happens: nothing more of the turn is sent


def test_canonical_twilio_callers_get_marks_and_clears() -> None:
    core, _ = _core()
    core.caller_frame(tw.connected_frame(), 0)
    core.caller_frame(tw.start_frame("MZ1"), 0)
    assert core.caller_dialect == "twilio" and core.stream_sid == "MZ1"
    out = _speak(core, "r1", 200, 0) + core.model_event(SpeechStarted(), 1 * MS)
    assert [e.kind for e in _of(out, ToCaller)] == ["media", "clear", "mark"]
    assert json.loads(_of(out, ToCaller)[1].frame)["streamSid"] == "MZ1"


def test_a_monotonic_user_speech_stop_stamp_falls_back_to_the_bridge_clock() -> None:
    core, _ = _core()
    _eva_hello(core)
    t_start = 1_000 * MS
    start_ms = core.clock.epoch_ms(t_start)
    core.caller_frame(tw.user_speech_frame("c", started=True, timestamp_ms=start_ms), t_start)
    stop = json.dumps(
        {"event": "user_speech_stop", "conversation_id": "c", "timestamp_ms": "438211"}
    )
    out = core.caller_frame(stop, 2_000 * MS)
    (u,) = core.tracker.users
    assert u.start_epoch_ms == start_ms  # a plausible epoch stamp is kept
    assert u.stop_epoch_ms == core.clock.epoch_ms(2_000 * MS)  # ours, not 438211
    (why,) = core.caller_stamps_ignored
    assert why["event"] == "user_speech_stop" and "monotonic" in why["why"]
    assert _logs(out, "caller_stamp_ignored")
    skewed = json.dumps({"event": "user_speech_start", "timestamp_ms": str(start_ms + 3_600_000)})
    core.caller_frame(skewed, 3_000 * MS)
    assert "from the bridge clock" in core.caller_stamps_ignored[-1]["why"]
