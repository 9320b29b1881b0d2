"""Practice software's path, end to end against `mss serve`: `mss pki issue --usage
tls-client --p12` (a PKCS#12 that openssl opens, the certificate bound in the
directory), then `mss send --p12` logging in with SASL EXTERNAL; refused once revoked."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import xdm_fixtures as fx
from tests.conftest import DOMAIN, make_deployment

REPO = Path(__file__).resolve().parent.parent
APP = f"lgc.labo@{DOMAIN}"
DOCTOR = f"dr.b@{DOMAIN}"
P12_PASSWORD = "p12-password-2026"


def mss(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--data-dir", str(data_dir), *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "MSS_SERVER_WORKERS": "1"},
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def serving(tmp_path: Path, database_url: str) -> Iterator[tuple[Path, int]]:
    settings = make_deployment(tmp_path, database_url)
    data = settings.data_dir
    mss(data, "pki", "init", "--key-type", "ec256")
    mss(data, "mailbox", "add", APP, "--type", "app", "--password", "unused-password-1")
    mss(data, "mailbox", "add", DOCTOR, "--type", "per", "--password", "doctor-password-1")
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "--data-dir", str(data), "serve"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("ab"),
        env={**os.environ, "MSS_SERVER_WORKERS": "1"},
    )
    port = settings.listen.port("submission")
    deadline = time.monotonic() + 30
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=2) as probe:
                probe.noop()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"server did not start: {log.read_text()}") from None
            time.sleep(0.1)
    try:
        yield data, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def send(data: Path, port: int, tmp_path: Path, *auth: str) -> subprocess.CompletedProcess[str]:
    pdf = tmp_path / "cr.pdf"
    pdf.write_bytes(fx.PDF)
    return mss(data, "send", "--from", APP, "--to", DOCTOR, "--patient-ins", fx.CLAIRE,
               "--document", str(pdf), "--family", "MARTIN", "--given", "Claire",
               "--birthdate", "1985-05-12", "--server", f"127.0.0.1:{port}", *auth, check=False)


def test_issue_p12_then_send_with_external(serving: tuple[Path, int], tmp_path: Path) -> None:
    data, port = serving
    p12 = tmp_path / "lgc.p12"
    secret = tmp_path / "p12-password"
    secret.write_text(P12_PASSWORD + "\n")
    issued = mss(data, "pki", "issue", APP, "--usage", "tls-client", "--p12", str(p12),
                 "--p12-password-file", str(secret))
    assert f"bound to {APP} for tls-client" in issued.stdout
    serial = issued.stdout.split("serial ", 1)[1].split()[0]
    # What practice software loads: openssl opens it with the password.
    opened = subprocess.run(["openssl", "pkcs12", "-in", str(p12), "-passin",
                             f"file:{secret}", "-nodes"], capture_output=True, text=True,
                            timeout=60)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.count("BEGIN CERTIFICATE") == 3  # leaf, sub-CA, root
    assert "PRIVATE KEY" in opened.stdout
    listed = mss(data, "directory", "cert", "list", APP)
    assert "tls-client" in listed.stdout

    sent = send(data, port, tmp_path, "--p12", str(p12), "--p12-password-file", str(secret))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "Sent <" in sent.stdout

    # The same with --cert / --key (PEM files as `mss pki issue` leaves them).
    lines = dict(line.split(None, 1) for line in issued.stdout.splitlines()[1:3])
    sent = send(data, port, tmp_path, "--cert", lines["certificate"].strip(),
                "--key", lines["key"].strip())
    assert sent.returncode == 0, sent.stdout + sent.stderr

    mss(data, "pki", "revoke", serial)
    refused = send(data, port, tmp_path, "--p12", str(p12), "--p12-password-file", str(secret))
    assert refused.returncode != 0
    assert "535" in refused.stderr and "5.7.8" in refused.stderr


def test_wrong_p12_password_and_person_mailbox(serving: tuple[Path, int],
                                               tmp_path: Path) -> None:
    data, port = serving
    p12 = tmp_path / "lgc.p12"
    secret = tmp_path / "p12-password"
    secret.write_text(P12_PASSWORD + "\n")
    mss(data, "pki", "issue", APP, "--usage", "tls-client", "--p12", str(p12),
        "--p12-password-file", str(secret))
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    result = send(data, port, tmp_path, "--p12", str(p12), "--p12-password-file", str(wrong))
    assert result.returncode != 0 and "wrong password?" in result.stderr
    person = mss(data, "pki", "issue", DOCTOR, "--usage", "tls-client", check=False)
    assert person.returncode != 0 and "APP and ORG mailboxes" in person.stderr
