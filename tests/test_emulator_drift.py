"""Drift: the emulated model strays from the script with questions of its own
(:class:`hydralab.emulator.core.EmulatorDrift`), logs what it asked, and then goes on with the
turn it deferred. Driven on the sans-I/O core in virtual time (a stand-in renderer for the
assistant's speech; the caller's speech is real, for the VAD)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from needs import needs_speech
from test_emulator_core import MS, Driver, caller_pcm

from hydralab.emulator import DRIFT_KINDS, EmulatorDrift, drift_texts
from hydralab.emulator.core import EmulatorConfig, EmulatorSession, SpeechCache
from hydralab.protocol.hydra import ConversationItemCreate, ResponseCreate
from hydralab.script import CallTools, Script, Speak, ToolCall, script_from_lines
from hydralab.speech.tts import SynthesizedSpeech

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
HAVE_EVA = (EVA_DIR / "data").is_dir()

INFO: dict[str, Any] = {
    "confirmation_number": "ZK3FFW",
    "last_name": "Rodriguez",
    "new_date": "2026-03-25",
    "seat_preference": {"first_choice": "window", "second_choice": "aisle"},
}
GREETING = "Hello! How can I help you today?"
ASK_BOOKING = "Sure. May I have your confirmation number and last name?"
ASK_DATE = "Thanks, I found it. Which date would you like instead?"
ASK_SEAT = "Got it. Which seat would you like?"
REBOOK = ToolCall("rebook_flight", {"confirmation_number": "ZK3FFW", "date": "2026-03-25"})
DONE = "All set, you are on the new flight. Goodbye."
SCRIPT = script_from_lines(
    GREETING,
    [
        "Hi, I need to move my flight to March 25.",
        "ZK3FFW, last name Rodriguez.",
        "March 25, please.",
        "A window seat, please.",
    ],
    [
        [Speak(ASK_BOOKING)],
        [Speak(ASK_DATE)],
        [Speak(ASK_SEAT)],
        [CallTools((REBOOK,)), Speak(DONE)],
    ],
    information=INFO,
)


def _fake_speech(text: str) -> SynthesizedSpeech:
    return SynthesizedSpeech(pcm=np.full(48 * 300, 1000, np.int16), sample_rate_hz=48000)


def _session(script: Script = SCRIPT, *, session_index: int = 0, **drift: Any) -> Driver:
    config = EmulatorConfig(output_rate_hz=48000, drift=EmulatorDrift(**drift) if drift else None)
    session = EmulatorSession(
        script,
        config=config,
        speech=SpeechCache(sample_rate_hz=48000, synthesize=_fake_speech),
        model="hydra-v1.1",
        session_index=session_index,
    )
    d = Driver(session)
    d.open()
    d.configure(generate_initial_response=True)
    d.run_until_type("response.done")
    return d


USER_PCM = "Yes, that is right."


def _answer(d: Driver, mark: int) -> str:
    """Run until the assistant's answer since frame ``mark`` is over (its tool calls answered
    along the way); what it said."""
    answered: set[str] = set()
    for _ in range(150):
        frames = [f for _, f in d.frames[mark:]]
        calls = [
            f["call_id"] for f in frames if f["type"] == "response.function_call_arguments.done"
        ]
        new = [c for c in calls if c not in answered]
        for call_id in new:
            d.recv(ConversationItemCreate.function_call_output(call_id, '{"status": "ok"}'))
        answered.update(new)
        if new:
            d.recv(ResponseCreate())
        dones = [f for f in frames if f["type"] == "response.done"]
        if dones and not any(o["type"] == "function_call" for o in dones[-1]["response"]["output"]):
            break
        d.run_for(100 * MS)
    return "".join(
        f["delta"]
        for _, f in d.frames[mark:]
        if f["type"] == "response.output_audio_transcript.delta"
    )


def _say(d: Driver) -> str:
    """One user turn (any speech will do: the emulator does no recognition); returns what the
    assistant says in answer."""
    mark = len(d.frames)
    d.feed(caller_pcm(USER_PCM), step_ns=1 * MS)
    return _answer(d, mark)


def _truths(d: Driver, kind: str) -> list[dict[str, Any]]:
    return [json.loads(g.detail or "{}") for g in d.s.log if g.kind == kind]


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"repeat_prob": 1.5}, r"\[0, 1\]"),
        ({"clarify_prob": -0.1}, r"\[0, 1\]"),
        ({"repeat_prob": 0.6, "reorder_prob": 0.6}, "sum to at most 1"),
        ({"max_per_call": -1}, "max_per_call"),
    ],
)
def test_drift_settings_are_validated(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmulatorDrift(**kwargs)


def test_probabilities_stack_in_kind_order() -> None:
    drift = EmulatorDrift(repeat_prob=0.2, reorder_prob=0.3, clarify_prob=0.1)
    assert [drift.kind_for(u) for u in (0.0, 0.19, 0.2, 0.49, 0.5, 0.59, 0.6, 0.99)] == [
        "repeat",
        "repeat",
        "reorder",
        "reorder",
        "clarify",
        "clarify",
        None,
        None,
    ]
    assert EmulatorConfig().drift is None and EmulatorConfig.live().drift is None
    assert DRIFT_KINDS == ("repeat", "reorder", "clarify")


def test_drift_texts_word_the_scripts_own_questions() -> None:
    texts = drift_texts(SCRIPT)
    assert "Sorry, I didn't catch that. May I have your confirmation number and last name?" in texts
    assert "Which date would you like instead?" in texts
    assert "Just to be sure — Which seat would you like?" in texts
    assert len(texts) == len(set(texts)) == 3 * 3  # three asking turns, three wrappers each


# ---------------------------------------------------------------- the conversation


@needs_speech
def test_a_repeat_question_comes_between_scripted_turns_then_the_deferred_turn() -> None:
    d = _session(repeat_prob=1.0, seed=1, max_per_call=1)
    said = [_say(d) for _ in range(5)]
    assert said[0] == ASK_BOOKING  # the greeting's answer is never deferred
    assert said[1].startswith("Sorry, I didn't catch that. ")
    assert said[1].endswith("May I have your confirmation number and last name?")
    assert said[2:] == [ASK_DATE, ASK_SEAT, DONE]  # the script goes on where it was
    assert d.s.next_speech_turn == len(SCRIPT.assistant_turns)
    assert sum(1 for _, f in d.frames if f["type"] == "response.function_call_arguments.done") == 1
    # a drift question has no tool calls and no script turn of its own
    (drift,) = [g for g in d.s.log if g.kind == "drift_question"]
    assert drift.turn_index is None
    assert [row["turn_index"] for row in d.s.turn_truths()] == [0, 1, 2, 3, 4]


@needs_speech
def test_truth_events_and_questions_name_slots_and_expected_values() -> None:
    d = _session(repeat_prob=1.0, seed=1, max_per_call=1)
    for _ in range(5):
        _say(d)
    (drift,) = _truths(d, "drift_question")
    assert drift["kind"] == "repeat" and drift["turn"] == 2 and drift["script_turn"] == 2
    assert drift["target"] in ("confirmation_number", "last_name")
    assert drift["slots"][0] == drift["target"]
    assert set(drift["slots"]) == {"confirmation_number", "last_name"}
    assert drift["expected"] == {"confirmation_number": "ZK3FFW", "last_name": "Rodriguez"}
    assert drift["source_turn"] == 1 and drift["text"].startswith("Sorry, I didn't catch that.")
    asked = [(g.turn_index, json.loads(g.detail or "")) for g in d.s.log if g.kind == "asked"]
    assert [(i, a["turn"], a["slots"]) for i, a in asked] == [
        (1, 1, ["confirmation_number", "last_name"]),
        (2, 3, ["new_date"]),
        (3, 4, ["seat_preference"]),
    ]
    assert asked[2][1]["expected"] == {"seat_preference": INFO["seat_preference"]}
    # the session's record for run.json: the same, in turn order
    assert [(q["turn"], q["kind"]) for q in d.s.questions] == [
        (1, "script"),
        (2, "repeat"),
        (3, "script"),
        (4, "script"),
    ]
    assert d.s.questions[1] == drift
    assert d.s.turns_started == 6


@needs_speech
def test_reorder_asks_early_with_the_later_turns_question() -> None:
    d = _session(reorder_prob=1.0, max_per_call=1)
    said = [_say(d) for _ in range(5)]
    # before scripted turn 2 (the date), the one slot asked only later: turn 3's seat
    assert said[1] == "Which seat would you like?"
    assert said[2:] == [ASK_DATE, ASK_SEAT, DONE]
    drift = d.s.questions[1]
    assert drift["kind"] == "reorder" and drift["slots"] == ["seat_preference"]
    assert drift["expected"] == {"seat_preference": INFO["seat_preference"]}
    assert drift["source_turn"] == 3 and drift["script_turn"] == 2


@needs_speech
def test_clarify_checks_a_given_slot() -> None:
    d = _session(clarify_prob=1.0, max_per_call=1, seed=3)
    said = [_say(d) for _ in range(5)]
    assert said[1] == "Just to be sure — May I have your confirmation number and last name?"
    assert said[2:] == [ASK_DATE, ASK_SEAT, DONE]
    assert d.s.questions[1]["kind"] == "clarify"


@needs_speech
def test_max_per_call_bounds_the_questions_and_none_come_twice_in_a_row() -> None:
    d = _session(repeat_prob=1.0, max_per_call=5)
    said = [_say(d) for _ in range(7)]
    kinds = [q["kind"] for q in d.s.questions]
    # one before each of scripted turns 2, 3 and 4 (the last may be deferred), never in a row
    assert kinds == ["script", "repeat", "script", "repeat", "script", "repeat"]
    assert said[-1] == DONE and d.s.next_speech_turn == len(SCRIPT.assistant_turns)
    d = _session(repeat_prob=1.0, max_per_call=2)
    for _ in range(6):
        _say(d)
    assert [q["kind"] for q in d.s.questions].count("repeat") == 2
    assert d.s.next_speech_turn == len(SCRIPT.assistant_turns)


@needs_speech
def test_a_caller_reading_its_lines_runs_out_before_the_last_scripted_turn() -> None:
    d = _session(repeat_prob=1.0, max_per_call=1)
    for _ in SCRIPT.user_turns:
        _say(d)
    assert d.s.next_speech_turn == len(SCRIPT.assistant_turns) - 1  # the rebooking never ran
    assert not any(f["type"] == "response.function_call_arguments.done" for _, f in d.frames)


@needs_speech
def test_same_seed_same_drift() -> None:
    def run(seed: int, session_index: int = 0) -> tuple[list[dict[str, Any]], list[str]]:
        d = _session(
            repeat_prob=0.5,
            reorder_prob=0.3,
            clarify_prob=0.2,
            seed=seed,
            max_per_call=3,
            session_index=session_index,
        )
        said = [_say(d) for _ in range(6)]
        return d.s.questions, said

    assert run(7) == run(7)
    runs = [run(seed)[0] for seed in range(6)]
    drifts = {json.dumps([q for q in r if q["kind"] != "script"]) for r in runs}
    assert len(drifts) > 1  # the seed decides


@needs_speech
def test_drift_off_is_the_plain_script_on_the_wire() -> None:
    """No drift, zero probabilities or a script without slots: the same frames, byte for byte
    (the slots only add ``asked`` ground truth)."""

    def wire(d: Driver) -> list[dict[str, Any]]:
        for _ in SCRIPT.user_turns:
            _say(d)
        return [f for _, f in d.frames]

    plain = Script(
        greeting=SCRIPT.greeting,
        user_turns=SCRIPT.user_turns,
        assistant_turns=tuple(type(t)(t.steps) for t in SCRIPT.assistant_turns),
    )
    off = _session()
    base = wire(off)
    assert wire(_session(repeat_prob=0.0, reorder_prob=0.0, clarify_prob=0.0)) == base
    bare = _session(plain)
    assert wire(bare) == base
    assert not bare.s.questions and "asked" not in bare.s.kinds()
    assert "drift_question" not in off.s.kinds() and len(off.s.questions) == 3


@needs_speech
def test_a_withdrawn_drift_question_does_not_count() -> None:
    d = _session(repeat_prob=1.0, max_per_call=1)
    _say(d)
    pcm = caller_pcm(USER_PCM)
    mark = len(d.frames)
    d.feed(pcm, step_ns=0)  # no time passes: the drift question is scheduled, not started
    assert "pending_response_withdrawn" not in d.s.kinds()
    d.feed(pcm, step_ns=0)  # the caller goes on before it starts: withdrawn, drawn again
    (withdrawn,) = [g for g in d.s.log if g.kind == "pending_response_withdrawn"]
    assert withdrawn.detail == "drift repeat" and withdrawn.turn_index is None
    assert _answer(d, mark).startswith("Sorry, I didn't catch that.")  # max_per_call 1: still
    assert [q["kind"] for q in d.s.questions] == ["script", "repeat"]
    assert _say(d) == ASK_DATE


# ---------------------------------------------------------------- a whole call, simulated


@needs_speech
@pytest.mark.skipif(not HAVE_EVA, reason="shared EVA data not present")
def test_simulated_112_with_a_scripted_caller_never_reaches_the_rebooking(tmp_path: Path) -> None:
    from hydralab.sim import SimConfig, simulate_record

    emu = EmulatorConfig.live(drift=EmulatorDrift(repeat_prob=1.0, max_per_call=1))
    res = simulate_record(
        "1.1.2",
        data_dir=EVA_DIR,
        out_dir=tmp_path,
        run_id="drift",
        emulator_config=emu,
        sim=SimConfig(epoch_ms=1_767_225_600_000),
    )
    sim = res.simulation
    assert sim is not None
    (session,) = sim.emulator_sessions
    assert [q["kind"] for q in session.questions].count("repeat") == 1
    # the caller read its four lines; one answered the drift question, so the emulator never
    # played its last scripted turn (the rebooking and the seat): the task is not done
    assert session.next_speech_turn == len(sim.script.assistant_turns) - 1
    assert "rebook_flight" not in res.tools_called and "assign_seat" not in res.tools_called
    assert res.scores["task_completion"] == 0.0
