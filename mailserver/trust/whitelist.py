"""The operators' white list, in its published XML form.

Root element carrying ``DateDeGeneration``, then ``Domaine`` elements each with
``Nom``, ``Description``, ``DNCertificatOperateur``, ``ResponsableContact``,
``SupportContact``, ``DateMAJ``. The elements sit in the namespace
``https://listeblanche.mssante.fr/schema`` or in none: local names are matched.
Parsed with defusedxml (no entities, no external references).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from mailserver.trust.dn import InvalidDN, parse_dn

NAMESPACE = "https://listeblanche.mssante.fr/schema"
MAX_LIST_BYTES = 32 * 1024 * 1024
MAX_DOMAINS = 100_000


class WhiteListError(ValueError):
    """The list cannot be read; the previous list stays in force."""


@dataclass(frozen=True)
class TrustedDomain:
    domain: str
    description: str
    operator_dn: str
    responsible_contact: str
    support_contact: str
    updated: str  # DateMAJ as published


@dataclass(frozen=True)
class WhiteList:
    generated: str  # DateDeGeneration as published
    domains: tuple[TrustedDomain, ...]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if tag.startswith("{") else tag


def _child_text(element: Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return " ".join((child.text or "").split())
    return ""


def _generated(root: Element) -> str:
    for key, value in root.attrib.items():
        if _local(key) == "DateDeGeneration":
            return value.strip()
    return _child_text(root, "DateDeGeneration")


def parse_whitelist(data: bytes) -> WhiteList:
    """Parse the list; any defect refuses the whole list (nothing half-imported)."""
    if len(data) > MAX_LIST_BYTES:
        raise WhiteListError(f"white list larger than {MAX_LIST_BYTES} bytes")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException) as error:
        raise WhiteListError(f"the white list is not well-formed XML: {error}") from error
    generated = _generated(root)
    if not generated:
        raise WhiteListError("the white list has no DateDeGeneration")
    domains: dict[str, TrustedDomain] = {}
    for index, element in enumerate(e for e in root.iter() if _local(e.tag) == "Domaine"):
        if index >= MAX_DOMAINS:
            raise WhiteListError(f"more than {MAX_DOMAINS} domains")
        name = _child_text(element, "Nom").lower().rstrip(".")
        if not name or "@" in name or " " in name:
            raise WhiteListError(f"Domaine #{index + 1}: missing or invalid Nom {name!r}")
        dn = _child_text(element, "DNCertificatOperateur")
        try:
            parse_dn(dn)
        except InvalidDN as error:
            raise WhiteListError(f"Domaine {name}: DNCertificatOperateur: {error}") from error
        domains[name] = TrustedDomain(
            domain=name,
            description=_child_text(element, "Description"),
            operator_dn=dn,
            responsible_contact=_child_text(element, "ResponsableContact"),
            support_contact=_child_text(element, "SupportContact"),
            updated=_child_text(element, "DateMAJ"),
        )
    if not domains:
        raise WhiteListError("the white list holds no Domaine")
    return WhiteList(generated, tuple(domains.values()))
