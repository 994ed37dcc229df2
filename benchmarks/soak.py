"""Soak: back-to-back conversations for N minutes, watching the process for leaks.

Runs conversations one after the other — simulated (:func:`hydralab.sim.simulate_record`,
virtual time: the bridge, emulator and caller cores with the real run-directory code, a call in
about a second) and, with ``--real``, every ``--real-every``-th one as a real call
(:func:`hydralab.runner.run_record`: caller → bridge → emulator over 127.0.0.1 sockets, in real
time) — cycling over the records, each in a fresh run directory that is deleted afterwards
(``--keep`` keeps them). Everything runs in one process and on one event loop, so what a call
leaves behind accumulates where it can be seen.

Every ``--report-every`` minutes and at the end it prints one table row: conversations done,
resident memory (MB, after a ``gc.collect()``), open file descriptors, asyncio tasks alive on
the loop besides the soak's own, threads, child processes, Python objects tracked by the GC. The
summary compares ``start`` (before any call), ``warm`` (after the first call of each kind:
one simulated call of every record — their rendered speech is cached per process — and the
first real call, with the decoder process of ``--stt local``) and ``end``: a leak shows as
growth from ``warm`` to ``end`` that keeps rising with the conversation count.

    python benchmarks/soak.py --minutes 3                 # simulated calls only
    python benchmarks/soak.py --minutes 30 --real         # one real call in every 10
    python benchmarks/soak.py --minutes 10 --real --real-every 1 --stt local
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydralab.records import list_records
from hydralab.runner import run_record
from hydralab.sim import simulate_record

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Sample:
    label: str
    elapsed_s: float
    sim: int
    real: int
    rss_mb: float
    fds: int
    tasks: int
    threads: int
    children: int
    gc_objects: int

    @property
    def conversations(self) -> int:
        return self.sim + self.real


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:  # not Linux: the peak instead (ru_maxrss: KiB on Linux, bytes on macOS)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _fds() -> int:
    for d in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(d):
            return len(os.listdir(d)) - 1  # less the listing's own descriptor
    return -1


def _threads() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])  # OS threads (C libraries' included)
    except OSError:
        pass
    return threading.active_count()


def _children() -> int:
    """Live child processes (any depth)."""
    try:
        import psutil

        return len(psutil.Process().children(recursive=True))
    except ImportError:
        pass
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - mine
        mine |= frontier
    return len(mine)


def sample(label: str, t0: float, sim: int, real: int) -> Sample:
    gc.collect()
    try:
        loop_tasks = asyncio.all_tasks()
        current = asyncio.current_task()
        tasks = len([t for t in loop_tasks if t is not current])
    except RuntimeError:  # no running loop
        tasks = 0
    return Sample(
        label=label,
        elapsed_s=time.monotonic() - t0,
        sim=sim,
        real=real,
        rss_mb=_rss_mb(),
        fds=_fds(),
        tasks=tasks,
        threads=_threads(),
        children=_children(),
        gc_objects=len(gc.get_objects()),
    )


HEADER = (
    f"{'':<6} {'min':>6} {'convs':>6} {'sim':>5} {'real':>5} {'RSS MB':>8} {'fds':>5} "
    f"{'tasks':>5} {'threads':>7} {'children':>8} {'gc objs':>9}"
)


def fmt(s: Sample) -> str:
    return (
        f"{s.label:<6} {s.elapsed_s / 60:>6.2f} {s.conversations:>6} {s.sim:>5} {s.real:>5} "
        f"{s.rss_mb:>8.1f} {s.fds:>5} {s.tasks:>5} {s.threads:>7} {s.children:>8} "
        f"{s.gc_objects:>9}"
    )


def summary(start: Sample, warm: Sample, mid: Sample, end: Sample) -> str:
    """``start``, ``warm``, ``mid`` (the first row of the run's second half) and ``end``, and
    the growth per 100 conversations over the whole run after warm-up and over its second half
    (an allocator's high-water mark is reached early and stays: a leak keeps climbing)."""
    lines = ["", "summary:", HEADER, fmt(start), fmt(warm), fmt(mid), fmt(end), ""]
    lines.append(f"  {'growth':<9} {'warm → end':>22}   {'mid → end':>22}")

    def grow(name: str, get: Callable[[Sample], float], unit: str = "") -> str:
        cells = []
        for a in (warm, mid):
            n = max(1, end.conversations - a.conversations)
            d = get(end) - get(a)
            cells.append(f"{d:+.1f}{unit} ({d * 100 / n:+.2f}/100)")
        return f"  {name:<9} {cells[0]:>22}   {cells[1]:>22}"

    lines += [
        grow("RSS", lambda s: s.rss_mb, " MB"),
        grow("fds", lambda s: s.fds),
        grow("tasks", lambda s: s.tasks),
        grow("threads", lambda s: s.threads),
        grow("children", lambda s: s.children),
        grow("gc objs", lambda s: s.gc_objects),
    ]
    rate = end.conversations / max(end.elapsed_s / 60, 1e-9)
    lines.append(
        f"  {end.conversations} conversations in {end.elapsed_s / 60:.2f} min ({rate:.1f} / min)"
    )
    return "\n".join(lines)


async def soak(args: argparse.Namespace) -> int:
    records = args.records or list_records()
    out_root = Path(args.out or tempfile.mkdtemp(prefix="hydralab-soak-"))
    t0 = time.monotonic()
    deadline = t0 + args.minutes * 60
    sim = real = 0
    start = sample("start", t0, 0, 0)
    warm: Sample | None = None
    # warm: every record simulated once (their speech is rendered once per process), then the
    # first real call
    warm_after = len(records) + (1 if args.real else 0)
    print(
        f"soak: {args.minutes} min, records {', '.join(records)}, runs in {out_root}"
        + (f", a real call every {args.real_every}" if args.real else ""),
        flush=True,
    )
    print(HEADER)
    print(fmt(start), flush=True)
    next_report = t0 + args.report_every * 60
    rows: list[Sample] = []
    failures = 0
    i = 0
    while time.monotonic() < deadline:
        record = records[i % len(records)]
        run_id = f"soak-{i:05d}"
        k = i - len(records)  # real calls from the end of the first round of records on
        want_real = args.real and k >= 0 and k % args.real_every == 0
        try:
            if want_real:
                res = await run_record(
                    record,
                    out_dir=out_root,
                    run_id=run_id,
                    transcriber=None if args.stt == "none" else args.stt,
                    session_timeout_s=args.real_timeout_s,
                )
                real += 1
            else:
                res = simulate_record(record, out_dir=out_root, run_id=run_id)
                sim += 1
            if res.error:
                failures += 1
        except Exception as exc:  # a soak reports failures, it does not stop on them
            failures += 1
            print(f"  conversation {i} ({record}): {type(exc).__name__}: {exc}", flush=True)
        if not args.keep:
            shutil.rmtree(out_root / run_id, ignore_errors=True)
        i += 1
        if warm is None and i >= warm_after:
            warm = sample("warm", t0, sim, real)
            rows.append(warm)
            print(fmt(warm), flush=True)
        if time.monotonic() >= next_report:
            rows.append(sample("now", t0, sim, real))
            print(fmt(rows[-1]), flush=True)
            next_report += args.report_every * 60
    end = sample("end", t0, sim, real)
    print(fmt(end))
    half = t0 + (end.elapsed_s / 2)
    mid = next((r for r in rows if t0 + r.elapsed_s >= half), end)
    mid = Sample(**{**mid.__dict__, "label": "mid"})
    print(summary(start, warm or start, mid, end))
    if failures:
        print(f"  {failures} conversation(s) failed or ended in error")
    if not args.keep and not args.out:
        shutil.rmtree(out_root, ignore_errors=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="how long to run (default 3)")
    p.add_argument("--report-every", type=float, default=1.0, help="minutes between rows")
    p.add_argument("--records", nargs="*", help="record ids to cycle over (default: all)")
    p.add_argument("--real", action="store_true", help="also real calls over 127.0.0.1")
    p.add_argument("--real-every", type=int, default=10, help="one real call in every N")
    p.add_argument("--real-timeout-s", type=float, default=120.0)
    p.add_argument("--stt", default="none", help="transcriber of real calls (none, local...)")
    p.add_argument("--out", help="parent of the run directories (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep every run directory")
    args = p.parse_args()
    if args.real_every < 1:
        p.error("--real-every must be >= 1")
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
