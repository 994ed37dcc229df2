"""The ``llm`` caller policy against a fake chat-completions server on 127.0.0.1 (no network).

The server answers in the OpenAI chat-completions shape (``choices[0].message`` with
``content`` and ``tool_calls``, ``usage``), scripted per test: errors with ``Retry-After``,
5xx, slow replies, malformed JSON, 401 echoing the key. It records every request so the prompt
the model would see can be checked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from local_http import Answer as HttpAnswer
from local_http import LocalHttpServer

from hydralab.callers import (
    END_CALL_TOOL,
    LlmCaller,
    LlmCallerConfig,
    LlmCallerConfigError,
    build_messages,
    load_persona,
)
from hydralab.callers.personas import BEHAVIORS_FILE, PERSONAS
from hydralab.policy import CallerPolicy, CallerPolicyError, Exchange, Heard
from hydralab.records import Record, load_record

KEY = "sk-test-SECRET-7c1d4f9a2b"
EVA_DIR = Path(__file__).parents[1].parent / "shared" / "eva"
EVA_DATA = (EVA_DIR / "data").is_dir()


# ---------------------------------------------------------------------------------- fake server
@dataclass
class Answer:
    status: int = 200
    body: Any = None  # dict -> JSON; str -> as is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def completion(
    content: str | None = "Hi, I need to change my flight.",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str = "stop",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "fake-model-0",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 12, "total_tokens": 912},
    }


def end_call(args: str = "{}") -> dict[str, Any]:
    return {
        "id": "call_1",
        "type": "function",
        "function": {"name": "end_call", "arguments": args},
    }


class FakeLlm(LocalHttpServer):
    """Scripted answers (the last one repeats); records each request's headers and JSON."""

    def __init__(self) -> None:
        self.answers: list[Answer] = [Answer(body=completion())]
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def respond(self, path: str, headers: dict[str, str], body: bytes) -> HttpAnswer:
        with self._lock:
            self.requests.append((path, headers, json.loads(body)))
            ans = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        data = (json.dumps(ans.body) if isinstance(ans.body, dict) else ans.body or "").encode()
        return HttpAnswer(ans.status, data, dict(ans.headers), ans.delay_s)

    def script(self, *answers: Answer) -> None:
        self.answers = list(answers)


@pytest.fixture
def server() -> Iterator[FakeLlm]:
    fake = FakeLlm()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


@pytest.fixture
def record() -> Record:
    return load_record()  # hydralab's own airline record HL-AIR-001


class Sleeps(list[float]):
    def __call__(self, s: float) -> None:
        self.append(s)


def make(
    server: FakeLlm,
    record: Record,
    sleeps: Sleeps | None = None,
    *,
    persona: str = "default",
    **config: Any,
) -> LlmCaller:
    config.setdefault("max_retries", 3)
    config.setdefault("seed", 1)
    return LlmCaller(
        record,
        config=LlmCallerConfig(base_url=server.url, model="fake-model", **config),
        sleep=sleeps if sleeps is not None else Sleeps(),
        persona=persona,
    )


def _scalars(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _scalars(v)
    elif isinstance(value, list):
        for v in value:
            yield from _scalars(v)
    else:
        yield str(value)


GREETING = Heard(0, "Thank you for calling. How can I help you today?", source="script")


# ---------------------------------------------------------------------------------- prompt
def test_prompt_and_reply(server: FakeLlm, record: Record, key: str) -> None:
    with make(server, record) as caller:
        policy: CallerPolicy = caller
        reply = policy.decide(GREETING, [])
    assert reply.text == "Hi, I need to change my flight." and not reply.end_call
    assert reply.reason == "llm"
    (path, headers, body), *_ = server.requests
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {KEY}"
    assert body["model"] == "fake-model" and body["seed"] == 1 and body["temperature"] == 0.7
    assert body["tools"] == [END_CALL_TOOL] and body["tools"][0]["function"]["name"] == "end_call"
    system, heard = body["messages"]
    assert system["role"] == "system" and heard == {"role": "user", "content": GREETING.text}
    prompt = system["content"]
    goal = record.user_goal
    assert goal["high_level_user_goal"] in prompt
    for value in _scalars(goal["information_required"]):
        assert value in prompt, value
    for item in goal["decision_tree"]["must_have_criteria"]:
        assert item in prompt
    assert goal["decision_tree"]["resolution_condition"] in prompt
    assert record.user_config["name"] in prompt
    assert record.user_config["user_persona"] in prompt  # default persona: the record's text
    assert record.current_date_time in prompt and record.starting_utterance in prompt
    assert "end_call" in prompt and "{" + "edge_cases}" not in prompt
    assert caller.prompt_source == "hydralab" and caller.persona_source == "record"
    (call,) = caller.calls
    assert call["ok"] and call["requests"] == 1 and call["retries"] == 0
    assert call["prompt_tokens"] == 900 and call["total_tokens"] == 912
    assert call["model"] == "fake-model-0" and call["turn"] == 0 and call["latency_ms"] > 0
    d = caller.describe()
    assert d["total_tokens"] == 912 and d["api_key_set"] and KEY not in json.dumps(d)


def test_persona_description_without_eva(server: FakeLlm, record: Record, key: str) -> None:
    with make(server, record, persona="elderly_slow") as caller:
        caller.decide(GREETING, [])
    prompt = server.requests[0][2]["messages"][0]["content"]
    assert PERSONAS["elderly_slow"].description in prompt
    assert record.user_config["user_persona"] not in prompt
    assert caller.persona_source == "hydralab"


def test_persona_text_from_an_eva_checkout(
    server: FakeLlm, record: Record, key: str, tmp_path: Path
) -> None:
    path = tmp_path / BEHAVIORS_FILE
    path.parent.mkdir(parents=True)
    path.write_text("aggressive_impatient: Fake angry caller text.\n", encoding="utf-8")
    caller = LlmCaller(
        record,
        config=LlmCallerConfig(base_url=server.url),
        persona="aggressive_impatient",
        eva_dir=tmp_path,
    )
    with caller:
        caller.decide(GREETING, [])
    prompt = server.requests[0][2]["messages"][0]["content"]
    assert "Fake angry caller text." in prompt and caller.persona_source == "eva"
    assert caller.prompt_source == "hydralab"  # the checkout has no simulation.yaml
    assert caller.persona.rate_wpm == PERSONAS["aggressive_impatient"].rate_wpm


@pytest.mark.skipif(not EVA_DATA, reason="shared EVA data not present")
def test_eva_record_uses_evas_template(server: FakeLlm, key: str) -> None:
    rec = load_record("1.1.2", data_dir=EVA_DIR)
    with make(server, rec) as caller:
        caller.decide(GREETING, [])
    prompts = EVA_DIR / "configs" / "prompts" / "simulation.yaml"
    assert caller.prompt_source == f"{prompts}#user_simulator.system_prompt_airline"
    prompt = server.requests[0][2]["messages"][0]["content"]
    import yaml

    template = yaml.safe_load(prompts.read_text())["user_simulator"]["system_prompt_airline"]
    assert prompt.splitlines()[0] == template.splitlines()[0]
    for field_name in ("must_have_criteria", "information_required", "edge_cases"):
        assert "{" + field_name + "}" not in prompt
    assert rec.user_goal["high_level_user_goal"] in prompt
    for value in _scalars(rec.user_goal["information_required"]):
        assert value in prompt, value
    assert rec.starting_utterance in prompt and rec.current_date_time in prompt
    assert rec.user_config["user_persona"] in prompt


def test_eva_prompt_required_but_absent(record: Record, key: str) -> None:
    with pytest.raises(LlmCallerConfigError, match="no EVA user-simulator template"):
        LlmCaller(record, config=LlmCallerConfig(prompt="eva"))


def test_conversation_roles(server: FakeLlm, record: Record, key: str) -> None:
    history = [
        Exchange("assistant", GREETING.text),
        Exchange("caller", record.starting_utterance),
        Exchange("assistant", ""),
    ]
    with make(server, record) as caller:
        caller.decide(Heard(2, "May I have your code", interrupted=True), history)
    msgs = server.requests[0][2]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "user"]
    assert msgs[2]["content"] == record.starting_utterance
    assert msgs[3]["content"] == "[inaudible]" and msgs[4]["content"].endswith("—")
    assert build_messages("S", [], Heard(0, ""))[-1] == {"role": "user", "content": "[inaudible]"}


# ---------------------------------------------------------------------------------- end_call
def test_end_call_tool_ends_the_call(server: FakeLlm, record: Record, key: str) -> None:
    server.script(
        Answer(body=completion(None, tool_calls=[end_call('{"last_line": "Thanks, bye."}')])),
        Answer(body=completion("Great, thank you. Goodbye.", tool_calls=[end_call()])),
        Answer(body=completion("", tool_calls=[end_call("not json")])),
    )
    with make(server, record) as caller:
        first = caller.decide(Heard(5, "You are all set."), [])
        second = caller.decide(Heard(5, "You are all set."), [])
        third = caller.decide(Heard(5, "You are all set."), [])
    assert first.end_call and first.text == "Thanks, bye."
    assert second.end_call and second.text == "Great, thank you. Goodbye."
    assert third.end_call and third.text == ""
    assert all(c["end_call"] for c in caller.calls)


def test_literal_opening_skips_the_request(server: FakeLlm, record: Record, key: str) -> None:
    with make(server, record, literal_opening=True) as caller:
        reply = caller.decide(GREETING, [])
        assert reply.text == record.starting_utterance and not server.requests
        caller.decide(Heard(1, "Sure."), [Exchange("caller", reply.text)])
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------- retries
def test_429_with_retry_after_then_success(server: FakeLlm, record: Record, key: str) -> None:
    server.script(
        Answer(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "2"}),
        Answer(body=completion("Sure.")),
    )
    sleeps = Sleeps()
    with make(server, record, sleeps) as caller:
        assert caller.decide(GREETING, []).text == "Sure."
    assert sleeps == [2.0] and len(server.requests) == 2
    assert caller.calls[0]["retries"] == 1 and caller.calls[0]["requests"] == 2


def test_retry_after_too_long_gives_up(server: FakeLlm, record: Record, key: str) -> None:
    server.script(Answer(429, {"error": {"message": "slow down"}}, {"Retry-After": "120"}))
    with make(server, record) as caller, pytest.raises(CallerPolicyError, match="Retry-After"):
        caller.decide(GREETING, [])
    assert len(server.requests) == 1


def test_500_twice_then_success(server: FakeLlm, record: Record, key: str) -> None:
    server.script(
        Answer(500, {"error": {"message": "boom"}}),
        Answer(503, "upstream down"),
        Answer(body=completion("Yes.")),
    )
    sleeps = Sleeps()
    with make(server, record, sleeps, backoff_base_s=0.5, backoff_max_s=8.0) as caller:
        assert caller.decide(GREETING, []).text == "Yes."
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter, doubling cap


def test_5xx_exhausts_retries(server: FakeLlm, record: Record, key: str) -> None:
    server.script(Answer(502, "bad gateway"))
    with make(server, record, max_retries=2) as caller:
        with pytest.raises(CallerPolicyError, match=r"HTTP 502.*after 3 attempts"):
            caller.decide(GREETING, [])
        assert not caller.calls[0]["ok"] and "HTTP 502" in caller.calls[0]["error"]
    assert len(server.requests) == 3


def test_timeout_retried_then_error(server: FakeLlm, record: Record, key: str) -> None:
    server.script(Answer(body=completion(), delay_s=1.0))
    sleeps = Sleeps()
    with make(server, record, sleeps, timeout_s=0.2, max_retries=1) as caller:
        t0 = time.monotonic()
        with pytest.raises(CallerPolicyError, match=r"timeout.*after 2 attempts"):
            caller.decide(GREETING, [])
    assert time.monotonic() - t0 < 2.0
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_timeout_then_success(server: FakeLlm, record: Record, key: str) -> None:
    server.script(Answer(body=completion(), delay_s=1.0), Answer(body=completion("OK.")))
    with make(server, record, timeout_s=0.2) as caller:
        assert caller.decide(GREETING, []).text == "OK."


# ---------------------------------------------------------------------------------- failures
def test_malformed_json(server: FakeLlm, record: Record, key: str) -> None:
    server.script(Answer(200, "{not json"))
    with make(server, record) as caller, pytest.raises(CallerPolicyError, match="not JSON"):
        caller.decide(GREETING, [])
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"choices": []}, "no choices"),
        ({"object": "chat.completion"}, "no choices"),
        ({"choices": [{"index": 0}]}, "no message"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_shapes(server: FakeLlm, record: Record, key: str, body: Any, match: str) -> None:
    server.script(Answer(200, body))
    with make(server, record) as caller, pytest.raises(CallerPolicyError, match=match):
        caller.decide(GREETING, [])


def test_empty_content_retried_once(server: FakeLlm, record: Record, key: str) -> None:
    server.script(Answer(body=completion("  ")), Answer(body=completion("Hello?")))
    with make(server, record) as caller:
        assert caller.decide(GREETING, []).text == "Hello?"
    assert len(server.requests) == 2
    server.script(Answer(body=completion(None, finish="length")))
    with make(server, record) as caller, pytest.raises(CallerPolicyError, match="no text"):
        caller.decide(GREETING, [])


def test_401_names_the_variable_never_the_key(
    server: FakeLlm, record: Record, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(
        Answer(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}),
    )
    with make(server, record) as caller:
        with pytest.raises(CallerPolicyError) as err:
            caller.decide(GREETING, [])
        message = str(err.value)
        assert "OPENAI_API_KEY" in message and "401" in message
        for text in (message, repr(caller), json.dumps(caller.calls), caplog.text):
            assert KEY not in text and "SECRET" not in text
    assert len(server.requests) == 1  # no retry


def test_403_and_other_4xx_are_not_retried(server: FakeLlm, record: Record, key: str) -> None:
    server.script(Answer(403, {"error": {"message": "forbidden"}}))
    with make(server, record) as caller, pytest.raises(CallerPolicyError, match="HTTP 403"):
        caller.decide(GREETING, [])
    server.script(Answer(400, {"error": {"message": "bad model"}}))
    with make(server, record) as caller, pytest.raises(CallerPolicyError, match="bad model"):
        caller.decide(GREETING, [])
    assert len(server.requests) == 2


def test_network_error_retried(record: Record, key: str) -> None:
    sleeps = Sleeps()
    caller = LlmCaller(
        record,
        config=LlmCallerConfig(base_url="http://127.0.0.1:9/v1", max_retries=1, timeout_s=2),
        sleep=sleeps,
    )
    with caller, pytest.raises(CallerPolicyError, match=r"network error.*after 2 attempts"):
        caller.decide(GREETING, [])
    assert len(sleeps) == 1


# ---------------------------------------------------------------------------------- keys
def test_remote_server_needs_a_key(record: Record, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LlmCallerConfigError, match="OPENAI_API_KEY"):
        LlmCaller(record)
    with pytest.raises(LlmCallerConfigError, match="MY_LLM_KEY"):
        LlmCaller(record, config=LlmCallerConfig(api_key_env="MY_LLM_KEY"))
    LlmCaller(record, config=LlmCallerConfig(api_key_env=None)).close()  # a keyless server


def test_local_server_without_key(
    server: FakeLlm, record: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with make(server, record) as caller:
        caller.decide(GREETING, [])
    assert "authorization" not in server.requests[0][1]
    assert not caller.describe()["api_key_set"]


def test_any_env_var_name(server: FakeLlm, record: Record, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "local-SECRET-key-1234")
    with make(server, record, api_key_env="MY_LLM_KEY") as caller:
        caller.decide(GREETING, [])
        assert "local-SECRET" not in repr(caller)
    assert server.requests[0][1]["authorization"] == "Bearer local-SECRET-key-1234"


@pytest.mark.parametrize(
    "change",
    [
        {"base_url": "ftp://x"},
        {"api_key_env": "NOT A NAME"},
        {"timeout_s": 0},
        {"max_retries": -1},
        {"max_tokens": 0},
        {"prompt": "other"},
    ],
)
def test_config_validates(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LlmCallerConfig(**change)


def test_closed_caller(server: FakeLlm, record: Record, key: str) -> None:
    caller = make(server, record)
    caller.decide(GREETING, [])
    client = caller._client
    caller.close()
    caller.close()
    assert isinstance(client, httpx.Client) and client.is_closed
    with pytest.raises(CallerPolicyError, match="closed"):
        caller.decide(GREETING, [])


def test_persona_object_accepted(server: FakeLlm, record: Record, key: str) -> None:
    persona = load_persona("forgetful_disorganized")
    caller = LlmCaller(record, config=LlmCallerConfig(base_url=server.url), persona=persona)
    assert caller.persona is persona and caller.describe()["persona"]["name"] == persona.name
    caller.close()
