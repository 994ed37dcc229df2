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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

import numpy as np

from hydralab.aio import run_sync
from hydralab.bridge import Bridge, BridgeConfig, BridgeSession
from hydralab.caller import Caller, CallerConfig, CallerResult
from hydralab.client import DEFAULT_VOICES, HYDRA_URL, HydraConfig
from hydralab.clock import Clock, ClockLike
from hydralab.emulator import Emulator, EmulatorConfig, EmulatorSession
from hydralab.evalog import fill_assistant_speech
from hydralab.latency import latency_stats
from hydralab.protocol.budget import (
    CONFIGURE_CEILING_BYTES,
    BudgetResult,
    ConfigureMode,
    greeting_steer,
    plan_configure,
)
from hydralab.records import Record, build_instructions, eva_run_config, load_record, record_meta
from hydralab.rundir import RunWriter, write_json, write_jsonl
from hydralab.scoring import EXPECTED_DB_FILE, db_hash, score_run
from hydralab.script import Script, script_from_record
from hydralab.secrets import ENV_VAR, Secret, get_api_key, redact
from hydralab.speech.stt import (
    SKIP_REASONS,
    LocalTranscriber,
    SttConfig,
    Transcriber,
    make_transcriber,
    transcript_wer,
)
from hydralab.tools import ToolExecutor, declarations

if TYPE_CHECKING:
    from hydralab.sim import Simulation

__all__ = [
    "HYDRA_URL_ENV",
    "RUN_FILES",
    "BridgeRun",
    "RunResult",
    "check_hydra_url",
    "latency_summary",
    "open_run_writer",
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
            lines.append(f"  turn {t['index']:>2} {t['kind']:<8} model_response {lat}")
        s = self.latency.get("model_response", {})
        if s.get("n"):
            lines.append(
                f"model_response: n={s['n']} p50={s['p50_ms']:.0f} ms max={s['max_ms']:.0f} ms"
            )
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
            non-standard in ``run.json["configure_budget"]``.
        configure_ceiling_bytes: Hydra's ``session.configure`` ceiling (~32 KB, empirical).
        hydra_url: Hydra endpoint for ``model="hydra"`` (on-prem, staging, a local
            :class:`~hydralab.replay.ReplayServer`): ``ws://`` or ``wss://``, no query. Default:
            ``$HYDRA_URL``, else the public endpoint. The key still comes from
            ``SMALLEST_API_KEY`` and is redacted wherever the URL is recorded.
    """
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
    run_dir = Path(out_dir) / (run_id or _run_id()) / "records" / rec.id  # EVA's layout
    key = get_api_key(api_key)
    stt = _make_stt(transcriber, rec, key)  # a bad language or missing key fails before any I/O
    # refuses before connecting; the session is sent verbatim below
    hydra, budget = _plan_hydra(
        rec,
        hydra_model=hydra_model,
        voice=voice,
        configure_mode=configure_mode,
        configure_ceiling_bytes=configure_ceiling_bytes,
    )
    tools = ToolExecutor(rec.initial_db, domain=rec.domain, current_date_time=rec.current_date_time)
    # The offline decoder process starts now, in parallel with the call's set-up.
    warm = (
        asyncio.ensure_future(stt.start())
        if isinstance(stt, LocalTranscriber) and stt.isolate
        else None
    )
    emulator: Emulator | None = None
    if model == "emulator":
        emulator = Emulator(script, config=emulator_config or EmulatorConfig.live())
        url = await emulator.start()
    elif model == "hydra":
        if not key:
            raise ValueError(f"model 'hydra' needs an API key: set {ENV_VAR} in the environment")
        url = endpoint
    else:
        raise ValueError(f"unknown model {model!r}: use 'emulator' or 'hydra'")
    hydra = HydraConfig(**{**hydra.__dict__, "url": url, "session": budget.session})
    bcfg = _with_hydra(bridge_config, hydra)
    started = dt.datetime.now()

    def writer_factory(clock: Clock) -> RunWriter:
        return open_run_writer(run_dir, clock, model=model, hydra=hydra)

    # One clock for the whole call: the emulator, the bridge and the caller stamp everything
    # from it (taken now, after the set-up, so the recordings start with the call).
    clock = Clock()
    if emulator is not None:
        emulator.clock = clock

    def session_factory() -> BridgeSession:
        return BridgeSession(
            bcfg,
            tools=tools,
            writer_factory=writer_factory,
            transcriber=stt,
            api_key=key,
            clock=clock,
        )

    bridge = Bridge(session_factory)
    caller_result: CallerResult | None = None
    session: BridgeSession | None = None
    try:
        await bridge.start(port=port)
        caller = Caller(script, url=bridge.url, config=caller_config or CallerConfig(), clock=clock)
        caller_result = await caller.run()
        session = await bridge.wait_session(timeout_s=session_timeout_s)
    finally:
        await bridge.stop()
        if emulator is not None:
            await emulator.stop()
        if warm is not None:
            with contextlib.suppress(Exception):  # a failed start shows up per utterance
                await warm
        if stt is not None:
            await stt.aclose()
    ended = dt.datetime.now()
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
    )


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
    write_json(run_dir.parent.parent / "config.json", run_config)
    if caller is not None:  # with what was heard: EVA's S2S turns come from assistant_speech
        events = fill_assistant_speech(caller.events, turns)
        write_jsonl(run_dir / "user_simulator_events.jsonl", events)
    _clean_user_track(run_dir)
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
    result = {
        "record_id": rec.id,
        # a call whose tool result never reached the model did not complete, whatever its end
        "completed": session.error is None
        and session.ended_reason == "goodbye"
        and not session.tool_outputs_lost,
        "error": session.error,
        "error_details": (
            {"tool_outputs_lost": session.tool_outputs_lost} if session.tool_outputs_lost else None
        ),
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
        "num_turns": _audit_user_entries(run_dir),
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
            )
        },
        "versions": {
            "hydralab": _pkg_version("hydralab"),
            "python": platform.python_version(),
            "websockets": _pkg_version("websockets"),
            "numpy": np.__version__,
        },
        "emulator": (
            {k: v for k, v in emulator_config.__dict__.items() if k != "expected_api_key"}
            if emulator_config is not None
            else None
        ),
        "emulator_flags": [
            {"session": i, "kind": f.kind, "detail": f.detail}
            for i, sess in enumerate(emulator_sessions)
            for f in sess.flags
        ],
        "latency": latency,
        "timeline": {"t0_epoch_ms": summary["timeline_t0_epoch_ms"], "sample_rate_hz": 48000},
        "turns": turns,
        "user_utterances": summary["user_utterances"],
        "stt_failures": summary["stt_failures"],
        "stt": stt_report,
        "errors": summary["errors"],
        "ended_reason": session.ended_reason,
        "error": session.error,
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
    )


def _audit_user_entries(run_dir: Path) -> int:
    audit = json.loads((run_dir / "audit_log.json").read_text(encoding="utf-8"))
    return sum(1 for e in audit.get("transcript", []) if e.get("message_type") == "user")


def _clean_user_track(run_dir: Path) -> None:
    """``audio_user_clean.wav``, where EVA's ``audio_user_path`` points: the caller's track as
    it sent it (hydralab's caller adds only its configured line noise), beside
    ``audio_user.wav`` (same samples; a hard link when the file system allows)."""
    src, dst = run_dir / "audio_user.wav", run_dir / "audio_user_clean.wav"
    if not src.is_file():
        return
    dst.unlink(missing_ok=True)
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
