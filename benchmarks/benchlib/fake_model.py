"""A lightweight Hydra-shaped model server for the bench (not the emulator).

Per connection it sends ``session.created``, waits for ``session.configure`` and answers
``session.configured`` (echoing the applied fields and ``output_audio_sample_rate: 48000``),
which is the handshake :class:`hydralab.client.HydraClient` expects; then a short greeting
response at once (the callers wait for it before they speak: the bridge reads a caller only
once its model session is up). On :meth:`FakeModel.respond` every connection streams
responses — ``response.created``, ``response.output_audio.delta`` × n (pre-encoded 48 kHz PCM16,
``delta_ms`` each, the first ``lead_ms`` at once and the rest on absolute real-time deadlines of
its own clock), ``response.output_audio.done``, ``response.done`` — ``on_ms`` long, ``off_ms``
apart, staggered across connections.

What it stamps (``time.monotonic_ns``): the arrival of each ``input_audio_buffer.append`` that
carries caller audio (silence-fill appends the bridge makes while the caller is quiet are only
counted: an append whose second half is silent), and the send of every delta. In ``relay``
mode (behind the bare relay) there is no handshake: it receives the caller's own Twilio frames
and stamps each ``media`` frame instead.

Run as a process: ``python -m benchlib.fake_model --n-total N [--mode bridge|relay]``
(commands on stdin, :mod:`benchlib.cmdloop`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import time
from array import array
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from benchlib import frames as fr
from benchlib.stats import summary

_FILL_PEAK = 200  # an append whose second half stays below this is silence fill


def _j(d: dict[str, Any]) -> str:
    return json.dumps(d, separators=(",", ":"))


class ModelConn:
    """One model connection's state and stamps."""

    def __init__(self, idx: int, ws: ServerConnection) -> None:
        self.idx = idx
        self.ws = ws
        self.conv: int | None = None
        self.configured = False
        self.closed = False
        self.appends = array("q")  # arrival of each caller-audio append (media frame: relay)
        self.fills = 0
        self.frames_in = 0
        self.id_chunks: list[np.ndarray] = []
        self.delta_sent = array("q")
        self.resp_start: list[int] = []  # index into delta_sent of each response's first delta
        self.lateness_ms = array("d")  # send time after the delta's deadline
        self.n_resp = 0
        self.tasks: set[asyncio.Task[None]] = set()


class FakeModel:
    """The fake model server (see the module docstring)."""

    def __init__(
        self,
        *,
        n_total: int,
        mode: str = "bridge",
        delta_ms: int = 40,
        greeting_ms: int = 200,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if mode not in ("bridge", "relay"):
            raise ValueError(f"mode must be bridge or relay, not {mode!r}")
        self.n_total = n_total
        self.mode = mode
        self.delta_ms = delta_ms
        self.greeting_ms = greeting_ms
        self.host = host
        self.port = port
        self.payload = fr.model_delta_payload(delta_ms)
        self.conns: list[ModelConn] = []
        self._server: Server | None = None
        self.url = ""

    async def start(self) -> str:
        self._server = await serve(
            self._handler, self.host, self.port, compression=None, max_size=None
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        self.url = f"ws://{self.host}:{self.port}/waves/v1/s2s"
        return self.url

    async def stop(self) -> None:
        await self.stop_responding()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------------ connection
    async def _handler(self, ws: ServerConnection) -> None:
        conn = ModelConn(len(self.conns), ws)
        self.conns.append(conn)
        try:
            await ws.send(
                _j(
                    {
                        "type": "session.created",
                        "event_id": f"sv_bench{conn.idx:08x}",
                        "session_id": f"bench-session-{conn.idx}",
                    }
                )
            )
            if self.mode == "bridge":
                async for msg in ws:
                    if isinstance(msg, str) and msg.startswith('{"type":"session.configure"'):
                        session = json.loads(msg).get("session") or {}
                        keep = ("instructions", "voice", "tools", "generate_initial_response")
                        echo = {k: session[k] for k in keep if k in session}
                        echo["output_audio_sample_rate"] = fr.MODEL_OUT_RATE_HZ
                        await ws.send(
                            _j(
                                {
                                    "type": "session.configured",
                                    "event_id": "sv_cfg",
                                    "session": echo,
                                }
                            )
                        )
                        break
            conn.configured = True
            self._spawn(conn, self._response(conn, time.monotonic_ns(), self.greeting_ms, 0))
            on_frame = self._bridge_frame if self.mode == "bridge" else self._relay_frame
            async for msg in ws:
                on_frame(conn, msg)
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            for t in list(conn.tasks):
                t.cancel()

    def _spawn(self, conn: ModelConn, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    def _bridge_frame(self, conn: ModelConn, msg: str | bytes) -> None:
        t = time.monotonic_ns()
        conn.frames_in += 1
        if not isinstance(msg, str) or "input_audio_buffer.append" not in msg[:48]:
            return
        i = msg.find('"audio":"')
        if i < 0:
            return
        j = msg.find('"', i + 9)
        pcm = np.frombuffer(base64.b64decode(msg[i + 9 : j]), dtype="<i2")
        if pcm.size == 0 or int(np.abs(pcm[pcm.size // 2 :]).max()) <= _FILL_PEAK:
            conn.fills += 1
            return
        conn.appends.append(t)
        if conn.conv is None:
            conn.id_chunks.append(pcm.astype(np.int16))
            if len(conn.id_chunks) >= fr.ID_FRAMES:
                conn.conv = fr.identify_tone(np.concatenate(conn.id_chunks), self.n_total)
                conn.id_chunks = []

    def _relay_frame(self, conn: ModelConn, msg: str | bytes) -> None:
        t = time.monotonic_ns()
        conn.frames_in += 1
        if not isinstance(msg, str):
            return
        if msg.startswith(fr.MEDIA_PREFIX):
            conn.appends.append(t)
        elif msg.startswith('{"event":"start"'):
            sid = str(json.loads(msg).get("streamSid", ""))
            with contextlib.suppress(ValueError):
                conn.conv = int(sid.rsplit("-", 1)[-1])

    # ------------------------------------------------------------------ responses
    async def _response(self, conn: ModelConn, start_ns: int, on_ms: int, lead_ms: int) -> None:
        """One response of ``on_ms`` of audio whose first sample is due at ``start_ns``."""
        ws = conn.ws
        r = conn.n_resp
        conn.n_resp += 1
        rid, iid = f"resp_{conn.idx}_{r}", f"item_{conn.idx}_{r}"
        wait = start_ns - time.monotonic_ns()  # then the lead at once, the rest in real time
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        frame = fr.delta_frame(rid, iid, self.payload)
        n = max(1, on_ms // self.delta_ms)
        step = self.delta_ms * 1_000_000
        lead = lead_ms * 1_000_000
        try:
            await ws.send(_j({"type": "response.created", "response": {"id": rid}}))
            conn.resp_start.append(len(conn.delta_sent))
            for k in range(n):
                deadline = start_ns + k * step - lead
                now = time.monotonic_ns()
                if deadline > now:
                    await asyncio.sleep((deadline - now) / 1e9)
                    now = time.monotonic_ns()
                if k * step >= lead:  # a real-time deadline (not the lead burst)
                    conn.lateness_ms.append((now - deadline) / 1e6)
                conn.delta_sent.append(now)
                await ws.send(frame)
            await ws.send(
                _j(
                    {
                        "type": "response.output_audio.done",
                        "response_id": rid,
                        "item_id": iid,
                        "output_index": 0,
                        "content_index": 0,
                    }
                )
            )
            await ws.send(
                _j(
                    {
                        "type": "response.done",
                        "response": {
                            "id": rid,
                            "status": "completed",
                            "output": [
                                {"id": iid, "type": "message", "role": "assistant"},
                            ],
                        },
                    }
                )
            )
        except ConnectionClosed:
            pass

    async def _responses(
        self, conn: ModelConn, base_ns: int, on_ms: int, off_ms: int, until_ns: int, lead_ms: int
    ) -> None:
        period = (on_ms + off_ms) * 1_000_000
        r = 0
        while not conn.closed:
            start = base_ns + r * period
            if start + on_ms * 1_000_000 > until_ns:
                return
            await self._response(conn, start, on_ms, lead_ms)
            r += 1

    async def respond(
        self, t0_ns: int, on_ms: int, off_ms: int, until_ns: int, lead_ms: int = 0
    ) -> dict[str, Any]:
        """Every configured connection streams responses from ``t0_ns`` (staggered by its
        index over one on+off period) until ``until_ns``."""
        live = [c for c in self.conns if c.configured and not c.closed]
        period = on_ms + off_ms
        for c in live:
            phase = round(c.idx * period * 1_000_000 / max(1, len(self.conns)))
            self._spawn(c, self._responses(c, t0_ns + phase, on_ms, off_ms, until_ns, lead_ms))
        return {"streaming": len(live)}

    async def stop_responding(self) -> dict[str, Any]:
        n = 0
        for c in self.conns:
            for t in list(c.tasks):
                t.cancel()
                n += 1
        return {"cancelled": n}

    # ------------------------------------------------------------------ results
    def status(self) -> dict[str, Any]:
        return {
            "connections": len(self.conns),
            "configured": sum(c.configured for c in self.conns),
            "identified": sum(c.conv is not None for c in self.conns),
            "open": sum(not c.closed for c in self.conns),
        }

    def report(self) -> dict[str, Any]:
        late = [x for c in self.conns for x in c.lateness_ms]
        return {
            "mode": self.mode,
            "delta_ms": self.delta_ms,
            "send_lateness_ms": summary(late),
            "conns": [
                {
                    "idx": c.idx,
                    "conv": c.conv,
                    "appends": c.appends.tolist(),
                    "fills": c.fills,
                    "frames_in": c.frames_in,
                    "delta_sent": c.delta_sent.tolist(),
                    "resp_start": list(c.resp_start),
                }
                for c in self.conns
            ],
        }


async def _main(args: argparse.Namespace) -> None:
    from benchlib.cmdloop import command_loop

    model = FakeModel(
        n_total=args.n_total, mode=args.mode, delta_ms=args.delta_ms, greeting_ms=args.greeting_ms
    )
    url = await model.start()

    async def respond(**kw: Any) -> dict[str, Any]:
        return await model.respond(**kw)

    async def stop_responding() -> dict[str, Any]:
        return await model.stop_responding()

    async def status() -> dict[str, Any]:
        return model.status()

    async def report(path: str) -> dict[str, Any]:
        Path(path).write_text(json.dumps(model.report()))
        return {"path": path, **model.status()}

    await command_loop(
        {
            "respond": respond,
            "stop_responding": stop_responding,
            "status": status,
            "report": report,
        },
        {"url": url, "port": model.port},
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-total", type=int, required=True)
    p.add_argument("--mode", choices=("bridge", "relay"), default="bridge")
    p.add_argument("--delta-ms", type=int, default=40)
    p.add_argument("--greeting-ms", type=int, default=200)
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
