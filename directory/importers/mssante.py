"""The national "Extraction Correspondance MSSanté" file: one row per mailbox.

Columns are found by name (DESIGN.md, "Directory files"); the 31 published columns
must all be there and no other.
"""

from __future__ import annotations

from typing import Any

from directory.importers.report import ImportReport
from directory.models import MailboxType
from directory.professions import PROFESSIONS
from directory.service import DirectoryError, normalize_address
from directory.text import document

ADDRESS_COLUMNS = [
    f"{name} structure BAL"
    for name in (
        "L2COMPLEMENTLOCALISATION",
        "L3COMPLEMENTDISTRIBUTION",
        "L4NUMEROVOIE",
        "L4COMPLEMENTNUMEROVOIE",
        "NL4TYPEVOIE",  # sic, as published
        "L4LIBELLEVOIE",
        "L5LIEUDITMENTION",
        "L6LIGNEACHEMINEMENT",
    )
]

COLUMNS = [
    "Type de BAL",
    "Adresse BAL",
    "Type Identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Type identifiant structure",
    "Identification Structure",
    "Service de rattachement",
    "Civilité d'exercice",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Catégorie profession",
    "Libellé de catégorie profession",
    "Code Profession",
    "Libellé Profession",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Dématérialisation",
    "Raison Sociale structure BAL",
    "Enseigne commerciale structure BAL",
    *ADDRESS_COLUMNS,
    "Code postal structure BAL",
    "Département structure BAL",
    "Pays structure BAL",
]

IMPORTED_TYPES = {t.value for t in MailboxType if t is not MailboxType.PAT}
_TRUE = {"true", "vrai", "oui", "o", "1", "yes", "y"}
_FALSE = {"", "false", "faux", "non", "n", "0", "no"}


class RowError(ValueError):
    """This row cannot be imported; the message says why."""


def _flag(value: str) -> bool:
    folded = value.lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise RowError(f"Dématérialisation {value!r} is neither true nor false")


def parse_row(line: int, field: dict[str, str], report: ImportReport) -> dict[str, Any]:
    """The staging row for one data line, or RowError."""
    kind = field["Type de BAL"].upper()
    if kind not in IMPORTED_TYPES:
        raise RowError(f"unknown mailbox type {field['Type de BAL']!r} (PER, ORG, APP or CAB)")
    raw_address = field["Adresse BAL"]
    if not raw_address or " " in raw_address or len(raw_address) > 320:
        raise RowError(f"invalid mailbox address {raw_address!r}")
    try:
        address = normalize_address(raw_address)
    except DirectoryError as error:
        raise RowError(str(error)) from error
    pp_type, pp_id = field["Type Identifiant PP"], field["Identifiant PP"]
    national = field["Identification nationale PP"] or (pp_type + pp_id if pp_id else "")
    if kind == "PER" and not national:
        raise RowError("PER mailbox without a practitioner identifier")
    if national and not national.isalnum():
        raise RowError(f"invalid practitioner identifier {national!r}")
    profession_code = field["Code Profession"]
    profession_label = field["Libellé Profession"]
    if profession_code:
        known = PROFESSIONS.get(profession_code)
        if known is None:
            report.warn(line, f"unknown profession code {profession_code!r} "
                              f"({profession_label or 'no label'}): kept as given")
        elif not profession_label:
            profession_label = known
    org_type, org_id = field["Type identifiant structure"], field["Identification Structure"]
    family, given = field["Nom d'exercice"], field["Prénom d'exercice"]
    service = field["Service de rattachement"]
    name = field["Raison Sociale structure BAL"]
    trade_name = field["Enseigne commerciale structure BAL"]
    values = [field[c] for c in ADDRESS_COLUMNS]
    street = " ".join(v for v in values[2:6] if v)  # number, suffix, type, name
    address_lines = "\n".join(v for v in (values[0], values[1], street, values[6]) if v)
    locality = values[7]
    postal_code = field["Code postal structure BAL"]
    department = field["Département structure BAL"]
    specialty = field["Libellé savoir-faire"]
    if kind == "PER":
        display = " ".join(v for v in (given, family) if v)
    else:
        display = " – ".join(v for v in (service, trade_name or name) if v)
    return {
        "line": line,
        "address": address,
        "type": kind,
        "display_name": display[:200],
        "owner": national if kind == "PER" else (org_type + org_id if org_id else None),
        "pp_id_type": pp_type[:2],
        "pp_identifier": pp_id[:32],
        "pp_national": national[:40],
        "civility": field["Civilité d'exercice"][:32],
        "family_name": family[:200],
        "given_name": given[:200],
        "category_code": field["Catégorie profession"][:8],
        "category_label": field["Libellé de catégorie profession"][:200],
        "profession_code": profession_code[:8],
        "profession_label": profession_label[:200],
        "specialty_code": field["Code savoir-faire"][:16],
        "specialty_label": specialty[:200],
        "org_id_type": org_type[:4],
        "org_identifier": org_id[:64],
        "org_name": name[:300],
        "trade_name": trade_name[:300],
        "address_lines": address_lines,
        "locality": locality[:200],
        "postal_code": postal_code[:16],
        "department": department[:8],
        "country": field["Pays structure BAL"][:64],
        "service": service[:300],
        "dematerialisation": _flag(field["Dématérialisation"]),
        "document": document((family, given, profession_label, specialty, service, name,
                              trade_name, address_lines, locality, postal_code, department)),
    }
