"""Encryption at rest, the primitives: master key, mailbox keys, data keys, bodies."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailserver.store import crypto


@pytest.fixture
def master(tmp_path: Path) -> bytes:
    path = tmp_path / "keys" / "master.key"
    crypto.create_master_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    return crypto.load_master_key(path)


def test_body_round_trip_to_several_mailboxes(master: bytes) -> None:
    alice = crypto.new_mailbox_keys(master, 1)
    bob = crypto.new_mailbox_keys(master, 2)
    data_key = crypto.new_data_key()
    stored = crypto.encrypt_body(data_key, b"Subject: CR\r\n\r\nconfidential\r\n")
    assert b"confidential" not in stored and crypto.is_encrypted_body(stored)
    for mailbox_id, keys in ((1, alice), (2, bob)):
        wrapped = crypto.wrap_data_key(data_key, keys.public_key, mailbox_id)
        private = crypto.unwrap_mailbox_key(master, mailbox_id, keys.wrapped_private_key)
        key = crypto.unwrap_data_key(wrapped, private, mailbox_id)
        assert crypto.decrypt_body(key, stored).endswith(b"confidential\r\n")


def test_keys_do_not_cross_mailboxes_and_tampering_is_detected(master: bytes) -> None:
    alice = crypto.new_mailbox_keys(master, 1)
    bob = crypto.new_mailbox_keys(master, 2)
    data_key = crypto.new_data_key()
    for_alice = crypto.wrap_data_key(data_key, alice.public_key, 1)
    bob_private = crypto.unwrap_mailbox_key(master, 2, bob.wrapped_private_key)
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_data_key(for_alice, bob_private, 2)
    with pytest.raises(crypto.CryptoError):  # Alice's wrapped key moved to Bob's row
        crypto.unwrap_mailbox_key(master, 2, alice.wrapped_private_key)
    stored = bytearray(crypto.encrypt_body(data_key, b"x" * 100))
    stored[-1] ^= 1
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_body(data_key, bytes(stored))
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_body(data_key, b"MSE1short")


def test_master_key_rotation_rewraps_without_touching_bodies(master: bytes) -> None:
    keys = crypto.new_mailbox_keys(master, 7)
    data_key = crypto.new_data_key()
    stored = crypto.encrypt_body(data_key, b"body")
    wrapped = crypto.wrap_data_key(data_key, keys.public_key, 7)
    new_master = crypto.new_data_key()
    rewrapped = crypto.rewrap_mailbox_key(master, new_master, 7, keys.wrapped_private_key)
    private = crypto.unwrap_mailbox_key(new_master, 7, rewrapped)
    assert crypto.decrypt_body(crypto.unwrap_data_key(wrapped, private, 7), stored) == b"body"
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_mailbox_key(master, 7, rewrapped)


def test_master_key_file_checks(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    crypto.create_master_key(path)
    with pytest.raises(FileExistsError):
        crypto.create_master_key(path)  # never overwrite a key
    path.chmod(0o644)
    with pytest.raises(crypto.CryptoError, match="chmod 600"):
        crypto.load_master_key(path)
    with pytest.raises(crypto.CryptoError, match="cannot read"):
        crypto.load_master_key(tmp_path / "missing.key")
