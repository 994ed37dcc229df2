"""``hydralab`` command line: ``run`` one record, ``batch`` records x trials, ``serve`` the bridge
to outside callers (EVA's simulators), serve the ``emulator`` or ``replay`` a recorded Hydra
session, list ``records``, ``score`` run directories again, ``probe`` the real Hydra (key
holders) to record fixtures.

Every subcommand's --help shows its options' defaults."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydralab import __version__
from hydralab.secrets import redact

__all__ = ["main"]

STT_CHOICES = ("local", "smallest", "openai", "deepgram", "none")
SUMMARY_FILE = "summary.json"
# score --csv / --json: the tables of hydralab.analysis.load_batch, by file name
EXPORT_TABLES = (("turns", "turns"), ("tool_calls", "tool_calls"), ("conversations", "sessions"))

SCORE_EPILOG = f"""\
PATH may be a record's directory, a run's (records/<id>/ inside), a batch's or any folder of
runs. One line per record directory is printed (and its scores.json written, unless
--no-write); for a batch or a folder of runs, also one summary row: conversations, completed
(result.json), task_completion mean, authentication_success rate (over the records with an auth
step), tool_call_validity mean, and model_response p50 / p90 over all turns of all its records
(n = the number of turns measured).

--csv DIR / --json DIR (need pandas: pip install 'hydralab[notebooks]') write the tables of
hydralab.analysis.load_batch(PATH), after scoring, with a first column `batch` (PATH's name):
  turns.csv|json          one row per turn of either speaker (latencies and their anchors)
  tool_calls.csv|json     one row per function call (tool, args, status, timings)
  conversations.csv|json  one row per conversation (outcome, scores, conditions, ...)
  {SUMMARY_FILE}            {{"hydralab_version", "created_at", "paths", "files": {{name: rows}},
                          "batches": [one per PATH: "batch", "path", "label", "conversations",
                          "completed", "task_completion_mean", "authentication_success_rate",
                          "authentication_n", "tool_call_validity_mean", "model_response":
                          {{"n", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms"}}],
                          "records": [one per record directory: "batch", "record_id",
                          "directory", "completed", "task_completion",
                          "authentication_success", "tool_call_validity", "model_response"]}}
CSV cells holding lists or objects are JSON text; JSON files are lists of row objects."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, unless the help already says what the default is,
    or there is none to show (``None``: the help says what happens; a flag's ``False``)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or "default:" in text:
            return text
        if action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


class _RawEpilogFormatter(_HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """As :class:`_HelpFormatter`, the description and epilog laid out as written."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hydralab", description=__doc__, formatter_class=_HelpFormatter
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("description", kwargs.get("help"))
        kwargs.setdefault("formatter_class", _HelpFormatter)
        parser: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
        return parser

    run = add_parser("run", help="run one record's conversation and write its run directory")
    run.add_argument(
        "record_pos", nargs="?", metavar="RECORD", help="record id (default: as --record)"
    )
    run.add_argument("--record", help="record id (default: hydralab's default record)")
    run.add_argument("--out", default="runs", help="parent folder of run directories")
    run.add_argument(
        "--model",
        choices=("emulator", "hydra"),
        default="emulator",
        help="emulator = offline local Hydra emulator; hydra = the real endpoint "
        "(needs SMALLEST_API_KEY)",
    )
    run.add_argument("--hydra-model", default="hydra-v1.1", help="Hydra ?model= tag")
    run.add_argument(
        "--hydra-url",
        default=None,
        help="Hydra endpoint for --model hydra (ws:// or wss://, no query; default: $HYDRA_URL, "
        "else the public endpoint): on-prem, staging or a local `hydralab replay`",
    )
    run.add_argument(
        "--voice",
        default=None,
        help="Hydra voice from the tag's roster (default: hydralab's per-tag voice, zoe on "
        "hydra-v1.1; 'server' = send none, the server then picks sterling)",
    )
    run.add_argument("--port", type=int, default=0, help="bridge port on 127.0.0.1 (0 = any)")
    run.add_argument(
        "--simulate",
        action="store_true",
        help="run the call in virtual time (emulator, bridge and caller cores, no sockets; "
        "about a second per minute of call); user turns are transcribed by the oracle "
        "(the caller's intended lines) unless --stt none",
    )
    _add_data_options(run)
    _add_caller_options(run)
    talk = run.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="no line per turn while the call runs")
    talk.add_argument(
        "--verbose", action="store_true", help="each turn's line also shows its words"
    )
    run.add_argument(
        "--run-id",
        default=None,
        help="run directory name (default: a new timestamped id); one that already holds this "
        "record's run is refused",
    )
    run.add_argument(
        "--seed", type=int, default=0, help="emulator latency seed (also the line's and drift's)"
    )
    _add_profile(run)
    _add_stt(run)

    bat = add_parser(
        "batch",
        help="run records x trials (concurrently, resumable) into one batch directory",
        description="run records x trials (concurrently, resumable) into one batch directory; "
        "rerun with the same --batch-id to resume it (finished conversations are skipped). A "
        "resume must keep the settings that define the experiment (--model, --hydra-model, "
        "--hydra-url, --voice, --stt, --seed, --profile, --drift, the caller options, --label, "
        "the data and tool options): other settings are refused, naming the one that differs. "
        "--trials, more records, --concurrency may change. With --config SWEEP.yaml the sweep "
        "file defines the experiment (records, trials, models x callers as variants "
        "<model>+<caller>); only --out, --batch-id, --concurrency, --retry-failed, "
        "--no-progress, --one-process and the Ray options may be given with it. --ray runs "
        "each conversation as a Ray task (pip install 'hydralab[ray]'), on a local Ray or an "
        "existing cluster.",
    )
    bat.add_argument(
        "records", nargs="*", metavar="RECORD", help="record ids (default: all of --data-dir's)"
    )
    bat.add_argument(
        "--config",
        default=None,
        metavar="SWEEP.yaml",
        help="a sweep file: records, trials, shared settings, models x callers "
        "(see hydralab.batch.load_sweep) (default: none, the options below)",
    )
    bat.add_argument("--trials", type=int, default=1, help="conversations per record")
    bat.add_argument("--concurrency", type=int, default=3, help="conversations at once")
    bat.add_argument("--out", default="runs", help="parent folder of the batch directory")
    bat.add_argument(
        "--batch-id",
        default=None,
        help="batch directory name; reuse to resume (default: a new batch-<timestamp>-<hex>)",
    )
    bat.add_argument(
        "--label",
        default=None,
        metavar="TEXT",
        help="free text describing the batch, kept in batch.json (its config and every "
        "conversation's entry) (default: none)",
    )
    bat.add_argument(
        "--model",
        choices=("emulator", "hydra"),
        default="emulator",
        help="emulator = offline local Hydra emulator; hydra = the real endpoint "
        "(needs SMALLEST_API_KEY)",
    )
    bat.add_argument("--hydra-model", default="hydra-v1.1", help="Hydra ?model= tag")
    bat.add_argument(
        "--hydra-url",
        default=None,
        help="Hydra endpoint for --model hydra (ws:// or wss://, no query; default: $HYDRA_URL, "
        "else the public endpoint): on-prem, staging or a local `hydralab replay`",
    )
    bat.add_argument(
        "--voice",
        default=None,
        help="Hydra voice from the tag's roster (default: hydralab's per-tag voice, zoe on "
        "hydra-v1.1; 'server' = send none, the server then picks sterling)",
    )
    _add_stt(bat)
    _add_data_options(bat)
    _add_caller_options(bat)
    bat.add_argument("--seed", type=int, default=0, help="seed of trial 1 (trial k: seed+k-1)")
    _add_profile(bat)
    bat.add_argument("--retry-failed", action="store_true", help="re-run failed conversations")
    bat.add_argument("--no-progress", action="store_true", help="no progress bar")
    bat.add_argument(
        "--one-process", action="store_true", help="all conversations in one event loop"
    )
    bat.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run each conversation as a Ray task (needs pip install 'hydralab[ray]'): on a "
        "local Ray that hydralab starts, or on the cluster at ADDRESS ('auto', "
        "'ray://head:10001') (default: the local executor, one child process each)",
    )
    bat.add_argument(
        "--calls-per-node",
        type=int,
        default=None,
        metavar="N",
        help="--ray without ADDRESS: calls at once per node (the local Ray's hydralab_call "
        "resource; a cluster's nodes declare it: ray start --resources "
        "'{\"hydralab_call\": N}') (default: 2 per CPU core)",
    )
    bat.add_argument(
        "--max-model-sessions",
        type=int,
        default=None,
        metavar="N",
        help="--ray: live model sessions across the cluster at once (Hydra's per-organisation "
        "cap) (default: no limit)",
    )
    bat.add_argument(
        "--max-calls-per-minute",
        type=float,
        default=None,
        metavar="N",
        help="--ray: call starts per minute across the cluster (default: no limit)",
    )
    bat.add_argument(
        "--ship-results",
        action="store_true",
        help="--ray: send every run directory back to this machine (default: only when a "
        "worker cannot see the batch directory)",
    )

    srv = add_parser(
        "serve",
        help="wait for Twilio Media Streams callers (EVA's simulators included) on 127.0.0.1; "
        "each call gets its own run directory",
    )
    srv.add_argument("--port", type=int, default=10000, help="port on 127.0.0.1 (EVA: 10000)")
    srv.add_argument("--record", default=None, help="record id (default: hydralab's default)")
    _add_data_options(srv)
    srv.add_argument("--out", default="runs", help="parent folder of the run directories")
    srv.add_argument(
        "--run-id",
        default=None,
        help="prefix of the run ids (RUN_ID-NNN) (default: a new timestamped id)",
    )
    srv.add_argument(
        "--model",
        choices=("emulator", "hydra"),
        default="emulator",
        help="what answers the callers: the offline emulator or the real Hydra",
    )
    srv.add_argument("--hydra-model", default="hydra-v1.1", help="Hydra ?model= tag")
    srv.add_argument(
        "--hydra-url",
        default=None,
        help="Hydra endpoint for --model hydra (default: $HYDRA_URL, else the public endpoint)",
    )
    srv.add_argument(
        "--voice", default=None, help="Hydra voice (as for run) (default: the per-tag voice)"
    )
    srv.add_argument("--seed", type=int, default=0, help="emulator latency seed")
    _add_profile(srv)
    _add_stt(srv)
    srv.add_argument(
        "--max-calls",
        type=int,
        default=4,
        help="calls at once; a caller over it is refused with close 1013 busy (default: 4)",
    )
    srv.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="bridge processes sharing the port (SO_REUSEPORT), so the calls use every core; "
        "worker K names its runs RUN_ID-wK-NNN and takes ceil(max-calls / N) calls at once "
        "(default: 1, one process)",
    )

    rep = add_parser(
        "replay", help="serve a recorded Hydra session (a frames fixture) on 127.0.0.1"
    )
    rep.add_argument("fixture", metavar="FIXTURE", help="hydralab.frames JSONL file")
    rep.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any)")
    rep.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="factor on the recorded gaps between server frames (0 = none)",
    )

    emu = add_parser("emulator", help="serve the offline Hydra emulator on 127.0.0.1")
    emu.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any)")
    emu.add_argument(
        "--record",
        default=None,
        help="record whose script it plays (default: hydralab's default record)",
    )
    emu.add_argument(
        "--data-dir",
        "--eva-dir",
        dest="data_dir",
        default=None,
        help="records folder or EVA checkout (default: hydralab's own records)",
    )
    emu.add_argument(
        "--output-rate",
        type=int,
        default=48000,
        help="output rate (classic: every tag; live: tags without a known rate)",
    )
    emu.add_argument("--seed", type=int, default=0, help="latency seed")
    _add_profile(emu)

    rec = add_parser("records", help="list the available record ids")
    rec.add_argument(
        "--data-dir",
        "--eva-dir",
        dest="data_dir",
        default=None,
        help="records folder or EVA checkout (default: hydralab's own records)",
    )

    score = add_parser(
        "score",
        help="re-score run directories from their files (writes scores.json); summarise a batch; "
        "export its tables (--csv / --json)",
        description="re-score run directories from their files (writes scores.json), "
        "summarise batches\nand export their tables (--csv / --json)",
        epilog=SCORE_EPILOG,
        formatter_class=_RawEpilogFormatter,
    )
    score.add_argument(
        "run_dirs",
        nargs="+",
        metavar="PATH",
        help="a record's directory, a run's, a batch's or any folder of runs",
    )
    score.add_argument("--no-write", action="store_true", help="print only; keep scores.json")
    score.add_argument(
        "--csv",
        default=None,
        metavar="DIR",
        help="write turns.csv, tool_calls.csv, conversations.csv and summary.json to DIR",
    )
    score.add_argument(
        "--json",
        default=None,
        metavar="DIR",
        help="write turns.json, tool_calls.json, conversations.json and summary.json to DIR",
    )

    rep_ = add_parser(
        "report",
        help="write one self-contained HTML page for a run or a batch (plots, tables, players, "
        "transcript, tool trace, DB diff)",
    )
    rep_.add_argument("path", metavar="RUN_OR_BATCH_DIR")
    rep_.add_argument("--out", default=None, help="the HTML file (default: PATH/report.html)")

    probe = add_parser(
        "probe",
        help="record raw frames of real Hydra sessions as replay fixtures (needs SMALLEST_API_KEY)",
    )
    probe.add_argument(
        "--hydra-url",
        default=None,
        help="Hydra endpoint (default: $HYDRA_URL or wss://api.smallest.ai/waves/v1/s2s)",
    )
    probe.add_argument("--out", default="probe", help="folder for the fixtures and the summary")
    probe.add_argument(
        "--models", default="hydra-v1.1,hydra-v1.0,hydra", help="comma-separated ?model= tags"
    )
    probe.add_argument(
        "--only",
        default=None,
        metavar="SCENARIO,...",
        help="scenarios by name or number: 1=handshake 2=utterance 3=tool_call 4=barge_in "
        "5=configure_size 6=stt (default: all)",
    )
    return p


def _add_stt(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stt",
        choices=STT_CHOICES,
        default="local",
        help="user-turn transcription: local = offline pocketsphinx; smallest/openai/deepgram "
        "read SMALLEST_API_KEY / OPENAI_API_KEY / DEEPGRAM_API_KEY; none = no STT",
    )


def _add_data_options(p: argparse.ArgumentParser) -> None:
    """Where records and tool code come from, and how the configure is fitted."""
    p.add_argument(
        "--data-dir",
        default=None,
        help="records folder: hydralab's layout or an EVA checkout (its root or data/); "
        "default: --eva-dir when given, else hydralab's own records",
    )
    p.add_argument(
        "--eva-dir",
        default=None,
        help="an EVA repository root: its records (unless --data-dir) and its own tool code "
        "(src/eva/assistant/tools/<domain>_tools.py, loaded at run time; needs pydantic, "
        "the 'eva' extra)",
    )
    p.add_argument(
        "--tools",
        choices=("auto", "eva", "hydralab"),
        default="auto",
        help="which tool code executes the calls: auto = EVA's when the EVA checkout has it, "
        "else hydralab's (airline only); eva / hydralab force one (default: auto)",
    )
    p.add_argument(
        "--configure-mode",
        choices=("standard", "compacted", "update"),
        default="standard",
        help="a session.configure over Hydra's ~32 KB ceiling: standard = refuse it before "
        "connecting; compacted = shorten tool descriptions / cut instructions (labelled "
        "non-standard); update = configure with the tools that fit, then send all tools with "
        "session.update (experimental; labelled) (default: standard)",
    )


def _llm_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``caller=`` an :class:`~hydralab.callers.LlmCaller` for ``--caller llm``."""
    if args.caller != "llm":
        return {}
    from hydralab.records import load_record

    data_dir = _data_dir(args)
    rec = load_record(args.record or args.record_pos, data_dir=Path(data_dir) if data_dir else None)
    return {"caller": _llm_caller(args, rec)}


def _progress_printer() -> Callable[[str], None]:
    """Progress lines on stderr as they come (stdout keeps the summary)."""

    def show(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return show


def _data_dir(args: argparse.Namespace) -> str | None:
    """``--data-dir``, else ``--eva-dir`` (an EVA root holds the records too)."""
    value = args.data_dir or args.eva_dir
    return str(value) if value else None


def _tool_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The tool-code and configure options shared by run, batch and serve."""
    return {
        "data_dir": _data_dir(args),
        "eva_dir": args.eva_dir,
        "tools": args.tools,
        "configure_mode": args.configure_mode,
    }


def _add_caller_options(p: argparse.ArgumentParser) -> None:
    """Who the caller is: its policy, persona, how it hears, its line; the emulator's drift."""
    g = p.add_argument_group("caller")
    g.add_argument(
        "--caller",
        choices=("scripted", "rules", "llm"),
        default="scripted",
        help="scripted = the record's user lines in order (default); rules = offline, answers "
        "what it is asked from the record's information_required; llm = an OpenAI-compatible "
        "chat-completions model prompted like EVA's user simulator (--llm-*)",
    )
    g.add_argument(
        "--persona",
        default=None,
        help="EVA's persona: default, elderly_slow, aggressive_impatient, forgetful_disorganized "
        "(its timing applies to every caller; its text, from the EVA checkout, to llm)",
    )
    g.add_argument(
        "--hearing",
        choices=("stt", "native"),
        default=None,
        help="what a rules/llm caller hears: stt = the assistant's audio through --stt "
        "(default on sockets), native = the bridge's transcript (default with --simulate)",
    )
    g.add_argument("--llm-base-url", default="https://api.openai.com/v1", help="llm endpoint")
    g.add_argument("--llm-model", default="gpt-4o-mini", help="llm model name")
    g.add_argument(
        "--llm-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the llm key ('' = none, e.g. a local server)",
    )
    g.add_argument(
        "--noise",
        choices=("none", "white", "pink", "babble"),
        default="none",
        help="background noise on the caller's line (babble needs the speech extra)",
    )
    g.add_argument("--snr", type=float, default=20.0, help="speech-to-noise ratio, dB")
    g.add_argument(
        "--packet-loss", type=float, default=0.0, help="chance a 20 ms frame is lost (0..1)"
    )
    g.add_argument("--codec-bits", type=int, default=None, help="requantise the line to N bits")
    g.add_argument("--volume-fluctuation", type=float, default=0.0, help="slow gain swings of ± dB")
    g.add_argument(
        "--drift",
        type=float,
        default=0.0,
        metavar="P",
        help="emulator: chance per turn that it asks something the script does not (again, "
        "out of order, to confirm), at most 3 per call (0 = off)",
    )


def _caller_kwargs(args: argparse.Namespace, *, simulate: bool) -> dict[str, Any]:
    """``run_record`` / ``simulate_record`` caller settings from the options."""
    from hydralab.audio.perturb import LinePerturbation

    kwargs: dict[str, Any] = {"persona": args.persona}
    if args.caller != "scripted":
        kwargs["hearing"] = args.hearing or ("native" if simulate else "stt")
    if args.caller == "rules":
        kwargs["caller"] = "rules"
    line = LinePerturbation(
        noise=args.noise,
        snr_db=args.snr,
        packet_loss=args.packet_loss,
        codec_bits=args.codec_bits,
        volume_fluctuation_db=args.volume_fluctuation,
        seed=args.seed,
    )
    if line.active:
        kwargs["line"] = line
    return kwargs


def _llm_caller(args: argparse.Namespace, rec: Any) -> Any:
    """The ``llm`` caller for ``rec`` from the ``--llm-*`` options (its key from the env)."""
    from hydralab.callers import LlmCaller, LlmCallerConfig

    config = LlmCallerConfig(
        base_url=args.llm_base_url, model=args.llm_model, api_key_env=args.llm_key_env or None
    )
    return LlmCaller(rec, config=config, persona=args.persona or "default", eva_dir=args.eva_dir)


def _emulator_config(args: argparse.Namespace, **overrides: Any) -> Any:
    """The emulator's settings: the profile, the seed and the drift options."""
    from hydralab.emulator import EmulatorConfig, EmulatorDrift

    if args.drift > 0:
        third = min(args.drift, 1.0) / 3.0
        overrides["drift"] = EmulatorDrift(
            repeat_prob=third, reorder_prob=third, clarify_prob=third, seed=args.seed,
            max_per_call=3,
        )  # fmt: skip
    return EmulatorConfig.for_profile(args.profile, **overrides)


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        choices=("live", "classic"),
        default="live",
        help="emulator behaviour: live = as the live Hydra service (rate and voices per ?model=, "
        "unspaced transcripts, late tool response.done, barge-in tail, 1-2 s handshake, resume "
        "only with reconnect context, path /waves/v1/s2s only); classic = the older, lenient "
        "emulator (default: live)",
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "score":
            return _score(args)
        if args.command == "batch":
            return _batch(args)
        if args.command == "emulator":
            return _emulator(args)
        if args.command == "serve":
            if args.workers > 1:
                return asyncio.run(_serve_workers(args))
            return asyncio.run(_serve(args))
        if args.command == "replay":
            from hydralab.replay import serve_fixture

            asyncio.run(serve_fixture(args.fixture, port=args.port, time_scale=args.time_scale))
            return 0
        if args.command == "probe":
            return _probe(args)
        if args.command == "report":
            from hydralab.report import write_report

            print(write_report(args.path, out=args.out))
            return 0
        if args.command == "records":
            from hydralab.records import list_records

            for rid in list_records(Path(args.data_dir) if args.data_dir else None):
                print(rid)
            return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error, never a key
        print(f"hydralab: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    return 2


def _run(args: argparse.Namespace) -> int:

    if args.simulate:
        from hydralab.sim import simulate_record

        if args.model != "emulator" or args.hydra_url:
            raise ValueError("--simulate runs against the emulator only")
        result = simulate_record(
            args.record or args.record_pos,
            out_dir=args.out,
            run_id=args.run_id,
            hydra_model=args.hydra_model,
            voice=args.voice,
            emulator_config=_emulator_config(args, seed=args.seed),
            transcriber=None if args.stt == "none" else "oracle",
            **_tool_kwargs(args),
            **_caller_kwargs(args, simulate=True),
            **_llm_kwargs(args),
        )
        print(result.summary())
        print("(simulated in virtual time)")
        return 0 if result.completed else 1
    from hydralab.aio import run_sync

    return run_sync(_run_call(args))


@contextlib.contextmanager
def _stop_signals(on_signal: Callable[[signal.Signals], None]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call ``on_signal`` on the running loop (only the main
    thread's loop can take them: elsewhere, e.g. main() inside a running loop, none is set)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (ValueError, RuntimeError, NotImplementedError):
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _run_call(args: argparse.Namespace) -> int:
    """One call over real sockets. SIGINT / SIGTERM end it (``interrupted``, never completed)
    with every output written and every child process stopped; the exit code is then 130 /
    143, else 0 when the call completed and 1 when it did not."""
    from hydralab.runner import CallInterrupted, run_record

    interrupt = asyncio.Event()
    received: list[int] = []

    def on_signal(sig: signal.Signals) -> None:
        if not received:
            print(
                f"hydralab: {sig.name}: ending the call and writing its outputs",
                file=sys.stderr,
                flush=True,
            )
        received.append(int(sig))
        interrupt.set()

    try:
        with _stop_signals(on_signal):
            result = await run_record(
                args.record or args.record_pos,
                out_dir=args.out,
                run_id=args.run_id,
                model=args.model,
                hydra_model=args.hydra_model,
                hydra_url=args.hydra_url,
                voice=args.voice,
                port=args.port,
                emulator_config=_emulator_config(args, seed=args.seed),
                transcriber=None if args.stt == "none" else args.stt,
                interrupt=interrupt,
                progress=None if args.quiet else _progress_printer(),
                verbose=args.verbose,
                **_tool_kwargs(args),
                **_caller_kwargs(args, simulate=False),
                **_llm_kwargs(args),
            )
    except Exception as exc:
        if not received:
            raise
        what = str(exc) if isinstance(exc, CallInterrupted) else f"error: {exc}"
        print(f"hydralab: {redact(what)}", file=sys.stderr)
        return 128 + received[0]
    print(result.summary())
    if received:
        return 128 + received[0]
    return 0 if result.completed else 1


def _serve_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``hydralab serve``'s options as :class:`~hydralab.serve.BridgeServer` arguments."""
    from hydralab.emulator import EmulatorConfig

    return {
        "model": args.model,
        "out_dir": args.out,
        "run_id": args.run_id,
        "port": args.port,
        "hydra_model": args.hydra_model,
        "hydra_url": args.hydra_url,
        "voice": args.voice,
        "transcriber": None if args.stt == "none" else args.stt,
        "emulator_config": EmulatorConfig.for_profile(args.profile, seed=args.seed),
        "max_calls": args.max_calls,
        **_tool_kwargs(args),
    }


async def _serve(args: argparse.Namespace) -> int:
    from hydralab.serve import BridgeServer

    server = BridgeServer(args.record, **_serve_kwargs(args))
    url = await server.start()
    stop = asyncio.Event()
    print(
        f"hydralab serve: record {server.record.id} ({args.model}) waiting for callers on {url}; "
        f"runs go to {Path(args.out) / (server.run_id + '-NNN')}; Ctrl-C to stop",
        flush=True,
    )
    try:
        with _stop_signals(lambda _sig: stop.set()):
            await stop.wait()
    finally:
        results = await server.stop()
    for res in results:
        print(f"{res.ended_reason:<16} {res.run_dir}")
    for failure in server.failures:
        print(f"not written: {failure}", file=sys.stderr)
    if server.refused:
        print(f"{len(server.refused)} caller(s) refused (busy)", file=sys.stderr)
    print(f"{len(results)} call(s) served", flush=True)
    return 0 if not server.failures else 1


async def _serve_workers(args: argparse.Namespace) -> int:
    """``serve --workers N``: N bridge processes on one port until SIGINT / SIGTERM."""
    from hydralab.serve import ServeWorkers

    served = ServeWorkers(args.record, workers=args.workers, **_serve_kwargs(args))
    url = await asyncio.to_thread(served.start)
    stop = asyncio.Event()
    print(
        f"hydralab serve: {args.workers} workers ({args.model}) waiting for callers on {url}; "
        f"runs go to {Path(args.out) / (served.run_id + '-wK-NNN')}; Ctrl-C to stop",
        flush=True,
    )
    try:
        with _stop_signals(lambda _sig: stop.set()):
            await stop.wait()
    finally:
        reports = await asyncio.to_thread(served.stop)
    failed = False
    for rep in reports:
        for reason, run_dir in rep.results:
            print(f"{reason or '?':<16} {run_dir}")
        for failure in rep.failures:
            print(f"not written: {failure}", file=sys.stderr)
        if rep.refused:
            print(f"worker {rep.worker}: {rep.refused} caller(s) refused (busy)", file=sys.stderr)
        if rep.error:
            print(f"worker {rep.worker}: {rep.error}", file=sys.stderr)
        failed = failed or bool(rep.failures or rep.error)
    print(f"{sum(len(r.results) for r in reports)} call(s) served", flush=True)
    return 1 if failed else 0


def _batch(args: argparse.Namespace) -> int:
    from hydralab.analysis import latency_table, load_batch

    if args.config is not None:
        result = _batch_sweep(args)
    else:
        if args.caller == "llm":
            raise ValueError("--caller llm runs one call at a time: use hydralab run")
        result = _batch_options(args)
    print(result.summary())
    try:
        import pandas as pd
    except ImportError:  # the table needs the notebooks extra; the batch is written anyway
        pd = None
    if result.run_dirs() and pd is not None:
        with pd.option_context("display.precision", 0, "display.width", 120):
            tables = load_batch(result.batch_dir)
            print("model_response (ms): Hydra's speech_stopped -> its first audio delta")
            print(latency_table(tables))
            print("heard (ms): the caller's speech end -> the first audible answer at the caller")
            print(latency_table(tables, metric="heard_ms"))
    return 0 if result.ok else 1


#: ``hydralab batch`` options that may be given with ``--config`` (they do not define the
#: experiment); ``records`` and every other option conflict with it.
_SWEEP_CLI_OPTIONS = (
    "command", "config", "out", "batch_id", "concurrency", "retry_failed", "no_progress",
    "one_process", "ray", "calls_per_node", "max_model_sessions", "max_calls_per_minute",
    "ship_results",
)  # fmt: skip


def _batch_sweep(args: argparse.Namespace) -> Any:
    """``hydralab batch --config SWEEP.yaml``: the sweep file defines the experiment."""
    from hydralab.batch import run_batch_sweep_sync

    if args.records:
        raise ValueError(
            f"--config {args.config} names the records: drop the RECORD arguments "
            f"({' '.join(args.records)}) or list them under 'records:' in the sweep file"
        )
    defaults = vars(_parser().parse_args(["batch"]))
    given = sorted(
        "--" + k.replace("_", "-")
        for k, v in vars(args).items()
        if k not in _SWEEP_CLI_OPTIONS and v != defaults.get(k)
    )
    if given:
        raise ValueError(
            f"--config {args.config} defines the experiment: set {', '.join(given)} in the "
            "sweep file instead (only --out, --batch-id, --concurrency, --retry-failed, "
            "--no-progress, --one-process and the Ray options go with --config)"
        )
    concurrency = args.concurrency if args.concurrency != defaults["concurrency"] else None
    return run_batch_sweep_sync(
        args.config,
        out_dir=args.out,
        batch_id=args.batch_id,
        concurrency=concurrency,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        processes=not args.one_process,
        **_ray_kwargs(args),
    )


def _ray_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``run_batch``'s executor arguments from ``--ray [ADDRESS]`` and the Ray options (only
    those given: a sweep file's own stay unless overridden)."""
    out: dict[str, Any] = {}
    if args.ray is not None:
        out["executor"] = "ray"
        if args.ray:
            out["ray_address"] = args.ray
    for name in ("calls_per_node", "max_model_sessions", "max_calls_per_minute"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.ship_results:
        out["ship_results"] = True
    return out


def _batch_options(args: argparse.Namespace) -> Any:
    """``hydralab batch RECORD...``: the experiment from the options."""
    from hydralab.batch import run_batch_sync
    from hydralab.records import list_records

    kwargs = _tool_kwargs(args)
    data_dir = Path(kwargs["data_dir"]) if kwargs["data_dir"] else None
    return run_batch_sync(
        args.records or list_records(data_dir),
        trials=args.trials,
        concurrency=args.concurrency,
        out_dir=args.out,
        batch_id=args.batch_id,
        model=args.model,
        hydra_model=args.hydra_model,
        hydra_url=args.hydra_url,
        voice=args.voice,
        transcriber=None if args.stt == "none" else args.stt,
        label=args.label,
        seed=args.seed,
        emulator_config=_emulator_config(args),
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        processes=not args.one_process,
        **_ray_kwargs(args),
        **{**kwargs, "data_dir": data_dir},
        **_caller_kwargs(args, simulate=False),
    )


def _score(args: argparse.Namespace) -> int:
    """Score every record directory below each PATH; a summary row per batch (or folder of
    runs); the tables and ``summary.json`` to ``--csv`` / ``--json`` (see ``SCORE_EPILOG``)."""
    from hydralab.scoring import score_run

    exports = [Path(d) for d in (args.csv, args.json) if d]
    if exports:
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "--csv / --json need pandas, in the notebooks extra: "
                "pip install 'hydralab[notebooks]'"
            ) from None
    found = [(arg, *_score_dirs(arg)) for arg in args.run_dirs]
    if not any(dirs for _, dirs, _ in found):
        raise FileNotFoundError(
            f"no record directories (with audit_log.json) in {', '.join(args.run_dirs)}"
        )
    print(
        f"{'record':<14} {'user':>4} {'asst':>4} {'tools':>5} {'task':>5} {'auth':>5} "
        f"{'valid':>5} {'p50 ms':>7}  directory"
    )
    batches: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    folders: list[dict[str, Any]] = []  # the summaries printed: batches and folders of runs
    for arg, dirs, folder in found:
        rows = []
        for record_dir in dirs:
            s = score_run(record_dir, write=not args.no_write)
            turns, mr = s["turns"], s["latency"]["model_response"]
            auth = "-" if s["authentication_success"] is None else int(s["authentication_success"])
            p50 = f"{mr['p50_ms']:.0f}" if mr["n"] else "-"
            print(
                f"{s['record_id']:<14} {turns['user']:>4} {turns['assistant']:>4} "
                f"{turns['tool_calls']:>5} {s['task_completion']:>5.1f} {auth!s:>5} "
                f"{s['tool_call_validity']:>5.2f} {p50:>7}  {record_dir}"
            )
            rows.append(_record_row(arg, record_dir, s))
        summary = _batch_summary(arg, rows)
        records += rows
        batches.append(summary)
        if folder and rows:
            folders.append(summary)
    if folders:
        print()
        print(
            f"{'batch':<24} {'convs':>5} {'done':>5} {'task':>5} {'auth':>5} {'valid':>5} "
            f"{'p50 ms (n)':>14} {'p90 ms (n)':>14}  directory"
        )
        for b in folders:
            print(_summary_line(b))
    if exports:
        tables = _export_tables([arg for arg, dirs, _ in found if dirs])
        doc = {
            "hydralab_version": __version__,
            "created_at": dt.datetime.now().isoformat(timespec="seconds"),
            "paths": list(args.run_dirs),
            "files": {name: len(df) for name, df in tables.items()},
            "batches": batches,
            "records": records,
        }
        for out, fmt in ((args.csv, "csv"), (args.json, "json")):
            if out:
                _write_exports(Path(out), fmt, tables, doc)
                print(f"{fmt}: {', '.join(f'{n}.{fmt}' for n in tables)}, {SUMMARY_FILE} in {out}")
    return 0


def _score_dirs(arg: str) -> tuple[list[Path], bool]:
    """The record directories at or below ``arg``, and whether ``arg`` is a batch or a folder of
    runs (neither a record's directory nor one run's: its record directories lie deeper)."""
    from hydralab.scoring import find_record_dirs

    dirs = find_record_dirs(arg)
    root = Path(arg)
    if dirs or not root.is_dir():
        return dirs, (root / "batch.json").is_file()
    # a batch (<batch>/trial_<k>/records/<id>/) or any folder of runs: record directories at
    # any depth, each counted once
    marks = {f.parent for name in ("audit_log.json", "events.jsonl") for f in root.rglob(name)}
    deeper = sorted(d for d in marks if find_record_dirs(d) == [d])
    return deeper, True


def _model_response_ms(record_dir: Path) -> list[float]:
    """The record's ``model_response`` latencies (ms), as its scores count them: from
    ``pipecat_metrics.jsonl``, or rebuilt from ``events.jsonl`` for a run killed mid-call."""
    from hydralab import scoring

    metrics = record_dir / "pipecat_metrics.jsonl"
    if metrics.is_file():
        rows = scoring._load_jsonl(metrics)
    else:
        rows = scoring._rebuild_from_events(
            scoring._load_jsonl(record_dir / "events.jsonl")
        ).metrics
    return scoring.model_response_latencies_ms(rows)


def _read_json_dict(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _record_row(arg: str, record_dir: Path, s: dict[str, Any]) -> dict[str, Any]:
    """One record's line of ``summary.json`` (``values_ms`` is dropped before writing)."""
    values = _model_response_ms(record_dir)
    from hydralab.latency import latency_stats

    return {
        "batch": Path(arg).resolve().name,
        "record_id": s["record_id"],
        "directory": str(record_dir),
        "completed": _read_json_dict(record_dir / "result.json").get("completed") is True,
        "task_completion": s["task_completion"],
        "authentication_success": s["authentication_success"],
        "tool_call_validity": s["tool_call_validity"],
        "model_response": _rounded(latency_stats(values)),
        "values_ms": values,
    }


def _rounded(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _batch_summary(arg: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One PATH's summary: counts, score means, model_response over all its turns."""
    from hydralab.latency import latency_stats

    root = Path(arg)
    config = _read_json_dict(root / "batch.json").get("config")
    auth = [
        float(r["authentication_success"]) for r in rows if r["authentication_success"] is not None
    ]
    values = [v for r in rows for v in r.pop("values_ms")]
    return {
        "batch": root.resolve().name,
        "path": str(root),
        "label": config.get("label") if isinstance(config, dict) else None,
        "conversations": len(rows),
        "completed": sum(r["completed"] for r in rows),
        "task_completion_mean": _mean([float(r["task_completion"]) for r in rows]),
        "authentication_success_rate": _mean(auth),
        "authentication_n": len(auth),
        "tool_call_validity_mean": _mean([float(r["tool_call_validity"]) for r in rows]),
        "model_response": _rounded(latency_stats(values)),
    }


def _summary_line(b: dict[str, Any]) -> str:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    mr = b["model_response"]

    def pct(p: int) -> str:
        return f"{mr[f'p{p}_ms']:.0f} (n={mr['n']})" if mr["n"] else "- (n=0)"

    label = f"  [{b['label']}]" if b["label"] else ""
    return (
        f"{b['batch']:<24} {b['conversations']:>5} {b['completed']:>5} "
        f"{num(b['task_completion_mean']):>5} {num(b['authentication_success_rate']):>5} "
        f"{num(b['tool_call_validity_mean']):>5} {pct(50):>14} {pct(90):>14}  {b['path']}{label}"
    )


def _export_tables(paths: list[str]) -> dict[str, Any]:
    """``load_batch``'s tables of every PATH, one frame per table, ``batch`` first."""
    import pandas as pd

    from hydralab.analysis import load_batch

    parts: dict[str, list[Any]] = {name: [] for name, _ in EXPORT_TABLES}
    for arg in paths:
        tables = load_batch(arg)
        for name, attr in EXPORT_TABLES:
            df = getattr(tables, attr).copy()
            df.insert(0, "batch", Path(arg).resolve().name)
            parts[name].append(df)
    return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}


def _write_exports(out: Path, fmt: str, tables: dict[str, Any], doc: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "csv":
            df.map(_csv_cell).to_csv(out / f"{name}.csv", index=False)
        else:
            df.to_json(
                out / f"{name}.json", orient="records", indent=2, force_ascii=False,
                default_handler=str,
            )  # fmt: skip
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str)
    (out / SUMMARY_FILE).write_text(text + "\n", encoding="utf-8")


def _csv_cell(v: Any) -> Any:
    """Lists and objects as JSON text (not Python's repr), so any CSV reader can parse them."""
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, ensure_ascii=False, default=str)
    return v


def _emulator(args: argparse.Namespace) -> int:
    from hydralab.emulator import EmulatorConfig, serve_forever
    from hydralab.records import load_record
    from hydralab.script import script_from_record

    rec = load_record(args.record, data_dir=Path(args.data_dir) if args.data_dir else None)
    cfg = EmulatorConfig.for_profile(args.profile, output_rate_hz=args.output_rate, seed=args.seed)
    asyncio.run(serve_forever(script_from_record(rec), port=args.port, config=cfg))
    return 0


def _probe(args: argparse.Namespace) -> int:
    import os

    from hydralab.client import HYDRA_URL
    from hydralab.probe import SUMMARY_NAME, ProbeConfig, parse_scenarios, run_probe_sync

    cfg = ProbeConfig(
        url=args.hydra_url or os.environ.get("HYDRA_URL") or HYDRA_URL,
        out_dir=Path(args.out),
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        scenarios=parse_scenarios(args.only),
    )
    summary = run_probe_sync(cfg, log=lambda line: print(redact(line), flush=True))
    print(f"summary: {cfg.out_dir / SUMMARY_NAME}")
    return 0 if all(r["outcome"] != "error" for r in summary["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
