"""API keys never show: Secret, redact, and the websockets log filter."""

from __future__ import annotations

import logging

import pytest

from hydralab.secrets import Secret, get_api_key, install_log_redaction, redact, redact_obj


def test_secret_never_shows_itself() -> None:
    s = Secret("sk-live-abcdef123456")
    assert "abcdef" not in repr(s) and "abcdef" not in str(s) and "abcdef" not in f"{s}"
    assert s.reveal() == "sk-live-abcdef123456"
    assert not Secret("")


def test_get_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMALLEST_API_KEY", "env-key-0123456789")
    assert get_api_key().reveal() == "env-key-0123456789"
    assert get_api_key("explicit-key-999").reveal() == "explicit-key-999"
    monkeypatch.delenv("SMALLEST_API_KEY")
    assert not get_api_key()


def test_redact_urls_tokens_and_known_keys() -> None:
    Secret("known-secret-value-42")
    text = (
        "GET /waves/v1/s2s?model=hydra&api_key=abc123XYZ HTTP/1.1 "
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y and known-secret-value-42"
    )
    out = redact(text)
    assert "abc123XYZ" not in out and "eyJhbGci" not in out and "known-secret-value-42" not in out
    assert "model=hydra" in out and "api_key=***" in out
    assert redact_obj({"a": ["x?api_key=zz9"], "b": 1}) == {"a": ["x?api_key=***"], "b": 1}


def test_websockets_debug_logs_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    lg = logging.getLogger("websockets.client")
    with caplog.at_level(logging.DEBUG, logger="websockets.client"):
        lg.debug("> GET /?model=%s&api_key=%s HTTP/1.1", "hydra", "leaky-key-7777")
    assert "leaky-key-7777" not in caplog.text
    assert "api_key=***" in caplog.text
    assert len(lg.filters) == 1
