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

from hydralab import analysis  # noqa: E402

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
        "latency_hist.png": lambda: analysis.plot_latency_hist(batch, bins=15),
        "latency_box.png": lambda: analysis.plot_latency_box(batch, by="record_id"),
        "tool_waterfall.png": lambda: analysis.plot_tool_waterfall(batch),
    }
    for name, draw in pictures.items():
        ax = draw()
        ax.figure.savefig(OUT / name, dpi=100)
        matplotlib.pyplot.close(ax.figure)
        print(OUT / name)


if __name__ == "__main__":
    main()
