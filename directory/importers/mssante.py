"""The national "Extraction Correspondance MSSanté" file: one row per mailbox.

Columns are found by name (DESIGN.md, "Directory files"); the 31 published columns
must all be there and no other.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from directory.addresses import DirectoryError, normalize_address
from directory.importers.report import ImportReport
from directory.kinds import MailboxType
from directory.professions import PROFESSIONS
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
# Bump when parse_row derives stored values differently: every row is rewritten once.
DIGEST_VERSION = "1"
_TRUE = {"true", "vrai", "oui", "o", "1", "yes", "y"}
_FALSE = {"", "false", "faux", "non", "n", "0", "no"}


# Organisations and professions repeat across rows: one tuple object per distinct
# value, so a batch pickled for the merging process (parse_process.py) carries each
# once and the rest as back-references. Bounded: cleared when full.
_SHARED: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHARED_MAX = 20_000


def _shared(values: tuple[str, ...]) -> tuple[str, ...]:
    found = _SHARED.get(values)
    if found is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        found = _SHARED[values] = values
    return found


class RowError(ValueError):
    """This row cannot be imported; the message says why."""


def _flag(value: str) -> bool:
    folded = value.lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise RowError(f"Dématérialisation {value!r} is neither true nor false")


class MailboxRow(NamedTuple):
    """One accepted line of the extraction, ready to merge: only what load.py writes
    (a big file's rows cross a pipe from the parsing process, parse_process.py)."""

    line: int
    address: str
    type: str
    display_name: str
    owner: str | None
    pp_national: str
    org_id_type: str
    org_identifier: str
    service: str
    dematerialisation: bool
    document: str
    practitioner: tuple[str, ...]  # load.PRACTITIONER_FIELDS values
    organisation: tuple[str, ...]  # load.ORGANISATION_FIELDS values
    digest: str  # of the whole line: equal digests, nothing to write (load.py)


def parse_row(line: int, fields: list[str], report: ImportReport) -> MailboxRow:
    """The staging row for one data line (``fields`` in COLUMNS order), or RowError."""
    (kind, raw_address, pp_type, pp_id, national, org_type, org_id, service, civility,
     family, given, category_code, category_label, profession_code, profession_label,
     specialty_code, specialty, demat, name, trade_name, l2, l3, l4_number, l4_suffix,
     l4_type, l4_name, l5, locality, postal_code, department, country) = fields
    kind = kind.upper()
    if kind not in IMPORTED_TYPES:
        raise RowError(f"unknown mailbox type {fields[0]!r} (PER, ORG, APP or CAB)")
    if not raw_address or " " in raw_address or len(raw_address) > 320:
        raise RowError(f"invalid mailbox address {raw_address!r}")
    try:
        address = normalize_address(raw_address)
    except DirectoryError as error:
        raise RowError(str(error)) from error
    if not national and pp_id:
        national = pp_type + pp_id
    if kind == "PER" and not national:
        raise RowError("PER mailbox without a practitioner identifier")
    if national and not national.isalnum():
        raise RowError(f"invalid practitioner identifier {national!r}")
    if profession_code:
        known = PROFESSIONS.get(profession_code)
        if known is None:
            report.warn(line, f"unknown profession code {profession_code!r} "
                              f"({profession_label or 'no label'}): kept as given")
        elif not profession_label:
            profession_label = known
    street = " ".join(v for v in (l4_number, l4_suffix, l4_type, l4_name) if v)
    address_lines = "\n".join(v for v in (l2, l3, street, l5) if v)
    if kind == "PER":
        display = " ".join(v for v in (given, family) if v)
    else:
        display = " – ".join(v for v in (service, trade_name or name) if v)
    labels = _shared((civility[:32], category_code[:8], category_label[:200],
                      profession_code[:8], profession_label[:200], specialty_code[:16],
                      specialty[:200]))
    practitioner = (pp_type[:2], pp_id[:32], labels[0], family[:200], given[:200],
                    *labels[1:])
    organisation = _shared((name[:300], trade_name[:300], address_lines, locality[:200],
                            postal_code[:16], department[:8], country[:64]))
    return MailboxRow(
        line, address, kind, display[:200],
        national if kind == "PER" else (org_type + org_id if org_id else None),
        national[:40], org_type[:4], org_id[:64], service[:300], _flag(demat),
        document((family, given, profession_label, specialty, service, name, trade_name,
                  address_lines, locality, postal_code, department)),
        practitioner, organisation, row_digest(fields),
    )


def row_digest(fields: list[str]) -> str:
    """128 bits of BLAKE2b over the row's fields: an unchanged line gives the same
    digest, so a re-import recognises it by one indexed column."""
    return hashlib.blake2b("\x1f".join((DIGEST_VERSION, *fields)).encode(),
                           digest_size=16).hexdigest()
