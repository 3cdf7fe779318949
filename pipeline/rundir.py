"""The run directory and its manifest: what each stage read, wrote, and how long it took."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from data.atomic import write_json
from pipeline.config import Config, dump_config

PACKAGES = ("ecg-tgdp", "numpy", "scipy", "pandas", "wfdb", "torch")


@dataclass
class RunDir:
    """`runs/<name>/`: resolved config, manifest, cohorts, models, samples, report (DESIGN §3)."""

    path: Path

    @classmethod
    def open(cls, config: Config, run_dir: Path | None) -> RunDir:
        """Create the run directory and save the resolved config in it."""
        path = Path(run_dir) if run_dir else Path("runs") / config.name
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.toml").write_text(dump_config(config))
        return cls(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict:
        if not self.manifest_path.is_file():
            return {"stages": {}}
        return json.loads(self.manifest_path.read_text())

    def is_current(self, stage: str, fingerprint: str, outputs: list[Path]) -> bool:
        """True when the stage last finished with the same fingerprint and its outputs still exist."""
        entry = self.manifest()["stages"].get(stage)
        return bool(entry) and entry.get("fingerprint") == fingerprint and all(Path(p).exists() for p in outputs)

    def record_stage(self, stage: str, *, fingerprint: str, started: float, outputs: list[Path], **details) -> None:
        """Write the stage's manifest entry once its outputs are complete."""
        manifest = self.manifest()
        manifest["stages"][stage] = {
            "fingerprint": fingerprint,
            "seconds": round(time.time() - started, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": [str(Path(p).relative_to(self.path)) for p in outputs],
            "versions": versions(),
            **details,
        }
        write_json(self.manifest_path, manifest)


def versions() -> dict[str, str]:
    """Python and key package versions, for the manifest."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def fingerprint_files(folders: list[Path]) -> str:
    """Cheap fingerprint of input folders or files: every file's relative name, size and modification time
    (relative, so a run directory that is copied or moved keeps its cache)."""
    digest = hashlib.sha256()
    for folder in folders:
        folder = Path(folder)
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
        for file in files:
            stat = file.stat()
            name = file.name if file == folder else file.relative_to(folder)
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
