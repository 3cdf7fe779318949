"""The benchmarks' shared plumbing: every script starts, none hard-codes the data folder, results carry their machine."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import data_root, recipe, write_result

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(path for path in (REPO / "benchmarks").glob("*.py") if path.name != "harness.py")
DEVELOPMENT_DATA = "../shared/physionet"


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_every_benchmark_answers_help(script):
    # Run as the README runs them: from the repository root, where benchmarks/ is sys.path[0] of the script.
    done = subprocess.run([sys.executable, str(script.relative_to(REPO)), "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"{script.name} --help: {done.stderr}"
    assert done.stdout.startswith("usage:"), f"{script.name} --help printed no usage: {done.stdout[:200]}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_no_benchmark_defaults_to_the_development_data_folder(script):
    """The folder may be named in the usage docstring, never as a string the code uses."""
    tree = ast.parse(script.read_text())
    docstring = ast.get_docstring(tree, clean=False)
    used = [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and DEVELOPMENT_DATA in node.value
            and node.value != docstring]
    assert not used, f"{script.name}: {DEVELOPMENT_DATA!r} in code at lines {used}; use harness.add_data_root"


def test_write_result_adds_the_machine_stamp(tmp_path):
    payload = {"benchmark": "example", "seconds": 1.5, "rows": [{"a": 1}]}
    path = write_result(tmp_path / "nested" / "example.json", payload)
    written = json.loads(path.read_text())
    assert path == tmp_path / "nested" / "example.json"
    assert {key: written[key] for key in payload} == payload
    assert set(written["machine"]) >= {"date", "python", "torch", "torch_threads", "cpu_count", "machine", "device"}
    assert written["machine"]["cpu_count"] >= 1
    assert "machine" not in payload  # the caller's dict is left alone
    assert not list(path.parent.glob(".*.tmp"))  # written through a rename, nothing left behind


def test_data_root_resolves_as_the_library_does(tmp_path, monkeypatch):
    given, from_env = tmp_path / "given", tmp_path / "env"
    for root in (given, from_env):
        (root / "mitdb").mkdir(parents=True)
    monkeypatch.setenv("ECG_TGDP_DATA_ROOT", str(from_env))
    assert data_root(given, "mitdb") == given
    assert data_root(None, "mitdb") == from_env
    with pytest.raises(SystemExit, match=r"no svdb folder there.*ECG_TGDP_DATA_ROOT"):
        data_root(None, "mitdb", "svdb")


def test_recipe_names_a_shipped_config_or_passes_a_path():
    assert recipe("mitdb_to_svdb").is_file()
    assert recipe("configs/mitdb_to_svdb.toml") == Path("configs/mitdb_to_svdb.toml")
