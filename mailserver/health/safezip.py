"""Reading a zip archive from a hostile sender without being hurt by it.

Bounded entry count, total uncompressed size and compression ratio (zip bombs),
no path traversal in names (APPNOTE 4.4.17: names are relative, "/" separated),
encrypted entries refused (APPNOTE 4.4.4 bit 0). Sizes are enforced on the bytes
actually inflated, never on the sizes the archive declares.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from isal import isal_zlib  # ISA-L: the same inflate and CRC-32, two and nine times faster

from mailserver.health.problems import Problem


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = 1000
    max_total_size: int = 100 * 1024 * 1024
    max_entry_size: int = 50 * 1024 * 1024
    max_ratio: int = 100  # uncompressed / compressed, for entries larger than 1 MiB


class ZipEntry(NamedTuple):
    name: str
    data: bytes


@dataclass(frozen=True)
class ZipContents:
    entries: tuple[ZipEntry, ...]
    problems: tuple[Problem, ...]

    def get(self, name: str) -> ZipEntry | None:
        """An entry by name, case-insensitively (XDM media are often upper-cased)."""
        wanted = name.lower()
        for entry in self.entries:
            if entry.name.lower() == wanted:
                return entry
        return None


def is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def unsafe_name(name: str) -> bool:
    """Absolute, drive-lettered, backslashed or ``..`` names escape the archive."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return True
    if len(name) > 1 and name[1] == ":":
        return True
    return ".." in name and any(part == ".." for part in name.split("/"))


_RATIO_FLOOR = 1024 * 1024  # small entries compress well legitimately


def _too_many(limits: ZipLimits) -> Problem:
    return _problem("ZIP-ENTRIES", f"The zip archive has more than {limits.max_entries} entries",
                    f"L'archive zip a plus de {limits.max_entries} entrées")


def _declared_entries(data: bytes) -> int:
    """Total entries of the end of central directory record (APPNOTE 4.3.16)."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 65557))
    if at < 0 or at + 12 > len(data):
        return 0
    return int.from_bytes(data[at + 10:at + 12], "little")


def _problem(code: str, en: str, fr: str) -> Problem:
    return Problem(code, en, fr)


def read_zip(data: bytes, limits: ZipLimits = ZipLimits(), *, fast: bool = True
             ) -> ZipContents:
    """Every file of the archive, or the problems that stopped the reading. ``fast``:
    a plain central directory is read here (``_plain_directory``) and small entries
    are inflated in one call (``_inflate_small``), anything else through zipfile;
    False sends everything through zipfile, the reference the tests hold the fast
    reading to."""
    if _declared_entries(data) > limits.max_entries:  # before zipfile lists them all
        return ZipContents((), (_too_many(limits),))
    if fast:
        plain = _plain_directory(data)
        if plain is not None:
            contents = _read_entries(data, plain, limits, None)
            if contents is not None:
                return contents
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception:  # hostile input: any failure is "not a readable zip"
        return ZipContents((), (_problem("ZIP-INVALID", "The zip archive cannot be read",
                                         "L'archive zip est illisible"),))
    with archive:
        contents = _read_entries(data, archive.infolist(), limits, archive, fast=fast)
    assert contents is not None  # with the archive at hand every entry can be read
    return contents


class _EntryInfo(Protocol):
    """What the reading needs of a central directory record: zipfile's ZipInfo, or
    ``_Central`` read by ``_plain_directory``."""

    @property
    def filename(self) -> str: ...
    @property
    def orig_filename(self) -> str: ...
    @property
    def flag_bits(self) -> int: ...
    @property
    def compress_type(self) -> int: ...
    @property
    def compress_size(self) -> int: ...
    @property
    def file_size(self) -> int: ...
    @property
    def header_offset(self) -> int: ...
    @property
    def CRC(self) -> int: ...  # zipfile's name

    def is_dir(self) -> bool: ...


def _read_entries(data: bytes, infos: Sequence[_EntryInfo], limits: ZipLimits,
                  archive: zipfile.ZipFile | None, *, fast: bool = True
                  ) -> ZipContents | None:
    """The entries and problems, the limits applied in the order the records come.
    Without ``archive``, None as soon as an entry needs zipfile to be read."""
    problems: list[Problem] = []
    entries: list[ZipEntry] = []
    if len(infos) > limits.max_entries:
        return ZipContents((), (_too_many(limits),))
    total = 0
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if unsafe_name(name):
            problems.append(_problem(
                "ZIP-PATH", f"Unsafe path in the zip archive: {name[:100]!r}",
                f"Chemin dangereux dans l'archive zip : {name[:100]!r}"))
            continue
        if info.flag_bits & 0x1:
            problems.append(_problem(
                "ZIP-ENCRYPTED", f"Encrypted entry in the zip archive: {name[:100]}",
                f"Entrée chiffrée dans l'archive zip : {name[:100]}"))
            continue
        folded = name.lower()
        if folded in seen:
            problems.append(_problem(
                "ZIP-DUPLICATE", f"Entry twice in the zip archive: {name[:100]}",
                f"Entrée en double dans l'archive zip : {name[:100]}"))
            continue
        seen.add(folded)
        if info.is_dir():
            continue
        budget = min(limits.max_entry_size, limits.max_total_size - total)
        small = _inflate_small(data, info, min(budget, _RATIO_FLOOR)) if fast else None
        if small is not None:
            total += len(small)
            entries.append(ZipEntry(name, small))
            continue
        if archive is None:
            return None  # zipfile's turn, from the start
        assert isinstance(info, zipfile.ZipInfo)
        compressed = max(info.compress_size, 1)
        try:
            content, verdict = _inflate(archive, info, budget, compressed, limits.max_ratio)
        except Exception:
            problems.append(_problem(
                "ZIP-INVALID", f"A zip entry cannot be read: {name[:100]}",
                f"Une entrée de l'archive zip est illisible : {name[:100]}"))
            continue
        if verdict is not None:
            return ZipContents(tuple(entries), (*problems, verdict))
        total += len(content)
        entries.append(ZipEntry(name, content))
    return ZipContents(tuple(entries), tuple(problems))


class _Central(NamedTuple):
    """A central directory record (APPNOTE 4.3.12) as zipfile's ZipInfo gives it."""

    filename: str
    orig_filename: str
    flag_bits: int
    compress_type: int
    compress_size: int
    file_size: int
    header_offset: int
    CRC: int  # zipfile's name

    def is_dir(self) -> bool:
        return self.filename[-1] == "/"


_END = struct.Struct("<4s4H2LH")  # end of central directory record, APPNOTE 4.3.16
_RECORD = struct.Struct("<4s4B4HL2L5H2L")  # central directory header, APPNOTE 4.3.12
_MAX_EXTRACT_VERSION = 63  # zipfile refuses archives needing a later version
_ZIP64_LOCATOR = b"PK\x06\x07"  # APPNOTE 4.3.15


def _plain_directory(data: bytes) -> list[_Central] | None:
    """The central directory records when the archive is plain: its end record at
    the very end (no archive comment), right after a directory of records that
    exactly tile it (nothing prepended, no zip64), each record without file comment
    and without a zip64 extra field, its name decodable. Then zipfile would list the
    same records (tests hold the two to each other); anything else, None."""
    end = len(data) - _END.size
    if end < 0 or data[end:end + 4] != b"PK\x05\x06":
        return None
    size, offset, comment = _END.unpack_from(data, end)[5:8]
    if comment or offset + size != end:
        return None
    if end >= 20 and data[end - 20:end - 16] == _ZIP64_LOCATOR:
        return None
    records: list[_Central] = []
    at = offset
    while at < end:
        record = _central(data, at, end)
        if record is None:
            return None
        records.append(record[0])
        at = record[1]
    return records


def _central(data: bytes, at: int, end: int) -> tuple[_Central, int] | None:
    """One plain central directory record at ``at`` and where the next one starts."""
    if at + _RECORD.size > end:
        return None
    fields = _RECORD.unpack_from(data, at)
    (signature, _, _, version, _, flags, method, _, _, crc, compressed, size,
     name_length, extra_length, comment_length, _, _, _, offset) = fields
    name_at = at + _RECORD.size
    extra_at = name_at + name_length
    following = extra_at + extra_length
    if (signature != b"PK\x01\x02" or comment_length or following > end
            or version > _MAX_EXTRACT_VERSION or 0xFFFFFFFF in (compressed, size, offset)
            or not _plain_extra(data[extra_at:following])):
        return None
    name = _entry_name(data[name_at:extra_at], flags)
    if name is None:
        return None
    filename = name.partition("\x00")[0]  # zipfile's ZipInfo ends the name at a NUL
    return _Central(filename, name, flags, method, compressed, size, offset, crc), following


def _entry_name(raw: bytes, flags: int) -> str | None:
    """A name as zipfile decodes it: UTF-8 when flag bit 11 says so, else CP437
    (APPNOTE 4.4.4, appendix D); the two agree with ASCII on ASCII names."""
    if raw.isascii():
        return raw.decode("ascii")  # the usual name, without a codec look-up
    try:
        return raw.decode("utf-8" if flags & 0x800 else "cp437")
    except UnicodeDecodeError:
        return None


def _plain_extra(extra: bytes) -> bool:
    """Extra fields (APPNOTE 4.5) that zipfile reads without error and that hold no
    zip64 record (0x0001)."""
    while len(extra) >= 4:
        kind = int.from_bytes(extra[0:2], "little")
        length = int.from_bytes(extra[2:4], "little")
        if length + 4 > len(extra) or kind == 0x0001:
            return False
        extra = extra[length + 4:]
    return True


_CHUNK = 64 * 1024
_LOCAL_HEADER = 30  # APPNOTE 4.3.7
_LOCAL = struct.Struct("<4s2xH18xHH")  # its signature, flags, name and extra lengths
_UNSUPPORTED_FLAGS = 0x0001 | 0x0020 | 0x0040  # encrypted, patched, strong encryption


def _inflate_small(data: bytes, info: _EntryInfo, limit: int) -> bytes | None:
    """The entry's content when reading it is plain: a stored or deflated entry
    whose local header names it as the central directory does, whose stream ends
    within its compressed size, inflating to exactly its declared size, at most
    ``limit`` (so that no size or ratio limit can be crossed) and with its CRC-32
    (APPNOTE 4.4.7). Then zipfile would return the same bytes (tests hold the two to
    each other). Anything else, None: the entry goes through zipfile and _inflate."""
    method = info.compress_type
    if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.file_size > limit:
        return None
    if info.flag_bits & _UNSUPPORTED_FLAGS:
        return None
    at = info.header_offset
    if at < 0 or at + _LOCAL_HEADER > len(data):
        return None
    signature, flags, name_length, extra_length = _LOCAL.unpack_from(data, at)
    if signature != b"PK\x03\x04":
        return None
    raw_name = data[at + _LOCAL_HEADER:at + _LOCAL_HEADER + name_length]
    if _entry_name(raw_name, flags) != info.orig_filename:
        return None
    start = at + _LOCAL_HEADER + name_length + extra_length
    stored = memoryview(data)[start:start + info.compress_size]  # read in place
    if len(stored) != info.compress_size:
        return None
    if method == zipfile.ZIP_STORED:
        content = bytes(stored) if info.compress_size == info.file_size else None
    else:
        # Raw deflate (APPNOTE 4.4.5 method 8), at most limit + 1 bytes out. ISA-L
        # keeps no unconsumed tail when it stops at that bound: eof is the test.
        inflater = isal_zlib.decompressobj(-15)
        try:
            content = inflater.decompress(stored, limit + 1)
        except Exception:  # IsalError on a broken stream: zipfile reads it, or says why
            return None
        if not inflater.eof or inflater.unconsumed_tail:
            return None
    if content is None or len(content) != info.file_size:
        return None
    return content if isal_zlib.crc32(content) == info.CRC else None


def _inflate(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, compressed: int, ratio: int
) -> tuple[bytes, Problem | None]:
    """Inflate chunk by chunk, stopping as soon as a limit is crossed."""
    parts: list[bytes] = []
    size = 0
    with archive.open(info) as stream:
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            parts.append(chunk)
            if size > budget:
                return b"", _problem(
                    "ZIP-BOMB", "The zip archive inflates beyond the allowed size",
                    "L'archive zip dépasse la taille autorisée une fois décompressée")
            if size > _RATIO_FLOOR and size / compressed > ratio:
                return b"", _problem(
                    "ZIP-BOMB", "The zip archive has an abnormal compression ratio (zip bomb)",
                    "L'archive zip a un taux de compression anormal (bombe zip)")
    return b"".join(parts), None
