"""``hydralab`` command line: ``run`` one record, serve the ``emulator``, list ``records``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from hydralab.secrets import redact

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hydralab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one record's conversation and write its run directory")
    run.add_argument("record_pos", nargs="?", metavar="RECORD", help="record id")
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
    run.add_argument("--voice", default=None, help="Hydra voice")
    run.add_argument("--port", type=int, default=0, help="bridge port on 127.0.0.1 (0 = any)")
    run.add_argument("--data-dir", default=None, help="records folder (hydralab or EVA layout)")
    run.add_argument("--run-id", default=None)
    run.add_argument("--seed", type=int, default=0, help="emulator latency seed")

    emu = sub.add_parser("emulator", help="serve the offline Hydra emulator on 127.0.0.1")
    emu.add_argument("--port", type=int, default=0)
    emu.add_argument("--record", default=None)
    emu.add_argument("--data-dir", default=None)
    emu.add_argument("--output-rate", type=int, default=48000)
    emu.add_argument("--seed", type=int, default=0)

    rec = sub.add_parser("records", help="list the available record ids")
    rec.add_argument("--data-dir", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "emulator":
            return _emulator(args)
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
    from hydralab.emulator import EmulatorConfig
    from hydralab.runner import run_record_sync

    result = run_record_sync(
        args.record or args.record_pos,
        out_dir=args.out,
        run_id=args.run_id,
        model=args.model,
        hydra_model=args.hydra_model,
        voice=args.voice,
        port=args.port,
        data_dir=args.data_dir,
        emulator_config=EmulatorConfig(seed=args.seed),
    )
    print(result.summary())
    return 0 if result.error is None and result.ended_reason == "goodbye" else 1


def _emulator(args: argparse.Namespace) -> int:
    from hydralab.emulator import EmulatorConfig, serve_forever
    from hydralab.records import load_record
    from hydralab.script import script_from_record

    rec = load_record(args.record, data_dir=Path(args.data_dir) if args.data_dir else None)
    cfg = EmulatorConfig(output_rate_hz=args.output_rate, seed=args.seed)
    asyncio.run(serve_forever(script_from_record(rec), port=args.port, config=cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
