"""Every shared EVA record's reference trace, replayed through EVA's own tool code.

EVA's ``<domain>_tools.py`` is loaded from the shared checkout by :class:`hydralab.tools.EvaTools`
(never imported as a package, never copied). Each record's trace tool calls run through
:meth:`hydralab.tools.ToolExecutor.replay` with id chaining, on the record's resolved initial DB
(the record loader resolves ``<LOC:Name>`` and injects ``name_aliases``, as EVA does). Then:

- each live response must equal the trace's stored response, up to the drifts listed in
  :data:`ALLOWED_DRIFTS` (the trace texts are older than EVA's current tools); anything else, a
  missing key included, fails and the message lists every drifted field;
- the final DB must be the expected scenario DB, session included (``task_completion`` = 1).

Skipped when ``../shared/eva`` (or pydantic, which EVA's tools need) is absent.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from hydralab.records import Record, list_records, load_record
from hydralab.scoring import dbs_equal, task_completion
from hydralab.tools import EvaTools, IdChain, ToolExecutor, tool_ids

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
HAVE_EVA = (EVA_DIR / "data").is_dir() and (
    EVA_DIR / "src" / "eva" / "assistant" / "tools" / "tool_executor.py"
).is_file()
DOMAINS = ("airline", "itsm", "medical_hr")

pytestmark = pytest.mark.skipif(not HAVE_EVA, reason="shared EVA checkout not present")

#: The only ways a live response may differ from the trace's stored one.
ALLOWED_DRIFTS: dict[str, str] = {
    "id_chain": "an id the trace invented, generated differently by the live tools "
    "(IdChain's mapping; also inside a message)",
    "romanized_name": "first_name / last_name: capitalised in the trace, lowercase live "
    "(EVA emits romanized names lowercase)",
    "seat_count": "available_seats.<cabin>: the trace's count is stale",
    "transfer": "airline transfer_to_agent: the trace says status 'transfer_initiated'; EVA's "
    "tool now answers status 'success' plus transfer_id and the transfer's details",
    "name_aliases": "a live entry carries name_aliases, injected from the alias files",
}
_NAME_KEYS = frozenset({"first_name", "last_name"})
_TRANSFER_EXTRA_KEYS = frozenset(
    {
        "transfer_id",
        "confirmation_number",
        "transfer_reason",
        "issue_summary",
        "estimated_wait",
        "message",
    }
)


def _cases() -> list[tuple[str, str]]:
    if not HAVE_EVA:
        return []
    return [(d, rid) for d in DOMAINS for rid in list_records(EVA_DIR, domain=d)]


@pytest.fixture(scope="module")
def backend() -> EvaTools:
    pytest.importorskip("pydantic", reason="EVA's tools need pydantic (the 'eva' extra)")
    return EvaTools(EVA_DIR)


class Comparison:
    """A live response against the trace's, split into allowed drifts and problems."""

    def __init__(self, tool: str, chain: IdChain) -> None:
        self.tool = tool
        self.chain = chain
        self.drifts: list[tuple[str, str]] = []
        self.problems: list[str] = []

    def walk(self, expected: Any, live: Any, path: str = "", key: str = "") -> None:
        if isinstance(expected, dict) and isinstance(live, dict):
            for k in expected:
                if k not in live:
                    self.problems.append(f"{path}.{k}: missing live")
                else:
                    self.walk(expected[k], live[k], f"{path}.{k}", k)
            for k in live.keys() - expected.keys():
                if k == "name_aliases":
                    self.drifts.append(("name_aliases", f"{path}.{k}"))
                elif self.tool == "transfer_to_agent" and k in _TRANSFER_EXTRA_KEYS:
                    self.drifts.append(("transfer", f"{path}.{k}"))
                else:
                    self.problems.append(f"{path}.{k}: only live ({live[k]!r})")
        elif isinstance(expected, list) and isinstance(live, list):
            if len(expected) != len(live):
                self.problems.append(f"{path}: {len(expected)} items, {len(live)} live")
            for i, (a, b) in enumerate(zip(expected, live, strict=False)):
                self.walk(a, b, f"{path}[{i}]", key)
        elif expected != live:
            kind = self._drift(expected, live, path, key)
            if kind is None:
                self.problems.append(f"{path}: {expected!r} -> {live!r}")
            else:
                self.drifts.append((kind, path))

    def _drift(self, expected: Any, live: Any, path: str, key: str) -> str | None:
        if isinstance(expected, str) and isinstance(live, str):
            if self.chain.apply(expected) == live:
                return "id_chain"
            if key in _NAME_KEYS and live == expected.lower():
                return "romanized_name"
            if (
                self.tool == "transfer_to_agent"
                and path == ".status"
                and (expected, live) == ("transfer_initiated", "success")
            ):
                return "transfer"
        if (
            ".available_seats." in path
            and isinstance(expected, int)
            and isinstance(live, int)
            and not isinstance(expected, bool)
        ):
            return "seat_count"
        return None


def _responses_by_call(record: Record, results: list[dict[str, Any]]) -> list[Any]:
    """The trace's stored response for each replayed call (the oldest unanswered of its tool)."""
    waiting: dict[str, deque[int]] = {}
    stored: list[Any] = [None] * len(results)
    index = 0
    for event in record.trace:
        if event["event_type"] == "tool_call":
            waiting.setdefault(str(event["tool_name"]), deque()).append(index)
            index += 1
        elif event["event_type"] == "tool_response":
            queue = waiting.get(str(event["tool_name"]))
            if queue:
                stored[queue.popleft()] = event.get("response")
    return stored


def _replay(record: Record, backend: EvaTools, *, chain: bool = True) -> tuple[ToolExecutor, Any]:
    ex = ToolExecutor.for_record(record, enabled_tools=tool_ids(record.agent), backend=backend)
    ids = IdChain()
    results = ex.replay(record.trace, chain=ids if chain else False)
    return ex, (ids, results)


def test_all_shared_records_are_found() -> None:
    cases = _cases()
    assert len(cases) == 18
    assert {d: sum(1 for dd, _ in cases if dd == d) for d in DOMAINS} == dict.fromkeys(DOMAINS, 6)


@pytest.mark.parametrize(("domain", "record_id"), _cases())
def test_trace_replays_through_eva_tools(backend: EvaTools, domain: str, record_id: str) -> None:
    record = load_record(record_id, data_dir=EVA_DIR, domain=domain)
    assert "<LOC:" not in json.dumps(record.trace), "the record loader resolves <LOC:...>"
    ex, (ids, results) = _replay(record, backend)
    calls = [e for e in record.trace if e["event_type"] == "tool_call"]
    assert calls and len(results) == len(calls)
    assert ex.provenance()["backend"] == "eva"

    drifted: list[str] = []
    problems: list[str] = []
    for i, (call, live, stored) in enumerate(
        zip(calls, results, _responses_by_call(record, results), strict=True)
    ):
        assert stored is not None, f"call {i} ({call['tool_name']}) has no stored response"
        cmp = Comparison(str(call["tool_name"]), ids)
        cmp.walk(stored, live)
        drifted += [f"{i} {call['tool_name']}{path} [{kind}]" for kind, path in cmp.drifts]
        problems += [f"{i} {call['tool_name']}{p}" for p in cmp.problems]
        assert {kind for kind, _ in cmp.drifts} <= ALLOWED_DRIFTS.keys()
    assert problems == [], "unexpected differences; allowed drifts seen: " + "; ".join(drifted)

    verdict = task_completion(record.expected_db, ex.db)
    assert verdict["score"] == 1.0, json.dumps(
        {k: verdict[k] for k in ("auth_mismatches", "diff")}, indent=1, default=str
    )
    assert dbs_equal(record.expected_db, ex.db)
    assert verdict["auth_success"]  # session keys equal case-insensitively, as EVA compares


def test_chaining_is_what_makes_hashed_ids_replay(backend: EvaTools) -> None:
    """itsm's live ticket ids are content hashes: without chaining, the trace's counter-style id
    reaches a later call and the final DB misses that call's write."""
    record = load_record("11", data_dir=EVA_DIR, domain="itsm")
    chained, (ids, _) = _replay(record, backend)
    assert ids.mapping and all(k.startswith("INC") for k in ids.mapping)
    assert dbs_equal(record.expected_db, chained.db)
    unchained, (_, results) = _replay(record, backend, chain=False)
    assert any(r["status"] == "error" for r in results)
    assert not dbs_equal(record.expected_db, unchained.db)
