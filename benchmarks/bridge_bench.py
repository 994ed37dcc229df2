"""``make bench``: the performance of hydralab's bridge (issue 16), side by side in one run.

Run: ``.venv/bin/python benchmarks/bridge_bench.py [--quick] [--hydralab PATH] [--json PATH]
[--compare OTHER.json] [--bridge-procs 1,2] [--ns 1,8,32,64,128] [--items 1,2,4,5,6,7]``

Items (``benchmarks/README.md`` describes every column and target):

1. the audio path per 20 ms frame, stage by stage with hydralab's own functions, vs a per-chunk
   stateless ``soxr`` baseline and a bare JSON relay (:mod:`benchlib.micro`, in a subprocess);
2. CPU of the bridge process per conversation-second vs a bare websockets relay of the same
   frames, and 3. the latency each adds (caller frame → ``input_audio_buffer.append``; model
   delta → Twilio ``media``), stamped in the fake caller and model processes;
4. pacing of one long continuous response at the caller, and the bridge's event-loop lag;
5. N simultaneous conversations on K bridge processes: the largest N keeping p99 pacing
   ≤ 5 ms, CPU, RSS and loop lag;
6. ``import hydralab`` time and ``run_record`` → first frames;
7. one real offline call profiled: CPU split between TTS, STT, emulator, caller and bridge.

The process under test runs ``hydralab.serve.serve_bridge`` (items 2–5) from the checkout
``--hydralab`` names (default: this repository), first on its ``sys.path``; the fake caller
(:mod:`benchlib.fake_caller`) and the fake model (:mod:`benchlib.fake_model`) run in other
processes. All numbers go to ``--json`` (default ``benchmarks/results/bridge_bench.json``;
``--quick``: ``bridge_bench_quick.json``) with the measured tree's git commit; the Markdown
tables go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import report
from benchlib.attrib import pyspy_raw
from benchlib.load import LoadSpec, run_load
from benchlib.procs import REPO_ROOT, BenchEnv, child_env, git_commit, run_json

RESULTS = Path(__file__).resolve().parent / "results"
HEAVY = (
    "scipy",
    "matplotlib",
    "pandas",
    "librosa",
    "numpy",
    "websockets",
    "soxr",
    "httpx",
    "yaml",
    "pocketsphinx",
    "webrtcvad",
)

PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "micro_frames": 1000,
        "micro_repeats": 15,
        "lat_ns": [1, 8],
        "lat_window_s": 10.0,
        "lat_warmup_s": 2.0,
        "pacing_s": 180.0,
        "pacing_relay_s": 20.0,
        "sweep_ns": [1, 8, 32, 64, 128],
        "sweep_window_s": 8.0,
        "sweep_warmup_s": 3.0,
        "idle_s": 2.0,
        "import_runs": 7,
        "profile_max_s": 0.0,
    },
    "quick": {
        "micro_frames": 300,
        "micro_repeats": 7,
        "lat_ns": [4],
        "lat_window_s": 5.0,
        "lat_warmup_s": 1.5,
        "pacing_s": 30.0,
        "pacing_relay_s": 6.0,
        "sweep_ns": [1, 8, 32],
        "sweep_window_s": 4.0,
        "sweep_warmup_s": 1.5,
        "idle_s": 1.0,
        "import_runs": 3,
        "profile_max_s": 12.0,
    },
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def gen_procs_for(n: int, setting: int) -> int:
    return setting if setting > 0 else (1 if n <= 32 else 2)


# ---------------------------------------------------------------------- items
def item1(env: BenchEnv, plan: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return run_json(
        "benchlib.micro",
        [
            *("--frames", str(plan["micro_frames"])),
            *("--repeats", str(plan["micro_repeats"])),
            *("--delta-ms", str(args.delta_ms)),
        ],
        env=env,
        timeout_s=900,
    )


def _load(env: BenchEnv, spec: LoadSpec) -> dict[str, Any]:
    log(f"    {spec.label}: {spec.n} conversation(s), window {spec.window_s:g} s …")
    try:
        res = run_load(env, spec, log=log)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return {"label": spec.label, "spec": spec.__dict__, "error": f"{type(exc).__name__}: {exc}"}
    p, up = res["pacing_ms"], res["uplink_ms"]
    log(
        f"      CPU {res['bridge_cpu_frac']:.2f} cores, pacing p99 {report.fmt(p.get('p99'))} "
        f"ms, uplink p99 {report.fmt(up.get('p99'))} ms, "
        f"lag p99 {report.fmt(res['lag_ms'].get('p99'))} ms"
    )
    return res


def item23(env: BenchEnv, plan: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for n in plan["lat_ns"]:
        for kind in ("relay", "bridge"):
            spec = LoadSpec(
                kind=kind,
                n=n,
                window_s=plan["lat_window_s"],
                warmup_s=plan["lat_warmup_s"],
                on_ms=400,
                off_ms=300,
                lead_ms=0,
                delta_ms=args.delta_ms,
                idle_s=plan["idle_s"],
                gen_procs=gen_procs_for(n, args.gen_procs),
            )
            runs.append(_load(env, spec))
    return {"runs": runs}


def item4(env: BenchEnv, plan: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for kind, secs, lead in (
        ("bridge", plan["pacing_s"], 100),
        ("relay", plan["pacing_relay_s"], 0),
    ):
        spec = LoadSpec(
            kind=kind,
            n=1,
            window_s=secs,
            warmup_s=0.5,
            lead_ms=lead,
            delta_ms=args.delta_ms,
            idle_s=plan["idle_s"],
            continuous=True,
        )
        runs.append(_load(env, spec))
    return {"runs": runs}


def item5(env: BenchEnv, plan: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    ns = [int(x) for x in args.ns.split(",")] if args.ns else plan["sweep_ns"]
    for k in [int(x) for x in args.bridge_procs.split(",")]:
        for n in ns:
            spec = LoadSpec(
                kind="bridge",
                n=n,
                bridge_procs=k,
                window_s=plan["sweep_window_s"],
                warmup_s=plan["sweep_warmup_s"],
                on_ms=2000,
                off_ms=500,
                lead_ms=100,
                delta_ms=args.delta_ms,
                idle_s=plan["idle_s"],
                gen_procs=gen_procs_for(n, args.gen_procs),
                serve_workers=args.serve_workers,
            )
            runs.append(_load(env, spec))
    return {"runs": runs, "serve_workers": args.serve_workers}


_IMPORT_CODE = (
    "import time; t = time.perf_counter(); import hydralab; t = time.perf_counter() - t\n"
    "import json, sys; print(json.dumps({'s': t, 'file': hydralab.__file__, "
    "'mods': [m for m in %r if m in sys.modules]}))"
)


def item6(env: BenchEnv, plan: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    code = _IMPORT_CODE % (HEAVY,)
    times, walls, mods, where = [], [], [], ""
    for _ in range(plan["import_runs"]):
        t = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=env.work_dir,
            env=child_env(env.hydralab),
            timeout=120,
        )
        walls.append(time.perf_counter() - t)
        if r.returncode != 0:
            return {"import": {"error": r.stderr[-500:]}}
        d = json.loads(r.stdout.strip().splitlines()[-1])
        times.append(d["s"])
        mods, where = d["mods"], d["file"]
    out: dict[str, Any] = {
        "import": {
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
            "runs": [round(x, 3) for x in times],
            "interpreter_wall_median_s": round(statistics.median(walls), 3),
            "heavy_modules": mods,
            "file": where,
        }
    }
    try:
        out["first_frame"] = run_json("benchlib.startup", [], env=env, timeout_s=300)
    except Exception as exc:
        out["first_frame"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    return out


def _pyspy() -> str | None:
    cand = Path(sys.executable).parent / "py-spy"
    return str(cand) if cand.exists() else shutil.which("py-spy")


def item7(env: BenchEnv, plan: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    spy = _pyspy() if args.profiler in ("auto", "py-spy") else None
    if args.profiler == "py-spy" and spy is None:
        raise RuntimeError(
            "--profiler py-spy: py-spy is not installed (.venv/bin/pip install py-spy)"
        )
    base = ["--stt", args.stt, "--max-s", str(plan["profile_max_s"])]
    if spy is None:
        return run_json(
            "benchlib.profile_call", [*base, "--profiler", "cprofile"], env=env, timeout_s=900
        )
    raw = env.work_dir / "pyspy.txt"
    rate = 100
    prefix = [
        spy,
        "record",
        "--format",
        "raw",
        "--rate",
        str(rate),
        "--nonblocking",
        "-o",
        str(raw),
        "--",
    ]
    res = run_json(
        "benchlib.profile_call",
        [*base, "--profiler", "none"],
        env=env,
        timeout_s=900,
        prefix=prefix,
    )
    prof = pyspy_raw(raw.read_text(), float(res["cpu_s"]["process"]))
    busy = prof["samples"] + prof["idle_samples_dropped"] + prof["no_python_frame_samples"]
    prof["profiler"] = (
        f"py-spy, all threads: {busy / max(res['wall_s'], 1e-9):.0f} stack samples/s, "
        f"{rate}/s per thread asked; shares × the process's CPU"
    )
    res["profile"] = prof
    return res


ITEMS: dict[str, tuple[str, Callable[..., dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
    "1": ("audio path per frame", item1, report.item1),
    "2+3": (
        "CPU and added latency vs relay",
        item23,
        lambda r: report.item2(r) + "\n\n" + report.item3(r),
    ),
    "4": ("pacing of a long response", item4, report.item4),
    "5": ("concurrency", item5, report.item5),
    "6": ("start-up", item6, report.item6),
    "7": ("offline call profile", item7, report.item7),
}


def _selected(spec: str) -> list[str]:
    want = {x.strip() for x in spec.split(",") if x.strip()}
    if "2" in want or "3" in want:
        want |= {"2+3"}
    return [k for k in ITEMS if k in want or "all" in want]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="~2 minutes (shorter windows, N ≤ 32)")
    p.add_argument(
        "--hydralab", type=Path, default=REPO_ROOT, help="checkout to measure (default: this repo)"
    )
    p.add_argument("--json", type=Path, default=None, help="where the numbers go")
    p.add_argument("--compare", type=Path, default=None, help="a previous JSON to put side by side")
    p.add_argument("--items", default="all", help="comma-separated: 1,2,3,4,5,6,7 (default all)")
    p.add_argument("--bridge-procs", default="1,2", help="bridge processes K to measure in item 5")
    p.add_argument("--ns", default=None, help="conversation counts N for item 5 (default per mode)")
    p.add_argument(
        "--serve-workers",
        action="store_true",
        help="item 5: K = hydralab.serve.ServeWorkers workers sharing one port (trees that have "
        "it) instead of K separate bridge processes",
    )
    p.add_argument(
        "--gen-procs", type=int, default=0, help="caller processes (0: 1 up to N=32, else 2)"
    )
    p.add_argument("--delta-ms", type=int, default=40, help="audio per model delta")
    p.add_argument("--pacing-s", type=float, default=None, help="item 4's response length")
    p.add_argument("--profiler", choices=("auto", "py-spy", "cprofile"), default="auto")
    p.add_argument("--stt", choices=("local", "none"), default="local", help="item 7's STT")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, stamps)")
    args = p.parse_args()

    mode = "quick" if args.quick else "full"
    plan = dict(PLANS[mode])
    if args.pacing_s:
        plan["pacing_s"] = args.pacing_s
    hl = args.hydralab.resolve()
    if not (hl / "hydralab" / "__init__.py").exists():
        p.error(f"--hydralab {hl}: no hydralab/ package there")
    out_json = args.json or RESULTS / (
        "bridge_bench.json" if mode == "full" else "bridge_bench_quick.json"
    )
    work = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    env = BenchEnv(hl, work)
    results: dict[str, Any] = {
        "meta": {
            "mode": mode,
            "plan": plan,
            "argv": sys.argv[1:],
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "hydralab": git_commit(hl),
            "harness": git_commit(REPO_ROOT),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": list(os.getloadavg()),
            "json": str(out_json),
        },
        "items": {},
        "item_wall_s": {},
    }
    meta = results["meta"]
    log(
        f"bridge_bench ({mode}): measuring {hl} at {str(meta['hydralab']['commit'])[:10]}"
        + (" + uncommitted changes" if meta["hydralab"]["hydralab_dirty"] else "")
        + f"; work dir {work}"
    )
    t_all = time.perf_counter()
    tables = []
    try:
        for key in _selected(args.items):
            title, run, _ = ITEMS[key]
            log(f"[{key}] {title} …")
            t = time.perf_counter()
            try:
                results["items"][key] = run(env, plan, args)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                results["items"][key] = {"error": f"{type(exc).__name__}: {exc}"[:3000]}
            results["item_wall_s"][key] = round(time.perf_counter() - t, 1)
            log(f"[{key}] done in {results['item_wall_s'][key]:.0f} s")
            out_json.parent.mkdir(parents=True, exist_ok=True)
            out_json.write_text(json.dumps(results, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    meta["wall_s"] = round(time.perf_counter() - t_all, 1)
    meta["loadavg_end"] = list(os.getloadavg())
    for key, res in results["items"].items():
        render = ITEMS[key][2]
        if "error" in res and len(res) == 1:
            tables.append(f"### {key}. {ITEMS[key][0]}\n\nerror: {res['error'][:500]}")
        else:
            try:
                tables.append(render(res))
            except Exception as exc:
                tables.append(f"### {key}. {ITEMS[key][0]}\n\n(table failed: {exc!r})")
    head = (
        f"## bridge_bench ({mode}) — hydralab {str(meta['hydralab']['commit'])[:10]}"
        + (" + uncommitted changes" if meta["hydralab"]["hydralab_dirty"] else "")
        + f" at {hl}; {meta['cpus']} CPUs, load {meta['loadavg_start'][0]:.2f} → "
        f"{meta['loadavg_end'][0]:.2f}; {meta['wall_s']:.0f} s"
    )
    md = "\n\n".join([head, *tables])
    if args.compare:
        other = json.loads(args.compare.read_text())
        other.setdefault("meta", {})["json"] = str(args.compare)
        md += "\n\n" + report.compare(results, other)
    results["headline"] = report.headline(results)
    results["tables_md"] = md
    out_json.write_text(json.dumps(results, indent=1))
    print(md)
    log(f"numbers: {out_json}")
    failed = [k for k, r in results["items"].items() if "error" in r and len(r) == 1]
    if failed:
        log(f"items that failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
