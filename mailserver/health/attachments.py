"""What an attachment really is, by its bytes (magic numbers), never by the
Content-Type or the name the sender gave it; and whether it can run.

Executables (PE ``MZ``, ELF, Mach-O, Java class), scripts (shebang; JavaScript,
VBScript, PowerShell, batch by content or by extension) and Office macro
containers are dangerous wherever they are, inside a zip included (nested zips
are opened up to a depth limit; zip bombs are refused by ``safezip``).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from mailserver.bytescan import PatternSet
from mailserver.health.cda import is_cda
from mailserver.health.problems import Problem
from mailserver.health.safezip import ZipContents, ZipLimits, is_zip, read_zip
from mailserver.health.xdm import looks_like_xdm
from mailserver.memo import short_values

# Kinds of content.
PDF, JPEG, PNG, TEXT, CDA, XML, HTML, HL7V2, XDM, ZIP, DICOM = (
    "pdf", "jpeg", "png", "text", "cda", "xml", "html", "hl7v2", "xdm", "zip", "dicom")
OFFICE, OLE2, SMIME, UNKNOWN = "office", "ole2", "smime", "unknown"
EXECUTABLE, SCRIPT, MACRO = "executable", "script", "office-macro"
DANGEROUS = frozenset({EXECUTABLE, SCRIPT, MACRO})

DEFAULT_REFUSED_EXTENSIONS = frozenset({
    ".exe", ".dll", ".scr", ".com", ".pif", ".cpl", ".msi", ".msp", ".sys", ".drv",
    ".bat", ".cmd", ".ps1", ".psm1", ".psd1", ".vbs", ".vbe", ".js", ".jse", ".mjs",
    ".wsf", ".wsh", ".wsc", ".hta", ".jar", ".class", ".sh", ".bash", ".zsh", ".csh",
    ".py", ".pl", ".rb", ".php", ".lnk", ".reg", ".inf", ".scf", ".app", ".dmg",
    ".apk", ".elf", ".bin", ".iso", ".img", ".vhd", ".docm", ".xlsm", ".pptm", ".dotm",
    ".xltm", ".xlam", ".ppam", ".ppsm", ".sldm", ".appx", ".msix", ".application",
})

_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",
          b"\xca\xfe\xba\xbe")
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_PNG = b"\x89PNG\r\n\x1a\n"
# Script commands by content, found by Hyperscan (``bytescan``), all at once.
_SCRIPT_ALTERNATIVES = (
    rb"<\s*script\b", rb"\bwscript\s*\.", rb"\bcscript\b", rb"createobject\s*\(",
    rb"activexobject", rb"^\s*@?echo\s+off\b", rb"invoke-expression", rb"\biex\s*[(\$]",
    rb"new-object\s+(?:system\.)?net\.", rb"-encodedcommand\b", rb"set-executionpolicy",
    rb"\bpowershell(?:\.exe)?\s+-", rb"\bcmd(?:\.exe)?\s+/c\b", rb"\beval\s*\(",
    rb"\bexecute\s*\(", rb"shell\.application",
)
# White space spelt out in hex, Python's bytes \s for both engines (PCRE's \v, which
# Hyperscan follows, is any vertical space, NEL \x85 included).
_SCRIPTS = PatternSet([p.replace(rb"\s", rb"[\x20\x09\x0a\x0b\x0c\x0d]")
                       for p in _SCRIPT_ALTERNATIVES], ignore_case=True, multiline=True)
_SCRIPT = _SCRIPTS.reference  # the same patterns read by Python's re (the tests)
_MSH = re.compile(rb"^\x0b?(?:MSH|FHS|BHS)\|\^~\\&")


@dataclass(frozen=True)
class ScanLimits:
    zip: ZipLimits = field(default_factory=ZipLimits)
    max_zip_depth: int = 2
    refused_extensions: frozenset[str] = DEFAULT_REFUSED_EXTENSIONS


class Sniffed(NamedTuple):
    kind: str
    why: str = ""  # for a dangerous kind: what was found, and where
    problems: tuple[Problem, ...] = ()  # the content could not be checked (bomb, unreadable)
    zip_contents: ZipContents | None = None  # kept for an XDM package

    @property
    def dangerous(self) -> bool:
        return self.kind in DANGEROUS


# The verdicts without details, built once: a message has several parts.
_PLAIN_VERDICTS = {kind: Sniffed(kind) for kind in (
    PDF, JPEG, PNG, TEXT, CDA, XML, HTML, HL7V2, ZIP, DICOM, OFFICE, OLE2, UNKNOWN)}


# Per distinct name: the same few names come in message after message (INDEX.HTM).
@short_values(max_len=128, maxsize=1024)
def extension(filename: str) -> str:
    """The extension, lower case, trailing dots and spaces ignored (as Windows does)."""
    return posixpath.splitext(filename.strip().rstrip(". ").lower())[1]


def _is_pe(data: bytes) -> bool:
    if data[:2] != b"MZ":
        return False
    if len(data) >= 64:
        offset = int.from_bytes(data[60:64], "little")
        if data[offset:offset + 4] == b"PE\x00\x00":
            return True
    return 0 in data[:512]  # a NUL: a DOS executable or a truncated PE, not text


def _text(data: bytes) -> bool:
    head = data[:65536]
    if 0 in head:  # a NUL byte (an int needle: a bytes one costs ten times more)
        return False
    if head.isascii():  # ASCII is UTF-8: no need to build the decoded string
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not a character cut at the 64 KiB boundary
            controls = sum(1 for b in head if b < 0x09 or 0x0e <= b < 0x20)
            return controls == 0  # Latin-1 text
    return True


def sniff(data: bytes, filename: str = "", limits: ScanLimits = ScanLimits(),
          depth: int = 0) -> Sniffed:
    """The kind of ``data``; dangerous kinds say why."""
    if (extension(filename) if filename else "") in limits.refused_extensions:
        return Sniffed(SCRIPT, f"refused file extension{_where(filename)}")
    magic = data[:8]
    if _is_pe(data) or magic[:4] == b"\x7fELF" or magic[:4] in _MACHO:
        return Sniffed(EXECUTABLE, f"executable program{_where(filename)}")
    if magic[:2] == b"#!":
        return Sniffed(SCRIPT, f"script{_where(filename)}")
    if magic == _OLE2:
        if b"V\x00B\x00A\x00" in data or b"_\x00V\x00B\x00A\x00_\x00P\x00R\x00O\x00J" in data:
            return Sniffed(MACRO, f"Office document with macros{_where(filename)}")
        return _PLAIN_VERDICTS[OLE2]
    if data.find(b"%PDF-", 0, 1024) >= 0:  # within the first KiB, read in place
        return _PLAIN_VERDICTS[PDF]
    if magic[:3] == b"\xff\xd8\xff":
        return _PLAIN_VERDICTS[JPEG]
    if magic == _PNG:
        return _PLAIN_VERDICTS[PNG]
    if data[128:132] == b"DICM":  # DICOM PS3.10 §7.1: 128-byte preamble, then "DICM"
        return _PLAIN_VERDICTS[DICOM]
    if is_zip(data):
        return _sniff_zip(data, _where(filename), limits, depth)
    if _MSH.match(data):
        return _PLAIN_VERDICTS[HL7V2]
    if _text(data):
        if _looks_scripted(data):
            return Sniffed(SCRIPT, f"script content{_where(filename)}")
        if is_cda(data):
            return _PLAIN_VERDICTS[CDA]
        head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if head.startswith((b"<!doctype html", b"<html")):
            return _PLAIN_VERDICTS[HTML]
        if head.startswith(b"<"):
            return _PLAIN_VERDICTS[XML]
        return _PLAIN_VERDICTS[TEXT]
    return _PLAIN_VERDICTS[UNKNOWN]


def _where(filename: str) -> str:
    """Where a finding was made, for its reason."""
    return f" ({filename[:100]})" if filename else ""


def _looks_scripted(data: bytes) -> bool:
    """Whether ``data`` holds script commands (``_SCRIPT``)."""
    return _SCRIPTS.found_in(data)


def _sniff_zip(data: bytes, where: str, limits: ScanLimits, depth: int) -> Sniffed:
    if depth >= limits.max_zip_depth:
        return Sniffed(ZIP, problems=(Problem(
            "ZIP-DEPTH", f"Zip archives nested too deeply{where}",
            f"Archives zip imbriquées trop profondément{where}"),))
    contents = read_zip(data, limits.zip)
    if contents.problems:
        return Sniffed(ZIP, problems=contents.problems)
    names = [entry.name for entry in contents.entries]
    lowered = {name.lower() for name in names}
    if "meta-inf/manifest.mf" in lowered or any(n.endswith(".class") for n in lowered):
        return Sniffed(EXECUTABLE, f"Java archive{where}")
    if any(n.endswith("vbaproject.bin") for n in lowered):
        return Sniffed(MACRO, f"Office document with macros{where}")
    for entry in contents.entries:
        inner = sniff(entry.data, entry.name, limits, depth + 1)
        if inner.dangerous:
            return Sniffed(inner.kind, f"{inner.why} inside a zip archive{where}")
        if inner.problems:
            return Sniffed(ZIP, problems=inner.problems)
    if looks_like_xdm(names):
        return Sniffed(XDM, zip_contents=contents)
    if "[content_types].xml" in lowered:
        return Sniffed(OFFICE)
    return Sniffed(ZIP)
