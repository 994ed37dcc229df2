"""Sans-I/O core of the scripted caller: one :class:`CallerCore` per call.

The core is a synchronous state machine in the emulator's shape (:mod:`hydralab.emulator.core`).
The shell (:class:`hydralab.caller.Caller`) feeds it the bridge's frames
(:meth:`CallerCore.receive`) and wakes it at its deadline (:meth:`CallerCore.advance`,
:meth:`CallerCore.next_deadline_ns`); each takes the current monotonic time and returns
:class:`SendFrame` / :class:`Hangup` actions in wire order. Once the connection is gone the shell
calls :meth:`CallerCore.finish`, then :meth:`CallerCore.result`. Nothing here sleeps, touches a
socket, reads a clock or synthesizes speech: :func:`prepare_audio` synthesizes and frames the
user lines beforehand.

The caller stands in for EVA's user simulator (``docs/hydra-facts.md``, "The caller side") with
three deliberate differences:

- exactly one frame goes out per 20 ms slot from ``start`` to ``stop`` (utterance frames or low
  noise, never digital silence), on an absolute grid; a late wake-up sends one frame and
  re-anchors the grid (never a burst, never faster than real time), so the bridge and the
  model's VAD always see a live line;
- ``user_speech_start`` *and* ``user_speech_stop`` carry epoch ms from the one session clock
  (EVA stamps ``stop`` with the monotonic clock);
- the end of an assistant turn is the bridge's ``hydralab:turn_end:<k>`` mark (one per complete
  assistant turn, tool turns included); a bridge that sends no marks falls back to
  ``turn_end_silence_s`` without audible media.

The conversation is strictly scripted: wait for the greeting, speak user line 0, wait for
assistant turn 1, ... The result carries ``user_simulator_events.jsonl`` lines in EVA's shape
(``docs/hydra-facts.md``, "EVA formats and scoring rules"), per-turn timing and all received
audio.

Clocks: ``now_ns`` is monotonic ns supplied by the shell; epoch stamps come from the
:class:`EpochMapping` the core was built with (the session clock's, e.g.
:class:`hydralab.clock.Clock`), so they share the bridge's time base when the clock is shared.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from hydralab.audio import AUDIBLE_DBFS, first_onset, last_offset, ulaw_decode, ulaw_encode
from hydralab.audio.perturb import LinePerturbation, LinePerturber
from hydralab.protocol.twilio import (
    TURN_END_MARK_PREFIX,
    Clear,
    Mark,
    Media,
    Stop,
    TwilioFrameError,
    TwilioUnknown,
    connected_frame,
    media_frame,
    parse_twilio,
    start_frame,
    stop_frame,
    user_speech_frame,
)
from hydralab.script import Script
from hydralab.speech.tts import CALLER_VOICE

__all__ = [
    "AUDIBLE_DBFS",
    "CallerConfig",
    "CallerCore",
    "CallerResult",
    "EpochMapping",
    "Hangup",
    "NeedReply",
    "Output",
    "PreparedAudio",
    "PreparedUtterance",
    "ReceivedTurn",
    "SendFrame",
    "SentTurn",
    "SpeechSynthesizer",
    "failed_call_result",
    "line_perturber",
    "prepare_audio",
    "prepare_utterance",
    "samples_per_frame",
    "validate_audio",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 8000
PROVIDER = "hydralab"
_NOISE_FRAMES = 100  # 2 s of pre-encoded line noise, cycled
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
_NS_PER_SAMPLE = _NS_PER_S // SAMPLE_RATE_HZ


class SpeechSynthesizer(Protocol):
    """What the caller needs from a TTS engine (:class:`~hydralab.speech.tts.Synthesizer`)."""

    def synthesize(
        self,
        text: str,
        *,
        voice: str | None = ...,
        rate_wpm: int | None = ...,
        sample_rate_hz: int = ...,
        noise_dbfs: float | None = ...,
        seed: int = ...,
    ) -> npt.NDArray[np.int16]: ...


class EpochMapping(Protocol):
    """The session clock's monotonic -> epoch mapping (:class:`~hydralab.clock.Clock` has it)."""

    def epoch_ms(self, t_ns: int) -> int:
        """Unix epoch milliseconds (floored) of the monotonic time ``t_ns``."""
        ...

    def epoch_s(self, t_ns: int) -> float:
        """Unix epoch seconds of the monotonic time ``t_ns``."""
        ...


@dataclass(frozen=True)
class CallerConfig:
    """Timing and voice of the scripted caller.

    Attributes:
        frame_ms: Duration of one media frame (20 ms = 160 μ-law bytes at 8 kHz).
        turn_end_silence_s: Fallback end of an assistant turn when the bridge sends no marks:
            this long without audible media after the turn's last audible frame.
        assistant_turn_timeout_s: Longest wait for one assistant turn to end, counted from the
            turn's start or, while it speaks, from its last audible frame (a long answer that
            keeps talking is still an answer: itsm / medical_hr closing summaries run 40 s and
            more); then the call ends with ``"timeout"``.
        connect_timeout_s: WebSocket opening handshake timeout.
        voice: eSpeak NG voice of the caller.
        rate_wpm: Speaking rate.
        noise_dbfs: RMS of the line noise under the speech and between utterances.
        seed: Seed of the noise (and of the TTS noise, ``seed + user turn index``).
        barge_in_after_ms: ``{i: x}``: user turn ``i`` starts ``x`` ms after assistant turn
            ``i``'s first audible frame instead of after its end (if it is still playing).
        think_ms: ``{i: x}``: user turn ``i`` starts ``x`` ms after the assistant turn before
            it ended (a persona's think time; a listening caller's comes with its reply).
        pause_ms: ``{i: x}``: user line ``i`` has an ``x`` ms pause in its middle (at a comma
            near the middle, else between the middle words), filled with line noise.
        line: Perturbations of the line (:class:`~hydralab.audio.perturb.LinePerturbation`):
            what is sent is degraded; each utterance's clean audio is kept for
            ``audio_user_clean.wav``. ``None``: a clean line.
    """

    frame_ms: int = 20
    turn_end_silence_s: float = 2.0
    assistant_turn_timeout_s: float = 45.0
    connect_timeout_s: float = 10.0
    voice: str = CALLER_VOICE
    rate_wpm: int = 165
    noise_dbfs: float = -50.0
    seed: int = 0
    barge_in_after_ms: Mapping[int, float] = field(default_factory=dict)
    think_ms: Mapping[int, float] = field(default_factory=dict)
    pause_ms: Mapping[int, float] = field(default_factory=dict)
    line: LinePerturbation | None = None

    def __post_init__(self) -> None:
        if self.frame_ms <= 0:
            raise ValueError(f"frame_ms must be positive, got {self.frame_ms}")
        if self.turn_end_silence_s <= 0 or self.assistant_turn_timeout_s <= 0:
            raise ValueError("turn_end_silence_s and assistant_turn_timeout_s must be positive")
        if self.connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be positive, got {self.connect_timeout_s}")


@dataclass
class ReceivedTurn:
    """One assistant turn as the caller heard it.

    Attributes:
        index: Assistant turn index (0 = greeting).
        frames: Media messages received (any payload size).
        n_bytes: μ-law bytes received (= samples at 8 kHz).
        first_media_epoch_ms / last_media_epoch_ms: Arrival of the first / last media message.
        audio_start_epoch_ms: Arrival of the first audible frame (leading silence skipped).
        audio_end_epoch_ms: End of the last audible frame (its arrival + its duration).
        rms_dbfs: RMS of all audio received in the turn (``None`` if none).
        mark: Name of the turn-end mark, if one ended the turn.
        ended_by: ``"mark"``, ``"silence"`` (fallback), ``"clear"`` (barge-in), ``"silent"``
            (no audio expected and none came), ``"skipped"`` (a later mark arrived first) or
            ``"hangup"`` (the call ended mid-turn).
    """

    index: int
    frames: int = 0
    n_bytes: int = 0
    first_media_epoch_ms: int | None = None
    last_media_epoch_ms: int | None = None
    audio_start_epoch_ms: int | None = None
    audio_end_epoch_ms: int | None = None
    rms_dbfs: float | None = None
    mark: str | None = None
    ended_by: str | None = None


@dataclass
class SentTurn:
    """One user turn as the caller spoke it.

    Attributes:
        index: User turn index.
        text: The intended text (logged as ``user_speech``).
        spoken: The text given to the TTS.
        start_epoch_ms: Send time of the first utterance frame (= ``user_speech_start``).
        stop_epoch_ms: End of the last real sample sent (= ``user_speech_stop``).
        frames: Utterance frames sent.
        completed: All frames were sent.
        barged_in: Started while the assistant turn was still playing.
        first_frame_epoch_ms: Epoch ms of the utterance's sample 0 (its first frame carries
            the 20 ms before it is sent); places ``clean`` on the call's timeline.
        clean: With a perturbed line, the clean int16 samples at 8 kHz (what was meant).
        line_report: With a perturbed line, what it did to this line.
        pause_ms: The mid-line pause the line had (a persona's), 0 for none.
    """

    index: int
    text: str
    spoken: str
    start_epoch_ms: int | None = None
    stop_epoch_ms: int | None = None
    frames: int = 0
    completed: bool = False
    barged_in: bool = False
    first_frame_epoch_ms: float | None = None
    clean: bytes = b""
    line_report: Mapping[str, Any] | None = None
    pause_ms: float = 0.0


@dataclass
class CallerResult:
    """Everything the caller collected; returned on every path (goodbye, timeout, errors).

    Attributes:
        events: ``user_simulator_events.jsonl`` lines (EVA shape); the last one is always
            ``connection_state``/``session_ended`` with ``details.reason == ended_reason``.
        assistant_turns: Per assistant turn, in order.
        user_turns: Per user turn the caller began, in order (``start_epoch_ms`` is ``None``
            if the call ended before its first frame went out).
        received_ulaw: All media payload received, in arrival order.
        ended_reason: ``"goodbye"``, ``"timeout"``, ``"disconnected"`` or ``"error"``.
        error: The exception for ``"error"``.
        control_frames: Every non-media frame received (mark, clear, stop, unknown) with its
            arrival ``epoch_ms``.
        stream_sid: The stream SID the caller announced.
        audible_frames_after_clear: Audible media frames that arrived after a ``clear`` while
            the caller was still speaking the utterance that caused it (should be 0: nothing
            may play after ``clear``).
        listening: A listening caller (its lines came from a policy, not the script).
        caller_ended: A listening caller ended the call itself (its policy's ``end_call``),
            after its last line, if it had one.
    """

    events: list[dict[str, Any]]
    assistant_turns: list[ReceivedTurn]
    user_turns: list[SentTurn]
    received_ulaw: bytes
    ended_reason: str
    error: str | None
    control_frames: list[dict[str, Any]] = field(default_factory=list)
    stream_sid: str = ""
    audible_frames_after_clear: int = 0
    listening: bool = False
    caller_ended: bool = False


# ---------------------------------------------------------------------- prepared audio


@dataclass(frozen=True)
class PreparedUtterance:
    """One user line, framed and μ-law encoded, ready to stream.

    Attributes:
        frames: μ-law frames of ``samples_per_frame`` bytes (quiet head and tail trimmed);
            with a perturbed line, the degraded audio.
        last_frame_samples: Real (not padding) samples in the last frame.
        first_audible: Sample index (in the sent frames) of the first audible sample (of the
            clean speech, whatever the line added).
        last_audible: Sample index of the last audible sample.
        clean: With a perturbed line, the clean int16 samples the frames were made from.
        line_report: With a perturbed line, what it did (measured SNR, lost frames, ...).
        pause_ms: The mid-line pause it has (a persona's), 0 for none.
    """

    frames: tuple[bytes, ...]
    last_frame_samples: int
    first_audible: int = 0
    last_audible: int = 0
    clean: bytes = b""
    line_report: Mapping[str, Any] | None = None
    pause_ms: float = 0.0


@dataclass(frozen=True)
class PreparedAudio:
    """Everything the caller streams: one utterance per user turn plus cycled line noise.

    Attributes:
        utterances: One per ``script.user_turns`` entry, in order.
        noise_frames: Line-noise frames sent between utterances (cycled).
        samples_per_frame: Samples (= μ-law bytes) in every frame.
    """

    utterances: tuple[PreparedUtterance, ...]
    noise_frames: tuple[bytes, ...]
    samples_per_frame: int


def samples_per_frame(config: CallerConfig) -> int:
    """Samples in one ``config.frame_ms`` frame at 8 kHz.

    Raises:
        ValueError: ``frame_ms`` is not a whole number of samples.
    """
    spf = SAMPLE_RATE_HZ * config.frame_ms // 1000
    if spf * 1000 != SAMPLE_RATE_HZ * config.frame_ms:
        raise ValueError(f"frame_ms={config.frame_ms} is not a whole number of samples")
    return spf


def validate_audio(script: Script, *, config: CallerConfig, audio: PreparedAudio) -> None:
    """Check that ``audio`` fits ``script`` and ``config``.

    Raises:
        ValueError: Another frame size, not one utterance per user turn, an empty utterance or
            no line noise.
    """
    spf = samples_per_frame(config)
    if audio.samples_per_frame != spf:
        raise ValueError(
            f"audio has {audio.samples_per_frame} samples per frame, config wants {spf}"
        )
    if len(audio.utterances) != len(script.user_turns):
        raise ValueError(
            f"audio has {len(audio.utterances)} utterances for {len(script.user_turns)} user turns"
        )
    if not audio.noise_frames or any(not u.frames for u in audio.utterances):
        raise ValueError("audio needs line noise and at least one frame per utterance")


def _noise(rng: np.random.Generator, n: int, *, noise_dbfs: float) -> npt.NDArray[np.int16]:
    rms = 32768.0 * 10.0 ** (noise_dbfs / 20.0)
    x = np.round(rng.normal(0.0, rms, size=n))
    return np.clip(x, -32768, 32767).astype(np.int16)


def prepare_audio(
    script: Script, *, config: CallerConfig, synthesizer: SpeechSynthesizer
) -> PreparedAudio:
    """Synthesize and frame every user line and pre-encode the line noise (blocking).

    Args:
        script: The conversation; one utterance per ``script.user_turns`` entry.
        config: Voice, rate, noise level, seed and frame size.
        synthesizer: The TTS engine (called at 8 kHz, ``seed + user turn index``).

    Returns:
        The audio a :class:`CallerCore` streams.
    """
    spf = samples_per_frame(config)
    rng = np.random.default_rng(config.seed)
    gap = _noise(rng, _NOISE_FRAMES * spf, noise_dbfs=config.noise_dbfs)
    perturber = line_perturber(config)
    if perturber is not None and config.line is not None and config.line.noise != "none":
        extra = perturber.line_noise(len(gap), index=0).astype(np.int32)
        gap = np.clip(gap.astype(np.int32) + extra, -32768, 32767).astype(np.int16)
    noise = ulaw_encode(gap)
    noise_frames = tuple(noise[i : i + spf] for i in range(0, len(noise), spf))
    utterances = [
        prepare_utterance(
            turn.spoken,
            index=i,
            config=config,
            synthesizer=synthesizer,
            rng=rng,
            perturber=perturber,
        )
        for i, turn in enumerate(script.user_turns)
    ]
    return PreparedAudio(
        utterances=tuple(utterances), noise_frames=noise_frames, samples_per_frame=spf
    )


def line_perturber(config: CallerConfig) -> LinePerturber | None:
    """The perturber of ``config.line`` (``None`` for a clean line)."""
    if config.line is None or not config.line.active:
        return None
    return LinePerturber(config.line, sample_rate_hz=SAMPLE_RATE_HZ)


def _pause_split(text: str) -> tuple[str, str] | None:
    """``text`` cut in two near its middle: at a comma if one is in the middle half, else
    between the middle words; ``None`` for fewer than four words."""
    words = text.split()
    if len(words) < 4:
        return None
    lo, hi = len(text) // 4, 3 * len(text) // 4
    commas = [i for i, ch in enumerate(text) if ch == "," and lo <= i <= hi]
    if commas:
        cut = min(commas, key=lambda i: abs(i - len(text) // 2)) + 1
        return text[:cut].strip(), text[cut:].strip()
    mid = len(words) // 2
    return " ".join(words[:mid]), " ".join(words[mid:])


def prepare_utterance(
    spoken: str,
    *,
    index: int,
    config: CallerConfig,
    synthesizer: SpeechSynthesizer,
    rng: np.random.Generator | None = None,
    rate_wpm: int | None = None,
    perturber: LinePerturber | None = None,
    pause_ms: float | None = None,
) -> PreparedUtterance:
    """Synthesize and frame one caller line (blocking).

    User turn ``index``'s TTS seed is ``config.seed + index``; ``rate_wpm`` overrides the
    config's speaking rate (a persona's); ``pause_ms`` (default ``config.pause_ms[index]``)
    puts a pause of line noise in the middle of the line; ``perturber`` (default the config's
    line, :func:`line_perturber`) degrades what is sent, the clean audio kept beside it.
    """
    spf = samples_per_frame(config)
    gen = rng if rng is not None else np.random.default_rng((config.seed, index))
    rate = config.rate_wpm if rate_wpm is None else rate_wpm

    def say(text: str) -> npt.NDArray[np.int16]:
        pcm = synthesizer.synthesize(
            text,
            voice=config.voice,
            rate_wpm=rate,
            sample_rate_hz=SAMPLE_RATE_HZ,
            noise_dbfs=config.noise_dbfs,
            seed=config.seed + index,
        )
        return np.asarray(pcm, dtype=np.int16)

    pause = config.pause_ms.get(index, 0.0) if pause_ms is None else pause_ms
    parts = _pause_split(spoken) if pause > 0 else None
    if parts is None:
        pcm, pause = say(spoken), 0.0
    else:
        gap = _noise(gen, round(pause * SAMPLE_RATE_HZ / 1000), noise_dbfs=config.noise_dbfs)
        pcm = np.concatenate([say(parts[0]), gap, say(parts[1])])
    if perturber is None:
        perturber = line_perturber(config)
    utt = _frame_utterance(pcm, gen, spf=spf, config=config, perturber=perturber, index=index)
    return dataclasses.replace(utt, pause_ms=float(pause)) if pause else utt


def _frame_utterance(
    pcm: npt.NDArray[np.int16],
    rng: np.random.Generator,
    *,
    spf: int,
    config: CallerConfig,
    perturber: LinePerturber | None = None,
    index: int = 0,
) -> PreparedUtterance:
    """Cut into frames (last one padded with line noise) and trim quiet head and tail frames.

    The TTS leaves a few hundred ms of near-silence around the speech; trimming it makes
    ``user_speech_start/stop`` bracket the audible speech. The line noise fills the trimmed
    time, so the stream itself is unchanged.
    """
    n = len(pcm)
    n_frames = max(1, -(-n // spf))
    pad = n_frames * spf - n
    padding = _noise(rng, pad, noise_dbfs=config.noise_dbfs)
    frames = np.concatenate([pcm, padding]).reshape(n_frames, spf)
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    audible = np.flatnonzero(power > (32768.0**2) * 10.0 ** (AUDIBLE_DBFS / 10.0))
    first, last = (int(audible[0]), int(audible[-1])) if len(audible) else (0, n_frames - 1)
    kept = frames[first : last + 1].reshape(-1)
    data = ulaw_encode(kept)
    report: dict[str, Any] | None = None
    if perturber is not None:
        degraded = perturber.apply(kept, utterance_index=index)
        report = dict(degraded.report)
        sent_data = ulaw_encode(degraded.pcm)
    else:
        sent_data = data
    chunks = tuple(sent_data[i : i + spf] for i in range(0, len(sent_data), spf))
    last_real = spf - pad if last == n_frames - 1 and n > 0 else spf
    # Sample-accurate audible bounds, by the same definition the timeline's v2v uses.
    sent = ulaw_decode(data)
    rate = spf * 1000 // config.frame_ms
    on = first_onset(sent, sample_rate_hz=rate, rms_threshold_dbfs=AUDIBLE_DBFS)
    off = last_offset(sent, sample_rate_hz=rate, rms_threshold_dbfs=AUDIBLE_DBFS)
    return PreparedUtterance(
        frames=chunks,
        last_frame_samples=last_real,
        first_audible=on if on is not None else 0,
        last_audible=off if off is not None else len(sent) - 1,
        clean=kept.astype(np.int16).tobytes() if perturber is not None else b"",
        line_report=report,
    )


# ---------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class SendFrame:
    """Write ``text`` (one Twilio Media Streams frame) to the bridge."""

    text: str


@dataclass(frozen=True)
class Hangup:
    """Close the connection; the call ended with ``reason`` (``"goodbye"`` or ``"timeout"``)."""

    reason: str


@dataclass(frozen=True)
class NeedReply:
    """A listening caller (``CallerCore(listening=True)``) needs its next line: assistant turn
    ``index`` is over. The shell works out what was heard (``heard_ulaw``: that turn's audio as
    received), asks the caller policy and answers with :meth:`CallerCore.reply`; the line stays
    live meanwhile. Never written to the socket."""

    index: int
    heard_ulaw: bytes
    interrupted: bool = False


Output = SendFrame | Hangup | NeedReply


# ---------------------------------------------------------------------- internals


@dataclass
class _RxTurn:
    index: int
    byte_start: int = 0  # where the turn's audio begins in the received stream
    frames: int = 0
    n_bytes: int = 0
    sumsq: float = 0.0
    n_samples: int = 0
    first_media_ns: int | None = None
    last_media_ns: int | None = None
    first_audible_ns: int | None = None
    last_audible_ns: int | None = None
    last_audible_end_ns: int | None = None


@dataclass(frozen=True)
class _Step:
    """One step of the script: await assistant turn ``index``, speak user turn ``index`` (not
    before ``not_before_ns``), or hang up (``"end"``: a listening caller's ``end_call``)."""

    kind: Literal["await", "speak", "end"]
    index: int
    barge_in_after_ms: float | None = None
    not_before_ns: int | None = None


def _plan(script: Script, config: CallerConfig) -> tuple[_Step, ...]:
    n_asst = len(script.assistant_turns)
    steps: list[_Step] = []
    for i in range(len(script.user_turns)):
        if i < n_asst:
            steps.append(_Step("await", i, config.barge_in_after_ms.get(i)))
        steps.append(_Step("speak", i))
    steps += [_Step("await", k) for k in range(len(script.user_turns), n_asst)]
    return tuple(steps)


def _dbfs(sumsq: float, n: int) -> float:
    if n == 0 or sumsq <= 0.0:
        return -math.inf
    return 10.0 * math.log10(sumsq / n / (32768.0 * 32768.0))


class _EventLog:
    """``user_simulator_events.jsonl`` lines in EVA's shape, numbered from 1."""

    def __init__(self, epoch: EpochMapping) -> None:
        self.events: list[dict[str, Any]] = []
        self._epoch = epoch

    def state(self, state: str, details: dict[str, Any], now_ns: int) -> None:
        self.data("connection_state", {"state": state, "details": details}, now_ns)

    def data(self, kind: str, data: dict[str, Any], now_ns: int) -> dict[str, Any]:
        event = {
            "timestamp": self._epoch.epoch_ms(now_ns),
            "sequence": len(self.events) + 1,
            "type": kind,
            "data": data,
            "provider": PROVIDER,
        }
        self.events.append(event)
        return event

    def audio(self, kind: str, user: str, now_ns: int, audio_ns: int) -> None:
        self.events.append(
            {
                "timestamp": self._epoch.epoch_ms(now_ns),
                "sequence": len(self.events) + 1,
                "event_type": kind,
                "user": user,
                "audio_timestamp": self._epoch.epoch_s(audio_ns),
                "provider": PROVIDER,
            }
        )


def failed_call_result(
    *, stream_sid: str, epoch: EpochMapping, now_ns: int, error: str
) -> CallerResult:
    """The result of a call that failed before a :class:`CallerCore` existed (e.g. TTS failed).

    Args:
        stream_sid: The stream SID the caller would have announced.
        epoch: The session clock's epoch mapping.
        now_ns: When the call failed.
        error: ``"ExceptionType: message"``.

    Returns:
        A result with ``ended_reason == "error"`` and only the ``session_ended`` event.
    """
    log = _EventLog(epoch)
    log.state("session_ended", {"reason": "error"}, now_ns)
    return CallerResult(
        events=log.events,
        assistant_turns=[],
        user_turns=[],
        received_ulaw=b"",
        ended_reason="error",
        error=error,
        stream_sid=stream_sid,
    )


# ---------------------------------------------------------------------- the core


class CallerCore:
    """The scripted caller's logic for one call, driven by frames and explicit times.

    Args:
        script: The conversation; ``assistant_turns[0]`` is the greeting, ``assistant_turns[i]``
            answers ``user_turns[i - 1]``.
        config: Timing (frame size, silence fallback, turn timeout, barge-ins).
        audio: The prepared user lines and line noise (:func:`prepare_audio`).
        stream_sid: Stream SID to announce.
        epoch: The session clock's epoch mapping (``epoch_ms``/``epoch_s`` of a monotonic ns).
        listening: A caller that listens: after each assistant turn the core emits
            :class:`NeedReply` and waits (the line live) for :meth:`reply`, which gives the
            next line (or ends the call); ``audio`` then needs only the line noise and the
            script only its greeting's turn count. Default: the script's user lines in order.
        reply_timeout_s: A listening caller waits this long for :meth:`reply`; then the call
            ends with ``"timeout"``.

    Raises:
        ValueError: ``audio`` does not match the script or the config's frame size.
    """

    def __init__(
        self,
        script: Script,
        *,
        config: CallerConfig,
        audio: PreparedAudio,
        stream_sid: str,
        epoch: EpochMapping,
        listening: bool = False,
        reply_timeout_s: float = 120.0,
    ) -> None:
        if listening:
            if audio.samples_per_frame != samples_per_frame(config) or not audio.noise_frames:
                raise ValueError("a listening caller's audio needs line noise at the frame size")
        else:
            validate_audio(script, config=config, audio=audio)
        self.listening = listening
        self._reply_timeout_ns = int(reply_timeout_s * _NS_PER_S)
        self._plan_list: list[_Step] = (
            [_Step("await", 0, config.barge_in_after_ms.get(0))] if listening else []
        )
        self._dyn_utts: list[PreparedUtterance] = []
        self._dyn_lines: list[tuple[str, str]] = []  # (text, spoken) of each reply
        self._awaiting_reply: int | None = None  # the assistant turn a reply is due for
        self._reply_asked_ns = 0
        self._caller_ended = False  # a listening caller chose to end the call
        self._heard_events: dict[int, dict[str, Any]] = {}  # assistant_speech event per turn
        self._rx_spans: dict[int, tuple[int, int]] = {}
        self.script = script
        self.config = config
        self.audio = audio
        self.stream_sid = stream_sid
        self._epoch = epoch
        self._spf = audio.samples_per_frame
        self._period_ns = config.frame_ms * _NS_PER_MS
        self._timeout_ns = int(config.assistant_turn_timeout_s * _NS_PER_S)
        self._silence_ns = int(config.turn_end_silence_s * _NS_PER_S)
        self._plan: Sequence[_Step] = self._plan_list if listening else _plan(script, config)
        # lifecycle
        self._started = False
        self._finished = False
        self._hangup_reason: str | None = None
        self._ended_reason: str | None = None
        self._error: str | None = None
        # collected results
        self._log = _EventLog(epoch)
        self._controls: list[dict[str, Any]] = []
        self._cleared = False  # a clear came and the caller is still speaking over it
        self._heard_after_clear = 0
        self._rx_turns: list[ReceivedTurn] = []
        self._tx_turns: list[SentTurn] = []
        self._received = bytearray()
        # receiving
        self._rx = _RxTurn(0)
        self._marks_seen = False
        # conducting: the current step of the plan and when it began
        self._step_i = 0
        self._step_start_ns = 0
        self._barged = False  # the await step just passed ended at its barge-in point
        # sending
        self._next_frame_ns = 0
        self._noise_pos = 0
        self._utt: PreparedUtterance | None = None
        self._utt_pos = 0
        self._utt_sent_end_ns = 0
        self._utt_audible_end_ns: int | None = None

    # ------------------------------------------------------------------ public
    @property
    def hangup_expected(self) -> bool:
        """Whether a closing connection is the normal end: the core hung up or the script is done.

        A bridge may hang up right after the last turn-end mark; that call still ended with the
        whole script played.
        """
        return self._hangup_reason is not None or self._script_complete()

    def start(self, now_ns: int, *, server_url: str = "") -> list[Output]:
        """The connection is open: announce the stream (``connected``, ``start``).

        Args:
            now_ns: Monotonic time; the first media frame is due now (on :meth:`advance`).
            server_url: The bridge's URL without its query, logged with ``connected``.

        Raises:
            RuntimeError: The call was already started.
        """
        if self._started:
            raise RuntimeError("a CallerCore places one call")
        self._started = True
        self._log.state("connected", {"server_url": server_url}, now_ns)
        self._next_frame_ns = now_ns
        self._step_start_ns = now_ns
        out: list[Output] = [
            SendFrame(connected_frame()),
            SendFrame(start_frame(self.stream_sid)),
        ]
        return out + self._conduct(now_ns)

    def receive(self, frame: str | bytes, *, now_ns: int) -> list[Output]:
        """Take one frame from the bridge (media, mark, clear, stop, anything else).

        Args:
            frame: The frame as received.
            now_ns: Its arrival time.

        Returns:
            What the frame made due (the hang-up after the last turn-end mark).
        """
        if not self._started or self._finished:
            return []
        try:
            ev = parse_twilio(frame)
        except TwilioFrameError as exc:
            logger.warning("ignoring a bad frame from the bridge: %s", exc)
            return []
        match ev:
            case Media(payload=payload):
                self._on_media(payload, now_ns)
            case Mark(name=name):
                self._control(now_ns, "mark", name=name)
                self._on_mark(name, now_ns)
            case Clear():
                self._control(now_ns, "clear")
                self._on_clear(now_ns)
            case Stop():
                self._control(now_ns, "stop")
            case TwilioUnknown(event=event):
                self._control(now_ns, event)
            case _:
                self._control(now_ns, str(ev.raw.get("event", type(ev).__name__)))
        return self._conduct(now_ns)

    def advance(self, now_ns: int) -> list[Output]:
        """Do whatever is due at ``now_ns``: turn logic, then at most one media frame.

        Frames go out on an absolute ``frame_ms`` grid from :meth:`start`. A call at or after
        the next slot sends one frame; the grid stays put unless the call was a whole period or
        more late, in which case the next slot is one period after ``now_ns`` (never a burst).
        """
        if not self._started or self._finished or self._hangup_reason is not None:
            return []
        out = self._conduct(now_ns)
        if self._hangup_reason is None and now_ns >= self._next_frame_ns:
            out += self._send_slot(now_ns)
            nxt = self._next_frame_ns + self._period_ns
            self._next_frame_ns = nxt if nxt > now_ns else now_ns + self._period_ns
            out += self._conduct(now_ns)
        return out

    def next_deadline_ns(self) -> int | None:
        """When :meth:`advance` next has something to do (``None`` before start, once hung up)."""
        if not self._started or self._finished or self._hangup_reason is not None:
            return None
        times = [self._next_frame_ns]
        step = self._step()
        if step is not None and step.kind == "await":
            times += [t for t in self._await_times(step) if t is not None]
        if step is None and self._awaiting_reply is not None:
            times.append(self._reply_asked_ns + self._reply_timeout_ns)
        return min(times)

    def finish(self, now_ns: int, *, error: str | None = None) -> None:
        """The connection is gone (or never came): close what is open and log the end.

        The reason is ``"error"`` if ``error`` is given, else the core's own hang-up reason,
        else ``"goodbye"`` if the script is done, else ``"disconnected"``.

        Args:
            now_ns: When the call ended.
            error: ``"ExceptionType: message"`` if the call failed.

        Raises:
            RuntimeError: Already finished.
        """
        if self._finished:
            raise RuntimeError("the call is already finished")
        if error is not None:
            reason = "error"
        elif self._hangup_reason is not None:
            reason = self._hangup_reason
        elif self._started and self._script_complete():
            reason = "goodbye"
        else:
            reason = "disconnected"
        self._finish_utterance(now_ns)
        if self._rx.frames > 0:
            self._end_turn(now_ns, ended_by="hangup")
        self._log.state("session_ended", {"reason": reason}, now_ns)
        self._ended_reason, self._error = reason, error
        self._finished = True

    def result(self) -> CallerResult:
        """Everything collected (call after :meth:`finish`).

        Raises:
            RuntimeError: The call is not finished.
        """
        if self._ended_reason is None:
            raise RuntimeError("finish() the call before taking its result")
        return CallerResult(
            events=self._log.events,
            assistant_turns=self._rx_turns,
            user_turns=self._tx_turns,
            received_ulaw=bytes(self._received),
            ended_reason=self._ended_reason,
            error=self._error,
            control_frames=self._controls,
            stream_sid=self.stream_sid,
            audible_frames_after_clear=self._heard_after_clear,
            listening=self.listening,
            caller_ended=self._caller_ended and self._hangup_reason == "goodbye",
        )

    def reply(
        self,
        now_ns: int,
        *,
        text: str,
        spoken: str | None = None,
        utterance: PreparedUtterance | None = None,
        end_call: bool = False,
        not_before_ns: int | None = None,
        heard_text: str | None = None,
        reason: str = "",
    ) -> list[Output]:
        """A listening caller's next line, after :class:`NeedReply`.

        Args:
            now_ns: Now.
            text: What the caller means (logged as ``user_speech``); empty with ``end_call``
                hangs up without a word.
            spoken: What the TTS read (default ``text``).
            utterance: ``text`` synthesized and framed (:func:`prepare_utterance`); required
                unless the caller hangs up without a word.
            end_call: Hang up (``"goodbye"``) once the line is said.
            not_before_ns: Start speaking no earlier (a persona's think time).
            heard_text: What the caller heard of the turn; filled into that turn's
                ``assistant_speech`` event (EVA's field for what the simulator heard).
            reason: Why the policy said it (logged with the line).

        Raises:
            RuntimeError: No reply is due (not listening, or not after :class:`NeedReply`).
            ValueError: A line without an utterance.
        """
        k = self._awaiting_reply
        if not self.listening or k is None:
            raise RuntimeError("no reply is due")
        if text.strip() and (utterance is None or not utterance.frames):
            raise ValueError("a line to say needs its prepared utterance")
        self._awaiting_reply = None
        event = self._heard_events.get(k)
        if event is not None and heard_text is not None:
            event["data"]["text"] = heard_text
        if reason:
            self._control(now_ns, "policy", turn=k, reason=reason, end_call=end_call)
        if text.strip() and utterance is not None:
            u = len(self._dyn_utts)
            self._dyn_utts.append(utterance)
            self._dyn_lines.append((text, spoken if spoken is not None else text))
            self._plan_list.append(_Step("speak", u, not_before_ns=not_before_ns))
        if end_call:
            self._caller_ended = True
            self._plan_list.append(_Step("end", k + 1))
        else:
            nxt = k + 1
            self._plan_list.append(_Step("await", nxt, self.config.barge_in_after_ms.get(nxt)))
        self._step_start_ns = now_ns
        return self._conduct(now_ns)

    def heard_audio(self, index: int) -> bytes:
        """The μ-law audio received during assistant turn ``index`` (empty if unknown)."""
        start, end = self._rx_spans.get(index, (0, 0))
        return bytes(self._received[start:end])

    # ------------------------------------------------------------------ turn logic
    def _step(self) -> _Step | None:
        return self._plan[self._step_i] if self._step_i < len(self._plan) else None

    def _next_step(self, now_ns: int) -> None:
        self._step_i += 1
        self._step_start_ns = now_ns

    def _script_complete(self) -> bool:
        if self.listening:
            return self._caller_ended and self._utt is None
        return (
            len(self._tx_turns) == len(self.script.user_turns)
            and self._utt is None
            and len(self._rx_turns) >= len(self.script.assistant_turns)
        )

    def _conduct(self, now_ns: int) -> list[Output]:
        """Run the script as far as it goes at ``now_ns``: greeting, user line i, turn i+1, ..."""
        while self._hangup_reason is None:
            step = self._step()
            if step is None:
                if not self.listening:
                    return self._hang_up("goodbye")
                if self._awaiting_reply is None:  # the turn just ended: ask for a line
                    k = len(self._rx_turns) - 1
                    self._awaiting_reply, self._reply_asked_ns = k, now_ns
                    last = self._rx_turns[-1] if self._rx_turns else None
                    return [
                        NeedReply(
                            index=k,
                            heard_ulaw=self.heard_audio(k),
                            interrupted=last is not None and last.ended_by == "clear",
                        )
                    ]
                if now_ns - self._reply_asked_ns >= self._reply_timeout_ns:
                    logger.warning("no reply within %.1f s", self._reply_timeout_ns / _NS_PER_S)
                    return self._hang_up("timeout")
                return []
            if step.kind == "end":
                if self._utt is None:
                    return self._hang_up("goodbye")
                return []
            if step.kind == "speak":
                not_before = step.not_before_ns
                if not_before is None and not self.listening and self._utt is None:
                    think = self.config.think_ms.get(step.index, 0.0)
                    not_before = self._step_start_ns + round(think * _NS_PER_MS)
                if not_before is not None and now_ns < not_before and self._utt is None:
                    return []  # thinking: the line stays live
                if self._utt is None:  # the slot that sends its last frame moves on
                    if self.listening:
                        text, spoken = self._dyn_lines[step.index]
                        utt = self._dyn_utts[step.index]
                    else:
                        turn = self.script.user_turns[step.index]
                        text, spoken = turn.text, turn.spoken
                        utt = self.audio.utterances[step.index]
                    self._tx_turns.append(
                        SentTurn(index=step.index, text=text, spoken=spoken, barged_in=self._barged)
                    )
                    self._utt = utt
                    self._utt_pos = 0
                return []
            outcome = self._poll_await(step, now_ns)
            if outcome is None:
                return []
            if outcome == "timeout":
                return self._hang_up("timeout")
            self._barged = outcome == "barge_in"
            self._next_step(now_ns)
        return []

    def _hang_up(self, reason: str) -> list[Output]:
        self._hangup_reason = reason
        return [SendFrame(stop_frame(self.stream_sid)), Hangup(reason)]

    def _await_times(self, step: _Step) -> tuple[int | None, int | None, int | None, int]:
        """Barge-in point, silent-turn end, silence-fallback end and timeout of ``step``."""
        k, rx = step.index, self._rx
        barge_at = None
        if step.barge_in_after_ms is not None and rx.index == k and rx.first_audible_ns is not None:
            barge_at = rx.first_audible_ns + int(step.barge_in_after_ms * _NS_PER_MS)
        silent_at = None
        turns = self.script.assistant_turns
        if rx.index == k and rx.frames == 0 and k < len(turns) and not turns[k].text.strip():
            # A turn the script gives no speech (e.g. a trailing empty answer): a mark may
            # come; if nothing comes, move on instead of timing out.
            silent_at = self._step_start_ns + self._silence_ns
        fallback_at = None
        if not self._marks_seen and rx.last_media_ns is not None:
            anchor = rx.last_audible_ns if rx.last_audible_ns is not None else rx.last_media_ns
            fallback_at = anchor + self._silence_ns
        alive_since = self._step_start_ns
        if rx.index == k and rx.last_audible_ns is not None:
            alive_since = max(alive_since, rx.last_audible_ns)
        return barge_at, silent_at, fallback_at, alive_since + self._timeout_ns

    def _poll_await(self, step: _Step, now_ns: int) -> str | None:
        """``"ended"``, ``"barge_in"``, ``"timeout"``, or ``None`` (still waiting)."""
        while len(self._rx_turns) <= step.index:
            barge_at, silent_at, fallback_at, deadline = self._await_times(step)
            if barge_at is not None and now_ns >= barge_at:
                return "barge_in"
            if silent_at is not None and now_ns >= silent_at:
                self._end_turn(now_ns, ended_by="silent")
                continue
            if fallback_at is not None and now_ns >= fallback_at:
                self._end_turn(now_ns, ended_by="silence")
                continue
            if now_ns >= deadline:
                logger.warning(
                    "assistant turn %d did not end within %.1f s of its last audible audio",
                    step.index,
                    self.config.assistant_turn_timeout_s,
                )
                return "timeout"
            return None
        return "ended"

    # ------------------------------------------------------------------ sending
    def _send_slot(self, now_ns: int) -> list[Output]:
        sid = self.stream_sid
        utt = self._utt
        if utt is None:
            noise = self.audio.noise_frames
            frame = noise[self._noise_pos % len(noise)]
            self._noise_pos += 1
            return [SendFrame(media_frame(sid, frame))]
        out: list[Output] = []
        turn = self._tx_turns[-1]
        pos = self._utt_pos
        spf, period = self._spf, self._period_ns
        if pos == 0:
            # Convention (as on a real line): a frame sent at S carries the audio spoken during
            # [S - 20 ms, S]. The grid is absolute, so the first audible sample's time is known
            # before its frame goes out.
            a = utt.first_audible
            start_ns = now_ns + (a // spf - 1) * period + (a % spf) * _NS_PER_SAMPLE
            start_ms = self._epoch.epoch_ms(start_ns)
            self._utt_sent_end_ns = now_ns
            self._utt_audible_end_ns = None
            out.append(SendFrame(user_speech_frame(sid, started=True, timestamp_ms=start_ms)))
            turn.start_epoch_ms = start_ms
            turn.first_frame_epoch_ms = self._epoch.epoch_s(now_ns - period) * 1000.0
            turn.clean, turn.line_report, turn.pause_ms = utt.clean, utt.line_report, utt.pause_ms
            if utt.pause_ms:
                self._control(now_ns, "pause", turn=turn.index, pause_ms=utt.pause_ms)
            self._log.audio("audio_start", "simulated_user", now_ns, start_ns)
            self._log.data("user_speech", {"text": turn.text, "source": "simulated_user"}, now_ns)
        out.append(SendFrame(media_frame(sid, utt.frames[pos])))
        pos += 1
        self._utt_pos = turn.frames = pos
        self._utt_sent_end_ns = now_ns
        if pos - 1 == utt.last_audible // spf:
            self._utt_audible_end_ns = (
                now_ns - period + (utt.last_audible % spf + 1) * _NS_PER_SAMPLE
            )
        if pos == len(utt.frames):
            end_ns = self._utt_audible_end_ns if self._utt_audible_end_ns is not None else now_ns
            self._utt_sent_end_ns = end_ns
            turn.completed = True
            self._finish_utterance(now_ns)
            self._next_step(now_ns)
            stop_ms = self._epoch.epoch_ms(end_ns)
            out.append(SendFrame(user_speech_frame(sid, started=False, timestamp_ms=stop_ms)))
        return out

    def _finish_utterance(self, now_ns: int) -> None:
        """Close the utterance in progress at the end of its last sent sample."""
        if self._utt is None:
            return
        turn = self._tx_turns[-1]
        if turn.start_epoch_ms is not None:
            end_ns = self._utt_sent_end_ns
            turn.stop_epoch_ms = self._epoch.epoch_ms(end_ns)
            self._log.audio("audio_end", "simulated_user", now_ns, end_ns)
        self._utt = None
        self._cleared = False

    # ------------------------------------------------------------------ receiving
    def _control(self, now_ns: int, event: str, **extra: Any) -> None:
        self._controls.append({"epoch_ms": self._epoch.epoch_ms(now_ns), "event": event, **extra})

    def _on_media(self, payload: bytes, now_ns: int) -> None:
        self._received += payload
        rx = self._rx
        rx.frames += 1
        rx.n_bytes += len(payload)
        if rx.first_media_ns is None:
            rx.first_media_ns = now_ns
        rx.last_media_ns = now_ns
        if not payload:
            return
        pcm16 = ulaw_decode(payload)
        pcm = pcm16.astype(np.float64)
        rx.sumsq += float(np.dot(pcm, pcm))
        rx.n_samples += len(pcm)
        # A frame received at R plays during [R, R + its length]; audible bounds are
        # sample-accurate, by the same definition the timeline's v2v uses.
        on = first_onset(pcm16, sample_rate_hz=SAMPLE_RATE_HZ, rms_threshold_dbfs=AUDIBLE_DBFS)
        if on is None:
            return
        if self._cleared and self._utt is not None:
            self._heard_after_clear += 1  # the bridge played on after telling us to clear
        if rx.first_audible_ns is None:
            rx.first_audible_ns = now_ns + on * _NS_PER_SAMPLE
            self._log.audio("audio_start", "assistant", now_ns, rx.first_audible_ns)
        off = last_offset(pcm16, sample_rate_hz=SAMPLE_RATE_HZ, rms_threshold_dbfs=AUDIBLE_DBFS)
        rx.last_audible_ns = now_ns
        end = off if off is not None else len(pcm16) - 1
        rx.last_audible_end_ns = now_ns + (end + 1) * _NS_PER_SAMPLE

    def _on_mark(self, name: str, now_ns: int) -> None:
        if not name.startswith(TURN_END_MARK_PREFIX):
            return
        try:
            k = int(name[len(TURN_END_MARK_PREFIX) :])
        except ValueError:
            logger.warning("ignoring malformed turn-end mark %r", name)
            return
        self._marks_seen = True
        if k < self._rx.index:
            return  # that turn already ended (clear or silence fallback)
        while self._rx.index < k:
            # Turns the bridge ended without a mark: the audio so far belongs to turn k.
            self._rx_turns.append(ReceivedTurn(index=self._rx.index, ended_by="skipped"))
            self._rx.index += 1
        self._end_turn(now_ns, ended_by="mark", mark=name)

    def _on_clear(self, now_ns: int) -> None:
        # The bridge flushed unplayed audio after a barge-in: the turn ends here, interrupted.
        self._cleared = True
        if self._rx.frames > 0:
            self._end_turn(now_ns, ended_by="clear")

    def _end_turn(self, now_ns: int, *, ended_by: str, mark: str | None = None) -> None:
        rx = self._rx
        if rx.last_audible_end_ns is not None:
            self._log.audio("audio_end", "assistant", now_ns, rx.last_audible_end_ns)
        if rx.first_audible_ns is not None:
            # EVA's simulator logs what it heard once the turn is over; a scripted caller does
            # not transcribe, so the text is filled in from the bridge's record of what was
            # played (:func:`hydralab.evalog.fill_assistant_speech`); a listening caller's
            # reply() fills in what it heard.
            self._heard_events[rx.index] = self._log.data(
                "assistant_speech", {"text": "", "source": "assistant"}, now_ns
            )
        self._rx_spans[rx.index] = (rx.byte_start, len(self._received))
        self._rx_turns.append(
            ReceivedTurn(
                index=rx.index,
                frames=rx.frames,
                n_bytes=rx.n_bytes,
                first_media_epoch_ms=self._epoch_ms_or_none(rx.first_media_ns),
                last_media_epoch_ms=self._epoch_ms_or_none(rx.last_media_ns),
                audio_start_epoch_ms=self._epoch_ms_or_none(rx.first_audible_ns),
                audio_end_epoch_ms=self._epoch_ms_or_none(rx.last_audible_end_ns),
                rms_dbfs=(
                    round(_dbfs(rx.sumsq, rx.n_samples), 2)
                    if rx.n_samples and rx.sumsq > 0
                    else None
                ),
                mark=mark,
                ended_by=ended_by,
            )
        )
        self._rx = _RxTurn(rx.index + 1, byte_start=len(self._received))

    def _epoch_ms_or_none(self, t_ns: int | None) -> int | None:
        return self._epoch.epoch_ms(t_ns) if t_ns is not None else None
