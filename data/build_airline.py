# ruff: noqa: E501  (scenario prose reads better unwrapped)
"""Build hydralab's own airline records (``data/airline``) from the scenarios defined here.

Run from the repository root::

    .venv/bin/python data/build_airline.py

Each scenario defines its initial DB and a scripted reference conversation whose tool calls are
executed with :mod:`hydralab.tools`; the resulting tool responses and final DB are frozen into
``airline_dataset.json`` (``ground_truth.expected_trace`` / ``expected_scenario_db``), so the
records replay exactly by construction. ``tests/test_tools_airline.py`` re-checks that.
The DBs keep EVA's identity placeholders (``<LAST_NAME_ROMANIZED>`` ...); they are resolved at
load time from ``culture_overrides``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hydralab.tools import ToolExecutor

OUT = Path(__file__).resolve().parent / "airline"
FARE_CLASSES = ("basic_economy", "main_cabin", "premium_economy", "business", "first")
ALL_TYPES = ["window", "aisle", "middle"]
Event = dict[str, Any]


def _by_class(values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(FARE_CLASSES, values, strict=True))


def leg(
    number: str,
    origin: str,
    destination: str,
    depart: str,
    arrive: str,
    *,
    offsets: tuple[int, int],
    minutes: int,
    fares: tuple[float | None, ...],
    seats: tuple[int, ...],
    aircraft: str = "A320",
    gate: str | None = None,
    status: str = "scheduled",
    delay_minutes: int | None = None,
    delay_reason: str | None = None,
    cancellation_reason: str | None = None,
    seat_types: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    types = {fc: (list(ALL_TYPES) if n > 0 else []) for fc, n in _by_class(seats).items()}
    if types["business"]:
        types["business"] = ["window", "aisle"]
    types.update(seat_types or {})
    return {
        "segment_number": 1,
        "flight_number": number,
        "origin": origin,
        "destination": destination,
        "scheduled_departure": depart,
        "scheduled_arrival": arrive,
        "origin_utc_offset": offsets[0],
        "destination_utc_offset": offsets[1],
        "duration_minutes": minutes,
        "aircraft_type": aircraft,
        "gate": gate,
        "status": status,
        "delay_minutes": delay_minutes,
        "delay_reason": delay_reason,
        "cancellation_reason": cancellation_reason,
        "fares": _by_class(fares),
        "available_seats": _by_class(seats),
        "available_seat_types": types,
    }


def journey(
    date: str,
    legs: list[dict[str, Any]],
    *,
    fares: tuple[float | None, ...] | None = None,
    status: str = "scheduled",
    bookable: bool = True,
    total_minutes: int | None = None,
) -> dict[str, Any]:
    for index, segment in enumerate(legs, start=1):
        segment["segment_number"] = index
    journey_id = "FL_" + "_".join(s["flight_number"] for s in legs) + "_" + date.replace("-", "")
    return {
        "journey_id": journey_id,
        "date": date,
        "origin": legs[0]["origin"],
        "destination": legs[-1]["destination"],
        "num_stops": len(legs) - 1,
        "total_duration_minutes": total_minutes or sum(s["duration_minutes"] for s in legs),
        "status": status,
        "bookable": bookable,
        "fares": _by_class(fares) if fares else dict(legs[0]["fares"]),
        "segments": legs,
    }


def passenger(seat_preference: str, ticket: str) -> dict[str, Any]:
    return {
        "passenger_id": "PAX001",
        "first_name": "<FIRST_NAME_ROMANIZED>",
        "last_name": "<LAST_NAME_ROMANIZED>",
        "ticket_number": ticket,
        "email": "<FIRST_NAME_ROMANIZED>.<LAST_NAME_ROMANIZED>@example.net",
        "phone": "<PHONE>",
        "elite_status": None,
        "meal_preference": "none",
        "seat_preference": seat_preference,
    }


def reservation(
    conf: str,
    *,
    booked: str,
    journey_: dict[str, Any],
    fare_class: str,
    seat: str | None,
    seat_preference: str,
    ticket: str,
    fare_type: str = "non_refundable",
) -> dict[str, Any]:
    fare = journey_["fares"][fare_class]
    return {
        "confirmation_number": conf,
        "status": "confirmed",
        "booking_date": booked,
        "fare_type": fare_type,
        "passengers": [passenger(seat_preference, ticket)],
        "bookings": [
            {
                "journey_id": journey_["journey_id"],
                "fare_class": fare_class,
                "fare_paid": fare,
                "status": "confirmed",
                "segments": [
                    {
                        "flight_number": s["flight_number"],
                        "date": journey_["date"],
                        "fare_paid": s["fares"][fare_class],
                        "seat": seat,
                        "bags_checked": 0,
                        "meal_request": None,
                    }
                    for s in journey_["segments"]
                ],
            }
        ],
        "ancillaries": {"seat_selection_fee": 0.0, "bags_fee": 0.0},
    }


def scenario_db(
    today: str, reservations: list[dict[str, Any]], journeys: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "_current_date": today,
        "reservations": {r["confirmation_number"]: r for r in reservations},
        "journeys": {j["journey_id"]: j for j in journeys},
        "disruptions": {},
        "travel_credits": {},
        "meal_vouchers": {},
        "refunds": {},
    }


def user(text: str) -> Event:
    return {"event_type": "user_utterance", "utterance": text}


def agent(text: str) -> Event:
    return {"event_type": "agent_utterance", "utterance": text}


def call(name: str, **params: Any) -> Event:
    return {"event_type": "tool_call", "tool_name": name, "params": params}


def _escalation() -> str:
    return (
        "Do not ask for a supervisor or a live agent. If the agent offers a transfer, decline. "
        "If the agent cannot help after two tries, say goodbye and end the call."
    )


def _common_edge_cases() -> list[str]:
    return [
        "If the agent asks whether there is anything else, say no and end the call.",
        "Do not invent new requests or problems beyond this goal.",
    ]


# ---------------------------------------------------------------------------------------------
# HL-AIR-001: voluntary date change, DEN -> SEA, May 8 -> May 12
# ---------------------------------------------------------------------------------------------


def record_001() -> tuple[dict[str, Any], dict[str, Any], list[Event]]:
    mdt_pdt = (-6, -7)
    original = journey(
        "2026-05-08",
        [
            leg(
                "SK418",
                "DEN",
                "SEA",
                "07:40",
                "09:55",
                offsets=mdt_pdt,
                minutes=195,
                fares=(189.0, 245.0, 520.0, 890.0, None),
                seats=(6, 14, 5, 2, 0),
                gate="B31",
            )
        ],
    )
    early = journey(
        "2026-05-12",
        [
            leg(
                "SK422",
                "DEN",
                "SEA",
                "06:50",
                "09:05",
                offsets=mdt_pdt,
                minutes=195,
                fares=(219.0, 285.0, 560.0, 940.0, None),
                seats=(4, 11, 3, 1, 0),
                gate="B28",
            )
        ],
    )
    chosen = journey(
        "2026-05-12",
        [
            leg(
                "SK430",
                "DEN",
                "SEA",
                "10:15",
                "12:30",
                offsets=mdt_pdt,
                minutes=195,
                fares=(239.0, 310.0, 575.0, 960.0, None),
                seats=(7, 19, 6, 2, 0),
                aircraft="737-800",
                gate="B33",
            )
        ],
    )
    late = journey(
        "2026-05-12",
        [
            leg(
                "SK436",
                "DEN",
                "SEA",
                "16:05",
                "18:20",
                offsets=mdt_pdt,
                minutes=195,
                fares=(259.0, 365.0, 610.0, 990.0, None),
                seats=(5, 8, 4, 2, 0),
                gate="B26",
                seat_types={"main_cabin": ["aisle", "middle"]},
            )
        ],
    )
    cancelled = journey(
        "2026-05-12",
        [
            leg(
                "SK444",
                "DEN",
                "SEA",
                "19:30",
                "21:45",
                offsets=mdt_pdt,
                minutes=195,
                fares=(199.0, 255.0, 540.0, 900.0, None),
                seats=(9, 20, 6, 3, 0),
                status="cancelled",
                cancellation_reason="crew scheduling",
            )
        ],
        status="cancelled",
        bookable=False,
    )
    connection = journey(
        "2026-05-12",
        [
            leg(
                "SK210",
                "DEN",
                "SLC",
                "08:05",
                "09:35",
                offsets=(-6, -6),
                minutes=90,
                fares=(99.0, 131.0, None, None, None),
                seats=(3, 5, 0, 0, 0),
                aircraft="E175",
                gate="A12",
            ),
            leg(
                "SK577",
                "SLC",
                "SEA",
                "11:10",
                "12:05",
                offsets=(-6, -7),
                minutes=115,
                fares=(100.0, 137.0, None, None, None),
                seats=(4, 2, 0, 0, 0),
                aircraft="E175",
                gate="C4",
            ),
        ],
        fares=(199.0, 268.0, None, None, None),
        total_minutes=300,
    )
    res = reservation(
        "HT4KWB",
        booked="2026-03-29T19:02:00-06:00",
        journey_=original,
        fare_class="main_cabin",
        seat="23A",
        seat_preference="window",
        ticket="2170448123905",
    )
    db = scenario_db("2026-05-04", [res], [original, early, connection, chosen, late, cancelled])
    trace = [
        user("Hi, I need to move my Seattle flight to May twelfth, leaving after nine AM."),
        agent("Happy to help. May I have your confirmation number and last name?"),
        user("It's HT4KWB, last name <LAST_NAME>."),
        agent("Thanks, one moment while I pull that up."),
        call("get_reservation", confirmation_number="HT4KWB", last_name="<LAST_NAME_ROMANIZED>"),
        call(
            "search_rebooking_options",
            origin="DEN",
            destination="SEA",
            date="2026-05-12",
            passenger_count=1,
            fare_class="main_cabin",
        ),
        agent(
            "I have a ten fifteen AM nonstop on May twelfth for one hundred forty dollars total, "
            "change fee included. Shall I book it?"
        ),
        user("Yes, please book it."),
        call(
            "rebook_flight",
            confirmation_number="HT4KWB",
            journey_id="FL_SK418_20260508",
            new_journey_id="FL_SK430_20260512",
            rebooking_type="voluntary",
            waive_change_fee=False,
            new_fare_class="main_cabin",
        ),
        agent(
            "Done, you're on flight four thirty. Would you like a window, aisle, or middle seat?"
        ),
        user("A window seat, please."),
        call(
            "assign_seat",
            confirmation_number="HT4KWB",
            passenger_id="PAX001",
            journey_id="FL_SK430_20260512",
            seat_preference="window",
        ),
        agent(
            "You're in window seat twenty-one A, leaving May twelfth at ten fifteen AM. Have a great trip!"
        ),
    ]
    record = {
        "id": "HL-AIR-001",
        "current_date_time": "2026-05-04 09:20 MDT",
        "user_goal": {
            "high_level_user_goal": (
                "You want to move your Denver to Seattle flight from May 8 to May 12, on a nonstop that "
                "leaves after 9:00 AM, paying no more than $150 in total, and you want a window seat."
            ),
            "decision_tree": {
                "must_have_criteria": [
                    "The new flight is DEN to SEA on 2026-05-12.",
                    "The new flight is a nonstop departing after 9:00 AM Mountain time.",
                    "The total you pay for the change (fee plus fare difference) is $150 or less.",
                    "A window seat is assigned on the new flight.",
                ],
                "nice_to_have_criteria": [],
                "negotiation_behavior": [
                    "Open with the date and the 'after nine AM' constraint; give the confirmation code "
                    "and last name when asked.",
                    "If the agent offers a flight that meets every must-have, accept it.",
                    "If the agent has not said the total cost, ask for it before agreeing.",
                    "When asked about seats, ask for a window seat.",
                ],
                "resolution_condition": (
                    "The agent has rebooked you on a DEN-SEA nonstop on May 12 departing after 9:00 AM for "
                    "$150 or less and confirmed a window seat. End the call."
                ),
                "failure_condition": (
                    "If no May 12 nonstop after 9:00 AM costs $150 or less, keep your original flight, "
                    "thank the agent and end the call."
                ),
                "escalation_behavior": _escalation(),
                "edge_cases": [
                    "Decline connecting flights and other airports.",
                    "Decline flights departing before 9:00 AM.",
                    *_common_edge_cases(),
                ],
            },
            "information_required": {
                "Passenger first name": "<FIRST_NAME>",
                "Passenger last name": "<LAST_NAME>",
                "Booking confirmation number": "HT4KWB",
                "Original route": "DEN to SEA",
                "Original departure date": "2026-05-08",
                "Desired new departure date": "2026-05-12",
                "Earliest acceptable departure (local)": "9:00 AM MDT",
                "Maximum total change cost": "$150",
                "seat_preference": {
                    "first_choice": "window",
                    "second_choice": "aisle",
                    "third_choice": "middle",
                },
                "original_travel_details": [
                    {
                        "origin": "DEN",
                        "destination": "SEA",
                        "flight_date": "2026-05-08",
                        "departure_time": "07:40",
                        "status": "confirmed",
                    }
                ],
            },
        },
        "user_config": {
            "name": "<FIRST_NAME> <LAST_NAME>",
            "gender": "man",
            "user_persona_id": 2,
            "user_persona": (
                "You are friendly but brief. You answer exactly what you are asked in a few words, and you "
                "do not volunteer details before the agent needs them."
            ),
        },
        "expected_flow": (
            "Voluntary date change. The agent authenticates the caller, searches the new date, offers the "
            "nonstop that fits with its total cost, rebooks after the caller agrees, then asks for a seat "
            "preference and assigns a window seat."
        ),
        "scenario_context": {
            "premise": (
                "<FIRST_NAME> holds a non-refundable Main Cabin ticket DEN to SEA on May 8 and must travel on "
                "May 12 instead; a morning meeting means no flight before 9 AM."
            ),
            "user_priorities": [
                {
                    "rank": 1,
                    "priority": "Nonstop on May 12 leaving after 9:00 AM",
                    "satisfied": True,
                },
                {"rank": 2, "priority": "Total change cost at most $150", "satisfied": True},
                {"rank": 3, "priority": "Window seat", "satisfied": True},
            ],
        },
        "starting_utterances": {"en": trace[0]["utterance"]},
        "culture_overrides": {
            "en": {"first_name": "Daniel", "last_name": "Brooks", "phone": "+1-720-555-0193"}
        },
        "romanized_culture_overrides": {"en": {"first_name": "Daniel", "last_name": "Brooks"}},
    }
    return record, db, trace


# ---------------------------------------------------------------------------------------------
# HL-AIR-002: read-only flight status check (DB unchanged apart from the session)
# ---------------------------------------------------------------------------------------------


def record_002() -> tuple[dict[str, Any], dict[str, Any], list[Event]]:
    cdt_edt = (-5, -4)
    delayed = journey(
        "2026-06-18",
        [
            leg(
                "SK1207",
                "ORD",
                "BOS",
                "19:40",
                "22:55",
                offsets=cdt_edt,
                minutes=135,
                fares=(164.0, 212.0, 430.0, 780.0, None),
                seats=(2, 6, 3, 1, 0),
                gate="B12",
                status="delayed",
                delay_minutes=40,
                delay_reason="late arriving aircraft",
            )
        ],
        status="delayed",
    )
    later = journey(
        "2026-06-18",
        [
            leg(
                "SK1215",
                "ORD",
                "BOS",
                "21:05",
                "00:20",
                offsets=cdt_edt,
                minutes=135,
                fares=(149.0, 198.0, 410.0, 760.0, None),
                seats=(8, 15, 4, 2, 0),
                gate="B7",
            )
        ],
    )
    res = reservation(
        "PL9XMC",
        booked="2026-05-30T08:12:00-05:00",
        journey_=delayed,
        fare_class="main_cabin",
        seat="21C",
        seat_preference="aisle",
        ticket="2170448561277",
    )
    db = scenario_db("2026-06-18", [res], [delayed, later])
    trace = [
        user("Hi, is my flight to Boston tonight still on time?"),
        agent("Let me check. What's your confirmation number and last name?"),
        user("PL9XMC, last name <LAST_NAME>."),
        call("get_reservation", confirmation_number="PL9XMC", last_name="<LAST_NAME_ROMANIZED>"),
        call("get_flight_status", flight_number="SK1207", flight_date="2026-06-18"),
        agent(
            "Flight twelve oh seven is delayed forty minutes. It now leaves at eight twenty PM from gate B twelve."
        ),
        user("Okay, that's all I needed. Thanks!"),
        agent("You're welcome. Safe travels!"),
    ]
    record = {
        "id": "HL-AIR-002",
        "current_date_time": "2026-06-18 16:10 CDT",
        "user_goal": {
            "high_level_user_goal": "You want to know whether tonight's flight from Chicago to Boston is on time.",
            "decision_tree": {
                "must_have_criteria": [
                    "The agent tells you the current status and departure time of your flight."
                ],
                "nice_to_have_criteria": ["The agent tells you the gate."],
                "negotiation_behavior": [
                    "Give the confirmation code and last name when asked.",
                    "Do not ask for any change to the booking, even if the flight is delayed.",
                ],
                "resolution_condition": "The agent has told you the flight status and new departure time. Thank them and end the call.",
                "failure_condition": "If the agent cannot find the flight after two tries, thank them and end the call.",
                "escalation_behavior": _escalation(),
                "edge_cases": [
                    "If the agent offers to rebook you, decline: a forty-minute delay is fine.",
                    *_common_edge_cases(),
                ],
            },
            "information_required": {
                "Passenger first name": "<FIRST_NAME>",
                "Passenger last name": "<LAST_NAME>",
                "Booking confirmation number": "PL9XMC",
                "Flight": "SK1207, ORD to BOS, 2026-06-18, 7:40 PM",
            },
        },
        "user_config": {
            "name": "<FIRST_NAME> <LAST_NAME>",
            "gender": "woman",
            "user_persona_id": 1,
            "user_persona": "You are calm and polite, and you keep the call short.",
        },
        "expected_flow": (
            "Read-only status check. The agent authenticates the caller, looks up the flight status and reports "
            "the delay, new departure time and gate. Nothing in the booking changes."
        ),
        "scenario_context": {
            "premise": "<FIRST_NAME> is flying ORD to BOS tonight and saw a delay notice; she only wants the status.",
            "user_priorities": [
                {"rank": 1, "priority": "Know the real departure time", "satisfied": True}
            ],
        },
        "starting_utterances": {"en": trace[0]["utterance"]},
        "culture_overrides": {
            "en": {"first_name": "Grace", "last_name": "Hunter", "phone": "+1-312-555-0176"}
        },
        "romanized_culture_overrides": {"en": {"first_name": "Grace", "last_name": "Hunter"}},
    }
    return record, db, trace


# ---------------------------------------------------------------------------------------------
# HL-AIR-003: cancel a non-refundable fare for a travel credit
# ---------------------------------------------------------------------------------------------


def record_003() -> tuple[dict[str, Any], dict[str, Any], list[Event]]:
    booked = journey(
        "2026-09-24",
        [
            leg(
                "SK862",
                "ATL",
                "PHX",
                "08:25",
                "09:50",
                offsets=(-4, -7),
                minutes=265,
                fares=(229.0, 289.0, 610.0, 1020.0, None),
                seats=(5, 12, 4, 2, 0),
                aircraft="A321",
                gate="T9",
            )
        ],
    )
    res = reservation(
        "RW2JDN",
        booked="2026-08-14T21:47:00-04:00",
        journey_=booked,
        fare_class="main_cabin",
        seat="24C",
        seat_preference="aisle",
        ticket="2170448990314",
    )
    db = scenario_db("2026-09-09", [res], [booked])
    trace = [
        user("Hi, I need to cancel my trip to Phoenix."),
        agent("I can help with that. What's your confirmation number and last name?"),
        user("RW2JDN, last name <LAST_NAME>."),
        call("get_reservation", confirmation_number="RW2JDN", last_name="<LAST_NAME_ROMANIZED>"),
        agent(
            "Your fare is non-refundable, so after the one hundred dollar fee you'd get a travel credit "
            "of one hundred eighty-nine dollars. Shall I cancel?"
        ),
        user("Yes, go ahead and cancel it."),
        call(
            "cancel_reservation",
            confirmation_number="RW2JDN",
            journey_id="FL_SK862_20260924",
            cancellation_reason="voluntary",
        ),
        call(
            "issue_travel_credit",
            confirmation_number="RW2JDN",
            passenger_id="PAX001",
            amount=189.0,
            credit_reason="cancellation_non_refundable",
        ),
        agent(
            "Your flight is cancelled, and your one hundred eighty-nine dollar travel credit is valid for "
            "twelve months."
        ),
    ]
    record = {
        "id": "HL-AIR-003",
        "current_date_time": "2026-09-09 11:30 EDT",
        "user_goal": {
            "high_level_user_goal": "You want to cancel your September 24 flight from Atlanta to Phoenix and keep whatever value you can.",
            "decision_tree": {
                "must_have_criteria": ["The booking is cancelled and the agent confirms it."],
                "nice_to_have_criteria": ["You receive a travel credit for the remaining value."],
                "negotiation_behavior": [
                    "Give the confirmation code and last name when asked.",
                    "Accept the cancellation fee and a travel credit; do not ask for a cash refund.",
                ],
                "resolution_condition": "The agent has cancelled the booking and told you the travel credit amount. End the call.",
                "failure_condition": "If the agent cannot cancel after two requests, say goodbye and end the call.",
                "escalation_behavior": _escalation(),
                "edge_cases": [
                    "Decline offers to change the flight instead.",
                    *_common_edge_cases(),
                ],
            },
            "information_required": {
                "Passenger first name": "<FIRST_NAME>",
                "Passenger last name": "<LAST_NAME>",
                "Booking confirmation number": "RW2JDN",
                "Flight": "SK862, ATL to PHX, 2026-09-24",
                "Reason": "Plans changed",
            },
        },
        "user_config": {
            "name": "<FIRST_NAME> <LAST_NAME>",
            "gender": "man",
            "user_persona_id": 2,
            "user_persona": "You are matter-of-fact and agree quickly once the terms are clear.",
        },
        "expected_flow": (
            "Voluntary cancellation of a non-refundable Main Cabin fare. The agent authenticates, explains the "
            "one hundred dollar fee and the resulting travel credit, cancels after the caller agrees and issues "
            "the credit."
        ),
        "scenario_context": {
            "premise": "<FIRST_NAME>'s conference in Phoenix was called off; the ticket is non-refundable.",
            "user_priorities": [
                {"rank": 1, "priority": "Cancel and keep the remaining value", "satisfied": True}
            ],
        },
        "starting_utterances": {"en": trace[0]["utterance"]},
        "culture_overrides": {
            "en": {"first_name": "Owen", "last_name": "Carter", "phone": "+1-404-555-0128"}
        },
        "romanized_culture_overrides": {"en": {"first_name": "Owen", "last_name": "Carter"}},
    }
    return record, db, trace


def freeze(record: dict[str, Any], db: dict[str, Any], trace: list[Event]) -> dict[str, Any]:
    """Run the scripted tool calls and freeze responses + final DB into the record."""
    executor = ToolExecutor(db, current_date_time=record["current_date_time"])
    events: list[Event] = []
    for event in trace:
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


def main() -> None:
    scenarios = OUT / "airline_scenarios"
    scenarios.mkdir(parents=True, exist_ok=True)
    dataset = []
    for build in (record_001, record_002, record_003):
        record, db, trace = build()
        (scenarios / f"{record['id']}.json").write_text(
            json.dumps(db, indent=2) + "\n", encoding="utf-8"
        )
        dataset.append(freeze(record, copy.deepcopy(db), trace))
    (OUT / "airline_dataset.json").write_text(
        json.dumps(dataset, indent=2) + "\n", encoding="utf-8"
    )
    print(f"wrote {len(dataset)} records to {OUT}")


if __name__ == "__main__":
    main()
