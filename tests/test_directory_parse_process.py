"""The parsing process used for big national files (directory/importers/parse_process.py):
the same result as parsing in the importing process, and a clear error, never a
hang, when it fails or dies."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from directory.importers import ImportFailed, ImportReport, import_file
from directory.importers.batches import parse_batches
from directory.importers.lines import split_header
from directory.importers.mssante import MailboxRow
from directory.importers.parse_process import Job, ParseProcess, ParseProcessError
from directory.importers.rpps import REQUIRED
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade
from tests.conftest import _admin

DATA = Path(__file__).parent / "data" / "directory"
V1 = DATA / "mssante_v1.csv"
V2 = DATA / "mssante_v2.csv"
RPPS = DATA / "rpps_personne_activite.txt"

TABLES = {
    "mailboxes": "SELECT address, type, display_name, owner, status, service, "
                 "dematerialisation, source, import_digest FROM mailboxes ORDER BY address",
    "practitioners": "SELECT * FROM practitioners ORDER BY national_id",
    "organisations": "SELECT * FROM organisations ORDER BY id_type, identifier",
    "search": "SELECT m.address, s.document FROM directory_search s "
              "JOIN mailboxes m ON m.id = s.mailbox_id ORDER BY m.address",
}


def _summary(report: ImportReport) -> tuple[Any, ...]:
    return (report.rows, report.accepted, report.added, report.updated, report.unchanged,
            report.retired, report.rejected_count, report.warning_count,
            report.sorted_rejected(), sorted(report.warnings, key=lambda p: p.line))


def _import_all(url: str, in_process: bool) -> tuple[list[Any], dict[str, list[Any]]]:
    async def go() -> tuple[list[Any], dict[str, list[Any]]]:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            reports = [_summary(await import_file(engine, path, parse_process=in_process))
                       for path in (V1, V2, V1, RPPS)]
            async with engine.connect() as connection:
                tables = {name: [tuple(row) for row in
                                 (await connection.exec_driver_sql(sql)).all()]
                          for name, sql in TABLES.items()}
            return reports, tables
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture
def other_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same backend as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'other.sqlite3'}"
        return
    name = f"mss_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_parse_process_gives_the_same_result(database_url: str, other_url: str) -> None:
    threaded = _import_all(database_url, in_process=False)
    processed = _import_all(other_url, in_process=True)
    assert processed[0] == threaded[0]
    assert processed[1]["mailboxes"] and processed[1] == threaded[1]


def _report() -> ImportReport:
    return ImportReport(format="mssante")


def test_batches_cross_the_pipe_unchanged() -> None:
    header = V1.open("rb").readline()
    width = len(split_header(header))
    with V1.open("rb") as stream:
        stream.readline()
        local_report = _report()
        local = list(parse_batches(stream, "mssante", width, list(range(width)),
                                   local_report, batch_rows=3, consumed=len(header)))
    remote_report = _report()
    child = ParseProcess(Job(str(V1), "mssante", width, list(range(width)), len(header), 3),
                         remote_report)
    try:
        remote = list(iter(child.next_batch, None))
    finally:
        child.close()
    assert remote == local and len(remote) > 2
    assert {type(row) for batch in remote for row in batch.rows} == {MailboxRow}
    assert remote_report.sorted_rejected() == local_report.sorted_rejected()
    assert remote_report.warnings == local_report.warnings


def test_a_failing_parse_process_is_a_clear_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    job = Job(str(tmp_path / "gone.csv"), "mssante", 31, list(range(31)), 0, 10)
    child = ParseProcess(job, _report())
    try:
        with pytest.raises(ParseProcessError, match=r"failed: FileNotFoundError.*gone\.csv"):
            child.next_batch()
    finally:
        child.close()
    # An unknown format (a programming error) too: the message names it.
    child = ParseProcess(Job(str(RPPS), "nope", len(REQUIRED), [0], 0, 10), _report())
    try:
        with pytest.raises(ParseProcessError, match=r"KeyError: 'nope' \(batches\.py, line"):
            child.next_batch()
    finally:
        child.close()
    assert "Traceback" not in capfd.readouterr().err  # the message is the error


def _big_file(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """More than the pipe holds (PIPE_BYTES): the child is still writing when killed."""
    big = tmp_path / "big.csv"
    lines = V1.read_bytes().splitlines(keepends=True)
    big.write_bytes(lines[0] + lines[1] * 50_000)
    return big, lines


def test_a_killed_parse_process_is_an_error_not_a_hang(tmp_path: Path) -> None:
    big, lines = _big_file(tmp_path)
    width = len(split_header(lines[0]))
    child = ParseProcess(Job(str(big), "mssante", width, list(range(width)),
                             len(lines[0]), 10), _report())
    try:
        assert child.next_batch() is not None
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(ParseProcessError, match="stopped unexpectedly"):
            while child.next_batch() is not None:
                pass
    finally:
        child.close()


def test_import_reports_a_dead_parse_process_as_import_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from directory.importers import parse_process

    original = ParseProcess.next_batch
    calls = 0

    def dying(self: ParseProcess) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            os.kill(self.pid, signal.SIGKILL)
        return original(self)

    monkeypatch.setattr(parse_process.ParseProcess, "next_batch", dying)
    from directory.importers import load

    monkeypatch.setattr(load, "BATCH_ROWS", 2)

    async def go() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
        try:
            await upgrade(engine)
            with pytest.raises(ImportFailed, match="parsing process"):
                await import_file(engine, _big_file(tmp_path)[0], parse_process=True)
        finally:
            await engine.dispose()

    asyncio.run(go())
