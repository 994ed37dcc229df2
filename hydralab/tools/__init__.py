"""Domain tools and their executor.

:class:`ToolExecutor` holds one conversation's scenario DB and runs tool calls against it,
synchronously and deterministically, the way EVA's executor does (``docs/hydra-facts.md``):
unknown tools and crashing tools become ``{"status": "error", ...}`` results, never exceptions.
:func:`declarations` turns an agent config's YAML tool list into Hydra / OpenAI-Realtime function
declarations.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hydralab.tools import airline
from hydralab.tools.airline import ToolFn

if TYPE_CHECKING:
    from hydralab.records import AgentConfig, Record

__all__ = [
    "DOMAINS",
    "EXECUTOR_ERROR_TYPES",
    "ToolExecutor",
    "ToolFn",
    "UnknownDomainError",
    "call_error_types",
    "declarations",
]

DOMAINS: Mapping[str, Mapping[str, ToolFn]] = {"airline": airline.TOOLS}
_PARAMETER_ERROR_TYPES: Mapping[str, frozenset[str]] = {"airline": airline.PARAMETER_ERROR_TYPES}

#: What :class:`ToolExecutor` itself answers for a call it could not run (EVA's executor set).
EXECUTOR_ERROR_TYPES: frozenset[str] = frozenset(
    {"tool_not_found", "function_not_found", "execution_error", "invalid_parameter"}
)


def call_error_types(domain: str | None = None) -> frozenset[str]:
    """Error types that make a call *invalid* for EVA's ``tool_call_validity`` metric.

    The executor's types plus the domain tools' parameter-validation types (every domain's
    when ``domain`` is ``None`` or unknown); business errors such as ``not_found`` or
    ``authentication_failed`` are valid calls.
    """
    if domain is not None and domain in _PARAMETER_ERROR_TYPES:
        return EXECUTOR_ERROR_TYPES | _PARAMETER_ERROR_TYPES[domain]
    return EXECUTOR_ERROR_TYPES.union(*_PARAMETER_ERROR_TYPES.values())


class UnknownDomainError(ValueError):
    """No tool implementation exists for the requested domain."""


class ToolExecutor:
    """Runs a domain's tools against a private copy of a scenario DB.

    Args:
        db: Initial scenario DB (already placeholder-resolved). It is deep-copied; the caller's
            dict is never mutated.
        domain: Tool domain, ``"airline"``.
        current_date_time: Record time such as ``"2026-03-17 10:45 CST"``; its date part
            becomes ``db["_current_date"]``.
        enabled_tools: Restrict the callable tools to these names (e.g. the tools an agent
            config declares); other names answer ``tool_not_found``. ``None`` enables all.

    Attributes:
        initial_db: The DB as it was before the first call (with ``_current_date`` set).
        db: The live DB that calls mutate.
        call_index: Number of ``execute`` calls so far, all tools together.
        call_counts: Calls per tool name; the per-tool count is what a tool sees as its
            ``call_index`` (so ``REF-<conf>-001`` is the first refund, as in EVA).
    """

    def __init__(
        self,
        db: Mapping[str, Any],
        *,
        domain: str = "airline",
        current_date_time: str | None = None,
        enabled_tools: Iterable[str] | None = None,
    ) -> None:
        if domain not in DOMAINS:
            raise UnknownDomainError(
                f"no tools for domain {domain!r}; available: {', '.join(sorted(DOMAINS))}"
            )
        self.domain = domain
        initial = copy.deepcopy(dict(db))
        if current_date_time:
            initial["_current_date"] = current_date_time.strip().split(" ")[0].split("T")[0]
        self.initial_db: dict[str, Any] = initial
        self.db: dict[str, Any] = copy.deepcopy(initial)
        tools = DOMAINS[domain]
        if enabled_tools is not None:
            wanted = set(enabled_tools)
            tools = {name: fn for name, fn in tools.items() if name in wanted}
        self._tools: dict[str, ToolFn] = dict(tools)
        self.call_index = 0
        self.call_counts: dict[str, int] = {}

    @classmethod
    def for_record(
        cls, record: Record, *, enabled_tools: Iterable[str] | None = None
    ) -> ToolExecutor:
        """Executor on a record's resolved initial DB, date and domain."""
        return cls(
            record.initial_db,
            domain=record.domain,
            current_date_time=record.current_date_time,
            enabled_tools=enabled_tools,
        )

    @property
    def tool_names(self) -> tuple[str, ...]:
        """Names of the tools this executor can run."""
        return tuple(self._tools)

    def execute(self, name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Run one tool call; mutates :attr:`db`. Always returns a dict with ``status``."""
        self.call_index += 1
        self.call_counts[name] = self.call_counts.get(name, 0) + 1
        fn = self._tools.get(name)
        if fn is None:
            return {
                "status": "error",
                "error_type": "tool_not_found",
                "message": f"Tool {name!r} is not available",
            }
        if not isinstance(params, Mapping):  # None too: EVA's models reject it the same way
            return {
                "status": "error",
                "error_type": "invalid_parameter",
                "message": f"Invalid parameters for {name}: expected an object, "
                f"got {type(params).__name__}",
            }
        try:
            result = fn(copy.deepcopy(dict(params)), self.db, self.call_counts[name])
        except Exception as exc:  # a tool bug must not take the call down
            return {
                "status": "error",
                "error_type": "execution_error",
                "message": f"Tool {name} failed: {type(exc).__name__}: {exc}",
            }
        if not isinstance(result, dict) or "status" not in result:
            return {
                "status": "error",
                "error_type": "execution_error",
                "message": f"Tool {name} returned no status",
            }
        return result

    def replay(self, events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Execute every ``tool_call`` event of a trace in order; return the results."""
        results: list[dict[str, Any]] = []
        for event in events:
            if event.get("event_type") == "tool_call":
                results.append(self.execute(str(event["tool_name"]), event.get("params") or {}))
        return results

    def reset(self) -> None:
        """Restore :attr:`initial_db` and clear the call counters."""
        self.db = copy.deepcopy(self.initial_db)
        self.call_index = 0
        self.call_counts = {}


_JSON_TYPES = {
    "string": "string",
    "str": "string",
    "integer": "integer",
    "int": "integer",
    "float": "number",
    "number": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "object": "object",
    "dict": "object",
}


def _property(param: Mapping[str, Any]) -> dict[str, Any]:
    kind = _JSON_TYPES.get(str(param.get("type", "string")).lower(), "string")
    prop: dict[str, Any] = {"type": kind}
    if param.get("description"):
        prop["description"] = str(param["description"]).strip()
    if param.get("enum"):
        prop["enum"] = list(param["enum"])
    if kind == "array":
        items = param.get("items")
        if isinstance(items, Mapping):
            items = dict(items)
            items["type"] = _JSON_TYPES.get(str(items.get("type", "object")).lower(), "object")
            prop["items"] = items
        else:
            prop["items"] = {"type": "object"}
    return prop


def declarations(agent_config: Mapping[str, Any] | AgentConfig) -> list[dict[str, Any]]:
    """Hydra / OpenAI-Realtime flat function declarations from an agent config's ``tools``.

    Args:
        agent_config: The agent YAML as a dict, or a :class:`hydralab.records.AgentConfig`.

    Returns:
        ``[{"type": "function", "name", "description", "parameters": {"type": "object",
        "properties", "required"}}, ...]`` in YAML order. The description carries no
        ``"<name>: "`` prefix; YAML ``float`` becomes JSON ``number``; arrays get ``items``.
    """
    tools: Any = (
        agent_config.get("tools") if isinstance(agent_config, Mapping) else agent_config.tools
    )
    out: list[dict[str, Any]] = []
    for tool in tools or ():
        required = list(tool.get("required_parameters") or [])
        optional = list(tool.get("optional_parameters") or [])
        properties = {str(p["name"]): _property(p) for p in required + optional}
        out.append(
            {
                "type": "function",
                "name": str(tool["name"]),
                "description": str(tool.get("description", "")).strip(),
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "required": [str(p["name"]) for p in required],
                },
            }
        )
    return out
