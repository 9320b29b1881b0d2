"""The MSSanté headers and subject convention, and what a sender declares checked
against the package it sends.

Headers (ANS, DST MSSanté, "en-têtes spécifiques"): ``X-MSS-CODECDA`` the CDA type
codes of the documents, comma-separated; ``X-MSS-INS`` ``O`` when a qualified INS
identifies the patient, else ``N``; ``X-MSS-NIL`` the sending software's
reference; ``X-MSS-MES: FIN`` closes a conversation. Subject convention:
``XDM/1.0/DDM+<label> <FAMILY> <given> <birth date>``, one patient per message.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header

from directory.ins import InvalidINS, validate_ins
from mailserver.health.cda import CdaDocument
from mailserver.health.hl7time import parse_digits
from mailserver.health.problems import Problem
from mailserver.health.xdm import INS_NIR, INS_NIR_TEST, INS_OIDS, PatientId, XdmPackage

SUBJECT_PREFIX = "XDM/1.0/DDM"
HEADERS = ("x-mss-codecda", "x-mss-ins", "x-mss-nil", "x-mss-mes")
MAX_CODES = 50
_CODE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_DATES = (("%Y%m%d", 8), ("%d/%m/%Y", 10), ("%Y-%m-%d", 10))


@dataclass(frozen=True)
class SubjectConvention:
    label: str
    family: str
    given: str
    birth_date: dt.date | None
    names: str  # everything between the label and the date, as written


@dataclass(frozen=True)
class MssHeaders:
    codes: tuple[str, ...] | None
    ins: str | None
    nil: str | None
    mes: str | None
    subject: str | None

    @property
    def structured(self) -> bool:
        """Does the sender claim a structured message?"""
        return (self.codes is not None or self.ins is not None
                or (self.subject or "").startswith(SUBJECT_PREFIX))


def decoded(value: str) -> str:
    """A header value with its RFC 2047 encoded words decoded (subjects with accents)."""
    if "=?" not in value:  # no encoded word (RFC 2047 §2): the email package gives it back
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # a malformed encoded word stays as written
        return value


def read_headers(headers: Mapping[str, Sequence[str]]) -> MssHeaders:
    """From lower-cased header names to their values (first value wins)."""

    def first(name: str) -> str | None:
        values = headers.get(name)
        return " ".join(values[0].split())[:998] if values else None

    codes_text = first("x-mss-codecda")
    codes = None
    if codes_text is not None:
        codes = tuple(c.strip() for c in codes_text.split(",") if c.strip())[:MAX_CODES + 1]
    subject = first("subject")
    return MssHeaders(codes, first("x-mss-ins"), first("x-mss-nil"), first("x-mss-mes"),
                      decoded(subject) if subject is not None else None)


def _date(token: str) -> dt.date | None:
    if len(token) == 8:  # "%Y%m%d", read as strptime would, without its regexes
        moment = parse_digits(token)
        return moment.date() if moment is not None else None
    for fmt, length in _DATES:
        if len(token) == length:
            try:
                return dt.datetime.strptime(token, fmt).date()
            except ValueError:
                continue
    return None


def parse_subject(subject: str) -> SubjectConvention | None:
    """The parts of a conventional subject; None when it does not follow the convention.

    The label may hold spaces, so names are read from the end: the date, the given
    name (one word), then the family name (the upper-case words before it)."""
    subject = " ".join(subject.split())
    if not subject.startswith(SUBJECT_PREFIX + "+"):
        return None
    words = subject[len(SUBJECT_PREFIX) + 1:].split(" ")
    if len(words) < 4:
        return None
    birth = _date(words[-1])
    if birth is None:
        return None
    given = words[-2]
    family_words: list[str] = []
    for word in reversed(words[:-2]):
        if not (word.isupper() or not any(c.isalpha() for c in word)) or len(family_words) == 4:
            break
        family_words.insert(0, word)
    if not family_words:  # a family name not in capitals: the word before the given name
        family_words = [words[-3]]
    while len(family_words) > 1 and len(words) - 2 - len(family_words) < 1:
        family_words.pop(0)  # an upper-case label ("CR IRM") keeps at least one word
    rest = words[:len(words) - 2 - len(family_words)]
    if not family_words or not rest:
        return None
    return SubjectConvention(" ".join(rest), " ".join(family_words), given, birth,
                             " ".join(words[len(rest):-1]))


def _fold(text: str) -> str:
    """Upper case without accents, hyphens or apostrophes as spaces: names compare so."""
    if not text.isascii():  # ASCII is its own NFKD form, without combining marks
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[-'’]", " ", text).upper().split())


def _p(code: str, en: str, fr: str) -> Problem:
    return Problem(code, en, fr)


def _qualified(patient: PatientId) -> bool:
    if patient.root not in INS_OIDS:
        return False
    if patient.root in (INS_NIR, INS_NIR_TEST):
        try:
            validate_ins(patient.extension)
        except InvalidINS:
            return False
    return True


def validate(
    declared: MssHeaders, packages: Sequence[XdmPackage], cdas: Sequence[CdaDocument],
) -> tuple[Problem, ...]:
    """What the sender declares (headers, subject) against what it sends (packages
    and the CDA documents in them or beside them). Empty when consistent."""
    problems: list[Problem] = []
    for package in packages:
        problems.extend(package.problems)
    if declared.codes is not None and not packages and not cdas:
        problems.append(_p(
            "MSS-NOPACKAGE", "X-MSS-CODECDA is declared but no IHE XDM package is attached",
            "X-MSS-CODECDA est déclaré mais aucun paquet IHE XDM n'est joint"))
    sent_codes = {code for package in packages for code in package.type_codes}
    sent_codes |= {cda.code for cda in cdas if cda.code}
    if declared.codes is not None and (packages or cdas):
        bad = [c for c in declared.codes if not _CODE.match(c)]
        if bad or not declared.codes or len(declared.codes) > MAX_CODES:
            problems.append(_p("MSS-CODECDA-SYNTAX", "X-MSS-CODECDA is malformed",
                               "X-MSS-CODECDA est mal formé"))
        elif set(declared.codes) != sent_codes:
            said, sent = ",".join(sorted(set(declared.codes))), ",".join(sorted(sent_codes))
            problems.append(_p(
                "MSS-CODECDA",
                f"X-MSS-CODECDA declares {said[:200]} but the documents are {sent[:200]}",
                f"X-MSS-CODECDA déclare {said[:200]} mais les documents sont {sent[:200]}"))
    patients: set[PatientId] = set()
    for package in packages:
        patients |= package.patients
    for cda in cdas:
        if cda.ins is not None:
            patients.add(cda.ins)
    if len(patients) > 1:
        problems.append(_p("MSS-PATIENTS", "A message must concern one patient only",
                           "Un message ne doit concerner qu'un seul patient"))
    if declared.ins is not None:
        flag = declared.ins.strip().upper()
        if flag not in ("O", "N"):
            problems.append(_p("MSS-INS-SYNTAX", "X-MSS-INS must be O or N",
                               "X-MSS-INS doit valoir O ou N"))
        elif patients:
            qualified = all(_qualified(p) for p in patients)
            if flag == "O" and not qualified:
                problems.append(_p(
                    "MSS-INS", "X-MSS-INS: O but the patient has no valid qualified INS",
                    "X-MSS-INS : O mais le patient n'a pas d'INS qualifié valide"))
            if flag == "N" and any(p.root in INS_OIDS for p in patients):
                problems.append(_p(
                    "MSS-INS", "X-MSS-INS: N but the documents identify the patient by INS",
                    "X-MSS-INS : N mais les documents identifient le patient par son INS"))
    problems.extend(_check_subject(declared.subject, packages, cdas))
    return tuple(dict.fromkeys(problems))


def _check_subject(
    subject: str | None, packages: Sequence[XdmPackage], cdas: Sequence[CdaDocument]
) -> list[Problem]:
    if subject is None or not " ".join(subject.split()).startswith(SUBJECT_PREFIX):
        return []
    parsed = parse_subject(subject)
    if parsed is None:
        return [_p("MSS-SUBJECT-SYNTAX",
                   "The subject does not follow XDM/1.0/DDM+<label> <FAMILY> <given> <birth date>",
                   "L'objet ne suit pas XDM/1.0/DDM+<libellé> <NOM> <prénom> <date de naissance>")]
    problems: list[Problem] = []
    before_date = _fold(" ".join(subject.split())[len(SUBJECT_PREFIX) + 1:].rpartition(" ")[0])
    if not packages and not cdas:
        problems.append(_p(
            "MSS-NOPACKAGE", "The subject announces an XDM message but no package is attached",
            "L'objet annonce un message XDM mais aucun paquet n'est joint"))
    for cda in cdas:
        if cda.birth_date is not None and parsed.birth_date != cda.birth_date:
            problems.append(_p(
                "MSS-SUBJECT-PATIENT", "The birth date in the subject is not the patient's",
                "La date de naissance de l'objet n'est pas celle du patient"))
        expected = _fold(f"{cda.family} {(cda.given.split() or [''])[0]}")
        if cda.family and not before_date.endswith(expected):
            problems.append(_p(
                "MSS-SUBJECT-PATIENT", "The name in the subject is not the patient's",
                "Le nom de l'objet n'est pas celui du patient"))
    return problems
