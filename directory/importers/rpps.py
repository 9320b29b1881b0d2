"""The RPPS "PS_LibreAcces_Personne_activite" file: one row per practitioner and
activity; the practitioner's identity and profession repeat on each of its rows.

Only the identity and profession columns are required; the file's other columns
(the activity's structure, the newer "Code rôle" …) are read past.
"""

from __future__ import annotations

from typing import Any

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


def parse_row(line: int, field: dict[str, str], report: ImportReport) -> dict[str, Any]:
    national = field["Identification nationale PP"]
    id_type, identifier = field["Type d'identifiant PP"], field["Identifiant PP"]
    if not national:
        national = id_type + identifier if identifier else ""
    if not national or not national.isalnum() or len(national) > 40:
        raise RowError(f"invalid practitioner identifier {national!r}")
    if not field["Nom d'exercice"]:
        raise RowError(f"practitioner {national} without a name")
    code, label = field["Code profession"], field["Libellé profession"]
    if code and code not in PROFESSIONS:
        report.warn(line, f"unknown profession code {code!r} ({label or 'no label'}): "
                          "kept as given")
    return {
        "line": line,
        "national_id": national,
        "id_type": id_type[:2],
        "identifier": identifier[:32],
        "civility": (field["Libellé civilité d'exercice"] or field["Libellé civilité"])[:32],
        "family_name": field["Nom d'exercice"][:200],
        "given_name": field["Prénom d'exercice"][:200],
        "category_code": field["Code catégorie professionnelle"][:8],
        "category_label": field["Libellé catégorie professionnelle"][:200],
        "profession_code": code[:8],
        "profession_label": (label or PROFESSIONS.get(code, ""))[:200],
        "specialty_code": field["Code savoir-faire"][:16],
        "specialty_label": field["Libellé savoir-faire"][:200],
    }
