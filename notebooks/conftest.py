"""nbval runs the notebooks as tests; skip a notebook whose optional extras are missing.

01 and 02 hold real (emulated) calls, so they need the ``speech`` extra (eSpeak NG, GPL); all
three build pandas tables and matplotlib figures (the ``notebooks`` extra).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import time
from pathlib import Path

import pytest

from hydralab.speech.tts import Synthesizer

_HERE = Path(__file__).resolve().parent
_TABLES = ("pandas", "matplotlib")
NEEDS: dict[str, tuple[str, ...]] = {
    "01_single_record.ipynb": ("speech", *_TABLES),
    "02_latency_distributions.ipynb": ("speech", *_TABLES),
    "03_listen.ipynb": _TABLES,
}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def _missing(extras: tuple[str, ...]) -> list[str]:
    out = []
    for name in extras:
        ok = Synthesizer.available() if name == "speech" else _importable(name)
        if not ok:
            out.append(name)
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path)).resolve()
        if path.parent != _HERE or path.name not in NEEDS:
            continue
        missing = _missing(NEEDS[path.name])
        if missing:
            reason = f"needs {', '.join(missing)}: pip install 'hydralab[speech,notebooks]'"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Notebooks on several workers (``make test``): start their kernels a few seconds apart.
    Kernels started in the same instant can race for their ZMQ ports and die before replying
    ("Kernel died before replying to kernel_info"); the first cell's setup starts the kernel."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and item.nodeid.endswith(".ipynb::Cell 0"):
        time.sleep(4.0 * int(worker[2:] or 0))
