"""EVA's record shapes, built apart from the turn state machine (pure)."""

from __future__ import annotations

from hydralab.evalog import EvaLog


def test_audit_messages_framework_and_metrics_in_evas_shapes() -> None:
    log = EvaLog(model="hydra-v1.1")
    assert log.audit_entry(1_700_000_000_123, "assistant", "Hi.") == 0
    assert log.audit[0] == {
        "value": "Hi.",
        "displayName": "Bot",
        "type": "text",
        "isBotMessage": True,
        "timestamp": "1700000000123",
        "message_type": "assistant",
    }
    assert log.audit_entry(5, "tool_call", {"tool": "t", "parameters": {}}) == 1
    assert log.audit[1]["displayName"] == "Tool" and log.audit[1]["type"] == "tool_call"
    assert log.message("user", "hello") == 0
    assert log.framework(7, "turn_end", {"frame": "turn_end"}) == 0
    log.model_response(9, 812.3456789)
    log.token_usage(9, {"input_tokens": 0, "output_tokens": 0})  # nothing reported: no row
    log.token_usage(9, {"input_tokens": 10, "output_tokens": 4})
    assert log.metrics == [
        {
            "timestamp": 9,
            "type": "LatencyMetric",
            "stage": "model_response",
            "model": "hydra-v1.1",
            "value": 0.812346,
        },
        {
            "timestamp": 9,
            "type": "LLMTokenUsageMetricsData",
            "processor": "smallest_hydra",
            "model": "hydra-v1.1",
            "value": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
        },
    ]



def test_assistant_speech_gets_the_text_the_bridge_played() -> None:
    from hydralab.evalog import fill_assistant_speech

    events = [
        {"event_type": "audio_start", "user": "assistant", "audio_timestamp": 1000.100},
        {"event_type": "audio_end", "user": "assistant", "audio_timestamp": 1002.0},
        {"type": "assistant_speech", "data": {"text": "", "source": "assistant"}},
        {"type": "user_speech", "data": {"text": "hi", "source": "simulated_user"}},
        {"event_type": "audio_start", "user": "assistant", "audio_timestamp": 1005.300},
        {"type": "assistant_speech", "data": {"text": "", "source": "assistant"}},
        {"event_type": "audio_start", "user": "assistant", "audio_timestamp": 1009.0},
        {"type": "assistant_speech", "data": {"text": "", "source": "assistant"}},
    ]
    turns = [
        {"first_played_epoch_ms": 1_000_020, "text": "Hello, how can I help?"},
        {"first_played_epoch_ms": 1_005_250, "text": "Let me check."},
        {"first_played_epoch_ms": 1_007_000, "text": "Your flight is on time."},  # same heard turn
        {"first_played_epoch_ms": None, "text": "never played"},
    ]
    out = fill_assistant_speech(events, turns)
    said = [e["data"]["text"] for e in out if e.get("type") == "assistant_speech"]
    assert said == ["Hello, how can I help?", "Let me check. Your flight is on time.", ""]
    assert events[2]["data"]["text"] == ""  # the input is untouched
