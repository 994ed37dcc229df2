"""The bridge's view of a realtime speech model: one interface, any OpenAI-Realtime-shaped model.

The bridge talks to "a realtime speech model session" only through :class:`RealtimeModelSession`
(LiveKit's ``RealtimeSession`` is the model for this seam): connect with a ``session``
configuration, stream 16 kHz PCM16 in, read events (hydralab's frozen event types, which follow
the OpenAI Realtime shape Hydra uses), send client events, close.
:class:`hydralab.client.HydraClient` implements it; a second model's client maps its own frames
onto the same events and plugs in through :data:`ModelSessionFactory`, without touching the
bridge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from hydralab.protocol.hydra import HydraEvent

__all__ = ["ModelSessionFactory", "ModelStats", "RealtimeModelSession"]


class ModelStats(Protocol):
    """Counters a session keeps."""

    frames_in: int
    frames_out: int
    rejected_in: int
    warnings: list[dict[str, Any]]


@runtime_checkable
class RealtimeModelSession(Protocol):
    """One model session, as the bridge uses it."""

    @property
    def output_rate_hz(self) -> int:
        """Sample rate of the model's audio deltas, known once connected."""
        ...

    @property
    def announced_rate_hz(self) -> int | None:
        """The rate the model announced (``None``: it announced none; a default is in use)."""
        ...

    @property
    def session_id(self) -> str | None: ...

    @property
    def configure_bytes(self) -> int:
        """Bytes of the configuration frame that was sent."""
        ...

    @property
    def requested_voice(self) -> str | None: ...

    @property
    def echoed_voice(self) -> str | None:
        """The voice the model says it applied."""
        ...

    @property
    def close_code(self) -> int | None:
        """How the socket ended (``None`` while open)."""
        ...

    @property
    def notes(self) -> list[str]:
        """Things worth recording about the session (e.g. an assumed output rate)."""
        ...

    @property
    def stats(self) -> ModelStats: ...

    async def connect(self) -> Any:
        """Open the session and finish its handshake (no audio before it)."""
        ...

    async def send(self, event: HydraEvent) -> None: ...

    async def send_audio(self, pcm16k: npt.NDArray[np.int16]) -> None:
        """PCM16 mono 16 kHz input."""
        ...

    def sent_type(self, event_id: str | None) -> str | None:
        """The type of a recent client frame by its ``event_id`` (errors name their cause)."""
        ...

    def __aiter__(self) -> AsyncIterator[HydraEvent]: ...

    async def close(self) -> None: ...


ModelSessionFactory = Callable[[dict[str, Any]], RealtimeModelSession]
"""Builds an unconnected session for a ``session`` configuration (instructions, voice, tools,
``generate_initial_response`` …)."""
