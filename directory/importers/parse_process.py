"""Parsing a big file in a process of its own, so that parsing and merging each have
a core (one process shares one GIL between its threads).

The parent starts a fresh interpreter that imports this module and calls ``main``
(``python -c``, with this package's root first on PYTHONPATH; nothing of the caller's
``__main__`` is re-imported, unlike multiprocessing's spawn), the job as JSON on the
command line. The child writes
frames to its stdout: an 8-byte length, then a pickle of ``("batch", rows,
lines_read, bytes_read, rejected, warnings)``, ``("end", peak_rss)`` or ``("error", text)``.
The pipe's buffer bounds how far the child reads ahead: memory stays constant.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import struct
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from directory.importers.batches import Batch, parse_batches, rebuild
from directory.importers.report import ImportReport, Problem

FRAME_ROWS = 1000  # rows per frame; the parent gathers a batch from several
PIPE_BYTES = 1024 * 1024  # Linux's default pipe-max-size
_FRAME = struct.Struct(">Q")
_MAX_FRAME = 1 << 30  # a batch is a few MB; anything larger is a broken stream
# The directory package's root: the child imports this very code, wherever it lives.
_ROOT = str(Path(__file__).resolve().parents[2])


class ParseProcessError(RuntimeError):
    """The parsing process failed or died; the message says how."""


@dataclass(frozen=True)
class Job:
    path: str
    file_format: str
    width: int
    positions: list[int]
    offset: int  # where the data lines start (after the header)
    batch_rows: int


class ParseProcess:
    """The parent's side: ``next_batch()`` (blocking) until it returns None."""

    def __init__(self, job: Job, report: ImportReport) -> None:
        self._report = report
        self._batch_rows = job.batch_rows
        self._format = job.file_format
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_ROOT, env.get("PYTHONPATH", "")) if p)
        self._process = subprocess.Popen(  # our own interpreter and module
            [sys.executable, "-c", "from directory.importers.parse_process import main; main()",
             json.dumps(job.__dict__)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env,
        )
        self._done = False
        if hasattr(fcntl, "F_SETPIPE_SZ") and self._process.stdout is not None:
            with contextlib.suppress(OSError):  # Linux: fewer wake-ups per batch
                fcntl.fcntl(self._process.stdout, fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read(self, size: int) -> bytes:
        assert self._process.stdout is not None
        data = self._process.stdout.read(size)
        if len(data) != size:
            code = self._process.wait()
            raise ParseProcessError(
                f"the parsing process stopped unexpectedly (exit code {code})")
        return data

    def next_batch(self) -> Batch | None:
        """At least ``batch_rows`` rows (fewer at the end of the file), from as many
        frames as it takes; None once the file is done."""
        rows: list[Any] = []
        last = None
        while len(rows) < self._batch_rows:
            frame = self._next_frame()
            if frame is None:
                break
            rows += frame.rows
            last = frame
        return None if last is None else Batch(rows, last.lines_read, last.bytes_read)

    def _next_frame(self) -> Batch | None:
        if self._done:
            return None
        (size,) = _FRAME.unpack(self._read(_FRAME.size))
        if size > _MAX_FRAME:
            raise ParseProcessError(f"the parsing process sent a frame of {size} bytes")
        message = pickle.loads(self._read(size))  # noqa: S301 (our own child's output)
        if message[0] == "end":
            self._done = True
            self._report.parse_process_peak_rss = message[1]
            return None
        if message[0] == "error":
            raise ParseProcessError(f"the parsing process failed: {message[1]}")
        _, rows, lines_read, bytes_read, rejected, warnings = message
        self._report.add_problems(rejected, warnings)
        return Batch(rebuild(self._format, rows), lines_read, bytes_read)

    def close(self) -> None:
        """Stop the child if it is still running (the import failed) and reap it."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


def _problems(count: int, kept: list[Problem]) -> tuple[int, list[tuple[int, str]]]:
    return count, [(p.line, p.reason) for p in kept]


def _send(out: BinaryIO, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_FRAME.pack(len(data)))
    out.write(data)
    out.flush()


def run(job: Job, out: BinaryIO) -> bool:
    """The child's work: parse ``job`` and write its frames to ``out``; False when it
    failed (the parent is told why, by the last frame)."""
    try:
        with open(job.path, "rb") as stream:
            stream.seek(job.offset)
            report = ImportReport(format=job.file_format)
            # Small frames: the child holds one frame, not a whole batch.
            for batch in parse_batches(stream, job.file_format, job.width, job.positions,
                                       report, batch_rows=min(job.batch_rows, FRAME_ROWS),
                                       consumed=job.offset):
                rows = list(map(tuple, batch.rows))  # plain tuples: batches.rebuild
                _send(out, ("batch", rows, batch.lines_read, batch.bytes_read,
                            _problems(report.rejected_count, report.rejected),
                            _problems(report.warning_count, report.warnings)))
                # Each frame carries the problems found since the last one.
                report.rejected.clear()
                report.warnings.clear()
                report.rejected_count = report.warning_count = 0
            _send(out, ("end", peak_rss()))
    except BrokenPipeError:
        return False  # the parent stopped reading: its import failed, it knows why
    except Exception as error:  # any other failure: the parent reports it
        where = traceback.extract_tb(error.__traceback__)[-1]
        with contextlib.suppress(OSError):
            _send(out, ("error", f"{type(error).__name__}: {error} "
                                 f"({Path(where.filename).name}, line {where.lineno})"))
        return False
    return True


def peak_rss() -> int:
    """This process's peak resident set, in bytes (Linux's VmHWM: counted from exec,
    where getrusage would report the forking parent's peak); 0 when unknown."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    job = Job(**json.loads(sys.argv[1]))
    # No traceback on stderr (DESIGN.md: the user sees the problem, the log the
    # rest): the parent raises ImportFailed with the message of the last frame.
    sys.exit(0 if run(job, sys.stdout.buffer) else 1)


if __name__ == "__main__":
    main()
