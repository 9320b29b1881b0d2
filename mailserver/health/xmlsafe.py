"""XML from senders, parsed with defusedxml: no DTD at all (so no external entity,
no entity expansion, no billion laughs), bounded size."""

from __future__ import annotations

from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from mailserver.health.problems import Problem

MAX_XML_SIZE = 20 * 1024 * 1024


def parse_xml(data: bytes, what: str) -> tuple[Element | None, Problem | None]:
    """The root element, or the reason the document was not read."""
    if len(data) > MAX_XML_SIZE:
        return None, Problem("XML-SIZE", f"{what}: XML document too large",
                             f"{what} : document XML trop volumineux")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        return None, Problem(
            "XML-FORBIDDEN", f"{what}: DTD or entities are not allowed in XML",
            f"{what} : DTD et entités interdites dans le XML")
    except Exception:  # ParseError and anything a hostile document provokes
        return None, Problem("XML-INVALID", f"{what}: the XML is not well-formed",
                             f"{what} : le XML est mal formé")
    return root, None


def local(tag: str) -> str:
    """``{namespace}name`` → ``name``."""
    return tag.rpartition("}")[2]


def children(element: Element, name: str) -> list[Element]:
    return [child for child in element if local(child.tag) == name]


def child(element: Element | None, name: str) -> Element | None:
    if element is None:
        return None
    for candidate in element:
        if local(candidate.tag) == name:
            return candidate
    return None


def path(element: Element | None, *names: str) -> Element | None:
    for name in names:
        element = child(element, name)
    return element


def text(element: Element | None) -> str:
    return "".join(element.itertext()).strip() if element is not None else ""
