"""The self-contained HTML report (hydralab.report.write_report) of a run and of a batch.

The recorded fixture run is copied to tmp_path first (the report is written beside it). When a
Chromium is installed the page is also rendered headless: a screenshot, and no console message
(a script error or a blocked external resource) from the page.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from hydralab.report import AUDIO_RATE_HZ, write_report

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run_HL-AIR-002"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
RUN_SECTIONS = (
    "summary", "conditions", "audio", "turns", "timeline", "transcript", "tools", "dbdiff",
)  # fmt: skip
BATCH_SECTIONS = ("sessions", "latency", "plots", "passk")
_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _run(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, d)
    return d


def _batch(tmp_path: Path) -> Path:
    root = tmp_path / "batch"
    for trial in (1, 2):
        shutil.copytree(FIXTURE_RUN, root / f"trial_{trial}" / "records" / "HL-AIR-002")
    return root


def _self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "<meta charset='utf-8'>" in page
    assert re.search(r"<title>[^<]+</title>", page)
    assert not _EXTERNAL.search(page), "the page references an external resource"
    assert "http://" not in page and "https://" not in page


def test_run_report_is_self_contained_with_every_section(tmp_path: Path) -> None:
    d = _run(tmp_path)
    out = write_report(d)
    assert out == d / "report.html" and out.is_file()
    page = out.read_text(encoding="utf-8")
    _self_contained(page)
    assert "<title>hydralab run report — HL-AIR-002</title>" in page
    for sid in RUN_SECTIONS:
        assert f"<section id='{sid}'>" in page
    assert "verdict: completed" in page and "goodbye" in page
    assert "model_response: p50 532 ms" in page and "(n=3)" in page
    assert "hydra-v1.1" in page and "standard" in page  # conditions
    assert "Hi, is my flight to Boston tonight still on time?" in page  # intended
    assert "get_flight_status" in page and "get_reservation" in page  # tool trace
    assert "no differences" in page  # expected vs final DB
    imgs = re.findall(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(imgs) == 2  # timeline, latency per turn
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    audio = re.findall(r"<audio [^>]*src='data:audio/wav;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(audio) == 1 + 7  # the mixed track, then one clip per turn
    with wave.open(io.BytesIO(base64.b64decode(audio[0]))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (AUDIO_RATE_HZ, 1, 2)
        assert 28 < w.getnframes() / AUDIO_RATE_HZ < 30  # the whole ~28.8 s call
    assert "Audio capped" not in page


def test_run_report_escapes_what_the_run_says(tmp_path: Path) -> None:
    d = _run(tmp_path)
    audit = json.loads((d / "audit_log.json").read_text(encoding="utf-8"))
    first = next(e for e in audit["transcript"] if e["message_type"] == "assistant")
    first["value"] = "<script>alert('x')</script> & <b>bold</b>"
    (d / "audit_log.json").write_text(json.dumps(audit), encoding="utf-8")
    page = write_report(d, out=tmp_path / "out" / "r.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<b>bold" not in page
    assert "&lt;script&gt;" in page and "&amp;" in page


def test_audio_over_the_cap_is_left_out_and_said(tmp_path: Path) -> None:
    page = write_report(_run(tmp_path), max_audio_mb=0.3).read_text(encoding="utf-8")
    players = page.count("<audio ")
    assert 0 < players < 8  # the mixed track (~1.2 MB of base64) is left out, short clips fit
    assert "Audio capped" in page and "left out: audio size cap reached" in page
    assert "under 0.3 MB" in page


def test_a_run_root_with_records_is_a_single_run(tmp_path: Path) -> None:
    root = tmp_path / "runroot"
    shutil.copytree(FIXTURE_RUN, root / "records" / "HL-AIR-002")
    page = write_report(root).read_text(encoding="utf-8")
    assert (root / "report.html").is_file()
    assert "hydralab run report — HL-AIR-002" in page and "<audio " in page


def test_batch_report(tmp_path: Path) -> None:
    root = _batch(tmp_path)
    out = write_report(root)
    assert out == root / "report.html"
    page = out.read_text(encoding="utf-8")
    _self_contained(page)
    assert "hydralab batch report — batch (2 conversations)" in page
    for sid in BATCH_SECTIONS:
        assert f"<section id='{sid}'>" in page
    assert "trial_1/records/HL-AIR-002" in page and "trial_2/records/HL-AIR-002" in page
    for col in ("p50_lo", "p50_hi", "p90_lo", "p90_hi"):  # CIs in the latency tables
        assert f"<th>{col}</th>" in page
    assert "<th>pass@1</th>" in page and "<th>pass^2</th>" in page
    assert len(re.findall(r"<img [^>]*src='data:image/png;base64,", page)) == 2  # ECDF, box
    assert "<audio" not in page
    # a second report sees the same runs (report.html is not a run)
    assert write_report(root, out=tmp_path / "again.html").read_text(encoding="utf-8") == page


def test_paths_without_runs_are_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no runs found \(no run.json"):
        write_report(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        write_report(tmp_path / "missing")
    assert not (tmp_path / "empty" / "report.html").exists()


# ---------------------------------------------------------------------------- in a browser
def _browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip(f"no headless browser installed (none of {', '.join(BROWSERS)} on PATH)")


def _headless(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args,
    ]  # fmt: skip
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{Path(browser).name} took over 60 s on {args[-1]}")


def _console_problems(stderr: str, page: Path) -> list[str]:
    """Console messages from the page: script errors, blocked (external) resources."""
    return [
        line
        for line in stderr.splitlines()
        if ("CONSOLE" in line and page.name in line) or "Uncaught" in line
    ]


@pytest.mark.parametrize("kind", ["run", "batch"])
def test_report_renders_in_a_headless_browser(tmp_path: Path, kind: str) -> None:
    browser = _browser()
    page = write_report(_run(tmp_path) if kind == "run" else _batch(tmp_path))
    url = page.resolve().as_uri()
    shot = tmp_path / "shot.png"
    r = _headless(browser, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert shot.is_file(), f"no screenshot (exit {r.returncode}): {r.stderr[-2000:]}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
    assert not _console_problems(r.stderr, page)
    dom = _headless(browser, tmp_path, "--dump-dom", url)
    assert not _console_problems(dom.stderr, page)
    for sid in RUN_SECTIONS if kind == "run" else BATCH_SECTIONS:
        assert f'<section id="{sid}">' in dom.stdout
    assert dom.stdout.count("<img ") == 2


def test_the_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hydralab.cli import main

    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert (run / "report.html").stat().st_size > 10_000
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert "no such directory" in capsys.readouterr().err
