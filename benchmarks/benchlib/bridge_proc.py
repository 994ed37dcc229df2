"""The process under test: hydralab's bridge (or the bare relay) plus an event-loop lag probe.

``--kind bridge`` serves ``hydralab.serve.serve_bridge`` — the production path of ``hydralab
serve`` — with ``model="hydra"``, ``hydra_url`` the fake model, no STT and an unbounded
``max_calls``; the API key comes from ``SMALLEST_API_KEY`` (the launcher sets a dummy one).
``--kind relay`` serves :mod:`benchlib.relay`. Either way a probe task sleeps ``5 ms`` in a loop
and records how late it wakes up (the lag every other task of the loop also sees), and the
garbage collector's pauses are recorded. ``--kind workers --workers K`` starts
``hydralab.serve.ServeWorkers`` (``hydralab serve --workers K``: K processes sharing one port)
where the tree has it; their pids are announced so that the bench measures them from outside
(no probe runs inside them).

``--hydralab PATH`` goes first on ``sys.path`` (the launcher also puts it first on
``PYTHONPATH``), so the bench measures that checkout. ``quit`` ends the process at once
(``os._exit``): calls in flight are not ended and no per-call outputs are written, so nothing of
that sort can land inside a measurement.

Run as a process: ``python -m benchlib.bridge_proc --kind bridge --model-url ws://...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
import time
from array import array
from collections.abc import AsyncIterator
from typing import Any

from benchlib.stats import summary


class LagProbe:
    """Sleeps ``interval_ms`` in a loop; each wake-up's overshoot is one sample (ms)."""

    def __init__(self, interval_ms: float = 5.0) -> None:
        self.interval_ms = interval_ms
        self.samples = array("d")
        self.at = array("q")  # when each sample was taken (monotonic ns)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        interval = self.interval_ms / 1000.0
        while True:
            t = time.monotonic_ns()
            await asyncio.sleep(interval)
            now = time.monotonic_ns()
            self.samples.append((now - t) / 1e6 - self.interval_ms)
            self.at.append(now)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def reset(self) -> None:
        self.samples = array("d")
        self.at = array("q")

    def report(self) -> dict[str, Any]:
        return summary(self.samples, tail=True)

    def spikes(self, n: int = 10, over_ms: float = 10.0) -> list[list[float]]:
        """The ``n`` largest lags over ``over_ms``: ``[monotonic s, lag ms]``, in time order."""
        big = sorted(
            ((lag, t) for lag, t in zip(self.samples, self.at, strict=True) if lag > over_ms),
            reverse=True,
        )[:n]
        return [[round(t / 1e9, 3), round(lag, 2)] for lag, t in sorted(big, key=lambda x: x[1])]


class GcWatch:
    """Garbage-collector pauses of the process (``gc.callbacks``): the long ones, with when."""

    def __init__(self, over_ms: float = 5.0) -> None:
        self.over_ms = over_ms
        self.pauses: list[list[float]] = []  # [monotonic s, generation, ms, collected]
        self.counts = [0, 0, 0]
        self.total_ms = 0.0
        self._t = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter_ns()
            return
        ms = (time.perf_counter_ns() - self._t) / 1e6
        gen = int(info.get("generation", 0))
        self.counts[gen] += 1
        self.total_ms += ms
        if ms > self.over_ms and len(self.pauses) < 200:
            now = time.monotonic_ns() / 1e9
            self.pauses.append([round(now, 3), gen, round(ms, 2), int(info.get("collected", 0))])

    def reset(self) -> None:
        self.pauses, self.counts, self.total_ms = [], [0, 0, 0], 0.0

    def report(self) -> dict[str, Any]:
        return {
            "collections": list(self.counts),
            "total_ms": round(self.total_ms, 2),
            "long_pauses": self.pauses[:20],
        }


@contextlib.asynccontextmanager
async def bridge_server(
    model_url: str, *, out_dir: str, port: int = 0, max_calls: int = 100_000
) -> AsyncIterator[Any]:
    """hydralab's bridge as ``hydralab serve`` runs it, in front of ``model_url``; yields the
    :class:`hydralab.serve.BridgeServer` (``.url`` for the callers, ``.active``)."""
    from hydralab.serve import serve_bridge

    async with serve_bridge(
        None,
        model="hydra",
        hydra_url=model_url,
        out_dir=out_dir,
        port=port,
        transcriber=None,
        max_calls=max_calls,
    ) as server:
        yield server


async def _main(args: argparse.Namespace) -> None:
    from benchlib.cmdloop import command_loop

    probe = LagProbe(args.lag_interval_ms)
    gcw = GcWatch()
    gc.callbacks.append(gcw)
    info: dict[str, Any] = {"pid": os.getpid(), "kind": args.kind}
    on_quit: list[int] = []  # worker processes to end with this one
    async with contextlib.AsyncExitStack() as stack:
        if args.kind == "bridge":
            import hydralab

            info["hydralab"] = os.path.dirname(os.path.abspath(hydralab.__file__))
            server = await stack.enter_async_context(
                bridge_server(args.model_url, out_dir=args.out_dir, port=args.port)
            )
            url = server.url

            def active() -> int:
                return int(server.active)
        elif args.kind == "workers":
            # hydralab serve --workers K: K processes on one port (SO_REUSEPORT); measured from
            # outside through their pids (this process only starts them: no probe here)
            import hydralab
            from hydralab.serve import ServeWorkers

            info["hydralab"] = os.path.dirname(os.path.abspath(hydralab.__file__))
            served = ServeWorkers(
                None,
                workers=args.workers,
                model="hydra",
                hydra_url=args.model_url,
                out_dir=args.out_dir,
                transcriber=None,
                max_calls=100_000,
            )
            await asyncio.to_thread(served.start)
            url = served.url
            pids = [int(p.pid) for p in getattr(served, "_procs", [])]
            info["pids"] = pids
            on_quit.extend(pids)

            def active() -> int:
                return -1  # not visible from here
        else:
            from benchlib.relay import start_relay

            relay = await start_relay(args.model_url, port=args.port)
            port = int(next(iter(relay.sockets)).getsockname()[1])
            url = f"ws://127.0.0.1:{port}/ws"

            def active() -> int:
                return len(relay.connections)

        if args.kind != "workers":
            probe.start()

        async def lag_reset() -> dict[str, Any]:
            probe.reset()
            gcw.reset()
            return {}

        async def lag_report(raw: bool = False) -> dict[str, Any]:
            out: dict[str, Any] = {
                "lag_ms": probe.report(),
                "spikes": probe.spikes(),
                "gc": gcw.report(),
            }
            if raw:
                out["samples"] = [round(x, 4) for x in probe.samples]
            return out

        async def status() -> dict[str, Any]:
            return {"active": active()}

        def kill_workers() -> None:
            for pid in on_quit:  # our own children, by pid: os._exit would leave them running
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

        await command_loop(
            {"lag_reset": lag_reset, "lag_report": lag_report, "status": status},
            {"url": url, **info},
            on_quit=kill_workers,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kind", choices=("bridge", "relay", "workers"), default="bridge")
    p.add_argument("--workers", type=int, default=2, help="--kind workers: ServeWorkers' K")
    p.add_argument("--model-url", required=True)
    p.add_argument("--hydralab", default=None, help="checkout to put first on sys.path")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out-dir", default="bench-runs")
    p.add_argument("--lag-interval-ms", type=float, default=5.0)
    args = p.parse_args()
    if args.hydralab:
        sys.path.insert(0, os.path.abspath(args.hydralab))
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
