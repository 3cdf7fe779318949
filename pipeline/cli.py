"""`ecg-tgdp`: one console script, one subcommand per stage, one TOML config (DESIGN §1)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:  # importing torch and friends takes seconds; Ctrl-C meanwhile ends like Ctrl-C anywhere else
    from data.balance import DEFAULT_MAX_PER_CLASS, DEFAULT_TARGET_SHARE
    from data.export import FORMATS
    from data.fetch import DATABASES, FetchError, fetch_database
    from data.records import RecordError
    from data.store import StoreError
    from models.checkpoint import CheckpointError
    from models.samplers import SAMPLERS
    from pipeline import stages
    from pipeline.augment import SHIPPED_SOURCE_MODEL, augment
    from pipeline.config import TRANSFER_METHODS, ConfigError, load_config
    from pipeline.diffusion_stages import sample_command, train_source_stage
    from pipeline.evaluate_stage import evaluate_stage
    from pipeline.rundir import RunDir
    from pipeline.sample_stage import sample_stage
    from pipeline.transfer_stage import transfer_stage
except KeyboardInterrupt:
    print("ecg-tgdp: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

USER_ERRORS = (ConfigError, RecordError, StoreError, FetchError, CheckpointError, FileNotFoundError)


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
        ("train-source", _train_source, "train the class-conditional source diffusion model (resumes if interrupted)"),
        ("transfer", _transfer, "adapt the source model to the target cohort (TGDP or a baseline)"),
        ("evaluate", _evaluate, "sample every transfer method, then write report/report.html with utility, fidelity and privacy"),
        ("run", _run, "run every stage: simulate, ingest, train-source, transfer, sample, evaluate (cached stages are skipped)"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        _add_config_arguments(command)
        command.set_defaults(handler=handler)
        if name == "evaluate":
            command.add_argument("--samples", type=Path, nargs="+", metavar="DIR",
                                 help="evaluate these sample folders (cohort layout, e.g. from `ecg-tgdp sample`) "
                                      "instead of sampling the config's transfer methods")
        if name == "transfer":
            command.add_argument("--method", action="append", choices=TRANSFER_METHODS, dest="methods",
                                 help="method to run (repeatable; default: transfer.methods of the config)")

    sample = commands.add_parser("sample", help="generate labeled windows from a diffusion checkpoint")
    sample.add_argument("--checkpoint", type=Path, required=True, help="model.pt of the source model or of any transfer method (models/<name>/model.pt)")
    sample.add_argument("--n", type=int, required=True, help="number of windows")
    sample.add_argument("--class-mix", type=_class_mix, help="shares per class, e.g. N=0.5,S=0.25,V=0.25 (default: equal)")
    sample.add_argument("--sampler", choices=SAMPLERS, default="dpmpp_sde",
                        help="dpmpp_sde (default): SDE-DPM-Solver++(2M); dpmpp: its ODE form; ddim; ddpm")
    sample.add_argument("--steps", type=int, default=25, help="sampling steps (10-50 for dpmpp_sde/dpmpp/ddim)")
    sample.add_argument("--guidance-scale", type=float, default=1.0, help="classifier-free guidance scale (1 = none)")
    sample.add_argument("--transfer-scale", type=float,
                        help="guidance scale w of a transferred model (TGDP, domain guidance); default: the one it was built with")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", type=Path, required=True, help="output folder")
    sample.add_argument("--format", choices=("store", "npz", "wfdb", "csv"), default="store",
                        help="store: windows.npy + meta.parquet + cohort.json (the cohort layout)")
    sample.add_argument("--device", default="auto")
    sample.add_argument("--batch-size", type=int, default=256)
    sample.set_defaults(handler=_sample)
    _add_augment_command(commands)
    return parser


def _add_augment_command(commands) -> None:
    text = "add synthetic windows to your own small labeled dataset, transferred from a source model"
    augment = commands.add_parser("augment", help=text, description=text)
    augment.add_argument("--target", type=Path, required=True,
                         help="a folder of WFDB records with .atr beat labels (or --labels-csv), or an .npz/.csv of windows")
    augment.add_argument("--out", type=Path, required=True, help="output folder")
    augment.add_argument("--method", choices=TRANSFER_METHODS, default="tgdp")
    augment.add_argument("--n-per-class", type=int,
                         help="add this many synthetic windows of every class (default: top rare classes up, below)")
    augment.add_argument("--target-share", type=float, default=DEFAULT_TARGET_SHARE,
                         help="top each class up to this share of the majority class's real count (default: %(default)s)")
    augment.add_argument("--max-per-class", type=int, default=DEFAULT_MAX_PER_CLASS,
                         help="at most this many synthetic windows of a class when topping up (default: %(default)s)")
    augment.add_argument("--format", choices=FORMATS, default="npz")
    augment.add_argument("--source-model", type=Path, default=SHIPPED_SOURCE_MODEL,
                         help="source checkpoint; it fixes classes, leads, rate and window (default: the shipped mitdb model)")
    augment.add_argument("--labels-csv", help="record-level labels for a WFDB folder (columns record, label[, patient])")
    augment.add_argument("--leads", nargs="+", metavar="NAME",
                         help="lead names in your records, in the model's lead order (default: the model's, e.g. MLII)")
    augment.add_argument("--fs-in-hz", type=float, help="sampling rate of a CSV (or of an NPZ without fs_hz)")
    augment.add_argument("--resample", action="store_true", help="allow resampling records at another rate than the model's")
    augment.add_argument("--min-per-class", type=int, default=20, help="fewest real windows of each class to accept")
    augment.add_argument("--source-per-class", type=int, default=500,
                         help="source-model samples per class that stand in for the source cohort")
    augment.add_argument("--steps", type=int, default=25, help="sampling steps (SDE-DPM-Solver++)")
    augment.add_argument("--seed", type=int, default=0)
    augment.add_argument("--device", default="auto")
    augment.add_argument("--work-dir", type=Path, help="transfer run folder (default: .<out>.work beside --out)")
    augment.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a transfer setting, e.g. --set transfer.tgdp.guidance_steps=500 (repeatable)")
    augment.set_defaults(handler=_augment)


def _class_mix(text: str) -> dict[str, float]:
    """Parse N=0.5,S=0.25,V=0.25."""
    mix = {}
    for item in text.split(","):
        name, sep, share = item.partition("=")
        try:
            mix[name.strip()] = float(share)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected CLASS=SHARE pairs like N=0.5,S=0.5, got {item!r}") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"expected CLASS=SHARE pairs like N=0.5,S=0.5, got {item!r}")
    return mix


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


def _train_source(args) -> None:
    train_source_stage(*_open(args), force=args.force)


def _sample(args) -> None:
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    sample_command(
        args.checkpoint, args.n, args.out, class_mix=args.class_mix, method=args.sampler, steps=args.steps,
        seed=args.seed, fmt=args.format, guidance_scale=args.guidance_scale, device=args.device,
        batch_size=args.batch_size, transfer_scale=args.transfer_scale,
    )


def _transfer(args) -> None:
    config, run = _open(args)
    transfer_stage(config, run, args.methods, force=args.force)


def _evaluate(args) -> None:
    config, run = _open(args)
    if not args.samples:
        sample_stage(config, run, force=args.force)
    evaluate_stage(config, run, args.samples, force=args.force)


def _augment(args) -> None:
    if args.n_per_class is not None and args.n_per_class < 1:
        raise ConfigError(f"--n-per-class must be at least 1, got {args.n_per_class}")
    if args.target_share <= 0 or args.max_per_class < 0:
        raise ConfigError(f"--target-share must be positive and --max-per-class at least 0, got {args.target_share} "
                          f"and {args.max_per_class}")
    augment(args.target, args.out, source_model=args.source_model, method=args.method, n_per_class=args.n_per_class,
            target_share=args.target_share, max_per_class=args.max_per_class, fmt=args.format, labels_csv=args.labels_csv, leads=args.leads, fs_in_hz=args.fs_in_hz, resample=args.resample,
            min_per_class=args.min_per_class, source_per_class=args.source_per_class, sampling_steps=args.steps,
            seed=args.seed, device=args.device, work_dir=args.work_dir, overrides=tuple(args.overrides))


def _run(args) -> None:
    config, run = _open(args)
    stages.simulate_stage(config, run, force=args.force)
    stages.ingest_stage(config, run, force=args.force)
    train_source_stage(config, run, force=args.force)
    transfer_stage(config, run, force=args.force)
    sample_stage(config, run, force=args.force)
    report = evaluate_stage(config, run, force=args.force)
    print(f"run {config.name}: finished; report: {report}")


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
