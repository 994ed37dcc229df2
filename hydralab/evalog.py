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

__all__ = ["EvaLog", "fill_assistant_speech"]

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


def fill_assistant_speech(
    events: list[dict[str, Any]], turns: list[dict[str, Any]], *, lead_ms: int = 500
) -> list[dict[str, Any]]:
    """The caller's ``user_simulator_events`` with each ``assistant_speech`` text filled in.

    A scripted caller does not transcribe what it hears; the bridge knows what was played
    (``turns``: ``run.json`` turn rows, with ``first_played_epoch_ms`` and the text actually
    heard — cut at a barge-in). Each played bridge turn goes to the caller's heard turn whose
    ``audio_start`` is the last one at or before the turn's first played sample plus
    ``lead_ms`` (the caller hears a little after the bridge sends); a heard turn that several
    bridge turns fell into gets their texts joined. A text already there (a caller that
    listens logs what it heard, through its STT) is kept. Events are returned as new dicts;
    the input is not changed.
    """
    out = [dict(e) for e in events]
    starts: list[tuple[int, int]] = []  # (audio_start epoch ms, index of its assistant_speech)
    pending: int | None = None
    for i, e in enumerate(out):
        if e.get("event_type") == "audio_start" and e.get("user") == "assistant":
            pending = round(float(e.get("audio_timestamp", 0.0)) * 1000)
        elif e.get("type") == "assistant_speech" and pending is not None:
            starts.append((pending, i))
            pending = None
    texts: dict[int, list[str]] = {}
    for row in turns:
        at = row.get("first_played_epoch_ms")
        text = str(row.get("text") or "").strip()
        if at is None or not text:
            continue
        heard = [i for start, i in starts if start <= int(at) + lead_ms]
        if heard:
            texts.setdefault(heard[-1], []).append(text)
    for i, parts in texts.items():
        if str(out[i]["data"].get("text") or "").strip():
            continue  # a caller that listens logged what it heard itself: kept
        out[i]["data"] = {**out[i]["data"], "text": " ".join(parts)}
    return out
