"""AsyncAPI helpers shared by the tests: payload schemas of ``../shared/reference/hydra-ws.yaml``.

``$ref``s are inlined, the top level is made strict (``additionalProperties: false``) and only
the extras listed below (``docs/hydra-facts.md``) are allowed. Tests that use these skip when
the ``../shared`` checkout is absent (:data:`SPEC_PRESENT`).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Literal

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "hydra-ws.yaml"
SPEC_PRESENT = SPEC.exists()
SKIP_REASON = f"{SPEC} not present (no ../shared checkout)"

_PREFIX = "#/components/schemas/"


@functools.cache
def _spec() -> dict[str, Any]:
    import yaml

    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return spec


def resolve(node: Any) -> Any:
    """``node`` with every ``#/components/schemas/...`` ``$ref`` inlined (recursively)."""
    comps = _spec()["components"]["schemas"]
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith(_PREFIX), ref
            return resolve(comps[ref[len(_PREFIX) :]])
        return {k: resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(x) for x in node]
    return node


def message_schemas(action: Literal["send", "receive"]) -> dict[str, dict[str, Any]]:
    """Resolved payload schema per wire ``type`` of the operations with ``action``.

    ``send`` = client -> server, ``receive`` = server -> client (the spec's point of view is
    the client's).
    """
    spec = _spec()
    messages = spec["channels"]["hydraSession"]["messages"]
    names = {
        ref["$ref"].rsplit("/", 1)[1]
        for op in spec["operations"].values()
        if op["action"] == action
        for ref in op["messages"]
    }
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        payload = resolve(messages[name]["payload"])
        (wire_type,) = payload["properties"]["type"]["enum"]
        out[wire_type] = payload
    return copy.deepcopy(out)


def validate(schema: dict[str, Any], frame: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``frame`` fits ``schema`` (Draft 7)."""
    import jsonschema  # type: ignore[import-untyped]

    jsonschema.Draft7Validator(schema).validate(frame)


def server_schemas() -> dict[str, dict[str, Any]]:
    """Payload schema per server->client ``type``, top level made strict.

    Extras (``docs/hydra-facts.md``): ``response.output_audio_transcript.delta``,
    ``warning``, ``output_audio_sample_rate`` in ``session.configured.session`` (an integer,
    or its decimal string: the emulator's ``rate_announcement="string"`` variant), and
    ``item_id``/``output_index`` on ``response.function_call_arguments.delta``.
    """
    out = message_schemas("receive")
    out["response.output_audio_transcript.delta"] = {
        "type": "object",
        "required": ["type", "delta"],
        "properties": {
            "type": {"const": "response.output_audio_transcript.delta"},
            "event_id": {"type": "string"},
            "response_id": {"type": "string"},
            "item_id": {"type": "string"},
            "delta": {"type": "string"},
        },
    }
    out["warning"] = {
        "type": "object",
        "properties": {
            "type": {"const": "warning"},
            "event_id": {"type": "string"},
            "code": {"type": "string"},
            "message": {"type": "string"},
        },
    }
    for schema in out.values():
        schema["additionalProperties"] = False
    extra_args = {"item_id": {"type": "string"}, "output_index": {"type": "integer"}}
    out["response.function_call_arguments.delta"]["properties"].update(extra_args)
    conf = out["session.configured"]["properties"]["session"]
    conf["properties"]["output_audio_sample_rate"] = {
        "anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[1-9][0-9]*$"}]
    }
    conf["additionalProperties"] = False
    return out


def client_schemas() -> dict[str, dict[str, Any]]:
    """Payload schema per client->server ``type``, strict: no key the spec does not list.

    Extras allowed: the negotiated ``output_audio_sample_rate`` in
    ``session.configure.session`` (``docs/hydra-facts.md``), and a client ``event_id``
    on every frame — the spec lists it on ``session.configure`` only, the "Errors &
    reconnection" page says to put one on every outbound frame (and its ``invalid_audio``
    example echoes one from an audio frame). The ``item`` of ``conversation.item.create`` and
    the ``session`` of ``session.configure`` are strict too.
    """
    out = message_schemas("send")
    for schema in out.values():
        schema["additionalProperties"] = False
        schema["properties"].setdefault("event_id", {"type": "string"})
    session = out["session.configure"]["properties"]["session"]
    session["properties"]["output_audio_sample_rate"] = {"type": "integer", "minimum": 1}
    session["additionalProperties"] = False
    out["conversation.item.create"]["properties"]["item"]["additionalProperties"] = False
    return out
