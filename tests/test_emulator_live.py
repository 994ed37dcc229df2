"""The emulator's ``live`` profile: each knob in virtual time on the core, a few over sockets."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from asyncapi import SKIP_REASON, SPEC_PRESENT, server_schemas, validate
from needs import needs_speech
from test_emulator_core import (
    GREETING,
    MS,
    SCRIPT,
    USER_1,
    USER_2,
    Driver,
    S,
    audio_of,
    caller_pcm,
    frames_of,
    speech_cache,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hydralab.emulator import (
    MODEL_OUTPUT_RATES_HZ,
    VOICE_ROSTERS,
    Emulator,
    EmulatorConfig,
    EmulatorFaults,
    EmulatorSession,
    live_config,
)
from hydralab.protocol.context import with_context
from hydralab.protocol.hydra import (
    ConversationItemCreate,
    InputAudioBufferAppend,
    ResponseCreate,
    SessionConfigure,
)

NO_DELAY = {"handshake_delay_ms": (0, 0)}
CONTEXT = [("assistant", GREETING), ("user", USER_1), ("assistant", "Done, you are all set.")]


def live(
    *,
    model: str = "hydra-v1.1",
    session_index: int = 0,
    resume_turn: int | None = None,
    first_speech_turn: int = 1,
    **overrides: Any,
) -> Driver:
    """A driven session of the live profile (no handshake delay unless ``overrides`` set it)."""
    config = EmulatorConfig.live(**{**NO_DELAY, **overrides})
    session = EmulatorSession(
        SCRIPT,
        config=config,
        speech=speech_cache(config.rate_for_model(model)),
        model=model,
        session_index=session_index,
        first_speech_turn=first_speech_turn,
        resume_turn=resume_turn,
    )
    d = Driver(session)
    d.open()
    return d


def transcript_deltas(frames: list[dict[str, Any]]) -> list[str]:
    return [f["delta"] for f in frames if f["type"] == "response.output_audio_transcript.delta"]


def tool_turn(d: Driver) -> tuple[int, list[str]]:
    """Speak USER_1 and run until both calls' ``.done`` are out: (time of the last, call ids)."""
    d.feed(caller_pcm(USER_1), step_ns=1 * MS)
    d.run_until_type("response.function_call_arguments.done")
    d.run_until_type("response.function_call_arguments.done")
    dones = [
        (t, f["call_id"])
        for t, f in d.frames
        if f["type"] == "response.function_call_arguments.done"
    ]
    return dones[-1][0], [c for _, c in dones]


# ---------------------------------------------------------------- presets


def test_live_preset_values_and_overrides() -> None:
    c = EmulatorConfig.live()
    assert c.profile == "live" and c.rate_by_model and c.validate_voice and c.strict_path
    assert (c.transcript_deltas, c.tool_response_done, c.resume) == (
        "unspaced",
        "late",
        "with_context",
    )
    assert c.barge_in_tail_ms == 400 and c.handshake_delay_ms == (1000.0, 2000.0)
    assert c.tool_response_done_after_ms == 1500.0 and c.rate_announcement == "number"
    assert live_config(seed=3) == EmulatorConfig.live(seed=3)
    assert EmulatorConfig.for_profile("live", resume="never").resume == "never"
    classic = EmulatorConfig.for_profile("classic")
    assert classic == EmulatorConfig() and classic.profile == "classic"
    assert not classic.rate_by_model and classic.tool_response_done == "prompt"
    with pytest.raises(ValueError, match="transcript_deltas"):
        EmulatorConfig(transcript_deltas="words")
    with pytest.raises(ValueError, match="handshake_delay_ms"):
        EmulatorConfig(handshake_delay_ms=(2000, 1000))
    with pytest.raises(ValueError, match="unknown emulator profile"):
        EmulatorConfig.for_profile("staging")


# ---------------------------------------------------------------- 1. output rate by tag


@pytest.mark.parametrize("model", ["hydra-v1.1", "hydra-v1.0", "hydra"])
def test_output_rate_follows_the_model_tag(model: str) -> None:
    rate = MODEL_OUTPUT_RATES_HZ[model]
    assert rate == (24000 if model == "hydra-v1.1" else 48000)
    d = live(model=model)
    (configured,) = d.configure(generate_initial_response=True)
    assert configured["session"]["output_audio_sample_rate"] == rate
    assert d.s.output_rate_hz == rate
    done = d.run_until_type("response.done")
    frames = frames_of(d, done["response"]["id"])
    np.testing.assert_array_equal(audio_of(frames), speech_cache(rate).get(GREETING).pcm)
    deltas = [f for f in frames if f["type"] == "response.output_audio.delta"]
    assert all(len(base64.b64decode(f["delta"])) == 2 * rate // 10 for f in deltas[:-1])
    # classic: one rate for every tag
    classic = EmulatorSession(
        SCRIPT, config=EmulatorConfig(), speech=speech_cache(48000), model=model
    )
    assert classic.output_rate_hz == 48000
    with pytest.raises(ValueError, match="speech cache rate"):
        EmulatorSession(
            SCRIPT, config=EmulatorConfig.live(), speech=speech_cache(48000), model="hydra-v1.1"
        )


@pytest.mark.parametrize(("how", "expected"), [("string", "24000"), ("absent", None)])
def test_rate_announcement_variants(how: str, expected: str | None) -> None:
    d = live(rate_announcement=how)
    (configured,) = d.configure(generate_initial_response=True)
    assert configured["session"].get("output_audio_sample_rate") == expected
    assert ("output_audio_sample_rate" in configured["session"]) == (expected is not None)
    done = d.run_until_type("response.done")  # the audio is 24 kHz whatever is announced
    n = len(audio_of(frames_of(d, done["response"]["id"])))
    assert n == len(speech_cache(24000).get(GREETING).pcm)


# ---------------------------------------------------------------- 2. voices


def test_voice_rosters_per_tag() -> None:
    assert VOICE_ROSTERS["hydra"] == VOICE_ROSTERS["hydra-v1.1"] | VOICE_ROSTERS["hydra-v1.0"]
    assert not VOICE_ROSTERS["hydra-v1.1"] & VOICE_ROSTERS["hydra-v1.0"]
    cases = [
        ("hydra-v1.1", "aria", True),
        ("hydra-v1.1", "sterling", False),  # a v1.0 voice: the rosters do not overlap
        ("hydra-v1.0", "sterling", True),
        ("hydra-v1.0", "zoe", False),
        ("hydra", "zoe", True),
        ("hydra", "vaughn", True),
    ]
    cases += [(m, v, False) for m in VOICE_ROSTERS for v in ("wren", "knox", "tate")]
    for model, voice, ok in cases:
        d = live(model=model)
        (out,) = d.configure(voice=voice)
        assert out["type"] == ("session.configured" if ok else "error"), (model, voice)
        assert d.s.configured == ok
    for model in VOICE_ROSTERS:  # omitted voice: sterling on every tag
        d = live(model=model)
        (out,) = d.configure()
        assert out["session"]["voice"] == "sterling"
    # classic echoes whatever it is given
    d = Driver(EmulatorSession(SCRIPT, config=EmulatorConfig(), speech=speech_cache(48000)))
    d.open()
    assert d.configure(voice="wren")[0]["session"]["voice"] == "wren"


def test_unknown_voice_error_frame_then_a_corrected_configure() -> None:
    d = live()
    bad = SessionConfigure(
        session={"voice": "wren", "generate_initial_response": True}, event_id="evt_cfg1"
    )
    (err,) = d.recv(bad)
    assert err["type"] == "error" and err["event_id"].startswith("sv_")
    assert err["error"]["type"] == err["error"]["code"] == "invalid_request_error"
    assert err["error"]["param"] == "session.configure.session.voice"
    assert err["error"]["event_id"] == "evt_cfg1"
    assert "wren" in err["error"]["message"]
    assert d.run_for(5 * S) == []  # no session.configured, no greeting; the socket stays
    assert d.closed is None and not d.s.configured and d.s.configure_bytes is None
    assert d.feed(caller_pcm(USER_2)) == []  # audio is dropped as before a configure
    assert "configure_rejected" in d.s.kinds()
    # Without an event_id there is none to echo.
    (err2,) = d.configure(voice="reed")
    assert "event_id" not in err2["error"]
    (ok,) = d.configure(voice="zoe", generate_initial_response=True)
    assert ok["type"] == "session.configured" and ok["session"]["voice"] == "zoe"
    assert d.run_until_type("response.done")["response"]["status"] == "completed"


def test_errors_echo_the_client_event_id() -> None:
    d = live()
    d.configure()
    (err,) = d.recv(json.dumps({"type": 5, "event_id": "evt_bad_type"}))
    assert err["error"]["event_id"] == "evt_bad_type"
    (err,) = d.recv(json.dumps({"type": "input_audio_buffer.commit", "event_id": "evt_u"}))
    assert err["error"]["event_id"] == "evt_u"
    (err,) = d.recv(InputAudioBufferAppend(audio="AAAA", event_id="evt_small"))
    assert err["error"]["event_id"] == "evt_small"


# ---------------------------------------------------------------- 3. transcript deltas


@pytest.mark.parametrize("mode", ["spaced", "unspaced", "none"])
def test_transcript_delta_modes(mode: str) -> None:
    d = live(transcript_deltas=mode)
    d.configure(generate_initial_response=True)
    done = d.run_until_type("response.done")
    frames = frames_of(d, done["response"]["id"])
    deltas = transcript_deltas(frames)
    np.testing.assert_array_equal(audio_of(frames), speech_cache(24000).get(GREETING).pcm)
    if mode == "none":
        assert deltas == [] and "first_transcript_delta" not in d.s.kinds()
        return
    assert deltas[0] == "Hello!" and len(deltas) == 2
    if mode == "spaced":
        assert "".join(deltas) == GREETING
    else:
        assert all(t == t.strip() and t for t in deltas)
        assert deltas[1] == "How can I help you today?"
        assert "".join(deltas) == "Hello!How can I help you today?"  # the naive join is wrong
        assert " ".join(deltas) == GREETING


def test_unspaced_tokens_across_speak_steps() -> None:
    # Turn 2 is two Speak steps in one response: no space carried between them either.
    d = live(first_speech_turn=2)
    d.configure()
    d.feed(caller_pcm(USER_2), step_ns=1 * MS)
    done = d.run_until_type("response.done")
    deltas = transcript_deltas(frames_of(d, done["response"]["id"]))
    assert deltas == ["You are welcome.", "Goodbye."]


# ---------------------------------------------------------------- 4. tool responses


def test_late_tool_response_done_after_the_timer() -> None:
    d = live()
    d.configure()
    t_last, _ = tool_turn(d)
    assert "response.done" not in d.types()  # not with the last .done
    got = d.run_for(3 * S)
    assert [f["type"] for f in got] == ["response.done"]
    done = got[0]["response"]
    assert done["status"] == "completed"
    assert [i["type"] for i in done["output"]] == ["function_call", "function_call"]
    t_done = next(t for t, f in d.frames if f["type"] == "response.done")
    assert t_done - t_last == 1500 * MS


def test_late_tool_response_done_released_by_response_create() -> None:
    d = live()
    d.configure()
    _, calls = tool_turn(d)
    d.run_for(300 * MS)
    for call_id in calls:
        assert d.recv(ConversationItemCreate.function_call_output(call_id, "{}")) == []
    t_create = d.now
    got = d.recv(ResponseCreate())
    assert [f["type"] for f in got] == ["response.done"]  # released by the create, at once
    assert got[0]["response"]["status"] == "completed"
    created = d.run_until_type("response.created")  # the narration, after its own latency
    sched = [g for g in d.s.log if g.kind == "response_scheduled"][-1]
    t_created = next(t for t, f in d.frames if f is created)
    assert sched.detail == "tool_output" and sched.t_ns == t_create
    assert sched.injected_latency_ms is not None
    assert t_created - t_create == int(sched.injected_latency_ms * MS)
    assert d.types().count("response.done") == 1
    done = d.run_until_type("response.done")
    assert done["response"]["id"] == created["response"]["id"]
    assert d.s.turn_truths()[0]["statuses"] == ["completed", "completed"]


def test_never_tool_response_done_and_empty_output() -> None:
    d = live(tool_response_done="never")
    d.configure()
    _, calls = tool_turn(d)
    assert d.run_for(5 * S) == []
    for call_id in calls:
        d.recv(ConversationItemCreate.function_call_output(call_id, "{}"))
    assert d.recv(ResponseCreate()) == []
    narration = d.run_until_type("response.done")  # the narration still comes
    assert d.types().count("response.done") == 1
    assert d.types().count("response.created") == 2
    (row,) = d.s.turn_truths()
    assert len(row["response_ids"]) == 2 and row["statuses"] == ["completed", "completed"]
    assert narration["response"]["id"] == row["response_ids"][1]
    assert "response_done_withheld" in d.s.kinds()

    e = live(tool_response_done="prompt", tool_response_done_empty_output=True)
    e.configure()
    t_last, _ = tool_turn(e)
    (done,) = [f for t, f in e.frames if f["type"] == "response.done" and t == t_last]
    assert done["response"]["output"] == [] and done["response"]["status"] == "completed"


def test_late_tool_response_done_keeps_the_tool_timeout() -> None:
    d = live(tool_output_timeout_s=2.0)
    d.configure()
    t_last, _ = tool_turn(d)
    got = d.run_for(2 * S + 1)
    assert [f["type"] for f in got] == ["response.done", "error"]
    assert got[1]["error"]["code"] == "tool_response_timeout"
    t_err = next(t for t, f in d.frames if f["type"] == "error")
    assert t_err - t_last == 2 * S


# ---------------------------------------------------------------- 5. barge-in tail


def barge_in(**overrides: Any) -> tuple[Driver, str, list[tuple[int, dict[str, Any]]]]:
    d = live(**overrides)
    d.configure(generate_initial_response=True)
    d.run_until_type("response.output_audio.delta")
    rid = d.s.log[-1].response_id
    assert rid is not None
    got = d.feed(caller_pcm(USER_1, lead_ms=0), step_ns=2 * MS)
    return d, rid, got


def test_barge_in_tail_then_cancelled() -> None:
    d, rid, _ = barge_in()
    types = d.types()
    i = types.index("input_audio_buffer.speech_started")
    j = types.index("response.done")
    between = [f for _, f in d.frames[i + 1 : j]]
    tail = [f for f in between if f["type"] == "response.output_audio.delta"]
    assert len(tail) == 400 // 100 and all(f["response_id"] == rid for f in tail)
    assert not [f for f in between if f["type"].startswith("response.output_audio_transcript")]
    done = d.frames[j][1]["response"]
    assert done["id"] == rid and done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "interrupted"}
    assert done["output"][0]["status"] == "incomplete"
    assert "response.output_audio.done" not in types
    # The tail keeps the stream's pace and is a prefix of the greeting.
    times = [t for t, f in d.frames[i + 1 : j] if f["type"] == "response.output_audio.delta"]
    assert np.diff(times).tolist() == [10 * MS] * 3
    sent = audio_of(frames_of(d, rid))
    full = speech_cache(24000).get(GREETING).pcm
    np.testing.assert_array_equal(sent, full[: len(sent)])
    assert 0 < len(sent) < len(full)
    (cancelled,) = [g for g in d.s.log if g.kind == "response_cancelled"]
    t_started = d.frames[i][0]
    assert cancelled.t_ns == t_started and cancelled.detail is not None
    done_truth = [g for g in d.s.log if g.kind == "response_done"][-1]
    assert done_truth.output_audio_ms == len(sent) * 1000 // 24000
    assert d.s.turn_truths()[0]["statuses"] == ["cancelled"]
    # The interrupted greeting counts as answered: the user's turn gets the tool turn.
    d.run_until_type("response.function_call_arguments.done")


def test_barge_in_tail_is_only_what_was_left() -> None:
    d, rid, _ = barge_in(barge_in_tail_ms=60_000)
    sent = audio_of(frames_of(d, rid))
    np.testing.assert_array_equal(sent, speech_cache(24000).get(GREETING).pcm)  # all of it
    done = next(f for _, f in d.frames if f["type"] == "response.done")
    assert done["response"]["status"] == "cancelled"
    assert "response.output_audio.done" not in d.types()
    _, _, got = barge_in(barge_in_tail_ms=0)
    kinds = [f["type"] for _, f in got]
    assert kinds[kinds.index("input_audio_buffer.speech_started") + 1] == "response.done"


# ---------------------------------------------------------------- 6. handshake delay


def test_handshake_delay_on_configured_in_virtual_time() -> None:
    d = live(handshake_delay_ms=(1000, 2000))
    assert d.types() == ["session.created"]
    t_configure = d.now
    assert d.configure(generate_initial_response=True) == []
    due = d.s.next_deadline_ns()
    assert due is not None and 1000 * MS <= due - t_configure <= 2000 * MS
    assert d.feed(caller_pcm(USER_2)[: 16 * 200]) == []  # before session.configured: dropped
    assert d.s.dropped_audio_frames == 10 and d.s.received_audio_ms == 0
    assert d.run_until(due - 1) == []
    got = d.run_until(due)
    assert [f["type"] for f in got] == ["session.configured"]
    created = d.run_until_type("response.created")  # the greeting counts from configured
    t_created = next(t for t, f in d.frames if f is created)
    (sched,) = [g for g in d.s.log if g.kind == "response_scheduled"]
    assert sched.t_ns == due and sched.injected_latency_ms is not None
    assert t_created - due == int(sched.injected_latency_ms * MS)
    assert "audio_before_configure" in d.s.kinds()
    # Seeded: the same session index draws the same delay, another index another one.
    again = live(handshake_delay_ms=(1000, 2000))
    again.now = t_configure
    again.configure()
    assert again.s.next_deadline_ns() == due
    other = live(handshake_delay_ms=(1000, 2000), session_index=1)
    other.now = t_configure
    other.configure()
    assert other.s.next_deadline_ns() != due


def test_handshake_delay_on_created_orders_the_frames() -> None:
    d = live(model="hydra", handshake_delay_ms=(1000, 2000), handshake_delay_on="both")
    assert d.types() == []
    created_due = d.s.next_deadline_ns()
    assert created_due is not None and 1000 * MS <= created_due - d.now <= 2000 * MS
    t_open = d.now
    assert d.configure() == []  # an early configure: its reply waits for session.created
    d.run_for(3 * S)
    assert d.types() == ["warning", "session.created", "session.configured"]
    t = {f["type"]: t for t, f in d.frames}
    assert t["session.created"] == created_due <= t["session.configured"]
    assert 1000 * MS <= t["session.configured"] - t_open <= 2000 * MS


# ---------------------------------------------------------------- 7. resume


def spoken_text(d: Driver) -> str:
    done = d.run_until_type("response.done")
    return " ".join(transcript_deltas(frames_of(d, done["response"]["id"])))


def test_resume_with_context_only() -> None:
    instructions, n = with_context("Airline agent.", CONTEXT)
    assert n == 3
    # With the context block: resume where the dead session stopped, and no second greeting.
    d = live(resume_turn=2)
    d.configure(instructions=instructions, generate_initial_response=True)
    assert d.s.context_messages == 3 and d.s.resumed_turn == 2 and d.s.next_speech_turn == 2
    assert d.run_for(5 * S) == []
    assert "greeting_skipped" in d.s.kinds()
    (ctx,) = [g for g in d.s.log if g.kind == "context_received"]
    assert ctx.detail == "3 messages; resumed at 2"
    d.feed(caller_pcm(USER_2), step_ns=1 * MS)
    assert spoken_text(d) == "You are welcome. Goodbye."
    assert [r["turn_index"] for r in d.s.turn_truths()] == [2]
    # Without it the new session knows nothing: it greets and starts from the first reply.
    fresh = live(resume_turn=2)
    fresh.configure(instructions="Airline agent.", generate_initial_response=True)
    assert fresh.s.context_messages is None and fresh.s.resumed_turn is None
    assert spoken_text(fresh) == GREETING
    fresh.feed(caller_pcm(USER_1), step_ns=1 * MS)
    fresh.run_until_type("response.function_call_arguments.done")  # turn 1 again
    # Context but no dead session to resume: recorded, not resumed, no greeting.
    nothing = live()
    nothing.configure(instructions=instructions, generate_initial_response=True)
    assert nothing.s.context_messages == 3 and nothing.s.next_speech_turn == 1
    assert nothing.run_for(5 * S) == []


@pytest.mark.parametrize(("resume", "turn"), [("always", 2), ("never", 1)])
def test_resume_always_and_never(resume: str, turn: int) -> None:
    instructions, _ = with_context("Airline agent.", CONTEXT)
    for text in ("Airline agent.", instructions):
        d = live(resume=resume, resume_turn=2)
        d.configure(instructions=text, generate_initial_response=True)
        assert d.s.next_speech_turn == turn
        assert spoken_text(d) == GREETING  # only with_context skips the greeting


# ---------------------------------------------------------------- over sockets


FAST_LIVE = EmulatorConfig.live(
    latency_median_ms=150.0,
    latency_min_ms=50.0,
    latency_max_ms=400.0,
    tool_args_delay_ms=80.0,
    handshake_delay_ms=(0, 0),
)


def check_schema(frames: list[dict[str, Any]]) -> None:
    if SPEC_PRESENT:
        schemas = server_schemas()
        for f in frames:
            validate(schemas[f["type"]], f)


async def recv_until(ws: Any, wire_type: str, frames: list[dict[str, Any]]) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            f: dict[str, Any] = json.loads(await ws.recv())
            frames.append(f)
            if f["type"] == wire_type:
                return f


@needs_speech
async def test_exact_path_only_in_live() -> None:
    async with Emulator(SCRIPT, config=FAST_LIVE) as emu:
        assert emu.url == f"ws://127.0.0.1:{emu.port}/waves/v1/s2s"
        root = f"ws://127.0.0.1:{emu.port}"
        for path in ("/", "/waves/v1/s2s/", "/v1/s2s", "/waves/v1/s2s/extra"):
            with pytest.raises(InvalidStatus) as exc:
                async with connect(f"{root}{path}?model=hydra-v1.1&api_key=k"):
                    pass
            assert exc.value.response.status_code == 404
        assert emu.sessions == []
        async with connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
    classic = replace(FAST_LIVE, strict_path=False)
    any_path = "/any?model=hydra-v1.1&api_key=k"
    async with (
        Emulator(SCRIPT, config=classic) as emu,
        connect(f"ws://127.0.0.1:{emu.port}{any_path}") as ws,
    ):
        assert json.loads(await ws.recv())["type"] == "session.created"


@needs_speech
async def test_voice_error_and_24k_over_the_socket() -> None:
    frames: list[dict[str, Any]] = []
    async with Emulator(SCRIPT, config=FAST_LIVE) as emu:
        assert emu.speech.sample_rate_hz == 24000
        async with connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws:
            await recv_until(ws, "session.created", frames)
            bad = {"voice": "sterling", "generate_initial_response": True}
            await ws.send(SessionConfigure(session=bad, event_id="evt_v1").dumps())
            err = await recv_until(ws, "error", frames)
            assert err["error"]["event_id"] == "evt_v1"
            assert err["error"]["param"] == "session.configure.session.voice"
            good = {"voice": "aria", "generate_initial_response": True}
            await ws.send(SessionConfigure(session=good).dumps())
            conf = await recv_until(ws, "session.configured", frames)
            assert conf["session"]["output_audio_sample_rate"] == 24000
            done = await recv_until(ws, "response.done", frames)
        async with connect(f"{emu.url}?model=hydra-v1.0&api_key=k") as ws:
            await recv_until(ws, "session.created", frames)
            await ws.send(SessionConfigure(session={}).dumps())
            conf10 = await recv_until(ws, "session.configured", frames)
            assert conf10["session"] == {
                "instructions": "",
                "voice": "sterling",
                "tools": [],
                "generate_initial_response": False,
                "output_audio_sample_rate": 48000,
            }
    assert [f["type"] for f in frames].count("session.configured") == 2
    pcm = np.concatenate(
        [
            np.frombuffer(base64.b64decode(f["delta"]), dtype="<i2")
            for f in frames
            if f.get("response_id") == done["response"]["id"]
            and f["type"] == "response.output_audio.delta"
        ]
    )
    np.testing.assert_array_equal(pcm, emu.speech_for(24000).get(GREETING).pcm)
    assert emu.sessions[1].output_rate_hz == 48000
    check_schema(frames)


@needs_speech
async def test_handshake_delay_over_the_socket() -> None:
    cfg = replace(FAST_LIVE, handshake_delay_ms=(60, 80))
    async with (
        Emulator(SCRIPT, config=cfg) as emu,
        connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws,
    ):
        await ws.recv()
        t0 = asyncio.get_running_loop().time()
        await ws.send(SessionConfigure(session={}).dumps())
        assert json.loads(await ws.recv())["type"] == "session.configured"
        assert 0.055 <= asyncio.get_running_loop().time() - t0 < 1.0


@needs_speech
async def test_reconnect_resumes_only_with_context() -> None:
    """internal_error after the user's first turn; the reconnect carries the context block."""
    faults = EmulatorFaults(internal_error_after_turns=1)
    script = replace(
        SCRIPT, assistant_turns=(SCRIPT.assistant_turns[0], *SCRIPT.assistant_turns[2:])
    )
    frames: list[dict[str, Any]] = []
    async with Emulator(script, config=replace(FAST_LIVE, faults=faults)) as emu:
        async with connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws:
            await recv_until(ws, "session.created", frames)
            await ws.send(SessionConfigure(session={"instructions": "Agent."}).dumps())
            await recv_until(ws, "session.configured", frames)
            pcm = caller_pcm(USER_2)
            for i in range(0, len(pcm) - 319, 320):
                await ws.send(InputAudioBufferAppend.from_pcm(pcm[i : i + 320]).dumps())
            await recv_until(ws, "error", frames)
        assert emu.sessions[0].internal_error_sent and emu.sessions[0].next_speech_turn == 2
        instructions, _ = with_context("Agent.", CONTEXT)
        async with connect(f"{emu.url}?model=hydra-v1.1&api_key=k") as ws:
            await recv_until(ws, "session.created", frames)
            session = {"instructions": instructions, "generate_initial_response": True}
            await ws.send(SessionConfigure(session=session).dumps())
            await recv_until(ws, "session.configured", frames)
            await asyncio.sleep(0.3)  # no greeting comes
        s1 = emu.sessions[1]
        assert s1.resumed_turn == 2 and s1.context_messages == 3
        assert "response_created" not in s1.kinds()
    check_schema(frames)


@needs_speech
@pytest.mark.skipif(not SPEC_PRESENT, reason=SKIP_REASON)
async def test_live_frames_validate_against_asyncapi() -> None:
    """Unspaced transcripts, a late tool done, a barge-in tail, a string rate: all valid."""
    frames: list[dict[str, Any]] = []
    cfg = replace(FAST_LIVE, rate_announcement="string", tool_output_timeout_s=0.5)
    async with (
        Emulator(SCRIPT, config=cfg) as emu,
        connect(f"{emu.url}?model=hydra&api_key=k") as ws,
    ):
        await recv_until(ws, "session.created", frames)
        await ws.send(SessionConfigure(session={"generate_initial_response": True}).dumps())
        await recv_until(ws, "response.output_audio.delta", frames)
        pcm = caller_pcm(USER_1, lead_ms=0)
        for i in range(0, len(pcm) - 319, 320):
            await ws.send(InputAudioBufferAppend.from_pcm(pcm[i : i + 320]).dumps())
        await recv_until(ws, "response.function_call_arguments.done", frames)
        await recv_until(ws, "error", frames)  # tool timeout (0.5 s) before the late done
    types = [f["type"] for f in frames]
    assert "warning" in types and "response.output_audio_transcript.delta" in types
    conf = next(f for f in frames if f["type"] == "session.configured")
    assert conf["session"]["output_audio_sample_rate"] == "48000"
    assert any(f.get("response", {}).get("status") == "cancelled" for f in frames)
    schemas = server_schemas()
    for f in frames:
        validate(schemas[f["type"]], f)


# ids must not be "live": conftest skips tests with that keyword (real-endpoint tests).
@needs_speech
@pytest.mark.parametrize("profile", ["live", "classic"], ids=["live_profile", "classic_profile"])
async def test_hydra_client_builds_a_working_url(profile: str) -> None:
    """``HydraClient`` appends ``?model=…&api_key=…`` to ``Emulator.url`` (path included)."""
    from hydralab.client import HydraClient, HydraConfig

    cfg = EmulatorConfig.for_profile(profile, handshake_delay_ms=(0, 0))
    async with Emulator(SCRIPT, config=cfg) as emu:
        hydra = HydraConfig(url=emu.url, model="hydra-v1.1", instructions="Agent.")
        client = HydraClient(hydra, api_key="sk-test")
        try:
            conf = await client.connect()
        finally:
            await client.close()
        assert client.output_rate_hz == (24000 if profile == "live" else 48000)
        assert conf.session["voice"] == "sterling"
        (s,) = emu.sessions
        assert s.configured and s.model == "hydra-v1.1"


def test_cli_profile_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import hydralab.emulator
    from hydralab.cli import _parser, main

    for cmd in (["run"], ["batch"], ["emulator"]):
        assert _parser().parse_args(cmd).profile == "live"
    seen: list[EmulatorConfig] = []

    async def fake_serve(script: Any, *, port: int, config: EmulatorConfig) -> None:
        seen.append(config)

    monkeypatch.setattr(hydralab.emulator, "serve_forever", fake_serve)
    assert main(["emulator", "--seed", "4"]) == 0
    assert main(["emulator", "--profile", "classic", "--output-rate", "24000"]) == 0
    assert seen == [
        EmulatorConfig.live(seed=4, output_rate_hz=48000),
        EmulatorConfig(output_rate_hz=24000),
    ]
