"""When to send ``response.create`` after tool calls (sans-I/O).

Hydra's documented tool flow (https://docs.smallest.ai — "Tool calling") is
``response.function_call_arguments.done`` → the client posts ``function_call_output`` → the
client sends one ``response.create``; there is no ``response.done`` in between, so it is never
waited for. With several calls in one response the ``.done`` events come one by one, so the
request must wait until no further call can come:

- the response's ``response.done`` has arrived (with or without an ``output`` list): no call
  can follow, so ``response.create`` goes out as soon as every call is answered — no wait;
- otherwise it goes out once every call is answered and the response has been quiet (no event)
  for ``settle_ms`` — the only wait the bridge adds, measured and reported per turn.

A barge-in or a reconnect cancels what is pending: the caller has moved on, so no narration is
requested for the interrupted turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ToolPolicy", "ToolRequest"]


@dataclass
class _Response:
    calls: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    done: bool = False
    last_event_ns: int = 0


@dataclass(frozen=True)
class ToolRequest:
    """What the policy reports when ``response.create`` is sent.

    Attributes:
        reason: ``"response_done"`` (every call answered after the response ended) or
            ``"settled"`` (no ``response.done``: answered and quiet for ``settle_ms``).
        wait_ms: Time between the last ``function_call_output`` and this ``response.create``:
            the bridge's own wait.
        calls: Calls the narration covers.
    """

    reason: str
    wait_ms: float
    calls: int


class ToolPolicy:
    """Decides when the narration of answered tool calls is requested.

    Feed it the model's events (:meth:`activity`, :meth:`call_done`, :meth:`response_done`)
    and the bridge's (:meth:`output_sent`); ask :meth:`due` at any time and wake at
    :meth:`next_deadline_ns`. All times are the session clock's ``t_ns``.
    """

    def __init__(self, *, settle_ms: float = 120.0) -> None:
        if settle_ms < 0:
            raise ValueError("settle_ms must be >= 0")
        self.settle_ns = int(settle_ms * 1e6)
        self._responses: dict[str, _Response] = {}
        self._last_output_ns: int | None = None
        self.cancelled: list[str] = []

    def _resp(self, response_id: str | None) -> _Response:
        return self._responses.setdefault(response_id or "", _Response())

    def activity(self, response_id: str | None, t_ns: int) -> None:
        """Any event of a response that has calls (more may follow while it streams)."""
        r = self._responses.get(response_id or "")
        if r is not None:
            r.last_event_ns = max(r.last_event_ns, t_ns)

    def call_started(self, response_id: str | None, call_id: str, t_ns: int) -> None:
        """The first arguments delta of ``call_id``: the call will need an answer."""
        r = self._resp(response_id)
        r.calls.add(call_id)
        r.last_event_ns = max(r.last_event_ns, t_ns)

    def call_done(self, response_id: str | None, call_id: str, t_ns: int) -> None:
        """``response.function_call_arguments.done`` of ``call_id``."""
        self.call_started(response_id, call_id, t_ns)

    def response_done(self, response_id: str | None, t_ns: int) -> None:
        """``response.done`` of a response: no further call can come from it."""
        r = self._responses.get(response_id or "")
        if r is not None:
            r.done = True
            r.last_event_ns = max(r.last_event_ns, t_ns)

    def output_sent(self, call_id: str, t_ns: int) -> None:
        """The bridge sent ``call_id``'s ``function_call_output`` (or gave up on it)."""
        for r in self._responses.values():
            if call_id in r.calls:
                r.answered.add(call_id)
        self._last_output_ns = t_ns

    @property
    def pending(self) -> bool:
        """Calls await a narration request."""
        return any(r.calls for r in self._responses.values())

    def _ready_at(self) -> int | None:
        rs = [r for r in self._responses.values() if r.calls]
        if not rs or any(r.calls - r.answered for r in rs):
            return None
        assert self._last_output_ns is not None
        if all(r.done for r in rs):
            return self._last_output_ns
        return max(
            self._last_output_ns, max(r.last_event_ns for r in rs if not r.done) + self.settle_ns
        )

    def due(self, t_ns: int) -> bool:
        """``response.create`` should be sent now."""
        at = self._ready_at()
        return at is not None and t_ns >= at

    def next_deadline_ns(self) -> int | None:
        """When :meth:`due` may turn true without another event (``None``: only an event can)."""
        return self._ready_at()

    def sent(self, t_ns: int) -> ToolRequest:
        """``response.create`` went out at ``t_ns``: the pending calls are covered."""
        rs = [r for r in self._responses.values() if r.calls]
        reason = "response_done" if rs and all(r.done for r in rs) else "settled"
        calls = sum(len(r.calls) for r in rs)
        last = self._last_output_ns if self._last_output_ns is not None else t_ns
        self._responses.clear()
        return ToolRequest(reason=reason, wait_ms=(t_ns - last) / 1e6, calls=calls)

    def cancel(self, reason: str) -> bool:
        """Forget pending calls (barge-in, reconnect); ``True`` if a request was pending."""
        had = self.pending
        if had:
            self.cancelled.append(reason)
        self._responses.clear()
        return had
