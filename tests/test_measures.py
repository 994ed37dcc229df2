"""Barge-in and turn-taking measures from a record directory's files (hydralab.measures)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hydralab.measures import (
    DEFINITIONS,
    MeasureError,
    barge_in_rows,
    conversation_measures,
)
from hydralab.scoring import ScoringError, turn_taking, turn_timeline

RUN = Path(__file__).parent / "fixtures" / "run_HL-AIR-002"

#: Epoch seconds of the synthetic calls' start (the caller's ``connected``).
B = 1_800_000_000.0
B_MS = int(B * 1000)


# ---------------------------------------------------------------------------------------------
# Building synthetic record directories
# ---------------------------------------------------------------------------------------------


def _audio(kind: str, role: str, at_s: float) -> dict[str, Any]:
    """An EVA audio marker ``at_s`` seconds after the start (logged when it happened)."""
    return {
        "timestamp": round((B + at_s) * 1000),
        "event_type": kind,
        "user": role,
        "audio_timestamp": B + at_s,
        "provider": "hydralab",
    }


def _speech(at_s: float, text: str) -> dict[str, Any]:
    return {
        "timestamp": round((B + at_s) * 1000),
        "type": "user_speech",
        "data": {"text": text, "source": "simulated_user"},
    }


def _state(at_s: float, state: str) -> dict[str, Any]:
    return {
        "timestamp": round((B + at_s) * 1000),
        "type": "connection_state",
        "data": {"state": state, "details": {}},
    }


def _assistant(start_s: float, end_s: float | None) -> list[dict[str, Any]]:
    rows = [_audio("audio_start", "assistant", start_s)]
    return rows + ([_audio("audio_end", "assistant", end_s)] if end_s is not None else [])


def _user(start_s: float, end_s: float | None, text: str) -> list[dict[str, Any]]:
    rows = [_audio("audio_start", "simulated_user", start_s), _speech(start_s, text)]
    return rows + ([_audio("audio_end", "simulated_user", end_s)] if end_s is not None else [])


def _bridge(at_s: float, src: str, direction: str, frame: dict[str, Any]) -> dict[str, Any]:
    return {"t_ms": B_MS + round(at_s * 1000), "src": src, "dir": direction, "frame": frame}


def _cut(at_s: float, turn: int) -> list[dict[str, Any]]:
    """The bridge's barge-in: its ``barge_in`` row and the Twilio ``clear`` it sends."""
    return [
        _bridge(at_s, "bridge", "-", {"type": "barge_in", "turn": turn, "why": "speech_started"}),
        _bridge(at_s, "twilio", "out", {"event": "clear"}),
    ]


def _turn(index: int, first_played_s: float, played_ms: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {"index": index, "first_played_epoch_ms": B_MS + first_played_s * 1000}
    if played_ms is not None:
        row["played_ms"] = played_ms
    return row


def _write(
    path: Path,
    simulator: list[dict[str, Any]] | None,
    events: list[dict[str, Any]] | None = None,
    turns: list[dict[str, Any]] | None = None,
    utterances: list[dict[str, Any]] | None = None,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if simulator is not None:
        lines = [json.dumps(e) for e in sorted(simulator, key=lambda e: e["timestamp"])]
        (path / "user_simulator_events.jsonl").write_text("\n".join(lines) + "\n")
    if events is not None:
        lines = [json.dumps(e) for e in sorted(events, key=lambda e: e["t_ms"])]
        (path / "events.jsonl").write_text("\n".join(lines) + "\n")
    if turns is not None or utterances is not None:
        run = {"turns": turns or [], "user_utterances": utterances or []}
        (path / "run.json").write_text(json.dumps(run))
    return path


def _two_barge_ins(path: Path) -> Path:
    """A call with known times (s after the caller connected):

    - greeting heard 0.75-3.0; the caller 3.5-5.0;
    - answer heard 6.0-7.3; the caller cuts in at 7.0 and talks to 9.0 (the bridge cuts at 7.2);
    - answer heard 10.0-11.5; a 0.2 s backchannel at 11.0-11.2 the bridge never noticed;
    - the caller 12.0-13.0 (after the answer: no barge-in);
    - answer heard 14.0-15.0; the caller at 14.99, 10 ms before its end (under one frame).
    """
    simulator = [
        _state(0.0, "connected"),
        *_assistant(0.75, 3.0),
        *_user(3.5, 5.0, "Hi, is my flight on time?"),
        *_assistant(6.0, 7.3),
        *_user(7.0, 9.0, "PL9XMC, Hunter."),
        *_assistant(10.0, 11.5),
        *_user(11.0, 11.2, "Mm-hm."),
        *_user(12.0, 13.0, "Great, thanks."),
        *_assistant(14.0, 15.0),
        *_user(14.99, 16.0, "Bye."),
        _state(16.1, "session_ended"),
    ]
    events = [
        _bridge(0.005, "twilio", "in", {"event": "connected"}),
        *_cut(7.2, 1),
    ]
    turns = [
        _turn(0, 0.74, 2250.0),
        _turn(1, 5.99, 1200.0),
        _turn(2, 9.99, 1500.0),
        _turn(3, 13.99, 1000.0),
    ]
    return _write(path, simulator, events, turns)


# ---------------------------------------------------------------------------------------------
# The recorded run (tests/fixtures/run_HL-AIR-002)
# ---------------------------------------------------------------------------------------------


def test_fixture_run_barge_in_by_hand() -> None:
    """Numbers read off the fixture's files by hand.

    user_simulator_events.jsonl: the caller's ``audio_start`` 1795636920.9495072 falls in the
    assistant audio it heard 1795636919.4418674-1795636921.1791048 (run.json turn 1,
    ``interrupted``); it spoke until 1795636923.7642334. yield = overlap = 921.1791048 -
    920.9495072 = 229.5976 ms. events.jsonl: the bridge's ``barge_in`` (turn 1) and Twilio
    ``clear`` at 1795636921164 -> 214.4928 ms after the caller's start.
    """
    rows = barge_in_rows(RUN)
    assert len(rows) == 1
    row = rows[0]
    assert row["source"] == "caller"
    assert row["turn"] == 2  # EVA's numbering: the turn the caller's utterance opened
    assert row["assistant_turn"] == 1  # run.json turns[1], status "interrupted"
    assert row["caller_start_epoch_ms"] == 1795636920949.507
    assert row["yield_ms"] == 229.598
    assert row["yield_anchor"] == "assistant_audio_end"
    assert row["overlap_ms"] == 229.598
    assert row["bridge_cut"] is True
    assert row["bridge_yield_ms"] == 214.493
    assert row["reason"] is None
    assert row["anchors"] == {
        "caller_audio_start": 1795636920949.507,
        "caller_audio_end": 1795636923764.233,
        "assistant_audio_start": 1795636919441.867,
        "assistant_audio_end": 1795636921179.105,
        "bridge_barge_in": 1795636921164.0,
        "bridge_clear": 1795636921164.0,
        "bridge_played_end": None,  # this run.json predates turns[i].played_ms
    }
    turns = json.loads((RUN / "run.json").read_text())["turns"]
    assert turns[1]["status"] == "interrupted"


def test_fixture_run_conversation() -> None:
    """time_to_greeting: connected at 1795636909636 -> assistant audio_start 1795636910.2974823."""
    m = conversation_measures(RUN)
    assert m["source"] == "caller"
    assert m["time_to_greeting_ms"] == 661.482
    assert m["time_to_greeting_reason"] is None
    assert m["time_to_greeting_anchors"] == {
        "start": "call_start",
        "start_epoch_ms": 1795636909636.0,
        "end": "assistant_audio_start",
        "end_epoch_ms": 1795636910297.482,
    }
    assert m["barge_ins"] == 1
    assert m["barge_ins_cut_by_bridge"] == 1
    assert m["mean_yield_ms"] == m["max_yield_ms"] == 229.598
    assert m["mean_overlap_ms"] == m["max_overlap_ms"] == 229.598
    assert m["mean_bridge_yield_ms"] == 214.493
    assert m["yield_n"] == m["overlap_n"] == 1
    assert m["barge_in_rows"] == barge_in_rows(RUN)
    assert m["problems"] == []
    assert set(m["definitions"]) == set(DEFINITIONS)


def test_fixture_yield_agrees_with_evas_turn_taking() -> None:
    events = [
        json.loads(line)
        for line in (RUN / "user_simulator_events.jsonl").read_text().splitlines()
        if line.strip()
    ]
    audit = json.loads((RUN / "audit_log.json").read_text())
    evidence = turn_taking(turn_timeline(events, audit), "goodbye")["details"]["per_turn_evidence"]
    (row,) = barge_in_rows(RUN)
    assert evidence[row["turn"]]["yield_ms"] == row["yield_ms"]


# ---------------------------------------------------------------------------------------------
# Synthetic runs with known times
# ---------------------------------------------------------------------------------------------


def test_synthetic_barge_ins_exact(tmp_path: Path) -> None:
    rows = barge_in_rows(_two_barge_ins(tmp_path / "rec"))
    assert [r["caller_start_epoch_ms"] for r in rows] == [B_MS + 7000.0, B_MS + 11000.0]
    cut, backchannel = rows
    # the caller talks on past the cut: both audible from 7.0 until the assistant stops at 7.3
    assert cut["yield_ms"] == 300.0
    assert cut["overlap_ms"] == 300.0
    assert cut["yield_anchor"] == "assistant_audio_end"
    assert cut["assistant_turn"] == 1
    assert cut["bridge_cut"] is True
    assert cut["bridge_yield_ms"] == 200.0
    assert cut["anchors"]["bridge_played_end"] == B_MS + 5990.0 + 1200.0
    assert cut["anchors"]["assistant_audio_end"] == B_MS + 7300.0
    # a short backchannel: the assistant talks on 500 ms, both audible only for its 200 ms
    assert backchannel["yield_ms"] == 500.0
    assert backchannel["overlap_ms"] == 200.0
    assert backchannel["assistant_turn"] == 2  # the turn playing at 11.0 (run.json)
    assert backchannel["bridge_cut"] is False
    assert backchannel["bridge_yield_ms"] is None
    assert backchannel["anchors"]["bridge_clear"] is None
    assert all(isinstance(r["turn"], int) for r in rows)
    assert rows[0]["turn"] < rows[1]["turn"]


def test_synthetic_conversation_exact(tmp_path: Path) -> None:
    m = conversation_measures(_two_barge_ins(tmp_path / "rec"))
    assert m["time_to_greeting_ms"] == 750.0
    assert m["time_to_greeting_anchors"]["start"] == "call_start"
    assert m["time_to_greeting_anchors"]["end"] == "assistant_audio_start"
    assert m["barge_ins"] == 2
    assert m["barge_ins_cut_by_bridge"] == 1
    assert (m["mean_yield_ms"], m["max_yield_ms"]) == (400.0, 500.0)
    assert (m["mean_overlap_ms"], m["max_overlap_ms"]) == (250.0, 300.0)
    assert m["mean_bridge_yield_ms"] == 200.0


def test_min_overlap_decides_a_start_at_the_very_end(tmp_path: Path) -> None:
    """The caller's start 10 ms before the answer's end counts only with a smaller threshold."""
    rec = _two_barge_ins(tmp_path / "rec")
    assert len(barge_in_rows(rec)) == 2
    rows = barge_in_rows(rec, min_overlap_ms=5.0)
    assert len(rows) == 3
    assert rows[-1]["yield_ms"] == 10.0
    assert rows[-1]["overlap_ms"] == 10.0


@pytest.mark.parametrize(
    ("played_ms", "clear", "anchor", "yield_ms"),
    [
        (1200.0, True, "bridge_played_end", 190.0),  # 5.99 s + 1.2 s played, caller at 7.0
        (None, True, "bridge_clear", 200.0),
        (None, False, None, None),
    ],
)
def test_yield_falls_back_to_the_bridge_when_the_caller_log_is_cut(
    tmp_path: Path, played_ms: float | None, clear: bool, anchor: str | None, yield_ms: float | None
) -> None:
    """A caller log that ends while the assistant plays (no audio_end): the bridge's anchors."""
    simulator = [
        _state(0.0, "connected"),
        *_assistant(0.75, 3.0),
        *_user(3.5, 5.0, "Hi."),
        *_assistant(6.0, None),
        *_user(7.0, 9.0, "PL9XMC, Hunter."),
    ]
    rec = _write(
        tmp_path / "rec",
        simulator,
        [*_cut(7.2, 1)] if clear else [],
        [_turn(0, 0.74, 2250.0), _turn(1, 5.99, played_ms)],
    )
    (row,) = barge_in_rows(rec)
    assert row["anchors"]["assistant_audio_end"] is None
    assert row["yield_anchor"] == anchor
    assert row["yield_ms"] == yield_ms
    if yield_ms is None:
        assert row["overlap_ms"] is None
        assert "no audio_end" in row["reason"]
        m = conversation_measures(rec)
        assert m["barge_ins"] == 1
        assert m["mean_yield_ms"] is None and m["yield_n"] == 0
    else:
        assert row["overlap_ms"] == yield_ms  # the caller talked on past the cut
        assert row["reason"] is None


def test_no_barge_ins(tmp_path: Path) -> None:
    simulator = [
        _state(0.0, "connected"),
        *_assistant(1.0, 3.0),
        *_user(3.5, 5.0, "Hi."),
        *_assistant(6.0, 8.0),
        *_user(8.5, 9.0, "Bye."),
        _state(9.1, "session_ended"),
    ]
    rec = _write(tmp_path / "rec", simulator)
    assert barge_in_rows(rec) == []
    m = conversation_measures(rec)
    assert m["time_to_greeting_ms"] == 1000.0
    assert m["barge_ins"] == 0
    assert m["barge_ins_cut_by_bridge"] == 0
    for key in ("mean_yield_ms", "max_yield_ms", "mean_overlap_ms", "max_overlap_ms"):
        assert m[key] is None
    assert m["yield_n"] == m["overlap_n"] == 0
    assert m["barge_in_rows"] == []


def test_greeting_none_when_the_caller_spoke_first(tmp_path: Path) -> None:
    simulator = [
        _state(0.0, "connected"),
        *_user(0.5, 1.5, "Hello?"),
        *_assistant(2.5, 4.0),
    ]
    m = conversation_measures(_write(tmp_path / "rec", simulator))
    assert m["time_to_greeting_ms"] is None
    assert m["time_to_greeting_reason"] == "the caller spoke before any assistant audio"
    assert m["barge_ins"] == 0


def test_greeting_anchors_fall_back_to_the_bridge(tmp_path: Path) -> None:
    """No ``connected`` in the caller's log: the bridge's first Twilio frame starts the call."""
    simulator = [*_assistant(0.75, 3.0)]
    events = [_bridge(0.005, "twilio", "in", {"event": "connected"})]
    m = conversation_measures(_write(tmp_path / "rec", simulator, events))
    assert m["time_to_greeting_ms"] == 745.0
    assert m["time_to_greeting_anchors"]["start"] == "bridge_connected"


def test_a_killed_run_is_measured_from_the_bridge(tmp_path: Path) -> None:
    """Only events.jsonl (what a SIGKILL leaves): the bridge's barge_in rows and its clear."""
    events = [
        _bridge(0.005, "twilio", "in", {"event": "connected"}),
        _bridge(
            3.51, "twilio", "in", {"event": "user_speech_start", "timestamp_ms": f"{B_MS + 3500}"}
        ),
        _bridge(
            5.01, "twilio", "in", {"event": "user_speech_stop", "timestamp_ms": f"{B_MS + 5000}"}
        ),
        _bridge(
            7.01, "twilio", "in", {"event": "user_speech_start", "timestamp_ms": f"{B_MS + 7000}"}
        ),
        *_cut(7.25, 1),
        _bridge(
            7.5, "bridge", "-", {"type": "barge_in", "turn": None, "why": "response_superseded"}
        ),
    ]
    rec = _write(tmp_path / "rec", None, events)
    m = conversation_measures(rec)
    assert m["source"] == "bridge"
    assert m["barge_ins"] == 1  # the superseded response is no caller barge-in
    (row,) = m["barge_in_rows"]
    assert row["source"] == "bridge"
    assert row["turn"] is None
    assert row["assistant_turn"] == 1
    assert row["caller_start_epoch_ms"] == B_MS + 7000
    assert row["yield_anchor"] == "bridge_clear"
    assert row["yield_ms"] == row["bridge_yield_ms"] == 250.0
    assert row["overlap_ms"] == 250.0  # the caller was still talking (no stop logged)
    assert m["time_to_greeting_ms"] is None
    assert "no first assistant audio" in m["time_to_greeting_reason"]
    assert any("user_simulator_events.jsonl" in p for p in m["problems"])


def test_fixture_without_the_caller_log_uses_the_bridge(tmp_path: Path) -> None:
    """run.json's greeting first_played and user_utterances stand in for the caller's log."""
    rec = tmp_path / "rec"
    shutil.copytree(RUN, rec)
    (rec / "user_simulator_events.jsonl").unlink()
    m = conversation_measures(rec)
    assert m["source"] == "bridge"
    # the bridge's first Twilio frame (1795636909644) -> turn 0 first played (1795636910275)
    assert m["time_to_greeting_ms"] == 631.0
    assert m["time_to_greeting_anchors"]["start"] == "bridge_connected"
    assert m["time_to_greeting_anchors"]["end"] == "bridge_first_played"
    (row,) = m["barge_in_rows"]
    assert row["assistant_turn"] == 1
    assert row["caller_start_epoch_ms"] == 1795636920949.0  # run.json user_utterances[1]
    assert row["yield_anchor"] == "bridge_clear"
    assert row["yield_ms"] == 215.0


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MeasureError, match="no such record directory"):
        conversation_measures(tmp_path / "nope")
    with pytest.raises(MeasureError, match="no such record directory"):
        barge_in_rows(tmp_path / "nope")


def test_a_directory_without_either_log_is_a_clear_error(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "run.json").write_text("{}")
    with pytest.raises(MeasureError, match=r"user_simulator_events\.jsonl.*events\.jsonl"):
        barge_in_rows(rec)
    with pytest.raises(ScoringError):  # a ScoringError, as `hydralab score` handles them
        conversation_measures(rec)


def test_unreadable_optional_files_are_problems_not_crashes(tmp_path: Path) -> None:
    rec = _two_barge_ins(tmp_path / "rec")
    (rec / "run.json").write_text("{not json")
    with (rec / "user_simulator_events.jsonl").open("a") as f:
        f.write('{"timestamp": 18000000')  # a torn last line
    m = conversation_measures(rec)
    assert m["barge_ins"] == 2
    assert any(p.startswith("run.json: unreadable") for p in m["problems"])
    # without run.json the backchannel's assistant turn is unknown; the bridge's cut still names it
    assert [r["assistant_turn"] for r in m["barge_in_rows"]] == [1, None]
