"""The shortcuts taken for speed on the S/MIME hot path give exactly what the plain
code gives: canonical form, base64 both ways, per-object caches of certificate parts."""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.pki.local_ca import create_ca
from mailserver.smime import der, mime, signed
from mailserver.smime.mime import MAX_HEADER_FIELDS as MAX_FIELDS
from mailserver.smime.results import Signer, Status, VerifyResult


def _reference_canonical(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


@given(st.binary(max_size=64).map(lambda b: b.translate(bytes.maketrans(b"\x00\x01", b"\r\n"))))
@settings(max_examples=2000)
def test_canonical_check_agrees_with_the_definition(data: bytes) -> None:
    # RFC 8551 §3.1.1: canonical iff converting every line end to CRLF changes nothing.
    assert mime.is_canonical(data) == (_reference_canonical(data) == data)
    assert mime.canonical(data) == _reference_canonical(data)


_BASE64_ALPHABET = st.sampled_from(list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        b"0123456789+/=\r\n\t !-_\x00\xff"))


def _outcome(function: object, data: bytes) -> bytes | str:
    try:
        return function(data)  # type: ignore[operator, no-any-return]
    except binascii.Error:
        return "error"


@given(st.lists(_BASE64_ALPHABET, max_size=40).map(bytes))
@settings(max_examples=3000)
def test_base64_decoding_agrees_with_binascii(data: bytes) -> None:
    """RFC 2045 §6.8 as binascii reads it, hostile input included (data after padding,
    characters outside the alphabet)."""
    assert _outcome(mime.base64_decode, data) == _outcome(binascii.a2b_base64, data)


@given(st.binary(max_size=400))
def test_base64_lines_are_76_characters_with_crlf(data: bytes) -> None:
    encoded = mime._base64_lines(data)
    lines = encoded.split(b"\r\n")
    assert lines[-1] == b"" and all(len(line) <= 76 for line in lines)
    assert all(len(line) == 76 for line in lines[:-2])
    assert encoded.replace(b"\r\n", b"") == base64.b64encode(data)
    assert mime.base64_decode(encoded) == data


def test_certificate_parts_follow_each_object() -> None:
    """Cached by object identity: two certificates never share an entry, and the parts
    are those of the certificate (DER, RFC 5652 §10.2.4 IssuerAndSerialNumber)."""
    first = create_ca("Premiere AC", "a.example")[1]
    second = create_ca("Seconde AC", "b.example")[1]
    for certificate in (first, second, first):
        encoded, issuer_and_serial = signed.certificate_parts(certificate)
        assert encoded == certificate.public_bytes(serialization.Encoding.DER)
        assert issuer_and_serial == der.sequence(certificate.issuer.public_bytes(),
                                                 der.integer(certificate.serial_number))


def _reference_split_multipart_signed(head: bytes, body: bytes) -> tuple[bytes, bytes, bytes]:
    """The plain reading: prepend the CRLF the first delimiter may lack, then cut."""
    boundary = mime.content_type(head)[1].get("boundary", "")
    if not 0 < len(boundary) <= 70:
        raise mime.MimeError("multipart/signed without a valid boundary")
    delimiter = b"--" + boundary.encode("ascii", "replace")
    text = b"\r\n" + body
    positions: list[int] = []
    start = 0
    while len(positions) < 3:
        index = text.find(b"\r\n" + delimiter, start)
        if index < 0:
            break
        positions.append(index)
        start = index + 2 + len(delimiter)
    if len(positions) < 3:
        raise mime.MimeError("multipart/signed must hold exactly two parts")

    def part(after: int, until: int) -> bytes:
        line_end = text.find(b"\r\n", after + 2 + len(delimiter))
        if line_end < 0 or line_end > until:
            raise mime.MimeError("truncated multipart/signed")
        return text[line_end + 2:until]

    signed_part = part(positions[0], positions[1])
    signature_part = part(positions[1], positions[2])
    if not text[positions[2] + 2 + len(delimiter):].startswith(b"--"):
        raise mime.MimeError("multipart/signed must hold exactly two parts")
    return (signed_part, *mime.split(signature_part))


_MULTIPART_HEAD = b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; ' \
                  b'boundary="b1"\r\n'
_PIECES = st.sampled_from([b"--b1", b"\r\n", b"--", b"\r", b"\n", b"x", b"Content-Type: a/b",
                           b"\r\n\r\n", b"--b1--", b"b1", b" "])


def _outcome_of(function: object, body: bytes) -> object:
    try:
        return function(_MULTIPART_HEAD, body)  # type: ignore[operator]
    except mime.MimeError as error:
        return str(error)


_FILLER = st.lists(_PIECES, max_size=4).map(b"".join)
# A well-formed body (preamble, delimiter, part, delimiter, part, close delimiter,
# epilogue) with any piece possibly replaced by a broken one.
_BODIES = st.one_of(
    st.lists(_PIECES, max_size=24).map(b"".join),
    st.tuples(_FILLER, st.sampled_from([b"--b1", b"\r\n--b1", b"-b1", b""]), _FILLER,
              st.sampled_from([b"\r\n", b"", b"\n"]), _FILLER,
              st.sampled_from([b"\r\n--b1", b"\r\n--b1 x", b"--b1", b""]), _FILLER,
              st.sampled_from([b"\r\n", b"", b"\r"]), _FILLER,
              st.sampled_from([b"\r\n--b1--", b"\r\n--b1", b"\r\n--b1-", b""]), _FILLER,
              ).map(b"".join))


@given(_BODIES)
@settings(max_examples=4000)
def test_multipart_signed_split_agrees_with_the_plain_reading(body: bytes) -> None:
    """RFC 2046 §5.1.1 delimiters: the same parts, or the same error, as cutting a copy
    with the leading CRLF added (hostile framing included)."""
    assert _outcome_of(mime.split_multipart_signed, body) == \
        _outcome_of(_reference_split_multipart_signed, body)


def _outcome_in_place(prefix: bytes, body: bytes) -> object:
    try:
        return mime.multipart_signed_parts(prefix + body, len(prefix),
                                           mime.content_type(_MULTIPART_HEAD)[1])
    except mime.MimeError as error:
        return str(error)


@given(st.sampled_from([b"", b"--b1", b"\r\n--b1\r\n", b"x\r\n", _MULTIPART_HEAD + b"\r\n"]),
       _BODIES)
@settings(max_examples=3000)
def test_multipart_signed_parts_in_place_agree_with_a_copied_body(prefix: bytes,
                                                                  body: bytes) -> None:
    """The body read where it lies in the entity: what lies before it (delimiters
    included) is never taken for part of it."""
    assert _outcome_in_place(prefix, body) == _outcome_of(mime.split_multipart_signed, body)


_SPLIT_PIECES = st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b"a", b"A: b", b"\r\n\r\n"]),
                         max_size=12).map(b"".join)


@given(_SPLIT_PIECES, st.integers(0, 40))
@settings(max_examples=3000)
def test_split_at_agrees_with_splitting_a_copy(data: bytes, start: int) -> None:
    start = min(start, len(data))
    head, body_start = mime.split_at(data, start)
    assert (head, data[body_start:]) == mime.split(data[start:])


_ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
_atom = st.text(alphabet=_ATEXT, min_size=1, max_size=6)
_dot_atom = st.lists(_atom, min_size=1, max_size=3).map(".".join)
_addr_spec = st.tuples(_dot_atom, _dot_atom).map("@".join)
_name = st.lists(_atom, min_size=0, max_size=3).map(" ".join)
_mailbox = st.one_of(
    _addr_spec,
    st.tuples(_name, st.sampled_from(["", " "]), _addr_spec).map(lambda t: f"{t[0]}{t[1]}<{t[2]}>"),
)
# Also the shapes the regex must send to the email package: quotes, comments, groups,
# routes, domain literals, encoded words, stray specials.
_other = st.sampled_from(['"Dr, Jean" <j@h.fr>', "j@h.fr (Jean)", "Team: a@b, c@d;",
                          "<@route:a@b>", "a@[192.0.2.1]", "=?utf-8?q?J=C3=A9r?= <j@h>",
                          "a..b@c", "a@b@c", "<a@b", "a@b>", "", " ", "a@", "@b", "a.@b"])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(st.one_of(_mailbox, _mailbox, _other), min_size=1, max_size=3)
                .map(lambda boxes: ", ".join(boxes)), min_size=1, max_size=2))
def test_simple_address_reading_agrees_with_the_email_package(fields: list[str]) -> None:
    """The regex for the usual To/From shapes gives what email.utils.getaddresses gives,
    and gives up (None) on anything else."""
    import email.utils

    reference = tuple(address.lower() for _, address in email.utils.getaddresses(fields)
                      if address)
    fast = mime._simple_addresses(fields)
    assert fast is None or fast == reference
    head = "".join(f"To: {value}\r\n" for value in fields).encode()
    assert mime._addresses(head, "to") == reference


def _reference_fields(head: bytes) -> list[tuple[str, bytes]]:
    """The plain line-by-line reading, a regex per line (RFC 5322 §2.2, §2.2.3)."""
    result: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n")[:-1] if head.endswith(b"\r\n") else head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and result:
            name, raw = result[-1]
            result[-1] = (name, raw + line + b"\r\n")
            continue
        match = re.match(rb"^([!-9;-~]+)[ \t]*:", line)
        if match is None:
            continue
        result.append((match.group(1).decode("ascii").lower(), line + b"\r\n"))
        if len(result) > MAX_FIELDS:
            raise mime.MimeError("too many header fields")
    return result


def _outcome_of_fields(function: object, head: bytes) -> object:
    try:
        return function(head)  # type: ignore[operator]
    except mime.MimeError as error:
        return str(error)


# Header lines: fields, folded lines, garbage, blank lines, bare CR or LF, odd names.
_HEAD_LINE = st.one_of(
    st.sampled_from([b"From: a@b", b"To:b@c", b"Subject : x", b"X-A:\t", b"\tfolded",
                     b" folded", b" ", b"", b"garbage", b"no colon here", b": empty name",
                     b"Bad Name: x", b"Content-Type: text/plain;", b"a\rb: c", b"a: b\rc",
                     b"a: b\nc", b"\n", b"\r", b"x:\r", b"\x80: high", b"y:\xff"]),
    st.tuples(st.text(alphabet="abAB-:;!~ \t", min_size=0, max_size=6).map(str.encode),
              st.binary(max_size=6)).map(b"".join),
)


# Mostly the usual shape (fields and folded lines only).
_USUAL_LINE = st.sampled_from([b"From: a@b", b"To:b@c", b"Subject : x", b"X-A:\t", b"\tfolded",
                               b" folded", b"Content-Type: text/plain;", b"y:\xff", b"a: b c"])
_HEAD_LINES = st.one_of(st.lists(_USUAL_LINE, max_size=12),
                        st.lists(st.one_of(_USUAL_LINE, _USUAL_LINE, _HEAD_LINE), max_size=12))


@given(_HEAD_LINES, st.sampled_from([b"\r\n", b"\r\n", b"", b"\n", b"\r"]))
@settings(max_examples=4000)
def test_field_reading_agrees_with_the_line_by_line_reading(lines: list[bytes],
                                                            end: bytes) -> None:
    """RFC 5322 §2.2: the reading with remembered field names gives the same fields as
    the plain line-by-line one, whatever the block holds."""
    head = b"\r\n".join(lines) + end
    assert _outcome_of_fields(mime._fields, head) == \
        _outcome_of_fields(_reference_fields, head)


@given(st.integers(min_value=MAX_FIELDS - 2, max_value=MAX_FIELDS + 2),
       st.sampled_from([b"", b" folded\r\n", b"garbage\r\n"]))
@settings(max_examples=30)
def test_field_reading_limits_the_field_count_alike(count: int, extra: bytes) -> None:
    head = b"X-N: 1\r\n" * count + extra
    assert _outcome_of_fields(mime._fields, head) == \
        _outcome_of_fields(_reference_fields, head)


def test_long_field_names_are_read_but_not_remembered() -> None:
    """Hostile heads may hold names of any length: the table of names keeps short ones."""
    name = b"X-" + b"a" * 10_000
    head = name + b": 1\r\nFrom: a@b.example\r\n"
    assert mime._fields(head) == _reference_fields(head)
    assert name not in mime._LOWER_NAMES and b"From" in mime._LOWER_NAMES


def _reference_content_type(head: bytes) -> tuple[str, dict[str, str]]:
    """The plain reading: a parameter value a quoted-string read character by character."""
    value = mime.header_value(head, "content-type")
    if value is None:
        return "text/plain", {}
    kind, _, rest = value.partition(";")
    kind = kind.strip().lower()
    if kind.count("/") != 1:
        return "text/plain", {}
    parameters: dict[str, str] = {}
    pattern = r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)'
    for name, raw in re.findall(pattern, ";" + rest):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        parameters.setdefault(name.lower(), raw)
    return kind, parameters


@given(st.lists(st.one_of(
    st.sampled_from(['multipart/signed', 'text/plain', ' X/Y ', 'bad', 'a/b/c', ';', '; ',
                     'protocol="application/pkcs7-signature"', 'micalg=sha-256',
                     'boundary="----=_smime_abc"', 'b="a\\"b"', 'b="a\\\\"', 'b="\\', 'b="',
                     'B = "x y"', 'c=é', '\r\n\t', '"', '\\', '=', ' = ']),
    st.text(alphabet='ab=;" \\\t', max_size=8)), max_size=8))
@settings(max_examples=3000)
def test_content_type_reading_agrees_with_the_plain_reading(parts: list[str]) -> None:
    """RFC 2045 §5.1 parameters, quoted-strings with quoted-pairs included."""
    head = ("Content-Type: " + "".join(parts) + "\r\n").encode()
    kind, parameters = mime._content_type(head)
    assert (kind, dict(parameters)) == _reference_content_type(head)


@given(st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b"a", b"A: b", b"\r\n\r\n"]), max_size=12)
       .map(b"".join), st.integers(0, 40), st.integers(0, 40))
@settings(max_examples=3000)
def test_split_within_a_part_agrees_with_splitting_a_copy(data: bytes, start: int,
                                                          end: int) -> None:
    head, body_start = mime.split_at(data, start, end)
    assert (head, data[body_start:end]) == mime.split(data[start:end])


_OUR_HEAD = ('Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
             '\tmicalg=sha-256; boundary="{}"\r\n')


@given(st.one_of(st.text(alphabet="aZ09=_-", max_size=74),
                 st.text(alphabet='aZ09=_-."\\ \t;é', max_size=74)),
       st.sampled_from([_OUR_HEAD, _OUR_HEAD.replace("sha-256", "SHA-256"),
                        _OUR_HEAD.replace("\r\n\t", " "), _OUR_HEAD + "X-A: b\r\n",
                        "Content-Type: text/plain\r\n" + _OUR_HEAD, _OUR_HEAD[:-2]]))
@settings(max_examples=3000)
def test_our_multipart_signed_head_reads_as_the_general_reading(boundary: str,
                                                                template: str) -> None:
    """RFC 8551 §3.5.3 heads as ``multipart_signed`` writes them, and near misses."""
    head = template.format(boundary).encode()
    kind, parameters = mime.content_type(head)
    general_kind, general = mime._content_type(head)
    assert (kind, dict(parameters)) == (general_kind, dict(general))


def test_our_multipart_signed_head_takes_the_fast_path() -> None:
    entity = mime.multipart_signed(b"Content-Type: text/plain\r\n\r\nx\r\n", b"sig")
    head, _ = mime.split(entity)
    assert mime._OUR_MULTIPART_SIGNED.fullmatch(head) is not None


def _reference_signing_time_parses(attribute: bytes) -> bool:
    """The plain reading: each field of the time cut out and read on its own."""
    import datetime as dt

    for prefix, size in ((signed._UTC_TIME_ATTRIBUTE, 13),
                         (signed._GENERALIZED_TIME_ATTRIBUTE, 15)):
        if attribute.startswith(prefix) and len(attribute) == len(prefix) + size:
            text = attribute[-size:]
            break
    else:
        return False
    year_digits = size - 11  # YY or YYYY, then MMDDHHMMSS and Z
    if not text[:-1].isdigit() or not text[:-1].isascii() or text[-1:] != b"Z":
        return False
    year = int(text[:year_digits])
    if year_digits == 2:
        year += 1900 if year >= 50 else 2000
    numbers = text[year_digits:-1]
    try:
        dt.datetime(year, int(numbers[0:2]), int(numbers[2:4]), int(numbers[4:6]),
                    int(numbers[6:8]), int(numbers[8:10]))
    except ValueError:
        return False
    return True


_TIME_DIGITS = st.one_of(
    st.tuples(st.integers(0, 99), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
              st.integers(0, 61), st.integers(0, 61))
    .map(lambda t: "".join(f"{n:02d}" for n in t)),
    st.text(alphabet="0123456789Z \u0661", min_size=10, max_size=14))


@given(_TIME_DIGITS, st.sampled_from(["", "19", "20", "00", "99"]),
       st.sampled_from(["Z", "", "z", "0"]))
@settings(max_examples=4000)
def test_signing_time_check_agrees_with_the_plain_reading(digits: str, century: str,
                                                          end: str) -> None:
    """RFC 5652 §11.3 signingTime, UTCTime or GeneralizedTime, real dates or not."""
    text = (century + digits + end).encode()
    for prefix in (signed._UTC_TIME_ATTRIBUTE, signed._GENERALIZED_TIME_ATTRIBUTE):
        attribute = prefix + text
        assert signed._signing_time_parses(attribute) == \
            _reference_signing_time_parses(attribute)


def _reference_check_wrapped(verify: VerifyResult, outer_head: bytes,
                             inner_head: bytes) -> VerifyResult:
    """The plain check: both From and Message-ID fields read from each header block."""
    if verify.status is not Status.PASS:
        return verify
    inner_from = mime._addresses(inner_head, "from")
    outer_from = mime._addresses(outer_head, "from")
    if outer_from and set(inner_from) != set(outer_from):
        return VerifyResult(Status.FAIL, f"the signed message is from {', '.join(inner_from)} "
                                         f"but the envelope says {', '.join(outer_from)} "
                                         "(part swapped from another message?)",
                            verify.signer, verify.content)
    outer_id = mime.header_value(outer_head, "message-id")
    inner_id = mime.header_value(inner_head, "message-id")
    if outer_id and inner_id and outer_id != inner_id:
        return VerifyResult(Status.FAIL, f"the signed message is {inner_id} but the "
                                         f"envelope says {outer_id} (part swapped from "
                                         "another message?)", verify.signer, verify.content)
    if verify.signer is not None and not verify.signer.speaks_for(inner_from):
        return VerifyResult(Status.POLICY, "the signer is not the From address of the signed "
                                           "message", verify.signer, verify.content)
    return verify


_WRAPPED_FIELD = st.sampled_from([
    b"From: a@h.fr\r\n", b"From: A@H.fr\r\n", b"From: b@h.fr\r\n", b"from:a@h.fr\r\n",
    b"From: Dr A <a@h.fr>\r\n", b"From: a@h.fr, b@h.fr\r\n", b"From: \"x\" <a@h.fr>\r\n",
    b"Message-ID: <1@h>\r\n", b"Message-ID: <2@h>\r\n", b"Message-Id:  <1@h>\r\n",
    b"Message-ID:\r\n", b"To: c@h.fr\r\n", b"Subject: x\r\n", b" folded\r\n", b"junk\r\n"])


@given(st.lists(_WRAPPED_FIELD, max_size=5).map(b"".join),
       st.lists(_WRAPPED_FIELD, max_size=5).map(b"".join),
       st.sampled_from([("a@h.fr",), ("b@h.fr",), ()]), st.sampled_from(list(Status)))
@settings(max_examples=3000)
def test_wrapped_check_agrees_with_the_plain_check(inner: bytes, outer_rest: bytes,
                                                   addresses: tuple[str, ...],
                                                   status: Status) -> None:
    """RFC 8551 §3.1 wrapping: the check that reuses the envelope's From and Message-ID
    when the inner fields are the same bytes decides as the plain check does."""
    import importlib

    check = importlib.import_module("mailserver.smime.protect")._check_wrapped
    verify = VerifyResult(status, "ok", Signer(addresses, "CN=a", "CN=ca", 1), b"x")
    for outer in (inner + outer_rest, outer_rest, inner):
        assert check(verify, mime.read_fields(outer), mime.addresses(outer, "from"),
                     mime.read_fields(inner)) == _reference_check_wrapped(verify, outer, inner)


def _reference_speaks_for(signer: Signer, from_addresses: list[str]) -> bool:
    names = {a.lower() for a in signer.addresses}
    domains = {d.lower().rstrip(".") for d in signer.domains}
    return any(a.lower() in names or a.rpartition("@")[2].lower() in domains
               for a in from_addresses)


_ADDRESS = st.sampled_from(["a@h.fr", "A@H.FR", "b@h.fr", "a@x.fr", "h.fr", "@h.fr", "",
                            "İ@h.fr", "i̇@h.fr", "a@H.fr.", "a@b@h.fr"])


@given(st.lists(_ADDRESS, max_size=3), st.lists(st.sampled_from(["h.fr", "H.FR.", "x.fr", ""]),
                                                max_size=2), st.lists(_ADDRESS, max_size=3))
@settings(max_examples=2000)
def test_signer_speaks_for_agrees_with_the_plain_reading(addresses: list[str],
                                                         domains: list[str],
                                                         from_addresses: list[str]) -> None:
    """RFC 8550 §3: the signer's address, or a domain-bound certificate's domain."""
    signer = Signer(tuple(addresses), "CN=a", "CN=ca", 1, tuple(domains))
    assert signer.speaks_for(from_addresses) == _reference_speaks_for(signer, from_addresses)


def _reference_authentication_results(result: VerifyResult, authserv_id: str,
                                      extra_comment: str, others: list[str]) -> str:
    """The plain building: every part after a space, folded by stripping it."""
    from mailserver.smime.results import _comment, _quoted

    comment = result.reason if not extra_comment else f"{extra_comment}; {result.reason}"
    parts = [f"Authentication-Results: {authserv_id};"]
    parts += [f" {other};" for other in others]
    parts.append(f" smime={result.status.value} ({_comment(comment)})")
    signer = result.signer
    if signer is not None:
        if signer.identifier:
            parts.append(f" body.smime-identifier={_quoted(signer.identifier)}")
        parts.append(f" body.smime-serial={signer.serial:X}")
        parts.append(f" body.smime-issuer={_quoted(signer.issuer)}")
    joined = "".join(parts)
    if len(joined) <= 76:
        return joined
    return "\r\n\t".join([parts[0], *(part.lstrip() for part in parts[1:])])


@given(st.sampled_from(list(Status)), st.text(alphabet="ab ()\\\r\n\té;", max_size=30),
       st.sampled_from(["mx", "mx.hopital.example" * 3]), st.sampled_from(["", "decrypted"]),
       st.lists(st.sampled_from(["dkim=pass", "  dkim=fail header.d=x", "\tspf=none", ""]),
                max_size=2),
       st.one_of(st.none(), st.builds(Signer, st.sampled_from([(), ("a@h.fr",), ('"q"@h',)]),
                                      st.just("CN=a"), st.sampled_from(["CN=ca", "CN=\"x\\\""]),
                                      st.integers(0, 2**64), st.sampled_from([(), ("h.fr",)]))))
@settings(max_examples=2000)
def test_authentication_results_agree_with_the_plain_building(
        status: Status, reason: str, authserv_id: str, extra: str, others: list[str],
        signer: Signer | None) -> None:
    """RFC 8601 / RFC 7281 §3: the same field, folded or not, as part by part."""
    from mailserver.smime.results import authentication_results

    result = VerifyResult(status, reason, signer)
    assert authentication_results(result, authserv_id, extra, others) == \
        _reference_authentication_results(result, authserv_id, extra, others)
