"""Minimal reading of an HL7 CDA R2 document (namespace ``urn:hl7-org:v3``): enough
to cross-check it against the XDM metadata and the MSSanté headers.

ClinicalDocument/id, code (LOINC), title, effectiveTime; recordTarget/patientRole/id
(root OID + extension: the INS when root is an INS OID) and the patient's name and
birth time; author/assignedAuthor (id and name).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element
from xml.parsers.expat import XMLParserType

from mailserver.health.hl7time import parse_digits
from mailserver.health.problems import Problem
from mailserver.health.xdm import INS_OIDS, PatientId
from mailserver.health.xmlsafe import (
    child,
    children,
    expat_parser,
    grouped,
    local,
    parse_xml,
    path,
    read_events,
    streamable,
    text,
    universal,
)

HL7_V3 = "urn:hl7-org:v3"


@dataclass(frozen=True)
class CdaAuthor:
    id: PatientId | None  # an II (root, extension), e.g. the RPPS of the author
    family: str
    given: str


@dataclass(frozen=True)
class CdaDocument:
    id: PatientId | None
    code: str
    code_system: str
    display: str
    title: str
    effective_time: dt.datetime | None
    patient_ids: tuple[PatientId, ...]
    family: str
    given: str
    birth_date: dt.date | None
    authors: tuple[CdaAuthor, ...]

    @property
    def ins(self) -> PatientId | None:
        return next((p for p in self.patient_ids if p.root in INS_OIDS), None)


@dataclass(frozen=True)
class CdaResult:
    document: CdaDocument | None
    problems: tuple[Problem, ...]


_LEADING = re.compile(rb"[\xef\xbb\xbf \t\r\n]*")  # what is_cda skips: BOM bytes, spaces


def is_cda(data: bytes) -> bool:
    """A cheap look at the first bytes: an XML document whose root is ClinicalDocument.
    The first 4 KiB, leading BOM bytes and white space skipped, read in place."""
    leading = _LEADING.match(data, 0, 4096)  # "*": always a match, maybe empty
    at = leading.end() if leading is not None else 0
    return at < 4096 and data.startswith(b"<", at) and data.find(
        b"ClinicalDocument", at, 4096) >= 0


def _ii(element: Element | None) -> PatientId | None:
    return _ii_of(element.attrib) if element is not None else None


def _ii_of(attributes: Mapping[str, str]) -> PatientId | None:
    """An II (CDA R2, data type II): root OID and extension; None without a root."""
    root = attributes.get("root")
    if not root:
        return None
    return PatientId(attributes.get("extension", "").strip(), root.strip())


def _ts(value: str) -> dt.datetime | None:
    """HL7 v3 TS ``YYYYMMDD[HHMM[SS]][+ZZZZ]``."""
    value = value.strip()
    digits = value[:14]
    if digits.isdigit():
        zone = value[len(digits):]
    else:  # not a TS: its digits, read as they come
        zone = ""
        digits = "".join(c for c in digits if c.isdigit())
    moment = parse_digits(digits)
    if moment is None:
        return None
    try:
        if zone and zone[0] in "+-" and zone[1:5].isdigit():
            offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
            return moment.replace(tzinfo=dt.timezone(offset if zone[0] == "+" else -offset))
        return moment.replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _names(element: Element | None) -> tuple[str, str]:
    name = child(element, "name")
    given = " ".join(text(g) for g in children(name, "given")) if name is not None else ""
    return text(child(name, "family")), given


def _first(parts: dict[str, list[Element]], name: str) -> Element | None:
    """``child`` of the element whose children by name are ``parts``."""
    found = parts.get(name)
    return found[0] if found else None


def read_cda(data: bytes, *, streamed: bool = True) -> CdaResult:
    """``streamed``: the header read from expat's events, nothing built (a CDA's base64
    body never becomes a string); False reads the whole tree, the reference for the
    tests. Both parse the whole document with the same expat."""
    if streamed and streamable(data):
        return _read_streamed(data)
    root, trouble = parse_xml(data, "CDA")
    if root is None:
        assert trouble is not None
        return CdaResult(None, (trouble,))
    if not _is_clinical_document(root.tag):
        return _NOT_CDA
    return _from_tree(root)


_NOT_CDA = CdaResult(None, (Problem("CDA-INVALID", "Not an HL7 CDA R2 document",
                                    "Ce n'est pas un document CDA R2 HL7"),))


def _is_clinical_document(tag: str) -> bool:
    return local(tag) == "ClinicalDocument" and tag.startswith("{" + HL7_V3)


def _problems(code: Mapping[str, str] | None, record_targets: int) -> tuple[Problem, ...]:
    problems: list[Problem] = []
    if code is None or not code.get("code"):
        problems.append(Problem("CDA-CODE", "The CDA document has no code",
                                "Le document CDA n'a pas de code"))
    if record_targets != 1:  # CDA R2 §4.2.2.10: recordTarget [1..*]; MSSanté: one patient
        problems.append(Problem("CDA-PATIENT", "A CDA document must have one recordTarget",
                                "Un document CDA doit avoir un seul recordTarget"))
    return tuple(problems)


def _from_tree(root: Element) -> CdaResult:
    header = grouped(root)  # the root's children by name, in one pass
    code = _first(header, "code")
    patient_ids: list[PatientId] = []
    family = given = ""
    birth: dt.date | None = None
    targets = header.get("recordTarget", [])
    if targets:
        role = child(targets[0], "patientRole")
        patient_ids = [i for i in map(_ii, children(role, "id") if role is not None else [])
                       if i is not None]
        person = child(role, "patient")
        family, given = _names(person)
        born = child(person, "birthTime")
        moment = _ts(born.get("value", "")) if born is not None else None
        birth = moment.date() if moment else None
    authors = []
    for author in header.get("author", ()):
        assigned = child(author, "assignedAuthor")
        person_family, person_given = _names(path(assigned, "assignedPerson"))
        authors.append(CdaAuthor(_ii(child(assigned, "id")), person_family, person_given))
    effective = _first(header, "effectiveTime")
    attributes = code.attrib if code is not None else {}
    document = CdaDocument(
        id=_ii(_first(header, "id")),
        code=attributes.get("code", ""), code_system=attributes.get("codeSystem", ""),
        display=attributes.get("displayName", ""),
        title=text(_first(header, "title")),
        effective_time=_ts(effective.get("value", "")) if effective is not None else None,
        patient_ids=tuple(patient_ids), family=family, given=given, birth_date=birth,
        authors=tuple(authors),
    )
    return CdaResult(document, _problems(code.attrib if code is not None else None,
                                         len(targets)))


# -- the header from expat's events ----------------------------------------------------

# What is read of the header (CDA R2 §4.2.1, §4.2.2): each element read is a child,
# by local name, of an element read. For each role, its children read: local name ->
# (their role, only the first such child is read, as ``child`` reads it; else all).
_CHILDREN: dict[str, dict[str, tuple[str, bool]]] = {
    "document": {"id": ("id", True), "code": ("code", True), "title": ("title", True),
                 "effectiveTime": ("effectiveTime", True),
                 "recordTarget": ("recordTarget", False),  # all counted, the first read
                 "author": ("author", False)},
    "recordTarget": {"patientRole": ("patientRole", True)},
    "patientRole": {"id": ("patientId", False), "patient": ("patient", True)},
    "patient": {"name": ("name", True), "birthTime": ("birthTime", True)},
    "author": {"assignedAuthor": ("assignedAuthor", True)},
    "assignedAuthor": {"id": ("authorId", True), "assignedPerson": ("assignedPerson", True)},
    "assignedPerson": {"name": ("name", True)},
    "name": {"given": ("given", False), "family": ("family", True)},
}
_TEXTS = frozenset({"title", "given", "family"})  # read as ``text``: all they hold


class _Name:
    """A PN (CDA R2, data type PN) as ``_names`` reads it."""

    __slots__ = ("family", "given")

    def __init__(self) -> None:
        self.given: list[str] = []
        self.family = ""


class _Author:
    __slots__ = ("id", "name")

    def __init__(self) -> None:
        self.id: PatientId | None = None
        self.name: _Name | None = None


class _Open:
    """An element read that holds elements read: its role, its children read, the
    local names of those met (for "only the first"), the name or author they fill."""

    __slots__ = ("children", "into", "role", "seen")

    def __init__(self, role: str, into: _Name | _Author | None) -> None:
        self.role = role
        self.children = _CHILDREN.get(role, {})
        self.seen: set[str] = set()
        self.into = into


class _HeaderReader:
    """expat's handlers reading what ``_from_tree`` reads, element by element. An
    element read for its attributes alone, or not read, is open as None."""

    def __init__(self, parser: XMLParserType) -> None:
        self.parser = parser
        self.open: list[_Open | None] = []
        self.root = ""
        self.id: PatientId | None = None
        self.code: dict[str, str] | None = None
        self.title = ""
        self.effective_time = ""
        self.record_targets = 0
        self.patient_ids: list[PatientId] = []
        self.patient: _Name | None = None
        self.birth_time: str | None = None
        self.authors: list[_Author] = []
        self.chunks: list[str] = []  # the character data of the text being read

    def start_root(self, name: str, _attributes: dict[str, str]) -> None:
        self.root = name
        self.open.append(_Open("document", None))
        self.parser.StartElementHandler = self.start

    def start(self, name: str, attributes: dict[str, str]) -> None:
        opened = self.open
        parent = opened[-1]
        if parent is None:  # inside an element not read
            opened.append(None)
            return
        local_name = name.rpartition("}")[2]
        read = parent.children.get(local_name)
        if read is None or (read[1] and local_name in parent.seen):  # [1]: only the first
            opened.append(None)
            return
        parent.seen.add(local_name)
        opened.append(self._begin(read[0], parent, attributes))

    def _begin(self, role: str, parent: _Open, attributes: dict[str, str]) -> _Open | None:
        into = parent.into
        if role in _TEXTS:
            self.chunks = []
            self.parser.CharacterDataHandler = self.chunks.append
        elif role == "patientId":
            patient_id = _ii_of(attributes)
            if patient_id is not None:
                self.patient_ids.append(patient_id)
            return None
        elif role == "authorId":
            assert isinstance(into, _Author)
            into.id = _ii_of(attributes)
            return None
        elif role == "name":
            into = _Name()
            if isinstance(parent.into, _Author):
                parent.into.name = into
            else:
                self.patient = into
        elif role == "author":
            into = _Author()
            self.authors.append(into)
        elif role == "recordTarget":
            self.record_targets += 1
            if self.record_targets > 1:
                return None
        elif role in _ATTRIBUTES_READ:
            self._attributes_read(role, attributes)
            return None
        return _Open(role, into)

    def _attributes_read(self, role: str, attributes: dict[str, str]) -> None:
        if role == "id":
            self.id = _ii_of(attributes)
        elif role == "code":
            self.code = attributes
        elif role == "effectiveTime":
            self.effective_time = attributes.get("value", "")
        else:  # birthTime
            self.birth_time = attributes.get("value", "")

    def end(self, _name: str) -> None:
        closed = self.open.pop()
        if closed is None or closed.role not in _TEXTS:
            return
        self.parser.CharacterDataHandler = None
        value = "".join(self.chunks).strip()
        if closed.role == "title":
            self.title = value
            return
        assert isinstance(closed.into, _Name)
        if closed.role == "given":
            closed.into.given.append(value)
        else:
            closed.into.family = value

    def result(self) -> CdaResult:
        if not _is_clinical_document(universal(self.root)):
            return _NOT_CDA
        patient = self.patient or _Name()
        moment = _ts(self.birth_time) if self.birth_time is not None else None
        code = self.code or {}
        document = CdaDocument(
            id=self.id, code=code.get("code", ""), code_system=code.get("codeSystem", ""),
            display=code.get("displayName", ""), title=self.title,
            effective_time=_ts(self.effective_time) if self.effective_time else None,
            patient_ids=tuple(self.patient_ids), family=patient.family,
            given=" ".join(patient.given), birth_date=moment.date() if moment else None,
            authors=tuple(_cda_author(a) for a in self.authors),
        )
        return CdaResult(document, _problems(self.code, self.record_targets))


_ATTRIBUTES_READ = frozenset({"id", "code", "effectiveTime", "birthTime"})


def _cda_author(author: _Author) -> CdaAuthor:
    name = author.name or _Name()
    return CdaAuthor(author.id, name.family, " ".join(name.given))


def _read_streamed(data: bytes) -> CdaResult:
    parser = expat_parser()
    reader = _HeaderReader(parser)
    parser.StartElementHandler = reader.start_root
    parser.EndElementHandler = reader.end
    trouble = read_events(parser, data, "CDA")
    if trouble is not None:
        return CdaResult(None, (trouble,))
    return reader.result()
