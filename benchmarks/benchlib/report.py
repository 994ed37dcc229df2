"""Markdown tables of ``bridge_bench.py``'s results, and the flat headline metrics
(:func:`headline`) that ``--compare`` puts side by side."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PACING_P99_OK_MS = 5.0  # item 5: the largest N that keeps p99 pacing at or below this


def fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.{nd}f}"
    return str(v)


def table(headers: list[str], rows: Iterable[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(x) for x in r) + " |")
    return "\n".join(out)


def _g(d: dict[str, Any] | None, *keys: str) -> Any:
    cur: Any = d
    for k in keys:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(k)
    return cur


# ---------------------------------------------------------------------- item 1
UP_SUM = [
    "up.json_parse",
    "up.b64_decode",
    "up.ulaw_decode",
    "up.resample_16k",
    "up.resample_48k",
    "up.timeline",
    "up.append_encode",
    "up.frame_log",
]
DOWN_SUM = [
    "down.json_parse",
    "down.b64_decode",
    "down.resample_8k",
    "down.ulaw_encode",
    "down.twilio_json",
    "down.timeline",
    "down.frame_log",
]
SOXR_SWAP = {
    "up.resample_16k": "up.soxr_16k",
    "up.resample_48k": "up.soxr_48k",
    "down.resample_8k": "down.soxr_8k",
}


def stage_sums(stages: dict[str, Any]) -> dict[str, float | None]:
    def us(k: str) -> float | None:
        v = _g(stages, k, "us")
        return float(v) if v is not None else None

    def total(keys: list[str], soxr: bool) -> float | None:
        vals = [us(SOXR_SWAP[k] if soxr and k in SOXR_SWAP else k) for k in keys]
        return None if any(v is None for v in vals) else round(sum(vals), 3)  # type: ignore[arg-type]

    return {
        "up.sum": total(UP_SUM, False),
        "up.sum_soxr": total(UP_SUM, True),
        "down.sum": total(DOWN_SUM, False),
        "down.sum_soxr": total(DOWN_SUM, True),
    }


def item1(res: dict[str, Any]) -> str:
    st = res["stages"]
    sums = stage_sums(st)
    rows: list[list[Any]] = []

    def row(key: str, label: str) -> None:
        s = st.get(key, {})
        soxr = _g(st, SOXR_SWAP[key], "us") if key in SOXR_SWAP else None
        what = s.get("what", "")
        if s.get("error"):
            what += f" — n/a: {s['error'][:80]}"
        rows.append([label, s.get("us"), s.get("min_us"), soxr, what])

    for k, label in [
        ("up.json_parse", "up: Twilio JSON parse"),
        ("up.parse_twilio", "up: (parse_twilio: JSON + base64 + event)"),
        ("up.b64_decode", "up: base64 decode"),
        ("up.ulaw_decode", "up: μ-law → PCM"),
        ("up.resample_16k", "up: 8k → 16k resample"),
        ("up.resample_48k", "up: 8k → 48k (recording copy)"),
        ("up.timeline", "up: recording timeline write"),
        ("up.append_encode", "up: append JSON + base64 encode"),
        ("up.frame_log", "up: frame log → events.jsonl"),
    ]:
        row(k, label)
    rows.append(
        [
            "**up: sum of stages**",
            sums["up.sum"],
            None,
            sums["up.sum_soxr"],
            "rows above, parse_twilio not counted twice",
        ]
    )
    row("core.uplink", "**up: BridgeCore.caller_frame**")
    row("core.uplink_shell", "**up: core + append encode + log**")
    row("up.relay", "up: bare relay (parse + re-dump)")
    for k, label in [
        ("down.json_parse", "down: delta JSON parse"),
        ("down.parse_frame", "down: (parse_server_frame: JSON + event + elide)"),
        ("down.b64_decode", "down: base64 decode"),
        ("down.resample_8k", "down: 48k → 8k resample"),
        ("down.ulaw_encode", "down: μ-law encode"),
        ("down.twilio_json", "down: Twilio media JSON"),
        ("down.timeline", "down: recording timeline write"),
        ("down.frame_log", "down: frame log → events.jsonl"),
    ]:
        row(k, label)
    rows.append(
        [
            "**down: sum of stages**",
            sums["down.sum"],
            None,
            sums["down.sum_soxr"],
            "rows above, parse_server_frame not counted twice",
        ]
    )
    row("core.downlink", "**down: model_event + advance**")
    row("core.downlink_shell", "**down: parse + log + core**")
    row("down.relay", "down: bare relay (parse + re-dump)")
    head = (
        f"### 1. Audio path per 20 ms frame (µs; median and minimum of {res['repeats']} "
        f"repeats × {res['frames']} frames; deltas of {res['delta_ms']} ms counted per 20 ms)"
        "\n\nOn a shared machine the minimum is the steadier estimate of the cost itself; the "
        "median includes what the neighbours did.\n\n"
    )
    return head + table(
        ["stage", "hydralab µs", "min µs", "per-chunk soxr µs", "what is timed"], rows
    )


# ---------------------------------------------------------------------- items 2 and 3
def _runs(res: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in res.get("runs", []) if "error" not in r]


def _pair(res: dict[str, Any], n: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    b = next((r for r in _runs(res) if r["spec"]["kind"] == "bridge" and r["spec"]["n"] == n), None)
    r = next((r for r in _runs(res) if r["spec"]["kind"] == "relay" and r["spec"]["n"] == n), None)
    return b, r


def item2(res: dict[str, Any]) -> str:
    rows = []
    for n in sorted({r["spec"]["n"] for r in _runs(res)}):
        b, r = _pair(res, n)
        for run in (r, b):
            if run is None:
                continue
            ratio = None
            ratio_net = None
            if run is b and r is not None and r["cpu_ms_per_conv_s"]:
                ratio = run["cpu_ms_per_conv_s"] / r["cpu_ms_per_conv_s"]
                if r["cpu_ms_per_conv_s_net"] > 0:
                    ratio_net = run["cpu_ms_per_conv_s_net"] / r["cpu_ms_per_conv_s_net"]
            rows.append(
                [
                    run["spec"]["kind"],
                    n,
                    run["cpu_ms_per_conv_s"],
                    run["cpu_ms_per_conv_s_net"],
                    ratio,
                    ratio_net,
                    run["bridge_idle_cpu_frac"] * 100,
                    _g(run, "lag_ms", "p99"),
                ]
            )
    head = (
        "### 2. CPU of the process under test per conversation-second "
        "(target: bridge ≤ 2× relay)\n\n"
        "CPU ms per second of conversation (`/proc/<pid>/stat`, window after warm-up); *net* "
        "subtracts the process's idle CPU (its lag probe alone, measured before the calls).\n\n"
    )
    return head + table(
        [
            "target",
            "N",
            "CPU ms/conv-s",
            "net",
            "× relay",
            "× relay (net)",
            "idle CPU %",
            "loop lag p99 ms",
        ],
        rows,
    )


def item3(res: dict[str, Any]) -> str:
    rows = []
    for n in sorted({r["spec"]["n"] for r in _runs(res)}):
        b, r = _pair(res, n)
        for hop, key in [
            ("caller frame → append", "uplink_ms"),
            ("model delta → first media (per response)", "downlink_first_ms"),
            ("model delta → its first media (every delta)", "downlink_delta_ms"),
        ]:
            vals = []
            for run in (r, b):
                s = _g(run, key) or {}
                vals.append(s)
            add50 = add99 = None
            if vals[0].get("p50") is not None and vals[1].get("p50") is not None:
                add50 = vals[1]["p50"] - vals[0]["p50"]
                add99 = vals[1]["p99"] - vals[0]["p99"]
            rows.append(
                [
                    n,
                    hop,
                    vals[0].get("p50"),
                    vals[0].get("p99"),
                    vals[1].get("p50"),
                    vals[1].get("p99"),
                    vals[1].get("max"),
                    vals[1].get("n"),
                    add50,
                    add99,
                ]
            )
    checks = []
    for run in _runs(res):
        bad = {k: v for k, v in run["checks"].items() if v and k != "silence_fill_appends"}
        if bad:
            checks.append(f"{run['spec']['kind']} N={run['spec']['n']}: {bad}")
    head = (
        "### 3. Added latency (ms; target: bridge-added p99 ≤ 1 ms)\n\n"
        "Stamps on `time.monotonic_ns()` in the fake caller and the fake model (other "
        "processes); the same hops through the bare relay; *added* = bridge − relay "
        "(difference of the percentiles). Responses of 400 ms, 300 ms apart, no lead: the "
        "first delta of a response leaves the bridge as soon as it is processed (per "
        "response); later deltas may also wait for the pacer's 20 ms grid slot when the one "
        "before came late (every delta).\n\n"
    )
    tail = ("\n\nCount checks: " + "; ".join(checks)) if checks else ""
    return (
        head
        + table(
            [
                "N",
                "hop",
                "relay p50",
                "relay p99",
                "bridge p50",
                "bridge p99",
                "bridge max",
                "n",
                "added p50",
                "added p99",
            ],
            rows,
        )
        + tail
    )


# ---------------------------------------------------------------------- item 4
def item4(res: dict[str, Any]) -> str:
    rows = []
    for run in _runs(res):
        p = run["pacing_ms"]
        lag = run["lag_ms"]
        rows.append(
            [
                run["spec"]["kind"],
                p.get("duration_s"),
                p.get("n"),
                p.get("p50"),
                p.get("p99"),
                p.get("p99.9"),
                p.get("max"),
                p.get("offset_ms"),
                _g(p, "jitter", "p99"),
                _g(p, "jitter", "max"),
                p.get("drift_ms_per_min"),
                lag.get("p50"),
                lag.get("p99"),
                lag.get("max"),
                _g(run, "model_send_lateness_ms", "p99"),
                _g(run, "model_send_lateness_ms", "max"),
                max((x.get("max") or 0.0 for x in run.get("caller_lag_ms") or []), default=None),
            ]
        )
    for run in res.get("runs", []):
        if "error" in run:
            rows.append([run.get("label"), "error: " + run["error"][:100]] + [None] * 15)
    head = (
        "### 4. Pacing of one continuous response (targets: p99 ≤ 2 ms, max ≤ 10 ms, drift 0)\n\n"
        "Absolute deviation of the caller's frame arrivals from the ideal grid anchored at the "
        "first frame (bridge: 20 ms frames, the model sending a 100 ms lead then real time; relay: "
        "the model's own deltas, no lead); loop lag: the process under test's 5 ms probe; "
        "model late: how late the fake model sent its deltas (beyond the 100 ms lead, the "
        "bridge's queue runs dry and its pacer restarts the grid: a lasting offset). Anchored at "
        "the first frame, one early or late first frame shifts every deviation: *offset* is "
        "the median signed deviation (the first frame's own error, seen from the rest), "
        "*jitter* the deviation around it. *caller lag max*: the fake caller's own loop stall "
        "(its stamps are late by as much).\n\n"
    )
    notes = []
    for run in _runs(res):
        off = run.get("window_start_in_call_s") or 0.0
        spikes = [[t + off, ms] for t, ms in run.get("lag_spikes") or []]
        gcp = [[t + off, *rest] for t, *rest in (run.get("gc") or {}).get("long_pauses") or []]
        if spikes or gcp:
            notes.append(
                f"{run['spec']['kind']}: loop stalls over 10 ms at "
                + ", ".join(f"{t:.1f} s ({fmt(ms)} ms)" for t, ms in spikes[:8])
                + (
                    "; GC pauses over 5 ms: "
                    + ", ".join(f"gen {g} {fmt(ms)} ms at {t:.1f} s" for t, g, ms, _ in gcp[:5])
                    if gcp
                    else "; no GC pause over 5 ms"
                )
                + " (seconds into the call)"
            )
    head += "".join(f"{n}\n\n" for n in notes)
    return head + table(
        [
            "target",
            "s",
            "frames",
            "p50",
            "p99",
            "p99.9",
            "max",
            "offset",
            "jitter p99",
            "jitter max",
            "drift ms/min",
            "lag p50",
            "lag p99",
            "lag max",
            "model late p99",
            "model late max",
            "caller lag max",
        ],
        rows,
    )


# ---------------------------------------------------------------------- item 5
def capacity(res: dict[str, Any]) -> dict[str, int | None]:
    """Per K: the largest N whose p99 pacing (and every smaller N's) is ≤ 5 ms."""
    out: dict[str, int | None] = {}
    for k in sorted({r["spec"]["bridge_procs"] for r in res.get("runs", []) if "spec" in r}):
        best = None
        for run in sorted(
            (r for r in res["runs"] if "spec" in r and r["spec"]["bridge_procs"] == k),
            key=lambda r: r["spec"]["n"],
        ):
            p99 = _g(run, "pacing_ms", "p99")
            ok = "error" not in run and p99 is not None and p99 <= PACING_P99_OK_MS
            ok = ok and run.get("connected") == run["spec"]["n"]
            if not ok:
                break
            best = run["spec"]["n"]
        out[str(k)] = best
    return out


def marginal_rss(res: dict[str, Any], run: dict[str, Any]) -> float | None:
    """MB per extra conversation: (RSS at N − RSS at N=1) / (N − 1), same K."""
    s = run["spec"]
    if s["n"] <= 1:
        return None
    one = next(
        (
            r
            for r in _runs(res)
            if r["spec"]["n"] == 1 and r["spec"]["bridge_procs"] == s["bridge_procs"]
        ),
        None,
    )
    if one is None:
        return run["rss_mb_per_conv"]
    return round((run["bridge_rss_mb"] - one["bridge_rss_mb"]) / (s["n"] - 1), 2)


def item5(res: dict[str, Any]) -> str:
    rows = []
    for run in sorted(
        res.get("runs", []),
        key=lambda r: (r.get("spec", {}).get("bridge_procs", 0), r.get("spec", {}).get("n", 0)),
    ):
        if "error" in run:
            rows.append([run.get("label"), "error: " + run["error"][:80]] + [None] * 12)
            continue
        s = run["spec"]
        bad = {k: v for k, v in run["checks"].items() if v and k != "silence_fill_appends"}
        rows.append(
            [
                s["bridge_procs"],
                s["n"],
                _g(run, "pacing_ms", "p99"),
                _g(run, "pacing_ms", "max"),
                _g(run, "pacing_ms", "jitter", "p99"),
                _g(run, "downlink_first_ms", "p99"),
                _g(run, "uplink_ms", "p99"),
                run["bridge_cpu_frac"],
                run["cpu_ms_per_conv_s"] / 10,
                run["bridge_rss_mb"],
                marginal_rss(res, run),
                _g(run, "lag_ms", "p99"),
                sum(run["gen_cpu_frac"].values()),
                (f"{run['connected']}/{s['n']} " + (str(bad) if bad else "ok")),
            ]
        )
    cap = capacity(res)
    launcher = (
        "K = `hydralab.serve.ServeWorkers` workers on one port (SO_REUSEPORT); no loop-lag "
        "probe inside them"
        if res.get("serve_workers")
        else "K separate bridge processes, callers round-robin"
    )
    head = (
        "### 5. Concurrency (N conversations; callers and model in other processes; "
        f"{launcher})\n\n"
        "Pacing over responses of 2 s (100 ms lead) 0.5 s apart; CPU in cores (1.0 = one core) "
        "and % of a core per conversation; RSS of the bridge process(es) at the window's end; "
        "RSS/conv: per conversation beyond the first (N=1's RSS holds the first call's lazy "
        "imports; every call also keeps its whole recording in memory, ~0.22 MB per second); "
        "gen CPU: the fake callers and model together (they share the 2 cores).\n\n"
    )
    foot = "\n\nLargest N keeping p99 pacing ≤ 5 ms: " + ", ".join(
        f"K={k}: {fmt(v) if v is not None else 'none'}" for k, v in cap.items()
    )
    return (
        head
        + table(
            [
                "K",
                "N",
                "pacing p99",
                "pacing max",
                "jitter p99",
                "first-frame p99",
                "uplink p99",
                "bridge CPU",
                "% core/conv",
                "RSS MB",
                "RSS/conv MB",
                "lag p99",
                "gen CPU",
                "conversations, checks",
            ],
            rows,
        )
        + foot
    )


# ---------------------------------------------------------------------- items 6 and 7
def item6(res: dict[str, Any]) -> str:
    imp = res.get("import", {})
    call = res.get("first_frame", {})
    ms = call.get("ms_from_run_record", {})
    rows = [
        ["`import hydralab` (median of fresh interpreters)", imp.get("median_s"), "s", "≤ 0.3 s"],
        ["… min / max", f"{fmt(imp.get('min_s'))} / {fmt(imp.get('max_s'))}", "s", ""],
        ["… heavy modules loaded", ", ".join(imp.get("heavy_modules", [])) or "none", "", ""],
        ["run_record → caller's first frame (connected)", ms.get("caller_first_frame"), "ms", ""],
        ["run_record → caller's first media frame", ms.get("caller_first_media"), "ms", ""],
        ["run_record → bridge's session.configure", ms.get("bridge_session_configure"), "ms", ""],
        ["run_record → bridge's first append", ms.get("bridge_first_append"), "ms", ""],
        [
            "… first append's rel_ms in events.jsonl",
            call.get("events_first_append_rel_ms"),
            "ms",
            "",
        ],
    ]
    if call.get("error"):
        rows.append(["run_record", "error: " + call["error"][:120], "", ""])
    return "### 6. Start-up\n\n" + table(["measure", "value", "unit", "target"], rows)


def item7(res: dict[str, Any]) -> str:
    if res.get("error"):
        return "### 7. Offline call profile\n\nerror: " + res["error"][:300]
    prof = res.get("profile", {})
    groups = dict(prof.get("groups_s", {}))
    imp = groups.pop("import (module loading)", None)
    total = sum(groups.values()) or 1.0
    rows: list[list[Any]] = [
        [g, v, 100 * v / total] for g, v in sorted(groups.items(), key=lambda kv: -kv[1])
    ]
    cpu = res.get("cpu_s", {})
    rows += [
        ["**in-process total (import excluded)**", total, 100.0],
        ["import (module loading: `import hydralab…`, lazy imports)", imp, None],
        ["STT decoder process (RUSAGE_CHILDREN)", cpu.get("children"), None],
        [
            "process CPU: main thread / other threads (rusage)",
            f"{fmt(cpu.get('main_thread'))} / {fmt(cpu.get('other_threads'))}",
            None,
        ],
    ]
    lag = res.get("lag_conversation_ms") or {}
    lag_all = res.get("lag_ms") or {}
    head = (
        f"### 7. Offline call profile ({prof.get('profiler', '?')}; stt={res.get('stt')}; "
        f"wall {fmt(res.get('wall_s'))} s, conversation {fmt(res.get('conversation_s'))} s)\n\n"
        "CPU by owner: a sample (or a function's self time) goes to the nearest owning "
        "hydralab frame on its stack (shared audio/protocol code goes to its caller); % of the "
        "in-process total without module loading.\n\n"
    )
    foot = (
        f"\n\nEvent-loop lag (the bridge, caller and emulator share the loop): during the "
        f"conversation p50 {fmt(lag.get('p50'))} / p99 {fmt(lag.get('p99'))} / max "
        f"{fmt(lag.get('max'))} ms; over the whole run_record (set-up and output writing "
        f"included) p99 {fmt(lag_all.get('p99'))} / max {fmt(lag_all.get('max'))} ms."
    )
    top = [t for t in prof.get("top_functions") or [] if not str(t[1]).startswith("import")]
    if top:
        foot += "\n\nTop self time: " + "; ".join(f"{f} [{g}] {fmt(s)} s" for f, g, s in top[:8])
    loose = prof.get("top_unattributed") or []
    if loose:
        foot += "\n\nLargest unattributed: " + "; ".join(f"{n} {fmt(s)} s" for n, s in loose[:5])
    return head + table(["part", "CPU s", "%"], rows) + foot


# ---------------------------------------------------------------------- headline / compare
def headline(results: dict[str, Any]) -> dict[str, float]:
    """Flat ``name → number`` of the key measurements, for ``--compare``."""
    out: dict[str, float] = {}
    items = results.get("items", {})
    st = _g(items, "1", "stages") or {}
    for k in (
        "core.uplink",
        "core.uplink_shell",
        "core.downlink",
        "core.downlink_shell",
        "up.frame_log",
        "down.frame_log",
        "up.resample_16k",
        "down.resample_8k",
    ):
        v = _g(st, k, "us")
        if v is not None:
            out[f"1 {k} µs"] = v
    for k, v in stage_sums(st).items():
        if v is not None:
            out[f"1 {k} µs"] = v
    r23 = items.get("2+3", {})
    for n in sorted({r["spec"]["n"] for r in _runs(r23)}):
        b, r = _pair(r23, n)
        if b is not None:
            out[f"2 bridge CPU ms/conv-s N={n}"] = b["cpu_ms_per_conv_s"]
            for key in ("uplink_ms", "downlink_first_ms", "downlink_delta_ms"):
                for q in ("p50", "p99"):
                    v = _g(b, key, q)
                    if v is not None:
                        out[f"3 bridge {key[:-3]} {q} N={n} ms"] = v
        if b is not None and r is not None and r["cpu_ms_per_conv_s"]:
            out[f"2 bridge/relay CPU N={n}"] = round(
                b["cpu_ms_per_conv_s"] / r["cpu_ms_per_conv_s"], 3
            )
    for run in _runs(items.get("4", {})):
        kind = run["spec"]["kind"]
        for q in ("p99", "p99.9", "max", "drift_ms_per_min", "offset_ms"):
            v = _g(run, "pacing_ms", q)
            if v is not None:
                out[f"4 {kind} pacing {q}"] = v
        v = _g(run, "pacing_ms", "jitter", "p99")
        if v is not None:
            out[f"4 {kind} pacing jitter p99"] = v
        v = _g(run, "lag_ms", "p99")
        if v is not None:
            out[f"4 {kind} loop lag p99"] = v
    r5 = items.get("5", {})
    for k, v in capacity(r5).items() if r5 else []:
        out[f"5 capacity K={k}"] = float(v or 0)
    for run in _runs(r5):
        s = run["spec"]
        tag = f"K={s['bridge_procs']} N={s['n']}"
        for name, val in (
            ("pacing p99", _g(run, "pacing_ms", "p99")),
            ("CPU cores", run["bridge_cpu_frac"]),
            ("lag p99", _g(run, "lag_ms", "p99")),
            ("RSS/conv MB", marginal_rss(r5, run)),
        ):
            if val is not None:
                out[f"5 {tag} {name}"] = val
    r6 = items.get("6", {})
    if _g(r6, "import", "median_s") is not None:
        out["6 import hydralab s"] = r6["import"]["median_s"]
    for k, v in (_g(r6, "first_frame", "ms_from_run_record") or {}).items():
        out[f"6 run_record→{k} ms"] = v
    r7 = items.get("7", {})
    for g, v in (_g(r7, "profile", "groups_s") or {}).items():
        out[f"7 {g} CPU s"] = v
    if _g(r7, "cpu_s", "children") is not None:
        out["7 STT child CPU s"] = r7["cpu_s"]["children"]
    return out


def compare(this: dict[str, Any], other: dict[str, Any]) -> str:
    a, b = headline(this), headline(other)
    rows = []
    for k in sorted(set(a) | set(b), key=lambda s: (s.split()[0], s)):
        va, vb = a.get(k), b.get(k)
        ratio = va / vb if va is not None and vb not in (None, 0) else None
        rows.append([k, va, vb, ratio])
    name_a = _g(this, "meta", "hydralab", "commit") or "?"
    name_b = _g(other, "meta", "hydralab", "commit") or "?"
    dirty_a = " (+ uncommitted)" if _g(this, "meta", "hydralab", "hydralab_dirty") else ""
    dirty_b = " (+ uncommitted)" if _g(other, "meta", "hydralab", "hydralab_dirty") else ""
    head = (
        f"### Before / after: this run ({str(name_a)[:10]}{dirty_a}) vs "
        f"{_g(other, 'meta', 'json') or 'other'} ({str(name_b)[:10]}{dirty_b})\n\n"
        "Separate runs on a shared machine: compare ratios with care (item 1 and CPU are the "
        "steadiest; tails move with the machine's load).\n\n"
    )
    return head + table(["metric", "this", "other", "this / other"], rows)
