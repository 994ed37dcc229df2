"""Tool backends: where a domain's tool functions come from, behind one interface.

Two backends give :class:`hydralab.tools.ToolExecutor` its functions:

- :class:`HydralabTools`: hydralab's own tools (today the airline domain,
  :mod:`hydralab.tools.airline`), written after EVA's documented semantics; no EVA needed.
- :class:`EvaTools`: EVA's own tool code, loaded at run time from the user's EVA checkout
  (``--eva-dir``) by :mod:`hydralab.tools.eva_code`; every EVA domain (airline, itsm,
  medical_hr), needs pydantic (the ``eva`` extra).

:func:`choose_tools` picks one for a domain. Each backend also reports which error types make a
call invalid (:meth:`ToolBackend.call_error_types`, per domain) and EVA's own
``tool_call_validity`` rule (:func:`eva_metric_error_types`), and where its code came from
(:meth:`ToolBackend.provenance`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from hydralab.tools import airline
from hydralab.tools.eva_code import (
    EVA_TOOLS_SUBDIR,
    EvaToolsNotFoundError,
    ToolBackendError,
    check_eva_domain_files,
    eva_domain_files,
    eva_domains,
    git_commit,
    load_eva_domain,
    load_eva_params,
)

__all__ = [
    "BACKEND_CHOICES",
    "EXECUTOR_ERROR_TYPES",
    "HYDRALAB_DOMAINS",
    "BackendChoice",
    "EvaTools",
    "HydralabTools",
    "ToolBackend",
    "ToolBackendError",
    "ToolCallable",
    "UnknownDomainError",
    "choose_tools",
    "eva_metric_error_types",
]

#: A tool function as both backends define it: ``fn(params=..., db=..., call_index=...)``.
ToolCallable = Callable[..., Any]

#: hydralab's own tool implementations, by domain.
HYDRALAB_DOMAINS: Mapping[str, Mapping[str, airline.ToolFn]] = {"airline": airline.TOOLS}
_HYDRALAB_PARAMETER_ERROR_TYPES: Mapping[str, frozenset[str]] = {
    "airline": airline.PARAMETER_ERROR_TYPES
}
_HYDRALAB_SOURCES: Mapping[str, Path] = {"airline": Path(airline.__file__)}

#: What the executor itself answers for a call it could not run (EVA's executor set, plus the
#: generic pydantic fallback ``invalid_parameter``); EVA's ``tool_call_validity`` counts all four.
EXECUTOR_ERROR_TYPES: frozenset[str] = frozenset(
    {"tool_not_found", "function_not_found", "execution_error", "invalid_parameter"}
)

BackendChoice = Literal["auto", "eva", "hydralab"]
BACKEND_CHOICES: tuple[BackendChoice, ...] = ("auto", "eva", "hydralab")


class UnknownDomainError(ToolBackendError):
    """No tool implementation exists for the requested domain."""


def _point_eva_dir(domain: str) -> str:
    return (
        f"point --eva-dir at an EVA repository root (a ServiceNow/eva checkout) containing "
        f"{(EVA_TOOLS_SUBDIR / f'{domain}_tools.py').as_posix()}"
    )


class ToolBackend(ABC):
    """Where a domain's tool functions come from.

    Attributes:
        kind: ``"hydralab"`` or ``"eva"``; an ``"eva"`` backend makes
            :class:`hydralab.tools.ToolExecutor` behave exactly as EVA's executor.
    """

    kind: ClassVar[Literal["hydralab", "eva"]]

    @abstractmethod
    def domains(self) -> tuple[str, ...]:
        """Domains this backend has tools for, sorted."""

    def has_domain(self, domain: str) -> bool:
        """Whether :meth:`functions` can serve ``domain``."""
        return domain in self.domains()

    @abstractmethod
    def functions(self, domain: str) -> Mapping[str, ToolCallable]:
        """The domain's tool functions by name.

        Raises:
            UnknownDomainError: The backend has no tools for ``domain``.
        """

    @abstractmethod
    def parameter_error_types(self, domain: str) -> frozenset[str]:
        """``error_type`` values the domain's tools return for a malformed parameter."""

    def call_error_types(self, domain: str) -> frozenset[str]:
        """Error types that make a call of this domain invalid: executor + parameter types.

        Business errors such as ``not_found`` or ``authentication_failed`` are valid calls.
        """
        return EXECUTOR_ERROR_TYPES | self.parameter_error_types(domain)

    @abstractmethod
    def eva_metric_error_types(self) -> frozenset[str]:
        """EVA's ``tool_call_validity`` rule, with this backend's airline parameter types.

        EVA's metric (``eva/metrics/diagnostic/tool_call_validity.py``) imports
        ``airline_params.FIELD_ERROR_TYPES`` and applies it to *every* domain, so an itsm or
        medical_hr parameter error counts as invalid there only if airline has the same type.
        """

    @abstractmethod
    def provenance(self, domain: str) -> dict[str, Any]:
        """Where the domain's code came from.

        Returns:
            ``{"backend": "eva" | "hydralab", "eva_dir": str | None, "eva_commit": str | None,
            "files": {file name: sha256 hex}}``.
        """


class HydralabTools(ToolBackend):
    """hydralab's own tools (:data:`HYDRALAB_DOMAINS`); no EVA checkout needed."""

    kind: ClassVar[Literal["hydralab", "eva"]] = "hydralab"

    def __repr__(self) -> str:
        return "HydralabTools()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HydralabTools)

    def __hash__(self) -> int:
        return hash(HydralabTools)

    def domains(self) -> tuple[str, ...]:
        return tuple(sorted(HYDRALAB_DOMAINS))

    def _check(self, domain: str) -> None:
        if domain not in HYDRALAB_DOMAINS:
            raise UnknownDomainError(
                f"hydralab has no tools of its own for domain {domain!r} (hydralab implements: "
                f"{', '.join(self.domains())}); to run EVA's {domain} tools, "
                + _point_eva_dir(domain)
            )

    def functions(self, domain: str) -> Mapping[str, ToolCallable]:
        self._check(domain)
        return HYDRALAB_DOMAINS[domain]

    def parameter_error_types(self, domain: str) -> frozenset[str]:
        self._check(domain)
        return _HYDRALAB_PARAMETER_ERROR_TYPES[domain]

    def eva_metric_error_types(self) -> frozenset[str]:
        return EXECUTOR_ERROR_TYPES | _HYDRALAB_PARAMETER_ERROR_TYPES["airline"]

    def provenance(self, domain: str) -> dict[str, Any]:
        self._check(domain)
        source = _HYDRALAB_SOURCES[domain]
        return {
            "backend": "hydralab",
            "eva_dir": None,
            "eva_commit": None,
            "files": {source.name: hashlib.sha256(source.read_bytes()).hexdigest()},
        }


class EvaTools(ToolBackend):
    """EVA's own tool code, loaded from an EVA checkout by file path (never imported as a package).

    Args:
        eva_dir: EVA repository root: the directory holding
            ``src/eva/assistant/tools/<domain>_tools.py`` and ``<domain>_params.py``.

    Raises:
        EvaToolsNotFoundError: ``eva_dir`` is not a directory.

    Attributes:
        eva_dir: The resolved checkout root.
    """

    kind: ClassVar[Literal["hydralab", "eva"]] = "eva"

    def __init__(self, eva_dir: Path | str) -> None:
        root = Path(eva_dir).expanduser()
        if not root.is_dir():
            raise EvaToolsNotFoundError(
                f"EVA directory {root} does not exist or is not a directory; --eva-dir must "
                f"point at an EVA repository root containing "
                f"{(EVA_TOOLS_SUBDIR / '<domain>_tools.py').as_posix()}",
                root,
            )
        self.eva_dir = root.resolve()

    def __repr__(self) -> str:
        return f"EvaTools({str(self.eva_dir)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EvaTools) and other.eva_dir == self.eva_dir

    def __hash__(self) -> int:
        return hash((EvaTools, self.eva_dir))

    def domains(self) -> tuple[str, ...]:
        return eva_domains(self.eva_dir)

    def has_domain(self, domain: str) -> bool:
        return all(p.is_file() for p in eva_domain_files(self.eva_dir, domain))

    def functions(self, domain: str) -> Mapping[str, ToolCallable]:
        """The public callables defined in EVA's ``<domain>_tools.py``.

        Raises:
            EvaToolsNotFoundError: The domain's tools or params file is missing.
            EvaToolsDependencyError: pydantic (the ``eva`` extra) is not installed.
            EvaToolsLoadError: A file raised while it was loaded.
        """
        return load_eva_domain(self.eva_dir, domain).functions

    def parameter_error_types(self, domain: str) -> frozenset[str]:
        """The error types of EVA's ``<domain>_params.FIELD_ERROR_TYPES``."""
        return frozenset(t for t, _ in load_eva_params(self.eva_dir, domain).values())

    def eva_metric_error_types(self) -> frozenset[str]:
        return EXECUTOR_ERROR_TYPES | self.parameter_error_types("airline")

    def provenance(self, domain: str) -> dict[str, Any]:
        code = load_eva_domain(self.eva_dir, domain)
        return {
            "backend": "eva",
            "eva_dir": str(self.eva_dir),
            "eva_commit": git_commit(self.eva_dir),
            "files": dict(code.files),
        }


def eva_metric_error_types(backend: ToolBackend | None = None) -> frozenset[str]:
    """The error types EVA's own ``tool_call_validity`` metric counts as invalid, in any domain.

    EVA's rule: ``{tool_not_found, function_not_found, execution_error, invalid_parameter}`` plus
    the error types of **airline**'s ``FIELD_ERROR_TYPES``, whatever the record's domain (the
    metric imports airline's map). Compare :meth:`ToolBackend.call_error_types`, which uses the
    record's own domain.

    Args:
        backend: Whose airline parameter types to use; ``None`` means :class:`HydralabTools`
            (whose airline types equal EVA's).

    Returns:
        The set of invalid error types.
    """
    return (backend if backend is not None else HydralabTools()).eva_metric_error_types()


def choose_tools(
    domain: str,
    *,
    eva_dir: Path | str | None = None,
    prefer: BackendChoice = "auto",
) -> ToolBackend:
    """The tool backend to run ``domain`` with.

    Args:
        domain: Tool domain (``airline``, ``itsm``, ``medical_hr``).
        eva_dir: EVA repository root (``--eva-dir``), or ``None``.
        prefer: ``"auto"``: EVA's code when ``eva_dir`` has the domain's tools and params
            files, else hydralab's own; ``"eva"``: EVA's code, required; ``"hydralab"``:
            hydralab's own, required.

    Returns:
        A backend that has ``domain``; EVA's code is already loaded (and cached), so a broken
        checkout or a missing pydantic fails here, before any call starts.

    Raises:
        ValueError: ``prefer`` is not one of :data:`BACKEND_CHOICES`.
        ToolBackendError: ``prefer="eva"`` without ``eva_dir``.
        EvaToolsNotFoundError: EVA's code is required (``prefer="eva"``, or a domain hydralab
            does not implement) and ``eva_dir`` or the domain's files are missing.
        EvaToolsLoadError: EVA's files were chosen but could not be loaded
            (:class:`EvaToolsDependencyError`: pydantic, the ``eva`` extra, is missing).
        UnknownDomainError: hydralab's own tools are required (``prefer="hydralab"``, or
            ``"auto"`` without ``eva_dir``) and hydralab does not implement ``domain``.
    """
    if prefer not in BACKEND_CHOICES:
        raise ValueError(f"prefer must be one of {', '.join(BACKEND_CHOICES)}; got {prefer!r}")
    if prefer == "hydralab":
        backend: ToolBackend = HydralabTools()
        backend.functions(domain)  # UnknownDomainError listing hydralab's domains
        return backend
    if eva_dir is None:
        if prefer == "eva":
            raise ToolBackendError(
                f"EVA's tool code was requested for {domain!r} but no EVA directory was given; "
                + _point_eva_dir(domain)
            )
        backend = HydralabTools()
        backend.functions(domain)
        return backend
    root = Path(eva_dir).expanduser()
    if prefer == "auto" and domain in HYDRALAB_DOMAINS:
        if root.is_dir() and all(p.is_file() for p in eva_domain_files(root, domain)):
            return _loaded(EvaTools(root), domain)
        return HydralabTools()
    check_eva_domain_files(root, domain)  # raises, naming the missing path
    return _loaded(EvaTools(root), domain)


def _loaded(backend: EvaTools, domain: str) -> EvaTools:
    """``backend`` after loading ``domain`` (cached), so a broken checkout fails here."""
    backend.functions(domain)
    return backend
