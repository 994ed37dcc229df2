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
