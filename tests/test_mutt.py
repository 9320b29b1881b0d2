"""Mutt (a Debian package, installed by .ci/run) in batch mode, over TLS: it sends through
submission (465) and files its copy in the Sent folder over IMAP (993), as a practitioner's
mail client does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ServerThread
from tests.imap_support import ALICE, BOB, PASSWORD, imaps

MUTT = shutil.which("mutt") or "mutt"


def muttrc(server: ServerThread, home: Path) -> Path:
    user = ALICE.replace("@", "%40")  # RFC 3986 §3.2.1: userinfo is percent-encoded
    ca = server.settings.path(server.settings.tls.ca)
    path = home / "muttrc"
    path.write_text(f"""
set from = "{ALICE}"
set realname = "Dr Alice"
set smtp_url = "smtps://{user}@127.0.0.1:{server.port("submissions")}/"
set smtp_pass = "{PASSWORD}"
set imap_user = "{ALICE}"
set imap_pass = "{PASSWORD}"
set folder = "imaps://{user}@127.0.0.1:{server.port("imaps")}/"
set record = "=Sent"
set ssl_ca_certificates_file = "{ca}"
set certificate_file = "{home / "certificates"}"
set ssl_force_tls = yes
set copy = yes
set charset = "utf-8"
set send_charset = "utf-8"
""")
    return path


def test_mutt_sends_and_files_its_copy(server: ServerThread, tmp_path: Path) -> None:
    server.add_mailbox(ALICE, PASSWORD)
    server.add_mailbox(BOB, PASSWORD)
    rc = muttrc(server, tmp_path)
    body = tmp_path / "body.txt"
    body.write_text("Compte rendu opératoire joint.\n", encoding="utf-8")
    environment = {**os.environ, "HOME": str(tmp_path), "TERM": "dumb"}
    with body.open("rb") as stdin:
        done = subprocess.run([MUTT, "-n", "-F", str(rc), "-s", "CR opératoire", "--", BOB],
                              stdin=stdin, capture_output=True, timeout=60, check=False,
                              env=environment)
    assert done.returncode == 0, (done.stdout + done.stderr).decode(errors="replace")
    received = imaps(server, BOB)
    received.select("INBOX")
    typ, data = received.search(None, "FROM", ALICE)
    assert typ == "OK" and data[0], "the message did not reach Bob's INBOX"
    typ, fetched = received.fetch(data[0].split()[-1], "(BODY.PEEK[])")
    raw = fetched[0][1]  # type: ignore[index]
    assert isinstance(raw, bytes) and "Compte rendu opératoire".encode() in raw
    sent = imaps(server, ALICE)
    typ, _ = sent.select("Sent")
    assert typ == "OK"
    typ, data = sent.search(None, "TO", BOB)
    assert typ == "OK" and len(data[0].split()) == 1, "mutt's copy is not in Sent"
