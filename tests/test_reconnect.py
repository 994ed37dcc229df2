"""When the bridge tries the model again: by type and close code, never by message (pure)."""

from __future__ import annotations

import random

from hydralab.client import (
    HydraAuthError,
    HydraConnectionError,
    HydraHandshakeError,
    HydraServerFullError,
    HydraTokenError,
    HydraVoiceError,
)
from hydralab.reconnect import ReconnectPolicy, retryable


def test_retryable_by_type_not_by_message() -> None:
    assert retryable(HydraServerFullError("x"))
    assert retryable(HydraConnectionError("x"))
    assert retryable(HydraTokenError("token endpoint down"))
    assert not retryable(HydraAuthError("401"))
    assert not retryable(HydraVoiceError("x"))
    # a handshake error whose text happens to say "server_full" or "1013" is still not one
    assert not retryable(HydraHandshakeError("invalid_request_error: server_full 1013"))


def test_connect_delays_are_jittered_and_bounded() -> None:
    p = ReconnectPolicy(backoff_s=(0.5, 1.0))
    rng = random.Random(0)
    d0 = p.connect_delay_s(HydraServerFullError("x"), attempt=0, rng=rng)
    d1 = p.connect_delay_s(HydraServerFullError("x"), attempt=1, rng=rng)
    assert d0 is not None and 0.25 <= d0 <= 0.75
    assert d1 is not None and 0.5 <= d1 <= 1.5
    assert p.connect_delay_s(HydraServerFullError("x"), attempt=2, rng=rng) is None
    assert p.connect_delay_s(HydraAuthError("401"), attempt=0, rng=rng) is None


def test_mid_call_reconnects() -> None:
    p = ReconnectPolicy(max_reconnects=1)
    for code in (1006, 1011, 1012, 1013):
        assert p.should_reconnect(close_code=code, last_error_code=None, reconnects=0)
    assert p.should_reconnect(close_code=1000, last_error_code="internal_error", reconnects=0)
    assert not p.should_reconnect(close_code=1000, last_error_code=None, reconnects=0)
    assert not p.should_reconnect(close_code=1011, last_error_code=None, reconnects=1)
