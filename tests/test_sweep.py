"""Sweep files (``hydralab batch --config``: models × callers as the variants of one batch) and
infrastructure errors (a call that never reached the model is an ``error``, not ``failed``).

The conversations are faked as in ``test_batch.py``: ``run_record`` copies the recorded fixture
run into place, or reports what the record id asks for.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from needs import PANDAS

from hydralab import batch as batch_mod
from hydralab.audio.perturb import LinePerturbation
from hydralab.batch import (
    MANIFEST,
    BatchSettingsError,
    SweepError,
    load_sweep,
    run_batch,
    run_batch_sweep,
)
from hydralab.cli import main
from hydralab.client import HydraAuthError

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run_HL-AIR-002"


class FakeRunner:
    """Stands in for ``run_record``. Record ``NOCONN`` never reaches the model (ended
    ``model_connect_failed``) while ``self.down``; ``AUTH`` raises a 401; ``DROP`` connects and
    loses the model (``model_disconnected``: the model's failure)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.down = True

    async def __call__(self, record: str, **kw: Any) -> Any:
        self.calls.append({"record": record, **kw})
        await asyncio.sleep(0)
        if record == "AUTH":
            raise HydraAuthError("HTTP 401 at the upgrade: the key was rejected")
        run_dir = Path(kw["out_dir"]) / kw["run_id"] / "records" / record
        shutil.copytree(FIXTURE_RUN, run_dir)
        ended, error = "goodbye", None
        if record == "NOCONN" and self.down:
            ended, error = "model_connect_failed", "HydraServerFullError: Hydra is at capacity"
        elif record == "DROP":
            ended, error = "model_disconnected", None
        done = ended == "goodbye"
        return SimpleNamespace(
            run_dir=run_dir, ended_reason=ended, error=error, turns=[], emulator=None,
            completed=done, not_completed=[] if done else [f"call ended: {ended}"],
        )  # fmt: skip


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    runner = FakeRunner()
    monkeypatch.setattr(batch_mod, "run_record", runner)
    monkeypatch.delenv("HYDRA_URL", raising=False)
    return runner


def _manifest(batch_dir: Path) -> dict[str, Any]:
    return dict(json.loads((batch_dir / MANIFEST).read_text(encoding="utf-8")))


SWEEP = """\
records: [A, B, C]
trials: 3
label: emulator vs hydra, noisy elderly caller
seed: 7
stt: none
profile: classic
models:
  - {label: emu, model: emulator}
  - {label: v11-zoe, model: hydra, hydra_model: hydra-v1.1, voice: zoe}
callers:
  - label: pink10
    caller: rules
    hearing: native
    persona: elderly_slow
    line: {noise: pink, snr_db: 10, packet_loss: 0.02, codec_bits: 8,
           volume_fluctuation_db: 3}
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------- a sweep: models × callers


async def test_a_sweep_runs_every_combination_with_its_settings(
    fake: FakeRunner, tmp_path: Path
) -> None:
    path = _write(tmp_path, SWEEP)
    res = await run_batch_sweep(
        path, out_dir=tmp_path / "runs", batch_id="s", progress=False, processes=False
    )
    assert len(res.conversations) == 18 and res.counts() == {"ok": 18}
    assert len(fake.calls) == 18
    names = {"emu+pink10", "v11-zoe+pink10"}
    assert {c.variant for c in res.conversations} == names
    line = LinePerturbation(
        noise="pink", snr_db=10, packet_loss=0.02, codec_bits=8, volume_fluctuation_db=3, seed=7
    )
    for call in fake.calls:
        assert call["line"] == line and isinstance(call["line"], LinePerturbation)
        assert (call["persona"], call["caller"], call["hearing"]) == (
            "elderly_slow",
            "rules",
            "native",
        )
        assert call["transcriber"] is None
        assert call["run_id"].startswith(("emu+pink10-trial_", "v11-zoe+pink10-trial_"))
        if call["run_id"].startswith("emu+"):
            assert call["model"] == "emulator" and "hydra_url" not in call
            assert "voice" not in call and "hydra_model" not in call
        else:
            assert (call["model"], call["hydra_model"], call["voice"]) == (
                "hydra", "hydra-v1.1", "zoe",
            )  # fmt: skip
            assert call["hydra_url"].startswith("wss://")
    seeds = sorted({c["emulator_config"].seed for c in fake.calls})
    assert seeds == [7, 8, 9]  # trial k: seed + k - 1
    m = _manifest(tmp_path / "runs" / "s")
    assert m["config"]["models"] == ["emulator", "hydra"]
    assert m["config"]["emulator"]["profile"] == "classic"
    assert set(m["config"]["variants"]) == names
    convs = m["conversations"]
    assert len(convs) == 18
    assert {c["label"] for c in convs} == {"emulator vs hydra, noisy elderly caller"}
    for c in convs:
        assert c["model"] == ("emulator" if c["variant"] == "emu+pink10" else "hydra")
        assert c["infrastructure"] is False
        assert c["run_dir"].startswith(c["variant"] + "-trial_")
    # the same file resumes (nothing to do); a changed file is refused
    fake.calls.clear()
    again = await run_batch_sweep(
        path, out_dir=tmp_path / "runs", batch_id="s", progress=False, processes=False
    )
    assert again.skipped == 18 and fake.calls == []
    _write(tmp_path, SWEEP.replace("voice: zoe", "voice: maya"))
    with pytest.raises(BatchSettingsError, match="variants"):
        await run_batch_sweep(path, out_dir=tmp_path / "runs", batch_id="s", progress=False)
    assert fake.calls == []


def test_load_sweep_reads_all_records_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        records: all
        eva_dir: eva
        batch_id: nightly
        concurrency: 2
        models: [{label: emu, model: emulator}]
        callers:
          - {label: plain}
          - {label: forgetful, persona: someone_from_eva}
        """,
    )
    sweep = load_sweep(path)
    assert sweep.records is None and sweep.trials == 1
    assert sweep.run_kwargs["eva_dir"] == str(tmp_path / "eva")
    assert sweep.run_kwargs["data_dir"] == str(tmp_path / "eva")  # records from the checkout
    assert sweep.run_kwargs["transcriber"] == "local"
    assert sweep.batch_kwargs["batch_id"] == "nightly" and sweep.batch_kwargs["concurrency"] == 2
    assert sweep.variants == {
        "emu+plain": {"model": "emulator"},
        "emu+forgetful": {"model": "emulator", "persona": "someone_from_eva"},
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("records: [A]\nmodels: [{label: m, model: emulator}]\n", "missing key 'callers'"),
        ("records: [A]\nmodels: []\ncallers: [{label: c}]\n", "models: the list is empty"),
        ("records: []\nmodels: [{label: m, model: emulator}]\ncallers: [{label: c}]\n",
         "records: the list is empty"),
        ("records: [A]\ntrails: 3\nmodels: [{label: m, model: emulator}]\ncallers: [{label: c}]\n",
         "trails: unknown key"),
        ("records: [A]\ntrials: 0\nmodels: [{label: m, model: emulator}]\ncallers: [{label: c}]\n",
         "trials: must be ≥ 1"),
        ("records: [A]\nmodels: [{label: m, model: gpt}]\ncallers: [{label: c}]\n",
         "models[0].model: 'gpt' is not one of emulator, hydra"),
        ("records: [A]\nmodels: [{label: m, model: hydra, vioce: zoe}]\ncallers: [{label: c}]\n",
         "models[0].vioce: unknown key"),
        ("records: [A]\nmodels: [{model: emulator}]\ncallers: [{label: c}]\n",
         "models[0]: missing key 'label'"),
        ("records: [A]\nmodels: [{label: m, model: emulator}, {label: m, model: hydra}]\n"
         "callers: [{label: c}]\n", "models[1].label: 'm' is used twice"),
        ("records: [A]\nmodels: [{label: a+b, model: emulator}]\ncallers: [{label: c}]\n",
         "models[0].label"),
        ("records: [A]\nmodels: [{label: m, model: emulator}]\n"
         "callers: [{label: c, line: {snr_db: ten}}]\n",
         "callers[0].line.snr_db: expected a number, got str 'ten'"),
        ("records: [A]\nmodels: [{label: m, model: emulator}]\n"
         "callers: [{label: c, line: {packet_loss: 1.5}}]\n",
         "callers[0].line: packet_loss must be in [0, 1)"),
        ("records: [A]\nmodels: [{label: m, model: emulator}]\n"
         "callers: [{label: c, line: {noise: brown}}]\n", "callers[0].line: noise must be one of"),
        ("records: [A]\nmodels: [{label: m, model: emulator}]\n"
         "callers: [{label: c, persona: grumpy}]\n", "callers[0].persona: 'grumpy' is not one of"),
        ("records: [A]\nmodels: [{label: m, model: emulator}]\n"
         "callers: [{label: c, caller: llm}]\n", "callers[0].caller: 'llm' is not one of"),
        ("records: [A]\nmodels: [{label: m, model: emulator}]\n"
         "callers: [{label: c, hearing: stt}]\n", "callers[0].hearing: applies to a rules caller"),
        ("records: [A]\nstt: none\nmodels: [{label: m, model: emulator}]\n"
         "callers: [{label: c, caller: rules}]\n", "needs stt"),
        ("records: [A]\nhydra_url: wss://x\nmodels: [{label: m, model: emulator}]\n"
         "callers: [{label: c}]\n", "hydra_url: applies to model 'hydra' only"),
        ("records: A\nmodels: [{label: m, model: emulator}]\ncallers: [{label: c}]\n",
         "records: expected 'all' or a list"),
        ("- just\n- a list\n", "the file: expected a mapping"),
        ("records: [A\n", "not valid YAML"),
    ],
)  # fmt: skip
def test_a_malformed_sweep_is_refused_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SweepError) as info:
        load_sweep(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_a_missing_sweep_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="cannot read the sweep file"):
        load_sweep(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- the CLI: batch --config


def test_cli_batch_config_runs_the_sweep(
    fake: FakeRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, SWEEP)
    argv = ["batch", "--config", str(path), "--out", str(tmp_path / "runs"), "--batch-id", "c"]
    assert main([*argv, "--one-process", "--no-progress", "--concurrency", "4"]) == 0
    assert len(fake.calls) == 18
    out = capsys.readouterr().out
    assert "batch c: 18 conversations (ok 18)" in out
    assert _manifest(tmp_path / "runs" / "c")["config"]["concurrency"] == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["A", "B"], "drop the RECORD arguments (A B)"),
        (["--model", "hydra"], "set --model in the sweep file"),
        (["--trials", "2", "--voice", "zoe"], "set --trials, --voice in the sweep file"),
    ],
)
def test_cli_batch_config_conflicts_are_clear(
    fake: FakeRunner,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    path = _write(tmp_path, SWEEP)
    assert main(["batch", "--config", str(path), "--out", str(tmp_path), *extra]) == 1
    assert message in capsys.readouterr().err
    assert fake.calls == []


def test_cli_batch_config_reports_a_malformed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, SWEEP.replace("snr_db: 10", "snr_db: loud"))
    assert main(["batch", "--config", str(path), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "callers[0].line.snr_db: expected a number, got str 'loud'" in err


# ---------------------------------------------------------------- infrastructure errors


async def test_a_call_that_never_reached_the_model_is_an_infrastructure_error(
    fake: FakeRunner, tmp_path: Path
) -> None:
    kw: dict[str, Any] = dict(out_dir=tmp_path, batch_id="i", processes=False, progress=False)
    res = await run_batch(["A", "NOCONN", "AUTH", "DROP"], **kw)
    by = {c.record_id: c for c in res.conversations}
    assert (by["A"].status, by["A"].infrastructure) == ("ok", False)
    # connected, then lost the model: the model's failure
    assert (by["DROP"].status, by["DROP"].infrastructure) == ("failed", False)
    assert by["DROP"].ended_reason == "model_disconnected"
    # never connected: an error, kept apart, with its reason and run directory (the log)
    no = by["NOCONN"]
    assert (no.status, no.infrastructure, no.ended_reason) == (
        "error",
        True,
        "model_connect_failed",
    )
    assert no.error is not None and "capacity" in no.error and no.run_dir
    auth = by["AUTH"]
    assert (auth.status, auth.infrastructure) == ("error", True)
    assert auth.error is not None and auth.error.startswith("HydraAuthError: HTTP 401")
    assert res.counts() == {"ok": 1, "failed": 1, "infrastructure": 2}
    assert [c.record_id for c in res.infrastructure()] == ["NOCONN", "AUTH"]
    summary = res.summary()
    assert "2 never reached the model (infrastructure" in summary
    assert (
        "NOCONN#1: error (infrastructure) — model_connect_failed: HydraServerFullError" in summary
    )
    assert "DROP#1: failed — call ended: model_disconnected" in summary
    m = _manifest(tmp_path / "i")
    assert m["counts"] == {"ok": 1, "failed": 1, "infrastructure": 2}
    rows = {c["record_id"]: c for c in m["conversations"]}
    assert rows["NOCONN"]["infrastructure"] is True and rows["NOCONN"]["status"] == "error"
    assert rows["DROP"]["infrastructure"] is False and rows["DROP"]["status"] == "failed"
    assert rows["A"]["model"] == "emulator"
    if PANDAS:  # the tables leave out what never reached the model
        from hydralab.analysis import load_batch

        sessions = load_batch(tmp_path / "i").sessions
        assert len(sessions) == 2  # A and DROP; NOCONN's run directory is not a conversation

    # a resume retries the infrastructure errors (not the model's failure), in the same place
    fake.calls.clear()
    fake.down = False
    again = await run_batch(["A", "NOCONN", "AUTH", "DROP"], **kw)
    assert sorted(c["record"] for c in fake.calls) == ["AUTH", "NOCONN"]
    by = {c.record_id: c for c in again.conversations}
    assert (by["NOCONN"].status, by["NOCONN"].infrastructure) == ("ok", False)
    assert by["NOCONN"].attempts == 2 and by["NOCONN"].error is None
    assert (by["AUTH"].status, by["AUTH"].infrastructure) == ("error", True)
    assert again.counts() == {"ok": 2, "failed": 1, "infrastructure": 1}


async def test_a_plain_exception_is_not_infrastructure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(record: str, **kw: Any) -> Any:
        raise RuntimeError("the process died")

    monkeypatch.setattr(batch_mod, "run_record", boom)
    res = await run_batch(["A"], out_dir=tmp_path, processes=False, progress=False)
    (c,) = res.conversations
    assert (c.status, c.infrastructure) == ("error", False)
    assert res.counts() == {"error": 1}


async def test_variants_may_set_their_own_model_but_not_the_batch_s_settings(
    fake: FakeRunner, tmp_path: Path
) -> None:
    kw: dict[str, Any] = dict(out_dir=tmp_path, processes=False, progress=False)
    variants = {"emu": {}, "h": {"model": "hydra", "voice": "maya"}}
    res = await run_batch(["A"], batch_id="v", variants=variants, **kw)
    assert {c.variant: c.model for c in res.conversations} == {"emu": "emulator", "h": "hydra"}
    calls = {c["run_id"]: c for c in fake.calls}
    assert calls["emu-trial_1"]["model"] == "emulator" and "hydra_url" not in calls["emu-trial_1"]
    assert calls["h-trial_1"]["model"] == "hydra" and calls["h-trial_1"]["voice"] == "maya"
    with pytest.raises(BatchSettingsError, match="variants"):
        await run_batch(
            ["A"], batch_id="v", variants={**variants, "h": {"model": "emulator"}}, **kw
        )
    with pytest.raises(ValueError, match="variant 'x' sets run_id"):
        await run_batch(["A"], variants={"x": {"run_id": "r"}}, **kw)
    with pytest.raises(ValueError, match="variant 'x': unknown model 'gpt'"):
        await run_batch(["A"], variants={"x": {"model": "gpt"}}, **kw)
    with pytest.raises(ValueError, match="hydra_url applies to model 'hydra' only"):
        await run_batch(["A"], variants={"x": {}}, hydra_url="wss://h.example", **kw)
