"""The turn and latency state machine, fed events with explicit times (pure, no I/O)."""

from __future__ import annotations

from hydralab.protocol import hydra as h
from hydralab.turns import (
    TRANSCRIPTION_PLACEHOLDER,
    BargeIn,
    TurnComplete,
    TurnLogged,
    TurnTracker,
)

MS = 1_000_000
EPOCH0 = 1_764_000_000_000


def tracker() -> TurnTracker:
    return TurnTracker(epoch_ms=lambda t_ns: EPOCH0 + t_ns // MS, model="hydra")


def speak(t: TurnTracker, rid: str, at_ms: int, text: str = "Hello there.", *, done: bool = True):
    acts = t.on_event(h.ResponseCreated(response={"id": rid}), at_ms * MS)
    acts += t.on_event(
        h.ResponseOutputAudioTranscriptDelta(response_id=rid, delta=text), at_ms * MS
    )
    acts += t.on_event(h.ResponseOutputAudioDelta(response_id=rid, delta="AAAA"), (at_ms + 5) * MS)
    t.audio_received(rid, 4800, (at_ms + 5) * MS)
    if done:
        acts += t.on_event(
            h.ResponseDone(
                response={
                    "id": rid,
                    "status": "completed",
                    "usage": {"input_tokens": 10, "output_tokens": 4},
                }
            ),
            (at_ms + 50) * MS,
        )
        # the pacer plays it all, then its end mark
        t.audio_played(rid, 4800, (at_ms + 60) * MS)
        for a in acts:
            if isinstance(a, TurnComplete):
                t.turn_played(a.index, (at_ms + 160) * MS)
    return acts


def test_greeting_has_no_latency_and_completes() -> None:
    t = tracker()
    acts = speak(t, "r0", 100, "Hi, how can I help?")
    assert acts == [TurnComplete(0)]
    turn = t.turns[0]
    assert turn.kind == "greeting" and turn.model_response_ms is None
    assert turn.latency_reason == "greeting"
    assert [m["type"] for m in t.metrics] == ["LLMTokenUsageMetricsData"]
    assert (
        t.audit[-1]["message_type"] == "assistant" and t.audit[-1]["value"] == "Hi, how can I help?"
    )


def test_model_response_latency_from_speech_stopped() -> None:
    t = tracker()
    speak(t, "r0", 0)
    t.user_speech_start(1000 * MS, timestamp_ms=EPOCH0 + 1000)
    t.on_event(h.SpeechStarted(audio_start_ms=1000), 1100 * MS)
    t.on_event(h.SpeechStopped(audio_end_ms=2000), 2600 * MS)
    speak(t, "r1", 3200)  # first delta at 3205 ms
    turn = t.turns[1]
    assert turn.kind == "plain"
    assert turn.model_response_ms == 605.0
    lat = [m for m in t.metrics if m["type"] == "LatencyMetric"]
    assert lat == [
        {
            "timestamp": EPOCH0 + 3205,
            "type": "LatencyMetric",
            "stage": "model_response",
            "model": "hydra",
            "value": 0.605,
        }
    ]


def test_latency_floor_and_missing_anchor_are_explicit() -> None:
    t = tracker()
    speak(t, "r0", 0)
    t.user_speech_start(500 * MS)
    t.on_event(h.SpeechStopped(audio_end_ms=900), 1000 * MS)
    speak(t, "r1", 1010)  # 15 ms after speech_stopped: below the 50 ms floor
    assert t.turns[1].model_response_ms is None
    assert t.turns[1].latency_reason == "below_50ms_floor"
    # late speech_stopped (after the first delta) gives no bogus latency for either turn
    t.on_event(h.SpeechStarted(audio_start_ms=2000), 2000 * MS)
    speak(t, "r2", 3000, done=False)
    t.on_event(h.SpeechStopped(audio_end_ms=2900), 3010 * MS)
    t.on_event(h.ResponseDone(response={"id": "r2", "status": "completed"}), 3100 * MS)
    assert t.turns[2].model_response_ms is None
    assert t.turns[2].latency_reason == "speech_stopped_after_first_audio"
    assert not [m for m in t.metrics if m["type"] == "LatencyMetric"]


def test_tool_turn_is_one_turn_across_responses() -> None:
    t = tracker()
    speak(t, "r0", 0)
    t.user_speech_start(1000 * MS)
    t.on_event(h.SpeechStopped(audio_end_ms=2000), 2000 * MS)
    t.on_event(h.ResponseCreated(response={"id": "r1"}), 2300 * MS)
    t.on_event(
        h.FunctionCallArgumentsDelta(response_id="r1", call_id="c1", name="f", delta='{"a"'),
        2310 * MS,
    )
    t.on_event(h.FunctionCallArgumentsDelta(response_id="r1", call_id="c1", delta=":1}"), 2320 * MS)
    t.on_event(
        h.FunctionCallArgumentsDone(response_id="r1", call_id="c1", name="f", arguments='{"a":1}'),
        2330 * MS,
    )
    assert t.tool_call_args("c1") == '{"a":1}'
    acts = t.on_event(
        h.ResponseDone(
            response={
                "id": "r1",
                "status": "completed",
                "output": [{"type": "function_call", "call_id": "c1", "name": "f"}],
            }
        ),
        2340 * MS,
    )
    assert acts == [] and not t.turns[1].complete
    t.tool_called(2350 * MS, name="f", params={"a": 1})
    t.tool_result(2360 * MS, name="f", params={"a": 1}, result={"status": "success"})
    t.output_sent(2361 * MS)
    t.response_create_sent(2561 * MS)
    acts = speak(t, "r2", 2900, "Done.")
    assert acts == [TurnComplete(1)]
    assert len(t.turns) == 2
    turn = t.turns[1]
    assert turn.kind == "tool" and turn.response_ids == ["r1", "r2"]
    assert turn.model_response_ms == 905.0
    assert turn.stages["first_args_delta"] == 2310 * MS
    assert turn.stages["first_audio_after_tools"] == 2905 * MS
    kinds = [e["message_type"] for e in t.audit]
    assert kinds == ["assistant", "tool_call", "tool_response", "assistant"]


def test_barge_in_keeps_only_heard_text() -> None:
    t = tracker()
    t.on_event(h.ResponseCreated(response={"id": "r0"}), 0)
    t.on_event(h.ResponseOutputAudioTranscriptDelta(response_id="r0", delta="First part,"), 0)
    t.on_event(h.ResponseOutputAudioDelta(response_id="r0", delta="AA"), 1 * MS)
    t.audio_received("r0", 48000, 1 * MS)
    t.on_event(
        h.ResponseOutputAudioTranscriptDelta(response_id="r0", delta=" second part."), 2 * MS
    )
    t.audio_received("r0", 48000, 2 * MS)
    t.audio_played("r0", 24000, 100 * MS)  # half of the first phrase played
    acts = t.on_event(h.SpeechStarted(audio_start_ms=400), 500 * MS)
    assert acts == [BargeIn(0), TurnLogged(0)]  # cut, then its heard text logged
    acts = t.on_event(
        h.ResponseDone(
            response={
                "id": "r0",
                "status": "cancelled",
                "status_details": {"reason": "interrupted"},
            }
        ),
        520 * MS,
    )
    assert acts == []
    turn = t.turns[0]
    assert turn.status == "interrupted" and turn.heard_text == "First part,"
    assert t.audit[-1]["value"] == "First part, [interrupted]"


def test_failed_and_incomplete_are_not_labelled_interrupted() -> None:
    t = tracker()
    speak(t, "r0", 0, done=False)
    t.on_event(
        h.ResponseDone(
            response={
                "id": "r0",
                "status": "incomplete",
                "status_details": {"reason": "max_output_tokens"},
            }
        ),
        60 * MS,
    )
    assert t.turns[0].status == "incomplete" and not t.turns[0].interrupted


def test_user_transcripts_and_placeholder_in_time_order() -> None:
    t = tracker()
    u0 = t.user_speech_start(1000 * MS, timestamp_ms=EPOCH0 + 1000)
    t.user_speech_stop(2000 * MS, timestamp_ms=EPOCH0 + 2000)
    u1 = t.user_speech_start(5000 * MS, timestamp_ms=EPOCH0 + 5000)
    t.user_speech_stop(6000 * MS)
    # transcripts land late and out of order; the audit entries keep speech-start times
    t.user_transcript(u1.index, "", ok=False, error="http 500")
    t.user_transcript(u0.index, "hello", ok=True)
    stamps = {e["value"]: int(e["timestamp"]) for e in t.audit}
    assert stamps == {TRANSCRIPTION_PLACEHOLDER: EPOCH0 + 5000, "hello": EPOCH0 + 1000}


def test_finish_flushes_open_turn_as_interrupted() -> None:
    t = tracker()
    speak(t, "r0", 0, "Unfinished words", done=False)
    t.finish(900 * MS)
    assert t.turns[0].status == "interrupted"
    assert t.audit[-1]["value"].endswith("[interrupted]")


def test_entry_waits_until_played_and_barge_in_after_response_done() -> None:
    t = tracker()
    t.on_event(h.ResponseCreated(response={"id": "r0"}), 0)
    t.on_event(h.ResponseOutputAudioTranscriptDelta(response_id="r0", delta="One two,"), 0)
    t.on_event(h.ResponseOutputAudioDelta(response_id="r0", delta="AA"), 1 * MS)
    t.audio_received("r0", 48000, 1 * MS)
    t.on_event(h.ResponseOutputAudioTranscriptDelta(response_id="r0", delta=" three four."), 2 * MS)
    t.audio_received("r0", 48000, 2 * MS)
    # all received (Hydra sends ~10x real time) but barely played
    acts = t.on_event(h.ResponseDone(response={"id": "r0", "status": "completed"}), 200 * MS)
    assert acts == [TurnComplete(0)]
    assert t.audit == []  # not logged before it has been heard
    t.audio_played("r0", 9600, 210 * MS)
    acts = t.on_event(h.SpeechStarted(audio_start_ms=300), 400 * MS)
    assert acts == [BargeIn(0), TurnLogged(0)]  # cut, then its heard text logged
    assert t.turns[0].status == "interrupted"
    assert t.audit[-1]["value"] == "One two, [interrupted]"
    t.turn_played(0, 500 * MS)  # the mark still goes out after the dropped audio: no duplicate
    assert [e["message_type"] for e in t.audit] == ["assistant"]


def test_finish_keeps_unplayed_tail_as_interrupted() -> None:
    t = tracker()
    t.on_event(h.ResponseCreated(response={"id": "r0"}), 0)
    t.on_event(h.ResponseOutputAudioTranscriptDelta(response_id="r0", delta="Heard."), 0)
    t.on_event(h.ResponseOutputAudioDelta(response_id="r0", delta="AA"), 1 * MS)
    t.audio_received("r0", 48000, 1 * MS)
    t.on_event(h.ResponseOutputAudioTranscriptDelta(response_id="r0", delta=" Not heard."), 2 * MS)
    t.audio_received("r0", 48000, 2 * MS)
    t.on_event(h.ResponseDone(response={"id": "r0", "status": "completed"}), 3 * MS)
    t.audio_played("r0", 24000, 10 * MS)
    t.finish(600 * MS)  # the caller hung up mid-turn
    assert t.audit[-1]["value"] == "Heard. [interrupted]"


# ---------------------------------------------------------------- the live service's shapes


def test_deltas_without_spaces_are_joined_into_words() -> None:
    from hydralab.turns import join_deltas

    assert join_deltas(["Hello!", "How can I help?"]) == "Hello! How can I help?"
    assert join_deltas(["Hello! ", "How can I help?"]) == "Hello! How can I help?"  # spaced
    assert join_deltas(["Sure", ",", "one moment", "."]) == "Sure, one moment."
    assert join_deltas(["I", "'m", " here "]) == "I'm here"
    t = tracker()
    for piece in ("Hello!", "How can", "I help?"):
        t.on_event(h.ResponseOutputAudioTranscriptDelta(response_id="r0", delta=piece), 0)
    assert t.turns[0].text == "Hello! How can I help?"


def _tool_turn(t: TurnTracker) -> None:
    t.user_speech_start(0)
    t.on_event(h.SpeechStarted(audio_start_ms=0), 0)
    t.on_event(h.SpeechStopped(audio_end_ms=900), 1000 * MS)
    t.on_event(h.ResponseCreated(response={"id": "rt"}), 1100 * MS)
    t.on_event(
        h.FunctionCallArgumentsDelta(response_id="rt", call_id="c1", name="get_x", delta="{}"),
        1150 * MS,
    )
    t.on_event(
        h.FunctionCallArgumentsDone(response_id="rt", call_id="c1", arguments="{}"), 1160 * MS
    )


def test_a_late_response_done_of_the_tool_response_does_not_hold_the_turn_open() -> None:
    t = tracker()
    _tool_turn(t)
    assert t.tool_call_name("c1") == "get_x"  # the .done named no function
    t.response_create_sent(1200 * MS, wait_ms=35.0, reason="settled")
    speak(t, "rn", 1800, "Found it.", done=False)
    late = t.on_event(
        h.ResponseDone(
            response={
                "id": "rt",
                "status": "completed",
                "output": [{"type": "function_call", "call_id": "c1", "name": "get_x"}],
            }
        ),
        1900 * MS,
    )
    assert late == [] and not t.turns[0].complete
    acts = t.on_event(h.ResponseDone(response={"id": "rn", "status": "completed"}), 2000 * MS)
    assert acts == [TurnComplete(0)] and t.turns[0].status == "completed"
    row = t.turn_rows()[0]
    assert row["tool_request_reason"] == "settled" and row["tool_wait_ms"] == 35.0
    assert row["bridge_ms"] == 40.0  # args done 1160 → response.create 1200
    assert row["model_only_ms"] == row["model_response_ms"] - 40.0


def test_speech_over_a_tool_turn_with_nothing_playing_interrupts_and_closes_it() -> None:
    t = tracker()
    _tool_turn(t)
    acts = t.on_event(h.SpeechStarted(audio_start_ms=2000), 2000 * MS)
    assert acts == [BargeIn(0)]  # nothing was heard: no entry to log
    turn = t.turns[0]
    assert turn.interrupted and turn.complete and turn.status_reason == "barge_in"
    # the narration the bridge had requested belongs to that turn, not to a new one
    t.bind_response("rn", 0)
    t.on_event(h.ResponseDone(response={"id": "rn", "status": "cancelled"}), 2100 * MS)
    assert len(t.turns) == 1 and t.current is None
