"""The caller's sans-I/O core in virtual time: explicit ``now_ns``, no sockets, no sleeps."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from hydralab.audio import ULAW_SILENCE, ulaw_encode
from hydralab.caller import Caller
from hydralab.caller_core import (
    CallerConfig,
    CallerCore,
    CallerResult,
    Hangup,
    Output,
    PreparedAudio,
    PreparedUtterance,
    SendFrame,
    prepare_audio,
)
from hydralab.clock import ManualClock
from hydralab.protocol.twilio import (
    Connected,
    Media,
    Start,
    Stop,
    TwilioEvent,
    UserSpeechStart,
    UserSpeechStop,
    clear_frame,
    mark_frame,
    media_frame,
    parse_twilio,
)
from hydralab.script import AssistantSteps, Script, Speak, UserTurn

T0 = 1_000_000_000_000  # virtual monotonic ns at the start of every call
MS = 1_000_000
S = 1_000_000_000
FRAME = 160
PERIOD = 20 * MS
NS_PER_SAMPLE = 125_000
SID = "MZcore"
LEAD_SILENCE_FRAMES = 3  # digital silence before each assistant reply


def _script(n_user: int, *, n_asst: int | None = None, last_text: str = "Goodbye.") -> Script:
    n_asst = n_user + 1 if n_asst is None else n_asst
    texts = ["Hello, how can I help?"] + [f"Answer {k}." for k in range(1, n_asst)]
    if n_asst > 1:
        texts[-1] = last_text
    return Script(
        greeting=texts[0],
        user_turns=tuple(UserTurn(text=f"Line {i}.", spoken=f"Line {i}.") for i in range(n_user)),
        assistant_turns=tuple(AssistantSteps((Speak(t),)) for t in texts),
    )


def _loud_frames(n: int) -> list[bytes]:
    """A square wave at half scale: every sample audible (onset 0, offset the last sample)."""
    pcm = np.tile(np.array([16000, -16000], dtype=np.int16), n * FRAME // 2)
    data = ulaw_encode(pcm)
    return [data[i : i + FRAME] for i in range(0, len(data), FRAME)]


def _audio(
    n_user: int, *, frames: int = 26, first_audible: int = 37, last_audible: int | None = None
) -> PreparedAudio:
    """Utterances of ``frames`` loud frames with explicit audible bounds; quiet line noise."""
    last = frames * FRAME - 81 if last_audible is None else last_audible
    utt = PreparedUtterance(
        frames=tuple(_loud_frames(frames)),
        last_frame_samples=FRAME - 80,
        first_audible=first_audible,
        last_audible=last,
    )
    noise = tuple(bytes([0xFE + (i % 2)]) * FRAME for i in range(10))  # near-silent, not zeros
    return PreparedAudio(utterances=(utt,) * n_user, noise_frames=noise, samples_per_frame=FRAME)


def _core(
    script: Script, *, config: CallerConfig | None = None, audio: PreparedAudio | None = None
) -> tuple[CallerCore, ManualClock]:
    epoch = ManualClock(start_ns=T0)
    core = CallerCore(
        script,
        config=config or CallerConfig(turn_end_silence_s=0.3, assistant_turn_timeout_s=5),
        audio=audio if audio is not None else _audio(len(script.user_turns)),
        stream_sid=SID,
        epoch=epoch,
    )
    return core, epoch


@dataclass
class Sent:
    """One caller output with the virtual time it was produced at."""

    t_ns: int
    event: TwilioEvent | None  # None for a Hangup
    out: Output


def _record(outs: list[Output], t_ns: int, log: list[Sent]) -> list[Sent]:
    new = [Sent(t_ns, parse_twilio(o.text) if isinstance(o, SendFrame) else None, o) for o in outs]
    log += new
    return new


def _media(log: list[Sent]) -> list[Sent]:
    return [s for s in log if isinstance(s.event, Media)]


def _kinds(log: list[Sent]) -> list[type[TwilioEvent] | None]:
    return [type(s.event) if s.event is not None else None for s in log]


def _tick_until(core: CallerCore, t_end_ns: int, log: list[Sent]) -> None:
    """Call ``advance`` exactly at every deadline before ``t_end_ns``."""
    while True:
        d = core.next_deadline_ns()
        if d is None or d >= t_end_ns:
            return
        _record(core.advance(d), d, log)


def _tick_until_sent(core: CallerCore, kind: type[TwilioEvent], log: list[Sent]) -> int:
    """Call ``advance`` at every deadline until the caller sends a ``kind`` frame; its time."""
    while True:
        d = core.next_deadline_ns()
        assert d is not None
        if any(isinstance(s.event, kind) for s in _record(core.advance(d), d, log)):
            return d


def _receive(core: CallerCore, text: str, t_ns: int, log: list[Sent]) -> None:
    _tick_until(core, t_ns, log)
    _record(core.receive(text, now_ns=t_ns), t_ns, log)


def _play(
    core: CallerCore, t_ns: int, n: int, log: list[Sent], *, lead: int = LEAD_SILENCE_FRAMES
) -> int:
    """The bridge plays ``lead`` silent + ``n`` loud frames from ``t_ns``; returns the end."""
    frames = [bytes([ULAW_SILENCE]) * FRAME] * lead + _loud_frames(n)
    for i, frame in enumerate(frames):
        _receive(core, media_frame(SID, frame), t_ns + i * PERIOD, log)
    return t_ns + len(frames) * PERIOD


def _first(log: list[Sent], kind: type[TwilioEvent], *, after: int = -1) -> Sent:
    return next(s for s in log if isinstance(s.event, kind) and s.t_ns > after)


def _check_events_shape(result: CallerResult) -> None:
    events = result.events
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "connection_state"
    assert events[-1]["data"] == {
        "state": "session_ended",
        "details": {"reason": result.ended_reason},
    }
    ts = [e["timestamp"] for e in events]
    assert ts == sorted(ts)


# ---------------------------------------------------------------------- lifecycle


def test_start_announces_the_stream_and_first_frame_is_due_at_once() -> None:
    core, _ = _core(_script(1))
    assert core.next_deadline_ns() is None
    assert core.advance(T0) == []
    log: list[Sent] = []
    _record(core.start(T0, server_url="ws://bridge/ws"), T0, log)
    assert _kinds(log) == [Connected, Start]
    assert isinstance(log[1].event, Start) and log[1].event.stream_sid == SID
    assert core.next_deadline_ns() == T0
    _record(core.advance(T0), T0, log)
    assert _kinds(log)[2:] == [Media]
    with pytest.raises(RuntimeError):
        core.start(T0)
    with pytest.raises(RuntimeError):
        core.result()
    core.finish(T0 + PERIOD)
    result = core.result()
    assert result.ended_reason == "disconnected" and result.stream_sid == SID
    assert result.events[0]["data"] == {
        "state": "connected",
        "details": {"server_url": "ws://bridge/ws"},
    }
    _check_events_shape(result)


def test_audio_must_match_the_script() -> None:
    with pytest.raises(ValueError, match="utterances"):
        _core(_script(2), audio=_audio(1))
    with pytest.raises(ValueError, match="samples per frame"):
        _core(_script(1), config=CallerConfig(frame_ms=10))


def test_prepare_audio_synthesizes_up_front() -> None:
    calls: list[dict[str, Any]] = []

    class Tone:
        def synthesize(self, text: str, **kw: Any) -> npt.NDArray[np.int16]:
            calls.append({"text": text, **kw})
            sr = kw["sample_rate_hz"]
            lead = np.zeros(sr // 10)
            tone = 8000 * np.sin(2 * np.pi * 300 * np.arange(int(0.51 * sr)) / sr)
            return np.round(np.concatenate([lead, tone])).astype(np.int16)

    script = _script(2)
    audio = prepare_audio(script, config=CallerConfig(seed=7), synthesizer=Tone())
    assert [c["text"] for c in calls] == [t.spoken for t in script.user_turns]
    assert [(c["sample_rate_hz"], c["seed"]) for c in calls] == [(8000, 7), (8000, 8)]
    assert len(audio.utterances) == 2 and len(audio.noise_frames) == 100
    for utt in audio.utterances:
        assert len(utt.frames) == 26  # the 100 ms lead is trimmed; 510 ms -> 26 frames
        assert all(len(f) == FRAME for f in utt.frames)
        assert utt.last_frame_samples == 80
    _core(script, audio=audio)  # a core accepts it
    Caller(script, url="ws://unused", audio=audio)  # so does the shell (no socket yet)
    with pytest.raises(ValueError, match="utterances"):
        Caller(_script(1), url="ws://unused", audio=audio)


# ---------------------------------------------------------------------- pacing


def test_pacing_stays_on_the_grid_for_60_s() -> None:
    config = CallerConfig(turn_end_silence_s=0.3, assistant_turn_timeout_s=120)
    core, _ = _core(_script(1), config=config)
    log: list[Sent] = []
    core.start(T0)
    rng = random.Random(1)
    deadlines = []
    for _ in range(3000):
        d = core.next_deadline_ns()
        assert d is not None
        deadlines.append(d)
        # wake-ups late by up to 19.9 ms (less than a period): the grid must not move
        _record(core.advance(d + rng.randrange(0, 19_900_000)), d, log)
    assert deadlines == [T0 + n * PERIOD for n in range(3000)]
    assert len(_media(log)) == 3000
    assert core.next_deadline_ns() == T0 + 60 * S  # no drift after 60 s of frames


def test_early_advance_sends_nothing() -> None:
    core, _ = _core(_script(1))
    log: list[Sent] = []
    core.start(T0)
    _record(core.advance(T0), T0, log)
    _record(core.advance(T0 + PERIOD - 1), T0 + PERIOD - 1, log)
    assert len(_media(log)) == 1
    assert core.next_deadline_ns() == T0 + PERIOD


def test_late_advance_sends_one_frame_and_reanchors() -> None:
    core, _ = _core(_script(1))
    log: list[Sent] = []
    core.start(T0)
    _record(core.advance(T0), T0, log)
    # 3.75 periods late: one frame (never a burst of the missed slots), grid re-anchored
    late = T0 + 75 * MS
    _record(core.advance(late), late, log)
    assert len(_media(log)) == 2
    assert core.next_deadline_ns() == late + PERIOD
    # less than a period late: one frame, the grid stays where it was
    t = late + PERIOD + 15 * MS
    _record(core.advance(t), t, log)
    assert len(_media(log)) == 3
    assert core.next_deadline_ns() == late + 2 * PERIOD
    # the same instant again: nothing more
    _record(core.advance(t), t, log)
    assert len(_media(log)) == 3


# ---------------------------------------------------------------------- speaking


def test_speech_start_and_stop_stamps() -> None:
    first_audible, last_audible = 37, 25 * FRAME + 79  # 80 real samples in the 26th frame
    audio = _audio(1, frames=26, first_audible=first_audible, last_audible=last_audible)
    core, epoch = _core(_script(1), audio=audio)
    log: list[Sent] = []
    core.start(T0)
    end = _play(core, T0 + 100 * MS, 10, log)
    mark_at = end + 5 * MS
    _receive(core, mark_frame(SID, "hydralab:turn_end:0"), mark_at, log)
    _tick_until(core, mark_at + 2 * S, log)

    start = _first(log, UserSpeechStart)
    stop = _first(log, UserSpeechStop)
    i, j = log.index(start), log.index(stop)
    utterance = log[i + 1 : j]
    assert all(isinstance(s.event, Media) for s in utterance) and len(utterance) == 26
    s0, s_last = utterance[0].t_ns, utterance[-1].t_ns
    assert start.t_ns == s0 and stop.t_ns == s_last
    assert s_last - s0 == 25 * PERIOD  # paced on the grid
    # a frame sent at S carries [S - 20 ms, S]
    start_ns = s0 - PERIOD + first_audible * NS_PER_SAMPLE
    stop_ns = s_last - PERIOD + (last_audible % FRAME + 1) * NS_PER_SAMPLE
    assert isinstance(start.event, UserSpeechStart) and isinstance(stop.event, UserSpeechStop)
    assert start.event.timestamp_ms == epoch.epoch_ms(start_ns)
    assert stop.event.timestamp_ms == epoch.epoch_ms(stop_ns)

    core.finish(mark_at + 2 * S)
    result = core.result()
    sent = result.user_turns[0]
    assert (sent.start_epoch_ms, sent.stop_epoch_ms) == (
        epoch.epoch_ms(start_ns),
        epoch.epoch_ms(stop_ns),
    )
    assert sent.completed and sent.frames == 26 and not sent.barged_in
    user_audio = [e for e in result.events if e.get("user") == "simulated_user"]
    assert [(e["event_type"], e["audio_timestamp"]) for e in user_audio] == [
        ("audio_start", epoch.epoch_s(start_ns)),
        ("audio_end", epoch.epoch_s(stop_ns)),
    ]
    speech = [e["data"] for e in result.events if e.get("type") == "user_speech"]
    assert speech == [{"text": "Line 0.", "source": "simulated_user"}]


def test_waits_for_the_turn_end_mark_before_speaking() -> None:
    config = CallerConfig(turn_end_silence_s=2.0, assistant_turn_timeout_s=30)
    core, _ = _core(_script(2), config=config)
    log: list[Sent] = []
    core.start(T0)
    end = _play(core, T0 + 100 * MS, 10, log)
    # the greeting's audio is over, but no mark yet: the caller only keeps the line live
    _tick_until(core, end + S, log)
    assert not any(isinstance(s.event, UserSpeechStart) for s in log)
    mark0 = end + S
    _receive(core, mark_frame(SID, "hydralab:turn_end:0"), mark0, log)
    assert _tick_until_sent(core, UserSpeechStart, log) - mark0 < PERIOD  # the next slot
    stop0 = _tick_until_sent(core, UserSpeechStop, log)
    # turn 1 plays, then 5 s of silence (past turn_end_silence_s): marks were seen, so
    # the silence fallback is off and the caller waits for turn 1's mark
    end1 = _play(core, stop0 + 200 * MS, 10, log)
    _tick_until(core, end1 + 5 * S, log)
    assert len([s for s in log if isinstance(s.event, UserSpeechStart)]) == 1
    mark1 = end1 + 5 * S
    _receive(core, mark_frame(SID, "hydralab:turn_end:1"), mark1, log)
    assert _tick_until_sent(core, UserSpeechStart, log) - mark1 < PERIOD
    core.finish(mark1 + S)
    result = core.result()
    assert [(t.ended_by, t.mark) for t in result.assistant_turns] == [
        ("mark", "hydralab:turn_end:0"),
        ("mark", "hydralab:turn_end:1"),
    ]


def test_silence_fallback_without_marks() -> None:
    config = CallerConfig(turn_end_silence_s=0.3, assistant_turn_timeout_s=30)
    core, epoch = _core(_script(1), config=config)
    log: list[Sent] = []
    core.start(T0)
    end = _play(core, T0 + 100 * MS, 10, log)
    last_audible_arrival = end - PERIOD
    due = last_audible_arrival + 300 * MS
    # the bridge keeps sending digital silence: not audible, so it does not delay the fallback
    for k in range(10):  # up to 180 ms after the last audible frame's end
        _receive(core, media_frame(SID, bytes([ULAW_SILENCE]) * FRAME), end + k * PERIOD, log)
    _tick_until(core, due, log)
    assert core.next_deadline_ns() == due
    assert not any(isinstance(s.event, UserSpeechStart) for s in log)
    _record(core.advance(due), due, log)
    _tick_until(core, due + PERIOD, log)
    start = _first(log, UserSpeechStart)
    assert due <= start.t_ns < due + PERIOD
    core.finish(due + S)
    result = core.result()
    turn = result.assistant_turns[0]
    assert turn.ended_by == "silence" and turn.mark is None
    assert turn.frames == LEAD_SILENCE_FRAMES + 10 + 10
    assert turn.audio_end_epoch_ms == epoch.epoch_ms(end)


# ---------------------------------------------------------------------- barge-in and clear


def _speak_first_turn(core: CallerCore, log: list[Sent]) -> int:
    """Greeting + mark, user line 0; returns when its ``user_speech_stop`` went out."""
    core.start(T0)
    end = _play(core, T0 + 100 * MS, 10, log)
    _receive(core, mark_frame(SID, "hydralab:turn_end:0"), end, log)
    return _tick_until_sent(core, UserSpeechStop, log)


def test_barge_in_is_timed_from_the_first_audible_frame() -> None:
    config = CallerConfig(
        turn_end_silence_s=0.3, assistant_turn_timeout_s=5, barge_in_after_ms={1: 210.0}
    )
    core, _ = _core(_script(2), config=config)
    log: list[Sent] = []
    stop0 = _speak_first_turn(core, log)
    reply = stop0 + 150 * MS + 3 * MS  # off the caller's grid
    first_audible = reply + LEAD_SILENCE_FRAMES * PERIOD  # leading silence does not count
    barge_at = first_audible + 210 * MS
    # turn 1 plays on (a long reply): frames up to the barge-in point
    t = reply
    k = 0
    while t < barge_at:
        frame = bytes([ULAW_SILENCE]) * FRAME if k < LEAD_SILENCE_FRAMES else _loud_frames(1)[0]
        _receive(core, media_frame(SID, frame), t, log)
        k, t = k + 1, t + PERIOD
    assert not any(isinstance(s.event, UserSpeechStart) and s.t_ns > stop0 for s in log)
    _tick_until(core, barge_at, log)
    assert core.next_deadline_ns() == barge_at  # the barge-in point is a deadline of its own
    _record(core.advance(barge_at), barge_at, log)
    _tick_until(core, barge_at + PERIOD + 1, log)
    start = _first(log, UserSpeechStart, after=stop0)
    assert barge_at <= start.t_ns < barge_at + PERIOD  # the first slot at/after it
    # the bridge clears; nothing audible follows
    _receive(core, clear_frame(SID), start.t_ns + 2 * MS, log)
    stop1 = start.t_ns + 30 * PERIOD
    _tick_until(core, stop1, log)
    end2 = _play(core, stop1 + 100 * MS, 5, log)
    _receive(core, mark_frame(SID, "hydralab:turn_end:2"), end2, log)
    assert isinstance(log[-1].out, Hangup) and log[-1].out.reason == "goodbye"
    core.finish(end2 + 10 * MS)
    result = core.result()
    assert result.ended_reason == "goodbye"
    assert [t.ended_by for t in result.assistant_turns] == ["mark", "clear", "mark"]
    assert result.user_turns[1].barged_in and result.user_turns[1].completed
    assert not result.user_turns[0].barged_in
    assert result.audible_frames_after_clear == 0
    assert [c["event"] for c in result.control_frames] == ["mark", "clear", "mark"]
    _check_events_shape(result)


def test_clear_ends_the_turn_and_audible_frames_after_it_are_counted() -> None:
    config = CallerConfig(
        turn_end_silence_s=0.3, assistant_turn_timeout_s=5, barge_in_after_ms={1: 100.0}
    )
    core, _ = _core(_script(2), config=config)
    log: list[Sent] = []
    stop0 = _speak_first_turn(core, log)
    t = _play(core, stop0 + 200 * MS, 6, log, lead=0)  # barge-in point: 100 ms into it
    _tick_until(core, t, log)
    start = _first(log, UserSpeechStart, after=stop0)
    assert start.t_ns == stop0 + 300 * MS
    clear_at = t + 1 * MS
    _receive(core, clear_frame(SID), clear_at, log)
    # a bridge that plays on after its own clear: 4 audible frames while the caller speaks,
    # then 2 digital-silence frames (not audible: not counted)
    for k in range(6):
        frame = _loud_frames(1)[0] if k < 4 else bytes([ULAW_SILENCE]) * FRAME
        _receive(core, media_frame(SID, frame), clear_at + (k + 1) * PERIOD, log)
    stop1 = _tick_until_sent(core, UserSpeechStop, log)
    # after the utterance the same audio is turn 2 and no longer counted
    end2 = _play(core, stop1 + 100 * MS, 5, log)
    _receive(core, mark_frame(SID, "hydralab:turn_end:2"), end2, log)
    core.finish(end2 + 10 * MS)
    result = core.result()
    assert result.audible_frames_after_clear == 4
    turn1 = result.assistant_turns[1]
    assert turn1.ended_by == "clear" and turn1.mark is None
    assert turn1.frames == 6  # only what came before the clear
    assert result.assistant_turns[2].frames == 6 + LEAD_SILENCE_FRAMES + 5
    assert result.user_turns[1].barged_in


# ---------------------------------------------------------------------- timeout


def test_assistant_turn_timeout_ends_the_call() -> None:
    config = CallerConfig(turn_end_silence_s=0.3, assistant_turn_timeout_s=0.5)
    core, _ = _core(_script(2), config=config)
    log: list[Sent] = []
    core.start(T0)
    deadline = T0 + 500 * MS
    _tick_until(core, deadline, log)
    assert not any(isinstance(s.out, Hangup) for s in log)
    assert core.next_deadline_ns() == deadline
    outs = _record(core.advance(deadline), deadline, log)
    assert isinstance(outs[0].event, Stop)
    assert isinstance(outs[1].out, Hangup) and outs[1].out.reason == "timeout"
    assert len(outs) == 2  # no media in the slot that hangs up
    assert core.hangup_expected and core.next_deadline_ns() is None
    assert core.advance(deadline + S) == []
    assert len(_media(log)) == 25  # the line stayed live while waiting: 0..480 ms
    core.finish(deadline + 5 * MS)
    result = core.result()
    assert result.ended_reason == "timeout" and result.error is None
    assert result.assistant_turns == [] and result.user_turns == []
    assert [e.get("type") for e in result.events] == ["connection_state"] * 2
    _check_events_shape(result)


def test_an_answer_that_keeps_talking_past_the_timeout_is_not_a_timeout() -> None:
    # the timeout counts from the turn's last audible frame: a 2 s greeting with a 0.5 s
    # timeout is heard out and ends by the silence fallback, then the caller speaks
    config = CallerConfig(turn_end_silence_s=0.3, assistant_turn_timeout_s=0.5)
    core, _ = _core(_script(2), config=config)
    log: list[Sent] = []
    core.start(T0)
    end = _play(core, T0 + 100 * MS, 100, log)  # 2 s of audible audio
    assert end - T0 > 2 * S
    _tick_until(core, end + S, log)
    assert not any(isinstance(s.out, Hangup) for s in log)
    assert any(isinstance(s.event, UserSpeechStart) for s in log)
    core.finish(end + S)
    result = core.result()
    assert [t.ended_by for t in result.assistant_turns] == ["silence"]


def test_error_and_disconnect_reasons() -> None:
    core, _ = _core(_script(1))
    core.start(T0)
    core.finish(T0 + S, error="OSError: boom")
    assert (core.result().ended_reason, core.result().error) == ("error", "OSError: boom")
    core, _ = _core(_script(1))
    log: list[Sent] = []
    stop = _speak_first_turn(core, log)
    _receive(core, media_frame(SID, _loud_frames(1)[0]), stop + 50 * MS, log)
    assert not core.hangup_expected
    core.finish(stop + 60 * MS)
    result = core.result()
    assert result.ended_reason == "disconnected"
    assert result.assistant_turns[-1].ended_by == "hangup"
    _check_events_shape(result)


# ---------------------------------------------------------------------- a whole call


@dataclass
class VirtualBridge:
    """A tiny bridge in virtual time: a paced reply to the greeting and to every user line."""

    reply_frames: int = 150  # 3 s
    reply_delay_ns: int = 400 * MS
    pending: list[tuple[int, str]] = field(default_factory=list)
    turn: int = 0

    def next_ns(self) -> int | None:
        return self.pending[0][0] if self.pending else None

    def pop_due(self, t_ns: int) -> list[str]:
        due = [text for at, text in self.pending if at <= t_ns]
        self.pending = [(at, text) for at, text in self.pending if at > t_ns]
        return due

    def on_caller(self, ev: TwilioEvent, t_ns: int) -> None:
        if isinstance(ev, Start):
            self._reply(0, t_ns)
        elif isinstance(ev, UserSpeechStop):
            self.turn += 1
            self._reply(self.turn, t_ns + self.reply_delay_ns)

    def _reply(self, k: int, at_ns: int) -> None:
        frames = [bytes([ULAW_SILENCE]) * FRAME] * LEAD_SILENCE_FRAMES
        frames += _loud_frames(self.reply_frames)
        self.pending += [(at_ns + i * PERIOD, media_frame(SID, f)) for i, f in enumerate(frames)]
        end = at_ns + len(frames) * PERIOD
        self.pending.append((end, mark_frame(SID, f"hydralab:turn_end:{k}")))
        self.pending.sort(key=lambda p: p[0])


def _drive(core: CallerCore, bridge: VirtualBridge, log: list[Sent]) -> int:
    """Run the call to its hang-up in virtual time; returns the end time."""
    t = T0
    for s in _record(core.start(t), t, log):
        assert s.event is not None
        bridge.on_caller(s.event, t)
    while not any(isinstance(s.out, Hangup) for s in log[-2:]):
        times = [x for x in (core.next_deadline_ns(), bridge.next_ns()) if x is not None]
        t = min(times)
        new: list[Sent] = []
        for text in bridge.pop_due(t):
            new += _record(core.receive(text, now_ns=t), t, log)
        if (d := core.next_deadline_ns()) is not None and d <= t:
            new += _record(core.advance(t), t, log)
        for s in new:
            if s.event is not None:
                bridge.on_caller(s.event, t)
    return t


def test_a_60_s_call_in_virtual_time() -> None:
    n_user = 11
    script = _script(n_user)
    config = CallerConfig(turn_end_silence_s=2.0, assistant_turn_timeout_s=45)
    core, epoch = _core(script, config=config, audio=_audio(n_user, frames=100))  # 2 s lines
    bridge = VirtualBridge()
    log: list[Sent] = []
    wall0 = time.perf_counter()
    end = _drive(core, bridge, log)
    core.finish(end)
    result = core.result()
    wall_s = time.perf_counter() - wall0
    virtual_s = (end - T0) / S
    print(f"virtual call: {virtual_s:.1f} s of call in {wall_s * 1000:.0f} ms of wall time")
    assert virtual_s >= 60
    assert wall_s < 1.0

    assert result.ended_reason == "goodbye" and result.error is None
    assert isinstance(log[-2].event, Stop) and isinstance(log[-1].out, Hangup)
    media = _media(log)
    assert [s.t_ns for s in media] == [T0 + n * PERIOD for n in range(len(media))]
    assert len(media) == (end - T0) // PERIOD  # every slot up to the hang-up
    assert [(t.index, t.ended_by) for t in result.assistant_turns] == [
        (k, "mark") for k in range(n_user + 1)
    ]
    assert all(t.completed and t.frames == 100 for t in result.user_turns)
    assert len(result.received_ulaw) == (n_user + 1) * (LEAD_SILENCE_FRAMES + 150) * FRAME
    # every line started after the previous turn's mark, in the first slot after it
    marks = [c["epoch_ms"] for c in result.control_frames if c["event"] == "mark"]
    for k, sent in enumerate(result.user_turns):
        assert sent.start_epoch_ms is not None
        first_frame_ms = sent.start_epoch_ms + 20  # first_audible is in the first frame
        assert 0 <= first_frame_ms - marks[k] <= 20
    assert result.events[0]["timestamp"] == epoch.epoch_ms(T0)
    _check_events_shape(result)
