"""Real-world-shaped messages for the tests of mailserver/mime (built here, CRLF line ends)."""

from __future__ import annotations

import base64
import io
import zipfile

CRLF = b"\r\n"


def entity(headers: list[str] | list[bytes], body: bytes) -> bytes:
    lines = [h.encode("utf-8") if isinstance(h, str) else h for h in headers]
    return CRLF.join(lines) + CRLF + CRLF + body


def multipart(subtype: str, boundary: str, parts: list[bytes], headers: list[str] | None = None,
              preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    hdrs = list(headers or [])
    hdrs.append(f'Content-Type: multipart/{subtype}; boundary="{boundary}"')
    b = boundary.encode()
    body = preamble
    for p in parts:
        body += b"--" + b + CRLF + p + CRLF
    body += b"--" + b + b"--" + CRLF + epilogue
    return entity(hdrs, body)


def xdm_zip() -> bytes:
    """An IHE XDM-like zip: INDEX.HTM, README.TXT, IHE_XDM/SUBSET01/METADATA.XML + a CDA."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("INDEX.HTM", "<html><body>Dossier</body></html>")
        z.writestr("README.TXT", "IHE XDM media, MSSante")
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML", "<SubmitObjectsRequest/>")
        z.writestr("IHE_XDM/SUBSET01/DOC0001.XML", CDA.decode())
    return buf.getvalue()


CDA = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3">\r\n'
    b"  <title>Compte rendu d'hospitalisation \xc3\xa9t\xc3\xa9</title>\r\n"
    b'  <recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="1234567890123"/>'
    b"</patientRole></recordTarget>\r\n"
    b"</ClinicalDocument>\r\n"
)


def b64(data: bytes) -> bytes:
    raw = base64.b64encode(data)
    return CRLF.join(raw[i : i + 76] for i in range(0, len(raw), 76))


def health_message() -> bytes:
    """A hospital discharge letter: alternative text/html, a CDA XML part and an XDM zip."""
    alt = multipart(
        "alternative",
        "alt-b",
        [
            entity(
                [
                    "Content-Type: text/plain; charset=utf-8",
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                b"Bonjour Docteur,=0D=0Avoici le compte rendu de l'=C3=A9t=C3=A9.=\r\nFin.",
            ),
            entity(
                ["Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: 8bit"],
                "<p>Bonjour Docteur, voici le compte rendu de l'été.</p>".encode(),
            ),
        ],
    )
    cda = entity(
        [
            'Content-Type: text/xml; charset="utf-8"; name="CR-BIO.xml"',
            'Content-Disposition: attachment; filename="CR-BIO.xml"',
            "Content-Transfer-Encoding: base64",
        ],
        b64(CDA),
    )
    zip_part = entity(
        [
            'Content-Type: application/zip; name="IHE_XDM.ZIP"',
            'Content-Disposition: attachment; filename="IHE_XDM.ZIP"',
            "Content-Transfer-Encoding: base64",
            "Content-Description: =?utf-8?q?Dossier_m=C3=A9dical?=",
            "Content-Language: fr",
        ],
        b64(xdm_zip()),
    )
    return multipart(
        "mixed",
        "mixed-b",
        [alt, cda, zip_part],
        headers=[
            "Date: Tue, 05 Mar 2024 09:12:00 +0100",
            "From: =?utf-8?q?Dr_Jos=C3=A9?= Martin <jose.martin@hopital.mssante.fr>",
            'To: "Dupont, Anne" <anne.dupont@medecin.mssante.fr>, patient-team: p1@x.fr,'
            " (no name) p2@x.fr;",
            "Cc: secretariat@hopital.mssante.fr",
            "Subject: =?utf-8?b?Q29tcHRlIHJlbmR1IGQnaG9zcGl0YWxpc2F0aW9u?=",
            "Message-ID: <cr-1@hopital.mssante.fr>",
            "MIME-Version: 1.0",
        ],
    )


def rfc_section_example() -> bytes:
    """The message of RFC 9051 §6.4.5's part-number example (HEADER, 1, 2, 3, 3.1 ... 4.2.2.2)."""
    def plain(text: str) -> bytes:
        return entity(["Content-Type: TEXT/PLAIN; CHARSET=US-ASCII"], text.encode())

    def octets(data: bytes) -> bytes:
        return entity(
            ["Content-Type: APPLICATION/OCTET-STREAM", "Content-Transfer-Encoding: BASE64"],
            b64(data),
        )

    inner3 = multipart("mixed", "b3", [plain("part 3.1"), octets(b"\x00\x01three-two")],
                       headers=["Subject: part three", "From: a@b.example"])
    alt = multipart("alternative", "b422", [plain("part 4.2.2.1"),
                    entity(["Content-Type: TEXT/RICHTEXT"], b"<bold>4.2.2.2</bold>")])
    inner42 = multipart("mixed", "b42", [plain("part 4.2.1"), alt],
                        headers=["Subject: part four two", "From: c@d.example"])
    part4 = multipart("mixed", "b4", [
        entity(["Content-Type: IMAGE/GIF", "Content-Transfer-Encoding: BASE64"], b64(b"GIF89a...")),
        entity(["Content-Type: MESSAGE/RFC822"], inner42),
    ])
    return multipart(
        "mixed",
        "b0",
        [
            plain("part 1"),
            octets(b"part two bytes"),
            entity(["Content-Type: MESSAGE/RFC822"], inner3),
            part4,
        ],
        headers=["From: Top <top@example.org>", "Subject: RFC example", "MIME-Version: 1.0"],
    )


def rfc_bodystructure_message() -> bytes:
    """A message whose BODYSTRUCTURE is RFC 3501 §7.4.2's example (sizes and line counts
    chosen to match: 1152 octets / 23 lines, and 4554 octets / 73 lines)."""
    # 23 lines totalling 1152 octets (CRLF included), the last line without CRLF
    lines = [b"x" * 48 for _ in range(22)]
    text1 = CRLF.join(lines) + CRLF
    text1 += b"y" * (1152 - len(text1))
    # 73 lines totalling 4554 octets of base64
    lines2 = [b"QUJD" * 15 for _ in range(72)]  # 60 chars + CRLF = 62 each
    text2 = CRLF.join(lines2) + CRLF
    text2 += b"QUJD" * ((4554 - len(text2)) // 4)
    text2 += b"=" * (4554 - len(text2))
    p1 = entity(["Content-Type: TEXT/PLAIN; CHARSET=US-ASCII", "Content-Transfer-Encoding: 7BIT"],
                text1)
    p2 = entity(
        [
            'Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME="cc.diff"',
            "Content-ID: <960723163407.20117h@cac.washington.edu>",
            "Content-Description: Compiled diff",
            "Content-Transfer-Encoding: BASE64",
        ],
        text2,
    )
    return multipart("MIXED", "xyz", [p1, p2], headers=[
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "From: Terry Gray <gray@cac.washington.edu>",
        "Subject: IMAP4rev1 WG mtg summary and minutes",
        "To: imap@cac.washington.edu",
        "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>",
        "Message-Id: <B27397-0100000@cac.washington.edu>",
        "MIME-Version: 1.0",
    ]).replace(b"multipart/MIXED", b"MULTIPART/MIXED")
