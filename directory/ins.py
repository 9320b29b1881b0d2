"""The INS matricule (NIR) of a patient and its control key.

A NIR has 13 characters then a 2-digit key = 97 - (NIR mod 97). Corsican
departments 2A and 2B count as 19 and 18 in the computation.
"""

from __future__ import annotations

import re

INS_NIR_OID = "1.2.250.1.213.1.4.8"

_NIR_SHAPE = re.compile(r"^[12378]\d{4}(?:\d{2}|2[AB])\d{6}\d{2}$")


class InvalidINS(ValueError):
    """The text is not a valid INS matricule; the message says why."""


def normalize_ins(text: str) -> str:
    return re.sub(r"[\s.-]", "", text).upper()


def nir_control_key(first13: str) -> int:
    """97 − (first 13 characters mod 97), Corsica 2A → 19, 2B → 18."""
    digits = first13.replace("2A", "19", 1) if first13[5:7] == "2A" else first13
    digits = digits.replace("2B", "18", 1) if first13[5:7] == "2B" else digits
    return 97 - int(digits) % 97


def validate_ins(text: str) -> str:
    """Return the normalised INS, or raise InvalidINS with a reason a person can act on."""
    ins = normalize_ins(text)
    if len(ins) != 15:
        raise InvalidINS(
            f"an INS has 15 characters (13 of the NIR and a 2-digit key); got {len(ins)}"
        )
    if not _NIR_SHAPE.match(ins):
        raise InvalidINS(
            "an INS is made of digits (2A or 2B for a Corsican department) and starts "
            "with 1, 2, 3, 7 or 8"
        )
    expected = nir_control_key(ins[:13])
    if int(ins[13:]) != expected:
        raise InvalidINS(
            f"wrong control key {ins[13:]}: for {ins[:13]} it is {expected:02d} "
            "(97 minus the first 13 digits modulo 97)"
        )
    return ins
