"""Item 7: one real offline call (``run_record``: caller → bridge → emulator, local STT) profiled.

``python -m benchlib.profile_call [--profiler cprofile|none] [--stt local|none] [--max-s S]``,
with the checkout under test first on ``sys.path``. ``--profiler none`` is for running under
``py-spy record`` from outside (the bench does that when py-spy is installed); ``cprofile``
profiles the main thread in-process (threads — eSpeak runs in ``asyncio.to_thread`` — are then
only in the per-thread CPU split). An event-loop lag probe (5 ms sleeps) runs on the call's
loop; the bridge, the caller and the emulator all share it. ``--max-s`` interrupts the call
after that many seconds (0: the whole call). Prints one JSON line: wall time, CPU of this
process (main thread / other threads) and of its waited-for children (the STT decoder process,
``RUSAGE_CHILDREN``), the lag, and with cProfile the self time per group
(:mod:`benchlib.attrib`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import pstats
import resource
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _conversation_span(out_dir: Path) -> tuple[int, int] | None:
    """Monotonic ns of the first and the last row of the call's ``events.jsonl``."""
    anchor_mono, anchor_epoch = time.monotonic_ns(), time.time_ns()
    for ev in out_dir.rglob("events.jsonl"):
        rows = [json.loads(x) for x in ev.read_text().splitlines() if x.strip()]
        stamps = [r["t_ms"] for r in rows if isinstance(r.get("t_ms"), int | float)]
        if stamps:
            return tuple(  # type: ignore[return-value]
                anchor_mono + int(ms * 1_000_000) - anchor_epoch
                for ms in (min(stamps), max(stamps))
            )
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--profiler", choices=("cprofile", "none"), default="cprofile")
    p.add_argument("--stt", choices=("local", "none"), default="local")
    p.add_argument("--max-s", type=float, default=0.0)
    args = p.parse_args()

    from benchlib.stats import summary
    from hydralab.runner import run_record

    lag = array("d")
    lag_at = array("q")
    info: dict[str, Any] = {}

    async def probe() -> None:
        while True:
            t = time.monotonic_ns()
            await asyncio.sleep(0.005)
            now = time.monotonic_ns()
            lag.append((now - t) / 1e6 - 5.0)
            lag_at.append(now)

    async def call(out_dir: Path) -> None:
        stop = asyncio.Event()
        pr = asyncio.ensure_future(probe())
        timer = (
            asyncio.get_running_loop().call_later(args.max_s, stop.set) if args.max_s > 0 else None
        )
        try:
            res = await run_record(
                out_dir=out_dir,
                run_id="profiled",
                transcriber=None if args.stt == "none" else args.stt,
                interrupt=stop,
            )
            info["ended_reason"] = getattr(res, "ended_reason", None)
        finally:
            pr.cancel()
            if timer is not None:
                timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pr

    prof = cProfile.Profile(time.thread_time_ns, 1e-9) if args.profiler == "cprofile" else None
    with tempfile.TemporaryDirectory(prefix="bridge-bench-profile-") as tmp:
        self0, kids0, main0 = (
            _cpu(resource.RUSAGE_SELF),
            _cpu(resource.RUSAGE_CHILDREN),
            time.thread_time(),
        )
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
        asyncio.run(call(Path(tmp)))
        if prof is not None:
            prof.disable()
        wall = time.perf_counter() - t0
        self_s = _cpu(resource.RUSAGE_SELF) - self0
        kids_s = _cpu(resource.RUSAGE_CHILDREN) - kids0
        main_s = time.thread_time() - main0
        span = _conversation_span(Path(tmp))
    out: dict[str, Any] = {
        "wall_s": round(wall, 2),
        "stt": args.stt,
        "max_s": args.max_s,
        "ended_reason": info.get("ended_reason"),
        "cpu_s": {
            "process": round(self_s, 3),
            "main_thread": round(main_s, 3),
            "other_threads": round(self_s - main_s, 3),
            "children": round(kids_s, 3),
        },
        "lag_ms": summary(lag, tail=True),
    }
    if span is not None:
        lo, hi = span
        during = [x for x, t in zip(lag, lag_at, strict=True) if lo <= t <= hi]
        out["conversation_s"] = round((hi - lo) / 1e9, 2)
        out["lag_conversation_ms"] = summary(during, tail=True)
    if prof is not None:
        from benchlib.attrib import cprofile_stats

        out["profile"] = {
            "profiler": "cProfile (main thread CPU time)",
            **cprofile_stats(pstats.Stats(prof)),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
