"""HL7 date and time digits (``YYYYMMDD[HHMM[SS]]``) read without ``strptime``,
whose regex machinery costs more than the rest of a CDA header check."""

from __future__ import annotations

import datetime as dt

_FORMATS = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}


def parse_digits(digits: str) -> dt.datetime | None:
    """The naive moment of 8, 12 or 14 digits, None when it is no valid moment. The
    same as ``strptime`` with the format of that length: with fixed-width fields it
    accepts exactly the values ``datetime`` accepts (tests/test_content_fast.py).
    Digits outside ASCII go to ``strptime`` itself."""
    fmt = _FORMATS.get(len(digits))
    if fmt is None:
        return None
    if not (digits.isascii() and digits.isdigit()):
        try:
            return dt.datetime.strptime(digits, fmt)
        except ValueError:
            return None
    try:
        return dt.datetime(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]),
                           int(digits[8:10] or 0), int(digits[10:12] or 0),
                           int(digits[12:14] or 0))
    except ValueError:
        return None
