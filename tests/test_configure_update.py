"""``configure_mode="update"`` (EXPERIMENTAL): the configure carries the full instructions and
the tools that fit, a ``session.update`` carries every tool once ``session.configured`` came.

The plan (:func:`hydralab.protocol.budget.plan_configure`), the bridge core sending the update
(once per configured model session, reconnects included) and recording the echo, the
emulator's handling of ``session.update`` (the docs' rules plus the ``update_ceiling_bytes``
guess), the probe's measured answer, and whole calls in virtual time.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from needs import needs_speech
from websockets.asyncio.client import connect

from hydralab.audio import ulaw_encode
from hydralab.bridge import Bridge, BridgeConfig, BridgeSession
from hydralab.bridge_core import (
    BridgeCore,
    BridgeCoreConfig,
    Log,
    ModelInfo,
    Reconnect,
    ToModel,
    ToModelAudio,
)
from hydralab.client import HydraConfig
from hydralab.clock import Clock, ManualClock
from hydralab.emulator import Emulator, EmulatorConfig, EmulatorFaults
from hydralab.emulator.core import Close, EmulatorSession, Output, SpeechCache
from hydralab.probe import ProbeConfig, run_probe
from hydralab.protocol import twilio as tw
from hydralab.protocol.budget import (
    CONFIGURE_MODES,
    ConfigureTooLargeError,
    configure_bytes,
    greeting_steer,
    plan_configure,
    session_update_bytes,
)
from hydralab.protocol.hydra import (
    ErrorEvent,
    HydraEvent,
    SessionConfigure,
    SessionUpdate,
    SessionUpdated,
)
from hydralab.rundir import RunWriter
from hydralab.script import AssistantSteps, Script, Speak, UserTurn
from hydralab.sim import SimConfig, simulate_record
from hydralab.speech.tts import SynthesizedSpeech
from hydralab.tools import ToolExecutor

MS = 1_000_000
S = 1_000_000_000
EPOCH_MS = 1_767_225_600_000
EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
STEER = greeting_steer("Hello! How can I help you today?")
GEN = {"generate_initial_response": True, "voice": "aria"}
INSTRUCTIONS = "\n\n".join(
    f"## Policy {i}\nAlways verify the caller before changing booking {i}. Be brief and kind."
    for i in range(30)
)


def tool(i: int) -> dict[str, Any]:
    """A synthetic declaration of about 600 bytes, its description with the redundant
    ``"<name>: "`` prefix (the lossless step drops it)."""
    name = f"tool_{i:02d}"
    return {
        "type": "function",
        "name": name,
        "description": f"{name}: " + "Looks something up for the caller. " * 8,
        "parameters": {
            "type": "object",
            "properties": {
                "confirmation_number": {"type": "string", "description": "Six letters. " * 6},
                "last_name": {"type": "string", "description": "As on the booking."},
            },
            "required": ["confirmation_number"],
        },
    }


TOOLS = [tool(i) for i in range(24)]


# ---------------------------------------------------------------- the plan


def test_update_plan_configures_what_fits_and_defers_every_tool() -> None:
    ceiling = 8_000
    r = plan_configure(
        INSTRUCTIONS,
        TOOLS,
        greeting_steer=STEER,
        mode="update",
        ceiling_bytes=ceiling,
        other_fields=GEN,
    )
    assert r.mode == "update" and r.fits and not r.standard
    assert r.bytes <= ceiling and r.bytes == configure_bytes(r.session)
    assert r.label == "non-standard (unverified: tools deferred to session.update)"
    # full instructions, nothing compacted or cut
    assert r.session["instructions"] == INSTRUCTIONS + "\n\n" + STEER
    assert r.instructions_cut_chars == 0 and not r.tools_compacted and r.cut_at is None
    assert {k: r.session[k] for k in GEN} == GEN
    # whole tools, a prefix in declaration order, as many as fit
    names = [t["name"] for t in TOOLS]
    k = len(r.configure_tools)
    assert 0 < k < len(TOOLS) and list(r.configure_tools) == names[:k]
    assert list(r.deferred_tools) == names[k:]
    one_more = {**r.session, "tools": [*r.session["tools"], r.update_session["tools"][k]]}  # type: ignore[index]
    assert configure_bytes(one_more) > ceiling
    # the update: every tool, the same (lossless) declarations as the configure's
    assert r.update is not None
    upd = r.update_session
    assert upd is not None and list(upd) == ["tools"]
    assert [t["name"] for t in upd["tools"]] == names
    assert upd["tools"][:k] == r.session["tools"]
    assert all(not t["description"].startswith(t["name"]) for t in upd["tools"])
    assert r.update_bytes == session_update_bytes(upd) > ceiling
    frame = SessionUpdate(session=upd, event_id="e" * 18).dumps().encode("utf-8")
    assert r.update_bytes == len(frame)
    assert [s.step for s in r.steps] == ["minify", "drop_name_prefix", "defer_tools"]
    assert r.steps[-1].changed == len(TOOLS) - k and r.steps[-1].bytes_after == r.bytes
    d = json.loads(json.dumps(r.to_dict()))
    assert d["mode"] == "update" and not d["standard"] and d["fits"]
    assert d["update"]["bytes"] == r.update_bytes and d["update"]["tools"] == len(TOOLS)
    assert d["update"]["deferred_tools"] == names[k:] and d["update"]["verified"] is False
    assert d["update"]["over_configure_ceiling"] is True
    assert d["tools"] == k
    # the plan never mutates its input
    assert TOOLS[0]["description"].startswith("tool_00: ")


def test_standard_refuses_naming_all_three_modes() -> None:
    with pytest.raises(ConfigureTooLargeError) as info:
        plan_configure(INSTRUCTIONS, TOOLS, greeting_steer=STEER, ceiling_bytes=8_000)
    msg = str(info.value)
    for mode in CONFIGURE_MODES:
        assert f"'{mode}'" in msg
    upd = plan_configure(
        INSTRUCTIONS, TOOLS, greeting_steer=STEER, mode="update", ceiling_bytes=8_000
    )
    assert f"{upd.bytes:,} bytes" in msg and f"{upd.update_bytes:,}-byte session.update" in msg
    assert f"{len(upd.configure_tools)} of {len(TOOLS)} tools" in msg
    with pytest.raises(ValueError, match="'update'"):
        plan_configure(INSTRUCTIONS, TOOLS, greeting_steer=STEER, mode="defer")  # type: ignore[arg-type]
    with pytest.raises(ConfigureTooLargeError, match="'update'"):
        plan_configure(
            INSTRUCTIONS, TOOLS, greeting_steer=STEER, mode="compacted", ceiling_bytes=100
        )


def test_update_mode_refuses_when_the_instructions_alone_do_not_fit() -> None:
    bare = configure_bytes({"instructions": INSTRUCTIONS + "\n\n" + STEER})
    with pytest.raises(ConfigureTooLargeError) as info:
        plan_configure(
            INSTRUCTIONS, TOOLS, greeting_steer=STEER, mode="update", ceiling_bytes=bare - 1
        )
    msg = str(info.value)
    assert f"{bare:,} bytes" in msg and f"{bare - 1:,}-byte ceiling" in msg
    assert "never cuts the instructions" in msg and "'compacted'" in msg
    assert info.value.result.mode == "update" and not info.value.result.fits
    # exactly the instructions' size: no tool fits, every tool is deferred
    r = plan_configure(INSTRUCTIONS, TOOLS, greeting_steer=STEER, mode="update", ceiling_bytes=bare)
    assert r.configure_tools == () and "tools" not in r.session and len(r.deferred_tools) == 24


def test_update_mode_is_standard_when_everything_fits() -> None:
    r = plan_configure(INSTRUCTIONS, TOOLS[:2], greeting_steer=STEER, mode="update")
    assert r.mode == "update" and r.standard and r.update is None and r.fits
    assert r.update_session is None and r.update_bytes == 0 and r.deferred_tools == ()
    assert r.label == "standard" and r.to_dict()["update"] is None
    std = plan_configure(INSTRUCTIONS, TOOLS[:2], greeting_steer=STEER)
    assert r.session == std.session and r.bytes == std.bytes


@pytest.mark.skipif(
    not (EVA_DIR / "configs" / "agents" / "itsm_agent.yaml").is_file(),
    reason="shared EVA checkout not present",
)
def test_eva_itsm_update_plan_fits_the_real_ceiling() -> None:
    from hydralab.records import load_agent_config
    from hydralab.tools import declarations

    agent = load_agent_config(EVA_DIR / "configs" / "agents" / "itsm_agent.yaml")
    tools = declarations(agent)
    text = "You are an IT service desk agent. Verify the caller, then help.\n\n" * 20
    with pytest.raises(ConfigureTooLargeError, match="mode='update'"):
        plan_configure(text, tools, greeting_steer=STEER, other_fields=GEN)
    r = plan_configure(text, tools, greeting_steer=STEER, other_fields=GEN, mode="update")
    assert r.fits and r.bytes <= 32_000 and r.update is not None
    assert 0 < len(r.configure_tools) < len(tools)
    assert r.update.tools == len(tools) and r.update.over_configure_ceiling  # ~43-45 KB tools
    assert r.update_bytes > 40_000


# ---------------------------------------------------------------- the bridge core

PATCH = {"tools": [tool(i) for i in range(3)]}


def _core(**cfg: Any) -> tuple[BridgeCore, ManualClock, list[Any]]:
    clock = ManualClock()
    config = BridgeCoreConfig(
        session={"instructions": "Be brief.", "tools": PATCH["tools"][:1]},
        session_update=PATCH,
        **cfg,
    )
    core = BridgeCore(config, clock=clock, start_ns=clock.now_ns())
    out = core.model_connected(
        ModelInfo(output_rate_hz=48000, configure_bytes=900, session_id="s1"), clock.now_ns()
    )
    return core, clock, out


def _updates(effects: list[Any]) -> list[SessionUpdate]:
    return [
        e.event for e in effects if isinstance(e, ToModel) and isinstance(e.event, SessionUpdate)
    ]


def _logs(effects: list[Any], typ: str) -> list[dict[str, Any]]:
    return [e.data for e in effects if isinstance(e, Log) and e.data.get("type") == typ]


def _media(core: BridgeCore, t_ns: int) -> list[Any]:
    return core.caller_frame(tw.media_frame("s", ulaw_encode(np.zeros(160, np.int16))), t_ns)


def test_core_sends_the_update_once_after_configured_and_records_the_echo() -> None:
    core, clock, out = _core()
    (upd,) = _updates(out)
    assert upd.session == PATCH and upd.session is not PATCH
    (sent,) = _logs(out, "session_update_sent")
    assert sent["bytes"] == session_update_bytes(PATCH) and sent["tools"] == 3
    # nothing waits for the echo: caller audio goes to the model at once
    assert [e for e in _media(core, 5 * MS) if isinstance(e, ToModelAudio)]
    s = core.summary()["session_update"]
    assert s["sent"] == 1 and s["echo"] is False and s["echo_tools"] is None
    out = core.model_event(SessionUpdated(session=PATCH), 40 * MS)
    assert _updates(out) == []
    (echo,) = _logs(out, "session_update_echo")
    assert echo["tools"] == 3 and echo["all_tools_applied"] and echo["after_ms"] == 40.0
    s = core.summary()["session_update"]
    assert {k: s[k] for k in ("sent_bytes", "echo", "echo_tools", "all_tools_applied")} == {
        "sent_bytes": session_update_bytes(PATCH),
        "echo": True,
        "echo_tools": 3,
        "all_tools_applied": True,
    }
    assert s["echo_after_ms"] == 40.0 and s["error"] is None and s["verified"] is False
    assert s["attempts"][0]["echo_t_epoch_ms"] == clock.epoch_ms(40 * MS)
    assert s["attempts"][0]["session_id"] == "s1"
    json.dumps(core.summary())
    # later events send nothing more
    assert _updates(core.advance(500 * MS)) == []


def test_core_resends_the_update_after_a_reconnect() -> None:
    core, _clock, out = _core()
    assert len(_updates(out)) == 1
    core.model_event(SessionUpdated(session=PATCH), 10 * MS)
    out = core.model_closed(1011, 1 * S)
    (rc,) = [e for e in out if isinstance(e, Reconnect)]
    assert rc.session["tools"] == PATCH["tools"][:1]  # the configure's share, as planned
    assert _updates(out) == []
    out = core.model_connected(
        ModelInfo(output_rate_hz=48000, configure_bytes=950, session_id="s2"), 2 * S
    )
    (upd,) = _updates(out)
    assert upd.session == PATCH
    s = core.summary()["session_update"]
    assert s["sent"] == 2 and [a["session_id"] for a in s["attempts"]] == ["s1", "s2"]
    assert s["echo"] is False and s["all_tools_applied"] is False  # the second: no echo yet
    core.model_event(SessionUpdated(session={"tools": PATCH["tools"][:2]}), 2 * S + 30 * MS)
    s = core.summary()["session_update"]
    assert s["echo"] is True and s["echo_tools"] == 2 and s["all_tools_applied"] is False
    assert s["attempts"][1]["echo_after_ms"] == 30.0


def test_core_records_an_error_answering_the_update() -> None:
    core, _clock, _out = _core()
    err = ErrorEvent(
        error={"type": "invalid_request_error", "code": "invalid_frame", "message": "nope"}
    )
    out = core.model_event(err, 20 * MS, caused_by="session.update")
    (logged,) = _logs(out, "session_update_error")
    assert logged["code"] == "invalid_frame"
    s = core.summary()["session_update"]
    assert s["echo"] is False and s["error"]["code"] == "invalid_frame"
    assert core.summary()["errors"][-1]["caused_by"] == "session.update"
    # an unrelated error afterwards is not the update's
    core.model_event(ErrorEvent(error={"code": "invalid_audio", "message": "x"}), 30 * MS)
    assert core.summary()["session_update"]["error"]["code"] == "invalid_frame"


def test_core_without_a_deferred_update_sends_none() -> None:
    clock = ManualClock()
    core = BridgeCore(BridgeCoreConfig(session={"instructions": "x"}), clock=clock, start_ns=0)
    out = core.model_connected(ModelInfo(), 0)
    assert _updates(out) == [] and core.summary()["session_update"] is None
    # an unsolicited echo is logged, nothing else
    out = core.model_event(SessionUpdated(session={"tools": []}), 5 * MS)
    assert _logs(out, "session_updated_unexpected")


@needs_speech
async def test_the_socket_bridge_sends_the_update_and_records_the_echo(tmp_path: Path) -> None:
    """The asyncio shell: the core's update goes out on the real socket, the echo comes back."""
    emu = Emulator(EMU_SCRIPT, config=EmulatorConfig(latency_median_ms=50.0, latency_min_ms=20.0))
    url = await emu.start()

    def session() -> BridgeSession:
        configure = {
            "instructions": "Be brief.",
            "tools": PATCH["tools"][:1],
            "generate_initial_response": True,
        }
        return BridgeSession(
            BridgeConfig(
                hydra=HydraConfig(url=url, session=configure),
                session_update=PATCH,
            ),
            tools=ToolExecutor({}),
            writer_factory=lambda c: RunWriter(tmp_path, epoch_ms=c.epoch_ms, t0_ns=c.t0_ns),
            transcriber=None,
            api_key="test-key-1234",
            clock=Clock(),
        )

    bridge = Bridge(session)
    await bridge.start()
    try:
        async with connect(bridge.url) as ws:
            await ws.send(tw.connected_frame())
            await ws.send(tw.start_frame("MZu"))
            media = 0
            async with asyncio.timeout(10):
                while media < 5:  # the greeting plays: nothing waited for the echo
                    if json.loads(await ws.recv()).get("event") == "media":
                        media += 1
            await ws.send(tw.stop_frame("MZu"))
        s = await bridge.wait_session(timeout_s=15)
    finally:
        await bridge.stop()
        await emu.stop()
    summary = s.summary()["session_update"]
    assert summary["sent"] == 1 and summary["echo"] and summary["echo_tools"] == 3
    assert summary["all_tools_applied"] and summary["sent_bytes"] == session_update_bytes(PATCH)
    (es,) = emu.sessions
    assert len(es.declared_tools) == 3 and es.update_bytes == [summary["sent_bytes"]]
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    kinds = [(e["src"], e["dir"], e["frame"].get("type")) for e in events]
    assert ("bridge", "-", "session_update_sent") in kinds
    assert ("bridge", "-", "session_update_echo") in kinds
    assert kinds.count(("hydra", "out", "session.update")) == 1  # the frame, as sent
    assert kinds.count(("hydra", "in", "session.updated")) == 1


# ---------------------------------------------------------------- the emulator

EMU_SCRIPT = Script(
    greeting="Hello there.",
    user_turns=(UserTurn("hi", "hi"),),
    assistant_turns=(AssistantSteps((Speak("Hello there."),)), AssistantSteps((Speak("Yes."),))),
)


def _fake_speech(text: str) -> SynthesizedSpeech:
    return SynthesizedSpeech(pcm=np.full(48 * 600, 2000, np.int16), sample_rate_hz=48000)


class _Emu:
    """Plays the emulator's shell at a fake time (no sockets, no eSpeak)."""

    def __init__(self, **cfg: Any) -> None:
        config = EmulatorConfig(output_rate_hz=48000, **cfg)
        speech = SpeechCache(sample_rate_hz=48000, synthesize=_fake_speech)
        self.s = EmulatorSession(EMU_SCRIPT, config=config, speech=speech, model="hydra-v1.1")
        self.now = 1_000 * S
        self.frames: list[dict[str, Any]] = []
        self.take(self.s.open(now_ns=self.now))

    def take(self, outs: list[Output]) -> list[dict[str, Any]]:
        got = []
        for o in outs:
            if isinstance(o, Close):
                continue
            self.s.sent(o, t_ns=self.now)
            got.append(json.loads(o.text))
        self.frames += got
        return got

    def recv(self, ev: HydraEvent | str) -> list[dict[str, Any]]:
        text = ev if isinstance(ev, str) else ev.dumps()
        return self.take(self.s.receive(text, now_ns=self.now))

    def run_for(self, ns: int) -> list[dict[str, Any]]:
        end, got = self.now + ns, []
        while (dl := self.s.next_deadline_ns()) is not None and dl <= end:
            self.now = max(self.now, dl)
            got += self.take(self.s.advance(now_ns=self.now))
        self.now = end
        return got


def _configured(**cfg: Any) -> _Emu:
    e = _Emu(**cfg)
    session = {"instructions": "Be brief.", "tools": [tool(0)], "generate_initial_response": True}
    (configured,) = e.recv(SessionConfigure(session=session))
    assert configured["type"] == "session.configured"
    return e


def _audio_deltas(frames: list[dict[str, Any]]) -> int:
    return sum(f["type"] == "response.output_audio.delta" for f in frames)


@pytest.mark.parametrize("ceiling", [None, 100_000])
def test_emulator_applies_an_update_within_its_ceiling(ceiling: int | None) -> None:
    e = _configured(update_ceiling_bytes=ceiling)
    assert [t["name"] for t in e.s.declared_tools] == ["tool_00"]
    patch = {"tools": [tool(i) for i in range(3)]}
    (echo,) = e.recv(SessionUpdate(session=patch, event_id="evt_upd"))
    assert echo["type"] == "session.updated" and echo["session"] == patch
    assert [t["name"] for t in e.s.declared_tools] == ["tool_00", "tool_01", "tool_02"]
    assert e.s.update_bytes == [len(SessionUpdate(session=patch, event_id="evt_upd").dumps())]
    assert _audio_deltas(e.run_for(10 * S)) > 0  # the greeting plays
    assert "update_oversized" not in e.s.kinds() and e.s.flags == []


def test_emulator_mutes_audio_after_an_update_over_its_ceiling() -> None:
    patch = {"tools": [tool(i) for i in range(10)]}
    size = len(SessionUpdate(session=patch, event_id="evt_upd").dumps().encode())
    e = _configured(update_ceiling_bytes=size - 1)
    (echo,) = e.recv(SessionUpdate(session=patch, event_id="evt_upd"))
    assert echo["type"] == "session.updated"  # applied and echoed, as an oversized configure
    frames = e.run_for(10 * S)
    types = [f["type"] for f in frames]
    assert "response.done" in types and "response.output_audio_transcript.delta" in types
    assert _audio_deltas(frames) == 0
    (truth,) = [g for g in e.s.log if g.kind == "update_oversized"]
    assert truth.detail is not None and f"{size} > {size - 1} bytes" in truth.detail
    assert "configure" in truth.detail


def test_emulator_update_validation_follows_the_docs() -> None:
    """Source: ../shared/reference/smallest-docs/managing-sessions.mdx, "Mid-session updates"
    ("Only the `tools` field is honoured", the echo lists only applied fields, a no-op patch
    produces no echo) and its warning that `session.update` returns `invalid_frame` on
    unknown fields; the live profile reproduces all three."""
    e = _configured()
    # an unknown field: invalid_frame, nothing applied
    bad = SessionUpdate(session={"tools": [tool(5)], "temperature": 0.2}, event_id="evt_bad")
    (err,) = e.recv(bad)
    assert err["type"] == "error" and err["error"]["code"] == "invalid_frame"
    assert err["error"]["event_id"] == "evt_bad"
    assert err["error"]["param"] == "session.update.session.temperature"
    assert [t["name"] for t in e.s.declared_tools] == ["tool_00"]
    assert [g.kind for g in e.s.flags] == ["session_update_invalid"]
    # a no-op patch: no echo
    assert e.recv(SessionUpdate(session={})) == []
    assert e.recv(SessionUpdate(session={"voice": "aria"})) == []  # frozen at handshake
    assert "update_noop" in e.s.kinds() and "update_field_ignored" in e.s.kinds()
    # tools of the wrong type
    (err,) = e.recv(SessionUpdate(session={"tools": {"name": "x"}}))
    assert err["error"]["code"] == "invalid_request_error"
    # the echo carries only the applied field
    (echo,) = e.recv(SessionUpdate(session={"tools": [], "voice": "aria"}))
    assert echo == {
        "type": "session.updated",
        "event_id": echo["event_id"],
        "session": {"tools": []},
    }
    assert e.s.declared_tools == []
    assert _audio_deltas(e.run_for(10 * S)) > 0


# ---------------------------------------------------------------- the probe's measured answer

PROBE_KEY = "sk-canary-update-3b9e"
PROBE_CEILING = 3000


@needs_speech
@pytest.mark.parametrize("update_ceiling", [None, PROBE_CEILING])
async def test_probe_measures_whether_the_update_counts(
    tmp_path: Path, update_ceiling: int | None
) -> None:
    config = EmulatorConfig(
        latency_median_ms=60.0,
        latency_min_ms=20.0,
        latency_max_ms=150.0,
        max_configure_bytes=PROBE_CEILING,
        update_ceiling_bytes=update_ceiling,
        expected_api_key=PROBE_KEY,
    )
    async with Emulator(EMU_SCRIPT, config=config) as emu:
        cfg = ProbeConfig(
            url=emu.url,
            out_dir=tmp_path,
            models=("hydra-v1.1",),
            scenarios=("configure_size",),
            speed=20.0,
            response_timeout_s=30.0,
            handshake_timeout_s=2.0,
            linger_s=0.0,
            bisect_lo_bytes=1024,
            bisect_hi_bytes=8192,
            bisect_sessions=4,
            bisect_tolerance_bytes=128,
        )
        summary = await run_probe(cfg, api_key=PROBE_KEY)
        updated = [s for s in emu.sessions if s.update_bytes]
    (r,) = summary["results"]
    f = r["facts"]
    check = f["session_update_check"]
    assert f["smallest_without_audio_bytes"] > PROBE_CEILING >= check["configure_bytes"]
    assert check["update_bytes"] > f["smallest_without_audio_bytes"]  # over the ceiling alone
    assert check["update_reply"] == "session.updated" and check["update_echo_tools"] == 1
    (s,) = updated
    assert s.update_bytes == [check["update_bytes"]]  # the size as the server measured it
    counts = update_ceiling is not None
    assert f["update_counts_against_ceiling"] is counts
    assert f["session_update_counts"] is counts
    assert check["audio"] is not counts
    assert ("no audio came back" if counts else "audio still came back") in f[
        "update_counts_reason"
    ]
    on_disk = json.loads((tmp_path / "probe_summary.json").read_text())
    assert on_disk["results"][0]["facts"]["update_counts_against_ceiling"] is counts


# ---------------------------------------------------------------- whole calls, virtual time

SIM_CEILING = 6_000  # the default airline record's instructions and 4 of its 15 tools


def _sim_update(tmp: Path, emulator_config: EmulatorConfig) -> Any:
    return simulate_record(
        None,
        out_dir=tmp,
        run_id="u",
        configure_mode="update",
        configure_ceiling_bytes=SIM_CEILING,
        emulator_config=emulator_config,
        sim=SimConfig(epoch_ms=EPOCH_MS),
    )


@needs_speech
def test_sim_update_mode_completes_when_updates_are_not_limited(tmp_path: Path) -> None:
    res = _sim_update(tmp_path, EmulatorConfig.live())
    sim = res.simulation
    assert sim is not None
    meta = json.loads((res.run_dir / "run.json").read_text())
    budget = meta["configure_budget"]
    assert budget["mode"] == "update" and budget["bytes"] <= SIM_CEILING
    assert not budget["standard"] and "unverified" in budget["label"]
    deferred = set(budget["update"]["deferred_tools"])
    assert {"rebook_flight", "assign_seat"} <= deferred  # the script calls deferred tools
    assert res.completed and res.not_completed == []
    assert res.scores["task_completion"] == 1.0
    assert {"rebook_flight", "assign_seat"} <= set(res.tools_called)
    (emu,) = sim.emulator_sessions
    assert emu.configure_bytes == budget["bytes"]  # the budgeted frame, byte for byte
    assert len(emu.declared_tools) == 15 and emu.update_bytes == [budget["update"]["bytes"]]
    s = sim.core.session_update_summary()
    assert s is not None
    assert s["sent"] == 1 and s["echo"] and s["echo_tools"] == 15 and s["all_tools_applied"]
    assert s["sent_bytes"] == budget["update"]["bytes"]
    sent = [
        e.data
        for _, e in sim.effects
        if isinstance(e, Log) and e.data.get("type") == "session_update_sent"
    ]
    assert len(sent) == 1


@needs_speech
def test_sim_update_mode_is_muted_and_not_completed_when_updates_are_limited(
    tmp_path: Path,
) -> None:
    res = _sim_update(tmp_path, EmulatorConfig.live(update_ceiling_bytes=SIM_CEILING))
    sim = res.simulation
    assert sim is not None
    (emu,) = sim.emulator_sessions
    assert "update_oversized" in emu.kinds() and "configure_oversized" not in emu.kinds()
    assert not res.completed and any("no answer heard" in w for w in res.not_completed)
    warning = sim.core.no_audio_warning
    assert warning is not None and "session.update" in warning
    s = sim.core.session_update_summary()
    assert s is not None and s["echo"] and s["all_tools_applied"]  # applied, yet muted


@needs_speech
def test_sim_update_mode_resends_the_update_after_a_reconnect(tmp_path: Path) -> None:
    faults = EmulatorFaults(internal_error_after_turns=2)
    res = _sim_update(tmp_path, EmulatorConfig.live(faults=faults))
    sim = res.simulation
    assert sim is not None and sim.core.reconnects == 1
    first, second = sim.emulator_sessions
    assert first.internal_error_sent
    assert len(first.declared_tools) == len(second.declared_tools) == 15
    assert first.update_bytes == second.update_bytes
    # the reconnect's configure: the planned share of the tools, plus the context
    assert second.configure_bytes is not None and second.configure_bytes <= SIM_CEILING
    s = sim.core.session_update_summary()
    assert s is not None and s["sent"] == 2 and s["echo"] and s["all_tools_applied"]
    assert [a["session_id"] for a in s["attempts"]] == [first.session_id, second.session_id]
    assert res.completed and res.scores["task_completion"] == 1.0
