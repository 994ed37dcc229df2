"""Many conversations: records × trials with a concurrency limit, a progress bar and a manifest.

``run_batch`` (async) and ``run_batch_sync`` run every (record, trial) pair through
:func:`hydralab.runner.run_record`. A conversation that fails is recorded in the manifest and
the batch goes on. The manifest, ``<out_dir>/<batch_id>/batch.json``, is rewritten after every
conversation, so a batch that was stopped (or crashed) is resumed by running it again with the
same ``batch_id``: finished conversations are skipped. A resume must keep the settings that
define the experiment (:data:`EXPERIMENT_KEYS`: the model, the Hydra endpoint, the seed, the
emulator and caller settings, ``run_record``'s arguments such as ``hydra_model``, ``voice``,
``transcriber``, ``caller``, ``persona``, ``line``, the ``label`` and the ``variants``); other
settings are refused, saying which one differs. More records or trials may be added.

A conversation whose call never reached the model (:data:`NEVER_CONNECTED`, or a Hydra
connection / auth / handshake error raised) is an ``error`` with ``infrastructure: true`` in
the manifest, not a ``failed`` one: it says nothing about the model, is left out of scores and
latency, and a resume re-runs it. A sweep file (:func:`load_sweep`, :func:`run_batch_sweep`,
``hydralab batch --config``) runs ``models × callers`` as the variants of one batch.

Layout: trial ``k`` of every record is one run, ``<batch_id>/trial_<k>``; the record directories
inside it are wherever ``run_record`` puts them (its ``RunResult.run_dir``). A batch of several
domains (EVA's airline, itsm, medical_hr) has one run per domain and trial,
``<batch_id>/<domain>-trial_<k>``: an EVA run is one domain, named by its ``config.json``.

Each conversation runs in its own process by default. Conversations in one event loop disturb
each other's clocks: the offline STT holds the GIL for 100–400 ms per caller utterance, and a
stalled loop stamps another call's ``speech_stopped`` or first audio late (measured: up to
~550 ms). Against the emulator every conversation also reports ``overhead_max_ms``, the most any
turn's measured ``model_response`` exceeded what the emulator actually did (its ground truth).

``executor="ray"`` runs each conversation as a Ray task instead (:mod:`hydralab.ray_exec`, the
``ray`` extra): the same run directories, manifest, resume and failure handling, with a per-node
call limit, a cluster-wide cap on live model sessions and each run's ``node.json``. The executor
is not an experiment setting: a batch started locally may be resumed on Ray and back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import functools
import inspect
import json
import multiprocessing
import os
import secrets as _secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydralab.aio import run_sync
from hydralab.caller import CallerConfig
from hydralab.emulator import EmulatorConfig
from hydralab.records import DEFAULT_RECORD_ID, Record, check_path_name, record_domains
from hydralab.runner import (
    ModelName,
    RunResult,
    check_out_dir,
    record_run_dir,
    resolve_hydra_url,
    run_record,
)
from hydralab.secrets import get_api_key, redact

if TYPE_CHECKING:  # Ray's executor module is imported when a batch asks for it
    from hydralab.ray_exec import RaySettings

__all__ = [
    "EXPERIMENT_KEYS",
    "MANIFEST",
    "NEVER_CONNECTED",
    "BatchResult",
    "BatchSettingsError",
    "Conversation",
    "Sweep",
    "SweepError",
    "load_sweep",
    "run_batch",
    "run_batch_sweep",
    "run_batch_sweep_sync",
    "run_batch_sync",
]

MANIFEST = "batch.json"
# ok: the call completed (result.json "completed") · failed: the call ran but did not complete
# (its run directory holds what happened, run.json "verdict" why) · error: run_record raised
# (no usable run directory), or the call never reached the model (``infrastructure``, below).
FINISHED = ("ok", "failed")
#: ``RunResult.ended_reason`` of a call that never reached the model: no session could be
#: opened (DNS, connection refused, HTTP 401, ``server_full`` after the retries, a failed
#: handshake). Such a conversation is an infrastructure ``error``, not a ``failed`` one. A
#: session that was up and then dropped ends ``model_disconnected``: the model's failure.
NEVER_CONNECTED = frozenset({"model_connect_failed"})
#: Where the conversations run: ``"local"`` (one child process each, on this machine) or
#: ``"ray"`` (one Ray task each, :mod:`hydralab.ray_exec`).
EXECUTORS = ("local", "ray")
#: ``run_record`` arguments a variant may not set: the batch sets them for every conversation.
_BATCH_OWNED = ("out_dir", "run_id", "hydra_url", "emulator_config", "caller_config", "api_key")
#: The ``batch.json`` config entries a resume must keep: they define what the conversations
#: measure. ``records``, ``trials``, ``concurrency`` and ``processes`` may change on resume.
EXPERIMENT_KEYS = (
    "model",
    "hydra_url",
    "seed",
    "emulator",
    "caller",
    "run_kwargs",
    "label",
    "variants",
)


class BatchSettingsError(ValueError):
    """A batch was resumed with settings other than those it was started with."""


@dataclass
class Conversation:
    """One (record, trial) of a batch, as kept in the manifest."""

    record_id: str
    trial: int
    status: str = "pending"  # pending | ok | failed | error
    run_dir: str | None = None  # relative to the batch directory
    ended_reason: str | None = None
    error: str | None = None
    started_at: str | None = None
    wall_s: float | None = None
    attempts: int = 0
    overhead_max_ms: float | None = None  # emulator only: measured − ground truth, worst turn
    not_completed: list[str] | None = None  # why a call that ran did not complete
    variant: str | None = None  # the named setting it ran under (run_batch(variants=...))
    label: str | None = None  # the batch's free-text label (run_batch(label=...))
    model: str | None = None  # the model it ran against (its variant's, else the batch's)
    # status "error" because the call never reached the model (DNS, refused, 401, server_full,
    # handshake): not a model failure, left out of scores and latency, re-run on resume
    infrastructure: bool = False
    node: str | None = None  # executor "ray": the host it ran on (its run's node.json says more)
    node_id: str | None = None  # executor "ray": Ray's id of that node

    @property
    def key(self) -> str:
        base = f"{self.record_id}#{self.trial}"
        return base if self.variant is None else f"{base}@{self.variant}"


@dataclass
class BatchResult:
    """A batch's directory and the state of each of its conversations."""

    batch_dir: Path
    conversations: list[Conversation]
    wall_s: float = 0.0
    skipped: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest(self) -> Path:
        return self.batch_dir / MANIFEST

    def counts(self) -> dict[str, int]:
        """Conversations per outcome (ok, failed, error, infrastructure, running, pending; zeros
        left out). ``infrastructure`` counts the ``error`` conversations whose call never reached
        the model (:attr:`Conversation.infrastructure`), ``error`` the others: the counts add
        up to the number of conversations."""
        order = ("ok", "failed", "error", "infrastructure", "running", "pending")
        out = dict.fromkeys(order, 0)
        for c in self.conversations:
            out["infrastructure" if c.status == "error" and c.infrastructure else c.status] += 1
        return {k: v for k, v in out.items() if v}

    def infrastructure(self) -> list[Conversation]:
        """The conversations whose call never reached the model (status ``error``): not model
        failures, to leave out of scores and latency; a resume re-runs them."""
        return [c for c in self.conversations if c.status == "error" and c.infrastructure]

    @property
    def ok(self) -> bool:
        return all(c.status == "ok" for c in self.conversations)

    def run_dirs(self) -> list[Path]:
        return [self.batch_dir / c.run_dir for c in self.conversations if c.run_dir]

    def summary(self) -> str:
        counts = " · ".join(f"{k} {v}" for k, v in self.counts().items())
        lines = [
            f"batch {self.batch_dir.name}: {len(self.conversations)} conversations ({counts}), "
            f"{self.skipped} already finished, wall {self.wall_s:.1f} s",
        ]
        over = [c.overhead_max_ms for c in self.conversations if c.overhead_max_ms is not None]
        if over:
            lines.append(
                f"model_response vs the emulator's ground truth: at most +{max(over):.1f} ms"
            )
        infra = self.infrastructure()
        if infra:
            lines.append(
                f"{len(infra)} never reached the model (infrastructure: connection, auth, "
                "capacity or handshake): not model failures, left out of scores and latency; "
                "run the batch again (same batch id) to retry them"
            )
        for c in self.conversations:
            if c.status != "ok":
                why = c.error or "; ".join(c.not_completed or []) or c.ended_reason or "?"
                status = "error (infrastructure)" if c.infrastructure else c.status
                if c.infrastructure and c.ended_reason and c.ended_reason not in why:
                    why = f"{c.ended_reason}: {why}"
                lines.append(f"  {c.key}: {status} — {why}")
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


def _batch_id() -> str:
    return "batch-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + _secrets.token_hex(2)


def _write_manifest(batch_dir: Path, doc: dict[str, Any]) -> None:
    """Atomically (temporary file, then ``os.replace``): a reader never sees half a manifest."""
    fd, tmp = tempfile.mkstemp(prefix=".batch.", suffix=".tmp", dir=batch_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False, default=_json_default)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, batch_dir / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, set | frozenset | tuple):
        return sorted(obj, key=str)
    return repr(obj)


def _read_manifest(batch_dir: Path) -> dict[str, Any]:
    try:
        doc = json.loads((batch_dir / MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _load_manifest(batch_dir: Path) -> dict[str, Conversation]:
    doc = _read_manifest(batch_dir)
    names = {f.name for f in dataclasses.fields(Conversation)}
    rows = doc.get("conversations", [])
    convs = [Conversation(**{k: v for k, v in c.items() if k in names}) for c in rows]
    return {c.key: c for c in convs}


@functools.cache
def _run_record_defaults() -> dict[str, str]:
    """``run_record``'s keyword defaults as the manifest keeps arguments (their ``repr``)."""
    from hydralab import runner

    params = inspect.signature(runner.run_record).parameters.values()
    return {p.name: repr(p.default) for p in params if p.default is not inspect.Parameter.empty}


def _as_stored(value: Any) -> Any:
    """``value`` as it reads back from ``batch.json`` (tuples and sets as lists, ...)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=_json_default))


def _explicit(kwargs: Any) -> dict[str, Any]:
    """Stored ``run_record`` arguments without those equal to its defaults (passing
    ``voice=None`` is leaving it out); an object ``repr`` with an address (``<... at 0x..>``)
    cannot be compared across processes and is left out too."""
    if not isinstance(kwargs, dict):
        return {}
    defaults = _run_record_defaults()
    return {
        k: v
        for k, v in kwargs.items()
        if defaults.get(k, object()) != v and not (isinstance(v, str) and " at 0x" in v)
    }


def _setting_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The experiment settings (:data:`EXPERIMENT_KEYS`) of ``new`` that differ from ``old``
    (both as stored), each as ``"name old → new"``."""
    out: list[str] = []

    def differ(name: str, a: Any, b: Any, *, text: bool = False) -> None:
        if not text:  # run_record's arguments are kept as their repr already
            a, b = json.dumps(a, ensure_ascii=False), json.dumps(b, ensure_ascii=False)
        out.append(f"{name} {a} → {b}")

    for key in EXPERIMENT_KEYS:
        a, b = old.get(key), new.get(key)
        if key in ("emulator", "caller") and isinstance(a, dict) and isinstance(b, dict):
            # a field only one side has came with another hydralab version: not compared; a
            # profile sets many fields at once, so it alone is named
            keys = sorted(a.keys() & b.keys())
            if "profile" in keys and a["profile"] != b["profile"]:
                keys = ["profile"]
            for k in keys:
                if a[k] != b[k]:
                    differ(f"{key}.{k}", a[k], b[k])
        elif key == "run_kwargs":
            a, b = _explicit(a), _explicit(b)
            for k in sorted(a.keys() | b.keys()):
                if a.get(k) != b.get(k):
                    differ(k, a.get(k, "(default)"), b.get(k, "(default)"), text=True)
        elif key == "variants":
            a = {n: _explicit(kw) for n, kw in (a or {}).items()}
            b = {n: _explicit(kw) for n, kw in (b or {}).items()}
            if a != b:
                differ("variants", a, b)
        elif a != b:
            differ(key, a, b)
    return out


def _check_resume(batch_dir: Path, stored: Any, config: Mapping[str, Any]) -> None:
    """Refuse to resume a batch whose stored experiment settings differ from ``config``."""
    if not isinstance(stored, dict):
        return
    diffs = _setting_differences(stored, _as_stored(config))
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise BatchSettingsError(
            f"batch {batch_dir.name!r} was started with other settings, so resuming it would mix "
            f"two experiments: {shown}. Use another --batch-id (batch_id=) for the "
            "new settings, or the batch's own settings to resume it"
        )


def _record_id(record: str | Record | None) -> str:
    if isinstance(record, Record):
        return record.id
    return record or DEFAULT_RECORD_ID


def _domains_of(
    by_id: Mapping[str, str | Record | None], data_dir: Path | str | None
) -> dict[str, str]:
    """Each record's domain (a loaded record says it; an id is looked up in ``data_dir``; an
    id not found there is left to ``run_record`` to report, as ``"?"``)."""
    known: dict[str, str] | None = None
    out: dict[str, str] = {}
    for rid, rec in by_id.items():
        if isinstance(rec, Record):
            out[rid] = rec.domain
            continue
        if known is None:
            try:
                known = record_domains(data_dir)
            except Exception:  # an unreadable data dir: each conversation reports it
                known = {}
        out[rid] = known.get(rid, "?")
    return out


async def run_batch(
    records: Sequence[str | Record] | str | None = None,
    *,
    trials: int = 1,
    concurrency: int = 3,
    out_dir: Path | str = "runs",
    batch_id: str | None = None,
    model: ModelName = "emulator",
    seed: int | None = None,
    emulator_config: EmulatorConfig | None = None,
    caller_config: CallerConfig | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    processes: bool = True,
    hydra_url: str | None = None,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    label: str | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    ray_init_kwargs: Mapping[str, Any] | None = None,
    calls_per_node: int | None = None,
    max_model_sessions: int | None = None,
    max_calls_per_minute: float | None = None,
    ship_results: bool = False,
    **run_kwargs: Any,
) -> BatchResult:
    """Run ``records × trials`` conversations, at most ``concurrency`` at a time.

    Args:
        records: Record ids (or loaded records); one id or ``None`` = the default record.
        trials: Conversations per record; trial ``k`` (1-based) uses seed ``seed + k - 1`` for the
            emulator's latencies and the caller's line noise, so trials differ but replay.
        seed: Base seed; ``None`` = the seeds of ``emulator_config`` and ``caller_config``.
        concurrency: Conversations at once. They run in real time and are I/O-bound: a few per
            core are fine (check that latencies do not drift when you raise it).
        out_dir: Parent of the batch directory ``out_dir/batch_id``.
        batch_id: Name of the batch directory; pass an existing one to resume it.
        retry_failed: On resume, also re-run conversations that ran but did not end well
            (``failed``); conversations that raised (``error``) are always re-run.
        progress: Show a ``tqdm.auto`` bar (a widget in Jupyter, text in a terminal).
        processes: One process per conversation (default), so no conversation's CPU work delays
            another's clock. ``False`` runs them all in this event loop (arguments that cannot
            be pickled, such as a custom ``transcriber``, need it).
        hydra_url: Hydra endpoint for ``model="hydra"`` (default ``$HYDRA_URL``, else the
            public one); resolved and checked once, recorded in ``batch.json`` (it has no key).
        variants: Named settings to compare in one batch, e.g. ``{"clean": {}, "snr10":
            {"line": LinePerturbation(noise="pink", snr_db=10)}, "slow": {"persona":
            "elderly_slow"}}``: every record × trial runs once per variant, with the variant's
            ``run_record`` arguments over ``run_kwargs``; its runs are
            ``<batch_id>/<variant>-trial_<k>`` and the tables get a ``variant`` column. A
            variant may run against its own model (``{"model": "hydra", "hydra_model": ...,
            "voice": ...}``; ``model`` above is the default), each conversation's manifest
            entry records its ``model``; a variant may not set ``out_dir``, ``run_id``,
            ``hydra_url``, ``emulator_config``, ``caller_config`` or ``api_key``.
        label: Free text describing the batch (e.g. ``"hydra-v1.1, zoe, pink 10 dB"``), kept in
            ``batch.json`` (its config and every conversation's entry).
        executor: ``"local"`` (default: one child process per conversation on this machine)
            or ``"ray"``: one Ray task per conversation (``pip install 'hydralab[ray]'``; see
            :mod:`hydralab.ray_exec`), ``concurrency`` tasks in flight. Not an experiment
            setting (a batch may be resumed on the other executor); kept in ``batch.json``.
        ray_address: ``executor="ray"``: an existing cluster's address (``"auto"``,
            ``"ray://head:10001"``); ``None`` = the Ray this process already joined, else a
            local one that hydralab starts (and shuts down at the end).
        ray_init_kwargs: More ``ray.init`` arguments (``num_cpus``, ``runtime_env``, ...).
        calls_per_node: A local Ray's per-node call limit (its ``hydralab_call`` resource;
            default 2 per CPU core). The nodes of an existing cluster declare it when they
            start: ``ray start --resources '{"hydralab_call": N}'``.
        max_model_sessions: Live calls across the cluster at once (Hydra's per-organisation
            session cap answers ``server_full``); ``None`` = no limit.
        max_calls_per_minute: Call starts across the cluster per minute (Smallest's request
            rate cap); ``None`` = no limit.
        ship_results: Always send each run directory back to the driver (``tar.gz``) instead
            of writing it in place; it is shipped anyway when a worker cannot see the batch
            directory.
        **run_kwargs: Passed to :func:`hydralab.runner.run_record` (``hydra_model``, ``voice``,
            ``data_dir``, ``transcriber``, ...).

    Returns:
        The batch directory and every conversation's status; the same facts are in
        ``batch.json``. Load the tables with :func:`hydralab.analysis.load_batch`.

    Raises:
        BatchSettingsError: ``batch_id`` names a batch started with other experiment settings
            (:data:`EXPERIMENT_KEYS`); the message names each one that differs.
    """
    if trials < 1 or concurrency < 1:
        raise ValueError(f"trials and concurrency must be ≥ 1, got {trials} and {concurrency}")
    ray_settings = _ray_settings(
        executor,
        processes=processes,
        address=ray_address,
        init_kwargs=ray_init_kwargs,
        calls_per_node=calls_per_node,
        max_model_sessions=max_model_sessions,
        max_calls_per_minute=max_calls_per_minute,
        ship_results=ship_results,
    )
    for vname, vkw in (variants or {}).items():
        owned = sorted(set(vkw) & set(_BATCH_OWNED))
        if owned:
            raise ValueError(
                f"variant {vname!r} sets {', '.join(owned)}: the batch sets it for every "
                "conversation (pass it to run_batch)"
            )
    # each variant may run against its own model (run_record's model=, hydra_model=, voice=)
    models_of: dict[str | None, str] = {
        vname: str(vkw.get("model", model)) for vname, vkw in (variants or {}).items()
    } or {None: model}
    for key, m in models_of.items():
        if m not in ("emulator", "hydra"):
            where = f"variant {key!r}: " if key is not None else ""
            raise ValueError(f"{where}unknown model {m!r}: use 'emulator' or 'hydra'")
    if "hydra" not in models_of.values() and hydra_url is not None:
        raise ValueError("hydra_url applies to model 'hydra' only")
    endpoint = resolve_hydra_url(hydra_url) if "hydra" in models_of.values() else None
    recs: list[str | Record | None] = (
        [records] if records is None or isinstance(records, str) else list(records)
    )
    by_id: dict[str, str | Record | None] = {_record_id(r): r for r in recs}
    if batch_id is not None:
        check_path_name(batch_id, what="batch id")  # a folder of out_dir, never a path
    check_out_dir(out_dir)  # an unwritable out_dir is reported now, before any conversation
    batch_dir = Path(out_dir) / (batch_id or _batch_id())
    batch_dir.mkdir(parents=True, exist_ok=True)
    stored = _read_manifest(batch_dir).get("config")
    done_before = _load_manifest(batch_dir)
    names: list[str | None] = list(variants) if variants else [None]
    for name in names:
        if name is not None:
            check_path_name(name, what="variant name")  # part of a run directory's name
    convs = []
    for name in names:
        for k in range(1, trials + 1):
            for rid in by_id:
                conv = Conversation(record_id=rid, trial=k, variant=name)
                conv = done_before.get(conv.key) or conv
                conv.label = label
                conv.model = models_of[name]
                convs.append(conv)
    domains = _domains_of(by_id, run_kwargs.get("data_dir"))
    several = len(set(domains.values())) > 1

    def run_id_of(c: Conversation) -> str:
        """``trial_<k>``, after ``<domain>-`` in a batch of several domains and ``<variant>-``
        in a batch of variants."""
        run_id = f"{domains[c.record_id]}-trial_{c.trial}" if several else f"trial_{c.trial}"
        return run_id if c.variant is None else f"{c.variant}-{run_id}"

    finished = FINISHED[:1] if retry_failed else FINISHED
    todo = [c for c in convs if c.status not in finished]
    get_api_key(run_kwargs.get("api_key"))  # known to redact() here too
    emu = emulator_config or EmulatorConfig.live()
    cal = caller_config or CallerConfig()
    emu_seed = emu.seed if seed is None else seed
    cal_seed = cal.seed if seed is None else seed
    config = {
        "records": list(by_id),
        "trials": trials,
        "concurrency": concurrency,
        "model": model,
        # the models the conversations run against (variants may set their own)
        "models": sorted(set(models_of.values())),
        "hydra_url": endpoint,
        "seed": seed,
        "processes": processes,
        "emulator": {k: v for k, v in dataclasses.asdict(emu).items() if k != "expected_api_key"},
        "caller": {k: v for k, v in dataclasses.asdict(cal).items()},
        "run_kwargs": {k: repr(v) for k, v in run_kwargs.items() if k != "api_key"},
        "variants": {
            name: {k: repr(v) for k, v in kw.items() if k != "api_key"}
            for name, kw in (variants or {}).items()
        },
        "label": label,
        "executor": executor,  # not an experiment setting: a resume may use the other one
    }
    _check_resume(batch_dir, stored, config)
    runner_ray = None
    if ray_settings is not None:
        from hydralab.ray_exec import RayExecutor

        runner_ray = RayExecutor(ray_settings, batch_dir)
        config["ray"] = runner_ray.start()
    result = BatchResult(batch_dir, convs, skipped=len(convs) - len(todo), config=config)
    created = dt.datetime.now().isoformat(timespec="seconds")
    t_start = time.monotonic()

    def save() -> None:
        result.wall_s = time.monotonic() - t_start
        _write_manifest(
            batch_dir,
            {
                "batch_id": batch_dir.name,
                "created_at": created,
                "updated_at": dt.datetime.now().isoformat(timespec="seconds"),
                "config": config,
                "counts": result.counts(),
                "wall_s": round(result.wall_s, 3),
                "conversations": [dataclasses.asdict(c) for c in convs],
            },
        )

    save()
    bar = _progress(len(convs), result.skipped, enabled=progress)
    sem = asyncio.Semaphore(concurrency)

    async def one(c: Conversation) -> None:
        async with sem:
            # a re-run: drop what an earlier attempt left behind (its record directory too, when
            # it crashed before saying where), so the run id can be used again
            olds = [batch_dir / c.run_dir] if c.run_dir else []
            with contextlib.suppress(ValueError):
                olds.append(record_run_dir(batch_dir, run_id_of(c), c.record_id))
            for old in olds:
                old = old.resolve()
                if batch_dir.resolve() in old.parents:
                    shutil.rmtree(old, ignore_errors=True)
            c.status, c.error, c.ended_reason, c.run_dir = "running", None, None, None
            c.overhead_max_ms, c.not_completed, c.infrastructure = None, None, False
            c.node = c.node_id = None
            c.started_at = dt.datetime.now().isoformat(timespec="seconds")
            c.attempts += 1
            t0 = time.monotonic()
            k = c.trial - 1
            variant = (variants or {}).get(c.variant, {}) if c.variant is not None else {}
            kwargs: dict[str, Any] = {
                **run_kwargs,
                **variant,
                "model": models_of[c.variant],
                "out_dir": batch_dir,
                "run_id": run_id_of(c),
                **({"hydra_url": endpoint} if models_of[c.variant] == "hydra" else {}),
                "emulator_config": dataclasses.replace(emu, seed=emu_seed + k),
                "caller_config": dataclasses.replace(cal, seed=cal_seed + k),
            }
            try:
                if runner_ray is not None:
                    kwargs = _for_ray(kwargs, models_of[c.variant])
                    out = await runner_ray.run(by_id[c.record_id], kwargs, key=c.key)
                elif processes:
                    out = await _run_in_subprocess(by_id[c.record_id], kwargs)
                else:
                    out = _outcome(await run_record(by_id[c.record_id], **kwargs))
            except Exception as exc:  # one conversation failing never stops the batch
                out = _exception_outcome(exc)
            node = out.get("node") or {}
            c.node, c.node_id = node.get("hostname"), node.get("node_id")
            if "exception" in out:
                c.status, c.error = "error", redact(out["exception"])
                c.infrastructure = bool(out.get("infrastructure"))
            else:
                c.run_dir = os.path.relpath(out["run_dir"], batch_dir)
                c.ended_reason = out["ended_reason"]
                c.error = redact(out["error"]) if out["error"] else None
                c.overhead_max_ms = out["overhead_max_ms"]
                c.not_completed = [redact(w) for w in out["not_completed"]] or None
                if out.get("infrastructure"):  # its run directory stays: the log says why
                    c.status, c.infrastructure = "error", True
                else:
                    c.status = "ok" if out["completed"] else "failed"
            c.wall_s = round(time.monotonic() - t0, 3)
            save()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(result.counts(), refresh=True)

    try:
        await asyncio.gather(*(one(c) for c in todo))
    finally:
        for c in convs:  # cancelled mid-call: the next run retries it
            if c.status == "running":
                c.status, c.error = "error", "cancelled"
        if runner_ray is not None:  # cancels what still runs; Ray stops if hydralab started it
            runner_ray.close()
        save()
        if bar is not None:
            bar.close()
    return result


def _ray_settings(
    executor: str,
    *,
    processes: bool,
    address: str | None,
    init_kwargs: Mapping[str, Any] | None,
    calls_per_node: int | None,
    max_model_sessions: int | None,
    max_calls_per_minute: float | None,
    ship_results: bool,
) -> RaySettings | None:
    """The checked Ray settings of ``executor="ray"`` (``None`` for the local executor)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: use 'local' or 'ray'")
    given = {
        "ray_address": address is not None,
        "ray_init_kwargs": init_kwargs is not None,
        "calls_per_node": calls_per_node is not None,
        "max_model_sessions": max_model_sessions is not None,
        "max_calls_per_minute": max_calls_per_minute is not None,
        "ship_results": ship_results,
    }
    if executor == "local":
        named = [k for k, v in given.items() if v]
        if named:
            raise ValueError(f"{', '.join(named)} applies to executor='ray' only")
        return None
    if not processes:
        raise ValueError("executor='ray' runs each conversation in a Ray task: processes=False "
                         "(one event loop) does not apply")  # fmt: skip
    from hydralab.ray_exec import RaySettings, import_ray

    import_ray()  # not installed: say how, before anything is written
    settings = RaySettings(
        address=address,
        init_kwargs=init_kwargs,
        calls_per_node=calls_per_node,
        max_model_sessions=max_model_sessions,
        max_calls_per_minute=max_calls_per_minute,
        ship_results=ship_results,
    )
    settings.check()
    return settings


def _for_ray(kwargs: dict[str, Any], model: str) -> dict[str, Any]:
    """A conversation's ``run_record`` arguments for a Ray worker: folders absolute (a
    worker's working directory is not the driver's) and, against Hydra, the key (a remote
    node has no ``SMALLEST_API_KEY``; a :class:`~hydralab.secrets.Secret` never prints)."""
    out = dict(kwargs)
    for name in ("out_dir", "data_dir", "eva_dir"):
        if isinstance(out.get(name), str | Path):
            out[name] = Path(out[name]).expanduser().resolve()
    if model == "hydra" and not out.get("api_key"):
        key = get_api_key()
        if key:
            out["api_key"] = key
    return out


def _outcome(r: RunResult) -> dict[str, Any]:
    """What the batch keeps of a ``RunResult`` (picklable, for the child-process path)."""
    return {
        "run_dir": str(r.run_dir),
        "ended_reason": r.ended_reason,
        "error": r.error,
        "completed": r.completed,
        "not_completed": list(r.not_completed),
        "overhead_max_ms": _overhead_max_ms(r),
        "infrastructure": not r.completed and r.ended_reason in NEVER_CONNECTED,
    }


def _never_connected(exc: BaseException) -> bool:
    """``exc`` (raised by ``run_record``) says the call never reached the model: a Hydra
    connection, auth or handshake error, or a network error (DNS, refused, reset)."""
    from hydralab.client import HydraError

    return isinstance(exc, HydraError | ConnectionError | socket.gaierror)


def _exception_outcome(exc: BaseException) -> dict[str, Any]:
    """What the batch keeps of a conversation that raised (redacted: the key is known here)."""
    return {
        "exception": redact(f"{type(exc).__name__}: {exc}"),
        "infrastructure": _never_connected(exc),
    }


def _overhead_max_ms(r: RunResult) -> float | None:
    """Emulator runs: max over turns of measured ``model_response`` − the emulator's own
    ``speech_stopped`` sent → first audio delta sent (both on the monotonic clock)."""
    emulator = getattr(r, "emulator", None)
    if emulator is None:
        return None
    truths = {
        rid: t
        for session in getattr(emulator, "sessions", [])
        for t in session.turn_truths()
        for rid in t["response_ids"][:1]
    }
    over = []
    for turn in r.turns:
        t = truths.get((turn.get("response_ids") or [None])[0])
        if t is None or turn.get("model_response_ms") is None:
            continue
        if t["speech_stopped_sent_ns"] is None or t["first_delta_sent_ns"] is None:
            continue
        sent_ms = (t["first_delta_sent_ns"] - t["speech_stopped_sent_ns"]) / 1e6
        over.append(turn["model_response_ms"] - sent_ms)
    return round(max(over), 3) if over else None


def _conversation(record: str | Record | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """One conversation in a child process (a module-level function, so ``spawn`` finds it).

    An exception comes back as text, redacted here, where the key in use is known.
    """
    from hydralab.runner import run_record_sync

    try:
        return _outcome(run_record_sync(record, **kwargs))
    except Exception as exc:
        return _exception_outcome(exc)


async def _run_in_subprocess(record: str | Record | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`_conversation` in a fresh child process and await its outcome."""
    # spawn, not fork: the parent may be a Jupyter kernel with threads; one process per call
    # so a crash (or a stuck native library) takes only its own conversation down.
    # Ctrl-C reaches the whole process group: the child ignores it (no traceback from it) and
    # the parent, whose cancellation marks the conversation for a retry, ends the child.
    pool = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint
    )
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, _conversation, record, kwargs)
    except asyncio.CancelledError:
        for proc in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                proc.terminate()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _ignore_sigint() -> None:
    """A conversation's child process leaves Ctrl-C to the batch (its parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _progress(total: int, done: int, *, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="conversations", unit="call")


def run_batch_sync(
    records: Sequence[str | Record] | str | None = None, **kwargs: Any
) -> BatchResult:
    """Blocking :func:`run_batch`; works in scripts and inside Jupyter alike."""
    return run_sync(run_batch(records, **kwargs))


# ---------------------------------------------------------------------------------- sweeps
#: A sweep file's top-level keys (``records`` and ``models`` and ``callers`` are required).
SWEEP_KEYS = (
    "records", "trials", "label", "batch_id", "concurrency", "seed", "data_dir", "eva_dir",
    "stt", "tools", "configure_mode", "profile", "hydra_url", "session_timeout_s", "models",
    "callers", "executor", "ray_address", "max_model_sessions", "max_calls_per_minute",
)  # fmt: skip
_MODEL_KEYS = ("label", "model", "hydra_model", "voice")
_CALLER_KEYS = ("label", "caller", "persona", "hearing", "line")
_LINE_KEYS = (
    "noise", "snr_db", "packet_loss", "codec_bits", "volume_fluctuation_db",
    "volume_fluctuation_hz", "seed",
)  # fmt: skip
_CHOICES: dict[str, tuple[str, ...]] = {
    "stt": ("local", "smallest", "openai", "deepgram", "none"),
    "tools": ("auto", "eva", "hydralab"),
    "configure_mode": ("standard", "compacted", "update"),
    "profile": ("live", "classic"),
    "model": ("emulator", "hydra"),
    "caller": ("scripted", "rules"),
    "hearing": ("stt", "native"),
    "executor": EXECUTORS,
}


class SweepError(ValueError):
    """A sweep file that cannot be run; the message names the file and the key path."""


@dataclass
class Sweep:
    """A sweep file, checked: its records × trials run once per ``models × callers``
    combination, the variant ``<model label>+<caller label>``."""

    path: Path
    records: list[str] | None  # None = "all": every record of data_dir
    trials: int
    variants: dict[str, dict[str, Any]]  # variant name → run_record arguments
    run_kwargs: dict[str, Any]  # shared run_record arguments (stt, tools, data_dir, ...)
    batch_kwargs: dict[str, Any]  # run_batch's own (label, seed, concurrency, emulator, ...)

    def record_ids(self) -> list[str]:
        """The record ids to run: those listed, or every record of ``data_dir``."""
        if self.records is not None:
            return list(self.records)
        from hydralab.records import list_records

        return list_records(self.run_kwargs.get("data_dir"))


class _Checker:
    """Reads one sweep document, raising :class:`SweepError` with the key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, why: str) -> SweepError:
        return SweepError(f"{self.path}: {where}: {why}" if where else f"{self.path}: {why}")

    def mapping(self, value: Any, where: str, keys: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where or "the file", f"expected a mapping, got {_kind(value)}")
        for k in value:
            if k not in keys:
                raise self.fail(_join(where, str(k)), f"unknown key (allowed: {', '.join(keys)})")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"expected a non-empty string, got {_kind(value)}")
        return value

    def choice(self, value: Any, where: str, name: str) -> str:
        options = _CHOICES[name]
        if value not in options:
            raise self.fail(where, f"{value!r} is not one of {', '.join(options)}")
        return str(value)

    def integer(self, value: Any, where: str, *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(where, f"must be ≥ {minimum}, got {value}")
        return value

    def number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"expected a number, got {_kind(value)}")
        return float(value)

    def path_value(self, value: Any, where: str) -> str:
        """A path; a relative one is relative to the sweep file's folder."""
        p = Path(self.text(value, where)).expanduser()
        return str(p if p.is_absolute() else self.path.parent / p)

    def labelled(self, value: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        if not value:
            raise self.fail(where, "the list is empty")
        seen: set[str] = set()
        for i, item in enumerate(value):
            at = f"{where}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(at, f"expected a mapping, got {_kind(item)}")
            if "label" not in item:
                raise self.fail(at, "missing key 'label'")
            label = self.text(item["label"], f"{at}.label")
            try:
                check_path_name(label, what="label")
            except ValueError as exc:
                raise self.fail(f"{at}.label", str(exc)) from None
            if "+" in label:
                raise self.fail(f"{at}.label", f"{label!r}: '+' joins the variant names")
            if label in seen:
                raise self.fail(f"{at}.label", f"{label!r} is used twice")
            seen.add(label)
        return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def load_sweep(path: Path | str) -> Sweep:
    """Read and check a sweep file (YAML).

    Schema (``records``, ``models``, ``callers`` required; paths relative to the file)::

        records: all                 # or a list of record ids
        trials: 3                    # per record and variant (default 1)
        label: free text             # batch label (optional)
        batch_id: my-sweep           # batch directory; rerun to resume (optional)
        concurrency: 3               # conversations at once (optional)
        executor: local              # local | ray (where they run; not an experiment setting)
        ray_address: auto            # executor ray: an existing cluster (default: local Ray)
        max_model_sessions: 4        # executor ray: live calls across the cluster (optional)
        max_calls_per_minute: 60     # executor ray: call starts across the cluster (optional)
        seed: 0                      # seed of trial 1 (default 0)
        data_dir: ../eva/data        # records folder (optional; default: eva_dir or hydralab's)
        eva_dir: ../eva              # EVA checkout (optional)
        stt: local                   # local | smallest | openai | deepgram | none
        tools: auto                  # auto | eva | hydralab
        configure_mode: standard     # standard | compacted | update
        profile: live                # the emulator's: live | classic
        hydra_url: wss://...         # Hydra endpoint for model hydra (optional)
        session_timeout_s: 60
        models:                      # each: label, model (emulator | hydra), hydra_model, voice
          - {label: emu, model: emulator}
          - {label: v11-zoe, model: hydra, hydra_model: hydra-v1.1, voice: zoe}
        callers:                     # each: label, caller (scripted | rules), persona,
          - {label: clean}           #   hearing (stt | native, rules only), line
          - label: pink10
            caller: rules
            persona: elderly_slow
            line: {noise: pink, snr_db: 10, packet_loss: 0.02, codec_bits: 8,
                   volume_fluctuation_db: 3, seed: 0}

    Raises:
        SweepError: The file cannot be read, is not YAML, or breaks the schema; the message
            names the key path (``callers[1].line.snr_db: expected a number, got str 'ten'``).
    """
    import yaml

    from hydralab.audio.perturb import LinePerturbation
    from hydralab.callers.personas import PERSONA_NAMES

    p = Path(path)
    ck = _Checker(p)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"{p}: cannot read the sweep file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{p}: not valid YAML: {exc}") from None
    top = ck.mapping(doc, "", SWEEP_KEYS)
    for key in ("records", "models", "callers"):
        if key not in top:
            raise ck.fail("", f"missing key {key!r}")

    records: list[str] | None
    raw = top["records"]
    if raw == "all":
        records = None
    elif isinstance(raw, list):
        if not raw:
            raise ck.fail("records", "the list is empty (use 'all' for every record)")
        records = []
        for i, rid in enumerate(raw):
            try:
                records.append(check_path_name(rid, what="record id"))
            except ValueError as exc:
                raise ck.fail(f"records[{i}]", str(exc)) from None
        if len(set(records)) != len(records):
            raise ck.fail("records", "a record id is listed twice")
    else:
        raise ck.fail("records", f"expected 'all' or a list of record ids, got {_kind(raw)}")

    trials = ck.integer(top.get("trials", 1), "trials", minimum=1)
    seed = ck.integer(top.get("seed", 0), "seed")
    run_kwargs: dict[str, Any] = {}
    batch_kwargs: dict[str, Any] = {"seed": seed}
    eva_dir = ck.path_value(top["eva_dir"], "eva_dir") if "eva_dir" in top else None
    data_dir = ck.path_value(top["data_dir"], "data_dir") if "data_dir" in top else eva_dir
    if data_dir is not None:
        run_kwargs["data_dir"] = data_dir
    if eva_dir is not None:
        run_kwargs["eva_dir"] = eva_dir
    stt = ck.choice(top.get("stt", "local"), "stt", "stt")
    run_kwargs["transcriber"] = None if stt == "none" else stt
    for key in ("tools", "configure_mode"):
        if key in top:
            run_kwargs[key] = ck.choice(top[key], key, key)
    if "session_timeout_s" in top:
        timeout = ck.number(top["session_timeout_s"], "session_timeout_s")
        if timeout <= 0:
            raise ck.fail("session_timeout_s", f"must be > 0, got {timeout:g}")
        run_kwargs["session_timeout_s"] = timeout
    profile = ck.choice(top.get("profile", "live"), "profile", "profile")
    batch_kwargs["emulator_config"] = EmulatorConfig.for_profile(profile)
    if "label" in top:
        batch_kwargs["label"] = ck.text(top["label"], "label")
    if "batch_id" in top:
        try:
            batch_kwargs["batch_id"] = check_path_name(top["batch_id"], what="batch id")
        except ValueError as exc:
            raise ck.fail("batch_id", str(exc)) from None
    if "concurrency" in top:
        batch_kwargs["concurrency"] = ck.integer(top["concurrency"], "concurrency", minimum=1)
    if "executor" in top:
        batch_kwargs["executor"] = ck.choice(top["executor"], "executor", "executor")
    ray_only = [
        k for k in ("ray_address", "max_model_sessions", "max_calls_per_minute") if k in top
    ]
    if ray_only and batch_kwargs.get("executor") != "ray":
        raise ck.fail(ray_only[0], "applies to 'executor: ray' only")
    if "ray_address" in top:
        batch_kwargs["ray_address"] = ck.text(top["ray_address"], "ray_address")
    if "max_model_sessions" in top:
        batch_kwargs["max_model_sessions"] = ck.integer(
            top["max_model_sessions"], "max_model_sessions", minimum=1
        )
    if "max_calls_per_minute" in top:
        rpm = ck.number(top["max_calls_per_minute"], "max_calls_per_minute")
        if rpm <= 0:
            raise ck.fail("max_calls_per_minute", f"must be > 0, got {rpm:g}")
        batch_kwargs["max_calls_per_minute"] = rpm

    models: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(ck.labelled(top["models"], "models")):
        at = f"models[{i}]"
        ck.mapping(item, at, _MODEL_KEYS)
        if "model" not in item:
            raise ck.fail(at, "missing key 'model' (emulator or hydra)")
        kw: dict[str, Any] = {"model": ck.choice(item["model"], f"{at}.model", "model")}
        for key in ("hydra_model", "voice"):
            if key in item:
                kw[key] = ck.text(item[key], f"{at}.{key}")
        models.append((item["label"], kw))
    if "hydra_url" in top:
        if all(kw["model"] != "hydra" for _, kw in models):
            raise ck.fail("hydra_url", "applies to model 'hydra' only, and no model is hydra")
        batch_kwargs["hydra_url"] = ck.text(top["hydra_url"], "hydra_url")

    callers: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(ck.labelled(top["callers"], "callers")):
        at = f"callers[{i}]"
        ck.mapping(item, at, _CALLER_KEYS)
        kw = {}
        policy = ck.choice(item.get("caller", "scripted"), f"{at}.caller", "caller")
        if policy != "scripted":
            kw["caller"] = policy
            kw["hearing"] = ck.choice(item.get("hearing", "stt"), f"{at}.hearing", "hearing")
            if kw["hearing"] == "stt" and stt == "none":
                raise ck.fail(f"{at}.hearing", "a caller that hears by stt needs stt (not none)")
        elif "hearing" in item:
            raise ck.fail(f"{at}.hearing", "applies to a rules caller only (scripted: no)")
        if "persona" in item:
            persona = ck.text(item["persona"], f"{at}.persona")
            if eva_dir is None and persona not in PERSONA_NAMES:
                raise ck.fail(
                    f"{at}.persona", f"{persona!r} is not one of {', '.join(PERSONA_NAMES)}"
                )
            kw["persona"] = persona
        if "line" in item:
            line = ck.mapping(item["line"], f"{at}.line", _LINE_KEYS)
            values: dict[str, Any] = {"seed": seed}
            for key, v in line.items():
                where = f"{at}.line.{key}"
                if key == "noise":
                    values[key] = ck.text(v, where)
                elif key in ("codec_bits", "seed"):
                    values[key] = (
                        None if v is None and key == "codec_bits" else ck.integer(v, where)
                    )
                else:
                    values[key] = ck.number(v, where)
            try:
                kw["line"] = LinePerturbation(**values)
            except ValueError as exc:
                raise ck.fail(f"{at}.line", str(exc)) from None
        callers.append((item["label"], kw))

    variants = {f"{m}+{c}": {**mkw, **ckw} for m, mkw in models for c, ckw in callers}
    batch_kwargs["model"] = models[0][1]["model"]  # each variant sets its own
    return Sweep(p, records, trials, variants, run_kwargs, batch_kwargs)


async def run_batch_sweep(
    path: Path | str,
    *,
    out_dir: Path | str = "runs",
    batch_id: str | None = None,
    concurrency: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    processes: bool = True,
    **executor_kwargs: Any,
) -> BatchResult:
    """Run the sweep file ``path`` (:func:`load_sweep`) as one batch: every record × trial once
    per ``models × callers`` combination, the variant ``<model label>+<caller label>``.

    ``batch_id`` and ``concurrency`` override the file's, and so do ``executor_kwargs``
    (:func:`run_batch`'s ``executor``, ``ray_address``, ``ray_init_kwargs``,
    ``calls_per_node``, ``max_model_sessions``, ``max_calls_per_minute``, ``ship_results``);
    the rest is as :func:`run_batch` (resume: the same file and batch id;
    :class:`BatchSettingsError` if the file changed what the conversations measure).
    """
    allowed = (
        "executor", "ray_address", "ray_init_kwargs", "calls_per_node", "max_model_sessions",
        "max_calls_per_minute", "ship_results",
    )  # fmt: skip
    unknown = sorted(set(executor_kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"run_batch_sweep: unexpected arguments {', '.join(unknown)}")
    sweep = load_sweep(path)
    kwargs = {**sweep.run_kwargs, **sweep.batch_kwargs}
    if batch_id is not None:
        kwargs["batch_id"] = batch_id
    if concurrency is not None:
        kwargs["concurrency"] = concurrency
    kwargs.update(executor_kwargs)
    return await run_batch(
        sweep.record_ids(),
        trials=sweep.trials,
        variants=sweep.variants,
        out_dir=out_dir,
        retry_failed=retry_failed,
        progress=progress,
        processes=processes,
        **kwargs,
    )


def run_batch_sweep_sync(path: Path | str, **kwargs: Any) -> BatchResult:
    """Blocking :func:`run_batch_sweep`; works in scripts and inside Jupyter alike."""
    return run_sync(run_batch_sweep(path, **kwargs))
