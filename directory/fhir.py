"""The directory as FHIR R4 resources, shaped like the national directory's FHIR API
(Annuaire Santé): Practitioner, PractitionerRole and Organization searches returning
``Bundle``s of type ``searchset``; mailboxes are ``telecom`` entries (system
``email``) carrying their MSSanté type in an extension.

This module parses and checks the search parameters (``FhirError`` → a 400
``OperationOutcome``) and builds the resources; it knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from directory.models import Mailbox, MailboxStatus, MailboxType, Organisation, Practitioner
from directory.search import (
    CANDIDATES,
    DirectoryEntry,
    DirectorySearch,
    entry_query,
    to_entry,
)

MAILBOX_METADATA = (
    "https://annuaire.sante.gouv.fr/fhir/StructureDefinition/ContactPoint-MailboxMSSMetadata"
)
MAILBOX_TYPE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL"
PROFESSION_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
SPECIALTY_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"  # national identifier of health professionals
STRUCTURE_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"  # national identifier of structures

DEFAULT_COUNT = 20
MAX_COUNT = 100
MAX_VALUE = 256
PUBLIC_TYPES = {t.value for t in MailboxType if t is not MailboxType.PAT}

# Search parameters each resource accepts (FHIR R4 §3.1.1.5, the ANS profile's names).
COMMON = {"_count", "_offset", "mailbox-mss", "mailbox-mss-type", "name", "_format"}
PARAMETERS = {
    "Practitioner": COMMON | {"family", "given", "identifier"},
    "PractitionerRole": COMMON | {"family", "given", "practitioner", "organization"},
    "Organization": COMMON | {"identifier", "address-city", "address-postalcode"},
}
MODIFIERS = {"mailbox-mss": {"", "exact", "contains"}}


class FhirError(ValueError):
    """A malformed search: answered with a 400 OperationOutcome naming the problem."""


def operation_outcome(message: str, code: str = "invalid") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": message}],
    }


@dataclass
class Query:
    resource: str
    count: int = DEFAULT_COUNT
    offset: int = 0
    words: list[str] = field(default_factory=list)
    address: tuple[str, str] | None = None  # (modifier, value)
    types: set[str] | None = None
    identifier: str | None = None
    practitioner: str | None = None
    organization: str | None = None


def _int(name: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise FhirError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def parse_query(resource: str, params: Sequence[tuple[str, str]]) -> Query:
    """Check every parameter; raise FhirError naming the first wrong one."""
    if resource not in PARAMETERS:
        raise FhirError(f"unknown resource type {resource!r} (Practitioner, "
                        "PractitionerRole or Organization)")
    query = Query(resource)
    seen: set[str] = set()
    for key, value in params:
        name, _, modifier = key.partition(":")
        if name not in PARAMETERS[resource]:
            raise FhirError(f"unknown search parameter {name!r} for {resource}; known: "
                            + ", ".join(sorted(PARAMETERS[resource])))
        if modifier not in MODIFIERS.get(name, {""}):
            raise FhirError(f"unsupported modifier {key!r}")
        if name in seen:
            raise FhirError(f"parameter {name!r} given twice")
        seen.add(name)
        if not value.strip() or len(value) > MAX_VALUE:
            raise FhirError(f"{key} needs a value of 1 to {MAX_VALUE} characters")
        if name == "_count":
            query.count = _int(name, value, 1, MAX_COUNT)
        elif name == "_offset":
            query.offset = _int(name, value, 0, CANDIDATES)
        elif name == "_format":
            if value not in ("json", "application/fhir+json", "application/json"):
                raise FhirError("only JSON is served (_format=json)")
        elif name in ("name", "family", "given", "address-city", "address-postalcode"):
            query.words.append(value)
        elif name == "mailbox-mss":
            query.address = (modifier or "", value.strip().lower())
        elif name == "mailbox-mss-type":
            types = {t.strip().upper() for t in value.split(",")}
            if not types <= PUBLIC_TYPES:
                raise FhirError(f"mailbox-mss-type must be among PER, ORG, APP, CAB, not "
                                f"{value!r}")
            query.types = types
        elif name == "identifier":
            query.identifier = value.rpartition("|")[2].strip()
        elif name == "practitioner":
            query.practitioner = value.rpartition("/")[2].strip()
        elif name == "organization":
            query.organization = value.rpartition("/")[2].strip()
    if query.address and query.address[0] == "contains" and len(query.address[1]) < 3:
        raise FhirError("mailbox-mss:contains needs at least 3 characters")
    return query


class FhirDirectory:
    """Runs a checked Query against the public directory."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._search = DirectorySearch(engine)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def entries(self, query: Query) -> tuple[list[DirectoryEntry], bool]:
        """Up to CANDIDATES public entries matching ``query``; True when cut there."""
        if query.words:
            result = await self._search.search(" ".join(query.words), limit=CANDIDATES)
            found, truncated = result.entries, result.truncated
        else:
            found, truncated = await self._select(query)
        return [e for e in found if _matches(e, query)], truncated

    async def _select(self, query: Query) -> tuple[list[DirectoryEntry], bool]:
        statement = entry_query().where(
            Mailbox.status == MailboxStatus.ACTIVE.value,
            Mailbox.red_list.is_(False),
            Mailbox.type.in_(sorted(query.types or PUBLIC_TYPES)),
        )
        if query.address is not None:
            modifier, value = query.address
            if modifier == "exact":
                statement = statement.where(Mailbox.address == value)
            elif modifier == "contains":
                escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                statement = statement.where(Mailbox.address.like(f"%{escaped}%", escape="\\"))
            elif self._engine.dialect.name == "sqlite":  # FHIR default: starts with
                # SQLite compares bytes: an index range; its LIKE would scan the table.
                statement = statement.where(Mailbox.address >= value,
                                            Mailbox.address < value + "\U0010ffff")
            else:  # a collation may not sort U+10FFFF last: LIKE 'value%'
                statement = statement.where(Mailbox.address.startswith(value, autoescape=True))
        if query.identifier:
            statement = statement.where(or_(Practitioner.national_id == query.identifier,
                                            Organisation.identifier == query.identifier))
        if query.practitioner:
            statement = statement.where(Practitioner.national_id == query.practitioner)
        if query.organization:
            statement = statement.where(Organisation.id == _org_id(query.organization))
        statement = statement.order_by(Mailbox.id).limit(CANDIDATES + 1)
        async with self._sessions() as session:
            rows = (await session.execute(statement)).all()
        return [to_entry(*row) for row in rows[:CANDIDATES]], len(rows) > CANDIDATES


def _org_id(reference: str) -> int:
    number = reference.removeprefix("org-")
    if not number.isdigit():
        raise FhirError(f"organization must be Organization/org-N, not {reference!r}")
    return int(number)


def _matches(entry: DirectoryEntry, query: Query) -> bool:
    if query.types is not None and entry.type.value not in query.types:
        return False
    if query.address is not None:
        modifier, value = query.address
        if modifier == "exact" and entry.address != value:
            return False
        if modifier == "contains" and value not in entry.address:
            return False
        if modifier == "" and not entry.address.startswith(value):
            return False
    practitioner, organisation = entry.practitioner, entry.organisation
    if query.identifier and query.identifier not in (
        practitioner.national_id if practitioner else None,
        organisation.identifier if organisation else None,
    ):
        return False
    if query.practitioner and (practitioner is None
                               or practitioner.national_id != query.practitioner):
        return False
    return not (query.organization and (
        organisation is None or organisation.id != _org_id(query.organization)))


# Resources ------------------------------------------------------------------

def telecom(entry: DirectoryEntry) -> dict[str, Any]:
    return {
        "system": "email",
        "value": entry.address,
        "extension": [{
            "url": MAILBOX_METADATA,
            "extension": [
                {"url": "type", "valueCodeableConcept": {"coding": [
                    {"system": MAILBOX_TYPE_SYSTEM, "code": entry.type.value}]}},
                {"url": "description", "valueString": entry.display_name},
                {"url": "service", "valueString": entry.service},
                {"url": "digitization", "valueBoolean": entry.dematerialisation},
            ],
        }],
    }


def practitioner_resource(entries: list[DirectoryEntry]) -> dict[str, Any]:
    who = entries[0].practitioner
    assert who is not None
    name: dict[str, Any] = {"family": who.family_name,
                            "given": [g for g in who.given_name.split() if g]}
    if who.civility:
        name["prefix"] = [who.civility]
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": who.national_id,
        "identifier": [{"system": IDNPS_SYSTEM, "value": who.national_id}],
        "active": True,
        "name": [name],
        "telecom": [telecom(e) for e in entries],
    }
    if who.profession_code:
        resource["qualification"] = [{"code": {"coding": [{
            "system": PROFESSION_SYSTEM, "code": who.profession_code,
            "display": who.profession_label}]}}]
    return resource


def role_resource(entry: DirectoryEntry) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": f"mailbox-{entry.id}",
        "active": True,
        "telecom": [telecom(entry)],
    }
    if entry.practitioner is not None:
        who = entry.practitioner
        resource["practitioner"] = {
            "reference": f"Practitioner/{who.national_id}",
            "display": " ".join(v for v in (who.given_name, who.family_name) if v),
        }
        if who.profession_code:
            resource["code"] = [{"coding": [{"system": PROFESSION_SYSTEM,
                                             "code": who.profession_code,
                                             "display": who.profession_label}]}]
        if who.specialty_code:
            resource["specialty"] = [{"coding": [{"system": SPECIALTY_SYSTEM,
                                                  "code": who.specialty_code,
                                                  "display": who.specialty_label}]}]
    if entry.organisation is not None:
        resource["organization"] = {"reference": f"Organization/org-{entry.organisation.id}",
                                    "display": entry.organisation.name}
    return resource


def organization_resource(entries: list[DirectoryEntry]) -> dict[str, Any]:
    org = entries[0].organisation
    assert org is not None
    postal, _, city = org.locality.partition(" ")
    address: dict[str, Any] = {"line": list(org.address_lines),
                               "postalCode": org.postal_code or postal,
                               "city": city, "district": org.department}
    if org.country:
        address["country"] = org.country
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": f"org-{org.id}",
        "identifier": [{"system": STRUCTURE_SYSTEM, "value": org.id_type + org.identifier,
                        "type": {"text": f"type {org.id_type}"}}],
        "active": True,
        "name": org.name,
        "address": [address],
        "telecom": [telecom(e) for e in entries],
    }
    if org.trade_name:
        resource["alias"] = [org.trade_name]
    return resource


def resources(query: Query, entries: list[DirectoryEntry]) -> list[dict[str, Any]]:
    """The resources of ``query.resource`` behind ``entries``, in the entries' order."""
    if query.resource == "PractitionerRole":
        return [role_resource(e) for e in entries if e.practitioner is not None]
    groups: dict[object, list[DirectoryEntry]] = {}
    for entry in entries:
        if query.resource == "Practitioner" and entry.practitioner is not None:
            groups.setdefault(entry.practitioner.national_id, []).append(entry)
        elif query.resource == "Organization" and entry.organisation is not None:
            groups.setdefault(entry.organisation.id, []).append(entry)
    build = practitioner_resource if query.resource == "Practitioner" else organization_resource
    return [build(group) for group in groups.values()]


def bundle(
    query: Query, found: list[dict[str, Any]], base_url: str, params: Mapping[str, str],
    truncated: bool,
) -> dict[str, Any]:
    """A searchset Bundle (FHIR R4 §3.1.1.3) of one page, with its self and next links."""
    page = found[query.offset:query.offset + query.count]

    def link(offset: int) -> str:
        from urllib.parse import urlencode

        kept = [(k, v) for k, v in params.items() if k not in ("_offset", "_count")]
        return f"{base_url}?{urlencode([*kept, ('_count', query.count), ('_offset', offset)])}"

    links = [{"relation": "self", "url": link(query.offset)}]
    if query.offset + query.count < len(found):
        links.append({"relation": "next", "url": link(query.offset + query.count)})
    result: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "link": links,
        "entry": [{"fullUrl": f"{base_url.rsplit('/', 1)[0]}/{r['resourceType']}/{r['id']}",
                   "resource": r, "search": {"mode": "match"}} for r in page],
    }
    if truncated:
        result["meta"] = {"tag": [{"code": "SUBSETTED",
                                   "display": f"more than {CANDIDATES} matches: refine"}]}
    return result
