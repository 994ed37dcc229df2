"""How close hydralab's latencies are to the truth, measured side by side in one run.

Runs real offline conversations (caller → bridge → emulator over 127.0.0.1) and compares, per
turn, ``model_response`` with the emulator's own send log (first audio delta sent − speech_stopped
sent) and ``v2v`` with what the caller itself measured (first audible sample heard − end of its
last audible sample). Prints n / p50 / p95 / max of the absolute errors.

    python benchmarks/latency_accuracy.py [--trials 1] [--records HL-AIR-001 HL-AIR-002 HL-AIR-003]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile

import numpy as np

from hydralab.runner import RunResult, run_record


def errors(res: RunResult) -> tuple[list[float], list[float]]:
    assert res.emulator is not None and res.caller is not None
    truths = {t["turn_index"]: t for s in res.emulator.sessions for t in s.turn_truths()}
    mr, v2v = [], []
    for turn in res.turns[1:]:
        tr = truths.get(turn["index"])
        if tr and turn["model_response_ms"] is not None and tr.get("first_delta_sent_ns"):
            truth = (tr["first_delta_sent_ns"] - tr["speech_stopped_sent_ns"]) / 1e6
            mr.append(abs(turn["model_response_ms"] - truth))
        user = res.caller.user_turns[turn["index"] - 1]
        heard = res.caller.assistant_turns[turn["index"]]
        if turn["v2v_ms"] is not None and heard.audio_start_epoch_ms and user.stop_epoch_ms:
            v2v.append(abs(turn["v2v_ms"] - (heard.audio_start_epoch_ms - user.stop_epoch_ms)))
    return mr, v2v


def row(name: str, xs: list[float]) -> str:
    a = np.asarray(xs)
    if not a.size:
        return f"{name:<16} {'0':>4}"
    return (
        f"{name:<16} {a.size:>4} {np.percentile(a, 50):>8.2f} {np.percentile(a, 95):>8.2f}"
        f" {a.max():>8.2f}"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", nargs="+", default=["HL-AIR-001", "HL-AIR-002", "HL-AIR-003"])
    ap.add_argument("--trials", type=int, default=1)
    args = ap.parse_args()
    mr: list[float] = []
    v2v: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        for trial in range(args.trials):
            for rid in args.records:
                res = await run_record(rid, out_dir=out, run_id=f"acc{trial}")
                a, b = errors(res)
                mr += a
                v2v += b
    print(f"{'|error| (ms)':<16} {'n':>4} {'p50':>8} {'p95':>8} {'max':>8}")
    print(row("model_response", mr))
    print(row("v2v", v2v))


if __name__ == "__main__":
    asyncio.run(main())
