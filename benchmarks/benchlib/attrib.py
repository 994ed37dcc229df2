"""Self time of a profile attributed to the parts of an offline call (item 7).

A sample's time (py-spy) or a function's self time (cProfile) goes to the *owner* of the
nearest hydralab frame on its stack: TTS, STT, the emulator, the caller, the bridge, or the
runner/other hydralab code. Shared building blocks (``audio/``, ``protocol/``, ``clock``,
``secrets``, ``rundir``, ``latency``, ``stats``) own nothing: time spent in them goes to the
owner that called them (a resampler called by the caller is the caller's). Time with no
hydralab frame at all (the event loop's own work, websockets reading frames in its protocol
callbacks, thread start-up) is reported as ``unattributed: <library>``, and time spent loading
modules (any stack through ``importlib``: ``import hydralab`` before the call, lazy imports
during it) as ``import (module loading)``.
"""

from __future__ import annotations

import pstats
from collections import defaultdict
from typing import Any

GROUPS = ("tts", "stt", "emulator", "caller", "bridge", "runner/other hydralab")

_BRIDGE = {
    "bridge.py",
    "bridge_core.py",
    "client.py",
    "uplink.py",
    "playout.py",
    "turns.py",
    "toolpolicy.py",
    "reconnect.py",
    "model.py",
    "serve.py",
}
_CALLER = {"caller.py", "caller_core.py", "policy.py", "listener.py", "script.py"}
_SHARED_DIRS = ("audio/", "protocol/")
_SHARED = {"clock.py", "secrets.py", "rundir.py", "latency.py", "stats.py", "aio.py"}


def hydralab_rel(path: str) -> str | None:
    """``path`` inside the hydralab package (``audio/resample.py``), or ``None``."""
    p = path.replace("\\", "/")
    if p.startswith("hydralab/"):
        return p[len("hydralab/") :]
    i = p.rfind("/hydralab/")
    return p[i + len("/hydralab/") :] if i >= 0 else None


def owner(rel: str) -> str | None:
    """The group owning a hydralab module; ``None`` for a shared building block."""
    if rel.startswith(_SHARED_DIRS) or rel in _SHARED:
        return None
    if rel.startswith("speech/tts"):
        return "tts"
    if rel.startswith("speech/"):
        return "stt"
    if rel.startswith("emulator/"):
        return "emulator"
    if rel in _CALLER or rel.startswith("callers/"):
        return "caller"
    if rel in _BRIDGE or rel.startswith("tools/"):
        return "bridge"
    return "runner/other hydralab"


def library(path: str) -> str:
    p = path.replace("\\", "/")
    for key, name in (
        ("websockets/", "websockets"),
        ("asyncio/", "asyncio"),
        ("selectors", "asyncio"),
        ("concurrent/", "threads"),
        ("threading", "threads"),
        ("numpy/", "numpy"),
        ("json/", "json"),
    ):
        if key in p:
            return f"unattributed: {name}"
    return "unattributed: other"


def _frame_path(frame: str) -> str:
    """``func (path:line)`` → ``path``."""
    i = frame.rfind(" (")
    return frame[i + 2 :].rsplit(":", 1)[0] if i >= 0 else frame


IMPORT = "import (module loading)"


def group_of_stack(paths_leaf_first: list[str]) -> str:
    if any("importlib" in p for p in paths_leaf_first):
        return IMPORT
    shared: str | None = None
    for p in paths_leaf_first:
        rel = hydralab_rel(p)
        if rel is None:
            continue
        g = owner(rel)
        if g is not None:
            return g
        shared = shared or rel
    if shared is not None:
        return "shared audio/protocol (no owner on the stack)"
    return library(paths_leaf_first[0]) if paths_leaf_first else "unattributed: other"


IDLE_LEAVES = (
    "EpollSelector.select ",
    "_PollLikeSelector.select ",
    "Condition.wait ",
    "Event.wait ",
    "Thread.join ",
    "Thread._wait_for_tstate_lock ",
    "_worker (concurrent/futures/thread.py",
)
"""Leaf frames of a thread waiting (py-spy's own idle detection does not work in every
container, so these samples are dropped here)."""


def pyspy_raw(text: str, cpu_s: float) -> dict[str, Any]:
    """CPU seconds per group from ``py-spy record --format raw``: each group's share of the
    samples times ``cpu_s`` (the process's measured CPU: py-spy falls behind its nominal rate on
    a busy machine, so samples / rate would undercount). Waiting threads' samples
    (:data:`IDLE_LEAVES`, and stacks with no Python frame) are left out."""
    counts: dict[str, int] = defaultdict(int)
    leaves: dict[tuple[str, str], int] = defaultdict(int)
    n = idle = empty = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        frames = [f for f in stack.split(";") if f.strip()]
        while frames and frames[0].startswith(("process ", "thread ")):
            frames = frames[1:]
        if not frames:
            empty += c
            continue
        if frames[-1].startswith(IDLE_LEAVES):
            idle += c
            continue
        n += c
        group = group_of_stack([_frame_path(f) for f in reversed(frames)])
        counts[group] += c
        leaves[(frames[-1].rsplit(":", 1)[0] + ")", group)] += c
    per = cpu_s / n if n else 0.0
    top = sorted(leaves.items(), key=lambda kv: -kv[1])[:12]
    return {
        "samples": n,
        "idle_samples_dropped": idle,
        "no_python_frame_samples": empty,
        "cpu_s_scaled_to": round(cpu_s, 3),
        "groups_s": {k: round(v * per, 3) for k, v in sorted(counts.items())},
        "top_functions": [[f, g, round(c * per, 3)] for (f, g), c in top],
    }


def cprofile_stats(stats: pstats.Stats) -> dict[str, Any]:
    """Seconds per group from cProfile: a function's self time goes to its own group when it
    is owned hydralab code, else up its callers (split by the calls' cumulative times) to the
    nearest owned hydralab function (at most 30 levels)."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[Any, dict[str, float]] = {}
    busy: set[Any] = set()

    def dist(func: Any, depth: int) -> dict[str, float]:
        if func in memo:
            return memo[func]
        if "importlib" in func[0]:
            return {IMPORT: 1.0}
        rel = hydralab_rel(func[0])
        g = owner(rel) if rel is not None else None
        if g is not None:
            return {g: 1.0}
        callers = table[func][4] if func in table else {}
        if not callers or depth > 30 or func in busy:
            own = "shared audio/protocol (no owner on the stack)" if rel else library(func[0])
            return {own: 1.0}
        busy.add(func)
        weights = {c: (v[3] or v[2] or 1e-9) for c, v in callers.items()}
        total = sum(weights.values())
        res: dict[str, float] = defaultdict(float)
        for c, w in weights.items():
            for k, f in dist(c, depth + 1).items():
                res[k] += f * w / total
        busy.discard(func)
        memo[func] = dict(res)
        return memo[func]

    out: dict[str, float] = defaultdict(float)
    total = 0.0
    loose: list[tuple[float, str]] = []
    for func, (_cc, _nc, tt, _ct, _callers) in table.items():
        if tt <= 0:
            continue
        total += tt
        d = dist(func, 0)
        for k, f in d.items():
            out[k] += tt * f
        share = sum(f for k, f in d.items() if k.startswith("unattributed"))
        if share > 0:
            loose.append((tt * share, f"{func[2]} ({func[0]}:{func[1]})"))
    loose.sort(reverse=True)
    return {
        "total_s": round(total, 3),
        "groups_s": {k: round(v, 3) for k, v in sorted(out.items())},
        "top_unattributed": [[name[-120:], round(s, 3)] for s, name in loose[:8]],
    }
