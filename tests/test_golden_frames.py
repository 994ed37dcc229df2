"""Golden frames: Smallest's own examples of the Hydra socket against hydralab's parser and client.

The examples come from the AsyncAPI description of the socket (``hydra-ws.yaml``) and from the
public Hydra doc pages ("Managing sessions", "Tool calling", "Turn detection & barge-in",
"Errors & reconnection", "WebSocket connection", "Audio I/O") in the ``shared`` folder beside
the checkout; the module is skipped when that folder is absent.

======================================  =========================================================
example source                          what is checked
======================================  =========================================================
hydra-ws.yaml ``examples[].payload``     parsed; server frames: ``parse_event`` class, every field
                                        and typed accessor round-trips, schema; client frames:
                                        built by hydralab, compared key by key
``.mdx`` fenced ``json`` blocks (valid)  the same, by the block's ``type``
``.mdx`` ``json`` blocks with ``...`` /  counted as not JSON; repaired (placeholders -> empty,
``|`` / comments                         first alternative) and used for key shapes only
``.mdx`` ``python`` blocks:              the frames the docs' sample code sends
``json.dumps({...})`` with a ``type``    (``input_audio_buffer.append``, ``conversation.item
                                        .create``, ``response.create``): keys and constants,
                                        expressions as "any value"
frames hydralab's client sends          captured by a server on 127.0.0.1: compared with the
                                        examples above and validated against the spec's schema
======================================  =========================================================

Key differences allowed on client frames (:data:`ALLOWED_EXTRA`, :data:`ALLOWED_MISSING`): a
top-level ``event_id`` string (the spec's optional client id, echoed in errors), an explicit
``generate_initial_response`` where the example leaves it to the server, and no ``tools`` key for
an empty tool list.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import json
import re
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asyncapi import client_schemas, server_schemas, validate
from websockets.asyncio.server import ServerConnection, serve

from hydralab.client import HydraClient, HydraConfig
from hydralab.protocol import hydra as h

SHARED = Path(__file__).resolve().parents[2] / "shared"
SPEC_FILE = SHARED / "reference" / "hydra-ws.yaml"
DOCS = SHARED / "reference" / "smallest-docs"

pytestmark = pytest.mark.skipif(
    not (SPEC_FILE.exists() and DOCS.is_dir()), reason=f"{SHARED} not present"
)

KEY = "sk-golden-frames-test-0123"
CLIENT_TYPES = {c.type: c for c in h.CLIENT_EVENTS}
SERVER_TYPES = {c.type: c for c in h.SERVER_EVENTS}
MIN_PARSED = 10
"""Strictly valid JSON examples with a wire ``type`` (2 in the spec + 9 on the pages today)."""

ALLOWED_EXTRA: dict[str, str] = {
    "event_id": "optional client event id (spec: 'Optional client-generated event identifier', "
    "echoed as error.event_id); hydralab may put one on every frame",
    "session.generate_initial_response": "HydraConfig always states it explicitly (default "
    "True) instead of leaving it to the server's default",
}
"""Keys our client frame may have that the example lacks (path -> reason)."""
ALLOWED_MISSING: dict[str, str] = {
    "session.tools": "an empty tool list is not sent (no tools = the server's default)",
}
"""Keys an example has that our client frame may omit, and only when the example's value is
empty (path -> reason)."""


class Expr:
    """A non-literal value in a doc's code sample (``base64.b64encode(pcm).decode()``)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"


@dataclass(frozen=True)
class Example:
    source: str
    frame: dict[str, Any]
    strict: bool
    """Valid JSON as published (else repaired or taken from code: key shapes only)."""


# ---------------------------------------------------------------- collecting the examples


def _spec_examples() -> list[Example]:
    import yaml

    spec = yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))
    out = []
    for name, msg in spec["channels"]["hydraSession"]["messages"].items():
        for i, ex in enumerate(msg.get("examples") or []):
            src = f"hydra-ws.yaml messages.{name}.examples[{i}] ({ex.get('name', '')})"
            out.append(Example(src, ex["payload"], True))
    return out


_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)


def _blocks(lang: str) -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.glob("*.mdx")):
        text = page.read_text(encoding="utf-8")
        for n, m in enumerate(_FENCE.finditer(text), 1):
            if m["lang"] == lang:
                out.append((f"{page.name} block {n}", textwrap.dedent(m["body"])))
    return out


def _repair(text: str) -> str:
    """The pages' placeholders made JSON: comments dropped, ``{ ... }`` -> ``{}``, ``"a" | "b"``
    -> ``"a"``."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"\{\s*\.\.\.\s*\}", "{}", text)
    return re.sub(r'("[^"]*")(\s*\|\s*"[^"]*")+', r"\1", text)


@dataclass(frozen=True)
class DocJson:
    examples: list[Example]
    blocks: int
    not_json: list[str]


def _doc_json() -> DocJson:
    examples, not_json = [], []
    blocks = _blocks("json")
    for src, body in blocks:
        try:
            examples.append(Example(src, json.loads(body), True))
        except json.JSONDecodeError:
            not_json.append(src)
            with contextlib.suppress(json.JSONDecodeError):
                examples.append(Example(f"{src} (repaired)", json.loads(_repair(body)), False))
    return DocJson(examples, len(blocks), not_json)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k}
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Constant):
        return node.value
    return Expr(ast.unparse(node))


def _code_examples() -> list[Example]:
    """Frames the pages' Python samples send: ``json.dumps({"type": ..., ...})``."""
    out = []
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    for src, body in _blocks("python"):
        try:
            tree = compile(body, src, "exec", flags=flags)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "json.dumps"
                and node.args
                and isinstance(node.args[0], ast.Dict)
            ):
                frame = _literal(node.args[0])
                if isinstance(frame.get("type"), str):
                    out.append(Example(f"{src} (python)", frame, False))
    return out


@pytest.fixture(scope="module")
def doc_json() -> DocJson:
    return _doc_json()


@pytest.fixture(scope="module")
def examples(doc_json: DocJson) -> list[Example]:
    return _spec_examples() + doc_json.examples + _code_examples()


def _of(examples: list[Example], types: dict[str, Any]) -> list[Example]:
    return [e for e in examples if e.frame.get("type") in types]


# ---------------------------------------------------------------- the inventory


def test_examples_are_found(examples: list[Example], doc_json: DocJson) -> None:
    strict = [e for e in examples if e.strict and isinstance(e.frame.get("type"), str)]
    assert len(strict) >= MIN_PARSED, [e.source for e in strict]
    assert doc_json.blocks >= 12
    # Blocks with placeholders (``{ ... }``, ``"a" | "b"``, comments) are not JSON as published.
    assert 1 <= len(doc_json.not_json) <= doc_json.blocks - 8, doc_json.not_json
    types = {e.frame.get("type") for e in examples}
    # Every client type has at least one documented example (JSON, repaired or code).
    assert set(CLIENT_TYPES) <= types, set(CLIENT_TYPES) - types
    assert {"session.created", "session.configured", "response.done", "error"} <= types
    unknown = types - set(CLIENT_TYPES) - set(SERVER_TYPES)
    assert unknown <= {"message"}, unknown  # the ConversationItem shape, not a frame


# ---------------------------------------------------------------- server -> client


def _check_parsed(ex: Example) -> None:
    frame = ex.frame
    ev = h.parse_event(json.loads(json.dumps(frame)))
    cls = SERVER_TYPES[frame["type"]]
    assert type(ev) is cls, f"{ex.source}: {type(ev).__name__}, not {cls.__name__}"
    for key, value in frame.items():
        if key != "type":
            assert getattr(ev, key) == value, f"{ex.source}: {key}"
    assert ev.to_dict() == frame, ex.source
    if isinstance(ev, h.ResponseDone):
        resp = frame["response"]
        assert ev.response_id == resp.get("id")
        assert ev.status == resp.get("status", "completed")
        details = resp.get("status_details") or {}
        assert ev.reason == details.get("reason")
        if "usage" in resp:
            assert ev.usage == resp["usage"]
        if "output" in resp:
            assert ev.response["output"] == resp["output"]
            assert ev.function_calls == [
                i for i in resp["output"] if i.get("type") == "function_call"
            ]
    elif isinstance(ev, h.ErrorEvent):
        err = frame["error"]
        assert ev.code == err["code"]
        assert ev.message == err.get("message", "")
        for key in ("param", "event_id", "type"):
            assert ev.error.get(key) == err.get(key), f"{ex.source}: error.{key}"
    elif isinstance(ev, h.SessionConfigured):
        assert ev.session == frame["session"]
        rate = frame["session"].get("output_audio_sample_rate", h.DEFAULT_OUTPUT_RATE_HZ)
        assert ev.output_rate_hz == rate
    elif isinstance(ev, h.SessionCreated):
        assert ev.session_id == frame["session_id"] and ev.event_id == frame["event_id"]
    elif isinstance(ev, h.ResponseCreated | h.ResponseOutputAudioDelta | h.ResponseOutputAudioDone):
        assert ev.response_id == (frame.get("response") or {}).get("id", frame.get("response_id"))


def test_server_examples_parse_and_round_trip(examples: list[Example]) -> None:
    server = _of(examples, SERVER_TYPES)
    assert len(server) >= 6
    for ex in server:
        _check_parsed(ex)


def test_server_examples_fit_the_schema(examples: list[Example]) -> None:
    schemas = server_schemas()
    for ex in _of(examples, SERVER_TYPES):
        if ex.strict:
            validate(schemas[ex.frame["type"]], ex.frame)


# ---------------------------------------------------------------- client -> server


def _compare(example: Any, ours: Any, path: str, source: str) -> None:
    """Same keys at every level (but :data:`ALLOWED_EXTRA` / :data:`ALLOWED_MISSING`), same
    JSON types, same constants; an :class:`Expr` in the example matches any value."""
    where = f"{source}: {path or '<frame>'}"
    if isinstance(example, Expr):
        return
    if isinstance(example, dict):
        assert isinstance(ours, dict), where
        for key in set(ours) - set(example):
            sub = f"{path}.{key}" if path else key
            assert sub in ALLOWED_EXTRA, f"{where}: extra key {key!r}"
            if key == "event_id":
                assert isinstance(ours[key], str) and ours[key], where
        for key in set(example) - set(ours):
            sub = f"{path}.{key}" if path else key
            assert sub in ALLOWED_MISSING and not example[key], f"{where}: missing key {key!r}"
        for key in set(example) & set(ours):
            _compare(example[key], ours[key], f"{path}.{key}" if path else key, source)
        return
    if isinstance(example, list):
        assert isinstance(ours, list) and len(ours) == len(example), where
        for i, (a, b) in enumerate(zip(example, ours, strict=True)):
            _compare(a, b, f"{path}[{i}]", source)
        return
    assert type(ours) is type(example), f"{where}: {type(ours).__name__} vs {type(example)}"
    assert ours == example, where


def _schemas_allowing_event_id() -> dict[str, dict[str, Any]]:
    schemas = client_schemas()
    for s in schemas.values():
        s["properties"].setdefault("event_id", {"type": "string"})
    return schemas


@contextlib.asynccontextmanager
async def capture() -> AsyncIterator[tuple[str, list[list[dict[str, Any]]]]]:
    """A server on 127.0.0.1 that completes the handshake and keeps every client frame."""
    sessions: list[list[dict[str, Any]]] = []

    async def handler(ws: ServerConnection) -> None:
        frames: list[dict[str, Any]] = []
        sessions.append(frames)
        await ws.send(json.dumps({"type": "session.created", "session_id": "s"}))
        with contextlib.suppress(Exception):
            async for msg in ws:
                d = json.loads(msg)
                frames.append(d)
                if d["type"] == "session.configure":
                    conf = {"type": "session.configured", "session": d["session"]}
                    await ws.send(json.dumps(conf))

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}", sessions


async def _settle(frames: list[dict[str, Any]], n: int) -> None:
    async with asyncio.timeout(5):
        while len(frames) < n:
            await asyncio.sleep(0.005)


def _config_for(example_session: dict[str, Any], url: str) -> HydraConfig:
    kw: dict[str, Any] = {
        "instructions": example_session.get("instructions", ""),
        "voice": example_session.get("voice"),
        "tools": tuple(example_session.get("tools") or ()),
    }
    if "generate_initial_response" in example_session:
        kw["generate_initial_response"] = example_session["generate_initial_response"]
    return HydraConfig(url=url, model="hydra-v1.1", **kw)


async def test_our_session_configure_matches_every_example(examples: list[Example]) -> None:
    configures = [
        e
        for e in examples
        if e.frame["type"] == "session.configure" and isinstance(e.frame["session"], dict)
    ]
    assert len(configures) >= 5
    schemas = _schemas_allowing_event_id()
    async with capture() as (url, sessions):
        for ex in configures:
            cfg = _config_for(ex.frame["session"], url)
            assert cfg.session_payload() == _configure_payload(ex.frame["session"])
            async with HydraClient(cfg, api_key=KEY):
                pass
            frames = sessions[-1]
            await _settle(frames, 1)
            sent = frames[0]
            _compare(ex.frame, sent, "", ex.source)
            validate(schemas["session.configure"], sent)


def _configure_payload(example_session: dict[str, Any]) -> dict[str, Any]:
    """What HydraConfig is expected to send for an example's ``session``."""
    s = dict(example_session)
    if not s.get("tools"):
        s.pop("tools", None)
    s.setdefault("instructions", "")
    s.setdefault("generate_initial_response", True)
    return s


async def test_our_other_client_frames_match_the_examples(examples: list[Example]) -> None:
    by_type: dict[str, list[Example]] = {}
    for ex in _of(examples, CLIENT_TYPES):
        by_type.setdefault(ex.frame["type"], []).append(ex)
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Look up current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    pcm = (np.arange(320, dtype=np.int16) * 97 - 15_000).astype(np.int16)  # 20 ms, 640 bytes
    call_output = h.ConversationItemCreate.function_call_output(
        "call_123", json.dumps({"temperature_c": 21})
    )
    cfg_kw: dict[str, Any] = {"instructions": "Be brief."}
    async with (
        capture() as (url, sessions),
        HydraClient(HydraConfig(url=url, **cfg_kw), api_key=KEY) as c,
    ):
        await c.send(h.SessionUpdate(session={"tools": [tool]}))
        await c.send_audio(pcm)
        await c.send(call_output)
        await c.send(h.ResponseCreate())
        await c.send(h.ResponseCancel())
        frames = sessions[-1]
        await _settle(frames, 6)
    ours = {f["type"]: f for f in frames[1:]}
    assert list(ours) == [
        "session.update",
        "input_audio_buffer.append",
        "conversation.item.create",
        "response.create",
        "response.cancel",
    ]
    for wire_type, sent in ours.items():
        assert by_type.get(wire_type), f"no documented example of {wire_type}"
        for ex in by_type[wire_type]:
            if wire_type == "session.update":
                _compare_tool_shape(ex, sent)
            else:
                _compare(ex.frame, sent, "", ex.source)
    # The constants the pages insist on.
    assert ours["conversation.item.create"]["item"]["type"] == "function_call_output"
    assert isinstance(ours["conversation.item.create"]["item"]["output"], str)
    assert set(ours["conversation.item.create"]["item"]) == {"type", "call_id", "output"}
    audio = base64.b64decode(ours["input_audio_buffer.append"]["audio"], validate=True)
    assert audio == pcm.astype("<i2").tobytes()  # PCM16 little-endian, 16 kHz mono, as sent
    assert set(ours["response.create"]) <= {"type", "event_id"}  # the docs' bare frame
    schemas = _schemas_allowing_event_id()
    for sent in ours.values():
        validate(schemas[sent["type"]], sent)


def _compare_tool_shape(ex: Example, sent: dict[str, Any]) -> None:
    """``session.update``'s only example elides the tool's ``parameters`` (``{ ... }``): keys
    and constants, the parameters' contents aside."""
    assert not ex.strict
    example_tool = ex.frame["session"]["tools"][0]
    our_tool = sent["session"]["tools"][0]
    assert set(our_tool) == set(example_tool), ex.source
    assert our_tool["type"] == example_tool["type"] == "function"
    assert our_tool["name"] == example_tool["name"]
    assert set(sent) - {"event_id"} == set(ex.frame) and set(sent["session"]) == {"tools"}
