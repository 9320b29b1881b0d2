"""The memo of recurring values keeps short values only: a hostile sender's long
values are read every time and never held."""

from __future__ import annotations

from mailserver.memo import short_values


def test_short_values_are_kept_long_ones_read_each_time() -> None:
    calls: list[bytes] = []

    @short_values(max_len=8, maxsize=2)
    def read(value: bytes) -> int:
        calls.append(value)
        return len(value)

    assert [read(b"short"), read(b"short")] == [5, 5]
    assert calls == [b"short"]  # read once, then kept
    long_value = b"x" * 9
    assert [read(long_value), read(long_value)] == [9, 9]
    assert calls == [b"short", long_value, long_value]  # never kept
    read(b"a"), read(b"b"), read(b"short")
    assert calls[-1] == b"short"  # at most maxsize kept: the oldest went
    assert read.__name__ == "read"
