"""Run orchestration: one record's conversation, caller → bridge → model and back.

``run_record`` (async) wires the parts for one conversation and writes its run directory;
``run_record_sync`` is the same for scripts and notebooks (in a notebook, where an event loop is
already running, it runs the call on a private loop in a worker thread: no monkey-patching).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import secrets as _secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

import numpy as np

from hydralab.aio import run_sync
from hydralab.audio import read_wav, resample, write_wav
from hydralab.audio.perturb import LinePerturbation
from hydralab.bridge import Bridge, BridgeConfig, BridgeSession
from hydralab.caller import Caller, CallerConfig, CallerResult
from hydralab.callers.personas import Persona, load_persona, persona_caller_config
from hydralab.client import DEFAULT_VOICES, HYDRA_URL, HydraConfig
from hydralab.clock import Clock, ClockLike
from hydralab.emulator import Emulator, EmulatorConfig, EmulatorSession
from hydralab.evalog import fill_assistant_speech
from hydralab.latency import latency_stats
from hydralab.listener import Hearing, Listener
from hydralab.perf import steady_gc
from hydralab.policy import CALLER_POLICIES, CallerPolicy, CallerPolicyName
from hydralab.protocol.budget import (
    CONFIGURE_CEILING_BYTES,
    BudgetResult,
    ConfigureMode,
    greeting_steer,
    plan_configure,
)
from hydralab.records import (
    Record,
    build_instructions,
    check_path_name,
    eva_run_config,
    load_record,
    record_meta,
)
from hydralab.rundir import RunWriter, write_json, write_jsonl
from hydralab.scoring import EXPECTED_DB_FILE, db_hash, score_run
from hydralab.script import Script, script_from_record, slots_in
from hydralab.secrets import ENV_VAR, Secret, get_api_key, redact
from hydralab.speech.stt import (
    SKIP_REASONS,
    LocalTranscriber,
    SttConfig,
    Transcriber,
    make_transcriber,
    transcript_wer,
)
from hydralab.tools import BackendChoice, ToolExecutor, choose_tools, declarations, tool_ids

if TYPE_CHECKING:
    from hydralab.sim import Simulation

__all__ = [
    "HYDRA_URL_ENV",
    "RUN_FILES",
    "BridgeRun",
    "CallInterrupted",
    "RunDirectoryError",
    "RunResult",
    "call_verdict",
    "check_hydra_url",
    "check_out_dir",
    "claim_run_dir",
    "latency_summary",
    "open_run_writer",
    "record_run_dir",
    "release_run_dir",
    "resolve_hydra_url",
    "run_record",
    "run_record_sync",
]

HYDRA_URL_ENV = "HYDRA_URL"

RUN_FILES: frozenset[str] = frozenset(
    {
        # EVA's files
        "audit_log.json",
        "transcript.jsonl",
        "framework_logs.jsonl",
        "pipecat_metrics.jsonl",
        "initial_scenario_db.json",
        "final_scenario_db.json",
        "result.json",
        "user_simulator_events.jsonl",
        "audio_user.wav",
        "audio_user_clean.wav",
        "audio_assistant.wav",
        "audio_mixed.wav",
        "logs.log",
        # hydralab's own
        "scores.json",
        "expected_scenario_db.json",
        "events.jsonl",
        "run.json",
    }
)
"""The files of a record's run directory (``user_simulator_events.jsonl`` only when the caller
is hydralab's own); the run-level ``config.json`` sits two levels up."""
"""Environment variable naming the Hydra endpoint for ``model="hydra"`` (below the argument)."""

ModelName = Literal["emulator", "hydra"]


class BridgeRun(Protocol):
    """What the run directory's results are made from: one finished bridge session — the real
    :class:`~hydralab.bridge.BridgeSession` or the virtual-time
    :class:`~hydralab.sim.Simulation`."""

    @property
    def tools(self) -> ToolExecutor: ...

    @property
    def transcriber(self) -> object:
        """Its ``name``, ``model`` and ``wire_language`` (if any) go to ``run.json["stt"]``."""
        ...

    @property
    def ended_reason(self) -> str | None: ...

    @property
    def error(self) -> str | None: ...

    @property
    def tool_outputs_lost(self) -> list[dict[str, Any]]: ...

    def summary(self) -> dict[str, Any]:
        """``run.json["hydra"]``-style summary (:func:`hydralab.bridge.model_summary` plus
        ``connect_attempts``)."""
        ...


@dataclass
class RunResult:
    """What one conversation produced. ``run_dir`` holds every file."""

    record_id: str
    run_dir: Path
    model: str
    ended_reason: str | None
    error: str | None
    turns: list[dict[str, Any]]
    user_utterances: list[dict[str, Any]]
    tools_called: list[str]
    latency: dict[str, Any]
    scores: dict[str, Any]
    caller: CallerResult | None = field(default=None, repr=False)
    emulator: Emulator | None = field(default=None, repr=False)
    session: BridgeSession | None = field(default=None, repr=False)
    hydra_url: str | None = None
    """``model="hydra"``: the endpoint used, redacted (``?model=…&api_key=***``)."""
    simulation: Simulation | None = field(default=None, repr=False)
    """:func:`hydralab.sim.simulate_record`: the simulation (cores, emulator sessions, effects)."""
    completed: bool = False
    """``result.json["completed"]``: the whole conversation happened (:func:`call_verdict`)."""
    not_completed: list[str] = field(default_factory=list)
    """Why it did not (``result.json["error_details"]["not_completed"]``); empty if it did."""
    conditions: dict[str, Any] = field(default_factory=dict)
    """How it ran: ``configure_mode``, ``standard`` (EVA's benchmark conditions kept),
    ``label``, ``tools_backend`` and ``eva_commit`` (as ``run.json`` records them)."""

    @property
    def model_response_ms(self) -> list[float]:
        return [t["model_response_ms"] for t in self.turns if t["model_response_ms"] is not None]

    def summary(self) -> str:
        """The short text summary ``make demo`` prints."""
        lines = [
            f"record {self.record_id} · model {self.model} · ended: {self.ended_reason}"
            + (f" · error: {self.error}" if self.error else ""),
            f"turns: {len(self.user_utterances)} user, {len(self.turns)} assistant · "
            f"tools called: {', '.join(self.tools_called) or 'none'}",
        ]
        if self.conditions:
            c = self.conditions
            code = "EVA's own tool code" if c.get("tools_backend") == "eva" else "hydralab's tools"
            if c.get("eva_commit"):
                code += f" (EVA {str(c['eva_commit'])[:10]})"
            lines.append(f"conditions: configure {c.get('label')} · {code}")
        for t in self.turns:
            lat = (
                f"{t['model_response_ms']:.0f} ms"
                if t["model_response_ms"] is not None
                else f"— ({t['latency_reason']})"
            )
            bridge, alone = t.get("bridge_ms"), t.get("model_only_ms")
            if bridge is not None and alone is not None:
                if alone == t["model_response_ms"]:  # it spoke before calling its tools
                    lat += f" (spoke first; tools + bridge {bridge:.0f} ms after)"
                else:
                    lat += f" (model alone {alone:.0f} ms + bridge {bridge:.0f} ms)"
            heard = t.get("heard_ms")
            lat += f" · heard {heard:.0f} ms" if heard is not None else ""
            lines.append(f"  turn {t['index']:>2} {t['kind']:<8} model_response {lat}")
        s = self.latency.get("model_response", {})
        h = self.latency.get("heard", {})
        if s.get("n") or h.get("n"):
            lines.append(
                "latency p50: model_response "
                + (f"{s['p50_ms']:.0f} ms (n={s['n']})" if s.get("n") else "—")
                + " · heard by the caller "
                + (f"{h['p50_ms']:.0f} ms (n={h['n']})" if h.get("n") else "—")
                + (f" · max {s['max_ms']:.0f} / {h['max_ms']:.0f} ms" if s.get("n") and h.get("n")
                   else "")
            )  # fmt: skip
        if self.completed:
            lines.append("verdict: completed")
        else:
            lines.append("verdict: not completed — " + "; ".join(self.not_completed))
        tc = self.scores.get("task_completion")
        if tc is not None:
            lines.append(f"task_completion: {tc}")
        if self.hydra_url:
            lines.append(f"hydra endpoint: {self.hydra_url}")
        lines.append(f"run directory: {self.run_dir}")
        return "\n".join(lines)


def latency_summary(values: list[float]) -> dict[str, Any]:
    """n, mean, p50, p90, p95, p99, max in ms (:func:`hydralab.latency.latency_stats`)."""
    return latency_stats(values)


def _domain_text(record: Record) -> str:
    """Vocabulary for the offline STT's LM: agent policy and tool names, not the record's lines."""
    agent = record.agent
    parts = [agent.description, agent.role, agent.instructions]
    for tool in agent.tools:
        parts.append(str(tool.get("name", "")).replace("_", " "))
        parts.append(str(tool.get("description", "")))
    return "\n".join(p for p in parts if p)


def _make_stt(
    spec: Transcriber | SttConfig | str | None, rec: Record, key: Secret
) -> Transcriber | None:
    """The run's transcriber from a provider name / config (the Hydra key serves ``smallest``)."""
    if spec is None or not isinstance(spec, str | SttConfig):
        return spec
    cfg = SttConfig(provider=spec, language=rec.language) if isinstance(spec, str) else spec
    if cfg.provider == "smallest" and not cfg.api_key and key:
        cfg = dataclasses.replace(cfg, api_key=key)
    return make_transcriber(cfg, domain_text=_domain_text(rec))


def _stt_report(
    session: BridgeRun, caller: CallerResult | None, summary: dict[str, Any]
) -> dict[str, Any]:
    """``run.json["stt"]``: provider, outcome counts with reasons, and the user-turn WER
    against the caller's intended lines (matched by ``user_speech_start`` time)."""
    tr = session.transcriber
    utts = summary["user_utterances"]
    reasons = [str(u["error"] or "").split(":", 1)[0] for u in utts if not u["ok"]]
    skipped = [r for r in reasons if r in SKIP_REASONS]
    failed = [r for r in reasons if r not in SKIP_REASONS]
    turns = summary["turns"]
    report: dict[str, Any] = {
        "provider": getattr(tr, "name", None),
        "model": getattr(tr, "model", None),
        "language": getattr(tr, "wire_language", None),
        "utterances": len(utts),
        "transcribed": sum(1 for u in utts if u["ok"]),
        "failed": len(failed),
        "failure_reasons": {r: failed.count(r) for r in sorted(set(failed))},
        "skipped": len(skipped),
        "skip_reasons": {r: skipped.count(r) for r in sorted(set(skipped))},
        "assistant_fallback": {
            src: sum(1 for t in turns if t.get("text_source") == src)
            for src in ("stt", "stt_failed", "none")
        },
        "failures": summary["stt_failures"],
        "wer": None,
        "per_utterance": [],
    }
    if caller is not None:
        by_start = {u["start_epoch_ms"]: u for u in utts}
        pairs: list[tuple[str, str | None]] = []
        for sent in caller.user_turns:
            if sent.start_epoch_ms is None:
                continue
            u = by_start.get(sent.start_epoch_ms)
            hyp = u["text"] if u is not None and u["ok"] else None
            pairs.append((sent.text, hyp))
            report["per_utterance"].append(
                {
                    "index": sent.index,
                    "intended": sent.text,
                    "transcript": hyp,
                    "error": None if u is None else u["error"],
                    "wer": transcript_wer([(sent.text, hyp)])["wer"],
                }
            )
        report["wer"] = transcript_wer(pairs)
    return report


def check_hydra_url(url: str, *, source: str = "hydra_url") -> str:
    """``url`` stripped, if it is a usable Hydra endpoint: ``ws://`` or ``wss://``, a host.

    No credentials, query or fragment: the key travels only in the query the client adds.

    Raises:
        ValueError: The URL is unusable; the message says why (and never echoes a key).
    """
    u = url.strip()
    try:
        parts = urlsplit(u)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ValueError(f"{source}: not a valid URL: {redact(u)!r}") from None
    shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(
            f"{source}: a Hydra endpoint must be a ws:// or wss:// URL, not {redact(shown)!r} "
            f"(e.g. {HYDRA_URL})"
        )
    if not parts.hostname:
        raise ValueError(f"{source}: the URL has no host: {redact(u)!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{source}: the URL must not carry credentials ({redact(shown)!r})")
    if parts.query or parts.fragment or u.endswith(("?", "#")):
        raise ValueError(
            f"{source}: the URL must have no query or fragment ({redact(shown)!r}); the model "
            f"and the key (from {ENV_VAR}) are added when connecting"
        )
    return u


def resolve_hydra_url(url: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The Hydra endpoint to use: ``url``, else ``$HYDRA_URL``, else the public endpoint."""
    env = os.environ if environ is None else environ
    if url is not None and url.strip():
        return check_hydra_url(url)
    from_env = env.get(HYDRA_URL_ENV, "").strip()
    if from_env:
        return check_hydra_url(from_env, source=HYDRA_URL_ENV)
    return HYDRA_URL


def _voice_for(model_tag: str, voice: str | None) -> str | None:
    """The voice to request: ``None`` → hydralab's explicit per-tag default (a benchmark pins
    its voice; the server's own default is ``sterling``, a v1.0 voice, on every tag);
    ``"server"`` or ``""`` → omit it and let the server choose."""
    if voice is None:
        return DEFAULT_VOICES.get(model_tag)
    if voice in ("", "server"):
        return None
    return voice


def _run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + _secrets.token_hex(2)


class RunDirectoryError(ValueError):
    """A run directory that cannot be used, refused before anything starts: its run or record
    id is not a plain name, it would lie outside ``out_dir``, it already holds a run, or
    ``out_dir`` cannot be written."""


class CallInterrupted(RuntimeError):
    """:func:`run_record` was interrupted before the conversation began: nothing was recorded
    (its empty run directory is removed)."""


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def record_run_dir(out_dir: Path | str, run_id: str, record_id: str) -> Path:
    """``out_dir/run_id/records/record_id`` (EVA's layout), checked to stay inside ``out_dir``.

    Raises:
        RunDirectoryError: ``run_id`` or ``record_id`` is not a plain file name (a path
            separator, ``..``, empty, NUL...: :func:`hydralab.records.check_path_name`), or the
            directory resolves outside ``out_dir`` (a symlink).
    """
    try:
        check_path_name(run_id, what="run id")
        check_path_name(record_id, what="record id")
    except ValueError as exc:
        raise RunDirectoryError(str(exc)) from None
    root = Path(out_dir)
    run_dir = root / run_id / "records" / record_id
    resolved, base = run_dir.resolve(), root.resolve()
    if not resolved.is_relative_to(base):
        raise RunDirectoryError(f"run directory {run_dir} resolves to {resolved}, outside {base}")
    return run_dir


def check_out_dir(out_dir: Path | str) -> Path:
    """Create ``out_dir`` if needed and check that a file can be written in it, at once.

    Raises:
        RunDirectoryError: It is not a folder or cannot be created or written (the message
            says why).
    """
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise RunDirectoryError(f"output folder {root} is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".hydralab-write-test-{os.getpid()}-{_secrets.token_hex(4)}"
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise RunDirectoryError(
            f"cannot write to the output folder {root}: {_os_reason(exc)}"
        ) from None
    return root


def claim_run_dir(run_dir: Path) -> Path:
    """Create ``run_dir`` for one run: it must not exist yet (an empty leftover is taken), so a
    run never writes into or over another's files.

    Raises:
        RunDirectoryError: It already holds files (the run id was used for this record
            before), or it cannot be created or written.
    """
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create {run_dir.parent}: {_os_reason(exc)}") from None
    try:
        run_dir.mkdir()
    except FileExistsError:
        if not run_dir.is_dir() or any(run_dir.iterdir()):
            run_id = run_dir.parent.parent.name
            raise RunDirectoryError(
                f"run directory {run_dir} already exists: run id {run_id!r} was used for record "
                f"{run_dir.name!r} before; choose another run id (or remove that directory)"
            ) from None
    except OSError as exc:
        raise RunDirectoryError(
            f"cannot create the run directory {run_dir}: {_os_reason(exc)}"
        ) from None
    try:
        probe = run_dir / f".hydralab-write-test-{_secrets.token_hex(4)}"
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        release_run_dir(run_dir)
        raise RunDirectoryError(f"cannot write to {run_dir}: {_os_reason(exc)}") from None
    return run_dir


def release_run_dir(run_dir: Path) -> None:
    """Remove ``run_dir`` and its ``records`` and run folders if they are empty (a claimed
    directory whose run never began); anything with files is left alone."""
    for d in (run_dir, run_dir.parent, run_dir.parent.parent):
        try:
            d.rmdir()
        except OSError:
            return


async def run_record(
    record: str | Record | None = None,
    *,
    out_dir: Path | str = "runs",
    run_id: str | None = None,
    model: ModelName = "emulator",
    hydra_model: str = "hydra-v1.1",
    voice: str | None = None,
    port: int = 0,
    data_dir: Path | str | None = None,
    api_key: str | Secret | None = None,
    emulator_config: EmulatorConfig | None = None,
    caller_config: CallerConfig | None = None,
    bridge_config: BridgeConfig | None = None,
    transcriber: Transcriber | SttConfig | str | None = "local",
    session_timeout_s: float = 60.0,
    script: Script | None = None,
    configure_mode: ConfigureMode = "standard",
    configure_ceiling_bytes: int = CONFIGURE_CEILING_BYTES,
    hydra_url: str | None = None,
    interrupt: asyncio.Event | None = None,
    tools: BackendChoice = "auto",
    eva_dir: Path | str | None = None,
    caller: CallerPolicyName | CallerPolicy = "scripted",
    hearing: Hearing = "stt",
    persona: str | Persona | None = None,
    line: LinePerturbation | None = None,
    progress: Callable[[str], None] | None = None,
    verbose: bool = False,
) -> RunResult:
    """Run one record's conversation end to end and write its run directory.

    Args:
        record: Record id (default: hydralab's default record) or a loaded :class:`Record`.
        out_dir: Parent of run directories; files go to ``out_dir/run_id/records/record_id/``
            (EVA's layout), with the run-level ``config.json`` in ``out_dir/run_id/``.
        model: ``"emulator"`` (offline, default) or ``"hydra"`` (needs ``SMALLEST_API_KEY``).
        hydra_model: Hydra model tag for the ``?model=`` query.
        voice: Voice from the tag's roster; ``None`` = hydralab's per-tag default
            (:data:`~hydralab.client.DEFAULT_VOICES`), ``"server"`` = send none.
        port: Bridge port on 127.0.0.1 (0 = any free port).
        emulator_config: The emulator's behaviour (default: the ``live`` profile,
            :meth:`EmulatorConfig.live`, as the live service behaves; ``EmulatorConfig()`` is
            the friendlier ``classic`` one).
        transcriber: User-turn STT (and the assistant fallback): a provider name
            (``"local"`` = offline pocketsphinx, ``"smallest"``, ``"openai"``, ``"deepgram"``;
            language from the record), an :class:`~hydralab.speech.stt.SttConfig`, a ready
            :class:`~hydralab.speech.stt.Transcriber`, or ``None`` = none. Built (and its
            language and key validated) before anything starts; closed after the session's
            pending transcriptions finished.
        configure_mode: ``"standard"`` refuses (:class:`ConfigureTooLargeError`, before
            connecting) a ``session.configure`` over ``configure_ceiling_bytes`` that only fits
            by compacting tools or cutting instructions; ``"compacted"`` runs it, labelled
            non-standard in ``run.json["configure_budget"]``; ``"update"`` (experimental)
            configures the full instructions with the tools that fit and sends every tool with
            one ``session.update`` after ``session.configured`` (labelled non-standard and
            unverified; what the model echoed is in ``run.json["bridge"]["session_update"]``).
        configure_ceiling_bytes: Hydra's ``session.configure`` ceiling (~32 KB, empirical).
        hydra_url: Hydra endpoint for ``model="hydra"`` (on-prem, staging, a local
            :class:`~hydralab.replay.ReplayServer`): ``ws://`` or ``wss://``, no query. Default:
            ``$HYDRA_URL``, else the public endpoint. The key still comes from
            ``SMALLEST_API_KEY`` and is redacted wherever the URL is recorded.
        interrupt: Set it (a signal handler does, ``hydralab run``) to end the call now: the
            conversation ends as ``interrupted`` (never completed), pending tools and
            transcriptions finish, and every output is written as for any other end.
        tools: Which tool code executes the calls (:func:`tool_executor`): ``"auto"`` = EVA's
            own when ``eva_dir`` (else an EVA ``data_dir``) has it, else hydralab's;
            ``"eva"`` / ``"hydralab"`` force one. Recorded in ``run.json["tools"]``.
        eva_dir: An EVA repository root whose ``src/eva/assistant/tools`` code to load (the
            record's data directory when it is an EVA checkout, by default).
        caller: The caller's policy (:mod:`hydralab.policy`): ``"scripted"`` (the record's
            user lines in order, the default), ``"rules"`` (offline, answers what it is asked)
            or a ready :class:`~hydralab.policy.CallerPolicy` (e.g. an ``llm`` caller).
        hearing: What a listening caller hears: ``"stt"`` (the assistant's audio through
            ``transcriber``: realistic) or ``"native"`` (the bridge's transcript: exact).
        persona: EVA's persona name (``default``, ``elderly_slow``, ``aggressive_impatient``,
            ``forgetful_disorganized``) or a :class:`~hydralab.callers.Persona`: its timing
            (speaking rate, think time, mid-line pauses, barge-ins) applies to every policy;
            its text goes to an ``llm`` caller's prompt.
        line: A degraded line (:class:`~hydralab.audio.perturb.LinePerturbation`): noise at
            an SNR, packet loss, codec quantisation, volume fluctuation on what is sent;
            ``audio_user_clean.wav`` keeps the clean speech.
        progress: Called with a line per assistant turn as it completes (its type, status,
            ``model_response`` and tools; :func:`turn_progress_line`), e.g. ``print``
            (``hydralab run`` does unless ``--quiet``). ``None``: silent.
        verbose: Progress lines also carry the turn's text.

    Only the first connection to the run's bridge gets a conversation; any other is refused
    at once (close 1013 ``busy``; logged in ``events.jsonl`` and ``run.json
    ["refused_connections"]``), so nothing but this call writes into its run directory.

    Raises:
        RunDirectoryError: Before anything starts: ``out_dir`` cannot be written, the run
            directory already holds a run (``run_id`` reused for this record), or an id is not
            a plain name.
        CallInterrupted: ``interrupt`` was set before the conversation began (nothing was
            recorded; the empty run directory is removed).
    """
    if model not in ("emulator", "hydra"):
        raise ValueError(f"unknown model {model!r}: use 'emulator' or 'hydra'")
    if model != "hydra" and hydra_url is not None:
        raise ValueError("hydra_url applies to model 'hydra' only")
    # a bad endpoint fails before anything starts
    endpoint = resolve_hydra_url(hydra_url) if model == "hydra" else HYDRA_URL
    rec = (
        record
        if isinstance(record, Record)
        else load_record(record, data_dir=Path(data_dir) if data_dir is not None else None)
    )
    script = script or script_from_record(rec)
    # EVA's layout, always inside out_dir (ids that are not plain names are refused)
    run_dir = record_run_dir(out_dir, run_id or _run_id(), rec.id)
    key = get_api_key(api_key)
    if model == "hydra" and not key:
        raise ValueError(f"model 'hydra' needs an API key: set {ENV_VAR} in the environment")
    stt = _make_stt(transcriber, rec, key)  # a bad language or missing key fails before any I/O
    policy = make_policy(caller, rec, script)
    persona_obj = resolve_persona(persona, rec, eva_dir)
    if policy is not None and hearing == "stt" and stt is None:
        raise ValueError("a caller that hears by STT needs a transcriber (or hearing='native')")
    # the tool code is found (and loaded) now: a wrong --eva-dir fails before anything starts
    tool_exec = tool_executor(rec, tools=tools, eva_dir=eva_dir)
    # refuses before connecting; the session is sent verbatim below
    hydra, budget = _plan_hydra(
        rec,
        hydra_model=hydra_model,
        voice=voice,
        configure_mode=configure_mode,
        configure_ceiling_bytes=configure_ceiling_bytes,
    )
    # an unwritable out_dir or a run directory that already holds a run: refused now, before
    # any process, server or call starts (never a hang, never another run's files overwritten)
    check_out_dir(out_dir)
    claim_run_dir(run_dir)
    bridge: Bridge | None = None
    listener: Listener | None = None
    try:
        # The offline decoder process starts now, in parallel with the call's set-up.
        warm = (
            asyncio.ensure_future(stt.start())
            if isinstance(stt, LocalTranscriber) and stt.isolate
            else None
        )
        emulator: Emulator | None = None
        caller_result: CallerResult | None = None
        session: BridgeSession | None = None
        try:
            if model == "emulator":
                emulator = Emulator(script, config=emulator_config or EmulatorConfig.live())
                url = await emulator.start()
            else:
                url = endpoint
            hydra = HydraConfig(**{**hydra.__dict__, "url": url, "session": budget.session})
            bcfg = _with_budget(_with_hydra(bridge_config, hydra), budget)
            started = dt.datetime.now()

            def writer_factory(clock: Clock) -> RunWriter:
                return open_run_writer(run_dir, clock, model=model, hydra=hydra)

            # One clock for the whole call: the emulator, the bridge and the caller stamp
            # everything from it (taken now, after the set-up, so the recordings start with
            # the call).
            clock = Clock()
            if emulator is not None:
                emulator.clock = clock

            def session_factory() -> BridgeSession:
                return BridgeSession(
                    bcfg,
                    tools=tool_exec,
                    writer_factory=writer_factory,
                    transcriber=stt,
                    api_key=key,
                    clock=clock,
                )

            def log_refused(entry: dict[str, Any]) -> None:
                """A second connection, refused: logged in this run's events."""
                if bridge is not None:
                    for s in bridge.sessions[:1]:
                        s.writer.log("bridge", "-", entry, clock.now_ns())

            # One conversation per run directory: any further connection is refused (1013).
            bridge = Bridge(session_factory, max_sessions=1, on_refused=log_refused)
            await bridge.start(port=port)
            ccfg = caller_settings(caller_config, script, persona=persona_obj, line=line)
            if policy is not None:
                loop = asyncio.get_running_loop()

                def native_text(index: int) -> str:
                    if bridge is None or not bridge.sessions:
                        return ""
                    turns = bridge.sessions[0].core.tracker.turns
                    return turns[index].heard_text if 0 <= index < len(turns) else ""

                listener = make_listener(
                    policy,
                    hearing=hearing,
                    transcribe=None if stt is None else _blocking_stt(stt, loop),
                    native_text=native_text,
                )
            caller_obj = Caller(script, url=bridge.url, config=ccfg, clock=clock, listener=listener)
            watcher = (
                asyncio.ensure_future(_watch_turns(bridge, progress, verbose=verbose))
                if progress is not None
                else None
            )
            with steady_gc():  # no full collection stalls the call's clock
                try:
                    caller_result = await _place_call(caller_obj, bridge, interrupt)
                finally:
                    if watcher is not None:
                        watcher.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await watcher
                if caller_result is None:
                    raise CallInterrupted("interrupted before the call began: nothing was recorded")
                session = await _the_session(bridge, caller_result, timeout_s=session_timeout_s)
        finally:
            if bridge is not None:
                await bridge.stop()
            if emulator is not None:
                await emulator.stop()
            if warm is not None:
                with contextlib.suppress(Exception):  # a failed start shows up per utterance
                    await warm
            if stt is not None:
                await stt.aclose()
    except BaseException:
        if bridge is None or not bridge.sessions:  # the run never began: leave no trace
            release_run_dir(run_dir)
        raise
    ended = dt.datetime.now()
    assert bridge is not None and session is not None
    return _write_results(
        rec,
        script,
        run_dir,
        model,
        session,
        caller_result,
        started,
        ended,
        emulator,
        configure_budget=budget.to_dict(),
        extra_meta={
            "refused_connections": list(bridge.refused),
            "caller_policy": caller_policy_meta(
                policy, listener, persona=persona_obj, line=line, caller=caller_result
            ),
        },
    )


def turn_progress_line(turn: Any, *, verbose: bool = False) -> str:
    """One line for a completed assistant turn (a :class:`~hydralab.turns.AssistantTurn`)."""
    mr = turn.model_response_ms
    lat = f"{mr:.0f} ms" if mr is not None else f"— ({turn.latency_reason or 'no anchor'})"
    tools = ", ".join(str(c.get("name") or c.get("tool") or "?") for c in turn.tool_calls)
    line = f"turn {turn.index:>2} {turn.kind:<8} {turn.status:<11} model_response {lat}"
    if tools:
        line += f" · tools: {tools}"
    if verbose and turn.text:
        line += f" · “{turn.text}”"
    return line


async def _watch_turns(
    bridge: Bridge, progress: Callable[[str], None], *, verbose: bool, every_s: float = 0.25
) -> None:
    """Report each assistant turn of the bridge's conversation once it completes."""
    told = 0
    while True:
        if bridge.sessions:
            turns = bridge.sessions[0].core.tracker.turns
            while told < len(turns) and turns[told].complete:
                progress(turn_progress_line(turns[told], verbose=verbose))
                told += 1
        await asyncio.sleep(every_s)


async def _place_call(
    caller: Caller, bridge: Bridge, interrupt: asyncio.Event | None
) -> CallerResult | None:
    """The caller's call. When ``interrupt`` is set first, the conversation is ended from the
    bridge (``shutdown("interrupted")``: it drains, closes both sockets and writes its files)
    and the caller's result is what it got until then; ``None``: interrupted before any
    conversation began (the caller is cancelled, no connection is taken any more)."""
    call = asyncio.ensure_future(caller.run())
    if interrupt is None:
        return await call
    stop = asyncio.ensure_future(interrupt.wait())
    try:
        await asyncio.wait({call, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not call.done():
            bridge.refuse_new()
            if bridge.sessions:
                for s in bridge.sessions:
                    s.shutdown("interrupted")
            else:
                call.cancel()
                await asyncio.wait({call})  # its end, without taking on its cancellation
                if not call.cancelled():
                    call.exception()  # retrieved: a call that failed meanwhile is moot
                return None
        return await call
    except BaseException:
        call.cancel()
        raise
    finally:
        stop.cancel()


async def _the_session(
    bridge: Bridge, caller_result: CallerResult, *, timeout_s: float
) -> BridgeSession:
    """The bridge's conversation once it has ended; a clear error, soon, when the caller never
    reached the bridge (or the bridge could not start the conversation)."""
    if not await bridge.wait_started(timeout_s=min(timeout_s, 5.0)):
        raise RuntimeError(
            f"the caller never reached the bridge (caller {caller_result.ended_reason}"
            + (f": {caller_result.error})" if caller_result.error else ")")
        )
    return await bridge.wait_session(timeout_s=timeout_s)


def _plan_hydra(
    rec: Record,
    *,
    hydra_model: str,
    voice: str | None,
    configure_mode: ConfigureMode,
    configure_ceiling_bytes: int,
) -> tuple[HydraConfig, BudgetResult]:
    """The model configuration for ``rec`` (no URL yet) and its configure budget; raises
    :class:`~hydralab.protocol.budget.ConfigureTooLargeError` before anything connects."""
    hydra = HydraConfig(
        model=hydra_model,
        instructions=build_instructions(rec),
        voice=_voice_for(hydra_model, voice),
        tools=tuple(declarations(rec.agent)),
        generate_initial_response=True,
    )
    fields = hydra.session_payload()
    budget = plan_configure(
        fields.pop("instructions"),
        fields.pop("tools", []),
        greeting_steer=greeting_steer(rec.greeting),
        mode=configure_mode,
        ceiling_bytes=configure_ceiling_bytes,
        other_fields=fields,
    )
    return hydra, budget


def _with_hydra(bridge_config: BridgeConfig | None, hydra: HydraConfig) -> BridgeConfig:
    bcfg = bridge_config or BridgeConfig()
    return BridgeConfig(**{**bcfg.__dict__, "hydra": hydra})


def _with_budget(bcfg: BridgeConfig, budget: BudgetResult) -> BridgeConfig:
    """The bridge settings the configure plan implies: the ``session.update`` to send after
    ``session.configured`` (update mode) and the ceiling a reconnect's context must fit."""
    return dataclasses.replace(
        bcfg,
        session_update=budget.update_session,
        configure_ceiling_bytes=budget.ceiling_bytes,
    )


def make_policy(
    caller: CallerPolicyName | CallerPolicy, rec: Record, script: Script, *, seed: int = 0
) -> CallerPolicy | None:
    """The caller's policy object (``None`` for ``"scripted"``: the script path, no listener).

    Raises:
        ValueError: An unknown name, or ``"llm"`` by name (build an
            :class:`~hydralab.callers.llm.LlmCaller` with its endpoint and pass it).
    """
    if not isinstance(caller, str):
        return caller
    if caller == "scripted":
        return None
    if caller == "rules":
        from hydralab.callers.rules import RulesCaller

        return RulesCaller(rec, script=script, seed=seed)
    if caller == "llm":
        raise ValueError("caller='llm' needs its endpoint: pass an LlmCaller instance")
    raise ValueError(f"unknown caller policy {caller!r}: use one of {', '.join(CALLER_POLICIES)}")


def make_listener(
    policy: CallerPolicy,
    *,
    hearing: Hearing,
    transcribe: Callable[[np.ndarray], str] | None,
    native_text: Callable[[int], str] | None,
) -> Listener:
    """A :class:`~hydralab.listener.Listener` for ``policy`` (hearing by STT or natively)."""
    return Listener(
        policy,
        hearing=hearing,
        transcribe=transcribe if hearing == "stt" else None,
        native_text=native_text if hearing == "native" else None,
    )


def _blocking_stt(stt: Transcriber, loop: asyncio.AbstractEventLoop) -> Callable[[np.ndarray], str]:
    """The run's async transcriber as a blocking ``pcm (8 kHz) -> text`` for a worker thread."""

    def transcribe(pcm: np.ndarray) -> str:
        fut = asyncio.run_coroutine_threadsafe(stt.transcribe(pcm, sample_rate_hz=8000), loop)
        result = fut.result()
        return result.text if result.ok else ""

    return transcribe


def question_answers(
    emulator_sessions: Sequence[EmulatorSession], caller: CallerResult | None, script: Script
) -> dict[str, Any]:
    """Each question the emulator asked (``asked`` / ``drift_question``: the slots of the
    record's ``information_required`` it wanted) beside the caller's next line, ``right`` when
    that line carries the question's target slot (:func:`hydralab.script.slots_in`)."""
    rows: list[dict[str, Any]] = []
    lines = {t.index: t.text for t in caller.user_turns} if caller is not None else {}
    for k, sess in enumerate(emulator_sessions):
        for q in getattr(sess, "questions", []):
            slots = list(q.get("slots") or [])
            if not slots:
                continue
            answer = lines.get(int(q["turn"])) if k == len(emulator_sessions) - 1 else None
            found = slots_in(answer, script.information) if answer else ()
            rows.append(
                {
                    "session": k,
                    "turn": q["turn"],
                    "kind": q.get("kind"),
                    "slots": slots,
                    "expected": q.get("expected"),
                    "answer": answer,
                    "right": bool(answer) and slots[0] in found,
                }
            )
    drift = [r for r in rows if r["kind"] != "script"]
    return {
        "asked": len(rows),
        "answered_right": sum(r["right"] for r in rows),
        "drift_asked": len(drift),
        "drift_answered_right": sum(r["right"] for r in drift),
        "rows": rows,
    }


#: The one caller-side latency hydralab reports beside ``model_response``.
HEARD_DEFINITION = (
    "heard_ms: the caller's speech end (the last audible sample of its utterance, as the caller "
    "logged it: EVA's user audio_end) -> the first audible sample of the assistant's answer at "
    "the caller (EVA's assistant audio_start); EVA's latency_assistant_turns, whose mean is "
    "response_speed. It includes the model's end-of-speech detection, the model, the bridge and "
    "both links; model_response starts at the model's own speech_stopped."
)


def heard_latencies(caller: CallerResult | None) -> dict[int, float]:
    """``{assistant turn: heard_ms}`` from the caller's own log (:data:`HEARD_DEFINITION`):
    the first audible audio of turn ``k`` minus the end of the caller's last utterance that
    stopped before it. Negative for an answer that started before the caller finished (a
    barge-in); turns without audio or before any utterance are left out."""
    if caller is None:
        return {}
    stops = sorted(t.stop_epoch_ms for t in caller.user_turns if t.stop_epoch_ms is not None)
    out: dict[int, float] = {}
    for turn in caller.assistant_turns:
        start = turn.audio_start_epoch_ms
        if start is None or turn.index == 0:
            continue
        before = [s for s in stops if s <= start]
        if before:
            out[turn.index] = float(start - before[-1])
    return out


def resolve_persona(
    persona: str | Persona | None, rec: Record, eva_dir: Path | str | None
) -> Persona | None:
    """A persona by name (EVA's text from ``eva_dir`` or the record's EVA checkout)."""
    if persona is None or isinstance(persona, Persona):
        return persona
    where = eva_dir if eva_dir is not None else rec.data_dir
    return load_persona(persona, eva_dir=where)


def caller_settings(
    caller_config: CallerConfig | None,
    script: Script,
    *,
    persona: Persona | None,
    line: LinePerturbation | None,
) -> CallerConfig:
    """The caller's settings for one call: ``caller_config`` plus the line and the persona's
    timing drawn for this call (:func:`hydralab.callers.persona_caller_config`)."""
    ccfg = caller_config or CallerConfig()
    if line is not None:
        ccfg = dataclasses.replace(ccfg, line=line)
    if persona is not None:
        ccfg = persona_caller_config(ccfg, persona, script=script, seed=ccfg.seed)
    return ccfg


def caller_policy_meta(
    policy: CallerPolicy | None,
    listener: Listener | None,
    *,
    persona: Persona | None = None,
    line: LinePerturbation | None = None,
    caller: CallerResult | None = None,
) -> dict[str, Any]:
    """``run.json["caller_policy"]``: which policy spoke, how it heard, every decision, the
    persona and its timing actions, the line and what it did to each user turn."""
    meta: dict[str, Any] = {"policy": "scripted"}
    if policy is not None and listener is not None:
        meta = {
            "policy": getattr(policy, "name", type(policy).__name__),
            "hearing": listener.hearing,
            "decisions": list(listener.log),
        }
        describe = getattr(policy, "describe", None)
        if callable(describe):
            meta["policy_settings"] = describe()
    meta["persona"] = persona.describe() if persona is not None else None
    meta["line"] = line.describe() if line is not None else None
    if caller is not None:
        meta["user_turns"] = [
            {
                "index": t.index,
                "start_epoch_ms": t.start_epoch_ms,
                "barged_in": t.barged_in,
                "pause_ms": t.pause_ms,
                "line": dict(t.line_report) if t.line_report else None,
            }
            for t in caller.user_turns
        ]
    return meta


def tool_executor(
    rec: Record, *, tools: BackendChoice = "auto", eva_dir: Path | str | None = None
) -> ToolExecutor:
    """The executor for one conversation of ``rec``: its resolved initial DB and date, the
    agent config's tool ids enabled, and the tool code :func:`hydralab.tools.choose_tools`
    picks (EVA's own from ``eva_dir`` — by default the record's data directory, when it is an
    EVA checkout with ``src/eva/assistant/tools`` — else hydralab's).

    Raises:
        hydralab.tools.ToolBackendError: No tool code for the domain (itsm / medical_hr
            without an EVA checkout: the message says what to point ``--eva-dir`` at), or
            EVA's code could not be loaded.
    """
    where = eva_dir if eva_dir is not None else rec.data_dir
    backend = choose_tools(rec.domain, eva_dir=where, prefer=tools)
    return ToolExecutor.for_record(rec, enabled_tools=tool_ids(rec.agent), backend=backend)


def open_run_writer(
    run_dir: Path, clock: ClockLike, *, model: str, hydra: HydraConfig
) -> RunWriter:
    """The run directory's writer on the session clock; its first row names the endpoint."""
    w = RunWriter(run_dir, epoch_ms=clock.epoch_ms, t0_ns=clock.t0_ns)
    row = {"type": "hydra_endpoint", "model": model, "url": hydra.redacted_url()}
    w.log("bridge", "-", row, clock.now_ns())
    return w


def _write_results(
    rec: Record,
    script: Script,
    run_dir: Path,
    model: str,
    session: BridgeRun,
    caller: CallerResult | None,
    started: dt.datetime,
    ended: dt.datetime,
    emulator: Emulator | None,
    *,
    configure_budget: dict[str, Any] | None = None,
    emulator_config: EmulatorConfig | None = None,
    emulator_sessions: Sequence[EmulatorSession] = (),
    extra_meta: Mapping[str, Any] | None = None,
) -> RunResult:
    """Write ``result.json``, ``run.json``, ``scores.json``... for a finished session.

    ``emulator``: the real emulator server (its config and sessions are reported); without
    one, ``emulator_config`` / ``emulator_sessions`` (the simulator's). ``extra_meta``: more
    top-level ``run.json`` keys."""
    if emulator is not None:
        emulator_config, emulator_sessions = emulator.config, emulator.sessions
    summary = session.summary()
    stt_report = _stt_report(session, caller, summary)
    turns = summary["turns"]
    heard = heard_latencies(caller)
    noisy = caller is not None and any(
        (t.line_report or {}).get("noise") not in (None, "none") for t in caller.user_turns
    )
    for row in turns:  # what the caller heard, beside what the model took (HEARD_DEFINITION)
        row["heard_ms"] = heard.get(int(row["index"])) if row.get("kind") != "greeting" else None
        if noisy and row.get("v2v_ms") is not None:
            # v2v reads the caller's last audible sample off the line, where the noise is
            # audible too: it would measure the noise, not the speech
            row["v2v_ms"], row["v2v_reason"] = None, "noisy_line: see heard_ms"
    tools_called = [t for row in turns for t in row["tools"]]
    by_kind: dict[str, list[float]] = {}
    for row in turns:
        if row["model_response_ms"] is not None:
            kind = "barged_in" if row["interrupted"] else row["kind"]
            by_kind.setdefault(kind, []).append(row["model_response_ms"])
    tool_rows = [r for r in turns if r["kind"] == "tool" and not r["interrupted"]]

    def _col(key: str) -> list[float]:
        return [float(r[key]) for r in tool_rows if r.get(key) is not None]

    latency = {
        "model_response": latency_summary(summary["model_response_ms"]),
        # what the caller heard (HEARD_DEFINITION): EVA's latency_assistant_turns, positive ones
        "heard": latency_summary(
            [r["heard_ms"] for r in turns if r.get("heard_ms") is not None and r["heard_ms"] > 0]
        ),
        "model_response_by_type": {k: latency_summary(v) for k, v in by_kind.items()},
        # tool turns: what the model took alone beside what hydralab's bridge added
        "tool_turns": {
            "model_response": latency_summary(_col("model_response_ms")),
            "model_only": latency_summary(_col("model_only_ms")),
            "bridge": latency_summary(_col("bridge_ms")),
            "bridge_wait": latency_summary(_col("tool_wait_ms")),
        },
    }
    final_db = session.tools.db
    # what re-scoring needs without the original data, and EVA's run-level config
    write_json(run_dir / EXPECTED_DB_FILE, rec.expected_db, sort_keys=True)
    run_config = eva_run_config(
        rec,
        model=model,
        model_tag=summary["model"],
        voice=summary["voice_echoed"] or summary["voice_requested"],
        endpoint=summary["url"],  # redacted: no key
    )
    run_config["hydralab"].update(
        model_tag=summary["model"],
        voice_requested=summary["voice_requested"],
        voice_echoed=summary["voice_echoed"],
        output_rate_hz=summary["output_rate_hz"],
    )
    if model == "hydra":  # the endpoint actually used (redacted: no key)
        run_config["hydralab"]["hydra_url"] = summary["url"]
    # the conditions, where EVA's config is read: a fitted configure is not EVA's standard
    budget_info = configure_budget or {}
    run_config["hydralab"].update(
        configure_mode=budget_info.get("mode"),
        standard_conditions=budget_info.get("standard"),
        conditions=budget_info.get("label"),
        tools_backend=session.tools.backend.kind,
    )
    write_json(run_dir.parent.parent / "config.json", run_config)
    if caller is not None:  # with what was heard: EVA's S2S turns come from assistant_speech
        events = fill_assistant_speech(caller.events, turns)
        write_jsonl(run_dir / "user_simulator_events.jsonl", events)
    _clean_user_track(run_dir, caller, summary["timeline_t0_epoch_ms"])
    _write_conversation_log(run_dir)
    lat = latency["model_response"]
    files = {
        "audio_assistant_path": "audio_assistant.wav",
        "audio_user_path": "audio_user_clean.wav",
        "audio_mixed_path": "audio_mixed.wav",
        "transcript_path": "transcript.jsonl",
        "audit_log_path": "audit_log.json",
        "pipecat_logs_path": "framework_logs.jsonl",
        "user_simulator_logs_path": "user_simulator_events.jsonl",
    }
    audit = _read_audit(run_dir)
    not_completed = call_verdict(session, summary, caller, script, audit)
    if emulator_sessions:
        # only the emulator knows its script did not reach its end: a scripted caller that ran
        # out of lines when the model asked more than the reference did (a listening caller
        # that says goodbye ends the conversation by its own choice; task_completion scores
        # what was done by then)
        last = emulator_sessions[-1]
        if (
            caller is not None
            and not caller.listening
            and caller.ended_reason == "goodbye"
            and last.next_speech_turn < len(script.assistant_turns)
        ):
            not_completed.append(
                f"emulator: its script turn {last.next_speech_turn} of "
                f"{len(script.assistant_turns) - 1} never played"
            )
    completed = not not_completed
    details: dict[str, Any] = {}
    if not_completed:
        details["not_completed"] = not_completed
    if session.tool_outputs_lost:
        details["tool_outputs_lost"] = session.tool_outputs_lost
    result = {
        "record_id": rec.id,
        # the whole conversation happened, truthfully (call_verdict); why not, in error_details
        "completed": completed,
        "error": session.error,
        "error_details": details or None,
        "llm_latency": None,  # cascade-only stats; an S2S run has model_response_latency
        "stt_latency": None,
        "tts_latency": None,
        "model_response_latency": (
            {k: lat[f"{k}"] for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms")}
            | {"total_calls": lat["n"]}
            if lat["n"]
            else None
        ),
        "started_at": started.isoformat(),
        "ended_at": ended.isoformat(),
        "duration_seconds": (ended - started).total_seconds(),
        "output_dir": str(run_dir),
        **{k: str(run_dir / v) for k, v in files.items()},
        "conversation_log_path": str(run_dir / "logs.log"),
        "elevenlabs_logs_path": None,
        # as EVA counts: the user entries of the audit log; tools in first-call order
        "num_turns": sum(1 for e in audit.get("transcript", []) if e.get("message_type") == "user"),
        "num_tool_calls": len(tools_called),
        "tools_called": list(dict.fromkeys(tools_called)),
        "conversation_ended_reason": session.ended_reason,
        "initial_scenario_db_hash": db_hash(session.tools.initial_db),
        "final_scenario_db_hash": db_hash(final_db),
        "time_limit_accepted": False,
    }
    write_json(run_dir / "result.json", result)
    run_meta = {
        "record_id": rec.id,
        "domain": rec.domain,
        "record": record_meta(rec),
        "model": model,
        "configure_budget": configure_budget,
        # which tool code ran the calls, and the error types scoring counts as invalid calls
        "tools": {
            **session.tools.provenance(),
            "call_error_types": sorted(session.tools.eva_metric_error_types()),
            "domain_call_error_types": sorted(session.tools.call_error_types()),
            "calls": dict(session.tools.call_counts),
        },
        "hydra": {
            k: summary[k]
            for k in (
                "model",
                "url",
                "session_id",
                "output_rate_hz",
                "output_rate_announced",
                "voice_requested",
                "voice_echoed",
                "client_notes",
                "configure_bytes",
                "warnings",
                "rejected_model_frames",
            )
        },
        "bridge": {
            k: summary[k]
            for k in (
                "pacer",
                "tool_requests",
                "tool_outputs_lost",
                "muted_responses",
                "dropped_deltas_after_barge_in",
                "reconnects",
                "reconnect_log",
                "connect_attempts",
                "dropped_input_ms",
                "caller_dialect",
                "caller_stamps_ignored",
                "caller_silence_ahead_dropped_ms",
                "rejected_caller_frames",
                "rejected",
                "core_errors",
                "core_error_reasons",
                "session_update",
            )
            if k in summary
        },
        "versions": {
            "hydralab": _pkg_version("hydralab"),
            "hydralab_commit": _hydralab_commit(),
            "python": platform.python_version(),
            "websockets": _pkg_version("websockets"),
            "numpy": np.__version__,
        },
        "emulator": (
            {
                k: v
                for k, v in dataclasses.asdict(emulator_config).items()
                if k != "expected_api_key"
            }
            if emulator_config is not None
            else None
        ),
        "emulator_flags": [
            {"session": i, "kind": f.kind, "detail": f.detail}
            for i, sess in enumerate(emulator_sessions)
            for f in sess.flags
        ],
        # trace ids the emulator's script used -> the ids the live tools returned
        "emulator_id_chain": {
            k: v for sess in emulator_sessions for k, v in sess.id_chain.mapping.items()
        },
        # what the emulator asked for (its script's questions and any drift), and whether the
        # caller's next line gave it
        "questions": question_answers(emulator_sessions, caller, script),
        "latency": latency,
        "timeline": {"t0_epoch_ms": summary["timeline_t0_epoch_ms"], "sample_rate_hz": 48000},
        "turns": turns,
        "user_utterances": summary["user_utterances"],
        "stt_failures": summary["stt_failures"],
        "stt": stt_report,
        "errors": summary["errors"],
        "ended_reason": session.ended_reason,
        "error": session.error,
        "verdict": {"completed": completed, "not_completed": not_completed},
        "caller": None
        if caller is None
        else {
            "ended_reason": caller.ended_reason,
            "error": caller.error,
            "user_turns": len(caller.user_turns),
            "assistant_turns": len(caller.assistant_turns),
        },
        "script": {
            "user_turns": len(script.user_turns),
            "assistant_turns": len(script.assistant_turns),
        },
    }
    if extra_meta:
        run_meta.update(extra_meta)
    write_json(run_dir / "run.json", run_meta)
    scores = score_run(run_dir)  # from the files just written, as `hydralab score` does
    return RunResult(
        record_id=rec.id,
        run_dir=run_dir,
        model=model,
        ended_reason=session.ended_reason,
        error=session.error,
        turns=turns,
        user_utterances=summary["user_utterances"],
        tools_called=tools_called,
        latency=latency,
        scores=scores,
        caller=caller,
        session=session if isinstance(session, BridgeSession) else None,
        emulator=emulator,
        hydra_url=summary["url"] if model == "hydra" else None,
        completed=completed,
        not_completed=not_completed,
        conditions={
            "configure_mode": budget_info.get("mode"),
            "standard": budget_info.get("standard"),
            "label": budget_info.get("label"),
            "tools_backend": run_meta["tools"]["backend"],
            "eva_commit": run_meta["tools"].get("eva_commit"),
        },
    )


def _hydralab_commit() -> str | None:
    """The git commit of the hydralab checkout this code runs from (``None``: an installed
    wheel, or not a git checkout)."""
    from hydralab.tools.eva_code import git_commit

    return git_commit(Path(__file__).resolve().parents[1])


def _read_audit(run_dir: Path) -> dict[str, Any]:
    try:
        audit = json.loads((run_dir / "audit_log.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return audit if isinstance(audit, dict) else {}


_FAILED_TOOL_ERRORS = frozenset({"execution_error", "tool_failed"})
"""``error_type`` of a tool result that says the tool could not run (it raised), as opposed to
a tool's own answer (``not_found``, ``invalid_parameter``...)."""


def call_verdict(
    session: BridgeRun,
    summary: Mapping[str, Any],
    caller: CallerResult | None,
    script: Script,
    audit: Mapping[str, Any],
) -> list[str]:
    """Why the call did not complete, as short strings; empty: it completed.

    Completed means all of: the bridge ended ``goodbye`` with no error; no tool output was
    lost and every tool call got a result that is not a failure (the tool raised, or the
    arguments could not be used); hydralab's own caller (when it ran) ended ``goodbye`` having
    sent every user turn (no assistant-turn timeout); and every user utterance was answered by
    an assistant turn the caller heard: one whose audio started playing after the utterance
    began (before the next one) and that completed, or was cut only by the caller's next
    utterance (a barge-in). A turn that failed, was abandoned or never played answers nothing.
    A user turn the script answers with silence needs no answer.
    """
    why: list[str] = []
    if session.ended_reason != "goodbye":
        why.append(f"call ended: {session.ended_reason or 'unknown'}")
    if session.error:
        why.append(f"error: {session.error}")
    for lost in session.tool_outputs_lost:
        why.append(f"tool output lost: {lost.get('tool') or '?'} (call {lost.get('call_id')})")
    why += _tool_failures(audit)
    if caller is not None:
        if caller.ended_reason == "timeout":
            k = next(
                (t.index for t in caller.assistant_turns if t.ended_by == "hangup"),
                len(caller.assistant_turns),
            )
            why.append(f"caller timed out waiting for assistant turn {k}")
        elif caller.ended_reason != "goodbye":
            why.append(
                f"caller ended: {caller.ended_reason}"
                + (f" ({caller.error})" if caller.error else "")
            )
        sent = sum(1 for t in caller.user_turns if t.completed)
        if caller.listening:
            # a caller that listens ends the call itself (its policy's end_call); its last
            # line, a goodbye, needs no answer
            if not caller.caller_ended and caller.ended_reason == "goodbye":
                why.append("caller did not end the call itself")
        elif sent < len(script.user_turns):
            why.append(f"caller sent {sent} of {len(script.user_turns)} user turns")
    listening = caller is not None and caller.listening
    why += _unanswered(
        summary,
        script if caller is not None and not listening else None,
        last_needs_answer=not (listening and caller is not None and caller.caller_ended),
    )
    return list(dict.fromkeys(why))


def _tool_failures(audit: Mapping[str, Any]) -> list[str]:
    """Tool calls without a result, with unusable arguments, or whose tool failed to run."""
    out: list[str] = []
    calls: dict[str, int] = {}
    results: dict[str, int] = {}
    for e in audit.get("transcript", []):
        value = e.get("value") if isinstance(e, Mapping) else None
        if not isinstance(value, Mapping):
            continue
        name = str(value.get("tool") or "?")
        if e.get("message_type") == "tool_call":
            calls[name] = calls.get(name, 0) + 1
            params = value.get("parameters")
            if isinstance(params, Mapping) and "_raw" in params:
                out.append(f"tool {name}: arguments unusable")
        elif e.get("message_type") == "tool_response":
            results[name] = results.get(name, 0) + 1
            r = value.get("response")
            if isinstance(r, Mapping) and r.get("error_type") in _FAILED_TOOL_ERRORS:
                out.append(f"tool {name} failed: {r.get('error_type')}")
    for name, n in calls.items():
        if n > results.get(name, 0):
            out.append(f"tool {name}: {n - results.get(name, 0)} call(s) got no result")
    return out


def _unanswered(
    summary: Mapping[str, Any], script: Script | None, *, last_needs_answer: bool = True
) -> list[str]:
    """User utterances no heard assistant turn answered (see :func:`call_verdict`); the last
    one only when ``last_needs_answer`` (a listening caller that said goodbye and hung up)."""
    users = sorted(summary.get("user_utterances", []), key=lambda u: u["start_epoch_ms"])
    played = [
        t
        for t in summary.get("turns", [])
        if t.get("first_played_epoch_ms") is not None and t.get("kind") != "greeting"
    ]
    out: list[str] = []
    for i, u in enumerate(users):
        if i + 1 == len(users) and not last_needs_answer:
            break
        k = int(u.get("index", i))
        answer = (
            script.assistant_turns[k + 1]
            if script and k + 1 < len(script.assistant_turns)
            else None
        )
        if answer is not None and not answer.text.strip():
            continue  # the script answers it with silence
        lo = u["start_epoch_ms"]
        last = i + 1 == len(users)
        hi = None if last else users[i + 1]["start_epoch_ms"]
        window = [
            t
            for t in played
            if t["first_played_epoch_ms"] >= lo and (hi is None or t["first_played_epoch_ms"] < hi)
        ]
        # heard: it played and completed, or the caller's next utterance cut it (a barge-in)
        if any(
            t.get("played_ms")
            and (t["status"] == "completed" or (t["status"] == "interrupted" and not last))
            for t in window
        ):
            continue
        if window:
            t = window[-1]
            reason = f" ({t['status_reason']})" if t.get("status_reason") else ""
            out.append(f"user turn {k}: its answer (turn {t['index']}) {t['status']}{reason}")
        else:
            out.append(f"user turn {k}: no answer heard")
    return out


def _clean_user_track(
    run_dir: Path, caller: CallerResult | None = None, t0_epoch_ms: float | None = None
) -> None:
    """``audio_user_clean.wav``, where EVA's ``audio_user_path`` points: the caller's speech as
    meant. On a clean line that is the track as sent (hydralab's caller adds only its
    configured line noise): ``audio_user.wav``'s samples (a hard link when the file system
    allows). On a perturbed line it is each utterance's clean audio placed at its first
    frame's time on the call's clock (±1 ms), silence between; ``audio_user.wav`` stays what
    the model got."""
    src, dst = run_dir / "audio_user.wav", run_dir / "audio_user_clean.wav"
    if not src.is_file():
        return
    dst.unlink(missing_ok=True)
    turns = [t for t in (caller.user_turns if caller else []) if t.clean]
    if turns and t0_epoch_ms is not None:
        sent, rate = read_wav(src)
        track = np.zeros(len(sent), dtype=np.int16)
        for t in turns:
            if t.first_frame_epoch_ms is None:
                continue
            pcm = resample(
                np.frombuffer(t.clean, dtype=np.int16), in_rate_hz=8000, out_rate_hz=rate
            )
            at = round((t.first_frame_epoch_ms - t0_epoch_ms) * rate / 1000)
            lo, hi = max(at, 0), min(at + len(pcm), len(track))
            if hi > lo:
                track[lo:hi] = pcm[lo - at : hi - at]
        write_wav(dst, track, sample_rate_hz=rate)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_conversation_log(run_dir: Path) -> None:
    """``logs.log`` (EVA's ``conversation_log_path``): the bridge's own events as log lines."""
    path = run_dir / "events.jsonl"
    if not path.is_file():
        return
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        if row.get("src") != "bridge" or not isinstance(row.get("frame"), dict):
            continue
        frame = dict(row["frame"])
        kind = str(frame.pop("type", "event"))
        t = dt.datetime.fromtimestamp(int(row.get("t_ms", 0)) / 1000, tz=dt.UTC)
        level = "ERROR" if "error" in kind or "failed" in kind or "lost" in kind else "INFO"
        detail = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        lines.append(
            f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} | {level} | "
            f"hydralab.bridge | {kind} {detail}"
        )
    (run_dir / "logs.log").write_text("\n".join(lines) + ("\n" if lines else ""), "utf-8")


def _pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def run_record_sync(record: str | Record | None = None, **kwargs: Any) -> RunResult:
    """Blocking :func:`run_record`; works in scripts and inside Jupyter alike."""
    return run_sync(run_record(record, **kwargs))
