"""Encryption at rest, end to end: what SMTP delivers is stored as ciphertext (no
plaintext in any file of the deployment, nor in the PostgreSQL tables), and the
mailbox owner reads it back in clear over IMAP."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import uuid
from pathlib import Path

import pytest

from mailserver.settings import Settings
from tests.conftest import (
    DOMAIN,
    ServerThread,
    files_containing,
    make_deployment,
    start_server,
)

BOB = f"bob@{DOMAIN}"
PASSWORD = "correct horse battery"


def deliver(server: ServerThread, marker: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as client:
        client.sendmail("lab@other.example", [BOB],
                        f"Subject: {marker}\r\n\r\nRésultat {marker}\r\n".encode())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_plaintext_at_rest_and_clear_over_imap(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else ""
    settings: Settings = make_deployment(tmp_path, url)
    assert settings.storage.encrypt_at_rest
    server = start_server(settings)
    marker = f"CONFIDENTIEL-{uuid.uuid4().hex}"
    try:
        server.add_mailbox(BOB, PASSWORD)
        deliver(server, marker)
        context = ssl.create_default_context(cafile=settings.path(settings.tls.ca))
        with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context) as imap:
            imap.login(BOB, PASSWORD)
            imap.select("INBOX")
            _, data = imap.fetch("1", "(BODY.PEEK[])")
            assert marker.encode() in data[0][1]  # type: ignore[index]
            _, found = imap.search(None, "BODY", marker)
            assert found[0] == b"1"
            # Header keys and ENVELOPE come from the sealed summaries.
            _, found = imap.search(None, "SUBJECT", marker)
            assert found[0] == b"1"
            _, data = imap.fetch("1", "(ENVELOPE)")
            assert marker.encode() in data[0]  # type: ignore[operator]
        if backend == "postgresql":
            async def scan() -> list[bytes]:
                from sqlalchemy import text

                async with server.app.engine.connect() as connection:
                    rows = (await connection.execute(text("SELECT data FROM blobs"))).all()
                    rows += (await connection.execute(
                        text("SELECT head FROM message_summaries"))).all()
                    rows += (await connection.execute(
                        text("SELECT render FROM message_summaries"))).all()
                    return [bytes(r[0]) for r in rows]

            blobs = server.call(scan())
            assert len(blobs) == 3 and all(marker.encode() not in blob for blob in blobs)
    finally:
        server.stop()
    assert files_containing(settings.data_dir, marker.encode()) == []
    assert files_containing(settings.data_dir, "Résultat".encode()) == []


def test_master_key_is_needed_to_start(tmp_path: Path) -> None:
    settings = make_deployment(tmp_path)
    settings.path(settings.storage.master_key).unlink()
    from mailserver.app import Application
    from mailserver.store.crypto import CryptoError

    with pytest.raises(CryptoError, match="cannot read the master key"):
        Application(settings)


def test_master_key_rotation_keeps_mail_readable(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import main

    settings = make_deployment(tmp_path)
    server = start_server(settings)
    marker = f"ROTATION-{uuid.uuid4().hex}"
    try:
        server.add_mailbox(BOB, PASSWORD)
        deliver(server, marker)
    finally:
        server.stop()
    key_path = settings.path(settings.storage.master_key)
    first_key = key_path.read_bytes()
    runner = CliRunner()
    result = runner.invoke(main, ["--data-dir", str(settings.data_dir), "keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "1 mailbox keys and 0 queued messages re-wrapped" in result.output
    assert key_path.read_bytes() != first_key
    assert key_path.stat().st_mode & 0o777 == 0o600
    old = key_path.with_name(key_path.name + ".old")
    assert old.read_bytes() == first_key  # kept until nothing uses it
    server = start_server(settings)  # a fresh server reads the mail with the new key
    try:
        [stored] = server.inbox(BOB)
        assert marker.encode() in stored
    finally:
        server.stop()
    again = runner.invoke(main, ["--data-dir", str(settings.data_dir), "keys", "rotate"])
    assert again.exit_code == 0, again.output
    assert "Destroyed the master key retired" in again.output
    assert old.read_bytes() != first_key  # the first key is gone for good
