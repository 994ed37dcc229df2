"""Domain tools and their executor.

:class:`ToolExecutor` holds one conversation's scenario DB and runs tool calls against it,
synchronously and deterministically, the way EVA's executor does (``docs/hydra-facts.md``):
unknown tools and crashing tools become ``{"status": "error", ...}`` results, never exceptions.
Its functions come from a backend (:mod:`hydralab.tools.backend`): hydralab's own tools
(:class:`HydralabTools`, the default) or EVA's own tool code loaded from an EVA checkout
(:class:`EvaTools`); :func:`choose_tools` picks one per domain.
:func:`declarations` turns an agent config's YAML tool list into Hydra / OpenAI-Realtime function
declarations.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hydralab.tools import airline
from hydralab.tools.airline import ToolFn
from hydralab.tools.backend import (
    BACKEND_CHOICES,
    EXECUTOR_ERROR_TYPES,
    HYDRALAB_DOMAINS,
    BackendChoice,
    EvaTools,
    HydralabTools,
    ToolBackend,
    ToolCallable,
    UnknownDomainError,
    choose_tools,
    eva_metric_error_types,
)
from hydralab.tools.eva_code import (
    EvaToolsDependencyError,
    EvaToolsLoadError,
    EvaToolsNotFoundError,
    ToolBackendError,
    git_commit,
)
from hydralab.tools.idchain import IdChain

if TYPE_CHECKING:
    from hydralab.records import AgentConfig, Record

__all__ = [
    "BACKEND_CHOICES",
    "DOMAINS",
    "EXECUTOR_ERROR_TYPES",
    "BackendChoice",
    "EvaTools",
    "EvaToolsDependencyError",
    "EvaToolsLoadError",
    "EvaToolsNotFoundError",
    "HydralabTools",
    "IdChain",
    "ToolBackend",
    "ToolBackendError",
    "ToolCallable",
    "ToolExecutor",
    "ToolFn",
    "UnknownDomainError",
    "call_error_types",
    "choose_tools",
    "declarations",
    "eva_metric_error_types",
    "git_commit",
    "tool_ids",
]

#: hydralab's own tools by domain (:data:`hydralab.tools.backend.HYDRALAB_DOMAINS`).
DOMAINS: Mapping[str, Mapping[str, ToolFn]] = HYDRALAB_DOMAINS
_PARAMETER_ERROR_TYPES: Mapping[str, frozenset[str]] = {"airline": airline.PARAMETER_ERROR_TYPES}


def call_error_types(domain: str | None = None) -> frozenset[str]:
    """Error types that make a call *invalid*, for hydralab's own tools.

    The executor's types plus the domain tools' parameter-validation types (every domain's
    when ``domain`` is ``None`` or unknown); business errors such as ``not_found`` or
    ``authentication_failed`` are valid calls. For another backend use
    :meth:`ToolBackend.call_error_types` (or :meth:`ToolExecutor.call_error_types`); for EVA's
    own metric rule, :func:`eva_metric_error_types`.
    """
    if domain is not None and domain in _PARAMETER_ERROR_TYPES:
        return EXECUTOR_ERROR_TYPES | _PARAMETER_ERROR_TYPES[domain]
    return EXECUTOR_ERROR_TYPES.union(*_PARAMETER_ERROR_TYPES.values())


def tool_ids(agent_config: Mapping[str, Any] | AgentConfig) -> tuple[str, ...]:
    """The tool ids an agent config declares (``id``, else ``name``), in YAML order.

    EVA's executor gates calls by these ids; pass them as ``enabled_tools``.
    """
    tools: Any = (
        agent_config.get("tools") if isinstance(agent_config, Mapping) else agent_config.tools
    )
    return tuple(str(t.get("id") or t["name"]) for t in tools or ())


def _error(error_type: str, message: str) -> dict[str, Any]:
    """A tool call's error result, in the shape EVA's executor and tools answer."""
    return {"status": "error", "error_type": error_type, "message": message}


class ToolExecutor:
    """Runs a domain's tools against a private copy of a scenario DB.

    With the default backend (:class:`HydralabTools`) it behaves as it always has. With an
    :class:`EvaTools` backend it behaves as EVA's own executor
    (``eva/assistant/tools/tool_executor.py``) around EVA's functions: the per-tool call count
    is incremented first (unknown tools too); a name that is not enabled answers
    ``tool_not_found`` ("Tool X not found in configuration"); an enabled name without a function
    answers ``function_not_found``; the function is called as
    ``fn(params=params, db=db, call_index=n)`` and mutates :attr:`db`; an exception becomes
    ``execution_error`` ("Tool execution failed: <error>"); ``_current_date`` is
    ``current_date_time.split(" ")[0]``. Deviations, none of which changes a value: a result
    without ``status`` makes EVA's executor raise, here it becomes an ``execution_error``
    result saying the tool returned no status (the call is not taken down); params and the
    result are deep-copied (EVA's results can alias the live DB).

    Args:
        db: Initial scenario DB (already placeholder-resolved). It is deep-copied; the caller's
            dict is never mutated.
        domain: Tool domain (``"airline"``; with EVA's code also ``"itsm"``, ``"medical_hr"``).
        current_date_time: Record time such as ``"2026-03-17 10:45 CST"``; its date part
            becomes ``db["_current_date"]``.
        enabled_tools: Restrict the callable tools to these names (e.g. the tool ids an agent
            config declares, :func:`tool_ids`); other names answer ``tool_not_found``. ``None``
            enables every tool the backend has for the domain.
        backend: Where the functions come from; ``None`` means :class:`HydralabTools`.

    Raises:
        UnknownDomainError: The backend has no tools for ``domain``.
        EvaToolsNotFoundError: An :class:`EvaTools` backend lacks the domain's files.
        EvaToolsLoadError: EVA's files could not be loaded (:class:`EvaToolsDependencyError`
            when pydantic is missing).

    Attributes:
        backend: The backend in use.
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
        backend: ToolBackend | None = None,
    ) -> None:
        self.backend: ToolBackend = backend if backend is not None else HydralabTools()
        functions = dict(self.backend.functions(domain))
        self.domain = domain
        self._eva = self.backend.kind == "eva"
        initial = copy.deepcopy(dict(db))
        if current_date_time is not None and self._eva:
            initial["_current_date"] = current_date_time.split(" ")[0]
        elif current_date_time:
            initial["_current_date"] = current_date_time.strip().split(" ")[0].split("T")[0]
        self.initial_db: dict[str, Any] = initial
        self.db: dict[str, Any] = copy.deepcopy(initial)
        self._enabled: tuple[str, ...] | None = (
            tuple(dict.fromkeys(enabled_tools)) if enabled_tools is not None else None
        )
        if self._eva:
            self._functions = functions
            self._tools: dict[str, ToolCallable] = {
                name: functions[name]
                for name in (self._enabled if self._enabled is not None else functions)
                if name in functions
            }
        else:
            if self._enabled is not None:
                wanted = set(self._enabled)
                functions = {name: fn for name, fn in functions.items() if name in wanted}
            self._functions = functions
            self._tools = functions
        self.call_index = 0
        self.call_counts: dict[str, int] = {}

    @classmethod
    def for_record(
        cls,
        record: Record,
        *,
        enabled_tools: Iterable[str] | None = None,
        backend: ToolBackend | None = None,
    ) -> ToolExecutor:
        """Executor on a record's resolved initial DB, date and domain."""
        return cls(
            record.initial_db,
            domain=record.domain,
            current_date_time=record.current_date_time,
            enabled_tools=enabled_tools,
            backend=backend,
        )

    @property
    def tool_names(self) -> tuple[str, ...]:
        """Names of the tools this executor can run (enabled and implemented)."""
        return tuple(self._tools)

    def call_error_types(self) -> frozenset[str]:
        """Error types that make a call of this executor's domain invalid (its backend's)."""
        return self.backend.call_error_types(self.domain)

    def eva_metric_error_types(self) -> frozenset[str]:
        """EVA's ``tool_call_validity`` rule for this backend (:func:`eva_metric_error_types`)."""
        return eva_metric_error_types(self.backend)

    def provenance(self) -> dict[str, Any]:
        """Where this executor's tool code came from (:meth:`ToolBackend.provenance`)."""
        return self.backend.provenance(self.domain)

    def execute(self, name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Run one tool call; mutates :attr:`db`. Always returns a dict with ``status``."""
        self.call_index += 1
        self.call_counts[name] = self.call_counts.get(name, 0) + 1
        if self._eva:
            return self._execute_eva(name, params)
        fn = self._tools.get(name)
        if fn is None:
            return _error("tool_not_found", f"Tool {name!r} is not available")
        if not isinstance(params, Mapping):  # None too: EVA's models reject it the same way
            return _error(
                "invalid_parameter",
                f"Invalid parameters for {name}: expected an object, got {type(params).__name__}",
            )
        try:
            result = fn(copy.deepcopy(dict(params)), self.db, self.call_counts[name])
        except Exception as exc:  # a tool bug must not take the call down
            return _error("execution_error", f"Tool {name} failed: {type(exc).__name__}: {exc}")
        if not isinstance(result, dict) or "status" not in result:
            return _error("execution_error", f"Tool {name} returned no status")
        return result

    def _execute_eva(self, name: str, params: Any) -> dict[str, Any]:
        """EVA's ``ToolExecutor.execute`` around EVA's functions (count already incremented)."""
        enabled = self._enabled if self._enabled is not None else self._functions
        if name not in enabled:
            return _error("tool_not_found", f"Tool {name} not found in configuration")
        fn = self._functions.get(name)
        if fn is None:
            return _error("function_not_found", f"No Python function found for tool {name}")
        args = copy.deepcopy(dict(params)) if isinstance(params, Mapping) else params
        try:
            result = fn(params=args, db=self.db, call_index=self.call_counts[name])
        except Exception as exc:  # EVA logs it and answers execution_error
            return _error("execution_error", f"Tool execution failed: {exc}")
        if not isinstance(result, dict) or "status" not in result:
            # EVA's executor raises ValueError here; hydralab keeps the call alive instead.
            return _error("execution_error", f"Tool {name} returned no status")
        return copy.deepcopy(result)

    def replay(
        self, events: Iterable[Mapping[str, Any]], *, chain: bool | IdChain = True
    ) -> list[dict[str, Any]]:
        """Execute every ``tool_call`` event of a trace in order; return the live results.

        Args:
            events: Trace events (``record.trace``): ``tool_call`` events (``tool_name``,
                ``params``) are executed; ``tool_response`` events (``tool_name``,
                ``response``) are only read for chaining; others are ignored. Placeholders
                (``<LAST_NAME>``, ``<LOC:Name>``) must already be resolved.
            chain: Chain the trace's identifiers into the live ones (:class:`IdChain`): each
                ``tool_response``'s ``response`` is walked beside the live result of the
                oldest unanswered call of that tool, and later call parameters are rewritten
                with what was learned. ``True`` uses a fresh chain, ``False`` none; pass an
                :class:`IdChain` to keep (and inspect) the mapping.

        Returns:
            One live result per ``tool_call`` event, in order.
        """
        ids = chain if isinstance(chain, IdChain) else (IdChain() if chain else None)
        waiting: dict[str, deque[dict[str, Any]]] = {}
        results: list[dict[str, Any]] = []
        for event in events:
            kind = event.get("event_type")
            if kind == "tool_call":
                name = str(event["tool_name"])
                params = event.get("params") or {}
                if ids is not None:
                    params = ids.apply(params)
                result = self.execute(name, params)
                results.append(result)
                waiting.setdefault(name, deque()).append(result)
            elif kind == "tool_response" and ids is not None:
                queue = waiting.get(str(event.get("tool_name")))
                if queue:
                    ids.learn(event.get("response"), queue.popleft())
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
