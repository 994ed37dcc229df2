"""Evaluation records in EVA's format: loading, validation and placeholder resolution.

Two directory layouts are understood:

- hydralab's own (``hydralab/data/``, shipped inside the package)::

    <data_dir>/<domain>/<domain>_dataset.json          JSON list of records (or .jsonl)
    <data_dir>/<domain>/<domain>_scenarios/<id>.json   initial scenario DB per record
    <data_dir>/<domain>/agent.yaml                     agent config (EVA agent YAML shape)
    <data_dir>/<domain>/initial_messages.yaml          greeting per language

- an EVA checkout (``data_dir`` = the EVA root, or its ``data/`` folder)::

    <data_dir>/data/<domain>_dataset.json              JSON list, or <domain>_dataset.jsonl
    <data_dir>/data/<domain>_scenarios/<id>.json
    <data_dir>/configs/agents/<domain>_agent.yaml
    <data_dir>/configs/agents/initial_messages.yaml
    <data_dir>/configs/prompts/simulation.yaml         realtime_agent.system_prompt template

A dataset is either a JSON list of records (``<domain>_dataset.json``) or one record per line
(``<domain>_dataset.jsonl``, EVA's other published form); when both exist the ``.json`` wins.

Records carry identity placeholders (``<FIRST_NAME>``, ``<LAST_NAME_ROMANIZED>``, ``<PHONE>`` ...)
that are resolved per language from ``culture_overrides`` / ``romanized_culture_overrides``;
romanized values are emitted lowercase, as EVA does. itsm records also carry location
placeholders (``<LOC:East Campus>``), resolved against the domain's alias files
(``data/<domain>_aliases/*.json``, :func:`resolve_locations`); the same files give scenario DB
entries their ``name_aliases`` (:func:`inject_name_aliases`). A record's ``agent_override``
(:func:`apply_agent_override`) and, for a language other than English, EVA's language addendum
(:func:`language_addendum`) shape the agent's instructions.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hydralab.protocol.budget import greeting_steer

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_RECORD_ID",
    "KEY_PLACEHOLDER",
    "LANGUAGE_DISPLAY_NAMES",
    "AgentConfig",
    "Record",
    "RecordError",
    "RecordFormatError",
    "RecordNotFoundError",
    "UnknownDomainError",
    "agent_config_path",
    "apply_agent_override",
    "build_instructions",
    "check_path_name",
    "eva_run_config",
    "greeting_steer",
    "inject_name_aliases",
    "language_addendum",
    "list_records",
    "load_agent_config",
    "load_aliases",
    "load_record",
    "record_domains",
    "record_meta",
    "resolve_locations",
    "resolve_placeholders",
]

DEFAULT_RECORD_ID = "HL-AIR-001"


def _package_data_dir() -> Path:
    """hydralab's own records: the ``data`` folder inside the installed ``hydralab`` package.

    Found with :mod:`importlib.resources`, so it is the same folder from a wheel and from an
    editable checkout; hydralab is never imported from a zip, so it is a real directory.
    """
    folder = resources.files("hydralab").joinpath("data")
    return folder if isinstance(folder, Path) else Path(str(folder))


DEFAULT_DATA_DIR = _package_data_dir()

# The libyaml loader is ~10x faster; both are "safe" loaders.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
TRACE_EVENT_TYPES = frozenset({"user_utterance", "agent_utterance", "tool_call", "tool_response"})
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([ T].*)?$")


class RecordError(Exception):
    """Base class of record loading errors."""


class RecordNotFoundError(RecordError, LookupError):
    """The requested record id is not in the data directory."""


class RecordFormatError(RecordError, ValueError):
    """A record (or its scenario DB / agent config) is missing a field or malformed."""


class UnknownDomainError(RecordError, ValueError):
    """The requested domain has no data in the data directory."""


MAX_NAME_BYTES = 200
"""Longest record or run id (UTF-8 bytes): a file name (``<id>.json``) must stay under the
usual 255-byte limit."""


def check_path_name(value: object, *, what: str = "record id") -> str:
    """``value`` if it is safe as one path component: a record id names its scenario file
    (``<domain>_scenarios/<id>.json``) and its run directory (``records/<id>/``), a run id its
    run's folder. A non-empty string of at most :data:`MAX_NAME_BYTES` bytes, not ``.`` or
    ``..``, with no ``/`` or ``\\`` (so never an absolute path or a way out of its folder), no
    NUL or other control character.

    Raises:
        ValueError: Why ``value`` is refused (``what`` names it in the message).
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    shown = repr(value[:80])
    why = None
    if not value:
        why = "it is empty"
    elif value in (".", ".."):
        why = "it names a directory, not an entry"
    elif "/" in value or "\\" in value:
        why = "it contains a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        why = "it contains a NUL or control character"
    elif len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        why = f"it is longer than {MAX_NAME_BYTES} bytes"
    if why is not None:
        raise ValueError(f"{what} {shown} is not allowed: {why} (it must be a plain file name)")
    return value


@dataclass(frozen=True)
class AgentConfig:
    """An agent config in EVA's agent YAML shape.

    Attributes:
        id: Config id (``agent_airline``).
        name: Display name.
        description: One-line personality ("Handles flight changes ...").
        role: Role sentence.
        instructions: Policy text (markdown).
        tools: Tool entries as in the YAML (name, description, tool_type,
            required_parameters, optional_parameters).
        raw: The whole parsed YAML.
        path: Where it was loaded from.
    """

    id: str
    name: str
    description: str
    role: str
    instructions: str
    tools: tuple[dict[str, Any], ...]
    raw: dict[str, Any]
    path: Path | None = None

    @property
    def tool_names(self) -> tuple[str, ...]:
        """Declared tool names, in YAML order."""
        return tuple(str(t["name"]) for t in self.tools)

    def tool_type(self, name: str) -> str | None:
        """``tool_type`` (auth / read / write / system) of a declared tool."""
        for tool in self.tools:
            if tool.get("name") == name:
                return str(tool.get("tool_type")) if tool.get("tool_type") else None
        return None


@dataclass(frozen=True)
class Record:
    """One evaluation record, resolved for a language.

    Attributes:
        id: Record id (``HL-AIR-001``, ``1.1.2``).
        domain: ``airline``.
        language: Language code used for resolution (``en``).
        current_date_time: Record time, e.g. ``"2026-05-04 09:20 MDT"``.
        raw: The record exactly as stored (unresolved).
        initial_db: Resolved initial scenario DB.
        expected_db: Resolved ``ground_truth.expected_scenario_db`` (includes ``session``).
        trace: Resolved ``ground_truth.expected_trace.trace`` events.
        greeting: The agent's opening line for ``language``.
        agent: The domain's agent config, with the record's ``agent_override`` applied
            (:func:`apply_agent_override`).
        user_goal: Resolved ``user_goal``.
        user_config: Resolved ``user_config`` (persona, gender).
        starting_utterance: The caller's first line for ``language``.
        source: Dataset file the record came from.
        data_dir: The data directory (hydralab's own or the EVA root) it was loaded from.
        prompt_template: EVA's ``realtime_agent.system_prompt`` template (with ``{datetime}``,
            ``{agent_personality}``, ``{agent_instructions}``) when the data directory has
            ``configs/prompts/simulation.yaml``; ``None`` means hydralab's built-in template.
        prompt_path: Where :attr:`prompt_template` was read from.
        aliases_dir: The domain's alias files (``data/<domain>_aliases``) when that folder
            exists: ``<LOC:...>`` placeholders and the DBs' ``name_aliases`` came from it.
        agent_override: The record's ``agent_override`` as stored (``None``: none), already
            applied to :attr:`agent`.
    """

    id: str
    domain: str
    language: str
    current_date_time: str
    raw: dict[str, Any]
    initial_db: dict[str, Any]
    expected_db: dict[str, Any]
    trace: tuple[dict[str, Any], ...]
    greeting: str
    agent: AgentConfig
    user_goal: dict[str, Any]
    user_config: dict[str, Any]
    starting_utterance: str
    source: Path | None = None
    data_dir: Path | None = None
    prompt_template: str | None = None
    prompt_path: Path | None = None
    aliases_dir: Path | None = None
    agent_override: dict[str, Any] | None = None

    @property
    def current_date(self) -> str:
        """Date part of :attr:`current_date_time` (what tools see as ``_current_date``)."""
        return self.current_date_time.split(" ")[0]

    @property
    def expected_session(self) -> dict[str, Any]:
        """The session the auth tool must leave behind (may be empty)."""
        session = self.expected_db.get("session")
        return dict(session) if isinstance(session, Mapping) else {}

    @property
    def end_reason(self) -> str:
        """How the reference conversation ends (``goodbye`` / ``transfer``)."""
        trace = self.raw.get("ground_truth", {}).get("expected_trace", {})
        return str(trace.get("end_reason") or "goodbye")

    @property
    def tool_names(self) -> tuple[str, ...]:
        """Tools the reference trace calls, in first-call order."""
        seen: dict[str, None] = {}
        for event in self.trace:
            if event["event_type"] == "tool_call":
                seen.setdefault(str(event["tool_name"]), None)
        return tuple(seen)


# ---------------------------------------------------------------------------------------------
# Placeholder resolution
# ---------------------------------------------------------------------------------------------


def _culture_values(raw: Mapping[str, Any], language: str) -> dict[str, str]:
    cultures = raw.get("culture_overrides")
    if not isinstance(cultures, Mapping) or not isinstance(cultures.get(language), Mapping):
        available = sorted(cultures) if isinstance(cultures, Mapping) else []
        raise RecordFormatError(
            f"record {raw.get('id')!r}: culture_overrides has no entry for language {language!r}"
            f" (available: {', '.join(available) or 'none'})"
        )
    culture = cultures[language]
    romanized_all = raw.get("romanized_culture_overrides")
    romanized = culture
    if isinstance(romanized_all, Mapping) and isinstance(romanized_all.get(language), Mapping):
        romanized = romanized_all[language]
    for key in ("first_name", "last_name"):
        if not isinstance(culture.get(key), str):
            raise RecordFormatError(
                f"record {raw.get('id')!r}: culture_overrides.{language}.{key} is missing"
            )
    values = {
        "<FIRST_NAME_ROMANIZED>": str(romanized.get("first_name") or culture["first_name"]).lower(),
        "<LAST_NAME_ROMANIZED>": str(romanized.get("last_name") or culture["last_name"]).lower(),
        "<FIRST_NAME>": str(culture["first_name"]),
        "<LAST_NAME>": str(culture["last_name"]),
    }
    if culture.get("phone"):
        values["<PHONE>"] = str(culture["phone"])
    companion = culture.get("companion")
    if isinstance(companion, Mapping) and companion.get("first_name"):
        rom_comp = romanized.get("companion") if isinstance(romanized, Mapping) else None
        rom_first = rom_comp.get("first_name") if isinstance(rom_comp, Mapping) else None
        values["<COMPANION_FIRST_NAME_ROMANIZED>"] = str(
            rom_first or companion["first_name"]
        ).lower()
        values["<COMPANION_FIRST_NAME>"] = str(companion["first_name"])
    return values


def resolve_placeholders(value: Any, values: Mapping[str, str]) -> Any:
    """Deep copy of ``value`` with every placeholder string replaced.

    Args:
        value: Any JSON-like value.
        values: Placeholder -> replacement. Longer placeholders are replaced first, so
            ``<FIRST_NAME_ROMANIZED>`` is never clobbered by ``<FIRST_NAME>``.
    """
    order = sorted(values, key=len, reverse=True)

    def replace(text: str) -> str:
        for key in order:
            if key in text:
                text = text.replace(key, values[key])
        return text

    return _map_strings(value, replace)


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """A copy of a JSON-like value with ``fn`` applied to every string (keys excepted)."""

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return fn(item)
        if isinstance(item, Mapping):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return copy.deepcopy(item)

    return walk(value)


# ---------------------------------------------------------------------------------------------
# Locations and name aliases (EVA's alias files)
# ---------------------------------------------------------------------------------------------

_LOC = re.compile(r"<LOC:([^>]+)>")


def _is_english(language: str) -> bool:
    return not language or language.lower() in ("en", "english")


def load_aliases(aliases_dir: Path | str | None) -> dict[str, dict[str, Any]]:
    """The alias files of a domain (``data/<domain>_aliases/*.json``), by canonical ``name``.

    Each file is ``{"name", "translatable", "base": [...], "translations": {lang: [...]}}``.
    Files are read in sorted order; a later file with the same ``name`` wins, as in EVA's
    ``_load_aliases_index`` (``src/eva/utils/culture.py``).

    Args:
        aliases_dir: The folder; ``None`` or a folder that does not exist gives ``{}`` (a domain
            without alias files: nothing is injected and ``<LOC:Name>`` renders ``Name``).

    Raises:
        RecordFormatError: A file is not JSON, or not an object with a string ``name``, a list
            ``base`` and an object ``translations`` of lists.
    """
    if aliases_dir is None:
        return {}
    folder = Path(aliases_dir)
    if not folder.is_dir():
        return {}
    index: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        entry = _read_json(path)
        where = f"alias file {path}"
        name = _need(entry, "name", str, where)
        base = entry.get("base") or []
        translations = entry.get("translations") or {}
        if not isinstance(base, list) or not all(isinstance(a, str) for a in base):
            raise RecordFormatError(f"{where}: 'base' must be a list of strings")
        if not isinstance(translations, dict) or not all(
            isinstance(v, list) and all(isinstance(a, str) for a in v)
            for v in translations.values()
        ):
            raise RecordFormatError(f"{where}: 'translations' must map languages to string lists")
        index[name] = entry
    return index


def resolve_locations(value: Any, aliases: Mapping[str, Mapping[str, Any]], language: str) -> Any:
    """Deep copy of ``value`` with every ``<LOC:Name>`` placeholder rendered for ``language``.

    The rule is EVA's (``_resolve_locations`` in ``src/eva/utils/culture.py``, used by its
    ``resolve_user_goal`` and by its trace-replay test for tool parameters and responses):

    - English (``en``, ``english`` or no language) renders the canonical ``Name``;
    - another language renders the first entry of the alias file's ``translations[language]``;
    - ``Name`` itself when the alias file has no translation for the language, or when no alias
      file is named ``Name``.

    EVA does not look at ``translatable`` here: the files marked ``translatable: false`` (software
    names) have no translations, so they render ``Name`` by the third rule.

    Args:
        value: Any JSON-like value.
        aliases: :func:`load_aliases` of the domain.
        language: The run's language code (``fr``, ``fr-CA`` ...).
    """

    def render(match: re.Match[str]) -> str:
        name = match.group(1)
        entry = aliases.get(name)
        if entry is None or _is_english(language):
            return name
        translations = entry.get("translations")
        found = translations.get(language) if isinstance(translations, Mapping) else None
        return str(found[0]) if isinstance(found, list) and found else name

    return _map_strings(value, lambda text: _LOC.sub(render, text) if "<LOC:" in text else text)


def inject_name_aliases(value: Any, aliases: Mapping[str, Mapping[str, Any]], language: str) -> Any:
    """Deep copy of a scenario DB where every object named like an alias file has
    ``name_aliases``.

    EVA's ``resolve_scenario_db(..., aliases_dir=...)`` (``_inject_aliases`` in
    ``src/eva/utils/culture.py``) does this for the DB the tools run on, and its metrics runner
    resolves the expected DB the same way: any object, at any depth, whose ``name`` equals an
    alias file's ``name`` gets ``name_aliases`` = the file's ``base`` followed by its
    ``translations[language]``, duplicates dropped and order kept (an existing
    ``name_aliases`` is replaced). The tools match user-given names against them.
    """
    out = copy.deepcopy(value)
    if not aliases:
        return out

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            name = item.get("name")
            entry = aliases.get(name) if isinstance(name, str) else None
            if entry is not None:
                translations = entry.get("translations")
                extra = translations.get(language) if isinstance(translations, Mapping) else None
                merged: dict[str, None] = {}
                for alias in [*(entry.get("base") or []), *(extra or [])]:
                    merged.setdefault(str(alias), None)
                item["name_aliases"] = list(merged)
            for child in item.values():
                walk(child)
        elif isinstance(item, list):
            for child in item:
                walk(child)

    walk(out)
    return out


# ---------------------------------------------------------------------------------------------
# Agent override and language addendum
# ---------------------------------------------------------------------------------------------

_OVERRIDE_FIELDS = {"instructions": str, "personality": str, "tools_enabled": list}


def _check_override(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    override = raw.get("agent_override")
    if override is None:
        return None
    where = f"record {raw.get('id')!r}: agent_override"
    if not isinstance(override, dict):
        raise RecordFormatError(f"{where} must be an object, got {type(override).__name__}")
    for key, kind in _OVERRIDE_FIELDS.items():
        field_value = override.get(key)
        if field_value is not None and not isinstance(field_value, kind):
            raise RecordFormatError(f"{where}.{key} must be {kind.__name__} or null")
    tools = override.get("tools_enabled")
    if tools is not None and not all(isinstance(t, str) for t in tools):
        raise RecordFormatError(f"{where}.tools_enabled must be a list of tool names")
    return override


def apply_agent_override(agent: AgentConfig, override: Mapping[str, Any] | None) -> AgentConfig:
    """``agent`` with a record's ``agent_override`` (EVA's ``AgentOverride``) applied.

    EVA's model (``src/eva/models/record.py``) has three optional fields; a null or absent one
    changes nothing:

    - ``instructions`` replaces the agent's instructions (EVA's metrics runner,
      ``src/eva/metrics/runner.py``, hands this text to its judges in place of the YAML's);
    - ``personality`` replaces the description (what the realtime prompt calls
      ``agent_personality``);
    - ``tools_enabled`` keeps only the named tools, in the YAML's order.

    EVA's conversation runner does not read the override at all (no shipped record has one);
    hydralab applies all three to the agent under test, as their names say. Other keys are
    ignored, as pydantic does for EVA's model.

    Raises:
        RecordFormatError: A field has the wrong type, or ``tools_enabled`` names a tool the
            agent config does not declare.
    """
    if not override:
        return agent
    raw = copy.deepcopy(agent.raw)
    changes: dict[str, Any] = {}
    # override key -> the agent YAML field it replaces
    for key, field_name in (("instructions", "instructions"), ("personality", "description")):
        text = override.get(key)
        if text is None:
            continue
        if not isinstance(text, str):
            raise RecordFormatError(f"agent_override.{key} must be a string")
        raw[field_name] = text
        changes[field_name] = text.strip()
    enabled = override.get("tools_enabled")
    if enabled is not None:
        if not isinstance(enabled, list) or not all(isinstance(t, str) for t in enabled):
            raise RecordFormatError("agent_override.tools_enabled must be a list of tool names")
        unknown = [t for t in enabled if t not in agent.tool_names]
        if unknown:
            raise RecordFormatError(
                f"agent_override.tools_enabled names tools the agent config"
                f" {agent.path or agent.id!s} does not declare: {', '.join(unknown)}"
                f" (declared: {', '.join(agent.tool_names) or 'none'})"
            )
        wanted = set(enabled)
        tools = tuple(dict(t) for t in agent.tools if t["name"] in wanted)
        raw["tools"] = [dict(t) for t in tools]
        changes["tools"] = tools
    changes["raw"] = raw
    return dataclasses.replace(agent, **changes)


LANGUAGE_DISPLAY_NAMES: dict[str, str] = {
    "en": "English",
    "fr": "French",
    "fr-CA": "Canadian French",
    "es": "Spanish",
    "de": "German",
    "hi": "Hindi",
    "ko": "Korean",
}
"""How the language addendum names the languages of the shared datasets (hydralab's table,
after EVA's ``LANGUAGE_DISPLAY_NAMES`` in ``src/eva/models/config.py``)."""

_LANGUAGE_ADDENDUM = (
    "Always respond to the user in {name}, regardless of the instructions given or tool outputs"
    " received. However, tool calls and tool names must always be done using ascii characters,"
    " except parameters like people's first or last names which may be in non-ascii, native"
    " script. You may need to try both scripts when looking up by name. All translatable values"
    " should be translated when talking to the user. For example, if you are telling the user"
    " about a location from a tool response which says 'Downtown' or 'West Laboratory', this"
    " should be translated. Only distinct item names (e.g. 'IntelliJ') should be kept in their"
    " original form."
)


def language_addendum(language: str) -> str | None:
    """The paragraph EVA appends to the agent's instructions for a non-English run.

    EVA (``get_language_addendum`` in ``src/eva/utils/culture.py``) fills a fixed template with
    the language's display name; its benchmark runner appends it to the agent config's
    instructions after a blank line (``f"{instructions}\\n\\n{addendum}"``, in
    ``src/eva/orchestrator/runner.py`` and ``src/eva/metrics/runner.py``). ``None`` for English.
    A language missing from :data:`LANGUAGE_DISPLAY_NAMES` is named by its code.
    """
    if _is_english(language):
        return None
    return _LANGUAGE_ADDENDUM.format(name=LANGUAGE_DISPLAY_NAMES.get(language, language))


# ---------------------------------------------------------------------------------------------
# Layout discovery
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DomainFiles:
    domain: str
    dataset: Path
    scenarios: Path
    agent: Path
    initial_messages: Path
    root: Path
    prompts: Path | None = None
    aliases: Path | None = None


_DATASET_SUFFIXES = ("_dataset.json", "_dataset.jsonl")


def _datasets_in(folder: Path) -> dict[str, Path]:
    """``{domain: dataset file}`` for ``<domain>_dataset.json[l]`` in ``folder`` (.json wins)."""
    found: dict[str, Path] = {}
    for suffix in reversed(_DATASET_SUFFIXES):  # .jsonl first, so .json overrides it
        for path in sorted(folder.glob(f"*{suffix}")):
            if path.is_file():
                found[path.name[: -len(suffix)]] = path
    return found


def _eva_root(data_dir: Path) -> Path | None:
    """The EVA checkout root for ``data_dir`` (the root itself or its ``data/`` folder)."""
    if (data_dir / "data").is_dir() and _datasets_in(data_dir / "data"):
        return data_dir
    if (data_dir.parent / "configs" / "agents").is_dir() and _datasets_in(data_dir):
        return data_dir.parent
    return None


def _domains(data_dir: Path) -> dict[str, _DomainFiles]:
    found: dict[str, _DomainFiles] = {}
    root = _eva_root(data_dir)
    if root is not None:
        eva_data = root / "data"
        agents = root / "configs" / "agents"
        prompts = root / "configs" / "prompts" / "simulation.yaml"
        for domain, dataset in sorted(_datasets_in(eva_data).items()):
            found[domain] = _DomainFiles(
                domain,
                dataset,
                eva_data / f"{domain}_scenarios",
                agents / f"{domain}_agent.yaml",
                agents / "initial_messages.yaml",
                root,
                prompts if prompts.is_file() else None,
                eva_data / f"{domain}_aliases",
            )
    if data_dir.is_dir():
        for sub in sorted(p for p in data_dir.iterdir() if p.is_dir()):
            own = _datasets_in(sub).get(sub.name)
            if own is not None and sub.name not in found:
                found[sub.name] = _DomainFiles(
                    sub.name,
                    own,
                    sub / f"{sub.name}_scenarios",
                    sub / "agent.yaml",
                    sub / "initial_messages.yaml",
                    data_dir,
                    None,
                    sub / f"{sub.name}_aliases",
                )
    return found


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordFormatError(f"missing file: {path}") from None
    except json.JSONDecodeError as exc:
        raise RecordFormatError(f"{path}: invalid JSON ({exc})") from None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except FileNotFoundError:
        raise RecordFormatError(f"missing file: {path}") from None
    except yaml.YAMLError as exc:
        raise RecordFormatError(f"{path}: invalid YAML ({exc})") from None


def _read_jsonl(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordFormatError(f"missing file: {path}") from None
    rows: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RecordFormatError(f"{path}: line {number}: invalid JSON ({exc})") from None
    return rows


def _dataset(files: _DomainFiles) -> list[dict[str, Any]]:
    jsonl = files.dataset.suffix == ".jsonl"
    data = _read_jsonl(files.dataset) if jsonl else _read_json(files.dataset)
    if not isinstance(data, list):
        raise RecordFormatError(f"{files.dataset}: expected a JSON list of records")
    for index, item in enumerate(data):
        where = f"record {index + 1}" if jsonl else f"element {index}"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise RecordFormatError(f"{files.dataset}: {where} has no string 'id'")
        try:  # an id names files and folders: never a path
            check_path_name(item["id"])
        except ValueError as exc:
            raise RecordFormatError(f"{files.dataset}: {where}: {exc}") from None
    return data


def _pick_domains(data_dir: Path, domain: str | None) -> list[_DomainFiles]:
    if not data_dir.is_dir():
        raise RecordNotFoundError(f"data directory {data_dir} does not exist")
    domains = _domains(data_dir)
    if domain is None:
        if not domains:
            raise RecordNotFoundError(
                f"no record datasets under {data_dir} (expected <domain>/<domain>_dataset.json"
                " or an EVA checkout with data/<domain>_dataset.json[l])"
            )
        return list(domains.values())
    if domain not in domains:
        names = ", ".join(sorted(domains)) or "none"
        raise UnknownDomainError(f"unknown domain {domain!r} in {data_dir}; available: {names}")
    return [domains[domain]]


def list_records(data_dir: Path | str | None = None, *, domain: str | None = None) -> list[str]:
    """Record ids available under ``data_dir`` (default: :data:`DEFAULT_DATA_DIR`)."""
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    ids: list[str] = []
    for files in _pick_domains(root, domain):
        ids.extend(r["id"] for r in _dataset(files))
    return ids


def record_domains(data_dir: Path | str | None = None) -> dict[str, str]:
    """``{record id: domain}`` for every record under ``data_dir`` (the first domain listing
    an id wins, as :func:`load_record` finds it)."""
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    found: dict[str, str] = {}
    for files in _pick_domains(root, None):
        for r in _dataset(files):
            found.setdefault(r["id"], files.domain)
    return found


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _need(container: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(container, Mapping) or key not in container:
        raise RecordFormatError(f"{where}: missing field '{key}'")
    value = container[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RecordFormatError(
            f"{where}: field '{key}' must be {names}, got {type(value).__name__}"
        )
    return value


def _check_trace(trace: list[Any], where: str) -> None:
    for index, event in enumerate(trace):
        here = f"{where}.ground_truth.expected_trace.trace[{index}]"
        if not isinstance(event, Mapping):
            raise RecordFormatError(f"{here}: must be an object")
        kind = _need(event, "event_type", str, here)
        if kind not in TRACE_EVENT_TYPES:
            raise RecordFormatError(f"{here}: unknown event_type {kind!r}")
        if kind in ("user_utterance", "agent_utterance"):
            _need(event, "utterance", str, here)
        else:
            _need(event, "tool_name", str, here)
            if kind == "tool_call":
                _need(event, "params", dict, here)
            else:
                _need(event, "response", dict, here)


def _check_record(raw: Mapping[str, Any]) -> None:
    where = f"record {raw.get('id')!r}"
    date_time = _need(raw, "current_date_time", str, where)
    if not _DATE_TIME.match(date_time):
        raise RecordFormatError(
            f"{where}: current_date_time {date_time!r} must start with YYYY-MM-DD"
        )
    _need(raw, "user_goal", dict, where)
    truth = _need(raw, "ground_truth", dict, where)
    _need(truth, "expected_scenario_db", dict, f"{where}.ground_truth")
    trace_box = _need(truth, "expected_trace", dict, f"{where}.ground_truth")
    trace = _need(trace_box, "trace", list, f"{where}.ground_truth.expected_trace")
    _check_trace(trace, where)
    _need(raw, "culture_overrides", dict, where)


def load_agent_config(path: Path | str) -> AgentConfig:
    """Parse an agent YAML (EVA shape) into an :class:`AgentConfig`."""
    path = Path(path)
    raw = _read_yaml(path)
    where = f"agent config {path}"
    if not isinstance(raw, dict):
        raise RecordFormatError(f"{where}: expected a mapping")
    tools = raw.get("tools") or []
    if not isinstance(tools, list):
        raise RecordFormatError(f"{where}: field 'tools' must be a list")
    for index, tool in enumerate(tools):
        _need(tool, "name", str, f"{where}: tools[{index}]")
        for key in ("required_parameters", "optional_parameters"):
            params = tool.get(key) or []
            if not isinstance(params, list):
                raise RecordFormatError(f"{where}: tools[{index}].{key} must be a list")
            for pindex, param in enumerate(params):
                _need(param, "name", str, f"{where}: tools[{index}].{key}[{pindex}]")
    return AgentConfig(
        id=str(raw.get("id", "")),
        name=str(raw.get("name", "")),
        description=str(raw.get("description", "")).strip(),
        role=str(raw.get("role", "")).strip(),
        instructions=str(_need(raw, "instructions", str, where)).strip(),
        tools=tuple(dict(t) for t in tools),
        raw=raw,
        path=path,
    )


_PROMPT_FIELDS = ("datetime", "agent_personality", "agent_instructions")


def _prompt_template(path: Path) -> str:
    """EVA's ``realtime_agent.system_prompt`` template from ``configs/prompts/simulation.yaml``."""
    prompts = _read_yaml(path)
    section = prompts.get("realtime_agent") if isinstance(prompts, Mapping) else None
    template = section.get("system_prompt") if isinstance(section, Mapping) else None
    if not isinstance(template, str) or not template.strip():
        raise RecordFormatError(f"{path}: missing realtime_agent.system_prompt")
    try:
        template.format(**{name: "" for name in _PROMPT_FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise RecordFormatError(
            f"{path}: realtime_agent.system_prompt has an unknown placeholder ({exc});"
            f" allowed: {', '.join('{' + n + '}' for n in _PROMPT_FIELDS)}"
        ) from None
    return template


def _greeting(path: Path, language: str) -> str:
    messages = _read_yaml(path)
    if not isinstance(messages, Mapping):
        raise RecordFormatError(f"{path}: expected a mapping of language -> greeting")
    text = messages.get(language, messages.get("en"))
    if not isinstance(text, str) or not text.strip():
        raise RecordFormatError(f"{path}: no greeting for {language!r} and no 'en' fallback")
    return text.strip()


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_record(
    record_id: str | None = None,
    *,
    data_dir: Path | str | None = None,
    language: str = "en",
    domain: str | None = None,
) -> Record:
    """Load one record, resolved for ``language``.

    Args:
        record_id: Record id; ``None`` means :data:`DEFAULT_RECORD_ID`.
        data_dir: hydralab data dir or EVA checkout; default :data:`DEFAULT_DATA_DIR`.
        language: Language whose culture overrides and greeting are used.
        domain: Only look in this domain (default: every domain found).

    Raises:
        RecordNotFoundError: No such id (the message lists the available ids), or an id that
            is not a plain file name (:func:`check_path_name`).
        RecordFormatError: The record, its scenario DB or agent config is malformed (a
            dataset whose ids are not all plain file names included).
        UnknownDomainError: ``domain`` has no dataset in ``data_dir``.
    """
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    wanted = record_id if record_id is not None else DEFAULT_RECORD_ID
    try:  # no dataset can hold it (they are refused there too)
        check_path_name(wanted)
    except ValueError as exc:
        raise RecordNotFoundError(str(exc)) from None
    available: list[str] = []
    for files in _pick_domains(root, domain):
        records = _dataset(files)
        for raw in records:
            if raw["id"] == wanted:
                return _build(raw, files, language)
        available.extend(r["id"] for r in records)
    shown = ", ".join(available[:50]) + (" ..." if len(available) > 50 else "")
    raise RecordNotFoundError(
        f"record {wanted!r} not found in {root}; available: {shown or 'none'}"
    )


def _build(raw: dict[str, Any], files: _DomainFiles, language: str) -> Record:
    _check_record(raw)
    override = _check_override(raw)
    values = _culture_values(raw, language)
    record_id = raw["id"]
    scenario_path = files.scenarios / f"{record_id}.json"
    scenario = _read_json(scenario_path)
    if not isinstance(scenario, dict):
        raise RecordFormatError(f"{scenario_path}: the scenario DB must be a JSON object")
    aliases_dir = files.aliases if files.aliases is not None and files.aliases.is_dir() else None
    aliases = load_aliases(aliases_dir)

    def resolve(value: Any) -> Any:
        """Identity placeholders, then ``<LOC:...>`` (EVA's order within a string)."""
        return resolve_locations(resolve_placeholders(value, values), aliases, language)

    def resolve_db(value: Any) -> Any:
        return inject_name_aliases(resolve(value), aliases, language)

    truth = raw["ground_truth"]
    utterances = raw.get("starting_utterances")
    trace = resolve(truth["expected_trace"]["trace"])
    starting = utterances.get(language) if isinstance(utterances, Mapping) else None
    if not isinstance(starting, str):
        first_user = next(
            (e["utterance"] for e in trace if e["event_type"] == "user_utterance"), None
        )
        if first_user is None:
            raise RecordFormatError(
                f"record {record_id!r}: no starting_utterances.{language}"
                " and no user line in the trace"
            )
        starting = first_user
    return Record(
        id=record_id,
        domain=files.domain,
        language=language,
        current_date_time=raw["current_date_time"],
        raw=raw,
        initial_db=resolve_db(scenario),
        expected_db=resolve_db(truth["expected_scenario_db"]),
        trace=tuple(trace),
        greeting=_greeting(files.initial_messages, language),
        agent=_override_agent(load_agent_config(files.agent), override, record_id),
        user_goal=resolve(raw["user_goal"]),
        user_config=resolve(raw.get("user_config") or {}),
        starting_utterance=resolve(starting),
        source=files.dataset,
        data_dir=files.root,
        prompt_template=_prompt_template(files.prompts) if files.prompts else None,
        prompt_path=files.prompts,
        aliases_dir=aliases_dir,
        agent_override=override,
    )


def _override_agent(
    agent: AgentConfig, override: Mapping[str, Any] | None, record_id: str
) -> AgentConfig:
    try:
        return apply_agent_override(agent, override)
    except RecordFormatError as exc:
        raise RecordFormatError(f"record {record_id!r}: {exc}") from None


def agent_config_path(record: Record) -> str:
    """The agent YAML path as EVA's metrics runner wants it in ``config.json``.

    Relative to the EVA checkout root (where that runner runs from) when the record comes from
    one, e.g. ``configs/agents/airline_agent.yaml``; absolute otherwise.
    """
    path = record.agent.path
    if path is None:
        return ""
    root = record.data_dir.resolve() if record.data_dir is not None else None
    if root is not None and (root / "configs") in path.resolve().parents:  # an EVA checkout
        return path.resolve().relative_to(root).as_posix()
    return str(path.resolve())


def record_meta(record: Record) -> dict[str, Any]:
    """What a run directory needs to know about its record to be re-scored or re-loaded."""
    return {
        "id": record.id,
        "domain": record.domain,
        "language": record.language,
        "data_dir": str(record.data_dir.resolve()) if record.data_dir else None,
        "source": str(record.source.resolve()) if record.source else None,
        "agent_config_path": str(record.agent.path.resolve()) if record.agent.path else None,
        "auth_tools": [t for t in record.agent.tool_names if record.agent.tool_type(t) == "auth"],
        "prompt": str(record.prompt_path.resolve()) if record.prompt_path else "hydralab",
        "end_reason": record.end_reason,
    }


KEY_PLACEHOLDER = "***"
"""What ``config.json`` has where EVA's ``RunConfig`` wants an ``api_key``: never the key (EVA
itself writes ``***`` for the keys of its ``model_list``)."""


def eva_run_config(
    record: Record,
    *,
    model: str,
    model_tag: str = "hydra-v1.1",
    voice: str | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """The run-level ``config.json`` EVA's ``RunConfig`` validates and its metrics runner
    reads (docs/hydra-facts.md, "EVA formats and scoring rules").

    ``model.s2s`` selects EVA's speech-to-speech pipeline type and says truthfully what
    answered: ``hydra`` (the real service) or ``hydra-emulator`` (hydralab's offline
    emulator). EVA requires ``model_list`` (its judges' deployments; here the model under test)
    and ``s2s_params`` with ``api_key`` and ``model``: the key is always
    :data:`KEY_PLACEHOLDER`. ``endpoint``: the redacted URL of a real run.
    """
    s2s = "hydra" if model == "hydra" else "hydra-emulator"
    params: dict[str, Any] = {
        "api_key": KEY_PLACEHOLDER,
        "model": model_tag,
        "voice": voice,
        "framework": "hydralab",
        "endpoint": endpoint if model == "hydra" else "hydralab emulator (offline)",
    }
    return {
        "domain": record.domain,
        "language": record.language,
        "agent_config_path": agent_config_path(record),
        "model_list": [
            {
                "model_name": model_tag,
                "litellm_params": {"model": f"{s2s}/{model_tag}", "api_key": KEY_PLACEHOLDER},
            }
        ],
        "model": {"s2s": s2s, "s2s_params": params},
        "hydralab": {
            "model": model,
            "data_dir": str(record.data_dir.resolve()) if record.data_dir else None,
            "api_key_placeholder": (
                f"{KEY_PLACEHOLDER!r} stands where EVA wants an api_key; the key is never written"
            ),
        },
    }


_INSTRUCTIONS_TEMPLATE = """\
You are a voice agent answering a live phone call. {role}
About you: {description}
Today is {current_date_time}.

Policies and instructions:
{instructions}

On the phone:
- Speak in short, natural sentences; one or two per reply.
- Say numbers, dates, times and codes the way a person reads them aloud.
- Call a tool as soon as you have what it needs, and never invent tool results.

{greeting_steer}"""


def build_instructions(record: Record) -> str:
    """System prompt for the model under test: personality, policies, date and greeting steer.

    With an EVA checkout this is EVA's realtime prompt (``realtime_agent.system_prompt``
    rendered with the agent's description, instructions and the record's date time, as
    ``PromptManager`` does) followed by a blank line and :func:`greeting_steer`; otherwise
    hydralab's own short template. The agent is the record's (``agent_override`` applied); for
    a language other than English the instructions end with a blank line and
    :func:`language_addendum`, as EVA's runner appends it to the agent config's instructions.
    """
    agent = record.agent
    addendum = language_addendum(record.language)
    if record.prompt_template is not None:
        # EVA renders the YAML values as they are (no stripping); so do we, byte for byte.
        instructions = str(agent.raw.get("instructions", agent.instructions))
        prompt = record.prompt_template.format(
            datetime=record.current_date_time,
            agent_personality=str(agent.raw.get("description", agent.description)),
            agent_instructions=f"{instructions}\n\n{addendum}" if addendum else instructions,
        )
        return f"{prompt}\n\n{greeting_steer(record.greeting)}"
    return _INSTRUCTIONS_TEMPLATE.format(
        role=agent.role,
        current_date_time=record.current_date_time,
        description=agent.description,
        instructions=f"{agent.instructions}\n\n{addendum}" if addendum else agent.instructions,
        greeting_steer=greeting_steer(record.greeting),
    )
