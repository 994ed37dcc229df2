"""DB normalisation, hash, diff, session check and task completion (EVA §5.7 / §6.3)."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hydralab.records import load_record
from hydralab.scoring import (
    ORDER_INDEPENDENT_LIST_FIELDS,
    db_diff,
    db_hash,
    dbs_equal,
    normalize_db,
    session_auth_mismatches,
    task_completion,
)


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
