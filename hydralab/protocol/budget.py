"""The ``session.configure`` payload budget (``docs/hydra-facts.md``, "Limits and quirks").

Hydra silently drops all audio output when the serialized ``session.configure`` frame is larger
than about 32 KB. This module measures the frame exactly as :class:`HydraClient` sends it
(UTF-8 bytes of ``SessionConfigure(session=...).dumps()``: compact separators, non-ASCII kept
as is) and makes a configuration fit, in this order and only as far as needed:

1. minified JSON — always; it is the wire form (the saving against ``json.dumps`` defaults,
   which the seed PR measured, is recorded);
2. drop redundant ``"<name>: "`` prefixes from tool descriptions (lossless);
3. compact tool schemas: parameter descriptions to their first sentence of at most 120
   characters, then tool descriptions likewise, then both to 60, then drop parameter
   descriptions, then tool descriptions (names, types, enums, ``required`` are always kept);
4. cut the instructions at a section/paragraph boundary — at worst a sentence or line
   boundary, never mid-sentence. The greeting steer ("Begin the conversation by greeting the
   user with: ...") always survives, at the end.

Steps 1–2 leave the benchmark conditions unchanged ("standard"); steps 3–4 do not.
:func:`plan_configure` is the policy: ``mode="standard"`` refuses a configuration that does not
fit under standard conditions with :class:`ConfigureTooLargeError`; ``mode="compacted"`` returns
the compacted result, labelled non-standard.

``mode="update"`` is EXPERIMENTAL: the configure carries the full instructions and the tools
that fit (whole tools, in declaration order, after steps 1–2; nothing is cut or compacted), and
the FULL tool list follows in one ``session.update`` once ``session.configured`` has arrived
(:class:`DeferredUpdate`, sent by :class:`hydralab.bridge_core.BridgeCore`). Whether Hydra's
ceiling also applies to ``session.update`` is unknown (``hydralab probe`` scenario
``configure_size`` measures it), so such a run is labelled non-standard and unverified.
Pure functions, no I/O.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal

from hydralab.protocol.hydra import EVENT_ID_LEN, SessionConfigure, SessionUpdate

__all__ = [
    "CONFIGURE_CEILING_BYTES",
    "CONFIGURE_MODES",
    "GREETING_STEER_PREFIX",
    "BudgetResult",
    "BudgetStep",
    "ConfigureMode",
    "ConfigureTooLargeError",
    "DeferredUpdate",
    "configure_bytes",
    "default_dumps_bytes",
    "first_sentence",
    "fit_configure",
    "greeting_steer",
    "plan_configure",
    "session_update_bytes",
]

CONFIGURE_CEILING_BYTES = 32_000
"""Default ceiling for the serialized ``session.configure`` frame, in UTF-8 bytes.

Hydra's limit is undocumented: the seed PR found empirically that audio output is silently
dropped above "~32 KB" and capped its (miscounted) payload at 32,000. We keep that number — the
conservative reading of 32 KB (the emulator mutes above 32,768) — and take it as a parameter
everywhere (``ceiling_bytes``, ``run_record(configure_ceiling_bytes=...)``).
"""

GREETING_STEER_PREFIX = "Begin the conversation by greeting the user with: "

ConfigureMode = Literal["standard", "compacted", "update"]
CONFIGURE_MODES: tuple[ConfigureMode, ...] = ("standard", "compacted", "update")

_MODES_HELP = (
    "modes: 'standard' (refuses what does not fit unchanged), 'compacted' (shortens tool "
    "descriptions, then cuts the instructions; non-standard), 'update' (EXPERIMENTAL: the tools "
    "that fit in the configure, all of them in a session.update after session.configured; "
    "non-standard, unverified)"
)


def greeting_steer(greeting: str) -> str:
    """The sentence that makes Hydra open with the record's greeting (appended last)."""
    return GREETING_STEER_PREFIX + greeting.strip()


def _wire(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def configure_bytes(session: Mapping[str, Any]) -> int:
    """Exact UTF-8 size of the ``session.configure`` frame the client sends for ``session``
    (with its fixed-length client ``event_id``)."""
    frame = SessionConfigure(session=dict(session), event_id="e" * EVENT_ID_LEN)
    return len(frame.dumps().encode("utf-8"))


def session_update_bytes(session: Mapping[str, Any]) -> int:
    """Exact UTF-8 size of the ``session.update`` frame the client sends for ``session`` (with
    its fixed-length client ``event_id``)."""
    frame = SessionUpdate(session=dict(session), event_id="e" * EVENT_ID_LEN)
    return len(frame.dumps().encode("utf-8"))


def default_dumps_bytes(session: Mapping[str, Any]) -> int:
    """Size with ``json.dumps`` defaults (ASCII escapes, spaced separators), as the PR measured."""
    frame = SessionConfigure(session=dict(session), event_id="e" * EVENT_ID_LEN)
    return len(json.dumps(frame.to_dict()).encode("utf-8"))


_ESCAPE_COST: dict[str, int] = {}


def _char_cost(ch: str) -> int:
    cost = _ESCAPE_COST.get(ch)
    if cost is None:
        cost = len(_wire(ch).encode("utf-8", "surrogatepass")) - 2
        _ESCAPE_COST[ch] = cost
    return cost


def _text_bytes(text: str) -> int:
    """Bytes ``text`` adds inside a JSON string on the wire (escapes counted: ``\\n`` is 2)."""
    return sum(_char_cost(ch) for ch in text)


# ---------------------------------------------------------------- text boundaries

_ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "eg", "ie", "etc", "vs", "approx", "incl", "min", "max", "no"}
    | {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "inc", "ltd", "co", "dept"}
)
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]")


def _is_sentence_end(text: str, end: int) -> bool:
    """Is ``text[:end]`` (ending in ``.!?…`` plus closing quotes/brackets) a finished sentence?"""
    core = text[:end].rstrip("\"'”’)]")
    if not core.endswith("."):
        return True
    word = re.split(r"[\s(\[\"'“‘]", core[:-1])[-1]
    if len(word) == 1 and word.isalpha():  # an initial: "J. Smith"
        return False
    return word.lower() not in _ABBREVIATIONS


def first_sentence(text: str, *, max_chars: int) -> str:
    """First sentence of ``text`` (whitespace collapsed), cut at a word to ``max_chars``."""
    flat = " ".join(text.split())
    for m in _SENTENCE_END.finditer(flat):
        if _is_sentence_end(flat, m.end()):
            flat = flat[: m.end()]
            break
    if len(flat) <= max_chars:
        return flat
    cut = flat[: max_chars - 1]
    space = cut.rfind(" ")
    if space >= max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-—–(") + "…"


def _last_line(prefix: str) -> str:
    return prefix.rstrip().rsplit("\n", 1)[-1].strip()


def _dangling(prefix: str) -> bool:
    """A prefix that ends in a heading, an introduction (``:``) or a comma is not a clean cut."""
    last = _last_line(prefix)
    return not last or bool(_HEADING.match(last)) or last.endswith((":", ",", ";", "—", "-"))


def _cut_points(body: str) -> tuple[list[int], list[int]]:
    """Prefix ends ``(section/paragraph, sentence/line)`` of ``body``, ascending, no dangling."""
    sections: set[int] = set()
    for m in re.finditer(r"\n[ \t]*\n", body):
        sections.add(m.start())
    for m in re.finditer(r"\n(?=[ \t]*#{1,6}[ \t])", body):
        sections.add(m.start())
    sentences: set[int] = set()
    for m in _SENTENCE_END.finditer(body):
        if _is_sentence_end(body, m.end()):
            sentences.add(m.end())
    for m in re.finditer(r"\n", body):
        sentences.add(m.start())
    sentences |= sections

    def clean(points: set[int]) -> list[int]:
        return sorted(p for p in points if 0 < p < len(body) and not _dangling(body[:p]))

    return clean(sections), clean(sentences)


# ---------------------------------------------------------------- tool compaction


def _map_param_descriptions(schema: Any, fn: Callable[[str], str | None]) -> int:
    """Apply ``fn`` to every ``description`` under a parameters schema (None drops it)."""
    changed = 0
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            for prop in props.values():
                changed += _map_description(prop, fn)
                changed += _map_param_descriptions(prop, fn)
        items = schema.get("items")
        if isinstance(items, dict):
            changed += _map_description(items, fn)
            changed += _map_param_descriptions(items, fn)
    return changed


def _map_description(node: Any, fn: Callable[[str], str | None]) -> int:
    if not isinstance(node, dict) or not isinstance(node.get("description"), str):
        return 0
    old = node["description"]
    new = fn(old)
    if new is None:
        del node["description"]
        return 1
    if new != old:
        node["description"] = new
        return 1
    return 0


def _drop_prefix(tools: list[dict[str, Any]]) -> int:
    changed = 0
    for tool in tools:
        name = tool.get("name")
        desc = tool.get("description")
        if isinstance(name, str) and isinstance(desc, str):
            for prefix in (f"{name}: ", f"{name}:"):
                if desc.startswith(prefix):
                    tool["description"] = desc[len(prefix) :].lstrip()
                    changed += 1
                    break
    return changed


def _shorten(max_chars: int) -> Callable[[str], str | None]:
    return lambda text: first_sentence(text, max_chars=max_chars)


def _drop(_text: str) -> str | None:
    return None


def _params(fn: Callable[[str], str | None]) -> Callable[[list[dict[str, Any]]], int]:
    return lambda tools: sum(_map_param_descriptions(t.get("parameters"), fn) for t in tools)


def _tool_desc(fn: Callable[[str], str | None]) -> Callable[[list[dict[str, Any]]], int]:
    return lambda tools: sum(_map_description(t, fn) for t in tools)


_COMPACTION: tuple[tuple[str, str, Callable[[list[dict[str, Any]]], int]], ...] = (
    (
        "param_descriptions_120",
        "parameter descriptions: first sentence ≤120 chars",
        _params(_shorten(120)),
    ),
    (
        "tool_descriptions_120",
        "tool descriptions: first sentence ≤120 chars",
        _tool_desc(_shorten(120)),
    ),
    (
        "param_descriptions_60",
        "parameter descriptions: first sentence ≤60 chars",
        _params(_shorten(60)),
    ),
    (
        "tool_descriptions_60",
        "tool descriptions: first sentence ≤60 chars",
        _tool_desc(_shorten(60)),
    ),
    ("drop_param_descriptions", "parameter descriptions dropped", _params(_drop)),
    ("drop_tool_descriptions", "tool descriptions dropped", _tool_desc(_drop)),
)


# ---------------------------------------------------------------- result


@dataclass(frozen=True)
class BudgetStep:
    """One step of :func:`fit_configure`: sizes of the whole frame before and after."""

    step: str
    detail: str
    bytes_before: int
    bytes_after: int
    changed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _tool_names(tools: Any) -> tuple[str, ...]:
    return tuple(str(t.get("name", "")) for t in tools or () if isinstance(t, Mapping))


@dataclass(frozen=True)
class DeferredUpdate:
    """The ``session.update`` of ``mode="update"``: sent once after every ``session.configured``
    (the first session's and each reconnect's). EXPERIMENTAL: whether Hydra's configure ceiling
    applies to it is unverified.

    Attributes:
        session: The update's ``session``: ``{"tools": [...]}``, every tool (the same
            declarations as in the configure, after the lossless steps), in declaration order.
        bytes: UTF-8 size of the ``session.update`` frame carrying :attr:`session` (with the
            client's fixed-length ``event_id``).
        configure_tools: Names of the tools the configure carries (a prefix of the list).
        deferred_tools: Names of the tools only the update carries.
        ceiling_bytes: The configure ceiling the plan was made against.
    """

    session: dict[str, Any]
    bytes: int
    configure_tools: tuple[str, ...]
    deferred_tools: tuple[str, ...]
    ceiling_bytes: int

    @property
    def tools(self) -> int:
        """How many tools the update declares (all of them)."""
        return len(self.session.get("tools") or ())

    @property
    def over_configure_ceiling(self) -> bool:
        """The update alone is larger than the configure ceiling."""
        return self.bytes > self.ceiling_bytes

    def to_dict(self) -> dict[str, Any]:
        """Summary for ``run.json["configure_budget"]["update"]`` (the tools are in
        ``events.jsonl``)."""
        frame = SessionUpdate(session=self.session).dumps().encode("utf-8")
        return {
            "bytes": self.bytes,
            "tools": self.tools,
            "configure_tools": list(self.configure_tools),
            "deferred_tools": list(self.deferred_tools),
            "over_configure_ceiling": self.over_configure_ceiling,
            "verified": False,
            "note": "EXPERIMENTAL: whether Hydra's ~32 KB ceiling applies to session.update "
            "is unverified (`hydralab probe --only configure_size` measures it)",
            "frame_sha256": hashlib.sha256(frame).hexdigest(),
        }


@dataclass(frozen=True)
class BudgetResult:
    """What :func:`fit_configure` decided.

    Attributes:
        session: The ``session`` dict to send verbatim (``HydraConfig(session=...)``).
        bytes: UTF-8 size of the ``session.configure`` frame carrying :attr:`session`.
        ceiling_bytes: The ceiling it was fitted against.
        fits: ``bytes <= ceiling_bytes``.
        steps: What was done, in order, with frame sizes before/after each step.
        instructions_cut_chars: Characters of the instructions that were cut (0 = complete).
        tools_compacted: Tool descriptions were shortened or dropped (step 3).
        standard: Instructions complete and tools untouched beyond steps 1–2, i.e. benchmark
            conditions unchanged (independent of :attr:`fits`).
        reason: Why it does not fit (``None`` when it fits).
        default_dumps_bytes: Size of the original frame with ``json.dumps`` defaults.
        instructions_chars: Characters of the full instructions (steer included).
        cut_at: ``"section"``, ``"paragraph"``, ``"sentence"`` or ``"all"`` when cut.
        mode: The :func:`plan_configure` mode that produced it (``None`` if called directly).
        update: ``mode="update"`` with tools left out of the configure: the ``session.update``
            to send after ``session.configured`` (``None``: nothing deferred, send no update).
            :attr:`standard` is then ``False`` and the run is unverified.
    """

    session: dict[str, Any]
    bytes: int
    ceiling_bytes: int
    fits: bool
    steps: tuple[BudgetStep, ...]
    instructions_cut_chars: int
    tools_compacted: bool
    standard: bool
    reason: str | None = None
    default_dumps_bytes: int = 0
    instructions_chars: int = 0
    cut_at: str | None = None
    mode: ConfigureMode | None = None
    update: DeferredUpdate | None = None

    @property
    def update_session(self) -> dict[str, Any] | None:
        """The deferred ``session.update``'s ``session`` (``{"tools": [...all...]}``), or
        ``None`` when nothing is deferred — what the bridge takes
        (``BridgeConfig(session_update=...)``)."""
        return None if self.update is None else copy.deepcopy(self.update.session)

    @property
    def update_bytes(self) -> int:
        """Size of the deferred ``session.update`` frame (0: none)."""
        return 0 if self.update is None else self.update.bytes

    @property
    def configure_tools(self) -> tuple[str, ...]:
        """Names of the tools the configure carries."""
        return _tool_names(self.session.get("tools"))

    @property
    def deferred_tools(self) -> tuple[str, ...]:
        """Names of the tools only the deferred ``session.update`` carries (empty: none)."""
        return () if self.update is None else self.update.deferred_tools

    @property
    def instructions_bytes(self) -> int:
        """Wire bytes of the ``instructions`` value (quotes included)."""
        return len(_wire(self.session.get("instructions", "")).encode("utf-8"))

    @property
    def tools_bytes(self) -> int:
        """Wire bytes of the ``tools`` value (0 without tools)."""
        tools = self.session.get("tools")
        return len(_wire(tools).encode("utf-8")) if tools else 0

    @property
    def label(self) -> str:
        """``standard``, ``non-standard (compacted)`` or, for a deferred update,
        ``non-standard (unverified: tools deferred to session.update)``."""
        if self.update is not None:
            return "non-standard (unverified: tools deferred to session.update)"
        return "standard" if self.standard else "non-standard (compacted)"

    def to_dict(self) -> dict[str, Any]:
        """Summary for ``run.json`` (the session itself is in ``events.jsonl``)."""
        frame = SessionConfigure(session=self.session).dumps().encode("utf-8")
        return {
            "bytes": self.bytes,
            "ceiling_bytes": self.ceiling_bytes,
            "fits": self.fits,
            "standard": self.standard,
            "label": self.label,
            "mode": self.mode,
            "reason": self.reason,
            "default_dumps_bytes": self.default_dumps_bytes,
            "instructions_bytes": self.instructions_bytes,
            "tools_bytes": self.tools_bytes,
            "tools": len(self.session.get("tools") or ()),
            "instructions_chars": self.instructions_chars,
            "instructions_cut_chars": self.instructions_cut_chars,
            "cut_at": self.cut_at,
            "tools_compacted": self.tools_compacted,
            "steps": [s.to_dict() for s in self.steps],
            "frame_sha256": hashlib.sha256(frame).hexdigest(),
            "update": None if self.update is None else self.update.to_dict(),
        }


class ConfigureTooLargeError(ValueError):
    """The configuration does not fit the ceiling under the requested mode.

    Attributes:
        result: The best result reached under that mode (``fits=False``).
        compacted: What ``mode="compacted"`` would do (``None`` if it was the mode used).
    """

    def __init__(
        self, message: str, *, result: BudgetResult, compacted: BudgetResult | None = None
    ) -> None:
        super().__init__(message)
        self.result = result
        self.compacted = compacted


# ---------------------------------------------------------------- fitting


def _split_steer(instructions: str, steer: str) -> tuple[str, str, str]:
    """``(body, separator, steer)``; the steer is appended when not already last."""
    if not steer:
        return instructions, "", ""
    text = instructions.rstrip()
    if text.endswith(steer):
        head = text[: len(text) - len(steer)]
        body = head.rstrip()
        return body, head[len(body) :] or ("\n\n" if body else ""), steer
    return text, "\n\n" if text else "", steer


def fit_configure(
    instructions: str,
    tools: Sequence[Mapping[str, Any]],
    *,
    greeting_steer: str,
    ceiling_bytes: int = CONFIGURE_CEILING_BYTES,
    allow_compaction: bool = True,
    other_fields: Mapping[str, Any] | None = None,
) -> BudgetResult:
    """Make ``session.configure`` fit ``ceiling_bytes``, doing only as much as needed.

    Args:
        instructions: The system prompt. If it already ends with ``greeting_steer`` (as
            :func:`hydralab.records.build_instructions` does) it is kept there, else appended
            after a blank line.
        tools: Function declarations in the flat Realtime shape
            (:func:`hydralab.tools.declarations`); never mutated.
        greeting_steer: The greeting sentence (:func:`greeting_steer`); always survives.
        ceiling_bytes: Maximum frame size in UTF-8 bytes.
        allow_compaction: Allow steps 3–4 (non-standard). ``False`` stops after step 2.
        other_fields: Further ``session`` keys (``voice``, ``generate_initial_response``,
            ``output_audio_sample_rate`` ...), sent as given after ``instructions``/``tools``.

    Returns:
        A :class:`BudgetResult`; ``fits=False`` with a ``reason`` when even the allowed steps
        are not enough (its ``session`` is then the smallest one reached).
    """
    body, sep, steer = _split_steer(instructions, greeting_steer)
    full = body + sep + steer
    work = [copy.deepcopy(dict(t)) for t in tools]
    extra = dict(other_fields or {})
    for key in ("instructions", "tools"):
        if key in extra:
            raise ValueError(f"other_fields must not contain {key!r}")

    def session(text: str) -> dict[str, Any]:
        s: dict[str, Any] = {"instructions": text}
        if work:
            s["tools"] = copy.deepcopy(work)
        s.update(extra)
        return s

    start = session(full)
    size = configure_bytes(start)
    default_size = default_dumps_bytes(start)
    steps = [
        BudgetStep(
            "minify",
            "compact JSON, UTF-8 kept (the wire form; vs json.dumps defaults)",
            default_size,
            size,
        )
    ]
    tools_compacted = False

    if size > ceiling_bytes:
        changed = _drop_prefix(work)
        after = configure_bytes(session(full))
        steps.append(
            BudgetStep(
                "drop_name_prefix", 'tool descriptions: "<name>: " removed', size, after, changed
            )
        )
        size = after

    if size > ceiling_bytes and allow_compaction and work:
        for name, detail, apply in _COMPACTION:
            changed = apply(work)
            after = configure_bytes(session(full))
            steps.append(BudgetStep(name, detail, size, after, changed))
            tools_compacted = tools_compacted or changed > 0
            size = after
            if size <= ceiling_bytes:
                break

    text = full
    cut_at: str | None = None
    if size > ceiling_bytes and allow_compaction and body:
        text, cut_at = _cut_instructions(body, sep, steer, session, ceiling_bytes)
        after = configure_bytes(session(text))
        detail = (
            f"instructions cut at a {cut_at} boundary"
            if cut_at != "all"
            else ("instructions dropped; only the greeting steer is kept")
        )
        steps.append(BudgetStep("cut_instructions", detail, size, after, len(full) - len(text)))
        size = after

    final = session(text)
    fits = size <= ceiling_bytes
    reason = None
    if not fits:
        reason = _reason(final, size, ceiling_bytes, allow_compaction)
    cut_chars = len(full) - len(text)
    return BudgetResult(
        session=final,
        bytes=size,
        ceiling_bytes=ceiling_bytes,
        fits=fits,
        steps=tuple(steps),
        instructions_cut_chars=cut_chars,
        tools_compacted=tools_compacted,
        standard=cut_chars == 0 and not tools_compacted,
        reason=reason,
        default_dumps_bytes=default_size,
        instructions_chars=len(full),
        cut_at=cut_at,
    )


def _cut_instructions(
    body: str,
    sep: str,
    steer: str,
    session: Callable[[str], dict[str, Any]],
    ceiling_bytes: int,
) -> tuple[str, str]:
    """Longest clean prefix of ``body`` that fits; ``(instructions, kind of cut)``."""
    fixed = configure_bytes(session(steer))  # frame with the steer alone
    budget = ceiling_bytes - fixed - _text_bytes(sep)
    cum = [0, *accumulate(_char_cost(ch) for ch in body)]
    sections, sentences = _cut_points(body)
    for kind_points in (sections, sentences):
        for p in reversed(kind_points):
            prefix = body[:p].rstrip()
            if cum[len(prefix)] > budget:
                continue
            text = prefix + sep + steer
            if configure_bytes(session(text)) <= ceiling_bytes:
                kind = "sentence"
                if kind_points is sections:
                    kind = "section" if _HEADING.match(body[p:].lstrip("\n")) else "paragraph"
                return text, kind
    return steer, "all"


def _reason(final: dict[str, Any], size: int, ceiling: int, allow_compaction: bool) -> str:
    tools = final.get("tools")
    tools_bytes = len(_wire(tools).encode("utf-8")) if tools else 0
    instr_bytes = len(_wire(final.get("instructions", "")).encode("utf-8"))
    over = (
        f"{size:,} bytes > ceiling {ceiling:,} (instructions {instr_bytes:,} B, "
        f"tools {tools_bytes:,} B)"
    )
    if allow_compaction:
        return (
            f"{over} even with every tool description dropped and only the greeting "
            "steer left of the instructions"
        )
    return f"{over} without changing benchmark conditions (compaction not allowed)"


def plan_configure(
    instructions: str,
    tools: Sequence[Mapping[str, Any]],
    *,
    greeting_steer: str,
    mode: ConfigureMode = "standard",
    ceiling_bytes: int = CONFIGURE_CEILING_BYTES,
    other_fields: Mapping[str, Any] | None = None,
) -> BudgetResult:
    """The policy: fit under standard conditions, or refuse unless another mode is asked for.

    Args:
        instructions: As :func:`fit_configure`.
        tools: As :func:`fit_configure`.
        greeting_steer: As :func:`fit_configure`.
        mode: ``"standard"``: send unchanged or refuse. ``"compacted"``: shorten tool
            descriptions, then cut the instructions, as far as needed (non-standard).
            ``"update"`` (EXPERIMENTAL): the full instructions and the tools that fit — whole
            tools, a prefix of the declaration order, after the lossless steps — in the
            configure, and every tool in a ``session.update`` sent after
            ``session.configured`` (:attr:`BudgetResult.update`; non-standard, unverified).
            When everything fits unchanged, ``"update"`` gives the standard configure and no
            update (``standard=True``, ``update=None``).
        ceiling_bytes: As :func:`fit_configure`.
        other_fields: As :func:`fit_configure`.

    Returns:
        A fitting :class:`BudgetResult` labelled with ``mode``.

    Raises:
        ConfigureTooLargeError: ``"standard"`` and only compaction/cuts/deferral would fit;
            ``"compacted"`` and nothing fits; ``"update"`` and the instructions alone (with no
            tool) do not fit. The message gives the sizes and names all three modes.
        ValueError: unknown ``mode``.
    """
    if mode not in CONFIGURE_MODES:
        raise ValueError(
            f"unknown configure mode {mode!r}: use 'standard', 'compacted' or 'update' "
            f"({_MODES_HELP})"
        )
    kw: dict[str, Any] = {
        "greeting_steer": greeting_steer,
        "ceiling_bytes": ceiling_bytes,
        "other_fields": other_fields,
    }
    if mode == "compacted":
        result = dataclasses.replace(fit_configure(instructions, tools, **kw), mode="compacted")
        if not result.fits:
            raise ConfigureTooLargeError(
                f"session.configure cannot fit the ceiling even compacted: {result.reason} "
                f"({_MODES_HELP})",
                result=result,
            )
        return result
    result = dataclasses.replace(
        fit_configure(instructions, tools, allow_compaction=False, **kw), mode="standard"
    )
    if mode == "update":
        return _plan_update(result, ceiling_bytes)
    if result.fits:
        return result
    comp = fit_configure(instructions, tools, **kw)
    if comp.fits:
        what = []
        if comp.tools_compacted:
            last = next(s for s in reversed(comp.steps) if s.step != "cut_instructions")
            what.append(f"compact tool descriptions (down to: {last.detail})")
        if comp.instructions_cut_chars:
            what.append(
                f"cut {comp.instructions_cut_chars:,} of {comp.instructions_chars:,} instruction"
                f" characters at a {comp.cut_at} boundary"
            )
        hint = (
            f"mode='compacted' would {' and '.join(what)} to reach {comp.bytes:,} bytes; "
            "opt in with plan_configure(..., mode='compacted') / "
            "run_record(..., configure_mode='compacted') / --configure-mode compacted; "
            "the run is labelled non-standard"
        )
    else:
        hint = f"even mode='compacted' cannot fit it: {comp.reason}"
    try:
        upd = _plan_update(result, ceiling_bytes)
    except ConfigureTooLargeError:
        hint += "; mode='update' cannot fit it either (the instructions alone are too large)"
    else:
        assert upd.update is not None
        hint += (
            f"; mode='update' (EXPERIMENTAL, unverified) would configure "
            f"{len(upd.configure_tools)} of {upd.update.tools} tools ({upd.bytes:,} bytes) and "
            f"send all {upd.update.tools} in a {upd.update.bytes:,}-byte session.update after "
            "session.configured"
        )
    raise ConfigureTooLargeError(
        f"session.configure is {result.bytes:,} bytes, over the {ceiling_bytes:,}-byte "
        f"ceiling above which Hydra silently drops all audio output "
        f"(instructions {result.instructions_bytes:,} B, "
        f"{len(result.session.get('tools') or ())} tools {result.tools_bytes:,} B, "
        f"after the lossless steps); it needs {result.bytes - ceiling_bytes:,} bytes less "
        f"than standard benchmark conditions allow. {hint}. ({_MODES_HELP})",
        result=result,
        compacted=comp,
    )


def _plan_update(standard: BudgetResult, ceiling_bytes: int) -> BudgetResult:
    """``mode="update"`` from the standard result (its lossless steps applied): keep the full
    instructions and the longest prefix of the tools that fits; defer every tool to the
    ``session.update``.

    Raises:
        ConfigureTooLargeError: The instructions (and the other fields) alone do not fit.
    """
    if standard.fits:
        return dataclasses.replace(standard, mode="update")
    full = standard.session
    tools = list(full.get("tools") or ())
    extra = {k: v for k, v in full.items() if k not in ("instructions", "tools")}

    def session(k: int) -> dict[str, Any]:
        s: dict[str, Any] = {"instructions": full.get("instructions", "")}
        if k:
            s["tools"] = copy.deepcopy(tools[:k])
        s.update(extra)
        return s

    bare = configure_bytes(session(0))
    if bare > ceiling_bytes:
        instr = len(_wire(full.get("instructions", "")).encode("utf-8"))
        raise ConfigureTooLargeError(
            f"session.configure cannot fit the ceiling in mode='update': without any tool it "
            f"is {bare:,} bytes (instructions {instr:,} B), over the {ceiling_bytes:,}-byte "
            f"ceiling by {bare - ceiling_bytes:,} bytes; update mode never cuts the "
            f"instructions or compacts tool descriptions ({_MODES_HELP})",
            result=dataclasses.replace(standard, mode="update"),
        )
    k, size = 0, bare
    while k < len(tools):
        after = configure_bytes(session(k + 1))
        if after > ceiling_bytes:
            break
        k, size = k + 1, after
    names = _tool_names(tools)
    update = DeferredUpdate(
        session={"tools": copy.deepcopy(tools)},
        bytes=session_update_bytes({"tools": tools}),
        configure_tools=names[:k],
        deferred_tools=names[k:],
        ceiling_bytes=ceiling_bytes,
    )
    step = BudgetStep(
        "defer_tools",
        f"{len(tools) - k} of {len(tools)} tools left out of the configure; all {len(tools)} "
        f"follow in a {update.bytes:,}-byte session.update after session.configured "
        "(EXPERIMENTAL, unverified)",
        standard.bytes,
        size,
        len(tools) - k,
    )
    return dataclasses.replace(
        standard,
        session=session(k),
        bytes=size,
        fits=True,
        steps=(*standard.steps, step),
        standard=False,
        reason=None,
        mode="update",
        update=update,
    )
