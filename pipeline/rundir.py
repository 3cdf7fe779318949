"""The run directory and its manifest: what each stage read, wrote, and how long it took."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ecg_tgdp.data.atomic import write_json
from ecg_tgdp.pipeline.config import Config, dump_config

PACKAGES = ("ecg-tgdp", "numpy", "scipy", "pandas", "wfdb", "torch")


@dataclass
class RunDir:
    """`runs/<name>/`: resolved config, manifest, cohorts, models, samples, report (README: Stages and artifacts)."""

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
        """True when the stage last finished with the same fingerprint and its outputs are still what it wrote.

        The manifest entry is the stage's completion marker, written after its outputs with their content
        hashes; an output rewritten since (by an interrupted run of other settings, or damaged by hand) no
        longer matches, so a half-finished or damaged output is never taken for the finished one. When the
        inputs and settings are unchanged but an output is not what the stage wrote, a line says so.
        """
        entry = self.manifest()["stages"].get(stage)
        if not entry or entry.get("fingerprint") != fingerprint:
            return False
        written = entry.get("output_hashes") or {}  # none: recorded before outputs were hashed, redo once
        expected = {Path(p).relative_to(self.path).as_posix() for p in outputs}
        damaged = sorted(name for name in expected if name not in written or not (self.path / name).exists()
                         or fingerprint_files([self.path / name]) != written[name])
        if damaged:
            print(f"{stage}: redoing it, {', '.join(damaged)} "
                  f"{'is' if len(damaged) == 1 else 'are'} missing or not what it wrote")
        return not damaged

    def begin_stage(self, stage: str) -> None:
        """Remove the stage's completion marker before it writes anything: until `record_stage` writes it again,
        the stage is not finished, whatever its outputs look like."""
        manifest = self.manifest()
        if manifest["stages"].pop(stage, None) is not None:
            write_json(self.manifest_path, manifest)

    def record_stage(self, stage: str, *, fingerprint: str, started: float, outputs: list[Path], **details) -> None:
        """Write the stage's manifest entry (its completion marker) once its outputs are complete."""
        names = [Path(p).relative_to(self.path).as_posix() for p in outputs]
        manifest = self.manifest()
        manifest["stages"][stage] = {
            "fingerprint": fingerprint,
            "seconds": round(time.time() - started, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": names,
            "output_hashes": {name: fingerprint_files([self.path / name]) for name in names},
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
    """Content fingerprint of input folders or files: every file's relative name and SHA-256 of its bytes.

    By content, never by modification time: an identical rewrite (augment's copied source model, a
    cohort.json written again) keeps the cache, a changed byte invalidates it; relative names, so a run
    directory that is copied or moved keeps its cache. Hashing mitdb's 94 MB takes about 0.15 s.
    """
    digest = hashlib.sha256()
    for folder in folders:
        folder = Path(folder)
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
        for file in files:
            name = file.name if file == folder else file.relative_to(folder).as_posix()
            digest.update(f"{name}:{file_digest(file)}\n".encode())
    return digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
