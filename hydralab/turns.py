"""The turn and latency state machine (sans-I/O; docs/architecture.md, layer 1).

Fed Hydra events, caller (Twilio) events, tool activity and pacer reports, each with the session
clock's ``t_ns``, it keeps the conversation's turns and derives EVA-compatible audit entries,
framework-log lines, latency metrics and token usage. It never reads a clock itself: wall time
comes from the ``epoch_ms`` mapping it is given (the session clock's one anchor).

Latency (``model_response``, EVA-compatible): first ``response.output_audio.delta`` received −
``input_audio_buffer.speech_stopped`` received, kept when 50 ms ≤ v < 30 s. A missing or invalid
anchor gives ``None`` with a reason, never 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hydralab.evalog import EvaLog
from hydralab.protocol.hydra import (
    ErrorEvent,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    HydraEvent,
    ResponseCreated,
    ResponseDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioTranscriptDelta,
    SpeechStarted,
    SpeechStopped,
)

__all__ = [
    "ASSISTANT_TRANSCRIPTION_PLACEHOLDER",
    "LATENCY_MAX_MS",
    "LATENCY_MIN_MS",
    "TRANSCRIPTION_PLACEHOLDER",
    "Action",
    "AssistantTurn",
    "BargeIn",
    "TurnComplete",
    "TurnLogged",
    "TurnTracker",
    "UserUtterance",
    "join_deltas",
]

LATENCY_MIN_MS = 50.0
LATENCY_MAX_MS = 30_000.0
_MAX_ERROR_CHARS = 2000
_MAX_CODE_CHARS = 200
TRANSCRIPTION_PLACEHOLDER = "[user speech - transcription unavailable]"
ASSISTANT_TRANSCRIPTION_PLACEHOLDER = "[assistant speech - transcription unavailable]"


@dataclass(frozen=True)
class TurnComplete:
    """All of assistant turn ``index`` has been received: mark its end after its audio."""

    index: int


@dataclass(frozen=True)
class BargeIn:
    """The caller spoke over assistant turn ``index``: drop unplayed audio, send ``clear``."""

    index: int


@dataclass(frozen=True)
class TurnLogged:
    """Assistant turn ``index`` now has its audit / framework entries (what was heard is final):
    the bridge may transcribe its played audio when no transcript deltas came."""

    index: int


Action = TurnComplete | BargeIn | TurnLogged


@dataclass
class UserUtterance:
    index: int
    start_t_ns: int
    start_epoch_ms: int
    stop_t_ns: int | None = None
    stop_epoch_ms: int | None = None
    text: str | None = None
    transcript_ok: bool | None = None
    transcript_error: str | None = None
    skipped: bool = False  # the STT guards found no speech: no user turn was logged


@dataclass
class AssistantTurn:
    """One assistant turn: one or more responses (speak → tools → speak) until it is complete."""

    index: int
    kind: str  # "greeting" | "plain" | "tool"
    created_t_ns: int
    response_ids: list[str] = field(default_factory=list)
    anchor_t_ns: int | None = None  # speech_stopped received
    first_delta_t_ns: int | None = None
    first_played_t_ns: int | None = None
    last_played_t_ns: int | None = None
    done_t_ns: int | None = None
    status: str = "open"  # open | completed | cancelled | incomplete | failed | interrupted
    status_reason: str | None = None
    interrupted: bool = False
    model_response_ms: float | None = None
    latency_reason: str | None = None
    # raw transcript deltas with the received-audio position (48 kHz samples) at their arrival
    text_deltas: list[tuple[int, str]] = field(default_factory=list)
    samples_received: int = 0
    samples_played: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)  # tool waterfall anchors, t_ns
    awaiting_tools: bool = False
    tool_wait_ms: float | None = None  # bridge's wait between last output and response.create
    tool_request_reason: str | None = None
    v2v_ms: float | None = None  # caller's last audible sample → first audible assistant sample
    v2v_reason: str | None = None
    played_out: bool = False  # the pacer sent the turn's last frame (its end mark)
    logged: bool = False  # audit / framework entries written
    # "model": transcript deltas; "stt": the played audio transcribed (no deltas came);
    # "stt_failed": that transcription failed; "none": audio, no deltas, no transcription
    text_source: str = "model"
    stt_text: str | None = None
    stt_error: str | None = None
    entries: tuple[int, int, int] | None = None  # audit / message / framework-log positions

    @property
    def playing(self) -> bool:
        """Audio of this turn has started and not all of it has reached the caller."""
        return self.first_delta_t_ns is not None and not self.played_out and not self.interrupted

    @property
    def complete(self) -> bool:
        return self.status != "open"

    @property
    def text(self) -> str:
        return join_deltas(d for _, d in self.text_deltas)

    @property
    def heard_text(self) -> str:
        """Phrases whose audio had started playing (by received-audio position)."""
        if not self.interrupted:
            return self.text
        return join_deltas(d for pos, d in self.text_deltas if pos < self.samples_played)


_NO_SPACE_BEFORE = tuple(".,!?;:)]}%…'’\"")


def join_deltas(parts: Iterable[str]) -> str:
    """Transcript deltas joined into text, whether or not they carry their own spaces.

    Hydra's phrase-level deltas may come without spaces (the vendor's bridge joins them with
    one): a space is put between two deltas unless one side already has whitespace or the next
    starts with closing punctuation. Whitespace is then collapsed.
    """
    out: list[str] = []
    for p in parts:
        if not p:
            continue
        glued = out and not out[-1][-1:].isspace() and not p[0].isspace()
        if glued and not p.startswith(_NO_SPACE_BEFORE):
            out.append(" ")
        out.append(p)
    return " ".join("".join(out).split())


class TurnTracker:
    """Turn bookkeeping for one session. All inputs carry ``t_ns`` from the session clock."""

    def __init__(self, *, epoch_ms: Callable[[int], int], model: str = "hydra") -> None:
        self._epoch_ms = epoch_ms
        self.model = model
        self.users: list[UserUtterance] = []
        self.turns: list[AssistantTurn] = []
        self.eva = EvaLog(model=model)  # EVA's record lists, built as the call goes
        self.errors: list[dict[str, Any]] = []
        self._anchor_t_ns: int | None = None
        self._heard_user = False
        self._by_response: dict[str, AssistantTurn] = {}
        self._args: dict[str, list[str]] = {}
        self._names: dict[str, str] = {}
        self.responses_with_calls: set[str] = set()
        self._logged: list[int] = []  # turns logged since the last returned actions

    # ------------------------------------------------------------------ helpers
    @property
    def current(self) -> AssistantTurn | None:
        return self.turns[-1] if self.turns and not self.turns[-1].complete else None

    def _ms(self, t_ns: int) -> int:
        return self._epoch_ms(t_ns)

    @property
    def audit(self) -> list[dict[str, Any]]:
        """``audit_log.json`` entries so far."""
        return self.eva.audit

    @property
    def conversation_messages(self) -> list[dict[str, Any]]:
        return self.eva.conversation_messages

    @property
    def framework_logs(self) -> list[dict[str, Any]]:
        return self.eva.framework_logs

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """``pipecat_metrics.jsonl`` rows so far."""
        return self.eva.metrics

    def _audit(self, t_ms: int, kind: str, value: Any) -> None:
        self.eva.audit_entry(t_ms, kind, value)

    def _framework(self, t_ns: int, typ: str, data: dict[str, Any]) -> None:
        self.eva.framework(self._ms(t_ns), typ, data)

    def _open_turn(self, t_ns: int) -> AssistantTurn:
        kind = "plain" if self._heard_user else "greeting"
        turn = AssistantTurn(index=len(self.turns), kind=kind, created_t_ns=t_ns)
        if kind != "greeting":
            turn.anchor_t_ns = self._anchor_t_ns
        self._anchor_t_ns = None
        self.turns.append(turn)
        return turn

    # ------------------------------------------------------------------ caller events
    def user_speech_start(self, t_ns: int, *, timestamp_ms: int | None = None) -> UserUtterance:
        """Caller's ``user_speech_start``; its epoch-ms stamp is used when plausible."""
        ms = timestamp_ms if timestamp_ms is not None else self._ms(t_ns)
        u = UserUtterance(index=len(self.users), start_t_ns=t_ns, start_epoch_ms=ms)
        self.users.append(u)
        self._heard_user = True
        return u

    def user_speech_stop(
        self, t_ns: int, *, timestamp_ms: int | None = None
    ) -> UserUtterance | None:
        if not self.users or self.users[-1].stop_t_ns is not None:
            return None
        u = self.users[-1]
        u.stop_t_ns = t_ns
        u.stop_epoch_ms = timestamp_ms if timestamp_ms is not None else self._ms(t_ns)
        return u

    def user_transcript(
        self,
        index: int,
        text: str,
        *,
        ok: bool,
        error: str | None = None,
        skipped: bool = False,
    ) -> None:
        """STT result for utterance ``index``; a failure leaves a placeholder entry, not a gap.

        ``skipped``: the STT guards found no speech (too short, no voiced audio): no entry at
        all, so silence never becomes a user turn.
        """
        u = self.users[index]
        u.transcript_ok, u.transcript_error = ok, error
        u.text = text if ok and text else None
        if skipped:
            u.skipped = True
            return
        value = text if ok and text else TRANSCRIPTION_PLACEHOLDER
        self._audit(u.start_epoch_ms, "user", value)
        self.eva.message("user", value)

    # ------------------------------------------------------------------ Hydra events
    def _drain(self, actions: list[Action]) -> list[Action]:
        actions.extend(TurnLogged(i) for i in self._logged)
        self._logged.clear()
        return actions

    def on_event(self, ev: HydraEvent, t_ns: int) -> list[Action]:
        """Feed one Hydra server event received at ``t_ns``; the actions it causes, in order
        (:class:`TurnLogged` last). A dispatcher over the per-event methods below, which the
        bridge core calls directly from its own single pass over each event."""
        match ev:
            case SpeechStarted():
                return self.speech_started(t_ns)
            case SpeechStopped():
                self.speech_stopped(t_ns)
            case ResponseCreated():
                self.response_created(ev.response_id, t_ns)
            case ResponseOutputAudioDelta():
                self.audio_delta(ev.response_id, t_ns)
            case ResponseOutputAudioTranscriptDelta():
                self.transcript_delta(ev.response_id, ev.delta, t_ns)
            case FunctionCallArgumentsDelta():
                self.call_args_delta(ev, t_ns)
            case FunctionCallArgumentsDone():
                self.call_args_done(ev.response_id, t_ns)
            case ResponseDone():
                return self.response_done(ev, t_ns)
            case ErrorEvent():
                return self.error(ev.code, ev.message, t_ns)
            case _:
                pass
        return self._drain([])

    def speech_started(self, t_ns: int) -> list[Action]:
        """``input_audio_buffer.speech_started``: the caller barges in on what is playing."""
        actions: list[Action] = []
        self._heard_user = True
        # Barge-in is about what the caller hears: a turn whose audio is all received
        # (response.done) can still be playing from the bridge's queue. A turn still
        # open (e.g. waiting for its tools' narration) is cut too: the caller moved on,
        # so nothing more of it may play — it ends here with what was heard.
        target = next((t for t in reversed(self.turns) if t.playing), None)
        if target is None and self.current is not None:
            target = self.current
        if target is not None:
            target.interrupted = True
            actions.append(BargeIn(target.index))
            if target.complete:
                target.status = "interrupted"
                self._log_turn(target, t_ns)
            else:
                self._close(target, t_ns, status="interrupted", reason="barge_in")
        return self._drain(actions)

    def speech_stopped(self, t_ns: int) -> None:
        """``input_audio_buffer.speech_stopped``: the anchor of the next turn's latency."""
        cur = self.current
        if cur is not None and cur.first_delta_t_ns is not None and cur.anchor_t_ns is None:
            # Hydra's late-speech_stopped quirk: it belongs to the turn already speaking.
            if cur.latency_reason == "no_speech_stopped":
                cur.latency_reason = "speech_stopped_after_first_audio"
        else:
            self._anchor_t_ns = t_ns

    def response_created(self, response_id: str | None, t_ns: int) -> None:
        cur = self.current or self._open_turn(t_ns)
        if cur.text_deltas:  # next response of the same turn: keep sentences apart
            cur.text_deltas.append((cur.samples_received, " "))
        rid = response_id or f"resp_{len(self._by_response)}"
        cur.response_ids.append(rid)
        self._by_response[rid] = cur
        cur.awaiting_tools = False
        if cur.kind == "tool" and "response_created_after_tools" not in cur.stages:
            cur.stages["response_created_after_tools"] = t_ns

    def audio_delta(self, response_id: str | None, t_ns: int) -> AssistantTurn:
        """An audio delta arrived (its samples are counted by :meth:`audio_received`)."""
        cur = self._turn_for(response_id, t_ns)
        if cur.first_delta_t_ns is None:
            cur.first_delta_t_ns = t_ns
            self._latency(cur, t_ns)
        if (
            cur.kind == "tool"
            and "response_create_sent" in cur.stages
            and "first_audio_after_tools" not in cur.stages
        ):
            cur.stages["first_audio_after_tools"] = t_ns
        return cur

    def transcript_delta(self, response_id: str | None, delta: str, t_ns: int) -> None:
        cur = self._turn_for(response_id, t_ns)
        cur.text_deltas.append((cur.samples_received, delta))

    def call_args_delta(self, ev: FunctionCallArgumentsDelta, t_ns: int) -> None:
        cur = self._turn_for(ev.response_id, t_ns)
        self._args.setdefault(ev.call_id, []).append(ev.delta)
        if ev.name:
            self._names.setdefault(ev.call_id, ev.name)
        if cur.kind != "greeting":
            cur.kind = "tool"
        cur.stages.setdefault("first_args_delta", t_ns)

    def call_args_done(self, response_id: str | None, t_ns: int) -> None:
        cur = self._turn_for(response_id, t_ns)
        if response_id:
            self.responses_with_calls.add(response_id)
        if cur.kind != "greeting":
            cur.kind = "tool"
        cur.stages.setdefault("first_args_delta", t_ns)
        cur.stages["args_done"] = t_ns
        cur.awaiting_tools = True

    def stray_response(self, response_id: str | None) -> bool:
        """A ``response.done`` for ``response_id`` would be stray: an id never seen while a turn
        is open or still playing. It cannot be that turn's (its responses are known), so taking
        it as the current turn's would close — or mark interrupted — the wrong answer."""
        if response_id is None or response_id in self._by_response:
            return False
        return self.current is not None or any(t.playing for t in self.turns)

    def response_done(self, ev: ResponseDone, t_ns: int) -> list[Action]:
        actions: list[Action] = []
        if self.stray_response(ev.response_id):
            # accounting only: its usage counts, no turn is touched (:meth:`stray_response`)
            if ev.usage:
                self.eva.token_usage(self._ms(t_ns), ev.usage)
            return self._drain(actions)
        cur = self._turn_for(ev.response_id, t_ns)
        if ev.usage:
            self._usage(cur, ev, t_ns)
        if ev.function_calls and ev.response_id:
            self.responses_with_calls.add(ev.response_id)
        if cur.complete or (
            cur.response_ids and ev.response_id not in (None, cur.response_ids[-1])
        ):
            # a late response.done (a tool response's, after its narration began; a
            # cancelled response after the barge-in closed its turn): accounting only
            return self._drain(actions)
        if ev.function_calls or (cur.awaiting_tools and ev.status == "completed"):
            cur.awaiting_tools = True
            return self._drain(actions)
        self._close(cur, t_ns, status=ev.status, reason=ev.reason)
        if not cur.interrupted:
            actions.append(TurnComplete(cur.index))
        return self._drain(actions)

    def error(self, code: str, message: str, t_ns: int) -> list[Action]:
        """A server ``error``; ``tool_response_timeout`` abandons a turn waiting for tools."""
        actions: list[Action] = []
        if len(message) > _MAX_ERROR_CHARS:  # a server error of any size: the record is capped
            message = f"{message[:_MAX_ERROR_CHARS]}… [{len(message)} chars]"
        self.errors.append(
            {"timestamp": self._ms(t_ns), "code": code[:_MAX_CODE_CHARS], "message": message}
        )
        cur = self.current
        if code == "tool_response_timeout" and cur is not None and cur.awaiting_tools:
            # Hydra abandoned the turn: close it so the caller is not left waiting.
            self._close(cur, t_ns, status="failed", reason=code)
            actions.append(TurnComplete(cur.index))
        return self._drain(actions)

    def abort_current(self, t_ns: int, *, reason: str) -> list[Action]:
        """The model session ended under an open turn: close it as failed (what was heard stays)."""
        cur = self.current
        if cur is None:
            return []
        self._close(cur, t_ns, status="failed", reason=reason)
        return self._drain([TurnComplete(cur.index)])

    def bind_response(self, response_id: str, index: int) -> None:
        """Attribute ``response_id`` to turn ``index`` (e.g. the narration the bridge requested
        for a turn the caller has interrupted) so it never opens a turn of its own."""
        turn = self.turns[index]
        if response_id not in turn.response_ids:
            turn.response_ids.append(response_id)
        self._by_response[response_id] = turn

    def _turn_for(self, response_id: str | None, t_ns: int) -> AssistantTurn:
        if response_id is not None and response_id in self._by_response:
            return self._by_response[response_id]
        cur = self.current or self._open_turn(t_ns)
        if response_id is not None:
            cur.response_ids.append(response_id)
            self._by_response[response_id] = cur
        return cur

    def _latency(self, turn: AssistantTurn, t_ns: int) -> None:
        if turn.kind == "greeting":
            turn.latency_reason = "greeting"
            return
        if turn.anchor_t_ns is None:
            turn.latency_reason = "no_speech_stopped"
            return
        v = (t_ns - turn.anchor_t_ns) / 1e6
        if v < LATENCY_MIN_MS:
            turn.latency_reason = f"below_{LATENCY_MIN_MS:g}ms_floor"
            return
        if v >= LATENCY_MAX_MS:
            turn.latency_reason = f"above_{LATENCY_MAX_MS:g}ms"
            return
        turn.model_response_ms = v
        self.eva.model_response(self._ms(t_ns), v)

    def _usage(self, turn: AssistantTurn, ev: ResponseDone, t_ns: int) -> None:
        u = ev.usage
        for k, v in u.items():
            turn.usage[k] = turn.usage.get(k, 0) + v
        self.eva.token_usage(self._ms(t_ns), u)

    def _close(self, turn: AssistantTurn, t_ns: int, *, status: str, reason: str | None) -> None:
        turn.done_t_ns = t_ns
        turn.status_reason = reason
        if status == "cancelled" and reason == "interrupted":
            turn.interrupted = True
        turn.status = "interrupted" if turn.interrupted else status
        if turn.interrupted or turn.played_out or turn.first_delta_t_ns is None:
            self._log_turn(turn, t_ns)
        # else: logged when its last frame has been played (``turn_played``) — what was heard
        # is only known then.

    def turn_played(self, index: int, t_ns: int) -> list[Action]:
        """The pacer sent the end mark of turn ``index``: all of its audio reached the caller."""
        turn = self.turns[index]
        turn.played_out = True
        if turn.complete:
            self._log_turn(turn, t_ns)
        return self._drain([])

    def _log_turn(self, turn: AssistantTurn, t_ns: int) -> None:
        if turn.logged:
            return
        turn.logged = True
        text = turn.heard_text
        if turn.first_delta_t_ns is None and not text:
            return  # a response that produced nothing audible (e.g. tool-only, then abandoned)
        if turn.interrupted:
            text = f"{text} [interrupted]".strip()
        start = turn.first_played_t_ns or turn.first_delta_t_ns or turn.created_t_ns
        a = self.eva.audit_entry(self._ms(start), "assistant", text)
        m = self.eva.message("assistant", text)
        if turn.interrupted:
            f = self.eva.framework(self._ms(t_ns), "s2s_transcript", {"frame": turn.heard_text})
        else:
            f = self.eva.framework(self._ms(t_ns), "llm_response", {"frame": turn.text})
        turn.entries = (a, m, f)
        self._framework(
            t_ns, "turn_end", {"frame": "turn_end", "was_interrupted": turn.interrupted}
        )
        self._logged.append(turn.index)

    def assistant_transcript(
        self, index: int, text: str, *, ok: bool, error: str | None = None
    ) -> None:
        """STT fallback for assistant turn ``index`` (audio came, transcript deltas did not).

        Rewrites the turn's audit entry, conversation message and framework-log frame in place
        (same timestamp) and marks the entry ``"transcript_source": "stt"``; a failed
        transcription leaves :data:`ASSISTANT_TRANSCRIPTION_PLACEHOLDER` (``"stt_failed"``).
        """
        turn = self.turns[index]
        if ok and text:
            turn.text_source, turn.stt_text, turn.stt_error = "stt", text, None
            value = text
        else:
            turn.text_source, turn.stt_text, turn.stt_error = "stt_failed", None, error
            value = ASSISTANT_TRANSCRIPTION_PLACEHOLDER
        if turn.entries is None:
            return
        if turn.interrupted:
            value = f"{value} [interrupted]"
        a, m, f = turn.entries
        self.audit[a]["value"] = value
        self.audit[a]["transcript_source"] = turn.text_source
        self.conversation_messages[m]["content"] = value
        self.framework_logs[f]["data"]["frame"] = turn.stt_text or ""

    # ------------------------------------------------------------------ audio and tools
    def audio_received(self, response_id: str | None, n_samples: int, t_ns: int) -> None:
        """``n_samples`` of this response's audio (48 kHz) were queued for playback."""
        self._turn_for(response_id, t_ns).samples_received += n_samples

    def audio_played(self, response_id: str | None, n_samples: int, t_ns: int) -> None:
        """The pacer sent ``n_samples`` (48 kHz) of this response to the caller at ``t_ns``."""
        turn = self._by_response.get(response_id or "")
        if turn is None:
            return
        if turn.first_played_t_ns is None:
            turn.first_played_t_ns = t_ns
            self._framework(t_ns, "turn_start", {"frame": "turn_start"})
        turn.last_played_t_ns = t_ns
        turn.samples_played += n_samples

    def tool_called(self, t_ns: int, *, name: str, params: dict[str, Any]) -> None:
        turn = self.current
        if turn is not None:
            turn.tool_calls.append({"name": name, "params": params})
        self._audit(self._ms(t_ns), "tool_call", {"tool": name, "parameters": params})

    def tool_result(self, t_ns: int, *, name: str, params: dict[str, Any], result: Any) -> None:
        turn = self.current
        if turn is not None:
            turn.stages["tool_executed"] = t_ns
            for c in reversed(turn.tool_calls):
                if c["name"] == name and "result" not in c:
                    c["result"] = result
                    break
        self._audit(self._ms(t_ns), "tool_response", {"tool": name, "response": result})
        self._framework(
            t_ns,
            "tool_call",
            {"frame": "tool_call", "tool_name": name, "arguments": params, "result": result},
        )

    def output_sent(self, t_ns: int) -> None:
        if (turn := self.current) is not None:
            turn.stages["output_sent"] = t_ns

    def response_create_sent(
        self, t_ns: int, *, wait_ms: float | None = None, reason: str | None = None
    ) -> None:
        """The bridge requested the narration; ``wait_ms`` of it was the bridge's own wait
        after the last ``function_call_output`` (``reason``: why it was safe to send)."""
        if (turn := self.current) is not None:
            turn.stages["response_create_sent"] = t_ns
            turn.tool_wait_ms = wait_ms
            turn.tool_request_reason = reason

    def finish(self, t_ns: int) -> list[Action]:
        """End of session: nothing is lost. An open turn is flushed as interrupted; a received
        turn whose audio had not all been played when the call ended keeps what was heard."""
        cur = self.current
        if cur is not None:
            cur.interrupted = cur.interrupted or cur.first_delta_t_ns is not None
            self._close(cur, t_ns, status="incomplete", reason="session_ended")
        for turn in self.turns:
            if not turn.logged:
                if turn.samples_played < turn.samples_received:
                    turn.interrupted = True
                    turn.status = "interrupted"
                self._log_turn(turn, t_ns)
        return self._drain([])

    # ------------------------------------------------------------------ summaries
    def turn_rows(self) -> list[dict[str, Any]]:
        """One plain dict per assistant turn (for run.json and DataFrames)."""
        rows = []
        for t in self.turns:
            rows.append(
                {
                    "index": t.index,
                    "kind": t.kind,
                    "status": t.status,
                    "interrupted": t.interrupted,
                    "text": t.stt_text if t.text_source == "stt" else t.heard_text,
                    "text_source": t.text_source,
                    "response_ids": t.response_ids,
                    "tools": [c["name"] for c in t.tool_calls],
                    "model_response_ms": t.model_response_ms,
                    "latency_reason": t.latency_reason,
                    **_tool_shares(t),
                    "v2v_ms": t.v2v_ms,
                    "v2v_reason": t.v2v_reason,
                    "status_reason": t.status_reason,
                    "played_ms": round(t.samples_played / 48.0, 3),
                    "first_played_epoch_ms": (
                        self._ms(t.first_played_t_ns) if t.first_played_t_ns else None
                    ),
                    "usage": t.usage,
                    "stages_ms": {
                        k: round((v - t.anchor_t_ns) / 1e6, 3)
                        for k, v in t.stages.items()
                        if t.anchor_t_ns is not None
                    },
                }
            )
        return rows

    def tool_call_args(self, call_id: str) -> str:
        return "".join(self._args.get(call_id, []))

    def tool_call_name(self, call_id: str) -> str:
        """The function name its arguments deltas carried (a ``.done`` may omit it)."""
        return self._names.get(call_id, "")


def _tool_shares(t: AssistantTurn) -> dict[str, Any]:
    """The bridge's own share of a tool turn's ``model_response`` and the model's alone.

    ``bridge_ms``: last ``function_call_arguments.done`` → ``response.create`` sent (tool
    execution, sending the outputs and the bridge's wait, ``tool_wait_ms``). When the turn's first
    audio came only after that request, ``model_response`` contains it and ``model_only_ms`` is
    ``model_response`` minus it; when the model spoke first, ``model_only_ms`` = ``model_response``.
    """
    st = t.stages
    if "args_done" not in st or "response_create_sent" not in st:
        return {"bridge_ms": None, "tool_wait_ms": None, "model_only_ms": t.model_response_ms}
    bridge = max(0.0, (st["response_create_sent"] - st["args_done"]) / 1e6)
    model_only = t.model_response_ms
    if model_only is not None and (t.first_delta_t_ns or 0) >= st["response_create_sent"]:
        model_only = model_only - bridge
    return {
        "bridge_ms": round(bridge, 3),
        "tool_wait_ms": round(t.tool_wait_ms, 3) if t.tool_wait_ms is not None else None,
        "model_only_ms": model_only,
        "tool_request_reason": t.tool_request_reason,
    }


def dumps_result(result: Any) -> str:
    """Tool result as the ``function_call_output`` string."""
    return json.dumps(result, ensure_ascii=False, default=str)
