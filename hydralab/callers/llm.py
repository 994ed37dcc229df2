"""The ``llm`` caller policy: an OpenAI-compatible chat-completions model plays the caller.

The model is prompted like EVA's user simulator: a system prompt filled from the record's
resolved ``user_goal`` (goal, decision tree, ``information_required``, starting utterance),
``user_config`` (the caller's name), the persona and the record's ``current_date_time``, and
one function tool, ``end_call``, which the model calls to hang up (optionally with a last
line). The conversation goes as chat messages from the model's side: what the caller *heard*
(the assistant's turns) as ``user`` messages, the caller's own lines as ``assistant`` messages.

Prompt template: when the record comes from an EVA checkout (or ``eva_dir`` is given) and that
checkout's ``configs/prompts/simulation.yaml`` has ``user_simulator.system_prompt_<domain>``,
that template is read at run time and filled (placeholders ``{user_persona}``,
``{high_level_user_goal}``, ``{must_have_criteria}``, ``{nice_to_have_criteria}``,
``{negotiation_behavior}``, ``{information_required}``, ``{current_date_time}``,
``{starting_utterance}``, ``{resolution_condition}``, ``{failure_condition}``,
``{escalation_behavior}``, ``{edge_cases}``); otherwise hydralab's own template
(:data:`HYDRALAB_TEMPLATE`, its own words) is used. Either way the values are rendered by
hydralab: lists as ``- item`` lines, nested values as JSON.

Persona text: EVA's (``<eva_dir>/configs/user_behaviors.yaml``) when loaded; else, for the
``default`` persona, the record's own ``user_config.user_persona``; else hydralab's one-line
description (:mod:`hydralab.callers.personas`).

Transport: one synchronous ``httpx.Client`` per caller (closed by :meth:`LlmCaller.close`;
the caller is a context manager). 429, 5xx, timeouts and network errors are retried with
full-jitter exponential backoff; a ``Retry-After`` header replaces the computed delay and a
longer one than ``max_retry_after_s`` gives up. 401/403 fail at once. The key comes from the
environment variable the config names, goes on the wire only and is redacted from every error
text (:mod:`hydralab.secrets`); a server on the loopback interface (vLLM, Ollama, llama.cpp)
needs no key.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import re
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
import yaml

from hydralab.callers.personas import Persona, load_persona
from hydralab.policy import CallerPolicyError, Exchange, Heard, Reply
from hydralab.records import LANGUAGE_DISPLAY_NAMES, Record
from hydralab.secrets import Secret, redact, redact_known

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "END_CALL_TOOL",
    "EVA_PROMPTS_FILE",
    "HYDRALAB_TEMPLATE",
    "PROMPT_FIELDS",
    "LlmCaller",
    "LlmCallerConfig",
    "LlmCallerConfigError",
    "build_messages",
    "load_eva_user_prompt",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
EVA_PROMPTS_FILE = Path("configs") / "prompts" / "simulation.yaml"
"""Where an EVA checkout keeps its simulator prompts, relative to the checkout root."""

PROMPT_FIELDS = (
    "user_persona",
    "high_level_user_goal",
    "must_have_criteria",
    "nice_to_have_criteria",
    "negotiation_behavior",
    "information_required",
    "current_date_time",
    "starting_utterance",
    "resolution_condition",
    "failure_condition",
    "escalation_behavior",
    "edge_cases",
)
"""The placeholders a user-simulator template may use (EVA's set)."""
_OWN_FIELDS = (*PROMPT_FIELDS, "caller_name", "service")

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_AUTH_STATUS = frozenset({401, 403})
_ERROR_DETAIL_CHARS = 200
_INAUDIBLE = "[inaudible]"
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOOPBACK_HOSTS = frozenset({"localhost", "::1", "[::1]"})  # with 127.0.0.0/8: no key needed

END_CALL_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "end_call",
        "description": (
            "Hang up the phone. Call it once your goal is met or you have given up on it, "
            "with a brief goodbye; never in a turn where you give the agent information, "
            "choose an option or approve an action."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "last_line": {
                    "type": "string",
                    "description": "What you say before hanging up, if not already in your reply.",
                }
            },
            "required": [],
        },
    },
}
"""The one tool the caller model gets (function calling, like EVA's simulator)."""

_SERVICES = {
    "airline": "your airline's customer service line",
    "itsm": "your company's IT service desk",
    "medical_hr": "the HR line of the medical organization you work with",
}

HYDRALAB_TEMPLATE = """\
You are {caller_name}, phoning {service}. You are the caller. The other side is an agent, and \
what you get from them is a speech-to-text transcript of the phone line: expect misheard or \
garbled words, and when something makes no sense, ask them to say it again rather than \
reacting to it.

# Who you are
{user_persona}

# Why you are calling
{high_level_user_goal}

Requirements you will not give up (accept no outcome that misses any of them):
{must_have_criteria}

Things you would like but can let go of:
{nice_to_have_criteria}

How to respond to what the agent proposes:
{negotiation_behavior}

# What you know
Give these details only when the agent asks for them, two or three at most per turn:
{information_required}

The date and time now: {current_date_time}.

# How the call goes
- Your first line is exactly: {starting_utterance}
  Say it once, at the start, and never again.
- Stay in character and speak in the first person. Stick to the facts above; if the agent \
repeats a detail back wrong, correct it straight away and insist on the right value.
- Pursue only this goal: turn down upgrades, extra services and anything beyond it, and \
never make up new requests or problems.
- Success: {resolution_condition}
  It only counts once the agent reports the result (a confirmation, a reference number, the \
outcome itself), not when they say they are about to do it. If you are unsure, ask.
- Failure: {failure_condition}
  Also give up if the agent reports an error it cannot get past, or makes no progress for \
five turns in a row.
- Escalation: {escalation_behavior}
  If this tells you not to be transferred, refuse every transfer the agent offers.
- If the agent asks whether there is anything else, say no and hang up.

# Special situations
{edge_cases}

# Hanging up
The call only ends when you call the end_call tool, and every call must end that way. Say a \
short goodbye when you do (as your reply, or as the tool's last_line). Never hang up in the \
same turn in which you give the agent information, pick an option or approve an action: wait \
for the agent's answer first.

# How to answer
Reply with only the words you say aloud: one or two short sentences, no stage directions, no \
brackets, no quotation marks, no lists. Write codes, numbers, dates and amounts the usual way \
(AB12CD, $40, March 5); they are read out for you. If the agent got a detail wrong, give it \
again, spelling a code letter by letter.
"""
"""hydralab's own user-simulator prompt (used when no EVA template is available)."""


class LlmCallerConfigError(CallerPolicyError, ValueError):
    """The LLM caller cannot start: bad settings, no key for a remote server, a bad template."""


@dataclass(frozen=True)
class LlmCallerConfig:
    """Where and how the caller model is asked.

    Attributes:
        base_url: OpenAI-compatible API root; ``/chat/completions`` is appended. A local
            vLLM / Ollama / llama.cpp server works (``http://127.0.0.1:8000/v1``).
        model: Model name as the server knows it.
        api_key_env: The environment variable holding the key (any name); ``None`` or ``""``:
            send no key. A missing variable is an error unless ``base_url`` is on the loopback
            interface.
        temperature: Sampling temperature; ``None``: not sent (the server's default).
        max_tokens: Cap on the reply's tokens; ``None``: not sent.
        seed: Sent as the request's ``seed`` (servers that honour it repeat themselves) and
            seeds the retry jitter.
        timeout_s: Per-request timeout.
        max_retries: Retries after the first request (429, 5xx, timeouts, network errors).
        backoff_base_s: First retry delay; doubled per retry, full jitter, capped at
            ``backoff_max_s``. A ``Retry-After`` header replaces it.
        backoff_max_s: Cap of the computed backoff.
        max_retry_after_s: Give up instead of waiting longer than this for ``Retry-After``.
        empty_retries: Requests repeated when the model returns neither text nor ``end_call``.
        prompt: ``"auto"`` (EVA's template when the record's EVA checkout has it, else
            hydralab's), ``"eva"`` (EVA's or an error) or ``"hydralab"``.
        literal_opening: Say the record's starting utterance as the first line without asking
            the model (EVA's simulator has the model say it, as the prompt demands).
    """

    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_MODEL
    api_key_env: str | None = DEFAULT_API_KEY_ENV
    temperature: float | None = 0.7
    max_tokens: int | None = None
    seed: int | None = None
    timeout_s: float = 30.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0
    empty_retries: int = 1
    prompt: Literal["auto", "eva", "hydralab"] = "auto"
    literal_opening: bool = False

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.base_url):
            raise LlmCallerConfigError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        if not self.model.strip():
            raise LlmCallerConfigError("model must not be empty")
        if self.api_key_env and not _ENV_NAME.match(self.api_key_env):
            raise LlmCallerConfigError(
                f"api_key_env must be an environment variable name, got {self.api_key_env!r}"
            )
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise LlmCallerConfigError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0 or self.empty_retries < 0:
            raise LlmCallerConfigError("max_retries and empty_retries must be >= 0")
        if min(self.backoff_base_s, self.backoff_max_s, self.max_retry_after_s) < 0:
            raise LlmCallerConfigError("backoff and retry-after limits must be >= 0")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise LlmCallerConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.prompt not in ("auto", "eva", "hydralab"):
            raise LlmCallerConfigError(
                f"prompt must be 'auto', 'eva' or 'hydralab', got {self.prompt!r}"
            )

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def local(self) -> bool:
        """``base_url`` is on the loopback interface (no key needed)."""
        host = (httpx.URL(self.base_url).host or "").lower()
        return host in _LOOPBACK_HOSTS or host.startswith("127.")

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for ``run.json`` (never the key)."""
        return {
            "base_url": redact(self.base_url),
            "model": self.model,
            "api_key_env": self.api_key_env or None,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "prompt": self.prompt,
            "literal_opening": self.literal_opening,
        }


# ------------------------------------------------------------------------------- prompt
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, ensure_ascii=False)


def _bullets(value: Any) -> str:
    """A list as ``- item`` lines (``- none`` when empty); anything else as text."""
    if isinstance(value, list | tuple):
        items = [_text(v) for v in value if _text(v)]
        return "\n".join(f"- {v}" for v in items) if items else "- none"
    return _text(value) or "none"


def _details(value: Any) -> str:
    """``information_required`` as ``- name: value`` lines (nested values as JSON)."""
    if isinstance(value, Mapping):
        lines = [f"- {k}: {_text(v)}" for k, v in value.items()]
        return "\n".join(lines) if lines else "- none"
    return _bullets(value)


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def load_eva_user_prompt(eva_dir: Path | str, domain: str) -> tuple[str, str] | None:
    """EVA's user-simulator template for ``domain``, read from the checkout at run time.

    Args:
        eva_dir: The EVA checkout root.
        domain: The record's domain (``airline``, ``itsm``, ``medical_hr``).

    Returns:
        ``(template, where)`` (``where`` = ``<file>#user_simulator.system_prompt_<domain>``),
        or ``None`` when the file or that template is absent.

    Raises:
        LlmCallerConfigError: The file is not YAML, or the template uses a placeholder other
            than :data:`PROMPT_FIELDS`.
    """
    path = Path(eva_dir) / EVA_PROMPTS_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LlmCallerConfigError(f"{path}: cannot read ({type(exc).__name__})") from None
    section = data.get("user_simulator") if isinstance(data, Mapping) else None
    key = f"system_prompt_{domain}"
    template = section.get(key) if isinstance(section, Mapping) else None
    if not isinstance(template, str) or not template.strip():
        return None
    where = f"{path}#user_simulator.{key}"
    try:
        unknown = _template_fields(template) - set(PROMPT_FIELDS)
    except ValueError as exc:
        raise LlmCallerConfigError(f"{where}: malformed template ({exc})") from None
    if unknown:
        raise LlmCallerConfigError(
            f"{where}: unknown placeholder(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(PROMPT_FIELDS)}"
        )
    return template, where


def _eva_root(record: Record, eva_dir: Path | str | None) -> Path | None:
    if eva_dir is not None:
        return Path(eva_dir)
    if record.prompt_path is not None and record.data_dir is not None:  # an EVA checkout
        return record.data_dir
    return None


def _persona_text(persona: Persona, record: Record, language: str) -> tuple[str, str]:
    """The prompt's persona paragraph and where it came from (``eva``/``record``/``hydralab``)."""
    record_text = record.user_config.get("user_persona")
    if persona.text:
        text, source = persona.text, "eva"
    elif persona.name == "default" and isinstance(record_text, str) and record_text.strip():
        text, source = record_text.strip(), "record"
    else:
        text, source = persona.description, "hydralab"
    if language.split("-")[0].lower() != "en":
        name = LANGUAGE_DISPLAY_NAMES.get(language, language)
        text += (
            f"\nYou speak only {name} for the whole call, even if the agent switches to another "
            f"language; say translatable things (places, dates) in {name} too."
        )
    return text, source


def _prompt_values(record: Record, persona_text: str) -> dict[str, str]:
    goal = record.user_goal
    tree = goal.get("decision_tree") or {}
    if not isinstance(tree, Mapping):
        tree = {}
    name = record.user_config.get("name")
    return {
        "user_persona": persona_text,
        "high_level_user_goal": _text(goal.get("high_level_user_goal")),
        "must_have_criteria": _bullets(tree.get("must_have_criteria")),
        "nice_to_have_criteria": _bullets(tree.get("nice_to_have_criteria")),
        "negotiation_behavior": _bullets(tree.get("negotiation_behavior")),
        "resolution_condition": _bullets(tree.get("resolution_condition")),
        "failure_condition": _bullets(tree.get("failure_condition")),
        "escalation_behavior": _bullets(tree.get("escalation_behavior")),
        "edge_cases": _bullets(tree.get("edge_cases")),
        "information_required": _details(goal.get("information_required")),
        "current_date_time": record.current_date_time,
        "starting_utterance": record.starting_utterance,
        "caller_name": name.strip() if isinstance(name, str) and name.strip() else "the caller",
        "service": _SERVICES.get(record.domain, f"a {record.domain} service line"),
    }


def build_messages(
    system_prompt: str, history: Sequence[Exchange], heard: Heard
) -> list[dict[str, str]]:
    """Chat messages from the caller model's side.

    What the caller heard (assistant turns) becomes ``user`` messages and the caller's own
    lines ``assistant`` messages; an empty heard turn is sent as ``[inaudible]``, an
    interrupted one ends with a dash, and empty caller lines are left out.
    """
    messages = [{"role": "system", "content": system_prompt}]
    for ex in history:
        if ex.speaker == "caller":
            if ex.text.strip():
                messages.append({"role": "assistant", "content": ex.text.strip()})
        else:
            messages.append({"role": "user", "content": ex.text.strip() or _INAUDIBLE})
    text = heard.text.strip() or _INAUDIBLE
    if heard.interrupted and heard.text.strip():
        text += " —"
    messages.append({"role": "user", "content": text})
    return messages


# ------------------------------------------------------------------------------- transport
def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    try:
        secs = float(value.strip())
    except ValueError:
        try:
            secs = email.utils.parsedate_to_datetime(value.strip()).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, secs) if math.isfinite(secs) else None


def _clip(text: str) -> str:
    """Redacted first (a key cut in two would no longer match), then clipped."""
    return " ".join(redact(text).split())[:_ERROR_DETAIL_CHARS]


def _error_detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return _clip(resp.text)
    msg: Any = None
    if isinstance(body, dict):
        err = body.get("error")
        msg = (err.get("message") or err.get("code")) if isinstance(err, dict) else err
        msg = msg or body.get("message") or body.get("detail")
    return _clip(str(msg) if msg else resp.text)


class _Failure(Exception):
    """One failed attempt that may be retried."""

    def __init__(self, reason: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(redact(reason))
        self.retry_after_s = retry_after_s


def _content_text(content: Any) -> str:
    """``message.content``: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("text")
        )
    return ""


def _clean(text: str) -> str:
    """Whitespace collapsed and one pair of wrapping quotes removed."""
    text = " ".join(text.split())
    for a, b in (('"', '"'), ("“", "”"), ("'", "'")):
        if len(text) >= 2 and text[0] == a and text[-1] == b:
            text = text[1:-1].strip()
            break
    return redact_known(text)


def _end_call(message: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the message calls ``end_call``, and its ``last_line`` (may be empty)."""
    calls: list[Any] = []
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        calls.extend(tc.get("function") for tc in tool_calls if isinstance(tc, Mapping))
    calls.append(message.get("function_call"))  # the legacy single-call field
    for fn in calls:
        if not isinstance(fn, Mapping) or fn.get("name") != "end_call":
            continue
        args: Any = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                args = {}
        line = args.get("last_line") if isinstance(args, Mapping) else None
        return True, line if isinstance(line, str) else ""
    return False, ""


@dataclass
class _Usage:
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def add(self, usage: Any) -> None:
        if not isinstance(usage, Mapping):
            return
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, getattr(self, name) + value)


class LlmCaller:
    """A caller policy backed by an OpenAI-compatible chat-completions endpoint.

    Args:
        record: The record (resolved for its language) whose caller the model plays.
        config: Endpoint, model, key variable, retries; default :class:`LlmCallerConfig`.
        persona: A :class:`Persona`, or a persona name loaded with :func:`load_persona` from
            the EVA checkout (if any).
        language: The language the caller speaks; ``None``: the record's.
        eva_dir: EVA checkout for the prompt template and persona texts; default: the
            record's data directory when that is an EVA checkout.
        client: Use this ``httpx.Client`` (not closed by :meth:`close`).
        sleep: Sleep between retries (tests record the delays with it).

    Attributes:
        calls: One entry per :meth:`decide` for ``run.json``: ``turn``, ``ok``,
            ``latency_ms``, ``requests``, ``retries``, token counts, ``finish_reason``,
            ``end_call``, ``model`` and (on failure) ``error``.
        system_prompt: The filled system prompt.
        prompt_source: ``"hydralab"`` or ``<file>#user_simulator.system_prompt_<domain>``.
        persona_source: Where the persona text came from: ``"eva"``, ``"record"``
            (``user_config.user_persona``, for ``default``) or ``"hydralab"``.

    Raises:
        LlmCallerConfigError: No key in the named variable for a remote server, no EVA
            template with ``prompt="eva"``, or a malformed EVA file.
        PersonaError: Unknown persona name or malformed ``user_behaviors.yaml``.
    """

    name = "llm"

    def __init__(
        self,
        record: Record,
        *,
        config: LlmCallerConfig | None = None,
        persona: Persona | str = "default",
        language: str | None = None,
        eva_dir: Path | str | None = None,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config = config or LlmCallerConfig()
        self.record = record
        self.language = language or record.language
        root = _eva_root(record, eva_dir)
        self.persona = (
            persona if isinstance(persona, Persona) else load_persona(persona, eva_dir=root)
        )
        self._key = self._read_key(config)
        persona_text, self.persona_source = _persona_text(self.persona, record, self.language)
        values = _prompt_values(record, persona_text)
        eva = None
        if config.prompt != "hydralab" and root is not None:
            eva = load_eva_user_prompt(root, record.domain)
        if eva is None and config.prompt == "eva":
            raise LlmCallerConfigError(
                f"no EVA user-simulator template for domain {record.domain!r}"
                f" (looked for {EVA_PROMPTS_FILE} in {root or 'no EVA checkout'})"
            )
        template, self.prompt_source = eva if eva is not None else (HYDRALAB_TEMPLATE, "hydralab")
        self.system_prompt = template.format_map(values)
        self.calls: list[dict[str, Any]] = []
        self._client = client
        self._owns_client = client is None
        self._sleep = sleep
        self._rng = random.Random(config.seed)
        self._closed = False
        self._usage = _Usage()

    def __repr__(self) -> str:
        return (
            f"LlmCaller(model={self.config.model!r}, base_url={redact(self.config.base_url)!r}, "
            f"persona={self.persona.name!r})"
        )

    @staticmethod
    def _read_key(config: LlmCallerConfig) -> Secret:
        if not config.api_key_env:
            return Secret("")
        key = Secret(os.environ.get(config.api_key_env, "").strip())
        if not key and not config.local:
            raise LlmCallerConfigError(
                f"no API key for the LLM caller at {redact(config.base_url)}: set "
                f"{config.api_key_env} (or set api_key_env to none for a server that needs no key)"
            )
        return key

    # --------------------------------------------------------------------- lifecycle
    def __enter__(self) -> LlmCaller:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the own HTTP client; later :meth:`decide` calls fail. Idempotent."""
        self._closed = True
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            client.close()

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for ``run.json``: config, persona, prompt source and usage."""
        u = self._usage
        return {
            "policy": self.name,
            **self.config.describe(),
            "api_key_set": bool(self._key),
            "language": self.language,
            "persona": self.persona.describe(),
            "persona_source": self.persona_source,
            "prompt_source": self.prompt_source,
            "requests": u.requests,
            "retries": u.retries,
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
        }

    # --------------------------------------------------------------------- policy
    def decide(self, heard: Heard, history: Sequence[Exchange]) -> Reply:
        """Ask the model for the caller's reply to ``heard``.

        Raises:
            CallerPolicyError: The endpoint refused the key (401/403), stayed unreachable or
                overloaded through the retries, returned a malformed body, or returned neither
                text nor ``end_call`` (after ``empty_retries`` more requests).
        """
        if self._closed:
            raise CallerPolicyError("the LLM caller is closed")
        entry: dict[str, Any] = {"turn": heard.index, "ok": False}
        if self.config.literal_opening and not any(e.speaker == "caller" for e in history):
            entry.update(ok=True, latency_ms=0.0, requests=0, opening=True, end_call=False)
            self.calls.append(entry)
            return Reply(self.record.starting_utterance, reason="llm")
        t0 = time.perf_counter()
        before = _Usage(**vars(self._usage))
        try:
            reply = self._decide(heard, history, entry)
            entry["ok"] = True
            return reply
        except CallerPolicyError as exc:
            entry["error"] = str(exc)
            raise
        finally:
            u = self._usage
            entry.update(
                latency_ms=round(1000.0 * (time.perf_counter() - t0), 1),
                requests=u.requests - before.requests,
                retries=u.retries - before.retries,
                prompt_tokens=u.prompt_tokens - before.prompt_tokens,
                completion_tokens=u.completion_tokens - before.completion_tokens,
                total_tokens=u.total_tokens - before.total_tokens,
            )
            self.calls.append(entry)

    def _payload(self, heard: Heard, history: Sequence[Exchange]) -> dict[str, Any]:
        cfg = self.config
        payload: dict[str, Any] = {
            "model": cfg.model,
            "messages": build_messages(self.system_prompt, history, heard),
            "tools": [END_CALL_TOOL],
            "tool_choice": "auto",
        }
        if cfg.temperature is not None:
            payload["temperature"] = cfg.temperature
        if cfg.max_tokens is not None:
            payload["max_tokens"] = cfg.max_tokens
        if cfg.seed is not None:
            payload["seed"] = cfg.seed
        return payload

    def _decide(self, heard: Heard, history: Sequence[Exchange], entry: dict[str, Any]) -> Reply:
        payload = self._payload(heard, history)
        for attempt in range(self.config.empty_retries + 1):
            body = self._post(payload)
            message, finish = self._message(body)
            entry.update(finish_reason=finish, model=body.get("model"))
            end, last_line = _end_call(message)
            text = _clean(_content_text(message.get("content")))
            last_line = _clean(last_line)
            if last_line and last_line not in text:
                text = f"{text} {last_line}".strip()
            entry["end_call"] = end
            if text or end:
                return Reply(text, end_call=end, reason="llm")
            if attempt < self.config.empty_retries:
                log.warning("LLM caller: empty reply (finish_reason=%s); asking again", finish)
        raise CallerPolicyError(
            f"the LLM caller model returned no text and no end_call "
            f"(finish_reason={entry.get('finish_reason')!r}, "
            f"after {self.config.empty_retries + 1} request(s))"
        )

    @staticmethod
    def _message(body: Any) -> tuple[Mapping[str, Any], Any]:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise CallerPolicyError("malformed chat-completions response: no choices")
        choice = choices[0]
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if not isinstance(message, Mapping):
            raise CallerPolicyError(
                "malformed chat-completions response: choices[0] has no message"
            )
        return message, choice.get("finish_reason")

    def _get_client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(self.config.timeout_s))
        return self._client

    def _backoff_s(self, retry: int) -> float:
        cfg = self.config
        return self._rng.uniform(0.0, min(cfg.backoff_max_s, cfg.backoff_base_s * 2.0**retry))

    def _attempt(self, payload: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        self._usage.requests += 1
        try:
            resp = self._get_client().post(
                cfg.url, json=payload, headers=headers, timeout=cfg.timeout_s
            )
        except httpx.TimeoutException as exc:
            raise _Failure(f"timeout ({type(exc).__name__} after {cfg.timeout_s:g} s)") from None
        except httpx.TransportError as exc:
            raise _Failure(f"network error ({type(exc).__name__}: {exc})") from None
        status = resp.status_code
        if status in _AUTH_STATUS:
            hint = (
                f"check the key in {cfg.api_key_env}"
                if self._key
                else f"no key was sent; set {cfg.api_key_env or 'api_key_env'}"
            )
            raise CallerPolicyError(
                f"the LLM caller endpoint {redact(cfg.url)} refused the request "
                f"(HTTP {status}: {_error_detail(resp)}); {hint}"
            )
        if status in _RETRY_STATUS or status >= 500:
            raise _Failure(
                f"HTTP {status}: {_error_detail(resp)}",
                retry_after_s=_retry_after_s(resp.headers.get("retry-after")),
            )
        if status != 200:
            raise CallerPolicyError(
                f"the LLM caller endpoint {redact(cfg.url)} answered HTTP {status}: "
                f"{_error_detail(resp)}"
            )
        try:
            body = resp.json()
        except ValueError:
            raise CallerPolicyError(
                f"malformed chat-completions response from {redact(cfg.url)}: not JSON "
                f"({_clip(resp.text[:80])!r})"
            ) from None
        if not isinstance(body, dict):
            raise CallerPolicyError(
                f"malformed chat-completions response: expected a JSON object, "
                f"got {type(body).__name__}"
            )
        self._usage.add(body.get("usage"))
        return body

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._attempt(payload)
            except _Failure as f:
                if attempts > cfg.max_retries:
                    raise CallerPolicyError(
                        f"the LLM caller endpoint {redact(cfg.url)} failed: {f} "
                        f"(after {attempts} attempt{'s' * (attempts > 1)})"
                    ) from None
                delay = f.retry_after_s
                if delay is None:
                    delay = self._backoff_s(attempts - 1)
                elif delay > cfg.max_retry_after_s:
                    raise CallerPolicyError(
                        f"the LLM caller endpoint {redact(cfg.url)} failed: {f} (Retry-After "
                        f"{delay:.0f} s exceeds {cfg.max_retry_after_s:.0f} s; gave up after "
                        f"{attempts} attempt{'s' * (attempts > 1)})"
                    ) from None
                self._usage.retries += 1
                log.warning("LLM caller: %s; retry %d in %.2f s", f, attempts, delay)
                self._sleep(delay)
