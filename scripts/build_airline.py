# ruff: noqa: E501  (the tables and the scenario prose read better unwrapped)
"""Build hydralab's own airline records (``hydralab/data/airline``) from the tables below.

Run from the repository root (the output must not change unless a table or a tool did)::

    .venv/bin/python scripts/build_airline.py && git diff --exit-code hydralab/data

Each scenario is one row of :data:`SCENARIOS`: the flights it offers (rows of :data:`FLIGHTS`),
the booking, a scripted reference conversation and the caller's goal. The scripted tool calls
are executed with :mod:`hydralab.tools`, and the resulting tool responses and final DB are
frozen into ``airline_dataset.json`` (``ground_truth.expected_trace`` / ``expected_scenario_db``),
so the records replay exactly by construction; ``tests/test_tools_airline.py`` re-checks that.
Fare classes and seat types come from :mod:`hydralab.tools.airline`. The DBs keep EVA's identity
placeholders (``<LAST_NAME_ROMANIZED>`` ...); they are resolved at load time from
``culture_overrides``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydralab.tools import ToolExecutor
from hydralab.tools.airline import FARE_CLASSES, SEAT_PREFERENCES

OUT = Path(__file__).resolve().parents[1] / "hydralab" / "data" / "airline"
SEAT_TYPES = tuple(p for p in SEAT_PREFERENCES if p != "no_preference")  # window, aisle, middle
Event = dict[str, Any]
Fares = tuple[float | None, ...]  # one per fare class, in FARE_CLASSES order


# ---------------------------------------------------------------------------------------------
# Flights
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flight:
    """One scheduled leg; ``fares`` and ``seats`` are per fare class (FARE_CLASSES order)."""

    origin: str
    destination: str
    depart: str
    arrive: str
    offsets: tuple[int, int]  # UTC offsets of origin and destination
    minutes: int
    fares: Fares
    seats: tuple[int, ...]
    aircraft: str = "A320"
    gate: str | None = None
    status: str = "scheduled"
    delay_minutes: int | None = None
    delay_reason: str | None = None
    cancellation_reason: str | None = None
    seat_types: Mapping[str, list[str]] = field(default_factory=dict)


MDT_PDT, CDT_EDT = (-6, -7), (-5, -4)
# fmt: off
FLIGHTS: dict[str, Flight] = {
    # HL-AIR-001: DEN -> SEA
    "SK418": Flight("DEN", "SEA", "07:40", "09:55", MDT_PDT, 195, (189.0, 245.0, 520.0, 890.0, None), (6, 14, 5, 2, 0), gate="B31"),
    "SK422": Flight("DEN", "SEA", "06:50", "09:05", MDT_PDT, 195, (219.0, 285.0, 560.0, 940.0, None), (4, 11, 3, 1, 0), gate="B28"),
    "SK430": Flight("DEN", "SEA", "10:15", "12:30", MDT_PDT, 195, (239.0, 310.0, 575.0, 960.0, None), (7, 19, 6, 2, 0), aircraft="737-800", gate="B33"),
    "SK436": Flight("DEN", "SEA", "16:05", "18:20", MDT_PDT, 195, (259.0, 365.0, 610.0, 990.0, None), (5, 8, 4, 2, 0), gate="B26", seat_types={"main_cabin": ["aisle", "middle"]}),
    "SK444": Flight("DEN", "SEA", "19:30", "21:45", MDT_PDT, 195, (199.0, 255.0, 540.0, 900.0, None), (9, 20, 6, 3, 0), status="cancelled", cancellation_reason="crew scheduling"),
    "SK210": Flight("DEN", "SLC", "08:05", "09:35", (-6, -6), 90, (99.0, 131.0, None, None, None), (3, 5, 0, 0, 0), aircraft="E175", gate="A12"),
    "SK577": Flight("SLC", "SEA", "11:10", "12:05", (-6, -7), 115, (100.0, 137.0, None, None, None), (4, 2, 0, 0, 0), aircraft="E175", gate="C4"),
    # HL-AIR-002: ORD -> BOS
    "SK1207": Flight("ORD", "BOS", "19:40", "22:55", CDT_EDT, 135, (164.0, 212.0, 430.0, 780.0, None), (2, 6, 3, 1, 0), gate="B12", status="delayed", delay_minutes=40, delay_reason="late arriving aircraft"),
    "SK1215": Flight("ORD", "BOS", "21:05", "00:20", CDT_EDT, 135, (149.0, 198.0, 410.0, 760.0, None), (8, 15, 4, 2, 0), gate="B7"),
    # HL-AIR-003: ATL -> PHX
    "SK862": Flight("ATL", "PHX", "08:25", "09:50", (-4, -7), 265, (229.0, 289.0, 610.0, 1020.0, None), (5, 12, 4, 2, 0), aircraft="A321", gate="T9"),
}
# fmt: on


@dataclass(frozen=True)
class Journey:
    """A bookable itinerary of :data:`FLIGHTS` on one date (fares default to the first leg's)."""

    date: str
    flights: tuple[str, ...]
    fares: Fares | None = None
    total_minutes: int | None = None


@dataclass(frozen=True)
class Booking:
    """The caller's reservation: one passenger (``PAX001``) on the journey flying ``flight``."""

    conf: str
    booked: str
    flight: str
    fare_class: str
    seat: str | None
    seat_preference: str
    ticket: str
    fare_type: str = "non_refundable"


# ---------------------------------------------------------------------------------------------
# Conversations and goals
# ---------------------------------------------------------------------------------------------


def user(text: str) -> Event:
    return {"event_type": "user_utterance", "utterance": text}


def agent(text: str) -> Event:
    return {"event_type": "agent_utterance", "utterance": text}


def call(name: str, **params: Any) -> Event:
    return {"event_type": "tool_call", "tool_name": name, "params": params}


ESCALATION = (
    "Do not ask for a supervisor or a live agent. If the agent offers a transfer, decline. "
    "If the agent cannot help after two tries, say goodbye and end the call."
)
COMMON_EDGE_CASES = (
    "If the agent asks whether there is anything else, say no and end the call.",
    "Do not invent new requests or problems beyond this goal.",
)


@dataclass(frozen=True)
class Goal:
    """The caller's ``user_goal`` (escalation and the common edge cases are added)."""

    high_level: str
    must_have: tuple[str, ...]
    nice_to_have: tuple[str, ...]
    negotiation: tuple[str, ...]
    resolution: str
    failure: str
    edge_cases: tuple[str, ...]
    information: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    """One record: flights on offer (DB order), booking, reference trace, caller and context."""

    id: str
    now: str  # current_date_time; its date is the DB's _current_date
    journeys: tuple[Journey, ...]
    booking: Booking
    trace: tuple[Event, ...]
    goal: Goal
    persona: tuple[str, int, str]  # gender, user_persona_id, user_persona
    expected_flow: str
    premise: str
    priorities: tuple[str, ...]  # user_priorities in rank order (all satisfied)
    culture: tuple[str, str, str]  # first name, last name, phone


# fmt: off
SCENARIOS: tuple[Scenario, ...] = (
    # HL-AIR-001: voluntary date change, DEN -> SEA, May 8 -> May 12
    Scenario(
        id="HL-AIR-001",
        now="2026-05-04 09:20 MDT",
        journeys=(
            Journey("2026-05-08", ("SK418",)),
            Journey("2026-05-12", ("SK422",)),
            Journey("2026-05-12", ("SK210", "SK577"), fares=(199.0, 268.0, None, None, None), total_minutes=300),
            Journey("2026-05-12", ("SK430",)),
            Journey("2026-05-12", ("SK436",)),
            Journey("2026-05-12", ("SK444",)),
        ),
        booking=Booking("HT4KWB", "2026-03-29T19:02:00-06:00", "SK418", "main_cabin", "23A", "window", "2170448123905"),
        trace=(
            user("Hi, I need to move my Seattle flight to May twelfth, leaving after nine AM."),
            agent("Happy to help. May I have your confirmation number and last name?"),
            user("It's HT4KWB, last name <LAST_NAME>."),
            agent("Thanks, one moment while I pull that up."),
            call("get_reservation", confirmation_number="HT4KWB", last_name="<LAST_NAME_ROMANIZED>"),
            call("search_rebooking_options", origin="DEN", destination="SEA", date="2026-05-12", passenger_count=1, fare_class="main_cabin"),
            agent("I have a ten fifteen AM nonstop on May twelfth for one hundred forty dollars total, change fee included. Shall I book it?"),
            user("Yes, please book it."),
            call("rebook_flight", confirmation_number="HT4KWB", journey_id="FL_SK418_20260508", new_journey_id="FL_SK430_20260512", rebooking_type="voluntary", waive_change_fee=False, new_fare_class="main_cabin"),
            agent("Done, you're on flight four thirty. Would you like a window, aisle, or middle seat?"),
            user("A window seat, please."),
            call("assign_seat", confirmation_number="HT4KWB", passenger_id="PAX001", journey_id="FL_SK430_20260512", seat_preference="window"),
            agent("You're in window seat twenty-one A, leaving May twelfth at ten fifteen AM. Have a great trip!"),
        ),
        goal=Goal(
            high_level="You want to move your Denver to Seattle flight from May 8 to May 12, on a nonstop that leaves after 9:00 AM, paying no more than $150 in total, and you want a window seat.",
            must_have=(
                "The new flight is DEN to SEA on 2026-05-12.",
                "The new flight is a nonstop departing after 9:00 AM Mountain time.",
                "The total you pay for the change (fee plus fare difference) is $150 or less.",
                "A window seat is assigned on the new flight.",
            ),
            nice_to_have=(),
            negotiation=(
                "Open with the date and the 'after nine AM' constraint; give the confirmation code and last name when asked.",
                "If the agent offers a flight that meets every must-have, accept it.",
                "If the agent has not said the total cost, ask for it before agreeing.",
                "When asked about seats, ask for a window seat.",
            ),
            resolution="The agent has rebooked you on a DEN-SEA nonstop on May 12 departing after 9:00 AM for $150 or less and confirmed a window seat. End the call.",
            failure="If no May 12 nonstop after 9:00 AM costs $150 or less, keep your original flight, thank the agent and end the call.",
            edge_cases=(
                "Decline connecting flights and other airports.",
                "Decline flights departing before 9:00 AM.",
            ),
            information={
                "Passenger first name": "<FIRST_NAME>",
                "Passenger last name": "<LAST_NAME>",
                "Booking confirmation number": "HT4KWB",
                "Original route": "DEN to SEA",
                "Original departure date": "2026-05-08",
                "Desired new departure date": "2026-05-12",
                "Earliest acceptable departure (local)": "9:00 AM MDT",
                "Maximum total change cost": "$150",
                "seat_preference": {"first_choice": "window", "second_choice": "aisle", "third_choice": "middle"},
                "original_travel_details": [
                    {"origin": "DEN", "destination": "SEA", "flight_date": "2026-05-08", "departure_time": "07:40", "status": "confirmed"}
                ],
            },
        ),
        persona=("man", 2, "You are friendly but brief. You answer exactly what you are asked in a few words, and you do not volunteer details before the agent needs them."),
        expected_flow="Voluntary date change. The agent authenticates the caller, searches the new date, offers the nonstop that fits with its total cost, rebooks after the caller agrees, then asks for a seat preference and assigns a window seat.",
        premise="<FIRST_NAME> holds a non-refundable Main Cabin ticket DEN to SEA on May 8 and must travel on May 12 instead; a morning meeting means no flight before 9 AM.",
        priorities=("Nonstop on May 12 leaving after 9:00 AM", "Total change cost at most $150", "Window seat"),
        culture=("Daniel", "Brooks", "+1-720-555-0193"),
    ),
    # HL-AIR-002: read-only flight status check (DB unchanged apart from the session)
    Scenario(
        id="HL-AIR-002",
        now="2026-06-18 16:10 CDT",
        journeys=(Journey("2026-06-18", ("SK1207",)), Journey("2026-06-18", ("SK1215",))),
        booking=Booking("PL9XMC", "2026-05-30T08:12:00-05:00", "SK1207", "main_cabin", "21C", "aisle", "2170448561277"),
        trace=(
            user("Hi, is my flight to Boston tonight still on time?"),
            agent("Let me check. What's your confirmation number and last name?"),
            user("PL9XMC, last name <LAST_NAME>."),
            call("get_reservation", confirmation_number="PL9XMC", last_name="<LAST_NAME_ROMANIZED>"),
            call("get_flight_status", flight_number="SK1207", flight_date="2026-06-18"),
            agent("Flight twelve oh seven is delayed forty minutes. It now leaves at eight twenty PM from gate B twelve."),
            user("Okay, that's all I needed. Thanks!"),
            agent("You're welcome. Safe travels!"),
        ),
        goal=Goal(
            high_level="You want to know whether tonight's flight from Chicago to Boston is on time.",
            must_have=("The agent tells you the current status and departure time of your flight.",),
            nice_to_have=("The agent tells you the gate.",),
            negotiation=(
                "Give the confirmation code and last name when asked.",
                "Do not ask for any change to the booking, even if the flight is delayed.",
            ),
            resolution="The agent has told you the flight status and new departure time. Thank them and end the call.",
            failure="If the agent cannot find the flight after two tries, thank them and end the call.",
            edge_cases=("If the agent offers to rebook you, decline: a forty-minute delay is fine.",),
            information={
                "Passenger first name": "<FIRST_NAME>",
                "Passenger last name": "<LAST_NAME>",
                "Booking confirmation number": "PL9XMC",
                "Flight": "SK1207, ORD to BOS, 2026-06-18, 7:40 PM",
            },
        ),
        persona=("woman", 1, "You are calm and polite, and you keep the call short."),
        expected_flow="Read-only status check. The agent authenticates the caller, looks up the flight status and reports the delay, new departure time and gate. Nothing in the booking changes.",
        premise="<FIRST_NAME> is flying ORD to BOS tonight and saw a delay notice; she only wants the status.",
        priorities=("Know the real departure time",),
        culture=("Grace", "Hunter", "+1-312-555-0176"),
    ),
    # HL-AIR-003: cancel a non-refundable fare for a travel credit
    Scenario(
        id="HL-AIR-003",
        now="2026-09-09 11:30 EDT",
        journeys=(Journey("2026-09-24", ("SK862",)),),
        booking=Booking("RW2JDN", "2026-08-14T21:47:00-04:00", "SK862", "main_cabin", "24C", "aisle", "2170448990314"),
        trace=(
            user("Hi, I need to cancel my trip to Phoenix."),
            agent("I can help with that. What's your confirmation number and last name?"),
            user("RW2JDN, last name <LAST_NAME>."),
            call("get_reservation", confirmation_number="RW2JDN", last_name="<LAST_NAME_ROMANIZED>"),
            agent("Your fare is non-refundable, so after the one hundred dollar fee you'd get a travel credit of one hundred eighty-nine dollars. Shall I cancel?"),
            user("Yes, go ahead and cancel it."),
            call("cancel_reservation", confirmation_number="RW2JDN", journey_id="FL_SK862_20260924", cancellation_reason="voluntary"),
            call("issue_travel_credit", confirmation_number="RW2JDN", passenger_id="PAX001", amount=189.0, credit_reason="cancellation_non_refundable"),
            agent("Your flight is cancelled, and your one hundred eighty-nine dollar travel credit is valid for twelve months."),
        ),
        goal=Goal(
            high_level="You want to cancel your September 24 flight from Atlanta to Phoenix and keep whatever value you can.",
            must_have=("The booking is cancelled and the agent confirms it.",),
            nice_to_have=("You receive a travel credit for the remaining value.",),
            negotiation=(
                "Give the confirmation code and last name when asked.",
                "Accept the cancellation fee and a travel credit; do not ask for a cash refund.",
            ),
            resolution="The agent has cancelled the booking and told you the travel credit amount. End the call.",
            failure="If the agent cannot cancel after two requests, say goodbye and end the call.",
            edge_cases=("Decline offers to change the flight instead.",),
            information={
                "Passenger first name": "<FIRST_NAME>",
                "Passenger last name": "<LAST_NAME>",
                "Booking confirmation number": "RW2JDN",
                "Flight": "SK862, ATL to PHX, 2026-09-24",
                "Reason": "Plans changed",
            },
        ),
        persona=("man", 2, "You are matter-of-fact and agree quickly once the terms are clear."),
        expected_flow="Voluntary cancellation of a non-refundable Main Cabin fare. The agent authenticates, explains the one hundred dollar fee and the resulting travel credit, cancels after the caller agrees and issues the credit.",
        premise="<FIRST_NAME>'s conference in Phoenix was called off; the ticket is non-refundable.",
        priorities=("Cancel and keep the remaining value",),
        culture=("Owen", "Carter", "+1-404-555-0128"),
    ),
)
# fmt: on


# ---------------------------------------------------------------------------------------------
# Tables -> scenario DB and record
# ---------------------------------------------------------------------------------------------


def _by_class(values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(FARE_CLASSES, values, strict=True))


def leg_row(number: str, segment: int) -> dict[str, Any]:
    """A journey segment of flight ``number`` (business cabins have no middle seats)."""
    f = FLIGHTS[number]
    types = {fc: (list(SEAT_TYPES) if n > 0 else []) for fc, n in _by_class(f.seats).items()}
    if types["business"]:
        types["business"] = [t for t in SEAT_TYPES if t != "middle"]
    types.update({fc: list(kinds) for fc, kinds in f.seat_types.items()})
    return {
        "segment_number": segment,
        "flight_number": number,
        "origin": f.origin,
        "destination": f.destination,
        "scheduled_departure": f.depart,
        "scheduled_arrival": f.arrive,
        "origin_utc_offset": f.offsets[0],
        "destination_utc_offset": f.offsets[1],
        "duration_minutes": f.minutes,
        "aircraft_type": f.aircraft,
        "gate": f.gate,
        "status": f.status,
        "delay_minutes": f.delay_minutes,
        "delay_reason": f.delay_reason,
        "cancellation_reason": f.cancellation_reason,
        "fares": _by_class(f.fares),
        "available_seats": _by_class(f.seats),
        "available_seat_types": types,
    }


def journey_row(j: Journey) -> dict[str, Any]:
    """A DB journey; its status is its first leg's and it is bookable unless cancelled."""
    legs = [leg_row(number, index) for index, number in enumerate(j.flights, start=1)]
    status = legs[0]["status"]
    return {
        "journey_id": "FL_" + "_".join(j.flights) + "_" + j.date.replace("-", ""),
        "date": j.date,
        "origin": legs[0]["origin"],
        "destination": legs[-1]["destination"],
        "num_stops": len(legs) - 1,
        "total_duration_minutes": j.total_minutes or sum(s["duration_minutes"] for s in legs),
        "status": status,
        "bookable": status != "cancelled",
        "fares": _by_class(j.fares) if j.fares else dict(legs[0]["fares"]),
        "segments": legs,
    }


def reservation_row(b: Booking, journeys: list[dict[str, Any]]) -> dict[str, Any]:
    """The DB reservation of :class:`Booking` ``b`` (one passenger, nothing paid extra)."""
    booked = next(j for j in journeys if any(s["flight_number"] == b.flight for s in j["segments"]))
    return {
        "confirmation_number": b.conf,
        "status": "confirmed",
        "booking_date": b.booked,
        "fare_type": b.fare_type,
        "passengers": [
            {
                "passenger_id": "PAX001",
                "first_name": "<FIRST_NAME_ROMANIZED>",
                "last_name": "<LAST_NAME_ROMANIZED>",
                "ticket_number": b.ticket,
                "email": "<FIRST_NAME_ROMANIZED>.<LAST_NAME_ROMANIZED>@example.net",
                "phone": "<PHONE>",
                "elite_status": None,
                "meal_preference": "none",
                "seat_preference": b.seat_preference,
            }
        ],
        "bookings": [
            {
                "journey_id": booked["journey_id"],
                "fare_class": b.fare_class,
                "fare_paid": booked["fares"][b.fare_class],
                "status": "confirmed",
                "segments": [
                    {
                        "flight_number": s["flight_number"],
                        "date": booked["date"],
                        "fare_paid": s["fares"][b.fare_class],
                        "seat": b.seat,
                        "bags_checked": 0,
                        "meal_request": None,
                    }
                    for s in booked["segments"]
                ],
            }
        ],
        "ancillaries": {"seat_selection_fee": 0.0, "bags_fee": 0.0},
    }


def scenario_db(s: Scenario) -> dict[str, Any]:
    """The record's initial scenario DB."""
    journeys = [journey_row(j) for j in s.journeys]
    res = reservation_row(s.booking, journeys)
    return {
        "_current_date": s.now.split(" ")[0],
        "reservations": {res["confirmation_number"]: res},
        "journeys": {j["journey_id"]: j for j in journeys},
        "disruptions": {},
        "travel_credits": {},
        "meal_vouchers": {},
        "refunds": {},
    }


def record_row(s: Scenario) -> dict[str, Any]:
    """The record without ``ground_truth`` (see :func:`freeze`)."""
    g = s.goal
    first, last, phone = s.culture
    gender, persona_id, persona = s.persona
    return {
        "id": s.id,
        "current_date_time": s.now,
        "user_goal": {
            "high_level_user_goal": g.high_level,
            "decision_tree": {
                "must_have_criteria": list(g.must_have),
                "nice_to_have_criteria": list(g.nice_to_have),
                "negotiation_behavior": list(g.negotiation),
                "resolution_condition": g.resolution,
                "failure_condition": g.failure,
                "escalation_behavior": ESCALATION,
                "edge_cases": [*g.edge_cases, *COMMON_EDGE_CASES],
            },
            "information_required": copy.deepcopy(g.information),
        },
        "user_config": {
            "name": "<FIRST_NAME> <LAST_NAME>",
            "gender": gender,
            "user_persona_id": persona_id,
            "user_persona": persona,
        },
        "expected_flow": s.expected_flow,
        "scenario_context": {
            "premise": s.premise,
            "user_priorities": [
                {"rank": rank, "priority": text, "satisfied": True}
                for rank, text in enumerate(s.priorities, start=1)
            ],
        },
        "starting_utterances": {"en": s.trace[0]["utterance"]},
        "culture_overrides": {"en": {"first_name": first, "last_name": last, "phone": phone}},
        "romanized_culture_overrides": {"en": {"first_name": first, "last_name": last}},
    }


def freeze(record: dict[str, Any], db: dict[str, Any], trace: tuple[Event, ...]) -> dict[str, Any]:
    """Run the scripted tool calls and freeze responses + final DB into the record."""
    executor = ToolExecutor(db, current_date_time=record["current_date_time"])
    events: list[Event] = []
    for event in copy.deepcopy(trace):
        events.append(event)
        if event["event_type"] == "tool_call":
            response = executor.execute(event["tool_name"], event["params"])
            if response["status"] != "success":
                raise SystemExit(f"{record['id']}: {event['tool_name']} failed: {response}")
            events.append(
                {
                    "event_type": "tool_response",
                    "tool_name": event["tool_name"],
                    "status": response["status"],
                    "response": copy.deepcopy(response),
                }
            )
    expected = copy.deepcopy(executor.db)
    # Tools ran on the placeholder DB, so the session holds the lowercased placeholder; store the
    # placeholder itself (it resolves lowercase, exactly what the tool writes on a resolved DB).
    session = expected["session"]
    assert session["last_name"] == "<last_name_romanized>", session
    session["last_name"] = "<LAST_NAME_ROMANIZED>"
    record["ground_truth"] = {
        "expected_scenario_db": expected,
        "expected_trace": {
            "trace": events,
            "conversation_ended": True,
            "end_reason": "goodbye",
            "total_events": len(events),
            "total_turns": sum(e["event_type"] == "user_utterance" for e in events),
        },
    }
    return record


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    scenarios = OUT / "airline_scenarios"
    scenarios.mkdir(parents=True, exist_ok=True)
    dataset = []
    for scenario in SCENARIOS:
        db = scenario_db(scenario)
        _write_json(scenarios / f"{scenario.id}.json", db)
        dataset.append(freeze(record_row(scenario), copy.deepcopy(db), scenario.trace))
    _write_json(OUT / "airline_dataset.json", dataset)
    print(f"wrote {len(dataset)} records to {OUT}")


if __name__ == "__main__":
    main()
