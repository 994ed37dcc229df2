"""Item 6, the second half: from the ``run_record(...)`` call to the first frames of the call.

``python -m benchlib.startup`` (with the checkout under test first on ``sys.path``) imports
``hydralab.runner`` (timed), wraps ``websockets``' client ``send`` in this process only (the
caller and hydralab's model client both use it) to stamp the first frame of each kind, then
runs one offline emulator call (``run_record(model="emulator", transcriber=None)``) and
interrupts it as soon as the bridge has sent its first ``input_audio_buffer.append``. Prints
one JSON line: milliseconds from the ``run_record`` call to the caller's first frame
(``connected``) and first ``media`` frame, the bridge's ``session.configure`` and first
append (and, from the run's ``events.jsonl``, the first append's ``rel_ms`` on the call clock).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    t = time.perf_counter()
    from hydralab.runner import run_record

    import_s = time.perf_counter() - t
    from websockets.asyncio.client import ClientConnection

    first: dict[str, int] = {}
    orig = ClientConnection.send

    async def send(self: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(message, str):
            head = message[:64]
            now = time.monotonic_ns()
            if head.startswith('{"event":"media"'):
                first.setdefault("caller_first_media", now)
            elif head.startswith('{"event"'):
                first.setdefault("caller_first_frame", now)
            elif "input_audio_buffer.append" in head:
                first.setdefault("bridge_first_append", now)
            elif "session.configure" in head:
                first.setdefault("bridge_session_configure", now)
        return await orig(self, message, *args, **kwargs)

    ClientConnection.send = send  # type: ignore[method-assign]

    with tempfile.TemporaryDirectory(prefix="bridge-bench-startup-") as tmp:
        out_dir = Path(tmp)

        async def call() -> str:
            stop = asyncio.Event()

            async def watch() -> None:
                while "bridge_first_append" not in first:
                    await asyncio.sleep(0.005)
                stop.set()

            w = asyncio.ensure_future(watch())
            try:
                res = await run_record(
                    out_dir=out_dir, run_id="startup", transcriber=None, interrupt=stop
                )
            finally:
                w.cancel()
            return str(getattr(res, "ended_reason", "?"))

        t0 = time.monotonic_ns()
        ended = asyncio.run(call())
        total_s = (time.monotonic_ns() - t0) / 1e9
        rel_ms = None
        for ev in out_dir.rglob("events.jsonl"):
            for line in ev.read_text().splitlines():
                row = json.loads(line)
                if row.get("frame", {}).get("type") == "input_audio_buffer.append":
                    rel_ms = row.get("rel_ms")
                    break
    out: dict[str, Any] = {
        "import_runner_s": round(import_s, 3),
        "ms_from_run_record": {k: round((v - t0) / 1e6, 1) for k, v in sorted(first.items())},
        "events_first_append_rel_ms": rel_ms,
        "ended_reason": ended,
        "call_total_s": round(total_s, 2),
        "hydralab": os.path.dirname(os.path.abspath(sys.modules["hydralab"].__file__ or "")),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
