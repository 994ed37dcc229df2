"""``import hydralab`` is lazy (PEP 562): it loads no submodule and no heavy library, yet every
public name of ``hydralab.__all__`` (and of ``hydralab.audio.__all__``) resolves, on first access,
to the very object its submodule defines. Import-time budgets live in the benchmarks, not here:
these tests only check *what* gets imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys

import pytest

import hydralab
import hydralab.audio

# Libraries a bare `import hydralab` must not load (each costs 20 ms to 0.5 s). numpy, websockets,
# yaml, soxr and webrtcvad are not needed either, until a submodule that uses them is touched.
HEAVY = (
    "scipy",
    "matplotlib",
    "pandas",
    "librosa",
    "httpx",
    "pocketsphinx",
    "IPython",
    "numpy",
    "websockets",
    "yaml",
    "soxr",
    "webrtcvad",
)
# What the CLI's --help / --version and the bridge's import path must still leave out.
NEVER_AT_START = ("scipy", "matplotlib", "pandas", "librosa", "IPython", "pocketsphinx")


def _loaded_after(code: str, names: tuple[str, ...] = HEAVY) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; the top-level packages of ``names`` and the hydralab
    modules it left in ``sys.modules``."""
    probe = (
        f"{code}\n"
        "import json as _j, sys as _s\n"
        f"_n = {names!r}\n"
        "print(_j.dumps({'heavy': sorted(n for n in _n if n in _s.modules),"
        " 'hydralab': sorted(m for m in _s.modules if m.startswith('hydralab'))}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_bare_import_loads_no_submodule_and_no_heavy_library() -> None:
    loaded = _loaded_after("import hydralab")
    assert loaded["heavy"] == []
    assert loaded["hydralab"] == ["hydralab", "hydralab._lazy"]  # its lazy-attribute helper


def test_version_alone_stays_light() -> None:
    loaded = _loaded_after("import hydralab; hydralab.__version__")
    assert loaded["heavy"] == []
    assert loaded["hydralab"] == ["hydralab", "hydralab._lazy"]  # its lazy-attribute helper


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["run", "--help"], ["batch", "--help"]]
)
def test_cli_help_and_version_stay_light(argv: list[str]) -> None:
    code = (
        "import contextlib, io, sys\n"
        f"sys.argv = ['hydralab', *{argv!r}]\n"
        "from hydralab.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()\n"
    )
    assert _loaded_after(code, NEVER_AT_START)["heavy"] == []


@pytest.mark.parametrize("module", ["hydralab.bridge", "hydralab.bridge_core", "hydralab.audio"])
def test_bridge_import_path_leaves_scipy_out(module: str) -> None:
    assert _loaded_after(f"import {module}", NEVER_AT_START)["heavy"] == []


def test_every_public_name_resolves_to_its_submodules_object() -> None:
    names = hydralab.__all__
    assert len(names) == len(set(names))
    lazy: dict[str, str] = hydralab._LAZY  # name -> submodule it is imported from
    assert set(lazy) | {"__version__"} == set(names)
    for name in sorted(lazy):
        source = importlib.import_module(f"hydralab.{lazy[name]}")
        assert getattr(hydralab, name) is getattr(source, name), name
    namespace: dict[str, object] = {}
    exec("from hydralab import *", namespace)  # the star import must work too
    assert set(names) <= set(namespace)


def test_every_audio_name_resolves_to_its_submodules_object() -> None:
    names = hydralab.audio.__all__
    assert len(names) == len(set(names))
    for name in names:
        value = getattr(hydralab.audio, name)
        module = getattr(value, "__module__", None)
        if module is not None and module.startswith("hydralab.audio."):
            assert getattr(importlib.import_module(module), name) is value, name
    # `resample` is the function, as before, even once the submodule of that name is imported
    importlib.import_module("hydralab.audio.resample")
    assert callable(hydralab.audio.resample)
    assert hydralab.audio.resample.__module__ == "hydralab.audio.resample"


def test_version() -> None:
    try:
        expected = importlib.metadata.version("hydralab")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - bare checkout
        expected = "0.0.0"
    assert hydralab.__version__ == expected
    assert isinstance(hydralab.__version__, str)


def test_dir_lists_the_public_names() -> None:
    listed = dir(hydralab)
    assert set(hydralab.__all__) <= set(listed)
    assert listed == sorted(listed)
    assert set(hydralab.audio.__all__) <= set(dir(hydralab.audio))


@pytest.mark.parametrize("module", [hydralab, hydralab.audio], ids=["hydralab", "hydralab.audio"])
@pytest.mark.parametrize("name", ["no_such_name", "_private", "__wrapped__"])
def test_unknown_attribute_raises_the_usual_error(module: object, name: str) -> None:
    modname = getattr(module, "__name__", "")
    with pytest.raises(AttributeError, match=rf"^module '{modname}' has no attribute '{name}'$"):
        getattr(module, name)
    assert not hasattr(module, name)


def test_submodules_resolve_as_attributes_after_a_bare_import() -> None:
    """Code written when ``import hydralab`` imported everything keeps working."""
    code = (
        "import hydralab\n"
        "assert callable(hydralab.analysis.load_batch)\n"
        "assert hydralab.audio.perturb.LinePerturbation is hydralab.LinePerturbation\n"
        "assert hydralab.emulator.core.EmulatorConfig is hydralab.EmulatorConfig\n"
        "assert callable(hydralab.protocol.budget.plan_configure)\n"
        "assert callable(hydralab.audio.resample)\n"
    )
    loaded = _loaded_after(code)
    assert "hydralab.analysis" in loaded["hydralab"]
    assert "hydralab.audio.perturb" in loaded["hydralab"]
