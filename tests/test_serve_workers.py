"""``hydralab serve --workers N``: several bridge processes share one port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import threading
from pathlib import Path

import pytest
from fake_callers import EvaLikeCaller
from needs import needs_speech
from test_serve import SCRIPT, _lines

from hydralab.serve import ServeWorkers

pytestmark = [pytest.mark.e2e, needs_speech]

CALLERS = 12


async def test_two_workers_share_the_port_and_both_take_calls(tmp_path: Path) -> None:
    """12 callers at once over one URL: the kernel spreads them over both workers (all on one
    has odds 2⁻¹¹); SIGTERM ends every call as ``server_shutdown`` with every output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from hydralab.cli import main; raise SystemExit(main())",
        "serve",
        "--workers",
        "2",
        "--max-calls",
        str(
            2 * CALLERS
        ),  # ceil(24 / 2) = 12 per worker: however the kernel spreads, none is refused
        "--port",
        "0",
        "--out",
        str(tmp_path),
        "--run-id",
        "mw",
        "--stt",
        "none",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 180)).decode()
    url = re.search(r"ws://\S+/ws", line)
    assert url is not None and "2 workers" in line, line
    lines = await _lines(SCRIPT)
    callers = [EvaLikeCaller(url.group(0), lines, turn_timeout_s=60) for _ in range(CALLERS)]
    tasks = [asyncio.create_task(c.run()) for c in callers]
    async with asyncio.timeout(120):
        while min(c.heard.frames for c in callers) < 25:  # every greeting is playing
            await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert proc.returncode == 0, err.decode()
    assert f"{CALLERS} call(s) served" in out.decode()
    runs = sorted(tmp_path.iterdir())
    assert len(runs) == CALLERS
    per_worker = {w: sum(1 for r in runs if r.name.startswith(f"mw-{w}-")) for w in ("w1", "w2")}
    assert sum(per_worker.values()) == CALLERS and min(per_worker.values()) >= 1, per_worker
    for run in runs:
        run_dir = next((run / "records").iterdir())
        result = json.loads((run_dir / "result.json").read_text())
        assert result["completed"] is False
        assert result["conversation_ended_reason"] == "server_shutdown"
        assert (run_dir / "audio_mixed.wav").is_file() and (run_dir / "scores.json").is_file()


def test_settings_a_worker_cannot_take_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        ServeWorkers(workers=0)
    with pytest.raises(ValueError, match="transcriber cannot be sent to a worker process"):
        ServeWorkers(workers=2, out_dir=tmp_path, transcriber=threading.Lock())


def test_a_worker_that_cannot_start_says_why(tmp_path: Path) -> None:
    """A worker whose server fails to start (an unknown record) fails the start, with the
    worker's own error, and leaves no process behind."""
    served = ServeWorkers("NO-SUCH-RECORD", workers=2, out_dir=tmp_path, transcriber=None)
    with pytest.raises(RuntimeError, match=r"serve worker \d failed: .*NO-SUCH-RECORD"):
        served.start()
    assert not served._procs and served.pids == []
