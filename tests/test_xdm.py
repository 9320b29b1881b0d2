"""IHE XDM packages and CDA documents, read from hostile bytes without harm."""

from __future__ import annotations

import hashlib
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.health import xdm
from mailserver.health.cda import read_cda
from mailserver.health.safezip import ZipContents, ZipEntry, ZipLimits, read_zip
from mailserver.health.xdm import (
    INS_NIR,
    METADATA,
    SUBSET,
    PatientId,
    XdmPackage,
    read_xdm,
    read_xdm_contents,
)
from tests import xdm_fixtures as fx


def codes(package_problems: tuple[object, ...]) -> set[str]:
    return {p.code for p in package_problems}  # type: ignore[attr-defined]


def test_valid_package_gives_the_document_metadata() -> None:
    document = fx.cda()
    package = read_xdm(fx.package(document))
    assert package.ok, package.problems
    (entry,) = package.documents
    assert entry.patient == PatientId(fx.CLAIRE, INS_NIR) and entry.patient.is_ins
    assert entry.type_code is not None and entry.type_code.code == "11502-2"
    assert entry.type_code.scheme == "2.16.840.1.113883.6.1"
    assert entry.class_code is not None and entry.class_code.code == "11"
    assert entry.author is not None and entry.author.display == "Sophie MOREAU"
    assert entry.author.institution.startswith("Laboratoire des Lilas")
    assert entry.creation_time is not None and entry.creation_time.isoformat() == (
        "2026-11-20T14:30:00+00:00")
    assert (entry.title, entry.mime_type, entry.size) == (
        "CR de biologie médicale", "text/xml", len(document))
    assert entry.content == document
    assert package.submission_set is not None
    assert package.submission_set.patient == entry.patient
    assert package.type_codes == ("11502-2",)


def test_cda_header_is_read() -> None:
    result = read_cda(fx.cda())
    assert result.problems == ()
    cda = result.document
    assert cda is not None
    assert (cda.code, cda.title, cda.family, cda.given) == (
        "11502-2", "CR de biologie médicale", "MARTIN", "Claire")
    assert cda.ins == PatientId(fx.CLAIRE, INS_NIR)
    assert str(cda.birth_date) == "1985-05-12"
    assert cda.effective_time is not None and cda.effective_time.utcoffset() is not None
    assert cda.authors[0].family == "MOREAU"


def test_wrong_hash_and_wrong_size_are_found() -> None:
    document = fx.cda()
    assert "XDM-HASH" in codes(read_xdm(fx.package(document, sha1="0" * 40)).problems)
    assert "XDM-SIZE" in codes(read_xdm(fx.package(document, size=12)).problems)


def test_missing_document_and_missing_files() -> None:
    missing = read_xdm(fx.package(drop=("IHE_XDM/SUBSET01/DOC0001.XML",)))
    assert "XDM-MISSING" in codes(missing.problems)
    no_index = read_xdm(fx.package(drop=("INDEX.HTM", "README.TXT")))
    assert codes(no_index.problems) == {"XDM-STRUCTURE"}
    no_meta = read_xdm(fx.package(drop=("IHE_XDM/SUBSET01/METADATA.XML",)))
    assert "XDM-METADATA" in codes(no_meta.problems)


def test_two_patients_in_one_package() -> None:
    package = read_xdm(fx.package(set_patient=fx.LOUIS))
    assert "XDM-PATIENTS" in codes(package.problems)


def test_uri_escaping_the_subset_is_refused() -> None:
    package = read_xdm(fx.package(uri="../../../etc/passwd"))
    assert "XDM-URI" in codes(package.problems)


def test_zip_bomb_is_stopped_without_inflating_it() -> None:
    bomb = fx.package(extra={"IHE_XDM/SUBSET01/ZEROS.BIN": bytes(30 * 1024 * 1024)})
    assert len(bomb) < 100_000
    package = read_xdm(bomb)
    assert "ZIP-BOMB" in codes(package.problems)
    small_total = read_zip(fx.zip_of({f"f{i}": bytes(4096) for i in range(40)}),
                           ZipLimits(max_total_size=100_000))
    assert "ZIP-BOMB" in codes(small_total.problems)


def test_too_many_entries_refused_before_listing() -> None:
    archive = fx.zip_of({f"e{i}.txt": b"x" for i in range(50)})
    assert codes(read_zip(archive, ZipLimits(max_entries=20)).problems) == {"ZIP-ENTRIES"}


def test_path_traversal_and_encrypted_entries() -> None:
    hostile = fx.package(extra={"../../evil.sh": b"#!/bin/sh\n", "/etc/cron.d/x": b"x",
                                "C:/Windows/evil.exe": b"MZ"})
    problems = read_xdm(hostile).problems
    assert [p.code for p in problems].count("ZIP-PATH") == 3
    encrypted = fx.zip_of({"secret.pdf": fx.PDF}, encrypted=("secret.pdf",))
    assert codes(read_zip(encrypted).problems) == {"ZIP-ENCRYPTED"}


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">&xxe;
</lcm:SubmitObjectsRequest>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title></ClinicalDocument>"""


def test_external_entities_and_billion_laughs_are_refused() -> None:
    assert codes(read_xdm(fx.package(meta=XXE)).problems) >= {"XML-FORBIDDEN"}
    assert codes(read_cda(LAUGHS).problems) == {"XML-FORBIDDEN"}
    assert codes(read_cda(XXE).problems) == {"XML-FORBIDDEN"}
    assert codes(read_cda(b"<ClinicalDocument").problems) == {"XML-INVALID"}


def test_entities_hidden_by_another_encoding_are_refused() -> None:
    """The fast XML path must not be fooled by a DTD written in bytes that are not
    ASCII: UTF-16 with or without a byte order mark, or a declared single-byte
    encoding such as EBCDIC (cp500) in which "<!DOCTYPE" is other bytes."""
    utf16 = LAUGHS.replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"')
    assert codes(read_cda(utf16.decode().encode("utf-16")).problems) == {"XML-FORBIDDEN"}
    assert codes(read_cda(utf16.decode().encode("utf-16-le")).problems) <= {
        "XML-FORBIDDEN", "XML-INVALID"}
    assert codes(read_cda(utf16.decode().encode("utf-16-le")).problems)
    declaration = b'<?xml version="1.0" encoding="cp500"?>'
    ebcdic = declaration + LAUGHS.split(b"?>", 1)[1].decode().encode("cp500")
    found = codes(read_cda(ebcdic).problems)
    assert found and found <= {"XML-FORBIDDEN", "XML-INVALID"}
    padded = b'<?xml version="1.0"' + b" " * 300 + b'encoding="cp500"?>' + (
        LAUGHS.split(b"?>", 1)[1].decode().encode("cp500"))
    found = codes(read_cda(padded).problems)
    assert found and found <= {"XML-FORBIDDEN", "XML-INVALID"}


def test_not_a_zip_is_a_problem_not_an_exception() -> None:
    assert codes(read_xdm(b"PK\x03\x04 garbage").problems) == {"ZIP-INVALID"}
    truncated = fx.package()[:-30]
    assert not read_xdm(truncated).ok


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=4000))
def test_hostile_bytes_never_raise(noise: bytes, cut: int) -> None:
    valid = fx.package()
    mangled = valid[:cut] + noise + valid[cut + len(noise):]
    read_xdm(mangled)  # returns, whatever the bytes
    read_xdm(zlib.compress(noise))
    read_cda(noise)


def _both(meta: bytes) -> tuple[XdmPackage, XdmPackage]:
    """METADATA.XML read with libxml2's tree (the path taken) and ElementTree's."""
    contents = read_zip(fx.package(meta=meta))
    return read_xdm_contents(contents), read_xdm_contents(contents, builder="etree")


def test_libxml2_and_elementtree_trees_read_the_same_metadata() -> None:
    document = fx.cda()
    plain = fx.metadata(document)
    body = plain.partition(b"-->")[2]  # without the template's leading comment
    variants = [
        plain, body, fx.metadata(document, set_patient=fx.LOUIS),
        fx.metadata(document, sha1="0" * 40, size=3), fx.metadata(document, uri="../x"),
        fx.metadata(document, root="1.2.3"), fx.metadata(document, type_code="X"),
        # comments, processing instructions and CDATA between and inside elements
        plain.replace(b"<rim:Value>", b"<!-- c --><rim:Value><?pi x?>"),
        plain.replace(b"<rim:ValueList>", b"<rim:ValueList><![CDATA[ ]]>"),
        plain.replace(b"fr-FR", b"<![CDATA[fr-FR]]>"),
        plain.replace(b"rim:", b"r:").replace(b"xmlns:rim", b"xmlns:r"),  # another prefix
        plain.replace(b"urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0", b"urn:other"),
        plain.replace(b"&amp;", b"&#38;"), plain.replace(b"<rim:Slot", b"<Slot", 1),
        plain.replace(b"</rim:RegistryObjectList>", b"</rim:RegistryObjectList><x/>"),
    ]
    for meta in variants:
        fast, reference = _both(meta)
        assert fast == reference, meta[:300]


def _repeat(plain: bytes, element: bytes, before: bytes) -> bytes:
    """``plain`` with ``before`` written in front of the first ``element``."""
    return plain.replace(element, before + element, 1)


def test_one_pass_reading_keeps_the_first_and_last_as_the_reference() -> None:
    """The first value of a slot name across slots, the first Name and LocalizedString,
    the last classification and identifier of a scheme: each changed in turn, the
    one-pass reading (libxml2's tree) and the reference agree, and see the change."""
    plain = fx.metadata(fx.cda())
    slot = b'<rim:Slot name="codingScheme">'
    person = b'<rim:Slot name="authorPerson">'
    name = b'<rim:Name><rim:LocalizedString value="Compte rendu"/>'
    variants = [
        _repeat(plain, slot, slot + b"<rim:ValueList><rim:Value>first</rim:Value>"
                b"</rim:ValueList></rim:Slot>"),
        _repeat(plain, slot, slot + b"<rim:ValueList/><rim:Value> own </rim:Value></rim:Slot>"),
        _repeat(plain, slot, slot + b"<rim:ValueList><rim:Value/></rim:ValueList></rim:Slot>"),
        _repeat(plain, person, person + b"<rim:ValueList><rim:Value>Dr X</rim:Value>"
                b"</rim:ValueList></rim:Slot>"),
        _repeat(plain, name, b'<rim:Name><rim:LocalizedString value="first"/></rim:Name>'),
        _repeat(plain, b'<rim:Name><rim:LocalizedString value="CR de biologie',
                b'<rim:Name><rim:LocalizedString value="first"/></rim:Name>'),  # the owner's
        plain.replace(name, b'<rim:Name><rim:LocalizedString value="first"/>', 1),
        _repeat(plain, b"</rim:ExtrinsicObject>", b'<rim:Classification classificationScheme='
                b'"urn:uuid:f0306f51-975f-434e-a61c-c59651d33983" nodeRepresentation="last"/>'),
        _repeat(plain, b"</rim:ExtrinsicObject>", b'<rim:ExternalIdentifier identification'
                b'Scheme="urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab" value=" last "/>'),
    ]
    plain_reading = _both(plain)[0]
    for meta in variants:
        fast, reference = _both(meta)
        assert fast == reference != plain_reading, meta
    # A slot of that name without any Value first: the next one's value is read; a
    # later one is not.
    uri = b'<rim:Slot name="URI">'
    for meta in (_repeat(plain, slot, slot + b"<rim:ValueList/></rim:Slot>"),
                 _repeat(plain, uri, uri + b"<rim:ValueList/></rim:Slot>"),
                 _repeat(plain, b"</rim:ExtrinsicObject>", uri + b"<rim:ValueList><rim:Value>"
                         b"last</rim:Value></rim:ValueList></rim:Slot>")):
        fast, reference = _both(meta)
        assert fast == reference == plain_reading


def test_metadata_either_tree_refuses_what_is_not_well_formed() -> None:
    plain = fx.metadata(fx.cda())
    for meta in (plain.replace(b"fr-FR", b"&undefined;"), plain[:-40], plain + b"<x/>",
                 plain.replace(b"UTF-8", b"ASCII").replace(b"fr-FR", "é".encode())):
        fast, reference = _both(meta)
        assert fast == reference and "XML-INVALID" in codes(fast.problems)


def test_metadata_nested_deeper_than_libxml2_allows_is_refused() -> None:
    # ElementTree would read past 5,000 levels of junk; libxml2 stops at 256, and no
    # ebRIM submission is deeper than a dozen: refused as not well-formed.
    deep = b"<a>" * 5000 + b"</a>" * 5000
    meta = fx.metadata(fx.cda()).replace(b"<rim:Name>", b"<rim:Name>" + deep, 1)
    fast, _ = _both(meta)
    assert codes(fast.problems) == {"XML-INVALID"}


# -- the one-pass reading of libxml2's trees, against the reference reading -------------

_RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
# rim: the ebRIM namespace; o: another; "": none (the root declares no default one).
_PREFIX = st.sampled_from(["rim:", "rim:", "rim:", "", "o:"])
_DOCUMENT = fx.cda()
_HASH = hashlib.sha1(_DOCUMENT, usedforsecurity=False).hexdigest()
_TEXTS = st.sampled_from([
    "", " ", "20261120143000", " 20240101 ", "2024013", "DOC0001.XML", "../x", "abc", "3",
    " 3 ", _HASH, _HASH.upper(), str(len(_DOCUMENT)), "1.2.250.1.213.1.1.4.1", "a&amp;b",
    "&#38;", "<![CDATA[ c ]]>", "<!-- c -->", "<?pi x?>", "é"])
# The slot names each owner reads, and some it does not.
_DOCUMENT_SLOTS = ["creationTime", "URI", "hash", "size", "languageCode", "uri", ""]
_SET_SLOTS = ["submissionTime", "submissionTime", "creationTime", ""]
_CLASS_SLOTS = ["codingScheme", "codingScheme", "authorPerson", "authorInstitution",
                "authorRole", "authorSpecialty", "other"]
_PLAUSIBLE = {  # values each slot name may hold, valid or not
    "creationTime": ["20261120143000", " 20240101 ", "2024013", "20241301"],
    "submissionTime": ["20261120143000", "2024", "x"], "URI": ["DOC0001.XML", "../x", "abc"],
    "hash": [_HASH, _HASH.upper(), "0" * 40], "size": [str(len(_DOCUMENT)), " 3 ", "3", "-1"],
    "codingScheme": ["1.2.250.1.213.1.1.4.1", " 2.16.840.1.113883.6.1 "],
    "authorPerson": ["810002909371^MOREAU^Sophie", " x "], "authorRole": ["Médecin"],
}
_SCHEMES = st.sampled_from([xdm.DOC_AUTHOR, xdm.DOC_CLASS_CODE, xdm.DOC_TYPE_CODE,
                            xdm.DOC_FORMAT_CODE, xdm.SET_AUTHOR, xdm.SET_CONTENT_TYPE, "",
                            "urn:other"])
_ID_SCHEMES = st.sampled_from([xdm.DOC_PATIENT_ID, xdm.DOC_UNIQUE_ID, xdm.SET_UNIQUE_ID,
                               xdm.SET_SOURCE_ID, xdm.SET_PATIENT_ID, "", "urn:other"])
_ID_VALUES = st.sampled_from([
    " 180017500000035^^^&amp;1.2.250.1.213.1.4.8&amp;ISO ", "2.25.1", "", "x^^^&amp;&amp;ISO",
    "248092A12345612^^^&amp;1.2.250.1.213.1.4.9&amp;ISO"])


def _tag(draw: st.DrawFn, name: str) -> str:
    return draw(_PREFIX) + name


def _xml(tag: str, attributes: str, content: str) -> str:
    return f"<{tag}{attributes}>{content}</{tag}>"


@st.composite
def _value(draw: st.DrawFn, name: str) -> str:
    kind = draw(st.integers(0, 7))
    if kind == 0:  # nested text: read with itertext
        return _xml(_tag(draw, "Value"), "", draw(_TEXTS) + "<b>" + draw(_TEXTS) + "</b>"
                    + draw(_TEXTS))
    if kind == 1:
        return f"<{_tag(draw, 'Value')}/>"
    if kind == 2 or name not in _PLAUSIBLE:
        return _xml(_tag(draw, "Value"), "", draw(_TEXTS))
    return _xml(_tag(draw, "Value"), "", draw(st.sampled_from(_PLAUSIBLE[name])))


@st.composite
def _slot(draw: st.DrawFn, names: list[str]) -> str:
    """A Slot with a ValueList (maybe empty, maybe twice, maybe after a Value of its own),
    or Values straight under it, or nothing."""
    name = draw(st.sampled_from(names))
    pieces = []
    for _ in range(draw(st.integers(0, 3)) or 1):
        kind = draw(st.integers(0, 7))
        if kind <= 3:
            values = draw(st.lists(st.one_of(_value(name), _value(name), _TEXTS), max_size=3))
            pieces.append(_xml(_tag(draw, "ValueList"), "", "".join(values)))
        elif kind <= 5:
            pieces.append(draw(_value(name)))
        elif kind == 6:
            pieces.append(draw(_TEXTS))
        else:
            pieces.append(_xml(_tag(draw, "ValueListX"), "", draw(_value(name))))
    named = draw(st.sampled_from([f' name="{name}"'] * 4 + [f' name=" {name}"', ""]))
    return _xml(_tag(draw, "Slot"), named, "".join(pieces))


@st.composite
def _name(draw: st.DrawFn) -> str:
    strings = "".join(
        f'<{_tag(draw, "LocalizedString")} value="{draw(_TEXTS).replace("<", "")}"/>'
        if draw(st.integers(0, 3)) else f"<{_tag(draw, 'LocalizedString')}/>"
        for _ in range(draw(st.integers(0, 2))))
    return _xml(_tag(draw, "Name"), "", strings + draw(_TEXTS))


@st.composite
def _classification(draw: st.DrawFn) -> str:
    scheme = draw(_SCHEMES)
    node = draw(st.sampled_from(["", ' nodeRepresentation=" 11502-2 "', ' nodeRepresentation=""',
                                 ' nodeRepresentation="X"']))
    inner = "".join(draw(st.lists(st.one_of(_slot(_CLASS_SLOTS), _slot(_CLASS_SLOTS), _name(),
                                            _TEXTS), max_size=5)))
    return _xml(_tag(draw, "Classification"), f' classificationScheme="{scheme}"{node}', inner)


@st.composite
def _identifier(draw: st.DrawFn) -> str:
    value = draw(st.sampled_from(["", f' value="{draw(_ID_VALUES)}"']))
    return _xml(_tag(draw, "ExternalIdentifier"),
                f' identificationScheme="{draw(_ID_SCHEMES)}"{value}', draw(_name()))


@st.composite
def _owner(draw: st.DrawFn, name: str, slots: list[str]) -> str:
    identity = draw(st.sampled_from([' id="Document01" mimeType="text/xml"', "", ' id=" "']))
    parts = st.one_of(_slot(slots), _slot(slots), _slot(slots), _classification(),
                      _classification(), _identifier(), _name(), _TEXTS,
                      st.just("<rim:Other><rim:Slot name='URI'/></rim:Other>"))
    return _xml(_tag(draw, name), identity,
                "".join(draw(st.lists(parts, min_size=2, max_size=14))))


@st.composite
def _metadata(draw: st.DrawFn) -> bytes:
    owners = draw(st.lists(st.one_of(_owner("ExtrinsicObject", _DOCUMENT_SLOTS),
                                     _owner("RegistryPackage", _SET_SLOTS), _TEXTS),
                           max_size=4))
    listed = _xml(_tag(draw, "RegistryObjectList"), "", "".join(owners))
    root = ('<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"'
            f' xmlns:rim="{_RIM}" xmlns:o="urn:other">{listed}</lcm:SubmitObjectsRequest>')
    if draw(st.booleans()):  # the ebRIM namespace as the default one: no prefix at all
        root = root.replace("<rim:", "<").replace("</rim:", "</").replace("xmlns:rim=", "xmlns=")
    declaration = draw(st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>\n',
                                        '<?xml version="1.0" encoding="UTF-16"?>\n']))
    text = declaration + root
    return text.encode("utf-16") if "UTF-16" in declaration else text.encode()


def _contents(meta: bytes) -> ZipContents:
    return ZipContents((ZipEntry("INDEX.HTM", b""), ZipEntry("README.TXT", b""),
                        ZipEntry(METADATA, meta), ZipEntry(SUBSET + "DOC0001.XML", _DOCUMENT),
                        ZipEntry(SUBSET + "abc", b"3\n\n")), ())


@settings(max_examples=300, deadline=None)
@given(_metadata())
def test_one_pass_metadata_reading_agrees_with_the_reference(meta: bytes) -> None:
    """Owners' children in any order, repeated (the first Name, the first value of a
    slot name across slots, the last classification and identifier of a scheme), in
    other namespaces or none, Values under a ValueList, under an empty one or none,
    with nested text: the one-pass reading of libxml2's tree (and of ElementTree's,
    for UTF-16) gives the reference's package."""
    contents = _contents(meta)
    fast = read_xdm_contents(contents)
    assert fast == read_xdm_contents(contents, builder="etree"), meta
