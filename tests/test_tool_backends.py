"""Tool backends: EVA's tool code loaded by path, the chooser, provenance, and the executor's
EVA semantics.

Most tests build small fake EVA checkouts under ``tmp_path`` (tiny ``<domain>_tools.py`` /
``<domain>_params.py`` files), so they run without the shared EVA checkout; the few that load
EVA's real files skip when ``../shared/eva`` is absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hydralab.tools import (
    EXECUTOR_ERROR_TYPES,
    EvaTools,
    EvaToolsDependencyError,
    EvaToolsLoadError,
    EvaToolsNotFoundError,
    HydralabTools,
    IdChain,
    ToolBackendError,
    ToolExecutor,
    UnknownDomainError,
    call_error_types,
    choose_tools,
    eva_metric_error_types,
    git_commit,
    tool_ids,
)
from hydralab.tools.eva_code import load_eva_domain

EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
HAVE_EVA = (EVA_DIR / "src" / "eva" / "assistant" / "tools" / "airline_tools.py").is_file()
needs_eva = pytest.mark.skipif(not HAVE_EVA, reason="shared EVA checkout not present")

FAKE_TOOLS = """
import hashlib
from datetime import timedelta

from eva.assistant.tools.fake_params import FIELD_ERROR_TYPES, PREFIX


def ok(*, params, db, call_index):
    db.setdefault("calls", []).append(call_index)
    return {"status": "success", "n": call_index, "params": params, "live": db["calls"]}


def boom(*, params, db, call_index):
    raise RuntimeError("kaput")


def nostatus(*, params, db, call_index):
    return {"value": 1}


def create(*, params, db, call_index):
    ticket = PREFIX + hashlib.sha256(params["title"].encode()).hexdigest()[:8]
    db.setdefault("tickets", {})[ticket] = params["title"]
    return {"status": "success", "ticket": ticket, "message": f"Created {ticket}"}


def close(*, params, db, call_index):
    if params.get("ticket") not in db.get("tickets", {}):
        return {"status": "error", "error_type": "not_found", "message": "no such ticket"}
    db["tickets"].pop(params["ticket"])
    return {"status": "success"}


def _private(*, params, db, call_index):
    return {"status": "success"}


class Helper:
    pass


LATER = timedelta(days=1)
"""

FAKE_PARAMS = """
PREFIX = "TKT-"
FIELD_ERROR_TYPES = {"title": ("invalid_title", "title"), "ticket": ("invalid_ticket", "ticket")}
"""

AIRLINE_PARAMS = 'FIELD_ERROR_TYPES = {"confirmation_number": ("invalid_conf", "conf")}\n'
AIRLINE_TOOLS = (
    "from eva.assistant.tools.airline_params import FIELD_ERROR_TYPES\n\n\n"
    "def get_reservation(*, params, db, call_index):\n"
    '    return {"status": "success", "fake": True}\n'
)


def make_eva(root: Path, domains: dict[str, tuple[str, str]]) -> Path:
    """A fake EVA checkout: ``{domain: (tools source, params source)}``."""
    folder = root / "src" / "eva" / "assistant" / "tools"
    folder.mkdir(parents=True, exist_ok=True)
    for domain, (tools, params) in domains.items():
        (folder / f"{domain}_tools.py").write_text(textwrap.dedent(tools), encoding="utf-8")
        (folder / f"{domain}_params.py").write_text(textwrap.dedent(params), encoding="utf-8")
    return root


@pytest.fixture
def fake_eva(tmp_path: Path) -> Path:
    return make_eva(
        tmp_path / "eva",
        {"fake": (FAKE_TOOLS, FAKE_PARAMS), "airline": (AIRLINE_TOOLS, AIRLINE_PARAMS)},
    )


def _eva_modules() -> dict[str, ModuleType]:
    return {k: v for k, v in sys.modules.items() if k == "eva" or k.startswith("eva.")}


# --- loading -----------------------------------------------------------------------------------


def test_loads_defined_public_callables_only(fake_eva: Path) -> None:
    functions = EvaTools(fake_eva).functions("fake")
    assert set(functions) == {"ok", "boom", "nostatus", "create", "close", "Helper"}
    # imported names (EVA's dir() would expose them; the agent YAML gates them out there)
    assert not {"timedelta", "hashlib", "FIELD_ERROR_TYPES", "_private"} & set(functions)
    result = functions["ok"](params={"a": 1}, db={}, call_index=3)
    assert result == {"status": "success", "n": 3, "params": {"a": 1}, "live": [3]}


def test_sys_modules_restored(fake_eva: Path) -> None:
    before = _eva_modules()
    code = load_eva_domain(fake_eva, "fake")
    assert _eva_modules() == before
    # the functions keep their globals (the params module's names) after the restore
    created = code.functions["create"](params={"title": "x"}, db={}, call_index=1)
    assert created["ticket"].startswith("TKT-")


def test_existing_eva_modules_are_kept(fake_eva: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = ModuleType("eva")
    monkeypatch.setitem(sys.modules, "eva", sentinel)
    monkeypatch.delitem(sys.modules, "eva.assistant", raising=False)
    monkeypatch.delitem(sys.modules, "eva.assistant.tools", raising=False)
    load_eva_domain(fake_eva, "fake")
    assert sys.modules["eva"] is sentinel
    assert "eva.assistant" not in sys.modules and "eva.assistant.tools" not in sys.modules


def test_cache_follows_the_file(fake_eva: Path) -> None:
    path = fake_eva / "src" / "eva" / "assistant" / "tools" / "fake_tools.py"
    first = load_eva_domain(fake_eva, "fake")
    assert load_eva_domain(fake_eva, "fake") is first
    path.write_text(FAKE_TOOLS + "\n\ndef extra(*, params, db, call_index):\n    return {}\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = load_eva_domain(fake_eva, "fake")
    assert second is not first and "extra" in second.functions
    assert second.files["fake_tools.py"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_pycache_written(fake_eva: Path) -> None:
    load_eva_domain(fake_eva, "fake")
    assert not list(fake_eva.rglob("__pycache__"))


@needs_eva
def test_real_eva_loads_without_its_package() -> None:
    """In a fresh interpreter: all three domains load, nothing of EVA's package (or pipecat)
    is imported, sys.modules keeps no eva entry, and the functions still run."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from hydralab.tools import EvaTools
        backend = EvaTools({str(EVA_DIR)!r})
        counts = {{d: len(backend.functions(d)) for d in backend.domains()}}
        result = backend.functions("airline")["get_reservation"](
            params={{"confirmation_number": "ZZZZZZ", "last_name": "x"}},
            db={{"reservations": {{}}}}, call_index=1)
        print(json.dumps({{
            "counts": counts,
            "eva": [m for m in sys.modules if m == "eva" or m.startswith("eva.")],
            "heavy": [m for m in sys.modules if m.split(".")[0] in ("pipecat", "litellm")],
            "result": result,
        }}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["counts"] == {"airline": 15, "itsm": 59, "medical_hr": 48}
    assert report["eva"] == [] and report["heavy"] == []
    assert report["result"]["error_type"] == "not_found"


# --- loader errors -------------------------------------------------------------------------------


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(EvaToolsNotFoundError, match="EVA repository root") as info:
        EvaTools(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_missing_domain_files(fake_eva: Path) -> None:
    missing = fake_eva / "src" / "eva" / "assistant" / "tools" / "itsm_tools.py"
    with pytest.raises(EvaToolsNotFoundError, match=r"itsm_tools\.py") as info:
        EvaTools(fake_eva).functions("itsm")
    assert info.value.path == missing
    assert str(missing) in str(info.value) and "--eva-dir must point at" in str(info.value)
    # only the params file missing
    (fake_eva / "src" / "eva" / "assistant" / "tools" / "half_tools.py").write_text("")
    with pytest.raises(EvaToolsNotFoundError, match=r"half_params\.py"):
        load_eva_domain(fake_eva, "half")
    assert not EvaTools(fake_eva).has_domain("half")
    assert EvaTools(fake_eva).domains() == ("airline", "fake")


def test_pointing_at_src_gets_a_hint(fake_eva: Path) -> None:
    with pytest.raises(EvaToolsNotFoundError, match=r"looks like EVA's src/ folder"):
        load_eva_domain(fake_eva / "src", "fake")


def test_tools_file_raising_at_import(tmp_path: Path) -> None:
    root = make_eva(tmp_path, {"bad": ("raise RuntimeError('broken at import')\n", FAKE_PARAMS)})
    before = _eva_modules()
    with pytest.raises(EvaToolsLoadError, match="broken at import") as info:
        EvaTools(root).functions("bad")
    assert info.value.file == root / "src" / "eva" / "assistant" / "tools" / "bad_tools.py"
    assert str(info.value.file) in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError) and isinstance(info.value, ImportError)
    assert _eva_modules() == before


def test_params_without_field_error_types(tmp_path: Path) -> None:
    root = make_eva(tmp_path, {"x": ("", "OTHER = 1\n")})
    with pytest.raises(EvaToolsLoadError, match="FIELD_ERROR_TYPES"):
        load_eva_domain(root, "x")


def test_tools_importing_more_of_eva(tmp_path: Path) -> None:
    root = make_eva(tmp_path, {"x": ("from eva.utils.logging import get_logger\n", FAKE_PARAMS)})
    with pytest.raises(EvaToolsLoadError, match=r"imports 'eva\.utils"):
        load_eva_domain(root, "x")


def test_missing_dependency(tmp_path: Path) -> None:
    root = make_eva(tmp_path, {"x": ("import hydralab_no_such_module\n", FAKE_PARAMS)})
    with pytest.raises(EvaToolsDependencyError, match="hydralab_no_such_module"):
        load_eva_domain(root, "x")


def test_missing_pydantic_names_the_extra(fake_eva: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)
    with pytest.raises(EvaToolsDependencyError, match=r"pip install 'hydralab\[eva\]'"):
        EvaTools(fake_eva).functions("fake")


# --- provenance ----------------------------------------------------------------------------------

SHA = "0123456789abcdef0123456789abcdef01234567"
SHA2 = "89abcdef0123456789abcdef0123456789abcdef"


def _git(root: Path, head: str = "ref: refs/heads/main\n") -> Path:
    git = root / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text(head)
    return git


def test_git_commit_loose_packed_detached_and_gitdir_file(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    (_git(loose) / "refs" / "heads" / "main").write_text(SHA + "\n")
    assert git_commit(loose) == SHA

    packed = tmp_path / "packed"
    (_git(packed) / "packed-refs").write_text(
        f"# pack-refs with: peeled fully-peeled sorted\n{SHA2} refs/heads/other\n"
        f"{SHA} refs/heads/main\n^{SHA2}\n"
    )
    assert git_commit(packed) == SHA

    detached = tmp_path / "detached"
    _git(detached, head=SHA2.upper() + "\n")
    assert git_commit(detached) == SHA2

    unborn = tmp_path / "unborn"
    _git(unborn)
    assert git_commit(unborn) is None

    worktree = tmp_path / "worktree"
    worktree.mkdir()
    real = tmp_path / "real.git" / "worktrees" / "wt"
    real.mkdir(parents=True)
    (real / "HEAD").write_text("ref: refs/heads/feature\n")
    (real / "commondir").write_text("../..\n")
    (tmp_path / "real.git" / "refs" / "heads").mkdir(parents=True)
    (tmp_path / "real.git" / "refs" / "heads" / "feature").write_text(SHA)
    (worktree / ".git").write_text("gitdir: ../real.git/worktrees/wt\n")
    assert git_commit(worktree) == SHA

    assert git_commit(tmp_path / "not-a-repo") is None


def test_provenance(fake_eva: Path) -> None:
    (_git(fake_eva) / "refs" / "heads" / "main").write_text(SHA)
    folder = fake_eva / "src" / "eva" / "assistant" / "tools"
    prov = EvaTools(fake_eva).provenance("fake")
    assert prov == {
        "backend": "eva",
        "eva_dir": str(fake_eva.resolve()),
        "eva_commit": SHA,
        "files": {
            name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in ("fake_tools.py", "fake_params.py")
        },
    }
    ours = HydralabTools().provenance("airline")
    assert ours["backend"] == "hydralab" and ours["eva_dir"] is None
    assert ours["eva_commit"] is None and set(ours["files"]) == {"airline.py"}
    ex = ToolExecutor({}, domain="fake", backend=EvaTools(fake_eva))
    assert ex.provenance() == prov


def test_provenance_without_git(fake_eva: Path) -> None:
    assert EvaTools(fake_eva).provenance("fake")["eva_commit"] is None


# --- error types ---------------------------------------------------------------------------------


def test_error_types_per_backend(fake_eva: Path) -> None:
    eva = EvaTools(fake_eva)
    assert eva.parameter_error_types("fake") == {"invalid_title", "invalid_ticket"}
    assert eva.call_error_types("fake") == EXECUTOR_ERROR_TYPES | {
        "invalid_title",
        "invalid_ticket",
    }
    # EVA's metric: airline's FIELD_ERROR_TYPES, whatever the domain
    assert eva_metric_error_types(eva) == EXECUTOR_ERROR_TYPES | {"invalid_conf"}
    assert ToolExecutor({}, domain="fake", backend=eva).eva_metric_error_types() == (
        EXECUTOR_ERROR_TYPES | {"invalid_conf"}
    )
    ours = HydralabTools()
    assert ours.call_error_types("airline") == call_error_types("airline")
    assert eva_metric_error_types() == eva_metric_error_types(ours) == call_error_types("airline")
    assert ToolExecutor({}).call_error_types() == call_error_types("airline")


@needs_eva
def test_error_types_of_the_real_checkout() -> None:
    eva = EvaTools(EVA_DIR)
    # hydralab's airline validation types are EVA's
    assert eva.call_error_types("airline") == call_error_types("airline")
    assert eva_metric_error_types(eva) == eva_metric_error_types()
    itsm = eva.call_error_types("itsm")
    assert "invalid_ticket_number_format" in itsm
    assert "invalid_ticket_number_format" not in eva_metric_error_types(eva)
    assert not {"not_found", "authentication_failed"} & (itsm | eva.call_error_types("medical_hr"))


# --- the chooser ---------------------------------------------------------------------------------


def test_choose_tools(fake_eva: Path, tmp_path: Path) -> None:
    assert choose_tools("airline") == HydralabTools()
    assert choose_tools("airline", eva_dir=fake_eva) == EvaTools(fake_eva)
    assert choose_tools("airline", eva_dir=fake_eva, prefer="hydralab") == HydralabTools()
    assert choose_tools("fake", eva_dir=fake_eva) == EvaTools(fake_eva)
    assert choose_tools("fake", eva_dir=fake_eva, prefer="eva") == EvaTools(fake_eva)
    no_airline = make_eva(tmp_path / "no-airline", {"fake": (FAKE_TOOLS, FAKE_PARAMS)})
    assert choose_tools("airline", eva_dir=no_airline) == HydralabTools()  # auto falls back
    assert choose_tools("airline", eva_dir=tmp_path / "missing") == HydralabTools()


def test_choose_tools_errors(fake_eva: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownDomainError, match=r"--eva-dir.*itsm_tools\.py"):
        choose_tools("itsm")
    with pytest.raises(EvaToolsNotFoundError, match=r"itsm_tools\.py") as info:
        choose_tools("itsm", eva_dir=fake_eva)
    assert info.value.path == fake_eva / "src" / "eva" / "assistant" / "tools" / "itsm_tools.py"
    with pytest.raises(EvaToolsNotFoundError, match="does not exist"):
        choose_tools("itsm", eva_dir=tmp_path / "missing")
    with pytest.raises(ToolBackendError, match="--eva-dir"):
        choose_tools("airline", prefer="eva")
    no_airline = make_eva(tmp_path / "no-airline", {"fake": (FAKE_TOOLS, FAKE_PARAMS)})
    with pytest.raises(EvaToolsNotFoundError, match=r"airline_tools\.py"):
        choose_tools("airline", eva_dir=no_airline, prefer="eva")
    with pytest.raises(UnknownDomainError, match=r"hydralab implements: airline"):
        choose_tools("fake", eva_dir=fake_eva, prefer="hydralab")
    with pytest.raises(ValueError, match="prefer must be one of"):
        choose_tools("airline", prefer="both")  # type: ignore[arg-type]
    with pytest.raises(UnknownDomainError, match="itsm"):
        ToolExecutor({}, domain="itsm")


# --- the executor with EVA's semantics -----------------------------------------------------------


def test_executor_eva_semantics(fake_eva: Path) -> None:
    ex = ToolExecutor(
        {"seed": 1},
        domain="fake",
        current_date_time="2026-03-17 10:45 CST",
        enabled_tools=["ok", "boom", "nostatus", "declared_only"],
        backend=EvaTools(fake_eva),
    )
    assert ex.db["_current_date"] == ex.initial_db["_current_date"] == "2026-03-17"
    assert ex.tool_names == ("ok", "boom", "nostatus")

    assert ex.execute("teleport", {}) == {
        "status": "error",
        "error_type": "tool_not_found",
        "message": "Tool teleport not found in configuration",
    }
    assert ex.call_counts == {"teleport": 1} and ex.call_index == 1  # counted first
    assert ex.execute("create", {"title": "x"})["error_type"] == "tool_not_found"  # not enabled
    assert ex.execute("declared_only", {}) == {
        "status": "error",
        "error_type": "function_not_found",
        "message": "No Python function found for tool declared_only",
    }
    assert ex.call_counts["declared_only"] == 1

    params = {"a": [1]}
    first = ex.execute("ok", params)
    assert first == {"status": "success", "n": 1, "params": {"a": [1]}, "live": [1]}
    assert ex.execute("ok", params)["n"] == 2  # keyword call_index: the per-tool count
    assert ex.db["calls"] == [1, 2] and "calls" not in ex.initial_db
    first["live"].append(99)  # results are snapshots, not the live DB
    assert ex.db["calls"] == [1, 2]

    assert ex.execute("boom", {}) == {
        "status": "error",
        "error_type": "execution_error",
        "message": "Tool execution failed: kaput",
    }
    no_status = ex.execute("nostatus", {})  # EVA raises here; hydralab answers an error
    assert no_status["error_type"] == "execution_error" and "no status" in no_status["message"]
    assert ex.call_index == 7

    ex.reset()
    assert ex.db == ex.initial_db and ex.call_counts == {} and ex.call_index == 0


def test_executor_eva_without_enabled_tools(fake_eva: Path) -> None:
    ex = ToolExecutor({}, domain="fake", backend=EvaTools(fake_eva))
    assert set(ex.tool_names) == {"ok", "boom", "nostatus", "create", "close", "Helper"}
    assert ex.execute("timedelta", {})["error_type"] == "tool_not_found"
    assert ex.execute("_private", {})["error_type"] == "tool_not_found"


def test_executor_for_record_with_backend(fake_eva: Path) -> None:
    from hydralab.records import load_record

    record = load_record()
    ex = ToolExecutor.for_record(
        record, enabled_tools=tool_ids(record.agent), backend=EvaTools(fake_eva)
    )
    assert ex.backend == EvaTools(fake_eva) and ex.domain == record.domain
    assert ex.tool_names == ("get_reservation",)  # the fake checkout's only airline function
    assert ex.execute("get_reservation", {}) == {"status": "success", "fake": True}
    assert ex.execute("search_rebooking_options", {})["error_type"] == "function_not_found"
    assert ex.db["_current_date"] == record.current_date
    assert tool_ids(record.agent) == record.agent.tool_names


def test_replay_chains_ids(fake_eva: Path) -> None:
    trace: list[dict[str, Any]] = [
        {"event_type": "user_utterance", "utterance": "hi"},
        {"event_type": "tool_call", "tool_name": "create", "params": {"title": "printer"}},
        {
            "event_type": "tool_response",
            "tool_name": "create",
            "response": {"status": "success", "ticket": "TKT0001", "message": "Created TKT0001"},
        },
        {"event_type": "tool_call", "tool_name": "close", "params": {"ticket": "TKT0001"}},
        {"event_type": "tool_response", "tool_name": "close", "response": {"status": "success"}},
    ]
    backend = EvaTools(fake_eva)
    ids = IdChain()
    ex = ToolExecutor({}, domain="fake", backend=backend)
    created, closed = ex.replay(trace, chain=ids)
    assert closed == {"status": "success"} and ex.db["tickets"] == {}
    assert ids.mapping == {"TKT0001": created["ticket"]}
    assert ToolExecutor({}, domain="fake", backend=backend).replay(trace)[1] == closed
    unchained = ToolExecutor({}, domain="fake", backend=backend)
    assert unchained.replay(trace, chain=False)[1]["error_type"] == "not_found"


def test_choose_tools_loads_eva_code_up_front(
    fake_eva: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)
    with pytest.raises(EvaToolsDependencyError, match=r"hydralab\[eva\]"):
        choose_tools("airline", eva_dir=fake_eva)  # auto chose EVA's files: no silent fallback
    monkeypatch.undo()
    root = make_eva(fake_eva.parent / "broken", {"airline": ("1/0\n", AIRLINE_PARAMS)})
    with pytest.raises(EvaToolsLoadError, match="ZeroDivisionError"):
        choose_tools("airline", eva_dir=root)
