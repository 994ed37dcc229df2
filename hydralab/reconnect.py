"""When to try the model again (sans-I/O): by exception type and close code, never by message.

Smallest's "Errors & reconnection" page: ``server_full`` (always followed by close 1013) →
back off with jitter and retry; ``internal_error`` → reconnect once; a network drop (1006) →
reconnect; HTTP 401 → never retry; an idle close (1000) is normal. A rejected voice or another
handshake ``error`` is not retried either: the same configure would be rejected again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hydralab.client import HydraAuthError, HydraConnectionError, HydraError, HydraServerFullError

__all__ = ["ReconnectPolicy", "retryable"]


def retryable(exc: HydraError) -> bool:
    """Capacity (:class:`HydraServerFullError`) and transport failures
    (:class:`HydraConnectionError`) are worth another attempt; auth and handshake errors are
    not."""
    return isinstance(exc, HydraServerFullError | HydraConnectionError) and not isinstance(
        exc, HydraAuthError
    )


@dataclass(frozen=True)
class ReconnectPolicy:
    """Connection retries and mid-call reconnects.

    Attributes:
        backoff_s: Delays before successive connection attempts (each jittered ×0.5–1.5).
        max_reconnects: Mid-call reconnects allowed after the model drops the session.
        close_codes: Close codes that drop a session worth reconnecting (1006 network drop,
            1011 internal error, 1012 service restart, 1013 at capacity).
        error_codes: ``error.code`` values, seen just before the close, that do too.
    """

    backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0)
    max_reconnects: int = 1
    close_codes: tuple[int, ...] = (1006, 1011, 1012, 1013)
    error_codes: tuple[str, ...] = ("internal_error", "server_full")

    def connect_delay_s(
        self, exc: HydraError, *, attempt: int, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before connection attempt ``attempt + 1`` after ``exc`` (``attempt``
        counts from 0), or ``None``: give up and raise."""
        if not retryable(exc) or attempt >= len(self.backoff_s):
            return None
        return self.backoff_s[attempt] * (rng or random).uniform(0.5, 1.5)

    def should_reconnect(
        self, *, close_code: int | None, last_error_code: str | None, reconnects: int
    ) -> bool:
        """Whether a session that ended mid-call (``close_code``, after ``last_error_code``)
        is worth a new one, given ``reconnects`` so far."""
        if reconnects >= self.max_reconnects:
            return False
        return close_code in self.close_codes or last_error_code in self.error_codes
