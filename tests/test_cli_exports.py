"""The researcher's CLI: ``score`` a batch (a summary row, ``--csv`` / ``--json`` exports),
``--version``, defaults in ``--help``, ``batch --label/--voice/--stt`` and a resume refused when
the experiment's settings changed.

The conversations are faked as in ``test_batch.py``: ``run_record`` copies the recorded fixture
run (HL-AIR-002: 3 user turns, 2 tool calls, 3 ``model_response`` latencies) into place.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import hydralab
from hydralab import batch as batch_mod
from hydralab.batch import MANIFEST, BatchSettingsError, run_batch
from hydralab.cli import SCORE_EPILOG, _HelpFormatter, _parser, main
from hydralab.latency import latency_stats
from hydralab.scoring import model_response_latencies_ms

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run_HL-AIR-002"


class FakeRunner:
    """Stands in for ``run_record``: copies the fixture run under the batch directory."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, record: str, **kw: Any) -> Any:
        self.calls.append({"record": record, **kw})
        await asyncio.sleep(0)
        run_dir = Path(kw["out_dir"]) / kw["run_id"] / "records" / record
        shutil.copytree(FIXTURE_RUN, run_dir)
        return SimpleNamespace(
            run_dir=run_dir, ended_reason="goodbye", error=None, turns=[], emulator=None,
            completed=True, not_completed=[],
        )  # fmt: skip


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    runner = FakeRunner()
    monkeypatch.setattr(batch_mod, "run_record", runner)
    return runner


def _manifest(batch_dir: Path) -> dict[str, Any]:
    return dict(json.loads((batch_dir / MANIFEST).read_text(encoding="utf-8")))


def _fixture_latencies() -> list[float]:
    rows = [json.loads(line) for line in (FIXTURE_RUN / "pipecat_metrics.jsonl").open()]
    return model_response_latencies_ms(rows)


def _batch_argv(out: Path, *extra: str) -> list[str]:
    return ["batch", "A", "B", "--out", str(out), "--one-process", "--no-progress", *extra]


# ---------------------------------------------------------------- score: a batch's summary row


def test_score_a_batch_prints_one_summary_row(
    fake: FakeRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _batch_argv(tmp_path, "--trials", "2", "--batch-id", "b1", "--label", "clean line")
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["score", str(tmp_path / "b1")]) == 0
    out = capsys.readouterr().out.splitlines()
    records = [line for line in out[1:] if line.startswith("HL-AIR-002")]
    assert len(records) == 4  # one per record directory, as before
    head = out.index(next(line for line in out if line.startswith("batch ")))
    assert out[head].split()[:6] == ["batch", "convs", "done", "task", "auth", "valid"]
    assert "p50 ms (n)" in out[head] and "p90 ms (n)" in out[head]
    row = out[head + 1]
    pooled = latency_stats(_fixture_latencies() * 4)  # all turns of the 4 conversations
    assert row.split()[:6] == ["b1", "4", "4", "1.00", "1.00", "1.00"]
    assert f"{pooled['p50_ms']:.0f} (n=12)" in row and f"{pooled['p90_ms']:.0f} (n=12)" in row
    assert row.endswith("[clean line]")


def test_score_a_folder_of_runs_and_a_single_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for run in ("r1", "r2"):
        shutil.copytree(FIXTURE_RUN, tmp_path / "runs" / run / "records" / "HL-AIR-002")
    assert main(["score", "--no-write", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out.splitlines()
    (row,) = [line for line in out if line.startswith("runs ")]
    assert row.split()[:6] == ["runs", "2", "2", "1.00", "1.00", "1.00"]
    assert "(n=6)" in row
    # one run's directory: its record lines only, as before
    assert main(["score", "--no-write", str(tmp_path / "runs" / "r1")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith("HL-AIR-002")


def test_score_exports_csv_and_json(
    fake: FakeRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pandas")
    from hydralab.analysis import load_batch

    assert main(_batch_argv(tmp_path, "--trials", "2", "--batch-id", "b2", "--label", "L")) == 0
    batch_dir = tmp_path / "b2"
    csv_dir, json_dir = tmp_path / "csv", tmp_path / "json"
    assert main(["score", str(batch_dir), "--csv", str(csv_dir), "--json", str(json_dir)]) == 0
    out = capsys.readouterr().out
    assert f"csv: turns.csv, tool_calls.csv, conversations.csv, summary.json in {csv_dir}" in out
    tables = load_batch(batch_dir)

    def read_csv(name: str) -> list[dict[str, str]]:
        with (csv_dir / name).open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    turns = read_csv("turns.csv")
    assert len(turns) == len(tables.turns) > 0
    assert list(turns[0])[:4] == ["batch", "conversation", "record_id", "trial"]
    assert {"speaker", "type", "model_response_ms", "start_s"} <= set(turns[0])
    assert {t["batch"] for t in turns} == {"b2"}
    assert json.loads(turns[0]["tools"]) == []  # lists and objects as JSON text
    calls = read_csv("tool_calls.csv")
    assert len(calls) == 4 * 2 and {"tool", "args", "status", "exec_ms"} <= set(calls[0])
    assert all(isinstance(json.loads(c["args"]), dict) for c in calls)
    convs = read_csv("conversations.csv")
    assert len(convs) == 4
    assert {"conversation", "trial", "task_completion", "completed"} <= set(convs[0])
    assert sorted(c["conversation"] for c in convs) == sorted(tables.sessions["conversation"])
    for name, n in (("turns", len(turns)), ("tool_calls", 8), ("conversations", 4)):
        rows = json.loads((json_dir / f"{name}.json").read_text(encoding="utf-8"))
        assert isinstance(rows, list) and len(rows) == n and rows[0]["batch"] == "b2"
    summary = json.loads((csv_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary == json.loads((json_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["hydralab_version"] == hydralab.__version__
    assert summary["files"] == {"turns": len(turns), "tool_calls": 8, "conversations": 4}
    (b,) = summary["batches"]
    assert (b["batch"], b["label"], b["conversations"], b["completed"]) == ("b2", "L", 4, 4)
    assert b["task_completion_mean"] == 1.0 and b["authentication_success_rate"] == 1.0
    assert b["tool_call_validity_mean"] == 1.0 and b["authentication_n"] == 4
    pooled = latency_stats(_fixture_latencies() * 4)
    assert b["model_response"]["n"] == 12
    assert b["model_response"]["p90_ms"] == pytest.approx(pooled["p90_ms"], abs=1e-3)
    assert len(summary["records"]) == 4
    assert {r["record_id"] for r in summary["records"]} == {"HL-AIR-002"}
    assert all(r["completed"] and r["model_response"]["n"] == 3 for r in summary["records"])
    assert "summary.json" in SCORE_EPILOG  # the format is documented in the command's help


def test_score_export_without_pandas_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(FIXTURE_RUN, tmp_path / "run" / "records" / "HL-AIR-002")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas → ImportError
    assert main(["score", str(tmp_path / "run"), "--csv", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "pandas" in err and "notebooks" in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- --version, defaults in --help


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"hydralab {hydralab.__version__}"


@pytest.mark.parametrize("command", ["run", "batch"])
def test_help_shows_defaults(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # undo the wrapping
    assert "(default: runs)" in text and "(default: emulator)" in text
    assert "(default: hydra-v1.1)" in text and "(default: local)" in text
    assert "(default: auto) (default" not in text  # a help that says it is not doubled
    if command == "batch":
        assert "(default: 3)" in text and "--label TEXT" in text and "--voice VOICE" in text


def test_every_subcommand_shows_every_default() -> None:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        fmt = _HelpFormatter(name)
        for action in p._actions:
            default = action.default
            if default is None or default is False or default == argparse.SUPPRESS:
                continue  # none to show: the help says what happens
            if not action.option_strings:
                continue
            shown = (fmt._get_help_string(action) or "").replace("%(default)s", str(default))
            assert "default" in shown, f"{name} {action.option_strings}: {shown!r}"
            assert shown.count("(default") <= 1, f"{name} {action.option_strings}: {shown!r}"


# ---------------------------------------------------------------- batch: label, voice, stt


def test_batch_label_voice_and_stt_are_passed_and_stored(fake: FakeRunner, tmp_path: Path) -> None:
    argv = _batch_argv(
        tmp_path, "--batch-id", "lab", "--label", "pink 10 dB", "--voice", "maya", "--stt", "none"
    )
    assert main(argv) == 0
    assert {c["voice"] for c in fake.calls} == {"maya"}
    assert {c["transcriber"] for c in fake.calls} == {None}
    m = _manifest(tmp_path / "lab")
    assert m["config"]["label"] == "pink 10 dB"
    assert [c["label"] for c in m["conversations"]] == ["pink 10 dB", "pink 10 dB"]
    assert m["config"]["run_kwargs"]["voice"] == "'maya'"
    fake.calls.clear()
    assert main(_batch_argv(tmp_path, "--batch-id", "lab2", "--stt", "deepgram")) == 0
    assert {c["transcriber"] for c in fake.calls} == {"deepgram"}
    assert {c["voice"] for c in fake.calls} == {None}


# ---------------------------------------------------------------- resume: same experiment only


def test_identical_resume_is_fine_and_more_trials_may_be_added(
    fake: FakeRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _batch_argv(tmp_path, "--batch-id", "r", "--label", "x", "--voice", "zoe")
    assert main([*argv, "--profile", "classic", "--noise", "pink", "--snr", "10"]) == 0
    fake.calls.clear()
    assert main([*argv, "--profile", "classic", "--noise", "pink", "--snr", "10"]) == 0
    assert fake.calls == []  # everything was done
    assert "2 already finished" in capsys.readouterr().out
    again = [*argv, "--profile", "classic", "--noise", "pink", "--snr", "10", "--trials", "2"]
    assert main([*again, "--concurrency", "1"]) == 0
    assert sorted(c["run_id"] for c in fake.calls) == ["trial_2", "trial_2"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--voice", "maya"], "voice 'zoe' → 'maya'"),
        (["--stt", "none"], "transcriber (default) → None"),
        (["--label", "other"], 'label "x" → "other"'),
        (["--hydra-model", "hydra-v1.0"], "hydra_model (default) → 'hydra-v1.0'"),
        (["--persona", "elderly_slow"], "persona"),
        (["--noise", "pink"], "line"),
        (["--seed", "5"], "seed 0 → 5"),
        (["--profile", "classic"], "emulator."),
        (["--drift", "0.3"], "emulator.drift"),
    ],
)
def test_resume_with_other_settings_is_refused(
    fake: FakeRunner,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: list[str],
    named: str,
) -> None:
    argv = _batch_argv(tmp_path, "--batch-id", "r", "--label", "x", "--voice", "zoe")
    assert main(argv) == 0
    before = (tmp_path / "r" / MANIFEST).read_text(encoding="utf-8")
    capsys.readouterr()
    fake.calls.clear()
    assert main([*argv, *change, "--trials", "2"]) == 1  # a later option wins
    err = capsys.readouterr().err
    assert "batch 'r' was started with other settings" in err
    assert named in err and "--batch-id" in err
    assert fake.calls == []  # nothing ran
    assert (tmp_path / "r" / MANIFEST).read_text(encoding="utf-8") == before  # kept as it was


async def test_run_batch_refuses_other_variants_and_keeps_old_manifests_resumable(
    fake: FakeRunner, tmp_path: Path
) -> None:
    kw: dict[str, Any] = dict(out_dir=tmp_path, processes=False, progress=False)
    variants = {"clean": {}, "snr10": {"line": "pink@10"}}
    await run_batch(["A"], batch_id="v", variants=variants, **kw)
    with pytest.raises(BatchSettingsError, match="variants"):
        await run_batch(["A"], batch_id="v", variants={"clean": {}}, **kw)
    with pytest.raises(BatchSettingsError, match="variants"):
        await run_batch(["A"], batch_id="v", variants={**variants, "slow": {}}, **kw)
    again = await run_batch(["A"], batch_id="v", variants=variants, **kw)
    assert again.skipped == 2
    # a manifest written before labels existed, arguments left at run_record's defaults: the
    # same experiment, resumed
    await run_batch(["A"], batch_id="old", **kw)
    m = _manifest(tmp_path / "old")
    del m["config"]["label"]
    for c in m["conversations"]:
        del c["label"]
    (tmp_path / "old" / MANIFEST).write_text(json.dumps(m), encoding="utf-8")
    fake.calls.clear()
    res = await run_batch(
        ["A"], batch_id="old", voice=None, transcriber="local", hydra_model="hydra-v1.1", **kw
    )
    assert res.skipped == 1 and fake.calls == []
    with pytest.raises(BatchSettingsError, match="seed null → 3"):
        await run_batch(["A"], batch_id="old", seed=3, **kw)
