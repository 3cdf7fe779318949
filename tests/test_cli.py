"""The command line: help without heavy imports, defaults and help on every option, one-line errors."""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from ecg_tgdp.pipeline import cli
from ecg_tgdp.pipeline.cli import build_parser, main
from tests.conftest import REPO

HEAVY = ("torch", "scipy", "matplotlib", "pandas", "wfdb", "sklearn", "numpy")
COMMANDS = ("fetch", "simulate", "ingest", "train-source", "transfer", "evaluate", "run", "sample", "augment")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_of_every_command_imports_no_heavy_library():
    script = (
        "import sys\nfrom pipeline.cli import main\n"
        f"for argv in [['--help'], *[[c, '--help'] for c in {COMMANDS!r}]]:\n"
        "    try:\n        main(argv)\n    except SystemExit as exit:\n        assert exit.code == 0, argv\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("LOADED []")
    assert "--cfg-scale" in result.stdout and "--classifier SPEC" in result.stdout


def test_every_option_has_help_and_shows_its_default():
    for name, command in _subparsers(build_parser()).items():
        text = command.format_help()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            shown = action.default is not None and action.default is not False and action.default != []
            if shown and action.option_strings:
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


def test_names_spelled_out_for_a_fast_parser_are_the_library_names():
    from ecg_tgdp.data.export import FORMATS
    from ecg_tgdp.data.fetch import DATABASES
    from ecg_tgdp.models.samplers import SAMPLERS

    assert set(cli.DATABASES) == set(DATABASES) and set(cli.EXPORT_FORMATS) == set(FORMATS)
    sampler = next(a for a in _subparsers(build_parser())["sample"]._actions if a.dest == "sampler")
    assert set(sampler.choices) == set(SAMPLERS)
    for module, name in cli.USER_ERRORS:
        assert issubclass(getattr(importlib.import_module(module), name), Exception)


@pytest.mark.parametrize("arguments, message", [
    (["--steps", "0"], "argument --steps: must be at least 1, got 0"),
    (["--n", "0"], "argument --n: must be at least 1, got 0"),
    (["--batch-size", "x"], "argument --batch-size: expected a whole number, got 'x'"),
    (["--device", "gpu7"], "argument --device: 'gpu7' is not a torch device"),
    (["--class-mix", "N0.5"], "argument --class-mix: expected CLASS=SHARE pairs"),
    (["--guidance-scale", "2"], "unrecognized arguments: --guidance-scale 2"),  # renamed to --cfg-scale, no alias
    (["--cfg-scale", "nan"], "argument --cfg-scale: must be a finite number, got 'nan'"),
    (["--transfer-scale", "inf"], "argument --transfer-scale: must be a finite number, got 'inf'"),
    (["--transfer-scale", "-1"], "argument --transfer-scale: must be at least 0, got -1"),
    (["--class-mix", "N=nan,S=1"], "argument --class-mix: must be a finite number, got 'nan'"),
])
def test_bad_sampler_arguments_are_one_line_errors(tmp_path, capsys, arguments, message):
    base = {"--checkpoint": "model.pt", "--n": "4", "--out": str(tmp_path / "out")}
    for flag, value in zip(arguments[::2], arguments[1::2]):
        base[flag] = value
    with pytest.raises(SystemExit) as exit:
        main(["sample", *[part for pair in base.items() for part in pair]])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.count("\n") == 1
    assert error.startswith("ecg-tgdp: error: ") and message in error


def test_a_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "none.pt"), "--n", "2", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"ecg-tgdp: error: {tmp_path / 'none.pt'}: no checkpoint file there\n"


def test_ctrl_c_while_building_the_parser_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["--help"]) == 130
    assert capsys.readouterr().err == "ecg-tgdp: interrupted\n"


def test_ctrl_c_while_a_handler_imports_its_stages_is_one_line(monkeypatch, capsys):
    class Interrupting:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "ecg_tgdp.pipeline.diffusion_stages":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "ecg_tgdp.pipeline.diffusion_stages", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting, *sys.meta_path])
    assert main(["train-source", "quickstart"]) == 130
    assert capsys.readouterr().err == "ecg-tgdp: interrupted\n"


def test_config_flags_become_config_entries(tmp_path):
    args = build_parser().parse_args(["evaluate", "quickstart", "--run-dir", str(tmp_path), "--data-root",
                                      str(tmp_path / "dbs"), "--classifier", "my_models.cnn:build"])
    config, run = cli._open(args)
    assert config.data_root == tmp_path / "dbs" and config.evaluation.classifier == "my_models.cnn:build"
    assert run.path == tmp_path and config.name == "quickstart"


def test_an_unknown_recipe_name_is_a_one_line_error_naming_the_shipped_ones(capsys):
    assert main(["run", "quikstart"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("ecg-tgdp: error: 'quikstart' is neither a shipped recipe (") and "mitdb_to_svdb" in error
    assert "quickstart" in error and error.count("\n") == 1


def test_a_missing_data_root_names_all_three_ways_to_give_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ECG_TGDP_DATA_ROOT", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert main(["ingest", "mitdb_to_svdb", "--run-dir", str(tmp_path / "run"), "--data-root",
                 str(tmp_path / "nowhere")]) == 1
    error = capsys.readouterr().err
    assert f"source.database: {tmp_path / 'nowhere' / 'mitdb'} not found" in error and error.count("\n") == 1
    assert "--data-root DIR" in error and "ECG_TGDP_DATA_ROOT" in error
    assert str(tmp_path / "xdg" / "ecg-tgdp" / "physionet") in error


@pytest.mark.parametrize("arguments, message", [
    (["--target-share", "nan"], "argument --target-share: must be a finite number, got 'nan'"),
    (["--target-share", "0"], "argument --target-share: must be above 0, got 0"),
    (["--max-per-class", "-1"], "argument --max-per-class: must be at least 0, got -1"),
    (["--fs-in-hz", "inf"], "argument --fs-in-hz: must be a finite number, got 'inf'"),
])
def test_bad_augment_numbers_are_refused_before_anything_runs(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit:
        main(["augment", "--target", str(tmp_path), "--out", str(tmp_path / "out"), *arguments])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.count("\n") == 1 and message in error
