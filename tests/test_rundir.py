"""Stage caching by content: an identical rewrite or a new modification time keeps the cache, a changed byte or an
output rewritten since the stage finished does not."""
from __future__ import annotations

import os
import time

from ecg_tgdp.pipeline.config import config_from_dict
from ecg_tgdp.pipeline.rundir import RunDir, fingerprint_files


def test_fingerprints_follow_content_not_modification_time(tmp_path):
    folder = tmp_path / "db"
    (folder / "site1").mkdir(parents=True)
    (folder / "site1" / "100.dat").write_bytes(b"\x00\x01" * 1000)
    (folder / "RECORDS").write_text("site1/100\n")
    first = fingerprint_files([folder])
    os.utime(folder / "site1" / "100.dat", (time.time() + 100, time.time() + 100))
    (folder / "RECORDS").write_text("site1/100\n")  # rewritten, identical
    assert fingerprint_files([folder]) == first
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    assert fingerprint_files([moved]) == first  # relative names: a moved run keeps its cache
    (moved / "site1" / "100.dat").write_bytes(b"\x00\x02" + b"\x00\x01" * 999)
    assert fingerprint_files([moved]) != first
    (moved / "site1" / "100.dat").rename(moved / "site1" / "101.dat")
    assert fingerprint_files([moved]) != first


def test_a_stage_whose_output_was_rewritten_since_it_finished_is_not_current(tmp_path):
    config = config_from_dict({"name": "cache", "source": {"format": "wfdb", "database": "a"},
                               "target": {"format": "wfdb", "database": "b"}}, (), "test")
    run = RunDir.open(config, tmp_path / "run")
    output = run.path / "models" / "x" / "model.pt"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"weights of fingerprint A")
    run.record_stage("x", fingerprint="A", started=time.time(), outputs=[output])
    assert run.is_current("x", "A", [output]) and not run.is_current("x", "B", [output])
    os.utime(output, (time.time() + 100, time.time() + 100))
    assert run.is_current("x", "A", [output])
    output.write_bytes(b"weights of fingerprint B")  # an interrupted run of other settings got this far
    assert not run.is_current("x", "A", [output])
    run.begin_stage("x")
    assert "x" not in run.manifest()["stages"]
