"""IHE XDM packages and CDA documents, read from hostile bytes without harm."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.health.cda import read_cda
from mailserver.health.safezip import ZipLimits, read_zip
from mailserver.health.xdm import INS_NIR, PatientId, XdmPackage, read_xdm, read_xdm_contents
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
