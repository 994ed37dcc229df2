"""Scenario-DB scoring: EVA-compatible normalisation, hash, diff and task completion.

The rules follow EVA's documented behaviour (``docs/eva-format.md`` §5.7 and §6.3):

- whole floats become ints (``260.0 -> 260``), ``"none"``/``"null"`` strings become ``None``;
- lists under :data:`ORDER_INDEPENDENT_LIST_FIELDS` compare as multisets;
- the hash leaves out the ``session`` table (authentication is scored separately);
- ``task_completion`` is 1.0 only when the session matches *and* the DB hashes match.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ORDER_INDEPENDENT_LIST_FIELDS",
    "db_diff",
    "db_hash",
    "dbs_equal",
    "normalize_db",
    "session_auth_mismatches",
    "task_completion",
]

ORDER_INDEPENDENT_LIST_FIELDS: frozenset[str] = frozenset(
    {
        "standby_list",
        "notifications",
        "bookings",
        "system_accounts",
        "group_memberships",
        "asset_recoveries",
    }
)

_SESSION_KEY = "session"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def normalize_db(db: Any) -> Any:
    """Return a normalised deep copy of a JSON-like value (EVA §5.7 rules).

    Args:
        db: Any JSON-compatible value (usually a scenario DB dict).

    Returns:
        The normalised copy; the input is not modified.
    """
    if isinstance(db, Mapping):
        out: dict[str, Any] = {}
        for key, value in db.items():
            norm = normalize_db(value)
            if key in ORDER_INDEPENDENT_LIST_FIELDS and isinstance(norm, list):
                norm = sorted(norm, key=_canonical)
            out[key] = norm
        return out
    if isinstance(db, list | tuple):
        return [normalize_db(item) for item in db]
    if isinstance(db, float):
        if math.isfinite(db) and db.is_integer():
            return int(db)
        return db
    if isinstance(db, str) and db.strip().lower() in ("none", "null"):
        return None
    return db


def _without_session(db: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in db.items() if k != _SESSION_KEY}


def db_hash(db: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the normalised DB without its ``session`` table."""
    payload = _canonical(normalize_db(_without_session(db)))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def dbs_equal(expected: Mapping[str, Any], final: Mapping[str, Any]) -> bool:
    """True when both DBs hash equally (session ignored, normalisation applied)."""
    return db_hash(expected) == db_hash(final)


def _value_diff(expected: Any, actual: Any, field: str = "") -> dict[str, Any] | None:
    expected = normalize_db(expected)
    actual = normalize_db(actual)
    if expected == actual:
        return None
    if type(expected) is not type(actual):
        return {
            "type": "type_mismatch",
            "expected": expected,
            "actual": actual,
            "expected_type": type(expected).__name__,
            "actual_type": type(actual).__name__,
        }
    if isinstance(expected, dict):
        exp_keys, act_keys = set(expected), set(actual)
        modified: dict[str, Any] = {}
        for key in sorted(exp_keys & act_keys):
            sub = _value_diff(expected[key], actual[key], key)
            if sub is not None:
                modified[key] = sub
        return {
            "fields_added": sorted(act_keys - exp_keys),
            "fields_removed": sorted(exp_keys - act_keys),
            "fields_modified": modified,
        }
    if isinstance(expected, list):
        if field in ORDER_INDEPENDENT_LIST_FIELDS:
            expected = sorted(expected, key=_canonical)
            actual = sorted(actual, key=_canonical)
        if len(expected) != len(actual):
            return {
                "type": "list_length_mismatch",
                "expected": expected,
                "actual": actual,
                "expected_length": len(expected),
                "actual_length": len(actual),
            }
        diffs = []
        for index, (exp_item, act_item) in enumerate(zip(expected, actual, strict=True)):
            sub = _value_diff(exp_item, act_item)
            if sub is not None:
                diffs.append({"index": index, "diff": sub})
        return {"type": "list_differences", "differences": diffs}
    return {"type": "value_mismatch", "expected": expected, "actual": actual}


def db_diff(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, Any]:
    """Structured diff of two DBs: tables, then records, then fields.

    Returns:
        ``{"tables_added": [...], "tables_removed": [...], "tables_modified": {table: ...}}``
        where a dict-of-records table maps to ``{"records_added", "records_removed",
        "records_modified": {key: {"fields_added", "fields_removed", "fields_modified"}}}``
        and any other top-level value maps to ``{"type": "non_dict_table", "expected",
        "actual"}``. Empty lists / dicts mean "no difference".
    """
    exp_tables, act_tables = set(expected), set(actual)
    modified: dict[str, Any] = {}
    for table in sorted(exp_tables & act_tables):
        exp_t, act_t = expected[table], actual[table]
        if not isinstance(exp_t, Mapping) or not isinstance(act_t, Mapping):
            if normalize_db(exp_t) != normalize_db(act_t):
                modified[table] = {"type": "non_dict_table", "expected": exp_t, "actual": act_t}
            continue
        exp_keys, act_keys = set(exp_t), set(act_t)
        records: dict[str, Any] = {}
        for key in sorted(exp_keys & act_keys):
            sub = _value_diff(exp_t[key], act_t[key], str(key))
            if sub is not None:
                records[str(key)] = sub
        added, removed = sorted(act_keys - exp_keys), sorted(exp_keys - act_keys)
        if added or removed or records:
            modified[table] = {
                "records_added": added,
                "records_removed": removed,
                "records_modified": records,
            }
    return {
        "tables_added": sorted(act_tables - exp_tables),
        "tables_removed": sorted(exp_tables - act_tables),
        "tables_modified": modified,
    }


def _fold(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def session_auth_mismatches(
    expected_session: Mapping[str, Any] | None, final_session: Mapping[str, Any] | None
) -> list[str]:
    """Keys of the expected session that the final session does not reproduce.

    Strings compare case-insensitively; extra keys in the final session are fine.

    Returns:
        Human-readable mismatch lines, empty when authentication matches.
    """
    if not expected_session:
        return []
    final = final_session or {}
    problems: list[str] = []
    for key, want in expected_session.items():
        if key not in final:
            problems.append(f"session.{key}: expected {want!r}, missing")
        elif _fold(final[key]) != _fold(want):
            problems.append(f"session.{key}: expected {want!r}, got {final[key]!r}")
    return problems


def task_completion(expected_db: Mapping[str, Any], final_db: Mapping[str, Any]) -> dict[str, Any]:
    """EVA ``task_completion``: session pre-check, then DB hash equality.

    Returns:
        ``{"score": 1.0|0.0, "auth_success": bool, "auth_mismatches": [...],
        "db_match": bool, "expected_hash": str, "final_hash": str, "diff": dict|None}``;
        ``diff`` (session excluded) is ``None`` when the DBs match.
    """
    exp_session = expected_db.get(_SESSION_KEY)
    fin_session = final_db.get(_SESSION_KEY)
    mismatches = session_auth_mismatches(
        exp_session if isinstance(exp_session, Mapping) else None,
        fin_session if isinstance(fin_session, Mapping) else None,
    )
    expected_hash, final_hash = db_hash(expected_db), db_hash(final_db)
    db_match = expected_hash == final_hash
    diff = None if db_match else db_diff(_without_session(expected_db), _without_session(final_db))
    auth_success = not mismatches
    return {
        "score": 1.0 if (auth_success and db_match) else 0.0,
        "auth_success": auth_success,
        "auth_mismatches": mismatches,
        "db_match": db_match,
        "expected_hash": expected_hash,
        "final_hash": final_hash,
        "diff": diff,
    }
