"""hydralab against EVA: oracle conversations, and EVA's own metric code on our run directories.

Oracle runs: the emulator follows the record's reference trace and the bridge executes its tool
calls, with EVA's own tool code (loaded from ``../shared/eva/src`` at run time) and with
hydralab's airline tools, so the final DB must equal ``expected_scenario_db``: task_completion
= 1 (:mod:`oracle_checks`; itsm and medical_hr are in ``test_eva_domains_oracle.py``). The
conversations are simulated in virtual time (:func:`hydralab.sim.simulate_record`: the same
cores and run directory as a socket run, the caller's intended lines as transcripts), so every
shared airline record runs (~1.5 s each). Skipped when ``../shared/eva`` is absent.

EVA's metric code: the record directories of ``tests/test_scoring.py``'s conversations (clean,
barge-ins, agent silent on the last turn, dropped call) and of a real run go through EVA's
``MetricsContextProcessor`` (speech-to-speech) and its code-metric classes, and every code metric
must come out as hydralab's ``scores.json`` has it (score, normalised score, sub-metrics,
details). EVA's source is imported at test time from ``$HYDRALAB_EVA_SRC`` or
``../shared/eva/src``, never copied; the tests skip when it, or a dependency of it, is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import pkgutil
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oracle_checks import (
    EVA_DATA,
    EVA_DIR,
    _json,
    check_eva_run_directory,
    check_oracle_run,
    domain_records,
    real_calls,
)
from test_scoring import CONVERSATIONS, conversation_dir

from hydralab.cli import main
from hydralab.records import build_instructions, load_record
from hydralab.runner import RunResult
from hydralab.scoring import EVA_CODE_METRICS, score_run
from hydralab.sim import simulate_record

EVA_SRC = Path(os.environ.get("HYDRALAB_EVA_SRC") or EVA_DIR / "src")
RECORDS = tuple(domain_records("airline")) if EVA_DATA else ("1.1.2",)
#: Airline runs under EVA's own tool code and under hydralab's: both must be oracle runs.
CASES = [(rid, tools) for rid in RECORDS for tools in ("eva", "hydralab")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], RunResult]:
    out = tmp_path_factory.mktemp("oracle")
    return {
        (rid, tools): simulate_record(
            rid, data_dir=EVA_DIR, out_dir=out, run_id=f"oracle-{tools}", tools=tools
        )
        for rid, tools in CASES
    }


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@real_calls
@pytest.mark.parametrize(("record_id", "tools"), CASES)
def test_oracle_run_completes_the_task(
    runs: dict[tuple[str, str], RunResult], record_id: str, tools: str
) -> None:
    result = runs[(record_id, tools)]
    check_oracle_run(result, load_record(record_id, data_dir=EVA_DIR), tools=tools)


@real_calls
@pytest.mark.parametrize("record_id", RECORDS)
def test_run_directory_is_what_eva_reads(
    runs: dict[tuple[str, str], RunResult], record_id: str
) -> None:
    check_eva_run_directory(runs[(record_id, "eva")], load_record(record_id, data_dir=EVA_DIR))


@real_calls
@pytest.mark.parametrize("record_id", RECORDS)
def test_both_tool_codes_end_in_the_same_state(
    runs: dict[tuple[str, str], RunResult], record_id: str
) -> None:
    ours, evas = runs[(record_id, "hydralab")], runs[(record_id, "eva")]
    for name in ("final_scenario_db.json", "initial_scenario_db.json"):
        assert _json(ours.run_dir / name) == _json(evas.run_dir / name), name
    assert ours.tools_called == evas.tools_called


@real_calls
def test_model_got_evas_realtime_prompt(runs: dict[tuple[str, str], RunResult]) -> None:
    result = runs[("1.1.2", "eva")]
    configure = next(
        row["frame"]
        for row in _jsonl(result.run_dir / "events.jsonl")
        if row["frame"].get("type") == "session.configure"
    )
    instructions = configure["session"]["instructions"]
    assert instructions == build_instructions(load_record("1.1.2", data_dir=EVA_DIR))
    assert instructions.startswith("You are an AI voice assistant on a live phone call.")


@real_calls
def test_rescore_from_files_alone(
    runs: dict[tuple[str, str], RunResult], capsys: pytest.CaptureFixture[str]
) -> None:
    run_root = runs[(RECORDS[0], "eva")].run_dir.parent.parent
    assert main(["score", "--no-write", str(run_root)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert sorted(line.split()[0] for line in lines) == sorted(RECORDS)
    for line in lines:
        assert line.split()[4:7] == ["1.0", "1", "1.00"], line


# --- EVA's own metric code on hydralab's record directories ---------------------------------

#: A real run's record directory (tests/fixtures/run_HL-AIR-002: a barge-in in turn 2).
REAL_RUN = "HL-AIR-002"
#: Details that name paths (they differ between the two by construction).
_PATH_KEYS = frozenset({"file_path", "output_dir"})
#: EVA's details that hydralab leaves out (constant advice text).
_EVA_ONLY_DETAILS = frozenset({"debugging_hints"})


class _Eva:
    """EVA's processor, context and code-metric classes, imported from an EVA checkout."""

    def __init__(self) -> None:
        def load(module: str, name: str) -> Any:
            return getattr(importlib.import_module(module), name)

        base_metric = load("eva.metrics.base", "BaseMetric")
        self.processor = load("eva.metrics.processor", "MetricsContextProcessor")()
        self.context_cls = load("eva.metrics.base", "MetricContext")
        self.s2s = load("eva.models.config", "PipelineType").S2S
        self.result_cls = load("eva.models.results", "ConversationResult")
        self.get_dict_hash = load("eva.utils.hash_utils", "get_dict_hash")
        package = importlib.import_module("eva.metrics")
        for info in pkgutil.walk_packages(package.__path__, "eva.metrics."):
            try:  # the judge metrics need an LLM client; the code metrics do not
                importlib.import_module(info.name)
            except Exception:
                continue
        self.metrics: dict[str, type[Any]] = {}
        todo = list(base_metric.__subclasses__())
        while todo:
            cls = todo.pop()
            todo.extend(cls.__subclasses__())
            if not inspect.isabstract(cls):
                self.metrics.setdefault(str(cls.name), cls)

    def score(self, record_dir: Path) -> dict[str, dict[str, Any]]:
        """EVA's code metrics of one record directory, as JSON."""
        result = self.result_cls.model_validate(_json(record_dir / "result.json"))
        ctx = self.processor.process_record(result, record_dir, self.s2s)
        assert ctx is not None, "EVA's processor could not read the record directory"
        expected = _json(record_dir / "expected_scenario_db.json")
        initial = _json(record_dir / "initial_scenario_db.json")
        final = _json(record_dir / "final_scenario_db.json")
        auth_tools = _json(record_dir / "run.json")["record"]["auth_tools"]
        given: dict[str, Any] = {
            "record_id": result.record_id,
            "user_goal": "",
            "user_persona": "",
            "expected_scenario_db": expected,
            "initial_scenario_db": initial,
            "final_scenario_db": final,
            "initial_scenario_db_hash": self.get_dict_hash(initial),
            "final_scenario_db_hash": self.get_dict_hash(final),
            "agent_role": "",
            "agent_instructions": "",
            "agent_tools": [{"name": name, "tool_type": "auth"} for name in auth_tools],
            "agent_id": "",
            "current_date_time": "",
            "conversation_ended_reason": result.conversation_ended_reason,
            "duration_seconds": result.duration_seconds,
            "output_dir": str(record_dir),
            "pipeline_type": self.s2s,
        }
        params = inspect.signature(self.context_cls).parameters
        for name in params:
            if name not in given and hasattr(ctx, name):
                given[name] = getattr(ctx, name)
        context = self.context_cls(**{k: v for k, v in given.items() if k in params})
        out: dict[str, dict[str, Any]] = {}
        with contextlib.chdir(EVA_SRC.parent):  # EVA runs its metrics from its repository root
            for name in EVA_CODE_METRICS:
                if name in self.metrics:
                    score = asyncio.run(self.metrics[name]().compute(context))
                    out[name] = _plain(score.model_dump())
        return out


def _plain(value: Any) -> Any:
    """JSON round trip: int keys become strings, tuples lists, Counters dicts."""
    return json.loads(json.dumps(value, default=sorted))


@pytest.fixture(scope="module")
def eva_code() -> Iterator[_Eva]:
    if not (EVA_SRC / "eva").is_dir():
        pytest.skip(f"no EVA source at {EVA_SRC} (set HYDRALAB_EVA_SRC to an EVA checkout's src)")
    sys.path.insert(0, str(EVA_SRC))
    try:
        yield _Eva()
    except ImportError as exc:  # EVA's metric code, or one of its dependencies, is missing
        pytest.skip(f"EVA's metric code is not importable from {EVA_SRC}: {exc}")
    finally:
        sys.path.remove(str(EVA_SRC))


@pytest.fixture(scope="module")
def both_scores(
    eva_code: _Eva, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    root = tmp_path_factory.mktemp("eva-run")
    (root / "config.json").write_text(
        json.dumps({"domain": "airline", "language": "en", "model": {"s2s": "hydra"}})
    )
    dirs = {name: conversation_dir(root, name) for name in CONVERSATIONS}
    dirs[REAL_RUN] = root / "records" / REAL_RUN
    shutil.copytree(Path(__file__).parent / "fixtures" / "run_HL-AIR-002", dirs[REAL_RUN])
    return {
        name: (_plain(score_run(d, write=False)["metrics"]), eva_code.score(d))
        for name, d in dirs.items()
    }


def _details(metric: dict[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in (metric.get("details") or {}).items() if k in keep}


def _same_metric(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    for key in ("name", "score", "normalized_score", "skipped"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9), f"{where}: {key}"
    assert (ours["error"] is None) == (theirs.get("error") is None), f"{where}: error"
    mine = set(ours["details"]) - _PATH_KEYS
    extra = set(theirs.get("details") or {}) - _PATH_KEYS - _EVA_ONLY_DETAILS
    assert mine == extra, f"{where}: detail keys"
    assert _details(ours, frozenset(mine)) == _details(theirs, frozenset(mine)), where
    subs, eva_subs = ours["sub_metrics"] or {}, theirs.get("sub_metrics") or {}
    assert set(subs) == set(eva_subs), f"{where}: sub-metric names"
    for key, sub in subs.items():
        _same_metric(sub, eva_subs[key], f"{where}.{key}")


@pytest.mark.parametrize("metric", EVA_CODE_METRICS)
@pytest.mark.parametrize("conversation", [*CONVERSATIONS, REAL_RUN])
def test_evas_metric_code_agrees(
    both_scores: dict[str, tuple[dict[str, Any], dict[str, Any]]], conversation: str, metric: str
) -> None:
    ours, theirs = both_scores[conversation]
    if metric not in theirs:
        pytest.skip(f"this EVA version has no {metric} metric")
    _same_metric(ours[metric], theirs[metric], f"{conversation}: {metric}")
