"""PhysioNet downloads with wfdb: skip what is present and complete, say clearly when offline."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import wfdb

from ecg_tgdp.data.ingest import list_wfdb_records
from ecg_tgdp.data.records import RecordError
from ecg_tgdp.data.wfdb_io import read_header


class FetchError(Exception):
    """A download that cannot be done; the message says which database and why."""


@dataclass(frozen=True)
class PhysioNetDatabase:
    """A PhysioNet database: its slug on physionet.org and the folder it gets under data_root."""

    slug: str
    folder: str
    extra_files: tuple[str, ...] = ()


DATABASES: dict[str, PhysioNetDatabase] = {
    "mitdb": PhysioNetDatabase("mitdb", "mitdb"),
    "svdb": PhysioNetDatabase("svdb", "svdb"),
    "incartdb": PhysioNetDatabase("incartdb", "incartdb"),
    "ptb-xl": PhysioNetDatabase("ptb-xl", "ptbxl", ("ptbxl_database.csv", "scp_statements.csv")),
}


def incomplete_records(folder: Path) -> list[str]:
    """Records of a local WFDB database whose header is missing, malformed or whose signal is truncated."""
    try:
        paths = list_wfdb_records(folder)
    except FileNotFoundError:
        return ["<folder missing>"]
    except RecordError:  # a folder without any header
        return ["<no records>"]
    if not paths:
        return ["<no records>"]
    broken = []
    for path in paths:
        try:
            read_header(path)
        except RecordError:
            broken.append(path.name)
    return broken


def fetch_database(name: str, data_root: Path, *, ptbxl_rate_hz: int = 100) -> Path:
    """Download one database into data_root/<folder> unless a complete copy is already there.

    wfdb's `dl_database(overwrite=False)` skips files of the right size and resumes short
    ones, so an interrupted download can simply be run again.
    """
    if name not in DATABASES:
        raise FetchError(f"unknown database {name!r}; known: {', '.join(DATABASES)}")
    database = DATABASES[name]
    folder = Path(data_root) / database.folder
    if _is_complete(folder, database, ptbxl_rate_hz):
        print(f"{name}: complete copy in {folder}, nothing to download")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if database.extra_files:
            wfdb.dl_files(database.slug, str(folder), list(database.extra_files), overwrite=False)
        records = _records_at_rate(database.slug, ptbxl_rate_hz) if name == "ptb-xl" else "all"
        wfdb.dl_database(database.slug, str(folder), records=records, annotators="all", overwrite=False)
    except OSError as error:  # requests' ConnectionError and timeouts are OSErrors
        raise FetchError(
            f"{name}: cannot reach PhysioNet ({type(error).__name__}); download it on a connected "
            f"machine or point data_root at an existing copy"
        ) from None
    if not _is_complete(folder, database, ptbxl_rate_hz):
        raise FetchError(f"{name}: download finished but {folder} is still incomplete; run fetch again to resume")
    print(f"{name}: downloaded to {folder}")
    return folder


def _is_complete(folder: Path, database: PhysioNetDatabase, ptbxl_rate_hz: int) -> bool:
    if any(not (folder / extra).is_file() for extra in database.extra_files):
        return False
    if database.slug == "ptb-xl":
        return _ptbxl_complete(folder, ptbxl_rate_hz)
    return not incomplete_records(folder)


def _ptbxl_complete(folder: Path, rate_hz: int) -> bool:
    """Every record listed in ptbxl_database.csv has its header at the requested rate."""
    import pandas as pd

    column = "filename_lr" if rate_hz == 100 else "filename_hr"
    listed = pd.read_csv(folder / "ptbxl_database.csv", usecols=[column])[column]
    return all((folder / f"{name}.hea").is_file() for name in listed)


def _records_at_rate(slug: str, rate_hz: int) -> list[str]:
    """PTB-XL lists both rates in RECORDS; keep one so a 100 Hz user does not fetch 500 Hz files."""
    return [record for record in wfdb.get_record_list(slug) if record.startswith(f"records{rate_hz}/")]
