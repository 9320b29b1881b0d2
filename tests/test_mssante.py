"""What a sender declares (X-MSS-* headers, subject) against what it sends."""

from __future__ import annotations

import datetime as dt

from mailserver.health import mssante
from mailserver.health.cda import read_cda
from mailserver.health.mdn import disposition_error, error_field
from mailserver.health.xdm import read_xdm
from policies.context import Finding
from tests import xdm_fixtures as fx


def check(headers: dict[str, str], package: bytes | None = None, cda: bytes | None = None,
          ) -> set[str]:
    declared = mssante.read_headers({k.lower(): (v,) for k, v in headers.items()})
    packages = [read_xdm(package)] if package else []
    documents = [d for d in [read_cda(cda or fx.cda()).document] if d] if (cda or package) else []
    return {p.code for p in mssante.validate(declared, packages, documents)}


GOOD = {"X-MSS-CODECDA": "11502-2", "X-MSS-INS": "O", "Subject": fx.SUBJECT}


def test_consistent_declarations_pass() -> None:
    assert check(GOOD, fx.package()) == set()
    assert check({**GOOD, "Subject": "Résultats"}, fx.package()) == set()  # free subject


def test_codes_that_disagree_with_the_package() -> None:
    assert check({**GOOD, "X-MSS-CODECDA": "34133-9"}, fx.package()) == {"MSS-CODECDA"}
    assert check({**GOOD, "X-MSS-CODECDA": "11502-2,34133-9"}, fx.package()) == {"MSS-CODECDA"}
    assert check({**GOOD, "X-MSS-CODECDA": "11502-2;<script>"}, fx.package()) == {
        "MSS-CODECDA-SYNTAX"}
    assert check({"X-MSS-CODECDA": "11502-2"}) == {"MSS-NOPACKAGE"}


def test_ins_flag_against_the_patient_identifier() -> None:
    other_root = fx.package(fx.cda(root="1.2.250.1.999.5"), root="1.2.250.1.999.5")
    assert check({**GOOD, "Subject": "x"}, other_root,
                 fx.cda(root="1.2.250.1.999.5")) == {"MSS-INS"}
    assert check({**GOOD, "X-MSS-INS": "N"}, fx.package()) == {"MSS-INS"}
    assert check({**GOOD, "X-MSS-INS": "peut-être"}, fx.package()) == {"MSS-INS-SYNTAX"}
    wrong_key = fx.CLAIRE[:13] + "00"
    assert "MSS-INS" in check({**GOOD, "Subject": "x"}, fx.package(fx.cda(patient=wrong_key),
                              patient=wrong_key), fx.cda(patient=wrong_key))


def test_one_patient_per_message() -> None:
    assert "MSS-PATIENTS" in check(GOOD, fx.package(), fx.cda(patient=fx.LOUIS))


def test_subject_convention() -> None:
    parsed = mssante.parse_subject("XDM/1.0/DDM+CR IRM LE GALL Marie 02/01/1980")
    assert parsed is not None and parsed.given == "Marie"
    assert parsed.birth_date == dt.date(1980, 1, 2)
    assert mssante.parse_subject("Re: résultats") is None
    assert check({**GOOD, "Subject": "XDM/1.0/DDM+CR de biologie BERNARD Louis 19850512"},
                 fx.package()) == {"MSS-SUBJECT-PATIENT"}
    assert check({**GOOD, "Subject": "XDM/1.0/DDM+CR de biologie MARTIN Claire 19850513"},
                 fx.package()) == {"MSS-SUBJECT-PATIENT"}
    assert check({**GOOD, "Subject": "XDM/1.0/DDM+MARTIN"}, fx.package()) == {
        "MSS-SUBJECT-SYNTAX"}
    accented = "XDM/1.0/DDM+CR de biologie Martin Claire 1985-05-12"
    assert check({**GOOD, "Subject": accented}, fx.package()) == set()


def test_problem_as_mdn_error_field() -> None:
    finding = Finding("MSS-CODECDA", "codes differ", "les codes ^ diffèrent\r\nBcc: x")
    assert error_field(finding) == "MSS-CODECDA^les codes different Bcc: x"
    # the ANS guide's codes in the Disposition field: 903 no INS, else 207
    assert disposition_error(finding) == "207^MSS-CODECDA les codes different Bcc: x"
    no_ins = Finding("XDM-PATIENT", "no patient id", "identifiant patient absent")
    assert disposition_error(no_ins) == "903^XDM-PATIENT identifiant patient absent"
