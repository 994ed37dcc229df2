"""hydralab's airline tools against EVA's own, call by call.

EVA's tool functions (``eva/assistant/tools/airline_tools.py`` in the shared EVA checkout, MIT)
are loaded at test time from ``../shared/eva`` by hydralab's own loader
(:class:`hydralab.tools.EvaTools`, by file path), never copied into the project, and run by
:class:`hydralab.tools.ToolExecutor` with EVA's executor semantics. Every call runs through both
backends, each on its own deep copy of the record's scenario DB, and must give the same
``status``, the same ``error_type`` and the same keys (at every depth of a success), and leave the
same DB behind; on the trace calls every value but ``message`` must be equal too. ``message``
texts are hydralab's own and not compared.

Three sets of calls per shared airline record:

- the reference trace's tool calls, as they are;
- each of those calls perturbed: a parameter dropped, null, empty, padded, re-cased, coerced
  ("3", True, "yes" ...), or an optional one added;
- probes built from the scenario DB for every tool (including those no trace calls), first on
  a fresh DB and then one after another, after the trace has run.

Skipped when the shared EVA checkout or pydantic (which EVA's tools need) is absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hydralab.records import Record, list_records, load_record
from hydralab.tools import EvaTools, ToolExecutor

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
EVA_SRC = EVA_DIR / "src"
EVA_TOOLS = EVA_SRC / "eva" / "assistant" / "tools" / "airline_tools.py"

pytestmark = pytest.mark.skipif(
    not (EVA_DIR / "data").is_dir() or not EVA_TOOLS.is_file(),
    reason="shared EVA checkout (data and src) not present",
)

JSON = dict[str, Any]
Call = tuple[str, JSON]


@pytest.fixture(scope="module")
def eva_tools() -> EvaTools:
    """EVA's tool code in the shared checkout, loaded by path (not imported as a package)."""
    pytest.importorskip("pydantic", reason="EVA's airline tools need pydantic")
    return EvaTools(EVA_DIR)


def _record_ids() -> list[str]:
    return list_records(EVA_DIR, domain="airline") if (EVA_DIR / "data").is_dir() else []


class Pair:
    """hydralab's airline tools and EVA's, each in its own executor, side by side on one record.

    The EVA side runs with EVA's executor semantics (per-tool ``call_index``, crash ->
    ``execution_error``); its results are deep copies (EVA's can alias the live DB).
    """

    def __init__(self, backend: EvaTools, record: Record) -> None:
        self.ours = ToolExecutor.for_record(record)
        self.eva = ToolExecutor.for_record(
            record, enabled_tools=record.agent.tool_names, backend=backend
        )

    def call(self, name: str, params: JSON) -> list[str]:
        """Run one call on both; the differences (empty when they agree)."""
        ours = self.ours.execute(name, params)
        theirs = self.eva.execute(name, params)
        diffs = _differences(ours, theirs)
        if self.ours.db != self.eva.db:
            diffs.append("DB differs after the call")
        return diffs


def _key_diffs(ours: Any, theirs: Any, path: str) -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = [f"key {path}.{k}" for k in sorted(set(ours) ^ set(theirs), key=str)]
        for key in set(ours) & set(theirs):
            out += _key_diffs(ours[key], theirs[key], f"{path}.{key}")
        return out
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return [f"length {path}: {len(ours)} vs {len(theirs)}"]
        return [
            d
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            for d in _key_diffs(a, b, f"{path}[{i}]")
        ]
    if isinstance(ours, dict | list) or isinstance(theirs, dict | list):
        return [f"shape {path}"]
    return []


def _differences(ours: JSON, theirs: JSON) -> list[str]:
    diffs = []
    for field in ("status", "error_type"):
        if ours.get(field) != theirs.get(field):
            diffs.append(f"{field}: ours {ours.get(field)!r}, EVA {theirs.get(field)!r}")
    if not diffs and ours.get("status") == "success":
        diffs += _key_diffs(ours, theirs, "")
    return diffs


def _trace_calls(record: Record) -> list[Call]:
    return [
        (str(e["tool_name"]), dict(e["params"]))
        for e in record.trace
        if e["event_type"] == "tool_call"
    ]


# --- perturbed calls -------------------------------------------------------------------------

_OPTIONAL_EXTRAS: tuple[tuple[str, Any], ...] = (
    ("flight_number", ""),
    ("flight_number", "sk999"),
    ("new_fare_class", "Business"),
    ("passenger_id", "PAX999"),
    ("passenger_id", "PAX1"),
    ("date", "2026-02-30"),
    ("flight_date", "2026-02-30"),
)


def _variants(params: JSON) -> Iterator[tuple[str, JSON]]:
    """The call's parameters changed one way at a time."""
    for key, value in params.items():
        yield f"drop {key}", {k: v for k, v in params.items() if k != key}
        yield f"{key}=None", {**params, key: None}
        if isinstance(value, str):
            for label, changed in (
                ("upper", value.upper()),
                ("lower", value.lower()),
                ("title", value.title()),
                ("padded", f" {value} "),
                ("empty", ""),
                ("suffixed", f"{value}X"),
            ):
                yield f"{key} {label}", {**params, key: changed}
        if isinstance(value, bool):
            for changed in (str(value).lower(), "yes", int(value), "maybe"):
                yield f"{key}={changed!r}", {**params, key: changed}
        elif isinstance(value, int | float):
            for changed in (str(value), f" {value} ", 0, -1, 1.5, 9, True, f"${value}", "nan"):
                yield f"{key}={changed!r}", {**params, key: changed}
        if isinstance(value, list):
            for label, changed in (
                ("empty", []),
                ("lower", [str(v).lower() for v in value]),
                ("unknown", ["PAX999"]),
                ("bare string", value[0] if value else "PAX001"),
            ):
                yield f"{key} {label}", {**params, key: changed}
    for key, value in _OPTIONAL_EXTRAS:
        if key not in params:
            yield f"add {key}={value!r}", {**params, key: value}


# --- probes from the scenario DB -------------------------------------------------------------

_PREFERENCES = ("window", "aisle", "middle", "no_preference")
_REASONS = ("voluntary", "irrops_refund", "24_hour_rule", "medical")


def _probes(db: JSON) -> list[Call]:
    """Calls of every tool on what the DB holds (reservations, bookings, journeys)."""
    calls: list[Call] = []
    journeys: JSON = db.get("journeys", {})
    for journey in journeys.values():
        date = str(journey.get("date", ""))
        for segment in journey.get("segments", []):
            number = str(segment.get("flight_number", ""))
            calls.append(("get_flight_status", {"flight_number": number, "flight_date": date}))
            calls.append(("get_disruption_info", {"flight_number": number, "date": date}))
        for fare_class in ("main_cabin", "business", "first", "any"):
            for count in (1, 3):
                search = {
                    "origin": journey.get("origin"),
                    "destination": journey.get("destination"),
                    "date": date,
                    "passenger_count": count,
                    "fare_class": fare_class,
                }
                calls.append(("search_rebooking_options", search))
    for key, disruption in db.get("disruptions", {}).items():
        number, _, date = key.partition("_")
        calls.append(
            (
                "get_disruption_info",
                {"flight_number": number, "date": date or disruption.get("date")},
            )
        )
    for conf, reservation in db.get("reservations", {}).items():
        pax_ids = [p["passenger_id"] for p in reservation.get("passengers", [])]
        for pax in reservation.get("passengers", []):
            name = str(pax.get("last_name", ""))
            for last_name in (name, name.upper(), f"{name} ", ""):
                calls.append(
                    ("get_reservation", {"confirmation_number": conf, "last_name": last_name})
                )
        for pax_id in pax_ids:
            calls.append(
                (
                    "issue_travel_credit",
                    {
                        "confirmation_number": conf,
                        "passenger_id": pax_id,
                        "amount": 50,
                        "credit_reason": "goodwill",
                    },
                )
            )
            for nights in (2, 4):
                calls.append(
                    (
                        "issue_hotel_voucher",
                        {"confirmation_number": conf, "passenger_id": pax_id, "num_nights": nights},
                    )
                )
            for reason in ("delay_over_2_hours", "irrops_overnight"):
                calls.append(
                    (
                        "issue_meal_voucher",
                        {
                            "confirmation_number": conf,
                            "passenger_id": pax_id,
                            "voucher_reason": reason,
                        },
                    )
                )
        calls.append(
            (
                "process_refund",
                {"confirmation_number": conf, "refund_amount": 20.5, "refund_type": "taxes_only"},
            )
        )
        calls.append(
            (
                "transfer_to_agent",
                {
                    "confirmation_number": conf,
                    "transfer_reason": "passenger_requested",
                    "issue_summary": "",
                },
            )
        )
        for booking in reservation.get("bookings", []):
            journey_id = str(booking.get("journey_id"))
            legs = [str(s.get("flight_number")) for s in booking.get("segments", [])]
            for leg in [None, *legs]:
                extra = {"flight_number": leg} if leg else {}
                for pax_id in pax_ids:
                    for preference in _PREFERENCES:
                        calls.append(
                            (
                                "assign_seat",
                                {
                                    "confirmation_number": conf,
                                    "passenger_id": pax_id,
                                    "journey_id": journey_id,
                                    "seat_preference": preference,
                                    **extra,
                                },
                            )
                        )
                    calls.append(
                        (
                            "add_meal_request",
                            {
                                "confirmation_number": conf,
                                "passenger_id": pax_id,
                                "journey_id": journey_id,
                                "meal_type": "vegan",
                                **extra,
                            },
                        )
                    )
                calls.append(
                    (
                        "add_baggage_allowance",
                        {
                            "confirmation_number": conf,
                            "journey_id": journey_id,
                            "num_bags": 2,
                            **extra,
                        },
                    )
                )
            for reason in _REASONS:
                calls.append(
                    (
                        "cancel_reservation",
                        {
                            "confirmation_number": conf,
                            "journey_id": journey_id,
                            "cancellation_reason": reason,
                        },
                    )
                )
            calls.append(
                (
                    "add_to_standby",
                    {
                        "confirmation_number": conf,
                        "journey_id": journey_id,
                        "passenger_ids": pax_ids,
                    },
                )
            )
            source = journeys.get(journey_id, {})
            for new_id, new in journeys.items():
                if new_id == journey_id or new.get("origin") != source.get("origin"):
                    continue
                for rebooking_type, waive, fare_class in (
                    ("voluntary", False, None),
                    ("same_day", True, "business"),
                    ("irrops_cancellation", False, "main_cabin"),
                ):
                    rebook = {
                        "confirmation_number": conf,
                        "journey_id": journey_id,
                        "new_journey_id": new_id,
                        "rebooking_type": rebooking_type,
                        "waive_change_fee": waive,
                    }
                    if fare_class:
                        rebook["new_fare_class"] = fare_class
                    calls.append(("rebook_flight", rebook))
                    for leg in legs if len(legs) > 1 else []:
                        calls.append(("rebook_flight", {**rebook, "flight_number": leg}))
                calls.append(
                    (
                        "add_to_standby",
                        {
                            "confirmation_number": conf,
                            "journey_id": new_id,
                            "passenger_ids": pax_ids,
                        },
                    )
                )
    return calls


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("record_id", _record_ids())
def test_trace_calls_match_eva(eva_tools: EvaTools, record_id: str) -> None:
    record = load_record(record_id, data_dir=EVA_DIR, domain="airline")
    pair = Pair(eva_tools, record)
    calls = _trace_calls(record)
    assert calls, "a shared airline record without tool calls"
    diffs = [
        f"{i}: {name}: {d}"
        for i, (name, params) in enumerate(calls)
        for d in pair.call(name, params)
    ]
    assert diffs == []


@pytest.mark.parametrize("record_id", _record_ids())
def test_perturbed_trace_calls_match_eva(eva_tools: EvaTools, record_id: str) -> None:
    record = load_record(record_id, data_dir=EVA_DIR, domain="airline")
    calls = _trace_calls(record)
    diffs: list[str] = []
    checked = 0
    for index, (name, params) in enumerate(calls):
        for label, changed in _variants(params):
            pair = Pair(eva_tools, record)
            for before in calls[:index]:  # the conversation up to this call, unchanged
                pair.call(*before)
            diffs += [f"{name} ({label}): {d}" for d in pair.call(name, changed)]
            checked += 1
    assert checked >= 10 * len(calls)
    assert diffs == []


@pytest.mark.parametrize("record_id", _record_ids())
def test_db_probes_match_eva(eva_tools: EvaTools, record_id: str) -> None:
    record = load_record(record_id, data_dir=EVA_DIR, domain="airline")
    probes = _probes(record.initial_db)
    assert {name for name, _ in probes} == set(ToolExecutor.for_record(record).tool_names)
    diffs: list[str] = []
    for name, params in probes:  # each on a fresh DB
        pair = Pair(eva_tools, record)
        diffs += [f"fresh {name} {params}: {d}" for d in pair.call(name, params)]
    chained = Pair(eva_tools, record)  # after the trace, then one after another
    for name, params in _trace_calls(record) + probes:
        diffs += [f"chained {name} {params}: {d}" for d in chained.call(name, params)]
    assert diffs == []


@pytest.mark.parametrize("record_id", _record_ids())
def test_trace_call_values_match_eva(eva_tools: EvaTools, record_id: str) -> None:
    """Beyond keys: every value of every trace call's result but ``message`` is EVA's."""
    record = load_record(record_id, data_dir=EVA_DIR, domain="airline")
    ours = ToolExecutor.for_record(record)
    eva = ToolExecutor.for_record(record, backend=eva_tools)
    pairs = zip(ours.replay(record.trace), eva.replay(record.trace), strict=True)
    differ = [
        f"{i}: {a} != {b}"
        for i, (a, b) in enumerate(pairs)
        if _without_messages(a) != _without_messages(b)
    ]
    assert differ == []
    assert ours.db == eva.db


def _without_messages(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_messages(v) for k, v in value.items() if k != "message"}
    if isinstance(value, list):
        return [_without_messages(v) for v in value]
    return value


def test_records_are_found() -> None:
    assert len(_record_ids()) >= 6
