"""The RPPS "PS_LibreAcces_Personne_activite" file: one row per practitioner and
activity; the practitioner's identity and profession repeat on each of its rows.

Only the identity and profession columns are required; the file's other columns
(the activity's structure, the newer "Code rôle" …) are read past.
"""

from __future__ import annotations

from typing import NamedTuple

from directory.importers.mssante import RowError
from directory.importers.report import ImportReport
from directory.professions import PROFESSIONS

FIRST_COLUMNS = [
    "Type d'identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Code civilité d'exercice",
]

REQUIRED = [
    *FIRST_COLUMNS,
    "Libellé civilité d'exercice",
    "Code civilité",
    "Libellé civilité",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Code profession",
    "Libellé profession",
    "Code catégorie professionnelle",
    "Libellé catégorie professionnelle",
    "Code savoir-faire",
    "Libellé savoir-faire",
]


class PractitionerRow(NamedTuple):
    """One accepted line of the RPPS file (identity and profession only)."""

    line: int
    national_id: str
    id_type: str
    identifier: str
    civility: str
    family_name: str
    given_name: str
    category_code: str
    category_label: str
    profession_code: str
    profession_label: str
    specialty_code: str
    specialty_label: str


def parse_row(line: int, fields: list[str], report: ImportReport) -> PractitionerRow:
    """The staging row for one data line (``fields`` in REQUIRED order), or RowError."""
    (id_type, identifier, national, _civility_code, civility, _code, civility_label, family,
     given, code, label, category_code, category_label, specialty_code, specialty) = fields
    if not national:
        national = id_type + identifier if identifier else ""
    if not national or not national.isalnum() or len(national) > 40:
        raise RowError(f"invalid practitioner identifier {national!r}")
    if not family:
        raise RowError(f"practitioner {national} without a name")
    if code and code not in PROFESSIONS:
        report.warn(line, f"unknown profession code {code!r} ({label or 'no label'}): "
                          "kept as given")
    return PractitionerRow(
        line, national, id_type[:2], identifier[:32], (civility or civility_label)[:32],
        family[:200], given[:200], category_code[:8], category_label[:200], code[:8],
        (label or PROFESSIONS.get(code, ""))[:200], specialty_code[:16], specialty[:200],
    )
