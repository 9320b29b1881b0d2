"""Import a national directory file, streamed in batches of BATCH_ROWS lines.

A worker thread parses the next batch while the current one is merged, so memory
stays constant and both cores work. Each batch is merged in its own short write
transaction (the mail pipeline keeps running between batches):

1. one query fetches what the database already holds for the batch's keys;
2. rows that are new or differ are written with executemany upserts
   (``INSERT … ON CONFLICT DO UPDATE``, SQLite ≥ 3.24 and PostgreSQL); identical
   rows are not written at all, so re-importing the same file changes nothing;
3. the batch's keys go into a temporary ``import_seen`` table, which finds the
   addresses that appear twice in the file and, once the whole file is read, the
   rows of this source that disappeared: those are retired, never deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from directory.importers import mssante, rpps
from directory.importers.lines import (
    MAX_LINE_BYTES,
    HeaderError,
    check_header,
    read_lines,
    split_header,
)
from directory.importers.mssante import MailboxRow, RowError
from directory.importers.report import ImportReport
from directory.importers.rpps import PractitionerRow
from directory.models import (
    MailboxStatus,
    Source,
)
from mailserver.store.database import WRITER_OPTION

BATCH_ROWS = 5000
CACHE_KIB = 32 * 1024  # SQLite page cache of the importing connection
TEMP_CACHE_KIB = 16 * 1024  # and of its temporary tables
FORMATS = ("mssante", "rpps")

# (rows read, bytes read) after each batch; the CLI draws its progress bar with it.
Progress = Callable[[int, int], None]
Row = TypeVar("Row", MailboxRow, PractitionerRow)

_temporary = MetaData()
SEEN = Table(
    "import_seen", _temporary,
    Column("key", String, primary_key=True),
    Column("line", Integer),
    prefixes=["TEMPORARY"],
)

PRACTITIONER_FIELDS = (
    "id_type", "identifier", "civility", "family_name", "given_name", "category_code",
    "category_label", "profession_code", "profession_label", "specialty_code",
    "specialty_label",
)
ORGANISATION_FIELDS = ("name", "trade_name", "address_lines", "locality", "postal_code",
                       "department", "country")

# Statements are written with "?" and numbered ($1, $2 …) for PostgreSQL.
PRACTITIONER_UPSERT = f"""
INSERT INTO practitioners (national_id, {", ".join(PRACTITIONER_FIELDS)}, source, active)
VALUES (?, {", ".join("?" for _ in PRACTITIONER_FIELDS)}, ?, ?)
ON CONFLICT (national_id) DO UPDATE SET
  {", ".join(f"{c} = excluded.{c}" for c in PRACTITIONER_FIELDS)}, active = excluded.active
"""  # noqa: S608 (constant column names only)
ORGANISATION_UPSERT = f"""
INSERT INTO organisations (id_type, identifier, {", ".join(ORGANISATION_FIELDS)}, source)
VALUES (?, ?, {", ".join("?" for _ in ORGANISATION_FIELDS)}, ?)
ON CONFLICT (id_type, identifier) DO UPDATE SET
  {", ".join(f"{c} = excluded.{c}" for c in ORGANISATION_FIELDS)}
"""  # noqa: S608 (constant column names only)
MAILBOX_UPSERT = """
INSERT INTO mailboxes (address, type, display_name, owner, status, service, red_list,
                       dematerialisation, source, practitioner_id, organisation_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,
        (SELECT id FROM practitioners WHERE national_id = ?),
        (SELECT id FROM organisations WHERE id_type = ? AND identifier = ?))
ON CONFLICT (address) DO UPDATE SET
  display_name = excluded.display_name, owner = excluded.owner, status = excluded.status,
  service = excluded.service, dematerialisation = excluded.dematerialisation,
  practitioner_id = excluded.practitioner_id, organisation_id = excluded.organisation_id
"""
# One statement for many rows: SQLite's FTS5 flushes its pending terms at each
# statement (savepoint), so a row-by-row executemany would be several times slower.
SEARCH_UPSERT_ROWS = 1000
SEARCH_UPSERT = """
WITH d (address, document) AS (VALUES {rows})
INSERT INTO directory_search (mailbox_id, document)
SELECT m.id, d.document FROM d JOIN mailboxes m ON m.address = d.address
WHERE true
ON CONFLICT (mailbox_id) DO UPDATE SET document = excluded.document
"""
SEEN_INSERT = "INSERT INTO import_seen (key, line) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"
SEEN_LINES = "SELECT key, line FROM import_seen WHERE key IN ({keys})"
PRESENT_MAILBOXES = "SELECT address FROM mailboxes WHERE address IN ({keys})"
KNOWN_MAILBOXES = """
SELECT m.address, m.type, m.display_name, m.owner, m.status, m.service, m.dematerialisation,
       p.national_id, o.id_type, o.identifier, s.document
FROM mailboxes m
LEFT JOIN practitioners p ON p.id = m.practitioner_id
LEFT JOIN organisations o ON o.id = m.organisation_id
LEFT JOIN directory_search s ON s.mailbox_id = m.id
WHERE m.address IN ({keys})
"""
KNOWN_PRACTITIONERS = f"""
SELECT national_id, active, {", ".join(PRACTITIONER_FIELDS)} FROM practitioners
WHERE national_id IN ({{keys}})
"""  # noqa: S608 (constant column names only)
KNOWN_ORGANISATIONS = f"""
SELECT id_type, identifier, {", ".join(ORGANISATION_FIELDS)} FROM organisations
WHERE (id_type, identifier) IN (VALUES {{keys}})
"""  # noqa: S608 (constant column names only)
RETIRE_MAILBOXES = """
UPDATE mailboxes SET status = ?
WHERE source = ? AND status <> ?
  AND NOT EXISTS (SELECT 1 FROM import_seen s WHERE s.key = mailboxes.address)
"""
RETIRE_PRACTITIONERS = """
UPDATE practitioners SET active = ?
WHERE source = ? AND active = ?
  AND NOT EXISTS (SELECT 1 FROM import_seen s WHERE s.key = practitioners.national_id)
"""


class ImportFailed(ValueError):
    """The file cannot be imported at all (unreadable, wrong header)."""


def detect_format(names: list[str]) -> str:
    if "Adresse BAL" in names or "Type de BAL" in names:
        return "mssante"
    if "Identification nationale PP" in names:
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


class _Sql:
    """Runs the "?" statements above with the connection's placeholder style."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self.numbered = connection.dialect.paramstyle.startswith("numeric")
        self._cache: dict[str, str] = {}

    def _render(self, sql: str) -> str:
        rendered = self._cache.get(sql)
        if rendered is None:
            if self.numbered:
                parts = sql.split("?")
                rendered = parts[0] + "".join(f"${n}{part}" for n, part in
                                              enumerate(parts[1:], start=1))
            else:
                rendered = sql
            self._cache[sql] = rendered
        return rendered

    async def many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Run ``sql`` for each row; the rows changed, or -1 when the driver cannot say."""
        if not rows:
            return 0
        result = await self.connection.exec_driver_sql(self._render(sql), list(rows))
        return int(result.rowcount)

    async def where_in(self, sql: str, keys: Sequence[Any]) -> list[Any]:
        """Rows of ``sql`` whose "{keys}" becomes the placeholders of ``keys`` (strings,
        or tuples for row values). Raw SQL: compiling thousands of bound parameters
        through the expression language costs more than running the query."""
        if not keys:
            return []
        if isinstance(keys[0], tuple):
            width = len(keys[0])
            marks = ", ".join("(" + ", ".join("?" * width) + ")" for _ in keys)
            params = tuple(value for key in keys for value in key)
        else:
            marks, params = ", ".join("?" for _ in keys), tuple(keys)
        result = await self.connection.exec_driver_sql(
            self._render(sql.format(keys=marks)), params)
        return list(result.all())

    async def one(self, sql: str, params: tuple[Any, ...]) -> int:
        result = await self.connection.exec_driver_sql(self._render(sql), params)
        return int(result.rowcount)


async def import_file(
    engine: AsyncEngine,
    path: Path,
    *,
    file_format: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import ``path`` (format guessed from the header unless given)."""
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
                wanted = mssante.COLUMNS
            elif file_format == "rpps":
                unexpected = check_header(header, rpps.REQUIRED, strict=False)
                wanted = rpps.REQUIRED
            else:
                raise ImportFailed(f"unknown format {file_format!r} (mssante or rpps)")
        except HeaderError as error:
            kind = f"not a {file_format} file: " if file_format else ""
            raise ImportFailed(f"{path.name}: {kind}{error}") from error
        report = ImportReport(format=file_format)
        if unexpected:
            report.notes.append(f"{len(unexpected)} column(s) not used")
        positions = [header.index(name) for name in wanted]
        async with engine.connect() as connection:
            await _prepare(connection)
            try:
                sql = _Sql(connection)
                if file_format == "mssante":
                    merger = _MailboxMerger(sql, report)
                    await _run(connection, mssante.parse_row, merger.merge, stream,
                               len(header), positions, report, progress, len(first_line))
                    async with connection.begin():
                        await merger.retire()
                    await _analyze(connection, ("mailboxes", "practitioners", "organisations",
                                                "directory_search"))
                else:
                    practitioners = _PractitionerMerger(sql, report)
                    await _run(connection, rpps.parse_row, practitioners.merge, stream,
                               len(header), positions, report, progress, len(first_line))
                    async with connection.begin():
                        await practitioners.retire()
                    await _analyze(connection, ("practitioners",))
            finally:
                await connection.rollback()
                await _cleanup(connection)
    return report


async def _prepare(connection: AsyncConnection) -> None:
    if connection.dialect.name == "sqlite":
        # A larger page cache for this connection only (RSS stays far under 300 MB).
        await connection.exec_driver_sql(f"PRAGMA cache_size = -{CACHE_KIB}")
        # import_seen lives in the temporary database, whose cache is separate.
        await connection.exec_driver_sql(f"PRAGMA temp.cache_size = -{TEMP_CACHE_KIB}")
    await connection.run_sync(_temporary.drop_all, checkfirst=True)
    await connection.run_sync(_temporary.create_all)
    await connection.commit()
    # Every transaction of this connection writes: take the write lock at BEGIN.
    await connection.execution_options(**{WRITER_OPTION: True})


async def _analyze(connection: AsyncConnection, tables: tuple[str, ...]) -> None:
    """Fresh planner statistics after a bulk change (PostgreSQL plans joins from them)."""
    if connection.dialect.name == "postgresql":
        async with connection.begin():
            for table in tables:
                await connection.exec_driver_sql(f"ANALYZE {table}")


async def _cleanup(connection: AsyncConnection) -> None:
    await connection.execution_options(**{WRITER_OPTION: False})
    await connection.run_sync(_temporary.drop_all)
    await connection.commit()
    if connection.dialect.name == "sqlite":  # back to the pool as it was
        await connection.exec_driver_sql("PRAGMA cache_size = -2000")
        await connection.exec_driver_sql("PRAGMA temp.cache_size = -2000")


async def _run(
    connection: AsyncConnection,
    parse: Callable[[int, list[str], ImportReport], Row],
    merge: Callable[[list[Row]], Any],
    stream: BinaryIO,
    width: int,
    positions: list[int],
    report: ImportReport,
    progress: Progress | None,
    consumed: int,
) -> None:
    """Parse the next batch in a worker thread while the current one is merged."""
    lines = read_lines(stream, width)
    read = consumed

    def next_batch() -> list[Row]:
        nonlocal read
        batch: list[Row] = []
        for line in lines:
            report.rows += 1
            read += line.size
            if line.fields is None:
                report.reject(line.number, line.error)
                continue
            try:
                batch.append(parse(line.number, [line.fields[p] for p in positions], report))
            except RowError as error:
                report.reject(line.number, str(error))
                continue
            if len(batch) >= BATCH_ROWS:
                break
        return batch

    async def merge_batch(batch: list[Row]) -> None:
        async with connection.begin():
            await merge(batch)

    batch = await asyncio.to_thread(next_batch)
    while batch:
        merging = asyncio.ensure_future(merge_batch(batch))
        try:
            batch = await asyncio.to_thread(next_batch)
        finally:
            await merging
        if progress:
            progress(report.rows, read)
    if progress:
        progress(report.rows, read)


def _practitioner_values(row: MailboxRow | PractitionerRow) -> tuple[str, ...]:
    if isinstance(row, MailboxRow):
        return row.practitioner
    return tuple(getattr(row, field) for field in PRACTITIONER_FIELDS)


class _PractitionerUpserts:
    """Writes the practitioners of a batch that are new or differ."""

    def __init__(self, sql: _Sql, source: Source) -> None:
        self.sql = sql
        self.source = source.value

    async def write(self, rows: dict[str, tuple[str, ...]]) -> tuple[int, int]:
        """``rows``: national id → PRACTITIONER_FIELDS values; returns (added, updated)."""
        if not rows:
            return 0, 0
        known = {
            national: (tuple(values), active)
            for national, active, *values in await self.sql.where_in(
                KNOWN_PRACTITIONERS, list(rows))
        }
        changed = [
            (national, *values, self.source, True)
            for national, values in rows.items()
            if known.get(national) != (values, True)
        ]
        await self.sql.many(PRACTITIONER_UPSERT, changed)
        added = sum(national not in known for national in rows)
        return added, len(changed) - added


class _MailboxMerger:
    def __init__(self, sql: _Sql, report: ImportReport) -> None:
        self.sql = sql
        self.report = report
        self.practitioners = _PractitionerUpserts(sql, Source.MSSANTE)

    async def merge(self, rows: list[MailboxRow]) -> None:
        report = self.report
        # DESIGN.md: a few addresses appear twice; keep the first, report the others.
        first: dict[str, int] = {}
        unique: list[MailboxRow] = []
        for row in rows:
            if row.address in first:
                report.reject(row.line, f"address {row.address} already on line "
                                        f"{first[row.address]}: this line is ignored")
            else:
                first[row.address] = row.line
                unique.append(row)
        earlier = await self._seen_before(first)
        addresses = list(first)
        present = [row[0] for row in await self.sql.where_in(PRESENT_MAILBOXES, addresses)]
        known = {row.address: row for row in await self.sql.where_in(KNOWN_MAILBOXES, present)}
        accepted: list[MailboxRow] = []
        for row in unique:
            if row.address in earlier:
                report.reject(row.line, f"address {row.address} already on line "
                                        f"{earlier[row.address]}: this line is ignored")
                continue
            old = known.get(row.address)
            if old is not None and old.type != row.type:
                # A mailbox's type never changes (issue 3): refused, not applied.
                report.reject(row.line, f"{row.address} is a {old.type} mailbox here; a "
                                        f"mailbox's type never changes (the file says "
                                        f"{row.type})")
                continue
            accepted.append(row)
        report.accepted += len(accepted)

        await self.practitioners.write(
            {row.pp_national: _practitioner_values(row) for row in accepted if row.pp_national}
        )
        organisations: dict[tuple[str, str], tuple[str, ...]] = {
            (row.org_id_type, row.org_identifier): row.organisation
            for row in accepted if row.org_identifier
        }
        await self._organisations(organisations)

        retired = MailboxStatus.RETIRED.value
        writes: list[tuple[Any, ...]] = []
        documents: list[tuple[str, str]] = []
        for row in accepted:
            old = known.get(row.address)
            national = row.pp_national or None
            org = (row.org_id_type, row.org_identifier) if row.org_identifier else (None, None)
            if old is None:
                report.added += 1
            elif (old.display_name, old.owner, old.service, bool(old.dematerialisation),
                  old.national_id, (old.id_type, old.identifier), old.status == retired) != (
                      row.display_name, row.owner, row.service, row.dematerialisation,
                      national, org, False):
                report.updated += 1
            else:
                report.unchanged += 1
                if old.document == row.document:
                    continue
            writes.append((row.address, row.type, row.display_name, row.owner,
                           _status_after(old.status if old else None), row.service, False,
                           row.dematerialisation, Source.MSSANTE.value, national, *org))
            if old is None or old.document != row.document:
                documents.append((row.address, row.document))
        await self.sql.many(MAILBOX_UPSERT, writes)
        for start in range(0, len(documents), SEARCH_UPSERT_ROWS):
            chunk = documents[start:start + SEARCH_UPSERT_ROWS]
            await self.sql.one(SEARCH_UPSERT.format(rows=", ".join("(?, ?)" for _ in chunk)),
                               tuple(value for pair in chunk for value in pair))

    async def _seen_before(self, first: dict[str, int]) -> dict[str, int]:
        """Record this batch's addresses; return those an earlier batch already had,
        with their line. Duplicates are rare: the look-up runs only when the insert
        did not add every address."""
        inserted = await self.sql.many(SEEN_INSERT, list(first.items()))
        if inserted == len(first):
            return {}
        earlier = dict(await self.sql.where_in(SEEN_LINES, list(first)))
        return {key: line for key, line in earlier.items() if line != first[key]}

    async def _organisations(self, rows: dict[tuple[str, str], tuple[str, ...]]) -> None:
        if not rows:
            return
        known = {
            (id_type, identifier): tuple(values)
            for id_type, identifier, *values in await self.sql.where_in(
                KNOWN_ORGANISATIONS, list(rows))
        }
        await self.sql.many(ORGANISATION_UPSERT, [
            (*key, *values, Source.MSSANTE.value)
            for key, values in rows.items() if known.get(key) != values
        ])

    async def retire(self) -> None:
        if self.report.accepted == 0:
            self.report.notes.append("no valid row: nothing imported, nothing retired")
            return
        retired = MailboxStatus.RETIRED.value
        self.report.retired = await self.sql.one(
            RETIRE_MAILBOXES, (retired, Source.MSSANTE.value, retired))


_ACTIVE, _RETIRED = MailboxStatus.ACTIVE.value, MailboxStatus.RETIRED.value


def _status_after(status: str | None) -> str:
    """A mailbox back in the national file is active again, unless an operator
    disabled it here."""
    return _ACTIVE if status is None or status == _RETIRED else status


class _PractitionerMerger:
    def __init__(self, sql: _Sql, report: ImportReport) -> None:
        self.sql = sql
        self.report = report
        self.upserts = _PractitionerUpserts(sql, Source.RPPS)

    async def merge(self, rows: list[PractitionerRow]) -> None:
        # One line per activity: the first line of each practitioner describes them.
        batch: dict[str, tuple[str, ...]] = {}
        for row in rows:
            batch.setdefault(row.national_id, _practitioner_values(row))
        earlier = {row[0] for row in await self.sql.where_in(SEEN_LINES, list(batch))}
        fresh = {national: values for national, values in batch.items()
                 if national not in earlier}
        await self.sql.many(SEEN_INSERT, [(n, 0) for n in fresh])
        added, updated = await self.upserts.write(fresh)
        self.report.accepted += len(fresh)
        self.report.added += added
        self.report.updated += updated
        self.report.unchanged += len(fresh) - added - updated

    async def retire(self) -> None:
        if self.report.accepted == 0:
            self.report.notes.append("no valid row: nothing imported, nothing retired")
            return
        self.report.retired = await self.sql.one(
            RETIRE_PRACTITIONERS, (False, Source.RPPS.value, True))
