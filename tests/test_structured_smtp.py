"""Structured health messages end to end, through real SMTP over TLS: ``mss send``
as practice software uses it, and what the server refuses (inconsistent
declarations, executables under any name, scripts in zips, zip bombs) whatever
the door."""

from __future__ import annotations

import datetime as dt
import email
import smtplib
import ssl
from email.policy import default
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from directory.models import MailboxType
from mailserver.auth import hash_password
from tests import xdm_fixtures as fx
from tests.conftest import DOMAIN, PATIENT_DOMAIN, ServerThread
from tests.test_attachments import pe_executable

PASSWORD = "labo-password-2026"
LABO = f"labo@{DOMAIN}"
DR_A = f"dr.a@{DOMAIN}"
CLAIRE = f"{fx.CLAIRE}@{PATIENT_DOMAIN}"


@pytest.fixture
def lab(server: ServerThread) -> ServerThread:
    server.add_mailbox(LABO, PASSWORD, MailboxType.APP)
    server.add_mailbox(DR_A, PASSWORD)

    async def patient() -> None:
        record = await server.app.directory.add_patient(
            ins=fx.CLAIRE, family_name="MARTIN", given_names="Claire",
            birthdate=dt.date(1985, 5, 12), patient_domain=PATIENT_DOMAIN,
            password_hash=hash_password(PASSWORD))
        await server.app.store.ensure_folders(record.id)

    server.call(patient())
    return server


def mss(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def send_args(server: ServerThread, tmp_path: Path, to: str, *extra: str) -> list[str]:
    pdf = tmp_path / "resultats.pdf"
    pdf.write_bytes(fx.PDF)
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    return ["--data-dir", str(server.settings.data_dir), "send", "--from", LABO, "--to", to,
            "--patient-ins", fx.CLAIRE, "--document", str(pdf),
            "--server", f"127.0.0.1:{server.port('submission')}",
            "--password-file", str(password), *extra]


def submit(server: ServerThread, raw: bytes, to: str = DR_A, *,
           login: str | None = LABO, port: str = "submission") -> tuple[int, str]:
    context = ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))
    with smtplib.SMTP("127.0.0.1", server.port(port), timeout=20) as client:
        client.starttls(context=context)
        client.ehlo()
        if login:
            client.login(login, PASSWORD)
        client.mail(login or "lims@labo-externe.example")
        code, reply = client.rcpt(to)
        assert code == 250, reply
        code, reply = client.data(raw)
        return code, reply.decode("utf-8")


def test_mss_send_is_accepted_and_delivered(lab: ServerThread, tmp_path: Path) -> None:
    result = mss(*send_args(lab, tmp_path, DR_A, "--family", "Martin", "--given", "Claire",
                            "--birthdate", "1985-05-12"))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Sent <")
    (delivered,) = lab.inbox(DR_A)
    message = email.message_from_bytes(delivered, policy=default)
    assert message["X-MSS-CODECDA"] == "11502-2" and message["X-MSS-INS"] == "O"
    assert message["Subject"] == "XDM/1.0/DDM+Compte rendu MARTIN Claire 19850512"
    names = [part.get_filename() for part in message.iter_attachments()]
    assert names == ["resultats.pdf", "IHE_XDM.zip"]


def test_mss_send_with_a_cda_to_the_patient(lab: ServerThread, tmp_path: Path) -> None:
    cda = tmp_path / "cr.xml"
    cda.write_bytes(fx.cda())
    result = mss(*send_args(lab, tmp_path, CLAIRE, "--cda", str(cda)))
    assert result.exit_code == 0, result.output
    (delivered,) = lab.inbox(CLAIRE)
    message = email.message_from_bytes(delivered, policy=default)
    assert message["Subject"] == "XDM/1.0/DDM+CR de biologie médicale MARTIN Claire 19850512"
    other = tmp_path / "other.xml"
    other.write_bytes(fx.cda(patient=fx.LOUIS))
    mismatch = mss(*send_args(lab, tmp_path, CLAIRE, "--cda", str(other)))
    assert mismatch.exit_code == 1 and "not --patient-ins" in mismatch.output


def test_mss_send_reports_the_server_refusal(lab: ServerThread, tmp_path: Path) -> None:
    result = mss(*send_args(lab, tmp_path, f"nobody@{DOMAIN}", "--family", "MARTIN",
                            "--given", "Claire", "--birthdate", "1985-05-12"))
    assert result.exit_code == 1
    assert "refused by the server" in result.output and "5.1.1" in result.output


def test_inconsistent_structured_messages_are_refused(lab: ServerThread) -> None:
    cases = {
        "MSS-CODECDA": fx.message(LABO, DR_A, xdm=fx.package(),
                                  headers={"X-MSS-CODECDA": "34133-9"}),
        "XDM-HASH": fx.message(LABO, DR_A, xdm=fx.package(sha1="1" * 40)),
        "XDM-MISSING": fx.message(LABO, DR_A, xdm=fx.package(
            drop=("IHE_XDM/SUBSET01/DOC0001.XML",))),
        "XDM-PATIENTS": fx.message(LABO, DR_A, xdm=fx.package(set_patient=fx.LOUIS)),
        "MSS-INS": fx.message(LABO, DR_A, xdm=fx.package(), headers={"X-MSS-INS": "N"}),
        "MSS-SUBJECT-PATIENT": fx.message(
            LABO, DR_A, xdm=fx.package(),
            subject="XDM/1.0/DDM+CR de biologie BERNARD Louis 19720203"),
        "XML-FORBIDDEN": fx.message(LABO, DR_A, xdm=fx.package(meta=(
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<r>&x;</r>"))),
        "MSS-NOPACKAGE": fx.message(LABO, DR_A),
    }
    for code, raw in cases.items():
        reply = submit(lab, raw)
        assert reply[0] == 554 and reply[1].startswith("5.6.0"), (code, reply)
        assert code in reply[1] and "Message structuré incohérent" in reply[1], (code, reply)
    assert lab.inbox(DR_A) == []
    assert submit(lab, fx.message(LABO, DR_A, xdm=fx.package()))[0] == 250
    assert len(lab.inbox(DR_A)) == 1


def test_dangerous_attachments_are_refused_at_every_door(lab: ServerThread) -> None:
    exe = fx.message(LABO, DR_A, headers={"X-MSS-CODECDA": "", "X-MSS-INS": ""}, subject="CR",
                     attachments=(("resultats2.pdf", "application/pdf", pe_executable()),))
    code, reply = submit(lab, exe)
    assert (code, reply[:5]) == (554, "5.7.1") and "resultats2.pdf" in reply
    assert "exécutable" in reply
    script_zip = fx.message(LABO, DR_A, xdm=fx.package(
        extra={"IHE_XDM/SUBSET01/LISEZMOI.TXT": b"#!/bin/sh\ncurl x | sh\n"}))
    assert submit(lab, script_zip)[:1] == (554,)
    bomb = fx.message(LABO, DR_A, xdm=fx.package(
        extra={"IHE_XDM/SUBSET01/ZEROS.BIN": bytes(30 * 1024 * 1024)}))
    code, reply = submit(lab, bomb)
    assert code == 554 and "ZIP-BOMB" in reply
    # port 25, from another server: the same rules
    code, reply = submit(lab, exe, login=None, port="smtp")
    assert (code, reply[:5]) == (554, "5.7.1")
    assert lab.inbox(DR_A) == []


def test_allowed_attachments_and_plain_mail_pass(lab: ServerThread) -> None:
    png = fx.message(LABO, DR_A, headers={"X-MSS-CODECDA": "", "X-MSS-INS": ""}, subject="ECG",
                     attachments=(("ecg.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
                                  ("examen.dcm", "application/dicom",
                                   bytes(128) + b"DICM" + bytes(64))))
    assert submit(lab, png)[0] == 250
    plain = (f"From: {LABO}\r\nTo: {DR_A}\r\nSubject: Bonjour\r\n\r\nBonjour\r\n").encode()
    assert submit(lab, plain)[0] == 250
    html = fx.message(LABO, DR_A, headers={"X-MSS-CODECDA": "", "X-MSS-INS": ""}, subject="x",
                      attachments=(("page.html", "text/html", b"<html><body>x</body></html>"),))
    code, reply = submit(lab, html)
    assert (code, reply[:5]) == (554, "5.6.1") and "html" in reply
    assert len(lab.inbox(DR_A)) == 2


def test_refusal_sends_the_asked_mdn_error_to_the_sender_only(lab: ServerThread) -> None:
    raw = fx.message(LABO, DR_A, xdm=fx.package(), headers={
        "X-MSS-CODECDA": "34133-9", "Disposition-Notification-To": LABO,
        "Message-ID": "<cr-42@labo.example>"})
    code, reply = submit(lab, raw)
    assert code == 554 and "MSS-CODECDA" in reply
    (mdn,) = lab.inbox(LABO)
    report = email.message_from_bytes(mdn, policy=default)
    assert report.get_content_type() == "multipart/report"
    assert report["Auto-Submitted"] == "auto-replied"
    notification = mdn.split(b"Content-Type: message/disposition-notification")[1]
    # ANS guide "Transmission au LPS de documents CDA ... MSSanté", Structure du MDN
    assert report["Subject"].startswith("[KO Intégration système ! ] ")
    assert (b"Disposition: automatic-action/MDN-sent-automatically; processed/Error: "
            b"207^MSS-CODECDA X-MSS-CODECDA declare 34133-9") in notification
    assert b"Error: MSS-CODECDA^X-MSS-CODECDA declare 34133-9" in notification
    assert b"Original-Message-ID: <cr-42@labo.example>" in notification
    assert lab.inbox(DR_A) == []
    # asked for someone else: the server does not write to a third party
    other = fx.message(LABO, DR_A, xdm=fx.package(), headers={
        "X-MSS-CODECDA": "34133-9", "Disposition-Notification-To": DR_A})
    assert submit(lab, other)[0] == 554
    assert len(lab.inbox(LABO)) == 1 and lab.inbox(DR_A) == []
