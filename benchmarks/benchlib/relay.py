"""The baseline: a bare websockets relay, the least any bridge has to do.

Each caller connection gets its own connection to the model; caller frames are forwarded to the
model and model frames to the caller as they are, with no parsing, audio processing or logging.
Same library, same settings as the bridge (``websockets.asyncio``, no compression).
"""

from __future__ import annotations

import asyncio
import contextlib

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def _pipe(
    src: ServerConnection | ClientConnection, dst: ServerConnection | ClientConnection
) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for msg in src:
            await dst.send(msg)


async def start_relay(model_url: str, *, host: str = "127.0.0.1", port: int = 0) -> Server:
    """Serve the relay; the caller URL is ``ws://HOST:PORT/ws``."""

    async def handler(ws: ServerConnection) -> None:
        async with connect(model_url, compression=None, max_size=None, open_timeout=30) as up:
            tasks = {
                asyncio.create_task(_pipe(ws, up)),
                asyncio.create_task(_pipe(up, ws)),
            }
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()

    return await serve(handler, host, port, compression=None, max_size=None)
