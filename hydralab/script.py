"""Conversation scripts derived from a record's reference trace (EVA's ``expected_trace``).

A :class:`Script` is what the offline emulator (assistant side) and the scripted caller (user
side) follow: the user's lines in order, and for each of them the assistant's answer as a
sequence of steps (:class:`Speak` or :class:`CallTools`). ``assistant_turns[0]`` is the greeting;
``assistant_turns[i]`` answers ``user_turns[i - 1]``. Tool calls keep their exact arguments; the
emulator only *emits* them, and the bridge (the client side, as with the real Hydra) executes them
through :mod:`hydralab.tools`. The trace's stored responses are never replayed: each call only
keeps its own as :attr:`ToolCall.expected_response`, so that the emulator can map the ids the
reference invented onto the ones the live tools return (:class:`hydralab.tools.idchain.IdChain`:
itsm ids are content hashes). For the same reason a call that needs an id a call before it in
the same step created (``assign_sla_tier(ticket_number=...)`` after
``create_incident_ticket``) starts a step of its own: the live id exists only once the first
call's output is back, as with a real model.

Some generated reference traces carry a raw tool call *as agent speech* (a JSON object, a
``functions.name(...)`` string, ``<tool_call>`` markup). EVA runs such records anyway (its agent
is a model; the trace is only the reference), and so does the emulator: :func:`clean_trace`
strips the text when the same call also exists as a ``tool_call`` event in that answer (a leaked
duplicate), turns it into a ``tool_call`` event when it does not and its arguments parse, and
gives an answer the caller waits for but that says nothing a short neutral line
(:data:`NEUTRAL_LINE`). Only a raw call that cannot become a call (arguments that do not parse,
an undeclared tool) rejects the trace with :class:`TraceError`, which says why.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydralab.records import Record
from hydralab.speech.text import MONTHS, normalize_for_wer, spell, spoken_form, year_words
from hydralab.tools.idchain import looks_like_id

__all__ = [
    "NEUTRAL_LINE",
    "AssistantSteps",
    "CallTools",
    "Script",
    "Speak",
    "ToolCall",
    "TraceError",
    "UserTurn",
    "add_slots",
    "clean_trace",
    "find_raw_tool_calls",
    "raw_call_arguments",
    "script_from_lines",
    "script_from_record",
    "script_from_trace",
    "slots_in",
]


class TraceError(ValueError):
    """A reference trace cannot become a script; the message names the event and the reason."""


@dataclass(frozen=True)
class ToolCall:
    """One function call with its JSON arguments.

    Attributes:
        name: Tool name.
        arguments: JSON arguments, as the reference trace has them.
        expected_response: The trace's ``tool_response.response`` of this call (``None``: none,
            e.g. a call :func:`clean_trace` recovered from agent text). Used only to chain the
            trace's ids onto the live ones; never sent to anyone. Not part of equality.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    expected_response: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Speak:
    """The assistant says ``text``."""

    text: str


@dataclass(frozen=True)
class CallTools:
    """The assistant issues these calls (in order) before speaking again."""

    calls: tuple[ToolCall, ...]


Step = Speak | CallTools


@dataclass(frozen=True)
class AssistantSteps:
    """The scripted assistant's part between two user turns: what it says and calls, in order.

    Not :class:`hydralab.turns.AssistantTurn`, which is a turn as observed and timed in a call.

    Attributes:
        steps: What the assistant says and calls, in order.
        asks: The slots (keys of the record's ``user_goal.information_required``) this turn asks
            the caller for, in the order of :attr:`Script.information`: those whose value the
            reference caller's next line carries (:func:`slots_in`, :func:`add_slots`). Empty
            for the greeting, for the last turn and when the script has no information.
    """

    steps: tuple[Step, ...]
    asks: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """All spoken text of the turn, joined by spaces."""
        return " ".join(s.text for s in self.steps if isinstance(s, Speak))

    def question(self, slot: str | None = None) -> str:
        """The sentence of the turn's speech that asks for ``slot``, as the trace words it.

        Candidates are the sentences ending in ``?`` (all sentences when none does); the one
        sharing the most words with the slot's key wins, the last one on a tie (a turn tends to
        end on its question). Empty when the turn says nothing.
        """
        sentences = [
            part.strip()
            for s in self.steps
            if isinstance(s, Speak)
            for part in _SENTENCE_BREAK.split(s.text)
            if part.strip()
        ]
        asking = [x for x in sentences if x.endswith("?")] or sentences
        if not asking:
            return ""
        wanted = set(_words(slot or ""))
        best = max(range(len(asking)), key=lambda i: (len(wanted & set(_words(asking[i]))), i))
        return asking[best]

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """All tool calls of the turn, in order."""
        return tuple(c for s in self.steps if isinstance(s, CallTools) for c in s.calls)


@dataclass(frozen=True)
class UserTurn:
    """A caller line: ``text`` as written in the trace, ``spoken`` as the TTS should read it."""

    text: str
    spoken: str


@dataclass(frozen=True)
class Script:
    """A full two-sided conversation script.

    Invariant: ``len(assistant_turns) == len(user_turns) + 1``. ``notes`` lists what
    :func:`clean_trace` changed in the reference trace (empty for a clean trace).
    ``information`` is the record's resolved ``user_goal.information_required`` (what the
    caller may disclose when asked; values may be nested dicts and lists), and each assistant
    turn's :attr:`AssistantSteps.asks` names the keys of it that turn asks for.
    """

    greeting: str
    user_turns: tuple[UserTurn, ...]
    assistant_turns: tuple[AssistantSteps, ...]
    record_id: str = ""
    end_reason: str = "goodbye"
    notes: tuple[str, ...] = ()
    information: dict[str, Any] = field(default_factory=dict)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """Every tool call of the conversation, in order."""
        return tuple(c for turn in self.assistant_turns for c in turn.tool_calls)

    def asks(self, index: int) -> tuple[str, ...]:
        """The slots assistant turn ``index`` asks for (:attr:`AssistantSteps.asks`)."""
        return self.assistant_turns[index].asks

    def asked_by(self, slot: str) -> int | None:
        """The first assistant turn that asks for ``slot`` (``None``: none does)."""
        return next((i for i, t in enumerate(self.assistant_turns) if slot in t.asks), None)

    def expected(self, slots: Iterable[str]) -> dict[str, Any]:
        """``{slot: value}`` of :attr:`information` for these slots (unknown ones left out)."""
        return {k: self.information[k] for k in slots if k in self.information}


def script_from_lines(
    greeting: str,
    users: Iterable[str],
    answers: Iterable[Iterable[Step]],
    *,
    record_id: str = "",
    information: Mapping[str, Any] | None = None,
) -> Script:
    """A hand-written script: the greeting, then each user line answered by its steps.

    Args:
        greeting: The assistant's opening line (assistant turn 0).
        users: What the caller says, in order (spoken forms are derived).
        answers: One sequence of :class:`Speak` / :class:`CallTools` steps per user line.
        record_id: The record whose scenario database the tools run against.
        information: What the caller may disclose (``information_required``); when given, the
            turns' slots are derived from the lines (:func:`add_slots`).
    """
    script = Script(
        greeting=greeting,
        user_turns=tuple(UserTurn(text=u, spoken=spoken_form(u)) for u in users),
        assistant_turns=(
            AssistantSteps(steps=(Speak(greeting),)),
            *(AssistantSteps(steps=tuple(a)) for a in answers),
        ),
        record_id=record_id,
    )
    return script if information is None else add_slots(script, information)


AssistantTurn = AssistantSteps
"""Deprecated alias of :class:`AssistantSteps` (kept for one release; not in ``__all__``)."""


# ---------------------------------------------------------------------------------------------
# Slots: what each assistant turn asks the caller for
# ---------------------------------------------------------------------------------------------

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
_SLOT_FILLERS = frozenset({"dash", "hyphen", "dot", "at"})
"""Spoken separators dropped from both sides before matching (``K A F N dash one three R`` is
``KAFN-13R``, ``michelle dot baker at gmail dot com`` an e-mail address)."""
_VAGUE = frozenset(
    {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"}
)
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_WRITTEN_DATE = re.compile(r"^([A-Za-z]{3,9}\.? \d{1,2})(?:st|nd|rd|th)?,? \d{4}$")
_INTL_PREFIX = re.compile(r"^\+\d{1,3}[-\s.]")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _tokens(text: str) -> tuple[str, ...]:
    """Matching tokens: the spoken form, normalized as for WER, separators dropped."""
    return tuple(t for t in normalize_for_wer(text) if t not in _SLOT_FILLERS)


def _spelled(text: str) -> tuple[str, ...]:
    """Codes said character by character: runs with a digit and all-caps runs of up to four
    letters spelled (``US_PASSPORT`` -> ``u s passport``, ``7294`` -> ``seven two nine four``),
    other words as they are."""
    parts = [
        spell(run) if any(c.isdigit() for c in run) or (run.isupper() and len(run) <= 4) else run
        for run in re.findall(r"[A-Za-z0-9]+", text)
    ]
    return tuple(" ".join(parts).lower().split())


def _leaves(value: Any) -> Iterator[str]:
    """The string forms of a value's leaves (booleans and nulls have none)."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str | int | float):
        yield str(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)


def _leaf_forms(leaf: str) -> set[tuple[str, ...]]:
    """The token sequences a caller's line may carry ``leaf`` as: its spoken form, spelled
    out, without an international phone prefix; a date also as its month and day, and as its
    year said as a year with month and day digit by digit."""
    text = leaf.strip()
    forms = {_tokens(text), _spelled(text)}
    prefix = _INTL_PREFIX.match(text)
    if prefix:
        rest = text[prefix.end() :]
        forms |= {_tokens(rest), _spelled(rest)}
    iso = _ISO_DATE.match(text)
    if iso and 1 <= int(iso.group(2)) <= 12:
        year, month, day = iso.groups()
        forms.add(_tokens(f"{MONTHS[int(month) - 1]} {int(day)}"))
        forms.add(tuple(_words(f"{year_words(int(year))} {spell(month)} {spell(day)}")))
    written = _WRITTEN_DATE.match(text)
    if written:
        forms.add(_tokens(written.group(1)))
    return {f for f in forms if len(f) > 1 or (f and len(f[0]) > 2 and f[0] not in _VAGUE)}


def _contains(tokens: tuple[str, ...], form: tuple[str, ...]) -> bool:
    n = len(form)
    return any(tokens[i : i + n] == form for i in range(len(tokens) - n + 1))


def slots_in(line: str, information: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys of ``information`` whose value a caller's ``line`` carries, in key order.

    A value (for nested values: any of its leaves) is found when one of its forms occurs as a
    run of whole words in the line, case-insensitively, both sides in spoken form
    (:func:`hydralab.speech.text.normalize_for_wer`): ``ZK3FFW`` matches ``Z K three F F W``,
    ``EMP048271`` ``E M P zero four eight two seven one``, ``2026-03-25`` ``March 25`` (and the
    year said digit by digit), ``$120`` ``one hundred twenty dollars``. Separator words
    (``dash``, ``dot``, ``at``) are ignored; a form of one short or number word (``one``)
    is too vague to count.
    """
    tokens = _tokens(line)
    return tuple(
        key
        for key, value in information.items()
        if any(_contains(tokens, form) for leaf in _leaves(value) for form in _leaf_forms(leaf))
    )


def add_slots(script: Script, information: Mapping[str, Any]) -> Script:
    """``script`` with :attr:`Script.information` set and every turn's slots derived.

    Assistant turn ``k`` (``1 <= k < len(user_turns)``) asks for the slots the reference
    caller's next line, ``user_turns[k]``, answers with (:func:`slots_in`). The greeting asks
    for nothing (what the first line carries was volunteered), nor does the last turn (no line
    follows it).
    """
    users = script.user_turns
    turns = tuple(
        dataclasses.replace(
            turn,
            asks=slots_in(users[k].text, information) if 1 <= k < len(users) else (),
        )
        for k, turn in enumerate(script.assistant_turns)
    )
    return dataclasses.replace(script, assistant_turns=turns, information=dict(information))


# ---------------------------------------------------------------------------------------------
# Raw tool-call text in agent lines
# ---------------------------------------------------------------------------------------------

_MARKUP = re.compile(
    r"<tool_call>.*?(?:</tool_call>|$)|<function[=\s].*?(?:</function>|$)|<\|[^|>]*\|>",
    re.DOTALL,
)
_FUNCTIONS = re.compile(r"(?:\bto=)?\bfunctions\.(?P<name>[A-Za-z_]\w*)")
_SNAKE_CALL = re.compile(r"\b(?P<name>[a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?P<gap>\s*)\(")
_OPENERS = {"(": ")", "{": "}", "[": "]"}


def _balanced_end(text: str, start: int) -> int:
    """Index just past the bracket group opening at ``text[start]`` (end of text if unclosed)."""
    stack: list[str] = []
    quote = ""
    index = start
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char == '"' and stack:
            quote = char
        elif char in _OPENERS:
            stack.append(_OPENERS[char])
        elif stack and char == stack[-1]:
            stack.pop()
            if not stack:
                return index + 1
        index += 1
    return len(text)


def _json_name(blob: str) -> str | None:
    """The tool name in a JSON call payload (``name``, ``tool_name``, ``function.name`` ...)."""
    try:
        value = json.loads(blob)
    except json.JSONDecodeError:
        return None
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, Mapping):
            continue
        function = item.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
        for key in ("name", "tool_name", "tool", "function"):
            if isinstance(item.get(key), str):
                return str(item[key])
    return None


def find_raw_tool_calls(
    text: str, *, tool_names: Iterable[str] = ()
) -> list[tuple[int, int, str | None]]:
    """Spans of raw tool-call text inside an agent line.

    Recognised: ``<tool_call>...</tool_call>`` / ``<function=...>`` markup and ``<|...|>``
    tokens; ``functions.NAME`` (also ``to=functions.NAME``) with its argument group;
    ``NAME(...)`` for a declared tool NAME, or for any snake_case name when the group holds
    ``=``, ``:`` or a quote (``get_reservation(confirmation_number="ZK3FFW")``); and any
    ``{...}`` or ``[{...}]`` group (a JSON payload; no spoken line has braces).

    Returns:
        ``(start, end, tool name or None)`` per span, sorted and merged where they overlap.
    """
    known = set(tool_names)
    spans: list[tuple[int, int, str | None]] = []
    for match in _MARKUP.finditer(text):
        inner = match.group(0)
        name = None
        brace = inner.find("{")
        if brace >= 0:
            name = _json_name(inner[brace : _balanced_end(inner, brace)])
        head = re.match(r"<function[=\s]\s*(\w+)", inner)
        if name is None and head:
            name = head.group(1)
        spans.append((match.start(), match.end(), name))
    for match in _FUNCTIONS.finditer(text):
        end = match.end()
        gap = re.match(r"\s*(?:json)?\s*", text[end:])
        after = end + (gap.end() if gap else 0)
        if after < len(text) and text[after] in _OPENERS:
            end = _balanced_end(text, after)
        spans.append((match.start(), end, match.group("name")))
    for match in _SNAKE_CALL.finditer(text):
        name = match.group("name")
        end = _balanced_end(text, match.end() - 1)
        args = text[match.end() : end]
        if name in known or (not match.group("gap") and re.search(r"[=:\"']", args)):
            spans.append((match.start(), end, name))
    index = 0
    while index < len(text):
        if text[index] == "{" or re.match(r"\[\s*\{", text[index:]):
            end = _balanced_end(text, index)
            spans.append((index, end, _json_name(text[index:end])))
            index = end
        else:
            index += 1
    spans.sort(key=lambda span: (span[0], -span[1]))
    merged: list[tuple[int, int, str | None]] = []
    for start, end, name in spans:
        if merged and start < merged[-1][1]:
            first, last_end, last_name = merged[-1]
            merged[-1] = (first, max(last_end, end), last_name or name)
        else:
            merged.append((start, end, name))
    return merged


def _strip_spans(text: str, spans: list[tuple[int, int, str | None]]) -> str:
    parts, last = [], 0
    for start, end, _ in spans:
        parts.append(text[last:start])
        last = end
    parts.append(text[last:])
    cleaned = re.sub(r"\s+", " ", " ".join(parts)).strip()
    cleaned = re.sub(r"\s+([,.;:!?])", r"\1", cleaned)
    return cleaned.strip(" ,;:-")


def _answer_bounds(events: list[dict[str, Any]], index: int) -> tuple[int, int]:
    """``[start, end)`` of the answer (events between two user lines) holding ``index``."""
    start = index
    while start > 0 and events[start - 1].get("event_type") != "user_utterance":
        start -= 1
    end = index + 1
    while end < len(events) and events[end].get("event_type") != "user_utterance":
        end += 1
    return start, end


NEUTRAL_LINE = "All right."
"""What an answer says when its reference says nothing (only calls, or only raw call text)."""

_ARGUMENT_KEYS = ("arguments", "parameters", "params", "args", "input")


def _json_call(value: Any) -> tuple[str | None, dict[str, Any] | None]:
    """``(tool name, arguments)`` of a JSON call payload; ``(None, None)`` when it is none."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, Mapping):
        return None, None
    function = value.get("function")
    if isinstance(function, Mapping):
        value = function
    name = next(
        (
            str(value[k])
            for k in ("name", "tool_name", "tool", "function")
            if isinstance(value.get(k), str)
        ),
        None,
    )
    for key in _ARGUMENT_KEYS:
        if key in value:
            args = value[key]
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError:
                    return name, None
            return name, dict(args) if isinstance(args, Mapping) else None
    return name, ({} if name is not None else None)


def _python_arguments(inner: str) -> dict[str, Any] | None:
    """Keyword arguments of ``name(k="v", n=1)`` (Python or JSON literals); ``None`` if not."""
    if not inner.strip():
        return {}
    try:
        node = ast.parse(f"f({inner})", mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.Call) or node.args:
        return None  # positional arguments cannot be named
    out: dict[str, Any] = {}
    aliases = {"true": True, "false": False, "null": None}
    for keyword in node.keywords:
        if keyword.arg is None:
            return None
        value = keyword.value
        if isinstance(value, ast.Name) and value.id in aliases:
            out[keyword.arg] = aliases[value.id]
            continue
        try:
            out[keyword.arg] = ast.literal_eval(value)
        except ValueError:
            return None
    return out


def raw_call_arguments(raw: str, name: str) -> dict[str, Any] | None:
    """The arguments of the raw call text ``raw`` to tool ``name``; ``None`` if they do not
    parse (the call cannot be scripted)."""
    brace = raw.find("{")
    bracket = raw.find("(")
    if brace >= 0 and (
        bracket < 0 or brace < bracket or raw[bracket + 1 :].lstrip().startswith("{")
    ):
        blob = raw[brace : _balanced_end(raw, brace)]
        try:
            value = json.loads(blob)
        except json.JSONDecodeError:
            return None
        found, args = _json_call(value)
        if found is None:  # functions.NAME({...}) / NAME({...}): the object is the arguments
            return dict(value) if isinstance(value, Mapping) else None
        return args if found == name else None
    if bracket >= 0:
        end = _balanced_end(raw, bracket)
        if raw[end - 1 : end] != ")":
            return None
        return _python_arguments(raw[bracket + 1 : end - 1])
    return {}  # a bare name (functions.NAME, <function=NAME></function>): no arguments


def clean_trace(
    trace: Iterable[Mapping[str, Any]], *, tool_names: Iterable[str] = ()
) -> tuple[list[dict[str, Any]], list[str]]:
    """Remove raw tool-call text from agent lines and make every awaited answer speak.

    A raw call is taken out of the speech when a ``tool_call`` event with the same tool name
    sits in the same answer (the events between two user lines); a raw call without one becomes
    a ``tool_call`` event in its place, the line's words before and after it staying around it.
    A raw payload whose tool cannot be named is removed. What is left of a line is kept if it
    still has words. Finally every answer a user line follows that says nothing gets
    :data:`NEUTRAL_LINE` at its end.

    Returns:
        ``(cleaned events, notes)``: copies of the events, and one note per change
        (``trace[i]: ...`` / ``answer n: ...``).

    Raises:
        TraceError: A raw call without a ``tool_call`` event whose arguments do not parse, or
            that names a tool the agent does not declare (when ``tool_names`` are given).
    """
    events = [dict(e) for e in trace]
    known = tuple(tool_names)
    notes: list[str] = []
    out: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if event.get("event_type") != "agent_utterance":
            out.append(event)
            continue
        text = str(event.get("utterance", ""))
        spans = find_raw_tool_calls(text, tool_names=known)
        if not spans:
            out.append(event)
            continue
        start, end = _answer_bounds(events, index)
        called = {
            str(e.get("tool_name")) for e in events[start:end] if e.get("event_type") == "tool_call"
        }
        pieces: list[dict[str, Any]] = []
        last, spoken, converted, removed = 0, False, [], []
        for span_start, span_end, name in spans:
            before = _strip_spans(text[last:span_start], [])
            if re.search(r"[^\W\d_]{2,}", before):
                pieces.append({**event, "utterance": before})
                spoken = True
            last = span_end
            if name is None or name in called:
                removed.append(name or "unnamed payload")
                continue
            if known and name not in known:
                raise TraceError(
                    f"trace[{index}]: an agent line is a raw call to {name!r}, which the agent"
                    " does not declare, and the answer has no such tool_call event"
                )
            args = raw_call_arguments(text[span_start:span_end], name)
            if args is None:
                raise TraceError(
                    f"trace[{index}]: an agent line is a raw call to {name!r} whose arguments"
                    f" do not parse ({text[span_start:span_end][:80]!r}), and the answer has no"
                    f" {name!r} tool_call event, so the call cannot be scripted"
                )
            pieces.append({"event_type": "tool_call", "tool_name": name, "params": args})
            converted.append(name)
        after = _strip_spans(text[last:], [])
        if re.search(r"[^\W\d_]{2,}", after):
            pieces.append({**event, "utterance": after})
            spoken = True
        out.extend(pieces)
        if converted:
            notes.append(
                f"trace[{index}]: turned raw tool-call text into tool calls"
                f" ({', '.join(converted)})"
            )
        if removed:
            names = ", ".join(sorted(set(removed)))
            if spoken or converted:
                notes.append(
                    f"trace[{index}]: removed raw tool-call text ({names}) from an agent line"
                )
            else:
                notes.append(
                    f"trace[{index}]: dropped an agent line that was a raw tool call ({names})"
                )
    return _answers_speak(out, notes), notes


def _answers_speak(events: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """Every answer followed by another user line says something (:data:`NEUTRAL_LINE`).

    Two user lines with nothing between them are one turn (they merge), not a silent answer.
    """
    out: list[dict[str, Any]] = []
    spoke, acted, answer = True, False, 0
    for event in events:
        kind = event.get("event_type")
        if kind == "user_utterance":
            if answer and acted and not spoke:
                out.append({"event_type": "agent_utterance", "utterance": NEUTRAL_LINE})
                notes.append(
                    f"answer {answer} (to user line {answer}) said nothing: added {NEUTRAL_LINE!r}"
                )
            spoke, acted, answer = False, False, answer + 1
        elif kind == "agent_utterance":
            spoke = True
        elif kind == "tool_call":
            acted = True
        out.append(event)
    return out


def _flush_calls(
    steps: list[Step], pending: list[ToolCall], available: set[str] | None = None
) -> None:
    """Close the pending calls into a step; their trace responses' strings become
    ``available`` to later calls."""
    if pending:
        steps.append(CallTools(tuple(pending)))
        if available is not None:
            for call in pending:
                available.update(_strings(call.expected_response))
        pending.clear()


_EXPECTED = "_hydralab_expected_response"
"""Key under which :func:`script_from_trace` carries a call's trace response through cleaning."""


def _with_expected_responses(trace: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the events, each ``tool_call`` holding its trace response under ``_EXPECTED``.

    Responses are matched to calls in order, per tool name: the n-th ``tool_response`` of a tool
    answers the n-th ``tool_call`` of that tool before it (in EVA's traces every call is followed
    by its response; this also pairs parallel calls).
    """
    events = [dict(e) for e in trace]
    waiting: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        kind = event.get("event_type")
        name = str(event.get("tool_name"))
        if kind == "tool_call":
            waiting.setdefault(name, []).append(event)
        elif kind == "tool_response" and waiting.get(name):
            response = event.get("response")
            waiting[name].pop(0)[_EXPECTED] = dict(response) if isinstance(response, dict) else None
    return events


def _strings(value: Any, *, keys: bool = False) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if keys and isinstance(key, str):
                yield key
            yield from _strings(item, keys=keys)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item, keys=keys)


def _needs_earlier_output(call: ToolCall, pending: list[ToolCall], available: set[str]) -> bool:
    """``call`` passes an id that only a pending call's trace response has (neither in the DB
    nor in the response of a call in an earlier step)."""
    wanted = {s for s in _strings(call.arguments) if looks_like_id(s) and s not in available}
    if not wanted:
        return False
    return any(wanted & set(_strings(c.expected_response)) for c in pending if c.expected_response)


def script_from_trace(
    trace: Iterable[Mapping[str, Any]],
    *,
    greeting: str,
    record_id: str = "",
    end_reason: str = "goodbye",
    tool_names: Iterable[str] = (),
    clean: bool = True,
    initial_db: Mapping[str, Any] | None = None,
    information: Mapping[str, Any] | None = None,
) -> Script:
    """Group trace events into turns.

    Agent events before the first user line are taken to be the greeting and dropped (the
    greeting turn is always ``(Speak(greeting),)``; itsm and medical_hr traces start with it).
    Consecutive user lines merge into one turn. A trailing user line without an answer gets an
    empty assistant turn. With ``clean`` (the default) the trace first goes through
    :func:`clean_trace` (``tool_names`` helps it spot ``name(...)`` calls) and its notes end up
    in :attr:`Script.notes`.

    Calls between two agent lines form one :class:`CallTools` step, except that a call passing
    an id-like value (:func:`hydralab.tools.idchain.looks_like_id`) that only the trace response
    of a call before it in that step has starts a new step: not a value of ``initial_db`` (keys
    or values: ids that exist before any call never need waiting for), nor of the response of
    a call in an earlier step (already answered). Without ``initial_db`` every such id counts.

    With ``information`` (the record's ``information_required``) the turns get their slots
    (:func:`add_slots`).

    Raises:
        TraceError: :func:`clean_trace` rejected the trace.
    """
    notes: list[str] = []
    trace = _with_expected_responses(trace)
    available = set(_strings(initial_db, keys=True)) if initial_db is not None else set()
    if clean:
        trace, notes = clean_trace(trace, tool_names=tool_names)
    user_texts: list[str] = []
    answers: list[list[Step]] = []
    pending: list[ToolCall] = []
    for event in trace:
        kind = event.get("event_type")
        if kind == "user_utterance":
            text = str(event.get("utterance", "")).strip()
            if answers and not answers[-1] and not pending:
                user_texts[-1] = f"{user_texts[-1]} {text}".strip()
            else:
                if answers:
                    _flush_calls(answers[-1], pending, available)
                user_texts.append(text)
                answers.append([])
            continue
        if not answers:
            continue  # greeting-side events before the caller speaks
        if kind == "tool_call":
            call = ToolCall(
                str(event["tool_name"]),
                dict(event.get("params") or {}),
                expected_response=event.get(_EXPECTED),
            )
            if _needs_earlier_output(call, pending, available):
                _flush_calls(answers[-1], pending, available)
            pending.append(call)
        elif kind == "agent_utterance":
            _flush_calls(answers[-1], pending, available)
            answers[-1].append(Speak(str(event.get("utterance", "")).strip()))
    if answers:
        _flush_calls(answers[-1], pending)
    script = Script(
        greeting=greeting,
        user_turns=tuple(UserTurn(text=t, spoken=spoken_form(t)) for t in user_texts),
        assistant_turns=(
            AssistantSteps((Speak(greeting),)),
            *(AssistantSteps(tuple(a)) for a in answers),
        ),
        record_id=record_id,
        end_reason=end_reason,
        notes=tuple(notes),
    )
    return script if information is None else add_slots(script, information)


def script_from_record(record: Record) -> Script:
    """The script of a record's (resolved, cleaned) reference trace (:func:`script_from_trace`,
    with the record's initial DB telling pre-existing ids from created ones), with its
    ``user_goal.information_required`` as :attr:`Script.information` and each turn's slots.

    Raises:
        TraceError: The trace was rejected; the message starts with the record id.
    """
    try:
        return script_from_trace(
            record.trace,
            greeting=record.greeting,
            record_id=record.id,
            end_reason=record.end_reason,
            tool_names=record.agent.tool_names,
            initial_db=record.initial_db,
            information=_information(record),
        )
    except TraceError as exc:
        raise TraceError(f"record {record.id!r}: {exc}") from None


def _information(record: Record) -> dict[str, Any]:
    """The record's resolved ``user_goal.information_required`` (empty when it has none)."""
    info = record.user_goal.get("information_required")
    return dict(info) if isinstance(info, Mapping) else {}
