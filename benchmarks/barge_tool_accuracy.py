"""Calls with barge-ins and tool turns against the emulator's ``live`` profile, measured.

For each call (caller → bridge → emulator over 127.0.0.1, real time) it counts what reached the
caller after a Twilio ``clear`` (the caller's own count of audible frames while it was still
speaking over the cut), the recording's integrity (pacer lateness, underruns, exact-zero holes
inside played spans of ``audio_assistant.wav``), the latency errors against ground truth
(``model_response`` vs the emulator's send log, ``v2v`` vs the caller's own stamps) and the
bridge's own share of each tool turn. Prints one table.

    python benchmarks/barge_tool_accuracy.py [--trials 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from typing import Any

import numpy as np
from latency_accuracy import errors

from hydralab.audio import read_wav
from hydralab.caller import CallerConfig
from hydralab.emulator import EmulatorConfig
from hydralab.runner import RunResult, run_record
from hydralab.script import (
    CallTools,
    Script,
    Speak,
    ToolCall,
    script_from_lines,
)

GREETING = "Hello! Thanks for calling SkyWay. How can I help you today?"
RES = {"confirmation_number": "HT4KWB", "last_name": "brooks"}
NARRATION = (
    "I found your booking. Your flight leaves Denver in the morning and arrives in Seattle "
    "before noon. You have one checked bag, a window seat, and a meal request on file."
)


def tool_barge_script() -> Script:
    users = [
        "My confirmation number is HT4KWB, last name Brooks.",
        "Sorry, stop. I only need the gate.",
        "Thanks, bye.",
    ]
    answers: list[tuple[Any, ...]] = [
        (Speak("One moment."), CallTools((ToolCall("get_reservation", RES),)), Speak(NARRATION)),
        (Speak("Your gate is B four."),),
        (Speak("Goodbye."),),
    ]
    return script_from_lines(GREETING, users, answers, record_id="HL-AIR-001")


def zero_holes(res: RunResult) -> int:
    """Runs of >= 5 ms of exact digital zeros inside the played span of each single-response
    turn that played out whole (the emulator's speech never holds exact zeros; a tool turn's
    span also holds the real pause between its responses, so those are left out)."""
    meta = json.loads((res.run_dir / "run.json").read_text())
    t0 = meta["timeline"]["t0_epoch_ms"]
    pcm, _ = read_wav(res.run_dir / "audio_assistant.wav")
    holes = 0
    for turn in res.turns:
        start = turn["first_played_epoch_ms"]
        if start is None or turn["interrupted"] or len(turn["response_ids"]) != 1:
            continue
        # from 10 ms in to the start of the last frame (whose tail is padding)
        a = int((start - t0) * 48) + 480
        b = int((start - t0) * 48) + int(turn["played_ms"] * 48) - 960
        seg = pcm[a:b]
        if seg.size == 0:
            continue
        z = np.concatenate([[0], (seg == 0).astype(np.int8), [0]])
        d = np.diff(z)
        runs = np.flatnonzero(d == -1) - np.flatnonzero(d == 1)
        holes += int((runs >= 240).sum())
    return holes


async def one(
    out: str, name: str, trial: int, record: str | None = None, **kw: Any
) -> dict[str, Any]:
    res = await run_record(record, out_dir=out, run_id=f"{name}{trial}", transcriber=None, **kw)
    meta = json.loads((res.run_dir / "run.json").read_text())
    mr, v2v = errors(res)
    tool = [t for t in res.turns if t["kind"] == "tool" and t["bridge_ms"] is not None]
    assert res.caller is not None
    return {
        "name": name,
        "ended": res.ended_reason,
        "clears": sum(1 for c in res.caller.control_frames if c["event"] == "clear"),
        "after_clear": res.caller.audible_frames_after_clear,
        "pacer": meta["bridge"]["pacer"],
        "holes": zero_holes(res),
        "mr": mr,
        "v2v": v2v,
        "bridge_ms": [t["bridge_ms"] for t in tool],
        "wait_ms": [t["tool_wait_ms"] for t in tool if t["tool_wait_ms"] is not None],
    }


def stats(xs: list[float]) -> str:
    if not xs:
        return "n=0"
    a = np.asarray(xs, dtype=float)
    p50, p95 = np.percentile(a, 50), np.percentile(a, 95)
    return f"n={a.size} p50={p50:.1f} p95={p95:.1f} max={a.max():.1f}"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=2)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as out:
        for trial in range(args.trials):
            seed = trial
            for name, latency, barge in (
                ("barge_in_narration", 600.0, 2000),
                ("barge_before_narration", 2500.0, 1500),
            ):
                cfg = EmulatorConfig.live(
                    seed=seed, latency_median_ms=latency, latency_sigma=0.0, latency_max_ms=2500.0
                )
                rows.append(
                    await one(
                        out,
                        name,
                        trial,
                        script=tool_barge_script(),
                        emulator_config=cfg,
                        caller_config=CallerConfig(barge_in_after_ms={1: barge}, seed=seed),
                    )
                )
            for rid in ("HL-AIR-001", "HL-AIR-002"):
                cfg = EmulatorConfig.live(seed=seed)
                rows.append(await one(out, rid, trial, rid, emulator_config=cfg))
    print(
        f"{'call':<24}{'ended':<10}{'clears':>7}{'heard after clear':>19}{'late>10ms':>10}"
        f"{'lat p99':>9}{'lat max':>9}{'underruns':>10}{'holes':>7}"
    )
    for r in rows:
        p = r["pacer"]
        print(
            f"{r['name']:<24}{r['ended']:<10}{r['clears']:>7}{r['after_clear']:>19}"
            f"{p['late_frames']:>10}{p['lateness_p99_ms']:>9.1f}{p['lateness_max_ms']:>9.1f}"
            f"{p['underruns']:>10}{r['holes']:>7}"
        )
    print()
    for label, key in (
        ("model_response |error| vs emulator send log (ms)", "mr"),
        ("v2v |error| vs the caller's own stamps (ms)", "v2v"),
        ("tool turns: bridge share, args done -> response.create (ms)", "bridge_ms"),
        ("tool turns: bridge wait, last output -> response.create (ms)", "wait_ms"),
    ):
        print(f"{label:<62} {stats([x for r in rows for x in r[key]])}")


if __name__ == "__main__":
    asyncio.run(main())
