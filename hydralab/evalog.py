"""EVA's per-conversation records, built as the call goes (sans-I/O).

The turn state machine decides *what* happened; this module only knows *how EVA writes it*:
``audit_log.json`` entries (``displayName`` / ``type`` / ``isBotMessage`` / string ``timestamp``
/ ``message_type``), the conversation messages, ``framework_logs.jsonl`` lines and
``pipecat_metrics.jsonl`` rows (``LatencyMetric`` ``model_response`` in seconds, token usage
as ``LLMTokenUsageMetricsData``). Formats: https://github.com/ServiceNow/eva (and
``docs/hydra-facts.md``, "EVA formats and scoring rules").
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvaLog"]

_AUDIT_KINDS: dict[str, tuple[str, bool, str]] = {
    "user": ("User", False, "text"),
    "assistant": ("Bot", True, "text"),
    "tool_call": ("Tool", True, "tool_call"),
    "tool_response": ("Tool Response", True, "tool_response"),
}


class EvaLog:
    """The four record lists of one conversation, in EVA's shapes; times are epoch ms."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.audit: list[dict[str, Any]] = []
        self.conversation_messages: list[dict[str, Any]] = []
        self.framework_logs: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []

    def audit_entry(self, t_ms: int, kind: str, value: Any) -> int:
        """Append an audit entry (``kind``: user, assistant, tool_call, tool_response); its
        position."""
        display, is_bot, typ = _AUDIT_KINDS[kind]
        self.audit.append(
            {
                "value": value,
                "displayName": display,
                "type": typ,
                "isBotMessage": is_bot,
                "timestamp": str(int(t_ms)),
                "message_type": kind,
            }
        )
        return len(self.audit) - 1

    def message(self, role: str, content: str) -> int:
        """Append a conversation message; its position."""
        self.conversation_messages.append({"role": role, "content": content})
        return len(self.conversation_messages) - 1

    def framework(self, t_ms: int, typ: str, data: dict[str, Any]) -> int:
        """Append a ``framework_logs.jsonl`` line; its position."""
        self.framework_logs.append({"timestamp": t_ms, "type": typ, "data": data})
        return len(self.framework_logs) - 1

    def model_response(self, t_ms: int, value_ms: float) -> None:
        """The EVA ``model_response`` latency metric (stored in seconds)."""
        self.metrics.append(
            {
                "timestamp": t_ms,
                "type": "LatencyMetric",
                "stage": "model_response",
                "model": self.model,
                "value": round(value_ms / 1000.0, 6),
            }
        )

    def token_usage(self, t_ms: int, usage: dict[str, int]) -> None:
        """A response's token usage, when it reported any."""
        if not (usage.get("input_tokens") or usage.get("output_tokens")):
            return
        inp, out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        self.metrics.append(
            {
                "timestamp": t_ms,
                "type": "LLMTokenUsageMetricsData",
                "processor": "smallest_hydra",
                "model": self.model,
                "value": {
                    "prompt_tokens": inp,
                    "completion_tokens": out,
                    "total_tokens": usage.get("total_tokens", inp + out),
                },
            }
        )
