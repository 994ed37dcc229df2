"""Load EVA's own tool code from a user's EVA checkout, without importing EVA's package.

EVA (ServiceNow/eva) keeps one tool module per domain,
``src/eva/assistant/tools/<domain>_tools.py``, beside its pydantic parameter models,
``<domain>_params.py``. hydralab never ships that code: it
reads both files from the checkout the user points ``--eva-dir`` at, by file path, at run time.
Importing them the ordinary way would run ``eva/__init__.py`` and ``eva/assistant/...``, which
pull in pipecat, litellm and the rest of EVA's runtime; loading by path needs only pydantic (the
``eva`` extra: ``pip install 'hydralab[eva]'``).

The tools module does ``from eva.assistant.tools.<domain>_params import ...``. While it runs,
:func:`load_eva_domain` registers placeholder package modules ``eva``, ``eva.assistant`` and
``eva.assistant.tools`` (only those not already in :data:`sys.modules`) and the loaded params
module under its dotted name; afterwards every ``eva`` / ``eva.*`` entry of :data:`sys.modules`
is put back exactly as it was (the loaded functions keep their module globals, so they keep
working). The placeholders have an empty ``__path__``: any other ``eva.*`` import a tools file
might try fails at once with a clear :class:`EvaToolsLoadError` instead of finding EVA's package.

The source is compiled from the bytes whose SHA-256 :class:`EvaDomainCode` reports (no
``__pycache__`` is written into the checkout), and loads are cached per resolved path and
modification time, under a lock.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "EVA_TOOLS_SUBDIR",
    "EvaDomainCode",
    "EvaToolsDependencyError",
    "EvaToolsLoadError",
    "EvaToolsNotFoundError",
    "ToolBackendError",
    "check_eva_domain_files",
    "eva_domain_files",
    "eva_domains",
    "git_commit",
    "load_eva_domain",
    "load_eva_params",
]

#: Where EVA keeps its tool modules, relative to the repository root.
EVA_TOOLS_SUBDIR = Path("src") / "eva" / "assistant" / "tools"

_PACKAGE = "eva.assistant.tools"
_PLACEHOLDERS = ("eva", "eva.assistant", "eva.assistant.tools")
_EVA_EXTRA_HINT = "install the 'eva' extra: pip install 'hydralab[eva]'"


class ToolBackendError(ValueError):
    """A tool backend cannot be chosen or loaded (base of the backend errors)."""


class EvaToolsNotFoundError(ToolBackendError, FileNotFoundError):
    """The EVA checkout, or a domain's tool or params file in it, does not exist.

    Attributes:
        path: The missing path.
    """

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class EvaToolsLoadError(ToolBackendError, ImportError):
    """An EVA tool or params file exists but could not be executed.

    Attributes:
        file: The file that failed (``None`` when no file was read yet).
    """

    def __init__(self, message: str, file: Path | None = None) -> None:
        super().__init__(message)
        self.file = file


class EvaToolsDependencyError(EvaToolsLoadError):
    """EVA's tool code needs a package that is not installed (pydantic: the ``eva`` extra)."""


def _what_to_point_at(domain: str) -> str:
    return (
        "--eva-dir must point at an EVA repository root (a ServiceNow/eva checkout) containing "
        f"{(EVA_TOOLS_SUBDIR / f'{domain}_tools.py').as_posix()}"
    )


def eva_domain_files(eva_dir: Path | str, domain: str) -> tuple[Path, Path]:
    """The ``(<domain>_tools.py, <domain>_params.py)`` paths of an EVA checkout.

    Args:
        eva_dir: EVA repository root.
        domain: Tool domain (``airline``, ``itsm``, ``medical_hr``).

    Returns:
        Both paths; they are not checked.
    """
    folder = Path(eva_dir) / EVA_TOOLS_SUBDIR
    return folder / f"{domain}_tools.py", folder / f"{domain}_params.py"


def check_eva_domain_files(eva_dir: Path | str, domain: str) -> tuple[Path, Path]:
    """The domain's tools and params files, checked to exist.

    Args:
        eva_dir: EVA repository root.
        domain: Tool domain.

    Returns:
        ``(<domain>_tools.py, <domain>_params.py)``.

    Raises:
        EvaToolsNotFoundError: ``eva_dir`` is not a directory or a file is missing; the
            message names the path and what ``--eva-dir`` must point at.
    """
    root = Path(eva_dir).expanduser()
    if not root.is_dir():
        raise EvaToolsNotFoundError(
            f"EVA directory {root} does not exist or is not a directory; "
            + _what_to_point_at(domain),
            root,
        )
    tools, params = eva_domain_files(root, domain)
    for path in (tools, params):
        if not path.is_file():
            hint = ""
            if (root / "eva" / "assistant" / "tools").is_dir():
                hint = f" ({root} looks like EVA's src/ folder: use {root.parent})"
            elif (root / "assistant" / "tools").is_dir():
                hint = f" ({root} looks like EVA's src/eva/ package: use {root.parent.parent})"
            raise EvaToolsNotFoundError(
                f"EVA tool file {path} not found{hint}; " + _what_to_point_at(domain), path
            )
    return tools, params


def eva_domains(eva_dir: Path | str) -> tuple[str, ...]:
    """Domains whose tools and params files both exist in an EVA checkout, sorted.

    Args:
        eva_dir: EVA repository root.

    Returns:
        E.g. ``("airline", "itsm", "medical_hr")``; empty when nothing is there.
    """
    folder = Path(eva_dir).expanduser() / EVA_TOOLS_SUBDIR
    if not folder.is_dir():
        return ()
    return tuple(
        sorted(
            p.name.removesuffix("_tools.py")
            for p in folder.glob("*_tools.py")
            if (folder / p.name.replace("_tools.py", "_params.py")).is_file()
        )
    )


# ---------------------------------------------------------------------------------------------
# git provenance
# ---------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _is_sha(value: str) -> bool:
    return len(value) in (40, 64) and all(c in "0123456789abcdef" for c in value.lower())


def _git_dir(repo: Path) -> Path | None:
    dot_git = repo / ".git"
    if dot_git.is_dir():
        return dot_git
    text = _read_text(dot_git) if dot_git.is_file() else None
    if text and text.startswith("gitdir:"):
        target = Path(text.removeprefix("gitdir:").strip())
        target = target if target.is_absolute() else repo / target
        return target if target.is_dir() else None
    return None


def _resolve_ref(git_dir: Path, ref: str, depth: int = 0) -> str | None:
    common = git_dir
    commondir = _read_text(git_dir / "commondir")  # a linked worktree's shared refs
    if commondir:
        common = Path(commondir) if Path(commondir).is_absolute() else git_dir / commondir
    for folder in dict.fromkeys((git_dir, common)):
        value = _read_text(folder / ref)
        if value is not None:
            if value.startswith("ref:") and depth < 5:
                return _resolve_ref(git_dir, value.removeprefix("ref:").strip(), depth + 1)
            return value.lower() if _is_sha(value) else None
        packed = _read_text(folder / "packed-refs")
        for line in (packed or "").splitlines():
            if line.startswith(("#", "^")):
                continue
            sha, _, name = line.partition(" ")
            if name.strip() == ref and _is_sha(sha):
                return sha.lower()
    return None


def git_commit(repo_dir: Path | str) -> str | None:
    """The commit a git checkout has checked out, read from its ``.git`` without running git.

    Follows ``HEAD`` to its ref and reads the loose ref file or ``packed-refs``; ``.git`` may be
    a directory or a ``gitdir:`` file (worktrees and submodules).

    Args:
        repo_dir: Repository root.

    Returns:
        The hex commit id, or ``None`` when ``repo_dir`` is not a git checkout or ``HEAD``
        cannot be resolved (an unborn branch, say).
    """
    git_dir = _git_dir(Path(repo_dir).expanduser())
    if git_dir is None:
        return None
    head = _read_text(git_dir / "HEAD")
    if not head:
        return None
    if head.startswith("ref:"):
        return _resolve_ref(git_dir, head.removeprefix("ref:").strip())
    return head.lower() if _is_sha(head) else None


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaDomainCode:
    """One domain's tool code, loaded from an EVA checkout.

    Attributes:
        domain: Tool domain.
        eva_dir: The EVA repository root it came from (resolved).
        tools_path: ``<domain>_tools.py``.
        params_path: ``<domain>_params.py``.
        functions: Public callables *defined in* the tools module, by name.
        field_error_types: The params module's ``FIELD_ERROR_TYPES``
            (``{field: (error_type, label)}``).
        files: ``{file name: sha256 hex}`` of the two files as executed.
        module: The loaded tools module (kept alive for the functions' globals).
    """

    domain: str
    eva_dir: Path
    tools_path: Path
    params_path: Path
    functions: Mapping[str, Callable[..., Any]]
    field_error_types: Mapping[str, tuple[str, str]]
    files: Mapping[str, str]
    module: ModuleType = field(repr=False, compare=False)

    @property
    def parameter_error_types(self) -> frozenset[str]:
        """The ``error_type`` values of :attr:`field_error_types`."""
        return frozenset(error_type for error_type, _ in self.field_error_types.values())


_LOCK = threading.RLock()
_CACHE: dict[tuple[Any, ...], Any] = {}


def _require_pydantic() -> None:
    try:
        found = importlib.util.find_spec("pydantic") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise EvaToolsDependencyError(
            f"EVA's tool code needs pydantic, which is not installed; {_EVA_EXTRA_HINT}"
        )


@contextmanager
def _eva_namespace(params_name: str, params: ModuleType | None) -> Iterator[dict[str, ModuleType]]:
    """Placeholder ``eva`` packages (and ``params`` under ``params_name``) in sys.modules."""
    saved = {k: v for k, v in sys.modules.items() if k == "eva" or k.startswith("eva.")}
    added: dict[str, ModuleType] = {}
    try:
        for name in _PLACEHOLDERS:
            if name not in sys.modules:
                placeholder = ModuleType(name, "hydralab placeholder for EVA's package")
                placeholder.__path__ = []  # a package no finder can add submodules to
                sys.modules[name] = placeholder
                added[name] = placeholder
        if params is not None:
            sys.modules[params_name] = params
        yield added
    finally:
        for name in [k for k in sys.modules if k == "eva" or k.startswith("eva.")]:
            if name not in saved:
                del sys.modules[name]
        sys.modules.update(saved)


def _exec_file(name: str, path: Path, source: bytes, domain: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:  # pragma: no cover - a .py path always gets a spec
        raise EvaToolsLoadError(f"cannot make a module spec for {path}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as the import system does while a module runs
    try:
        code = compile(source, str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == "pydantic" or missing.startswith("pydantic."):
            raise EvaToolsDependencyError(
                f"{path} needs pydantic, which is not installed; {_EVA_EXTRA_HINT}", path
            ) from exc
        if missing == "eva" or missing.startswith("eva."):
            raise EvaToolsLoadError(
                f"{path} imports {missing!r}; hydralab loads only EVA's {domain}_tools.py and "
                f"{domain}_params.py from {EVA_TOOLS_SUBDIR.as_posix()}, not EVA's package "
                f"(is this EVA checkout newer than hydralab knows?)",
                path,
            ) from exc
        raise EvaToolsDependencyError(
            f"{path} needs the module {missing!r}, which is not installed", path
        ) from exc
    except Exception as exc:
        raise EvaToolsLoadError(
            f"loading EVA tool file {path} failed: {type(exc).__name__}: {exc}", path
        ) from exc
    return module


def _stat_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def _field_error_types(module: ModuleType, path: Path) -> dict[str, tuple[str, str]]:
    raw = getattr(module, "FIELD_ERROR_TYPES", None)
    if not isinstance(raw, Mapping):
        raise EvaToolsLoadError(f"{path} defines no FIELD_ERROR_TYPES mapping", path)
    out: dict[str, tuple[str, str]] = {}
    for key, value in raw.items():
        if not isinstance(value, tuple | list) or len(value) != 2:
            raise EvaToolsLoadError(
                f"{path}: FIELD_ERROR_TYPES[{key!r}] is not an (error_type, label) pair", path
            )
        out[str(key)] = (str(value[0]), str(value[1]))
    return out


def _load_params(domain: str, params_path: Path) -> tuple[ModuleType, bytes]:
    """Execute ``<domain>_params.py`` (cached); the module and the bytes that ran."""
    key = ("params", domain, _stat_key(params_path))
    cached = _CACHE.get(key)
    if cached is not None:
        module, source = cached
        assert isinstance(module, ModuleType) and isinstance(source, bytes)
        return module, source
    source = params_path.read_bytes()
    name = f"{_PACKAGE}.{domain}_params"
    with _eva_namespace(name, None):
        module = _exec_file(name, params_path, source, domain)
    _CACHE[key] = (module, source)
    return module, source


def load_eva_params(eva_dir: Path | str, domain: str) -> dict[str, tuple[str, str]]:
    """A domain's ``FIELD_ERROR_TYPES`` from an EVA checkout (only the params file is run).

    Args:
        eva_dir: EVA repository root.
        domain: Tool domain.

    Returns:
        ``{field: (error_type, label)}``.

    Raises:
        EvaToolsNotFoundError: ``eva_dir`` or the domain's files are missing.
        EvaToolsDependencyError: pydantic is not installed.
        EvaToolsLoadError: The params file failed to run or has no ``FIELD_ERROR_TYPES``.
    """
    _, params_path = check_eva_domain_files(eva_dir, domain)
    _require_pydantic()
    with _LOCK:
        module, _ = _load_params(domain, params_path)
        return _field_error_types(module, params_path)


def load_eva_domain(eva_dir: Path | str, domain: str) -> EvaDomainCode:
    """Load a domain's tool functions from an EVA checkout, by file path.

    The exposed functions are the public (non-underscore) callables *defined in* the tools
    module. EVA's own executor exposes every public name of ``dir(module)``, which also takes in
    imported names such as ``timedelta`` or ``ValidationError``; that difference is harmless,
    because both EVA's executor and :class:`hydralab.tools.ToolExecutor` first gate a call by the
    agent config's tool ids, and no tool id names an imported helper.

    Args:
        eva_dir: EVA repository root (the directory holding ``src/eva/assistant/tools``).
        domain: Tool domain (``airline``, ``itsm``, ``medical_hr``).

    Returns:
        The loaded code, cached per resolved file path and modification time.

    Raises:
        EvaToolsNotFoundError: ``eva_dir`` or one of the domain's two files is missing; the
            message names the path and what ``--eva-dir`` must point at.
        EvaToolsDependencyError: pydantic (the ``eva`` extra) or another module the files
            import is not installed.
        EvaToolsLoadError: A file raised while it was executed, imports another part of EVA's
            package, or the params file has no ``FIELD_ERROR_TYPES``.
    """
    tools_path, params_path = check_eva_domain_files(eva_dir, domain)
    _require_pydantic()
    with _LOCK:
        key = ("domain", domain, _stat_key(tools_path), _stat_key(params_path))
        cached = _CACHE.get(key)
        if isinstance(cached, EvaDomainCode):
            return cached
        params, params_source = _load_params(domain, params_path)
        field_errors = _field_error_types(params, params_path)
        source = tools_path.read_bytes()
        name = f"{_PACKAGE}.{domain}_tools"
        with _eva_namespace(f"{_PACKAGE}.{domain}_params", params):
            module = _exec_file(name, tools_path, source, domain)
        functions = {
            attr: obj
            for attr, obj in vars(module).items()
            if not attr.startswith("_")
            and callable(obj)
            and getattr(obj, "__module__", None) == name
        }
        code = EvaDomainCode(
            domain=domain,
            eva_dir=Path(eva_dir).expanduser().resolve(),
            tools_path=tools_path,
            params_path=params_path,
            functions=functions,
            field_error_types=field_errors,
            files={
                tools_path.name: hashlib.sha256(source).hexdigest(),
                params_path.name: hashlib.sha256(params_source).hexdigest(),
            },
            module=module,
        )
        _CACHE[key] = code
        return code
