"""Import a national directory file, streamed in batches of BATCH_ROWS lines.

A worker thread parses the next batch while the current one is merged, so memory
stays constant; a file of PARSE_PROCESS_BYTES or more is parsed in a process of its
own (parse_process.py), since threads of one process share one GIL. Each batch is
merged in its own short write transaction (the mail pipeline keeps running between
batches), by one synchronous function: on SQLite it runs on a pysqlite connection of
its own thread (one thread hop per batch, not one per statement); on PostgreSQL
through asyncpg in ``run_sync``.

1. the batch's keys go into a temporary ``import_seen`` table, which finds the
   addresses that appear twice in the file and, once the whole file is read, the
   rows of this source that disappeared: those are retired, never deleted;
2. one query reads the type, status and ``import_digest`` of the batch's known
   mailboxes: a row whose digest (mssante.row_digest) is the stored one is unchanged
   and costs nothing more, so re-importing the same file writes nothing but
   ``import_seen``;
3. new or changed rows are written with executemany upserts (``INSERT … ON CONFLICT
   DO UPDATE``, SQLite ≥ 3.24 and PostgreSQL), practitioners and organisations only
   where they differ, search documents in multi-row statements.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from directory.importers import mssante, rpps
from directory.importers.batches import Batch, parse_batches
from directory.importers.lines import (
    MAX_LINE_BYTES,
    HeaderError,
    check_header,
    split_header,
)
from directory.importers.mssante import MailboxRow
from directory.importers.parse_process import Job, ParseProcess, ParseProcessError
from directory.importers.report import ImportReport
from directory.importers.rpps import PractitionerRow
from directory.models import (
    MailboxStatus,
    Source,
)
from mailserver.store.database import sqlite_writer_engine

BATCH_ROWS = 10_000
# From this size on, parsing runs in a process of its own (parse_process.py): its
# start-up (about 0.2 s) is then a small part of the import.
PARSE_PROCESS_BYTES = 32 * 1024 * 1024
# Organisations already merged by this import (about 50,000 in the national file).
ORGANISATIONS_REMEMBERED = 100_000
CACHE_KIB = 16 * 1024  # SQLite page cache of the importing connection
WAL_CHECKPOINT_PAGES = 16 * 1024  # 64 MiB of 4 KiB pages
TEMP_CACHE_KIB = 16 * 1024  # and of its temporary tables
FORMATS = ("mssante", "rpps")

# (rows read, bytes read) after each batch; the CLI draws its progress bar with it.
Progress = Callable[[int, int], None]
T = TypeVar("T")

_temporary = MetaData()
SEEN = Table(
    "import_seen", _temporary,
    Column("key", String, primary_key=True),
    Column("line", Integer),
    prefixes=["TEMPORARY"],
    sqlite_with_rowid=False,  # one B-tree, not a table and its key's index
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
                       dematerialisation, source, import_digest, practitioner_id,
                       organisation_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
        (SELECT id FROM practitioners WHERE national_id = ?),
        (SELECT id FROM organisations WHERE id_type = ? AND identifier = ?))
ON CONFLICT (address) DO UPDATE SET
  display_name = excluded.display_name, owner = excluded.owner, status = excluded.status,
  service = excluded.service, dematerialisation = excluded.dematerialisation,
  import_digest = excluded.import_digest,
  practitioner_id = excluded.practitioner_id, organisation_id = excluded.organisation_id
"""
# One statement for many rows: SQLite's FTS5 flushes its pending terms at each
# statement (savepoint), so a row-by-row executemany would be several times slower
# (a whole batch per statement: 10,000 parameters, under both databases' limits).
SEARCH_UPSERT_ROWS = BATCH_ROWS
SEARCH_UPSERT = """
WITH d (address, document) AS (VALUES {rows})
INSERT INTO directory_search (mailbox_id, document)
SELECT m.id, d.document FROM d JOIN mailboxes m ON m.address = d.address
WHERE true
ON CONFLICT (mailbox_id) DO UPDATE SET document = excluded.document
"""
SEEN_INSERT = "INSERT INTO import_seen (key, line) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"
SEEN_LINES = "SELECT key, line FROM import_seen WHERE key IN ({keys})"
KNOWN_MAILBOXES = """
SELECT address, type, status, import_digest FROM mailboxes WHERE address IN ({keys})
"""
KNOWN_PRACTITIONERS = f"""
SELECT national_id, active, {", ".join(PRACTITIONER_FIELDS)} FROM practitioners
WHERE national_id IN ({{keys}})
"""  # noqa: S608 (constant column names only)
KNOWN_ORGANISATIONS = f"""
SELECT id_type, identifier, {", ".join(ORGANISATION_FIELDS)} FROM organisations
WHERE (id_type, identifier) IN (VALUES {{keys}})
"""  # noqa: S608 (constant column names only)
ANY_MAILBOX = "SELECT 1 FROM mailboxes LIMIT 1"
ANY_PRACTITIONER = "SELECT 1 FROM practitioners LIMIT 1"
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



def _postgres_arrays(sql: str, types: Sequence[str]) -> str:
    """``sql`` (an ``INSERT … VALUES (?, …) ON CONFLICT …``) for all rows at once:
    one array per column, ``INSERT … SELECT … FROM unnest($1::text[], …)``. One
    statement for the batch, where executemany runs one per row on the server."""
    head, values = sql.split("VALUES", 1)
    values, tail = values.split("ON CONFLICT", 1)
    columns = iter(range(1, len(types) + 1))
    select = "".join(f"u.c{next(columns)}" if char == "?" else char
                     for char in values.strip()[1:-1])
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, start=1))
    names = ", ".join(f"c{n}" for n in range(1, len(types) + 1))
    return (f"{head}SELECT {select}\nFROM unnest({arrays}) AS u({names})\n"
            f"WHERE true\nON CONFLICT{tail}")


_TEXT, _BOOL = "text", "boolean"
POSTGRES_ARRAYS = {
    SEEN_INSERT: _postgres_arrays(SEEN_INSERT, (_TEXT, "integer")),
    PRACTITIONER_UPSERT: _postgres_arrays(
        PRACTITIONER_UPSERT, (_TEXT,) * (len(PRACTITIONER_FIELDS) + 2) + (_BOOL,)),
    ORGANISATION_UPSERT: _postgres_arrays(
        ORGANISATION_UPSERT, (_TEXT,) * (len(ORGANISATION_FIELDS) + 3)),
    MAILBOX_UPSERT: _postgres_arrays(
        MAILBOX_UPSERT, (_TEXT,) * 6 + (_BOOL, _BOOL) + (_TEXT,) * 5),
}

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
    """Runs the "?" statements above on a synchronous connection, with its
    placeholder style. Raw driver SQL: compiling thousands of bound parameters
    through the expression language costs more than running the query."""

    def __init__(self, connection: Connection) -> None:
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

    def many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Run ``sql`` for each row; the rows changed, or -1 when the driver cannot say."""
        if not rows:
            return 0
        arrays = POSTGRES_ARRAYS.get(sql) if self.numbered else None
        if arrays is not None:
            columns = tuple(list(column) for column in zip(*rows, strict=True))
            return int(self.connection.exec_driver_sql(arrays, columns).rowcount)
        result = self.connection.exec_driver_sql(self._render(sql), list(rows))
        return int(result.rowcount)

    def where_in(self, sql: str, keys: Sequence[Any]) -> list[Any]:
        """Rows of ``sql`` whose "{keys}" becomes the placeholders of ``keys`` (strings,
        or tuples for row values)."""
        if not keys:
            return []
        if self.numbered and "IN ({keys})" in sql and isinstance(keys[0], str):
            # One array parameter: PostgreSQL plans it once, not 10,000 placeholders.
            any_sql = sql.replace("IN ({keys})", "= ANY($1::text[])")
            return list(self.connection.exec_driver_sql(any_sql, (list(keys),)).all())
        if isinstance(keys[0], tuple):
            width = len(keys[0])
            marks = ", ".join("(" + ", ".join("?" * width) + ")" for _ in keys)
            params = tuple(value for key in keys for value in key)
        else:
            marks, params = ", ".join("?" for _ in keys), tuple(keys)
        result = self.connection.exec_driver_sql(self._render(sql.format(keys=marks)), params)
        return list(result.all())

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        result = self.connection.exec_driver_sql(self._render(sql), params)
        return int(result.rowcount)


Work = Callable[[_Sql], T]


class _Importer:
    """The import's own connection: ``run(work)`` calls ``work(sql)`` in one write
    transaction. The temporary ``import_seen`` table lives on this connection."""

    async def run(self, work: Work[T]) -> T:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _SqliteImporter(_Importer):
    """A pysqlite connection on one thread of its own: the whole batch runs in one
    call there (aiosqlite would hop threads for every statement). BEGIN IMMEDIATE
    and the engine's own ``synchronous`` setting: each batch is durable once
    committed, like any other write to the live database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sync = sqlite_writer_engine(engine)
        self._thread = ThreadPoolExecutor(1, "directory-import")
        self._connection: Connection | None = None

    async def start(self) -> None:
        def connect() -> None:
            self._connection = self._sync.connect()
            # A larger page cache for this connection only (RSS stays far under 300 MB);
            # import_seen lives in the temporary database, whose cache is separate.
            self._connection.exec_driver_sql(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._connection.exec_driver_sql(f"PRAGMA temp.cache_size = -{TEMP_CACHE_KIB}")
            # Checkpoint every WAL_CHECKPOINT_PAGES rather than SQLite's 1,000: a page
            # that several batches change is copied to the database once, and the WAL
            # stays bounded (https://sqlite.org/wal.html#automatic_checkpoint).
            self._connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            self._connection.commit()

        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    def _transaction(self, work: Work[T]) -> T:
        assert self._connection is not None
        with self._connection.begin():
            return work(_Sql(self._connection))

    async def run(self, work: Work[T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._transaction, work)

    async def close(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()
            self._sync.dispose()

        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, close)
        finally:
            self._thread.shutdown()


class _AsyncImporter(_Importer):
    """PostgreSQL: the same synchronous work through asyncpg (``run_sync``); asyncpg's
    executemany sends a batch as one prepared statement, pipelined."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._connection = engine.connect()

    async def start(self) -> None:
        await self._connection.start()

    async def run(self, work: Work[T]) -> T:
        async with self._connection.begin():
            return await self._connection.run_sync(lambda sync: work(_Sql(sync)))

    async def close(self) -> None:
        await self._connection.close()


async def _importer(engine: AsyncEngine) -> _Importer:
    importer: _SqliteImporter | _AsyncImporter
    if engine.dialect.name == "sqlite":
        importer = _SqliteImporter(engine)
    else:
        importer = _AsyncImporter(engine)
    try:
        await importer.start()
        await importer.run(_create_seen)
    except BaseException:
        await importer.close()
        raise
    return importer


def _create_seen(sql: _Sql) -> None:
    _temporary.drop_all(sql.connection, checkfirst=True)
    _temporary.create_all(sql.connection)


def _drop_seen(sql: _Sql) -> None:
    _temporary.drop_all(sql.connection)


async def import_file(
    engine: AsyncEngine,
    path: Path,
    *,
    file_format: str | None = None,
    progress: Progress | None = None,
    parse_process: bool | None = None,
) -> ImportReport:
    """Import ``path`` (format guessed from the header unless given). Files of
    PARSE_PROCESS_BYTES or more are parsed in a process of their own, unless
    ``parse_process`` says otherwise."""
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
        own_process = (parse_process if parse_process is not None
                      else os.fstat(stream.fileno()).st_size >= PARSE_PROCESS_BYTES)
        importer = await _importer(engine)
        try:
            merger: _MailboxMerger | _PractitionerMerger
            if file_format == "mssante":
                merger = _MailboxMerger(report)
                tables: tuple[str, ...] = ("mailboxes", "practitioners", "organisations",
                                           "directory_search")
            else:
                merger = _PractitionerMerger(report)
                tables = ("practitioners",)
            await importer.run(merger.start)
            await _read_and_merge(importer, merger.merge, stream, path, file_format,
                                  len(header), positions, report, progress,
                                  len(first_line), own_process)
            await importer.run(merger.retire)
            if engine.dialect.name == "postgresql":
                # Fresh planner statistics after a bulk change (PostgreSQL plans joins
                # from them).
                await importer.run(lambda sql: [sql.one(f"ANALYZE {t}") for t in tables])
                if "directory_search" in tables:
                    # GIN buffers new entries in a pending list that every search reads
                    # through (up to 4 MB: milliseconds per query): merged into the
                    # index now rather than at the next autovacuum.
                    await importer.run(lambda sql: sql.one(
                        "SELECT gin_clean_pending_list('ix_directory_search_words')"))
            await importer.run(_drop_seen)
        finally:
            await importer.close()
    return report


async def _run(
    importer: _Importer,
    merge: Callable[[_Sql, list[Any]], None],
    next_batch: Callable[[], Batch | None],
    report: ImportReport,
    progress: Progress | None,
) -> None:
    """Parse the next batch (in a worker thread, or the parsing process) while the
    current one is merged."""

    def merging_work(rows: list[Any]) -> Work[None]:
        return lambda sql: merge(sql, rows)

    batch = await asyncio.to_thread(next_batch)
    while batch is not None:
        report.rows = batch.lines_read
        merging = asyncio.ensure_future(importer.run(merging_work(batch.rows)))
        try:
            following = await asyncio.to_thread(next_batch)
        finally:
            await merging
        if progress:
            progress(batch.lines_read, batch.bytes_read)
        batch = following


async def _read_and_merge(
    importer: _Importer,
    merge: Callable[[_Sql, list[Any]], None],
    stream: BinaryIO,
    path: Path,
    file_format: str,
    width: int,
    positions: list[int],
    report: ImportReport,
    progress: Progress | None,
    consumed: int,
    own_process: bool,
) -> None:
    if not own_process:
        batches = parse_batches(stream, file_format, width, positions, report,
                                batch_rows=BATCH_ROWS, consumed=consumed)
        await _run(importer, merge, lambda: next(batches, None), report, progress)
        return
    child = ParseProcess(Job(str(path), file_format, width, positions, consumed,
                             BATCH_ROWS), report)
    try:
        await _run(importer, merge, child.next_batch, report, progress)
    except ParseProcessError as error:
        raise ImportFailed(f"{path.name}: {error}") from error
    finally:
        await asyncio.to_thread(child.close)


def _practitioner_values(row: MailboxRow | PractitionerRow) -> tuple[str, ...]:
    if isinstance(row, MailboxRow):
        return row.practitioner
    return tuple(getattr(row, field) for field in PRACTITIONER_FIELDS)


class _PractitionerUpserts:
    """Writes the practitioners of a batch that are new or differ."""

    def __init__(self, source: Source) -> None:
        self.source = source.value
        self.into_empty = False

    def start(self, sql: _Sql) -> None:
        self.into_empty = sql.connection.exec_driver_sql(ANY_PRACTITIONER).first() is None

    def write(self, sql: _Sql, rows: dict[str, tuple[str, ...]]) -> tuple[int, int]:
        """``rows``: national id → PRACTITIONER_FIELDS values; returns (added, updated)
        (into an empty table, a practitioner of an earlier batch counts as added
        again: the RPPS merger writes each once, the MSSanté one ignores the counts)."""
        if not rows:
            return 0, 0
        known = {} if self.into_empty else {
            national: (tuple(values), active)
            for national, active, *values in sql.where_in(KNOWN_PRACTITIONERS, list(rows))
        }
        source = self.source
        changed = [
            (national, *values, source, True)
            for national, values in rows.items()
            if not known or known.get(national) != (values, True)
        ]
        changed.sort(key=itemgetter(0))  # national id order: fewer index pages touched
        sql.many(PRACTITIONER_UPSERT, changed)
        added = sum(national not in known for national in rows)
        return added, len(changed) - added


_ACTIVE, _RETIRED = MailboxStatus.ACTIVE.value, MailboxStatus.RETIRED.value
_MSSANTE = Source.MSSANTE.value  # an enum's .value costs a Python call: once here
_NO_ORG = (None, None)


def _status_after(status: str | None) -> str:
    """A mailbox back in the national file is active again, unless an operator
    disabled it here."""
    return _ACTIVE if status is None or status == _RETIRED else status


class _MailboxMerger:
    def __init__(self, report: ImportReport) -> None:
        self.report = report
        self.practitioners = _PractitionerUpserts(Source.MSSANTE)
        self.into_empty = False  # start() tells
        # Organisation key → hash of the values written or found equal (an int, not
        # the values: 50,000 of them stay in memory all along the import).
        self._organisations_done: dict[tuple[str, str], int] = {}

    def start(self, sql: _Sql) -> None:
        self.into_empty = sql.connection.exec_driver_sql(ANY_MAILBOX).first() is None
        self.practitioners.start(sql)

    def merge(self, sql: _Sql, batch: list[MailboxRow]) -> None:
        report = self.report
        # DESIGN.md: a few addresses appear twice; keep the first, report the others.
        first: dict[str, int] = {}
        unique: list[MailboxRow] = []
        for row in batch:
            if row.address in first:
                report.reject(row.line, f"address {row.address} already on line "
                                        f"{first[row.address]}: this line is ignored")
            else:
                first[row.address] = row.line
                unique.append(row)
        earlier = self._seen_before(sql, first)
        # Into an empty table (the first import), the only mailboxes there are this
        # import's, and import_seen already found those: nothing to look up.
        known: dict[str, tuple[str, str, str | None]] = {} if self.into_empty else {
            address: (kind, status, digest)
            for address, kind, status, digest in sql.where_in(KNOWN_MAILBOXES, list(first))
        }
        changed: list[tuple[MailboxRow, str | None]] = []  # (row, its status here)
        accepted = unchanged = 0
        for row in unique:
            if row.address in earlier:
                report.reject(row.line, f"address {row.address} already on line "
                                        f"{earlier[row.address]}: this line is ignored")
                continue
            old = known.get(row.address)
            if old is None:
                changed.append((row, None))
            elif old[0] != row.type:
                # A mailbox's type never changes (issue 3): refused, not applied.
                report.reject(row.line, f"{row.address} is a {old[0]} mailbox here; a "
                                        f"mailbox's type never changes (the file says "
                                        f"{row.type})")
                continue
            elif old[2] == row.digest and old[1] != _RETIRED:
                unchanged += 1  # the very line imported last time: nothing to write
            else:
                changed.append((row, old[1]))
            accepted += 1
        report.accepted += accepted
        report.unchanged += unchanged
        added = sum(status is None for _, status in changed)
        report.added += added
        report.updated += len(changed) - added
        if changed:
            # In key order: consecutive rows go to the same index pages.
            changed.sort(key=lambda pair: pair[0].address)
            self._write(sql, changed)

    def _write(self, sql: _Sql, changed: list[tuple[MailboxRow, str | None]]) -> None:
        self.practitioners.write(sql, {
            row.pp_national: row.practitioner for row, _ in changed if row.pp_national})
        self._organisations(sql, {
            (row.org_id_type, row.org_identifier): row.organisation
            for row, _ in changed if row.org_identifier
        })
        sql.many(MAILBOX_UPSERT, [
            (row.address, row.type, row.display_name, row.owner,
             _ACTIVE if status is None else _status_after(status),
             row.service, False, row.dematerialisation, _MSSANTE, row.digest,
             row.pp_national or None,
             *((row.org_id_type, row.org_identifier) if row.org_identifier else _NO_ORG))
            for row, status in changed
        ])
        for start in range(0, len(changed), SEARCH_UPSERT_ROWS):
            chunk = changed[start:start + SEARCH_UPSERT_ROWS]
            sql.one(SEARCH_UPSERT.format(rows=", ".join("(?, ?)" for _ in chunk)),
                    tuple(value for row, _ in chunk for value in (row.address, row.document)))

    def _seen_before(self, sql: _Sql, first: dict[str, int]) -> dict[str, int]:
        """Record this batch's addresses; return those an earlier batch already had,
        with their line. Duplicates are rare: the look-up runs only when the insert
        did not add every address."""
        inserted = sql.many(SEEN_INSERT, sorted(first.items(), key=itemgetter(0)))
        if inserted == len(first):
            return {}
        earlier = dict(sql.where_in(SEEN_LINES, list(first)))
        return {key: line for key, line in earlier.items() if line != first[key]}

    def _organisations(self, sql: _Sql, rows: dict[tuple[str, str], tuple[str, ...]]) -> None:
        # An organisation has a dozen mailboxes spread over the file: once written or
        # found equal in this import, the same values are not looked up again.
        # A hash collision would only skip rewriting an organisation already written
        # by this import with other values (64 bits: never in practice).
        done = self._organisations_done
        rows = {key: values for key, values in rows.items() if done.get(key) != hash(values)}
        if not rows:
            return
        if len(done) + len(rows) > ORGANISATIONS_REMEMBERED:
            done.clear()
        done.update((key, hash(values)) for key, values in rows.items())
        known = {
            (id_type, identifier): tuple(values)
            for id_type, identifier, *values in sql.where_in(KNOWN_ORGANISATIONS, list(rows))
        }
        sql.many(ORGANISATION_UPSERT, [
            (*key, *values, _MSSANTE)
            for key, values in rows.items() if known.get(key) != values
        ])

    def retire(self, sql: _Sql) -> None:
        if self.report.accepted == 0:
            self.report.notes.append("no valid row: nothing imported, nothing retired")
            return
        self.report.retired = sql.one(RETIRE_MAILBOXES, (_RETIRED, Source.MSSANTE.value,
                                                         _RETIRED))


class _PractitionerMerger:
    def __init__(self, report: ImportReport) -> None:
        self.report = report
        self.upserts = _PractitionerUpserts(Source.RPPS)

    def start(self, sql: _Sql) -> None:
        self.upserts.start(sql)

    def merge(self, sql: _Sql, batch: list[PractitionerRow]) -> None:
        # One line per activity: the first line of each practitioner describes them.
        rows: dict[str, tuple[str, ...]] = {}
        for row in batch:
            rows.setdefault(row.national_id, _practitioner_values(row))
        earlier = {row[0] for row in sql.where_in(SEEN_LINES, list(rows))}
        fresh = {national: values for national, values in rows.items()
                 if national not in earlier}
        sql.many(SEEN_INSERT, [(n, 0) for n in fresh])
        added, updated = self.upserts.write(sql, fresh)
        self.report.accepted += len(fresh)
        self.report.added += added
        self.report.updated += updated
        self.report.unchanged += len(fresh) - added - updated

    def retire(self, sql: _Sql) -> None:
        if self.report.accepted == 0:
            self.report.notes.append("no valid row: nothing imported, nothing retired")
            return
        self.report.retired = sql.one(RETIRE_PRACTITIONERS, (False, Source.RPPS.value, True))
