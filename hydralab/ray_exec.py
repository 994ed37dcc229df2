"""Batches on a Ray cluster: ``run_batch(..., executor="ray")``, ``hydralab batch --ray``.

Each conversation runs as one Ray task in a fresh worker process (``max_calls=1``, as the
local executor's one child process per conversation): :func:`hydralab.batch._conversation`
there, bridge, caller and the emulator (or the real Hydra), on whichever node Ray picks. Ray is
an optional extra (``pip install 'hydralab[ray]'``), imported here only, when a batch asks for
it: ``import hydralab`` never imports it.

Three limits keep the timing honest and the provider happy:

* **Per node** — a custom resource, :data:`RESOURCE` (``hydralab_call``), one unit per call. Its
  capacity on a node is that node's call limit: hydralab sets it when it starts a local Ray
  (``calls_per_node``, default :data:`CALLS_PER_CORE` × the CPUs); the nodes of an existing
  cluster are started with ``ray start --resources '{"hydralab_call": N}'``. A cluster without
  the resource gets ``num_cpus = 1 / CALLS_PER_CORE`` per call instead (the same calls per core);
  the manifest says which was used.
* **Across the cluster** — one async actor per batch, :class:`_Limiter`: at most
  ``max_model_sessions`` calls live at once (Hydra's per-organisation session cap answers
  ``server_full``) and call starts at least ``60 / max_calls_per_minute`` s apart (Smallest's
  requests-per-minute cap). It also counts the calls in flight on every node.
* **Tasks in flight** — ``run_batch``'s ``concurrency``, on the driver, as locally.

Ports need no allocation: the bridge and the emulator bind ``127.0.0.1`` port 0 (the OS picks
a free one) in the task's own process, so calls on one node never collide.

Results: when the worker sees the driver's batch directory (the same path on a shared file
system, or a local Ray) the run directory is written in place; otherwise (``ship_results=True``,
or the directory is not visible from the worker) the task writes it to a temporary folder,
rewrites that folder's path in the run's files to the batch directory's and returns it as a
``tar.gz`` blob that the driver unpacks into the batch directory. Either way every run
directory gets a ``node.json``: the node, its limit and the load the call saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import io
import json
import logging
import os
import secrets as _secrets
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hydralab.secrets import Secret, redact

__all__ = [
    "CALLS_PER_CORE",
    "NODE_FILE",
    "RESOURCE",
    "RayExecutor",
    "RaySettings",
    "import_ray",
]

#: The custom Ray resource a conversation takes one unit of; a node's capacity = its call limit.
RESOURCE = "hydralab_call"
#: Calls per CPU core that keep the timing exact; the default per-node limit. Measured on a
#: 2-core machine (three records, offline STT, one child process per call): 2 calls at once
#: kept every turn's ``model_response`` within 0.7 ms of the emulator's ground truth, 4 (2 per
#: core) within 3.0 ms, 6 (3 per core) let one turn drift 10.5 ms.
CALLS_PER_CORE = 2
#: The file each run directory gets on the Ray path: the node and the load the call saw.
NODE_FILE = "node.json"
#: Text files of a shipped run whose worker-side paths are rewritten to the batch directory's.
_TEXT_SUFFIXES = (".json", ".jsonl", ".log", ".txt")
_MARKER_PREFIX = ".hydralab-ray-"
INSTALL_HINT = "pip install 'hydralab[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or an :class:`ImportError` that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ImportError(
            f"executor='ray' needs Ray, an optional extra: {INSTALL_HINT} ({exc})"
        ) from None


@dataclass(frozen=True)
class RaySettings:
    """How a batch uses Ray (none of it defines the experiment: a batch may be resumed with
    other settings, or on the local executor)."""

    address: str | None = None  # None = a local Ray (or the one this process already joined)
    init_kwargs: Mapping[str, Any] | None = None  # more ray.init() arguments
    calls_per_node: int | None = None  # local Ray only: the node's hydralab_call capacity
    max_model_sessions: int | None = None  # live calls across the cluster (None = no limit)
    max_calls_per_minute: float | None = None  # call starts across the cluster
    ship_results: bool = False  # always return run directories to the driver

    def check(self) -> None:
        """Refuse values no batch can run with (before Ray starts)."""
        for name in ("calls_per_node", "max_model_sessions"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an integer ≥ 1 or None, got {v!r}")
        rpm = self.max_calls_per_minute
        if rpm is not None and not rpm > 0:
            raise ValueError(f"max_calls_per_minute must be > 0 or None, got {rpm!r}")
        if self.calls_per_node is not None and self._joins_existing():
            raise ValueError(
                "calls_per_node sets the resource of the local Ray hydralab starts; the nodes "
                "of an existing cluster declare it when they start: ray start --resources "
                f"'{{\"{RESOURCE}\": N}}'"
            )

    def _joins_existing(self) -> bool:
        if self.address is not None or os.environ.get("RAY_ADDRESS"):
            return True
        return bool(_ray_initialized())


def _ray_initialized() -> bool:
    try:
        ray = importlib.import_module("ray")
    except ImportError:
        return False
    return bool(ray.is_initialized())


def public_address(address: str | None) -> str | None:
    """``address`` without credentials (a ``user:password@`` part, a ``?token=`` query)."""
    if address is None:
        return None
    if "://" in address:
        parts = urllib.parse.urlsplit(address)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        address = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    return redact(address)


class _Limiter:
    """The cluster-wide gate (a Ray async actor, one per batch): live calls at most
    ``max_sessions``, call starts at least ``60 / per_minute`` s apart, and the calls in
    flight per node. Each call holds its slot under a token; a token the driver gave up on
    (its task crashed or was cancelled) is released, even when its slot comes later. A plain
    class, so it is tested without Ray."""

    def __init__(self, max_sessions: int | None, per_minute: float | None) -> None:
        self.max_sessions = max_sessions
        self.interval_s = 60.0 / per_minute if per_minute else 0.0
        self.live = 0
        self.peak = 0
        self.in_flight: dict[str, int] = {}
        self.holders: dict[str, str] = {}  # token -> node id
        self.abandoned: set[str] = set()
        self.next_start = 0.0
        self._cond = asyncio.Condition()

    async def enter(self, token: str, node_id: str) -> dict[str, Any]:
        """Wait for a session slot (and the start spacing), then count the call in."""
        t0 = time.monotonic()
        async with self._cond:
            await self._cond.wait_for(
                lambda: self.max_sessions is None or self.live < self.max_sessions
            )
            self.live += 1
            self.peak = max(self.peak, self.live)
            self.holders[token] = node_id
            self.in_flight[node_id] = self.in_flight.get(node_id, 0) + 1
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval_s
        if token in self.abandoned:  # given up while it waited: the slot goes on at once
            await self.leave(token)
            return {"abandoned": True}
        if start > now:
            await asyncio.sleep(start - now)
        return {
            "queued_s": round(time.monotonic() - t0, 3),
            "node_in_flight": self.in_flight[node_id],
            "cluster_live": self.live,
        }

    async def leave(self, token: str) -> dict[str, Any]:
        """Count the call out (the counts returned include it) and free its slot; a token
        not (yet) holding one is marked abandoned."""
        node_id = self.holders.get(token)
        if node_id is None:
            self.abandoned.add(token)
            return {"node_in_flight": None, "cluster_live": self.live}
        out = {"node_in_flight": self.in_flight.get(node_id, 0), "cluster_live": self.live}
        async with self._cond:
            del self.holders[token]
            self.live -= 1
            self.in_flight[node_id] -= 1
            self._cond.notify_all()
        return out

    async def stats(self) -> dict[str, Any]:
        return {"peak_live": self.peak, "live": self.live, "in_flight": dict(self.in_flight)}


class RayExecutor:
    """Runs a batch's conversations as Ray tasks (``run_batch(executor="ray")`` drives it:
    :meth:`start`, :meth:`run` per conversation, :meth:`close`)."""

    def __init__(self, settings: RaySettings, batch_dir: Path) -> None:
        settings.check()
        self.settings = settings
        self.batch_dir = batch_dir.resolve()
        self.started_ray = False
        self.info: dict[str, Any] = {}
        self._ray: Any = None
        self._remote: Any = None
        self._limiter: Any = None
        self._task_options: dict[str, Any] = {}
        self._marker = f"{_MARKER_PREFIX}{_secrets.token_hex(6)}"
        self._refs: set[Any] = set()

    def start(self) -> dict[str, Any]:
        """Join (or start) Ray, create the batch's limiter; what the manifest records."""
        ray = self._ray = import_ray()
        s = self.settings
        if not ray.is_initialized():
            extra = dict(s.init_kwargs or {})
            kwargs: dict[str, Any] = {
                "address": s.address,
                "log_to_driver": False,
                "logging_level": logging.WARNING,
                "ignore_reinit_error": True,
            }
            if not s._joins_existing():  # a local Ray: hydralab declares the per-node limit
                num_cpus = int(extra.get("num_cpus") or os.cpu_count() or 1)
                limit = s.calls_per_node or CALLS_PER_CORE * num_cpus
                resources = {RESOURCE: limit, **(extra.pop("resources", None) or {})}
                kwargs.update(namespace="hydralab", include_dashboard=False, resources=resources)
            kwargs.update(extra)
            ray.init(**kwargs)
            self.started_ray = True
        try:
            self._setup(ray)
        except BaseException:
            self.close()
            raise
        return self.info

    def _setup(self, ray: Any) -> None:
        s = self.settings
        declared = ray.cluster_resources().get(RESOURCE, 0) > 0
        if declared:
            self._task_options = {"num_cpus": 0, "resources": {RESOURCE: 1}}
            how = f"resource {RESOURCE}: 1 per call"
        else:
            self._task_options = {"num_cpus": 1 / CALLS_PER_CORE}
            how = f"num_cpus: {1 / CALLS_PER_CORE:g} per call (no node declares {RESOURCE})"
        # spread the calls over the nodes: the fewer per node, the more exact its clocks
        self._task_options["scheduling_strategy"] = "SPREAD"
        capacity: dict[str, float] = {}
        for n in ray.nodes():
            if n.get("Alive"):
                res = n.get("Resources") or {}
                host = n.get("NodeManagerHostname") or n.get("NodeManagerAddress") or "?"
                calls = res.get(RESOURCE, 0) if declared else CALLS_PER_CORE * res.get("CPU", 0)
                capacity[f"{host} {str(n.get('NodeID', ''))[:8]}"] = float(calls)
        self._remote = ray.remote(max_calls=1, max_retries=0)(_ray_task)
        limiter_cls = ray.remote(num_cpus=0, max_concurrency=10_000)(_Limiter)
        name = f"hydralab-limiter-{self.batch_dir.name}-{self._marker[len(_MARKER_PREFIX) :]}"
        self._limiter = limiter_cls.options(name=name).remote(
            s.max_model_sessions, s.max_calls_per_minute
        )
        (self.batch_dir / self._marker).write_text("the driver's batch directory\n")
        gcs = getattr(ray.get_runtime_context(), "gcs_address", None)
        self.info = {
            "address": public_address(s.address or os.environ.get("RAY_ADDRESS")),
            "gcs_address": public_address(gcs) if isinstance(gcs, str) else None,
            "started_by_hydralab": self.started_ray,
            "ray_version": getattr(ray, "__version__", None),
            "per_node_limit": how,
            "calls_per_node": capacity,
            "max_model_sessions": s.max_model_sessions,
            "max_calls_per_minute": s.max_calls_per_minute,
            "ship_results": s.ship_results,
            "limiter": name,
            "ports": "bridge and emulator bind 127.0.0.1 port 0 in each task's own process",
        }

    async def run(self, record: Any, kwargs: dict[str, Any], *, key: str) -> dict[str, Any]:
        """One conversation as a Ray task; its outcome as :func:`hydralab.batch._conversation`
        returns it, with ``run_dir`` in the batch directory and the ``node`` it ran on."""
        ray = self._ray
        token = _secrets.token_hex(8)
        job = {
            "token": token,
            "batch_dir": str(self.batch_dir),
            "marker": self._marker,
            "ship": self.settings.ship_results,
            "limiter": self._limiter,
            "per_node_limit": self.info.get("per_node_limit"),
        }
        ref = self._remote.options(**self._task_options, name=f"hydralab {key}").remote(
            record, kwargs, job
        )
        self._refs.add(ref)
        try:
            out: dict[str, Any] = await asyncio.wrap_future(ref.future())
        except BaseException:  # cancelled, or the task died: free its session slot
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
            with contextlib.suppress(Exception):
                self._limiter.leave.remote(token)
            raise
        finally:
            self._refs.discard(ref)
        shipped = out.pop("shipped", None)
        if shipped is not None and "run_dir" in out:
            unpack(shipped, self.batch_dir)
            out["run_dir"] = str(self.batch_dir / out["run_dir"])
        return out

    def close(self) -> None:
        """Cancel what still runs, end the limiter, remove the marker; shut Ray down only
        when this executor started it."""
        ray = self._ray
        if ray is None:
            return
        for ref in list(self._refs):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if self._limiter is not None:
            with contextlib.suppress(Exception):
                self.info["peak_live_sessions"] = ray.get(self._limiter.stats.remote(), timeout=10)[
                    "peak_live"
                ]
            with contextlib.suppress(Exception):
                ray.kill(self._limiter)
            self._limiter = None
        (self.batch_dir / self._marker).unlink(missing_ok=True)
        if self.started_ray:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self.started_ray = False


# ------------------------------------------------------------------------- in the worker


def _ray_task(record: Any, kwargs: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """One conversation in a Ray worker: gate, run, ``node.json``, and ship when needed."""
    from hydralab.batch import _conversation, _exception_outcome

    ray = import_ray()
    node_id = str(ray.get_runtime_context().get_node_id())
    node: dict[str, Any] = {
        "executor": "ray",
        "node_id": node_id,
        "hostname": socket.gethostname(),
        "ip": _node_ip(ray),
        "pid": os.getpid(),
        "cpu_count": os.cpu_count(),
        "per_node_limit": job.get("per_node_limit"),
        "node_limit": _node_limit(ray, node_id),
        "ports": "127.0.0.1:0 (bridge and emulator, OS-assigned in this process)",
    }
    batch_dir = Path(job["batch_dir"])
    shared = not job["ship"] and _sees(batch_dir, job["marker"])
    tmp = None if shared else Path(tempfile.mkdtemp(prefix="hydralab-ray-"))
    node["results"] = "shared" if shared else "shipped"
    kwargs = {**kwargs, "out_dir": batch_dir if tmp is None else tmp}
    key = kwargs.get("api_key")
    if isinstance(key, Secret):  # registered in this process, so redact() masks it here too
        kwargs["api_key"] = Secret(key.reveal())
    limiter = job["limiter"]
    try:
        node["loadavg_start"] = _loadavg()
        gate = ray.get(limiter.enter.remote(job["token"], node_id))
        if gate.get("abandoned"):  # the driver gave up on this task while it waited
            raise RuntimeError("cancelled")
        node.update(
            queued_s=gate["queued_s"],
            in_flight_start=gate["node_in_flight"],
            cluster_live_start=gate["cluster_live"],
            started_at=_now(),
        )
        try:
            out = _conversation(record, kwargs)
        finally:
            left = ray.get(limiter.leave.remote(job["token"]))
            node.update(
                ended_at=_now(),
                in_flight_end=left["node_in_flight"],
                cluster_live_end=left["cluster_live"],
                loadavg_end=_loadavg(),
            )
        out["node"] = {k: node[k] for k in ("hostname", "node_id")}
        if out.get("run_dir"):
            run_dir = Path(out["run_dir"])
            _write_json(run_dir / NODE_FILE, node)
            if tmp is not None:
                out["shipped"] = pack(tmp, run_dir, batch_dir)
                out["run_dir"] = run_dir.relative_to(tmp).as_posix()
        return out
    except Exception as exc:  # the gate or the shipping failed: the conversation is an error
        out = _exception_outcome(exc)
        out["node"] = {k: node[k] for k in ("hostname", "node_id")}
        return out
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _sees(batch_dir: Path, marker: str) -> bool:
    """The driver's batch directory is this worker's too (its marker file is here) and
    writable."""
    try:
        return (batch_dir / marker).is_file() and os.access(batch_dir, os.W_OK)
    except OSError:
        return False


def _node_ip(ray: Any) -> str | None:
    try:
        return str(ray.util.get_node_ip_address())
    except Exception:
        return None


def _node_limit(ray: Any, node_id: str) -> dict[str, float] | None:
    """This node's capacity of the per-node limit (its ``hydralab_call``, or CPUs)."""
    try:
        for n in ray.nodes():
            if n.get("NodeID") == node_id:
                res = n.get("Resources") or {}
                return {k: float(res[k]) for k in (RESOURCE, "CPU") if k in res}
    except Exception:
        return None
    return None


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _now() -> dict[str, Any]:
    t = time.time()
    return {"epoch_s": round(t, 3), "iso": dt.datetime.fromtimestamp(t).isoformat()}


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- shipping


def pack(root: Path, run_dir: Path, batch_dir: Path) -> bytes:
    """``run_dir`` (below ``root``) and its run's ``config.json`` as a ``tar.gz`` blob, the
    paths under ``root`` inside its text files rewritten to ``batch_dir``'s."""
    rel = run_dir.relative_to(root)
    run_root = root / rel.parts[0]
    _rewrite_paths(run_root, str(root), str(batch_dir))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        config = run_root / "config.json"
        if config.is_file():
            tar.add(config, arcname=config.relative_to(root).as_posix())
        tar.add(run_dir, arcname=rel.as_posix())
    return buf.getvalue()


def _rewrite_paths(folder: Path, old: str, new: str) -> None:
    """Replace ``old`` (a folder path) by ``new`` in the text files below ``folder``, raw and
    as a JSON string escapes it."""
    pairs = {(old, new), (json.dumps(old)[1:-1], json.dumps(new)[1:-1])}
    for p in folder.rglob("*"):
        if not p.is_file() or p.suffix not in _TEXT_SUFFIXES:
            continue
        data = p.read_bytes()
        changed = data
        for a, b in pairs:
            changed = changed.replace(a.encode(), b.encode())
        if changed != data:
            p.write_bytes(changed)


def unpack(blob: bytes, batch_dir: Path) -> None:
    """Unpack a shipped run into ``batch_dir``: folders, regular files and links between its
    own files (``audio_user_clean.wav`` is a hard link), every one inside ``batch_dir``; a
    member that is absolute, climbs out with ``..`` or is a device is refused."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            names = [m.name] + ([m.linkname] if m.islnk() or m.issym() else [])
            unsafe = any(n.startswith("/") or ".." in PurePosixPath(n).parts for n in names)
            if unsafe or not (m.isfile() or m.isdir() or m.islnk() or m.issym()):
                raise ValueError(f"shipped run: refused member {m.name!r}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(batch_dir, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(batch_dir, members=members)
