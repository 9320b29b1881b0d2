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

from mailserver.bytescan import PatternSet
from mailserver.health.cda import is_cda
from mailserver.health.problems import Problem
from mailserver.health.safezip import ZipContents, ZipLimits, is_zip, read_zip
from mailserver.health.xdm import looks_like_xdm

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


@dataclass(frozen=True)
class Sniffed:
    kind: str
    why: str = ""  # for a dangerous kind: what was found, and where
    problems: tuple[Problem, ...] = ()  # the content could not be checked (bomb, unreadable)
    zip_contents: ZipContents | None = None  # kept for an XDM package

    @property
    def dangerous(self) -> bool:
        return self.kind in DANGEROUS


def extension(filename: str) -> str:
    return posixpath.splitext(filename.strip().rstrip(". ").lower())[1]


def _is_pe(data: bytes) -> bool:
    if data[:2] != b"MZ":
        return False
    if len(data) >= 64:
        offset = int.from_bytes(data[60:64], "little")
        if data[offset:offset + 4] == b"PE\x00\x00":
            return True
    return b"\x00" in data[:512]  # a DOS executable or a truncated PE, not text


def _text(data: bytes) -> bool:
    head = data[:65536]
    if b"\x00" in head:
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
    where = f" ({filename[:100]})" if filename else ""
    if extension(filename) in limits.refused_extensions:
        return Sniffed(SCRIPT, f"refused file extension{where}")
    if _is_pe(data) or data[:4] == b"\x7fELF" or data[:4] in _MACHO:
        return Sniffed(EXECUTABLE, f"executable program{where}")
    if data[:2] == b"#!":
        return Sniffed(SCRIPT, f"script{where}")
    if data[:8] == _OLE2:
        if b"V\x00B\x00A\x00" in data or b"_\x00V\x00B\x00A\x00_\x00P\x00R\x00O\x00J" in data:
            return Sniffed(MACRO, f"Office document with macros{where}")
        return Sniffed(OLE2)
    if data.find(b"%PDF-", 0, 1024) >= 0:  # within the first KiB, read in place
        return Sniffed(PDF)
    if data[:3] == b"\xff\xd8\xff":
        return Sniffed(JPEG)
    if data[:8] == _PNG:
        return Sniffed(PNG)
    if data[128:132] == b"DICM":  # DICOM PS3.10 §7.1: 128-byte preamble, then "DICM"
        return Sniffed(DICOM)
    if is_zip(data):
        return _sniff_zip(data, where, limits, depth)
    if _MSH.match(data):
        return Sniffed(HL7V2)
    if _text(data):
        if _looks_scripted(data):
            return Sniffed(SCRIPT, f"script content{where}")
        head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if is_cda(data):
            return Sniffed(CDA)
        if head.startswith((b"<!doctype html", b"<html")):
            return Sniffed(HTML)
        if head.startswith(b"<"):
            return Sniffed(XML)
        return Sniffed(TEXT)
    return Sniffed(UNKNOWN)


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
