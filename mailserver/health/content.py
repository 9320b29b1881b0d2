"""The body of a message looked at once, bounded: every attachment sniffed, IHE XDM
packages and CDA documents read, MSSanté declarations checked. Produces the plain
facts the message rules read (``policies.context.ContentFacts``). Never raises."""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from email.message import Message
from functools import lru_cache

from mailserver.health import mssante
from mailserver.health.attachments import EXECUTABLE, ScanLimits, Sniffed, sniff
from mailserver.health.cda import CdaDocument, is_cda, read_cda
from mailserver.health.problems import Problem
from mailserver.health.safezip import ZipLimits
from mailserver.health.xdm import XdmPackage, read_xdm_contents
from mailserver.memo import short_values
from mailserver.mime.fetch import UnknownTransferEncoding, decode_content
from mailserver.mime.headers import decoded_param, parse_param_value
from mailserver.mime.parse import ParsedMessage
from mailserver.settings import AttachmentSettings
from policies.context import (
    AttachmentFacts,
    AttachmentPolicy,
    ContentFacts,
    Finding,
    StructuredFacts,
)

_SMIME_TYPES = frozenset({
    "application/pkcs7-signature", "application/x-pkcs7-signature",
    "application/pkcs7-mime", "application/x-pkcs7-mime",
})
# Parts that belong to the message's own text or to reports (RFC 3462, RFC 8098).
_BODY_TYPES = frozenset({
    "text/plain", "text/html", "message/disposition-notification",
    "message/delivery-status", "text/rfc822-headers", "message/feedback-report",
})


def needs_content_check(headers: Message) -> bool:
    """Plain single-part text without MSSanté headers is not parsed (fast path)."""
    if any(headers.get(name) is not None for name in ("X-MSS-CODECDA", "X-MSS-INS")):
        return True
    subject = mssante.decoded(str(headers.get("Subject", "")))
    if subject.lstrip().startswith(mssante.SUBJECT_PREFIX):
        return True
    content_type = str(headers.get("Content-Type", "text/plain")).strip().lower()
    disposition = str(headers.get("Content-Disposition", "")).strip().lower()
    return not content_type.startswith("text/plain") or disposition.startswith("attachment")


def _finding(problem: Problem) -> Finding:
    return Finding(problem.code, problem.en, problem.fr)


def scan_limits(settings: AttachmentSettings) -> ScanLimits:
    return _scan_limits(tuple(settings.refused_extensions), settings.zip_max_entries,
                        settings.zip_max_total_size, settings.zip_max_ratio,
                        settings.zip_max_depth)


@lru_cache(maxsize=16)  # per distinct settings: a deployment has one
def _scan_limits(extensions: tuple[str, ...], entries: int, total: int, ratio: int,
                 depth: int) -> ScanLimits:
    return ScanLimits(
        zip=ZipLimits(max_entries=entries, max_total_size=total, max_entry_size=total,
                      max_ratio=ratio),
        max_zip_depth=depth, refused_extensions=frozenset(e.lower() for e in extensions),
    )


def policy(settings: AttachmentSettings) -> AttachmentPolicy:
    return _policy(tuple(settings.allowed), settings.max_attachment_size,
                   settings.max_attachments)


@lru_cache(maxsize=16)
def _policy(allowed: tuple[str, ...], size: int, count: int) -> AttachmentPolicy:
    return AttachmentPolicy(frozenset(allowed), size, count)


def _leaves(message: ParsedMessage, settings: AttachmentSettings
            ) -> tuple[list[ParsedMessage], str]:
    """Leaf parts, depth-first, or why the structure is refused. An encapsulated
    message (message/rfc822) is a container: its parts are looked at too."""
    leaves: list[ParsedMessage] = []
    stack: list[tuple[ParsedMessage, int]] = [(message, 0)]
    count = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > settings.max_mime_parts:
            return [], "parts"
        if depth > settings.max_mime_depth:
            return [], "depth"
        if part.message is not None:
            stack.append((part.message, depth + 1))
        elif part.children:
            stack.extend((sub, depth + 1) for sub in reversed(part.children))
        elif not part.is_multipart:
            leaves.append(part)
    return leaves, ""


_UUENCODE = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})


def _content(part: ParsedMessage) -> bytes:
    """The part's content with its transfer encoding undone (RFC 2045 §6), also the
    non-standard uuencode that mail clients still decode (an executable must not hide
    in it); another unknown encoding leaves the bytes as they are."""
    try:
        return decode_content(part, part.body_bytes)
    except UnknownTransferEncoding:
        if part.transfer_encoding in _UUENCODE:
            return _uudecode(part.body_bytes)
        return part.body_bytes


def _uudecode(data: bytes) -> bytes:
    """The lines between ``begin`` and ``end``, decoded leniently (POSIX uuencode)."""
    out = bytearray()
    inside = False
    for line in data.splitlines():
        if not inside:
            inside = line.startswith(b"begin ")
            continue
        if line.strip() in (b"end", b"`", b""):
            if line.strip() == b"end":
                break
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:  # a line padded wrongly by an old encoder
            length = ((line[0] - 32) & 63) * 4 // 3 + 1 if line else 0
            try:
                out += binascii.a2b_uu(line[:length + 1])
            except binascii.Error:
                continue
    return bytes(out)


def _disposition(part: ParsedMessage) -> tuple[str, str]:
    """The disposition type (lower case) and the file name: ``part.filename`` with the
    Content-Disposition field parsed once for both (RFC 2183)."""
    value = part.header_value("content-disposition")
    if value is None:  # part.filename without reading the field again
        content_type = part.content_type
        return "", (decoded_param(content_type, "name") if content_type is not None
                    else None) or ""
    kind, name = _read_disposition(value)
    if not name:
        content_type = part.content_type
        name = decoded_param(content_type, "name") if content_type is not None else None
    return kind, name or ""


# Per distinct field value: senders write the same few dispositions again and again.
@short_values(max_len=256, maxsize=512)
def _read_disposition(value: bytes) -> tuple[str, str | None]:
    """The disposition type, lower case, and the filename parameter (RFC 2183)."""
    parsed = parse_param_value(value)
    name = decoded_param(parsed, "filename") if value else None
    return parsed.value.strip(" \t").lower(), name


def analyse(raw: bytes, settings: AttachmentSettings,
            headers: Mapping[str, Sequence[str]]) -> ContentFacts:
    """``headers``: lower-cased names to values, for the MSSanté declarations."""
    try:
        return _analyse(raw, settings, headers)
    except Exception:  # a hostile structure the email package chokes on
        return ContentFacts(problem=Finding(
            "MIME-INVALID", "The MIME structure cannot be read",
            "La structure MIME du message est illisible"), policy=policy(settings))


def _analyse(raw: bytes, settings: AttachmentSettings,
             headers: Mapping[str, Sequence[str]]) -> ContentFacts:
    rules = policy(settings)
    # Our own bounded MIME parser (the one IMAP uses): linear, no header objects,
    # about ten times faster than the email package on a 60 kB XDM message. It builds
    # one entity more than allowed at most: enough for _leaves to refuse the message.
    message = ParsedMessage.from_bytes(raw, max_parts=settings.max_mime_parts + 1)
    leaves, refused = _leaves(message, settings)
    if refused == "parts":
        return ContentFacts(problem=_too_many_parts(settings), policy=rules)
    if refused == "depth":
        return ContentFacts(problem=Finding(
            "MIME-DEPTH", f"MIME parts nested deeper than {settings.max_mime_depth}",
            f"Parties MIME imbriquées sur plus de {settings.max_mime_depth} niveaux"),
            policy=rules)
    limits = scan_limits(settings)
    attachments: list[AttachmentFacts] = []
    packages: list[XdmPackage] = []
    cdas: list[CdaDocument] = []
    cda_problems: list[Problem] = []
    opaque = False
    for part in leaves:
        declared = f"{part.type}/{part.subtype}".lower()
        disposition, filename = _disposition(part)
        filename = filename[:255]
        data = _content(part)
        is_body = declared in _BODY_TYPES and not filename and disposition != "attachment"
        if declared in _SMIME_TYPES and data[:1] == b"\x30":  # DER SEQUENCE (RFC 8551)
            opaque = opaque or "signature" not in declared  # an envelope hides its content
            continue  # a signature or an envelope, the S/MIME layer's business
        if len(data) > settings.max_attachment_size:
            attachments.append(AttachmentFacts(filename, declared, "unknown", len(data)))
            continue
        found: Sniffed = sniff(data, filename, limits)
        if is_body and found.kind != EXECUTABLE:
            continue  # the message's own text: shown, never run

        attachments.append(AttachmentFacts(
            filename, declared, found.kind, len(data), found.why,
            _finding(found.problems[0]) if found.problems else None))
        if found.zip_contents is not None:
            package = read_xdm_contents(found.zip_contents)
            packages.append(package)
            inner, inner_problems = _cdas_of(package)
            cdas.extend(inner)
            cda_problems.extend(inner_problems)
        elif found.kind == "cda":
            result = read_cda(data)
            cda_problems.extend(result.problems)
            if result.document is not None:
                cdas.append(result.document)
    declared_headers = mssante.read_headers(headers)
    structured = None
    # S/MIME-encrypted content (RFC 8551 §3.3) cannot be checked at the door: what
    # the sender declares is checked when the package is visible.
    if packages or (declared_headers.structured and not opaque):
        problems = (*mssante.validate(declared_headers, packages, cdas), *cda_problems)
        patients = {str(p) for package in packages for p in package.patients}
        codes = tuple(dict.fromkeys(c for package in packages for c in package.type_codes))
        structured = StructuredFacts(
            codes, next(iter(patients)) if len(patients) == 1 else None,
            tuple(_finding(p) for p in dict.fromkeys(problems)))
    return ContentFacts(tuple(attachments), structured, None, rules)


def _too_many_parts(settings: AttachmentSettings) -> Finding:
    return Finding("MIME-PARTS", f"More than {settings.max_mime_parts} MIME parts",
                   f"Plus de {settings.max_mime_parts} parties MIME")


def _cdas_of(package: XdmPackage) -> tuple[list[CdaDocument], list[Problem]]:
    """Each CDA of the package, cross-checked against its own document entry."""
    cdas: list[CdaDocument] = []
    problems: list[Problem] = []
    for entry in package.documents:
        if not entry.content or not is_cda(entry.content):
            continue
        result = read_cda(entry.content)
        problems.extend(result.problems)
        cda = result.document
        if cda is None:
            continue
        cdas.append(cda)
        where = f"document {entry.entry_id}"
        if entry.type_code is not None and cda.code and entry.type_code.code != cda.code:
            problems.append(Problem(
                "XDM-CDA-CODE", f"{where}: typeCode {entry.type_code.code} but the CDA is "
                f"{cda.code}", f"{where} : typeCode {entry.type_code.code} mais le CDA est "
                f"{cda.code}"))
        if entry.patient is not None and entry.patient not in cda.patient_ids:
            problems.append(Problem(
                "XDM-CDA-PATIENT", f"{where}: the CDA is about another patient",
                f"{where} : le CDA concerne un autre patient"))
    return cdas, problems
