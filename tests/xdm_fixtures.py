"""IHE XDM packages and messages built in the tests from the templates of
tests/data/xdm/ (METADATA.XML, CDA.XML), with the variations hostile or careless
senders produce."""

from __future__ import annotations

import hashlib
import io
import zipfile
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from string import Template

from directory.ins import nir_control_key

DATA = Path(__file__).parent / "data" / "xdm"
INS_NIR = "1.2.250.1.213.1.4.8"
LOINC_BIOLOGY = "11502-2"


def ins(first13: str) -> str:
    return f"{first13}{nir_control_key(first13):02d}"


CLAIRE = ins("2850575112034")  # MARTIN Claire, born 1985-05-12 (the CDA template)
LOUIS = ins("1720213055123")
SUBJECT = "XDM/1.0/DDM+CR de biologie MARTIN Claire 19850512"


def patient_id(value: str, root: str = INS_NIR) -> str:
    return f"{value}^^^&{root}&ISO"


def cda(*, patient: str = CLAIRE, root: str = INS_NIR, type_code: str = LOINC_BIOLOGY) -> bytes:
    text = Template((DATA / "CDA.XML").read_text(encoding="utf-8"))
    return text.substitute(ins=patient, ins_root=root, type_code=type_code).encode()


def metadata(document: bytes, *, patient: str = CLAIRE, set_patient: str | None = None,
             root: str = INS_NIR, type_code: str = LOINC_BIOLOGY, uri: str = "DOC0001.XML",
             sha1: str | None = None, size: int | None = None) -> bytes:
    text = Template((DATA / "METADATA.XML").read_text(encoding="utf-8"))
    return text.substitute(
        hash=sha1 or hashlib.sha1(document, usedforsecurity=False).hexdigest(),
        size=len(document) if size is None else size, uri=uri, type_code=type_code,
        document_patient=patient_id(patient, root).replace("&", "&amp;"),
        set_patient=patient_id(set_patient or patient, root).replace("&", "&amp;"),
    ).encode()


def zip_of(files: dict[str, bytes], *, encrypted: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 20, 14, 30, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    raw = bytearray(buffer.getvalue())
    for name in encrypted:  # zipfile cannot write one: set bit 0 (APPNOTE 4.4.4) by hand
        encoded = name.encode()
        with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
            raw[archive.getinfo(name).header_offset + 6] |= 0x1
        at = raw.find(b"PK\x01\x02")
        while at >= 0:
            length = int.from_bytes(raw[at + 28:at + 30], "little")
            if raw[at + 46:at + 46 + length] == encoded:
                raw[at + 8] |= 0x1
            at = raw.find(b"PK\x01\x02", at + 4)
    return bytes(raw)


def package(document: bytes | None = None, *, meta: bytes | None = None,
            extra: dict[str, bytes] | None = None, drop: tuple[str, ...] = (),
            **metadata_options: object) -> bytes:
    """A valid package unless told otherwise."""
    document = cda() if document is None else document
    files = {
        "INDEX.HTM": b"<html><body><a href=\"IHE_XDM/SUBSET01/DOC0001.XML\">CR</a></body></html>",
        "README.TXT": b"Laboratoire des Lilas - LIMS 4.2 - IHE XDM\r\n",
        "IHE_XDM/SUBSET01/METADATA.XML": meta if meta is not None else metadata(
            document, **metadata_options),  # type: ignore[arg-type]
        "IHE_XDM/SUBSET01/DOC0001.XML": document,
        **(extra or {}),
    }
    return zip_of({k: v for k, v in files.items() if k not in drop})


PDF = b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def message(sender: str, to: str, *, xdm: bytes | None = None, subject: str = SUBJECT,
            headers: dict[str, str] | None = None,
            attachments: tuple[tuple[str, str, bytes], ...] = ()) -> bytes:
    """A structured message: text, the PDF, IHE_XDM.zip and X-MSS-* headers."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    fields = {"X-MSS-CODECDA": LOINC_BIOLOGY, "X-MSS-INS": "O", "X-MSS-NIL": "LIMS 4.2",
              **(headers or {})}
    for name, value in fields.items():
        if value:
            mail[name] = value
    mail.set_content("Résultats de biologie de Mme MARTIN.\n")
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename="resultats.pdf")
    if xdm is not None:
        mail.add_attachment(xdm, maintype="application", subtype="zip", filename="IHE_XDM.zip")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes(policy=SMTP)
