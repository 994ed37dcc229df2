"""The virtual-time simulator (:mod:`hydralab.sim`): emulator, bridge and caller cores on one
manual clock, no sockets — the same run directory as ``run_record``, deterministically."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fidelity_cases import short_tool_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from needs import needs_speech

from hydralab.bridge_core import End, ToModel, ToModelAudio
from hydralab.client import HydraClient, HydraConfig, HydraError, SentEventIds
from hydralab.emulator import EmulatorConfig
from hydralab.protocol.hydra import (
    ConversationItemCreate,
    InputAudioBufferAppend,
    ResponseCreate,
    SessionConfigured,
    UnknownEvent,
)
from hydralab.records import load_record
from hydralab.runner import RUN_FILES, RunResult
from hydralab.script import Speak, script_from_lines
from hydralab.sim import (
    SimConfig,
    SimModelSession,
    Simulation,
    choice_ms,
    simulate_record,
    uniform_ms,
)
from hydralab.tools import ToolExecutor

pytestmark = needs_speech

EPOCH_MS = 1_767_225_600_000
GREETING = "Hello! Thanks for calling SkyWay. How can I help you today?"
RES = {"confirmation_number": "HT4KWB", "last_name": "brooks"}


def _tools() -> ToolExecutor:
    return ToolExecutor.for_record(load_record())


# ---------------------------------------------------------------- the default record


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    out = tmp_path_factory.mktemp("sim")
    simulate_record(None, out_dir=out / "warm", run_id="w")  # renders the speech once
    t = time.perf_counter()
    res = simulate_record(None, out_dir=out, run_id="sim", sim=SimConfig(epoch_ms=EPOCH_MS))
    total = time.perf_counter() - t
    sim = res.simulation
    assert sim is not None
    call_s = ((sim.ended_ns or 0) - sim.clock.t0_ns) / 1e9
    print(
        f"\ndefault record: {call_s:.1f} s call simulated in {sim.wall_s:.3f} s "
        f"({sim.steps} steps); with the run directory and scoring {total:.3f} s"
    )
    return res


def test_default_record_call_completes(default_run: RunResult) -> None:
    res = default_run
    rec = load_record()
    assert res.error is None and res.ended_reason == "goodbye"
    assert res.caller is not None and res.caller.ended_reason == "goodbye"
    assert res.model == "emulator" and res.session is None and res.emulator is None
    expected_tools = [e["tool_name"] for e in rec.trace if e["event_type"] == "tool_call"]
    assert res.tools_called == expected_tools
    assert res.scores["task_completion"] == 1.0
    assert len(res.turns) == 5 and all(t["status"] == "completed" for t in res.turns)
    assert all(t.ended_by == "mark" for t in res.caller.assistant_turns)
    assert all(t["model_response_ms"] is not None for t in res.turns[1:])
    sim = res.simulation
    assert sim is not None and sim.done and not sim.timed_out
    assert sim.bridge_finished and sim.caller_finished
    assert [s.closed_reason for s in sim.emulator_sessions] == ["client closed (1000)"]


def test_run_directory_has_every_file_run_record_writes(default_run: RunResult) -> None:
    res = default_run
    assert res.run_dir.parent.name == "records"  # EVA's <run_dir>/records/<record_id>/
    assert (res.run_dir.parent.parent / "config.json").is_file()
    assert {p.name for p in res.run_dir.iterdir()} == RUN_FILES
    result = json.loads((res.run_dir / "result.json").read_text())
    assert result["completed"] is True and result["conversation_ended_reason"] == "goodbye"
    assert result["error_details"] is None and res.completed and res.not_completed == []
    assert result["num_turns"] == 4  # as EVA counts: the user entries of the audit log
    meta = json.loads((res.run_dir / "run.json").read_text())
    assert meta["verdict"] == {"completed": True, "not_completed": []}
    assert meta["model"] == "emulator" and meta["emulator"]["profile"] == "live"
    assert meta["hydra"]["output_rate_hz"] == 24000
    assert meta["hydra"]["url"].startswith("sim://")
    assert meta["bridge"]["connect_attempts"] == 1
    assert meta["simulation"]["seed"] == 0 and meta["simulation"]["timed_out"] is False
    # the oracle transcriber: the caller's intended lines, by construction (WER 0)
    assert meta["stt"]["provider"] == "oracle" and meta["stt"]["wer"]["wer"] == 0.0
    # the model's frames, both ways, with the client's event ids
    rows = [json.loads(x) for x in (res.run_dir / "events.jsonl").read_text().splitlines()]
    assert rows[0]["frame"]["type"] == "hydra_endpoint"
    out = [r["frame"] for r in rows if r["src"] == "hydra" and r["dir"] == "out"]
    assert out[0]["type"] == "session.configure"
    assert all(f["event_id"].startswith("evt_") and len(f["event_id"]) == 18 for f in out)
    assert any(f["type"] == "input_audio_buffer.append" for f in out)
    last = json.loads((res.run_dir / "user_simulator_events.jsonl").read_text().splitlines()[-1])
    assert last["data"]["details"]["reason"] == "goodbye"


def test_the_wire_is_what_the_emulator_received(default_run: RunResult) -> None:
    """Frames reach the emulator exactly as the bridge's client framed and logged them."""
    sim = default_run.simulation
    assert sim is not None
    rows = [json.loads(x) for x in (default_run.run_dir / "events.jsonl").read_text().splitlines()]
    sent = [r["frame"]["event_id"] for r in rows if r["src"] == "hydra" and r["dir"] == "out"]
    got = [f.get("event_id") for f in sim.emulator_sessions[0].frames_in]
    assert got == sent
    assert sim.client.stats.frames_out == len(sent)
    assert sim.client.stats.frames_in == len(sim.emulator_sessions[0].frames_out)


def test_a_60_second_call_takes_a_fraction_of_it(tmp_path: Path) -> None:
    """No timing assert (a loaded CI box): the structure, and the wall time printed."""
    lines = [
        "Hi, I need to change a flight I booked for next week, the one going to Seattle.",
        "The confirmation number is HT4KWB and the last name on the booking is Brooks.",
        "I would like to leave on May twelfth instead, some time after nine in the morning.",
        "Yes, the ten fifteen departure works for me, please go ahead and book that one.",
        "Could I also get a window seat on that flight, somewhere near the front?",
        "No, that is everything for today. Thank you so much for your help, goodbye.",
    ]
    answers: list[tuple[Any, ...]] = [
        (Speak("Of course, I can help with that. What is your confirmation number?"),),
        (Speak("Thank you. Let me pull up the booking with that confirmation number."),),
        (Speak("There is a ten fifteen departure on May twelfth with seats available."),),
        (Speak("Done. You are now booked on the ten fifteen flight on May twelfth."),),
        (Speak("I have assigned you a window seat in row six. Anything else I can do?"),),
        (Speak("You are welcome. Have a great trip, and goodbye."),),
    ]
    script = script_from_lines(GREETING, lines, answers, record_id="HL-AIR-001")
    simulate_record(None, out_dir=tmp_path / "warm", run_id="w", script=script)
    res = simulate_record(None, out_dir=tmp_path, run_id="t", script=script)
    sim = res.simulation
    assert sim is not None and res.ended_reason == "goodbye"
    call_s = ((sim.ended_ns or 0) - sim.clock.t0_ns) / 1e9
    assert 50.0 <= call_s <= 90.0, call_s
    per_s = sim.wall_s / call_s
    print(f"\n{call_s:.1f} s call simulated in {sim.wall_s:.3f} s ({1 / per_s:.0f}x real time)")


# ---------------------------------------------------------------- determinism


def _run_files(run_dir: Path, out_dir: Path) -> dict[str, bytes]:
    """Every file of the run, the output directory's path masked (it is in result.json)."""
    files = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    files["config.json"] = (run_dir.parent.parent / "config.json").read_bytes()
    return {k: v.replace(str(out_dir).encode(), b"<out>") for k, v in files.items()}


def test_same_seed_same_run_byte_for_byte(tmp_path: Path) -> None:
    noisy = SimConfig(
        seed=7,
        epoch_ms=EPOCH_MS,
        network_jitter=uniform_ms(0.0, 3.0),
        pacer_lateness=choice_ms((0.0, 0.0, 5.0, 25.0)),
        caller_stall=uniform_ms(0.0, 10.0),
        stt_latency_ms=150.0,
        tool_latency_ms=40.0,
    )
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        res = simulate_record(None, out_dir=out, run_id="r", script=short_tool_script(), sim=noisy)
        assert res.ended_reason == "goodbye"
        runs.append(_run_files(res.run_dir, out))
    a, b = runs
    assert a.keys() == b.keys()
    for name in sorted(a):
        assert a[name] == b[name], name
    result = json.loads(a["result.json"])
    # with epoch_ms given, even the start and end stamps are the virtual clock's
    assert result["started_at"] == dt.datetime.fromtimestamp(EPOCH_MS / 1000).isoformat()
    assert result["duration_seconds"] > 5.0  # the call's virtual length, not the wall time
    # another seed, another network: the run changes with it
    out = tmp_path / "c"
    other = dict(noisy.__dict__, seed=8)
    res = simulate_record(
        None, out_dir=out, run_id="r", script=short_tool_script(), sim=SimConfig(**other)
    )
    assert _run_files(res.run_dir, out)["events.jsonl"] != a["events.jsonl"]


# ---------------------------------------------------------------- the guard


def test_a_call_past_max_call_s_ends_as_timed_out_not_completed(tmp_path: Path) -> None:
    res = simulate_record(
        None, out_dir=tmp_path, run_id="t", sim=SimConfig(epoch_ms=EPOCH_MS, max_call_s=12.0)
    )
    sim = res.simulation
    assert sim is not None and sim.timed_out
    assert res.ended_reason == "timeout"
    assert res.error is not None and "max_call_s" in res.error
    result = json.loads((res.run_dir / "result.json").read_text())
    assert result["completed"] is False and result["conversation_ended_reason"] == "timeout"
    why = result["error_details"]["not_completed"]
    assert why[:2] == ["call ended: timeout", f"error: {res.error}"]
    assert any(w.startswith("caller ended: error") for w in why)
    assert res.caller is not None and res.caller.ended_reason == "error"
    assert {p.name for p in res.run_dir.iterdir()} == RUN_FILES  # finalized all the same
    assert sim.ended_ns == sim.clock.t0_ns + 12 * 10**9
    assert all(s.closed_reason is not None for s in sim.emulator_sessions)


# ---------------------------------------------------------------- the model session


def test_sim_model_session_frames_events_as_hydra_client_does() -> None:
    cfg = HydraConfig(url="ws://unused/waves/v1/s2s")
    client = HydraClient(cfg, api_key="k")
    client._ids = SentEventIds("abc123")  # the same prefix on both sides
    client._configured.set()
    sent: list[str] = []

    async def capture(text: str, logged: dict[str, Any], *, elided: bool = False) -> None:
        sent.append(text)

    client._send_text = capture  # type: ignore[method-assign]
    events = [
        ResponseCreate(),
        ConversationItemCreate.function_call_output("call_1", '{"status": "success"}'),
    ]
    pcm = (1000 * np.sin(np.arange(320) * 0.1)).astype(np.int16)

    async def send_all() -> None:
        for ev in events:
            await client.send(ev)
        await client.send_audio(pcm)

    asyncio.run(send_all())
    logged: list[tuple[str, dict[str, Any]]] = []
    sim = SimModelSession(cfg, prefix="abc123", frame_logger=lambda d, f, t: logged.append((d, f)))
    sim.state = "open"
    with pytest.raises(HydraError, match=r"before session\.configured"):
        sim.encode(InputAudioBufferAppend.from_pcm(pcm), 0)
    sim.configured = SessionConfigured(session={})
    mine = [sim.encode(ev, 0) for ev in events]
    mine.append(sim.encode(InputAudioBufferAppend.from_pcm(pcm), 0))
    assert mine == sent
    assert [sim.sent_type(json.loads(t)["event_id"]) for t in mine] == [
        "response.create",
        "conversation.item.create",
        "input_audio_buffer.append",
    ]
    assert logged[-1][1]["audio"] == "<640 bytes>"  # audio elided as HydraClient does


def test_sim_model_session_rejects_bad_frames_as_the_client_does() -> None:
    logged: list[dict[str, Any]] = []
    s = SimModelSession(
        HydraConfig(), prefix="000000", frame_logger=lambda d, f, t: logged.append(f)
    )
    assert s.take("not json", 0) is None
    ev = s.take('{"type": "response.output_audio.delta", "response_id": "r", "delta": 5}', 0)
    assert isinstance(ev, UnknownEvent) and ev.malformed is not None
    assert s.stats.frames_in == 2 and s.stats.rejected_in == 1  # the malformed one goes on
    assert logged[0]["type"] == "<unparseable>"


def test_a_malformed_model_frame_reaches_the_core_as_rejected() -> None:
    sim = Simulation(short_tool_script(), tools=_tools(), sim=SimConfig(epoch_ms=EPOCH_MS))
    while not sim.core.model_up:
        assert sim.step()
    bad = '{"type": "response.done", "response": 5}'
    sim._at(sim.clock.now_ns() + 1_000_000, sim._model_frame, sim.client, bad)
    sim.run()
    assert sim.core.rejected_model_frames == 1  # counted once: by the core, not the session
    assert sim.client.stats.rejected_in == 0
    assert sim.summary()["rejected_model_frames"] == 1
    assert sim.core.ended_reason == "goodbye"


# ---------------------------------------------------------------- driving it by hand


def test_simulation_can_be_stepped_and_inspected() -> None:
    sim = Simulation(short_tool_script(), tools=_tools(), sim=SimConfig(epoch_ms=EPOCH_MS))
    assert sim.writer is None and sim.clock.now_ns() == sim.started_ns
    times = []
    while sim.step():
        times.append(sim.clock.now_ns())
    assert times == sorted(times)  # virtual time never goes back
    assert sim.done and sim.caller_result is not None
    assert sim.caller_result.ended_reason == "goodbye"
    assert sum(isinstance(e, End) for _, e in sim.effects) == 1
    end_t = next(t for t, e in sim.effects if isinstance(e, End))
    # nothing goes to the model after the end but what the drain lets through
    assert not any(isinstance(e, ToModelAudio) and t > end_t for t, e in sim.effects)
    calls = [e for _, e in sim.effects if isinstance(e, ToModel) and e.call_id is not None]
    assert len(calls) == 1  # the one tool output
    assert sim.tools.call_counts == {"get_reservation": 1}
    assert sim.summary()["turns"] == sim.core.summary()["turns"]


def test_stuck_core_is_reported_not_looped_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Simulation(short_tool_script(), tools=_tools(), sim=SimConfig(epoch_ms=EPOCH_MS))
    while not sim.core.model_up:
        sim.step()
    now = sim.clock.now_ns()
    monkeypatch.setattr(sim.core, "next_deadline_ns", lambda: now)
    monkeypatch.setattr(sim.core, "advance", lambda t: [])
    sim._bridge_dirty = True
    with pytest.raises(RuntimeError, match="stuck"):
        sim.run()


# ---------------------------------------------------------------- jitter, as a property


@pytest.fixture(scope="module")
def reference() -> Simulation:
    """The short call with no jitter at all: the assistant audio every run must record."""
    return Simulation(short_tool_script(), tools=_tools(), sim=SimConfig(epoch_ms=EPOCH_MS)).run()


def _turn_audio(sim: Simulation, index: int) -> np.ndarray:
    """The recorded 48 kHz assistant audio of one turn, from 2 ms before its first played
    sample to 2 ms after its last."""
    turn = sim.core.tracker.turns[index]
    assert turn.first_played_t_ns is not None
    i = sim.core.timeline.index_of(turn.first_played_t_ns)
    track = sim.core.timeline.track("assistant")
    return track[max(0, i - 96) : i + turn.samples_played + 96]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**16),
    late_ms=st.sampled_from([(0.0, 12.0, 25.0, 40.0), (0.0, 0.0, 0.0, 40.0), (5.0, 15.0)]),
    jitter_ms=st.floats(0.0, 0.9),
    stall_ms=st.sampled_from([0.0, 10.0, 30.0]),
)
def test_jitter_leaves_the_recording_whole_and_latency_exact(
    reference: Simulation, seed: int, late_ms: tuple[float, ...], jitter_ms: float, stall_ms: float
) -> None:
    """Whatever the pacer's late wake-ups (up to 40 ms, below the caller's underrun tolerance)
    and the network's jitter, each turn's recording is exactly the audio of the jitter-free run
    (no hole, nothing overwritten), and ``model_response`` equals the emulator's ground truth
    within 1 ms (both of its anchors cross the same link, so the error is bounded by the jitter,
    kept below 1 ms here)."""
    sim = Simulation(
        short_tool_script(),
        tools=_tools(),
        sim=SimConfig(
            seed=seed,
            epoch_ms=EPOCH_MS,
            pacer_lateness=choice_ms(late_ms),
            network_jitter=uniform_ms(0.0, jitter_ms),
            caller_stall=uniform_ms(0.0, stall_ms),
        ),
    ).run()
    assert sim.core.ended_reason == "goodbye" and not sim.timed_out
    pacer = sim.core.placer.stats
    assert pacer.underruns == 0 and pacer.dropped_after_clear == 0
    if max(late_ms) >= 12.0:
        assert pacer.late_frames > 0
    rows = sim.summary()["turns"]
    assert len(rows) == len(reference.core.tracker.turns) == 3
    for k in range(len(rows)):
        assert np.array_equal(_turn_audio(sim, k), _turn_audio(reference, k)), k
    truths = {t["turn_index"]: t for t in sim.emulator_sessions[0].turn_truths()}
    for row in rows[1:]:
        tr = truths[row["index"]]
        truth_ms = (tr["first_delta_sent_ns"] - tr["speech_stopped_sent_ns"]) / 1e6
        assert row["model_response_ms"] is not None
        assert abs(row["model_response_ms"] - truth_ms) <= 1.0, (row, truth_ms)


def test_model_response_error_is_bounded_by_the_network_jitter(tmp_path: Path) -> None:
    """With 5 ms of jitter the bridge's latency is off the ground truth by at most 5 ms (and
    ``run.json`` has what the bridge measured)."""
    res = simulate_record(
        None,
        out_dir=tmp_path,
        run_id="t",
        script=short_tool_script(),
        sim=SimConfig(seed=3, epoch_ms=EPOCH_MS, network_jitter=uniform_ms(0.0, 5.0)),
    )
    sim = res.simulation
    assert sim is not None
    meta = json.loads((res.run_dir / "run.json").read_text())
    truths = {t["turn_index"]: t for t in sim.emulator_sessions[0].turn_truths()}
    errors = []
    for row in meta["turns"][1:]:
        tr = truths[row["index"]]
        truth_ms = (tr["first_delta_sent_ns"] - tr["speech_stopped_sent_ns"]) / 1e6
        errors.append(row["model_response_ms"] - truth_ms)
    assert errors and all(abs(e) <= 5.0 for e in errors), errors


def test_the_emulators_seed_is_its_own() -> None:
    a = Simulation(short_tool_script(), tools=_tools(), sim=SimConfig(epoch_ms=EPOCH_MS)).run()
    b = Simulation(
        short_tool_script(),
        tools=_tools(),
        emulator_config=EmulatorConfig.live(seed=1),
        sim=SimConfig(epoch_ms=EPOCH_MS),
    ).run()
    la = [t.model_response_ms for t in a.core.tracker.turns[1:]]
    lb = [t.model_response_ms for t in b.core.tracker.turns[1:]]
    assert la != lb  # other latency draws, same call otherwise
    assert b.core.ended_reason == "goodbye" and len(b.core.tracker.turns) == 3
