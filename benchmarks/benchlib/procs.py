"""Child processes of the bench: spawn, talk to (:mod:`benchlib.cmdloop`), measure from outside.

CPU and memory are read from ``/proc/<pid>`` (``utime + stime`` of every thread; ``VmRSS``), so
a process is measured alone, whatever runs beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = BENCH_DIR.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
DUMMY_KEY = "bench-dummy-key"  # the bridge's SMALLEST_API_KEY: the fake model ignores it


def child_env(hydralab: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a child: ``hydralab`` first on ``PYTHONPATH``, then ``benchmarks/``
    (for ``benchlib``); BLAS on one thread."""
    env = dict(os.environ)
    paths = [str(hydralab)] if hydralab is not None else []
    paths.append(str(BENCH_DIR))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.update(extra)
    return env


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def git_commit(path: Path) -> dict[str, Any]:
    """The checkout's commit and whether its hydralab/ has uncommitted changes."""

    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(path), *a], capture_output=True, text=True, timeout=20)
        return r.stdout.strip() if r.returncode == 0 else ""

    dirty = git("status", "--porcelain", "--", "hydralab")
    return {
        "path": str(path),
        "commit": git("rev-parse", "HEAD") or None,
        "subject": git("log", "-1", "--format=%s")[:120] or None,
        "hydralab_dirty": bool(dirty),
        "dirty_files": [ln[3:] for ln in dirty.splitlines()][:40],
    }


class ChildError(RuntimeError):
    pass


class Child:
    """A ``python -m MODULE`` child speaking the command protocol."""

    def __init__(
        self,
        module: str,
        args: list[str],
        *,
        name: str,
        env: dict[str, str],
        cwd: Path,
        log_dir: Path,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=cwd,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.info = self._next(ready_timeout_s)
        if not self.info.get("ready"):
            raise ChildError(f"{name}: not ready: {self.info}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise ChildError(
                f"{self.name}: no answer within {timeout_s:g} s{self.tail()}"
            ) from None
        if line is None:
            raise ChildError(f"{self.name}: exited (rc {self.proc.poll()}){self.tail()}")
        return dict(json.loads(line))

    def tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return ("\n  " + "\n  ".join(lines)) if lines else ""

    def call(self, cmd: str, timeout_s: float = 60.0, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ChildError(f"{self.name}: gone{self.tail()}") from None
        res = self._next(timeout_s)
        if not res.get("ok"):
            raise ChildError(f"{self.name}: {cmd} failed: {res.get('error')}")
        return res

    @property
    def pids(self) -> list[int]:
        """The processes measured: the announced ``pids`` (ServeWorkers' workers), else this."""
        return [int(p) for p in self.info.get("pids") or [self.pid]]

    def cpu_s(self) -> float:
        return sum(proc_cpu_s(p) for p in self.pids)

    def rss_mb(self) -> float:
        return sum(proc_rss_mb(p) for p in self.pids)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ChildError):
                self.call("quit", timeout_s=5.0)
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self._log.close()


@dataclass
class BenchEnv:
    """Where children run and log, and which hydralab they import."""

    hydralab: Path
    work_dir: Path  # cwd of the children (never a checkout: it would shadow --hydralab)

    @property
    def log_dir(self) -> Path:
        d = self.work_dir / "logs"
        d.mkdir(parents=True, exist_ok=True)
        return d


def launch_bridges(
    env: BenchEnv,
    *,
    kind: str,
    model_url: str,
    procs: int = 1,
    tag: str = "bridge",
    serve_workers: bool = False,
) -> list[Child]:
    """Start the process(es) under test; callers are spread over ``[c.info["url"] ...]``.

    Default: ``procs`` separate processes, each on its own port, the callers round-robin over
    them. ``serve_workers``: one launcher running ``hydralab.serve.ServeWorkers(workers=procs)``
    (``hydralab serve --workers``: the processes share one port, the kernel spreads the
    connections); its worker pids are what :meth:`Child.cpu_s` / :meth:`Child.rss_mb` measure.
    """
    if serve_workers and kind == "bridge":
        args = ["--kind", "workers", "--workers", str(procs), "--model-url", model_url]
        args += ["--out-dir", str(env.work_dir / f"{tag}-runs"), "--hydralab", str(env.hydralab)]
        return [
            Child(
                "benchlib.bridge_proc",
                args,
                name=f"{tag}-workers",
                env=child_env(env.hydralab, SMALLEST_API_KEY=DUMMY_KEY),
                cwd=env.work_dir,
                log_dir=env.log_dir,
                ready_timeout_s=180.0,
            )
        ]
    out: list[Child] = []
    try:
        for k in range(procs):
            out_dir = env.work_dir / f"{tag}-{k}-runs"
            args = ["--kind", kind, "--model-url", model_url, "--out-dir", str(out_dir)]
            if kind == "bridge":
                args += ["--hydralab", str(env.hydralab)]
            out.append(
                Child(
                    "benchlib.bridge_proc",
                    args,
                    name=f"{tag}-{k}",
                    env=child_env(env.hydralab, SMALLEST_API_KEY=DUMMY_KEY),
                    cwd=env.work_dir,
                    log_dir=env.log_dir,
                )
            )
    except BaseException:
        for c in out:
            c.close()
        raise
    return out


def run_json(
    module: str,
    args: list[str],
    *,
    env: BenchEnv,
    timeout_s: float,
    extra_env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``python -m module args`` to completion; its last stdout line is JSON."""
    cmd = [*(prefix or []), sys.executable, "-m", module, *args]
    t = time.perf_counter()
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=env.work_dir,
        env=child_env(env.hydralab, **(extra_env or {})),
    )
    if r.returncode != 0:
        raise ChildError(f"{module} failed (rc {r.returncode}):\n{r.stderr[-3000:]}")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise ChildError(f"{module}: no JSON output:\n{r.stdout[-1000:]}\n{r.stderr[-2000:]}")
    out = dict(json.loads(lines[-1]))
    out.setdefault("_wall_s", round(time.perf_counter() - t, 3))
    return out
