"""``hydralab probe`` offline: the CLI's key check, then every scenario but STT against the
emulator on 127.0.0.1 with a canary key (audio paced faster than real time), the configure-size
bisection against the emulator's ceiling, the key guard, and one ``live`` test (``--live``)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from needs import needs_speech
from websockets.asyncio.server import ServerConnection, serve

from hydralab import cli
from hydralab.emulator import Emulator, EmulatorConfig
from hydralab.probe import (
    FIXTURE_KIND,
    SCENARIOS,
    SUMMARY_NAME,
    ProbeConfig,
    ProbeError,
    parse_scenarios,
    read_fixture,
    run_probe,
)
from hydralab.replay import load_fixture
from hydralab.script import AssistantSteps, CallTools, Script, Speak, ToolCall, UserTurn

CANARY = "sk-canary-probe-7f3a9c1e5d4b"
NARRATION = (
    "In Paris it is sunny and twenty one degrees. It is a lovely day for a walk along the "
    "river, and the evening should stay dry and mild."
)
SCRIPT = Script(
    greeting="Hello.",
    user_turns=(UserTurn("question", "question"), UserTurn("wait", "wait")),
    assistant_turns=(
        AssistantSteps((Speak("Hello."),)),
        AssistantSteps(
            (CallTools((ToolCall("get_weather", {"city": "Paris"}),)), Speak(NARRATION))
        ),
        AssistantSteps((Speak("Okay, I will wait."),)),
    ),
)
CEILING = 3000


def _emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        latency_median_ms=60.0,
        latency_min_ms=20.0,
        latency_max_ms=150.0,
        tool_args_delay_ms=40.0,
        max_configure_bytes=CEILING,
        expected_api_key=CANARY,  # the probe really sends the key, and only this one
    )


def _probe_config(url: str, out: Path, **kw: Any) -> ProbeConfig:
    base: dict[str, Any] = {
        "url": url,
        "out_dir": out,
        "models": ("hydra-v1.1",),
        "speed": 20.0,
        "response_timeout_s": 60.0,
        "handshake_timeout_s": 2.0,
        "linger_s": 1.0,
        "bisect_lo_bytes": 1024,
        "bisect_hi_bytes": 8192,
        "bisect_sessions": 2,
        "bisect_tolerance_bytes": 128,
    }
    base.update(kw)
    return ProbeConfig(**base)


def _assert_no_key(folder: Path) -> None:
    files = list(folder.iterdir())
    assert files
    for f in files:
        assert CANARY not in f.read_text(encoding="utf-8"), f.name


# ---------------------------------------------------------------- (a) the CLI without a key


def test_cli_without_key_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SMALLEST_API_KEY", raising=False)
    code = cli.main(["probe", "--out", str(tmp_path / "p"), "--hydra-url", "ws://127.0.0.1:9"])
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    assert "SMALLEST_API_KEY" in err and err.count("\n") == 1
    assert not (tmp_path / "p").exists()  # nothing connected, nothing written


def test_scenario_selection() -> None:
    assert parse_scenarios(None) == SCENARIOS
    assert parse_scenarios("tool_call,1") == ("handshake", "tool_call")
    with pytest.raises(ProbeError, match="unknown scenario"):
        parse_scenarios("7")
    with pytest.raises(ProbeError, match="local emulator only"):
        ProbeConfig(url="wss://api.smallest.ai/waves/v1/s2s", speed=2.0)


# ---------------------------------------------------------------- (b) scenarios 1-5 offline


@needs_speech
async def test_probe_against_the_emulator_writes_clean_fixtures(tmp_path: Path) -> None:
    out = tmp_path / "probe"
    lines: list[str] = []
    async with Emulator(SCRIPT, config=_emulator_config()) as emu:
        cfg = _probe_config(emu.url, out, scenarios=parse_scenarios("1,2,3,4,5"))
        summary = await run_probe(cfg, api_key=CANARY, log=lines.append)
    _assert_no_key(out)
    assert all(CANARY not in x for x in lines)

    results = {(r["scenario"], r["variant"]): r for r in summary["results"]}
    assert json.loads((out / SUMMARY_NAME).read_text()) == summary
    assert {s for s, _ in results} == {
        "handshake",
        "utterance",
        "tool_call",
        "barge_in",
        "configure_size",
    }
    for key in [
        ("handshake", "no_voice"),
        ("handshake", "roster_voice"),
        ("utterance", ""),
        ("tool_call", ""),
        ("barge_in", ""),
        ("configure_size", ""),
    ]:
        assert results[key]["outcome"] == "ok", results[key]
    # The emulator does not reject another tag's voice (the real Hydra does): recorded as such.
    assert results[("handshake", "foreign_voice")]["outcome"] == "unexpected"
    assert results[("handshake", "retired_voice")]["outcome"] == "unexpected"
    hs = results[("handshake", "roster_voice")]["facts"]
    assert hs["echoed_voice"] == "zoe" and hs["output_audio_sample_rate"] == 48000
    tool = results[("tool_call", "")]["facts"]
    assert tool["tool_answers"][0]["name"] == "get_weather"
    assert tool["tool_response_done"] in ("before_output", "after_output")
    barge = results[("barge_in", "")]["facts"]
    assert barge["after_speech_started"][0][0] == "input_audio_buffer.speech_started"
    assert barge["cancelled"] == [{"id": barge["cancelled"][0]["id"], "reason": "interrupted"}]

    fixtures = sorted(out.glob("*.jsonl"))
    assert {r["file"] for r in summary["results"]} <= {f.name for f in fixtures}
    for f in fixtures:
        header, records = read_fixture(f)
        assert header["kind"] == FIXTURE_KIND and header["version"] == 1
        assert header["model"] == "hydra-v1.1" and header["scenario"] in SCENARIOS
        assert header["url"] == emu.url.split("?")[0] and "?" not in header["url"]
        assert "api_key" not in json.dumps(header)
        fx = load_fixture(f)  # the replayer accepts it
        assert fx.records == tuple(records)
        assert records[-1]["dir"] == "close" and records[-1]["code"] == 1000
        ts = [r["t_ms"] for r in records]
        assert ts == sorted(ts)
        assert all(r["dir"] in ("in", "out", "close") for r in records)
    _, utt = read_fixture(out / "utterance-hydra-v1.1.jsonl")
    sent = [r["frame"] for r in utt if r["dir"] == "out"]
    assert sent[0]["type"] == "session.configure"
    appends = [f for f in sent if f["type"] == "input_audio_buffer.append"]
    assert len(appends) > 75 and all(len(f["audio"]) == 856 for f in appends)  # 20 ms, kept
    got = [r["frame"]["type"] for r in utt if r["dir"] == "in"]
    assert "response.output_audio.delta" in got and got.count("response.done") >= 2


# ---------------------------------------------------------------- (c) the bisection


@needs_speech
async def test_bisection_finds_the_emulator_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "bisect"
    async with Emulator(SCRIPT, config=_emulator_config()) as emu:
        cfg = _probe_config(
            emu.url, out, scenarios=("configure_size",), bisect_sessions=7, linger_s=0.0
        )
        summary = await run_probe(cfg, api_key=CANARY)
        sizes = sorted(s.configure_bytes or 0 for s in emu.sessions)
    (r,) = summary["results"]
    f = r["facts"]
    ok, bad = f["largest_with_audio_bytes"], f["smallest_without_audio_bytes"]
    tolerance = (8192 - 1024) / 2**5  # 6 bisection sessions: the first tries the top
    assert ok <= CEILING < bad and bad - ok <= tolerance
    assert f["tries"][0]["bytes"] == 8192 and len(f["tries"]) == 6
    assert all(t["audio"] == (t["bytes"] <= CEILING) for t in f["tries"])
    assert {t["bytes"] for t in f["tries"]} <= set(sizes)  # sizes as the server measured them
    check = f["session_update_check"]
    assert check["configure_bytes"] + check["update_bytes"] > bad
    assert check["update_reply"] == "session.updated"
    assert f["session_update_counts"] is False  # the emulator's ceiling is the configure's only
    _assert_no_key(out)


# ---------------------------------------------------------------- the key guard


async def test_a_frame_echoing_the_key_is_not_written(tmp_path: Path) -> None:
    async def leaky(ws: ServerConnection) -> None:
        assert ws.request is not None
        await ws.send(json.dumps({"type": "session.created", "session_id": "s1"}))
        await ws.recv()
        await ws.send(json.dumps({"type": "error", "error": {"message": ws.request.path}}))
        await ws.close()

    async with serve(leaky, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        cfg = _probe_config(f"ws://127.0.0.1:{port}", tmp_path, scenarios=("handshake",))
        summary = await run_probe(cfg, api_key=CANARY)
    assert {r["outcome"] for r in summary["results"]} == {"error"}
    assert all("refusing to write" in r["error"] for r in summary["results"])
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY_NAME]
    _assert_no_key(tmp_path)


# ---------------------------------------------------------------- the CLI end to end


@pytest.fixture
def emulator_thread() -> Iterator[str]:
    """An emulator served from its own event loop in a thread (the CLI runs its own loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    emu = Emulator(SCRIPT, config=_emulator_config())
    url = asyncio.run_coroutine_threadsafe(emu.start(), loop).result(timeout=30)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(emu.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@needs_speech
def test_cli_handshake_against_the_emulator(
    emulator_thread: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SMALLEST_API_KEY", CANARY)
    out = tmp_path / "cli"
    argv = ["probe", "--hydra-url", emulator_thread, "--out", str(out)]
    code = cli.main([*argv, "--only", "handshake", "--models", "hydra-v1.1,hydra"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert CANARY not in stdout + stderr
    assert stdout.count("handshake") >= 7 and str(out / SUMMARY_NAME) in stdout
    names = sorted(p.name for p in out.glob("*.jsonl"))
    # v1.1: no voice, roster, retired, foreign; hydra (either roster): no voice, roster, retired
    assert len(names) == 7 and "handshake-hydra-no_voice.jsonl" in names
    assert "handshake-hydra-foreign_voice.jsonl" not in names
    _, recs = read_fixture(out / "handshake-hydra-no_voice.jsonl")
    assert recs[0]["frame"]["type"] == "warning"  # ?model=hydra is deprecated
    _assert_no_key(out)


# ---------------------------------------------------------------- (d) the real endpoint


@pytest.mark.live
async def test_live_handshake(tmp_path: Path) -> None:
    if not os.environ.get("SMALLEST_API_KEY"):
        pytest.skip("SMALLEST_API_KEY not set")
    key = os.environ["SMALLEST_API_KEY"]
    t0 = time.monotonic()
    cfg = ProbeConfig(out_dir=tmp_path, models=("hydra-v1.1",), scenarios=("handshake",))
    summary = await run_probe(cfg, api_key=key)
    assert time.monotonic() - t0 < 120
    by_variant = {r["variant"]: r for r in summary["results"]}
    assert by_variant["no_voice"]["facts"]["result"] == "session.configured"
    assert by_variant["foreign_voice"]["facts"]["result"] == "error"
    assert by_variant["retired_voice"]["facts"]["result"] == "error"
    for f in tmp_path.iterdir():
        assert key not in f.read_text(encoding="utf-8")
    for f in tmp_path.glob("*.jsonl"):
        assert load_fixture(f).header["model"] == "hydra-v1.1"
