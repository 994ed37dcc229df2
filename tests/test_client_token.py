"""Short-lived tokens: the key is POSTed to a (fake) token endpoint on 127.0.0.1 and only the
token reaches the WebSocket URL (``docs/hydra-facts.md``, "Connection and authentication")."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from types import TracebackType
from typing import Any

import pytest
from needs import needs_speech

from hydralab.client import (
    HydraAuthError,
    HydraClient,
    HydraConfig,
    HydraConnectionError,
    HydraTokenError,
)
from hydralab.emulator import Emulator, EmulatorConfig
from hydralab.script import AssistantSteps, Script, Speak
from hydralab.secrets import redact

KEY = "sk-long-lived-key-5566778899"
TOKEN = "tok-short-lived-aabbccddeeff"
SCRIPT = Script(greeting="Hi.", user_turns=(), assistant_turns=(AssistantSteps((Speak("Hi."),)),))


class TokenEndpoint:
    """Minimal HTTP/1.1 server answering ``POST /waves/v1/auth/token`` as ``mode`` says."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TokenEndpoint:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/waves/v1/auth/token"
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _answer(self, auth: str, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.mode == "ok":
            if auth != f"Bearer {KEY}":
                return 401, b'{"error":"invalid api key"}'
            return 200, json.dumps(
                {"access_token": TOKEN, "expires_in": body["ttl_seconds"]}
            ).encode()
        if self.mode == "reject":
            return 401, b'{"error":"invalid api key"}'
        if self.mode == "500-echo":  # a careless server echoing the credentials
            return 500, json.dumps({"error": "boom", "auth": auth, "key": KEY}).encode()
        if self.mode == "no-token":
            return 200, b'{"token_type":"bearer"}'
        return 200, b"<html>not json</html>"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:] if h)
        }
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body = json.loads(raw) if raw else {}
        self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
        status, payload = self._answer(headers.get("authorization", ""), body)
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()


def _cfg(ws_url: str, token_url: str, **kw: Any) -> HydraConfig:
    return HydraConfig(
        url=ws_url,
        use_token=True,
        token_url=token_url,
        generate_initial_response=False,
        **kw,
    )


@needs_speech
async def test_only_the_token_reaches_the_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logged: list[dict[str, Any]] = []
    async with (
        TokenEndpoint() as ep,
        Emulator(SCRIPT, config=EmulatorConfig(expected_api_key=TOKEN)) as emu,
    ):
        cfg = _cfg(emu.url, ep.url, token_ttl_s=120)
        client = HydraClient(cfg, api_key=KEY, frame_logger=lambda d, f, t: logged.append(f))
        await client.connect()  # the emulator accepts the token and nothing else
        assert client.session_id == emu.sessions[0].session_id
        await client.close()
        await client.connect()  # a reconnect mints a fresh token
        await client.close()
        assert client.stats.tokens_minted == 2 and len(emu.sessions) == 2
        req = ep.requests[0]
        assert (req["method"], req["path"]) == ("POST", "/waves/v1/auth/token")
        assert req["headers"]["authorization"] == f"Bearer {KEY}"
        assert req["body"] == {"ttl_seconds": 120}
        # The long-lived key itself is refused by this server: the sessions used the token.
        with pytest.raises(HydraAuthError):
            await HydraClient(replace(cfg, use_token=False), api_key=KEY).connect()
        assert len(emu.sessions) == 2
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "api_key=***" in text  # websockets' request line, redacted
    assert KEY not in text and TOKEN not in text
    assert KEY not in json.dumps(logged) and TOKEN not in json.dumps(logged)
    assert TOKEN not in repr(client) and redact(f"url?api_key=x {TOKEN}.") == "url?api_key=*** ***."


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        ("reject", HydraAuthError, r"token endpoint rejected the API key \(HTTP 401\)"),
        ("500-echo", HydraTokenError, r"HTTP 500: .*boom"),
        ("no-token", HydraTokenError, "no access_token"),
        ("not-json", HydraTokenError, "no access_token"),
    ],
)
async def test_token_endpoint_errors_are_clear_and_secret_free(
    mode: str, error: type[Exception], match: str
) -> None:
    async with TokenEndpoint(mode) as ep:
        # Nothing listens on port 9: reaching the WebSocket step would be a different error.
        client = HydraClient(_cfg("ws://127.0.0.1:9", ep.url), api_key=KEY)
        with pytest.raises(error, match=match) as info:
            await client.connect()
    msg = str(info.value)
    assert KEY not in msg and TOKEN not in msg and info.value.__cause__ is None
    assert len(ep.requests) == 1


async def test_unreachable_token_endpoint() -> None:
    client = HydraClient(_cfg("ws://127.0.0.1:9", "http://127.0.0.1:9/token"), api_key=KEY)
    with pytest.raises(
        HydraTokenError, match=r"cannot get a token from http://127\.0\.0\.1:9/"
    ) as i:
        await client.connect()
    assert isinstance(i.value, HydraConnectionError) and KEY not in str(i.value)


@needs_speech
async def test_token_refused_at_the_upgrade_is_an_auth_error() -> None:
    async with (
        TokenEndpoint() as ep,
        Emulator(SCRIPT, config=EmulatorConfig(expected_api_key="some-other-token")) as emu,
    ):
        with pytest.raises(
            HydraAuthError,
            match=r"rejected the short-lived token \(HTTP 401 at the WebSocket upgrade",
        ) as info:
            await HydraClient(_cfg(emu.url, ep.url), api_key=KEY).connect()
    assert KEY not in str(info.value) and TOKEN not in str(info.value)


async def test_token_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMALLEST_API_KEY", raising=False)
    async with TokenEndpoint() as ep:
        with pytest.raises(HydraAuthError, match="needs an API key"):
            await HydraClient(_cfg("ws://127.0.0.1:9", ep.url)).connect()
    assert ep.requests == []


@pytest.mark.parametrize("ttl", [29, 901, 30.5, True, "300"])
def test_token_ttl_is_validated(ttl: Any) -> None:
    with pytest.raises(ValueError, match="from 30 to 900"):
        HydraConfig(use_token=True, token_ttl_s=ttl)
    assert HydraConfig(token_ttl_s=30).token_ttl_s + HydraConfig(token_ttl_s=900).token_ttl_s


def test_default_token_settings() -> None:
    cfg = HydraConfig()
    assert (cfg.use_token, cfg.token_ttl_s) == (False, 300)
    assert cfg.token_url == "https://api.smallest.ai/waves/v1/auth/token"
