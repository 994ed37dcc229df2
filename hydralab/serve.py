"""``hydralab serve``: the bridge waiting for any Twilio Media Streams caller.

EVA's own user simulators (``voice-bench-v1`` frames, ``ws://localhost:PORT/ws``) and canonical
Twilio clients can call a record's agent — the emulator or the real Hydra — through hydralab.
Each connection is one conversation with its own run directory (EVA's layout,
``OUT/RUN_ID-NNN/records/RECORD_ID/``, with its own ``config.json``); the caller side is the
caller's own, so ``user_simulator_events.jsonl`` is left to it. Stopping the server (SIGINT /
SIGTERM on the command line) ends the calls in flight as ``server_shutdown`` — never reported as
completed — and writes their complete outputs.

At most ``max_calls`` conversations run at once (default 4); a caller over the limit is
refused at once (close 1013 ``busy``, no model session opened, kept in ``refused``). A run id
whose directories already exist is refused before the server starts, and every connection's
run directory is created fresh inside ``out_dir``: no call ever writes into another's.

Usage::

    async with serve_bridge("HL-AIR-001", out_dir="runs") as server:
        print(server.url)          # ws://127.0.0.1:PORT/ws
        ...                        # callers call
    server.results                 # one RunResult per conversation
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import glob
import multiprocessing
import pickle
import queue
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hydralab.bridge import Bridge, BridgeConfig, BridgeSession
from hydralab.client import HYDRA_URL
from hydralab.clock import Clock
from hydralab.emulator import Emulator, EmulatorConfig
from hydralab.perf import steady_gc
from hydralab.protocol.budget import CONFIGURE_CEILING_BYTES, ConfigureMode
from hydralab.records import Record, load_record
from hydralab.runner import (
    RunDirectoryError,
    RunResult,
    _make_stt,
    _plan_hydra,
    _run_id,
    _with_budget,
    _with_hydra,
    _write_results,
    check_out_dir,
    claim_run_dir,
    open_run_writer,
    record_run_dir,
    resolve_hydra_url,
    tool_executor,
)
from hydralab.script import Script, script_from_record
from hydralab.secrets import ENV_VAR, Secret, get_api_key, redact
from hydralab.speech.stt import SttConfig, Transcriber
from hydralab.tools import BackendChoice

__all__ = ["DEFAULT_MAX_CALLS", "BridgeServer", "serve_bridge"]

DEFAULT_MAX_CALLS = 4
"""Conversations a :class:`BridgeServer` takes at once unless told otherwise."""


class BridgeServer:
    """The bridge for one record, waiting for callers on 127.0.0.1.

    Args:
        record: Record id (default: hydralab's default record) or a loaded :class:`Record`.
        model: ``"emulator"`` (offline, started with the server) or ``"hydra"`` (needs
            ``SMALLEST_API_KEY``).
        out_dir: Parent of the run directories.
        run_id: Prefix of the run ids (default: a new timestamped id); connection ``n`` gets
            ``RUN_ID-NNN``.
        port: Port on 127.0.0.1 (0 = any free one).
        transcriber: User-turn STT, as :func:`hydralab.runner.run_record` takes it.
        script: What the emulator says (default: the record's reference conversation).
        max_calls: Conversations at once; a caller over it is refused (close 1013 ``busy``).
        reuse_port: Share ``port`` with other processes (``SO_REUSEPORT``):
            :func:`serve_workers` runs several servers of one record on one port.
        tools, eva_dir: Which tool code runs the calls, as for
            :func:`hydralab.runner.run_record` (checked and loaded before serving).
        Others: as :func:`hydralab.runner.run_record`.

    Raises:
        RunDirectoryError: ``out_dir`` cannot be written, or ``run_id`` is not a plain name or
            was used there before (``RUN_ID-NNN`` directories exist).
    """

    def __init__(
        self,
        record: str | Record | None = None,
        *,
        model: Literal["emulator", "hydra"] = "emulator",
        out_dir: Path | str = "runs",
        run_id: str | None = None,
        port: int = 0,
        data_dir: Path | str | None = None,
        hydra_model: str = "hydra-v1.1",
        voice: str | None = None,
        hydra_url: str | None = None,
        api_key: str | Secret | None = None,
        transcriber: Transcriber | SttConfig | str | None = "local",
        emulator_config: EmulatorConfig | None = None,
        bridge_config: BridgeConfig | None = None,
        configure_mode: ConfigureMode = "standard",
        configure_ceiling_bytes: int = CONFIGURE_CEILING_BYTES,
        script: Script | None = None,
        max_calls: int = DEFAULT_MAX_CALLS,
        tools: BackendChoice = "auto",
        eva_dir: Path | str | None = None,
        reuse_port: bool = False,
    ) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be >= 1, got {max_calls}")
        if model not in ("emulator", "hydra"):
            raise ValueError(f"unknown model {model!r}: use 'emulator' or 'hydra'")
        if model != "hydra" and hydra_url is not None:
            raise ValueError("hydra_url applies to model 'hydra' only")
        self.record = (
            record
            if isinstance(record, Record)
            else load_record(record, data_dir=Path(data_dir) if data_dir is not None else None)
        )
        self.model = model
        self.out_dir = Path(out_dir)
        self.run_id = run_id or _run_id()
        self.max_calls = max_calls
        record_run_dir(self.out_dir, f"{self.run_id}-001", self.record.id)  # plain names only
        self.port = port
        self.reuse_port = reuse_port
        self._endpoint = resolve_hydra_url(hydra_url) if model == "hydra" else HYDRA_URL
        self._key = get_api_key(api_key)
        if model == "hydra" and not self._key:
            raise ValueError(f"model 'hydra' needs an API key: set {ENV_VAR} in the environment")
        self._hydra, self._budget = _plan_hydra(  # refuses an oversized configure up front
            self.record,
            hydra_model=hydra_model,
            voice=voice,
            configure_mode=configure_mode,
            configure_ceiling_bytes=configure_ceiling_bytes,
        )
        self._stt = _make_stt(transcriber, self.record, self._key)
        # the tool code is found and loaded now (a wrong --eva-dir fails before serving)
        self._tools_choice: BackendChoice = tools
        self._eva_dir = eva_dir
        tool_executor(self.record, tools=tools, eva_dir=eva_dir)
        # before anything starts: a writable out_dir, and a run id never used there
        check_out_dir(self.out_dir)
        used = sorted(self.out_dir.glob(f"{glob.escape(self.run_id)}-[0-9][0-9][0-9]*"))
        if used:
            raise RunDirectoryError(
                f"run id {self.run_id!r} was used in {self.out_dir} before ({used[0].name} "
                "exists): choose another run id"
            )
        self._emulator_config = emulator_config
        self._bridge_config = bridge_config
        self.script = script or script_from_record(self.record)
        self.emulator: Emulator | None = None
        self._bridge: Bridge | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._active: list[BridgeSession] = []
        self.results: list[RunResult] = []
        self.failures: list[str] = []
        self.refused: list[dict[str, Any]] = []
        """Connections refused (over ``max_calls``, or while stopping): close 1013."""
        self.url = ""
        self._n = 0
        self._gc_hold: contextlib.ExitStack | None = None

    async def start(self) -> str:
        """Start the emulator (if chosen) and the bridge; the callers' ``ws://…/ws`` URL."""
        if self.model == "emulator":
            self.emulator = Emulator(
                self.script, config=self._emulator_config or EmulatorConfig.live()
            )
            url = await self.emulator.start()
        else:
            url = self._endpoint
        self._hydra = dataclasses.replace(self._hydra, url=url, session=self._budget.session)
        self._bridge = Bridge(
            self._new_session, max_concurrent=self.max_calls, on_refused=self.refused.append
        )
        self.url = await self._bridge.start(port=self.port, reuse_port=self.reuse_port)
        self.port = self._bridge.port
        if self._gc_hold is None:  # no full collection of the start-up objects stalls a call
            self._gc_hold = contextlib.ExitStack()
            self._gc_hold.enter_context(steady_gc())
        return self.url

    def _new_session(self) -> BridgeSession:
        """One connection: its own run directory, scenario DB, clock and writer."""
        self._n += 1
        n = self._n
        run_dir = record_run_dir(self.out_dir, f"{self.run_id}-{n:03d}", self.record.id)
        try:  # fresh, or the connection is closed (1011): never another call's directory
            claim_run_dir(run_dir)
        except RunDirectoryError as exc:
            self.failures.append(f"{run_dir}: {exc}")
            raise
        tools = tool_executor(self.record, tools=self._tools_choice, eva_dir=self._eva_dir)
        hydra = self._hydra
        session = BridgeSession(
            _with_budget(_with_hydra(self._bridge_config, hydra), self._budget),
            tools=tools,
            writer_factory=lambda clock: open_run_writer(
                run_dir, clock, model=self.model, hydra=hydra
            ),
            transcriber=self._stt,
            api_key=self._key,
            clock=Clock(),
        )
        self._active.append(session)
        task = asyncio.get_running_loop().create_task(self._finish(session, run_dir, n))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return session

    async def _finish(self, session: BridgeSession, run_dir: Path, n: int) -> None:
        started = dt.datetime.now()
        await session.done.wait()
        self._active.remove(session)
        try:
            result = _write_results(
                self.record,
                self.script,
                run_dir,
                self.model,
                session,
                None,  # the caller is not ours: its own events are its own
                started,
                dt.datetime.now(),
                self.emulator,
                configure_budget=self._budget.to_dict(),
                extra_meta={"serve": {"connection": n, "url": self.url}},
            )
        except Exception as exc:  # one conversation's outputs never cost the others
            self.failures.append(f"{run_dir}: {type(exc).__name__}: {exc}")
            return
        self.results.append(result)

    @property
    def active(self) -> int:
        """Conversations in flight."""
        return len(self._active)

    async def wait_calls(self, n: int, *, timeout_s: float | None = None) -> list[RunResult]:
        """Wait until ``n`` conversations have ended and their outputs are written."""
        async with asyncio.timeout(timeout_s):
            while len(self.results) + len(self.failures) < n:
                await asyncio.sleep(0.05)
        return self.results

    async def stop(self, *, reason: str = "server_shutdown") -> list[RunResult]:
        """Stop taking calls, end the calls in flight (``reason``), write every output."""
        if self._bridge is not None:
            self._bridge.refuse_new()
            await self._bridge.stop_listening()
        for session in list(self._active):
            session.shutdown(reason)
        if self._watchers:
            await asyncio.gather(*list(self._watchers), return_exceptions=True)
        if self._bridge is not None:
            await self._bridge.stop()
            self._bridge = None
        if self._gc_hold is not None:
            self._gc_hold.close()
            self._gc_hold = None
        if self.emulator is not None:
            await self.emulator.stop()
        if self._stt is not None:
            with contextlib.suppress(Exception):
                await self._stt.aclose()
        return self.results

    async def __aenter__(self) -> BridgeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def serve_bridge(
    record: str | Record | None = None, **kwargs: Any
) -> AsyncIterator[BridgeServer]:
    """``async with serve_bridge(...) as server:`` — :class:`BridgeServer` started, and stopped
    (calls in flight ended, outputs written) on exit."""
    server = BridgeServer(record, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# ---------------------------------------------------------------------- several processes
@dataclass(frozen=True)
class WorkerReport:
    """What one :func:`serve_workers` process served."""

    worker: int
    run_id: str
    results: list[tuple[str | None, str]]  # (ended_reason, run_dir) per conversation
    failures: list[str]
    refused: int
    error: str | None = None


def _worker_main(
    k: int,
    record: str | Record | None,
    kwargs: dict[str, Any],
    ready: Any,
    status: Any,
    stop: Any,
    reports: Any,
) -> None:
    """One :func:`serve_workers` process: a :class:`BridgeServer` on the shared port until
    ``stop`` is set. ``status[k - 1]`` says whether it started (1) or not (-1), set before
    ``ready`` is released; its report goes to ``reports``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers
    run_id = str(kwargs.get("run_id"))

    def failed(exc: BaseException) -> WorkerReport:
        return WorkerReport(k, run_id, [], [], 0, redact(f"{type(exc).__name__}: {exc}"))

    async def main() -> WorkerReport:
        try:
            server = BridgeServer(record, **kwargs)
            await server.start()
        except BaseException as exc:
            status[k - 1] = -1
            return failed(exc)
        finally:
            if status[k - 1] == 0:
                status[k - 1] = 1
            ready.release()
        await asyncio.to_thread(stop.wait)
        results = await server.stop()
        return WorkerReport(
            k,
            server.run_id,
            [(r.ended_reason, str(r.run_dir)) for r in results],
            list(server.failures),
            len(server.refused),
        )

    try:
        report = asyncio.run(main())
    except BaseException as exc:  # reported, never a silent worker
        report = failed(exc)
    reports.put(report)


class ServeWorkers:
    """``workers`` processes, each a :class:`BridgeServer` of the same record, sharing one port
    on 127.0.0.1 (``SO_REUSEPORT``: the kernel spreads the callers' connections over them), so
    the bridge's work uses every core: one event loop keeps exact 20 ms time for only so many
    calls (``make bench``).

    Worker ``k`` (1-based) names its runs ``RUN_ID-wK-NNN`` and takes at most
    ``ceil(max_calls / workers)`` calls at once (the kernel's spreading is by connection, not
    by load: a caller refused by a full worker may find room on a retry). Each worker runs its
    own emulator (``model="emulator"``) and writes its own run directories.

    Usage::

        with ServeWorkers("HL-AIR-001", workers=2, out_dir="runs") as served:
            print(served.url)
            ...  # callers call
        served.reports  # one WorkerReport per worker
    """

    def __init__(
        self,
        record: str | Record | None = None,
        *,
        workers: int = 2,
        port: int = 0,
        run_id: str | None = None,
        max_calls: int = DEFAULT_MAX_CALLS,
        start_timeout_s: float = 120.0,
        **kwargs: Any,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_calls < 1:
            raise ValueError(f"max_calls must be >= 1, got {max_calls}")
        for name, value in kwargs.items():
            _check_picklable(name, value)
        self.record = record
        self.workers = workers
        self.run_id = run_id or _run_id()
        self.max_calls = max_calls
        self.per_worker = -(-max_calls // workers)
        self.start_timeout_s = start_timeout_s
        self._kwargs = kwargs
        self._holder: socket.socket | None = None
        self.port = port
        self._procs: list[Any] = []
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = self._ctx.Event()
        self._reports: Any = self._ctx.Queue()
        self.reports: list[WorkerReport] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (e.g. to read their CPU and memory from ``/proc``)."""
        return [p.pid for p in self._procs if p.pid is not None]

    def start(self) -> str:
        """Start the workers; returns once every one listens (or raises with why not)."""
        # the port: held open (bound, never listening) with SO_REUSEPORT, so no other program
        # takes it while the workers start; connections only go to the workers' listeners
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", self.port))
        self._holder, self.port = holder, holder.getsockname()[1]
        ready = self._ctx.Semaphore(0)
        status = self._ctx.Array("i", self.workers)
        for k in range(1, self.workers + 1):
            kw = {
                **self._kwargs,
                "port": self.port,
                "reuse_port": True,
                "run_id": f"{self.run_id}-w{k}",
                "max_calls": self.per_worker,
            }
            proc = self._ctx.Process(
                target=_worker_main,
                args=(k, self.record, kw, ready, status, self._stop, self._reports),
                name=f"hydralab-serve-w{k}",
                daemon=True,
            )
            proc.start()
            self._procs.append(proc)
        deadline = time.monotonic() + self.start_timeout_s
        for _ in self._procs:
            if not ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
                self.stop()
                raise TimeoutError(f"serve workers did not start within {self.start_timeout_s:g} s")
        if any(
            status[i] != 1 for i in range(self.workers)
        ):  # a worker that could not start: its report says why
            reports = self.stop(timeout_s=30.0)
            bad = [r for r in reports if r.error]
            why = f"serve worker {bad[0].worker} failed: {bad[0].error}" if bad else "failed"
            raise RuntimeError(why)
        return self.url

    def _collect(self, timeout_s: float) -> None:
        """Take the workers' reports until every worker has reported or ``timeout_s`` ends."""
        deadline = time.monotonic() + timeout_s
        while len(self.reports) < len(self._procs):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self.reports.append(self._reports.get(timeout=left))
            except queue.Empty:
                return

    def stop(self, *, timeout_s: float = 120.0) -> list[WorkerReport]:
        """End the calls in flight (``server_shutdown``), write their outputs, stop the
        workers; every worker's report (a worker that died is reported as such)."""
        self._stop.set()
        self._collect(timeout_s)
        for proc in self._procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5.0)
        seen = {r.worker for r in self.reports}
        for k, proc in enumerate(self._procs, start=1):
            if k not in seen:
                self.reports.append(
                    WorkerReport(k, f"{self.run_id}-w{k}", [], [], 0, f"exited ({proc.exitcode})")
                )
        self._procs = []
        if self._holder is not None:
            self._holder.close()
            self._holder = None
        self.reports.sort(key=lambda r: r.worker)
        return self.reports

    def __enter__(self) -> ServeWorkers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_picklable(name: str, value: Any) -> None:
    """``value`` goes to the worker processes: say clearly when it cannot."""
    try:
        pickle.dumps(value)
    except Exception as exc:
        raise ValueError(
            f"serve workers: {name} cannot be sent to a worker process ({exc}); pass a "
            "name or a picklable configuration"
        ) from None
