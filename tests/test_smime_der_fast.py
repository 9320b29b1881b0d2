"""The DER fast paths of CMS decryption and verification (``enveloped._fast_decrypt``,
``signed._fast_verify``) give what the general asn1crypto paths give: on the messages we
and others send, and on truncated, corrupted or extended copies of them (hostile input
falls back or fails with the same status, never an exception)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserver.smime import DecryptStatus, Identity, Status, der, enveloped, message, mime, signed
from mailserver.smime.results import DecryptResult, VerifyResult
from tests.smime_support import ALICE, BOB, CAROL, Pki, make_pki

CONTENT = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
           + b"Compte rendu de consultation. " * 40 + b"\r\n")
# An hour ahead: the module's certificates are issued (valid from five minutes before
# issuance) when its first test runs, which may be minutes after this module is imported.
AT = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(Path(tmp_path_factory.mktemp("pki")))


@contextmanager
def _general_only() -> Iterator[None]:
    with mock.patch.object(signed, "_fast_verify", lambda *_: None), \
            mock.patch.object(enveloped, "_fast_decrypt", lambda *_: None):
        yield


def _verify_both(pki: Pki, encoded: bytes, detached: bytes | None,
                 ) -> tuple[VerifyResult, VerifyResult]:
    trust = pki.trust()
    fast = signed.verify(encoded, detached, trust, at=AT)
    with _general_only():
        general = signed.verify(encoded, detached, trust, at=AT)
    return fast, general


def _decrypt_both(pki: Pki, encoded: bytes) -> tuple[DecryptResult, DecryptResult]:
    identities = [pki.people[BOB].decrypter, pki.people[CAROL].decrypter]
    fast = enveloped.decrypt(encoded, identities)
    with _general_only():
        general = enveloped.decrypt(encoded, identities)
    return fast, general


def _signed(pki: Pki, detached: bool, who: str = ALICE) -> bytes:
    person = pki.people[who]
    return signed.sign(CONTENT, person.sign.certificate, person.sign.key, pki.chain,
                       detached=detached)


@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("who", [ALICE, CAROL])
def test_fast_verify_takes_our_signatures_and_agrees(pki: Pki, detached: bool,
                                                     who: str) -> None:
    encoded = _signed(pki, detached, who)
    trust = pki.trust()
    taken = signed._fast_verify(encoded, CONTENT if detached else None, trust, AT,
                                "smime-sign")
    assert taken is not None and taken.status is Status.PASS  # the fast path answered
    fast, general = _verify_both(pki, encoded, CONTENT if detached else None)
    assert fast == general
    assert fast.status is Status.PASS and fast.content == CONTENT


@pytest.mark.parametrize("who", [ALICE, CAROL])
def test_a_signers_layout_is_reused_only_for_the_same_shape(pki: Pki, who: str) -> None:
    """A detached SignedData whose bytes match a known layout everywhere but in the
    signing time, digest and signature is read from that layout; the result is the
    general path's, and a changed byte elsewhere means a fresh reading."""
    signed._LAYOUTS.clear()
    person = pki.people[who]
    first = _signed(pki, True, who)
    assert signed._known_layout(first) is None
    _verify_both(pki, first, CONTENT)
    assert signed._known_layout(first) is not None
    other = CONTENT.replace(b"consultation", b"hospitalisat")
    for _ in range(50):  # an ECDSA signature's DER length varies: one of the same size
        second = signed.sign(other, person.sign.certificate, person.sign.key, pki.chain,
                             signing_time=dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC))
        if len(second) == len(first):
            break
    assert len(second) == len(first) and second != first
    assert signed._known_layout(second) is not None
    for content, status in ((other, Status.PASS), (CONTENT, Status.FAIL)):
        fast, general = _verify_both(pki, second, content)
        assert fast == general and fast.status is status
    # The same length, one byte changed outside the varying parts: no layout.
    certificate_at = second.index(person.sign.certificate.public_bytes(
        serialization.Encoding.DER)[-40:])
    changed = second[:certificate_at] + bytes([second[certificate_at] ^ 1]) \
        + second[certificate_at + 1:]
    assert signed._known_layout(changed) is None
    fast, general = _verify_both(pki, changed, other)
    assert fast.status == general.status != Status.PASS
    # A signing time that is no time: the layout is not used, the general path decides.
    time_at = second.index(b"310506070809Z")
    bad_time = second[:time_at] + b"311306070809Z" + second[time_at + 13:]
    assert signed._known_layout(bad_time) is None
    fast, general = _verify_both(pki, bad_time, other)
    assert fast.status == general.status == Status.PERMERROR


@pytest.mark.parametrize("cipher", ["aes256-gcm", "aes256-cbc"])
def test_fast_decrypt_takes_our_envelopes_and_agrees(pki: Pki, cipher: str) -> None:
    recipients = [pki.people[ALICE].encrypt.certificate, pki.people[BOB].encrypt.certificate]
    encoded = enveloped.encrypt(CONTENT, recipients, cipher)  # type: ignore[arg-type]
    taken = enveloped._fast_decrypt(encoded, [pki.people[BOB].decrypter])
    assert taken is not None and taken[0] == CONTENT
    fast, general = _decrypt_both(pki, encoded)
    assert fast == general
    assert fast.status is DecryptStatus.OK and fast.content == CONTENT


def _mutations() -> st.SearchStrategy[tuple[str, float, int]]:
    return st.tuples(st.sampled_from(["truncate", "flip", "set", "insert", "delete",
                                      "append"]),
                     st.floats(min_value=0, max_value=1, exclude_max=True),
                     st.integers(min_value=0, max_value=255))


def _mutate(data: bytes, mutation: tuple[str, float, int], head_bias: bool) -> bytes:
    kind, where, value = mutation
    # Most of the structure (lengths, tags, OIDs) is in the first few hundred bytes and
    # around the signer info at the end; bias half of the positions there.
    span = min(len(data), 400) if head_bias else len(data)
    index = int(where * span) if head_bias else int(where * len(data))
    index = min(index, len(data) - 1)
    if kind == "truncate":
        return data[:index]
    if kind == "flip":
        return data[:index] + bytes([data[index] ^ (1 << (value % 8))]) + data[index + 1:]
    if kind == "set":
        return data[:index] + bytes([value]) + data[index + 1:]
    if kind == "insert":
        return data[:index] + bytes([value]) + data[index:]
    if kind == "delete":
        return data[:index] + data[index + 1:]
    return data + bytes([value]) * (1 + index % 3)


def _tail_bias(data: bytes, mutation: tuple[str, float, int]) -> bytes:
    kind, where, value = mutation
    start = max(0, len(data) - 420)  # the SignerInfo: attributes, algorithms, signature
    return _mutate(data, (kind, (start + where * (len(data) - start)) / len(data), value),
                   False)


_SAME_STATUS = settings(max_examples=400, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(mutation=_mutations(), detached=st.booleans(), where=st.sampled_from(["head", "tail",
                                                                              "any"]))
@_SAME_STATUS
def test_fast_verify_agrees_on_hostile_signatures(pki: Pki, mutation: tuple[str, float, int],
                                                  detached: bool, where: str) -> None:
    encoded = _signed(pki, detached)
    signed.verify(encoded, CONTENT if detached else None, pki.trust(), at=AT)  # its layout
    if where == "tail":
        mutated = _tail_bias(encoded, mutation)
    else:
        mutated = _mutate(encoded, mutation, where == "head")
    fast, general = _verify_both(pki, mutated, CONTENT if detached else None)
    assert fast.status == general.status, (fast.reason, general.reason)
    if fast.status is not Status.PERMERROR:  # malformed: asn1crypto's words, not ours
        assert fast == general


@given(mutation=_mutations(), cipher=st.sampled_from(["aes256-gcm", "aes256-cbc"]),
       head=st.booleans())
@_SAME_STATUS
def test_fast_decrypt_agrees_on_hostile_envelopes(pki: Pki, mutation: tuple[str, float, int],
                                                  cipher: str, head: bool) -> None:
    recipients = [pki.people[ALICE].encrypt.certificate, pki.people[BOB].encrypt.certificate]
    encoded = enveloped.encrypt(CONTENT, recipients, cipher)  # type: ignore[arg-type]
    mutated = _mutate(encoded, mutation, head)
    fast, general = _decrypt_both(pki, mutated)
    assert fast.status == general.status, (fast.reason, general.reason)
    if fast.status is DecryptStatus.OK:
        assert fast == general


def test_der_reader_refuses_what_does_not_fit() -> None:
    """Every length is checked against the buffer (X.690 §8.1.3)."""
    for bad in (b"\x30", b"\x30\x05\x02\x01", b"\x30\x80\x00\x00", b"\x1f\x01\x00",
                b"\x30\x85\x00\x00\x00\x00\x01", b"\x30\x82\x00"):
        with pytest.raises(der.DerError):
            der.read(bad, 0, len(bad))


@given(st.integers(min_value=0, max_value=0xFF),
       st.sampled_from([0, 1, 0x7F, 0x80, 0x81, 0xFF, 0x100, 0x101, 0xFFFF, 0x10000, 0x10001])
       | st.integers(min_value=0, max_value=70000))
@settings(max_examples=300)
def test_tlv_writes_the_shortest_definite_length(tag: int, size: int) -> None:
    """X.690 §10.1: DER lengths use the fewest octets; read back to the same contents."""
    content = bytes(size)
    encoded = der.tlv(tag, content)
    assert encoded == bytes([tag]) + der.length(size) + content
    if tag & 0x1F != 0x1F:
        assert der.read(encoded, 0, len(encoded)) == (tag, len(encoded) - size, len(encoded))


def _reference_auth_enveloped(infos: list[bytes], nonce: bytes, sealed: bytes) -> bytes:
    """RFC 5083 §2.1 / RFC 5084 §3.2, written TLV by nested TLV."""
    parameters = der.sequence(der.octet_string(nonce), der.integer(16))
    body = der.sequence(
        der.integer(0), der.set_of(*infos),
        der.sequence(der.oid("1.2.840.113549.1.7.1"),
                     der.algorithm("2.16.840.1.101.3.4.1.46", parameters),
                     der.context(0, sealed[:-16], constructed=False)),
        der.octet_string(sealed[-16:]))
    return der.sequence(der.oid("1.2.840.113549.1.9.16.1.23"), der.context(0, body))


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=3),
       st.binary(min_size=12, max_size=12),
       st.sampled_from([16, 17, 100, 143, 144, 270, 271, 65551, 65552, 70000])
       | st.integers(min_value=16, max_value=5000))
@settings(max_examples=300)
def test_auth_enveloped_data_is_written_as_nested_tlvs_would_be(
        infos: list[bytes], nonce: bytes, size: int) -> None:
    sealed = bytes(range(256)) * (size // 256) + bytes(size % 256)
    infos = [der.sequence(info) for info in infos]
    assert enveloped._auth_enveloped(infos, nonce, sealed) == \
        _reference_auth_enveloped(infos, nonce, sealed)


def _reference_decrypt_parts(head: bytes, body: bytes, identities: list[Identity],
                             ) -> DecryptResult:
    """The plain order: the CMS type read first, then the decryption."""
    try:
        encoded = message._pkcs7_der(head, body)
        if message._cms_type(encoded) not in message._ENCRYPTED:
            return DecryptResult(DecryptStatus.NOT_ENCRYPTED, "pkcs7-mime holds no encrypted "
                                                              "data")
        result = enveloped.decrypt(encoded, identities)
        if result.content is not None and not mime.is_canonical(result.content):
            result = DecryptResult(result.status, result.reason,
                                   mime.canonical(result.content), result.algorithm)
        return result
    except Exception as error:
        return DecryptResult(DecryptStatus.MALFORMED, f"malformed S/MIME entity: "
                                                      f"{type(error).__name__}: {error}")


@given(mutation=_mutations(), kind=st.sampled_from(["aes256-gcm", "aes256-cbc", "signed"]),
       head=st.booleans())
@_SAME_STATUS
def test_decrypting_the_common_shapes_first_decides_as_reading_the_type_first(
        pki: Pki, mutation: tuple[str, float, int], kind: str, head: bool) -> None:
    """A result of the common shapes is only given for what the CMS type says is
    encrypted: the same results as reading the type first, hostile DER included."""
    recipients = [pki.people[ALICE].encrypt.certificate, pki.people[BOB].encrypt.certificate]
    encoded = _signed(pki, False) if kind == "signed" else \
        enveloped.encrypt(CONTENT, recipients, kind)  # type: ignore[arg-type]
    entity_head = b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: binary\r\n"
    body = _mutate(encoded, mutation, head)
    identities = [pki.people[BOB].decrypter, pki.people[CAROL].decrypter]
    assert message.decrypt_parts(entity_head, body, identities) == \
        _reference_decrypt_parts(entity_head, body, identities)


def test_key_transport_prefixes_follow_each_identity(pki: Pki) -> None:
    """Kept by object identity: each identity gets its own certificate's
    IssuerAndSerialNumber (RFC 5652 §6.2.1), an EC identity none."""
    bob, carol = pki.people[BOB].decrypter, pki.people[CAROL].decrypter
    alice = pki.people[ALICE].decrypter
    for identity in (bob, carol, alice, bob, carol):
        found = enveloped._ktri_prefix(identity)
        if identity is carol:
            assert found is None
        else:
            assert found == (der.integer(0) + signed.certificate_parts(identity.certificate)[1],
                             identity.key)


@pytest.mark.parametrize("cipher", ["aes256-gcm", "aes256-cbc"])
def test_a_shape_left_to_the_general_path_costs_one_rsa_decryption(pki: Pki,
                                                                   cipher: str) -> None:
    """The fast path reads the content's parameters before the private-key operation:
    an envelope it leaves to the general path is not decrypted twice (a hostile sender
    would double our RSA work per message)."""
    encoded = enveloped.encrypt(CONTENT, [pki.people[BOB].encrypt.certificate],
                                cipher)  # type: ignore[arg-type]
    if cipher == "aes256-gcm":  # ICVlen 12 (RFC 5084 §3.2 allows it): not the fast shape
        icv = encoded.index(b"\x30\x11\x04\x0c") + 4 + 12
        assert encoded[icv:icv + 3] == der.integer(16)
        odd = encoded[:icv] + der.integer(12) + encoded[icv + 3:]
    else:  # the IV written as a UTF8String: not AES-CBC's parameters
        iv = encoded.index(b"\x04\x10", encoded.index(der.oid("2.16.840.1.101.3.4.1.42")))
        odd = encoded[:iv] + b"\x0c" + encoded[iv + 1:]
    identity = pki.people[BOB].decrypter
    calls = []
    original = type(identity.key).decrypt

    def counted(key: object, *arguments: object) -> bytes:
        calls.append(1)
        return original(key, *arguments)  # type: ignore[arg-type]

    with mock.patch.object(type(identity.key), "decrypt", counted):
        assert enveloped._fast_decrypt(odd, [identity]) is None
        assert calls == []
        assert not enveloped.decrypt(odd, [identity]).ok
    assert len(calls) <= 1
