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

Layout: trial ``k`` of every record is one run, ``<batch_id>/trial_<k>``; the record directories
inside it are wherever ``run_record`` puts them (its ``RunResult.run_dir``). A batch of several
domains (EVA's airline, itsm, medical_hr) has one run per domain and trial,
``<batch_id>/<domain>-trial_<k>``: an EVA run is one domain, named by its ``config.json``.

Each conversation runs in its own process by default. Conversations in one event loop disturb
each other's clocks: the offline STT holds the GIL for 100–400 ms per caller utterance, and a
stalled loop stamps another call's ``speech_stopped`` or first audio late (measured: up to
~550 ms). Against the emulator every conversation also reports ``overhead_max_ms``, the most any
turn's measured ``model_response`` exceeded what the emulator actually did (its ground truth).
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
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

__all__ = [
    "EXPERIMENT_KEYS",
    "MANIFEST",
    "BatchResult",
    "BatchSettingsError",
    "Conversation",
    "run_batch",
    "run_batch_sync",
]

MANIFEST = "batch.json"
# ok: the call completed (result.json "completed") · failed: the call ran but did not complete
# (its run directory holds what happened, run.json "verdict" why) · error: run_record raised
# (no usable run directory).
FINISHED = ("ok", "failed")
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
        """Conversations per status (ok, failed, error, running, pending; zeros left out)."""
        order = ("ok", "failed", "error", "running", "pending")
        out = {k: sum(c.status == k for c in self.conversations) for k in order}
        return {k: v for k, v in out.items() if v}

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
        for c in self.conversations:
            if c.status != "ok":
                why = c.error or "; ".join(c.not_completed or []) or c.ended_reason
                lines.append(f"  {c.key}: {c.status} — {why}")
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
            ``<batch_id>/<variant>-trial_<k>`` and the tables get a ``variant`` column.
        label: Free text describing the batch (e.g. ``"hydra-v1.1, zoe, pink 10 dB"``), kept in
            ``batch.json`` (its config and every conversation's entry).
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
    if model != "hydra" and hydra_url is not None:
        raise ValueError("hydra_url applies to model 'hydra' only")
    endpoint = resolve_hydra_url(hydra_url) if model == "hydra" else None
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
    }
    _check_resume(batch_dir, stored, config)
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
            c.overhead_max_ms, c.not_completed = None, None
            c.started_at = dt.datetime.now().isoformat(timespec="seconds")
            c.attempts += 1
            t0 = time.monotonic()
            k = c.trial - 1
            kwargs = dict(
                run_kwargs,
                **((variants or {}).get(c.variant or "", {}) if c.variant else {}),
                out_dir=batch_dir,
                run_id=run_id_of(c),
                model=model,
                **({"hydra_url": endpoint} if endpoint is not None else {}),
                emulator_config=dataclasses.replace(emu, seed=emu_seed + k),
                caller_config=dataclasses.replace(cal, seed=cal_seed + k),
            )
            try:
                if processes:
                    out = await _run_in_subprocess(by_id[c.record_id], kwargs)
                else:
                    out = _outcome(await run_record(by_id[c.record_id], **kwargs))
            except Exception as exc:  # one conversation failing never stops the batch
                out = {"exception": redact(f"{type(exc).__name__}: {exc}")}
            if "exception" in out:
                c.status, c.error = "error", out["exception"]
            else:
                c.run_dir = os.path.relpath(out["run_dir"], batch_dir)
                c.ended_reason = out["ended_reason"]
                c.error = redact(out["error"]) if out["error"] else None
                c.overhead_max_ms = out["overhead_max_ms"]
                c.not_completed = [redact(w) for w in out["not_completed"]] or None
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
        save()
        if bar is not None:
            bar.close()
    return result


def _outcome(r: RunResult) -> dict[str, Any]:
    """What the batch keeps of a ``RunResult`` (picklable, for the child-process path)."""
    return {
        "run_dir": str(r.run_dir),
        "ended_reason": r.ended_reason,
        "error": r.error,
        "completed": r.completed,
        "not_completed": list(r.not_completed),
        "overhead_max_ms": _overhead_max_ms(r),
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
        return {"exception": redact(f"{type(exc).__name__}: {exc}")}


async def _run_in_subprocess(record: str | Record | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`_conversation` in a fresh child process and await its outcome."""
    # spawn, not fork: the parent may be a Jupyter kernel with threads; one process per call
    # so a crash (or a stuck native library) takes only its own conversation down.
    pool = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, _conversation, record, kwargs)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


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
