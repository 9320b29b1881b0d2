"""Import a national directory file: stream it into a temporary staging table in
batches (Core executemany, constant memory), then merge with a few set-based
statements (INSERT … SELECT … ON CONFLICT DO UPDATE, portable between SQLite ≥ 3.24
and PostgreSQL).

Re-importing the same file changes nothing (each upsert only touches rows that
differ); a newer file updates, adds, and retires the rows of the same source that
disappeared. Staging needs no lock on the main database; only the merge runs in a
write transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from directory.importers import mssante, rpps
from directory.importers.lines import (
    MAX_LINE_BYTES,
    HeaderError,
    check_header,
    read_lines,
    split_header,
)
from directory.importers.mssante import RowError
from directory.importers.report import ImportReport
from directory.models import MailboxStatus, Source
from mailserver.store.database import WRITER_OPTION

BATCH_ROWS = 5000
FORMATS = ("mssante", "rpps")

# (rows read, bytes read) after each batch; the CLI draws its progress bar with it.
Progress = Callable[[int, int], None]

_staging = MetaData()

STAGE_MAILBOXES = Table(
    "stage_mailboxes", _staging,
    Column("line", Integer, primary_key=True),
    *(Column(name, String) for name in (
        "address", "type", "display_name", "owner", "pp_id_type", "pp_identifier",
        "pp_national", "civility", "family_name", "given_name", "category_code",
        "category_label", "profession_code", "profession_label", "specialty_code",
        "specialty_label", "org_id_type", "org_identifier", "org_name", "trade_name",
        "address_lines", "locality", "postal_code", "department", "country", "service",
    )),
    Column("dematerialisation", Boolean),
    Column("document", Text),
    Index("ix_stage_mailboxes_address", "address", "line"),
    Index("ix_stage_mailboxes_pp", "pp_national", "line"),
    Index("ix_stage_mailboxes_org", "org_id_type", "org_identifier", "line"),
    prefixes=["TEMPORARY"],
)

PRACTITIONER_FIELDS = (
    "civility", "family_name", "given_name", "category_code", "category_label",
    "profession_code", "profession_label", "specialty_code", "specialty_label",
)

STAGE_PRACTITIONERS = Table(
    "stage_practitioners", _staging,
    Column("line", Integer, primary_key=True),
    *(Column(name, String) for name in ("national_id", "id_type", "identifier",
                                        *PRACTITIONER_FIELDS)),
    Index("ix_stage_practitioners_national", "national_id", "line"),
    prefixes=["TEMPORARY"],
)


class ImportFailed(ValueError):
    """The file cannot be imported at all (unreadable, wrong header)."""


def detect_format(names: list[str]) -> str:
    if "Adresse BAL" in names or "Type de BAL" in names:
        return "mssante"
    if names[:1] == rpps.FIRST_COLUMNS[:1] or "Identification nationale PP" in names:
        return "rpps"
    raise HeaderError(
        "unknown file: the header is neither the MSSanté extraction's (starting 'Type de "
        "BAL|Adresse BAL|…') nor the RPPS file's (starting \"Type d'identifiant PP|…\")"
    )


@contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    try:
        stream = path.open("rb")
    except OSError as error:
        raise ImportFailed(f"cannot read {path}: {error.strerror}") from error
    with stream:
        yield stream


async def import_file(
    engine: AsyncEngine,
    path: Path,
    *,
    file_format: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    with _open(path) as stream:
        first_line = stream.readline(MAX_LINE_BYTES)
        header = split_header(first_line)
        if not header or header == [""]:
            raise ImportFailed(f"{path} is empty: expected a header row")
        try:
            file_format = file_format or detect_format(header)
            if file_format == "mssante":
                check_header(header, mssante.COLUMNS, strict=True)
                unexpected: list[str] = []
            elif file_format == "rpps":
                unexpected = check_header(header, rpps.REQUIRED, strict=False)
            else:
                raise ImportFailed(f"unknown format {file_format!r} (mssante or rpps)")
        except HeaderError as error:
            kind = f"not a {file_format} file: " if file_format else ""
            raise ImportFailed(f"{path.name}: {kind}{error}") from error
        report = ImportReport(format=file_format)
        if unexpected:
            report.notes.append(f"{len(unexpected)} column(s) not used")
        async with engine.connect() as connection:
            table = STAGE_MAILBOXES if file_format == "mssante" else STAGE_PRACTITIONERS
            parse = mssante.parse_row if file_format == "mssante" else rpps.parse_row
            await connection.run_sync(_staging.drop_all, tables=[table], checkfirst=True)
            await connection.run_sync(_staging.create_all, tables=[table])
            await connection.commit()
            try:
                await _stage(connection, table, parse, stream, header, report,
                             progress, len(first_line))
                if connection.dialect.name == "postgresql":
                    await connection.execute(text(f"ANALYZE {table.name}"))
                    await connection.commit()
                await connection.execution_options(**{WRITER_OPTION: True})
                async with connection.begin():
                    if file_format == "mssante":
                        await _merge_mailboxes(connection, report)
                    else:
                        await _merge_practitioners(connection, report)
            finally:
                await connection.rollback()
                await connection.execution_options(**{WRITER_OPTION: False})
                await connection.run_sync(_staging.drop_all, tables=[table])
                await connection.commit()
    return report


async def _stage(
    connection: AsyncConnection,
    table: Table,
    parse: Callable[[int, dict[str, str], ImportReport], dict[str, Any]],
    stream: BinaryIO,
    header: list[str],
    report: ImportReport,
    progress: Progress | None,
    consumed: int,
) -> None:
    batch: list[dict[str, Any]] = []
    insert = table.insert()
    for line in read_lines(stream, len(header)):
        report.rows += 1
        consumed += line.size
        if line.fields is None:
            report.reject(line.number, line.error)
            continue
        try:
            batch.append(parse(line.number, dict(zip(header, line.fields, strict=True)), report))
        except RowError as error:
            report.reject(line.number, str(error))
            continue
        if len(batch) >= BATCH_ROWS:
            await connection.execute(insert, batch)
            await connection.commit()
            batch = []
            if progress:
                progress(report.rows, consumed)
    if batch:
        await connection.execute(insert, batch)
        await connection.commit()
    if progress:
        progress(report.rows, consumed)


async def _rows(connection: AsyncConnection, sql: str, **params: Any) -> list[Any]:
    return list((await connection.execute(text(sql), params)).all())


async def _count(connection: AsyncConnection, sql: str, **params: Any) -> int:
    return int((await connection.execute(text(sql), params)).scalar_one())


async def _changed(connection: AsyncConnection, sql: str, **params: Any) -> int:
    result = await connection.execute(text(sql), params)
    return int(result.rowcount)


def _differs(table: str, columns: tuple[str, ...]) -> str:
    return " OR ".join(f"{table}.{c} <> excluded.{c}" for c in columns)


# The SQL below interpolates only this module's constant column and table names.
PRACTITIONER_UPSERT = f"""
INSERT INTO practitioners (id_type, identifier, national_id, {", ".join(PRACTITIONER_FIELDS)},
                           source, active)
SELECT {{id_type}}, {{identifier}}, {{national}}, {", ".join(PRACTITIONER_FIELDS)}, :source, true
FROM {{stage}} s
WHERE s.{{national}} <> ''
  AND s.line = (SELECT min(f.line) FROM {{stage}} f WHERE f.{{national}} = s.{{national}})
ON CONFLICT (national_id) DO UPDATE SET
  {", ".join(f"{c} = excluded.{c}" for c in PRACTITIONER_FIELDS)}, active = true
WHERE {_differs("practitioners", PRACTITIONER_FIELDS)} OR NOT practitioners.active
"""  # noqa: S608

ORGANISATION_FIELDS = ("name", "trade_name", "address_lines", "locality", "postal_code",
                       "department", "country")

ORGANISATION_UPSERT = f"""
INSERT INTO organisations (id_type, identifier, {", ".join(ORGANISATION_FIELDS)}, source)
SELECT org_id_type, org_identifier, org_name, trade_name, address_lines, locality,
       postal_code, department, country, :source
FROM stage_mailboxes s
WHERE s.org_identifier <> ''
  AND s.line = (SELECT min(f.line) FROM stage_mailboxes f
                WHERE f.org_id_type = s.org_id_type AND f.org_identifier = s.org_identifier)
ON CONFLICT (id_type, identifier) DO UPDATE SET
  {", ".join(f"{c} = excluded.{c}" for c in ORGANISATION_FIELDS)}
WHERE {_differs("organisations", ORGANISATION_FIELDS)}
"""  # noqa: S608

MAILBOX_UPSERT = """
INSERT INTO mailboxes (address, type, display_name, owner, status, practitioner_id,
                       organisation_id, service, red_list, dematerialisation, source)
SELECT s.address, s.type, s.display_name, s.owner, :active, p.id, o.id, s.service, false,
       s.dematerialisation, :source
FROM stage_mailboxes s
LEFT JOIN practitioners p ON p.national_id = s.pp_national AND s.pp_national <> ''
LEFT JOIN organisations o ON o.id_type = s.org_id_type AND o.identifier = s.org_identifier
                         AND s.org_identifier <> ''
WHERE true
ON CONFLICT (address) DO UPDATE SET
  display_name = excluded.display_name, owner = excluded.owner,
  practitioner_id = excluded.practitioner_id, organisation_id = excluded.organisation_id,
  service = excluded.service, dematerialisation = excluded.dematerialisation,
  status = CASE WHEN mailboxes.status = :retired THEN :active ELSE mailboxes.status END
WHERE mailboxes.display_name <> excluded.display_name
   OR coalesce(mailboxes.owner, '') <> coalesce(excluded.owner, '')
   OR coalesce(mailboxes.practitioner_id, 0) <> coalesce(excluded.practitioner_id, 0)
   OR coalesce(mailboxes.organisation_id, 0) <> coalesce(excluded.organisation_id, 0)
   OR mailboxes.service <> excluded.service
   OR mailboxes.dematerialisation <> excluded.dematerialisation
   OR mailboxes.status = :retired
"""

SEARCH_UPSERT = """
INSERT INTO directory_search (mailbox_id, document)
SELECT m.id, s.document FROM stage_mailboxes s JOIN mailboxes m ON m.address = s.address
WHERE true
ON CONFLICT (mailbox_id) DO UPDATE SET document = excluded.document
WHERE directory_search.document <> excluded.document
"""

LATER_DUPLICATE = """
EXISTS (SELECT 1 FROM stage_mailboxes f
        WHERE f.address = stage_mailboxes.address AND f.line < stage_mailboxes.line)
"""


async def _merge_mailboxes(connection: AsyncConnection, report: ImportReport) -> None:
    source = Source.MSSANTE.value
    # DESIGN.md: a few addresses appear twice; keep the first, report the others.
    for line, address, first in await _rows(connection, f"""
            SELECT line, address, (SELECT min(f.line) FROM stage_mailboxes f
                                   WHERE f.address = stage_mailboxes.address)
            FROM stage_mailboxes WHERE {LATER_DUPLICATE} ORDER BY line"""):  # noqa: S608
        report.reject(line, f"address {address} already on line {first}: this line is ignored")
    await connection.execute(
        text(f"DELETE FROM stage_mailboxes WHERE {LATER_DUPLICATE}")  # noqa: S608
    )
    # A mailbox's type never changes (issue 3): such a row is refused, not applied.
    for line, address, old, new in await _rows(connection, """
            SELECT s.line, s.address, m.type, s.type FROM stage_mailboxes s
            JOIN mailboxes m ON m.address = s.address WHERE m.type <> s.type ORDER BY s.line"""):
        report.reject(line, f"{address} is a {old} mailbox here; a mailbox's type never "
                            f"changes (the file says {new})")
    await connection.execute(text("""
        DELETE FROM stage_mailboxes WHERE EXISTS (
            SELECT 1 FROM mailboxes m WHERE m.address = stage_mailboxes.address
            AND m.type <> stage_mailboxes.type)"""))
    report.accepted = await _count(connection, "SELECT count(*) FROM stage_mailboxes")
    if report.accepted == 0:
        report.notes.append("no valid row: nothing imported, nothing retired")
        return
    await connection.execute(
        text(PRACTITIONER_UPSERT.format(stage="stage_mailboxes", id_type="pp_id_type",
                                        identifier="pp_identifier", national="pp_national")),
        {"source": source},
    )
    await connection.execute(text(ORGANISATION_UPSERT), {"source": source})
    report.added = await _count(connection, """
        SELECT count(*) FROM stage_mailboxes s
        WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.address = s.address)""")
    changed = await _changed(connection, MAILBOX_UPSERT, source=source,
                             active=MailboxStatus.ACTIVE.value,
                             retired=MailboxStatus.RETIRED.value)
    report.updated = changed - report.added
    report.unchanged = report.accepted - changed
    report.retired = await _changed(connection, """
        UPDATE mailboxes SET status = :retired
        WHERE source = :source AND status <> :retired
          AND NOT EXISTS (SELECT 1 FROM stage_mailboxes s WHERE s.address = mailboxes.address)
        """, source=source, retired=MailboxStatus.RETIRED.value)
    await connection.execute(text(SEARCH_UPSERT))


async def _merge_practitioners(connection: AsyncConnection, report: ImportReport) -> None:
    source = Source.RPPS.value
    report.accepted = await _count(
        connection, "SELECT count(DISTINCT national_id) FROM stage_practitioners")
    if report.accepted == 0:
        report.notes.append("no valid row: nothing imported, nothing retired")
        return
    report.added = await _count(connection, """
        SELECT count(DISTINCT s.national_id) FROM stage_practitioners s
        WHERE NOT EXISTS (SELECT 1 FROM practitioners p WHERE p.national_id = s.national_id)""")
    changed = await _changed(
        connection,
        PRACTITIONER_UPSERT.format(stage="stage_practitioners", id_type="id_type",
                                   identifier="identifier", national="national_id"),
        source=source,
    )
    report.updated = changed - report.added
    report.unchanged = report.accepted - changed
    report.retired = await _changed(connection, """
        UPDATE practitioners SET active = false
        WHERE source = :source AND active
          AND NOT EXISTS (SELECT 1 FROM stage_practitioners s
                          WHERE s.national_id = practitioners.national_id)
        """, source=source)
