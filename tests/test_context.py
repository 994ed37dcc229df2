"""The reconnect context block (pure)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from hydralab.protocol.context import (
    CONTEXT_HEADING,
    context_block,
    parse_context,
    strip_context,
    with_context,
)

MSGS = [
    ("assistant", "Hello! How can I help?"),
    ("user", "I need to change   my flight."),
    ("assistant", "Sure, what's your confirmation number?"),
]


def _added_bytes(base: str, text: str) -> int:
    def size(s: str) -> int:
        return len(json.dumps(s, ensure_ascii=False).encode("utf-8", "surrogatepass"))

    return size(text) - size(base)


def test_round_trip_and_replacement() -> None:
    text, n = with_context("Be brief.", MSGS)
    assert n == 3 and text.startswith("Be brief.\n\n" + CONTEXT_HEADING)
    assert parse_context(text) == [(r, " ".join(t.split())) for r, t in MSGS]
    again, _ = with_context(text, MSGS[:1])  # a second reconnect replaces the block
    assert again.count(CONTEXT_HEADING) == 1 and parse_context(again) == MSGS[:1]
    assert strip_context(again) == "Be brief."
    assert parse_context("Be brief.") is None
    assert context_block([]) == "" and with_context("x", []) == ("x", 0)


def test_oldest_messages_go_first_when_over_budget() -> None:
    full, _ = with_context("", MSGS)
    text, n = with_context("", MSGS, max_bytes=_added_bytes("", full) - 1)
    assert n == 2 and [r for r, _ in parse_context(text) or []] == ["user", "assistant"]
    assert with_context("base", MSGS, max_bytes=5) == ("base", 0)


@given(
    st.lists(
        st.tuples(st.sampled_from(["user", "assistant"]), st.text(min_size=1, max_size=40)),
        max_size=8,
    ),
    st.integers(min_value=0, max_value=600),
)
def test_budget_is_never_exceeded(msgs: list[tuple[str, str]], budget: int) -> None:
    text, n = with_context("base", msgs, max_bytes=budget)
    assert _added_bytes("base", text) <= budget
    assert (n == 0) == (text == "base")
