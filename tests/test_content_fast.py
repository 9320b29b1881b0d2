"""The content analysis fast paths agree with the general paths they stand in front
of, and hostile input still takes the general path (issue 5, 1 ms per message)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gc
import io
import unicodedata
import zipfile
from email.header import decode_header, make_header
from email.message import Message
from xml.etree.ElementTree import Element, SubElement, fromstring

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mailserver.health import cda, xdm, xmlsafe
from mailserver.health.attachments import _SCRIPT, _looks_scripted, _text
from mailserver.health.cda import is_cda, read_cda
from mailserver.health.content import _disposition
from mailserver.health.hl7time import parse_digits
from mailserver.health.mssante import _fold, decoded
from mailserver.health.safezip import ZipLimits, read_zip
from mailserver.health.xdm import _slots
from mailserver.health.xmlsafe import children, grouped, path, text
from mailserver.mime.fetch import _decode_base64
from mailserver.mime.headers import parse_param_value
from mailserver.mime.parse import ParsedMessage
from mailserver.pipeline import RULE_HEADERS, _rule_headers, parse_headers

# -- base64 (RFC 2045 §6.8) -------------------------------------------------------------

_B64_PIECES = st.sampled_from([
    b"QUJD", b"YQ", b"YWI", b"=", b"==", b"\r\n", b"\n", b" ", b"\t", b"*", b"-", b"A",
    b"+/", b"//8", b"\x00", b"\xff", b"====",
])


def _binascii_reference(data: bytes) -> bytes | None:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(_B64_PIECES, max_size=30))
def test_base64_fast_path_agrees_with_binascii(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    decoded = _decode_base64(data)  # never raises: lenient decoding
    pad = data.find(b"=")
    if pad < 0 or not data[pad:].strip(b"=\r\n\t "):
        expected = _binascii_reference(data)
        if expected is not None:  # what binascii accepts decodes as binascii does
            assert decoded == expected


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=4, max_value=100))
def test_base64_wrapped_lines_decode(data: bytes, width: int) -> None:
    encoded = base64.b64encode(data)
    wrapped = b"\r\n".join(encoded[i:i + width] for i in range(0, len(encoded), width))
    assert _decode_base64(wrapped + b"\r\n") == data


# -- script words -----------------------------------------------------------------------

_SCRIPT_PIECES = st.sampled_from([
    b"script", b"createobject", b"activexobject", b"echo", b"invoke-expression", b"iex",
    b"new-object", b"-encodedcommand", b"set-executionpolicy", b"powershell", b"cmd",
    b"eval", b"execute", b"shell.application", b"<", b".", b"(", b"$", b"-", b" ", b"\t",
    b"\r\n", b"\n", b"\r", b"\x0b", b"\x0c", b"@", b"/c", b"/C", b".exe", b"off", b"OFF",
    b"net.", b"system.", b"w", b"c", b"x", b"_", b"0", b"SCRIPT", b"Eval", b"ActiveX",
    b"object", b"new", b"set", b"invoke", b"shell", b"application", b"encodedcommand",
    b"expression", b"executionpolicy", b"\x01", b"+", b"/", b"A9z", b"\xc3\xa9", b"\xc9",
    b"\xe9", b"\x00", b"\xff", b"\xa0", b"\x85",
])


@settings(max_examples=2000, deadline=None)
@given(st.lists(_SCRIPT_PIECES, max_size=25))
def test_script_scan_agrees_with_python_re(pieces: list[bytes]) -> None:
    data = b"".join(pieces)  # Hyperscan (the scan) and re (the reference): one verdict
    assert _looks_scripted(data) == (_SCRIPT.search(data) is not None)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_script_scan_agrees_with_python_re_on_any_bytes(data: bytes) -> None:
    assert _looks_scripted(data) == (_SCRIPT.search(data) is not None)


def test_script_gate_sees_every_pattern() -> None:
    for sample in (b"<  SCRIPT src=x>", b"WScript .Echo", b"+cscript/", b"CreateObject  (",
                   b"ActiveXObject", b"  @echo off", b"Invoke-Expression", b"iex\t$x",
                   b"New-Object  System.Net.WebClient", b"-EncodedCommand", b"iex(x)",
                   b"Set-ExecutionPolicy", b"powershell.exe -nop", b"cmd /c dir",
                   b"eval\n(", b"execute(x)", b"Shell.Application", b"cmd.exe  /c x"):
        assert _SCRIPT.search(sample), sample
        assert _looks_scripted(b"A" * 5000 + b"\n" + sample + b"\n" + b"z" * 5000), sample
        assert _looks_scripted(sample.upper()), sample
    # White space is Python's (a vertical tab), not PCRE's vertical space (NEL).
    assert _looks_scripted(b"cmd\x0b/c dir") and _SCRIPT.search(b"cmd\x0b/c dir")
    assert _looks_scripted(b"x\n \x0b@echo off") and not _looks_scripted(b"x\r@echo off")
    assert not _looks_scripted(b"cmd\x85/c dir") and not _looks_scripted(b"eval\xa0(")
    # Word boundaries are ASCII: a Latin-1 letter before "eval" is no word character.
    assert _looks_scripted(b"\xe9eval(") and _SCRIPT.search(b"\xe9eval(")


def test_script_scan_from_many_threads_at_once() -> None:
    # Large messages are analysed in worker threads; the scan releases the GIL, so each
    # thread needs its own scratch space (a shared one raises or corrupts verdicts).
    from concurrent.futures import ThreadPoolExecutor
    clean = base64.b64encode(bytes(range(256)) * 4000)
    dirty = clean[:500_000] + b" powershell -enc x " + clean[500_000:]
    with ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = list(pool.map(_looks_scripted, [clean, dirty] * 40))
    assert verdicts == [False, True] * 40


def test_base64_body_without_script_is_clean() -> None:
    body = base64.b64encode(bytes(range(256)) * 200)
    wrapped = b"\r\n".join(body[i:i + 76] for i in range(0, len(body), 76))
    document = b'<?xml version="1.0"?><ClinicalDocument><text>' + wrapped + b"</text>"
    assert not _looks_scripted(document)
    assert _looks_scripted(document + b"<script>alert(1)</script>")


# -- HL7 dates --------------------------------------------------------------------------

def _strptime_reference(digits: str) -> dt.datetime | None:
    fmt = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(digits))
    if fmt is None:
        return None
    try:
        return dt.datetime.strptime(digits, fmt)
    except ValueError:
        return None


_DIGIT_STRINGS = st.one_of(
    st.text(alphabet="0123456789", min_size=8, max_size=14),
    st.text(alphabet="0123456789\u0660\u0661\u00b2\u0969 ", min_size=8, max_size=14),
    st.builds(lambda m: m.strftime("%Y%m%d%H%M%S")[:st_len(m)],
              st.datetimes(min_value=dt.datetime(1000, 1, 1))),
)


def st_len(moment: dt.datetime) -> int:
    return (8, 12, 14)[moment.microsecond % 3]


@settings(max_examples=1500, deadline=None)
@given(_DIGIT_STRINGS)
def test_hl7_digits_agree_with_strptime(digits: str) -> None:
    assert parse_digits(digits) == _strptime_reference(digits)


def test_hl7_digits_edges() -> None:
    for digits in ("20240229", "20230229", "20241301", "20240001", "20240132", "00000101",
                   "202401011260", "202401012400", "20240101235960", "20240101235961",
                   "20240101235959", "2024010112", "2024\u0660101"):
        assert parse_digits(digits) == _strptime_reference(digits), digits


@settings(max_examples=500, deadline=None)
@given(_DIGIT_STRINGS, st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5))]))
def test_hl7_digits_in_a_zone_are_the_naive_moment_there(digits: str, zone: dt.tzinfo) -> None:
    naive = _strptime_reference(digits)
    expected = naive.replace(tzinfo=zone) if naive is not None else None
    found = parse_digits(digits, zone)
    assert found == expected and (found is None or found.tzinfo is zone)


def test_hl7_digits_outside_ascii_in_a_zone() -> None:
    moment = parse_digits("\u0662\u0660\u0662\u06640101", dt.UTC)  # strptime reads them
    assert moment == dt.datetime(2024, 1, 1, tzinfo=dt.UTC) and moment.tzinfo is dt.UTC


def _ts_reference(value: str) -> dt.datetime | None:
    """cda._ts as it was: the zone's offset built for each value."""
    value = value.strip()
    digits = value[:14]
    if digits.isdigit():
        zone = value[len(digits):]
    else:
        zone = ""
        digits = "".join(c for c in digits if c.isdigit())
    moment = _strptime_reference(digits)
    if moment is None:
        return None
    try:
        if zone and zone[0] in "+-" and zone[1:5].isdigit():
            offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
            return moment.replace(tzinfo=dt.timezone(offset if zone[0] == "+" else -offset))
        return moment.replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _dtm_reference(value: str) -> dt.datetime | None:
    """xdm.parse_dtm as it was: the naive moment, then UTC."""
    digits = value.strip()
    if not digits.isdigit() or len(digits) not in (4, 6, 8, 10, 12, 14):
        return None
    padded = digits + "0101000000"[len(digits) - 4:] if len(digits) < 14 else digits
    moment = _strptime_reference(padded[:14])
    return moment.replace(tzinfo=dt.UTC) if moment is not None else None


_TS_PIECES = st.sampled_from([
    "2024", "01", "12", "29", "02", "23", "24", "59", "60", "00", "+", "-", "0100", "0530",
    "2400", "2359", "0099", "1", " ", "\u0660", "\u00b2", "Z", "+0100", "-0000", "x"])


_ZONE_SUFFIXES = st.builds(
    lambda sign, hours, minutes, tail: f"{sign}{hours}{minutes}{tail}",
    st.sampled_from(["+", "-", "", " "]),
    st.sampled_from(["00", "01", "05", "12", "14", "23", "24", "99", "\u0660\u0661", "1"]),
    st.sampled_from(["00", "15", "30", "45", "59", "60", "99", "", "\u00b2"]),
    st.sampled_from(["", "0", "Z", " "]))
_TS_VALUES = st.one_of(
    st.lists(_TS_PIECES, max_size=10).map("".join),
    st.builds(lambda digits, zone: digits + zone, _DIGIT_STRINGS, _ZONE_SUFFIXES))


@settings(max_examples=1500, deadline=None)
@given(_TS_VALUES)
def test_ts_and_dtm_read_as_before(value: str) -> None:
    for found, expected in ((cda._ts(value), _ts_reference(value)),
                            (xdm.parse_dtm(value), _dtm_reference(value))):
        assert found == expected, value
        assert found is None or expected is None or (
            found.utcoffset() == expected.utcoffset() and found.tzname() == expected.tzname())


def test_ts_zones_edges() -> None:
    for value in ("20240101120000+0100", "20240101120000-0000", "20240101120000+2400",
                  "20240101120000+2359", "20240101120000+0099", "20240101120000+01",
                  "20240101120000+\u00b2\u00b200", "20240101120000+01000", "20240101+0100",
                  "2024010112+0100", "19800101", "20240101120000Z", "20240101120000-1200"):
        assert cda._ts(value) == _ts_reference(value), value


# -- zip entries (APPNOTE 4.3.7, 4.4.5) -------------------------------------------------

def _zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content, method in entries:
            archive.writestr(zipfile.ZipInfo(name), content, compress_type=method)
    return buffer.getvalue()


_ENTRIES = st.lists(st.tuples(
    st.sampled_from(["a.txt", "b/c.xml", "IHE_XDM/SUBSET01/DOC0001.XML", "é.txt", "a.txt"]),
    st.one_of(st.binary(max_size=300), st.just(b"<x>" * 2000), st.just(bytes(70_000))),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
), max_size=4)


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=300, deadline=None)
@given(_ENTRIES, st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)),
                          max_size=3))
def test_small_entry_fast_path_agrees_with_zipfile(
        entries: list[tuple[str, bytes, int]], flips: list[tuple[int, int]]) -> None:
    data = bytearray(_zip(entries))
    for at, value in flips:  # hostile bytes anywhere: headers, streams, CRCs
        data[at % len(data)] = value
    limits = ZipLimits(max_total_size=100_000, max_entry_size=60_000, max_ratio=5)
    assert read_zip(bytes(data), limits) == read_zip(bytes(data), limits, fast=False)


def test_small_entry_fast_path_leaves_bombs_to_the_general_path() -> None:
    bomb = _zip([("zeros.txt", bytes(3 * 1024 * 1024), zipfile.ZIP_DEFLATED)])
    for limits in (ZipLimits(), ZipLimits(max_entry_size=1000, max_total_size=1000)):
        fast, general = read_zip(bomb, limits), read_zip(bomb, limits, fast=False)
        assert fast == general and [p.code for p in fast.problems] == ["ZIP-BOMB"]


# -- the disposition and the file name, parsed once -------------------------------------

_DISPOSITIONS = st.sampled_from([
    None, "", "attachment", "inline", 'attachment; filename="cr.pdf"', "ATTACHMENT ; filename=a",
    "attachment; filename*=utf-8''%C3%A9t%C3%A9.pdf", 'inline; filename=""', "; filename=x",
    "attachment; filename*0=a; filename*1=b.txt", "(c) attachment (x); filename=y",
])
_TYPES = st.sampled_from([
    "application/pdf", 'application/pdf; name="n.pdf"', "text/plain; name==?utf-8?q?=C3=A9?=",
    "bad", 'application/zip; name="IHE_XDM.zip"',
])


@settings(max_examples=300, deadline=None)
@given(_DISPOSITIONS, _TYPES)
def test_disposition_and_filename_as_the_parser_reads_them(
        disposition: str | None, content_type: str) -> None:
    head = f"Content-Type: {content_type}\r\n"
    if disposition is not None:
        head += f"Content-Disposition: {disposition}\r\n"
    part = ParsedMessage.from_bytes((head + "\r\nbody\r\n").encode("latin-1"))
    value = part.header_value("content-disposition")
    expected = parse_param_value(value).value.strip(" \t").lower() if value is not None else ""
    assert _disposition(part) == (expected, part.filename or "")


# -- the CDA header, built alone --------------------------------------------------------

_CDA_PIECES = st.sampled_from([
    '<id root="1.2.3" extension="X"/>', '<code code="11502-2" codeSystem="2.16.840.1.113883.6.1"'
    ' displayName="CR"/>', '<code/>', "<title>Compte <b>rendu</b> &amp; suite</title>",
    "<title><![CDATA[a<b]]></title>", '<effectiveTime value="20240101120000+0100"/>',
    '<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="1"/><id root="9"/>'
    '<patient><name><given>Jean</given><given>Paul</given><family>DUPONT</family></name>'
    '<birthTime value="19800101"/></patient></patientRole></recordTarget>',
    "<recordTarget/>", '<author><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="8"/>'
    "<assignedPerson><name><family>MARTIN</family></name></assignedPerson></assignedAuthor>"
    "</author>", '<x:author xmlns:x="urn:other"><assignedAuthor/></x:author>',
    "<component><nonXMLBody><text>QUJD</text></nonXMLBody></component>", "<!-- note -->",
    "<?pi x?>", "text between", '<id xmlns:y="urn:y" y:root="1" root="2"/>', "<title>",
    "</title>", "<code code='1' code='2'/>", "&undefined;", "<recordTarget><id/>",
    "</recordTarget>", '<patientRole xmlns="urn:hl7-org:v3"/>',
])
_ROOTS = st.sampled_from([
    '<ClinicalDocument xmlns="urn:hl7-org:v3">', '<ClinicalDocument xmlns="urn:hl7-org:v3x">',
    "<ClinicalDocument>", '<cda:ClinicalDocument xmlns:cda="urn:hl7-org:v3">',
    '<Other xmlns="urn:hl7-org:v3">',
])


@settings(max_examples=800, deadline=None)
@given(_ROOTS, st.lists(_CDA_PIECES, max_size=12), st.booleans())
def test_libxml2_cda_reading_agrees_with_elementtree(
        root: str, pieces: list[str], declaration: bool) -> None:
    close = "</" + root[1:].split(" ")[0].rstrip(">") + ">"
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n' if declaration else "")
    data = (text + root + "".join(pieces) + close).encode()
    assert read_cda(data) == read_cda(data, builder="etree")


def test_libxml2_cda_reading_refuses_what_elementtree_refuses() -> None:
    good = fx_cda()
    for data in (good[:-20], good + b"<junk/>", good.replace(b"<title>", b"<title", 1),
                 b"<!DOCTYPE x [<!ENTITY a 'b'>]>" + good, good.decode().encode("utf-16"),
                 b'<?xml version="1.0" encoding="ebcdic-cp-us"?>' + good):
        assert read_cda(data) == read_cda(data, builder="etree")
        assert read_cda(data).document is None


def fx_cda() -> bytes:
    from mailserver.health import build
    patient = build.Patient("180017500000035", "DUPONT", "Jean", dt.date(1980, 1, 1))
    return build.cda_level1(patient, build.DocumentInfo(), b"%PDF-1.7\n" + bytes(3000))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab =?éQq\t\u00ff\udcff\u2028")), max_size=30))
def test_subject_without_encoded_word_is_given_back(value: str) -> None:
    try:
        reference = str(make_header(decode_header(value)))
    except Exception:
        reference = value
    assert decoded(value) == reference


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_name_folding_of_ascii_needs_no_normalisation(value: str) -> None:
    ascii_value = value.encode("ascii", "ignore").decode()
    normalised = unicodedata.normalize("NFKD", ascii_value)
    assert normalised == ascii_value
    assert not any(unicodedata.combining(c) for c in normalised)
    assert _fold(ascii_value) == " ".join(
        ascii_value.replace("-", " ").replace("'", " ").upper().split())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", " b ", "<i>c</i>", "<i/>", "&amp;", "<![CDATA[ d ]]>",
                                 "<!-- e -->", "\n"]), max_size=6))
def test_text_of_a_leaf_is_its_itertext(pieces: list[str]) -> None:
    element = fromstring("<t>" + "".join(pieces) + "</t>")  # noqa: S314 -- test literals
    assert text(element) == "".join(element.itertext()).strip()


# -- the CDA reading: DTDs refused as defusedxml refuses them, no reference cycle -----------

_PROLOGS = st.sampled_from([
    "", '<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0"?>',
    "<!DOCTYPE ClinicalDocument>", '<!DOCTYPE x [<!ENTITY a "b">]>',
    '<!DOCTYPE x SYSTEM "http://example.invalid/x.dtd">', "<!-- <!DOCTYPE x> <!ENTITY y> -->",
    "<!ENTITY a 'b'>", "<?pi <!DOCTYPE?>", "<!DOCTYPE", "junk",
])
_INSIDE = st.sampled_from([
    "", "<!-- <!DOCTYPE x> -->", "<title><![CDATA[<!ENTITY a 'b'>]]></title>", "&a;",
    "<!DOCTYPE x>", '<code code="1"/>', "<title>&lt;!DOCTYPE</title>",
])


@settings(max_examples=400, deadline=None)
@given(_PROLOGS, _PROLOGS, _INSIDE)
def test_cda_reading_refuses_dtds_as_defusedxml(first: str, second: str, inside: str) -> None:
    data = (first + second + '<ClinicalDocument xmlns="urn:hl7-org:v3">' + inside
            + "</ClinicalDocument>").encode()
    assert read_cda(data) == read_cda(data, builder="etree")


def test_cda_reading_leaves_no_garbage_cycle() -> None:
    """A cycle left by each CDA read would bring the collector's passes inside message
    stages (the bench's p99)."""
    document = fx_cda()
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for data in (document, document[:-30], b"<!DOCTYPE x>" + document):
            read_cda(data)
            assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()


# -- children by local name, in one pass ------------------------------------------------

_TAGS = st.sampled_from(["Slot", "{urn:rim}Slot", "{urn:other}Slot", "Value", "{urn:rim}Name",
                         "Name", "{a}b}Slot", "{urn:rim}ValueList", "SlotX", "{x}"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TAGS, max_size=12))
def test_grouped_children_are_children_by_name(tags: list[str]) -> None:
    element = Element("root")
    for tag in tags:
        SubElement(element, tag)
    groups = grouped(element)
    for name in ("Slot", "Value", "Name", "ValueList", "SlotX", "b", ""):
        assert groups.get(name, []) == children(element, name), name


def test_long_tags_are_grouped_but_not_remembered() -> None:
    """A hostile document may invent tags of any length: the local-name table keeps
    short ones only."""
    long_tag = "{urn:" + "x" * 5000 + "}Slot"
    element = Element("root")
    SubElement(element, long_tag)
    SubElement(element, "{urn:rim}Slot")
    assert len(grouped(element)["Slot"]) == 2
    assert long_tag not in xmlsafe._LOCAL_NAMES and "{urn:rim}Slot" in xmlsafe._LOCAL_NAMES


# -- plain text by its bytes ------------------------------------------------------------

def _text_reference(data: bytes) -> bool:
    head = data[:65536]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:
            return sum(1 for b in head if b < 0x09 or 0x0e <= b < 0x20) == 0
    return True


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=60), st.text(max_size=40).map(str.encode),
                 st.builds(lambda a, b: a + b, st.just(b"x" * 65534), st.binary(max_size=8))))
def test_ascii_text_needs_no_decoding(data: bytes) -> None:
    assert _text(data) == _text_reference(data)


@pytest.mark.parametrize("name", ["cr.pdf", "x" * 300 + ".pdf"])
def test_disposition_read_again_from_the_cache_or_not(name: str) -> None:
    """Fields up to 256 bytes are read once per distinct value, longer ones each time:
    both as the parser reads them."""
    raw = (f'Content-Type: application/pdf\r\nContent-Disposition: attachment; '
           f'filename="{name}"\r\n\r\nbody\r\n').encode()
    for _ in range(2):
        part = ParsedMessage.from_bytes(raw)
        assert _disposition(part) == ("attachment", part.filename)


# -- the rule headers, read in one pass -------------------------------------------------

def _rule_headers_reference(headers: Message) -> dict[str, tuple[str, ...]]:
    return {name: tuple(str(v) for v in headers.get_all(name, []))
            for name in RULE_HEADERS if headers.get_all(name)}


_FIELD_NAMES = st.sampled_from(["From", "to", "CC", "Bcc", "Message-ID", "In-Reply-To",
                                "References", "X-MSS-MES", "Subject", "DATE", "X-Mss-CodeCDA",
                                "x-mss-ins", "X-MSS-NIL", "Content-Type", "Received", "X-Other"])
_FIELD_VALUES = st.sampled_from(["", "a@b.example", " <id@x>\r\n <id2@x>", "=?utf-8?q?=C3=A9?=",
                                 "FIN", "caf\xe9", "x\r\n\ty", "O"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_FIELD_NAMES, _FIELD_VALUES), max_size=12))
def test_rule_headers_in_one_pass_are_get_all(fields: list[tuple[str, str]]) -> None:
    block = "".join(f"{name}: {value}\r\n" for name, value in fields) + "\r\nbody\r\n"
    headers = parse_headers(block.encode("utf-8", "surrogateescape"))
    assert _rule_headers(headers) == _rule_headers_reference(headers)


# -- the plain central directory, read without zipfile ----------------------------------

def _zip_variant(kind: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("IHE_XDM/SUBSET01/METADATA.XML")
        if kind == "extra":
            info.extra = b"UT\x05\x00\x03\x00\x00\x00\x00"  # extended timestamp (0x5455)
        if kind == "bad-extra":
            info.extra = b"UT\x09\x00\x03"
        if kind == "zip64-extra":
            info.extra = b"\x01\x00\x08\x00" + bytes(8)
        if kind == "entry-comment":
            info.comment = b"note"
        archive.writestr(info, b"<x/>" * 50)
        archive.writestr("dir/", b"")
        archive.writestr("a\x00b.txt" if kind == "nul" else "README.TXT", b"readme")
        archive.writestr("caf\u00e9.txt", b"utf-8 name")
        if kind == "comment":
            archive.comment = b"archive comment"
    data = buffer.getvalue()
    if kind == "prepended":
        data = b"MZ stub before the archive" + data
    if kind == "bad-utf8":
        data = data.replace("caf\u00e9".encode(), b"caf\xff\xfe")
    return data


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("kind", ["plain", "extra", "bad-extra", "zip64-extra", "entry-comment",
                                  "comment", "prepended", "nul", "bad-utf8"])
def test_plain_directory_reading_agrees_with_zipfile(kind: str) -> None:
    data = _zip_variant(kind)
    for limits in (ZipLimits(), ZipLimits(max_entries=2), ZipLimits(max_total_size=150)):
        assert read_zip(data, limits) == read_zip(data, limits, fast=False), (kind, limits)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["plain", "extra", "comment", "nul"]),
       st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1,
                max_size=3))
def test_plain_directory_reading_agrees_on_damaged_directories(
        kind: str, flips: list[tuple[int, int]]) -> None:
    data = bytearray(_zip_variant(kind))
    directory = data.rfind(b"PK\x01\x02", 0, len(data) - 22)
    for at, value in flips:  # the central directory and the end record take the blows
        data[directory + at % (len(data) - directory)] = value
    assert read_zip(bytes(data)) == read_zip(bytes(data), fast=False)


# -- ebRIM slots, read inline -----------------------------------------------------------

def _slots_reference(slots: list[Element]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for slot in slots:
        holder = path(slot, "ValueList")
        values = [text(v) for v in children(
            holder if holder is not None and len(holder) else slot, "Value")]
        found.setdefault(slot.get("name", ""), []).extend(values)
    return found


_SLOT_PIECES = st.sampled_from([
    "<ValueList><Value> a </Value><Value>b</Value></ValueList>", "<ValueList/>",
    "<Value>direct</Value>", '<r:ValueList xmlns:r="urn:rim"><r:Value>ns</r:Value></r:ValueList>',
    "<ValueList><Other>x</Other></ValueList>", "<Value><b>in</b> mixed</Value>", "<Value/>",
    "<ValueListX><Value>no</Value></ValueListX>",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["hash", "size", "URI", ""]),
                          st.lists(_SLOT_PIECES, max_size=3)), max_size=4))
def test_slots_read_inline_as_by_path(slots: list[tuple[str, list[str]]]) -> None:
    owner = fromstring("<o>" + "".join(  # noqa: S314 -- test literals
        f'<Slot name="{name}">{"".join(pieces)}</Slot>' for name, pieces in slots) + "</o>")
    assert _slots(list(owner)) == _slots_reference(list(owner))


# -- the CDA look, in place -------------------------------------------------------------

def _is_cda_reference(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<") and b"ClinicalDocument" in head


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b" ", b"\r\n", b"\xef\xbb\xbf", b"\xbf", b"<", b"x",
                                 b"ClinicalDocument", b"Clinical", b" " * 4090, b"<a>"]),
                max_size=8))
def test_cda_look_in_place_is_the_stripped_head(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert is_cda(data) == _is_cda_reference(data)


# -- the CDA header read from expat's events, against the tree --------------------------

# The children each element of a header usually holds, and some it should not.
_PLAUSIBLE = {
    "document": ["recordTarget", "author", "id", "code", "title", "effectiveTime",
                 "component", "x:recordTarget", "y:author"],
    "recordTarget": ["patientRole", "id", "x:patientRole"],
    "patientRole": ["patient", "id", "y:id", "name"],
    "patient": ["name", "birthTime", "x:name", "patient"],
    "author": ["assignedAuthor", "id", "author"],
    "assignedAuthor": ["assignedPerson", "id", "x:id", "name"],
    "assignedPerson": ["name", "y:name", "assignedPerson"],
    "name": ["given", "family", "x:family", "name", "b"],
    "title": ["b", "title"], "given": ["b", "given"], "family": ["family"],
}
_HEADER_ATTRIBUTES = st.dictionaries(
    st.sampled_from(["root", "root", "extension", "code", "codeSystem", "displayName",
                     "value", "value", "x:root", "nullFlavor"]),
    st.sampled_from(["", " 1.2.250.1.213.1.4.8 ", "19800101", "20240101120000+0100",
                     "2024013", "11502-2", "&amp;", "é"]), max_size=3)
_HEADER_TEXTS = st.sampled_from(["", " Jean ", "DUPONT", "&amp;", "<![CDATA[ a<b ]]>",
                                 "<!-- c -->", "\n", "é"])


@st.composite
def _header_element(draw: st.DrawFn, name: str, depth: int = 0) -> str:
    attributes = draw(_HEADER_ATTRIBUTES)
    written = "".join(f' {key}="{value}"' for key, value in attributes.items())
    content = []
    kinds = _PLAUSIBLE.get(name.rpartition(":")[2], ["b"])
    for _ in range(draw(st.integers(0, 3 if depth < 6 else 0))):
        if draw(st.integers(0, 3)) == 0:
            content.append(draw(_HEADER_TEXTS))
        else:  # the first kind half the time: the paths read, down to the names
            at = draw(st.integers(0, 2 * len(kinds) - 1))
            content.append(draw(_header_element(kinds[at if at < len(kinds) else 0],
                                                depth + 1)))
    return f"<{name}{written}>{''.join(content)}</{name}>"


_HEADER_TREES = st.sampled_from(_PLAUSIBLE["document"]).flatmap(_header_element)


_PREFIXES = st.sampled_from(["", "", "", "x:", "y:"])  # urn:other, urn:hl7-org:v3


@st.composite
def _repeated(draw: st.DrawFn, name: str, inner: list[st.SearchStrategy[str]],
              most: int = 2) -> str:
    """0 to ``most`` elements ``name``, each with attributes, one of each of ``inner``
    (or text), sometimes in another namespace."""
    written = []
    for _ in range(draw(st.integers(0, most))):
        tag = draw(_PREFIXES) + name
        attributes = draw(_HEADER_ATTRIBUTES)
        content = [draw(part) for part in inner] or [draw(_HEADER_TEXTS)]
        written.append(_element(tag, attributes, draw(_HEADER_TEXTS).join(content)))
    return "".join(written)


def _element(tag: str, attributes: dict[str, str], content: str) -> str:
    written = "".join(f' {key}="{value}"' for key, value in attributes.items())
    return f"<{tag}{written}>{content}</{tag}>"


_NAMES = _repeated("name", [_repeated("given", [], 3), _repeated("family", [])])
_PATIENT_ROLES = _repeated("patientRole", [
    _repeated("id", [], 3),
    _repeated("patient", [_NAMES, _repeated("birthTime", [])])])
_AUTHORS = _repeated("author", [_repeated("assignedAuthor", [
    _repeated("id", []), _repeated("assignedPerson", [_NAMES])])], 3)
_HEADER_PARTS = st.one_of(_repeated("recordTarget", [_PATIENT_ROLES]), _AUTHORS,
                          _HEADER_TREES)


@settings(max_examples=1500, deadline=None)
@given(_ROOTS, st.lists(_HEADER_PARTS, max_size=4))
def test_libxml2_cda_header_agrees_with_elementtree(root: str, parts: list[str]) -> None:
    """Elements read nested anywhere, repeated (only the first read where ``child``
    reads the first), in other namespaces, with text in pieces: the same reading."""
    namespaces = ' xmlns:x="urn:other" xmlns:y="urn:hl7-org:v3"'
    opening = root[:-1] + namespaces + ">"
    close = "</" + root[1:].split(" ")[0].rstrip(">") + ">"
    data = (opening + "".join(parts) + close).encode()
    assert read_cda(data) == read_cda(data, builder="etree")


def test_one_pass_cda_reading_of_an_elementtree_tree() -> None:
    """A UTF-16 document goes to defusedxml even for the "lxml" builder: the one-pass
    reading then walks ElementTree's tree, and reads it as the reference does."""
    good = fx_cda().decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    for data in (good.encode("utf-16"), good.replace("<title>", "<x:title xmlns:x='u'>", 1)
                 .replace("</title>", "</x:title>", 1).encode("utf-16")):
        root, _ = xmlsafe.parse_xml(data, "CDA", builder="lxml")
        assert root is not None and not isinstance(root, etree._Element)
        fast = read_cda(data)
        assert fast == read_cda(data, builder="etree") and fast.document is not None
        assert fast.document.title and fast.document.family == "DUPONT"


def test_libxml2_cda_header_agrees_on_hostile_shapes() -> None:
    cda = fx_cda()
    opening, _, rest = cda.partition(b"<title>")
    for data in (
        cda.replace(b"<title>", b'<title lang="' + b"x" * 1_000_000 + b'">', 1),
        cda.replace(b"<title>", b"<title " + b" ".join(
            b"a%d='1'" % i for i in range(5000)) + b">", 1),
        cda.replace(b"<title>", b"<u:title>", 1),  # an unbound prefix
        cda.replace(b"urn:hl7-org:v3", b"urn:hl7-org:v2", 1),
        cda.replace(b"<recordTarget>", b"<recordTarget/><recordTarget>", 1),
        cda + b"\x00", cda[:-1] + b"\xff",
    ):
        assert read_cda(data) == read_cda(data, builder="etree")
    # Deeper than libxml2's 256 levels (no CDA is): refused as not well-formed.
    deep = b"<b>" * 20_000 + b"x" + b"</b>" * 20_000
    for data in (opening + b"<title>" + deep + b"</title>" + rest.partition(b"</title>")[2],
                 cda.replace(b"<component>", b"<component>" + deep, 1)):
        result = read_cda(data)
        assert result.document is None and [p.code for p in result.problems] == ["XML-INVALID"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"<a>", b"!", b"<!", b"<!DOCTYPE x>", b"<!ENTITY", b"<!-- c -->",
                                 b"<!DOCTYP", b"ENTITY", b"\x00", b"\xff\xfe", b" "]),
                max_size=8))
def test_dtd_look_skips_documents_without_a_bang(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert xmlsafe._without_dtd(data) == (xmlsafe._plain_encoding(data)
                                          and b"<!DOCTYPE" not in data
                                          and b"<!ENTITY" not in data)
