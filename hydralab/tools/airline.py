"""Airline domain tools (SkyWay), written for hydralab after EVA's documented semantics.

Every tool is a plain function ``tool(params, db, call_index) -> dict``: it validates its
parameters, reads and mutates the scenario DB in place, and returns a JSON-able dict that always
carries ``status`` (``"success"`` or ``"error"``; errors add ``error_type`` and ``message``).
The tools are deterministic: no clock, no randomness; generated ids derive from the reservation
and, for refunds and transfers, from ``call_index`` (the 1-based count of calls to *that* tool).
Responses are snapshots (deep copies), never live references into the DB.

The structured behaviour is EVA's (its airline tools, ``eva/assistant/tools/airline_tools.py``):
which parameters are required and how they are checked and coerced, each ``status`` and
``error_type`` (business misses of a reservation, flight status or disruption are ``not_found``),
the order of the checks, the response keys and the DB effects (seat numbers, credit and voucher
codes, which seat counts move), so EVA's expected scenario DBs replay exactly and a model under
test meets the same answers as under EVA. ``tests/test_tools_vs_eva.py`` replays the shared
records' calls, perturbed variants and DB-derived probes through both. Only the ``message``
texts are hydralab's own.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FARE_CLASSES", "PARAMETER_ERROR_TYPES", "TOOLS"]

JSON = dict[str, Any]

FARE_CLASSES: tuple[str, ...] = (
    "basic_economy",
    "main_cabin",
    "premium_economy",
    "business",
    "first",
)
REBOOKING_TYPES = (
    "voluntary",
    "same_day",
    "irrops_cancellation",
    "irrops_delay",
    "irrops_schedule_change",
    "missed_flight_passenger_fault",
    "missed_connection_airline_fault",
)
CANCELLATION_REASONS = (
    "voluntary",
    "irrops_refund",
    "24_hour_rule",
    "schedule_unacceptable",
    "medical",
    "bereavement",
)
SEAT_PREFERENCES = ("window", "aisle", "middle", "no_preference")
MEAL_TYPES = (
    "vegetarian",
    "vegan",
    "kosher",
    "halal",
    "gluten_free",
    "diabetic",
    "low_sodium",
    "child",
    "hindu",
    "standard",
    "none",
)
CREDIT_REASONS = (
    "cancellation_non_refundable",
    "fare_difference_negative",
    "service_recovery",
    "goodwill",
    "downgrade_compensation",
)
VOUCHER_REASONS = (
    "delay_over_2_hours",
    "delay_over_4_hours",
    "cancellation_wait_same_day",
    "irrops_overnight",
)
REFUND_TYPES = ("full_fare", "partial_fare", "taxes_only", "ancillary_fees")

_MEAL_VOUCHER_USD = {
    "delay_over_2_hours": 12,
    "delay_over_4_hours": 15,
    "cancellation_wait_same_day": 15,
    "irrops_overnight": 25,
}
_VOLUNTARY_FEE_USD = {
    "basic_economy": 75,
    "main_cabin": 75,
    "premium_economy": 75,
    "business": 0,
    "first": 0,
}
_SAME_DAY_FEE_USD = 75
_SAME_DAY_BASIC_FEE_USD = 199
_NON_REFUNDABLE_CANCEL_FEE_USD = 100
_FEE_FREE_CANCELLATIONS = frozenset({"irrops_refund", "24_hour_rule"})
_SEAT_BASE_ROW = {
    "first": 1,
    "business": 5,
    "premium_economy": 10,
    "main_cabin": 20,
    "basic_economy": 25,
}
_SEAT_LETTER = {"window": "A", "middle": "B", "aisle": "C"}
_BOOKABLE_STATUSES = frozenset({"scheduled", "on_time", "delayed"})
_MAX_HOTEL_NIGHTS = 3
_MAX_BAGS = 5


# --------------------------------------------------------------------------------------------
# Parameter validation
#
# The rules are EVA's (pydantic models in lax mode, read through its error mapping), so a call
# gets the same status and error type from hydralab as from EVA:
# - every parameter the agent config marks required is required (no silent defaults);
# - strings are taken as given: no trimming, no case folding. Codes must match their pattern
#   exactly; confirmation numbers and airport codes (and the flight number of the two lookups)
#   are upper-cased after the check, journey and passenger ids are not. Enum values are exact.
# - numbers and booleans coerce the way pydantic's lax mode does ("3" -> 3, True -> 1,
#   "yes" -> True);
# - when several parameters are wrong, the first one with its own error type decides
#   (``invalid_confirmation_number_format``, ``invalid_meal_type`` ... also for a missing one);
#   otherwise the first error is an ``invalid_parameter``.
# --------------------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class _Field:
    """One parameter: how to check it, which error type a bad (or missing) value gives."""

    name: str
    kind: str  # text | code | enum | int | float | bool | code_list
    required: bool = True
    pattern: str = ""
    describe: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    error_type: str = "invalid_parameter"
    upper: bool = False


def _code(
    name: str,
    pattern: str,
    describe: str,
    error_type: str,
    *,
    required: bool = True,
    upper: bool = False,
) -> _Field:
    return _Field(
        name,
        "code",
        required=required,
        pattern=pattern,
        describe=describe,
        error_type=error_type,
        upper=upper,
    )


def _enum(name: str, choices: tuple[str, ...], error_type: str, *, required: bool = True) -> _Field:
    return _Field(name, "enum", required=required, choices=choices, error_type=error_type)


_CONF = _code(
    "confirmation_number",
    r"[A-Za-z0-9]{6}",
    "6 letters or digits",
    "invalid_confirmation_number_format",
    upper=True,
)
_FLIGHT_PATTERN = r"[A-Za-z]{2,3}\d{1,4}"
_FLIGHT_DESC = "2-3 letters then 1-4 digits (e.g. SK621)"
# The lookups upper-case the flight number; the leg selectors of the write tools compare it
# as given (EVA's behaviour: "sk621" finds no leg there).
_FLIGHT = _code(
    "flight_number", _FLIGHT_PATTERN, _FLIGHT_DESC, "invalid_flight_number_format", upper=True
)
_FLIGHT_OPT = _code(
    "flight_number", _FLIGHT_PATTERN, _FLIGHT_DESC, "invalid_flight_number_format", required=False
)
_JOURNEY_PATTERN = r"FL_(?:[A-Za-z]{2,3}\d{1,4}_)+\d{8}"
_JOURNEY_DESC = "FL_<flight>_<YYYYMMDD> (e.g. FL_SK621_20260320)"
_PAX_PATTERN = r"PAX\d+"
_PAX_DESC = "PAX followed by digits (e.g. PAX001)"


def _journey(name: str) -> _Field:
    return _code(name, _JOURNEY_PATTERN, _JOURNEY_DESC, "invalid_journey_id_format")


def _date(name: str) -> _Field:
    # Only the shape is checked (as EVA does): "2026-02-30" is well-formed and simply not found.
    return _code(name, r"\d{4}-\d{2}-\d{2}", "a date YYYY-MM-DD", "invalid_date_format")


def _airport(name: str) -> _Field:
    return _code(
        name,
        r"[A-Za-z]{3}",
        "a 3-letter airport code (e.g. JFK)",
        "invalid_airport_code_format",
        upper=True,
    )


_PAX = _code("passenger_id", _PAX_PATTERN, _PAX_DESC, "invalid_passenger_id_format")


def _text(name: str) -> _Field:
    return _Field(name, "text")


_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")
_TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_WORDS = frozenset({"0", "off", "f", "false", "n", "no"})


def _as_int(value: Any) -> int | None:
    """pydantic's lax int: bools, integral floats and integer strings ("3", " 3 ", "3.0")."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.fullmatch(text):
            return int(text.split(".")[0].replace("_", ""))
    return None


def _as_float(value: Any) -> float | None:
    """pydantic's lax float: bools, ints, floats and ASCII number strings ("2.5", "1e3")."""
    if isinstance(value, bool | int | float):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str) and value.isascii():
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _as_bool(value: Any) -> bool | None:
    """pydantic's lax bool: bools, 0/1 and the words true/false, yes/no, on/off, t/f, y/n."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
    return None


def _check_code(field: _Field, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(field.pattern, value):
        raise _Invalid(
            field.error_type, f"Invalid {field.name} {value!r}: must be {field.describe}"
        )
    return value.upper() if field.upper else value


def _check_number(field: _Field, value: Any) -> int | float:
    number: int | float | None = _as_int(value) if field.kind == "int" else _as_float(value)
    what = "an integer" if field.kind == "int" else "a number"
    if number is None:
        raise _Invalid(field.error_type, f"Invalid {field.name} {value!r}: must be {what}")
    low, high = field.minimum, field.maximum
    if (low is not None and not number >= low) or (high is not None and not number <= high):
        bounds = f"between {low:g} and {high:g}" if low is not None and high is not None else ""
        bounds = bounds or (f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise _Invalid(field.error_type, f"Invalid {field.name} {value!r}: must be {bounds}")
    if field.positive and not number > 0:  # also rejects NaN
        raise _Invalid(field.error_type, f"Invalid {field.name} {value!r}: must be greater than 0")
    return number


def _check(field: _Field, value: Any) -> Any:
    kind = field.kind
    if kind == "text":
        if not isinstance(value, str):
            raise _Invalid(field.error_type, f"Invalid {field.name} {value!r}: must be a string")
        return value
    if kind == "code":
        return _check_code(field, value)
    if kind == "enum":
        if not isinstance(value, str) or value not in field.choices:
            raise _Invalid(
                field.error_type,
                f"Invalid {field.name} {value!r}: must be one of {', '.join(field.choices)}",
            )
        return value
    if kind in ("int", "float"):
        return _check_number(field, value)
    if kind == "bool":
        flag = _as_bool(value)
        if flag is None:
            raise _Invalid(
                field.error_type, f"Invalid {field.name} {value!r}: must be true or false"
            )
        return flag
    if kind == "code_list":
        if not isinstance(value, list | tuple):
            raise _Invalid(field.error_type, f"Invalid {field.name} {value!r}: must be a list")
        return [_check_code(field, item) for item in value]
    raise AssertionError(f"unknown field kind {kind}")


def _validate(params: Mapping[str, Any], fields: tuple[_Field, ...]) -> JSON:
    """Check ``params`` against ``fields``; unknown keys are ignored (like EVA's models).

    ``None`` counts as absent: an optional parameter becomes ``None``, a required one is an
    error. Every field is checked; the first error with a specific type wins (EVA's rule).
    """
    clean: JSON = {}
    errors: list[_Invalid] = []
    for field in fields:
        value = params.get(field.name)
        if value is None:
            if field.required:
                what = f", must be {field.describe}" if field.describe else ""
                errors.append(
                    _Invalid(
                        field.error_type,
                        f"Invalid or missing parameter '{field.name}': field required{what}",
                    )
                )
            clean[field.name] = None
            continue
        try:
            clean[field.name] = _check(field, value)
        except _Invalid as exc:
            errors.append(exc)
    if errors:
        raise next((e for e in errors if e.error_type != "invalid_parameter"), errors[0])
    return clean


# --------------------------------------------------------------------------------------------
# DB helpers
# --------------------------------------------------------------------------------------------


def _error(error_type: str, message: str) -> JSON:
    return {"status": "error", "error_type": error_type, "message": message}


def _find_reservation(db: Mapping[str, Any], confirmation_number: str) -> JSON | None:
    found = db.get("reservations", {}).get(confirmation_number)
    return found if isinstance(found, dict) and found else None


def _reservation(db: Mapping[str, Any], confirmation_number: str) -> JSON:
    found = _find_reservation(db, confirmation_number)
    if found is None:
        raise _Invalid("not_found", f"Reservation {confirmation_number} not found")
    return found


def _booking(reservation: Mapping[str, Any], journey_id: str) -> JSON:
    """The reservation's booking for ``journey_id``: the first live one, else the first one.

    A cancelled booking is still returned when it is the only one (EVA's lookup); the tools
    that must not touch it (``cancel_reservation``) check its status themselves.
    """
    matches: list[JSON] = [
        b for b in reservation.get("bookings", []) if b.get("journey_id") == journey_id
    ]
    if not matches:
        raise _Invalid("journey_not_found", f"Journey {journey_id} not found in reservation")
    return next((b for b in matches if b.get("status") != "cancelled"), matches[0])


def _booking_segments(
    booking: Mapping[str, Any], journey_id: str, flight_number: str | None
) -> list[JSON]:
    segments: list[JSON] = list(booking.get("segments", []))
    if flight_number:
        picked = [s for s in segments if s.get("flight_number") == flight_number]
        if not picked:
            raise _Invalid(
                "flight_not_found", f"Flight {flight_number} not found in journey {journey_id}"
            )
        return picked
    if len(segments) == 1:
        return segments
    raise _Invalid(
        "flight_number_required",
        f"Journey {journey_id} has {len(segments)} segments; flight_number is required",
    )


def _journey_seats(journey: Mapping[str, Any]) -> dict[str, int]:
    """Seats per fare class for a whole journey: the tightest segment decides."""
    seats: dict[str, int] = {}
    for index, segment in enumerate(journey.get("segments", [])):
        available = segment.get("available_seats", {})
        for fare_class in FARE_CLASSES:
            count = available.get(fare_class) or 0
            seats[fare_class] = count if index == 0 else min(seats[fare_class], count)
    return {fc: seats.get(fc, 0) for fc in FARE_CLASSES}


def _booking_fare(booking: Mapping[str, Any]) -> Any:
    if "fare_paid" in booking:
        return booking["fare_paid"]
    return sum(s.get("fare_paid", 0) for s in booking.get("segments", []))


def _adjust_seats(journey: Mapping[str, Any] | None, fare_class: str, delta: int) -> None:
    if not journey:
        return
    for segment in journey.get("segments", []):
        available = segment.setdefault("available_seats", {})
        available[fare_class] = (available.get(fare_class) or 0) + delta


def _current_date(db: Mapping[str, Any]) -> str:
    date = db.get("_current_date")
    if not isinstance(date, str):
        raise _Invalid("execution_error", "The scenario DB has no _current_date")
    return date


ToolFn = Callable[[Mapping[str, Any], dict[str, Any], int], JSON]


_TOOL_FIELDS: dict[str, tuple[_Field, ...]] = {}


def _tool(*fields: _Field) -> Callable[[Callable[[JSON, dict[str, Any], int], JSON]], ToolFn]:
    """Wrap a tool body with parameter validation and typed error handling."""

    def wrap(body: Callable[[JSON, dict[str, Any], int], JSON]) -> ToolFn:
        _TOOL_FIELDS[body.__name__] = fields

        def run(params: Mapping[str, Any], db: dict[str, Any], call_index: int) -> JSON:
            try:
                return body(_validate(params, fields), db, call_index)
            except _Invalid as exc:
                return _error(exc.error_type, exc.message)

        run.__name__ = body.__name__
        run.__doc__ = body.__doc__
        return run

    return wrap


# --------------------------------------------------------------------------------------------
# Read tools
# --------------------------------------------------------------------------------------------


@_tool(_CONF, _text("last_name"))
def get_reservation(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Authenticate by confirmation number + last name; return the reservation.

    The last name is compared case-insensitively but otherwise as given (EVA: no trimming; an
    empty last name skips the check).
    """
    conf = p["confirmation_number"]
    reservation = _reservation(db, conf)
    last_name: str = p["last_name"]
    if last_name and not any(
        str(x.get("last_name", "")).lower() == last_name.lower()
        for x in reservation.get("passengers", [])
    ):
        raise _Invalid("authentication_failed", f"Last name does not match reservation {conf}")
    db.setdefault("session", {}).update(
        {"confirmation_number": conf, "last_name": last_name.lower()}
    )
    result = copy.deepcopy(reservation)
    journeys = db.get("journeys", {})
    for booking in result.get("bookings", []):
        journey = journeys.get(booking.get("journey_id")) or {}
        by_flight = {s.get("flight_number"): s for s in journey.get("segments", [])}
        for segment in booking.get("segments", []):
            source = by_flight.get(segment.get("flight_number"), {})
            for key in ("origin", "destination", "scheduled_departure", "scheduled_arrival"):
                if key in source:
                    segment[key] = source[key]
    result.get("bookings", []).sort(
        key=lambda b: ((b.get("segments") or [{}])[0].get("date", ""), b.get("journey_id", ""))
    )
    return {"status": "success", "reservation": result}


@_tool(_FLIGHT, _date("flight_date"))
def get_flight_status(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Look up a flight (any segment's number) on a date; return its journey with live status."""
    number, date = p["flight_number"], p["flight_date"]
    compact = date.replace("-", "")
    journeys = db.get("journeys", {})
    journey = journeys.get(f"FL_{number}_{compact}")
    if journey is None:
        for candidate in journeys.values():
            if str(candidate.get("date", "")).replace("-", "") == compact and any(
                str(s.get("flight_number", "")).upper() == number
                for s in candidate.get("segments", [])
            ):
                journey = candidate
                break
    if journey is None:
        raise _Invalid("not_found", f"Flight {number} not found for date {date}")
    return {"status": "success", "journey": copy.deepcopy(journey)}


@_tool(_FLIGHT, _date("date"))
def get_disruption_info(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Disruption record (cause, IRROPS flag, entitlements) for a flight on a date."""
    number, date = p["flight_number"], p["date"]
    found = db.get("disruptions", {}).get(f"{number}_{date}")
    if not found:
        raise _Invalid("not_found", f"No disruption found for flight {number} on {date}")
    return {"status": "success", "disruption": copy.deepcopy(found)}


@_tool(
    _airport("origin"),
    _airport("destination"),
    _date("date"),
    _Field("passenger_count", "int", minimum=1),
    _enum("fare_class", (*FARE_CLASSES, "any"), "invalid_fare_class"),
)
def search_rebooking_options(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Bookable journeys for a route and date with enough seats in the fare class.

    ``fare`` is the journey fare of that class (``None`` when it has seats but no fare); with
    ``"any"`` it is the cheapest priced class with enough seats.
    """
    count, wanted = p["passenger_count"], p["fare_class"]
    options: list[JSON] = []
    for journey_id, journey in db.get("journeys", {}).items():
        if (journey.get("origin"), journey.get("destination"), journey.get("date")) != (
            p["origin"],
            p["destination"],
            p["date"],
        ):
            continue
        if journey.get("status") not in _BOOKABLE_STATUSES or not journey.get("bookable", False):
            continue
        seats = _journey_seats(journey)
        if wanted == "any":
            if not any(n >= count for n in seats.values()):
                continue
        elif seats[wanted] < count:
            continue
        fares = journey.get("fares", {})
        fare_class = wanted
        if wanted == "any":
            priced = [fc for fc in FARE_CLASSES if seats[fc] >= count and fares.get(fc) is not None]
            if priced:  # the cheapest; on a tie the lower class
                fare_class = min(priced, key=lambda fc: fares[fc])
        segments = journey.get("segments", [])
        options.append(
            {
                "journey_id": journey_id,
                "origin": journey.get("origin"),
                "destination": journey.get("destination"),
                "num_stops": journey.get("num_stops", 0),
                "total_duration_minutes": journey.get("total_duration_minutes"),
                "departure_time": segments[0].get("scheduled_departure") if segments else None,
                "arrival_time": segments[-1].get("scheduled_arrival") if segments else None,
                "segments": copy.deepcopy(segments),
                "available_seats": seats,
                "fare": fares.get(fare_class),
            }
        )
    options.sort(key=lambda o: o["departure_time"] or "")  # stable: DB order on a tie
    return {
        "status": "success",
        "options": options,
        "count": len(options),
        "message": f"{len(options)} flight(s) found",
    }


# --------------------------------------------------------------------------------------------
# Write tools
# --------------------------------------------------------------------------------------------


def _change_fee(rebooking_type: str, original_fare_class: str, waived: bool) -> int:
    if waived or "irrops" in rebooking_type:
        return 0
    if rebooking_type == "same_day":
        return (
            _SAME_DAY_BASIC_FEE_USD if original_fare_class == "basic_economy" else _SAME_DAY_FEE_USD
        )
    return _VOLUNTARY_FEE_USD.get(original_fare_class, _SAME_DAY_FEE_USD)


@_tool(
    _CONF,
    _journey("journey_id"),
    _journey("new_journey_id"),
    _enum("rebooking_type", REBOOKING_TYPES, "invalid_rebooking_type"),
    _Field("waive_change_fee", "bool"),
    _enum("new_fare_class", FARE_CLASSES, "invalid_fare_class", required=False),
    _FLIGHT_OPT,
)
def rebook_flight(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Move a booked journey (or one leg of it) to another journey; price the change."""
    conf, journey_id, new_id = p["confirmation_number"], p["journey_id"], p["new_journey_id"]
    reservation = _reservation(db, conf)
    booking = _booking(reservation, journey_id)
    journeys = db.get("journeys", {})
    new_journey = journeys.get(new_id)
    if not new_journey:
        raise _Invalid("flight_not_found", f"Flight {new_id} not found")
    if not new_journey.get("bookable", True):
        raise _Invalid("not_bookable", f"Flight {new_id} is not available for booking")

    original_class = booking.get("fare_class", "main_cabin")
    target_class = p["new_fare_class"] or original_class
    rebooking_type: str = p["rebooking_type"]
    is_irrops = "irrops" in rebooking_type
    waived: bool = p["waive_change_fee"]
    change_fee = _change_fee(rebooking_type, original_class, waived)

    leg = p["flight_number"]
    replaced = _booking_segments(booking, journey_id, leg)[0] if leg else None
    old_fare = replaced.get("fare_paid", 0) if replaced is not None else _booking_fare(booking)
    new_fare = new_journey.get("fares", {}).get(target_class)
    if new_fare is None:
        raise _Invalid(
            "fare_class_not_available",
            f"Fare class '{target_class}' is not available on flight {new_id}",
        )
    if _journey_seats(new_journey).get(target_class, 0) <= 0:
        raise _Invalid(
            "no_seats_available", f"No seats available in {target_class} on flight {new_id}"
        )

    fare_difference = new_fare - old_fare
    credit_due = max(0, -fare_difference)
    total_collected = 0 if is_irrops else change_fee + max(0, fare_difference)

    # EVA cancels the *first* booking of the journey, which after a partial rebook can be the
    # already cancelled original rather than ``booking``; kept so EVA's expected DBs replay.
    first = next(b for b in reservation["bookings"] if b.get("journey_id") == journey_id)
    first["status"] = "cancelled"
    old_segments = booking.get("segments", [])
    new_segments: list[JSON] = []
    for index, segment in enumerate(new_journey.get("segments", [])):
        if is_irrops and replaced is None and index < len(old_segments):
            paid = old_segments[index].get("fare_paid", 0)  # protected passengers keep their fare
        elif is_irrops and replaced is not None and len(new_journey.get("segments", [])) == 1:
            paid = replaced.get("fare_paid", 0)
        else:
            paid = segment.get("fares", {}).get(target_class, 0)
        new_segments.append(
            {
                "flight_number": segment.get("flight_number"),
                "date": new_journey.get("date"),
                "fare_paid": paid,
                "seat": None,
                "bags_checked": 0,
                "meal_request": None,
            }
        )
    reservation["bookings"].append(
        {
            "journey_id": new_id,
            "fare_class": target_class,
            "fare_paid": old_fare if is_irrops else new_fare,
            "status": "confirmed",
            "segments": new_segments,
        }
    )
    kept_info: list[JSON] = []
    if leg:
        kept = [s for s in old_segments if s.get("flight_number") != leg]
        if kept:
            reservation["bookings"].append(
                {
                    "journey_id": journey_id,
                    "fare_class": original_class,
                    "fare_paid": sum(s.get("fare_paid", 0) for s in kept),
                    "status": "confirmed",
                    "segments": copy.deepcopy(kept),
                }
            )
            kept_info = [
                {
                    "flight_number": s.get("flight_number"),
                    "origin": s.get("origin"),
                    "destination": s.get("destination"),
                    "fare_paid": s.get("fare_paid"),
                    "seat": s.get("seat"),
                }
                for s in kept
            ]
    reservation["status"] = "changed"
    _adjust_seats(new_journey, target_class, -1)
    # Like EVA, every segment of the old journey gets its seat back (also on a partial rebook).
    _adjust_seats(journeys.get(booking.get("journey_id")), original_class, +1)

    segments = new_journey.get("segments", [])
    response: JSON = {
        "status": "success",
        "confirmation_number": conf,
        "new_journey": {
            "journey_id": new_id,
            "origin": new_journey.get("origin"),
            "destination": new_journey.get("destination"),
            "departure": segments[0].get("scheduled_departure") if segments else None,
            "arrival": segments[-1].get("scheduled_arrival") if segments else None,
            "num_stops": new_journey.get("num_stops", 0),
            "segments": copy.deepcopy(segments),
        },
        "cost_summary": {
            "original_fare_class": original_class,
            "new_fare_class": target_class,
            "cabin_changed": original_class != target_class,
            "change_fee": change_fee,
            "fare_difference": fare_difference,
            "credit_due": credit_due,
            "total_collected": total_collected,
            "fee_waived": is_irrops or waived,
        },
        "message": f"Successfully rebooked to flight {new_id}",
    }
    if leg and replaced is not None:
        response["partial_rebook"] = True
        response["replaced_segment"] = {
            "flight_number": leg,
            "origin": replaced.get("origin"),
            "destination": replaced.get("destination"),
            "fare_paid": replaced.get("fare_paid"),
        }
        response["kept_segments"] = kept_info
    return response


@_tool(
    _CONF,
    _journey("journey_id"),
    _Field(
        "passenger_ids",
        "code_list",
        pattern=_PAX_PATTERN,
        describe=_PAX_DESC,
        error_type="invalid_passenger_id_format",
    ),
)
def add_to_standby(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Put passengers on a journey's standby list (recorded on journey and reservation).

    As in EVA the journey is checked first; an unknown reservation is not an error (nothing is
    recorded on it), unknown passenger ids of a known one are ``invalid_passengers``.
    """
    conf, journey_id, pax_ids = p["confirmation_number"], p["journey_id"], p["passenger_ids"]
    journey = db.get("journeys", {}).get(journey_id)
    if not journey:
        raise _Invalid("flight_not_found", f"Flight {journey_id} not found")
    if journey.get("status") == "cancelled":
        raise _Invalid(
            "flight_cancelled", f"Flight {journey_id} is cancelled; standby is not possible"
        )
    reservation = _find_reservation(db, conf)
    if reservation is not None and pax_ids:
        known = {x.get("passenger_id") for x in reservation.get("passengers", [])}
        unknown = [pax_id for pax_id in pax_ids if pax_id not in known]
        if unknown:
            raise _Invalid("invalid_passengers", f"Unknown passenger ID(s): {', '.join(unknown)}")
    flight_list = journey.setdefault("standby_list", [])
    position = len(flight_list) + len(pax_ids)
    if reservation is not None:
        reservation.setdefault("standby_list", []).append(
            {
                "journey_id": journey_id,
                "passenger_ids": list(pax_ids),
                "position": position,
                "status": "pending",
            }
        )
    for pax_id in pax_ids:
        flight_list.append(
            {"confirmation_number": conf, "passenger_id": pax_id, "position": len(flight_list) + 1}
        )
    return {
        "status": "success",
        "confirmation_number": conf,
        "journey_id": journey_id,
        "standby_list_position": position,
        "message": f"Added {len(pax_ids)} passenger(s) to standby list",
    }


@_tool(
    _CONF,
    _PAX,
    _journey("journey_id"),
    _enum("seat_preference", SEAT_PREFERENCES, "invalid_seat_preference"),
    _FLIGHT_OPT,
)
def assign_seat(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Assign a seat on a booked leg from the passenger's preference.

    The seat is deterministic, as in EVA: row = cabin base row + the passenger id's last three
    digits, letter A/B/C for window/middle/aisle (``no_preference`` takes C). The leg must
    have seats left in the booking's cabin and, unless ``no_preference``, the seat type.
    """
    conf, pax_id, journey_id = p["confirmation_number"], p["passenger_id"], p["journey_id"]
    preference: str = p["seat_preference"]
    booking = _booking(_reservation(db, conf), journey_id)
    segment = _booking_segments(booking, journey_id, p["flight_number"])[0]
    flight_number = p["flight_number"] or str(segment.get("flight_number", ""))
    fare_class = booking.get("fare_class", "main_cabin")
    journey = db.get("journeys", {}).get(journey_id) or {}
    leg = next(
        (s for s in journey.get("segments", []) if s.get("flight_number") == flight_number), None
    )
    if leg:
        if (leg.get("available_seats", {}).get(fare_class) or 0) <= 0:
            raise _Invalid("no_seats_available", f"No seats available in {fare_class} fare class")
        types: list[str] = ["window", "aisle", "middle"]
        if leg.get("available_seat_types") and isinstance(leg["available_seat_types"], dict):
            types = list(leg["available_seat_types"].get(fare_class, types))
        if preference != "no_preference" and preference not in types:
            raise _Invalid(
                "seat_type_unavailable",
                f"No {preference} seats available in {fare_class} on this flight. "
                f"Available types: {', '.join(types) or 'none'}",
            )
    digits = pax_id[-3:]
    if not digits.isdecimal():  # EVA's tool fails on such an id (int("AX1")): same error type
        raise _Invalid("execution_error", f"Cannot derive a seat row from passenger id {pax_id!r}")
    row = _SEAT_BASE_ROW.get(fare_class, 20) + int(digits)
    seat = f"{row}{_SEAT_LETTER.get(preference, 'C')}"
    segment["seat"] = seat
    return {
        "status": "success",
        "confirmation_number": conf,
        "passenger_id": pax_id,
        "journey_id": journey_id,
        "flight_number": flight_number,
        "seat_assigned": seat,
        "fare_class": fare_class,
        "preference": preference,
        "message": f"Seat {seat} ({preference}) successfully assigned",
    }


def _target_segments(
    booking: dict[str, Any], journey_id: str, flight_number: str | None
) -> list[dict[str, Any]]:
    """One leg (by flight number) or every leg of the booking's journey."""
    if flight_number:
        return _booking_segments(booking, journey_id, flight_number)
    segments: list[dict[str, Any]] = booking.get("segments", [])
    return segments


@_tool(
    _CONF,
    _journey("journey_id"),
    _Field("num_bags", "int", minimum=0, maximum=_MAX_BAGS, error_type="invalid_bag_count"),
    _FLIGHT_OPT,
)
def add_baggage_allowance(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Set the checked-bag count on one leg, or on every leg of the journey."""
    conf, journey_id, bags = p["confirmation_number"], p["journey_id"], p["num_bags"]
    booking = _booking(_reservation(db, conf), journey_id)
    targets = _target_segments(booking, journey_id, p["flight_number"])
    for segment in targets:
        segment["bags_checked"] = bags
    return {
        "status": "success",
        "confirmation_number": conf,
        "journey_id": journey_id,
        "bags_checked": bags,
        "message": f"Checked bags set to {bags}",
    }


@_tool(
    _CONF,
    _PAX,
    _journey("journey_id"),
    _enum("meal_type", MEAL_TYPES, "invalid_meal_type"),
    _FLIGHT_OPT,
)
def add_meal_request(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Record a special meal on one leg, or on every leg of the journey.

    Like EVA, the passenger id is only format-checked, not looked up on the reservation.
    """
    conf, pax_id, journey_id, meal = (
        p["confirmation_number"],
        p["passenger_id"],
        p["journey_id"],
        p["meal_type"],
    )
    booking = _booking(_reservation(db, conf), journey_id)
    targets = _target_segments(booking, journey_id, p["flight_number"])
    for segment in targets:
        segment["meal_request"] = meal
    return {
        "status": "success",
        "confirmation_number": conf,
        "passenger_id": pax_id,
        "journey_id": journey_id,
        "meal_type": meal,
        "message": f"{meal} meal requested",
    }


@_tool(
    _CONF,
    _PAX,
    _Field("amount", "float", positive=True),
    _enum("credit_reason", CREDIT_REASONS, "invalid_credit_reason"),
)
def issue_travel_credit(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Issue a 12-month travel credit (code ``TC<conf><first 3 chars of passenger id>``)."""
    conf, pax_id, amount = p["confirmation_number"], p["passenger_id"], p["amount"]
    _reservation(db, conf)
    today = _current_date(db)
    # EVA's code keeps only the "PAX" prefix, so a second credit on one reservation replaces
    # the first; kept as is so EVA's expected DBs replay.
    code = f"TC{conf}{pax_id[:3]}"
    db.setdefault("travel_credits", {})[code] = {
        "credit_code": code,
        "confirmation_number": conf,
        "passenger_id": pax_id,
        "amount": amount,
        "credit_reason": p["credit_reason"],
        "issued_date": today,
        "expiry_date": f"{int(today[:4]) + 1}{today[4:]}",
        "status": "active",
    }
    return {
        "status": "success",
        "confirmation_number": conf,
        "passenger_id": pax_id,
        "credit_code": code,
        "amount": amount,
        "valid_months": 12,
        "message": f"Travel credit of ${amount:g} issued with code {code}",
    }


@_tool(_CONF, _PAX, _Field("num_nights", "int", minimum=1))
def issue_hotel_voucher(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Issue an airport-area hotel voucher (at most three nights)."""
    conf, pax_id, nights = p["confirmation_number"], p["passenger_id"], p["num_nights"]
    _reservation(db, conf)
    if nights > _MAX_HOTEL_NIGHTS:
        raise _Invalid(
            "exceeds_authority", f"Hotel vouchers cover at most {_MAX_HOTEL_NIGHTS} nights"
        )
    code = f"HOTEL-{conf}"
    db.setdefault("hotel_vouchers", {})[code] = {
        "voucher_code": code,
        "confirmation_number": conf,
        "passenger_id": pax_id,
        "num_nights": nights,
        "issued_date": _current_date(db),
        "status": "active",
    }
    return {
        "status": "success",
        "confirmation_number": conf,
        "passenger_id": pax_id,
        "voucher_code": code,
        "number_of_nights": nights,
        "valid_at": "Any hotel in the airport area",
        "message": f"Hotel voucher {code} issued for {nights} night(s)",
    }


@_tool(_CONF, _PAX, _enum("voucher_reason", VOUCHER_REASONS, "invalid_voucher_reason"))
def issue_meal_voucher(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Issue a meal voucher worth $12-$25 depending on the reason."""
    conf, pax_id, reason = p["confirmation_number"], p["passenger_id"], p["voucher_reason"]
    _reservation(db, conf)
    amount = _MEAL_VOUCHER_USD[reason]
    code = f"MEAL-{conf}-{pax_id[:4]}"
    db.setdefault("meal_vouchers", {})[code] = {
        "voucher_code": code,
        "confirmation_number": conf,
        "passenger_id": pax_id,
        "amount": amount,
        "voucher_reason": reason,
        "issued_date": _current_date(db),
        "status": "active",
    }
    return {
        "status": "success",
        "confirmation_number": conf,
        "passenger_id": pax_id,
        "voucher_code": code,
        "amount": amount,
        "valid_at": "Airport terminal restaurants",
        "message": f"${amount} meal voucher issued with code {code}",
    }


@_tool(
    _CONF,
    _journey("journey_id"),
    _enum("cancellation_reason", CANCELLATION_REASONS, "invalid_cancellation_reason"),
)
def cancel_reservation(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Cancel one booked journey; price the refund or travel credit it leaves."""
    conf, journey_id, reason = p["confirmation_number"], p["journey_id"], p["cancellation_reason"]
    reservation = _reservation(db, conf)
    booking = _booking(reservation, journey_id)
    if booking.get("status") == "cancelled":
        raise _Invalid("already_cancelled", f"Journey {journey_id} is already cancelled")
    fare = _booking_fare(booking)
    refundable = reason in _FEE_FREE_CANCELLATIONS or reservation.get("fare_type") == "refundable"
    fee = 0 if refundable else _NON_REFUNDABLE_CANCEL_FEE_USD
    refund = max(0, fare - fee) if refundable else 0
    credit = 0 if refundable else max(0, fare - fee)
    booking["status"] = "cancelled"
    _adjust_seats(
        db.get("journeys", {}).get(journey_id), booking.get("fare_class", "main_cabin"), +1
    )
    all_cancelled = all(b.get("status") == "cancelled" for b in reservation.get("bookings", []))
    if all_cancelled:
        reservation["status"] = "cancelled"
    return {
        "status": "success",
        "confirmation_number": conf,
        "journey_id": journey_id,
        "is_refundable": refundable,
        "cancellation_fee": fee,
        "refund_amount_eligible": refund,
        "credit_amount_eligible": credit,
        "reservation_status": "cancelled" if all_cancelled else "active",
        "message": f"Journey {journey_id} cancelled successfully",
    }


@_tool(
    _CONF,
    _Field("refund_amount", "float", positive=True),
    _enum("refund_type", REFUND_TYPES, "invalid_refund_type"),
)
def process_refund(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Start a refund to the original payment (id ``REF-<conf>-<call_index:03>``)."""
    conf, amount, kind = p["confirmation_number"], p["refund_amount"], p["refund_type"]
    _reservation(db, conf)
    refund_id = f"REF-{conf}-{call_index:03d}"
    db.setdefault("refunds", {})[refund_id] = {
        "refund_id": refund_id,
        "confirmation_number": conf,
        "refund_amount": amount,
        "refund_type": kind,
        "processing_days": 7,
        "initiated_date": _current_date(db),
        "status": "processing",
    }
    return {
        "status": "success",
        "confirmation_number": conf,
        "refund_id": refund_id,
        "refund_amount": amount,
        "refund_type": kind,
        "processing_days": 7,
        "message": f"${amount} refund initiated, processing time 7 business days",
    }


@_tool(_CONF, _text("transfer_reason"), _text("issue_summary"))
def transfer_to_agent(p: JSON, db: dict[str, Any], call_index: int) -> JSON:
    """Hand the call to a human agent (no DB change; id ``TRF-<conf>-<call_index:03>``)."""
    conf = p["confirmation_number"]
    _reservation(db, conf)
    return {
        "status": "success",
        "transfer_id": f"TRF-{conf}-{call_index:03d}",
        "confirmation_number": conf,
        "transfer_reason": p["transfer_reason"],
        "issue_summary": p["issue_summary"],
        "estimated_wait": "2-3 minutes",
        "message": "Transferring the caller to a live agent",
    }


TOOLS: dict[str, ToolFn] = {
    fn.__name__: fn
    for fn in (
        get_reservation,
        get_flight_status,
        get_disruption_info,
        search_rebooking_options,
        rebook_flight,
        add_to_standby,
        assign_seat,
        add_baggage_allowance,
        add_meal_request,
        issue_travel_credit,
        issue_hotel_voucher,
        issue_meal_voucher,
        cancel_reservation,
        process_refund,
        transfer_to_agent,
    )
}

#: Error types a call gets for a malformed call (missing / mistyped / out-of-format parameter),
#: as opposed to business errors (reservation not found, no seats ...). EVA's
#: ``tool_call_validity`` counts these (with the executor's own types) as invalid calls.
PARAMETER_ERROR_TYPES: frozenset[str] = frozenset(
    {"invalid_parameter"} | {f.error_type for fields in _TOOL_FIELDS.values() for f in fields}
)
