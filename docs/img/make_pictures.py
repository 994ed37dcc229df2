"""Render the README's pictures from the recorded test fixtures (no call is made).

    .venv/bin/python docs/img/make_pictures.py

Run-level views come from ``tests/fixtures/run_HL-AIR-002`` (one call with a barge-in), the
distributions from ``tests/fixtures/batch_emulator`` (notebook 02's batch: 3 records × 2 trials
against the offline emulator). ``tests/test_analysis.py`` checks what each plot draws.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from hydralab import analysis

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "tests" / "fixtures" / "run_HL-AIR-002"
BATCH = ROOT / "tests" / "fixtures" / "batch_emulator"
OUT = Path(__file__).resolve().parent


def main() -> None:
    batch = analysis.load_batch(BATCH)
    pictures = {
        "timeline.png": lambda: analysis.plot_timeline(RUN),
        "spectrogram.png": lambda: analysis.plot_spectrogram(RUN),
        "latency_ecdf.png": lambda: analysis.plot_latency_ecdf(batch),
        "latency_ecdf_heard.png": lambda: analysis.plot_latency_ecdf(batch, metric="heard_ms"),
        "spectrogram_heard.png": lambda: analysis.plot_spectrogram(RUN, track="heard"),
        "latency_hist.png": lambda: analysis.plot_latency_hist(batch, bins=15),
        "latency_box.png": lambda: analysis.plot_latency_box(batch, by="record_id"),
        "tool_waterfall.png": lambda: analysis.plot_tool_waterfall(batch),
    }
    for name, draw in pictures.items():
        ax = draw()
        ax.figure.savefig(OUT / name, dpi=100)
        matplotlib.pyplot.close(ax.figure)
        print(OUT / name)
    report_screenshot()


def report_screenshot() -> None:
    """``report.png``: the top of ``hydralab report``'s page for the recorded call, as headless
    Chromium draws it (skipped without a browser)."""
    import shutil
    import subprocess
    import tempfile

    from hydralab.report import write_report

    browser = next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if browser is None:
        print("no browser: report.png not made")
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(RUN, run)
        page = write_report(run)
        subprocess.run(
            [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
             f"--screenshot={OUT / 'report.png'}", "--window-size=1100,1400",
             page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(OUT / "report.png")


if __name__ == "__main__":
    main()
