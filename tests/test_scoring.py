"""DB normalisation, hash, diff, session check, task completion, code metrics (EVA's rules)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydralab.records import load_record, record_meta
from hydralab.scoring import (
    EVA_CODE_METRICS,
    EXPECTED_DB_FILE,
    FINISH_FAILURE_CAUSES,
    ORDER_INDEPENDENT_LIST_FIELDS,
    SCORES_FILE,
    SIMULATOR_EVENTS_FILE,
    ScoringError,
    TurnTimeline,
    authentication_success,
    conversation_completed_on_time,
    conversation_correctly_finished,
    conversation_valid_end,
    db_diff,
    db_hash,
    dbs_equal,
    final_turn_flags,
    find_record_dirs,
    latency_stats,
    model_response_latencies_ms,
    normalize_db,
    response_speed_latencies_ms,
    score_run,
    session_auth_mismatches,
    task_completion,
    tool_call_validity,
    turn_taking,
    turn_taking_count_score,
    turn_taking_latency_score,
    turn_taking_overlap_score,
    turn_taking_yield_score,
    turn_timeline,
)
from hydralab.tools import EXECUTOR_ERROR_TYPES, ToolExecutor, call_error_types


def _db() -> dict[str, Any]:
    return {
        "_current_date": "2026-05-04",
        "reservations": {
            "ABC123": {
                "status": "confirmed",
                "bookings": [
                    {"journey_id": "J1", "fare_paid": 260.0},
                    {"journey_id": "J2", "fare_paid": 99.5},
                ],
                "notes": ["first", "second"],
                "meal": "None",
            }
        },
        "journeys": {"J1": {"seats": 3}},
        "session": {"confirmation_number": "ABC123", "last_name": "rodriguez"},
    }


def test_normalize_rules() -> None:
    src = _db()
    before = copy.deepcopy(src)
    out = normalize_db(src)
    assert src == before  # input untouched
    res = out["reservations"]["ABC123"]
    assert res["bookings"][0]["fare_paid"] == 260 and isinstance(
        res["bookings"][0]["fare_paid"], int
    )
    assert res["bookings"][1]["fare_paid"] == 99.5
    assert res["meal"] is None
    assert normalize_db([" NULL ", "none", "nonesuch", 1.0, float("inf"), True, (2.0,)]) == [
        None,
        None,
        "nonesuch",
        1,
        float("inf"),
        True,
        [2],
    ]


def test_order_independent_fields() -> None:
    assert {
        "standby_list",
        "notifications",
        "bookings",
        "system_accounts",
        "group_memberships",
        "asset_recoveries",
    } == ORDER_INDEPENDENT_LIST_FIELDS
    a, b = _db(), _db()
    b["reservations"]["ABC123"]["bookings"].reverse()
    assert normalize_db(a) == normalize_db(b)
    assert db_hash(a) == db_hash(b)
    c = _db()
    c["reservations"]["ABC123"]["notes"].reverse()  # ordinary lists keep their order
    assert db_hash(a) != db_hash(c)
    d = {"standby_list": [{"p": 2}, {"p": 1.0}]}
    assert normalize_db(d) == {"standby_list": [{"p": 1}, {"p": 2}]}


def test_hash_definition_and_session_exclusion() -> None:
    db = _db()
    body = normalize_db({k: v for k, v in db.items() if k != "session"})
    want = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()
    assert db_hash(db) == want
    other = _db()
    other["session"] = {"confirmation_number": "ZZZ999"}
    assert db_hash(other) == db_hash(db)
    del other["session"]
    assert dbs_equal(db, other)
    other["journeys"]["J1"]["seats"] = 3.0
    assert dbs_equal(db, other)
    other["journeys"]["J1"]["seats"] = 4
    assert not dbs_equal(db, other)


def test_db_diff_structure() -> None:
    expected, actual = _db(), _db()
    assert db_diff(expected, actual) == {
        "tables_added": [],
        "tables_removed": [],
        "tables_modified": {},
    }
    actual["refunds"] = {"R1": {}}
    del actual["journeys"]
    actual["_current_date"] = "2026-05-05"
    res = actual["reservations"]["ABC123"]
    res["status"] = "cancelled"
    res["extra"] = 1
    del res["meal"]
    res["bookings"].append({"journey_id": "J3"})
    actual["reservations"]["NEW999"] = {}
    diff = db_diff(expected, actual)
    assert diff["tables_added"] == ["refunds"]
    assert diff["tables_removed"] == ["journeys"]
    assert diff["tables_modified"]["_current_date"] == {
        "type": "non_dict_table",
        "expected": "2026-05-04",
        "actual": "2026-05-05",
    }
    table = diff["tables_modified"]["reservations"]
    assert table["records_added"] == ["NEW999"] and table["records_removed"] == []
    record = table["records_modified"]["ABC123"]
    assert record["fields_added"] == ["extra"]
    assert record["fields_removed"] == ["meal"]
    assert record["fields_modified"]["status"] == {
        "type": "value_mismatch",
        "expected": "confirmed",
        "actual": "cancelled",
    }
    assert record["fields_modified"]["bookings"]["type"] == "list_length_mismatch"
    assert "session" not in diff["tables_modified"]


def test_db_diff_lists_and_types() -> None:
    expected = {"t": {"k": {"xs": [1, 2], "v": 1, "bookings": [{"a": 1}, {"a": 2}]}}}
    actual = {"t": {"k": {"xs": [1, 3], "v": "1", "bookings": [{"a": 2}, {"a": 1.0}]}}}
    fields = db_diff(expected, actual)["tables_modified"]["t"]["records_modified"]["k"][
        "fields_modified"
    ]
    assert fields["xs"] == {
        "type": "list_differences",
        "differences": [
            {"index": 1, "diff": {"type": "value_mismatch", "expected": 2, "actual": 3}}
        ],
    }
    assert fields["v"]["type"] == "type_mismatch"
    assert "bookings" not in fields  # order-independent and 1.0 == 1


def test_session_auth_mismatches() -> None:
    expected = {"confirmation_number": "ZK3FFW", "last_name": "Rodriguez"}
    assert (
        session_auth_mismatches(
            expected, {"confirmation_number": "zk3ffw", "last_name": "rodriguez", "extra": 1}
        )
        == []
    )
    problems = session_auth_mismatches(
        expected, {"confirmation_number": "ZK3FFW", "last_name": "Smith"}
    )
    assert problems == ["session.last_name: expected 'Rodriguez', got 'Smith'"]
    assert len(session_auth_mismatches(expected, None)) == 2
    assert session_auth_mismatches(expected, {"confirmation_number": "ZK3FFW"}) == [
        "session.last_name: expected 'Rodriguez', missing"
    ]
    assert session_auth_mismatches({}, None) == []
    assert session_auth_mismatches(None, {"x": 1}) == []


def test_task_completion() -> None:
    expected = _db()
    final = copy.deepcopy(expected)
    final["session"]["last_name"] = "RODRIGUEZ"
    result = task_completion(expected, final)
    assert (
        result["score"] == 1.0
        and result["auth_success"]
        and result["db_match"]
        and result["diff"] is None
    )
    assert result["expected_hash"] == result["final_hash"] == db_hash(expected)

    no_auth = copy.deepcopy(expected)
    del no_auth["session"]
    result = task_completion(expected, no_auth)
    assert result["score"] == 0.0 and not result["auth_success"] and result["db_match"]
    assert len(result["auth_mismatches"]) == 2

    wrong = copy.deepcopy(expected)
    wrong["journeys"]["J1"]["seats"] = 2
    result = task_completion(expected, wrong)
    assert result["score"] == 0.0 and result["auth_success"] and not result["db_match"]
    assert "journeys" in result["diff"]["tables_modified"]


def test_record_expected_vs_initial() -> None:
    record = load_record("HL-AIR-001")
    result = task_completion(record.expected_db, record.initial_db)
    assert result["score"] == 0.0 and not result["auth_success"]
    assert set(result["diff"]["tables_modified"]) == {"reservations", "journeys"}


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(["none", "NULL", "x", "2026-01-01"]),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(["a", "b", "bookings", "standby_list", "notes"]), inner, max_size=4
        ),
    ),
    max_leaves=20,
)


@given(_json)
def test_normalize_is_idempotent(value: Any) -> None:
    once = normalize_db(value)
    assert normalize_db(once) == once


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2), max_size=5
    ),
    st.randoms(),
)
def test_hash_ignores_booking_order(bookings: list[dict[str, int]], rnd: Any) -> None:
    shuffled = list(bookings)
    rnd.shuffle(shuffled)
    assert db_hash({"r": {"X": {"bookings": bookings}}}) == db_hash(
        {"r": {"X": {"bookings": shuffled}}}
    )


# --- code metrics: tool_call_validity, authentication_success (EVA's code metrics) -----------


def _resp(name: str, **response: Any) -> dict[str, Any]:
    return {"tool_name": name, "tool_response": {"status": "success", **response}}


def _fail(name: str, error_type: str) -> dict[str, Any]:
    return _resp(name, status="error", error_type=error_type, message=f"{error_type}!")


def test_tool_call_validity_counts_only_call_errors() -> None:
    none = tool_call_validity([])
    assert none["score"] == 1.0 and none["details"]["total_tool_calls"] == 0
    responses = [
        _resp("get_reservation"),
        _fail("get_reservation", "authentication_failed"),  # business error: a valid call
        _fail("rebook_flight", "reservation_not_found"),  # business error
        _fail("teleport", "tool_not_found"),
        _fail("rebook_flight", "invalid_rebooking_type"),  # EVA's pydantic field type
        _fail("cancel_reservation", "invalid_cancellation_reason"),  # hydralab's field type
        _fail("process_refund", "invalid_parameter"),
    ]
    calls = [
        {"tool_name": r["tool_name"], "tool_parameters": {"i": i}} for i, r in enumerate(responses)
    ]
    result = tool_call_validity(responses, tool_calls=calls, domain="airline")
    assert result["name"] == "tool_call_validity"
    assert result["score"] == round(3 / 7, 4) == result["normalized_score"]
    details = result["details"]
    assert (details["total_tool_calls"], details["valid_tool_calls"]) == (7, 3)
    assert [e["error_type"] for e in details["errors"]] == [
        "tool_not_found",
        "invalid_rebooking_type",
        "invalid_cancellation_reason",
        "invalid_parameter",
    ]
    assert details["errors"][0]["parameters"] == {"i": 3}
    assert details["errors"][0]["message"] == "tool_not_found!"


def test_call_error_types_cover_eva_field_types() -> None:
    eva_field_types = {  # EVA airline_params FIELD_ERROR_TYPES
        "invalid_rebooking_type",
        "invalid_fare_class",
        "invalid_meal_type",
        "invalid_credit_reason",
        "invalid_voucher_reason",
        "invalid_refund_type",
        "invalid_seat_preference",
        "invalid_confirmation_number_format",
        "invalid_flight_number_format",
        "invalid_date_format",
        "invalid_journey_id_format",
        "invalid_passenger_id_format",
        "invalid_airport_code_format",
        "invalid_bag_count",
    }
    types = call_error_types("airline")
    assert eva_field_types | EXECUTOR_ERROR_TYPES <= types
    assert types - eva_field_types - EXECUTOR_ERROR_TYPES == {"invalid_cancellation_reason"}
    assert call_error_types(None) == call_error_types("unknown") == types
    assert not {"reservation_not_found", "authentication_failed"} & types


def test_authentication_success() -> None:
    expected = {"session": {"confirmation_number": "ZK3FFW", "last_name": "rodriguez"}}
    good = {"session": {"confirmation_number": "zk3ffw", "last_name": "Rodriguez", "x": 1}}
    auth = ["get_reservation"]
    once = [_resp("get_reservation"), _resp("search_rebooking_options")]
    result = authentication_success(expected, good, tool_responses=once, auth_tools=auth)
    assert result["score"] == 1.0 and not result["skipped"]
    assert result["details"]["mismatches"] == {}
    subs = result["sub_metrics"]
    # EVA's names (metrics/diagnostic/authentication_success.py)
    assert set(subs) == {"auth_first_try_success", "num_auth_calls", "authentication_success_rate"}
    assert subs["auth_first_try_success"]["score"] == 1.0
    assert subs["num_auth_calls"]["name"] == "authentication_success.num_auth_calls"
    assert (
        subs["num_auth_calls"]["score"] == 1.0
        and subs["num_auth_calls"]["normalized_score"] is None
    )
    assert subs["authentication_success_rate"]["score"] == 1.0
    assert subs["authentication_success_rate"]["normalized_score"] == 1.0
    for sub in subs.values():
        assert sub["details"] == {
            "num_auth_calls_per_tool": {"get_reservation": 1},
            "num_auth_tools": 1,
        }

    twice = [_fail("get_reservation", "authentication_failed"), _resp("get_reservation")]
    result = authentication_success(expected, good, tool_responses=twice, auth_tools=auth)
    assert result["sub_metrics"]["auth_first_try_success"]["score"] == 0.0
    assert result["sub_metrics"]["num_auth_calls"]["score"] == 2.0
    assert result["sub_metrics"]["authentication_success_rate"]["score"] == 0.5

    # two auth tools, six calls: mean 3 calls per tool, success rate 2/6 (EVA's own test case)
    six = [_resp("a"), _resp("a"), _fail("b", "x"), _fail("b", "x"), _fail("b", "x"), _resp("b")]
    result = authentication_success(expected, good, tool_responses=six, auth_tools=["a", "b"])
    assert result["sub_metrics"]["num_auth_calls"]["score"] == 3.0
    assert result["sub_metrics"]["authentication_success_rate"]["score"] == 0.3333
    assert result["sub_metrics"]["num_auth_calls"]["details"]["num_auth_calls_per_tool"] == {
        "a": 2,
        "b": 4,
    }

    bad = {"session": {"confirmation_number": "ZK3FFW", "last_name": "smith"}}
    result = authentication_success(expected, bad, tool_responses=twice, auth_tools=auth)
    assert result["score"] == 0.0
    assert result["details"]["mismatches"] == {
        "last_name": {"expected": "rodriguez", "actual": "smith"}
    }
    assert result["details"]["reason"] == "Session mismatch on keys: ['last_name']"
    assert set(result["sub_metrics"]) == {"num_auth_calls_on_failure"}
    assert result["sub_metrics"]["num_auth_calls_on_failure"]["score"] == 2.0
    assert result["sub_metrics"]["num_auth_calls_on_failure"]["normalized_score"] is None

    missing = authentication_success(expected, {}, auth_tools=auth)
    assert missing["score"] == 0.0 and missing["sub_metrics"] is None  # no auth call at all
    assert (
        missing["details"]["reason"]
        == "Session mismatch on keys: ['confirmation_number', 'last_name']"
    )
    skipped = authentication_success({}, good)
    assert skipped["skipped"] and skipped["score"] is None and skipped["normalized_score"] is None


def test_tool_call_validity_sub_metrics() -> None:
    none = tool_call_validity([], domain="airline")
    assert list(none["sub_metrics"]) == ["num_tool_calls"]
    assert none["sub_metrics"]["num_tool_calls"]["score"] == 0.0
    assert none["sub_metrics"]["num_tool_calls"]["normalized_score"] is None
    responses = [
        _resp("get_reservation"),
        _fail("teleport", "tool_not_found"),
        _fail("rebook_flight", "invalid_fare_class"),
        _fail("rebook_flight", "invalid_fare_class"),
        _fail("rebook_flight", "reservation_not_found"),  # a business error: no rate
    ]
    result = tool_call_validity(responses, domain="airline")
    subs = result["sub_metrics"]
    # every call-error type has a rate, so the keys do not depend on the record
    assert set(subs) == {"num_tool_calls"} | {f"{t}_rate" for t in call_error_types("airline")}
    assert subs["num_tool_calls"]["score"] == 5.0
    assert subs["num_tool_calls"]["name"] == "tool_call_validity.num_tool_calls"
    fare = subs["invalid_fare_class_rate"]
    assert fare["name"] == "tool_call_validity.invalid_fare_class_rate"
    assert fare["score"] == fare["normalized_score"] == 0.4
    assert fare["details"] == {"count": 2, "total_tool_calls": 5}
    assert subs["tool_not_found_rate"]["score"] == 0.2
    assert subs["execution_error_rate"]["score"] == 0.0
    assert "reservation_not_found_rate" not in subs


# --- latencies and the run-directory scorer --------------------------------------------------


def test_latency_stats_match_numpy() -> None:
    values = [612.0, 640.5, 790.0, 505.25, 1200.0]
    stats = latency_stats(values)
    assert stats["n"] == 5 and stats["max_ms"] == 1200.0
    for q in (50, 90, 95, 99):
        assert stats[f"p{q}_ms"] == pytest.approx(float(np.percentile(values, q)))
    assert stats["mean_ms"] == pytest.approx(float(np.mean(values)))
    assert latency_stats([]) == {"n": 0}
    assert latency_stats([7.0])["p99_ms"] == 7.0


def test_latency_inputs_from_run_files() -> None:
    rows: list[dict[str, Any]] = [
        {"type": "LatencyMetric", "stage": "model_response", "value": 0.812},
        {"type": "LatencyMetric", "stage": "model_response", "value": 31.0},  # dropped (>= 30 s)
        {"type": "LatencyMetric", "stage": "model_response", "value": 0},  # dropped
        {"type": "LatencyMetric", "stage": "tts", "value": 0.2},
        {"type": "LLMTokenUsageMetricsData", "value": {"total_tokens": 5}},
    ]
    assert model_response_latencies_ms(rows) == [pytest.approx(812.0)]

    def mark(seq: int, kind: str, who: str, t: float) -> dict[str, Any]:
        stamp = int(t * 1000)
        return {
            "timestamp": stamp,
            "sequence": seq,
            "event_type": kind,
            "user": who,
            "audio_timestamp": t,
        }

    events = [
        mark(1, "audio_start", "assistant", 100.0),  # greeting: turn 0, no user before it
        mark(2, "audio_end", "assistant", 101.0),
        {"timestamp": 101_500, "sequence": 3, "type": "user_speech", "data": {"text": "hi"}},
        mark(4, "audio_start", "simulated_user", 102.0),  # turn 1 (the line above is its text)
        mark(5, "audio_end", "simulated_user", 103.0),
        mark(6, "audio_start", "assistant", 104.25),  # 1250 ms
        mark(7, "audio_start", "assistant", 105.0),  # a second segment of the same answer
        mark(8, "audio_start", "simulated_user", 106.0),  # over the answer: a barge-in...
        mark(9, "audio_end", "simulated_user", 107.0),  # ...without speech: noise
        mark(10, "audio_start", "assistant", 106.5),  # while the noise lasts
    ]
    assert response_speed_latencies_ms(events) == [pytest.approx(1250.0)]  # -500 ms dropped
    timeline = turn_timeline(events)
    assert [a for a, _ in timeline.assistant_audio[1] or []] == [104.25, 105.0]
    assert timeline.user_audio[2] == [(106.0, 107.0)] and timeline.latencies_s[2] == -0.5
    assert timeline.user_interrupted_turns == timeline.assistant_interrupted_turns == {2}
    # the open assistant segments end when the session does (its last event here)
    assert timeline.assistant_audio[1] == [(104.25, 107.0), (105.0, 107.0)]
    # events without a wall-clock timestamp are not placed on the timeline (as in EVA)
    assert response_speed_latencies_ms([{**e, "timestamp": None} for e in events]) == []


def _audit_entry(kind: str, value: Any, t_ms: int) -> dict[str, Any]:
    return {"value": value, "type": "text", "timestamp": str(t_ms), "message_type": kind}


def _replayed_run_dir(path: Path, record_id: str = "HL-AIR-003") -> Path:
    """A record directory as a run leaves it, from replaying the record's trace."""
    record = load_record(record_id)
    ex = ToolExecutor.for_record(record)
    audit: list[dict[str, Any]] = []
    t = 1_000
    for event in record.trace:
        t += 10
        kind = event["event_type"]
        if kind == "user_utterance":
            audit.append(_audit_entry("user", event["utterance"], t))
        elif kind == "agent_utterance":
            audit.append(_audit_entry("assistant", event["utterance"], t))
        elif kind == "tool_call":
            params = event["params"]
            audit.append(
                _audit_entry("tool_call", {"tool": event["tool_name"], "parameters": params}, t)
            )
            result = ex.execute(event["tool_name"], params)
            audit.append(
                _audit_entry("tool_response", {"tool": event["tool_name"], "response": result}, t)
            )
    path.mkdir(parents=True)
    (path / "audit_log.json").write_text(json.dumps({"transcript": audit, "llm_prompts": []}))
    (path / "final_scenario_db.json").write_text(json.dumps(ex.db))
    (path / EXPECTED_DB_FILE).write_text(json.dumps(record.expected_db))
    (path / "run.json").write_text(
        json.dumps({"record_id": record.id, "record": record_meta(record)})
    )
    metrics = [{"type": "LatencyMetric", "stage": "model_response", "value": v} for v in (0.5, 0.7)]
    (path / "pipecat_metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return path


def test_score_record_and_score_run(tmp_path: Path) -> None:
    record_dir = _replayed_run_dir(tmp_path / "records" / "HL-AIR-003")
    scores = score_run(record_dir)
    assert json.loads((record_dir / SCORES_FILE).read_text()) == json.loads(json.dumps(scores))
    assert scores["record_id"] == "HL-AIR-003"
    assert scores["task_completion"] == 1.0 and scores["db_match"] and scores["db_diff"] is None
    assert scores["authentication_success"] is True and scores["tool_call_validity"] == 1.0
    assert scores["turns"] == {
        "user": 3,
        "assistant": 3,
        "tool_calls": 3,
        "tools_called": ["get_reservation", "cancel_reservation", "issue_travel_credit"],
    }
    assert scores["latency"]["model_response"]["n"] == 2
    assert scores["latency"]["model_response"]["p50_ms"] == pytest.approx(600.0)
    assert scores["latency"]["response_speed"] == {"n": 0}  # no simulator events written
    metrics = scores["metrics"]
    assert list(metrics) == list(EVA_CODE_METRICS)
    assert metrics["task_completion"]["details"]["match"] is True
    assert (
        metrics["authentication_success"]["sub_metrics"]["auth_first_try_success"]["score"] == 1.0
    )
    # no simulator events: the timing metrics cannot score, the ending is not known
    assert scores["response_speed"] is None and metrics["response_speed"]["error"]
    assert scores["turn_taking"] == 0.0
    assert metrics["conversation_valid_end"]["error"] == "User simulator events file not found"
    assert scores["conversation_correctly_finished"] == 1.0

    # a wrong write shows up; the original data is not needed, only the run's files
    final = json.loads((record_dir / "final_scenario_db.json").read_text())
    final["travel_credits"] = {}
    (record_dir / "final_scenario_db.json").write_text(json.dumps(final))
    rescored = score_run(record_dir, write=False)
    assert rescored["task_completion"] == 0.0 and not rescored["db_match"]
    assert rescored["db_diff"]["tables_modified"]["travel_credits"]["records_removed"]
    assert json.loads((record_dir / SCORES_FILE).read_text())["task_completion"] == 1.0


def test_score_run_loads_the_expected_db_from_the_record_when_no_copy(tmp_path: Path) -> None:
    record_dir = _replayed_run_dir(tmp_path / "r")
    (record_dir / EXPECTED_DB_FILE).unlink()
    assert score_run(record_dir, write=False)["task_completion"] == 1.0
    (record_dir / "run.json").write_text("{}")
    with pytest.raises(ScoringError, match="does not say which record"):
        score_run(record_dir, write=False)


def test_score_run_missing_files(tmp_path: Path) -> None:
    record_dir = _replayed_run_dir(tmp_path / "r")
    (record_dir / "audit_log.json").unlink()
    with pytest.raises(ScoringError, match=r"missing audit_log\.json"):
        score_run(record_dir)
    (record_dir / "audit_log.json").write_text("{oops")
    with pytest.raises(ScoringError, match="invalid JSON"):
        score_run(record_dir)


def test_find_record_dirs(tmp_path: Path) -> None:
    a = _replayed_run_dir(tmp_path / "run" / "records" / "HL-AIR-003")
    b = _replayed_run_dir(tmp_path / "run" / "records" / "HL-AIR-002", "HL-AIR-002")
    (tmp_path / "run" / "records" / "empty").mkdir()
    assert find_record_dirs(tmp_path / "run") == [b, a]
    assert find_record_dirs(a) == [a]
    assert find_record_dirs(tmp_path / "run" / "records") == [b, a]
    assert find_record_dirs(tmp_path / "nothing") == []


# --- EVA's timing and ending metrics, on whole conversations ---------------------------------
#
# ``write_conversation`` lays out a record directory as a speech-to-speech run leaves it
# (audit_log.json, user_simulator_events.jsonl with assistant_speech lines, result.json, the
# DBs); tests/test_eva_oracle.py feeds the same directories to EVA's own metric code.

T0 = 1_800_000_000.0  # epoch seconds of a conversation's start


def _ms(t: float) -> int:
    return round((T0 + t) * 1000)


def write_conversation(
    record_dir: Path,
    steps: list[tuple[Any, ...]],
    *,
    ended: str = "goodbye",
    end_at: float | None = None,
    final_db: dict[str, Any] | None = None,
    record_id: str = "HL-AIR-001",
) -> Path:
    """A record directory from ``steps`` (times in seconds from the start):

    ``("assistant", start, end, text)`` — agent audio, then the simulator's transcript of it;
    ``("user", start, end, text)`` — the caller's audio, speech and audit-log line (a fifth
    item ``False``: the agent never heard it, so no audit-log line);
    ``("tool", t, name, params, response)`` — an audit-log tool call and its response.
    The events file ends with ``connection_state`` / ``session_ended`` / ``ended`` at ``end_at``
    (default: one second after the last step; ``None`` values of ``ended`` write no end).
    """
    record = load_record(record_id)
    events: list[tuple[float, dict[str, Any]]] = []
    audit: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    last = 0.0

    def mark(kind: str, who: str, t: float) -> None:
        events.append(
            (t, {"timestamp": _ms(t), "event_type": kind, "user": who, "audio_timestamp": T0 + t})
        )

    for step in steps:
        kind = step[0]
        if kind in ("assistant", "user"):
            _, start, end, text, *heard_by_agent = step
            who = "assistant" if kind == "assistant" else "simulated_user"
            mark("audio_start", who, start)
            if kind == "user":
                line = {"type": "user_speech", "data": {"text": text, "source": who}}
                events.append((start, {"timestamp": _ms(start), **line}))
            mark("audio_end", who, end)
            if kind == "assistant":
                heard = {"type": "assistant_speech", "data": {"text": text, "source": who}}
                events.append((end + 0.3, {"timestamp": _ms(end + 0.3), **heard}))
            if heard_by_agent != [False]:
                audit.append(_audit_entry(kind, text, _ms(start)))
                messages.append({"role": kind, "content": text})
            last = max(last, end + 0.3)
        else:
            _, t, name, params, response = step
            audit.append(_audit_entry("tool_call", {"tool": name, "parameters": params}, _ms(t)))
            audit.append(
                _audit_entry("tool_response", {"tool": name, "response": response}, _ms(t))
            )
            last = max(last, t)
    events.sort(key=lambda e: e[0])
    t_end = last + 1.0 if end_at is None else end_at
    rows = [
        {"timestamp": _ms(-1.0), "type": "connection_state", "data": {"state": "connected"}},
        *(e for _, e in events),
    ]
    if ended is not None:
        state = {"state": "session_ended", "details": {"reason": ended}}
        rows.append({"timestamp": _ms(t_end), "type": "connection_state", "data": state})
    for seq, row in enumerate(rows, 1):
        row["sequence"] = seq
        row["provider"] = "hydralab"
    audit.sort(key=lambda e: int(e["timestamp"]))
    record_dir.mkdir(parents=True)
    (record_dir / "user_simulator_events.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    (record_dir / "audit_log.json").write_text(
        json.dumps({"transcript": audit, "llm_prompts": [], "conversation_messages": messages})
    )
    final = record.expected_db if final_db is None else final_db
    (record_dir / "final_scenario_db.json").write_text(json.dumps(final))
    (record_dir / "initial_scenario_db.json").write_text(json.dumps(record.initial_db))
    (record_dir / EXPECTED_DB_FILE).write_text(json.dumps(record.expected_db))
    (record_dir / "run.json").write_text(
        json.dumps({"record_id": record.id, "record": record_meta(record)})
    )
    result = {
        "record_id": record.id,
        "completed": True,
        "started_at": "2027-01-15T08:00:00",
        "ended_at": "2027-01-15T08:01:00",
        "duration_seconds": 60.0,
        "output_dir": str(record_dir),
        "audit_log_path": str(record_dir / "audit_log.json"),
        "user_simulator_logs_path": str(record_dir / "user_simulator_events.jsonl"),
        "conversation_ended_reason": ended,
    }
    (record_dir / "result.json").write_text(json.dumps(result))
    return record_dir


_OK = {"status": "success"}
_RES = {"confirmation_number": "HT4KWB", "last_name": "Brooks"}

#: Four conversations that exercise every branch the timing and ending metrics take.
CONVERSATIONS: dict[str, dict[str, Any]] = {
    # latencies 1.0 s, 3.5 s (tool turn), 0.15 s (early, tool turn), 3.0 s (late)
    "clean": {
        "steps": [
            ("assistant", 0.0, 2.0, "Hello! How can I help you today?"),
            ("user", 3.0, 5.0, "Hi, I need to move my flight."),
            ("assistant", 6.0, 8.0, "Sure. Your confirmation number and last name?"),
            ("user", 9.0, 11.0, "H T four K W B, Brooks."),
            ("tool", 11.5, "get_reservation", _RES, {**_OK, "reservation": {}}),
            ("assistant", 14.5, 17.0, "Found it. Shall I move you to the twelfth?"),
            ("user", 18.0, 19.0, "Yes, please."),
            ("tool", 19.05, "rebook_flight", {"confirmation_number": "HT4KWB"}, _OK),
            ("assistant", 19.15, 22.0, "Done, you are on the twelfth."),
            ("user", 23.0, 24.0, "Thanks, bye."),
            ("assistant", 27.0, 28.0, "Goodbye!"),
        ],
    },
    # turn 1: the agent talks over the caller for 0.5 s; turn 3: the caller cuts in and the
    # agent stops 0.6 s later; and the agent issued a travel credit it should not have
    "barge_in": {
        "db_edit": lambda db: db["travel_credits"].update({"TC-HT4KWB": {"amount": 50}}),
        "steps": [
            ("assistant", 0.0, 2.0, "Hello! How can I help you today?"),
            ("user", 3.0, 6.0, "Hi, I need to move my flight to Friday."),
            ("assistant", 5.5, 8.0, "Sure, what is your confirmation number?"),
            ("user", 9.0, 11.0, "H T four K W B."),
            ("assistant", 12.0, 14.6, "Thanks. And the last name on the booking is"),
            ("user", 14.0, 15.5, "Brooks, B R O O K S."),
            ("assistant", 16.5, 18.0, "Thank you, Ms. Brooks."),
            ("user", 19.0, 20.0, "That's all, bye."),
            ("assistant", 21.0, 22.0, "Goodbye!"),
        ],
    },
    # the agent never hears (nor answers) the caller's last line: inactivity timeout
    "agent_silent": {
        "steps": [
            ("assistant", 0.0, 2.0, "Hello! How can I help you today?"),
            ("user", 3.0, 5.0, "Can you move my flight?"),
            ("assistant", 6.0, 8.0, "Sure, shall I look it up?"),
            ("user", 9.0, 10.0, "Yes.", False),
        ],
        "ended": "inactivity_timeout",
        "end_at": 40.0,
    },
    # the call dropped before anyone spoke; the only tool call failed authentication
    "dropped": {
        "steps": [
            (
                "tool",
                0.5,
                "get_reservation",
                {**_RES, "last_name": "Smith"},
                {"status": "error", "error_type": "authentication_failed", "message": "no"},
            ),
        ],
        "ended": "caller_disconnected",
        "final_db": {"session": {}},
    },
}


def conversation_dir(root: Path, name: str) -> Path:
    """``CONVERSATIONS[name]`` written under ``root/records/<name>``."""
    spec = CONVERSATIONS[name]
    final_db = spec.get("final_db")
    if "db_edit" in spec:
        final_db = copy.deepcopy(load_record("HL-AIR-001").expected_db)
        spec["db_edit"](final_db)
    return write_conversation(
        root / "records" / name,
        spec["steps"],
        ended=spec.get("ended", "goodbye"),
        end_at=spec.get("end_at"),
        final_db=final_db,
    )


def _subs(metric: dict[str, Any]) -> dict[str, Any]:
    return {k: v["score"] for k, v in (metric["sub_metrics"] or {}).items()}


def test_clean_conversation_timing(tmp_path: Path) -> None:
    scores = score_run(conversation_dir(tmp_path, "clean"))
    m = scores["metrics"]
    speed = m["response_speed"]
    assert speed["score"] == scores["response_speed"] == round(7.65 / 4, 3)
    assert speed["normalized_score"] is None and speed["higher_is_better"] is False
    assert speed["details"]["per_turn_speeds"] == [1.0, 3.5, 0.15, 3.0]
    assert speed["details"]["max_speed_seconds"] == 3.5 and speed["details"]["num_turns"] == 4
    assert _subs(speed) == {"with_tool_calls": 1.825, "no_tool_calls": 2.0}
    assert speed["sub_metrics"]["with_tool_calls"]["details"]["num_turns"] == 2

    tt = m["turn_taking"]
    details = tt["details"]
    # 1.0 in the sweet spot; 3.5 s on the tool curve (5000-3500)/2000; 150 ms on the early
    # ramp (150+500)/1000; 3.0 s past the no-tool sweet spot (3500-3000)/1500
    assert details["per_turn_score"] == {1: 1.0, 2: 0.75, 3: 0.65, 4: 0.3333}
    assert set(details["per_turn_reason"].values()) == {"latency"}
    assert [details["per_turn_evidence"][t]["has_tool_call"] for t in (1, 2, 3, 4)] == [
        False,
        True,
        True,
        False,
    ]
    assert tt["score"] == tt["normalized_score"] == round((1 + 0.75 + 0.65 + 0.3333) / 4, 4)
    assert (details["num_turns"], details["num_evaluated"], details["missed_turn"]) == (4, 4, False)
    subs = _subs(tt)
    assert subs["mean_latency_ms"] == 1912.5
    assert (subs["p50_latency_ms"], subs["p90_latency_ms"]) == (3000.0, 3500.0)
    assert (subs["early_rate"], subs["on_time_rate"], subs["late_rate"]) == (0.25, 0.5, 0.25)
    assert subs["agent_interruption.rate"] == subs["user_interruption.rate"] == 0.0
    assert subs["agent_interruption.num_interruptions"] is None
    assert "agent_interruption.mean_overlap_ms" not in subs
    assert tt["sub_metrics"]["mean_latency_ms"]["normalized_score"] is None
    assert tt["sub_metrics"]["late_rate"]["normalized_score"] == 0.25

    assert scores["conversation_valid_end"] == 1.0
    assert m["conversation_valid_end"]["details"]["ended_properly"] is True
    assert scores["conversation_correctly_finished"] == 1.0
    finished = m["conversation_correctly_finished"]
    assert finished["details"]["last_audio_speaker"] == "assistant"
    assert _subs(finished) == {f"{c}_rate": 0.0 for c in FINISH_FAILURE_CAUSES}
    assert scores["conversation_completed_on_time"] == 1.0
    assert scores["latency"]["response_speed"]["n"] == 4
    assert scores["latency"]["response_speed"]["max_ms"] == pytest.approx(3500.0)
    written = json.loads((tmp_path / "records" / "clean" / SCORES_FILE).read_text())
    assert written["metrics"]["turn_taking"]["details"]["per_turn_score"]["2"] == 0.75


def test_barge_ins(tmp_path: Path) -> None:
    record_dir = conversation_dir(tmp_path, "barge_in")
    events = [
        json.loads(line) for line in (record_dir / SIMULATOR_EVENTS_FILE).read_text().splitlines()
    ]
    audit = json.loads((record_dir / "audit_log.json").read_text())
    timeline = turn_timeline(events, audit)
    assert timeline.assistant_interrupted_turns == {1}
    assert timeline.user_interrupted_turns == {3}
    assert timeline.user_audio[3] == [(T0 + 14.0, T0 + 15.5)]
    assert timeline.assistant_audio[2] == [(T0 + 12.0, T0 + 14.6)]  # cut off in turn 2
    assert timeline.latencies_s[1] == -0.5

    scores = score_run(record_dir, write=False)
    done = scores["metrics"]["task_completion"]
    assert scores["task_completion"] == done["score"] == 0.0
    assert done["details"]["diff_summary"] == "1 tables modified"
    assert done["details"]["diff"]["tables_modified"]["travel_credits"]["records_added"] == [
        "TC-HT4KWB"
    ]
    tt = scores["metrics"]["turn_taking"]
    details = tt["details"]
    assert details["per_turn_reason"] == {
        1: "agent_interrupt",
        2: "latency",
        3: "user_interrupt",
        4: "latency",
    }
    ev1 = details["per_turn_evidence"][1]
    assert ev1["overlap_ms"] == pytest.approx(500.0) and ev1["overlap_score"] == 0.375
    assert ev1["n_interrupt_segments"] == 1 and ev1["interrupt_count_score"] == 0.5
    assert "post_interrupt_latency_ms" not in ev1  # the agent was still talking at the end
    ev3 = details["per_turn_evidence"][3]
    assert ev3["yield_ms"] == pytest.approx(600.0) and ev3["yield_score"] == 0.7
    assert details["per_turn_score"] == {1: 0.375, 2: 1.0, 3: 0.7, 4: 1.0}
    assert tt["score"] == pytest.approx(0.76875, abs=1e-4)
    subs = _subs(tt)
    assert subs["agent_interruption.rate"] == subs["user_interruption.rate"] == 0.25
    assert subs["agent_interruption.num_interruptions"] == 1.0
    assert subs["agent_interruption.mean_overlap_ms"] == pytest.approx(500.0)
    assert subs["agent_interruption.mean_count_score"] == 0.5
    assert subs["user_interruption.mean_yield_ms"] == pytest.approx(600.0)
    assert subs["user_interruption.mean_yield_score"] == 0.7
    assert subs["early_rate"] == 0.25  # the -500 ms overlap counts as early


def test_agent_silent_on_the_last_turn(tmp_path: Path) -> None:
    scores = score_run(conversation_dir(tmp_path, "agent_silent"), write=False)
    m = scores["metrics"]
    finished = m["conversation_correctly_finished"]
    assert finished["score"] == scores["conversation_correctly_finished"] == 0.0
    assert finished["details"]["last_audio_speaker"] == "user"
    subs = _subs(finished)
    assert subs["vad_no_turn_detected_rate"] == 1.0
    assert sum(subs[f"{c}_rate"] for c in FINISH_FAILURE_CAUSES) == 1.0
    cause = finished["sub_metrics"]["vad_no_turn_detected_rate"]["details"]
    assert cause["user_said_ground_truth"] == "Yes." and cause["notes"] == ["no logs.log"]
    assert (
        subs["final_turn_short_rate"],
        subs["final_turn_acknowledgement_rate"],
        subs["final_turn_spelled_entity_rate"],
    ) == (1.0, 1.0, 0.0)
    # a definitive end all the same, on time; turn-taking zeroed by the missed turn
    assert m["conversation_valid_end"]["details"]["reason"] == "agent_timeout_on_user_turn"
    assert scores["conversation_valid_end"] == 1.0
    assert scores["conversation_completed_on_time"] == 1.0
    assert m["turn_taking"]["details"]["missed_turn"] is True
    assert m["turn_taking"]["details"]["per_turn_score"] == {1: 1.0}
    assert scores["turn_taking"] == 0.0
    assert m["turn_taking"]["details"]["num_turns"] == 2


def test_dropped_call(tmp_path: Path) -> None:
    scores = score_run(conversation_dir(tmp_path, "dropped"), write=False)
    m = scores["metrics"]
    assert scores["response_speed"] is None
    assert (
        m["response_speed"]["error"] == "No response latencies available (missing audio timestamps)"
    )
    assert m["turn_taking"]["score"] == m["turn_taking"]["normalized_score"] == 0.0
    assert m["turn_taking"]["sub_metrics"] is None
    assert scores["conversation_valid_end"] == 0.0
    assert (
        m["conversation_valid_end"]["details"]["reason"] == "conversation ended for unknown reasons"
    )
    assert m["conversation_correctly_finished"]["details"]["last_audio_speaker"] is None
    assert scores["conversation_correctly_finished"] == 1.0
    assert m["task_completion"]["details"]["auth_failed"] is True
    assert m["authentication_success"]["score"] == 0.0
    assert _subs(m["authentication_success"]) == {"num_auth_calls_on_failure": 1.0}
    assert m["tool_call_validity"]["score"] == 1.0  # a business error is a valid call


def test_turn_taking_curves_match_evas_test_points() -> None:
    # the points EVA's own tests pin (tests/unit/metrics/test_turn_taking.py)
    for ms, want in [
        (-1000, 0),
        (-500, 0),
        (-200, 0.3),
        (0, 0.5),
        (200, 0.7),
        (500, 1),
        (2000, 1),
        (2500, 0.6667),
        (3000, 0.3333),
        (3500, 0),
        (8000, 0),
    ]:
        assert turn_taking_latency_score(ms) == pytest.approx(want, abs=1e-3), ms
    for ms, want in [(-500, 0), (0, 0.5), (3000, 1), (3500, 0.75), (4000, 0.5), (5000, 0)]:
        assert turn_taking_latency_score(ms, tool_call=True) == pytest.approx(want, abs=1e-3)
    for ms, want in [(0, 0.5), (200, 0.45), (500, 0.375), (1000, 0.25), (2000, 0), (3000, 0)]:
        assert turn_taking_overlap_score(ms) == pytest.approx(want, abs=1e-3)
    for ms, want in [(0, 1), (200, 0.9), (600, 0.7), (1000, 0.5), (2000, 0), (2500, 0)]:
        assert turn_taking_yield_score(ms) == pytest.approx(want, abs=1e-3)
    for n, want in [(1, 0.5), (2, 0.25), (3, 0), (10, 0)]:
        assert turn_taking_count_score(n) == pytest.approx(want, abs=1e-3)


def _timeline(
    user: dict[int, list[tuple[float, float]]],
    asst: dict[int, list[tuple[float, float]]],
    **kw: Any,
) -> TurnTimeline:
    lat = {t: round(asst[t][0][0] - u[-1][1], 6) for t, u in user.items() if u and asst.get(t)}
    return TurnTimeline(user_audio=dict(user), assistant_audio=dict(asst), latencies_s=lat, **kw)


def test_turn_taking_scenarios_from_evas_tests() -> None:
    # five turns at 100, 300, 1000, 3000 and 5000 ms
    user = {i: [(i * 10.0, i * 10.0 + 1.0)] for i in range(1, 6)}
    asst = {
        1: [(11.1, 12.0)],
        2: [(21.3, 22.0)],
        3: [(32.0, 33.0)],
        4: [(44.0, 45.0)],
        5: [(56.0, 57.0)],
    }
    subs = _subs(turn_taking(_timeline(user, asst)))
    assert (subs["on_time_rate"], subs["early_rate"], subs["late_rate"]) == (0.4, 0.2, 0.4)
    assert subs["p50_latency_ms"] == pytest.approx(1000, abs=1)
    # a brief barge-in, then an 8 s wait for the real answer: the slow recovery scores 0
    slow = _timeline(
        {1: [(0.0, 1.0)], 2: [(15.0, 16.0)]},
        {1: [(0.8, 1.0), (9.0, 10.0)], 2: [(17.0, 18.0)]},
        assistant_interrupted_turns=frozenset({1}),
    )
    ev = turn_taking(slow)["details"]["per_turn_evidence"][1]
    assert ev["overlap_ms"] == pytest.approx(200, abs=1) and ev["overlap_score"] == 0.45
    assert ev["post_interrupt_latency_ms"] == pytest.approx(8000, abs=1)
    assert turn_taking(slow)["details"]["per_turn_score"][1] == 0.0
    # three separate barge-ins into one user turn
    many = _timeline(
        {1: [(0.0, 10.0)]},
        {1: [(2.0, 2.5), (5.0, 5.5), (8.0, 8.5)]},
        assistant_interrupted_turns=frozenset({1}),
    )
    assert turn_taking(many)["details"]["per_turn_evidence"][1]["n_interrupt_segments"] == 3
    assert turn_taking(many)["details"]["per_turn_score"][1] == 0.0  # count score 0
    # the greeting (turn 0) is never scored; no scorable turn scores 0, not an error
    empty = turn_taking(_timeline({}, {0: [(0.0, 1.0)]}))
    assert empty["score"] == 0.0 and empty["error"] is None and not empty["skipped"]


def test_conversation_valid_end_reads_the_last_line(tmp_path: Path) -> None:
    def line(**row: Any) -> str:
        return json.dumps(row) + "\n"

    goodbye = line(
        type="connection_state", data={"state": "session_ended", "details": {"reason": "goodbye"}}
    )
    other = line(
        type="connection_state", data={"state": "session_ended", "details": {"reason": "error"}}
    )
    speech = line(type="user_speech", data={"text": "bye"})
    path = tmp_path / "user_simulator_events.jsonl"
    assert conversation_valid_end(speech + goodbye, events_path=path)["score"] == 1.0
    assert conversation_valid_end(goodbye + speech, events_path=path)["details"]["reason"] == (
        "Last event type is 'user_speech', expected 'connection_state'"
    )
    assert conversation_valid_end(other, events_path=path)["score"] == 0.0
    assert (
        conversation_valid_end("", events_path=path)["error"]
        == "user_simulator_events.jsonl is empty"
    )
    assert conversation_valid_end(goodbye + "\n", events_path=path)["error"] == (
        "Last line in user_simulator_events.jsonl is empty"
    )
    torn = conversation_valid_end(goodbye + '{"type": "conn', events_path=path)
    assert torn["score"] == 0.0 and torn["error"].startswith("Failed to parse last line as JSON")
    missing = conversation_valid_end(None, events_path=path)
    assert missing["score"] == 0.0 and missing["error"] == "User simulator events file not found"


def test_conversation_completed_on_time() -> None:
    assert conversation_completed_on_time("goodbye")["score"] == 1.0
    assert conversation_completed_on_time("inactivity_timeout")["score"] == 1.0
    late = conversation_completed_on_time("time_limit_exceeded")
    assert late["score"] == late["normalized_score"] == 0.0
    assert late["details"] == {
        "conversation_ended_reason": "time_limit_exceeded",
        "timed_out": True,
    }


def test_final_turn_flags() -> None:
    assert final_turn_flags("Yes.") == {
        "short": True,
        "acknowledgement": True,
        "spelled_entity": False,
    }
    assert final_turn_flags("[neutral] Okay, that works for me.")["acknowledgement"] is True
    assert (
        final_turn_flags("Yeah so I was wondering whether you could also check the bags")[
            "acknowledgement"
        ]
        is False
    )
    assert final_turn_flags("It is K as in Kilo, O as in Oscar.")["spelled_entity"] is True
    assert final_turn_flags("H T 4 K W B")["spelled_entity"] is True
    long = (
        "I would really like to know whether the flight on Friday still has window seats left ABC"
    )
    assert final_turn_flags(long)["spelled_entity"] is False  # the prose dominates
    assert final_turn_flags(None) == {
        "short": False,
        "acknowledgement": False,
        "spelled_entity": False,
    }


def test_correctly_finished_needs_the_user_to_have_spoken_last() -> None:
    user_last = _timeline({1: [(3.0, 5.0)]}, {0: [(0.0, 2.0)]})
    agent_last = _timeline({1: [(3.0, 5.0)]}, {0: [(0.0, 2.0)], 1: [(6.0, 7.0)]})
    assert conversation_correctly_finished(user_last, "inactivity_timeout")["score"] == 0.0
    unknown = conversation_correctly_finished(user_last, "inactivity_timeout")
    assert unknown["sub_metrics"]["unknown_reason_rate"]["details"]["notes"] == ["no output_dir"]
    ok = conversation_correctly_finished(agent_last, "inactivity_timeout")
    assert ok["score"] == 1.0
    assert ok["details"]["reason"] == "inactivity_timeout but last speaker was 'assistant'"
    assert conversation_correctly_finished(user_last, "goodbye")["score"] == 1.0


def _sim(t: float, kind: str, who: str = "", text: str = "") -> dict[str, Any]:
    if kind in ("user_speech", "assistant_speech"):
        return {"timestamp": _ms(t), "type": kind, "data": {"text": text}}
    return {"timestamp": _ms(t), "event_type": kind, "user": who, "audio_timestamp": T0 + t}


def test_timeline_turns_follow_evas_processor() -> None:
    a, u = "assistant", "simulated_user"
    greeting = [_sim(0.0, "audio_start", a), _sim(1.0, "audio_end", a)]
    first = [
        _sim(2.0, "audio_start", u),
        _sim(2.0, "user_speech", text="Hi."),
        _sim(3.0, "audio_end", u),
        _sim(4.0, "audio_start", a),
        _sim(5.0, "audio_end", a),
    ]
    # a user audio session without speech (noise) is not a turn: the next real one is turn 2
    noise = [_sim(6.0, "audio_start", u), _sim(6.5, "audio_end", u)]
    second = [
        _sim(8.0, "audio_start", u),
        _sim(8.0, "user_speech", text="Move my flight."),
        _sim(9.0, "audio_end", u),
        _sim(10.0, "audio_start", a),
        _sim(11.0, "audio_end", a),
    ]
    timeline = turn_timeline(greeting + first + noise + second)
    assert set(timeline.user_audio) == {1, 2}
    assert timeline.user_audio[2] == [(T0 + 6.0, T0 + 6.5), (T0 + 8.0, T0 + 9.0)]
    assert timeline.latencies_s == {1: 1.0, 2: 1.0}

    # a late transcript of turn 1's answer does not end turn 2: the caller's second breath
    # after it stays in turn 2
    late = [
        _sim(6.0, "audio_start", u),
        _sim(6.0, "user_speech", text="Move my flight"),
        _sim(6.5, "assistant_speech", text="Sure."),  # heard late, belongs to turn 1
        _sim(7.0, "audio_end", u),
        _sim(7.5, "audio_start", u),
        _sim(7.5, "user_speech", text="to Friday."),
        _sim(8.0, "audio_end", u),
        _sim(9.0, "audio_start", a),
        _sim(10.0, "audio_end", a),
    ]
    timeline = turn_timeline(greeting + first + late)
    assert timeline.user_audio[2] == [(T0 + 6.0, T0 + 7.0), (T0 + 7.5, T0 + 8.0)]
    assert timeline.latencies_s[2] == 1.0

    # legacy role names (elevenlabs_events.jsonl) map to the neutral ones
    legacy = [
        {**e, "user": {a: "framework_agent", u: "elevenlabs_user"}[e["user"]]} if "user" in e else e
        for e in greeting + first
    ]
    assert turn_timeline(legacy).latencies_s == {1: 1.0}
