"""Hydra fidelity over real sockets: the asyncio shells get the hard cases right against the
emulator's ``live`` profile.

Every scenario runs in virtual time in ``tests/test_sim_fidelity.py`` (the same cores, exact
timing, jitter injected on purpose). The few kept here run a real conversation over real
sockets on 127.0.0.1 (caller → bridge → emulator) to prove the shells: tool calls (with the live
profile's late ``response.done``), a barge-in with ``clear``, and the connection retry after
``server_full``. Ground truth comes from the emulator's own send log and the caller's clock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fidelity_cases import (
    barge_script,
    check_barge_in_drops_unplayed_audio_and_clears_the_caller,
    check_one_response_create_after_several_calls,
    check_tool_error_result_still_returns,
    check_tool_turn_waterfall_is_ordered,
    tool_script,
)
from needs import needs_speech

from hydralab.caller import CallerConfig
from hydralab.emulator import EmulatorConfig
from hydralab.runner import RunResult, run_record_sync
from hydralab.script import (
    Script,
    Speak,
    script_from_lines,
)

pytestmark = [pytest.mark.e2e, needs_speech]

GREETING = "Hello! Thanks for calling SkyWay. How can I help you today?"
RES = {"confirmation_number": "HT4KWB", "last_name": "brooks"}


def _script(users: list[str], answers: list[tuple[Any, ...]]) -> Script:
    return script_from_lines(GREETING, users, answers, record_id="HL-AIR-001")


def _run(tmp: Path, script: Script, **kw: Any) -> RunResult:
    # The emulator as the live service behaves (24 kHz on v1.1, unspaced transcript deltas, a
    # late response.done for tool responses, in-flight deltas after a barge-in, no resume).
    kw.setdefault("emulator_config", EmulatorConfig.live())
    res = run_record_sync(None, out_dir=tmp, run_id="t", script=script, transcriber=None, **kw)
    assert res.error is None, res.error
    assert res.ended_reason == "goodbye"
    return res


def _events(res: RunResult) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (res.run_dir / "events.jsonl").read_text().splitlines()]


def _rms_dbfs(x: np.ndarray) -> float:
    r = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    return 20 * np.log10(max(r, 1e-9) / 32768.0)


# ---------------------------------------------------------------- tools


@pytest.fixture(scope="module")
def tool_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    script = tool_script()
    return _run(tmp_path_factory.mktemp("tools"), script)


def test_several_tool_calls_one_response_create_without_a_fixed_wait(tool_run: RunResult) -> None:
    check_one_response_create_after_several_calls(tool_run)


def test_tool_error_result_still_returns(tool_run: RunResult) -> None:
    check_tool_error_result_still_returns(tool_run)


def test_tool_turn_waterfall_is_ordered(tool_run: RunResult) -> None:
    check_tool_turn_waterfall_is_ordered(tool_run)


def test_latency_matches_emulator_ground_truth(tool_run: RunResult) -> None:
    _check_ground_truth(tool_run)


def _check_ground_truth(res: RunResult) -> None:
    assert res.emulator is not None and res.caller is not None
    truths = {t["turn_index"]: t for t in res.emulator.sessions[0].turn_truths()}
    for turn in res.turns[1:]:
        tr = truths[turn["index"]]
        truth_ms = (tr["first_delta_sent_ns"] - tr["speech_stopped_sent_ns"]) / 1e6
        assert turn["model_response_ms"] is not None
        # the error is in-process transport and scheduling (typically < 2 ms; one 6.9 ms outlier
        # seen with the whole suite running on 2 cores): a real-time test bounds it loosely,
        # benchmarks/latency_accuracy.py measures the distribution
        assert abs(turn["model_response_ms"] - truth_ms) <= 10.0, (turn, truth_ms)
        # v2v against what the caller itself measured (end of its last sample → first audible)
        user = res.caller.user_turns[turn["index"] - 1]
        heard = res.caller.assistant_turns[turn["index"]]
        truth_v2v = heard.audio_start_epoch_ms - user.stop_epoch_ms
        assert turn["v2v_ms"] is not None, turn
        assert abs(turn["v2v_ms"] - truth_v2v) <= 25.0, (turn["v2v_ms"], truth_v2v)


# ---------------------------------------------------------------- barge-in


@pytest.fixture(scope="module")
def barge_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    script = barge_script()
    return _run(
        tmp_path_factory.mktemp("barge"),
        script,
        caller_config=CallerConfig(barge_in_after_ms={1: 1500}),
    )


def test_barge_in_drops_unplayed_audio_and_clears_the_caller(barge_run: RunResult) -> None:
    check_barge_in_drops_unplayed_audio_and_clears_the_caller(barge_run)


# ---------------------------------------------------------------- 24 kHz and keep-alive


# ---------------------------------------------------------------- faults the emulator injects

TWO_TURNS = (
    ["Hi, I have a question.", "Thanks, that is all."],
    [(Speak("Sure, go ahead."),), (Speak("Goodbye."),)],
)


def _faulted(tmp: Path, faults: Any, **kw: Any) -> RunResult:
    from hydralab.emulator import EmulatorFaults

    return _run(
        tmp,
        _script(*TWO_TURNS),
        emulator_config=EmulatorConfig.live(faults=EmulatorFaults(**faults)),
        **kw,
    )


def _bridge_events(res: RunResult, kind: str) -> list[dict[str, Any]]:
    return [e["frame"] for e in _events(res) if e["src"] == "bridge" and e["frame"]["type"] == kind]


def test_server_full_backs_off_and_retries(tmp_path: Path) -> None:
    res = _faulted(tmp_path, {"server_full_sessions": 1})
    retries = _bridge_events(res, "model_connect_retry")
    assert len(retries) == 1 and "server_full" in retries[0]["error"]
    assert 0.25 <= retries[0]["delay_s"] <= 0.75  # first backoff 0.5 s, jittered ×0.5–1.5
    assert res.session is not None and res.session.connect_attempts == 2
    assert [t["status"] for t in res.turns] == ["completed"] * 3
