"""Conversation scripts derived from a record's reference trace (EVA-format docs §8b).

A :class:`Script` is what the offline emulator (assistant side) and the scripted caller (user
side) follow: the user's lines in order, and for each of them the assistant's answer as a
sequence of steps (:class:`Speak` or :class:`CallTools`). ``assistant_turns[0]`` is the greeting;
``assistant_turns[i]`` answers ``user_turns[i - 1]``. Tool calls keep their exact arguments; the
emulator only *emits* them, and the bridge (the client side, as with the real Hydra) executes them
through :mod:`hydralab.tools`. The trace's stored responses are deliberately not part of the
script.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydralab.records import Record
from hydralab.speech.text import spoken_form

__all__ = [
    "AssistantTurn",
    "CallTools",
    "Script",
    "Speak",
    "ToolCall",
    "UserTurn",
    "script_from_record",
    "script_from_trace",
]


@dataclass(frozen=True)
class ToolCall:
    """One function call with its JSON arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Speak:
    """The assistant says ``text``."""

    text: str


@dataclass(frozen=True)
class CallTools:
    """The assistant issues these calls (in order) before speaking again."""

    calls: tuple[ToolCall, ...]


Step = Speak | CallTools


@dataclass(frozen=True)
class AssistantTurn:
    """Everything the assistant does between two user turns."""

    steps: tuple[Step, ...]

    @property
    def text(self) -> str:
        """All spoken text of the turn, joined by spaces."""
        return " ".join(s.text for s in self.steps if isinstance(s, Speak))

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """All tool calls of the turn, in order."""
        return tuple(c for s in self.steps if isinstance(s, CallTools) for c in s.calls)


@dataclass(frozen=True)
class UserTurn:
    """A caller line: ``text`` as written in the trace, ``spoken`` as the TTS should read it."""

    text: str
    spoken: str


@dataclass(frozen=True)
class Script:
    """A full two-sided conversation script.

    Invariant: ``len(assistant_turns) == len(user_turns) + 1``.
    """

    greeting: str
    user_turns: tuple[UserTurn, ...]
    assistant_turns: tuple[AssistantTurn, ...]
    record_id: str = ""
    end_reason: str = "goodbye"

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """Every tool call of the conversation, in order."""
        return tuple(c for turn in self.assistant_turns for c in turn.tool_calls)


def _flush_calls(steps: list[Step], pending: list[ToolCall]) -> None:
    if pending:
        steps.append(CallTools(tuple(pending)))
        pending.clear()


def script_from_trace(
    trace: Iterable[Mapping[str, Any]],
    *,
    greeting: str,
    record_id: str = "",
    end_reason: str = "goodbye",
) -> Script:
    """Group trace events into turns.

    Agent events before the first user line are taken to be the greeting and dropped (the
    greeting turn is always ``(Speak(greeting),)``). Consecutive user lines merge into one turn.
    A trailing user line without an answer gets an empty assistant turn.
    """
    user_texts: list[str] = []
    answers: list[list[Step]] = []
    pending: list[ToolCall] = []
    for event in trace:
        kind = event.get("event_type")
        if kind == "user_utterance":
            text = str(event.get("utterance", "")).strip()
            if answers and not answers[-1] and not pending:
                user_texts[-1] = f"{user_texts[-1]} {text}".strip()
            else:
                if answers:
                    _flush_calls(answers[-1], pending)
                user_texts.append(text)
                answers.append([])
            continue
        if not answers:
            continue  # greeting-side events before the caller speaks
        if kind == "tool_call":
            pending.append(ToolCall(str(event["tool_name"]), dict(event.get("params") or {})))
        elif kind == "agent_utterance":
            _flush_calls(answers[-1], pending)
            answers[-1].append(Speak(str(event.get("utterance", "")).strip()))
    if answers:
        _flush_calls(answers[-1], pending)
    return Script(
        greeting=greeting,
        user_turns=tuple(UserTurn(text=t, spoken=spoken_form(t)) for t in user_texts),
        assistant_turns=(
            AssistantTurn((Speak(greeting),)),
            *(AssistantTurn(tuple(a)) for a in answers),
        ),
        record_id=record_id,
        end_reason=end_reason,
    )


def script_from_record(record: Record) -> Script:
    """The script of a record's (resolved) reference trace."""
    return script_from_trace(
        record.trace,
        greeting=record.greeting,
        record_id=record.id,
        end_reason=record.end_reason,
    )
