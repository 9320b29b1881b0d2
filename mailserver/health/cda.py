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

from mailserver.health.hl7time import parse_digits
from mailserver.health.problems import Problem
from mailserver.health.xdm import INS_OIDS, PatientId
from mailserver.health.xmlsafe import (
    Builder,
    child,
    children,
    grouped,
    known_tags,
    local,
    other_local,
    parse_xml,
    path,
    text,
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
    """An II (CDA R2, data type II): root OID and extension; None without a root."""
    root = element.get("root") if element is not None else None
    if element is None or not root:
        return None
    return PatientId(element.get("extension", "").strip(), root.strip())


def _ts(value: str) -> dt.datetime | None:
    """HL7 v3 TS ``YYYYMMDD[HHMM[SS]][+ZZZZ]``."""
    value = value.strip()
    digits = value[:14]
    if digits.isdigit():
        zone = value[len(digits):]
    else:  # not a TS: its digits, read as they come
        zone = ""
        digits = "".join(c for c in digits if c.isdigit())
    tzinfo = _zone(zone)
    return parse_digits(digits, tzinfo) if tzinfo is not None else None


def _offset(zone: str) -> dt.tzinfo | None:
    """The time zone of ``+HHMM`` or ``-HHMM``; None when it is none (24 hours or more,
    digits ``int`` does not read)."""
    try:
        offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        return dt.timezone(offset if zone[0] == "+" else -offset)
    except ValueError:
        return None


# The usual offsets, built once: a TS's zone is a look-up rather than two objects.
_ZONES = {zone: _offset(zone) for zone in (
    f"{sign}{hours:02d}{minutes:02d}" for sign in "+-" for hours in range(24)
    for minutes in (0, 15, 30, 45))}


def _zone(zone: str) -> dt.tzinfo | None:
    """The time zone a TS's suffix names: UTC without ``+ZZZZ`` or ``-ZZZZ``, None when
    the offset is invalid."""
    if not (zone and zone[0] in "+-" and zone[1:5].isdigit()):
        return dt.UTC
    known = _ZONES.get(zone[:5])
    return known if known is not None else _offset(zone)


def _names(element: Element | None) -> tuple[str, str]:
    name = child(element, "name")
    given = " ".join(text(g) for g in children(name, "given")) if name is not None else ""
    return text(child(name, "family")), given


def _first(parts: dict[str, list[Element]], name: str) -> Element | None:
    """``child`` of the element whose children by name are ``parts``."""
    found = parts.get(name)
    return found[0] if found else None


def read_cda(data: bytes, *, builder: Builder = "lxml") -> CdaResult:
    """The header of a CDA R2 document (CDA R2 §4.2), read from its tree: built by
    libxml2 (``builder`` "lxml", about twice as fast; deeper than 256 levels, refused
    as not well-formed) or by ElementTree ("etree", the reference of the tests)."""
    root, trouble = parse_xml(data, "CDA", builder=builder)
    if root is None:
        assert trouble is not None
        return CdaResult(None, (trouble,))
    if not _is_clinical_document(root.tag):
        return _NOT_CDA
    return _from_tree_fast(root) if builder == "lxml" else _from_tree(root)


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


# -- the same reading in one pass over each element's children (libxml2's trees) -------

# The tags read, and the usual others of a header (a hit in the table spares computing a
# local name; any other tag is matched by its local name all the same).
_TAGS = known_tags(HL7_V3, "code", "id", "title", "effectiveTime", "recordTarget", "author",
                   "patientRole", "patient", "name", "given", "family", "birthTime",
                   "assignedAuthor", "assignedPerson", "realmCode", "typeId", "templateId",
                   "confidentialityCode", "languageCode", "setId", "versionNumber", "custodian",
                   "legalAuthenticator", "documentationOf", "componentOf", "component",
                   "informant", "participant", "inFulfillmentOf", "relatedDocument", "time",
                   "addr", "telecom", "administrativeGenderCode", "prefix", "suffix")


def _first_fast(element: Element | None, name: str) -> Element | None:
    """``child(element, name)``, each tag looked up in a fixed table."""
    if element is None:
        return None
    for item in element[:]:  # a slice: a list built in C, cheaper than an iterator
        tag = item.tag
        if (_TAGS.get(tag) or other_local(tag)) == name:
            return item
    return None


def _names_fast(name: Element | None) -> tuple[str, str]:
    """``_names`` of the element whose first ``name`` is ``name``: the first family,
    the given names."""
    if name is None:
        return "", ""
    given: list[str] = []
    family: Element | None = None
    for item in name[:]:
        tag = item.tag
        kind = _TAGS.get(tag) or other_local(tag)
        if kind == "given":
            given.append(text(item))
        elif kind == "family" and family is None:
            family = item
    return text(family), " ".join(given)


def _patient_fast(target: Element) -> tuple[list[PatientId], str, str, dt.date | None]:
    """The ids, family and given names and birth date of a recordTarget's patientRole."""
    role = _first_fast(target, "patientRole")
    if role is None:
        return [], "", "", None
    ids: list[PatientId] = []
    person: Element | None = None
    for item in role[:]:
        tag = item.tag
        kind = _TAGS.get(tag) or other_local(tag)
        if kind == "id":
            found = _ii(item)
            if found is not None:
                ids.append(found)
        elif kind == "patient" and person is None:
            person = item
    name = born = None
    for item in person[:] if person is not None else ():
        tag = item.tag
        kind = _TAGS.get(tag) or other_local(tag)
        if kind == "name" and name is None:
            name = item
        elif kind == "birthTime" and born is None:
            born = item
    family, given = _names_fast(name)
    moment = _ts(born.get("value", "")) if born is not None else None
    return ids, family, given, moment.date() if moment else None


def _author_fast(author: Element) -> CdaAuthor:
    assigned = _first_fast(author, "assignedAuthor")
    if assigned is None:
        return CdaAuthor(None, "", "")
    identifier: Element | None = None
    person: Element | None = None
    for item in assigned[:]:
        tag = item.tag
        kind = _TAGS.get(tag) or other_local(tag)
        if kind == "id" and identifier is None:
            identifier = item
        elif kind == "assignedPerson" and person is None:
            person = item
    family, given = _names_fast(_first_fast(person, "name"))
    return CdaAuthor(_ii(identifier), family, given)


def _from_tree_fast(root: Element) -> CdaResult:
    """``_from_tree`` in one pass over the root's children, each tag read once and
    looked up in a fixed table (tests/test_content_fast.py holds them together)."""
    code = identifier = title = effective = target = None
    targets = 0
    authors: list[CdaAuthor] = []
    for item in root[:]:
        tag = item.tag
        kind = _TAGS.get(tag) or other_local(tag)
        if kind == "author":
            authors.append(_author_fast(item))
        elif kind == "recordTarget":
            targets += 1
            target = target if target is not None else item
        elif kind == "code":
            code = code if code is not None else item
        elif kind == "id":
            identifier = identifier if identifier is not None else item
        elif kind == "title":
            title = title if title is not None else item
        elif kind == "effectiveTime":
            effective = effective if effective is not None else item
    patient_ids, family, given, birth = ([], "", "", None) if target is None else (
        _patient_fast(target))
    value = code.get("code", "") if code is not None else ""
    document = CdaDocument(
        id=_ii(identifier), code=value,
        code_system=code.get("codeSystem", "") if code is not None else "",
        display=code.get("displayName", "") if code is not None else "", title=text(title),
        effective_time=_ts(effective.get("value", "")) if effective is not None else None,
        patient_ids=tuple(patient_ids), family=family, given=given, birth_date=birth,
        authors=tuple(authors),
    )
    return CdaResult(document, _problems({"code": value} if code is not None else None,
                                         targets))
