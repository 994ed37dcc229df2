"""The scripted caller against a fake Twilio bridge on 127.0.0.1 (real sockets, real time)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from needs import needs_speech
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hydralab.audio import ULAW_SILENCE, ulaw_decode, ulaw_encode
from hydralab.caller import Caller, CallerConfig, CallerResult
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
from hydralab.speech.tts import Synthesizer

SR = 8000
FRAME = 160
LEAD_SILENCE_FRAMES = 3  # digital silence before each assistant reply: audio_start must skip it

SCRIPT = Script(
    greeting="Hello, how can I help?",
    user_turns=(
        UserTurn(
            text="I need to change flight SK703.", spoken="I need to change flight S K seven."
        ),
        UserTurn(text="Thanks, bye.", spoken="Thanks, bye."),
    ),
    assistant_turns=(
        AssistantSteps((Speak("Hello, how can I help?"),)),
        AssistantSteps((Speak("Sure, one moment."),)),
        AssistantSteps((Speak("Goodbye."),)),
    ),
)


def _payload(a: Arrival) -> bytes:
    assert isinstance(a.event, Media)
    return a.event.payload


def _dbfs(pcm: npt.NDArray[np.int16]) -> float:
    x = pcm.astype(np.float64)
    ms = float(np.mean(x * x)) if len(x) else 0.0
    return 10 * math.log10(ms / 32768.0**2) if ms > 0 else -math.inf


class ToneSynth:
    """Stands in for eSpeak: 100 ms of near-silence, then a 510 ms tone (ends mid-frame)."""

    lead_s = 0.1
    tone_s = 0.51

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def synthesize(
        self,
        text: str,
        *,
        voice: str | None = None,
        rate_wpm: int | None = None,
        sample_rate_hz: int = 48000,
        noise_dbfs: float | None = -50.0,
        seed: int = 0,
    ) -> npt.NDArray[np.int16]:
        self.calls.append(
            {"text": text, "voice": voice, "rate_wpm": rate_wpm, "sr": sample_rate_hz, "seed": seed}
        )
        lead = np.zeros(int(self.lead_s * sample_rate_hz))
        t = np.arange(int(self.tone_s * sample_rate_hz)) / sample_rate_hz
        tone = 8000 * np.sin(2 * np.pi * 300 * t)
        x = np.concatenate([lead, tone])
        rng = np.random.default_rng(seed)
        x = x + rng.normal(0, 32768 * 10 ** ((noise_dbfs or -120) / 20), len(x))
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)


# 510 ms of tone = 25 full frames + 80 real samples in a 26th (padded with noise).
TONE_FRAMES = 26


def _tone_frames(n: int) -> list[bytes]:
    t = np.arange(n * FRAME) / SR
    pcm = (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    data = ulaw_encode(pcm)
    return [data[i : i + FRAME] for i in range(0, len(data), FRAME)]


@dataclass
class Arrival:
    wall_ms: float
    perf_s: float
    event: TwilioEvent


@dataclass
class FakeBridge:
    """Plays a paced "assistant" reply for the greeting and after every ``user_speech_stop``."""

    marks: bool = True
    reply_frames: int = 25
    reply_delay_s: float = 0.15
    long_turn: int | None = None  # this turn plays 2 s and is cut by a clear on user speech
    hang_up_after_user_frames: int | None = None
    hang_up_after_mark: int | None = None
    silent: bool = False
    arrivals: list[Arrival] = field(default_factory=list)
    tone_start_wall_ms: dict[int, float] = field(default_factory=dict)
    mark_wall_ms: dict[int, float] = field(default_factory=dict)

    async def handler(self, ws: ServerConnection) -> None:
        sid = "MZtest"
        player: asyncio.Task[None] | None = None
        turn = 0
        user_frames = 0
        speaking = False
        try:
            async for message in ws:
                ev = parse_twilio(message)
                self.arrivals.append(Arrival(time.time() * 1000, time.perf_counter(), ev))
                if isinstance(ev, Start):
                    sid = ev.stream_sid or sid
                    if not self.silent:
                        player = asyncio.create_task(self._play(ws, sid, 0, 0.0))
                elif isinstance(ev, UserSpeechStart):
                    speaking = True
                    if player is not None and not player.done() and turn == self.long_turn:
                        player.cancel()
                        await ws.send(clear_frame(sid))
                elif isinstance(ev, UserSpeechStop):
                    speaking = False
                    turn += 1
                    player = asyncio.create_task(self._play(ws, sid, turn, self.reply_delay_s))
                elif isinstance(ev, Media) and speaking:
                    user_frames += 1
                    if user_frames == self.hang_up_after_user_frames:
                        await ws.close()
                        return
                elif isinstance(ev, Stop):
                    return
        except ConnectionClosed:
            pass
        finally:
            if player is not None:
                player.cancel()

    async def _play(self, ws: ServerConnection, sid: str, k: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        n = 100 if k == self.long_turn else self.reply_frames
        frames = [bytes([ULAW_SILENCE]) * FRAME] * LEAD_SILENCE_FRAMES + _tone_frames(n)
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        for i, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            if i == LEAD_SILENCE_FRAMES:
                self.tone_start_wall_ms[k] = time.time() * 1000
            await ws.send(media_frame(sid, frame))
            next_t += 0.02
        if self.marks:
            self.mark_wall_ms[k] = time.time() * 1000
            await ws.send(mark_frame(sid, f"hydralab:turn_end:{k}"))
            if k == self.hang_up_after_mark:
                await ws.close()

    def media(self) -> list[Arrival]:
        return [a for a in self.arrivals if isinstance(a.event, Media)]

    def pacing_ms(self) -> tuple[float, float]:
        t = np.array([a.perf_s for a in self.media()])
        d = np.diff(t) * 1000
        return float(d.mean()), float(d.max())


async def _run(
    bridge: FakeBridge,
    *,
    script: Script = SCRIPT,
    config: CallerConfig | None = None,
    synthesizer: Any = None,
) -> CallerResult:
    async with serve(bridge.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        caller = Caller(
            script,
            url=f"ws://127.0.0.1:{port}/ws",
            config=config or CallerConfig(turn_end_silence_s=0.3, assistant_turn_timeout_s=5),
            synthesizer=synthesizer if synthesizer is not None else ToneSynth(),
            stream_sid="MZcaller",
        )
        return await asyncio.wait_for(caller.run(), 20)


def _check_events_shape(result: CallerResult) -> None:
    events = result.events
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    for e in events:
        assert isinstance(e["timestamp"], int) and e["timestamp"] > 1_000_000_000_000
        assert e["provider"] == "hydralab"
        if "event_type" in e:
            assert e["event_type"] in ("audio_start", "audio_end")
            assert e["user"] in ("simulated_user", "assistant")
            assert isinstance(e["audio_timestamp"], float) and e["audio_timestamp"] > 1e9
        else:
            assert e["type"] in ("connection_state", "user_speech", "assistant_speech")
            assert isinstance(e["data"], dict)
            if e["type"] == "assistant_speech":  # text filled in from the bridge's record
                assert e["data"] == {"text": "", "source": "assistant"}
    assert events[-1]["type"] == "connection_state"
    assert events[-1]["data"] == {
        "state": "session_ended",
        "details": {"reason": result.ended_reason},
    }
    ts = [e["timestamp"] for e in events]
    assert ts == sorted(ts)


def _audio_events(result: CallerResult) -> list[tuple[str, str]]:
    return [(e["event_type"], e["user"]) for e in result.events if "event_type" in e]


async def test_scripted_call_with_marks() -> None:
    bridge = FakeBridge()
    synth = ToneSynth()
    result = await _run(bridge, synthesizer=synth)
    assert result.ended_reason == "goodbye", result.error
    assert result.error is None
    assert [c["text"] for c in synth.calls] == [t.spoken for t in SCRIPT.user_turns]
    assert {c["sr"] for c in synth.calls} == {8000}

    # (a) connected, start, then only media / user_speech_*, stop last.
    events = [a.event for a in bridge.arrivals]
    assert isinstance(events[0], Connected)
    assert isinstance(events[1], Start) and events[1].stream_sid == "MZcaller"
    assert isinstance(events[-1], Stop)
    assert not any(isinstance(e, Connected | Start | Stop) for e in events[2:-1])
    media = bridge.media()
    assert all(len(_payload(a)) == FRAME for a in media)
    mean_ms, max_ms = bridge.pacing_ms()
    print(f"pacing: {len(media)} frames, mean {mean_ms:.3f} ms, max {max_ms:.1f} ms")
    assert 18.0 <= mean_ms <= 22.0
    assert max_ms < 60.0

    starts = [i for i, e in enumerate(events) if isinstance(e, UserSpeechStart)]
    stops = [i for i, e in enumerate(events) if isinstance(e, UserSpeechStop)]
    assert len(starts) == len(stops) == 2
    utterance_frames: set[int] = set()
    for turn, (i, j) in enumerate(zip(starts, stops, strict=True)):
        start, stop = events[i], events[j]
        assert isinstance(start, UserSpeechStart) and isinstance(stop, UserSpeechStop)
        assert start.timestamp_ms is not None and stop.timestamp_ms is not None
        # start right before the first frame, stop right after the last: only media between.
        assert all(isinstance(e, Media) for e in events[i + 1 : j])
        assert isinstance(events[j + 1], Media | Stop)
        n = j - i - 1
        assert n == TONE_FRAMES == result.user_turns[turn].frames
        first, last = bridge.arrivals[i + 1], bridge.arrivals[j - 1]
        assert abs(start.timestamp_ms - first.wall_ms) < 100
        assert abs(stop.timestamp_ms - last.wall_ms) < 100
        # The stop stamps the end of the last real sample (80 of 160 in the last frame); a
        # wake-up a period or more late re-anchors the send grid (never a burst), which on a
        # loaded machine (the test suite's other workers, a headless browser) adds to it.
        assert stop.timestamp_ms - start.timestamp_ms == pytest.approx(
            (TONE_FRAMES - 1) * 20 + 10, abs=50
        )
        sent = result.user_turns[turn]
        assert (sent.start_epoch_ms, sent.stop_epoch_ms) == (start.timestamp_ms, stop.timestamp_ms)
        assert sent.completed and not sent.barged_in
        assert sent.text == SCRIPT.user_turns[turn].text
        utterance_frames.update(range(i + 1, j))
        # Every utterance frame is the tone (quiet TTS lead trimmed), except the padded tail.
        levels = [_dbfs(ulaw_decode(_payload(a))) for a in bridge.arrivals[i + 1 : j - 1]]
        assert min(levels) > -20
        tail = ulaw_decode(_payload(bridge.arrivals[j - 1]))
        assert _dbfs(tail[80:]) < -45 and np.any(tail[80:] != 0)  # noise, not digital silence
        # (b) the caller spoke only after the previous assistant turn's mark.
        assert first.wall_ms > bridge.mark_wall_ms[turn]

    # Between utterances the line carries low noise, never digital silence.
    fill = [
        _payload(a)
        for k, a in enumerate(bridge.arrivals)
        if isinstance(a.event, Media) and k not in utterance_frames
    ]
    assert len(fill) > 50
    assert all(p != bytes([ULAW_SILENCE]) * FRAME for p in fill)
    fill_db = _dbfs(ulaw_decode(b"".join(fill)))
    assert -53 < fill_db < -47

    # Assistant turns: ended by their marks, audio_start at the first tone frame.
    assert [t.index for t in result.assistant_turns] == [0, 1, 2]
    for t in result.assistant_turns:
        assert t.ended_by == "mark" and t.mark == f"hydralab:turn_end:{t.index}"
        assert t.frames == LEAD_SILENCE_FRAMES + 25 and t.n_bytes == t.frames * FRAME
        assert t.audio_start_epoch_ms is not None and t.audio_end_epoch_ms is not None
        assert t.audio_start_epoch_ms == pytest.approx(bridge.tone_start_wall_ms[t.index], abs=30)
        assert t.audio_end_epoch_ms - t.audio_start_epoch_ms == pytest.approx(25 * 20, abs=40)
        assert t.rms_dbfs is not None and -25 < t.rms_dbfs < -10
    assert len(result.received_ulaw) == 3 * (LEAD_SILENCE_FRAMES + 25) * FRAME
    assert [c["event"] for c in result.control_frames] == ["mark"] * 3

    # (e) EVA-shaped events, in conversation order, ending with session_ended goodbye.
    _check_events_shape(result)
    assert result.events[0]["data"]["state"] == "connected"
    assert _audio_events(result) == [
        ("audio_start", "assistant"),
        ("audio_end", "assistant"),
        ("audio_start", "simulated_user"),
        ("audio_end", "simulated_user"),
    ] * 2 + [("audio_start", "assistant"), ("audio_end", "assistant")]
    speech = [e["data"] for e in result.events if e.get("type") == "user_speech"]
    assert speech == [{"text": t.text, "source": "simulated_user"} for t in SCRIPT.user_turns]
    user_audio = [e for e in result.events if e.get("user") == "simulated_user"]
    for k, sent in enumerate(result.user_turns):
        start_ev, end_ev = user_audio[2 * k], user_audio[2 * k + 1]
        assert start_ev["audio_timestamp"] * 1000 == pytest.approx(sent.start_epoch_ms, abs=1)
        assert end_ev["audio_timestamp"] * 1000 == pytest.approx(sent.stop_epoch_ms, abs=1)


async def test_silence_fallback_without_marks() -> None:
    bridge = FakeBridge(marks=False)
    result = await _run(bridge)
    assert result.ended_reason == "goodbye", result.error
    assert [t.ended_by for t in result.assistant_turns] == ["silence"] * 3
    assert all(t.mark is None for t in result.assistant_turns)
    # Each user turn started ~turn_end_silence_s after the previous reply's last audio.
    for k, sent in enumerate(result.user_turns):
        prev = result.assistant_turns[k]
        assert sent.start_epoch_ms is not None and prev.audio_end_epoch_ms is not None
        gap = sent.start_epoch_ms - prev.audio_end_epoch_ms
        # the start stamp is the first audible sample, spoken during the frame before it is sent
        assert 300 - 45 <= gap <= 300 + 80
    _check_events_shape(result)
    assert result.events[-1]["data"]["details"]["reason"] == "goodbye"


async def test_server_hangs_up_mid_utterance() -> None:
    bridge = FakeBridge(hang_up_after_user_frames=5)
    result = await _run(bridge)
    assert result.ended_reason == "disconnected"
    assert result.error is None
    assert [t.ended_by for t in result.assistant_turns] == ["mark"]
    assert len(result.user_turns) == 1
    partial = result.user_turns[0]
    assert not partial.completed and 5 <= partial.frames < TONE_FRAMES
    assert partial.start_epoch_ms is not None and partial.stop_epoch_ms is not None
    assert len(result.received_ulaw) == (LEAD_SILENCE_FRAMES + 25) * FRAME
    _check_events_shape(result)
    assert result.events[-1]["data"]["details"]["reason"] == "disconnected"
    assert _audio_events(result)[-1] == ("audio_end", "simulated_user")


async def test_bridge_hangs_up_after_last_mark_is_goodbye() -> None:
    bridge = FakeBridge(hang_up_after_mark=2)
    result = await _run(bridge)
    assert result.ended_reason == "goodbye", result.error
    assert [t.ended_by for t in result.assistant_turns] == ["mark"] * 3
    assert not any(isinstance(a.event, Stop) for a in bridge.arrivals)
    _check_events_shape(result)


async def test_assistant_turn_timeout_sends_stop() -> None:
    bridge = FakeBridge(silent=True)
    config = CallerConfig(turn_end_silence_s=0.3, assistant_turn_timeout_s=0.5)
    t0 = time.perf_counter()
    result = await _run(bridge, config=config)
    assert 0.5 <= time.perf_counter() - t0 < 3
    assert result.ended_reason == "timeout"
    assert result.assistant_turns == [] and result.user_turns == []
    assert isinstance(bridge.arrivals[-1].event, Stop)
    assert len(bridge.media()) >= 20  # the line stayed live while waiting
    _check_events_shape(result)
    assert [e.get("type") for e in result.events] == ["connection_state"] * 2


async def test_connect_failure_is_an_error() -> None:
    async with serve(FakeBridge().handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
    caller = Caller(
        SCRIPT,
        url=f"ws://127.0.0.1:{port}/ws",
        config=CallerConfig(connect_timeout_s=2),
        synthesizer=ToneSynth(),
    )
    result = await caller.run()
    assert result.ended_reason == "error"
    assert result.error
    _check_events_shape(result)
    assert len(result.events) == 1
    with pytest.raises(RuntimeError):
        await caller.run()


async def test_barge_in() -> None:
    bridge = FakeBridge(long_turn=1)
    config = CallerConfig(
        turn_end_silence_s=0.3, assistant_turn_timeout_s=5, barge_in_after_ms={1: 200.0}
    )
    result = await _run(bridge, config=config)
    assert result.ended_reason == "goodbye", result.error
    turn1 = result.assistant_turns[1]
    assert turn1.ended_by == "clear" and turn1.mark is None
    assert turn1.frames < LEAD_SILENCE_FRAMES + 100
    sent = result.user_turns[1]
    assert sent.barged_in and sent.completed
    assert turn1.audio_start_epoch_ms is not None and sent.start_epoch_ms is not None
    assert sent.start_epoch_ms - turn1.audio_start_epoch_ms == pytest.approx(200, abs=40)
    assert [t.ended_by for t in result.assistant_turns] == ["mark", "clear", "mark"]
    assert [c["event"] for c in result.control_frames] == ["mark", "clear", "mark"]
    _check_events_shape(result)


@needs_speech
async def test_espeak_caller_voice() -> None:
    script = Script(
        greeting="Hi.",
        user_turns=(UserTurn(text="Hello there.", spoken="Hello there."),),
        assistant_turns=(AssistantSteps((Speak("Hi."),)), AssistantSteps((Speak("Bye."),))),
    )
    bridge = FakeBridge(reply_frames=10)
    result = await _run(bridge, script=script, synthesizer=Synthesizer())
    assert result.ended_reason == "goodbye", result.error
    events = bridge.arrivals
    i = next(k for k, a in enumerate(events) if isinstance(a.event, UserSpeechStart))
    j = next(k for k, a in enumerate(events) if isinstance(a.event, UserSpeechStop))
    frames = [ulaw_decode(_payload(a)) for a in events[i + 1 : j]]
    assert 15 <= len(frames) <= 100  # roughly 0.3-2 s of speech
    # The quiet TTS head and tail were trimmed: the first and last frames are audible.
    assert _dbfs(frames[0]) > -45 and _dbfs(frames[-1]) > -45
