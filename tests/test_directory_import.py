"""Importing the national directory files (fixtures in tests/data/directory, real
formats, synthetic people) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from directory.importers import ImportFailed, ImportReport, import_file
from directory.importers.mssante import COLUMNS
from directory.models import MailboxStatus, MailboxType
from directory.search import DirectorySearch
from directory.service import Directory
from mailserver.auth import hash_password, verify_password
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade

DATA = Path(__file__).parent / "data" / "directory"
V1 = DATA / "mssante_v1.csv"
V2 = DATA / "mssante_v2.csv"
RPPS = DATA / "rpps_personne_activite.txt"

T = TypeVar("T")


def with_db(url: str, body: Callable[..., Awaitable[T]]) -> T:
    """Run ``body(engine, directory, search)`` on a migrated database."""

    async def go() -> T:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            return await body(engine, Directory(engine), DirectorySearch(engine))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def reasons(report: ImportReport) -> dict[int, str]:
    return {p.line: p.reason for p in report.rejected}


def test_extraction_is_loaded_and_broken_lines_reported(database_url: str) -> None:
    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        progress: list[tuple[int, int]] = []
        report = await import_file(engine, V1, progress=lambda r, b: progress.append((r, b)))
        dupont = await search.entry("Jean.Dupont@chu-nantes.mssante.example")
        org = await directory.lookup("cardiologie@chu-nantes.mssante.example")
        app = await directory.lookup("dpi@chu-nantes.mssante.example")
        second = await search.entry("j.dupont.urgences@chu-nantes.mssante.example")
        unknown_code = await search.entry("alex.martin@pro.mssante.example")
        return report, progress, dupont, org, app, second, unknown_code

    report, progress, dupont, org, app, second, unknown_code = with_db(database_url, body)
    assert report.format == "mssante"
    assert (report.rows, report.accepted, report.added) == (16, 10, 10)
    rejected = reasons(report)
    assert sorted(rejected) == [6, 10, 11, 13, 14, 17]
    assert "5 fields where the header has 31" in rejected[6]
    assert "unknown mailbox type 'XYZ'" in rejected[10]
    assert "not-an-address" in rejected[11]
    assert "without a practitioner identifier" in rejected[13]
    assert "already on line 2" in rejected[14]  # duplicated address, differing by case
    assert "not UTF-8: byte 0xE7" in rejected[17]
    assert [(w.line, "'77'" in w.reason) for w in report.warnings] == [(12, True)]
    assert progress[-1][0] == 16 and progress[-1][1] == V1.stat().st_size

    assert dupont is not None and dupont.type is MailboxType.PER
    assert dupont.display_name == "Jean DUPONT" and dupont.service == "Cardiologie"
    assert dupont.practitioner is not None and dupont.practitioner.national_id == "810001000001"
    assert dupont.practitioner.specialty_label == "Cardiologie et maladies vasculaires"
    assert dupont.organisation is not None and dupont.organisation.name == "CHU DE NANTES"
    assert dupont.organisation.address_lines == (
        "Bâtiment Le Tourville", "5 bis Allée de l'Île Gloriette")
    assert dupont.organisation.locality == "44093 NANTES CEDEX 1"
    assert dupont.organisation.department == "44" and dupont.dematerialisation
    # the same practitioner owns a second mailbox
    assert second is not None and second.practitioner == dupont.practitioner
    assert org is not None and org.type is MailboxType.ORG and org.owner == "1449999991"
    assert app is not None and app.type is MailboxType.APP
    # imported mailboxes exist but cannot log in until an operator sets a password
    assert org.can_receive and not org.can_log_in
    assert unknown_code is not None and unknown_code.practitioner is not None
    assert unknown_code.practitioner.profession_label == "Bio-informaticien"


def test_reimport_changes_nothing_and_newer_file_updates_adds_retires(database_url: str) -> None:
    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        await import_file(engine, V1)
        await directory.set_password_hash("jean.dupont@chu-nantes.mssante.example",
                                          hash_password("a-password-123"))
        await directory.add_mailbox("local@hopital.example", MailboxType.PER,
                                    password_hash=None, display_name="Local Person")
        again = await import_file(engine, V1)
        newer = await import_file(engine, V2)
        return (again, newer,
                await directory.lookup("marc.dupond@pro.mssante.example"),
                await search.entry("helene.lefevre@pro.mssante.example"),
                await directory.lookup("sophie.bernard@chu-nantes.mssante.example"),
                await directory.lookup("jean.dupont@chu-nantes.mssante.example"),
                await directory.lookup("local@hopital.example"),
                await search.search("dupond"),
                await import_file(engine, V1))

    again, newer, dupond, lefevre, bernard, dupont, local, found, back = with_db(
        database_url, body)
    assert (again.added, again.updated, again.unchanged, again.retired) == (0, 0, 10, 0)
    assert (newer.added, newer.updated, newer.unchanged, newer.retired) == (1, 1, 8, 1)
    assert dupond is not None and dupond.status is MailboxStatus.RETIRED  # kept, not deleted
    assert not dupond.can_receive
    assert found.entries == []  # retired mailboxes are not searchable
    assert lefevre is not None and lefevre.service == "Consultations"
    assert bernard is not None and bernard.type is MailboxType.PER
    # the operator's password survives imports; local mailboxes are never retired
    assert dupont is not None and dupont.password_hash is not None
    assert verify_password(dupont.password_hash, "a-password-123")
    assert local is not None and local.status is MailboxStatus.ACTIVE
    # the mailbox is back in the older file: it is active again, Bernard retired
    assert (back.added, back.retired) == (0, 1)


def test_a_mailbox_type_never_changes(database_url: str) -> None:
    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        await directory.add_mailbox("cardiologie@chu-nantes.mssante.example", MailboxType.PER,
                                    password_hash=None)
        report = await import_file(engine, V1)
        return report, await directory.lookup("cardiologie@chu-nantes.mssante.example")

    report, record = with_db(database_url, body)
    assert "is a PER mailbox here" in reasons(report)[7]
    assert report.accepted == 9
    assert record is not None and record.type is MailboxType.PER


def test_rpps_file_adds_updates_and_retires_practitioners(
    database_url: str, tmp_path: Path
) -> None:
    shorter = tmp_path / "rpps_newer.txt"
    lines = RPPS.read_bytes().splitlines(keepends=True)
    shorter.write_bytes(b"".join(lines[:3]))  # header + Dupont's two activities

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        await import_file(engine, V1)
        first = await import_file(engine, RPPS)
        same = await import_file(engine, RPPS)
        newer = await import_file(engine, shorter)
        return first, same, newer, await search.entry("jean.dupont@chu-nantes.mssante.example")

    first, same, newer, dupont = with_db(database_url, body)
    assert first.format == "rpps"
    assert sorted(reasons(first)) == [4, 6, 8]
    assert "without a name" in reasons(first)[6]
    assert "not UTF-8" in reasons(first)[8]
    assert [w.line for w in first.warnings] == [7]  # profession code 99
    # Dupont (already known from the extraction, two activity rows) is updated;
    # Garcia and Nguyen are added
    assert (first.accepted, first.added, first.updated) == (3, 2, 1)
    assert (same.added, same.updated, same.unchanged, same.retired) == (0, 0, 3, 0)
    assert newer.retired == 2  # Garcia and Nguyen came from RPPS and disappeared
    assert dupont.practitioner.civility == "Docteur"
    assert dupont.practitioner.given_name == "JEAN"


@pytest.mark.parametrize(("change", "message"), [
    (lambda cols: [c for c in cols if c != "NL4TYPEVOIE structure BAL"],
     "missing column(s): 'NL4TYPEVOIE structure BAL'"),
    (lambda cols: [*cols, "Téléphone"], "unexpected column(s): 'Téléphone'"),
    (lambda cols: ["Nom", "Prénom"], "neither the MSSanté extraction's"),
])
def test_header_is_checked_by_name(
    tmp_path: Path, change: Callable[[list[str]], list[str]], message: str
) -> None:
    path = tmp_path / "extraction.csv"
    path.write_text("|".join(change(list(COLUMNS))) + "\n", encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        with pytest.raises(ImportFailed) as failure:
            await import_file(engine, path)
        return str(failure.value)

    assert message in with_db(url, body)


def test_columns_are_found_by_name_not_position(tmp_path: Path) -> None:
    header, *rows = V2.read_text(encoding="utf-8").splitlines()
    order = list(reversed(range(len(COLUMNS))))
    path = tmp_path / "reordered.csv"
    path.write_text("\n".join("|".join(line.split("|")[i] for i in order)
                              for line in (header, *rows)) + "\n", encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        report = await import_file(engine, path)
        return report, await search.entry("sophie.bernard@chu-nantes.mssante.example")

    report, bernard = with_db(url, body)
    assert report.accepted == 10 and report.rejected_count == 0
    assert bernard.practitioner.profession_label == "Sage-Femme"


def test_bom_blank_lines_overlong_line_and_empty_file(tmp_path: Path) -> None:
    header, first, *_ = V2.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "extraction.csv"
    path.write_bytes(b"\xef\xbb\xbf" + header.encode() + b"\r\n" + first.encode() + b"\r\n\r\n"
                     + b"PER|" + b"x" * 70_000 + b"\r\n" + first.encode() + b"\r\n")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    only_header = tmp_path / "header.csv"
    only_header.write_text(header + "\n", encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        report = await import_file(engine, path)
        with pytest.raises(ImportFailed) as failure:
            await import_file(engine, empty)
        nothing = await import_file(engine, only_header)
        return report, str(failure.value), nothing, await directory.lookup(
            "jean.dupont@chu-nantes.mssante.example")

    report, failure, nothing, dupont = with_db(url, body)
    assert report.accepted == 1
    assert reasons(report) == {4: "line longer than 65536 bytes",
                               5: "address jean.dupont@chu-nantes.mssante.example already "
                                  "on line 2: this line is ignored"}
    assert "is empty" in failure
    # a file without rows retires nothing
    assert nothing.retired == 0 and nothing.notes == ["no valid row: nothing imported, "
                                                      "nothing retired"]
    assert dupont is not None and dupont.status.value == "active"


# Every row version of the directory's tables: PostgreSQL's xmin changes with any
# write to a row; SQLite's data_version with any commit that changed the file.
_ROW_VERSIONS = {
    "postgresql": [f"SELECT {key}, xmin::text FROM {table} ORDER BY {key}"  # noqa: S608
                   for table, key in (("mailboxes", "id"), ("practitioners", "id"),
                                      ("organisations", "id"),
                                      ("directory_search", "mailbox_id"))],
    "sqlite": ["PRAGMA data_version"],
}


async def _versions(connection) -> list[object]:  # type: ignore[no-untyped-def]
    versions = [(await connection.exec_driver_sql(sql)).all()
                for sql in _ROW_VERSIONS[connection.dialect.name]]
    await connection.rollback()  # no snapshot kept between two probes
    return versions


def test_unchanged_reimport_writes_no_row(database_url: str) -> None:
    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        await import_file(engine, V1)
        async with engine.connect() as connection:  # the same connection sees data_version
            before = await _versions(connection)
            again = await import_file(engine, V1)
            after = await _versions(connection)
            await directory.add_mailbox("local@hopital.example", MailboxType.PER,
                                        password_hash=None)
            written = await _versions(connection)
        return before, again, after, written

    before, again, after, written = with_db(database_url, body)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 10)
    assert before == after
    assert written != after  # the probe does see a write


def test_duplicates_across_batches_and_digests(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 3 rows: the duplicated address (lines 2 and 14 of V1) falls in
    # another batch than its first line, and every statement runs several times.
    from directory.importers import load

    monkeypatch.setattr(load, "BATCH_ROWS", 3)

    async def body(engine, directory, search):  # type: ignore[no-untyped-def]
        first = await import_file(engine, V1)
        async with engine.connect() as connection:
            digests = dict((await connection.exec_driver_sql(
                "SELECT address, import_digest FROM mailboxes")).all())
            # A mailbox written before digests existed (NULL) is rewritten once.
            await connection.exec_driver_sql(
                "UPDATE mailboxes SET import_digest = NULL "
                "WHERE address = 'dpi@chu-nantes.mssante.example'")
            await connection.commit()
        second = await import_file(engine, V1)
        third = await import_file(engine, V1)
        return first, digests, second, third

    first, digests, second, third = with_db(database_url, body)
    assert (first.added, first.rejected_count) == (10, 6)
    assert "already on line 2" in reasons(first)[14]
    assert all(len(digests[address] or "") == 32 for address in digests)
    assert (second.updated, second.unchanged) == (1, 9)
    assert (third.updated, third.unchanged) == (0, 10)
