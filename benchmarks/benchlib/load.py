"""One load run: fake model + process(es) under test + fake callers, each in its own process.

Sequence (:func:`run_load`): start the fake model, the bridge (or relay) process(es) and the
caller process(es); measure the process under test idle (its lag probe only) for ``idle_s``;
connect every conversation and wait for its greeting; start the callers' media on a shared
grid and the model's responses; after ``warmup_s`` open the measurement window
(``/proc`` CPU of every process, the bridge's RSS, its lag probe reset), close it ``window_s``
later; stop the load, collect the stamps, end the bridge process(es) first (``os._exit``: no
per-call post-processing runs, and none could land inside the window), then the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import frames as fr
from benchlib.procs import BenchEnv, Child, child_env, launch_bridges
from benchlib.stats import match_latency, pooled_pacing, summary

NS = 1_000_000_000


@dataclass
class LoadSpec:
    kind: str  # "bridge" | "relay"
    n: int
    window_s: float
    warmup_s: float = 2.0
    bridge_procs: int = 1
    gen_procs: int = 1
    on_ms: int = 2000  # response length
    off_ms: int = 500  # silence between responses
    lead_ms: int = 0  # audio the model sends at once when a response starts
    delta_ms: int = 40
    idle_s: float = 1.0
    continuous: bool = False  # one response over the whole run (pacing)
    serve_workers: bool = False  # K = hydralab.serve.ServeWorkers workers on one port

    @property
    def label(self) -> str:
        k = f"w{self.bridge_procs}" if self.serve_workers else f"k{self.bridge_procs}"
        return f"{self.kind}-n{self.n}-{k}"


def _parallel(children: list[Child], cmd: str, timeout_s: float = 60.0, **kw: Any) -> list[Any]:
    with ThreadPoolExecutor(max(1, len(children))) as ex:
        return list(ex.map(lambda c: c.call(cmd, timeout_s=timeout_s, **kw), children))


def _sleep_until(t_ns: int) -> None:
    d = (t_ns - time.monotonic_ns()) / NS
    if d > 0:
        time.sleep(d)


def run_load(
    env: BenchEnv, spec: LoadSpec, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run ``spec`` and return its measurements (see :func:`analyse`)."""
    work = env.work_dir / spec.label
    work.mkdir(parents=True, exist_ok=True)
    sub = BenchEnv(env.hydralab, work)
    cenv = child_env(None)
    model = Child(
        "benchlib.fake_model",
        ["--n-total", str(spec.n), "--mode", spec.kind, "--delta-ms", str(spec.delta_ms)],
        name="model",
        env=cenv,
        cwd=work,
        log_dir=sub.log_dir,
    )
    bridges: list[Child] = []
    callers: list[Child] = []
    try:
        bridges = launch_bridges(
            sub,
            kind=spec.kind,
            model_url=model.info["url"],
            procs=spec.bridge_procs,
            serve_workers=spec.serve_workers,
        )
        urls = ",".join(b.info["url"] for b in bridges)
        g = max(1, min(spec.gen_procs, spec.n))
        bounds = [round(k * spec.n / g) for k in range(g + 1)]
        for k in range(g):
            callers.append(
                Child(
                    "benchlib.fake_caller",
                    [
                        *("--ids", f"{bounds[k]}:{bounds[k + 1]}"),
                        *("--n-total", str(spec.n)),
                        *("--urls", urls),
                    ],
                    name=f"caller-{k}",
                    env=cenv,
                    cwd=work,
                    log_dir=sub.log_dir,
                )
            )
        # the process under test, idle: its lag probe alone
        idle_rss = sum(b.rss_mb() for b in bridges)
        c0 = [b.cpu_s() for b in bridges]
        _parallel(bridges, "lag_reset")
        time.sleep(spec.idle_s)
        c1 = [b.cpu_s() for b in bridges]
        idle_lag = _parallel(bridges, "lag_report")
        idle_cpu_frac = sum(b - a for a, b in zip(c0, c1, strict=True)) / spec.idle_s
        # connect every conversation, wait for the greetings
        t = time.perf_counter()
        calls_start = time.monotonic_ns()
        conn = _parallel(callers, "connect", timeout_s=180.0)
        setup_s = time.perf_counter() - t
        connected = sum(int(r["connected"]) for r in conn)
        failed = [f for r in conn for f in r.get("failed", [])]
        if connected < spec.n:
            log(f"    {spec.label}: {spec.n - connected} conversations failed: {failed[:3]}")
        # the load
        total_s = spec.warmup_s + spec.window_s
        t0 = time.monotonic_ns() + 300_000_000
        _parallel(callers, "stream", t0_ns=t0)
        on = int(total_s * 1000) + 2000 if spec.continuous else spec.on_ms
        off = 0 if spec.continuous else spec.off_ms
        model.call(
            "respond",
            t0_ns=t0 + 100_000_000,
            on_ms=on,
            off_ms=off,
            until_ns=t0 + int((total_s + 3) * NS),
            lead_ms=spec.lead_ms,
        )
        _sleep_until(t0 + int(spec.warmup_s * NS))
        gens = [model, *callers]
        w0 = time.monotonic_ns()
        b0 = [b.cpu_s() for b in bridges]
        g0 = [c.cpu_s() for c in gens]
        _parallel(bridges, "lag_reset")
        _parallel(callers, "lag_reset")
        _sleep_until(w0 + int(spec.window_s * NS))
        w1 = time.monotonic_ns()
        b1 = [b.cpu_s() for b in bridges]
        g1 = [c.cpu_s() for c in gens]
        rss = sum(b.rss_mb() for b in bridges)
        lag = _parallel(bridges, "lag_report", raw=True)
        gen_lag = _parallel(callers, "lag_report")
        active = sum(int(r["active"]) for r in _parallel(bridges, "status"))
        _parallel(callers, "stop_stream")
        model.call("stop_responding")
        time.sleep(0.5)  # what is in flight arrives
        mpath = work / "model.json"
        model.call("report", path=str(mpath), timeout_s=120.0)
        cpaths = [work / f"caller-{k}.json" for k in range(len(callers))]
        with ThreadPoolExecutor(len(callers)) as ex:
            list(
                ex.map(
                    lambda kc: kc[1].call("report", path=str(cpaths[kc[0]]), timeout_s=120.0),
                    enumerate(callers),
                )
            )
    finally:
        for c in bridges:  # first: its calls must not see the others go away
            c.close()
        for c in [*callers, model]:
            c.close()
    window_s = (w1 - w0) / NS
    bridge_cpu = sum(b - a for a, b in zip(b0, b1, strict=True))
    measured: dict[str, Any] = {
        "spec": asdict(spec),
        "connected": connected,
        "failed": failed[:5],
        "active_at_window_end": active,
        "setup_s": round(setup_s, 3),
        "window_s": round(window_s, 3),
        "window_start_in_call_s": round((w0 - calls_start) / NS, 3),
        "bridge_cpu_s": round(bridge_cpu, 3),
        "bridge_cpu_frac": round(bridge_cpu / window_s, 4),
        "bridge_idle_cpu_frac": round(idle_cpu_frac, 4),
        "bridge_rss_mb": round(rss, 1),
        "bridge_idle_rss_mb": round(idle_rss, 1),
        "gen_cpu_frac": {
            c.name: round((b - a) / window_s, 4) for c, a, b in zip(gens, g0, g1, strict=True)
        },
        "idle_lag_ms": [r["lag_ms"] for r in idle_lag],
        "caller_lag_ms": [r["lag_ms"] for r in gen_lag],
        "lag_ms": summary([x for r in lag for x in r["samples"]], tail=True),  # none: workers
        # the largest stalls (> 10 ms), seconds from the window's start
        "lag_spikes": [[round(t - w0 / NS, 3), ms] for r in lag for t, ms in r.get("spikes", [])],
        # garbage-collector pauses over 5 ms: [s from the window's start, generation, ms, freed]
        "gc": {
            "collections": [sum(r["gc"]["collections"][g] for r in lag) for g in range(3)],
            "total_ms": round(sum(r["gc"]["total_ms"] for r in lag), 2),
            "long_pauses": [
                [round(p[0] - w0 / NS, 3), *p[1:]] for r in lag for p in r["gc"]["long_pauses"]
            ],
        },
    }
    n_conv = max(1, connected)
    measured["cpu_ms_per_conv_s"] = round(1000 * bridge_cpu / (n_conv * window_s), 3)
    net = bridge_cpu - idle_cpu_frac * window_s
    measured["cpu_ms_per_conv_s_net"] = round(1000 * net / (n_conv * window_s), 3)
    measured["rss_mb_per_conv"] = round((rss - idle_rss) / n_conv, 2)
    model_rep = json.loads(mpath.read_text())
    caller_rep = [json.loads(p.read_text()) for p in cpaths]
    measured.update(analyse(spec, model_rep, caller_rep, w0, w1))
    return measured


def analyse(
    spec: LoadSpec,
    model_rep: dict[str, Any],
    caller_reps: list[dict[str, Any]],
    w0: int,
    w1: int,
) -> dict[str, Any]:
    """Latency and pacing from the stamps.

    - ``uplink_ms``: the k-th caller ``media`` frame sent → the k-th caller-audio append (relay:
      media frame) the model received, for frames sent inside the window;
    - ``downlink_first_ms``: the first delta of a response sent → the first audio frame of that
      response at the caller (responses whose first delta was sent inside the window; a
      caller frame belongs to the last response whose first delta was sent before it arrived);
    - ``downlink_delta_ms`` (``lead_ms == 0`` only): every delta sent → the caller's first
      frame of its audio. The bridge's pacer keeps a 20 ms grid: a delta that arrives before
      its grid slot (the previous one came late) waits for the slot, so this includes the
      model's jitter as the pacer absorbs it;
    - ``pacing_ms``: |deviation| of the caller's frame arrivals from the ideal grid anchored
      at the first frame of each response (responses starting inside the window; when
      ``continuous``, the longest one from its first frame to the window's end), with
      ``drift_ms_per_min``.
    """
    by_conv: dict[int, dict[str, Any]] = {}
    dup = 0
    for c in model_rep["conns"]:
        if c["conv"] is None:
            continue
        if c["conv"] in by_conv:
            dup += 1
        by_conv[c["conv"]] = c
    period = fr.FRAME_MS if spec.kind == "bridge" else spec.delta_ms
    fpd = spec.delta_ms // period  # caller frames per model delta
    up: list[np.ndarray] = []
    first: list[float] = []
    per_delta: list[np.ndarray] = []
    pace_segs: list[np.ndarray] = []
    up_mismatch = resp_mismatch = delta_mismatch = 0
    missing = 0
    fills = 0
    for rep in caller_reps:
        for cv in rep["convs"]:
            mc = by_conv.get(cv["i"])
            if mc is None:
                missing += 1
                continue
            fills += int(mc["fills"])
            sent = np.asarray(cv["sent"], dtype=np.int64)
            lat, ok = match_latency(sent, mc["appends"])
            up_mismatch += not ok
            in_w = (sent[: lat.size] >= w0) & (sent[: lat.size] < w1)
            up.append(lat[in_w])
            rx = np.asarray(cv["rx"], dtype=np.int64)
            ds = np.asarray(mc["delta_sent"], dtype=np.int64)
            starts = [*mc["resp_start"], ds.size]
            segs = by_response(rx, ds, mc["resp_start"])
            resp_mismatch += sum(seg.size == 0 for seg in segs)
            for r, seg in enumerate(segs):
                d = ds[starts[r] : starts[r + 1]]
                if d.size == 0 or seg.size == 0 or not (w0 <= d[0] < w1):
                    continue
                first.append((seg[0] - d[0]) / 1e6)
                if spec.lead_ms == 0 and fpd >= 1:
                    m = min(d.size, seg.size // fpd)
                    delta_mismatch += seg.size != d.size * fpd
                    per_delta.append((seg[: m * fpd : fpd] - d[:m]) / 1e6)
            resp = [seg for seg in segs[1:] if seg.size]  # the greeting is not paced load
            if spec.continuous:
                if resp:
                    pace_segs.append(max(resp, key=lambda s: s.size))
            else:
                pace_segs.extend(s for s in resp if w0 <= s[0] < w1)
    cat = np.concatenate
    pacing = pooled_pacing(pace_segs, period, gap_ms=None)
    if spec.continuous and pace_segs:
        from benchlib.stats import pacing_stats

        longest = max(pace_segs, key=lambda s: s.size)
        longest = longest[longest < w1]  # from its first frame to the window's end
        pacing = pacing_stats(longest, period, min_drift_s=1.0)
        pacing["duration_s"] = round((longest[-1] - longest[0]) / NS, 2)
    out: dict[str, Any] = {
        "uplink_ms": summary(cat(up) if up else [], tail=True),
        "downlink_first_ms": summary(first, tail=True),
        "pacing_ms": pacing,
        "model_send_lateness_ms": model_rep.get("send_lateness_ms"),
        "checks": {
            "convs_unmatched": missing,
            "duplicate_conv_ids": dup,
            "uplink_count_mismatch": up_mismatch,
            "response_count_mismatch": resp_mismatch,
            "delta_frame_mismatch": delta_mismatch,
            "silence_fill_appends": fills,
        },
    }
    if spec.lead_ms == 0:
        out["downlink_delta_ms"] = summary(cat(per_delta) if per_delta else [], tail=True)
    return out


def by_response(rx: np.ndarray, delta_sent: np.ndarray, resp_start: list[int]) -> list[np.ndarray]:
    """The caller's frame arrivals split by response: a frame belongs to the last response whose
    first delta the model had sent before it arrived (responses never overlap at the caller:
    the gap between them is longer than the model's lead)."""
    if not resp_start:
        return []
    bounds = delta_sent[np.asarray(resp_start, dtype=np.int64)]
    idx = np.searchsorted(bounds, rx, side="right") - 1
    return [rx[idx == r] for r in range(len(resp_start))]


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
