"""Airline tools, the executor, declarations, and exact replay of reference traces."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydralab.records import DEFAULT_DATA_DIR, list_records, load_record
from hydralab.scoring import db_hash, normalize_db, task_completion
from hydralab.tools import DOMAINS, ToolExecutor, UnknownDomainError, declarations

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
EVA_IDS = ("1.1.2", "2.2.5", "4.2.1", "5.1.2", "5.2.2", "7.2.8")
needs_eva = pytest.mark.skipif(
    not (EVA_DIR / "data").is_dir(), reason="shared EVA data not present"
)

CONF = "HT4KWB"
OLD = "FL_SK418_20260508"
NEW = "FL_SK430_20260512"
CONNECTION = "FL_SK210_SK577_20260512"


def _db() -> dict[str, Any]:
    """HL-AIR-001's resolved initial DB plus a disruption entry."""
    db = copy.deepcopy(load_record("HL-AIR-001").initial_db)
    db["disruptions"]["SK418_2026-05-08"] = {
        "flight_number": "SK418",
        "date": "2026-05-08",
        "disruption_type": "delay",
        "cause": "storm",
        "cause_category": "weather",
        "is_irrops": True,
        "delay_minutes": 250,
        "passenger_entitled_to": {"fee_waiver": True, "meal_voucher": True},
    }
    return db


@pytest.fixture
def ex() -> ToolExecutor:
    return ToolExecutor(_db(), current_date_time="2026-05-04 09:20 MDT")


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["status"] == "success", result
    return result


def _err(result: dict[str, Any], error_type: str) -> None:
    assert result["status"] == "error", result
    assert result["error_type"] == error_type, result
    assert isinstance(result["message"], str) and result["message"]


def _auth(ex: ToolExecutor) -> None:
    _ok(ex.execute("get_reservation", {"confirmation_number": CONF, "last_name": "Brooks"}))


def _rebook(ex: ToolExecutor, **extra: Any) -> dict[str, Any]:
    params = {
        "confirmation_number": CONF,
        "journey_id": OLD,
        "new_journey_id": NEW,
        "rebooking_type": "voluntary",
        "waive_change_fee": False,
    }
    params.update(extra)
    return ex.execute("rebook_flight", params)


# --- executor --------------------------------------------------------------------------------


def test_executor_copies_db_and_sets_date() -> None:
    db = _db()
    before = copy.deepcopy(db)
    ex = ToolExecutor(db, current_date_time="2026-05-05 08:00 MDT")
    assert ex.db["_current_date"] == "2026-05-05"
    assert ex.initial_db["_current_date"] == "2026-05-05"
    _auth(ex)
    _ok(_rebook(ex))
    assert db == before
    assert ex.initial_db["_current_date"] == "2026-05-05" and "session" not in ex.initial_db
    ex.reset()
    assert ex.db == ex.initial_db and ex.call_index == 0 and ex.call_counts == {}
    assert ToolExecutor(db).db["_current_date"] == db["_current_date"]


def test_executor_tool_names_and_unknown() -> None:
    ex = ToolExecutor(_db())
    assert set(ex.tool_names) == set(DOMAINS["airline"]) and len(ex.tool_names) == 15
    _err(ex.execute("teleport", {}), "tool_not_found")
    assert ex.call_index == 1 and ex.call_counts == {"teleport": 1}
    with pytest.raises(UnknownDomainError, match="itsm"):
        ToolExecutor({}, domain="itsm")


def test_executor_enabled_tools() -> None:
    ex = ToolExecutor(_db(), enabled_tools=["get_reservation"])
    assert ex.tool_names == ("get_reservation",)
    _err(
        ex.execute("get_flight_status", {"flight_number": "SK418", "flight_date": "2026-05-08"}),
        "tool_not_found",
    )


def test_executor_execution_error_and_bad_params() -> None:
    db = _db()
    db["journeys"] = ["not", "a", "table"]
    ex = ToolExecutor(db)
    _err(
        ex.execute(
            "search_rebooking_options",
            {
                "origin": "DEN",
                "destination": "SEA",
                "date": "2026-05-12",
                "passenger_count": 1,
                "fare_class": "any",
            },
        ),
        "execution_error",
    )
    _err(ex.execute("get_reservation", ["HT4KWB"]), "invalid_parameter")  # type: ignore[arg-type]
    _err(ex.execute("get_reservation", None), "invalid_parameter")


def test_responses_are_snapshots(ex: ToolExecutor) -> None:
    res = _ok(ex.execute("get_reservation", {"confirmation_number": CONF, "last_name": "brooks"}))
    res["reservation"]["status"] = "tampered"
    assert ex.db["reservations"][CONF]["status"] == "confirmed"
    pax_ids = ["PAX001"]
    params = {"confirmation_number": CONF, "journey_id": NEW, "passenger_ids": pax_ids}
    _ok(ex.execute("add_to_standby", params))
    pax_ids.append("PAX999")
    assert ex.db["journeys"][NEW]["standby_list"][0]["passenger_id"] == "PAX001"
    assert len(ex.db["journeys"][NEW]["standby_list"]) == 1


def test_determinism() -> None:
    record = load_record("HL-AIR-001")
    runs = []
    for _ in range(2):
        ex = ToolExecutor.for_record(record)
        runs.append((ex.replay(record.trace), db_hash(ex.db)))
    assert runs[0] == runs[1]


# --- read tools ------------------------------------------------------------------------------


def test_get_reservation_authenticates(ex: ToolExecutor) -> None:
    res = _ok(
        ex.execute("get_reservation", {"confirmation_number": "ht4kwb", "last_name": "BROOKS"})
    )
    assert ex.db["session"] == {"confirmation_number": CONF, "last_name": "brooks"}
    seg = res["reservation"]["bookings"][0]["segments"][0]
    assert (
        seg["origin"],
        seg["destination"],
        seg["scheduled_departure"],
        seg["scheduled_arrival"],
    ) == (
        "DEN",
        "SEA",
        "07:40",
        "09:55",
    )
    assert "origin" not in ex.db["reservations"][CONF]["bookings"][0]["segments"][0]


def test_get_reservation_errors(ex: ToolExecutor) -> None:
    _err(
        ex.execute("get_reservation", {"confirmation_number": CONF, "last_name": "Smith"}),
        "authentication_failed",
    )
    assert "session" not in ex.db
    _err(
        ex.execute("get_reservation", {"confirmation_number": "ZZZZZZ", "last_name": "Brooks"}),
        "not_found",
    )
    _err(
        ex.execute("get_reservation", {"confirmation_number": "HT4K", "last_name": "Brooks"}),
        "invalid_confirmation_number_format",
    )
    _err(ex.execute("get_reservation", {"confirmation_number": CONF}), "invalid_parameter")
    _err(
        ex.execute("get_reservation", {"confirmation_number": CONF, "last_name": "  "}),
        "authentication_failed",
    )


def test_bookings_sorted_by_date(ex: ToolExecutor) -> None:
    _ok(_rebook(ex))
    res = _ok(ex.execute("get_reservation", {"confirmation_number": CONF, "last_name": "brooks"}))
    assert [b["journey_id"] for b in res["reservation"]["bookings"]] == [OLD, NEW]


def test_get_flight_status(ex: ToolExecutor) -> None:
    res = _ok(
        ex.execute("get_flight_status", {"flight_number": "sk418", "flight_date": "2026-05-08"})
    )
    assert res["journey"]["journey_id"] == OLD
    # a later leg of a connection finds the connecting journey
    res = _ok(
        ex.execute("get_flight_status", {"flight_number": "SK577", "flight_date": "2026-05-12"})
    )
    assert res["journey"]["journey_id"] == CONNECTION
    _err(
        ex.execute("get_flight_status", {"flight_number": "SK999", "flight_date": "2026-05-12"}),
        "not_found",
    )
    _err(
        ex.execute("get_flight_status", {"flight_number": "418", "flight_date": "2026-05-12"}),
        "invalid_flight_number_format",
    )
    _err(
        ex.execute("get_flight_status", {"flight_number": "SK418", "flight_date": "2026-02-30"}),
        "not_found",  # well-formed, so a lookup miss (EVA checks the shape only)
    )
    _err(
        ex.execute("get_flight_status", {"flight_number": "SK418", "flight_date": "May 8"}),
        "invalid_date_format",
    )


def test_get_disruption_info(ex: ToolExecutor) -> None:
    res = _ok(ex.execute("get_disruption_info", {"flight_number": "SK418", "date": "2026-05-08"}))
    assert res["disruption"]["delay_minutes"] == 250
    _err(ex.execute("get_disruption_info", {"flight_number": "SK418"}), "invalid_date_format")
    _err(
        ex.execute("get_disruption_info", {"flight_number": "SK430", "date": "2026-05-12"}),
        "not_found",
    )


def _search(ex: ToolExecutor, **extra: Any) -> dict[str, Any]:
    params = {
        "origin": "DEN",
        "destination": "SEA",
        "date": "2026-05-12",
        "passenger_count": 1,
        "fare_class": "main_cabin",
    }
    params.update(extra)
    return ex.execute("search_rebooking_options", params)


def test_search_rebooking_options(ex: ToolExecutor) -> None:
    res = _ok(_search(ex, origin="den"))
    ids = [o["journey_id"] for o in res["options"]]
    # sorted by departure; the cancelled SK444 is filtered out
    assert ids == ["FL_SK422_20260512", CONNECTION, NEW, "FL_SK436_20260512"]
    assert res["count"] == 4
    conn = res["options"][1]
    assert conn["available_seats"]["main_cabin"] == 2  # tightest leg decides
    assert conn["fare"] == 268.0 and conn["num_stops"] == 1
    assert (conn["departure_time"], conn["arrival_time"]) == ("08:05", "12:05")
    # passenger count above the tightest leg drops the connection
    res = _ok(_search(ex, passenger_count=3))
    assert CONNECTION not in [o["journey_id"] for o in res["options"]]
    # "any" picks the cheapest class with seats
    res = _ok(_search(ex, fare_class="any"))
    first = res["options"][0]
    assert first["fare"] == 219.0 == first["segments"][0]["fares"]["basic_economy"]
    assert set(first) == {  # EVA's option fields, nothing more (no fare_class, no seat types)
        "journey_id",
        "origin",
        "destination",
        "num_stops",
        "total_duration_minutes",
        "departure_time",
        "arrival_time",
        "segments",
        "available_seats",
        "fare",
    }
    # first class has no seats on this route
    assert _ok(_search(ex, fare_class="first"))["options"] == []
    _err(_search(ex, origin="DENVER"), "invalid_airport_code_format")
    _err(_search(ex, fare_class="economy"), "invalid_fare_class")
    _err(_search(ex, passenger_count=0), "invalid_parameter")


# --- rebook_flight ---------------------------------------------------------------------------


def test_rebook_flight_voluntary(ex: ToolExecutor) -> None:
    res = _ok(_rebook(ex, waive_change_fee=False, new_fare_class="main_cabin"))
    assert res["cost_summary"] == {
        "original_fare_class": "main_cabin",
        "new_fare_class": "main_cabin",
        "cabin_changed": False,
        "change_fee": 75,
        "fare_difference": 65.0,
        "credit_due": 0,
        "total_collected": 140.0,
        "fee_waived": False,
    }
    assert res["new_journey"]["departure"] == "10:15"
    reservation = ex.db["reservations"][CONF]
    assert reservation["status"] == "changed"
    old, new = reservation["bookings"]
    assert old["status"] == "cancelled" and old["segments"][0]["seat"] == "23A"
    assert new == {
        "journey_id": NEW,
        "fare_class": "main_cabin",
        "fare_paid": 310.0,
        "status": "confirmed",
        "segments": [
            {
                "flight_number": "SK430",
                "date": "2026-05-12",
                "fare_paid": 310.0,
                "seat": None,
                "bags_checked": 0,
                "meal_request": None,
            }
        ],
    }

    def seats(journey_id: str) -> int:
        return int(ex.db["journeys"][journey_id]["segments"][0]["available_seats"]["main_cabin"])

    assert (seats(OLD), seats(NEW)) == (15, 18)


@pytest.mark.parametrize(
    ("fare_class", "rebooking_type", "waive", "fee"),
    [
        ("basic_economy", "voluntary", False, 75),
        ("premium_economy", "voluntary", False, 75),
        ("business", "voluntary", False, 0),
        ("first", "voluntary", False, 0),
        ("basic_economy", "same_day", False, 199),
        ("main_cabin", "same_day", False, 75),
        ("business", "same_day", False, 75),
        ("main_cabin", "voluntary", True, 0),
        ("main_cabin", "missed_flight_passenger_fault", False, 75),
    ],
)
def test_rebook_change_fees(fare_class: str, rebooking_type: str, waive: bool, fee: int) -> None:
    db = _db()
    booking = db["reservations"][CONF]["bookings"][0]
    booking["fare_class"] = fare_class
    db["journeys"][NEW]["fares"]["first"] = 1500.0
    db["journeys"][NEW]["segments"][0]["available_seats"]["first"] = 2
    ex = ToolExecutor(db)
    res = _ok(_rebook(ex, rebooking_type=rebooking_type, waive_change_fee=waive))
    cost = res["cost_summary"]
    new_fare = db["journeys"][NEW]["fares"][fare_class]
    assert cost["change_fee"] == fee
    assert cost["fee_waived"] is waive
    assert cost["fare_difference"] == new_fare - 245.0
    assert cost["total_collected"] == fee + max(0.0, new_fare - 245.0)
    assert ex.db["reservations"][CONF]["bookings"][1]["fare_paid"] == new_fare


def test_rebook_irrops_keeps_fare_and_collects_nothing(ex: ToolExecutor) -> None:
    res = _ok(_rebook(ex, rebooking_type="irrops_delay"))
    assert res["cost_summary"]["change_fee"] == 0
    assert res["cost_summary"]["total_collected"] == 0
    assert res["cost_summary"]["fee_waived"] is True
    new = ex.db["reservations"][CONF]["bookings"][1]
    assert new["fare_paid"] == 245.0 and new["segments"][0]["fare_paid"] == 245.0


def test_rebook_downgrade_gives_credit_due(ex: ToolExecutor) -> None:
    res = _ok(_rebook(ex, new_fare_class="basic_economy"))
    cost = res["cost_summary"]
    assert cost["cabin_changed"] is True
    assert cost["fare_difference"] == -6.0 and cost["credit_due"] == 6.0
    assert cost["total_collected"] == 75
    assert ex.db["journeys"][NEW]["segments"][0]["available_seats"]["basic_economy"] == 6
    assert ex.db["journeys"][OLD]["segments"][0]["available_seats"]["main_cabin"] == 15


def test_rebook_errors(ex: ToolExecutor) -> None:
    _err(_rebook(ex, rebooking_type="whim"), "invalid_rebooking_type")
    _err(_rebook(ex, new_fare_class="coach"), "invalid_fare_class")
    _err(_rebook(ex, journey_id="SK418"), "invalid_journey_id_format")
    _err(_rebook(ex, waive_change_fee="maybe"), "invalid_parameter")
    _err(_rebook(ex, confirmation_number="ABCDEF"), "not_found")
    _err(_rebook(ex, journey_id="FL_SK422_20260512"), "journey_not_found")
    _err(_rebook(ex, new_journey_id="FL_SK999_20260512"), "flight_not_found")
    _err(_rebook(ex, new_journey_id="FL_SK444_20260512"), "not_bookable")
    _err(_rebook(ex, new_fare_class="first"), "fare_class_not_available")
    ex.db["journeys"][NEW]["segments"][0]["available_seats"]["main_cabin"] = 0
    _err(_rebook(ex), "no_seats_available")
    assert ex.db["reservations"][CONF]["status"] == "confirmed"
    assert len(ex.db["reservations"][CONF]["bookings"]) == 1


def test_connection_partial_rebook_and_leg_tools(ex: ToolExecutor) -> None:
    _ok(_rebook(ex, new_journey_id=CONNECTION))
    args = {"confirmation_number": CONF, "passenger_id": "PAX001", "journey_id": CONNECTION}
    _err(ex.execute("assign_seat", {**args, "seat_preference": "aisle"}), "flight_number_required")
    _err(
        ex.execute("assign_seat", {**args, "seat_preference": "aisle", "flight_number": "SK1"}),
        "flight_not_found",
    )
    res = _ok(
        ex.execute("assign_seat", {**args, "seat_preference": "aisle", "flight_number": "SK577"})
    )
    assert res["seat_assigned"] == "21C"
    _ok(
        ex.execute(
            "add_baggage_allowance",
            {"confirmation_number": CONF, "journey_id": CONNECTION, "num_bags": 2},
        )
    )
    booking = ex.db["reservations"][CONF]["bookings"][1]
    assert [s["bags_checked"] for s in booking["segments"]] == [2, 2]
    assert [s["fare_paid"] for s in booking["segments"]] == [131.0, 137.0]
    # replace only the SLC-SEA leg with a later one
    later = copy.deepcopy(ex.db["journeys"][NEW])
    later.update(journey_id="FL_SK579_20260512", origin="SLC")
    later["segments"][0].update(flight_number="SK579", origin="SLC")
    ex.db["journeys"]["FL_SK579_20260512"] = later
    res = _ok(
        _rebook(
            ex,
            journey_id=CONNECTION,
            new_journey_id="FL_SK579_20260512",
            flight_number="SK577",
            rebooking_type="irrops_cancellation",
        )
    )
    assert res["partial_rebook"] is True
    assert res["replaced_segment"]["flight_number"] == "SK577"
    assert [k["flight_number"] for k in res["kept_segments"]] == ["SK210"]
    bookings = ex.db["reservations"][CONF]["bookings"]
    assert [(b["journey_id"], b["status"]) for b in bookings] == [
        (OLD, "cancelled"),
        (CONNECTION, "cancelled"),
        ("FL_SK579_20260512", "confirmed"),
        (CONNECTION, "confirmed"),
    ]
    assert bookings[2]["fare_paid"] == 137.0  # IRROPS: the replaced leg's fare carries over
    assert bookings[3]["segments"][0]["bags_checked"] == 2 and bookings[3]["fare_paid"] == 131.0


# --- other write tools -----------------------------------------------------------------------


def test_assign_seat(ex: ToolExecutor) -> None:
    _ok(_rebook(ex))
    args = {"confirmation_number": CONF, "passenger_id": "PAX001", "journey_id": NEW}
    for pref, seat in (
        ("window", "21A"),
        ("middle", "21B"),
        ("aisle", "21C"),
        ("no_preference", "21C"),
    ):
        res = _ok(ex.execute("assign_seat", {**args, "seat_preference": pref}))
        assert res["seat_assigned"] == seat and res["preference"] == pref
        assert ex.db["reservations"][CONF]["bookings"][1]["segments"][0]["seat"] == seat
    _err(ex.execute("assign_seat", args), "invalid_seat_preference")  # required, no default
    _err(
        ex.execute("assign_seat", {**args, "seat_preference": "exit_row"}),
        "invalid_seat_preference",
    )
    _err(
        ex.execute("assign_seat", {**args, "passenger_id": "P1", "seat_preference": "aisle"}),
        "invalid_passenger_id_format",
    )
    _err(
        ex.execute(
            "assign_seat",
            {**args, "journey_id": "FL_SK436_20260512", "seat_preference": "aisle"},
        ),
        "journey_not_found",
    )


def test_assign_seat_type_unavailable() -> None:
    db = _db()
    db["reservations"][CONF]["bookings"][0]["fare_class"] = "business"
    db["journeys"]["FL_SK436_20260512"]["segments"][0]["fares"]["business"] = 990.0
    ex = ToolExecutor(db)
    _ok(_rebook(ex, new_journey_id="FL_SK436_20260512"))
    args = {
        "confirmation_number": CONF,
        "passenger_id": "PAX001",
        "journey_id": "FL_SK436_20260512",
    }
    _err(ex.execute("assign_seat", {**args, "seat_preference": "middle"}), "seat_type_unavailable")
    assert (
        _ok(ex.execute("assign_seat", {**args, "seat_preference": "no_preference"}))[
            "seat_assigned"
        ]
        == "6C"
    )
    assert (
        _ok(ex.execute("assign_seat", {**args, "seat_preference": "window"}))["seat_assigned"]
        == "6A"
    )


def test_add_to_standby(ex: ToolExecutor) -> None:
    args = {
        "confirmation_number": CONF,
        "journey_id": "FL_SK422_20260512",
        "passenger_ids": ["PAX001"],
    }
    res = _ok(ex.execute("add_to_standby", args))
    assert res["standby_list_position"] == 1
    assert ex.db["journeys"]["FL_SK422_20260512"]["standby_list"] == [
        {"confirmation_number": CONF, "passenger_id": "PAX001", "position": 1}
    ]
    assert ex.db["reservations"][CONF]["standby_list"] == [
        {
            "journey_id": "FL_SK422_20260512",
            "passenger_ids": ["PAX001"],
            "position": 1,
            "status": "pending",
        }
    ]
    assert _ok(ex.execute("add_to_standby", args))["standby_list_position"] == 2
    _err(
        ex.execute("add_to_standby", {**args, "journey_id": "FL_SK444_20260512"}),
        "flight_cancelled",
    )
    _err(
        ex.execute("add_to_standby", {**args, "journey_id": "FL_SK1_20260512"}), "flight_not_found"
    )
    _err(ex.execute("add_to_standby", {**args, "passenger_ids": ["PAX007"]}), "invalid_passengers")
    _err(
        ex.execute("add_to_standby", {**args, "passenger_ids": ["X1"]}),
        "invalid_passenger_id_format",
    )


def test_add_baggage_and_meal(ex: ToolExecutor) -> None:
    res = _ok(
        ex.execute(
            "add_baggage_allowance",
            {"confirmation_number": CONF, "journey_id": OLD, "num_bags": "3"},
        )
    )
    assert res["bags_checked"] == 3
    assert ex.db["reservations"][CONF]["bookings"][0]["segments"][0]["bags_checked"] == 3
    for bad in (6, -1, 1.5, "two"):
        _err(
            ex.execute(
                "add_baggage_allowance",
                {"confirmation_number": CONF, "journey_id": OLD, "num_bags": bad},
            ),
            "invalid_bag_count",
        )
    meal = {
        "confirmation_number": CONF,
        "passenger_id": "PAX001",
        "journey_id": OLD,
        "meal_type": "vegan",
    }
    assert _ok(ex.execute("add_meal_request", meal))["meal_type"] == "vegan"
    assert ex.db["reservations"][CONF]["bookings"][0]["segments"][0]["meal_request"] == "vegan"
    _err(ex.execute("add_meal_request", {**meal, "meal_type": "pizza"}), "invalid_meal_type")


def test_issue_travel_credit(ex: ToolExecutor) -> None:
    args = {
        "confirmation_number": CONF,
        "passenger_id": "PAX001",
        "amount": 50,
        "credit_reason": "goodwill",
    }
    res = _ok(ex.execute("issue_travel_credit", args))
    assert res["credit_code"] == "TCHT4KWBPAX" and res["valid_months"] == 12
    assert "expiry_date" not in res  # EVA's response keys; the DB entry has the date
    assert ex.db["travel_credits"]["TCHT4KWBPAX"] == {
        "credit_code": "TCHT4KWBPAX",
        "confirmation_number": CONF,
        "passenger_id": "PAX001",
        "amount": 50.0,
        "credit_reason": "goodwill",
        "issued_date": "2026-05-04",
        "expiry_date": "2027-05-04",
        "status": "active",
    }
    _err(
        ex.execute("issue_travel_credit", {**args, "credit_reason": "because"}),
        "invalid_credit_reason",
    )
    _err(ex.execute("issue_travel_credit", {**args, "amount": 0}), "invalid_parameter")
    _err(ex.execute("issue_travel_credit", {**args, "amount": "lots"}), "invalid_parameter")
    _err(
        ex.execute("issue_travel_credit", {**args, "confirmation_number": "QQQQQQ"}),
        "not_found",
    )


def test_vouchers(ex: ToolExecutor) -> None:
    args = {"confirmation_number": CONF, "passenger_id": "PAX001"}
    for reason, amount in (
        ("delay_over_2_hours", 12),
        ("delay_over_4_hours", 15),
        ("irrops_overnight", 25),
    ):
        res = _ok(ex.execute("issue_meal_voucher", {**args, "voucher_reason": reason}))
        assert (res["voucher_code"], res["amount"]) == ("MEAL-HT4KWB-PAX0", amount)
    assert ex.db["meal_vouchers"]["MEAL-HT4KWB-PAX0"]["issued_date"] == "2026-05-04"
    _err(
        ex.execute("issue_meal_voucher", {**args, "voucher_reason": "hungry"}),
        "invalid_voucher_reason",
    )
    res = _ok(ex.execute("issue_hotel_voucher", {**args, "num_nights": 2}))
    assert (
        res["voucher_code"] == "HOTEL-HT4KWB"
        and ex.db["hotel_vouchers"]["HOTEL-HT4KWB"]["num_nights"] == 2
    )
    _err(ex.execute("issue_hotel_voucher", {**args, "num_nights": 4}), "exceeds_authority")
    _err(ex.execute("issue_hotel_voucher", {**args, "num_nights": 0}), "invalid_parameter")


def test_cancel_reservation_non_refundable(ex: ToolExecutor) -> None:
    args = {"confirmation_number": CONF, "journey_id": OLD, "cancellation_reason": "voluntary"}
    res = _ok(ex.execute("cancel_reservation", args))
    assert (res["is_refundable"], res["cancellation_fee"]) == (False, 100)
    assert (res["refund_amount_eligible"], res["credit_amount_eligible"]) == (0, 145.0)
    assert res["reservation_status"] == "cancelled"
    assert ex.db["reservations"][CONF]["status"] == "cancelled"
    assert ex.db["journeys"][OLD]["segments"][0]["available_seats"]["main_cabin"] == 15
    _err(ex.execute("cancel_reservation", args), "already_cancelled")
    _err(
        ex.execute("cancel_reservation", {**args, "cancellation_reason": "bored"}),
        "invalid_cancellation_reason",
    )
    _err(ex.execute("cancel_reservation", {**args, "journey_id": NEW}), "journey_not_found")


@pytest.mark.parametrize(
    ("reason", "fare_type"), [("24_hour_rule", "non_refundable"), ("voluntary", "refundable")]
)
def test_cancel_reservation_refundable(reason: str, fare_type: str) -> None:
    db = _db()
    db["reservations"][CONF]["fare_type"] = fare_type
    ex = ToolExecutor(db)
    res = _ok(
        ex.execute(
            "cancel_reservation",
            {"confirmation_number": CONF, "journey_id": OLD, "cancellation_reason": reason},
        )
    )
    assert (res["is_refundable"], res["cancellation_fee"], res["refund_amount_eligible"]) == (
        True,
        0,
        245.0,
    )
    assert res["credit_amount_eligible"] == 0


def test_cancel_one_of_two_journeys_keeps_reservation(ex: ToolExecutor) -> None:
    _ok(_rebook(ex))
    ex.db["reservations"][CONF]["bookings"][0]["status"] = "confirmed"  # two live journeys
    res = _ok(
        ex.execute(
            "cancel_reservation",
            {"confirmation_number": CONF, "journey_id": NEW, "cancellation_reason": "voluntary"},
        )
    )
    assert res["reservation_status"] == "active"
    assert ex.db["reservations"][CONF]["status"] == "changed"


def test_process_refund_ids_follow_call_index(ex: ToolExecutor) -> None:
    args = {"confirmation_number": CONF, "refund_amount": 20.5, "refund_type": "ancillary_fees"}
    assert _ok(ex.execute("process_refund", args))["refund_id"] == "REF-HT4KWB-001"
    _ok(ex.execute("get_flight_status", {"flight_number": "SK418", "flight_date": "2026-05-08"}))
    assert _ok(ex.execute("process_refund", args))["refund_id"] == "REF-HT4KWB-002"
    assert ex.db["refunds"]["REF-HT4KWB-002"]["initiated_date"] == "2026-05-04"
    assert ex.call_counts == {"process_refund": 2, "get_flight_status": 1} and ex.call_index == 3
    _err(ex.execute("process_refund", {**args, "refund_amount": -5}), "invalid_parameter")
    _err(ex.execute("process_refund", {**args, "refund_type": "cash"}), "invalid_refund_type")


def test_transfer_to_agent(ex: ToolExecutor) -> None:
    before = copy.deepcopy(ex.db)
    args = {
        "confirmation_number": CONF,
        "transfer_reason": "passenger_requested",
        "issue_summary": "Wants a human.",
    }
    res = _ok(ex.execute("transfer_to_agent", args))
    assert res["transfer_id"] == "TRF-HT4KWB-001"
    assert _ok(ex.execute("transfer_to_agent", args))["transfer_id"] == "TRF-HT4KWB-002"
    _err(
        ex.execute("transfer_to_agent", {"transfer_reason": "x", "issue_summary": "y"}),
        "invalid_confirmation_number_format",  # required, like every declared parameter
    )
    assert ex.db == before
    _err(
        ex.execute("transfer_to_agent", {**args, "confirmation_number": "NONE00"}),
        "not_found",
    )
    _err(ex.execute("transfer_to_agent", {"confirmation_number": CONF}), "invalid_parameter")


# --- declarations ----------------------------------------------------------------------------


def test_declarations_from_our_agent_yaml() -> None:
    raw = yaml.safe_load((DEFAULT_DATA_DIR / "airline" / "agent.yaml").read_text())
    decls = declarations(raw)
    assert decls == declarations(load_record().agent)
    assert [d["name"] for d in decls] == [t["name"] for t in raw["tools"]]
    assert set(DOMAINS["airline"]) == {d["name"] for d in decls}
    by_name = {d["name"]: d for d in decls}
    credit = by_name["issue_travel_credit"]
    assert credit["type"] == "function"
    assert not credit["description"].startswith("issue_travel_credit:")
    assert credit["parameters"]["type"] == "object"
    assert credit["parameters"]["properties"]["amount"]["type"] == "number"
    assert credit["parameters"]["required"] == [
        "confirmation_number",
        "passenger_id",
        "amount",
        "credit_reason",
    ]
    standby = by_name["add_to_standby"]["parameters"]["properties"]["passenger_ids"]
    assert standby["type"] == "array" and standby["items"] == {"type": "string"}
    seat = by_name["assign_seat"]["parameters"]
    assert seat["properties"]["seat_preference"]["enum"] == [
        "window",
        "aisle",
        "middle",
        "no_preference",
    ]
    assert "flight_number" in seat["properties"] and "flight_number" not in seat["required"]


def test_declarations_defaults() -> None:
    decls = declarations(
        {
            "tools": [
                {
                    "name": "t",
                    "required_parameters": [
                        {"name": "xs", "type": "array"},
                        {"name": "n", "type": "integer"},
                    ],
                }
            ]
        }
    )
    assert decls == [
        {
            "type": "function",
            "name": "t",
            "description": "",
            "parameters": {
                "type": "object",
                "properties": {
                    "xs": {"type": "array", "items": {"type": "object"}},
                    "n": {"type": "integer"},
                },
                "required": ["xs", "n"],
            },
        }
    ]
    assert declarations({}) == []


@needs_eva
def test_declarations_from_eva_agent_yaml() -> None:
    raw = yaml.safe_load((EVA_DIR / "configs" / "agents" / "airline_agent.yaml").read_text())
    decls = declarations(raw)
    assert len(decls) == 15
    assert sum(len(d["parameters"]["properties"]) for d in decls) == 54
    refund = next(d for d in decls if d["name"] == "process_refund")
    assert refund["parameters"]["properties"]["refund_amount"]["type"] == "number"
    assert set(DOMAINS["airline"]) == {d["name"] for d in decls}


# --- replay of reference traces --------------------------------------------------------------


@pytest.mark.parametrize("record_id", list_records())
def test_our_records_replay_exactly(record_id: str) -> None:
    record = load_record(record_id)
    ex = ToolExecutor.for_record(record, enabled_tools=record.agent.tool_names)
    results = ex.replay(record.trace)
    stored = [e for e in record.trace if e["event_type"] == "tool_response"]
    calls = [e for e in record.trace if e["event_type"] == "tool_call"]
    assert len(results) == len(stored) == len(calls)
    for call, response, result in zip(calls, stored, results, strict=True):
        assert response["tool_name"] == call["tool_name"]
        assert response["status"] == result["status"] == "success"
        assert response["response"] == result  # exact, including float vs int
    assert db_hash(ex.db) == db_hash(record.expected_db)
    assert {k: v for k, v in ex.db.items() if k != "session"} == {
        k: v for k, v in record.expected_db.items() if k != "session"
    }
    assert ex.db["session"] == record.expected_session
    score = task_completion(record.expected_db, ex.db)
    assert score["score"] == 1.0 and score["auth_success"] and score["db_match"]


def test_read_only_record_leaves_db_unchanged() -> None:
    record = load_record("HL-AIR-002")
    ex = ToolExecutor.for_record(record)
    ex.replay(record.trace)
    assert db_hash(ex.db) == db_hash(record.initial_db) == db_hash(record.expected_db)
    assert normalize_db(record.expected_db)["session"] == {
        "confirmation_number": "PL9XMC",
        "last_name": "hunter",
    }


@needs_eva
@pytest.mark.parametrize("record_id", EVA_IDS)
def test_eva_records_replay_to_expected_db(record_id: str) -> None:
    record = load_record(record_id, data_dir=EVA_DIR)
    ex = ToolExecutor.for_record(record, enabled_tools=record.agent.tool_names)
    results = ex.replay(record.trace)
    stored = [e for e in record.trace if e["event_type"] == "tool_response"]
    assert [r["status"] for r in results] == [e["status"] for e in stored]
    score = task_completion(record.expected_db, ex.db)
    assert score["auth_success"], score["auth_mismatches"]
    assert score["db_match"], score["diff"]
    assert score["score"] == 1.0


@needs_eva
def test_eva_1_1_2_responses_match_key_fields() -> None:
    record = load_record("1.1.2", data_dir=EVA_DIR)
    ex = ToolExecutor.for_record(record)
    calls = [e["tool_name"] for e in record.trace if e["event_type"] == "tool_call"]
    ours = dict(zip(calls, ex.replay(record.trace), strict=True))
    stored = {
        e["tool_name"]: e["response"] for e in record.trace if e["event_type"] == "tool_response"
    }
    assert ours["rebook_flight"]["cost_summary"] == stored["rebook_flight"]["cost_summary"]
    assert ours["assign_seat"]["seat_assigned"] == stored["assign_seat"]["seat_assigned"] == "21A"
    assert [o["journey_id"] for o in ours["search_rebooking_options"]["options"]] == [
        o["journey_id"] for o in stored["search_rebooking_options"]["options"]
    ]
    assert ours["get_reservation"]["reservation"] == stored["get_reservation"]["reservation"]


# --- every tool: happy path, missing parameter, malformed code, unknown reservation ----------

VALID_CALLS: dict[str, dict[str, Any]] = {
    "get_reservation": {"confirmation_number": CONF, "last_name": "brooks"},
    "get_flight_status": {"flight_number": "SK418", "flight_date": "2026-05-08"},
    "get_disruption_info": {"flight_number": "SK418", "date": "2026-05-08"},
    "search_rebooking_options": {
        "origin": "DEN",
        "destination": "SEA",
        "date": "2026-05-12",
        "passenger_count": 1,
        "fare_class": "main_cabin",
    },
    "rebook_flight": {
        "confirmation_number": CONF,
        "journey_id": OLD,
        "new_journey_id": NEW,
        "rebooking_type": "voluntary",
        "waive_change_fee": False,
    },
    "add_to_standby": {"confirmation_number": CONF, "journey_id": NEW, "passenger_ids": ["PAX001"]},
    "assign_seat": {
        "confirmation_number": CONF,
        "passenger_id": "PAX001",
        "journey_id": OLD,
        "seat_preference": "aisle",
    },
    "add_baggage_allowance": {"confirmation_number": CONF, "journey_id": OLD, "num_bags": 2},
    "add_meal_request": {
        "confirmation_number": CONF,
        "passenger_id": "PAX001",
        "journey_id": OLD,
        "meal_type": "vegan",
    },
    "issue_travel_credit": {
        "confirmation_number": CONF,
        "passenger_id": "PAX001",
        "amount": 50,
        "credit_reason": "goodwill",
    },
    "issue_hotel_voucher": {"confirmation_number": CONF, "passenger_id": "PAX001", "num_nights": 1},
    "issue_meal_voucher": {
        "confirmation_number": CONF,
        "passenger_id": "PAX001",
        "voucher_reason": "delay_over_4_hours",
    },
    "cancel_reservation": {
        "confirmation_number": CONF,
        "journey_id": OLD,
        "cancellation_reason": "voluntary",
    },
    "process_refund": {
        "confirmation_number": CONF,
        "refund_amount": 20,
        "refund_type": "taxes_only",
    },
    "transfer_to_agent": {
        "confirmation_number": CONF,
        "transfer_reason": "passenger_requested",
        "issue_summary": "Wants a person.",
    },
}
# VALID_CALLS hold exactly the parameters EVA's agent config marks required; a missing one
# answers the parameter's own error type (EVA's rule), or invalid_parameter when it has none.
MISSING_ERROR = {
    "confirmation_number": "invalid_confirmation_number_format",
    "flight_number": "invalid_flight_number_format",
    "flight_date": "invalid_date_format",
    "date": "invalid_date_format",
    "journey_id": "invalid_journey_id_format",
    "new_journey_id": "invalid_journey_id_format",
    "passenger_id": "invalid_passenger_id_format",
    "passenger_ids": "invalid_passenger_id_format",
    "origin": "invalid_airport_code_format",
    "destination": "invalid_airport_code_format",
    "num_bags": "invalid_bag_count",
    "rebooking_type": "invalid_rebooking_type",
    "fare_class": "invalid_fare_class",
    "seat_preference": "invalid_seat_preference",
    "meal_type": "invalid_meal_type",
    "credit_reason": "invalid_credit_reason",
    "voucher_reason": "invalid_voucher_reason",
    "refund_type": "invalid_refund_type",
    "cancellation_reason": "invalid_cancellation_reason",
}
NOT_FOUND = {  # a well-formed id that is not in the DB
    "get_flight_status": ("flight_number", "SK999"),
    "get_disruption_info": ("flight_number", "SK999"),
}


def _fresh() -> ToolExecutor:
    return ToolExecutor(_db(), current_date_time="2026-05-04 09:20 MDT")


def test_valid_calls_cover_all_tools() -> None:
    assert set(VALID_CALLS) == set(DOMAINS["airline"])
    ours = yaml.safe_load((DEFAULT_DATA_DIR / "airline" / "agent.yaml").read_text())
    for tool in ours["tools"]:
        declared = {p["name"] for p in tool.get("required_parameters") or []}
        assert declared <= set(VALID_CALLS[tool["name"]]), tool["name"]


def test_our_agent_yaml_declares_every_required_parameter() -> None:
    ours = yaml.safe_load((DEFAULT_DATA_DIR / "airline" / "agent.yaml").read_text())
    for tool in ours["tools"]:
        declared = {p["name"] for p in tool.get("required_parameters") or []}
        assert declared == set(VALID_CALLS[tool["name"]]), tool["name"]


@pytest.mark.parametrize("name", sorted(VALID_CALLS))
def test_each_tool_happy_path_and_parameter_errors(name: str) -> None:
    args = VALID_CALLS[name]
    ex = _fresh()
    before = copy.deepcopy(ex.db)
    result = _ok(ex.execute(name, args))
    assert "message" in result or name.startswith("get_") or "reservation" in result
    tool_type = yaml.safe_load((DEFAULT_DATA_DIR / "airline" / "agent.yaml").read_text())
    kinds = {t["name"]: t["tool_type"] for t in tool_type["tools"]}
    if kinds[name] in ("read", "system"):
        assert ex.db == before, f"{name} is {kinds[name]} but changed the DB"
    else:
        assert ex.db != before, f"{name} is {kinds[name]} but left the DB alone"
    for param in args:  # every required parameter missing (or null) -> its error type
        expected = MISSING_ERROR.get(param, "invalid_parameter")
        fresh = _fresh()
        _err(fresh.execute(name, {k: v for k, v in args.items() if k != param}), expected)
        _err(fresh.execute(name, {**args, param: None}), expected)
        assert fresh.db == _fresh().db
    fresh = _fresh()
    if "confirmation_number" in args:
        _err(
            fresh.execute(name, {**args, "confirmation_number": "HT4-KWB"}),
            "invalid_confirmation_number_format",
        )
        unknown = fresh.execute(name, {**args, "confirmation_number": "ZZZ999"})
        if name == "add_to_standby":  # EVA checks the journey, not the reservation
            _ok(unknown)
            fresh = _fresh()
        else:
            _err(unknown, "not_found")
    elif name in NOT_FOUND:
        field, value = NOT_FOUND[name]
        _err(fresh.execute(name, {**args, field: value}), "not_found")
    assert fresh.db == _fresh().db


# --- EVA's behaviour where hydralab's tools used to differ (tests/test_tools_vs_eva.py checks
# the same against EVA's own code when the shared EVA checkout is present) --------------------


def test_business_not_found_errors_are_not_found(ex: ToolExecutor) -> None:
    _err(
        ex.execute("get_reservation", {"confirmation_number": "ZZZ999", "last_name": "brooks"}),
        "not_found",
    )
    _err(
        ex.execute("get_flight_status", {"flight_number": "SK999", "flight_date": "2026-05-08"}),
        "not_found",
    )
    _err(
        ex.execute("get_disruption_info", {"flight_number": "SK418", "date": "2026-05-09"}),
        "not_found",
    )
    # a journey or leg that is not there keeps its own type
    _err(_rebook(ex, new_journey_id="FL_SK999_20260512"), "flight_not_found")
    _err(_rebook(ex, journey_id="FL_SK999_20260512"), "journey_not_found")


def test_missing_parameter_reports_its_format_type(ex: ToolExecutor) -> None:
    _err(
        ex.execute("get_reservation", {"last_name": "brooks"}), "invalid_confirmation_number_format"
    )
    _err(ex.execute("get_flight_status", {"flight_number": "SK418"}), "invalid_date_format")
    _err(_search(ex, origin=None), "invalid_airport_code_format")
    _err(_rebook(ex, rebooking_type=None), "invalid_rebooking_type")
    # without a type of its own: invalid_parameter
    _err(ex.execute("get_reservation", {"confirmation_number": CONF}), "invalid_parameter")
    # several problems: the first parameter with a type of its own decides, in schema order
    _err(
        ex.execute("get_reservation", {"confirmation_number": "HT4"}),
        "invalid_confirmation_number_format",
    )
    _err(
        ex.execute("transfer_to_agent", {"confirmation_number": "HT4"}),
        "invalid_confirmation_number_format",
    )
    _err(
        ex.execute("issue_travel_credit", {"confirmation_number": CONF, "amount": -1}),
        "invalid_passenger_id_format",  # before amount (no type of its own), after confirmation
    )


@pytest.mark.parametrize(
    ("tool", "params", "error_type"),
    [
        ("search_rebooking_options", {"fare_class": None}, "invalid_fare_class"),
        ("search_rebooking_options", {"passenger_count": None}, "invalid_parameter"),
        ("rebook_flight", {"waive_change_fee": None}, "invalid_parameter"),
        ("assign_seat", {"seat_preference": None}, "invalid_seat_preference"),
        ("get_disruption_info", {"date": None}, "invalid_date_format"),
        ("transfer_to_agent", {"confirmation_number": None}, "invalid_confirmation_number_format"),
    ],
)
def test_required_parameters_have_no_defaults(
    tool: str, params: dict[str, Any], error_type: str
) -> None:
    ex = _fresh()
    call = {k: v for k, v in {**VALID_CALLS[tool], **params}.items() if v is not None}
    before = copy.deepcopy(ex.db)
    _err(ex.execute(tool, call), error_type)
    assert ex.db == before


def test_enum_values_are_exact(ex: ToolExecutor) -> None:
    meal = {**VALID_CALLS["add_meal_request"]}
    for bad in ("Vegan", "VEGAN", " vegan", "vegan "):
        _err(ex.execute("add_meal_request", {**meal, "meal_type": bad}), "invalid_meal_type")
    assert ex.db["reservations"][CONF]["bookings"][0]["segments"][0]["meal_request"] is None
    _err(_search(ex, fare_class="Main_Cabin"), "invalid_fare_class")
    _err(_rebook(ex, rebooking_type="Voluntary"), "invalid_rebooking_type")
    _err(_rebook(ex, new_fare_class=" main_cabin"), "invalid_fare_class")
    seat = {**VALID_CALLS["assign_seat"], "seat_preference": "Window"}
    _err(ex.execute("assign_seat", seat), "invalid_seat_preference")


def test_last_name_is_case_insensitive_but_not_trimmed(ex: ToolExecutor) -> None:
    for name in ("BROOKS", "Brooks"):
        _ok(ex.execute("get_reservation", {"confirmation_number": CONF, "last_name": name}))
    for name in (" brooks", "brooks ", "brooks."):
        _err(
            ex.execute("get_reservation", {"confirmation_number": CONF, "last_name": name}),
            "authentication_failed",
        )
    # an empty last name is not compared (EVA); the session records it as given
    fresh = _fresh()
    _ok(fresh.execute("get_reservation", {"confirmation_number": CONF, "last_name": ""}))
    assert fresh.db["session"] == {"confirmation_number": CONF, "last_name": ""}


def test_session_is_updated_not_replaced(ex: ToolExecutor) -> None:
    ex.db["session"] = {"channel": "phone"}
    _auth(ex)
    assert ex.db["session"] == {
        "channel": "phone",
        "confirmation_number": CONF,
        "last_name": "brooks",
    }


def test_codes_are_checked_as_given(ex: ToolExecutor) -> None:
    # upper-cased after the check: confirmation numbers, airports, the lookups' flight number
    _ok(ex.execute("get_reservation", {"confirmation_number": "ht4kwb", "last_name": "brooks"}))
    assert _ok(_search(ex, origin="den", destination="sea"))["count"] == 4
    _ok(ex.execute("get_flight_status", {"flight_number": "sk418", "flight_date": "2026-05-08"}))
    # never trimmed
    _err(
        ex.execute("get_reservation", {"confirmation_number": " HT4KWB", "last_name": "brooks"}),
        "invalid_confirmation_number_format",
    )
    _err(_search(ex, date="2026-05-12 "), "invalid_date_format")
    # journey and passenger ids are exact: "pax001" is malformed, a lower-case journey unknown
    seat = {**VALID_CALLS["assign_seat"]}
    _err(
        ex.execute("assign_seat", {**seat, "passenger_id": "pax001"}), "invalid_passenger_id_format"
    )
    _err(
        ex.execute("assign_seat", {**seat, "journey_id": OLD.lower()}), "invalid_journey_id_format"
    )
    _err(
        ex.execute("assign_seat", {**seat, "journey_id": "FL_sk418_20260508"}), "journey_not_found"
    )
    # a write tool's leg selector compares the flight number as given; "" is malformed
    _err(ex.execute("assign_seat", {**seat, "flight_number": "sk418"}), "flight_not_found")
    _err(ex.execute("assign_seat", {**seat, "flight_number": ""}), "invalid_flight_number_format")
    assert _ok(ex.execute("assign_seat", {**seat, "flight_number": "SK418"}))["flight_number"] == (
        "SK418"
    )


def test_dates_are_checked_for_shape_only(ex: ToolExecutor) -> None:
    _err(
        ex.execute("get_flight_status", {"flight_number": "SK418", "flight_date": "2026-13-45"}),
        "not_found",
    )
    assert _ok(_search(ex, date="2026-02-30"))["options"] == []
    _err(_search(ex, date="12/05/2026"), "invalid_date_format")


@pytest.mark.parametrize(
    ("tool", "field", "value", "coerced"),
    [
        ("search_rebooking_options", "passenger_count", True, 1),
        ("search_rebooking_options", "passenger_count", " 2 ", 2),
        ("search_rebooking_options", "passenger_count", "1.0", 1),
        ("add_baggage_allowance", "num_bags", "3", 3),
        ("add_baggage_allowance", "num_bags", 2.0, 2),
        ("rebook_flight", "waive_change_fee", "yes", True),
        ("rebook_flight", "waive_change_fee", "off", False),
        ("rebook_flight", "waive_change_fee", 1, True),
        ("process_refund", "refund_amount", "20.5", 20.5),
        ("process_refund", "refund_amount", True, 1.0),
        ("issue_travel_credit", "amount", "1e2", 100.0),
    ],
)
def test_numbers_and_flags_coerce_like_pydantic_lax_mode(
    tool: str, field: str, value: Any, coerced: Any
) -> None:
    result = _ok(_fresh().execute(tool, {**VALID_CALLS[tool], field: value}))
    echoed = {
        "num_bags": result.get("bags_checked"),
        "waive_change_fee": result.get("cost_summary", {}).get("fee_waived"),
        "refund_amount": result.get("refund_amount"),
        "amount": result.get("amount"),
    }.get(field, coerced)
    assert echoed == coerced and type(echoed) is type(coerced)


@pytest.mark.parametrize(
    ("tool", "field", "value", "error_type"),
    [
        ("search_rebooking_options", "passenger_count", 1.5, "invalid_parameter"),
        ("search_rebooking_options", "passenger_count", "2.5", "invalid_parameter"),
        ("rebook_flight", "waive_change_fee", "maybe", "invalid_parameter"),
        ("rebook_flight", "waive_change_fee", " true", "invalid_parameter"),
        ("rebook_flight", "waive_change_fee", 2, "invalid_parameter"),
        ("process_refund", "refund_amount", "$20", "invalid_parameter"),
        ("process_refund", "refund_amount", "nan", "invalid_parameter"),
        ("add_baggage_allowance", "num_bags", "٣", "invalid_bag_count"),
        ("get_reservation", "last_name", 7, "invalid_parameter"),
        ("add_to_standby", "passenger_ids", "PAX001", "invalid_passenger_id_format"),
    ],
)
def test_values_pydantic_rejects(tool: str, field: str, value: Any, error_type: str) -> None:
    _err(_fresh().execute(tool, {**VALID_CALLS[tool], field: value}), error_type)


def test_passenger_ids_are_only_format_checked_on_single_passenger_tools(ex: ToolExecutor) -> None:
    for tool in ("assign_seat", "add_meal_request", "issue_travel_credit", "issue_hotel_voucher"):
        _ok(ex.execute(tool, {**VALID_CALLS[tool], "passenger_id": "PAX002"}))
    voucher = _ok(
        ex.execute(
            "issue_meal_voucher", {**VALID_CALLS["issue_meal_voucher"], "passenger_id": "PAX002"}
        )
    )
    assert voucher["voucher_code"] == "MEAL-HT4KWB-PAX0"
    assert ex.db["reservations"][CONF]["bookings"][0]["segments"][0]["seat"] == "22C"


def test_add_to_standby_follows_evas_checks(ex: ToolExecutor) -> None:
    args = {"confirmation_number": "ZZZ999", "journey_id": "FL_SK999_20260512", "passenger_ids": []}
    _err(ex.execute("add_to_standby", args), "flight_not_found")  # the journey is checked first
    args["journey_id"] = "FL_SK422_20260512"
    # an unknown reservation is no error: only the journey's list records the passengers
    res = _ok(ex.execute("add_to_standby", {**args, "passenger_ids": ["PAX005"]}))
    assert res["standby_list_position"] == 1
    assert "standby_list" not in ex.db["reservations"][CONF]
    # an empty list is accepted; unknown ids of a known reservation are invalid_passengers
    args["confirmation_number"] = CONF
    assert _ok(ex.execute("add_to_standby", args))["standby_list_position"] == 1
    _err(
        ex.execute("add_to_standby", {**args, "passenger_ids": ["PAX001", "PAX009"]}),
        "invalid_passengers",
    )


def test_assign_seat_follows_evas_rules() -> None:
    ex = ToolExecutor(_db())
    leg = ex.db["journeys"][OLD]["segments"][0]
    leg["available_seat_types"]["main_cabin"] = ["window"]
    seat = {**VALID_CALLS["assign_seat"]}
    # no_preference is always an aisle letter, whatever types the cabin has left
    assert (
        _ok(ex.execute("assign_seat", {**seat, "seat_preference": "no_preference"}))[
            "seat_assigned"
        ]
        == "21C"
    )
    _err(ex.execute("assign_seat", seat), "seat_type_unavailable")  # aisle
    # the row comes from the passenger id's last three digits
    assert (
        _ok(
            ex.execute(
                "assign_seat", {**seat, "seat_preference": "window", "passenger_id": "PAX1012"}
            )
        )["seat_assigned"]
        == "32A"
    )
    # EVA's tool fails on an id with fewer than three digits: an execution error, no seat
    _err(
        ex.execute("assign_seat", {**seat, "seat_preference": "window", "passenger_id": "PAX12"}),
        "execution_error",
    )
    # a cabin without seats left on the leg
    leg["available_seats"]["main_cabin"] = 0
    _err(ex.execute("assign_seat", {**seat, "seat_preference": "window"}), "no_seats_available")


def test_cancelled_booking_is_still_the_target(ex: ToolExecutor) -> None:
    _ok(_rebook(ex))  # OLD is now cancelled
    seat = {**VALID_CALLS["assign_seat"], "journey_id": OLD}
    assert _ok(ex.execute("assign_seat", seat))["seat_assigned"] == "21C"
    bags = {**VALID_CALLS["add_baggage_allowance"], "journey_id": OLD}
    _ok(ex.execute("add_baggage_allowance", bags))
    _err(ex.execute("cancel_reservation", VALID_CALLS["cancel_reservation"]), "already_cancelled")
    # rebooking the cancelled journey again goes through, as in EVA
    again = _ok(_rebook(ex, new_journey_id="FL_SK436_20260512"))
    assert again["new_journey"]["journey_id"] == "FL_SK436_20260512"
    assert [b["status"] for b in ex.db["reservations"][CONF]["bookings"]] == [
        "cancelled",
        "confirmed",
        "confirmed",
    ]


def test_rebook_cancels_the_first_booking_of_the_journey() -> None:
    """After a partial rebook the journey has a cancelled and a kept booking; EVA marks the
    first one (already cancelled) and leaves the kept one confirmed."""
    db = _db()
    db["reservations"][CONF]["bookings"] = [
        {
            "journey_id": CONNECTION,
            "fare_class": "main_cabin",
            "fare_paid": 268.0,
            "status": "cancelled",
            "segments": [],
        },
        {
            "journey_id": CONNECTION,
            "fare_class": "main_cabin",
            "fare_paid": 131.0,
            "status": "confirmed",
            "segments": [
                {
                    "flight_number": "SK210",
                    "date": "2026-05-12",
                    "fare_paid": 131.0,
                    "seat": None,
                    "bags_checked": 0,
                    "meal_request": None,
                }
            ],
        },
    ]
    ex = ToolExecutor(db)
    res = _ok(_rebook(ex, journey_id=CONNECTION, new_journey_id=NEW))
    assert res["cost_summary"]["fare_difference"] == 310.0 - 131.0
    assert [b["status"] for b in ex.db["reservations"][CONF]["bookings"]] == [
        "cancelled",
        "confirmed",
        "confirmed",
    ]


def test_rebook_checks_only_the_bookable_flag() -> None:
    db = _db()
    db["journeys"][NEW]["status"] = "cancelled"  # still bookable: EVA rebooks onto it
    db["journeys"]["FL_SK422_20260512"]["bookable"] = False
    ex = ToolExecutor(db)
    _err(_rebook(ex, new_journey_id="FL_SK422_20260512"), "not_bookable")
    _ok(_rebook(ex))


def test_search_prices_like_eva() -> None:
    db = _db()
    # seats but no fare: listed, with fare None
    db["journeys"][NEW]["segments"][0]["available_seats"]["first"] = 2
    # a tie on departure keeps DB order (SK436 comes before SK422 here)
    db["journeys"]["FL_SK436_20260512"]["segments"][0]["scheduled_departure"] = "06:50"
    order = ["FL_SK436_20260512", *[j for j in db["journeys"] if j != "FL_SK436_20260512"]]
    db["journeys"] = {j: db["journeys"][j] for j in order}
    ex = ToolExecutor(db)
    res = _ok(_search(ex, fare_class="first"))
    assert [(o["journey_id"], o["fare"]) for o in res["options"]] == [(NEW, None)]
    ids = [o["journey_id"] for o in _ok(_search(ex))["options"]]
    assert ids[:2] == ["FL_SK436_20260512", "FL_SK422_20260512"]
    # "any": on a price tie the lower class wins
    db["journeys"][NEW]["fares"]["main_cabin"] = db["journeys"][NEW]["fares"]["basic_economy"]
    res = _ok(_search(ToolExecutor(db), fare_class="any"))
    assert next(o for o in res["options"] if o["journey_id"] == NEW)["fare"] == 239.0


def test_amounts_are_not_rounded() -> None:
    db = _db()
    db["journeys"][NEW]["fares"]["main_cabin"] = 245.1
    ex = ToolExecutor(db)
    cost = _ok(_rebook(ex))["cost_summary"]
    assert cost["fare_difference"] == 245.1 - 245.0 and cost["total_collected"] == 75 + (
        245.1 - 245.0
    )


# --- tool responses vs the shared EVA traces, field by field ---------------------------------

# Fields where a current tool response is *expected* to differ from the stored trace, and why.
KNOWN_TRACE_DIFFERENCES: dict[tuple[str, str], str] = {
    # EVA's search returns the journey's live segment dicts; the later rebook_flight in the same
    # conversation decremented the seat count, so the stored trace shows the post-rebook value
    # (21) inside segments while the option-level count (22) is from search time. hydralab's
    # responses are snapshots, so both say 22.
    ("1.1.2", "search_rebooking_options.options[0].segments[0].available_seats.main_cabin"): (
        "trace aliasing"
    ),
    # The 7.2.8 trace predates the current transfer tool, which answers status "success" plus
    # transfer_id / estimated_wait / message.
    ("7.2.8", "transfer_to_agent"): "stale trace",
}


def _field_diffs(ours: Any, theirs: Any, path: str) -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = [f"{path}.{k}" for k in sorted(set(ours) ^ set(theirs))]
        for key in sorted(set(ours) & set(theirs)):
            out += _field_diffs(ours[key], theirs[key], f"{path}.{key}")
        return out
    if isinstance(ours, list) and isinstance(theirs, list):
        out = [f"{path}[len]"] if len(ours) != len(theirs) else []
        for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
            out += _field_diffs(a, b, f"{path}[{i}]")
        return out
    same = ours == theirs and type(ours) is type(theirs)
    return [] if same else [path]


@needs_eva
@pytest.mark.parametrize("record_id", EVA_IDS)
def test_eva_responses_match_traces_field_by_field(record_id: str) -> None:
    record = load_record(record_id, data_dir=EVA_DIR)
    ex = ToolExecutor.for_record(record, enabled_tools=record.agent.tool_names)
    stored = [e for e in record.trace if e["event_type"] == "tool_response"]
    ours = ex.replay(record.trace)
    diffs: list[str] = []
    for event, result in zip(stored, ours, strict=True):
        name = event["tool_name"]
        if (record_id, name) in KNOWN_TRACE_DIFFERENCES:
            assert result["status"] == "success" and result != event["response"]
            continue
        for path in _field_diffs(result, event["response"], name):
            if (record_id, path) not in KNOWN_TRACE_DIFFERENCES:
                diffs.append(path)
    assert diffs == []


@needs_eva
def test_eva_7_2_8_transfer_is_current_shape() -> None:
    record = load_record("7.2.8", data_dir=EVA_DIR)
    ex = ToolExecutor.for_record(record)
    result = ex.replay(record.trace)[-1]
    assert result["status"] == "success"
    assert result["transfer_id"] == "TRF-DHNHYW-001"
    assert {"estimated_wait", "message"} <= set(result)
