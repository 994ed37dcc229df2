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
    EXPECTED_DB_FILE,
    ORDER_INDEPENDENT_LIST_FIELDS,
    SCORES_FILE,
    ScoringError,
    authentication_success,
    db_diff,
    db_hash,
    dbs_equal,
    find_record_dirs,
    latency_stats,
    model_response_latencies_ms,
    normalize_db,
    response_speed_latencies_ms,
    score_run,
    session_auth_mismatches,
    task_completion,
    tool_call_validity,
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
    assert set(subs) == {"auth_first_try_success", "auth_num_calls"}
    assert subs["auth_first_try_success"]["score"] == 1.0
    assert (
        subs["auth_num_calls"]["score"] == 1.0
        and subs["auth_num_calls"]["normalized_score"] is None
    )
    assert subs["auth_num_calls"]["details"]["calls_per_tool"] == {"get_reservation": 1}

    twice = [_fail("get_reservation", "authentication_failed"), _resp("get_reservation")]
    result = authentication_success(expected, good, tool_responses=twice, auth_tools=auth)
    assert result["sub_metrics"]["auth_first_try_success"]["score"] == 0.0
    assert result["sub_metrics"]["auth_num_calls"]["score"] == 2.0

    bad = {"session": {"confirmation_number": "ZK3FFW", "last_name": "smith"}}
    result = authentication_success(expected, bad, tool_responses=twice, auth_tools=auth)
    assert result["score"] == 0.0
    assert result["details"]["mismatches"] == {
        "last_name": {"expected": "rodriguez", "actual": "smith"}
    }
    assert result["details"]["reason"] == "Session mismatch on keys: ['last_name']"
    assert set(result["sub_metrics"]) == {"auth_num_calls_on_failure"}
    assert result["sub_metrics"]["auth_num_calls_on_failure"]["score"] == 2.0

    missing = authentication_success(expected, {}, auth_tools=auth)
    assert missing["score"] == 0.0 and missing["sub_metrics"] is None  # no auth call at all
    skipped = authentication_success({}, good)
    assert skipped["skipped"] and skipped["score"] is None


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
    rows = [
        {"type": "LatencyMetric", "stage": "model_response", "value": 0.812},
        {"type": "LatencyMetric", "stage": "model_response", "value": 31.0},  # dropped (>= 30 s)
        {"type": "LatencyMetric", "stage": "model_response", "value": 0},  # dropped
        {"type": "LatencyMetric", "stage": "tts", "value": 0.2},
        {"type": "LLMTokenUsageMetricsData", "value": {"total_tokens": 5}},
    ]
    assert model_response_latencies_ms(rows) == [pytest.approx(812.0)]

    def mark(seq: int, kind: str, who: str, t: float) -> dict[str, Any]:
        return {"sequence": seq, "event_type": kind, "user": who, "audio_timestamp": t}

    events = [
        mark(1, "audio_start", "assistant", 100.0),  # greeting: no user turn before it
        mark(2, "audio_end", "assistant", 101.0),
        {"sequence": 3, "type": "user_speech", "data": {"text": "hi"}},
        mark(4, "audio_start", "simulated_user", 102.0),
        mark(5, "audio_end", "simulated_user", 103.0),
        mark(6, "audio_start", "assistant", 104.25),  # 1250 ms
        mark(7, "audio_start", "assistant", 105.0),  # a second segment of the same answer
        mark(8, "audio_start", "simulated_user", 106.0),
        mark(9, "audio_end", "simulated_user", 107.0),
        mark(10, "audio_start", "assistant", 106.5),  # barge-in: negative, dropped
    ]
    assert response_speed_latencies_ms(events) == [pytest.approx(1250.0)]


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
    assert metrics["task_completion"]["details"]["auth_success"] is True
    assert (
        metrics["authentication_success"]["sub_metrics"]["auth_first_try_success"]["score"] == 1.0
    )

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
