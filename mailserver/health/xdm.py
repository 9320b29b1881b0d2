"""IHE XDM packages (IHE ITI TF-1 §16, TF-3 §4.2.3 and §4.2.4; ebRIM 3.0 metadata).

A package is a zip (``IHE_XDM.zip`` in MSSanté) with ``INDEX.HTM``, ``README.TXT``
and ``IHE_XDM/SUBSET01/METADATA.XML``: a ``SubmitObjectsRequest`` holding the
submission set (``RegistryPackage``) and one ``ExtrinsicObject`` per document,
whose ``URI`` slot names the document file beside METADATA.XML, with its SHA-1
``hash`` and ``size`` (ITI TF-3 §4.2.3.2). ``read_xdm`` never raises: it returns
what it could read and the problems found.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from mailserver.health.hl7time import parse_digits
from mailserver.health.problems import Problem
from mailserver.health.safezip import ZipContents, ZipLimits, read_zip, unsafe_name
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

# ITI TF-3 Table 4.2.5-1 (classification schemes and identification schemes).
DOC_ENTRY_TYPE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
DOC_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DOC_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DOC_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DOC_FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DOC_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DOC_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SET_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SET_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SET_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SET_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SET_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
LOINC = "2.16.840.1.113883.6.1"

# ANS (CI-SIS) identifiers of the INS: NIR and NIA, and their test ranges.
INS_NIR = "1.2.250.1.213.1.4.8"
INS_NIA = "1.2.250.1.213.1.4.9"
INS_NIR_TEST = "1.2.250.1.213.1.4.10"
INS_NIA_TEST = "1.2.250.1.213.1.4.11"
INS_OIDS = frozenset({INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIA_TEST})

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"

SUBSET = "IHE_XDM/SUBSET01/"
METADATA = SUBSET + "METADATA.XML"
MAX_DOCUMENTS = 100


@dataclass(frozen=True)
class PatientId:
    """An HL7 v2 CX identifier ``id^^^&OID&ISO`` (ITI TF-3 §4.2.3.2.16)."""

    extension: str
    root: str

    @property
    def is_ins(self) -> bool:
        return self.root in INS_OIDS

    def __str__(self) -> str:
        return f"{self.extension}^^^&{self.root}&ISO"


@dataclass(frozen=True)
class Code:
    code: str
    scheme: str = ""
    display: str = ""


@dataclass(frozen=True)
class Author:
    person: str = ""  # XCN, e.g. "801234567897^DUPONT^Jean^^^^^^&1.2.250.1.71.4.2.1&ISO"
    institution: str = ""
    role: str = ""
    specialty: str = ""

    @property
    def display(self) -> str:
        parts = self.person.split("^")
        return " ".join(p for p in parts[2:3] + parts[1:2] if p) or self.person


@dataclass(frozen=True)
class DocumentEntry:
    """One document of the package and the metadata the health record keeps."""

    entry_id: str
    unique_id: str
    patient: PatientId | None
    class_code: Code | None
    type_code: Code | None
    format_code: Code | None
    author: Author | None
    creation_time: dt.datetime | None
    title: str
    mime_type: str
    hash: str
    size: int | None
    uri: str
    content: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class SubmissionSet:
    unique_id: str = ""
    source_id: str = ""
    patient: PatientId | None = None
    submission_time: dt.datetime | None = None
    author: Author | None = None
    content_type: Code | None = None
    title: str = ""


@dataclass(frozen=True)
class XdmPackage:
    submission_set: SubmissionSet | None
    documents: tuple[DocumentEntry, ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def patients(self) -> frozenset[PatientId]:
        return _patients(self.submission_set, self.documents)

    @property
    def type_codes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.type_code.code for d in self.documents if d.type_code))


def _patients(submission_set: SubmissionSet | None, documents: Sequence[DocumentEntry]
              ) -> frozenset[PatientId]:
    """The patients the submission set and its documents name."""
    found = {d.patient for d in documents if d.patient is not None}
    if submission_set is not None and submission_set.patient is not None:
        found.add(submission_set.patient)
    return frozenset(found)


def looks_like_xdm(names: list[str]) -> bool:
    return any(n.upper() == METADATA for n in names)


def parse_patient_id(value: str) -> PatientId | None:
    """``248092A12345612^^^&1.2.250.1.213.1.4.8&ISO`` → PatientId, None if malformed."""
    components = value.strip().split("^")
    if len(components) < 4 or not components[0]:
        return None
    authority = components[3].split("&")
    if len(authority) < 2 or not authority[1]:
        return None
    return PatientId(components[0], authority[1])


def parse_dtm(value: str) -> dt.datetime | None:
    """HL7 DTM ``YYYY[MM[DD[HH[MM[SS]]]]]`` in UTC (ITI TF-3 §4.2.3.1.5)."""
    digits = value.strip()
    if not digits.isdigit() or len(digits) not in (4, 6, 8, 10, 12, 14):
        return None
    padded = digits + "0101000000"[len(digits) - 4:] if len(digits) < 14 else digits
    return parse_digits(padded[:14], dt.UTC)


def _problem(code: str, en: str, fr: str) -> Problem:
    return Problem(code, en, fr)


def read_xdm(data: bytes, limits: ZipLimits = ZipLimits()) -> XdmPackage:  # noqa: B008
    contents = read_zip(data, limits)
    if contents.problems and not contents.entries:
        return XdmPackage(None, (), contents.problems)
    return read_xdm_contents(contents)


def read_xdm_contents(contents: ZipContents, *, builder: Builder = "lxml") -> XdmPackage:
    """``builder``: who builds METADATA.XML's tree (``xmlsafe.parse_xml``); "etree"
    is the reference reading the tests hold libxml2's to."""
    problems = list(contents.problems)
    for required in ("INDEX.HTM", "README.TXT"):  # ITI TF-3 §4.2.4.1
        if contents.get(required) is None:
            problems.append(_problem(
                "XDM-STRUCTURE", f"The XDM package has no {required}",
                f"Le paquet XDM n'a pas de fichier {required}"))
    metadata = contents.get(METADATA)
    if metadata is None:
        problems.append(_problem("XDM-METADATA", f"The XDM package has no {METADATA}",
                                 f"Le paquet XDM n'a pas de fichier {METADATA}"))
        return XdmPackage(None, (), tuple(problems))
    root, trouble = parse_xml(metadata.data, "METADATA.XML", builder=builder)
    if root is None:
        assert trouble is not None
        return XdmPackage(None, (), (*problems, trouble))
    if local(root.tag) != "SubmitObjectsRequest":
        return XdmPackage(None, (), (*problems, _problem(
            "XDM-METADATA", "METADATA.XML is not an ebXML SubmitObjectsRequest",
            "METADATA.XML n'est pas une SubmitObjectsRequest ebXML")))
    objects = path(root, "RegistryObjectList")
    if objects is None:
        return XdmPackage(None, (), (*problems, _problem(
            "XDM-METADATA", "METADATA.XML has no RegistryObjectList",
            "METADATA.XML n'a pas de RegistryObjectList")))
    submission_set: SubmissionSet | None = None
    listed = grouped(objects)
    packages = listed.get("RegistryPackage", [])
    if len(packages) != 1:
        problems.append(_problem(
            "XDM-METADATA", "METADATA.XML must hold exactly one submission set",
            "METADATA.XML doit contenir exactement un lot de soumission"))
    else:
        submission_set = _submission_set(packages[0], fast=builder == "lxml")
    documents: list[DocumentEntry] = []
    extrinsic = listed.get("ExtrinsicObject", [])
    if not extrinsic:
        problems.append(_problem("XDM-EMPTY", "The XDM package declares no document",
                                 "Le paquet XDM ne déclare aucun document"))
    for element in extrinsic[:MAX_DOCUMENTS]:
        entry, entry_problems = _document(element, contents, fast=builder == "lxml")
        documents.append(entry)
        problems.extend(entry_problems)
    if len(extrinsic) > MAX_DOCUMENTS:
        problems.append(_problem(
            "XDM-DOCUMENTS", f"The XDM package declares more than {MAX_DOCUMENTS} documents",
            f"Le paquet XDM déclare plus de {MAX_DOCUMENTS} documents"))
    if len(_patients(submission_set, documents)) > 1:
        problems.append(_problem(
            "XDM-PATIENTS", "The XDM package concerns more than one patient",
            "Le paquet XDM concerne plus d'un patient"))
    return XdmPackage(submission_set, tuple(documents), tuple(dict.fromkeys(problems)))


def _slots(slots: list[Element]) -> dict[str, list[str]]:
    """Slot name -> its values (ebRIM 3.0 ``Slot/ValueList/Value``; a Slot whose
    ValueList is missing or empty is read for Values of its own, as before)."""
    found: dict[str, list[str]] = {}
    for slot in slots:
        holder = slot
        for item in slot:  # child(slot, "ValueList"), inline: a dozen slots a package
            tag = item.tag
            if tag == "ValueList" or tag.endswith("}ValueList"):
                if len(item):
                    holder = item
                break
        values = [text(v) if len(v) else (v.text or "").strip()  # a leaf's text, inline
                  for v in holder if v.tag == "Value" or v.tag.endswith("}Value")]
        name = slot.get("name", "")
        if name in found:
            found[name].extend(values)
        else:
            found[name] = values
    return found


def _first(slots: dict[str, list[str]], name: str) -> str:
    values = slots.get(name)
    return values[0] if values else ""


def _name(parts: dict[str, list[Element]]) -> str:
    """The ``Name/LocalizedString`` value, ``parts`` being the owner's children by name."""
    names = parts.get("Name")
    name = child(names[0], "LocalizedString") if names else None
    return (name.get("value", "") if name is not None else "").strip()


def _classifications(parts: dict[str, list[Element]]) -> dict[str, Element]:
    return {c.get("classificationScheme", ""): c for c in parts.get("Classification", ())}


def _code(classification: Element | None) -> Code | None:
    if classification is None:
        return None
    parts = grouped(classification)
    return Code(classification.get("nodeRepresentation", "").strip(),
                _first(_slots(parts.get("Slot", [])), "codingScheme"), _name(parts))


def _author(classification: Element | None) -> Author | None:
    if classification is None:
        return None
    slots = _slots(children(classification, "Slot"))
    return Author(_first(slots, "authorPerson"), _first(slots, "authorInstitution"),
                  _first(slots, "authorRole"), _first(slots, "authorSpecialty"))


def _identifiers(parts: dict[str, list[Element]]) -> dict[str, str]:
    return {i.get("identificationScheme", ""): i.get("value", "").strip()
            for i in parts.get("ExternalIdentifier", ())}


# What an owner (RegistryPackage, ExtrinsicObject, Classification) says, read once:
# the first value of each wanted slot name, identifier values and classifications by
# scheme (the last of a scheme wins), the Name's LocalizedString value.
_Owner = tuple[dict[str, str], dict[str, str], dict[str, Element], str]


def _owner(element: Element, wanted: frozenset[str]) -> _Owner:
    """The reference reading, by groups of children (the "etree" builder's)."""
    parts = grouped(element)
    slots = _slots(parts.get("Slot", []))
    values = {name: found[0] for name, found in slots.items() if name in wanted and found}
    return values, _identifiers(parts), _classifications(parts), _name(parts)


# The tags read, and two often beside them (a hit in the table spares computing a local
# name; any other tag is matched by its local name all the same).
_TAGS = known_tags(RIM, "Slot", "ValueList", "Value", "Name", "LocalizedString",
                   "Classification", "ExternalIdentifier", "Description", "VersionInfo")


def _owner_fast(element: Element, wanted: frozenset[str]) -> _Owner:
    """``_owner`` in one pass over the children, each tag read once and looked up in a
    fixed table; only wanted slots read, up to their first Value (the same result,
    tests/test_xdm.py holds them together)."""
    values: dict[str, str] = {}
    ids: dict[str, str] = {}
    classes: dict[str, Element] = {}
    title: Element | None = None
    for item in element[:]:  # a slice: a list built in C, cheaper than an iterator
        tag = item.tag
        kind = _TAGS.get(tag) or other_local(tag)
        if kind == "Slot":
            name = item.get("name", "")
            if name in wanted and name not in values:
                value = _first_value(item)
                if value is not None:  # no Value: a later slot of that name may say
                    values[name] = value
        elif kind == "Classification":
            classes[item.get("classificationScheme", "")] = item
        elif kind == "ExternalIdentifier":
            ids[item.get("identificationScheme", "")] = item.get("value", "").strip()
        elif kind == "Name" and title is None:
            title = item
    return values, ids, classes, _localized(title)


def _first_value(slot: Element) -> str | None:
    """The first ``Value`` of a Slot (its first ValueList's, or its own when that list
    is missing or empty, as ``_slots``), None when it has none."""
    holder = slot
    for item in slot[:]:
        tag = item.tag
        if (_TAGS.get(tag) or other_local(tag)) == "ValueList":
            if len(item):
                holder = item
            break
    for value in holder[:]:
        tag = value.tag
        if (_TAGS.get(tag) or other_local(tag)) == "Value":
            return text(value) if len(value) else (value.text or "").strip()
    return None


def _localized(name: Element | None) -> str:
    """The first ``LocalizedString``'s value of a ``Name`` element."""
    if name is None:
        return ""
    for item in name[:]:
        tag = item.tag
        if (_TAGS.get(tag) or other_local(tag)) == "LocalizedString":
            return item.get("value", "").strip()
    return ""


_AUTHOR_SLOTS = frozenset({"authorPerson", "authorInstitution", "authorRole", "authorSpecialty"})


def _code_fast(classification: Element | None) -> Code | None:
    """``_code``: the first ``codingScheme`` value and the first Name's, in one pass."""
    if classification is None:
        return None
    scheme: str | None = None
    title: Element | None = None
    for item in classification[:]:
        tag = item.tag
        kind = _TAGS.get(tag) or other_local(tag)
        if kind == "Slot":
            if scheme is None and item.get("name", "") == "codingScheme":
                scheme = _first_value(item)  # None: a later codingScheme slot may say
        elif kind == "Name" and title is None:
            title = item
    return Code(classification.get("nodeRepresentation", "").strip(), scheme or "",
                _localized(title))


def _author_fast(classification: Element | None) -> Author | None:
    """``_author``: the first value of each author slot, in one pass."""
    if classification is None:
        return None
    values: dict[str, str] = {}
    for item in classification[:]:
        tag = item.tag
        if (_TAGS.get(tag) or other_local(tag)) == "Slot":
            name = item.get("name", "")
            if name in _AUTHOR_SLOTS and name not in values:
                value = _first_value(item)
                if value is not None:
                    values[name] = value
    return Author(values.get("authorPerson", ""), values.get("authorInstitution", ""),
                  values.get("authorRole", ""), values.get("authorSpecialty", ""))


_SET_SLOTS = frozenset({"submissionTime"})


def _readers(fast: bool) -> tuple[Callable[[Element, frozenset[str]], _Owner],
                                  Callable[[Element | None], Code | None],
                                  Callable[[Element | None], Author | None]]:
    """The one-pass readers for libxml2's trees, the reference ones for ElementTree's."""
    return (_owner_fast, _code_fast, _author_fast) if fast else (_owner, _code, _author)


def _submission_set(element: Element, *, fast: bool) -> SubmissionSet:
    owner, code, author = _readers(fast)
    values, ids, classes, title = owner(element, _SET_SLOTS)
    return SubmissionSet(
        unique_id=ids.get(SET_UNIQUE_ID, ""), source_id=ids.get(SET_SOURCE_ID, ""),
        patient=parse_patient_id(ids.get(SET_PATIENT_ID, "")),
        submission_time=parse_dtm(values.get("submissionTime", "")),
        author=author(classes.get(SET_AUTHOR)), content_type=code(classes.get(SET_CONTENT_TYPE)),
        title=title,
    )


_DOCUMENT_SLOTS = frozenset({"creationTime", "URI", "hash", "size"})


def _document(element: Element, contents: ZipContents, *, fast: bool
              ) -> tuple[DocumentEntry, list[Problem]]:
    owner, code, author = _readers(fast)
    values, ids, classes, title = owner(element, _DOCUMENT_SLOTS)
    entry_id = element.get("id", "")[:200]
    where = f"document {entry_id or '?'}"
    problems: list[Problem] = []
    patient = parse_patient_id(ids.get(DOC_PATIENT_ID, ""))
    if patient is None:
        problems.append(_problem("XDM-PATIENT", f"{where}: no valid patient id",
                                 f"{where} : identifiant patient absent ou invalide"))
    type_code = code(classes.get(DOC_TYPE_CODE))
    if type_code is None or not type_code.code:
        problems.append(_problem("XDM-TYPECODE", f"{where}: no typeCode",
                                 f"{where} : typeCode absent"))
    raw_time = values.get("creationTime", "")
    creation_time = parse_dtm(raw_time)
    if creation_time is None:
        problems.append(_problem("XDM-TIME", f"{where}: missing or invalid creationTime",
                                 f"{where} : creationTime absent ou invalide"))
    uri = values.get("URI", "")
    declared_hash = values.get("hash", "").lower()
    size_text = values.get("size", "")
    size = int(size_text) if size_text.isdigit() and len(size_text) < 16 else None
    content = b""
    if not uri or unsafe_name(uri):
        problems.append(_problem("XDM-URI", f"{where}: missing or unsafe URI",
                                 f"{where} : URI absente ou dangereuse"))
    else:
        stored = contents.get(posixpath.normpath(SUBSET + uri))
        if stored is None:
            problems.append(_problem(
                "XDM-MISSING", f"{where}: the file {uri[:100]} is not in the package",
                f"{where} : le fichier {uri[:100]} est absent du paquet"))
        else:
            content = stored.data
            # ITI TF-3 §4.2.3.2.10: hash is the SHA-1 of the document, hex.
            if declared_hash != hashlib.sha1(content, usedforsecurity=False).hexdigest():
                problems.append(_problem(
                    "XDM-HASH", f"{where}: the SHA-1 hash does not match the file",
                    f"{where} : l'empreinte SHA-1 ne correspond pas au fichier"))
            if size is None or size != len(content):
                problems.append(_problem(
                    "XDM-SIZE", f"{where}: the declared size does not match the file",
                    f"{where} : la taille déclarée ne correspond pas au fichier"))
    entry = DocumentEntry(
        entry_id=entry_id, unique_id=ids.get(DOC_UNIQUE_ID, ""), patient=patient,
        class_code=code(classes.get(DOC_CLASS_CODE)), type_code=type_code,
        format_code=code(classes.get(DOC_FORMAT_CODE)), author=author(classes.get(DOC_AUTHOR)),
        creation_time=creation_time, title=title,
        mime_type=element.get("mimeType", ""), hash=declared_hash, size=size, uri=uri,
        content=content,
    )
    return entry, problems
