"""What hydralab's local servers share: ``async with`` lifecycle on 127.0.0.1.

The emulator and the replayer each bind a websockets server on the loopback interface; this
base gives both the same ``stop()`` (close every connection, wait for the handlers) and context
manager, so a test or notebook writes ``async with Emulator(...) as emu:``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from websockets.asyncio.server import Server

__all__ = ["LoopbackServer"]


class LoopbackServer(ABC):
    """Base of a local server: subclasses implement :meth:`start` and set ``_server``."""

    _server: Server | None = None

    @abstractmethod
    async def start(self) -> str:
        """Bind and serve; return the URL to connect to."""

    async def stop(self) -> None:
        """Close every connection (1001) and wait for their handlers to finish."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
