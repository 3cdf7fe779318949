"""`ecg-tgdp fetch`: nothing downloaded where a complete copy exists; a clear line when offline."""
from __future__ import annotations

import shutil

import pytest
import requests
import wfdb

from ecg_tgdp.data.fetch import FetchError, fetch_database, incomplete_records
from ecg_tgdp.pipeline.cli import main
from tests.conftest import physionet_db


def _no_network(*args, **kwargs):
    raise requests.exceptions.ConnectionError("Failed to resolve 'physionet.org'")


def test_complete_copy_is_not_downloaded_again(monkeypatch, capsys):
    folder = physionet_db("mitdb")
    monkeypatch.setattr(wfdb, "dl_database", pytest.fail)
    assert fetch_database("mitdb", folder.parent) == folder
    assert "nothing to download" in capsys.readouterr().out


def test_complete_ptbxl_subset_is_not_downloaded_again(monkeypatch):
    folder = physionet_db("ptbxl")
    monkeypatch.setattr(wfdb, "dl_database", pytest.fail)
    monkeypatch.setattr(wfdb, "dl_files", pytest.fail)
    assert fetch_database("ptb-xl", folder.parent) == folder


def test_unreachable_physionet_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(wfdb, "dl_database", _no_network)
    with pytest.raises(FetchError, match="svdb: cannot reach PhysioNet"):
        fetch_database("svdb", tmp_path)
    assert main(["fetch", "svdb", "--data-root", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("ecg-tgdp: error: svdb: cannot reach PhysioNet") and "\n" not in error


def test_truncated_record_makes_a_copy_incomplete(tmp_path):
    source = physionet_db("mitdb")
    for suffix in (".hea", ".dat", ".atr"):
        shutil.copy(source / f"100{suffix}", tmp_path / f"100{suffix}")
    assert incomplete_records(tmp_path) == []
    dat = tmp_path / "100.dat"
    dat.write_bytes(dat.read_bytes()[:5000])
    assert incomplete_records(tmp_path) == ["100"]


def test_unknown_database_is_rejected(tmp_path):
    with pytest.raises(FetchError, match="unknown database 'nope'"):
        fetch_database("nope", tmp_path)
