"""How the code is laid out and installed: one import name, layers whose imports point down, thin stages."""
from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

LAYERS = {"data": set(), "models": {"data"}, "evaluation": {"data", "models"},
          "pipeline": {"data", "models", "evaluation", "configs"}, "configs": set()}
MAX_STAGE_FUNCTION_LINES = 60


def _modules(layer: str) -> list[Path]:
    return sorted((REPO / layer).rglob("*.py"))


def _imported_layers(path: Path) -> set[str]:
    """The project layers a module imports (at any depth of the file, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "ecg_tgdp" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] in LAYERS:
                found.add(f"bare:{parts[0]}")
    return found


@pytest.mark.parametrize("layer", list(LAYERS))
def test_imports_point_down_and_use_the_package_name(layer):
    """data/ at the bottom, then models/, evaluation/, pipeline/ on top; never a bare `import models`."""
    for path in _modules(layer):
        imported = _imported_layers(path) - {layer}
        assert imported <= LAYERS[layer], f"{path.relative_to(REPO)} imports {sorted(imported - LAYERS[layer])}"


def test_every_package_folder_is_installed_under_the_project_name():
    """pyproject's package list covers every folder with an __init__.py (a new subpackage must be added there)."""
    import tomllib

    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {init.parent.relative_to(REPO).as_posix() for layer in LAYERS for init in (REPO / layer).rglob(
        "__init__.py")}
    assert set(setup["package-dir"].values()) == folders
    assert set(setup["packages"]) == {f"ecg_tgdp.{folder.replace('/', '.')}" for folder in folders}


def test_stage_functions_are_short():
    """Stages load, call the library, write (README: Architecture); the algorithms live below pipeline/."""
    long = []
    for path in _modules("pipeline"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_STAGE_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long


def test_the_wheel_puts_only_ecg_tgdp_into_site_packages(tmp_path):
    """No top-level data/, models/, pipeline/, evaluation/ or configs/ to shadow a user's own packages; the
    shipped model and the recipes travel inside the package."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("ecg_tgdp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {entry for entry in top if not entry.endswith(".dist-info")} == {"ecg_tgdp"}
    assert "ecg_tgdp/models/pretrained/mitdb_nsv_4s_v3/model.pt" in names
    assert {"ecg_tgdp/configs/quickstart.toml", "ecg_tgdp/models/transfer/fit.py"} <= set(names)


def test_a_users_own_models_and_data_packages_do_not_shadow_the_project(tmp_path):
    """Run from a folder holding a user's `models/` and `data/` packages: the CLI and a user classifier named
    `models.mynet:make` each get their own."""
    for name in ("models", "data"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("MINE = True\n")
    (tmp_path / "models" / "mynet.py").write_text("def make():\n    return 'user net'\n")
    script = ("import models, data, ecg_tgdp.models.generate, ecg_tgdp.data.store\n"
              "from ecg_tgdp.evaluation.downstream import _import\n"
              "assert models.MINE and data.MINE\n"
              "assert _import('models.mynet:make')() == 'user net'\n"
              "print(ecg_tgdp.models.generate.__file__)")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(REPO)
    cli = subprocess.run([str(Path(sys.executable).with_name("ecg-tgdp")), "sample", "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "--checkpoint" in cli.stdout
