"""mbsync (isync, a Debian package) syncs a folder tree both ways over TLS."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import ServerThread
from tests.imap_support import ALICE, PASSWORD, imaps, message

MBSYNC = shutil.which("mbsync") or "mbsync"  # Debian package isync (installed by .ci/run)


def config(server: ServerThread, home: Path) -> Path:
    maildir = home / "mail"
    maildir.mkdir()
    path = home / "mbsyncrc"
    path.write_text(f"""
IMAPAccount test
Host localhost
Port {server.port("imaps")}
User {ALICE}
Pass "{PASSWORD}"
SSLType IMAPS
CertificateFile {server.settings.path(server.settings.tls.ca)}

IMAPStore remote
Account test

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    return path


def mbsync(rc: Path) -> str:
    done = subprocess.run([MBSYNC, "-c", str(rc), "-a"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_mbsync_both_ways(server: ServerThread, tmp_path: Path) -> None:
    server.add_mailbox(ALICE, PASSWORD)
    client = imaps(server)
    client.append("INBOX", "(\\Seen)", None, message("premier"))
    client.create("Patients/Martin")
    client.append("Patients/Martin", None, None, message("compte rendu"))
    rc = config(server, tmp_path)
    mbsync(rc)
    maildir = tmp_path / "mail"
    inbox = list((maildir / "INBOX" / "cur").iterdir())
    assert len(inbox) == 1 and inbox[0].name.endswith(",S")  # \Seen became the S flag
    martin = list((maildir / "Patients" / "Martin" / "new").iterdir()) + list(
        (maildir / "Patients" / "Martin" / "cur").iterdir())
    assert len(martin) == 1 and b"compte rendu" in martin[0].read_bytes()
    # Local changes go up: a new folder with a message, and a flag.
    local = maildir / "Brouillons"
    for sub in ("cur", "new", "tmp"):
        (local / sub).mkdir(parents=True)
    (local / "new" / "1.local").write_bytes(message("écrit hors ligne"))
    inbox[0].rename(inbox[0].with_name(inbox[0].name + "F"))  # flagged
    mbsync(rc)
    client.select("Brouillons")
    typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and "écrit hors ligne".encode() in data[0][1]  # type: ignore[index]
    client.select("INBOX")
    assert client.search(None, "FLAGGED") == ("OK", [b"1"])
    # A message deleted on the server disappears locally.
    client.store("1", "+FLAGS", "(\\Deleted)")
    client.expunge()
    mbsync(rc)
    assert list((maildir / "INBOX" / "cur").iterdir()) == []
    client.logout()
