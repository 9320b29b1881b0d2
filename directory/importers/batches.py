"""Lines to batches of parsed rows: the same loop whether it runs in a thread of the
importing process or in the parsing process (parse_process.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, BinaryIO, NamedTuple

from directory.importers import mssante, rpps
from directory.importers.lines import read_lines
from directory.importers.mssante import RowError
from directory.importers.report import ImportReport

Parse = Callable[[int, list[str], ImportReport], Any]
PARSERS: dict[str, Parse] = {"mssante": mssante.parse_row, "rpps": rpps.parse_row}
# The row type of each format: rows cross the pipe as plain tuples (a NamedTuple is
# rebuilt by a Python-level __new__ for each row unpickled) and become rows again
# with tuple.__new__ (C).
ROW_TYPES: dict[str, type[tuple[Any, ...]]] = {"mssante": mssante.MailboxRow,
                                                "rpps": rpps.PractitionerRow}


def rebuild(file_format: str, values: list[tuple[Any, ...]]) -> list[Any]:
    """The rows of ``file_format`` sent as plain tuples."""
    return list(map(partial(tuple.__new__, ROW_TYPES[file_format]), values))


class Batch(NamedTuple):
    rows: list[Any]  # MailboxRow or PractitionerRow
    lines_read: int  # data lines read so far, in the whole file
    bytes_read: int  # bytes read so far, header included


def parse_batches(
    stream: BinaryIO,
    file_format: str,
    width: int,
    positions: list[int],
    report: ImportReport,
    *,
    batch_rows: int,
    consumed: int,
) -> Iterator[Batch]:
    """Batches of at most ``batch_rows`` accepted rows (the last one may be empty);
    rejected lines go to ``report`` and reading goes on."""
    parse = PARSERS[file_format]
    lines = read_lines(stream, width)
    read, count = consumed, 0
    batch: list[Any] = []
    for line in lines:
        count += 1
        read += line.size
        if line.fields is None:
            report.reject(line.number, line.error)
            continue
        fields = line.fields
        try:
            batch.append(parse(line.number, [fields[p] for p in positions], report))
        except RowError as error:
            report.reject(line.number, str(error))
            continue
        if len(batch) >= batch_rows:
            yield Batch(batch, count, read)
            batch = []
    yield Batch(batch, count, read)
