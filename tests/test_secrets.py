"""API keys never show: Secret, redact, and the websockets log filter."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hydralab.rundir import RunWriter, write_json
from hydralab.secrets import (
    Secret,
    get_api_key,
    install_log_redaction,
    redact,
    redact_known,
    redact_obj,
)


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


def test_redact_known_masks_only_the_keys_themselves() -> None:
    """For free text (a transcript): the known keys go, ordinary words that look like
    ``token …`` or ``key=…`` stay (``redact`` would mask them)."""
    Secret("transcript-canary-9931")
    said = "my token tomorrow is key=blue and transcript-canary-9931"
    assert redact_known(said) == "my token tomorrow is key=blue and ***"
    assert redact(said) != redact_known(said)  # why transcripts do not go through redact
    assert redact_known("abc") == "abc"


def test_websockets_debug_logs_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    lg = logging.getLogger("websockets.client")
    with caplog.at_level(logging.DEBUG, logger="websockets.client"):
        lg.debug("> GET /?model=%s&api_key=%s HTTP/1.1", "hydra", "leaky-key-7777")
    assert "leaky-key-7777" not in caplog.text
    assert "api_key=***" in caplog.text
    assert len(lg.filters) == 1


def test_importing_hydralab_has_no_side_effects() -> None:
    # A fresh interpreter: importing the package neither patches websockets' loggers nor
    # touches the umask; constructing a client installs the filter (once).
    code = """
import logging, os, sys
def umask():
    return int(open('/proc/self/status').read().split('Umask:')[1].split()[0], 8)
os.umask(0o027)
import hydralab, hydralab.client, hydralab.probe, hydralab.replay, hydralab.rundir
assert umask() == 0o027, oct(umask())
names = ("websockets", "websockets.client", "websockets.server")
assert not any(logging.getLogger(n).filters for n in names)
from hydralab.client import HydraClient, HydraConfig
HydraClient(HydraConfig(), api_key="k-123456789")
HydraClient(HydraConfig(), api_key="k-123456789")
assert all(len(logging.getLogger(n).filters) == 1 for n in names)
"""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc to read the umask without changing it")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_run_files_get_ordinary_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "a" / "x.json", {"k": 1})
        writer = RunWriter(tmp_path / "b", epoch_ms=lambda t: t // 1_000_000, t0_ns=0)
        writer.log("bridge", "-", {"type": "x"}, 5)
        writer.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b" / "events.jsonl").stat().st_mode) == 0o644
    assert not list((tmp_path / "a").glob(".*.tmp"))
