"""`ecg-tgdp`: one console script, one subcommand per stage, one TOML config (DESIGN §1)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.fetch import DATABASES, FetchError, fetch_database
from data.records import RecordError
from data.store import StoreError
from pipeline import stages
from pipeline.config import ConfigError, load_config
from pipeline.rundir import RunDir

USER_ERRORS = (ConfigError, RecordError, StoreError, FetchError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-tgdp",
        description="Synthetic ECGs for small labeled cohorts: ingest PhysioNet records, train a diffusion "
        "source model, transfer it with TGDP, sample and evaluate.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = commands.add_parser("fetch", help="download PhysioNet databases with wfdb")
    fetch.add_argument("databases", nargs="+", choices=sorted(DATABASES), metavar="DB", help=f"one of {', '.join(DATABASES)}")
    fetch.add_argument("--data-root", type=Path, required=True, help="folder to download into")
    fetch.add_argument("--ptbxl-rate", type=int, choices=(100, 500), default=100, help="PTB-XL records to fetch")
    fetch.set_defaults(handler=_fetch)

    for name, handler, text in (
        ("simulate", _simulate, "write the config's simulated cohorts as WFDB records"),
        ("ingest", _ingest, "read the config's cohorts into labeled windows (simulating them first if needed)"),
        ("run", _run, "run every stage of the pipeline that exists so far: simulate, ingest"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        _add_config_arguments(command)
        command.set_defaults(handler=handler)
    return parser


def _add_config_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("config", type=Path, help="TOML config (see configs/)")
    command.add_argument("--run-dir", type=Path, help="run directory (default: runs/<config name>/)")
    command.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config entry, e.g. --set windows.fs_hz=250 (repeatable)",
    )
    command.add_argument("--force", action="store_true", help="redo stages even when their inputs are unchanged")


def _open(args) -> tuple:
    config = load_config(args.config, args.overrides)
    return config, RunDir.open(config, args.run_dir)


def _fetch(args) -> None:
    for name in args.databases:
        fetch_database(name, args.data_root, ptbxl_rate_hz=args.ptbxl_rate)


def _simulate(args) -> None:
    stages.simulate_stage(*_open(args), force=args.force)


def _ingest(args) -> None:
    config, run = _open(args)
    stages.simulate_stage(config, run, force=args.force)
    stages.ingest_stage(config, run, force=args.force)


def _run(args) -> None:
    config, run = _open(args)
    stages.simulate_stage(config, run, force=args.force)
    stages.ingest_stage(config, run, force=args.force)
    print(f"run {config.name}: finished; artifacts in {run.path}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except USER_ERRORS as error:
        print(f"ecg-tgdp: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ecg-tgdp: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
