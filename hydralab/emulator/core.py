"""Sans-I/O core of the offline Hydra emulator: one :class:`EmulatorSession` per connection.

The session is a synchronous state machine. The shell (:mod:`hydralab.emulator.server`) feeds
it client frames (:meth:`EmulatorSession.receive`) and wakes it at its deadline
(:meth:`EmulatorSession.advance`, :meth:`EmulatorSession.next_deadline_ns`); both take the
current monotonic time and return :class:`Send` / :class:`Close` actions, in wire order. After
actually writing a frame, the shell reports it with :meth:`EmulatorSession.sent`, which stamps
the frame's ground-truth records with the real send time. Nothing here sleeps, touches a
socket or reads a clock.

Protocol: the Hydra API reference on docs.smallest.ai (the AsyncAPI spec of
``wss://api.smallest.ai/waves/v1/s2s``, "Tool calling", "Turn detection & barge-in", "Errors &
reconnection", the Hydra model card), plus what live probes and the vendor's own bridge show:
a ``warning`` before ``session.created`` for ``?model=hydra``, ``output_audio_sample_rate`` in
``session.configured``, the undocumented ``response.output_audio_transcript.delta`` and the
~32 KB configure ceiling above which audio output is silently dropped.

Profiles: :class:`EmulatorConfig` defaults to the ``classic`` behaviour (one output rate, any
voice, spaced transcript phrases, a prompt ``response.done`` for tool responses, instant
barge-in and handshake, script resume after an injected ``internal_error``);
:meth:`EmulatorConfig.live` switches every knob to what the live service does (per-tag output
rate and voice roster, unspaced transcript tokens, a late ``response.done`` after tool calls,
a barge-in tail, a 1-2 s handshake, resume only with a reconnect-context block, the exact
``/waves/v1/s2s`` path). See :class:`EmulatorConfig` for each knob.

Clocks:
    * ``now_ns``/``t_ns``: monotonic ns supplied by the shell.
    * ``audio_start_ms``/``audio_end_ms`` and ``GroundTruth.audio_ms``: milliseconds of 16 kHz
      input audio accepted since ``session.configured`` was sent (the received-sample clock).
      Audio before that is dropped and does not advance it.
    * VAD semantics (:class:`hydralab.speech.vad.SpeechSegmenter`): ``audio_start_ms`` is the
      start of the first voiced 20 ms frame; ``speech_started`` is emitted once
      ``vad_min_speech_ms`` of voice has been received. ``audio_end_ms`` is the end of the last
      voiced frame; ``speech_stopped`` is emitted only after ``vad_hangover_ms`` of further
      non-voiced audio has been received, i.e. when the received-sample clock reaches
      ``audio_end_ms + vad_hangover_ms``. Detection therefore depends on samples received,
      never on how fast the client sends them.

Script mapping: ``assistant_turns[0]`` is played on ``generate_initial_response``; the ``k``-th
user utterance (0-based, counted by ``speech_stopped``) is answered by
``assistant_turns[k + 1]`` whether or not the greeting was played (``+ first_speech_turn - 1``
for a session that resumes a script after an injected ``internal_error``; see
``EmulatorConfig.resume`` for when a new session resumes), except that with drift on an
utterance answered by a drift question does not move the script on (the next one gets the
turn the question deferred).

Hard cases on demand: :class:`EmulatorFaults` (``EmulatorConfig.faults``) makes sessions hit
``server_full``/1013, ``internal_error``/1011, ``failed``/``incomplete`` responses and the late
``speech_stopped`` quirk; :meth:`EmulatorSession.turn_truths` is the per-turn ground truth for
latency-accuracy tests.

Drift: :class:`EmulatorDrift` (``EmulatorConfig.drift``) makes the scripted assistant stray
from the script the way a real model does: before a scripted turn it may first ask a question
of its own (re-ask a slot the caller gave, ask early for one the script asks later, check one),
wait for the caller's answer, then go on with the turn it deferred. Every question is logged
(ground truth ``asked`` / ``drift_question``, :attr:`EmulatorSession.questions`), so a caller
that listens can be scored against what it was asked.

Id chaining: a reference trace's ids are not always the live tools' (itsm ids are content
hashes). When a ``function_call_output`` arrives for a call whose script
:class:`~hydralab.script.ToolCall` has an ``expected_response``, the session learns
``trace id -> live id`` (:class:`hydralab.tools.idchain.IdChain`, ground truth
``id_chain_learned``) and rewrites the ids in the arguments of the calls, and in the written
text of the ``Speak`` steps, of every response it compiles afterwards. Ids a reference line spells
out for speech (``I N C, zero zero four ...``) are not recognised and stay as they are.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import json
import math
import random
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hydralab.protocol.context import parse_context
from hydralab.protocol.hydra import (
    ConversationItemAdded,
    ConversationItemCreate,
    ConversationItemDone,
    ErrorEvent,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    HydraEvent,
    InputAudioBufferAppend,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    SessionConfigure,
    SessionConfigured,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    UnknownEvent,
    WarningEvent,
    encode_pcm16,
    parse_event,
)
from hydralab.script import AssistantSteps, CallTools, Script, Speak, Step
from hydralab.secrets import redact_obj
from hydralab.speech.tts import AGENT_VOICE, SynthesizedSpeech, Synthesizer
from hydralab.speech.vad import SpeechEnd, SpeechSegmenter, SpeechStart
from hydralab.tools.idchain import IdChain

__all__ = [
    "DEFAULT_VOICE",
    "DRIFT_KINDS",
    "INPUT_RATE_HZ",
    "MIN_AUDIO_FRAME_BYTES",
    "MODEL_OUTPUT_RATES_HZ",
    "PROFILES",
    "S2S_PATH",
    "VOICE_ROSTERS",
    "Close",
    "EmulatorConfig",
    "EmulatorDrift",
    "EmulatorFaults",
    "EmulatorSession",
    "GroundTruth",
    "Output",
    "Send",
    "SpeechCache",
    "drift_texts",
    "live_config",
    "speak_texts",
    "split_phrases",
]

INPUT_RATE_HZ = 16_000
"""Hydra's input rate (PCM16 LE mono)."""
MIN_AUDIO_FRAME_BYTES = 320
"""Smallest accepted ``input_audio_buffer.append`` payload (10 ms at 16 kHz)."""
DEFAULT_VOICE = "sterling"
"""Hydra's default voice name, echoed when the configure omits ``voice``."""
DEPRECATED_MODEL = "hydra"
DEFAULT_MODEL = "hydra-v1.1"
"""The ``?model=`` tag assumed when the query has none (Hydra's default)."""
S2S_PATH = "/waves/v1/s2s"
"""The only path the live service upgrades (``wss://api.smallest.ai/waves/v1/s2s``)."""
PROFILES = ("classic", "live")
"""Names of the :class:`EmulatorConfig` presets."""
MODEL_OUTPUT_RATES_HZ: Mapping[str, int] = {
    "hydra-v1.1": 24_000,
    "hydra-v1.0": 48_000,
    DEPRECATED_MODEL: 48_000,
}
"""Output rate each tag announces on the live service (a probe saw 24 kHz on v1.1)."""
_V11_VOICES = frozenset(
    {"zoe", "maya", "elena", "ivy", "grace", "alex", "aria", "leo", "sam", "kai"}
)
_V10_VOICES = frozenset(
    {
        "vaughn",
        "brooks",
        "cole",
        "hayes",
        "pierce",
        "sterling",
        "ellis",
        "lane",
        "quinn",
        "arden",
        "rowan",
        "blair",
        "emery",
        "sawyer",
    }
)
VOICE_ROSTERS: Mapping[str, frozenset[str]] = {
    "hydra-v1.1": _V11_VOICES,
    "hydra-v1.0": _V10_VOICES,
    DEPRECATED_MODEL: _V11_VOICES | _V10_VOICES,
}
"""Voices the live service accepts per tag (Hydra model card, "Voices"); the deprecated tag has
no roster of its own and takes either. Omitting ``voice`` gives :data:`DEFAULT_VOICE` on every
tag."""
_VOICE_PARAM = "session.configure.session.voice"
_UPDATE_PARAM = "session.update.session"
_UPDATE_FROZEN = frozenset(
    {"instructions", "voice", "generate_initial_response", "output_audio_sample_rate"}
)
"""``session.update`` fields the docs name as frozen at handshake: accepted, not applied (a
guess: the docs say only ``tools`` is honoured and unknown fields are ``invalid_frame``)."""
_RATE_ANNOUNCEMENTS = frozenset({"number", "string", "absent"})
_TRANSCRIPT_MODES = frozenset({"spaced", "unspaced", "none"})
_TOOL_DONE_MODES = frozenset({"prompt", "late", "never"})
_HANDSHAKE_DELAY_ON = frozenset({"created", "configured", "both"})
_RESUME_MODES = frozenset({"always", "never", "with_context"})

_VAD_FRAME_MS = 20
_VAD_FRAME_BYTES = INPUT_RATE_HZ * _VAD_FRAME_MS // 1000 * 2
_ARGS_FRAGMENT_GAP_MS = 20.0  # wire spacing of function_call_arguments fragments
_NS_PER_MS = 1_000_000
_DOCUMENTED_OUTPUT_ITEM_KEYS = frozenset({"type", "call_id", "output"})
_PHRASE_BREAK = re.compile(r"(?<=[.,!?;:])\s+")
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "e.g.", "i.e.", "vs."}
)


_FAILED_DEFAULT_CODE = "server_error"
_INCOMPLETE_REASONS = frozenset({"max_output_tokens", "content_filter"})


@dataclass(frozen=True)
class EmulatorFaults:
    """Hard cases the emulator produces on demand (``docs/hydra-facts.md``). Defaults: none.

    Turn indices are indices into ``script.assistant_turns`` (0 = the greeting), the same as
    ``GroundTruth.turn_index`` and :meth:`EmulatorSession.turn_truths`. Sessions are counted by
    ``session_index`` (0 = the first accepted connection of an :class:`Emulator`).

    Attributes:
        server_full_sessions: The first N sessions are refused: ``error`` with
            ``code:"server_full"``, then close 1013 (the documented order). Nothing else is
            sent, and the session never reaches ``session.configured``.
        server_full_after_created: Send ``session.created`` (after the ``warning`` on
            ``?model=hydra``) before the ``server_full`` error instead of refusing right after
            the upgrade.
        internal_error_after_turns: After this many assistant turns of a session have ended
            (``completed``, or ``failed``/``incomplete`` by :attr:`response_status`; a barged-in
            turn does not count), right after that turn's ``response.done``, send ``error``
            ``code:"internal_error"`` and close 1011. ``0`` = right after ``session.configured``.
            ``None`` = never.
        internal_error_sessions: How many sessions get the internal error: those with
            ``server_full_sessions <= session_index < server_full_sessions +
            internal_error_sessions`` (so a single reconnect gets a healthy session).
        resume_after_internal_error: The session after one that died of an injected
            ``internal_error`` may continue the script where it stopped (its first user utterance
            is answered by the next unanswered ``assistant_turns`` entry, not by ``[1]``), as
            ``EmulatorConfig.resume`` decides; ``False`` = never. With ``resume="always"`` a
            fresh ``generate_initial_response`` still plays ``assistant_turns[0]`` (the
            reconnect greets again); with ``"with_context"`` a session given the context
            block does not greet.
        response_status: ``{turn_index: (status, detail)}``: the turn's first response that
            carries speech (its first response if the turn has no speech) stops after
            :attr:`partial_audio_fraction` of its audio deltas and ends with ``response.done``
            ``status`` = ``"failed"`` (``status_details = {"type": "failed", "error": {"code":
            detail or "server_error", "type": "server_error"}}``) or ``"incomplete"``
            (``status_details = {"type": "incomplete", "reason": detail or
            "max_output_tokens"}``; ``"content_filter"`` also allowed). No
            ``response.output_audio.done``, the assistant item is ``incomplete`` and the turn
            ends there (its tool calls and later steps are not played).
        partial_audio_fraction: Share of a faulted response's audio deltas that is sent
            (at least one, and at least one fewer than all when there are two or more).
        late_speech_stopped_turns: For the user utterances answered by these turns, hold
            ``input_audio_buffer.speech_stopped`` (and the user item's ``conversation.item.done``)
            and send it right after the response's first ``response.output_audio.delta`` (after
            the first ``response.function_call_arguments.delta`` of a tool-first response),
            Hydra's "speech_stopped after generation started" quirk. Its
            ``audio_end_ms`` is unchanged and the response is still scheduled from the moment
            the end of speech was detected. A barge-in or ``response.cancel`` before that point
            flushes it first.
        unanswered_turns: The user utterances these turns would answer get their
            ``speech_stopped`` (and the user item's ``conversation.item.done``) and nothing
            else: the model never answers them (no ``response.created``, no audio). The script
            moves past the turn, so a later utterance is answered by the turn after it.
        internal_error_at_speech_stopped: For the user utterance one of these turns would
            answer, right after its ``speech_stopped`` (and the user item's
            ``conversation.item.done``): ``error`` ``code:"internal_error"`` and close 1011,
            before any response. In the sessions :attr:`internal_error_sessions` selects (as
            :attr:`internal_error_after_turns`); the next session resumes at that turn.
    """

    server_full_sessions: int = 0
    server_full_after_created: bool = False
    internal_error_after_turns: int | None = None
    internal_error_sessions: int = 1
    resume_after_internal_error: bool = True
    response_status: Mapping[int, tuple[str, str | None]] = field(default_factory=dict, hash=False)
    partial_audio_fraction: float = 0.5
    late_speech_stopped_turns: frozenset[int] = frozenset()
    unanswered_turns: frozenset[int] = frozenset()
    internal_error_at_speech_stopped: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.server_full_sessions < 0 or self.internal_error_sessions < 0:
            raise ValueError("server_full_sessions and internal_error_sessions must be >= 0")
        if self.internal_error_after_turns is not None and self.internal_error_after_turns < 0:
            raise ValueError("internal_error_after_turns must be >= 0 or None")
        if not 0.0 < self.partial_audio_fraction <= 1.0:
            raise ValueError("partial_audio_fraction must be in (0, 1]")
        statuses = dict(self.response_status)
        for k, v in statuses.items():
            if not isinstance(v, tuple) or len(v) != 2:
                raise ValueError(f"response_status[{k}] must be a (status, detail) tuple")
            status, detail = v
            if status == "incomplete":
                if detail is not None and detail not in _INCOMPLETE_REASONS:
                    raise ValueError(
                        f"response_status[{k}]: incomplete reason must be one of "
                        f"{sorted(_INCOMPLETE_REASONS)}, not {detail!r}"
                    )
            elif status != "failed":
                raise ValueError(
                    f"response_status[{k}]: status must be 'failed' or 'incomplete', not {status!r}"
                )
        object.__setattr__(self, "response_status", statuses)
        for name in (
            "late_speech_stopped_turns",
            "unanswered_turns",
            "internal_error_at_speech_stopped",
        ):
            object.__setattr__(self, name, frozenset(getattr(self, name)))

    def status_details(self, turn_index: int) -> tuple[str, dict[str, Any]] | None:
        """``(status, status_details)`` of the faulted response of ``turn_index``, if any."""
        v = self.response_status.get(turn_index)
        if v is None:
            return None
        status, detail = v
        if status == "failed":
            code = detail or _FAILED_DEFAULT_CODE
            return status, {"type": "failed", "error": {"code": code, "type": "server_error"}}
        return status, {"type": "incomplete", "reason": detail or "max_output_tokens"}


DRIFT_KINDS = ("repeat", "reorder", "clarify")
"""The kinds of drift question, in the order their probabilities are stacked."""
_DRIFT_WRAPPERS = {
    "repeat": "Sorry, I didn't catch that. ",
    "reorder": "",
    "clarify": "Just to be sure — ",
}


@dataclass(frozen=True)
class EmulatorDrift:
    """The emulated model strays from the script (default of each kind: never).

    When a user turn ends and the next scripted assistant turn would start, the session draws
    (seeded) whether to ask a question of its own first: ``repeat`` with :attr:`repeat_prob`,
    else ``reorder`` with :attr:`reorder_prob`, else ``clarify`` with :attr:`clarify_prob`.
    The question is one assistant turn (audio and transcript, no tool calls); the caller's next
    user turn answers it and the deferred scripted turn follows, the script going on exactly
    where it was. Each question targets one slot (a key of ``Script.information``, the
    record's ``information_required``) and uses the reference trace's own wording: the
    sentence of the scripted turn that asks for it
    (:meth:`~hydralab.script.AssistantSteps.question`):

    * ``repeat``: a slot an earlier scripted turn asked for (the caller gave it), re-asked:
      ``"Sorry, I didn't catch that. " + question``;
    * ``reorder``: a slot only a later scripted turn asks for, asked now with that turn's
      question;
    * ``clarify``: a slot the caller gave, checked: ``"Just to be sure — " + question``.

    Never before the turn that answers the caller's first line (assistant turn 1), never once
    the last scripted turn has begun, never twice in a row, at most :attr:`max_per_call` per
    session; a drawn kind with no slot to ask about asks nothing (so a script without slots,
    :attr:`hydralab.script.AssistantSteps.asks`, never drifts). A question is an assistant
    turn like any other for ``EmulatorFaults.internal_error_after_turns``.

    Attributes:
        repeat_prob: Probability of a ``repeat`` question before a scripted turn.
        reorder_prob: Probability of a ``reorder`` question.
        clarify_prob: Probability of a ``clarify`` question. The three sum to at most 1.
        seed: Seeds the draws (with the session index; a stream of its own, so the latency
            draws of the scripted turns before the first question are unchanged).
        max_per_call: Most drift questions a session asks.
    """

    repeat_prob: float = 0.0
    reorder_prob: float = 0.0
    clarify_prob: float = 0.0
    seed: int = 0
    max_per_call: int = 1

    def __post_init__(self) -> None:
        probs = (self.repeat_prob, self.reorder_prob, self.clarify_prob)
        if not all(0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"drift probabilities must be in [0, 1], not {probs}")
        if sum(probs) > 1.0 + 1e-9:
            raise ValueError(f"drift probabilities must sum to at most 1, not {sum(probs):g}")
        if self.max_per_call < 0:
            raise ValueError("max_per_call must be >= 0")

    def kind_for(self, u: float) -> str | None:
        """The kind a uniform draw ``u`` in ``[0, 1)`` selects (``None``: no drift)."""
        edge = 0.0
        probs = (self.repeat_prob, self.reorder_prob, self.clarify_prob)
        for kind, p in zip(DRIFT_KINDS, probs, strict=True):
            edge += p
            if u < edge:
                return kind
        return None


@dataclass(frozen=True)
class EmulatorConfig:
    """Behaviour of the emulator (shared by all sessions of one :class:`Emulator`).

    The defaults are the ``classic`` profile; :meth:`live` returns the live service's values
    (given in brackets below), :meth:`for_profile` either by name.

    Attributes:
        output_rate_hz: Assistant audio rate, announced as ``output_audio_sample_rate`` (the
            rate of every tag unless :attr:`rate_by_model`, else of unknown tags).
        delivery_speed: Audio deltas are delivered this many times faster than real time.
        delta_ms: Audio per ``response.output_audio.delta``.
        latency_median_ms: Median of the seeded lognormal response latency (after
            ``speech_stopped``, after ``session.configured`` for the greeting, after
            ``response.create`` for post-tool narration).
        latency_sigma: Sigma of that lognormal (of the natural log).
        latency_min_ms: Lower clip of the drawn latency.
        latency_max_ms: Upper clip of the drawn latency.
        tool_args_delay_ms: Median delay before the first arguments delta of a response that
            starts with tool calls (same sigma; clipped to ``[median / 2, latency_max_ms]``).
        seed: Seeds latencies, argument fragmentation, ids, handshake delays and synthesis
            noise.
        vad_mode: webrtcvad aggressiveness.
        vad_hangover_ms: Non-voiced audio that ends a user turn.
        vad_min_speech_ms: Voiced audio needed before ``speech_started``.
        vad_noise_gate_db: Voiced only this many dB above the line's noise floor
            (:class:`~hydralab.speech.vad.SpeechSegmenter`'s ``noise_gate_db``); ``None``
            (default): webrtcvad alone, which takes steady noise of a 10 dB SNR line for speech.
        tool_output_timeout_s: Time after a tool response's last ``.done`` frame for all outputs
            plus a ``response.create``; then ``error tool_response_timeout``.
        idle_timeout_s: No client frame for this long -> close 1000.
        max_configure_bytes: Configure frames above this size are accepted but the session
            never sends audio (Hydra's silent-drop quirk).
        update_ceiling_bytes: A ``session.update`` frame above this size is applied and echoed,
            but audio output is muted for the rest of the session (from the next response on),
            as for an oversized configure, with an ``update_oversized`` ground-truth record of
            the sizes. A GUESS — the conservative one: whether Hydra's ceiling applies to
            ``session.update`` is unverified (``hydralab probe`` scenario ``configure_size``
            measures it). ``None``: updates are not limited.
        expected_api_key: When set, the upgrade is refused with HTTP 401 for any other key.
        voice: eSpeak NG voice that renders the assistant.
        faults: Hard cases to produce on demand (:class:`EmulatorFaults`; default none).
        profile: Name of the preset these values came from (``classic`` or ``live``); a label
            only, the knobs below decide.
        rate_by_model: The output rate follows the ``?model=`` tag
            (:data:`MODEL_OUTPUT_RATES_HZ`: v1.1 24 kHz, v1.0 and ``hydra`` 48 kHz) [on].
        rate_announcement: How ``session.configured`` announces the rate: ``"number"`` (a JSON
            number), ``"string"`` (``"24000"``) or ``"absent"`` (no key) [number].
        validate_voice: Check ``voice`` against the tag's roster (:data:`VOICE_ROSTERS`): an
            unknown voice gets an ``invalid_request_error`` with ``param`` =
            ``session.configure.session.voice`` (and the configure's ``event_id``) and no
            ``session.configured``. The socket stays open (errors are non-fatal unless a close
            follows; the idle timeout still applies) and the rejected configure does not count,
            so a corrected one is accepted. Tags without a roster accept any voice [on].
        transcript_deltas: ``response.output_audio_transcript.delta`` text: ``"spaced"`` (phrases
            carrying their own leading space; ``"".join`` is the text), ``"unspaced"`` (the same
            phrases with no leading or trailing whitespace, so deltas must be joined with a
            space) or ``"none"`` (no transcript deltas) [unspaced].
        tool_response_done: ``response.done`` of a response that ends in tool calls:
            ``"prompt"`` (right after the last ``.done``), ``"late"`` (only once the client's
            ``response.create`` arrives or :attr:`tool_response_done_after_ms` after the last
            ``.done``, whichever is first; the documented flow has no ``response.done`` there)
            or ``"never"``. The narration starts once the outputs and ``response.create`` are
            in, whatever was sent [late].
        tool_response_done_after_ms: The ``"late"`` timer [1500].
        tool_response_done_empty_output: That ``response.done`` carries ``output: []`` instead of
            the function-call items [off; unverified on the live service].
        barge_in_tail_ms: After a ``speech_started`` that interrupts a streaming response, up to
            this much more of its audio (the deltas it still had to send, at their pace) goes
            out before its ``response.done`` ``cancelled``/``interrupted``; 0 = none [400].
        handshake_delay_ms: ``(lo, hi)`` range of the seeded uniform delay of the handshake
            frames chosen by :attr:`handshake_delay_on` (``(0, 0)`` = none) [(1000, 2000)].
        handshake_delay_on: ``"configured"`` (``session.configured`` comes the delay after the
            configure), ``"created"`` (``session.created`` after the upgrade) or ``"both"``
            (each drawn) [configured].
        resume: After an injected ``internal_error``, whether the next session continues the
            script: ``"always"`` (as if it knew the call), ``"never"`` (Hydra has no resume) or
            ``"with_context"`` (only when its configure's instructions carry a reconnect-context
            block, :func:`hydralab.protocol.context.parse_context`; such a session does not
            greet again). ``faults.resume_after_internal_error=False`` disables it too
            [with_context].
        strict_path: Refuse upgrades to any path but :data:`S2S_PATH` with HTTP 404 [on].
        drift: Stray from the script with questions of its own (:class:`EmulatorDrift`);
            ``None`` (the default, in both profiles): follow it exactly.
    """

    output_rate_hz: int = 48000
    delivery_speed: float = 10.0
    delta_ms: int = 100
    latency_median_ms: float = 600.0
    latency_sigma: float = 0.25
    latency_min_ms: float = 200.0
    latency_max_ms: float = 2500.0
    tool_args_delay_ms: float = 150.0
    seed: int = 0
    vad_mode: int = 3
    vad_hangover_ms: int = 600
    vad_min_speech_ms: int = 200
    vad_noise_gate_db: float | None = None
    tool_output_timeout_s: float = 15.0
    idle_timeout_s: float = 30.0
    max_configure_bytes: int = 32_768
    update_ceiling_bytes: int | None = None
    expected_api_key: str | None = field(default=None, repr=False)
    voice: str = AGENT_VOICE
    faults: EmulatorFaults = field(default_factory=EmulatorFaults)
    profile: str = "classic"
    rate_by_model: bool = False
    rate_announcement: str = "number"
    validate_voice: bool = False
    transcript_deltas: str = "spaced"
    tool_response_done: str = "prompt"
    tool_response_done_after_ms: float = 1500.0
    tool_response_done_empty_output: bool = False
    barge_in_tail_ms: int = 0
    handshake_delay_ms: tuple[float, float] = (0.0, 0.0)
    handshake_delay_on: str = "configured"
    resume: str = "always"
    strict_path: bool = False
    drift: EmulatorDrift | None = None

    def __post_init__(self) -> None:
        if self.delta_ms <= 0 or self.delivery_speed <= 0:
            raise ValueError("delta_ms and delivery_speed must be positive")
        for rate in self.output_rates_hz():
            if rate <= 0 or rate * self.delta_ms % 1000:
                raise ValueError("output_rate_hz * delta_ms must give whole samples per delta")
        if not 0 < self.latency_min_ms <= self.latency_max_ms:
            raise ValueError("need 0 < latency_min_ms <= latency_max_ms")
        if self.latency_median_ms <= 0 or self.tool_args_delay_ms <= 0 or self.latency_sigma < 0:
            raise ValueError("latency medians must be positive and latency_sigma >= 0")
        if self.tool_output_timeout_s <= 0 or self.idle_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.update_ceiling_bytes is not None and self.update_ceiling_bytes <= 0:
            raise ValueError("update_ceiling_bytes must be positive (or None: no limit)")
        choices = {
            "profile": (self.profile, frozenset(PROFILES)),
            "rate_announcement": (self.rate_announcement, _RATE_ANNOUNCEMENTS),
            "transcript_deltas": (self.transcript_deltas, _TRANSCRIPT_MODES),
            "tool_response_done": (self.tool_response_done, _TOOL_DONE_MODES),
            "handshake_delay_on": (self.handshake_delay_on, _HANDSHAKE_DELAY_ON),
            "resume": (self.resume, _RESUME_MODES),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {sorted(allowed)}, not {value!r}")
        if self.tool_response_done_after_ms < 0 or self.barge_in_tail_ms < 0:
            raise ValueError("tool_response_done_after_ms and barge_in_tail_ms must be >= 0")
        lo, hi = self.handshake_delay_ms
        if not 0 <= lo <= hi:
            raise ValueError(f"handshake_delay_ms must be (lo, hi), 0 <= lo <= hi; not {lo, hi}")
        object.__setattr__(self, "handshake_delay_ms", (float(lo), float(hi)))

    @classmethod
    def live(cls, **overrides: Any) -> EmulatorConfig:
        """The ``live`` profile: every knob as the live service behaves; ``overrides`` win."""
        return cls(**{**_LIVE, **overrides})

    @classmethod
    def for_profile(cls, profile: str, **overrides: Any) -> EmulatorConfig:
        """The ``classic`` (the defaults) or ``live`` preset with ``overrides`` applied."""
        if profile == "live":
            return cls.live(**overrides)
        if profile == "classic":
            return cls(**overrides)
        raise ValueError(f"unknown emulator profile {profile!r}: use one of {', '.join(PROFILES)}")

    def rate_for_model(self, model: str) -> int:
        """Output rate of a session opened with ``?model=model``."""
        if self.rate_by_model:
            return MODEL_OUTPUT_RATES_HZ.get(model, self.output_rate_hz)
        return self.output_rate_hz

    def output_rates_hz(self) -> frozenset[int]:
        """Every output rate a session may use (the speech to render before serving)."""
        if self.rate_by_model:
            return frozenset({self.output_rate_hz, *MODEL_OUTPUT_RATES_HZ.values()})
        return frozenset({self.output_rate_hz})


def live_config(**overrides: Any) -> EmulatorConfig:
    """:meth:`EmulatorConfig.live`: the ``live`` profile with ``overrides`` applied."""
    return EmulatorConfig.live(**overrides)


_LIVE: dict[str, Any] = {
    "profile": "live",
    "rate_by_model": True,
    "rate_announcement": "number",
    "validate_voice": True,
    "transcript_deltas": "unspaced",
    "tool_response_done": "late",
    "tool_response_done_after_ms": 1500.0,
    "tool_response_done_empty_output": False,
    "barge_in_tail_ms": 400,
    "handshake_delay_ms": (1000.0, 2000.0),
    "handshake_delay_on": "configured",
    "resume": "with_context",
    "strict_path": True,
    # UNVERIFIED GUESS (no spec, doc page or recorded frame says how Hydra's endpointing
    # treats a noisy line): a production endpoint tracks the noise floor; webrtcvad alone
    # hears a 10 dB SNR line's steady noise as speech and never ends the turn. Results on
    # degraded lines against the emulator measure this guess, not Hydra.
    "vad_noise_gate_db": 6.0,
}


@dataclass(frozen=True)
class GroundTruth:
    """One ground-truth record of what the emulator did, for latency-accuracy checks.

    Attributes:
        kind: What happened (``speech_started``, ``response_created``, ``first_audio_delta``,
            ``premature_response_create`` ...).
        t_ns: Monotonic ns when the emulator sent the frame (stamped by the shell just before
            the write) or received the client frame.
        response_id: Response concerned, if any.
        turn_index: Index into ``script.assistant_turns``, if any.
        injected_latency_ms: Drawn latency of the response (scheduling and response records).
        audio_ms: Received-sample clock: ``audio_start_ms``/``audio_end_ms`` for the speech
            records, else the input ms received so far.
        output_audio_ms: Assistant audio of this response sent up to and including this frame.
        detail: Free text (sizes, flags, reasons).
        event_id: ``event_id`` of the frame sent (records of sent frames only).
    """

    kind: str
    t_ns: int
    response_id: str | None = None
    turn_index: int | None = None
    injected_latency_ms: float | None = None
    audio_ms: int | None = None
    output_audio_ms: int | None = None
    detail: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class Send:
    """Write ``text`` (the serialized ``event``); then report it with ``sent()``."""

    event: HydraEvent
    text: str
    truths: tuple[GroundTruth, ...] = ()


@dataclass(frozen=True)
class Close:
    """Close the WebSocket with ``code`` / ``reason``."""

    code: int
    reason: str


Output = Send | Close


def split_phrases(text: str) -> list[tuple[int, str]]:
    """Split at sentence/comma boundaries into ``(char_pos, delta)`` pairs.

    Each delta after the first carries its own leading whitespace, so ``"".join`` of the deltas
    is ``text`` exactly; ``char_pos`` is where the phrase's first word starts in ``text``.
    """
    out: list[tuple[int, str]] = []
    prev_cut = 0
    prev_word = 0
    for m in _PHRASE_BREAK.finditer(text):
        if m.end() >= len(text):
            break
        before = text[prev_word : m.start()].split()
        if before and before[-1].lower() in _ABBREVIATIONS:
            continue
        out.append((prev_word, text[prev_cut : m.start()]))
        prev_cut, prev_word = m.start(), m.end()
    out.append((prev_word, text[prev_cut:]))
    return [(pos, d) for pos, d in out if d]


def speak_texts(script: Script) -> list[str]:
    """Every distinct ``Speak`` text of the script, in order of appearance."""
    seen: dict[str, None] = {}
    for turn in script.assistant_turns:
        for step in turn.steps:
            if isinstance(step, Speak) and step.text.strip():
                seen.setdefault(step.text, None)
    return list(seen)


def drift_texts(script: Script) -> list[str]:
    """Every text a drift question about ``script`` can say (:class:`EmulatorDrift`), in
    order, for a shell to render before serving (a miss is rendered when asked)."""
    seen: dict[str, None] = {}
    for turn in script.assistant_turns:
        for slot in turn.asks:
            question = turn.question(slot)
            if question:
                for kind in DRIFT_KINDS:
                    seen.setdefault(_DRIFT_WRAPPERS[kind] + question, None)
    return list(seen)


class SpeechCache:
    """Synthesizes each assistant text once (eSpeak NG, -50 dBFS noise, seeded) and caches it.

    The shell primes it in a worker thread before serving, so synthesis never delays the wire;
    a miss synthesizes inline (about 1600x real time). eSpeak NG is not bit-reproducible across
    a process's history: the same text rendered after other texts can differ by a few samples
    (measured: "Go ahead." 18,405 vs 18,406 samples at 22.05 kHz), so a text is rendered once
    per cache and reused, and tests never depend on a few samples of speech length.

    Args:
        sample_rate_hz: Output rate of the rendered audio.
        voice: eSpeak NG voice.
        seed: Noise seed.
        synthesize: Replacement renderer ``text -> SynthesizedSpeech`` (tests).
    """

    def __init__(
        self,
        *,
        sample_rate_hz: int,
        voice: str = AGENT_VOICE,
        seed: int = 0,
        synthesize: Callable[[str], SynthesizedSpeech] | None = None,
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.voice = voice
        self.seed = seed
        self._synthesize = synthesize
        self._cache: dict[str, SynthesizedSpeech] = {}

    def get(self, text: str) -> SynthesizedSpeech:
        """The rendering of ``text`` at :attr:`sample_rate_hz`."""
        u = self._cache.get(text)
        if u is None:
            if self._synthesize is not None:
                u = self._synthesize(text)
            else:
                u = Synthesizer().synthesize_with_words(
                    text,
                    voice=self.voice,
                    sample_rate_hz=self.sample_rate_hz,
                    noise_dbfs=-50.0,
                    seed=self.seed,
                )
            if u.sample_rate_hz != self.sample_rate_hz:
                raise ValueError(
                    f"renderer returned {u.sample_rate_hz} Hz, expected {self.sample_rate_hz}"
                )
            self._cache[text] = u
        return u

    def prime(self, texts: Iterable[str]) -> None:
        """Render every text now (call from a worker thread)."""
        for t in texts:
            self.get(t)


# ---------------------------------------------------------------- internal state


@dataclass
class _Planned:
    """One scheduled frame of the response being streamed, and its effect on the state."""

    due_ns: int
    send: Send | None
    audio_samples: int = 0
    transcript: str = ""
    call_done: str | None = None
    message_done: bool = False
    final: bool = False
    held_stop: bool = False  # a held speech_stopped (late_speech_stopped_turns)


@dataclass
class _Call:
    call_id: str
    name: str
    arguments: str
    item_id: str
    output_index: int


@dataclass
class _Response:
    id: str
    turn_index: int | None
    latency_ms: float
    text: str
    message_item_id: str | None
    calls: list[_Call]
    plan: deque[_Planned]
    input_tokens: int
    audio_samples_sent: int = 0
    transcript_sent: str = ""
    calls_done: set[str] = field(default_factory=set)
    message_done: bool = False
    end_status: tuple[str, dict[str, Any]] | None = None  # injected failed/incomplete
    cancel_reason: str | None = None  # cancelled, still sending its barge-in tail
    create_seen: bool = False  # a response.create arrived while it was streaming


@dataclass(frozen=True)
class _DriftQuestion:
    """A question the session asks of its own before scripted turn ``defers``."""

    kind: str  # one of DRIFT_KINDS
    target: str  # the slot (information_required key) it is about
    slots: tuple[str, ...]  # every slot the question's sentence asks for, target first
    source: int  # the scripted turn whose question it words
    defers: int  # the scripted turn it comes before
    text: str


@dataclass
class _Turn:
    index: int  # the scripted turn (a drift question: the one it defers)
    steps: tuple[Step, ...]
    trigger: str  # "initial" | "speech" | "tool_output"
    pos: int = 0  # next step to play
    phase: str = "waiting"  # "waiting" | "streaming" | "awaiting_tools"
    start_due_ns: int = 0
    latency_ms: float = 0.0
    responses_started: int = 0
    pending_calls: dict[str, str] = field(default_factory=dict)  # call_id -> name
    outputs: dict[str, str] = field(default_factory=dict)
    create_after_last_output: bool = False
    tool_deadline_ns: int = 0
    status_fault_done: bool = False
    drift: _DriftQuestion | None = None

    @property
    def truth_index(self) -> int | None:
        """``turn_index`` of its ground truth: ``None`` for a drift question (no script turn)."""
        return None if self.drift is not None else self.index


def _elide(d: dict[str, Any]) -> dict[str, Any]:
    """Copy of a frame dict with audio payloads replaced by their size and keys redacted."""
    out = _redact(d)
    assert isinstance(out, dict)
    if out.get("type") in ("input_audio_buffer.append", "response.output_audio.delta"):
        for key in ("audio", "delta"):
            v = out.get(key)
            if isinstance(v, str):
                out[key] = f"<{len(v) * 3 // 4} bytes base64>"
    red: dict[str, Any] = redact_obj(out)
    return red


def _redact(v: Any) -> Any:
    """Deep copy of JSON data with the value of any ``*api_key*`` key replaced."""
    if isinstance(v, dict):
        return {
            k: "<redacted>" if "api_key" in str(k).lower() else _redact(x) for k, x in v.items()
        }
    if isinstance(v, list):
        return [_redact(x) for x in v]
    return v


class EmulatorSession:
    """One emulated Hydra session (sans-I/O).

    Args:
        script: What the assistant says and which tools it calls, turn by turn.
        config: Emulator behaviour.
        speech: Renders assistant text at this session's output rate
            (``config.rate_for_model(model)``).
        model: The ``?model=`` query value (``hydra`` gets the deprecation warning).
        session_index: Index of this connection; seeds the session's random streams and
            selects the session-level faults (:class:`EmulatorFaults`).
        first_speech_turn: The script turn that answers the first user utterance (1 unless a
            test starts mid-script).
        resume_turn: Where the previous session, killed by an injected ``internal_error``,
            stopped (its :attr:`next_speech_turn`); ``None`` if there is none. Whether this
            session continues from there is ``config.resume``'s call.
        id_chain: The ``trace id -> live id`` map to learn into and apply (default: a new one
            for this session; a shell may pass the previous session's to carry it across a
            reconnect).

    Attributes:
        log: Ground-truth records, in time order.
        frames_in: Client frames as parsed dicts (audio elided), in arrival order.
        frames_out: Frames actually sent, as dicts (audio elided), in send order.
        dropped_audio_frames: ``input_audio_buffer.append`` frames received before
            ``session.configured`` was sent.
        configure_bytes: UTF-8 size of the accepted ``session.configure`` frame.
        closed_reason: Why the session ended (``None`` while open).
        server_full: This session is refused with ``server_full`` / 1013.
        internal_error_sent: The injected ``internal_error`` was emitted (close 1011 follows).
        output_rate_hz: Rate of the assistant audio (and the announced rate).
        context_messages: Messages in the configure's reconnect-context block (``None``: no
            block; set when the configure is accepted).
        resumed_turn: The script turn this session resumed at (``None``: it started from the
            first reply).
        id_chain: What the session learned of the trace's ids (``mapping``: trace id -> live
            id, in learning order).
        turns_started: Assistant turns whose first response has started, drift questions
            included: the next turn's number (0 = the first, the greeting when it is played).
        questions: What the assistant asked, one dict per question as its turn starts (for
            ``run.json``): ``turn`` (its number in :attr:`turns_started` order: the bridge's
            and the caller's assistant turn index when every turn reaches them), ``kind``
            (``"script"`` for a scripted turn with slots, else the drift kind), ``slots``
            (information_required keys), ``expected`` (``{slot: value}``), ``script_turn``
            (the scripted turn; for a drift question the one it deferred) and, for a drift
            question, ``target``, ``source_turn`` (whose question it words) and ``text``.
    """

    def __init__(
        self,
        script: Script,
        *,
        config: EmulatorConfig,
        speech: SpeechCache,
        model: str = DEFAULT_MODEL,
        session_index: int = 0,
        first_speech_turn: int = 1,
        resume_turn: int | None = None,
        id_chain: IdChain | None = None,
    ) -> None:
        self.output_rate_hz = config.rate_for_model(model)
        if speech.sample_rate_hz != self.output_rate_hz:
            raise ValueError(
                f"speech cache rate {speech.sample_rate_hz} Hz differs from the session's "
                f"output rate {self.output_rate_hz} Hz"
            )
        if first_speech_turn < 1 or (resume_turn is not None and resume_turn < 1):
            raise ValueError(
                "first_speech_turn and resume_turn must be >= 1 (turn 0 is the greeting)"
            )
        self.script = script
        self.config = config
        self.speech = speech
        self.model = model
        self.session_index = session_index
        self.log: list[GroundTruth] = []
        self.frames_in: list[dict[str, Any]] = []
        self.frames_out: list[dict[str, Any]] = []
        self.dropped_audio_frames = 0
        self.configure_bytes: int | None = None
        self.declared_tools: list[Any] = []
        """The tools in force: the configure's, replaced by each applied ``session.update``."""
        self.update_bytes: list[int] = []
        """Sizes of the ``session.update`` frames received after the configure."""
        self.closed_reason: str | None = None
        self.error: str | None = None
        self.context_messages: int | None = None
        self.resumed_turn: int | None = None

        self._rng = np.random.default_rng([config.seed, session_index])
        # A stream of its own, so the handshake delays never shift the latency draws.
        self._handshake_rng = np.random.default_rng([config.seed, session_index, 1])
        self._ids = random.Random(config.seed * 1_000_003 + session_index)
        self.session_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        self._segmenter = SpeechSegmenter(
            sample_rate_hz=INPUT_RATE_HZ,
            frame_ms=_VAD_FRAME_MS,
            mode=config.vad_mode,
            hangover_ms=config.vad_hangover_ms,
            min_speech_ms=config.vad_min_speech_ms,
            noise_gate_db=config.vad_noise_gate_db,
        )
        self._configure_received = False
        self._configured = False
        self._mute_audio = False
        self._opened = False
        self._closing = False
        self._last_input_ns = 0
        self._buf = bytearray()
        self._samples_in = 0
        self._vad_frames = 0
        self._user_item_id: str | None = None
        self._user_speech_ms = 0
        self._last_item_id: str | None = None
        self._prev: dict[str, str | None] = {}
        self._user_start_ms = 0
        self._next_turn = first_speech_turn
        self._resume_turn = resume_turn
        if resume_turn is not None and config.resume == "always":
            self._next_turn = self.resumed_turn = resume_turn
        self._turn: _Turn | None = None
        self._response: _Response | None = None
        self._chunk_samples = self.output_rate_hz * config.delta_ms // 1000
        self._chunk_gap_ns = round(config.delta_ms * _NS_PER_MS / config.delivery_speed)
        f = config.faults
        self.server_full = session_index < f.server_full_sessions
        self._internal_error_armed = (
            f.internal_error_after_turns is not None
            and f.server_full_sessions
            <= session_index
            < f.server_full_sessions + f.internal_error_sessions
        )
        self._stop_error_armed = bool(f.internal_error_at_speech_stopped) and (
            f.server_full_sessions
            <= session_index
            < f.server_full_sessions + f.internal_error_sessions
        )
        self.internal_error_sent = False
        self._turns_ended = 0
        self._held_stop: tuple[int, list[Send]] | None = None
        # Delayed handshake frames: (due_ns, frames) of session.created / session.configured.
        self._created_pending: tuple[int, list[Send]] | None = None
        self._configured_pending: tuple[int, Send] | None = None
        self._greet_when_configured = False
        # A tool response's withheld response.done (tool_response_done="late"): (due_ns, frame).
        self._tool_done_pending: tuple[int, Send] | None = None
        self.id_chain = id_chain if id_chain is not None else IdChain()
        # call_id -> the trace response of the script call it was compiled from (id chaining)
        self._expected_responses: dict[str, dict[str, Any]] = {}
        self.turns_started = 0
        self.questions: list[dict[str, Any]] = []
        drift = config.drift
        self._drift_rng = random.Random(
            f"drift/{drift.seed if drift is not None else 0}/{session_index}"
        )
        self._drifts = 0
        self._drift_blocked = False  # the last user turn was answered by a drift question

    # ------------------------------------------------------------ public surface

    @property
    def configured(self) -> bool:
        """Whether the ``session.configure`` frame was accepted."""
        return self._configured

    @property
    def received_audio_ms(self) -> int:
        """Milliseconds of 16 kHz input audio accepted since configure."""
        return self._samples_in * 1000 // INPUT_RATE_HZ

    @property
    def flags(self) -> list[GroundTruth]:
        """Ground-truth records that flag client misbehaviour."""
        kinds = {
            "premature_response_create",
            "undocumented_item_fields",
            "unknown_call_id",
            "invalid_audio",
            "configure_ignored",
            "session_update_invalid",
            "audio_before_configure",
            "response_create_unexpected",
            "tool_response_timeout",
        }
        return [g for g in self.log if g.kind in kinds]

    @property
    def next_speech_turn(self) -> int:
        """Script turn that would answer the next user utterance."""
        return self._next_turn

    def kinds(self) -> list[str]:
        """The ``kind`` of every ground-truth record, in order."""
        return [g.kind for g in self.log]

    def turn_truths(self) -> list[dict[str, Any]]:
        """Per assistant turn, what the emulator did and when (for latency-accuracy tests).

        One dict per ``turn_index`` that was scheduled, in order of first appearance:

        * ``turn_index``: index into ``script.assistant_turns``;
        * ``speech_stopped_sent_ns``: monotonic ns the ``speech_stopped`` that triggered the turn
          was written (``None`` for the greeting); ``speech_stopped_event_id``;
        * ``speech_end_detected_ns``: when the end of speech was detected and the response
          scheduled (earlier than ``speech_stopped_sent_ns`` for a late ``speech_stopped``);
        * ``audio_end_ms``: the user's end of speech on the received-sample clock (the
          ``audio_end_ms`` sent), ``None`` for the greeting;
        * ``first_delta_sent_ns``: monotonic ns the turn's first ``response.output_audio.delta``
          was written (``None`` if no audio was sent); ``first_delta_event_id``;
        * ``injected_latency_ms``: drawn latency of the turn's first response (from the end of
          speech detection, or ``session.configured`` for the greeting, to
          ``response.created``; audio starts at ``response.created``); ``response_latencies_ms``
          for every response;
        * ``response_ids``: the turn's responses in order; ``statuses``: their final status
          (``completed`` also for a tool response whose ``response.done`` was withheld,
          ``tool_response_done="never"``);
        * ``speech_stopped_late``: ``speech_stopped`` was written after the turn's first
          ``response.created``, i.e. once generation had started (in write order).

        Times are the shell's ``time.monotonic_ns()`` just before the write (``Clock`` uses the
        same base).
        """
        rows: dict[int, dict[str, Any]] = {}
        for g in self.log:
            if g.turn_index is None:
                continue
            row = rows.setdefault(
                g.turn_index,
                {
                    "turn_index": g.turn_index,
                    "speech_stopped_sent_ns": None,
                    "speech_stopped_event_id": None,
                    "speech_end_detected_ns": None,
                    "audio_end_ms": None,
                    "first_delta_sent_ns": None,
                    "first_delta_event_id": None,
                    "injected_latency_ms": None,
                    "response_latencies_ms": [],
                    "response_ids": [],
                    "statuses": [],
                    "speech_stopped_late": False,
                },
            )
            if g.kind == "speech_stopped":  # the last one is the one the turn answered
                row["speech_stopped_sent_ns"] = g.t_ns
                row["speech_stopped_event_id"] = g.event_id
                row["audio_end_ms"] = g.audio_ms
                row["speech_stopped_late"] = bool(row["response_ids"])
            elif g.kind == "response_scheduled" and g.detail == "speech":
                row["speech_end_detected_ns"] = g.t_ns
            elif g.kind == "response_created":
                row["response_ids"].append(g.response_id)
                row["response_latencies_ms"].append(g.injected_latency_ms)
                if row["injected_latency_ms"] is None:
                    row["injected_latency_ms"] = g.injected_latency_ms
            elif g.kind == "first_audio_delta" and row["first_delta_sent_ns"] is None:
                row["first_delta_sent_ns"] = g.t_ns
                row["first_delta_event_id"] = g.event_id
            elif g.kind in ("response_done", "response_done_withheld") and g.detail is not None:
                row["statuses"].append(g.detail.split(":", 1)[0])
        return list(rows.values())

    def open(self, *, now_ns: int) -> list[Output]:
        """The connection is open: ``[warning]`` then ``session.created`` (maybe delayed)."""
        self._opened = True
        self._last_input_ns = now_ns
        out: list[Send] = []
        if self.model == DEPRECATED_MODEL:
            out.append(
                self._send(
                    WarningEvent(
                        code="model_deprecated",
                        message="model 'hydra' is deprecated; migrate to 'hydra-v1.0' "
                        "or 'hydra-v1.1'",
                    ),
                    "warning",
                )
            )
        if self.server_full and not self.config.faults.server_full_after_created:
            out = []
        else:
            out.append(self._send(SessionCreated(session_id=self.session_id), "session_created"))
        if self.server_full:
            self._closing = True
            refused: list[Output] = [
                *out,
                self._error(
                    "server_error",
                    "server at capacity; retry later with backoff",
                    code="server_full",
                ),
                Close(1013, "server full"),
            ]
            return refused
        delay_ns = self._handshake_delay_ns("created")
        if delay_ns:
            self._created_pending = (now_ns + delay_ns, out)
            self._truth_now(
                "handshake_delayed",
                now_ns,
                injected_latency_ms=delay_ns / _NS_PER_MS,
                detail="session.created",
            )
            return []
        return list(out)

    def receive(self, frame: str | bytes, *, now_ns: int) -> list[Output]:
        """Handle one client frame received at ``now_ns``."""
        if self._closing:
            return []
        out = self._receive(frame, now_ns=now_ns)
        return out + self._maybe_internal_error()

    def _receive(self, frame: str | bytes, *, now_ns: int) -> list[Output]:
        self._last_input_ns = now_ns
        size = len(frame.encode("utf-8")) if isinstance(frame, str) else len(frame)
        if isinstance(frame, bytes):
            self.frames_in.append({"type": "<binary>", "bytes": size})
            return [self._error("invalid_request_error", "binary frames are not supported")]
        raw: Any = None
        try:
            raw = json.loads(frame)
            ev = parse_event(raw if isinstance(raw, dict) else frame)
        except (json.JSONDecodeError, ProtocolError) as exc:
            self.frames_in.append({"type": "<invalid>", "bytes": size})
            eid = raw.get("event_id") if isinstance(raw, dict) else None
            return [
                self._error(
                    "invalid_request_error",
                    f"invalid frame: {exc}",
                    client_event_id=eid if isinstance(eid, str) else None,
                )
            ]
        self.frames_in.append(_elide(raw))  # the raw frame: undocumented keys are kept
        client_eid = ev.event_id

        match ev:
            case SessionConfigure():
                return self._on_configure(ev, size=size, now_ns=now_ns)
            case InputAudioBufferAppend():
                return self._on_audio(ev, now_ns=now_ns)
            case _ if not self._configured:
                self._truth_now("frame_before_configure", now_ns, detail=ev.type)
                return []
            case ConversationItemCreate():
                return self._on_item_create(ev, now_ns=now_ns)
            case ResponseCreate():
                return self._on_response_create(now_ns=now_ns)
            case ResponseCancel():
                return self._on_response_cancel(ev, now_ns=now_ns)
            case SessionUpdate():
                return self._on_update(ev, size=size, now_ns=now_ns)
            case UnknownEvent():
                self._truth_now("unknown_client_event", now_ns, detail=ev.wire_type)
                return [
                    self._error(
                        "invalid_request_error",
                        f"unknown event type {ev.wire_type!r}",
                        client_event_id=client_eid,
                    )
                ]
            case _:
                self._truth_now("unexpected_client_event", now_ns, detail=ev.type)
                return []

    def advance(self, *, now_ns: int) -> list[Output]:
        """Fire everything due at ``now_ns`` (response starts, stream frames, timeouts)."""
        out: list[Output] = []
        if self._closing or not self._opened:
            return out
        if now_ns - self._last_input_ns >= int(self.config.idle_timeout_s * 1e9):
            self._closing = True
            self._truth_now("idle_timeout", now_ns)
            return [Close(1000, "idle timeout")]
        out += self._release_handshake(now_ns=now_ns)
        pending = self._tool_done_pending
        if pending is not None and now_ns >= pending[0]:
            self._tool_done_pending = None
            out.append(pending[1])
        progressed = True
        while progressed:
            progressed = False
            turn = self._turn
            if turn is not None and turn.phase == "waiting" and now_ns >= turn.start_due_ns:
                if self._response is not None:  # a barge-in tail still going: cut it here
                    out += self._end_tail(now_ns=now_ns)
                self._start_response(turn, now_ns=now_ns)
                progressed = True
            r = self._response
            while r is not None and r.plan and r.plan[0].due_ns <= now_ns:
                p = r.plan.popleft()
                if p.send is not None:
                    out.append(p.send)
                r.audio_samples_sent += p.audio_samples
                r.transcript_sent += p.transcript
                r.message_done |= p.message_done
                if p.call_done is not None:
                    r.calls_done.add(p.call_done)
                if p.final:
                    out += self._finish_response(now_ns=now_ns)
                    fault = self._maybe_internal_error()
                    if fault:
                        return out + fault
                    progressed = True
                    break
            turn = self._turn
            if (
                turn is not None
                and turn.phase == "awaiting_tools"
                and now_ns >= turn.tool_deadline_ns
            ):
                self._turn = None
                missing = sorted(set(turn.pending_calls) - set(turn.outputs))
                self._truth_now(
                    "tool_response_timeout",
                    now_ns,
                    turn_index=turn.truth_index,
                    detail=f"missing outputs: {missing}" if missing else "no response.create",
                )
                out.append(
                    self._error(
                        "invalid_request_error",
                        "no function_call_output + response.create in "
                        f"{self.config.tool_output_timeout_s:g} s; turn abandoned",
                        code="tool_response_timeout",
                    )
                )
        return out + self._maybe_internal_error()

    def next_deadline_ns(self) -> int | None:
        """When :meth:`advance` next has something to do (``None`` once closing)."""
        if self._closing or not self._opened:
            return None
        deadlines = [self._last_input_ns + int(self.config.idle_timeout_s * 1e9)]
        if self._created_pending is not None:
            deadlines.append(self._created_pending[0])
        if self._configured_pending is not None:
            deadlines.append(self._configured_pending[0])
        if self._tool_done_pending is not None:
            deadlines.append(self._tool_done_pending[0])
        turn = self._turn
        if turn is not None:
            if turn.phase == "waiting":
                deadlines.append(turn.start_due_ns)
            elif turn.phase == "awaiting_tools":
                deadlines.append(turn.tool_deadline_ns)
        if self._response is not None and self._response.plan:
            deadlines.append(self._response.plan[0].due_ns)
        return min(deadlines)

    def sent(self, out: Send, *, t_ns: int) -> None:
        """The shell wrote ``out`` at ``t_ns``: record the frame and stamp its ground truth."""
        self.frames_out.append(_elide(out.event.to_dict()))
        for g in out.truths:
            self.log.append(dataclasses.replace(g, t_ns=t_ns))

    def finish(self, *, now_ns: int, reason: str) -> None:
        """The connection is gone; abandon whatever was in flight."""
        if self.closed_reason is not None:
            return
        self._closing = True
        self.closed_reason = reason
        self._drop_in_flight()
        self._truth_now("session_closed", now_ns, detail=reason)

    # ------------------------------------------------------------ client frames

    def _on_configure(self, ev: SessionConfigure, *, size: int, now_ns: int) -> list[Output]:
        if self._configure_received:
            self._truth_now("configure_ignored", now_ns, detail=f"{size} bytes")
            return []
        s = ev.session if isinstance(ev.session, dict) else {}
        voice = s.get("voice", None)
        rejected = self._voice_error(voice, ev.event_id, now_ns=now_ns)
        if rejected is not None:
            return [rejected]
        self._configure_received = True
        self.configure_bytes = size
        self._truth_now("configure_received", now_ns, detail=f"{size} bytes")
        if size > self.config.max_configure_bytes:
            self._mute_audio = True
            self._truth_now(
                "configure_oversized",
                now_ns,
                detail=f"{size} > {self.config.max_configure_bytes} bytes: audio output muted",
            )
        want_rate = s.get("output_audio_sample_rate")
        if want_rate is not None and want_rate != self.output_rate_hz:
            self._truth_now("output_rate_request_ignored", now_ns, detail=str(want_rate))
        given = s.get("instructions")
        instructions = given if isinstance(given, str) else ""
        context = parse_context(instructions) if instructions else None
        gen = bool(s.get("generate_initial_response", False))
        if context is not None:
            self._on_context(context, now_ns=now_ns)
        echo: dict[str, Any] = {
            "instructions": instructions,
            "voice": voice if isinstance(voice, str) else DEFAULT_VOICE,
            "tools": s.get("tools") if isinstance(s.get("tools"), list) else [],
            "generate_initial_response": gen,
        }
        match self.config.rate_announcement:
            case "number":
                echo["output_audio_sample_rate"] = self.output_rate_hz
            case "string":
                echo["output_audio_sample_rate"] = str(self.output_rate_hz)
        self.declared_tools = list(echo["tools"])
        configured = self._send(SessionConfigured(session=echo), "session_configured")
        if gen and self.script.assistant_turns:
            if context is not None and self.config.resume == "with_context":
                self._truth_now("greeting_skipped", now_ns, detail="reconnect context")
            else:
                self._greet_when_configured = True
        delay_ns = self._handshake_delay_ns("configured")
        if delay_ns or self._created_pending is not None:
            due = now_ns + delay_ns
            if self._created_pending is not None:
                due = max(due, self._created_pending[0])
            self._configured_pending = (due, configured)
            self._truth_now(
                "handshake_delayed",
                now_ns,
                injected_latency_ms=(due - now_ns) / _NS_PER_MS,
                detail="session.configured",
            )
            return []
        self._on_configured(now_ns=now_ns)
        return [configured]

    def _on_update(self, ev: SessionUpdate, *, size: int, now_ns: int) -> list[Output]:
        """``session.update`` ("Managing sessions", "Mid-session updates"): only ``tools`` is
        applied and echoed in ``session.updated``; a patch applying nothing gets no echo; an
        unknown field is an ``invalid_frame`` error (nothing applied); a ``tools`` that is not
        a list an ``invalid_request_error``. Over :attr:`EmulatorConfig.update_ceiling_bytes`
        the update is applied but audio output is muted for the rest of the session (a guess).
        """
        s = ev.session if isinstance(ev.session, dict) else {}
        self.update_bytes.append(size)
        self._truth_now("update_received", now_ns, detail=f"{size} bytes; fields {sorted(s)}")
        unknown = sorted(k for k in s if k != "tools" and k not in _UPDATE_FROZEN)
        if unknown:
            self._truth_now("session_update_invalid", now_ns, detail=f"unknown fields {unknown}")
            return [
                self._error(
                    "invalid_request_error",
                    f"session.update: unknown field(s) {', '.join(map(repr, unknown))}; only "
                    "'tools' is honoured",
                    code="invalid_frame",
                    param=f"{_UPDATE_PARAM}.{unknown[0]}",
                    client_event_id=ev.event_id,
                )
            ]
        tools = s.get("tools")
        if "tools" in s and not isinstance(tools, list):
            self._truth_now("session_update_invalid", now_ns, detail="tools is not a list")
            return [
                self._error(
                    "invalid_request_error",
                    "session.update: 'tools' must be an array",
                    param=f"{_UPDATE_PARAM}.tools",
                    client_event_id=ev.event_id,
                )
            ]
        frozen = sorted(k for k in s if k in _UPDATE_FROZEN)
        if frozen:
            self._truth_now("update_field_ignored", now_ns, detail=f"frozen fields {frozen}")
        if not isinstance(tools, list):
            self._truth_now("update_noop", now_ns, detail=f"{size} bytes: nothing applied")
            return []
        ceiling = self.config.update_ceiling_bytes
        if ceiling is not None and size > ceiling:
            self._mute_audio = True
            self._truth_now(
                "update_oversized",
                now_ns,
                detail=f"{size} > {ceiling} bytes (configure {self.configure_bytes} bytes): "
                "audio output muted",
            )
        self.declared_tools = list(tools)
        return [self._send(SessionUpdated(session={"tools": tools}), "session_updated")]

    def _voice_error(self, voice: Any, event_id: str | None, *, now_ns: int) -> Send | None:
        """The live service's rejection of a voice outside the tag's roster (``None``: fine)."""
        if not self.config.validate_voice or voice is None:
            return None
        roster = VOICE_ROSTERS.get(self.model)
        if roster is None or (isinstance(voice, str) and voice in roster):
            return None
        self._truth_now("configure_rejected", now_ns, detail=f"voice {voice!r}")
        choices = ", ".join(sorted(roster))
        return self._error(
            "invalid_request_error",
            f"voice {voice!r} is not available on model {self.model!r}; use one of: {choices}",
            param=_VOICE_PARAM,
            client_event_id=event_id,
        )

    def _on_context(self, context: list[tuple[str, str]], *, now_ns: int) -> None:
        """The configure carries a reconnect-context block: maybe resume the script."""
        self.context_messages = len(context)
        if self.config.resume == "with_context" and self._resume_turn is not None:
            self._next_turn = self.resumed_turn = self._resume_turn
        where = "not resumed" if self.resumed_turn is None else f"resumed at {self.resumed_turn}"
        # No turn_index: turn_truths() lists scheduled turns only.
        self._truth_now("context_received", now_ns, detail=f"{len(context)} messages; {where}")

    def _handshake_delay_ns(self, frame: str) -> int:
        """Seeded delay of ``session.created`` / ``session.configured`` (0 if not delayed)."""
        lo, hi = self.config.handshake_delay_ms
        if hi <= 0 or self.config.handshake_delay_on not in (frame, "both"):
            return 0
        return int(float(self._handshake_rng.uniform(lo, hi)) * _NS_PER_MS)

    def _release_handshake(self, *, now_ns: int) -> list[Output]:
        """Send the delayed handshake frames that are due, in order."""
        out: list[Output] = []
        created = self._created_pending
        if created is not None and now_ns >= created[0]:
            self._created_pending = None
            out += created[1]
        configured = self._configured_pending
        if self._created_pending is None and configured is not None and now_ns >= configured[0]:
            self._configured_pending = None
            out.append(configured[1])
            self._on_configured(now_ns=now_ns)
        return out

    def _on_configured(self, *, now_ns: int) -> None:
        """``session.configured`` is going out: audio counts from here; maybe greet."""
        self._configured = True
        dropped = self.dropped_audio_frames
        if dropped:
            self._truth_now("audio_before_configure", now_ns, detail=f"{dropped} frames")
        if self._greet_when_configured:
            self._greet_when_configured = False
            self._schedule_turn(0, trigger="initial", now_ns=now_ns)

    def _on_audio(self, ev: InputAudioBufferAppend, *, now_ns: int) -> list[Output]:
        if not self._configured:
            self.dropped_audio_frames += 1
            return []
        try:
            data = base64.b64decode(ev.audio, validate=True)
        except (binascii.Error, ValueError):
            return self._invalid_audio("audio is not valid base64", ev, now_ns)
        if len(data) < MIN_AUDIO_FRAME_BYTES:
            return self._invalid_audio(
                f"audio frame too small ({len(data)} bytes, need {MIN_AUDIO_FRAME_BYTES})",
                ev,
                now_ns,
            )
        if len(data) % 2:
            return self._invalid_audio(
                f"audio is not PCM16 ({len(data)} bytes, odd length)", ev, now_ns
            )
        self._samples_in += len(data) // 2
        self._buf += data
        out: list[Output] = []
        n_frames = len(self._buf) // _VAD_FRAME_BYTES
        for i in range(n_frames):
            chunk = bytes(self._buf[i * _VAD_FRAME_BYTES : (i + 1) * _VAD_FRAME_BYTES])
            frame: npt.NDArray[np.int16] = np.frombuffer(chunk, dtype="<i2").astype(np.int16)
            for seg in self._segmenter.push(frame, frame_index=self._vad_frames):
                if isinstance(seg, SpeechStart):
                    out.extend(self._on_speech_start(seg.start_ms, now_ns=now_ns))
                elif isinstance(seg, SpeechEnd):
                    out.extend(self._on_speech_end(seg.end_ms, now_ns=now_ns))
                    if self._closing:  # an injected internal_error: nothing more
                        return out
            self._vad_frames += 1
        del self._buf[: n_frames * _VAD_FRAME_BYTES]
        return out

    def _invalid_audio(self, message: str, ev: HydraEvent, now_ns: int) -> list[Output]:
        self._truth_now("invalid_audio", now_ns, detail=message)
        return [
            self._error(
                "invalid_request_error",
                message,
                code="invalid_audio",
                param="audio",
                client_event_id=ev.event_id,
            )
        ]

    def _on_item_create(self, ev: ConversationItemCreate, *, now_ns: int) -> list[Output]:
        item = ev.item if isinstance(ev.item, dict) else {}
        if item.get("type") != "function_call_output":
            self._truth_now("item_create_ignored", now_ns, detail=str(item.get("type")))
            return []
        extra = sorted(set(item) - _DOCUMENTED_OUTPUT_ITEM_KEYS)
        if extra:
            self._truth_now("undocumented_item_fields", now_ns, detail=",".join(extra))
        call_id = str(item.get("call_id", ""))
        turn = self._turn
        idx = turn.truth_index if turn is not None else None
        self._truth_now("tool_output_received", now_ns, turn_index=idx, detail=call_id)
        if turn is None or call_id not in turn.pending_calls:
            self._truth_now("unknown_call_id", now_ns, turn_index=idx, detail=call_id)
            return []
        output = item.get("output")
        turn.outputs[call_id] = output if isinstance(output, str) else json.dumps(output)
        turn.create_after_last_output = False
        self._learn_ids(call_id, output, turn_index=idx, now_ns=now_ns)
        return []

    def _learn_ids(self, call_id: str, output: Any, *, turn_index: int | None, now_ns: int) -> None:
        """Chain the trace's ids of this call's response onto the live output's (if any)."""
        expected = self._expected_responses.pop(call_id, None)
        if expected is None:
            return
        live = output
        if isinstance(output, str):
            try:
                live = json.loads(output)
            except json.JSONDecodeError:
                return  # not JSON: nothing to walk beside the trace's response
        learned = self.id_chain.learn(expected, live)
        if learned:
            pairs = ", ".join(f"{old} -> {new}" for old, new in learned.items())
            self._truth_now("id_chain_learned", now_ns, turn_index=turn_index, detail=pairs)

    def _on_response_create(self, *, now_ns: int) -> list[Output]:
        turn = self._turn
        idx = turn.truth_index if turn is not None else None
        self._truth_now("response_create_received", now_ns, turn_index=idx)
        out: list[Output] = []
        if self._tool_done_pending is not None:  # "late": the response.create releases it
            out.append(self._tool_done_pending[1])
            self._tool_done_pending = None
        if self._response is not None:
            self._response.create_seen = True
        if turn is None or not turn.pending_calls:
            self._truth_now("response_create_unexpected", now_ns, turn_index=idx)
            return out
        missing = sorted(set(turn.pending_calls) - set(turn.outputs))
        if missing:
            self._truth_now(
                "premature_response_create",
                now_ns,
                turn_index=turn.index,
                detail=f"missing outputs: {missing}",
            )
            return out
        turn.create_after_last_output = True
        if turn.phase == "awaiting_tools":
            self._continue_turn(turn, now_ns=now_ns)
        return out

    def _on_response_cancel(self, ev: ResponseCancel, *, now_ns: int) -> list[Output]:
        r = self._response
        self._truth_now("response_cancel_received", now_ns, response_id=ev.response_id)
        if r is None or r.cancel_reason is not None:  # nothing in flight, or already cancelled
            return []
        if ev.response_id is not None and ev.response_id != r.id:
            return []
        return self._cancel_response("client_cancelled", now_ns=now_ns)

    # ------------------------------------------------------------ speech

    def _on_speech_start(self, start_ms: int, *, now_ns: int) -> list[Output]:
        out: list[Output] = list(self._take_held_stop())
        self._user_item_id = self._id("item")
        self._user_start_ms = start_ms
        out += [
            self._send(
                SpeechStarted(audio_start_ms=start_ms, item_id=self._user_item_id),
                "speech_started",
                audio_ms=start_ms,
            )
        ]
        turn = self._turn
        r = self._response
        if r is not None and r.cancel_reason is None:  # (a cut response's tail just goes on)
            out.extend(self._interrupt(now_ns=now_ns))
        elif (
            turn is not None
            and turn.phase == "waiting"
            and turn.trigger == "speech"
            and turn.responses_started == 0
        ):
            # The user kept talking before we answered: answer the same script turn later.
            self._turn = None
            self._next_turn = turn.index
            if turn.drift is not None:  # the question was never asked: it does not count
                self._drifts -= 1
                self._drift_blocked = False
            self._truth_now(
                "pending_response_withdrawn",
                now_ns,
                turn_index=turn.truth_index,
                injected_latency_ms=turn.latency_ms,
                detail=None if turn.drift is None else f"drift {turn.drift.kind}",
            )
        item = {
            "id": self._user_item_id,
            "type": "message",
            "role": "user",
            "status": "in_progress",
            "content": [{"type": "input_audio"}],
        }
        out.append(self._item_added(item))
        return out

    def _on_speech_end(self, end_ms: int, *, now_ns: int) -> list[Output]:
        item_id = self._user_item_id or self._id("item")
        self._user_item_id = None
        self._user_speech_ms += max(0, end_ms - self._user_start_ms)
        answer: int | None = None
        if self._turn is None and self._next_turn < len(self.script.assistant_turns):
            answer = self._next_turn
        out: list[Send] = [
            self._send(
                SpeechStopped(audio_end_ms=end_ms, item_id=item_id),
                "speech_stopped",
                audio_ms=end_ms,
                turn_index=answer,
            ),
            self._send(
                ConversationItemDone(
                    previous_item_id=self._prev_of(item_id),
                    item={
                        "id": item_id,
                        "type": "message",
                        "role": "user",
                        "status": "completed",
                        "content": [{"type": "input_audio"}],
                    },
                ),
                None,
            ),
        ]
        if self._turn is not None:
            self._truth_now("user_turn_while_busy", now_ns, turn_index=self._turn.truth_index)
        elif answer is None:
            self._truth_now("user_turn_beyond_script", now_ns, detail=f"user turn {end_ms} ms")
        elif answer in self.config.faults.unanswered_turns:
            self._truth_now("user_turn_unanswered", now_ns, turn_index=answer)
            self._next_turn += 1
            self._drift_blocked = False
        elif answer in self.config.faults.internal_error_at_speech_stopped and (
            self._stop_error_armed
        ):
            self._stop_error_armed = False
            self._closing = True
            self.internal_error_sent = True
            self._truth_now("internal_error_at_speech_stopped", now_ns, turn_index=answer)
            self._drop_in_flight()
            return [
                *out,
                self._error(
                    "server_error",
                    "internal error; reconnect to start a new session",
                    code="internal_error",
                ),
                Close(1011, "internal error"),
            ]
        elif (drift := self._draw_drift(answer)) is not None:
            self._schedule_drift(drift, now_ns=now_ns)  # the scripted turn waits for the answer
        else:
            self._drift_blocked = False
            self._schedule_turn(answer, trigger="speech", now_ns=now_ns)
            self._next_turn += 1
            if answer in self.config.faults.late_speech_stopped_turns and self._turn is not None:
                self._held_stop = (answer, out)
                self._truth_now("speech_stopped_held", now_ns, turn_index=answer, audio_ms=end_ms)
                return []
        result: list[Output] = list(out)
        return result

    def _take_held_stop(self) -> list[Send]:
        """A held ``speech_stopped`` (+ item.done) not yet sent, removed from wherever it waits."""
        if self._held_stop is not None:
            sends = self._held_stop[1]
            self._held_stop = None
            return sends
        r = self._response
        if r is None or not any(p.held_stop for p in r.plan):
            return []
        sends = [p.send for p in r.plan if p.held_stop and p.send is not None]
        r.plan = deque(p for p in r.plan if not p.held_stop)
        return sends

    def _drop_in_flight(self) -> None:
        self._response = None
        self._turn = None
        self._held_stop = None
        self._tool_done_pending = None
        self._created_pending = None
        self._configured_pending = None

    def _turn_ended(self) -> None:
        self._turns_ended += 1

    def _maybe_internal_error(self) -> list[Output]:
        """The injected ``internal_error`` + close 1011, once its turn count is reached."""
        n = self.config.faults.internal_error_after_turns
        if (
            not self._internal_error_armed
            or self._closing
            or not self._configured
            or n is None
            or self._turns_ended < n
        ):
            return []
        self._internal_error_armed = False
        self._closing = True
        self.internal_error_sent = True
        self._drop_in_flight()
        return [
            self._error(
                "server_error",
                "internal error; reconnect to start a new session",
                code="internal_error",
            ),
            Close(1011, "internal error"),
        ]

    # ------------------------------------------------------------ turns and responses

    def _draw_latency_ms(self, *, tools_first: bool) -> float:
        c = self.config
        z = float(self._rng.standard_normal())
        if tools_first:
            v = c.tool_args_delay_ms * math.exp(c.latency_sigma * z)
            return min(max(v, c.tool_args_delay_ms / 2), c.latency_max_ms)
        v = c.latency_median_ms * math.exp(c.latency_sigma * z)
        return min(max(v, c.latency_min_ms), c.latency_max_ms)

    def _schedule_turn(self, index: int, *, trigger: str, now_ns: int) -> None:
        at: AssistantSteps = self.script.assistant_turns[index]
        turn = _Turn(index=index, steps=tuple(at.steps), trigger=trigger)
        self._turn = turn
        self._schedule_response(turn, now_ns=now_ns)

    # ------------------------------------------------------------ drift

    def _draw_drift(self, answer: int) -> _DriftQuestion | None:
        """A question to ask before scripted turn ``answer`` (``None``: play it now)."""
        drift = self.config.drift
        if (
            drift is None
            or self._drift_blocked
            or self._drifts >= drift.max_per_call
            or not 2 <= answer < len(self.script.assistant_turns)
        ):
            return None
        kind = drift.kind_for(self._drift_rng.random())
        if kind is None:
            return None
        options = self._drift_options(kind, answer)
        if not options:
            return None
        target, source = options[self._drift_rng.randrange(len(options))]
        asked = self.script.asks(source)
        question = self.script.assistant_turns[source].question(target)
        self._drifts += 1
        return _DriftQuestion(
            kind=kind,
            target=target,
            slots=(target, *(k for k in asked if k != target)),
            source=source,
            defers=answer,
            text=_DRIFT_WRAPPERS[kind] + question,
        )

    def _drift_options(self, kind: str, answer: int) -> list[tuple[str, int]]:
        """``(slot, scripted turn asking for it first)`` a ``kind`` question may be about:
        slots given before scripted turn ``answer`` (``repeat``, ``clarify``) or asked only
        after it (``reorder``), each with a question to word it."""
        turns = self.script.assistant_turns
        first: dict[str, int] = {}
        for index, turn in enumerate(turns):
            for slot in turn.asks:
                first.setdefault(slot, index)
        if kind == "reorder":
            picked = {k: i for k, i in first.items() if i > answer}
        else:
            picked = {k: i for k, i in first.items() if 1 <= i < answer}
        return [(k, i) for k, i in picked.items() if turns[i].question(k)]

    def _schedule_drift(self, question: _DriftQuestion, *, now_ns: int) -> None:
        """Ask ``question`` as a turn of its own; the scripted turn it defers stays next."""
        self._drift_blocked = True
        turn = _Turn(
            index=question.defers,
            steps=(Speak(question.text),),
            trigger="speech",
            drift=question,
        )
        self._turn = turn
        self._schedule_response(turn, now_ns=now_ns)

    def _turn_started(self, turn: _Turn, *, now_ns: int) -> None:
        """The first response of ``turn`` starts: number it and log what it asks."""
        number = self.turns_started
        self.turns_started += 1
        q = turn.drift
        if q is not None:
            entry: dict[str, Any] = {
                "turn": number,
                "kind": q.kind,
                "slots": list(q.slots),
                "expected": self.script.expected(q.slots),
                "script_turn": q.defers,
                "target": q.target,
                "source_turn": q.source,
                "text": str(self.id_chain.apply(q.text)),
            }
            kind = "drift_question"
        else:
            asks = self.script.asks(turn.index)
            if not asks:
                return
            entry = {
                "turn": number,
                "kind": "script",
                "slots": list(asks),
                "expected": self.script.expected(asks),
                "script_turn": turn.index,
            }
            kind = "asked"
        self.questions.append(entry)
        detail = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
        self._truth_now(kind, now_ns, turn_index=turn.truth_index, detail=detail)

    def _schedule_response(self, turn: _Turn, *, now_ns: int) -> None:
        if turn.pos >= len(turn.steps):
            self._turn = None
            self._turn_ended()
            self._truth_now("turn_done", now_ns, turn_index=turn.truth_index)
            return
        tools_first = isinstance(turn.steps[turn.pos], CallTools)
        turn.latency_ms = self._draw_latency_ms(tools_first=tools_first)
        turn.phase = "waiting"
        turn.start_due_ns = now_ns + int(turn.latency_ms * _NS_PER_MS)
        self._truth_now(
            "response_scheduled",
            now_ns,
            turn_index=turn.truth_index,
            injected_latency_ms=turn.latency_ms,
            detail=turn.trigger if turn.drift is None else f"drift {turn.drift.kind}",
        )

    def _continue_turn(self, turn: _Turn, *, now_ns: int) -> None:
        turn.pending_calls = {}
        turn.outputs = {}
        turn.create_after_last_output = False
        turn.trigger = "tool_output"
        self._schedule_response(turn, now_ns=now_ns)

    def _start_response(self, turn: _Turn, *, now_ns: int) -> None:
        """Compile the next response of ``turn`` (steps up to and including a CallTools)."""
        texts: list[str] = []
        call_steps: list[CallTools] = []
        while turn.pos < len(turn.steps):
            step = turn.steps[turn.pos]
            turn.pos += 1
            if isinstance(step, CallTools):
                call_steps.append(step)
                break
            if isinstance(step, Speak) and step.text.strip():
                texts.append(str(self.id_chain.apply(step.text)))  # written ids only
        turn.phase = "streaming"
        if turn.responses_started == 0:
            self._turn_started(turn, now_ns=now_ns)
        turn.responses_started += 1
        rid = self._id("resp")
        lat = turn.latency_ms
        common = {"response_id": rid, "turn_index": turn.truth_index, "injected_latency_ms": lat}
        plan: deque[_Planned] = deque()
        t = now_ns
        plan.append(
            _Planned(
                t,
                self._send(
                    ResponseCreated(response={"id": rid, "status": "in_progress"}),
                    "response_created",
                    **common,
                ),
            )
        )
        msg_id: str | None = None
        out_index = 0
        full_text = ""
        if texts:
            msg_id = self._id("item")
            out_index = 1
            plan.append(
                _Planned(
                    t,
                    self._item_added(
                        {
                            "id": msg_id,
                            "type": "message",
                            "role": "assistant",
                            "status": "in_progress",
                            "content": [{"type": "output_audio"}],
                        }
                    ),
                )
            )
            t, full_text = self._plan_speech(plan, texts, t0_ns=t, rid=rid, msg_id=msg_id, **common)
        calls: list[_Call] = []
        for step in call_steps:
            for tc in step.calls:
                arguments = self.id_chain.apply(dict(tc.arguments))
                args = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
                calls.append(
                    _Call(self._id("call"), tc.name, args, self._id("item"), out_index + len(calls))
                )
                if tc.expected_response is not None:
                    self._expected_responses[calls[-1].call_id] = tc.expected_response
        gap = int(_ARGS_FRAGMENT_GAP_MS * _NS_PER_MS)
        for ci, c in enumerate(calls):
            if ci > 0:
                t += gap
            plan.append(
                _Planned(
                    t,
                    self._item_added(
                        {
                            "id": c.item_id,
                            "type": "function_call",
                            "status": "in_progress",
                            "call_id": c.call_id,
                            "name": c.name,
                        }
                    ),
                )
            )
            for j, frag in enumerate(self._fragments(c.arguments)):
                if j > 0:
                    t += gap
                plan.append(
                    _Planned(
                        t,
                        self._send(
                            FunctionCallArgumentsDelta(
                                response_id=rid,
                                item_id=c.item_id,
                                output_index=c.output_index,
                                call_id=c.call_id,
                                name=c.name if j == 0 else None,
                                delta=frag,
                            ),
                            "function_call_first_delta" if j == 0 else None,
                            detail=c.call_id,
                            **common,
                        ),
                    )
                )
            plan.append(
                _Planned(
                    t,
                    self._send(
                        FunctionCallArgumentsDone(
                            response_id=rid, call_id=c.call_id, name=c.name, arguments=c.arguments
                        ),
                        "function_call_done",
                        detail=c.call_id,
                        **common,
                    ),
                    call_done=c.call_id,
                )
            )
            plan.append(
                _Planned(
                    t,
                    self._send(
                        ConversationItemDone(
                            previous_item_id=self._prev_of(c.item_id), item=self._call_item(c)
                        ),
                        None,
                    ),
                )
            )
            turn.pending_calls[c.call_id] = c.name
        r = _Response(
            id=rid,
            turn_index=turn.truth_index,
            latency_ms=lat,
            text=full_text,
            message_item_id=msg_id,
            calls=calls,
            plan=plan,
            input_tokens=self._input_tokens(),
        )
        r.plan.append(_Planned(t, None, final=True))
        has_speech = any(isinstance(st, Speak) and st.text.strip() for st in turn.steps)
        fault = None if turn.drift is not None else self.config.faults.status_details(turn.index)
        if fault is not None and not turn.status_fault_done and (texts or not has_speech):
            turn.status_fault_done = True
            r.end_status = fault
            self._truncate(r)
        if self._held_stop is not None and turn.drift is None and self._held_stop[0] == turn.index:
            self._insert_held_stop(r, self._held_stop[1])
            self._held_stop = None
        self._response = r

    def _truncate(self, r: _Response) -> None:
        """Cut the plan after ``partial_audio_fraction`` of its audio deltas (response fault)."""
        plan = list(r.plan)
        audio = [i for i, p in enumerate(plan) if p.audio_samples]
        if audio:
            n = len(audio)
            frac = self.config.faults.partial_audio_fraction
            keep = n if n == 1 else min(n - 1, max(1, round(n * frac)))
            cut = audio[keep - 1] + 1
        else:  # no audio (tool-only or muted): response.created (+ the message item) only
            cut = 2 if r.message_item_id is not None else 1
        kept = plan[:cut]
        end = kept[-1].due_ns + (self._chunk_gap_ns if audio else 0)
        r.plan = deque([*kept, _Planned(end, None, final=True)])

    @staticmethod
    def _insert_held_stop(r: _Response, sends: list[Send]) -> None:
        """Put a held ``speech_stopped`` right after the response's first audio delta."""
        plan = list(r.plan)
        at = next((i for i, p in enumerate(plan) if p.audio_samples), None)
        if at is None:
            at = next(
                (
                    i
                    for i, p in enumerate(plan)
                    if p.send is not None and isinstance(p.send.event, FunctionCallArgumentsDelta)
                ),
                0,
            )
        due = plan[at].due_ns
        held = [_Planned(due, s, held_stop=True) for s in sends]
        r.plan = deque([*plan[: at + 1], *held, *plan[at + 1 :]])

    def _plan_speech(
        self,
        plan: deque[_Planned],
        texts: list[str],
        *,
        t0_ns: int,
        rid: str,
        msg_id: str,
        **common: Any,
    ) -> tuple[int, str]:
        """Schedule transcript + audio deltas of consecutive Speak texts; return (end, text)."""
        pcms: list[npt.NDArray[np.int16]] = []
        # (sample offset of the phrase's first word, delta text)
        phrases: list[tuple[int, str]] = []
        offset = 0
        full = ""
        rate = self.output_rate_hz
        for i, text in enumerate(texts):
            u = self.speech.get(text)
            prefix = " " if i > 0 else ""
            full += prefix + text
            last = offset + max(len(u.pcm) - 1, 0)
            for n, (pos, delta) in enumerate(split_phrases(text)):
                word_ms = next((w.start_ms for w in u.words if w.char_pos >= pos), None)
                if n == 0:
                    start = offset
                elif word_ms is None:
                    start = phrases[-1][0]
                else:
                    start = offset + int(word_ms * rate / 1000)
                phrases.append((min(start, last), prefix + delta))
                prefix = ""
            pcms.append(np.asarray(u.pcm, dtype=np.int16))
            offset += len(u.pcm)
        mode = self.config.transcript_deltas
        if mode == "none":
            phrases = []
        elif mode == "unspaced":  # bare tokens: a naive "".join runs them together
            phrases = [(start, delta.strip()) for start, delta in phrases if delta.strip()]
        pcm = np.concatenate(pcms) if pcms else np.zeros(0, dtype=np.int16)
        cs = self._chunk_samples
        n_chunks = max(1, math.ceil(len(pcm) / cs))
        by_chunk: dict[int, list[str]] = {}
        for start, delta in phrases:
            by_chunk.setdefault(min(start // cs, n_chunks - 1), []).append(delta)
        t = t0_ns
        first_transcript = True
        sent_samples = 0
        for k in range(n_chunks):
            t = t0_ns + k * self._chunk_gap_ns
            for delta in by_chunk.get(k, []):
                plan.append(
                    _Planned(
                        t,
                        self._send(
                            ResponseOutputAudioTranscriptDelta(
                                response_id=rid, item_id=msg_id, delta=delta
                            ),
                            "first_transcript_delta" if first_transcript else None,
                            **common,
                        ),
                        transcript=delta,
                    )
                )
                first_transcript = False
            chunk = pcm[k * cs : (k + 1) * cs]
            if self._mute_audio or len(chunk) == 0:
                continue
            sent_samples += len(chunk)
            plan.append(
                _Planned(
                    t,
                    self._send(
                        ResponseOutputAudioDelta(
                            response_id=rid,
                            item_id=msg_id,
                            output_index=0,
                            content_index=0,
                            delta=encode_pcm16(chunk),
                        ),
                        "first_audio_delta" if k == 0 else None,
                        output_audio_ms=sent_samples * 1000 // rate,
                        **common,
                    ),
                    audio_samples=len(chunk),
                )
            )
        audio_ms = (0 if self._mute_audio else len(pcm)) * 1000 // rate
        plan.append(
            _Planned(
                t,
                self._send(
                    ResponseOutputAudioDone(
                        response_id=rid, item_id=msg_id, output_index=0, content_index=0
                    ),
                    "audio_done",
                    output_audio_ms=audio_ms,
                    detail="muted" if self._mute_audio else None,
                    **common,
                ),
            )
        )
        plan.append(
            _Planned(
                t,
                self._send(
                    ConversationItemDone(
                        previous_item_id=self._prev_of(msg_id),
                        item=self._message_item(msg_id, "completed"),
                    ),
                    None,
                ),
                message_done=True,
            )
        )
        return t, full

    def _fragments(self, args: str) -> list[str]:
        """Split the JSON into 2-4 non-empty fragments (fewer only if it is that short)."""
        n = min(int(self._rng.integers(2, 5)), len(args))
        if n <= 1:
            return [args]
        cuts = sorted(int(c) for c in self._rng.choice(np.arange(1, len(args)), n - 1, False))
        bounds = [0, *cuts, len(args)]
        return [args[a:b] for a, b in itertools.pairwise(bounds)]

    def _finish_response(self, *, now_ns: int) -> list[Output]:
        """The response's last frame is out: build ``response.done`` and move the turn on."""
        r = self._response
        turn = self._turn
        assert r is not None
        self._response = None
        if r.cancel_reason is not None:  # the end of a barge-in tail
            return [self._response_done(r, status="cancelled", reason=r.cancel_reason)]
        if r.end_status is not None:  # injected failed / incomplete: the turn ends here
            status, details = r.end_status
            done = self._response_done(r, status=status, details=details)
            if turn is None:
                return [done]
            self._turn = None
            self._turn_ended()
            ended = GroundTruth(
                "turn_done",
                -1,
                turn_index=turn.truth_index,
                audio_ms=self.received_audio_ms,
                detail=status,
            )
            return [dataclasses.replace(done, truths=(*done.truths, ended))]
        # Built now, not pre-planned, so its output and usage reflect what was actually sent.
        if r.calls:
            done = self._response_done(
                r, status="completed", empty_output=self.config.tool_response_done_empty_output
            )
        else:
            done = self._response_done(r, status="completed")
        if turn is None:
            return [done]
        if r.calls:
            turn.phase = "awaiting_tools"
            turn.tool_deadline_ns = now_ns + int(self.config.tool_output_timeout_s * 1e9)
            out = self._tool_response_done(r, done, now_ns=now_ns)
            if turn.create_after_last_output and set(turn.outputs) >= set(turn.pending_calls):
                self._continue_turn(turn, now_ns=now_ns)
            return out
        self._turn = None
        self._turn_ended()
        turn_done = GroundTruth(
            "turn_done", -1, turn_index=turn.truth_index, audio_ms=self.received_audio_ms
        )
        return [dataclasses.replace(done, truths=(*done.truths, turn_done))]

    def _tool_response_done(self, r: _Response, done: Send, *, now_ns: int) -> list[Output]:
        """``response.done`` of a response that ended in tool calls, as ``tool_response_done``."""
        mode = self.config.tool_response_done
        if mode == "prompt" or (mode == "late" and r.create_seen):
            return [done]
        if mode == "never":
            self._truth_now(
                "response_done_withheld",
                now_ns,
                response_id=r.id,
                turn_index=r.turn_index,
                injected_latency_ms=r.latency_ms,
                detail="completed",
            )
            return []
        # One still waiting (its turn timed out before the timer) goes out first.
        out: list[Output] = [] if self._tool_done_pending is None else [self._tool_done_pending[1]]
        after_ns = int(self.config.tool_response_done_after_ms * _NS_PER_MS)
        self._tool_done_pending = (now_ns + after_ns, done)
        return out

    def _interrupt(self, *, now_ns: int) -> list[Output]:
        """Barge-in: cancel the streaming response, after its tail of in-flight audio."""
        r = self._response
        assert r is not None
        tail_samples = self.output_rate_hz * self.config.barge_in_tail_ms // 1000
        kept: list[_Planned] = []
        total = 0
        for p in r.plan:
            if p.final:
                break
            if p.audio_samples and p.send is not None:
                if total + p.audio_samples > tail_samples:
                    break
                total += p.audio_samples
                kept.append(p)
        if not kept:
            return self._cancel_response("interrupted", now_ns=now_ns)
        turn = self._turn
        self._turn = None  # the scripted turn counts as answered
        if turn is not None:
            turn.pending_calls = {}
        self._truth_now(
            "response_cancelled",
            now_ns,
            response_id=r.id,
            turn_index=r.turn_index,
            output_audio_ms=r.audio_samples_sent * 1000 // self.output_rate_hz,
            detail=f"interrupted; tail of {len(kept)} audio deltas",
        )
        r.cancel_reason = "interrupted"
        r.plan = deque([*kept, _Planned(kept[-1].due_ns, None, final=True)])
        return []

    def _end_tail(self, *, now_ns: int) -> list[Output]:
        """Cut a barge-in tail short (a new response starts): what is due, then its done."""
        r = self._response
        assert r is not None and r.cancel_reason is not None
        out: list[Output] = []
        while r.plan and r.plan[0].due_ns <= now_ns and not r.plan[0].final:
            p = r.plan.popleft()
            if p.send is not None:
                out.append(p.send)
            r.audio_samples_sent += p.audio_samples
        self._response = None
        out.append(self._response_done(r, status="cancelled", reason=r.cancel_reason))
        return out

    def _cancel_response(self, reason: str, *, now_ns: int) -> list[Output]:
        r = self._response
        turn = self._turn
        if r is None:
            return []
        held: list[Output] = list(self._take_held_stop())
        self._response = None
        self._turn = None  # the scripted turn counts as answered
        self._truth_now(
            "response_cancelled",
            now_ns,
            response_id=r.id,
            turn_index=r.turn_index,
            output_audio_ms=r.audio_samples_sent * 1000 // self.output_rate_hz,
            detail=reason,
        )
        if turn is not None and turn.pending_calls:
            turn.pending_calls = {}
        return [*held, self._response_done(r, status="cancelled", reason=reason)]

    def _response_done(
        self,
        r: _Response,
        *,
        status: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        empty_output: bool = False,
    ) -> Send:
        output: list[dict[str, Any]] = []
        if r.message_item_id is not None:
            output.append(
                self._message_item(
                    r.message_item_id, "completed" if r.message_done else "incomplete"
                )
            )
        for c in r.calls:
            if c.call_id in r.calls_done:
                output.append(self._call_item(c))
        audio_ms = r.audio_samples_sent * 1000 // self.output_rate_hz
        out_tokens = (
            len(r.transcript_sent) // 4
            + audio_ms // 40
            + sum(len(c.arguments) // 4 + 4 for c in r.calls if c.call_id in r.calls_done)
            + 1
        )
        resp: dict[str, Any] = {"id": r.id, "status": status}
        if details is not None:
            resp["status_details"] = details
            reason = details.get("reason") or details.get("error", {}).get("code")
        elif reason is not None:
            resp["status_details"] = {"type": status, "reason": reason}
        resp["output"] = [] if empty_output else output
        resp["usage"] = {
            "input_tokens": r.input_tokens,
            "output_tokens": out_tokens,
            "total_tokens": r.input_tokens + out_tokens,
        }
        return self._send(
            ResponseDone(response=resp),
            "response_done",
            response_id=r.id,
            turn_index=r.turn_index,
            injected_latency_ms=r.latency_ms,
            output_audio_ms=audio_ms,
            detail=status if reason is None else f"{status}:{reason}",
        )

    # ------------------------------------------------------------ helpers

    def _input_tokens(self) -> int:
        # ~4 bytes per text token for the configure, 25 audio tokens per second of user speech.
        return (self.configure_bytes or 0) // 4 + self._user_speech_ms // 40

    def _message_item(self, item_id: str | None, status: str) -> dict[str, Any]:
        return {
            "id": item_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [{"type": "output_audio"}],
        }

    @staticmethod
    def _call_item(c: _Call) -> dict[str, Any]:
        return {
            "id": c.item_id,
            "type": "function_call",
            "status": "completed",
            "call_id": c.call_id,
            "name": c.name,
            "arguments": c.arguments,
        }

    def _item_added(self, item: dict[str, Any]) -> Send:
        prev = self._last_item_id
        self._last_item_id = str(item["id"])
        self._prev[self._last_item_id] = prev
        return self._send(ConversationItemAdded(previous_item_id=prev, item=item), None)

    def _prev_of(self, item_id: str | None) -> str | None:
        # Items are only appended; an item's predecessor is recorded when it is added.
        return self._prev.get(item_id) if item_id is not None else None

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{self._ids.getrandbits(64):016x}"

    def _send(self, ev: HydraEvent, kind: str | None, **truth: Any) -> Send:
        ev = dataclasses.replace(ev, event_id=self._id("sv"))
        truths: tuple[GroundTruth, ...] = ()
        if kind is not None:
            truth.setdefault("audio_ms", self.received_audio_ms)
            truths = (GroundTruth(kind=kind, t_ns=-1, event_id=ev.event_id, **truth),)
        return Send(event=ev, text=ev.dumps(), truths=truths)

    def _truth_now(self, kind: str, now_ns: int, **fields_: Any) -> None:
        fields_.setdefault("audio_ms", self.received_audio_ms)
        self.log.append(GroundTruth(kind=kind, t_ns=now_ns, **fields_))

    def _error(
        self,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        client_event_id: str | None = None,
    ) -> Send:
        err: dict[str, Any] = {"type": type_, "code": code or type_, "message": message}
        if param is not None:
            err["param"] = param
        if client_event_id is not None:
            err["event_id"] = client_event_id
        return self._send(ErrorEvent(error=err), "error", detail=err["code"])
