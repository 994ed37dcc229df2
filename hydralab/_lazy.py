"""PEP 562 lazy attributes for a package's ``__init__`` (``import hydralab`` stays light)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str,
    table: Mapping[str, str],
    namespace: dict[str, Any],
    *,
    special: Mapping[str, Callable[[], Any]] | None = None,
) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: a name in ``table`` is imported from its submodule
    on first access, a name in ``special`` is computed, any other public name is tried as a
    submodule (``package.analysis`` after a bare ``import package``); each value is cached in
    ``namespace`` (the package's globals), so the next access is a plain lookup."""

    def getattr_(name: str) -> Any:
        if special is not None and name in special:
            value = special[name]()
        elif name in table:
            value = getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        elif not name.startswith("_"):
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise  # the submodule exists but one of its own imports is missing
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    return getattr_
