"""Direct Project style protection of a whole message (Applicability Statement for Secure
Health Transport §4, on RFC 8551): the message, headers included, is wrapped as
message/rfc822, signed, then encrypted to every recipient and to ourselves. ``unprotect``
undoes it on the way in and says what it found in an Authentication-Results field.

A wrapped message carries its real header fields inside; the outer ones are for transport.
On the way in, the inner From and Message-ID must equal the outer ones, so an encrypted
part lifted from another message and pasted into a new envelope is detected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509

from mailserver.smime import mime
from mailserver.smime.enveloped import Cipher_, Identity
from mailserver.smime.message import (
    MAX_MESSAGE,
    decrypt_parts,
    encrypt_entity,
    sign_entity,
    verify_entity,
)
from mailserver.smime.results import (
    DecryptResult,
    DecryptStatus,
    Status,
    UnprotectResult,
    VerifyResult,
    authentication_results,
)
from mailserver.smime.trust import TrustStore

# Outer fields copied from the wrapped message (routing and threading need them).
OUTER_FIELDS = ("from", "sender", "to", "cc", "reply-to", "date", "message-id", "subject",
                "in-reply-to", "references")


def protect(message: bytes, signer: Identity, recipients: Sequence[x509.Certificate], *,
            chain: Sequence[x509.Certificate] = (), cipher: Cipher_ = "aes256-gcm") -> bytes:
    """Wrap as message/rfc822, sign, encrypt to ``recipients`` (include our own
    encryption certificate there to be able to read our sent copy)."""
    canonical = mime.canonical(message)
    head, _ = mime.split(canonical)
    wrapped = b"Content-Type: message/rfc822\r\n\r\n" + canonical
    signed_entity = sign_entity(wrapped, signer, chain)
    encrypted = encrypt_entity(signed_entity, recipients, cipher)
    outer = b"".join(raw for name, raw in mime.fields(head) if name in OUTER_FIELDS)
    return mime.join(outer, encrypted)


def _strip_our_results(head: bytes, authserv_id: str) -> bytes:
    """RFC 8601 §5: remove Authentication-Results fields claiming to be ours."""
    if b"authentication-results" not in head.lower():
        return head  # the usual case: no such field, nothing to parse
    kept = b""
    for name, raw in mime.fields(head):
        if name == "authentication-results":
            value = raw.split(b":", 1)[1].decode("utf-8", "replace").strip()
            if value.split(";", 1)[0].strip().lower() == authserv_id.lower():
                continue
        kept += raw
    return kept


def _deliver(head: bytes, body: bytes | memoryview, result: VerifyResult, authserv_id: str,
             comment: str, others: Sequence[str] = ()) -> bytes:
    field = authentication_results(result, authserv_id, comment, others).encode("utf-8")
    return b"".join((field, b"\r\n", _strip_our_results(head, authserv_id), b"\r\n", body))


def unprotect(message: bytes, identities: Sequence[Identity], trust: TrustStore, *,
              authserv_id: str, at: dt.datetime | None = None,
              others: Sequence[str] = ()) -> UnprotectResult:
    """Decrypt (if encrypted), verify (if signed), unwrap (if message/rfc822), and return
    the message to deliver with an Authentication-Results field (which also carries the
    ``others`` method results, e.g. DKIM's). Never raises."""
    try:
        return _unprotect(message, identities, trust, authserv_id, at, others)
    except Exception as error:  # last line of defence: the message is delivered as it came
        verify = VerifyResult(Status.PERMERROR, f"unreadable S/MIME structure: "
                                                f"{type(error).__name__}")
        decrypt = DecryptResult(DecryptStatus.MALFORMED, str(error)[:200])
        canonical = mime.canonical(message)
        head, body = mime.split(canonical)
        return UnprotectResult(decrypt, verify, _deliver(head, body, verify, authserv_id, "",
                                                         others))


def _unprotect(message: bytes, identities: Sequence[Identity], trust: TrustStore,
               authserv_id: str, at: dt.datetime | None,
               others: Sequence[str] = ()) -> UnprotectResult:
    if len(message) > MAX_MESSAGE:
        raise ValueError("message too large")
    # An encrypted body is base64: its line ends do not matter, so only the header block
    # is canonicalised first; the whole message is when it is not encrypted.
    canonical = mime.canonical_head(message)
    outer_head, outer_body = mime.split(canonical)
    # Each header block is read once (a message's own: no cache would find it again).
    outer_fields = mime.read_fields(outer_head)
    outer_from = mime.addresses_in(outer_fields, "from")
    # decrypt_entity(entity_of(canonical)[1]) without copying the body into an entity
    decrypt = decrypt_parts(mime.entity_head_of(outer_fields), outer_body, identities)
    notes: list[str] = []
    envelope_from = outer_from  # the From of the envelope as delivered
    if decrypt.status is DecryptStatus.OK and decrypt.content is not None:
        entity = decrypt.content
        notes.append(f"decrypted, {decrypt.algorithm}")
    elif decrypt.status is DecryptStatus.NOT_ENCRYPTED:
        canonical = mime.canonical(message)
        outer_head, outer_body = mime.split(canonical)
        outer_fields = mime.read_fields(outer_head)
        envelope_from = mime.addresses_in(outer_fields, "from")
        _, entity = mime.entity_of(canonical)
    else:
        # Not for us, or broken: deliver it as it came (the client may hold the key).
        verify = VerifyResult(Status.NONE, f"not verified: {decrypt.reason}")
        return UnprotectResult(decrypt, verify, _deliver(outer_head, outer_body, verify,
                                                         authserv_id, "", others), notes)
    verify = verify_entity(entity, trust, outer_from, at=at)
    if verify.status is Status.NONE:
        # Encrypted but not signed (or plain): outer fields + what we decrypted.
        head, body = mime.split(mime.join(_non_content(outer_fields), entity)
                                if decrypt.ok else canonical)
        return UnprotectResult(decrypt, verify, _deliver(head, body, verify, authserv_id,
                                                         "; ".join(notes), others), notes)
    signed_entity = verify.content if verify.content is not None else entity
    inner_head, inner_start = mime.split_at(signed_entity)
    kind, _ = mime.content_type(inner_head)
    if kind == "message/rfc822":
        # Direct-style wrap: the inner message is what we deliver, cut out of the signed
        # entity in place.
        head, body_start = mime.split_at(signed_entity, inner_start)
        verify = _check_wrapped(verify, outer_fields, envelope_from, mime.read_fields(head))
        notes.append("message/rfc822 unwrapped")
        return UnprotectResult(decrypt, verify, _deliver(
            head, memoryview(signed_entity)[body_start:], verify, authserv_id,
            "; ".join(notes), others), notes)
    head, body = mime.split(mime.join(_non_content(outer_fields), signed_entity))
    return UnprotectResult(decrypt, verify, _deliver(head, body, verify, authserv_id,
                                                     "; ".join(notes), others), notes)


def _non_content(read: mime.Fields) -> bytes:
    return b"".join(raw for name, raw in read
                    if not mime.is_content_field(name) and name != "mime-version")


def _check_wrapped(verify: VerifyResult, outer: mime.Fields, outer_from: tuple[str, ...],
                   inner: mime.Fields) -> VerifyResult:
    """The signed inner message must be the one the envelope claims to carry (``outer``
    and ``inner`` the fields of each header block, ``outer_from`` the envelope's From
    addresses)."""
    if verify.status is not Status.PASS:
        return verify
    # The envelope's From and Message-ID fields are copies of the inner ones (``protect``):
    # the same bytes give the same addresses and identifier without reading them again.
    copied = mime.raw_fields(inner, "from", "message-id") == \
        mime.raw_fields(outer, "from", "message-id")
    inner_from = outer_from if copied or mime.raw_fields(inner, "from") == \
        mime.raw_fields(outer, "from") else mime.addresses_in(inner, "from")
    if outer_from and inner_from is not outer_from and set(inner_from) != set(outer_from):
        return VerifyResult(Status.FAIL, f"the signed message is from {', '.join(inner_from)} "
                                         f"but the envelope says {', '.join(outer_from)} "
                                         "(part swapped from another message?)",
                            verify.signer, verify.content)
    if not copied and mime.raw_fields(inner, "message-id") != \
            mime.raw_fields(outer, "message-id"):
        outer_id = mime.header_value_in(outer, "message-id")
        inner_id = mime.header_value_in(inner, "message-id")
        if outer_id and inner_id and outer_id != inner_id:
            return VerifyResult(Status.FAIL, f"the signed message is {inner_id} but the "
                                             f"envelope says {outer_id} (part swapped from "
                                             "another message?)", verify.signer, verify.content)
    if verify.signer is not None and not verify.signer.speaks_for(inner_from):
        return VerifyResult(Status.POLICY, "the signer is not the From address of the signed "
                                           "message", verify.signer, verify.content)
    return verify
