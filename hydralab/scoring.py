"""Deterministic scoring (no LLM): EVA's DB normalisation, hash, diff and code metrics.

The rules follow EVA's behaviour (https://github.com/ServiceNow/eva; summarized in
``docs/hydra-facts.md``, "EVA formats and scoring rules"):

- whole floats become ints (``260.0 -> 260``), ``"none"``/``"null"`` strings become ``None``;
- lists under :data:`ORDER_INDEPENDENT_LIST_FIELDS` compare as multisets;
- the hash leaves out the ``session`` table (authentication is scored separately);
- ``task_completion`` is 1.0 only when the session matches *and* the DB hashes match;
- ``authentication_success``: the final session is a superset of the expected one (strings
  case-insensitive), skipped when nothing is expected; sub-metrics count the calls to the
  agent's ``tool_type: auth`` tools;
- ``tool_call_validity``: the share of tool responses whose ``error_type`` is not a call error
  (:func:`hydralab.tools.call_error_types`).

:func:`score_run` scores a record's run directory from its files alone (``audit_log.json``,
``final_scenario_db.json``, ``expected_scenario_db.json``, ``run.json``, plus the latency inputs
``pipecat_metrics.jsonl`` and ``user_simulator_events.jsonl``) and writes ``scores.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydralab.latency import latency_stats

__all__ = [
    "EXPECTED_DB_FILE",
    "ORDER_INDEPENDENT_LIST_FIELDS",
    "SCORES_FILE",
    "ScoringError",
    "authentication_success",
    "db_diff",
    "db_hash",
    "dbs_equal",
    "find_record_dirs",
    "latency_stats",
    "model_response_latencies_ms",
    "normalize_db",
    "response_speed_latencies_ms",
    "score_record",
    "score_run",
    "session_auth_mismatches",
    "task_completion",
    "tool_call_validity",
    "tool_events",
]

EXPECTED_DB_FILE = "expected_scenario_db.json"
SCORES_FILE = "scores.json"

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
    """Return a normalised deep copy of a JSON-like value (EVA's rules, see the module doc).

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
    return value.lower() if isinstance(value, str) else value


def session_auth_mismatches(
    expected_session: Mapping[str, Any] | None, final_session: Mapping[str, Any] | None
) -> list[str]:
    """Keys of the expected session that the final session does not reproduce.

    Strings compare case-insensitively (lowercased, as EVA does); extra keys in the final
    session are fine.

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


# ---------------------------------------------------------------------------------------------
# Code metrics (EVA MetricScore shape: name, score, normalized_score, details, skipped ...)
# ---------------------------------------------------------------------------------------------


class ScoringError(Exception):
    """A run directory lacks what scoring needs (the message names the file)."""


def _metric(
    name: str,
    score: float | None,
    *,
    details: dict[str, Any],
    skipped: bool = False,
    normalized: bool = True,
    sub_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "score": score,
        "normalized_score": score if normalized else None,
        "details": details,
        "error": None,
        "skipped": skipped,
        "sub_metrics": sub_metrics or None,
    }


def tool_events(audit: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tool calls and tool responses of an ``audit_log.json``, in log order.

    Returns:
        ``(calls, responses)``: ``[{"tool_name", "tool_parameters"}]`` and
        ``[{"tool_name", "tool_response"}]`` (EVA's ``MetricContext`` shapes).
    """
    calls: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    for entry in audit.get("transcript") or []:
        if not isinstance(entry, Mapping):
            continue
        kind = entry.get("message_type") or entry.get("type")
        value = entry.get("value")
        if not isinstance(value, Mapping):
            continue
        if kind == "tool_call":
            calls.append(
                {"tool_name": value.get("tool"), "tool_parameters": value.get("parameters") or {}}
            )
        elif kind == "tool_response":
            responses.append(
                {"tool_name": value.get("tool"), "tool_response": value.get("response")}
            )
    return calls, responses


def tool_call_validity(
    tool_responses: Sequence[Mapping[str, Any]],
    *,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    domain: str | None = None,
) -> dict[str, Any]:
    """EVA's ``tool_call_validity``: share of tool calls that were well-formed.

    A response whose ``error_type`` is a call error (unknown tool, crash, missing or malformed
    parameter; :func:`hydralab.tools.call_error_types`) makes its call invalid; business
    errors (``reservation_not_found`` ...) do not. No calls scores 1.0.

    Args:
        tool_responses: ``[{"tool_name", "tool_response"}]`` in call order.
        tool_calls: The matching ``[{"tool_name", "tool_parameters"}]`` (for the error list).
        domain: Tool domain whose parameter error types count (default: all domains).
    """
    from hydralab.tools import call_error_types

    if not tool_responses:
        return _metric(
            "tool_call_validity",
            1.0,
            details={"total_tool_calls": 0, "note": "No tool calls to evaluate"},
        )
    invalid_types = call_error_types(domain)
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(tool_responses):
        response = item.get("tool_response")
        if not isinstance(response, Mapping):
            continue
        error_type = response.get("error_type")
        if error_type in invalid_types:
            params = tool_calls[index].get("tool_parameters", {}) if index < len(tool_calls) else {}
            errors.append(
                {
                    "tool_name": item.get("tool_name"),
                    "error_type": error_type,
                    "message": response.get("message", ""),
                    "parameters": params,
                }
            )
    total = len(tool_responses)
    return _metric(
        "tool_call_validity",
        round((total - len(errors)) / total, 4),
        details={
            "total_tool_calls": total,
            "valid_tool_calls": total - len(errors),
            "invalid_tool_calls": len(errors),
            "errors": errors,
        },
    )


def authentication_success(
    expected_db: Mapping[str, Any],
    final_db: Mapping[str, Any],
    *,
    tool_responses: Sequence[Mapping[str, Any]] = (),
    auth_tools: Iterable[str] = (),
) -> dict[str, Any]:
    """EVA's ``authentication_success``: the final session holds the expected one.

    Skipped (``score`` ``None``) when the record expects no session. Sub-metrics, from the
    calls to ``auth_tools`` (the agent's ``tool_type: auth`` tools): on success
    ``auth_first_try_success`` (each auth tool called once) and ``auth_num_calls``; on failure
    ``auth_num_calls_on_failure`` (mean calls per auth tool used).
    """
    expected = expected_db.get(_SESSION_KEY)
    actual = final_db.get(_SESSION_KEY)
    expected_session = dict(expected) if isinstance(expected, Mapping) else {}
    actual_session = dict(actual) if isinstance(actual, Mapping) else {}
    if not expected_session:
        return _metric(
            "authentication_success",
            None,
            skipped=True,
            details={"reason": "No expected session to verify — skipping auth check"},
        )
    mismatches = {
        key: {"expected": want, "actual": actual_session.get(key)}
        for key, want in expected_session.items()
        if _fold(actual_session.get(key)) != _fold(want)
    }
    success = not mismatches
    names = set(auth_tools)
    counts = Counter(str(r.get("tool_name")) for r in tool_responses if r.get("tool_name") in names)
    sub: dict[str, Any] = {}
    if counts:
        mean_calls = round(sum(counts.values()) / len(counts), 4)
        info = {"calls_per_tool": dict(counts), "num_auth_tools": len(counts)}
        if success:
            first_try = 1.0 if all(n == 1 for n in counts.values()) else 0.0
            sub["auth_first_try_success"] = _metric(
                "authentication_success.auth_first_try_success", first_try, details=info
            )
            sub["auth_num_calls"] = _metric(
                "authentication_success.auth_num_calls", mean_calls, details=info, normalized=False
            )
        else:
            sub["auth_num_calls_on_failure"] = _metric(
                "authentication_success.auth_num_calls_on_failure",
                mean_calls,
                details=info,
                normalized=False,
            )
    return _metric(
        "authentication_success",
        1.0 if success else 0.0,
        details={
            "expected_session": expected_session,
            "actual_session": actual_session,
            "mismatches": mismatches,
            "reason": "Authentication successful"
            if success
            else f"Session mismatch on keys: {sorted(mismatches)}",
        },
        sub_metrics=sub,
    )


# ---------------------------------------------------------------------------------------------
# Latencies and turn counts from run files
# ---------------------------------------------------------------------------------------------


def model_response_latencies_ms(rows: Iterable[Mapping[str, Any]]) -> list[float]:
    """``model_response`` latencies (ms) of ``pipecat_metrics.jsonl`` rows, 0 < v < 30 s."""
    out: list[float] = []
    for row in rows:
        if row.get("type") != "LatencyMetric" or row.get("stage") != "model_response":
            continue
        value = row.get("value")
        if isinstance(value, int | float) and 0 < value < 30:
            out.append(float(value) * 1000.0)
    return out


def response_speed_latencies_ms(events: Iterable[Mapping[str, Any]]) -> list[float]:
    """What the caller heard: first assistant ``audio_start`` − last user ``audio_end`` (ms).

    From ``user_simulator_events.jsonl`` audio markers (``audio_timestamp`` in epoch seconds),
    one value per user turn that the assistant answered; values outside 0 < v < 1000 s are
    dropped, as EVA's ``response_speed`` does.
    """
    marks = [
        e
        for e in events
        if e.get("event_type") in ("audio_start", "audio_end")
        and isinstance(e.get("audio_timestamp"), int | float)
    ]
    marks.sort(key=lambda e: (e.get("sequence", 0), e["audio_timestamp"]))
    out: list[float] = []
    user_end: float | None = None
    for event in marks:
        who, kind, t = event.get("user"), event["event_type"], float(event["audio_timestamp"])
        if who == "simulated_user":
            user_end = t if kind == "audio_end" else None
        elif who == "assistant" and kind == "audio_start" and user_end is not None:
            value = (t - user_end) * 1000.0
            if 0 < value < 1_000_000:
                out.append(value)
            user_end = None
    return out


def score_record(
    *,
    expected_db: Mapping[str, Any],
    final_db: Mapping[str, Any],
    audit: Mapping[str, Any] | None = None,
    auth_tools: Iterable[str] = (),
    domain: str | None = None,
    record_id: str = "",
    pipecat_metrics: Iterable[Mapping[str, Any]] = (),
    simulator_events: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Every deterministic score of one conversation (what ``scores.json`` holds).

    Returns:
        Top-level ``task_completion`` (float), ``authentication_success`` (bool, ``None`` when
        skipped), ``tool_call_validity`` (float), ``db_match`` and ``db_diff``; ``metrics``
        with the three EVA-shaped metric scores; ``turns`` (user / assistant lines, tool calls,
        tools called in order); ``latency`` (``model_response`` and ``response_speed`` stats).
    """
    audit = audit or {}
    calls, responses = tool_events(audit)
    tc = task_completion(expected_db, final_db)
    auth = authentication_success(
        expected_db, final_db, tool_responses=responses, auth_tools=auth_tools
    )
    validity = tool_call_validity(responses, tool_calls=calls, domain=domain)
    kinds = Counter(
        str(e.get("message_type")) for e in audit.get("transcript") or [] if isinstance(e, Mapping)
    )
    return {
        "record_id": record_id,
        "task_completion": tc["score"],
        "authentication_success": None if auth["skipped"] else auth["score"] == 1.0,
        "tool_call_validity": validity["score"],
        "db_match": tc["db_match"],
        "db_diff": tc["diff"],
        "metrics": {
            "task_completion": _metric(
                "task_completion",
                tc["score"],
                details={k: v for k, v in tc.items() if k != "score"},
            ),
            "authentication_success": auth,
            "tool_call_validity": validity,
        },
        "turns": {
            "user": kinds["user"],
            "assistant": kinds["assistant"],
            "tool_calls": len(calls),
            "tools_called": [c["tool_name"] for c in calls],
        },
        "latency": {
            "model_response": latency_stats(model_response_latencies_ms(pipecat_metrics)),
            "response_speed": latency_stats(response_speed_latencies_ms(simulator_events)),
        },
    }


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScoringError(f"missing {path.name} in {path.parent}") from None
    except json.JSONDecodeError as exc:
        raise ScoringError(f"{path}: invalid JSON ({exc})") from None


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a crashed run; the rest still counts
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _record_info(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    info = meta.get("record")
    return info if isinstance(info, Mapping) else {}


def _expected_db(record_dir: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    copy_path = record_dir / EXPECTED_DB_FILE
    if copy_path.is_file():
        data = _load_json(copy_path)
        if not isinstance(data, dict):
            raise ScoringError(f"{copy_path}: expected a JSON object")
        return data
    info = _record_info(meta)
    record_id = info.get("id") or meta.get("record_id")
    data_dir = info.get("data_dir")
    if not record_id or not data_dir:
        raise ScoringError(
            f"{record_dir}: no {EXPECTED_DB_FILE}, and run.json does not say which record"
            " and data directory to load it from"
        )
    from hydralab.records import load_record

    record = load_record(
        str(record_id), data_dir=str(data_dir), language=str(info.get("language") or "en")
    )
    return record.expected_db


def score_run(record_dir: Path | str, *, write: bool = True) -> dict[str, Any]:
    """Re-score one record's run directory from its files; write ``scores.json``.

    Reads ``final_scenario_db.json`` and ``audit_log.json`` (required), the expected DB from
    ``expected_scenario_db.json`` (or, failing that, the record named in ``run.json``),
    ``run.json`` (domain, auth tools), ``pipecat_metrics.jsonl`` and
    ``user_simulator_events.jsonl`` (latencies, optional).

    Raises:
        ScoringError: A required file is missing or unreadable.
    """
    record_dir = Path(record_dir)
    meta_path = record_dir / "run.json"
    meta = _load_json(meta_path) if meta_path.is_file() else {}
    if not isinstance(meta, dict):
        raise ScoringError(f"{meta_path}: expected a JSON object")
    info = _record_info(meta)
    final_db = _load_json(record_dir / "final_scenario_db.json")
    audit = _load_json(record_dir / "audit_log.json")
    if not isinstance(final_db, dict) or not isinstance(audit, dict):
        raise ScoringError(f"{record_dir}: final_scenario_db.json / audit_log.json malformed")
    record_id = str(info.get("id") or meta.get("record_id") or record_dir.name)
    scores = score_record(
        expected_db=_expected_db(record_dir, meta),
        final_db=final_db,
        audit=audit,
        auth_tools=[str(t) for t in info.get("auth_tools") or []],
        domain=info.get("domain") or meta.get("domain"),
        record_id=record_id,
        pipecat_metrics=_load_jsonl(record_dir / "pipecat_metrics.jsonl"),
        simulator_events=_load_jsonl(record_dir / "user_simulator_events.jsonl"),
    )
    stt = meta.get("stt")
    if isinstance(stt, dict) and isinstance(stt.get("wer"), dict):
        # user transcripts vs the caller's intended lines, as measured when the call ran
        scores["user_wer"] = stt["wer"].get("wer")
        scores["user_wer_detail"] = {"provider": stt.get("provider"), **stt["wer"]}
    if write:
        from hydralab.rundir import write_json

        write_json(record_dir / SCORES_FILE, scores)
    return scores


def find_record_dirs(path: Path | str) -> list[Path]:
    """Record directories at or under ``path``.

    ``path`` may be a record directory (holds ``audit_log.json``), a run directory in EVA's
    layout (``records/<id>/``) or one with record directories directly inside.
    """
    path = Path(path)
    if (path / "audit_log.json").is_file():
        return [path]
    parent = path / "records" if (path / "records").is_dir() else path
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if (p / "audit_log.json").is_file())
