"""HL7 date and time digits (``YYYYMMDD[HHMM[SS]]``) read without ``strptime``,
whose regex machinery costs more than the rest of a CDA header check."""

from __future__ import annotations

import datetime as dt

_FORMATS = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}


def parse_digits(digits: str, tzinfo: dt.tzinfo | None = None) -> dt.datetime | None:
    """The moment of 8, 12 or 14 digits (naive, or in ``tzinfo``), None when it is no
    valid moment. The same as ``strptime`` with the format of that length: with
    fixed-width fields it accepts exactly the values ``datetime`` accepts
    (tests/test_content_fast.py). Digits outside ASCII go to ``strptime`` itself."""
    size = len(digits)
    fmt = _FORMATS.get(size)
    if fmt is None:
        return None
    if not (digits.isascii() and digits.isdigit()):
        try:
            return dt.datetime.strptime(digits, fmt).replace(tzinfo=tzinfo)
        except ValueError:
            return None
    # The fixed-width fields of one integer: no slice, no int() per field.
    rest = int(digits) * (1000000 if size == 8 else 100 if size == 12 else 1)
    rest, second = divmod(rest, 100)
    rest, minute = divmod(rest, 100)
    rest, hour = divmod(rest, 100)
    rest, day = divmod(rest, 100)
    year, month = divmod(rest, 100)
    try:
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=tzinfo)
    except ValueError:
        return None
