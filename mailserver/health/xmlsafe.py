"""XML from senders, parsed with defusedxml: no DTD at all (so no external entity,
no entity expansion, no billion laughs), bounded size."""

from __future__ import annotations

import re
import threading
from typing import Literal
from xml.etree.ElementTree import Element, fromstring

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from lxml import etree

from mailserver.health.problems import Problem

MAX_XML_SIZE = 20 * 1024 * 1024

# XML 1.0 §4.3.3: the declared encoding. Only encodings in which "<!DOCTYPE" and
# "<!ENTITY" are written in ASCII bytes take the fast path.
_ENCODING = re.compile(rb'encoding\s*=\s*["\']([A-Za-z0-9._-]{1,40})["\']')
_ASCII_COMPATIBLE = frozenset({b"utf-8", b"utf8", b"us-ascii", b"ascii", b"iso-8859-1",
                               b"latin-1", b"latin1", b"iso-8859-15"})


def _plain_encoding(data: bytes) -> bool:
    """True when the document is written in an encoding where "<!DOCTYPE" and
    "<!ENTITY" are ASCII bytes: no UTF-16 byte order mark or NUL bytes up front, and
    no declared encoding other than the ASCII-compatible ones (XML 1.0 §4.3.3)."""
    head = data[:256].removeprefix(b"\xef\xbb\xbf")
    if 0 in head or head.startswith((b"\xfe\xff", b"\xff\xfe")):
        return False
    if head.startswith(b"<?xml"):  # XML 1.0 §2.8: the declaration comes first
        end = head.find(b"?>")
        if end < 0:
            return False
        declaration = head[:end]
        if b"encoding" in declaration:
            declared = _ENCODING.search(declaration)
            if declared is None or declared.group(1).lower() not in _ASCII_COMPATIBLE:
                return False
    return True


def _without_dtd(data: bytes) -> bool:
    """True when ``data`` provably holds no document type declaration (XML 1.0 §2.8),
    hence no entity, no external reference, nothing for defusedxml to guard against:
    then expat's C tree builder parses it, about five times faster. Anything unusual
    (a UTF-16 byte order mark or NUL bytes, another declared encoding, a DOCTYPE or
    ENTITY anywhere, even in a comment) goes the defusedxml way."""
    if not _plain_encoding(data):
        return False
    # One memchr pass when the document has no "!" (33) at all (no comment, CDATA or DTD)
    # (an int needle: 3.11's bytes.__contains__ tries a bytes needle as an int first)
    return 33 not in data or (b"<!DOCTYPE" not in data and b"<!ENTITY" not in data)


def _forbidden(what: str) -> Problem:
    return Problem("XML-FORBIDDEN", f"{what}: DTD or entities are not allowed in XML",
                   f"{what} : DTD et entités interdites dans le XML")


_PARSERS = threading.local()  # an lxml parser per thread (a shared one serialises)


def _tree_parser() -> etree.XMLParser:
    """libxml2 through lxml, hardened as trust/signature.py's (no entity resolved, no
    network, no DTD loaded) with libxml2's limits kept (huge_tree off: depth 256, text
    nodes of 10 MB); comments and processing instructions left out, so that every node
    of the tree is an element, as ElementTree builds it."""
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
            remove_comments=True, remove_pis=True)
    return parser


Builder = Literal["lxml", "etree"]  # who builds the tree of a document without DTD


def parse_xml(data: bytes, what: str, *, builder: Builder = "etree"
              ) -> tuple[Element | None, Problem | None]:
    """The root element, or the reason the document was not read. A document without
    DTD is built by expat (``builder`` "etree") or by libxml2 ("lxml": twice as fast;
    its elements read the same for what our readers use, tag, get, text, children,
    len; deeper than 256 levels, the document is refused as not well-formed); one
    with a DTD is refused by defusedxml."""
    if len(data) > MAX_XML_SIZE:
        return None, Problem("XML-SIZE", f"{what}: XML document too large",
                             f"{what} : document XML trop volumineux")
    try:
        if _without_dtd(data):
            if builder == "lxml":
                root: Element = etree.fromstring(data, _tree_parser())
                return root, None
            return fromstring(data), None  # noqa: S314 -- no DTD: nothing to defuse
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        return None, _forbidden(what)
    except Exception:  # ParseError and anything a hostile document provokes
        return None, _invalid(what)
    return root, None


def _invalid(what: str) -> Problem:
    return Problem("XML-INVALID", f"{what}: the XML is not well-formed",
                   f"{what} : le XML est mal formé")


def local(tag: str) -> str:
    """``{namespace}name`` → ``name``."""
    return tag.rpartition("}")[2]


_LOCAL_NAMES: dict[str, str] = {}  # tag -> local name; documents use a few tags
_CACHED_TAG = 256  # longer tags (a namespace URI and a name) are split each time


def _local_name(tag: str) -> str:
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = local(tag)
        # Bounded in count and size: a hostile document may invent any tag, of any length.
        if len(_LOCAL_NAMES) < 4096 and len(tag) <= _CACHED_TAG:
            _LOCAL_NAMES[tag] = name
    return name


def grouped(element: Element) -> dict[str, list[Element]]:
    """The children of ``element`` by local name, in document order, in one pass:
    ``grouped(e).get(name, [])`` is ``children(e, name)`` for every name without "}"
    (tests/test_content_fast.py)."""
    groups: dict[str, list[Element]] = {}
    for item in element:
        tag = item.tag
        if not isinstance(tag, str):  # a comment or processing instruction, if kept
            continue
        name = _LOCAL_NAMES.get(tag) or _local_name(tag)
        group = groups.get(name)
        if group is None:
            groups[name] = [item]
        else:
            group.append(item)
    return groups


def known_tags(namespace: str, *names: str) -> dict[str, str]:
    """``{namespace}name`` and ``name`` → ``name``: a reader's fixed table for the tags
    it looks for, so that a child's local name is one dict look-up of its tag (the
    table is built once, never grows with documents)."""
    return {tag: name for name in names for tag in (name, f"{{{namespace}}}{name}")}


def other_local(tag: object) -> str:
    """The local name of a tag no fixed table knows; "" for a node that is no element
    (a comment or processing instruction, were one kept)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def children(element: Element, name: str) -> list[Element]:
    # ``local(tag) == name`` for a name without "}", without splitting every tag.
    suffix = "}" + name
    return [c for c in element if c.tag == name or c.tag.endswith(suffix)]


def child(element: Element | None, name: str) -> Element | None:
    if element is None:
        return None
    suffix = "}" + name
    for candidate in element:
        tag = candidate.tag
        if tag == name or tag.endswith(suffix):
            return candidate
    return None


def path(element: Element | None, *names: str) -> Element | None:
    for name in names:
        element = child(element, name)
    return element


def text(element: Element | None) -> str:
    if element is None:
        return ""
    if not len(element) and isinstance(element.tag, str):  # a leaf: itertext is its text
        return (element.text or "").strip()
    return "".join(element.itertext()).strip()
