"""Streaming resamplers side by side: hydralab's StreamResampler vs soxr.

Run: ``.venv/bin/python benchmarks/resample_bench.py [--seconds 60] [--chunk-ms 20]``

For each rate pair the same signal (tones + white noise, int16) is fed in fixed-size chunks to:

* ``ours``: :class:`hydralab.audio.StreamResampler` (fixed-latency polyphase FIR);
* ``soxr stream``: ``soxr.ResampleStream(..., quality="HQ")``, the stateful soxr stream;
* ``per-chunk``: stateless ``soxr.resample(chunk, quality="VHQ")`` trimmed/padded to the
  exact chunk length (what EVA's helpers do);

and compared against one-shot ``soxr.resample(whole, quality="VHQ")``. Backlog is the output owed
(``floor(total_in * out / in)``) but not yet emitted after a chunk; an empty chunk is a call that
returned no samples. Our output is delayed by its group delay, so it is shifted back by
``delay_samples`` before comparing. "pass-band SNR" restricts the comparison to frequencies
below 85 % of the lower Nyquist (the band both filters are designed to pass).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, before numpy loads its BLAS

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import soxr  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydralab.audio import StreamResampler  # noqa: E402

PAIRS = [(8000, 16000), (8000, 48000), (48000, 8000), (24000, 8000)]

Int16 = npt.NDArray[np.int16]


def make_signal(rate_hz: int, seconds: float, seed: int = 0) -> Int16:
    n = round(rate_hz * seconds)
    t = np.arange(n) / rate_hz
    rng = np.random.default_rng(seed)
    x = 5000 * np.sin(2 * np.pi * 440 * t)
    x += 3000 * np.sin(2 * np.pi * 1900 * t + 1.0)
    x += 2000 * np.sin(2 * np.pi * 3100 * t + 2.0)
    x += rng.normal(0, 1500, n)
    out: Int16 = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return out


def snr_db(y: npt.NDArray[np.float64], ref: npt.NDArray[np.float64]) -> float:
    err = float(np.sum((y - ref) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref**2)) / err)


def passband_snr_db(
    y: npt.NDArray[np.float64], ref: npt.NDArray[np.float64], rate_hz: int, edge_hz: float
) -> float:
    spec_err = np.fft.rfft(y - ref)
    spec_ref = np.fft.rfft(ref)
    keep = np.fft.rfftfreq(ref.shape[0], 1 / rate_hz) <= edge_hz
    err = float(np.sum(np.abs(spec_err[keep]) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(np.sum(np.abs(spec_ref[keep]) ** 2) / err)


@dataclass
class StreamRun:
    output: npt.NDArray[np.float64]
    x_rt: float
    max_backlog_ms: float
    empty_chunks: int


def run_chunks(
    process: Callable[[Int16], npt.NDArray[np.generic]],
    flush: Callable[[], npt.NDArray[np.generic]] | None,
    x: Int16,
    chunk: int,
    in_hz: int,
    out_hz: int,
) -> StreamRun:
    chunks = [x[i : i + chunk] for i in range(0, x.shape[0], chunk)]
    outs: list[npt.NDArray[np.generic]] = []
    backlogs: list[int] = []
    total_in = total_out = 0
    t0 = time.perf_counter()
    for c in chunks:
        y = process(c)
        outs.append(y)
        total_in += c.shape[0]
        total_out += y.shape[0]
        backlogs.append(total_in * out_hz // in_hz - total_out)
    elapsed = time.perf_counter() - t0
    if flush is not None:
        outs.append(flush())
    return StreamRun(
        output=np.concatenate(outs).astype(np.float64),
        x_rt=x.shape[0] / in_hz / elapsed,
        max_backlog_ms=1000 * max(backlogs) / out_hz,
        empty_chunks=sum(1 for o in outs[: len(chunks)] if o.shape[0] == 0),
    )


def bench_pair(in_hz: int, out_hz: int, seconds: float, chunk_ms: float) -> dict[str, str]:
    x = make_signal(in_hz, seconds)
    chunk = round(in_hz * chunk_ms / 1000)
    n_out = x.shape[0] * out_hz // in_hz
    ref = np.asarray(soxr.resample(x.astype(np.float32), in_hz, out_hz, quality="VHQ"))
    ref = ref[:n_out].astype(np.float64)
    edge_hz = 0.85 * min(in_hz, out_hz) / 2

    ours = StreamResampler(in_hz, out_rate_hz=out_hz)
    mine = run_chunks(ours.process, None, x, chunk, in_hz, out_hz)
    d = ours.delay_samples
    aligned, target = mine.output[d:n_out], ref[: n_out - d]

    stream = soxr.ResampleStream(in_hz, out_hz, 1, dtype="float32", quality="HQ")

    def soxr_chunk(c: Int16) -> npt.NDArray[np.generic]:
        return np.asarray(stream.resample_chunk(c.astype(np.float32)))

    def soxr_flush() -> npt.NDArray[np.generic]:
        return np.asarray(stream.resample_chunk(np.zeros(0, np.float32), last=True))

    sox = run_chunks(soxr_chunk, soxr_flush, x, chunk, in_hz, out_hz)
    ref_hq = np.asarray(soxr.resample(x.astype(np.float32), in_hz, out_hz, quality="HQ"))
    m = min(sox.output.shape[0], ref_hq.shape[0])

    def stateless(c: Int16) -> npt.NDArray[np.generic]:
        y = np.asarray(soxr.resample(c.astype(np.float32), in_hz, out_hz, quality="VHQ"))
        want = round(c.shape[0] * out_hz / in_hz)
        return np.pad(y, (0, max(0, want - y.shape[0])))[:want]

    per = run_chunks(stateless, None, x, chunk, in_hz, out_hz)

    return {
        "pair": f"{in_hz // 1000}k→{out_hz // 1000}k",
        "ours ×RT": f"{mine.x_rt:,.0f}",
        "ours delay ms": f"{ours.delay_ms:.2f}",
        "ours backlog ms / empty": f"{mine.max_backlog_ms:.0f} / {mine.empty_chunks}",
        "ours SNR vs VHQ dB": f"{snr_db(aligned, target):.1f}",
        "ours pass-band SNR dB": f"{passband_snr_db(aligned, target, out_hz, edge_hz):.1f}",
        "soxr HQ stream ×RT": f"{sox.x_rt:,.0f}",
        "soxr backlog ms": f"{sox.max_backlog_ms:.0f}",
        "soxr empty chunks": f"{sox.empty_chunks}/{-(-x.shape[0] // chunk)}",
        "soxr stream vs one-shot HQ max diff": f"{np.max(np.abs(sox.output[:m] - ref_hq[:m])):.2g}",
        "per-chunk soxr ×RT": f"{per.x_rt:,.0f}",
        "per-chunk SNR vs VHQ dB": f"{snr_db(per.output[:n_out], ref):.1f}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="signal length (60)")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="chunk length (20)")
    args = parser.parse_args(argv)
    rows = [bench_pair(a, b, args.seconds, args.chunk_ms) for a, b in PAIRS]
    print(
        f"{args.seconds:g} s of tones + white noise, {args.chunk_ms:g} ms chunks, one core, "
        f"numpy {np.__version__}, soxr {soxr.__version__}\n"
    )
    headers = list(rows[0])
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headers]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        cells = [r[h].rjust(w) for h, w in zip(headers, widths, strict=True)]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
