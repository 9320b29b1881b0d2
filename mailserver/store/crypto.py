"""Encryption at rest: what the store writes is ciphertext.

- A **master key** (32 random bytes) lives in a file outside the database
  (``storage.master_key`` in mss.toml, 0600). It only wraps mailbox keys.
- Each **mailbox** has an X25519 key pair; its private key is kept wrapped by the
  master key (AES-256-GCM, the mailbox id as associated data).
- Each **message** gets a fresh 256-bit data key; its body is encrypted once with
  AES-256-GCM, and the data key is wrapped to every recipient mailbox's public key
  (ephemeral X25519 → HKDF-SHA256 → AES-256-GCM), so delivering to many mailboxes
  encrypts the body once and the reader needs its own mailbox key only.

- A message in the **outbound queue** (for another operator) is sealed the same way,
  its data key wrapped by the master key itself, bound to its queue id.

Rotating the master key re-wraps the mailbox private keys and the queue's data keys;
bodies are untouched. Everything here is pure: bytes in, bytes out.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

BODY_FORMAT = b"MSE1"  # magic + version of an encrypted body
_NONCE = 12
_KEY = 32
_RAW = serialization.Encoding.Raw


class CryptoError(Exception):
    """A key or ciphertext is missing, damaged or does not belong where it is used."""


def create_master_key(path: Path) -> None:
    """Write a new random master key, readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(_KEY))


def load_master_key(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CryptoError(f"cannot read the master key {path}: {error.strerror}") from error
    if len(data) != _KEY:
        raise CryptoError(f"{path} is not a master key (expected {_KEY} bytes)")
    if path.stat().st_mode & 0o077:
        raise CryptoError(f"{path} is readable by others: chmod 600 it")
    return data


def _seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def _open(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    if len(sealed) < _NONCE + 16:
        raise CryptoError("ciphertext too short")
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], associated)
    except InvalidTag as error:
        raise CryptoError("ciphertext does not authenticate (wrong key or damaged)") from error


@dataclass(frozen=True)
class MailboxKeys:
    """A mailbox's key pair as stored: public key, private key wrapped by the master key."""

    public_key: bytes
    wrapped_private_key: bytes


def _mailbox_aad(mailbox_id: int) -> bytes:
    return b"mss-mailbox-key:" + str(mailbox_id).encode()


def new_mailbox_keys(master_key: bytes, mailbox_id: int) -> MailboxKeys:
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes(_RAW, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
    return MailboxKeys(
        public_key=private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw),
        wrapped_private_key=_seal(master_key, raw_private, _mailbox_aad(mailbox_id)),
    )


def unwrap_mailbox_key(master_key: bytes, mailbox_id: int, wrapped: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(
        _open(master_key, wrapped, _mailbox_aad(mailbox_id))
    )


def rewrap_mailbox_key(old_master: bytes, new_master: bytes, mailbox_id: int,
                       wrapped: bytes) -> bytes:
    """The same private key, wrapped by ``new_master`` (master key rotation)."""
    raw = _open(old_master, wrapped, _mailbox_aad(mailbox_id))
    return _seal(new_master, raw, _mailbox_aad(mailbox_id))


def _kek(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(hashes.SHA256(), _KEY, salt=None,
                info=b"mss-data-key-wrap" + ephemeral_public + recipient_public).derive(shared)


def wrap_data_key(data_key: bytes, mailbox_public_key: bytes, mailbox_id: int) -> bytes:
    """ECIES: ephemeral X25519 with the mailbox's public key, then AES-256-GCM."""
    recipient = X25519PublicKey.from_public_bytes(mailbox_public_key)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    kek = _kek(ephemeral.exchange(recipient), ephemeral_public, mailbox_public_key)
    return ephemeral_public + _seal(kek, data_key, _mailbox_aad(mailbox_id))


def unwrap_data_key(wrapped: bytes, mailbox_key: X25519PrivateKey, mailbox_id: int) -> bytes:
    if len(wrapped) < 32 + _NONCE + 16:
        raise CryptoError("wrapped data key too short")
    ephemeral_public, sealed = wrapped[:32], wrapped[32:]
    recipient_public = mailbox_key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    try:
        shared = mailbox_key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError as error:
        raise CryptoError("wrapped data key is damaged") from error
    return _open(_kek(shared, ephemeral_public, recipient_public), sealed,
                 _mailbox_aad(mailbox_id))


def new_data_key() -> bytes:
    return secrets.token_bytes(_KEY)


def encrypt_body(data_key: bytes, plaintext: bytes) -> bytes:
    return BODY_FORMAT + _seal(data_key, plaintext, BODY_FORMAT)


def is_encrypted_body(stored: bytes) -> bool:
    return stored[:4] == BODY_FORMAT


def decrypt_body(data_key: bytes, stored: bytes) -> bytes:
    if not is_encrypted_body(stored):
        raise CryptoError("not an encrypted body")
    return _open(data_key, stored[4:], BODY_FORMAT)


# ---- the outbound queue ------------------------------------------------------------------
# A message waiting for another operator belongs to no mailbox of ours: its data key is
# wrapped by the master key itself, bound to its queue id (so a key cannot be moved to
# another row). A master key rotation re-wraps these keys; the bodies stay as they are.


def _queue_aad(queue_id: str) -> bytes:
    return b"mss-queue-data-key:" + queue_id.encode("utf-8")


def wrap_queue_data_key(master_key: bytes, data_key: bytes, queue_id: str) -> bytes:
    return _seal(master_key, data_key, _queue_aad(queue_id))


def unwrap_queue_data_key(master_key: bytes, wrapped: bytes, queue_id: str) -> bytes:
    return _open(master_key, wrapped, _queue_aad(queue_id))


def rewrap_queue_data_key(old_master: bytes, new_master: bytes, wrapped: bytes,
                          queue_id: str) -> bytes:
    return wrap_queue_data_key(new_master, unwrap_queue_data_key(old_master, wrapped, queue_id),
                               queue_id)


def plaintext_size(stored: bytes) -> int:
    """The size of what ``encrypt_body`` sealed (the size of anything else as is)."""
    if is_encrypted_body(stored):
        return max(0, len(stored) - len(BODY_FORMAT) - _NONCE - 16)
    return len(stored)


# ---- message summaries ------------------------------------------------------------------
# A message's summary (mime/summary.py: header fields for SEARCH, pre-rendered ENVELOPE
# and BODYSTRUCTURE) is read for thousands of messages at once, where unwrapping one
# data key per message (an X25519 exchange each) would cost more than the answer. So
# summaries are sealed with one AES-256-GCM key per mailbox, derived from the mailbox's
# private key: who can read the mailbox's bodies can read its summaries, no one else,
# and rotating the master key (which re-wraps the private key) leaves them as they are.

SUMMARY_FORMAT = b"MSS1"  # magic + version of a sealed summary
PLAIN_SUMMARY = b"MSP1"  # a summary stored in the clear (encryption at rest turned off)


def summary_key(mailbox_key: X25519PrivateKey, mailbox_id: int) -> AESGCM:
    raw = mailbox_key.private_bytes(_RAW, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
    key = HKDF(hashes.SHA256(), _KEY, salt=None,
               info=b"mss-summary-key:" + str(mailbox_id).encode()).derive(raw)
    return AESGCM(key)


def _summary_aad(mailbox_id: int, part: bytes) -> bytes:
    return SUMMARY_FORMAT + b":" + str(mailbox_id).encode() + b":" + part


def seal_summary(key: AESGCM | None, mailbox_id: int, part: bytes, data: bytes) -> bytes:
    """``part`` (b"head" or b"render") of a summary as stored: sealed with the mailbox's
    summary key, or marked plain when there is none (no encryption at rest)."""
    if key is None:
        return PLAIN_SUMMARY + data
    nonce = secrets.token_bytes(_NONCE)
    return SUMMARY_FORMAT + nonce + key.encrypt(nonce, data, _summary_aad(mailbox_id, part))


def summary_opener(key: AESGCM | None, mailbox_id: int, part: bytes
                   ) -> Callable[[bytes], bytes]:
    """``open_summary`` for many summaries of one mailbox: the checks and the associated
    data worked out once (SEARCH opens one per message of the folder)."""
    if key is None:
        return lambda stored: open_summary(None, mailbox_id, part, stored)
    aad = _summary_aad(mailbox_id, part)
    decrypt = key.decrypt
    start = 4 + _NONCE

    def opener(stored: bytes) -> bytes:
        if stored[:4] != SUMMARY_FORMAT or len(stored) < start + 16:
            raise CryptoError("not a sealed message summary")
        try:
            return decrypt(stored[4:start], stored[start:], aad)
        except InvalidTag as error:
            raise CryptoError("summary does not authenticate (wrong key or damaged)") from error

    return opener


def open_summary(key: AESGCM | None, mailbox_id: int, part: bytes, stored: bytes) -> bytes:
    """The plaintext of a stored summary part. With a key only a sealed one is accepted
    (a plain one there would be a downgrade); without, only a plain one."""
    magic = stored[:4]
    if key is None:
        if magic != PLAIN_SUMMARY:
            raise CryptoError("sealed summary without a key for this mailbox")
        return stored[4:]
    if magic != SUMMARY_FORMAT:
        raise CryptoError("not a sealed message summary")
    if len(stored) < 4 + _NONCE + 16:
        raise CryptoError("summary too short")
    try:
        return key.decrypt(stored[4:4 + _NONCE], stored[4 + _NONCE:],
                           _summary_aad(mailbox_id, part))
    except InvalidTag as error:
        raise CryptoError("summary does not authenticate (wrong key or damaged)") from error
