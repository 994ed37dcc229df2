"""A caller that listens: what the caller heard, its policy's reply and the reply's audio.

:class:`Listener` is what a listening :class:`~hydralab.caller_core.CallerCore` needs from its
shell after each :class:`~hydralab.caller_core.NeedReply`: it turns the assistant turn into what
the caller *heard* (:class:`~hydralab.policy.Heard`) — by default the turn's received audio
through the configured STT (realistic; logged as EVA's ``assistant_speech``), or the bridge's
native transcript (exact, cheaper) — asks the :class:`~hydralab.policy.CallerPolicy`, and
synthesizes the reply with the caller's voice (a persona's rate). The socket shell
(:class:`hydralab.caller.Caller`) runs it off the event loop; a simulation calls it inline.
Every decision is logged in :attr:`Listener.log` (``run.json["caller"]["decisions"]``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hydralab.audio import ulaw_decode
from hydralab.caller_core import (
    CallerConfig,
    NeedReply,
    PreparedUtterance,
    SpeechSynthesizer,
    prepare_utterance,
)
from hydralab.policy import CallerPolicy, Exchange, Heard, Reply
from hydralab.speech.text import spoken_form

__all__ = ["Hearing", "Listener", "PreparedReply"]

Hearing = Literal["stt", "native"]


@dataclass(frozen=True)
class PreparedReply:
    """A decided reply, ready for :meth:`CallerCore.reply`."""

    reply: Reply
    heard: str
    spoken: str
    utterance: PreparedUtterance | None
    think_ms: float


@dataclass
class Listener:
    """The listening caller's policy, ears and voice for one call.

    Args:
        policy: Decides each line.
        hearing: ``"stt"``: the assistant's audio through ``transcribe``; ``"native"``: the
            bridge's transcript of the turn (``native_text``).
        transcribe: ``(int16 PCM at 8 kHz) -> text`` (blocking; ``"stt"``).
        native_text: ``assistant turn index -> text`` (``"native"``).
        think_ms: Pause before each reply, ms (default: the caller config's ``think_ms`` for
            the line, a persona's draw).
        rate_wpm: Speaking rate (a persona's), default the caller config's.
    """

    policy: CallerPolicy
    hearing: Hearing = "stt"
    transcribe: Callable[[np.ndarray], str] | None = None
    native_text: Callable[[int], str] | None = None
    think_ms: Callable[[], float] | None = None
    rate_wpm: int | None = None
    history: list[Exchange] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0

    def __post_init__(self) -> None:
        if self.hearing == "stt" and self.transcribe is None:
            raise ValueError("hearing='stt' needs a transcribe function")
        if self.hearing == "native" and self.native_text is None:
            raise ValueError("hearing='native' needs a native_text function")

    def hear(self, need: NeedReply) -> str:
        """What the caller heard of assistant turn ``need.index``."""
        if self.hearing == "native":
            assert self.native_text is not None
            return self.native_text(need.index).strip()
        assert self.transcribe is not None
        if not need.heard_ulaw:
            return ""
        return self.transcribe(ulaw_decode(need.heard_ulaw)).strip()

    def decide(self, need: NeedReply, heard: str) -> Reply:
        """The policy's reply to what was heard; the history and the log are kept here."""
        t0 = time.perf_counter()
        reply = self.policy.decide(
            Heard(need.index, heard, source=self.hearing, interrupted=need.interrupted),
            tuple(self.history),
        )
        self.history.append(Exchange("assistant", heard))
        if reply.text.strip():
            self.history.append(Exchange("caller", reply.text))
        self.log.append(
            {
                "turn": need.index,
                "heard": heard,
                "hearing": self.hearing,
                "said": reply.text,
                "end_call": reply.end_call,
                "slots": list(reply.slots),
                "reason": reply.reason,
                "decide_ms": round((time.perf_counter() - t0) * 1000.0, 1),
            }
        )
        return reply

    def prepare(
        self, need: NeedReply, *, config: CallerConfig, synthesizer: SpeechSynthesizer
    ) -> PreparedReply:
        """Hear, decide and synthesize (blocking: run it in a worker thread on sockets)."""
        heard = self.hear(need)
        reply = self.decide(need, heard)
        spoken = reply.spoken if reply.spoken is not None else spoken_form(reply.text)
        line_index = self.lines
        utterance = None
        if reply.text.strip():
            utterance = prepare_utterance(
                spoken,
                index=self.lines,
                config=config,
                synthesizer=synthesizer,
                rate_wpm=self.rate_wpm,
            )
            self.lines += 1
        think = (
            self.think_ms()
            if self.think_ms is not None
            else config.think_ms.get(line_index, 0.0)  # the persona's draw for this line
        )
        if reply.think_ms is not None:
            think += reply.think_ms
        self.log[-1]["think_ms"] = round(think, 1)
        return PreparedReply(reply, heard, spoken, utterance, max(0.0, think))
