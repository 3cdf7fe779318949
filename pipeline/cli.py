"""`ecg-tgdp`: one console script, one subcommand per stage, one TOML config (README: Architecture).

Building the parser imports only the config models (pydantic), so `ecg-tgdp --help` answers at once
(benchmarks/cli_startup.py); each handler imports the stages it runs. User errors, argparse's included,
are one line `ecg-tgdp: error: ...` and a non-zero exit status.

Under torchrun the commands that take a config join the process group (pipeline.distributed): diffusion
training runs on every rank, every other stage on rank 0 alone.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

# Spelled out so that building the parser does not import wfdb (tests check them against data.fetch.DATABASES
# and data.export.FORMATS).
DATABASES = ("mitdb", "svdb", "incartdb", "ptb-xl")
EXPORT_FORMATS = ("npz", "csv", "wfdb")
FORMAT_HELP = ("npz: arrays windows, labels, patients, fs_hz, leads; csv (one lead): label and patient columns, then "
               "one column per sample; wfdb: beat classes as one record per patient with a beat annotation per window")

# (module, class) of the exceptions that mean "this request cannot be done as asked": printed as one line. Named
# instead of imported so that main() imports nothing; a class whose module was never imported was never raised.
USER_ERRORS = frozenset({
    ("ecg_tgdp.pipeline.config", "ConfigError"), ("ecg_tgdp.data.records", "RecordError"), ("ecg_tgdp.data.store", "StoreError"),
    ("ecg_tgdp.data.fetch", "FetchError"), ("ecg_tgdp.models.checkpoint", "CheckpointError"), ("builtins", "FileNotFoundError"),
    ("ecg_tgdp.pipeline.distributed", "RankZeroFailed"),
})


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, `ecg-tgdp: error: ...` (exit status 2), like every other user error."""

    def error(self, message: str):
        self.exit(2, f"ecg-tgdp: error: {message} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, except where there is none to show (None, False, [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default is None or default is False or default == [] or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from ecg_tgdp.pipeline.config import TRANSFER_METHODS

    parser = _Parser(
        prog="ecg-tgdp", formatter_class=_HelpFormatter,
        description="Synthetic ECGs for small labeled cohorts: ingest PhysioNet records, train a diffusion "
        "source model, transfer it with TGDP, sample and evaluate.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fetch_command(commands)
    for name, handler, text in (
        ("simulate", _simulate, "write the config's simulated cohorts as WFDB records"),
        ("ingest", _ingest, "read the config's cohorts into labeled windows (simulating them first if needed)"),
        ("train-source", _train_source, "train the class-conditional source diffusion model (resumes if interrupted)"),
        ("transfer", _transfer, "adapt the source model to the target cohort (TGDP or a baseline)"),
        ("evaluate", _evaluate, ("sample every transfer method, then write report/report.html with utility, "
                                 "fidelity and privacy")),
        ("run", _run, ("run every stage: simulate, ingest, train-source, transfer, sample, evaluate (cached stages "
                       "are skipped)")),
    ):
        command = _command(commands, name, text)
        _add_config_arguments(command)
        command.set_defaults(handler=handler, runs_under_torchrun=True)
        if name == "evaluate":
            command.add_argument("--samples", type=Path, nargs="+", metavar="DIR",
                                 help="evaluate these sample folders (cohort layout, e.g. from `ecg-tgdp sample`) "
                                      "instead of sampling the config's transfer methods")
            command.add_argument("--classifier", metavar="SPEC",
                                 help="downstream classifier of the utility arms (sets evaluation.classifier): "
                                      "'ecg-tgdp' (the project's 1D CNN) or 'package.module:callable' returning a "
                                      "scikit-learn estimator or a torch nn.Module (default: the config's)")
        if name == "transfer":
            command.add_argument("--method", action="append", choices=TRANSFER_METHODS, dest="methods",
                                 help="method to run (repeatable; default: transfer.methods of the config)")
    _add_sample_command(commands)
    _add_augment_command(commands)
    return parser


def _command(commands, name: str, text: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)


def _add_fetch_command(commands) -> None:
    from ecg_tgdp.pipeline.config import DATA_ROOT_ENV, default_data_root

    fetch = _command(commands, "fetch", "download PhysioNet databases with wfdb")
    fetch.add_argument("databases", nargs="+", choices=DATABASES, metavar="DB", help=f"one of {', '.join(DATABASES)}")
    fetch.add_argument("--data-root", type=Path, default=default_data_root(), metavar="DIR",
                       help=f"folder to download into (${DATA_ROOT_ENV} when set, else the user folder)")
    fetch.add_argument("--ptbxl-rate", type=int, choices=(100, 500), default=100,
                       help="PTB-XL records to fetch: records100 or records500 (Hz)")
    fetch.set_defaults(handler=_fetch)


def _add_config_arguments(command: argparse.ArgumentParser) -> None:
    from ecg_tgdp.pipeline.config import DATA_ROOT_ENV, user_data_root
    from ecg_tgdp.pipeline.shipped import recipe_names

    command.add_argument("config", metavar="CONFIG",
                         help=f"a shipped recipe ({', '.join(recipe_names())}) or the path of a TOML config")
    command.add_argument("--run-dir", type=Path, help="run directory (default: runs/<config name>/)")
    command.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config entry, e.g. --set windows.fs_hz=250 (repeatable)",
    )
    command.add_argument("--data-root", type=Path, metavar="DIR",
                         help=f"folder holding the PhysioNet databases (sets data_root; default: the config's, else "
                              f"${DATA_ROOT_ENV}, else {user_data_root()})")
    command.add_argument("--force", action="store_true", help="redo stages even when their inputs are unchanged")


def _add_sample_command(commands) -> None:
    from ecg_tgdp.models.settings import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLER_NAMES
    sample = _command(commands, "sample", "generate labeled windows from a diffusion checkpoint")
    sample.add_argument("--checkpoint", type=Path, required=True,
                        help="model.pt of the source model or of any transfer method (models/<name>/model.pt)")
    sample.add_argument("--n", type=_positive_int, required=True, help="number of windows")
    sample.add_argument("--class-mix", type=_class_mix, help="shares per class, e.g. N=0.5,S=0.25,V=0.25 "
                                                             "(default: equal)")
    sample.add_argument("--sampler", choices=SAMPLER_NAMES, default=DEFAULT_SAMPLER,
                        help="dpmpp_sde: SDE-DPM-Solver++(2M); dpmpp: its ODE form; ddim; ddpm")
    sample.add_argument("--steps", type=_positive_int, default=DEFAULT_STEPS,
                        help="sampling steps (10-50 for dpmpp_sde/dpmpp/ddim; at most what the checkpoint's schedule allows)")
    sample.add_argument("--cfg-scale", type=_non_negative_float, default=1.0,
                        help="classifier-free guidance scale (1 = plain conditional sampling)")
    sample.add_argument("--transfer-scale", type=_non_negative_float,
                        help="guidance weight w of a transferred model (TGDP, domain guidance); default: the "
                             "method's (transfer.<method>.transfer_scale of models/settings.py: TGDP 1, domain "
                             "guidance 1.5)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the sampler's noise")
    sample.add_argument("--out", type=Path, required=True, help="output folder")
    sample.add_argument("--format", choices=("store", *EXPORT_FORMATS), default="store",
                        help=f"store: windows.npy + meta.parquet + cohort.json (the cohort layout); {FORMAT_HELP}")
    sample.add_argument("--device", type=_device, default="auto", help="'auto' (CUDA when available), 'cpu', "
                                                                        "'cuda', 'cuda:1', ...")
    sample.add_argument("--batch-size", type=_positive_int, default=256, help="windows denoised at once")
    sample.set_defaults(handler=_sample)


def _add_augment_command(commands) -> None:
    from ecg_tgdp.pipeline.augment_options import AugmentOptions
    from ecg_tgdp.pipeline.config import TRANSFER_METHODS

    default = AugmentOptions()
    augment = _command(commands, "augment", "add synthetic windows to your own small labeled dataset, transferred "
                                            "from a source model")
    augment.add_argument("--target", type=Path, required=True,
                         help="a folder of WFDB records with .atr beat labels (or --labels-csv), or an .npz/.csv of "
                              "windows")
    augment.add_argument("--out", type=Path, required=True, help="output folder")
    augment.add_argument("--method", choices=TRANSFER_METHODS, default=default.method,
                         help="transfer method (see `ecg-tgdp transfer --help`)")
    augment.add_argument("--n-per-class", type=_positive_int,
                         help="add this many synthetic windows of every class (default: top rare classes up, below)")
    augment.add_argument("--target-share", type=_positive_float, default=default.target_share,
                         help="top each class up to this share of the majority class's real count")
    augment.add_argument("--max-per-class", type=_non_negative_int, default=default.max_per_class,
                         help="at most this many synthetic windows of a class when topping up")
    augment.add_argument("--format", choices=EXPORT_FORMATS, default=default.fmt, help=FORMAT_HELP)
    augment.add_argument("--source-model", default=default.source_model,
                         help="source checkpoint path, or the name of a shipped model (the default is the MIT-BIH "
                              "one); it fixes classes, leads, rate and window")
    augment.add_argument("--labels-csv", help="record-level labels for a WFDB folder (columns record, label[, patient])")
    augment.add_argument("--leads", nargs="+", metavar="NAME",
                         help="lead names in your records, in the model's lead order (default: the model's, e.g. MLII)")
    augment.add_argument("--fs-in-hz", type=_positive_float,
                         help="sampling rate of a CSV (or of an NPZ without fs_hz)")
    augment.add_argument("--resample", action="store_true",
                         help="allow resampling records at another rate than the model's")
    augment.add_argument("--min-per-class", type=_positive_int, default=default.min_per_class,
                         help="fewest real windows of each class to accept")
    augment.add_argument("--source-per-class", type=_positive_int, default=default.source_per_class,
                         help="source-model samples per class that stand in for the source cohort (a share of them "
                              "is held out for TGDP's diagnostics)")
    augment.add_argument("--steps", type=_positive_int, default=default.sampling_steps,
                         help="sampling steps (SDE-DPM-Solver++)")
    augment.add_argument("--seed", type=int, default=default.seed, help="seed of the split, the transfer and the "
                                                                        "sampler")
    augment.add_argument("--device", type=_device, default=default.device, help="'auto' (CUDA when available), "
                                                                                "'cpu', 'cuda', 'cuda:1', ...")
    augment.add_argument("--work-dir", type=Path, help="transfer run folder (default: .<out>.work beside --out)")
    augment.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a transfer setting, e.g. --set transfer.tgdp.time_domain.steps=500 "
                              "(repeatable)")
    augment.set_defaults(handler=_augment)


def _checked(parse, text: str, minimum: float, strict: bool = False):
    """`parse(text)` (int or float), finite and at least (or, `strict`, above) `minimum`: argparse's own float()
    takes 'nan' and 'inf', which no option of this CLI means."""
    try:
        value = parse(text)
    except ValueError:
        kind = "a whole number" if parse is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if value < minimum or (strict and value == minimum):
        raise argparse.ArgumentTypeError(f"must be {'above' if strict else 'at least'} {minimum:g}, got {value:g}")
    return value


def _positive_int(text: str) -> int:
    return _checked(int, text, 1)


def _non_negative_int(text: str) -> int:
    return _checked(int, text, 0)


def _positive_float(text: str) -> float:
    return _checked(float, text, 0, strict=True)


def _non_negative_float(text: str) -> float:
    return _checked(float, text, 0)


def _device(text: str) -> str:
    """'auto' as it is; anything else must be a name torch knows (imported only then)."""
    if text == "auto":
        return text
    import torch

    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device; use auto, cpu, cuda, cuda:1, ...") from None
    return text


def _class_mix(text: str) -> dict[str, float]:
    """Parse N=0.5,S=0.25,V=0.25."""
    mix = {}
    for item in text.split(","):
        name, sep, share = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected CLASS=SHARE pairs like N=0.5,S=0.5, got {item!r}")
        mix[name.strip()] = _non_negative_float(share)
    return mix


def _open(args) -> tuple:
    """The config (a recipe name or a path, with --set, --data-root and --classifier applied) and its run directory."""
    from ecg_tgdp.pipeline.config import load_config
    from ecg_tgdp.pipeline.distributed import on_main_rank
    from ecg_tgdp.pipeline.rundir import RunDir
    from ecg_tgdp.pipeline.shipped import recipe_path

    overrides = list(args.overrides)
    if args.data_root is not None:
        overrides.append(f"data_root={json.dumps(str(args.data_root))}")  # a JSON string is a TOML string
    if getattr(args, "classifier", None) is not None:
        overrides.append(f"evaluation.classifier={json.dumps(args.classifier)}")
    config = load_config(recipe_path(args.config), overrides)
    return config, on_main_rank(RunDir.open, config, args.run_dir)


def _fetch(args) -> None:
    from ecg_tgdp.data.fetch import fetch_database

    for name in args.databases:
        fetch_database(name, args.data_root, ptbxl_rate_hz=args.ptbxl_rate)


def _simulate(args) -> None:
    from ecg_tgdp.pipeline import stages
    from ecg_tgdp.pipeline.distributed import on_main_rank

    on_main_rank(stages.simulate_stage, *_open(args), force=args.force)


def _ingest(args) -> None:
    from ecg_tgdp.pipeline import stages
    from ecg_tgdp.pipeline.distributed import on_main_rank

    config, run = _open(args)
    on_main_rank(stages.simulate_stage, config, run, force=args.force)
    on_main_rank(stages.ingest_stage, config, run, force=args.force)


def _train_source(args) -> None:
    from ecg_tgdp.pipeline.diffusion_stages import train_source_stage

    train_source_stage(*_open(args), force=args.force)


def _sample(args) -> None:
    from ecg_tgdp.pipeline.config import ConfigError
    from ecg_tgdp.pipeline.diffusion_stages import sample_command

    try:
        sample_command(
            args.checkpoint, args.n, args.out, class_mix=args.class_mix, sampler=args.sampler, steps=args.steps,
            seed=args.seed, fmt=args.format, cfg_scale=args.cfg_scale, device=args.device,
            batch_size=args.batch_size, transfer_scale=args.transfer_scale,
        )
    except ValueError as error:  # what the checkpoint cannot serve, e.g. more steps than its schedule has
        raise ConfigError(f"sample: {error}") from None


def _transfer(args) -> None:
    from ecg_tgdp.pipeline.transfer_stage import transfer_stage

    config, run = _open(args)
    transfer_stage(config, run, args.methods, force=args.force)


def _evaluate(args) -> None:
    from ecg_tgdp.pipeline.distributed import on_main_rank
    from ecg_tgdp.pipeline.evaluate_stage import evaluate_stage
    from ecg_tgdp.pipeline.sample_stage import sample_stage

    config, run = _open(args)
    if not args.samples:
        on_main_rank(sample_stage, config, run, force=args.force)
    on_main_rank(evaluate_stage, config, run, args.samples, force=args.force)


def _augment(args) -> None:
    from ecg_tgdp.pipeline.augment import augment
    from ecg_tgdp.pipeline.augment_options import AugmentOptions

    options = AugmentOptions(
        source_model=args.source_model, method=args.method, n_per_class=args.n_per_class,
        target_share=args.target_share, max_per_class=args.max_per_class, fmt=args.format, labels_csv=args.labels_csv,
        leads=tuple(args.leads) if args.leads else None, fs_in_hz=args.fs_in_hz, resample=args.resample,
        min_per_class=args.min_per_class, source_per_class=args.source_per_class, sampling_steps=args.steps,
        seed=args.seed, device=args.device, work_dir=args.work_dir)
    augment(args.target, args.out, options, tuple(args.overrides))


def _run(args) -> None:
    from ecg_tgdp.pipeline import stages
    from ecg_tgdp.pipeline.diffusion_stages import train_source_stage
    from ecg_tgdp.pipeline.distributed import on_main_rank
    from ecg_tgdp.pipeline.evaluate_stage import evaluate_stage
    from ecg_tgdp.pipeline.sample_stage import sample_stage
    from ecg_tgdp.pipeline.transfer_stage import transfer_stage

    config, run = _open(args)
    on_main_rank(stages.simulate_stage, config, run, force=args.force)
    on_main_rank(stages.ingest_stage, config, run, force=args.force)
    train_source_stage(config, run, force=args.force)  # data-parallel under torchrun, as is transfer's training
    transfer_stage(config, run, force=args.force)
    on_main_rank(sample_stage, config, run, force=args.force)
    report = on_main_rank(evaluate_stage, config, run, force=args.force)
    print(f"run {config.name}: finished; report: {report}")


def _one_line(message: str) -> str:
    """A message that quotes a library's multi-line text (torch's unpickler) on one line."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _is_user_error(error: BaseException) -> bool:
    return any((cls.__module__, cls.__qualname__) in USER_ERRORS for cls in type(error).__mro__)


def _call(args: argparse.Namespace) -> None:
    """The command's handler; under torchrun inside the process group, for the commands that take a config."""
    from ecg_tgdp.pipeline.distributed import process_group, under_torchrun

    if not under_torchrun():
        args.handler(args)
        return
    if not getattr(args, "runs_under_torchrun", False):
        from ecg_tgdp.pipeline.config import ConfigError

        raise ConfigError(f"{args.command} does not run under torchrun; start it as a single process")
    with process_group():
        args.handler(args)


def main(argv: list[str] | None = None) -> int:
    try:
        _call(build_parser().parse_args(argv))
    except KeyboardInterrupt:  # also while the handler is still importing torch
        print("ecg-tgdp: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not _is_user_error(error):
            raise
        print(f"ecg-tgdp: error: {_one_line(str(error))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
