"""Callers that listen (``rules``, ``llm``), an emulator that drifts, personas and a degraded line.

Simulated in virtual time (:func:`hydralab.sim.simulate_record`). With drift on, the emulator
asks for an item again, out of order, or to confirm it; the ``rules`` caller answers every
question with the right item and the call reaches the reference's end, while the ``scripted``
caller runs out of lines and the call is not completed. The ``llm`` caller runs against a fake
chat-completions server on 127.0.0.1 that checks the prompt and answers as the rules caller
would. Skipped without the shared EVA data or the speech extra.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_http import Answer, LocalHttpServer
from oracle_checks import EVA_DATA, EVA_DIR, real_calls

from hydralab.audio import read_wav
from hydralab.audio.perturb import LinePerturbation
from hydralab.callers import LlmCaller, LlmCallerConfig, RulesCaller
from hydralab.emulator import EmulatorConfig, EmulatorDrift
from hydralab.policy import Heard
from hydralab.records import load_record
from hydralab.runner import RunResult
from hydralab.script import script_from_record
from hydralab.sim import simulate_record

DRIFT = EmulatorDrift(repeat_prob=0.4, reorder_prob=0.2, clarify_prob=0.2, seed=3, max_per_call=3)
RECORDS = [("1.1.2", "airline"), ("11", "itsm"), ("1.1", "medical_hr")]


def _run_json(result: RunResult) -> dict[str, Any]:
    return json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))


def _drifting(tmp: Path, rid: str, caller: Any) -> RunResult:
    return simulate_record(
        rid,
        data_dir=EVA_DIR,
        out_dir=tmp,
        emulator_config=EmulatorConfig.live(drift=DRIFT),
        caller=caller,
        configure_mode="compacted",
    )


@real_calls
@pytest.mark.parametrize(("rid", "domain"), RECORDS)
def test_with_drift_the_rules_caller_answers_right_and_completes(
    tmp_path: Path, rid: str, domain: str
) -> None:
    result = _drifting(tmp_path, rid, "rules")
    q = _run_json(result)["questions"]
    assert q["drift_asked"] >= 2, q  # the emulator did drift
    assert q["drift_answered_right"] == q["drift_asked"], [r for r in q["rows"] if not r["right"]]
    assert q["answered_right"] == q["asked"], [r for r in q["rows"] if not r["right"]]
    assert result.completed, result.not_completed
    assert result.scores["task_completion"] == 1.0
    policy = _run_json(result)["caller_policy"]
    assert policy["policy"] == "rules" and policy["hearing"] == "native"
    assert all(d["heard"] for d in policy["decisions"])


@real_calls
@pytest.mark.parametrize(("rid", "domain"), RECORDS)
def test_with_drift_the_scripted_caller_does_not_complete(
    tmp_path: Path, rid: str, domain: str
) -> None:
    result = _drifting(tmp_path, rid, "scripted")
    assert not result.completed
    assert any(w.startswith("emulator: its script turn") for w in result.not_completed)
    assert result.scores["task_completion"] == 0.0  # the writes never came
    q = _run_json(result)["questions"]
    assert q["drift_answered_right"] < q["drift_asked"]


@pytest.mark.skipif(not EVA_DATA, reason="shared EVA data not present")
def test_rules_caller_parts() -> None:
    rec = load_record("1.1.2", data_dir=EVA_DIR)
    caller = RulesCaller(rec, script=script_from_record(rec))
    ask = caller.decide(Heard(3, "Could you give me your booking code and last name please?"), [])
    assert set(ask.slots) == {"Passenger last name", "Booking confirmation number"}
    assert "ZK3FFW" in ask.text and "Z K three F F W" in (ask.spoken or "")
    dear = caller.decide(Heard(4, "It comes to $180, shall I go ahead?"), [])
    assert dear.reason.startswith("decline") and "$120" in dear.text
    cheap = caller.decide(Heard(5, "It comes to $95, shall I go ahead?"), [])
    assert cheap.reason == "confirm"
    bye = caller.decide(Heard(6, "Is there anything else I can help you with today?"), [])
    assert bye.end_call
    assert caller.decide(Heard(7, ""), []).reason.startswith("repeat")


# --- llm: a fake chat-completions server answers as the rules caller would -------------------


class _FakeChat(LocalHttpServer):
    """An OpenAI-compatible ``/chat/completions`` on 127.0.0.1 that checks each request."""

    def __init__(self, rules: RulesCaller, must_contain: list[str]) -> None:
        self.rules = rules
        self.must_contain = must_contain
        self.requests: list[dict[str, Any]] = []
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def respond(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        request = json.loads(body)
        self.requests.append(request)
        return Answer(body=json.dumps(self.answer(request)).encode())

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        system = body["messages"][0]["content"]
        missing = [s for s in self.must_contain if s not in system]
        assert not missing, f"prompt lacks {missing}"
        assert any(t["function"]["name"] == "end_call" for t in body["tools"])
        heard = [m["content"] for m in body["messages"] if m["role"] == "user"]
        index = len(heard) - 1
        reply = self.rules.decide(Heard(index, heard[-1] if index else ""), [])
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.end_call:
            message["tool_calls"] = [
                {
                    "id": f"call_{index}",
                    "type": "function",
                    "function": {"name": "end_call", "arguments": "{}"},
                }
            ]
        return {
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        }


@pytest.fixture
def fake_chat() -> Iterator[_FakeChat]:
    rec = load_record("11", data_dir=EVA_DIR)
    info = rec.user_goal["information_required"]
    fake = _FakeChat(
        RulesCaller(rec, script=script_from_record(rec)),
        [rec.user_goal["high_level_user_goal"][:60], str(info["employee_id"])],
    )
    try:
        yield fake
    finally:
        fake.close()


@real_calls
def test_llm_caller_against_a_local_fake_endpoint_with_drift(
    tmp_path: Path, fake_chat: _FakeChat
) -> None:
    rec = load_record("11", data_dir=EVA_DIR)
    llm = LlmCaller(rec, config=LlmCallerConfig(base_url=fake_chat.url, api_key_env=None))
    with llm:
        result = _drifting(tmp_path, "11", llm)
    assert result.completed, result.not_completed
    assert result.scores["task_completion"] == 1.0
    assert len(fake_chat.requests) == len(llm.calls) >= 6
    policy = _run_json(result)["caller_policy"]
    assert policy["policy"] == "llm"
    assert policy["policy_settings"]["base_url"] == fake_chat.url
    assert policy["policy_settings"]["api_key_set"] is False


# --- personas and a degraded line ------------------------------------------------------------


def test_a_degraded_line_is_measured_and_the_clean_track_kept(tmp_path: Path) -> None:
    pytest.importorskip("soxr")
    from needs import require_speech

    require_speech()
    line = LinePerturbation(noise="pink", snr_db=10.0, packet_loss=0.03, seed=7)
    a = simulate_record("HL-AIR-001", out_dir=tmp_path / "a", line=line)
    b = simulate_record("HL-AIR-001", out_dir=tmp_path / "b", line=line)
    assert a.completed, a.not_completed
    turns = _run_json(a)["caller_policy"]["user_turns"]
    assert _run_json(a)["caller_policy"]["line"]["snr_db"] == 10.0
    for t in turns:
        assert abs(t["line"]["snr_db"] - 10.0) < 0.5
    lost = sum(t["line"]["lost_count"] for t in turns)
    frames = sum(t["line"]["frames_total"] for t in turns)
    assert lost <= 0.03 * frames + 4 * (0.03 * frames) ** 0.5 + 3
    sent, _ = read_wav(a.run_dir / "audio_user.wav")
    clean, _ = read_wav(a.run_dir / "audio_user_clean.wav")
    assert len(sent) == len(clean) and (sent != clean).any()
    assert not (a.run_dir / "audio_user_clean.wav").samefile(a.run_dir / "audio_user.wav")

    def digest(r: RunResult) -> str:
        return hashlib.sha256((r.run_dir / "audio_user.wav").read_bytes()).hexdigest()

    assert digest(a) == digest(b)  # same seed, same audio


def test_persona_timing_applies_and_is_logged(tmp_path: Path) -> None:
    from needs import require_speech

    require_speech()
    slow = simulate_record("HL-AIR-001", out_dir=tmp_path / "slow", persona="elderly_slow")
    meta = _run_json(slow)["caller_policy"]
    assert meta["persona"]["name"] == "elderly_slow" and meta["persona"]["rate_wpm"] == 120
    assert slow.completed or slow.not_completed  # it ran to an end either way
    turns = _run_json(slow)["caller_policy"]["user_turns"]
    assert any(t["pause_ms"] > 0 for t in turns)  # mid-line pauses, logged per turn
    quick = simulate_record(
        "HL-AIR-001", out_dir=tmp_path / "quick", persona="aggressive_impatient", caller="rules"
    )
    turns = _run_json(quick)["caller_policy"]["user_turns"]
    assert any(t["barged_in"] for t in turns)  # it cut the assistant short, and it is logged


# --- the socket shell: a listening caller over real sockets -------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("hearing", ["native", "stt"])
async def test_a_listening_caller_over_real_sockets(tmp_path: Path, hearing: str) -> None:
    """The shell's replier: NeedReply -> hear (the bridge's transcript, or the assistant's
    audio through the local STT) -> decide -> synthesize off the loop -> reply. Hearing the
    bridge's transcript, the caller ends the call itself and the verdict says completed;
    through the offline STT what it hears varies, so that call is only checked to be heard,
    decided and logged (a misheard goodbye may leave it waiting: a short turn timeout)."""
    from needs import require_speech

    from hydralab.caller import CallerConfig
    from hydralab.runner import run_record
    from hydralab.script import Speak, script_from_lines

    require_speech()
    rec = load_record()  # hydralab's own default record
    script = script_from_lines(
        rec.greeting,
        ["Hi, I need help with my booking.", "No, that is all. Goodbye."],
        [(Speak("Sure. Anything else I can do for you today?"),), (Speak("Goodbye."),)],
        record_id=rec.id,
    )
    policy = RulesCaller(rec, script=script)
    lines: list[str] = []
    result = await run_record(
        rec,
        script=script,
        out_dir=tmp_path,
        caller=policy,
        hearing=hearing,  # type: ignore[arg-type]
        transcriber="local" if hearing == "stt" else None,
        progress=lines.append,
        verbose=True,
        caller_config=CallerConfig(assistant_turn_timeout_s=8.0),
    )
    if hearing == "native":
        assert result.completed, result.not_completed
    # a line per assistant turn as it completed, in order, with its latency
    assert [ln.split()[1] for ln in lines] == [str(t["index"]) for t in result.turns]
    assert all("model_response" in ln for ln in lines)
    assert str(result.turns[-1]["text"]) in lines[-1]  # verbose: the turn's words too
    meta = _run_json(result)["caller_policy"]
    assert meta["policy"] == "rules" and meta["hearing"] == hearing
    reasons = [d["reason"] for d in meta["decisions"]]
    assert reasons[0] == "opening" and len(reasons) >= 2
    assert all(d["heard"] for d in meta["decisions"][:2])  # it heard the greeting and turn 1
    if hearing == "native":
        assert meta["decisions"][-1]["end_call"]
    # what the caller heard is EVA's assistant_speech, in its own events file
    events = [
        json.loads(line)
        for line in (result.run_dir / "user_simulator_events.jsonl").read_text().splitlines()
    ]
    heard = [e["data"]["text"] for e in events if e.get("type") == "assistant_speech"]
    assert heard[: len(meta["decisions"])] == [d["heard"] for d in meta["decisions"]]
    if hearing == "native":
        assert "anything else" in meta["decisions"][1]["heard"].lower()
