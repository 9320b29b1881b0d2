"""``mss send``: what practice software does to send a structured health message.

Builds a conforming message (a CDA R2 document, the IHE XDM package holding it,
the PDF beside it, the X-MSS-* headers and the ``XDM/1.0/DDM+...`` subject),
checks it with the same validator as the server, then submits it over SMTP
submission: STARTTLS (RFC 3207) on 587 or implicit TLS on 465 (RFC 8314), then
AUTH EXTERNAL (RFC 4422 Appendix A) with the APP mailbox's TLS client certificate
(``--p12`` or ``--cert/--key``), else AUTH with its password.
"""

from __future__ import annotations

import datetime as dt
import secrets
import smtplib
import ssl
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from directory.ins import InvalidINS, validate_ins
from mailserver.health import build
from mailserver.health.attachments import PDF, sniff
from mailserver.health.cda import read_cda
from mailserver.health.content import analyse
from mailserver.settings import AttachmentSettings, default_config_text, load_settings

MAX_DOCUMENT_SIZE = 20 * 1024 * 1024


def _server(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from error


def _read(path: Path, what: str) -> bytes:
    if path.stat().st_size > MAX_DOCUMENT_SIZE:
        raise click.ClickException(f"{path}: {what} larger than {MAX_DOCUMENT_SIZE} bytes")
    return path.read_bytes()


def _password(password_file: Any, what: str = "Password") -> str:
    """A secret from a file (first line) or a prompt; never from the command line."""
    if password_file is not None:
        return str(password_file.readline().rstrip("\r\n"))
    return str(click.prompt(what, hide_input=True))


def load_client_certificate(tls: ssl.SSLContext, p12_path: Path | None, p12_password: bytes,
                            cert_path: Path | None, key_path: Path | None) -> None:
    """Give ``tls`` the client certificate, its chain and key. From PKCS#12 the key is
    re-encrypted under a one-time passphrase for the moment ssl reads it from a file."""
    if p12_path is None:
        assert cert_path is not None
        try:
            tls.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, OSError) as error:
            raise click.ClickException(f"cannot load {cert_path} / {key_path}: {error}") from error
        return
    try:
        key, certificate, chain = pkcs12.load_key_and_certificates(
            _read(p12_path, "PKCS#12 file"), p12_password)
    except ValueError as error:
        raise click.ClickException(
            f"{p12_path}: cannot open the PKCS#12 file (wrong password?)") from error
    if key is None or certificate is None:
        raise click.ClickException(f"{p12_path} holds no certificate with its private key")
    passphrase = secrets.token_bytes(32).hex().encode()
    with tempfile.TemporaryDirectory(prefix="mss-send-") as folder:
        bundle = Path(folder) / "client.pem"
        encoding = serialization.Encoding.PEM
        bundle.write_bytes(
            key.private_bytes(encoding, serialization.PrivateFormat.PKCS8,
                              serialization.BestAvailableEncryption(passphrase))
            + certificate.public_bytes(encoding)
            + b"".join(c.public_bytes(encoding) for c in chain))
        tls.load_cert_chain(bundle, password=passphrase)


def _external(client: smtplib.SMTP, sender: str) -> None:
    """AUTH EXTERNAL with the sender's address as authorization identity."""
    client.ehlo_or_helo_if_needed()
    if "EXTERNAL" not in client.esmtp_features.get("auth", "").upper().split():
        raise click.ClickException(
            "the server does not offer certificate login (AUTH EXTERNAL) on this session: "
            "is the certificate issued by a CA it trusts, and certificate login enabled?")
    client.auth("EXTERNAL", lambda challenge=None: sender)


def _default_attachment_settings() -> AttachmentSettings:
    return AttachmentSettings(**tomllib.loads(default_config_text())["attachments"])


@click.command("send")
@click.option("--from", "sender", required=True, help="The APP mailbox sending.")
@click.option("--to", "recipients", required=True, multiple=True, help="Recipient (repeatable).")
@click.option("--patient-ins", required=True, help="The patient's qualified INS (15 characters).")
@click.option("--document", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The PDF to send.")
@click.option("--cda", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A CDA R2 document to put in the XDM package (else one is made).")
@click.option("--subject", help="Subject (default: the XDM/1.0/DDM+ convention).")
@click.option("--family", help="Patient's family name (when no --cda).")
@click.option("--given", help="Patient's first given name (when no --cda).")
@click.option("--birthdate", help="Patient's birth date YYYY-MM-DD (when no --cda).")
@click.option("--type-code", default="11502-2", show_default=True,
              help="LOINC type code of the document (when no --cda).")
@click.option("--type-display", default="CR d'examens biologiques", show_default=True)
@click.option("--title", default="Compte rendu", show_default=True, help="Document title.")
@click.option("--server", "server", default="localhost:587", show_default=True,
              help="Submission server HOST:PORT (465: implicit TLS, else STARTTLS).")
@click.option("--password-file", type=click.File("r"), help="File holding the password.")
@click.option("--p12", "p12_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PKCS#12 of the APP mailbox's TLS client certificate (`mss pki issue "
                   "--usage tls-client --p12`): log in with SASL EXTERNAL, no password.")
@click.option("--p12-password-file", type=click.File("r"),
              help="File whose first line is the PKCS#12 password (else a prompt).")
@click.option("--cert", "cert_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM client certificate (and chain), instead of --p12.")
@click.option("--key", "key_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM private key of --cert (unencrypted, 0600).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="CA to check the server with (default: the deployment's, else the system's).")
@click.option("--software", default="mss-send 0.1", show_default=True,
              help="X-MSS-NIL: the sending software's reference.")
@click.option("--print", "print_only", is_flag=True, help="Print the message, do not send it.")
@click.pass_context
def send(context: click.Context, sender: str, recipients: tuple[str, ...], patient_ins: str,
         document: Path, cda: Path | None, subject: str | None, family: str | None,
         given: str | None, birthdate: str | None, type_code: str, type_display: str,
         title: str, server: str, password_file: Any, p12_path: Path | None,
         p12_password_file: Any, cert_path: Path | None, key_path: Path | None,
         ca_file: str | None, software: str, print_only: bool) -> None:
    """Send a structured health message (IHE XDM + PDF) for one patient."""
    if p12_path is not None and (cert_path or key_path):
        raise click.UsageError("give --p12 FILE or --cert/--key, not both")
    if (cert_path is None) != (key_path is None):
        raise click.UsageError("--cert and --key go together")
    if (p12_path or cert_path) and password_file is not None:
        raise click.UsageError("a client certificate logs in without a password: "
                               "drop --password-file")
    try:
        ins = validate_ins(patient_ins)
    except InvalidINS as error:
        raise click.ClickException(f"invalid INS {patient_ins!r}: {error}") from error
    pdf = _read(document, "document")
    if sniff(pdf, document.name).kind != PDF:
        raise click.ClickException(f"{document} is not a PDF")
    info = build.DocumentInfo(type_code=type_code, type_display=type_display, title=title,
                              author=software)
    cda_bytes = None
    if cda is not None:
        cda_bytes = _read(cda, "CDA")
        result = read_cda(cda_bytes)
        if result.document is None or result.problems:
            reasons = "; ".join(p.en for p in result.problems)
            raise click.ClickException(f"{cda}: {reasons}")
        patient = build.patient_from_cda(result.document)
        if patient is None:
            raise click.ClickException(f"{cda}: no INS or birth date in recordTarget")
        if patient.ins != ins:
            raise click.ClickException(
                f"{cda} is about INS {patient.ins}, not --patient-ins {ins}")
        info = build.DocumentInfo(type_code=result.document.code,
                                  type_display=result.document.display,
                                  title=result.document.title or title, author=software)
    else:
        born = _date(birthdate)
        if not family or not given or born is None:
            raise click.UsageError("without --cda, give --family, --given and --birthdate")
        patient = build.Patient(ins, family, given, born)
    message = build.structured_message(
        sender=sender, recipient=", ".join(recipients), patient=patient, info=info, pdf=pdf,
        pdf_name=document.name, cda=cda_bytes, subject=subject, software=software)
    raw = message.as_bytes()
    facts = analyse(raw, _default_attachment_settings(),
                    {k.lower(): (str(v),) for k, v in message.items()})
    problems = facts.structured.problems if facts.structured else ()
    if problems:
        raise click.ClickException("the message would be refused: " + "; ".join(
            f"{p.code} {p.en}" for p in problems))
    if print_only:
        click.echo(raw.decode("utf-8", "replace"))
        return
    host, port = _server(server)
    if ca_file is None and context.obj and context.obj.get("data_dir"):
        settings = load_settings(context.obj["data_dir"])
        ca_file = str(settings.path(settings.tls.ca))
    tls = ssl.create_default_context(cafile=ca_file)
    with_certificate = p12_path is not None or cert_path is not None
    if with_certificate:
        p12_password = (_password(p12_password_file, "PKCS#12 password").encode("utf-8")
                        if p12_path is not None else b"")
        load_client_certificate(tls, p12_path, p12_password, cert_path, key_path)
        secret = ""
    else:
        secret = _password(password_file)
    try:
        client = (smtplib.SMTP_SSL(host, port, timeout=30, context=tls) if port == 465
                  else smtplib.SMTP(host, port, timeout=30))
        with client:
            if port != 465:
                client.starttls(context=tls)
            if with_certificate:
                _external(client, sender)
            else:
                client.login(sender, secret)
            refused = client.send_message(message, sender, list(recipients))
    except smtplib.SMTPResponseException as error:
        reply = error.smtp_error
        if isinstance(reply, bytes):
            reply = reply.decode("utf-8", "replace")
        raise click.ClickException(f"refused by the server: {error.smtp_code} {reply}") from error
    except smtplib.SMTPRecipientsRefused as error:
        reasons = "; ".join(f"{rcpt}: {code} {text.decode('utf-8', 'replace')}"
                            for rcpt, (code, text) in error.recipients.items())
        raise click.ClickException(f"refused by the server: {reasons}") from error
    except (smtplib.SMTPException, OSError) as error:
        raise click.ClickException(f"cannot send through {host}:{port}: {error}") from error
    for rcpt, (code, text) in refused.items():
        click.echo(f"refused {rcpt}: {code} {text.decode('utf-8', 'replace')}", err=True)
    click.echo(f"Sent {message['Message-ID']} to {', '.join(recipients)}")
