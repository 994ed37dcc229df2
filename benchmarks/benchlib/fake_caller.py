"""N Twilio Media Streams callers in one process, cheap enough to load a bridge.

Conversation ``i`` connects to ``urls[i % len(urls)]`` (round robin over the bridge processes),
sends ``connected`` and ``start`` (``streamSid`` ``bench-<i>``) and waits for the first audio
frame (the fake model's greeting: the bridge's model session is up). :meth:`CallerGroup.stream`
then sends pre-encoded 20 ms ``media`` frames (a tone per conversation,
:mod:`benchlib.frames`) on an absolute 20 ms grid from ``t0_ns``, conversation ``i`` offset by
``i / n_total`` of a frame so the load is spread over the frame; one sender task serves every
conversation of the process. Sends are stamped just before ``send``; each received audio frame
(a Twilio ``media`` frame from the bridge, or the model's ``response.output_audio.delta`` through
the bare relay — recognised by its first bytes, nothing is parsed) is stamped on arrival.

Run as a process: ``python -m benchlib.fake_caller --ids 0:8 --n-total 8 --urls ws://...``
(commands on stdin, :mod:`benchlib.cmdloop`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from array import array
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchlib import frames as fr

FRAME_NS = fr.FRAME_MS * 1_000_000
_EARLY_NS = 500_000  # a send due within this is sent now (fewer wake-ups; stamps are exact)


class CallerConv:
    def __init__(self, i: int, url: str, n_total: int) -> None:
        self.i = i
        self.url = url
        self.frames = fr.caller_media_frames(i, n_total)
        self.phase_ns = round(i * FRAME_NS / max(1, n_total))
        self.ws: ClientConnection | None = None
        self.sent = array("q")
        self.rx = array("q")
        self.greeted = asyncio.Event()
        self.dead = False
        self.error: str | None = None
        self.reader: asyncio.Task[None] | None = None


class CallerGroup:
    """Conversations ``ids`` of ``n_total``; see the module docstring."""

    def __init__(self, ids: list[int], urls: list[str], n_total: int) -> None:
        self.convs = [CallerConv(i, urls[i % len(urls)], n_total) for i in ids]
        self._sender: asyncio.Task[None] | None = None

    async def _reader(self, c: CallerConv) -> None:
        assert c.ws is not None
        media, delta = fr.MEDIA_PREFIX, fr.DELTA_PREFIX
        rx = c.rx
        try:
            async for msg in c.ws:
                if isinstance(msg, str) and (msg.startswith(media) or msg.startswith(delta)):
                    rx.append(time.monotonic_ns())
                    if not c.greeted.is_set():
                        c.greeted.set()
        except ConnectionClosed:
            pass
        c.dead = True

    async def _open(self, c: CallerConv, sem: asyncio.Semaphore, timeout_s: float) -> None:
        async with sem:
            try:
                c.ws = await connect(c.url, compression=None, max_size=None, open_timeout=30)
                await c.ws.send(fr.connected_frame())
                await c.ws.send(fr.start_frame(c.i))
                c.reader = asyncio.get_running_loop().create_task(self._reader(c))
                await asyncio.wait_for(c.greeted.wait(), timeout_s)
            except Exception as exc:
                c.error = f"{type(exc).__name__}: {exc}"
                c.dead = True

    async def connect(self, timeout_s: float = 60.0, concurrency: int = 8) -> dict[str, Any]:
        """Open every conversation (``concurrency`` at a time) and wait for its greeting."""
        sem = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(self._open(c, sem, timeout_s) for c in self.convs))
        failed = [f"{c.i}: {c.error}" for c in self.convs if c.error]
        return {"connected": len(self.convs) - len(failed), "failed": failed[:5]}

    async def _send_loop(self, t0_ns: int) -> None:
        order = sorted(self.convs, key=lambda c: c.phase_ns)
        cycle = fr.CALLER_CYCLE_FRAMES
        k = 0
        while True:
            base = t0_ns + k * FRAME_NS
            for c in order:
                if c.dead or c.ws is None:
                    continue
                due = base + c.phase_ns
                now = time.monotonic_ns()
                if due - now > _EARLY_NS:
                    await asyncio.sleep((due - now) / 1e9)
                c.sent.append(time.monotonic_ns())
                try:
                    await c.ws.send(c.frames[k % cycle])
                except ConnectionClosed:
                    c.dead = True
            k += 1

    async def stream(self, t0_ns: int) -> dict[str, Any]:
        """Start sending media frames on the grid from ``t0_ns``."""
        self._sender = asyncio.get_running_loop().create_task(self._send_loop(t0_ns))
        return {"streaming": sum(not c.dead for c in self.convs)}

    async def stop_stream(self) -> dict[str, Any]:
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        return {"stopped": True}

    async def close(self) -> None:
        await self.stop_stream()
        for c in self.convs:
            if c.ws is not None:
                await c.ws.close()
            if c.reader is not None:
                c.reader.cancel()

    def status(self) -> dict[str, Any]:
        return {
            "convs": len(self.convs),
            "alive": sum(not c.dead for c in self.convs),
            "greeted": sum(c.greeted.is_set() for c in self.convs),
        }

    def report(self) -> dict[str, Any]:
        return {
            "convs": [
                {"i": c.i, "sent": c.sent.tolist(), "rx": c.rx.tolist(), "error": c.error}
                for c in self.convs
            ]
        }


async def _main(args: argparse.Namespace) -> None:
    from benchlib.bridge_proc import LagProbe
    from benchlib.cmdloop import command_loop

    probe = LagProbe()  # this process's own stalls delay its stamps: reported beside them
    probe.start()
    lo, hi = (int(x) for x in args.ids.split(":"))
    group = CallerGroup(list(range(lo, hi)), args.urls.split(","), args.n_total)

    async def connect_all(timeout_s: float = 60.0, concurrency: int = 8) -> dict[str, Any]:
        return await group.connect(timeout_s, concurrency)

    async def stream(t0_ns: int) -> dict[str, Any]:
        return await group.stream(t0_ns)

    async def stop_stream() -> dict[str, Any]:
        return await group.stop_stream()

    async def status() -> dict[str, Any]:
        return group.status()

    async def lag_reset() -> dict[str, Any]:
        probe.reset()
        return {}

    async def lag_report() -> dict[str, Any]:
        return {"lag_ms": probe.report()}

    async def report(path: str) -> dict[str, Any]:
        Path(path).write_text(json.dumps(group.report()))
        return {"path": path, **group.status()}

    await command_loop(
        {
            "connect": connect_all,
            "stream": stream,
            "stop_stream": stop_stream,
            "status": status,
            "report": report,
            "lag_reset": lag_reset,
            "lag_report": lag_report,
        },
        {"convs": len(group.convs)},
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ids", required=True, help="conversation ids LO:HI (HI excluded)")
    p.add_argument("--n-total", type=int, required=True)
    p.add_argument("--urls", required=True, help="bridge URLs, comma-separated")
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
