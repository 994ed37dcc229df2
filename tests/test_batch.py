"""run_batch: every (record, trial), a concurrency limit, failures kept, resume, the manifest.

The conversations are faked (``run_record`` copies the recorded fixture run into place) so these
tests take a second; notebook 02 runs a real batch under nbval. One test spawns a real child
process to check the per-conversation process path end to end on a record that cannot load.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from needs import PANDAS

from hydralab import batch as batch_mod
from hydralab.batch import MANIFEST, run_batch, run_batch_sync
from hydralab.cli import main

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run_HL-AIR-002"


class FakeRunner:
    """Stands in for ``run_record``: copies the fixture run, or fails as the record id says."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self.crashed = False

    async def __call__(self, record: str, **kw: Any) -> Any:
        self.calls.append({"record": record, **kw})
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0.05)
            if record == "BOOM":
                raise RuntimeError("connect failed: wss://x?api_key=sk-secret-123")
            run_dir = Path(kw["out_dir"]) / kw["run_id"] / "records" / record
            if record == "CRASH" and not self.crashed:  # dies mid-call, leaving files behind
                self.crashed = True
                run_dir.mkdir(parents=True)
                (run_dir / "leftover.txt").write_text("from the crashed attempt")
                raise RuntimeError("the process died")
            # as run_record: a run directory that already holds a run is refused
            shutil.copytree(FIXTURE_RUN, run_dir)
            ended = "timeout" if record == "SLOW" else "goodbye"
            return SimpleNamespace(
                run_dir=run_dir,
                ended_reason=ended,
                error=None,
                turns=[],
                emulator=None,
                completed=ended == "goodbye",
                not_completed=[] if ended == "goodbye" else [f"call ended: {ended}"],
            )
        finally:
            self.active -= 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    runner = FakeRunner()
    monkeypatch.setattr(batch_mod, "run_record", runner)
    return runner


def _manifest(batch_dir: Path) -> dict[str, Any]:
    return json.loads((batch_dir / MANIFEST).read_text(encoding="utf-8"))


async def test_every_record_and_trial_within_the_concurrency_limit(
    fake: FakeRunner, tmp_path: Path
) -> None:
    res = await run_batch(
        ["A", "B", "C"], trials=2, concurrency=2, out_dir=tmp_path, batch_id="b1",
        seed=10, processes=False, progress=False,
    )  # fmt: skip
    assert res.ok and res.counts() == {"ok": 6}
    assert sorted((c["record"], c["run_id"]) for c in fake.calls) == [
        (r, f"trial_{k}") for r in "ABC" for k in (1, 2)
    ]
    assert fake.max_active == 2
    seeds = {(c["record"], c["run_id"]): c["emulator_config"].seed for c in fake.calls}
    assert seeds[("A", "trial_1")] == 10 and seeds[("A", "trial_2")] == 11
    assert {c["caller_config"].seed for c in fake.calls} == {10, 11}
    m = _manifest(res.batch_dir)
    assert m["batch_id"] == "b1" and m["counts"] == {"ok": 6}
    assert m["config"]["trials"] == 2 and m["config"]["records"] == ["A", "B", "C"]
    for c in m["conversations"]:
        assert c["status"] == "ok" and c["attempts"] == 1
        assert (res.batch_dir / c["run_dir"] / "run.json").is_file()
        assert c["run_dir"] == f"trial_{c['trial']}/records/{c['record_id']}"
    assert len(res.run_dirs()) == 6


async def test_a_batch_of_several_domains_has_one_run_per_domain_and_trial(
    fake: FakeRunner, tmp_path: Path
) -> None:
    # EVA's run is one domain (its config.json names it): records of two domains do not share
    # a run directory, and an id no data dir lists is left to run_record to report
    data = tmp_path / "data"
    for domain, ids in (("airline", ["A1", "A2"]), ("itsm", ["I1"])):
        (data / domain).mkdir(parents=True)
        rows = [{"id": i} for i in ids]
        (data / domain / f"{domain}_dataset.json").write_text(json.dumps(rows))
    res = await run_batch(
        ["A1", "I1", "A2"], trials=2, out_dir=tmp_path / "out", batch_id="mixed",
        data_dir=data, processes=False, progress=False,
    )  # fmt: skip
    assert res.ok
    assert sorted((c["record"], c["run_id"]) for c in fake.calls) == sorted(
        [(r, f"airline-trial_{k}") for r in ("A1", "A2") for k in (1, 2)]
        + [("I1", f"itsm-trial_{k}") for k in (1, 2)]
    )
    for c in _manifest(res.batch_dir)["conversations"]:
        assert c["run_dir"].split("/")[0].endswith(f"trial_{c['trial']}")


async def test_variants_run_each_record_under_each_named_setting(
    fake: FakeRunner, tmp_path: Path
) -> None:
    res = await run_batch(
        ["A", "B"], out_dir=tmp_path, batch_id="v", processes=False, progress=False,
        variants={"clean": {}, "snr10": {"line": "pink@10"}},
    )  # fmt: skip
    assert res.ok and res.counts() == {"ok": 4}
    got = sorted((c["record"], c["run_id"], c.get("line")) for c in fake.calls)
    assert got == [
        ("A", "clean-trial_1", None),
        ("A", "snr10-trial_1", "pink@10"),
        ("B", "clean-trial_1", None),
        ("B", "snr10-trial_1", "pink@10"),
    ]
    m = _manifest(res.batch_dir)
    assert {c["variant"] for c in m["conversations"]} == {"clean", "snr10"}
    assert m["config"]["variants"]["snr10"] == {"line": "'pink@10'"}
    again = await run_batch(
        ["A", "B"], out_dir=tmp_path, batch_id="v", processes=False, progress=False,
        variants={"clean": {}, "snr10": {"line": "pink@10"}},
    )  # fmt: skip
    assert again.skipped == 4  # resumed: every (record, trial, variant) was done
    if PANDAS:
        from hydralab.analysis import load_batch

        sessions = load_batch(res.batch_dir).sessions
        assert sorted(sessions["variant"]) == ["clean", "clean", "snr10", "snr10"]


async def test_a_failure_is_recorded_and_the_batch_goes_on(
    fake: FakeRunner, tmp_path: Path
) -> None:
    res = await run_batch(
        ["A", "BOOM", "SLOW"], out_dir=tmp_path, batch_id="b2", processes=False, progress=False
    )
    by = {c.record_id: c for c in res.conversations}
    assert (by["A"].status, by["BOOM"].status, by["SLOW"].status) == ("ok", "error", "failed")
    assert by["BOOM"].error is not None and "RuntimeError: connect failed" in by["BOOM"].error
    assert "sk-secret-123" not in by["BOOM"].error
    assert by["SLOW"].ended_reason == "timeout" and by["SLOW"].run_dir
    assert by["SLOW"].not_completed == ["call ended: timeout"] and by["A"].not_completed is None
    assert not res.ok
    assert "BOOM#1: error" in res.summary()
    assert "SLOW#1: failed — call ended: timeout" in res.summary()
    assert "sk-secret" not in (res.batch_dir / MANIFEST).read_text(encoding="utf-8")


async def test_resume_skips_finished_conversations(fake: FakeRunner, tmp_path: Path) -> None:
    kw: dict[str, Any] = dict(out_dir=tmp_path, batch_id="b3", processes=False, progress=False)
    await run_batch(["A", "BOOM", "SLOW"], trials=2, **kw)
    assert len(fake.calls) == 6
    fake.calls.clear()
    again = await run_batch(["A", "BOOM", "SLOW"], trials=2, **kw)
    assert sorted(c["record"] for c in fake.calls) == ["BOOM", "BOOM"]  # only what raised
    assert again.skipped == 4
    fake.calls.clear()
    stale = again.batch_dir / next(c.run_dir for c in again.conversations if c.record_id == "SLOW")
    (stale / "leftover.txt").write_text("from the failed attempt")
    third = await run_batch(["A", "BOOM", "SLOW"], trials=2, retry_failed=True, **kw)
    assert sorted(c["record"] for c in fake.calls) == ["BOOM", "BOOM", "SLOW", "SLOW"]
    assert not (stale / "leftover.txt").exists()  # the re-run started from a clean directory
    attempts = {c.key: c.attempts for c in third.conversations}
    assert attempts == {"A#1": 1, "A#2": 1, "BOOM#1": 3, "BOOM#2": 3, "SLOW#1": 2, "SLOW#2": 2}
    # more trials later: only the new ones run
    fake.calls.clear()
    await run_batch(["A"], trials=3, **kw)
    assert [(c["record"], c["run_id"]) for c in fake.calls] == [("A", "trial_3")]


async def test_resume_after_a_crash_reuses_its_run_id(fake: FakeRunner, tmp_path: Path) -> None:
    """A conversation that died mid-call left its record directory but no ``run_dir`` in the
    manifest; resuming clears it, so the run id (refused while it holds a run) is free again."""
    kw: dict[str, Any] = dict(out_dir=tmp_path, batch_id="b7", processes=False, progress=False)
    first = await run_batch(["CRASH"], **kw)
    (c,) = first.conversations
    assert c.status == "error" and c.run_dir is None
    left = first.batch_dir / "trial_1" / "records" / "CRASH"
    assert (left / "leftover.txt").is_file()
    again = await run_batch(["CRASH"], **kw)
    (c,) = again.conversations
    assert c.status == "ok" and c.attempts == 2
    assert not (left / "leftover.txt").exists() and (left / "run.json").is_file()


async def test_tables_of_a_batch(fake: FakeRunner, tmp_path: Path) -> None:
    from hydralab.analysis import load_batch

    pytest.importorskip("pandas")
    res = await run_batch(
        ["A", "B"], trials=2, out_dir=tmp_path, batch_id="b4", processes=False, progress=False
    )
    t = load_batch(res.batch_dir)
    assert len(t.sessions) == 4
    assert sorted(t.sessions["trial"]) == [1, 1, 2, 2]
    assert set(t.sessions["conversation"]) == {c.run_dir for c in res.conversations}


def test_progress_bar_and_sync_wrapper(
    fake: FakeRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = run_batch_sync(["A", "B"], out_dir=tmp_path, batch_id="b5", processes=False)
    assert res.ok
    err = capsys.readouterr().err
    assert "conversations" in err and "2/2" in err


async def test_sync_wrapper_inside_a_running_loop(fake: FakeRunner, tmp_path: Path) -> None:
    # as in Jupyter: a loop is running, so the batch runs on a private loop in a worker thread
    res = run_batch_sync(["A"], out_dir=tmp_path, processes=False, progress=False)
    assert res.ok and res.batch_dir.name.startswith("batch-")


async def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trials"):
        await run_batch(["A"], trials=0, out_dir=tmp_path)
    with pytest.raises(ValueError, match="concurrency"):
        await run_batch(["A"], concurrency=0, out_dir=tmp_path)


async def test_a_child_process_reports_its_failure(tmp_path: Path) -> None:
    res = await run_batch(["HL-NO-SUCH-RECORD"], out_dir=tmp_path, batch_id="b6", progress=False)
    (c,) = res.conversations
    assert c.status == "error" and c.error is not None
    assert "HL-NO-SUCH-RECORD" in c.error and c.wall_s is not None


def test_cli_batch(fake: FakeRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["batch", "A", "B", "--trials", "2", "--out", str(tmp_path), "--batch-id", "cli"]
    assert main([*argv, "--one-process", "--no-progress", "--concurrency", "4"]) == 0
    out = capsys.readouterr().out
    assert "batch cli: 4 conversations (ok 4)" in out
    if PANDAS:  # the latency table of the fixture's turns (printed when pandas is there)
        assert "p50_ms" in out and "barged_in" in out
        assert "model_response (ms)" in out and "heard (ms)" in out  # both headlines
    assert fake.max_active == 4
    assert main(["batch", "BOOM", "--out", str(tmp_path), "--one-process", "--no-progress"]) == 1


@pytest.mark.e2e
def test_ctrl_c_stops_a_batch_cleanly(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during a batch: exit
    130, no traceback from the conversation's child process, the child ended, and the
    conversation marked for a retry in the manifest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from needs import require_speech

    require_speech()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hydralab", "batch", "HL-AIR-001", "--out", str(tmp_path),
         "--batch-id", "ctrlc", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # a job started in the background inherits SIGINT ignored; a terminal's batch has it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    manifest = tmp_path / "ctrlc" / MANIFEST
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the call is under way (its run directory)
        if manifest.is_file() and list((tmp_path / "ctrlc").glob("trial_1/records/*")):
            break
        time.sleep(0.2)
    time.sleep(3.0)  # the child is in its call
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    convs = _manifest(tmp_path / "ctrlc")["conversations"]
    assert [(c["status"], c["error"]) for c in convs] == [("error", "cancelled")]
    gone = time.monotonic() + 15  # nothing of the batch is left running (the ended child's
    while time.monotonic() < gone:  # STT process and multiprocessing's tracker follow it)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
