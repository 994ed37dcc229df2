"""Packaging: a built wheel carries hydralab's records, and ``hydralab`` works from it alone.

The wheel is built offline from a copy of the sources (``--no-build-isolation``, so the build
backend comes from this environment) and installed into a fresh venv without pip. That venv sees
this environment's site-packages through a plain ``.pth`` line, which gives it the dependencies
but not the editable install of hydralab: ``.pth`` files inside a directory added that way are
not processed, so the editable finder never loads. Commands run from an empty working directory.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
RECORD_IDS = ["HL-AIR-001", "HL-AIR-002", "HL-AIR-003"]
RUN_RECORD = "HL-AIR-002"  # the shortest record: about 30 s of conversation


def _setuptools_ok() -> bool:
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 77  # pyproject's licence expression needs setuptools 77


def _check(
    cmd: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


class Installed:
    """A fresh venv holding only the built wheel (dependencies come through a ``.pth``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.cwd = root / "cwd"
        self.wheel = self._build()
        self._install()

    def _build(self) -> Path:
        src = self.root / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, src / name)
        shutil.copytree(
            REPO / "hydralab", src / "hydralab", ignore=shutil.ignore_patterns("__pycache__")
        )
        wheels = self.root / "wheels"
        _check(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                src,
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-q",
                "-w",
                wheels,
            ],
            cwd=self.root,
        )
        (wheel,) = wheels.glob("hydralab-*.whl")
        return wheel

    def _install(self) -> None:
        _check([sys.executable, "-m", "venv", "--without-pip", self.venv], cwd=self.root)
        # Install before the .pth exists, so pip cannot see (or touch) the editable hydralab.
        _check(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                self.python,
                "install",
                "--no-deps",
                "--no-index",
                "-q",
                self.wheel,
            ],
            cwd=self.root,
        )
        purelib = Path(
            _check(
                [self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                cwd=self.root,
            ).strip()
        )
        deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
        (purelib / "zz_hydralab_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
        self.cwd.mkdir()

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONNOUSERSITE"] = "1"
        return env

    def run(self, *args: str | Path, timeout: float = 120) -> str:
        """``python -m hydralab ARGS`` with the fresh venv, from its empty working directory."""
        return _check(
            [self.python, "-m", "hydralab", *args], cwd=self.cwd, env=self.env, timeout=timeout
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if not _setuptools_ok():
        pytest.skip("needs setuptools>=77 in this environment (pip install -e '.[dev]')")
    return Installed(tmp_path_factory.mktemp("packaging"))


def test_wheel_carries_the_records(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    data = "hydralab/data/airline/"
    assert {
        "hydralab/py.typed",
        data + "airline_dataset.json",
        data + "agent.yaml",
        data + "initial_messages.yaml",
        *(f"{data}airline_scenarios/{rid}.json" for rid in RECORD_IDS),
    } <= names
    assert not any(n.startswith("data/") or n.endswith((".pyc", "build_airline.py")) for n in names)


def test_fresh_venv_imports_the_wheel_not_the_checkout(installed: Installed) -> None:
    code = (
        "import json, sys, hydralab, hydralab.records as r;"
        "print(json.dumps([hydralab.__file__, str(r.DEFAULT_DATA_DIR),"
        " sorted(m for m in sys.modules if 'editable' in m)]))"
    )
    out = _check([installed.python, "-c", code], cwd=installed.cwd, env=installed.env)
    module_file, data_dir, editable = json.loads(out)
    assert Path(module_file).is_relative_to(installed.venv), module_file
    assert Path(data_dir).is_relative_to(installed.venv), data_dir
    assert not Path(module_file).is_relative_to(REPO)
    assert editable == []


def test_records_from_the_wheel(installed: Installed) -> None:
    assert installed.run("records").split() == RECORD_IDS
    script = installed.venv / "bin" / "hydralab"  # the console script works too
    out = _check([script, "records"], cwd=installed.cwd, env=installed.env)
    assert out.split() == RECORD_IDS


def test_run_from_the_wheel(installed: Installed) -> None:
    """A whole call from the installed wheel's records, tools and cores (in virtual time: the
    sockets' shells are proven by the end-to-end tests)."""
    out = installed.cwd / "runs"
    installed.run(
        "run",
        RUN_RECORD,
        "--simulate",
        "--model",
        "emulator",
        "--stt",
        "none",
        "--profile",
        "classic",
        "--out",
        out,
    )
    (record_dir,) = out.glob(f"*/records/{RUN_RECORD}")
    assert json.loads((record_dir / "result.json").read_text())["completed"] is True
    meta = json.loads((record_dir / "run.json").read_text())
    assert Path(meta["record"]["data_dir"]).is_relative_to(installed.venv)
    assert meta["simulation"]["timed_out"] is False
