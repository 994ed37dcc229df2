"""What a caller says next: the caller-policy interface shared by every policy.

A policy decides each of the caller's turns from what the caller *heard* (:class:`Heard`: the
assistant's turn as text, transcribed by the configured STT or taken from the bridge's native
transcript) and the conversation so far. The caller core asks for a line when an assistant
turn ends (and once after the greeting); the shell runs :meth:`CallerPolicy.decide` (in a
worker thread on real sockets, inline in a simulation), synthesizes the reply and hands it to
the core. Policies are synchronous and deterministic for a seed, except ``llm`` (network).

Policies (``--caller``): ``scripted`` (the record's user lines in order, whatever was heard),
``rules`` (offline: answers what it is asked from the record's ``information_required``) and
``llm`` (an OpenAI-compatible chat-completions endpoint prompted like EVA's user simulator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "CALLER_POLICIES",
    "CallerPolicy",
    "CallerPolicyError",
    "CallerPolicyName",
    "Exchange",
    "Heard",
    "Reply",
]

CallerPolicyName = Literal["scripted", "rules", "llm"]
CALLER_POLICIES: tuple[CallerPolicyName, ...] = ("scripted", "rules", "llm")


@dataclass(frozen=True)
class Heard:
    """One assistant turn as the caller heard it.

    Attributes:
        index: Assistant turn index (0 = the greeting).
        text: What was heard (may be empty: silence, or STT found nothing).
        source: ``"stt"`` (the assistant's audio through the configured STT), ``"native"``
            (the bridge's model transcript), or ``"script"`` (a simulation's oracle).
        interrupted: The caller barged in before the turn ended.
    """

    index: int
    text: str
    source: Literal["stt", "native", "script"] = "stt"
    interrupted: bool = False


@dataclass(frozen=True)
class Reply:
    """The caller's next line, or the end of the call.

    Attributes:
        text: What the caller means (written form; logged as EVA's ``user_speech``). Empty
            with ``end_call`` = hang up without a word.
        spoken: What the TTS reads (codes spelled out as a caller spells them); ``None`` =
            :func:`hydralab.speech.text.spoken_form` of ``text``.
        end_call: Hang up after saying ``text`` (EVA's ``end_call``).
        slots: The ``information_required`` items this line gives (for "answered right").
        reason: Why the policy said it (``"script"``, ``"asked: <slot>"``, ``"repeat"``,
            ``"confirm"``, ``"decline"``, ``"goodbye"``, ``"llm"`` ...); logged.
        think_ms: Pause before speaking, on top of the persona's think time; ``None`` = the
            persona's.
    """

    text: str
    spoken: str | None = None
    end_call: bool = False
    slots: tuple[str, ...] = ()
    reason: str = ""
    think_ms: float | None = None


@dataclass(frozen=True)
class Exchange:
    """One past turn of the conversation, as the caller knows it."""

    speaker: Literal["assistant", "caller"]
    text: str


class CallerPolicy(Protocol):
    """Decides the caller's lines. One instance per call (it may keep state)."""

    name: str

    def decide(self, heard: Heard, history: Sequence[Exchange]) -> Reply:
        """The caller's reply to ``heard`` (``history`` excludes it).

        Raises:
            CallerPolicyError: The policy cannot go on (an unreachable endpoint after its
                retries, a malformed reply); the call ends with that reason.
        """
        ...


class CallerPolicyError(RuntimeError):
    """A policy cannot decide the next line; the message says why (never a key)."""
