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
- ``tool_call_validity``: the share of tool responses whose ``error_type`` is not a call error,
  by EVA's rule (its executor's types plus airline's validation types, for every domain) with
  the domain's own rule as the sub-metric ``domain_rule`` where they differ
  (:func:`hydralab.tools.call_error_types`); sub-metrics ``num_tool_calls`` and one
  ``<error_type>_rate`` per call-error type;
- the timing and ending metrics read a :class:`TurnTimeline`, the per-turn view EVA's metrics
  processor builds for a speech-to-speech run from ``user_simulator_events.jsonl`` and
  ``audit_log.json``: ``response_speed`` (mean latency the caller heard, seconds, split
  ``with_tool_calls`` / ``no_tool_calls``), ``turn_taking`` (piecewise-linear latency score per
  turn, barge-ins capped), ``conversation_valid_end`` (the events file ends on
  ``connection_state`` / ``goodbye``), ``conversation_correctly_finished`` (0 when the agent
  left the user's last turn unanswered) and ``conversation_completed_on_time`` (0 when the time
  limit was exceeded).

:func:`score_run` scores a record's run directory from its files alone (``audit_log.json``,
``final_scenario_db.json``, ``expected_scenario_db.json``, ``run.json``, plus ``result.json``
for the ending, ``pipecat_metrics.jsonl`` and ``user_simulator_events.jsonl``) and writes
``scores.json``, whose ``metrics`` holds every code metric in EVA's ``MetricScore`` shape, under
EVA's names. The rules were read from EVA's metric code; this implementation is hydralab's own.

A record directory left by a killed run (no ``run.json`` nor ``result.json``, but the
``events.jsonl`` written as the call went) is scored with what can be rebuilt from it: the audit
log from the logged wire events, the final DB by replaying the logged tool calls on the record's
initial DB (checked against the logged tool outputs), the expected DB from the record named by
the directory. ``scores.json`` then has a ``partial`` block naming the missing files, what was
rebuilt, and the metrics that could not be computed (their ``metrics`` entry has ``score: None``
and an ``error``; the top-level ``task_completion`` is then 0.0: the task was not shown done).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydralab.latency import latency_stats

__all__ = [
    "EVA_CODE_METRICS",
    "EVENTS_FILE",
    "EXPECTED_DB_FILE",
    "FINISH_FAILURE_CAUSES",
    "ORDER_INDEPENDENT_LIST_FIELDS",
    "SCORES_FILE",
    "SIMULATOR_EVENTS_FILE",
    "ScoringError",
    "TurnTimeline",
    "agent_timed_out_on_user_turn",
    "authentication_success",
    "conversation_completed_on_time",
    "conversation_correctly_finished",
    "conversation_valid_end",
    "db_diff",
    "db_hash",
    "dbs_equal",
    "final_turn_flags",
    "find_record_dirs",
    "last_audio_speaker",
    "latency_stats",
    "model_response_latencies_ms",
    "normalize_db",
    "response_speed",
    "response_speed_latencies_ms",
    "score_record",
    "score_run",
    "session_auth_mismatches",
    "task_completion",
    "tool_call_validity",
    "tool_events",
    "turn_taking",
    "turn_taking_count_score",
    "turn_taking_latency_score",
    "turn_taking_overlap_score",
    "turn_taking_yield_score",
    "turn_timeline",
]

EXPECTED_DB_FILE = "expected_scenario_db.json"
SCORES_FILE = "scores.json"
EVENTS_FILE = "events.jsonl"
"""The wire log a run appends line by line: all a killed run is sure to leave."""

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
    details: dict[str, Any] | None = None,
    skipped: bool = False,
    normalized: bool = True,
    sub_metrics: dict[str, Any] | None = None,
    error: str | None = None,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """One EVA ``MetricScore`` as a JSON-ready dict (``normalized_score`` = ``score`` or None)."""
    return {
        "name": name,
        "score": score,
        "normalized_score": score if normalized else None,
        "details": details if details is not None else {},
        "error": error,
        "skipped": skipped,
        "sub_metrics": sub_metrics or None,
        "higher_is_better": higher_is_better,
    }


def _rate(parent: str, key: str, count: int, total: int, details: dict[str, Any]) -> dict[str, Any]:
    """A rate sub-metric, ``score == normalized_score == count / total`` (4 decimals)."""
    return _metric(
        f"{parent}.{key}", round(count / total if total > 0 else 0.0, 4), details=details
    )


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
        elif kind == "tool_response" and value.get("response") is not None:
            # EVA's trace keeps only responses that carry a payload
            responses.append(
                {"tool_name": value.get("tool"), "tool_response": value.get("response")}
            )
    return calls, responses


def tool_call_validity(
    tool_responses: Sequence[Mapping[str, Any]],
    *,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    domain: str | None = None,
    invalid_types: Collection[str] | None = None,
    domain_invalid_types: Collection[str] | None = None,
) -> dict[str, Any]:
    """EVA's ``tool_call_validity``: share of tool calls that were well-formed.

    A response whose ``error_type`` is a call error (unknown tool, crash, missing or malformed
    parameter) makes its call invalid; business errors (``not_found`` ...) do not. No calls
    scores 1.0.

    Which error types are call errors: EVA's metric counts its executor's types plus the
    validation types of **airline's** parameter models, whatever the domain (it imports
    ``airline_params.FIELD_ERROR_TYPES``), so an itsm call rejected as
    ``invalid_building_code_format`` still counts as valid there. The score follows EVA's rule
    (``invalid_types``) so numbers compare with EVA's; when the domain's own validation types
    (``domain_invalid_types``) differ, the sub-metric ``domain_rule`` scores by them too and
    its details list the calls the two rules disagree on.

    Sub-metrics as EVA's: ``num_tool_calls`` (a count, not normalised) and, when there were
    calls, ``<error_type>_rate`` for every call-error type (0.0 when it did not occur, so the
    keys are the same for every record).

    Args:
        tool_responses: ``[{"tool_name", "tool_response"}]`` in call order.
        tool_calls: The matching ``[{"tool_name", "tool_parameters"}]`` (for the error list).
        domain: Tool domain whose parameter error types count when ``invalid_types`` is not
            given (:func:`hydralab.tools.call_error_types`; default: all domains).
        invalid_types: The call-error types of the score (EVA's rule, as the run recorded it).
        domain_invalid_types: The domain's own call-error types (``domain_rule``).
    """
    from hydralab.tools import call_error_types

    name = "tool_call_validity"
    if not tool_responses:
        return _metric(
            name,
            1.0,
            details={"total_tool_calls": 0, "note": "No tool calls to evaluate"},
            sub_metrics={
                "num_tool_calls": _metric(f"{name}.num_tool_calls", 0.0, normalized=False)
            },
        )
    if invalid_types is None:
        invalid_types = call_error_types(domain)
    invalid_types = frozenset(invalid_types)
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
    per_type = Counter(str(e["error_type"]) for e in errors)
    sub: dict[str, Any] = {
        "num_tool_calls": _metric(f"{name}.num_tool_calls", float(total), normalized=False)
    }
    for error_type in sorted(invalid_types):
        count = per_type[error_type]
        sub[f"{error_type}_rate"] = _rate(
            name, f"{error_type}_rate", count, total, {"count": count, "total_tool_calls": total}
        )
    if domain_invalid_types is not None and frozenset(domain_invalid_types) != invalid_types:
        domain_types = frozenset(domain_invalid_types)
        kinds = [
            r.get("error_type") if isinstance(r := item.get("tool_response"), Mapping) else None
            for item in tool_responses
        ]
        bad = sum(1 for k in kinds if k in domain_types)
        disagree = [
            {"index": i, "tool_name": tool_responses[i].get("tool_name"), "error_type": k}
            for i, k in enumerate(kinds)
            if (k in domain_types) != (k in invalid_types)
        ]
        sub["domain_rule"] = _metric(
            f"{name}.domain_rule",
            round((total - bad) / total, 4),
            details={
                "rule": "the domain's own validation error types",
                "invalid_tool_calls": bad,
                "calls_the_rules_disagree_on": disagree,
            },
        )
    return _metric(
        name,
        round((total - len(errors)) / total, 4),
        details={
            "total_tool_calls": total,
            "valid_tool_calls": total - len(errors),
            "invalid_tool_calls": len(errors),
            "errors": errors,
        },
        sub_metrics=sub,
    )


def authentication_success(
    expected_db: Mapping[str, Any],
    final_db: Mapping[str, Any],
    *,
    tool_responses: Sequence[Mapping[str, Any]] = (),
    auth_tools: Iterable[str] = (),
) -> dict[str, Any]:
    """EVA's ``authentication_success``: the final session holds the expected one.

    Skipped (``score`` ``None``) when the record expects no session. Sub-metrics (EVA's names),
    from the calls to ``auth_tools`` (the agent's ``tool_type: auth`` tools), none when no auth
    tool was called: on success ``auth_first_try_success`` (each auth tool called once),
    ``num_auth_calls`` (mean calls per auth tool used, not normalised) and
    ``authentication_success_rate`` (auth tools used / auth calls); on failure
    ``num_auth_calls_on_failure``. Their details are ``num_auth_calls_per_tool`` and
    ``num_auth_tools``.
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
        parent = "authentication_success"
        mean_calls = round(sum(counts.values()) / len(counts), 4)

        def info() -> dict[str, Any]:
            return {"num_auth_calls_per_tool": dict(counts), "num_auth_tools": len(counts)}

        if success:
            first_try = 1.0 if all(n == 1 for n in counts.values()) else 0.0
            sub["auth_first_try_success"] = _metric(
                f"{parent}.auth_first_try_success", first_try, details=info()
            )
            sub["num_auth_calls"] = _metric(
                f"{parent}.num_auth_calls", mean_calls, details=info(), normalized=False
            )
            rate = round(len(counts) / sum(counts.values()), 4)
            sub["authentication_success_rate"] = _metric(
                f"{parent}.authentication_success_rate", rate, details=info()
            )
        else:
            sub["num_auth_calls_on_failure"] = _metric(
                f"{parent}.num_auth_calls_on_failure", mean_calls, details=info(), normalized=False
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
            else f"Session mismatch on keys: {list(mismatches)}",
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


# ---------------------------------------------------------------------------------------------
# EVA's turn timeline (S2S): which audio segments, tool calls and barge-ins belong to which turn
# ---------------------------------------------------------------------------------------------

SIMULATOR_EVENTS_FILE = "user_simulator_events.jsonl"
_LEGACY_SIMULATOR_EVENTS_FILE = "elevenlabs_events.jsonl"
_USER, _ASSISTANT = "simulated_user", "assistant"
_LEGACY_ROLES = {
    "elevenlabs_user": _USER,
    "framework_agent": _ASSISTANT,
    "pipecat_agent": _ASSISTANT,
}
_EMPTY_SPEECH = frozenset({"", "...", "......", ".", ",", "?", "!"})

Segments = list[tuple[float, float]]


@dataclass(frozen=True)
class TurnTimeline:
    """The per-turn view EVA's metrics read, rebuilt from a run's files.

    Turn 0 is the greeting; each user audio session that carries speech opens the next turn, as
    EVA's ``MetricsContextProcessor`` numbers them for a speech-to-speech run (``model.s2s``).

    Attributes:
        user_audio: Turn -> the simulated user's ``(start, end)`` audio segments (epoch s);
            ``None`` for a turn that has user text but no audio.
        assistant_audio: The same for the assistant.
        assistant_interrupted_turns: Turns where the assistant started while the user spoke.
        user_interrupted_turns: Turns the user opened while the assistant was speaking.
        tool_call_turns: Turns in which the agent called a tool.
        latencies_s: Turn -> first assistant start minus last user end (s, may be negative).
    """

    user_audio: dict[int, Segments | None] = field(default_factory=dict)
    assistant_audio: dict[int, Segments | None] = field(default_factory=dict)
    assistant_interrupted_turns: frozenset[int] = frozenset()
    user_interrupted_turns: frozenset[int] = frozenset()
    tool_call_turns: frozenset[int] = frozenset()
    latencies_s: dict[int, float] = field(default_factory=dict)


def _history(
    events: Iterable[Mapping[str, Any]], audit: Mapping[str, Any] | None
) -> list[tuple[int, str, str, Any]]:
    """``(timestamp_ms, source, kind, data)`` of the audit log and the simulator events.

    Sorted by the millisecond timestamps alone (stable, audit entries first on a tie), as EVA
    merges its sources; ``user_speech`` without words is dropped; events lacking a timestamp
    are left out.
    """
    rows: list[tuple[int, str, str, Any]] = []
    for entry in (audit or {}).get("transcript") or []:
        if not isinstance(entry, Mapping):
            continue
        try:
            t_ms = int(entry["timestamp"])
        except (KeyError, TypeError, ValueError):
            continue
        rows.append((t_ms, "audit", str(entry.get("message_type", "unknown")), entry.get("value")))
    for event in events:
        kind = str(event.get("type") or event.get("event_type", "unknown"))
        if kind == "user_speech":
            text = event.get("data")
            text = text.get("text", "") if isinstance(text, Mapping) else ""
            if not isinstance(text, str) or text.strip() in _EMPTY_SPEECH:
                continue
        stamp = event.get("timestamp")
        if not isinstance(stamp, int | float) or isinstance(stamp, bool):
            continue
        data = {k: v for k, v in event.items() if k not in ("timestamp", "type", "event_type")}
        if data.get("user") in _LEGACY_ROLES:
            data["user"] = _LEGACY_ROLES[str(data["user"])]
        rows.append((int(stamp), "sim", kind, data))
    rows.sort(key=lambda row: row[0])
    return rows


def _speech_text(data: Mapping[str, Any]) -> str:
    inner = data.get("data")
    return str(inner.get("text", "")) if isinstance(inner, Mapping) else ""


class _TurnCounter:
    """The turn bookkeeping of EVA's processor, reduced to what the code metrics read."""

    def __init__(self) -> None:
        self.turn = 0
        self.assistant_spoke = False  # the assistant spoke since the last user event
        self.user_started_in_turn = False
        self.tools_in_turn = False
        self.hold = False  # after a barge-in by the assistant, hold the turn for one advance
        self.user_open = False
        self.assistant_open = False
        self.user_speech_in_session = False
        self.assistant_answered_since_user_ended = False
        self.pending_user_interrupts = False
        self.pending_advance_after_rollback = False
        self.rollback_advance_used_by_user = False
        self.last_user_audio_turn = 0
        self.last_assistant_audio_turn = 0
        self.buffered_speech: list[Mapping[str, Any]] = []
        self.buffered_texts: set[str] = set()
        self.starts: dict[tuple[str, int], list[float]] = {}
        self.ends: dict[tuple[str, int], list[float]] = {}
        self.last_start_key: dict[str, tuple[str, int]] = {}
        self.session_end_s: float | None = None
        self.assistant_interrupted: set[int] = set()
        self.user_interrupted: set[int] = set()
        self.tool_turns: set[int] = set()
        self.user_line_turns: set[int] = set()  # turns with an audit-log user line
        self.user_speech_turns: set[int] = set()  # turns with the simulator's user speech
        self.assistant_text_turns: set[int] = set()  # turns with what the simulator heard

    def advance(self, *, from_audio_start: bool = False, bypass_hold: bool = False) -> None:
        if self.hold and not bypass_hold:
            self.hold = False
            if not from_audio_start:  # a late transcript of the interrupted session
                self.assistant_spoke = False
                return
        if self.assistant_spoke:
            self.turn += 1
            self.assistant_spoke = False
            self.user_started_in_turn = False
            self.tools_in_turn = False

    def audit(self, kind: str) -> None:
        if kind == "user":
            if self.pending_advance_after_rollback:  # the agent heard speech the simulator missed
                self.assistant_spoke = True
                self.pending_advance_after_rollback = False
                self.rollback_advance_used_by_user = True
            if self.user_open:
                self.assistant_spoke = False
            self.advance(bypass_hold=True)  # speech-to-speech: the model's own transcript
            self.pending_user_interrupts = False
            self.user_line_turns.add(self.turn)
        elif kind in ("tool_call", "tool_response"):
            self.tools_in_turn = True
            if kind == "tool_call":
                self.tool_turns.add(self.turn)

    def user_speech(self, data: Mapping[str, Any]) -> None:
        if not self.user_open and self.assistant_answered_since_user_ended:
            self.buffered_speech.append(data)  # for the next user audio session
            self.buffered_texts.add(_speech_text(data))
            self.user_speech_in_session = True
            return
        text = _speech_text(data)
        if text in self.buffered_texts:  # a second copy of a buffered line
            self.buffered_texts.discard(text)
            return
        self._take_user_speech()

    def _take_user_speech(self) -> None:
        turn = self.last_user_audio_turn
        relabelled = turn in self.user_speech_turns and turn in self.user_interrupted
        self.user_speech_turns.add(turn)
        self.user_speech_in_session = True
        if not relabelled:
            self.pending_user_interrupts = False

    def assistant_speech(self) -> None:
        turn = self.last_assistant_audio_turn
        if turn == self.turn:
            self.assistant_spoke = True
        self.assistant_text_turns.add(turn)

    def audio_start(self, role: str, t: float) -> None:
        if role == _USER:
            if self.assistant_open:  # the user barges in
                self.pending_user_interrupts = True
            self.user_speech_in_session = False
            if self.rollback_advance_used_by_user and self.assistant_open:
                self.rollback_advance_used_by_user = False
                self.assistant_spoke = False
            elif self.pending_advance_after_rollback:
                self.assistant_spoke = True
                self.pending_advance_after_rollback = False
            self.rollback_advance_used_by_user = False
            self.advance(from_audio_start=True)
            if self.pending_user_interrupts:
                self.user_interrupted.add(self.turn)
            self.user_open = True
            self.user_started_in_turn = True
            self.last_user_audio_turn = self.turn
            self.assistant_answered_since_user_ended = False
            for _ in self.buffered_speech:
                self._take_user_speech()
            self.buffered_speech.clear()
        else:
            self.assistant_open = True
            self.last_assistant_audio_turn = self.turn
            if not self.user_open:
                self.assistant_answered_since_user_ended = True
                self.assistant_spoke = True  # speech-to-speech: audio is the evidence
            if self.user_open and self.user_started_in_turn:  # the assistant barges in
                self.assistant_interrupted.add(self.turn)
                if not self.tools_in_turn:
                    self.hold = True
        key = (role, self.turn)
        self.last_start_key[role] = key
        self.starts.setdefault(key, []).append(t)

    def audio_end(self, role: str, t: float) -> None:
        key = self.last_start_key.get(role)
        if key is not None:
            self.ends.setdefault(key, []).append(t)
        if role == _USER:
            self.user_open = False
            if not self.user_speech_in_session and self.user_started_in_turn:
                # a session without speech (noise) is no turn: undo its advance
                self.turn -= 1
                self.user_started_in_turn = False
                self.pending_advance_after_rollback = True
        else:
            self.assistant_open = False


def turn_timeline(
    events: Iterable[Mapping[str, Any]], audit: Mapping[str, Any] | None = None
) -> TurnTimeline:
    """EVA's per-turn audio segments, barge-ins and tool-call turns of one conversation.

    Rebuilds, for a speech-to-speech run, what EVA's ``MetricsContextProcessor`` derives from
    ``user_simulator_events.jsonl`` (audio markers, ``user_speech``, ``assistant_speech``,
    ``connection_state``) merged with ``audit_log.json`` (user lines, tool calls) by timestamp.
    An audio segment with no ``audio_end`` ends at the session end.

    Args:
        events: ``user_simulator_events.jsonl`` rows.
        audit: ``audit_log.json`` (optional; without it no tool-call turns are known).
    """
    history = _history(events, audit)
    tc = _TurnCounter()
    for t_ms, source, kind, data in history:
        if source == "audit":
            tc.audit(kind)
            continue
        if kind == "assistant_speech":
            tc.assistant_speech()
        elif kind == "user_speech":
            tc.user_speech(data)
        elif kind in ("audio_start", "audio_end"):
            role, stamp = data.get("user"), data.get("audio_timestamp")
            if role not in (_USER, _ASSISTANT) or not isinstance(stamp, int | float):
                continue
            if kind == "audio_start":
                tc.audio_start(str(role), float(stamp))
            else:
                tc.audio_end(str(role), float(stamp))
        elif kind == "connection_state":
            inner = data.get("data")
            if isinstance(inner, Mapping) and inner.get("state") == "session_ended":
                tc.session_end_s = t_ms / 1000.0
    end_s = tc.session_end_s if tc.session_end_s else (history[-1][0] / 1000.0 if history else None)
    audio: dict[str, dict[int, Segments | None]] = {_USER: {}, _ASSISTANT: {}}
    for (role, turn), starts in tc.starts.items():
        ends = tc.ends.get((role, turn), [])
        segments: Segments = []
        for i, start in enumerate(starts):
            if i < len(ends):
                segments.append((start, ends[i]))
            elif end_s is not None:  # still open when the session ended
                segments.append((start, end_s))
        if segments:
            audio[role][turn] = segments
    for turn in sorted(tc.user_line_turns | tc.user_speech_turns):
        audio[_USER].setdefault(turn, None)
    for turn in sorted(tc.assistant_text_turns):
        audio[_ASSISTANT].setdefault(turn, None)
    latencies: dict[int, float] = {}
    for turn, user_segments in audio[_USER].items():
        answer = audio[_ASSISTANT].get(turn)
        if user_segments and answer:
            latencies[turn] = round(answer[0][0] - user_segments[-1][1], 6)
    return TurnTimeline(
        user_audio=audio[_USER],
        assistant_audio=audio[_ASSISTANT],
        assistant_interrupted_turns=frozenset(tc.assistant_interrupted),
        user_interrupted_turns=frozenset(tc.user_interrupted),
        tool_call_turns=frozenset(tc.tool_turns),
        latencies_s=latencies,
    )


def response_speed_latencies_ms(
    events: Iterable[Mapping[str, Any]], audit: Mapping[str, Any] | None = None
) -> list[float]:
    """What the caller heard per turn: first assistant start − last user end (ms).

    From ``user_simulator_events.jsonl`` (``audio_timestamp`` in epoch seconds) and, when given,
    ``audit_log.json``, turn by turn as :func:`turn_timeline` numbers them (EVA's
    ``latency_assistant_turns``); values outside 0 < v < 1000 s (barge-ins) are dropped, as
    EVA's ``response_speed`` does.
    """
    timeline = turn_timeline(events, audit)
    return [v * 1000.0 for v in timeline.latencies_s.values() if 0 < v < 1000]


def last_audio_speaker(timeline: TurnTimeline) -> str | None:
    """``"user"`` or ``"assistant"``: whose audio ended last (``None`` when nobody spoke)."""

    def latest(audio: Mapping[int, Segments | None]) -> float | None:
        ends = [end for segments in audio.values() if segments for _, end in segments]
        return max(ends) if ends else None

    user_end, assistant_end = latest(timeline.user_audio), latest(timeline.assistant_audio)
    if user_end is None and assistant_end is None:
        return None
    if user_end is None:
        return "assistant"
    if assistant_end is None:
        return "user"
    return "user" if user_end > assistant_end else "assistant"


def agent_timed_out_on_user_turn(ended_reason: str | None, timeline: TurnTimeline) -> bool:
    """EVA's "missed turn": the call hit ``inactivity_timeout`` right after the user spoke."""
    return ended_reason == "inactivity_timeout" and last_audio_speaker(timeline) == "user"


# ---------------------------------------------------------------------------------------------
# EVA's timing and ending metrics (code metrics, no LLM)
# ---------------------------------------------------------------------------------------------


def _speed_stats(latencies_s: Iterable[float]) -> dict[str, Any] | None:
    valid = [v for v in latencies_s if 0 < v < 1000]
    if not valid:
        return None
    return {
        "mean_speed_seconds": round(sum(valid) / len(valid), 3),
        "max_speed_seconds": round(max(valid), 3),
        "num_turns": len(valid),
        "per_turn_speeds": [round(v, 3) for v in valid],
    }


def response_speed(timeline: TurnTimeline) -> dict[str, Any]:
    """EVA's ``response_speed``: mean per-turn latency in seconds (lower is better).

    The turns' latencies (:attr:`TurnTimeline.latencies_s`) within 0 < v < 1000 s; sub-metrics
    ``with_tool_calls`` / ``no_tool_calls`` split them by whether the turn called a tool. An
    error (score 0.0) when no turn has both audio sides.
    """
    name = "response_speed"
    lat = timeline.latencies_s
    overall = _speed_stats(lat.values())
    if overall is None:
        missing = "No response latencies available (missing audio timestamps)"
        return _metric(
            name,
            0.0,
            normalized=False,
            error=missing if not lat else "No valid response speeds computed",
            higher_is_better=False,
        )
    sub: dict[str, Any] = {}
    tools = timeline.tool_call_turns
    split = {
        "with_tool_calls": [v for t, v in lat.items() if t in tools],
        "no_tool_calls": [v for t, v in lat.items() if t not in tools],
    }
    for key, values in split.items():
        stats = _speed_stats(values)
        if stats is not None:
            sub[key] = _metric(
                f"{name}.{key}",
                stats["mean_speed_seconds"],
                details=stats,
                normalized=False,
                higher_is_better=False,
            )
    return _metric(
        name,
        overall["mean_speed_seconds"],
        details=overall,
        normalized=False,
        sub_metrics=sub,
        higher_is_better=False,
    )


# turn_taking's curves (ms): 0 at <= -500, ramp to 1 at 500, 1 up to 2000 (3000 with a tool call),
# ramp to 0 at 3500 (5000 with a tool call). Barge-ins: see turn_taking().
_TT_HARD_EARLY, _TT_SWEET_LOW = -500.0, 500.0
_TT_SWEET_HIGH, _TT_HARD_LATE = 2000.0, 3500.0
_TT_SWEET_HIGH_TOOL, _TT_HARD_LATE_TOOL = 3000.0, 5000.0
_TT_INTERRUPT_CAP, _TT_OVERLAP_HARD, _TT_COUNT_HARD, _TT_YIELD_HARD = 0.5, 2000.0, 3, 2000.0
_TT_EARLY, _TT_LATE, _TT_LATE_TOOL = 200.0, 2750.0, 4000.0


def turn_taking_latency_score(latency_ms: float, *, tool_call: bool = False) -> float:
    """turn_taking's piecewise-linear score of one response latency (ms), in [0, 1]."""
    high = _TT_SWEET_HIGH_TOOL if tool_call else _TT_SWEET_HIGH
    late = _TT_HARD_LATE_TOOL if tool_call else _TT_HARD_LATE
    if latency_ms <= _TT_HARD_EARLY or latency_ms >= late:
        return 0.0
    if latency_ms < _TT_SWEET_LOW:
        return (latency_ms - _TT_HARD_EARLY) / (_TT_SWEET_LOW - _TT_HARD_EARLY)
    if latency_ms <= high:
        return 1.0
    return (late - latency_ms) / (late - high)


def turn_taking_overlap_score(overlap_ms: float) -> float:
    """Score of an assistant barge-in by how long both talked (ms): 0.5 at 0, 0 at 2 s."""
    return max(0.0, _TT_INTERRUPT_CAP * (1.0 - overlap_ms / _TT_OVERLAP_HARD))


def turn_taking_count_score(segments: int) -> float:
    """Score of an assistant barge-in by how many of its segments overlapped (>= 1): 0.5 .. 0."""
    return max(0.0, _TT_INTERRUPT_CAP * (1.0 - (segments - 1) / (_TT_COUNT_HARD - 1)))


def turn_taking_yield_score(yield_ms: float) -> float:
    """Score of how fast the assistant stopped when the user barged in (ms): 1 at 0, 0 at 2 s."""
    return max(0.0, 1.0 - yield_ms / _TT_YIELD_HARD)


def _turn_evidence(
    timeline: TurnTimeline, turn: int, tool_call: bool
) -> tuple[float, str, dict[str, Any]]:
    users = timeline.user_audio.get(turn) or []
    answers = timeline.assistant_audio.get(turn) or []
    evidence: dict[str, Any] = {}
    agent_score: float | None = None
    user_score: float | None = None
    if turn in timeline.assistant_interrupted_turns and users and answers:
        overlap_ms = 1000 * sum(
            max(0.0, min(u_end, a_end) - max(u_start, a_start))
            for u_start, u_end in users
            for a_start, a_end in answers
        )
        agent_score = turn_taking_overlap_score(overlap_ms)
        evidence["overlap_ms"] = round(overlap_ms, 3)
        evidence["overlap_score"] = round(agent_score, 4)
        segments = sum(
            1
            for a_start, a_end in answers
            if any(min(u_end, a_end) - max(u_start, a_start) > 0.001 for u_start, u_end in users)
        )
        evidence["n_interrupt_segments"] = segments
        if segments >= 1:
            count_score = turn_taking_count_score(segments)
            evidence["interrupt_count_score"] = round(count_score, 4)
            agent_score = min(agent_score, count_score)
        user_end = users[-1][1]
        if not any(a_start <= user_end < a_end for a_start, a_end in answers):
            settled = [a_start for a_start, _ in answers if a_start > user_end]
            if settled:  # the answer after the user finished, following the barge-in
                post_ms = (min(settled) - user_end) * 1000
                post_score = turn_taking_latency_score(post_ms, tool_call=tool_call)
                evidence["post_interrupt_latency_ms"] = round(post_ms, 3)
                evidence["post_interrupt_latency_score"] = round(post_score, 4)
                agent_score = min(agent_score, post_score)
    previous = timeline.assistant_audio.get(turn - 1) or []
    if turn in timeline.user_interrupted_turns and users and previous:
        yield_ms = max(0.0, previous[-1][1] - users[0][0]) * 1000
        user_score = turn_taking_yield_score(yield_ms)
        evidence["yield_ms"] = round(yield_ms, 3)
        evidence["yield_score"] = round(user_score, 4)
    if agent_score is not None and user_score is not None:
        return min(agent_score, user_score), "dual_interrupt", evidence
    if agent_score is not None:
        return agent_score, "agent_interrupt", evidence
    if user_score is not None:
        return user_score, "user_interrupt", evidence
    latency_ms = timeline.latencies_s[turn] * 1000
    score = turn_taking_latency_score(latency_ms, tool_call=tool_call)
    evidence["latency_ms"] = round(latency_ms, 3)
    evidence["latency_score"] = round(score, 4)
    return score, "latency", evidence


def _turn_taking_sub_metrics(
    timeline: TurnTimeline, turns: Sequence[int], evidence: Mapping[int, Mapping[str, Any]]
) -> dict[str, Any]:
    name = "turn_taking"

    def wrap(key: str, value: float | None, normalized: bool) -> dict[str, Any]:
        return _metric(f"{name}.{key}", value, normalized=normalized)

    sub: dict[str, Any] = {}
    data = [(t, timeline.latencies_s[t] * 1000) for t in turns if t in timeline.latencies_s]
    if data:
        ordered = sorted(ms for _, ms in data)
        n = len(ordered)
        early = sum(1 for _, ms in data if ms < _TT_EARLY)
        late = sum(
            1
            for t, ms in data
            if ms >= (_TT_LATE_TOOL if t in timeline.tool_call_turns else _TT_LATE)
        )
        sub["mean_latency_ms"] = wrap("mean_latency_ms", round(statistics.mean(ordered), 3), False)
        sub["p50_latency_ms"] = wrap("p50_latency_ms", round(ordered[min(n - 1, n // 2)], 3), False)
        p90 = ordered[min(n - 1, int(0.9 * n))]
        sub["p90_latency_ms"] = wrap("p90_latency_ms", round(p90, 3), False)
        sub["on_time_rate"] = wrap("on_time_rate", round((n - early - late) / n, 4), True)
        sub["early_rate"] = wrap("early_rate", round(early / n, 4), True)
        sub["late_rate"] = wrap("late_rate", round(late / n, 4), True)
    agent_turns = [t for t in turns if t in timeline.assistant_interrupted_turns]
    sub["agent_interruption.rate"] = wrap(
        "agent_interruption.rate", round(len(agent_turns) / len(turns), 4), True
    )
    agent_ev = [evidence[t] for t in agent_turns if "overlap_ms" in evidence[t]]
    segments = [int(ev.get("n_interrupt_segments", 0)) for ev in agent_ev]
    sub["agent_interruption.num_interruptions"] = wrap(
        "agent_interruption.num_interruptions", float(sum(segments)) if segments else None, False
    )

    def means(owner: str, key: str, evs: list[Mapping[str, Any]]) -> None:
        """``<owner>.mean_<key>_ms`` (lower is better) and ``…_score`` (higher is better)."""
        for unit, digits, higher in (("ms", 3, False), ("score", 4, True)):
            name = f"{owner}.mean_{key}_{unit}"
            value = round(statistics.mean(ev[f"{key}_{unit}"] for ev in evs), digits)
            sub[name] = wrap(name, value, higher)

    if agent_ev:
        means("agent_interruption", "overlap", agent_ev)
        counts = [turn_taking_count_score(n) for n in segments if n >= 1]
        if counts:
            sub["agent_interruption.mean_count_score"] = wrap(
                "agent_interruption.mean_count_score", round(statistics.mean(counts), 4), True
            )
    post = [ev for ev in agent_ev if "post_interrupt_latency_ms" in ev]
    if post:
        means("agent_interruption", "post_interrupt_latency", post)
    user_turns = [t for t in turns if t in timeline.user_interrupted_turns]
    sub["user_interruption.rate"] = wrap(
        "user_interruption.rate", round(len(user_turns) / len(turns), 4), True
    )
    yields = [evidence[t] for t in user_turns if "yield_ms" in evidence[t]]
    if yields:
        means("user_interruption", "yield", yields)
    return sub


def turn_taking(timeline: TurnTimeline, ended_reason: str | None = None) -> dict[str, Any]:
    """EVA's ``turn_taking`` (code metric): the mean per-turn timing score in [0, 1].

    Every turn after the greeting with audio on both sides scores by its latency
    (:func:`turn_taking_latency_score`, the tool-call curve when the turn called a tool); a turn
    where the assistant barged in scores the least of its overlap, overlap-count and
    settled-answer latency scores (at most 0.5); a turn the user opened over the assistant
    scores by how fast the assistant yielded; both -> the lower. 0 when no turn qualifies or
    the agent never answered the user's last turn (:func:`agent_timed_out_on_user_turn`).
    Sub-metrics: latency mean/p50/p90 and early/on-time/late rates, barge-in rates and means.
    """
    name = "turn_taking"
    turns = sorted(
        t
        for t in timeline.user_audio.keys() & timeline.assistant_audio.keys()
        if t != 0 and timeline.user_audio.get(t) and timeline.assistant_audio.get(t)
    )
    scores: dict[int, float] = {}
    reasons: dict[int, str] = {}
    evidence: dict[int, dict[str, Any]] = {}
    for t in turns:
        tool_call = t in timeline.tool_call_turns
        score, reason, ev = _turn_evidence(timeline, t, tool_call)
        ev["has_tool_call"] = tool_call
        scores[t], reasons[t], evidence[t] = round(score, 4), reason, ev
    missed = agent_timed_out_on_user_turn(ended_reason, timeline)
    details: dict[str, Any] = {
        "per_turn_score": scores,
        "per_turn_reason": reasons,
        "per_turn_evidence": evidence,
        "num_turns": max(
            max(timeline.user_audio, default=0), max(timeline.assistant_audio, default=0)
        ),
        "num_evaluated": len(scores),
        "missed_turn": missed,
    }
    if not scores:
        return _metric(name, 0.0, details=details)
    score = 0.0 if missed else round(statistics.mean(scores.values()), 4)
    return _metric(
        name,
        score,
        details=details,
        sub_metrics=_turn_taking_sub_metrics(timeline, turns, evidence),
    )


def conversation_completed_on_time(ended_reason: str | None) -> dict[str, Any]:
    """EVA's ``conversation_completed_on_time``: 0.0 only when the time limit was exceeded."""
    timed_out = ended_reason == "time_limit_exceeded"
    return _metric(
        "conversation_completed_on_time",
        0.0 if timed_out else 1.0,
        details={"conversation_ended_reason": ended_reason, "timed_out": timed_out},
    )


def conversation_valid_end(
    events_text: str | None,
    *,
    ended_reason: str | None = None,
    timeline: TurnTimeline | None = None,
    events_path: Path | str | None = None,
) -> dict[str, Any]:
    """EVA's ``conversation_valid_end``: the call reached a definitive end.

    1.0 when the agent timed out on the user's final turn, or when the last line of
    ``user_simulator_events.jsonl`` is ``connection_state`` with ``details.reason == "goodbye"``
    (the caller hung up with ``end_call``); 0.0 otherwise, with ``error`` set when the file is
    missing, empty or its last line is not JSON.

    Args:
        events_text: The events file's text (``None`` when there is no file).
        ended_reason: ``result.json``'s ``conversation_ended_reason``.
        timeline: The conversation's :func:`turn_timeline` (for the agent-timeout case).
        events_path: The file's path, reported in ``details``.
    """
    name = "conversation_valid_end"
    if timeline is not None and agent_timed_out_on_user_turn(ended_reason, timeline):
        return _metric(
            name,
            1.0,
            details={
                "ended_properly": True,
                "reason": "agent_timeout_on_user_turn",
                "details": "agent timed out on the user's final turn (definitive terminal state)",
            },
        )
    path = str(events_path) if events_path is not None else SIMULATOR_EVENTS_FILE
    file_name = Path(path).name
    if events_text is None:
        return _metric(
            name,
            0.0,
            error="User simulator events file not found",
            details={"output_dir": str(Path(path).parent)},
        )
    lines = events_text.splitlines(keepends=True)
    if not lines:
        return _metric(name, 0.0, error=f"{file_name} is empty", details={"file_path": path})
    last = lines[-1].strip()
    if not last:
        return _metric(
            name, 0.0, error=f"Last line in {file_name} is empty", details={"file_path": path}
        )
    try:
        event = json.loads(last)
    except json.JSONDecodeError as exc:
        return _metric(
            name,
            0.0,
            error=f"Failed to parse last line as JSON: {exc}",
            details={"file_path": path, "last_line": last},
        )
    event = event if isinstance(event, dict) else {}
    kind = event.get("type")
    if kind != "connection_state":
        return _metric(
            name,
            0.0,
            details={
                "ended_properly": False,
                "last_event_type": kind,
                "reason": f"Last event type is '{kind}', expected 'connection_state'",
                "file_path": path,
            },
        )
    data = event.get("data")
    inner = data.get("details") if isinstance(data, dict) else None
    if not isinstance(inner, dict) or inner.get("reason") != "goodbye":
        return _metric(
            name,
            0.0,
            details={
                "ended_properly": False,
                "last_event_type": kind,
                "reason": "conversation ended for unknown reasons",
                "file_path": path,
            },
        )
    return _metric(
        name,
        1.0,
        details={
            "ended_properly": True,
            "last_event_type": kind,
            "details": "end_call was called successfully",
            "file_path": path,
        },
    )


# conversation_correctly_finished's failure causes, in EVA's priority order. A speech-to-speech
# run has no pipeline logs (logs.log, agent_perf_stats.csv) to show the others, so hydralab
# tells apart only the VAD case (with pipecat_logs.jsonl VAD onsets and service-error frames when
# that file exists) and the rest.
FINISH_FAILURE_CAUSES: tuple[str, ...] = (
    "tts_api_error",
    "stt_api_error",
    "llm_api_error",
    "reasoning_too_long",
    "reasoning_only",
    "stt_empty_transcription",
    "stt_missing_transcription",
    "ended_with_user_interruption",
    "vad_no_turn_detected",
    "unknown_reason",
)
_VAD_WINDOW_S = 1.5
_SERVICE_RE = re.compile(r"([A-Za-z0-9]+(?:TTS|STT)Service)")
_TAG_RE = re.compile(r"\[[^\]]*\]")
_ACK_RE = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)*\b(?:yes|no|nope|yep|yeah|sure|okay|ok|alright|correct|right)\b",
    re.IGNORECASE,
)
_SEP = r"[\s.,;:\-…]+"
_DIGIT_WORDS = frozenset(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
)
_NATO = frozenset(
    [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "juliett",
        "kilo",
        "lima",
        "mike",
        "november",
        "oscar",
        "papa",
        "quebec",
        "romeo",
        "sierra",
        "tango",
        "uniform",
        "victor",
        "whiskey",
        "x-ray",
        "xray",
        "yankee",
        "zulu",
    ]
)
_DIGIT_WORD_RE = "(?:" + "|".join(sorted(_DIGIT_WORDS)) + ")"
_SPELLED_RES = (
    re.compile(rf"(?:\b[a-zA-Z]\b{_SEP}){{2,}}\b[a-zA-Z]\b"),  # three or more single letters
    re.compile(rf"(?:\b\d\b{_SEP}){{2,}}\b\d\b"),  # three or more single digits
    re.compile(r"\b[a-zA-Z]\s+as\s+in\s+\w+", re.IGNORECASE),  # "K as in kilo"
    re.compile(r"\b(?:" + "|".join(re.escape(w) for w in sorted(_NATO)) + r")\b", re.IGNORECASE),
    re.compile(r"\b(?=[A-Z0-9]{3,})(?=.*[A-Z])(?=.*\d)[A-Z0-9]+\b"),  # a code like EMP358
    re.compile(r"\b[A-Z]{3,}\b"),  # an acronym
    re.compile(rf"(?:\b{_DIGIT_WORD_RE}\b[^a-zA-Z]+){{2,}}\b{_DIGIT_WORD_RE}\b", re.IGNORECASE),
)


def _prose_words(text: str) -> int:
    """Words of ``text`` that are not spelling (letters, digit words, NATO words, codes)."""
    count = 0
    for raw in text.split():
        token = raw.strip(".,!?;:'\"()[]…-")
        if not token:
            continue
        low = token.lower()
        spelled = (
            (len(token) == 1 and token.isalpha())
            or low in _DIGIT_WORDS
            or low == "dash"
            or low in _NATO
            or (token.isupper() and len(token) >= 3)
            or (
                len(token) >= 3
                and token.isalnum()
                and any(c.isupper() for c in token)
                and any(c.isdigit() for c in token)
            )
        )
        count += not spelled
    return count


def final_turn_flags(text: str | None) -> dict[str, bool]:
    """What the user's last line was like: ``short`` (< 3 words), ``acknowledgement`` ("yes,
    that's right", at most 6 words), ``spelled_entity`` (a spelled code dominates it);
    ``[tags]`` are stripped first."""
    if not text or not text.strip():
        return {"short": False, "acknowledgement": False, "spelled_entity": False}
    plain = _TAG_RE.sub(" ", text).strip()
    words = len(plain.split())
    return {
        "short": 0 < words < 3,
        "acknowledgement": words <= 6 and bool(_ACK_RE.match(plain)),
        "spelled_entity": any(r.search(plain) for r in _SPELLED_RES) and _prose_words(plain) <= 10,
    }


def _finish_failure(
    timeline: TurnTimeline,
    events: Sequence[Mapping[str, Any]],
    audit: Mapping[str, Any] | None,
    record_dir: Path | None,
) -> tuple[str, dict[str, Any], str | None]:
    """``(cause, details, user's last line)`` of a conversation the agent left unanswered."""
    notes: list[str] = []
    speech = [e for e in events if e.get("type") == "user_speech"]
    final_words: str | None = None
    last_role: str | None = "assistant"
    tts_error = stt_error = False
    service, excerpt, frames = "", "", 0
    after_agent, vad_in_window = False, True
    assistant_starts = sum(
        1 for e in events if e.get("event_type") == "audio_start" and e.get("user") == _ASSISTANT
    )
    if record_dir is None:
        notes.append("no output_dir")
    else:
        if audit is not None:
            messages = audit.get("conversation_messages") or []
            last = messages[-1] if messages else None
            last_role = last.get("role") if isinstance(last, Mapping) else None
        if speech:
            data = speech[-1].get("data")
            final_words = data.get("text") if isinstance(data, Mapping) else None

        def stamps(kind: str, who: str) -> list[float]:
            return [
                float(e["audio_timestamp"])
                for e in events
                if e.get("event_type") == kind
                and e.get("user") == who
                and isinstance(e.get("audio_timestamp"), int | float)
            ]

        assistant_ends = stamps("audio_end", _ASSISTANT)
        user_starts, user_ends = stamps("audio_start", _USER), stamps("audio_end", _USER)
        onsets: list[float] = []
        for row in _load_jsonl(record_dir / "pipecat_logs.jsonl"):
            if row.get("type") == "error":
                data = row.get("data")
                frame = str(data.get("frame", "")) if isinstance(data, Mapping) else ""
                if match := _SERVICE_RE.search(frame):
                    frames += 1
                    service = match.group(1)
                    tts_error = tts_error or "TTS" in service
                    stt_error = stt_error or ("STT" in service and "TTS" not in service)
                    excerpt = frame[:160]
            elif row.get("type") == "user_started_speaking":
                stamp = row.get("timestamp")
                if isinstance(stamp, int | float):
                    onsets.append(stamp / 1000.0)
        if user_starts and assistant_ends:
            start = max(user_starts)
            end = max([e for e in user_ends if e >= start], default=start + 1.0)
            after_agent = start >= max(assistant_ends) - 0.5
            vad_in_window = any(start - _VAD_WINDOW_S <= t <= end + _VAD_WINDOW_S for t in onsets)
        has_logs = (record_dir / "logs.log").exists()
        if not has_logs and not (
            tts_error or stt_error or (record_dir / "agent_perf_stats.csv").exists()
        ):
            notes.append("no logs.log")
    base: dict[str, Any] = {"notes": notes} if notes else {}
    if tts_error or stt_error:
        return (
            "tts_api_error" if tts_error else "stt_api_error",
            {
                **base,
                "invalid_run": True,
                "component": "tts" if tts_error else "stt",
                "service": service,
                "error_excerpt": excerpt,
                "num_error_frames": frames,
                "assistant_audio_events": assistant_starts,
            },
            final_words,
        )
    if after_agent and not vad_in_window and last_role == "assistant":
        return (
            "vad_no_turn_detected",
            {
                **base,
                "user_said_ground_truth": final_words,
                "assistant_still_speaking_before": False,
                "vad_onsets_in_window": 0,
            },
            final_words,
        )
    return (
        "unknown_reason",
        {
            **base,
            "last_conversation_message_role": last_role,
            "num_interruptions": 0,
            "final_user_turn_transcript": final_words,
            "note": "no known sub-metric matched — candidate for a new sub-metric",
        },
        final_words,
    )


def conversation_correctly_finished(
    timeline: TurnTimeline,
    ended_reason: str | None,
    *,
    events: Sequence[Mapping[str, Any]] = (),
    audit: Mapping[str, Any] | None = None,
    record_dir: Path | str | None = None,
) -> dict[str, Any]:
    """EVA's ``conversation_correctly_finished``: 0.0 when the agent left the user's last turn
    unanswered (``inactivity_timeout`` right after the user spoke), else 1.0.

    Sub-metrics as EVA's: one ``<cause>_rate`` flag per :data:`FINISH_FAILURE_CAUSES` (all 0.0 on
    a clean finish, the cause found 1.0 on a failure) and, on a failure only,
    ``final_turn_{short,acknowledgement,spelled_entity}_rate`` about the user's last line.
    """
    name = "conversation_correctly_finished"
    speaker = last_audio_speaker(timeline)
    missed = agent_timed_out_on_user_turn(ended_reason, timeline)
    cause: str | None = None
    cause_details: dict[str, Any] = {}
    sub: dict[str, Any] = {}
    if missed:
        folder = Path(record_dir) if record_dir is not None else None
        cause, cause_details, final_words = _finish_failure(timeline, events, audit, folder)
        reason = "conversation ended with inactivity_timeout and user was the last speaker"
    elif ended_reason == "inactivity_timeout":
        reason = f"inactivity_timeout but last speaker was {speaker!r}"
    else:
        reason = f"conversation ended with reason={ended_reason!r}"
    for c in FINISH_FAILURE_CAUSES:
        hit = c == cause
        sub[f"{c}_rate"] = _metric(
            f"{name}.{c}_rate", 1.0 if hit else 0.0, details=cause_details if hit else {}
        )
    if missed:
        for key, hit in final_turn_flags(final_words).items():
            sub[f"final_turn_{key}_rate"] = _metric(
                f"{name}.final_turn_{key}_rate",
                1.0 if hit else 0.0,
                details={"final_user_text": final_words} if hit else {},
            )
    return _metric(
        name,
        0.0 if missed else 1.0,
        details={
            "conversation_ended_reason": ended_reason,
            "last_audio_speaker": speaker,
            "reason": reason,
        },
        sub_metrics=sub,
    )


def _task_completion_metric(
    expected_db: Mapping[str, Any], final_db: Mapping[str, Any], tc: Mapping[str, Any]
) -> dict[str, Any]:
    """EVA's ``task_completion`` MetricScore from :func:`task_completion`'s result."""
    name = "task_completion"
    if not tc["auth_success"]:
        exp = expected_db.get(_SESSION_KEY)
        fin = final_db.get(_SESSION_KEY)
        exp_s = exp if isinstance(exp, Mapping) else {}
        fin_s = fin if isinstance(fin, Mapping) else {}
        mismatches = {
            k: {"expected": v, "actual": fin_s.get(k)}
            for k, v in exp_s.items()
            if _fold(fin_s.get(k)) != _fold(v)
        }
        return _metric(
            name,
            0.0,
            details={
                "match": False,
                "auth_failed": True,
                "message": f"Authentication failed — session mismatch on keys: {list(mismatches)}",
                "auth_mismatches": mismatches,
            },
        )
    hashes = {"expected_hash": tc["expected_hash"], "actual_hash": tc["final_hash"]}
    if tc["db_match"]:
        return _metric(
            name,
            1.0,
            details={
                "match": True,
                **hashes,
                "message": "Final database state matches expected state exactly",
            },
        )
    diff = tc["diff"] or {}
    parts = [
        f"{len(diff.get(key) or [])} tables {word}"
        for key, word in (
            ("tables_added", "added"),
            ("tables_removed", "removed"),
            ("tables_modified", "modified"),
        )
        if diff.get(key)
    ]
    summary = ", ".join(parts) or "No differences found (hash collision?)"
    return _metric(
        name,
        0.0,
        details={
            "match": False,
            **hashes,
            "message": f"Final database state differs from expected: {summary}",
            "diff": diff,
            "diff_summary": summary,
        },
    )


#: The code metrics, by EVA's names, in the order ``metrics`` lists them.
EVA_CODE_METRICS: tuple[str, ...] = (
    "task_completion",
    "authentication_success",
    "tool_call_validity",
    "response_speed",
    "turn_taking",
    "conversation_valid_end",
    "conversation_correctly_finished",
    "conversation_completed_on_time",
)


def score_record(
    *,
    expected_db: Mapping[str, Any],
    final_db: Mapping[str, Any],
    audit: Mapping[str, Any] | None = None,
    auth_tools: Iterable[str] = (),
    domain: str | None = None,
    call_error_types: Collection[str] | None = None,
    domain_call_error_types: Collection[str] | None = None,
    record_id: str = "",
    pipecat_metrics: Iterable[Mapping[str, Any]] = (),
    simulator_events: Iterable[Mapping[str, Any]] = (),
    simulator_events_text: str | None = None,
    simulator_events_path: Path | str | None = None,
    ended_reason: str | None = None,
    record_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Every deterministic score of one conversation (what ``scores.json`` holds).

    Args:
        simulator_events: ``user_simulator_events.jsonl`` rows (timing metrics).
        simulator_events_text: That file's text, ``None`` when it does not exist
            (``conversation_valid_end`` reads its last line).
        simulator_events_path: Its path, for the metric's details.
        ended_reason: ``result.json``'s ``conversation_ended_reason``.
        record_dir: The record directory (``conversation_correctly_finished`` looks there for
            pipeline logs when the agent missed the last turn).

    Returns:
        Top-level ``task_completion`` (float), ``authentication_success`` (bool, ``None`` when
        skipped), ``tool_call_validity`` (float), ``db_match`` and ``db_diff``, and the scores
        of EVA's other code metrics: ``response_speed`` (mean seconds, ``None`` when no turn
        was timed), ``turn_taking``, ``conversation_valid_end``,
        ``conversation_correctly_finished`` and ``conversation_completed_on_time``; ``metrics``
        with every :data:`EVA_CODE_METRICS` score in EVA's ``MetricScore`` shape (what EVA's
        ``metrics.json`` holds under ``metrics``); ``turns`` (user / assistant lines, tool
        calls, tools called in order); ``latency`` (``model_response`` and ``response_speed``
        stats, ms).
    """
    audit = audit or {}
    events = list(simulator_events)
    calls, responses = tool_events(audit)
    tc = task_completion(expected_db, final_db)
    auth = authentication_success(
        expected_db, final_db, tool_responses=responses, auth_tools=auth_tools
    )
    validity = tool_call_validity(
        responses,
        tool_calls=calls,
        domain=domain,
        invalid_types=call_error_types,
        domain_invalid_types=domain_call_error_types,
    )
    timeline = turn_timeline(events, audit)
    speed = response_speed(timeline)
    metrics = {
        "task_completion": _task_completion_metric(expected_db, final_db, tc),
        "authentication_success": auth,
        "tool_call_validity": validity,
        "response_speed": speed,
        "turn_taking": turn_taking(timeline, ended_reason),
        "conversation_valid_end": conversation_valid_end(
            simulator_events_text,
            ended_reason=ended_reason,
            timeline=timeline,
            events_path=simulator_events_path,
        ),
        "conversation_correctly_finished": conversation_correctly_finished(
            timeline, ended_reason, events=events, audit=audit, record_dir=record_dir
        ),
        "conversation_completed_on_time": conversation_completed_on_time(ended_reason),
    }
    kinds = Counter(
        str(e.get("message_type")) for e in audit.get("transcript") or [] if isinstance(e, Mapping)
    )
    speeds_ms = [v * 1000.0 for v in timeline.latencies_s.values() if 0 < v < 1000]
    return {
        "record_id": record_id,
        "task_completion": tc["score"],
        "authentication_success": None if auth["skipped"] else auth["score"] == 1.0,
        "tool_call_validity": validity["score"],
        "response_speed": None if speed["error"] else speed["score"],
        "turn_taking": metrics["turn_taking"]["score"],
        "conversation_valid_end": metrics["conversation_valid_end"]["score"],
        "conversation_correctly_finished": metrics["conversation_correctly_finished"]["score"],
        "conversation_completed_on_time": metrics["conversation_completed_on_time"]["score"],
        "db_match": tc["db_match"],
        "db_diff": tc["diff"],
        "metrics": metrics,
        "turns": {
            "user": kinds["user"],
            "assistant": kinds["assistant"],
            "tool_calls": len(calls),
            "tools_called": [c["tool_name"] for c in calls],
        },
        "latency": {
            "model_response": latency_stats(model_response_latencies_ms(pipecat_metrics)),
            "response_speed": latency_stats(speeds_ms),
        },
    }


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScoringError(f"missing {path.name} in {path.parent}") from None
    except json.JSONDecodeError as exc:
        raise ScoringError(f"{path}: invalid JSON ({exc})") from None


def _simulator_events_path(record_dir: Path) -> Path | None:
    """``user_simulator_events.jsonl`` (or its legacy name) in ``record_dir``, if there."""
    for name in (SIMULATOR_EVENTS_FILE, _LEGACY_SIMULATOR_EVENTS_FILE):
        if (record_dir / name).is_file():
            return record_dir / name
    return None


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return _jsonl_rows(path.read_text(encoding="utf-8"))


def _jsonl_rows(text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a crashed run; the rest still counts
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _str_list(value: Any) -> list[str] | None:
    """A recorded list of names, ``None`` when the run did not record one."""
    return [str(v) for v in value] if isinstance(value, list) else None


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
    ``run.json`` (domain, auth tools), ``result.json`` (``conversation_ended_reason``, else
    ``run.json``'s ``ended_reason``), ``pipecat_metrics.jsonl`` and
    ``user_simulator_events.jsonl`` (timing and ending metrics; optional).

    A directory left by a killed run (``events.jsonl`` but neither ``run.json`` nor
    ``result.json``) is scored from what can be rebuilt (:func:`_score_partial`); that never
    raises for a missing file.

    Raises:
        ScoringError: A required file is missing or unreadable.
    """
    record_dir = Path(record_dir)
    if _is_partial(record_dir):
        return _score_partial(record_dir, write=write)
    meta_path = record_dir / "run.json"
    meta = _load_json(meta_path) if meta_path.is_file() else {}
    if not isinstance(meta, dict):
        raise ScoringError(f"{meta_path}: expected a JSON object")
    info = _record_info(meta)
    tools_meta: Mapping[str, Any] = meta["tools"] if isinstance(meta.get("tools"), dict) else {}
    final_db = _load_json(record_dir / "final_scenario_db.json")
    audit = _load_json(record_dir / "audit_log.json")
    if not isinstance(final_db, dict) or not isinstance(audit, dict):
        raise ScoringError(f"{record_dir}: final_scenario_db.json / audit_log.json malformed")
    record_id = str(info.get("id") or meta.get("record_id") or record_dir.name)
    try:  # result.json is optional here (run.json also has the ending)
        result = _load_json(record_dir / "result.json")
    except ScoringError:
        result = {}
    ended = (result if isinstance(result, dict) else {}).get("conversation_ended_reason")
    if ended is None:
        ended = meta.get("ended_reason")
    events_path = _simulator_events_path(record_dir)
    events_text = events_path.read_text(encoding="utf-8") if events_path is not None else None
    scores = score_record(
        expected_db=_expected_db(record_dir, meta),
        final_db=final_db,
        audit=audit,
        auth_tools=[str(t) for t in info.get("auth_tools") or []],
        domain=info.get("domain") or meta.get("domain"),
        call_error_types=_str_list(tools_meta.get("call_error_types")),
        domain_call_error_types=_str_list(tools_meta.get("domain_call_error_types")),
        record_id=record_id,
        pipecat_metrics=_load_jsonl(record_dir / "pipecat_metrics.jsonl"),
        simulator_events=_jsonl_rows(events_text or ""),
        simulator_events_text=events_text,
        simulator_events_path=events_path or record_dir / SIMULATOR_EVENTS_FILE,
        ended_reason=None if ended is None else str(ended),
        record_dir=record_dir,
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

    ``path`` may be a record directory (holds ``audit_log.json``, or only the ``events.jsonl``
    of a run killed mid-call), a run directory in EVA's layout (``records/<id>/``) or one with
    record directories directly inside.
    """
    path = Path(path)
    if _is_record_dir(path):
        return [path]
    parent = path / "records" if (path / "records").is_dir() else path
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if _is_record_dir(p))


def _is_record_dir(path: Path) -> bool:
    return (path / "audit_log.json").is_file() or (path / EVENTS_FILE).is_file()


# ---------------------------------------------------------------------------------------------
# A killed run's directory: score what can be rebuilt from events.jsonl
# ---------------------------------------------------------------------------------------------

#: What a finished run writes beside ``events.jsonl`` (``scores.json`` aside): named in
#: ``partial.missing_files`` when absent.
_FINISHED_RUN_FILES: tuple[str, ...] = (
    "run.json",
    "result.json",
    "audit_log.json",
    "transcript.jsonl",
    "initial_scenario_db.json",
    "final_scenario_db.json",
    EXPECTED_DB_FILE,
    "pipecat_metrics.jsonl",
    "framework_logs.jsonl",
    SIMULATOR_EVENTS_FILE,
    "audio_user.wav",
    "audio_assistant.wav",
    "audio_mixed.wav",
)
_RECORDINGS: tuple[str, ...] = ("audio_user.wav", "audio_assistant.wav", "audio_mixed.wav")


def _is_partial(record_dir: Path) -> bool:
    """A run killed before its end files: the events log but no ``run.json``/``result.json``."""
    return (
        (record_dir / EVENTS_FILE).is_file()
        and not (record_dir / "run.json").is_file()
        and not (record_dir / "result.json").is_file()
    )


def _optional_json(path: Path, problems: list[str]) -> Any:
    """A JSON file's content, or None (a reason appended to ``problems``) if unusable."""
    if not path.is_file():
        return None
    try:
        return _load_json(path)
    except ScoringError as exc:
        problems.append(str(exc))
        return None


def _as_obj(value: Any) -> dict[str, Any]:
    """A JSON object from a dict or a JSON string (else ``{}``)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


@dataclass
class _Rebuilt:
    """What ``events.jsonl`` tells: audit entries, executed tool calls, latencies."""

    audit: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # id, name, params
    outputs: dict[str, Any] = field(default_factory=dict)  # call_id -> logged output (parsed)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # pipecat-style latency rows
    events: int = 0


def _rebuild_from_events(rows: Iterable[Mapping[str, Any]]) -> _Rebuilt:
    """EVA's audit entries as the bridge logs them, from its wire log: user lines from the
    ``user_transcript`` rows (stamped at the caller's ``user_speech_start``), assistant lines
    from each response's transcript deltas (all received, not only what was heard;
    ``[interrupted]`` after a barge-in), tool calls and responses from the logged
    ``function_call_arguments.done`` and ``function_call_output`` frames; a response that
    follows its turn's tool calls joins that turn's line, as the bridge's tracker has it. Also
    the ``model_response`` latencies (speech stopped to first audio delta, 50 ms to 30 s)."""
    from hydralab.evalog import EvaLog
    from hydralab.turns import (
        LATENCY_MAX_MS,
        LATENCY_MIN_MS,
        TRANSCRIPTION_PLACEHOLDER,
        join_deltas,
    )

    out = _Rebuilt()
    log = EvaLog(model="hydra")
    starts: list[int] = []  # caller speech starts (epoch ms)
    deltas: dict[str, list[str]] = {}
    first_ms: dict[str, int] = {}
    entry_of: dict[str, int] = {}
    cut: set[str] = set()
    names: dict[str, str] = {}
    seen_calls: set[str] = set()
    anchor: float | None = None
    current: str | None = None  # the last response created
    group_of: dict[str, str] = {}  # response -> the first response of its assistant turn
    turn: str | None = None  # the open assistant turn (its first response)
    awaiting_tools = False  # the open turn's last response called tools: the next one joins it
    for row in rows:
        out.events += 1
        frame = row.get("frame")
        t_ms = row.get("t_ms")
        rel = row.get("rel_ms")
        if not isinstance(frame, Mapping) or not isinstance(t_ms, int | float):
            continue
        t = int(t_ms)
        kind = frame.get("type") or frame.get("event")
        src, direction = row.get("src"), row.get("dir")
        if src == "twilio" and kind == "user_speech_start":
            stamp = str(frame.get("timestamp_ms") or "")
            starts.append(int(stamp) if stamp.isdigit() else t)
        elif src == "bridge" and kind == "user_transcript" and not frame.get("skipped"):
            k = frame.get("utterance")
            at = starts[k] if isinstance(k, int) and 0 <= k < len(starts) else t
            text = frame.get("text")
            ok = bool(frame.get("ok")) and isinstance(text, str) and bool(text)
            log.audit_entry(at, "user", text if ok else TRANSCRIPTION_PLACEHOLDER)
        elif src == "bridge" and kind == "barge_in" and current is not None:
            cut.add(group_of.get(current, current))
        elif src == "hydra" and direction == "in":
            rid = str(frame.get("response_id") or "")
            rid = group_of.get(rid, rid)
            if kind == "input_audio_buffer.speech_started":
                turn, awaiting_tools = None, False  # the caller moved on: the turn is over
            elif kind == "input_audio_buffer.speech_stopped" and isinstance(rel, int | float):
                anchor = float(rel)
            elif kind == "response.created":
                resp = frame.get("response")
                current = str(resp.get("id") or "") if isinstance(resp, Mapping) else ""
                if turn is None or not awaiting_tools:
                    turn = current
                elif deltas.get(turn):  # the turn's next response: keep sentences apart
                    deltas[turn].append(" ")
                group_of[current] = turn
                awaiting_tools = False
            elif kind == "response.done" and not awaiting_tools:
                turn = None
            elif kind == "response.output_audio.delta" and isinstance(rel, int | float):
                if anchor is not None and LATENCY_MIN_MS <= float(rel) - anchor < LATENCY_MAX_MS:
                    log.model_response(t, float(rel) - anchor)
                anchor = None
            elif kind == "response.output_audio_transcript.delta":
                if rid not in entry_of:
                    first_ms[rid] = t
                    entry_of[rid] = log.audit_entry(t, "assistant", "")
                deltas.setdefault(rid, []).append(str(frame.get("delta") or ""))
            elif kind == "response.function_call_arguments.done":
                awaiting_tools = True
                call_id = str(frame.get("call_id") or "")
                if call_id and call_id in seen_calls:
                    continue
                seen_calls.add(call_id)
                name = str(frame.get("name") or "")
                names[call_id] = name
                raw = frame.get("arguments")
                raw_s = raw if isinstance(raw, str) else ""
                try:  # as the bridge parses them: invalid JSON is answered, never executed
                    params: Any = json.loads(raw_s) if raw_s.strip() else {}
                except (ValueError, RecursionError):
                    params = None
                if not isinstance(params, dict):
                    log.audit_entry(t, "tool_call", {"tool": name, "parameters": {"_raw": raw_s}})
                    continue
                log.audit_entry(t, "tool_call", {"tool": name, "parameters": params})
                if name:
                    out.calls.append((call_id, name, params))
        elif src == "hydra" and direction == "out" and kind == "conversation.item.create":
            item = frame.get("item")
            if isinstance(item, Mapping) and item.get("type") == "function_call_output":
                call_id = str(item.get("call_id") or "")
                output = item.get("output")
                try:
                    result: Any = json.loads(output) if isinstance(output, str) else output
                except (ValueError, RecursionError):
                    result = output
                out.outputs[call_id] = result
                log.audit_entry(
                    t, "tool_response", {"tool": names.get(call_id, ""), "response": result}
                )
    for rid, i in entry_of.items():
        text = join_deltas(deltas.get(rid, []))
        log.audit[i]["value"] = f"{text} [interrupted]".strip() if rid in cut else text
    out.audit = sorted(log.audit, key=lambda e: int(e["timestamp"]))
    out.metrics = log.metrics
    return out


def _not_computable(name: str, why: str) -> dict[str, Any]:
    return _metric(name, None, error=f"not computable: {why}")


def _score_partial(record_dir: Path, *, write: bool) -> dict[str, Any]:
    """Score a killed run's directory from what it left; never raises for a missing file.

    ``scores.json`` (unless ``write`` is false) gets the usual keys plus ``partial``:
    ``missing_files``, ``rebuilt`` (what came from where), ``not_computable`` (metric names),
    ``problems`` and ``recordings`` (the WAVs, their headers repaired with
    :func:`hydralab.audio.recover_wav` when ``write``)."""
    problems: list[str] = []
    missing = [f for f in _FINISHED_RUN_FILES if not (record_dir / f).exists()]
    rows = _load_jsonl(record_dir / EVENTS_FILE)
    rebuilt = _rebuild_from_events(rows)
    how: dict[str, str] = {}

    audit = _optional_json(record_dir / "audit_log.json", problems)
    if not isinstance(audit, dict):
        audit = {"transcript": rebuilt.audit, "llm_prompts": [], "conversation_messages": []}
        how["audit_log"] = f"{EVENTS_FILE} ({rebuilt.events} events)"

    record: Any = None
    try:
        from hydralab.records import load_record

        record = load_record(record_dir.name)
    except Exception as exc:  # no such record here: the DB metrics are not computable
        problems.append(f"record {record_dir.name!r} not loadable: {type(exc).__name__}: {exc}")

    expected = _optional_json(record_dir / EXPECTED_DB_FILE, problems)
    if not isinstance(expected, dict) and record is not None:
        expected = record.expected_db
        how["expected_db"] = f"record {record.id}"
    final = _optional_json(record_dir / "final_scenario_db.json", problems)
    final_ok = isinstance(final, dict)
    if not final_ok and record is not None:
        final, final_ok = _replay_tools(record, rebuilt, how, problems)

    not_computable: dict[str, str] = {}
    if not isinstance(expected, dict):
        not_computable["task_completion"] = "no expected DB (no record to load it from)"
    elif not final_ok:
        not_computable["task_completion"] = "no final DB (tool calls could not be replayed)"
    if "task_completion" in not_computable:
        not_computable["authentication_success"] = not_computable["task_completion"]
    events_path = _simulator_events_path(record_dir)
    if events_path is None:
        why = f"no {SIMULATOR_EVENTS_FILE} (written when the call ends)"
        for name in (
            "response_speed",
            "turn_taking",
            "conversation_valid_end",
            "conversation_correctly_finished",
        ):
            not_computable[name] = why
    not_computable["conversation_completed_on_time"] = (
        "the conversation's end reason is unknown (no result.json)"
    )

    auth_tools: list[str] = []
    domain = None
    if record is not None:
        from hydralab.records import record_meta

        auth_tools = [str(t) for t in record_meta(record).get("auth_tools") or []]
        domain = record.domain
    events_text = events_path.read_text(encoding="utf-8") if events_path is not None else None
    metrics_path = record_dir / "pipecat_metrics.jsonl"
    pipecat = _load_jsonl(metrics_path) if metrics_path.is_file() else rebuilt.metrics
    if not metrics_path.is_file():
        how["pipecat_metrics"] = f"{EVENTS_FILE} (model_response latencies)"
    scores = score_record(
        expected_db=expected if isinstance(expected, dict) else {},
        final_db=final if isinstance(final, dict) else {},
        audit=audit,
        auth_tools=auth_tools,
        domain=domain,
        record_id=record_dir.name,
        pipecat_metrics=pipecat,
        simulator_events=_jsonl_rows(events_text or ""),
        simulator_events_text=events_text,
        simulator_events_path=events_path or record_dir / SIMULATOR_EVENTS_FILE,
        ended_reason=None,
        record_dir=record_dir,
    )
    for name, why in not_computable.items():
        scores["metrics"][name] = _not_computable(name, why)
        scores[name] = 0.0 if name == "task_completion" else None
    if "task_completion" in not_computable:
        scores["db_match"], scores["db_diff"] = None, None
    scores["partial"] = {
        "reason": "the run did not finish (no run.json / result.json): scored from what it left",
        "missing_files": missing,
        "rebuilt": how,
        "not_computable": list(not_computable),
        "problems": problems,
        "recordings": _recordings(record_dir, repair=write),
    }
    if write:
        from hydralab.rundir import write_json

        write_json(record_dir / SCORES_FILE, scores)
    return scores


def _replay_tools(
    record: Any, rebuilt: _Rebuilt, how: dict[str, str], problems: list[str]
) -> tuple[dict[str, Any], bool]:
    """The final DB: the logged tool calls replayed, in order, on the record's initial DB (the
    tools are deterministic). Usable only if every logged output is what the replay returns."""
    from hydralab.tools import ToolExecutor
    from hydralab.turns import dumps_result

    tools = ToolExecutor.for_record(record)
    differ = []
    for call_id, name, params in rebuilt.calls:
        result = tools.execute(name, params)
        if (
            call_id in rebuilt.outputs
            and json.loads(dumps_result(result)) != rebuilt.outputs[call_id]
        ):
            differ.append(call_id)
    if differ:
        problems.append(
            f"replayed tool outputs differ from the logged ones for {len(differ)} call(s): "
            + ", ".join(differ[:5])
        )
        return tools.db, False
    how["final_scenario_db"] = (
        f"{len(rebuilt.calls)} logged tool call(s) replayed on record {record.id}'s initial DB"
    )
    return tools.db, True


def _recordings(record_dir: Path, *, repair: bool) -> dict[str, Any]:
    """The WAVs a killed run streamed: whole frames and seconds, and whether the header had to
    be repaired (:func:`hydralab.audio.recover_wav`; only looked at unless ``repair``)."""
    from hydralab.audio import recover_wav

    out: dict[str, Any] = {}
    for name in _RECORDINGS:
        path = record_dir / name
        if not path.is_file():
            continue
        try:
            rec = recover_wav(path, dry_run=not repair)
        except (OSError, ValueError) as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[name] = {
            "frames": rec.frames,
            "seconds": round(rec.frames / rec.sample_rate_hz, 3),
            "repaired" if repair else "needs_repair": rec.repaired,
        }
    return out
